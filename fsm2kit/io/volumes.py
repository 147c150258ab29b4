"""Reading and writing medical volumes, the SSL-ALPNet folders and the FS-MedSAM2 npz dumps.

Three entry points, one per kind of input:

* :func:`load_nifti` reads any NIfTI file (any orientation, oblique included) into a
  :class:`Volume` in a canonical axial layout, and :meth:`Volume.mask_to_nifti` /
  :func:`save_mask` write a ``(Z, H, W)`` mask back into **exactly** the input file's grid
  (shape, affine, qform/sform and orientation).
* :func:`load_alp_folder` reads the SSL-ALPNet preprocessed folders (``image_<id>.nii.gz`` /
  ``label_<id>.nii.gz``) exactly as the evaluation protocol does (PROTOCOL.md section 1.3):
  SimpleITK's ``(z, y, x)`` array order, **no** reorientation, float32, SABS cropped to 256.
* :func:`load_npz_episodes` turns the published FS-MedSAM2 npz dumps (PROTOCOL.md section 6.1)
  into typed :class:`~fsm2kit.episode.Episode` objects.

Array conventions
-----------------
Every :class:`Volume` array is ``(Z, H, W)``: axis 0 indexes axial slices. For files read with
:func:`load_nifti` the array is reoriented to the voxel axes closest to ``('S', 'P', 'L')``
(see :data:`CANONICAL_AXCODES`):

* axis 0 (``Z``) runs inferior -> superior,
* axis 1 (``H``, image rows) runs anterior -> posterior, so anterior is at the top,
* axis 2 (``W``, image columns) runs patient right -> left, so the patient's right is on the
  image's left.

``plt.imshow(volume.array[z])`` therefore shows the usual radiological axial view. Only axis
permutations and flips are applied (never resampling), so oblique files keep their voxels and
map to the closest axes. Volumes from :func:`load_alp_folder` are *not* reoriented (the protocol
uses the stored array order as is); their ``array_axcodes`` say what the axes are.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from ..core.episode import Episode, Support
from ..protocol.rules import DATASET_LABELS, alp_chunk_index

__all__ = [
    "CANONICAL_AXCODES",
    "LabelMap",
    "LabelVolume",
    "Volume",
    "load_nifti",
    "load_label_nifti",
    "volume_from_nifti_image",
    "save_mask",
    "label_dtype",
    "array_axes_in_file",
    "ALPDataset",
    "load_alp_folder",
    "NpzName",
    "parse_npz_name",
    "load_npz_episodes",
    "example_dir",
    "example_episodes",
    "example_ct",
]

#: Axis codes of a :func:`load_nifti` array: (Z, H, W) = inferior->Superior,
#: anterior->Posterior, right->Left (nibabel codes name the direction of increasing index).
CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")

_MODALITIES = ("CT", "MR", "")
_MODALITY_ALIASES = {"CT": "CT", "MR": "MR", "MRI": "MR", "": ""}
_NIFTI_SUFFIXES = (".nii.gz", ".nii")

# Errors nibabel / gzip / numpy raise on a damaged or non-NIfTI file.
_READ_ERRORS = (
    nib.filebasedimages.ImageFileError,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    struct.error,
    TypeError,
)


# =====================================================================================
# Label maps
# =====================================================================================


def _norm_name(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


# Synonym groups (normalised spellings). A query in a group resolves to whichever name of the
# map belongs to the same group, so "rk" works for SABS's "RK" and TotalSegmentator's
# "kidney_right" alike.
_ALIAS_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(g)
    for g in (
        ("bg", "background"),
        ("liver",),
        ("spleen",),
        ("rk", "right_kidney", "kidney_right", "r_kidney", "kidney_r"),
        ("lk", "left_kidney", "kidney_left", "l_kidney", "kidney_l"),
        ("gallbladder", "gall_bladder"),
        ("esophagus", "oesophagus"),
        ("stomach",),
        ("aorta",),
        ("ivc", "inferior_vena_cava", "vena_cava_inferior"),
        (
            "ps_vein",
            "portal_vein",
            "portal_and_splenic_vein",
            "portal_vein_and_splenic_vein",
            "portal_splenic_vein",
        ),
        ("pancreas",),
        ("ag_r", "right_adrenal", "right_adrenal_gland", "adrenal_gland_right", "r_adrenal"),
        ("ag_l", "left_adrenal", "left_adrenal_gland", "adrenal_gland_left", "l_adrenal"),
    )
)


@dataclass(frozen=True, eq=True, repr=False, init=False)
class LabelMap:
    """Integer label ids <-> organ names.

    Parameters
    ----------
    names : mapping of int to str
        Label id -> name. Names must be unique (case-insensitively).
    name : str, optional
        A short name for the map itself (e.g. the dataset), shown in the repr.

    Examples
    --------
    >>> lm = LabelMap.from_dataset("SABS")
    >>> lm.resolve("liver"), lm.resolve("rk"), lm.resolve("6"), lm[6]
    (6, 2, 6, 'LIVER')
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    name: str

    def __init__(self, names: Mapping[int, str], *, name: str = "") -> None:
        if not isinstance(names, Mapping) or not names:
            raise TypeError(
                "LabelMap expects a non-empty mapping {label_id: name}, e.g. {0: 'BG', 1: 'LIVER'}; "
                f"got {type(names).__name__} {names!r}."
            )
        pairs = sorted((self._as_id(k), str(v)) for k, v in names.items())
        seen: dict[str, int] = {}
        for i, n in pairs:
            key = _norm_name(n)
            if not key:
                raise ValueError(f"LabelMap: label {i} has an empty name {n!r}; give it a name.")
            if key in seen:
                raise ValueError(
                    f"LabelMap: labels {seen[key]} and {i} have the same name {n!r} "
                    "(names are compared case-insensitively); make them unique."
                )
            seen[key] = i
        object.__setattr__(self, "ids", tuple(i for i, _ in pairs))
        object.__setattr__(self, "names", tuple(n for _, n in pairs))
        object.__setattr__(self, "name", str(name))

    @staticmethod
    def _as_id(k: object) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"LabelMap ids must be integers, got {k!r} ({type(k).__name__}).")
        return int(k)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_dataset(cls, dataset: str) -> LabelMap:
        """The label map of a preprocessed dataset (``"SABS"`` or ``"CHAOST2"``)."""
        key = _dataset_key(dataset)
        return cls(DATASET_LABELS[key], name=key)

    @classmethod
    def coerce(cls, value: LabelMap | str | Mapping[int, str] | None) -> LabelMap | None:
        """Accept a :class:`LabelMap`, a dataset name, a ``{id: name}`` mapping or None."""
        if value is None or isinstance(value, LabelMap):
            return value
        if isinstance(value, str):
            return cls.from_dataset(value)
        if isinstance(value, Mapping):
            return cls(value)
        raise TypeError(
            "label_map must be a LabelMap, a dataset name ('SABS'/'CHAOST2'), a {id: name} "
            f"mapping or None; got {type(value).__name__}."
        )

    # ---------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __contains__(self, item: object) -> bool:
        try:
            self.resolve(item)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
        return True

    def __getitem__(self, label_id: int) -> str:
        """Name of ``label_id``."""
        i = self.resolve(label_id)
        return self.names[self.ids.index(i)]

    def items(self) -> tuple[tuple[int, str], ...]:
        """``((id, name), ...)`` in ascending id order."""
        return tuple(zip(self.ids, self.names))

    def resolve(self, label: int | str) -> int:
        """The label id of ``label``.

        Parameters
        ----------
        label : int or str
            An id (``6``), a digit string (``"6"``), a name in any case (``"liver"``), or a
            common alias (``"right_kidney"``, ``"kidney_right"``, ``"rk"``, ``"lk"``, ...).

        Returns
        -------
        int

        Raises
        ------
        ValueError
            Unknown id or name; the message lists the valid ones.
        """
        if isinstance(label, (bool, np.bool_)):
            raise TypeError(f"A label must be an int id or a name, got the bool {label!r}.")
        if isinstance(label, (int, np.integer)):
            if int(label) in self.ids:
                return int(label)
            raise ValueError(f"Unknown label id {int(label)}; {self._valid()}.")
        if not isinstance(label, str):
            raise TypeError(
                f"A label must be an int id or a name, got {type(label).__name__} {label!r}."
            )
        s = label.strip()
        if re.fullmatch(r"[+-]?\d+", s):
            return self.resolve(int(s))
        key = _norm_name(s)
        normed = [_norm_name(n) for n in self.names]
        if key in normed:
            return self.ids[normed.index(key)]
        for group in _ALIAS_GROUPS:
            if key in group:
                for i, n in zip(self.ids, normed):
                    if n in group:
                        return i
        raise ValueError(f"Unknown label name {label!r}; {self._valid()}.")

    def _valid(self) -> str:
        listing = ", ".join(f"{i} {n}" for i, n in self.items())
        return (
            f"valid labels of {self.name or 'this map'} are: {listing} "
            "(names are case-insensitive; aliases like 'right_kidney'/'rk' also work)"
        )

    def __repr__(self) -> str:
        body = ", ".join(f"{i}={n}" for i, n in self.items())
        prefix = f"{self.name}: " if self.name else ""
        return f"LabelMap({prefix}{body})"


def _dataset_key(dataset: str) -> str:
    key = str(dataset).strip().upper()
    if key not in DATASET_LABELS:
        raise ValueError(
            f"Unknown dataset {dataset!r}; expected one of {sorted(DATASET_LABELS)} "
            "(SABS = Synapse/BTCV abdominal CT, CHAOST2 = CHAOS MR T2-SPIR)."
        )
    return key


# =====================================================================================
# Volumes
# =====================================================================================


def _identity_ornt() -> np.ndarray:
    return np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclass(frozen=True, eq=False)
class _SourceGrid:
    """How a Volume's (Z, H, W) array maps back onto the voxel grid of its source file.

    ``file array`` --squeeze--> 3D ``raw`` --apply_orientation(to_array)--> ``full``
    --crop [:Z, :H, :W]--> the Volume's array.
    """

    file_shape: tuple[int, ...]
    to_array: np.ndarray  # (3, 2) nibabel orientation transform, file axes -> array axes
    full_shape: tuple[int, int, int]  # array shape before the crop
    header: nib.Nifti1Header | None = None  # source header (Nifti1/Nifti2), None: make one
    image_class: type = nib.Nifti1Image

    def to_file(self, data: np.ndarray) -> np.ndarray:
        """Map a (Z, H, W) array (the cropped shape) back to the source file's array layout."""
        z, h, w = data.shape
        if (z, h, w) != self.full_shape:
            full = np.zeros(self.full_shape, dtype=data.dtype)
            full[:z, :h, :w] = data
        else:
            full = data
        raw = nio.apply_orientation(full, _inverse_ornt(self.to_array))
        return np.ascontiguousarray(raw).reshape(self.file_shape)


def _inverse_ornt(t: np.ndarray) -> np.ndarray:
    """The orientation transform undoing ``apply_orientation(., t)``."""
    inv = np.empty_like(t)
    for i, (j, flip) in enumerate(t):
        inv[int(j)] = (i, flip)
    return inv


def _spl_affine(spacing: tuple[float, float, float]) -> np.ndarray:
    """An affine whose voxel axes (Z, H, W) point S, P, L with the given spacing."""
    sz, sy, sx = spacing
    return np.array(
        [[0.0, 0.0, -sx, 0.0], [0.0, -sy, 0.0, 0.0], [sz, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )


@dataclass(frozen=True, eq=False, repr=False)
class LabelVolume:
    """An integer label volume aligned with a :class:`Volume`.

    Parameters
    ----------
    array : ndarray, (Z, H, W) int
        Label ids per voxel (0 = background).
    label_map : LabelMap, optional
        Names of the ids. Without one, only integer ids can be asked for.
    """

    array: np.ndarray
    label_map: LabelMap | None = None

    def __post_init__(self) -> None:
        a = np.asarray(self.array)
        if a.ndim != 3:
            raise ValueError(
                f"LabelVolume: expected a 3D (Z, H, W) label array, got shape {a.shape}."
            )
        if a.dtype == bool:
            a = a.astype(np.uint8)
        if not np.issubdtype(a.dtype, np.integer):
            raise TypeError(
                f"LabelVolume: expected integer label ids, got dtype {a.dtype}; round the "
                "labels first, e.g. np.rint(labels).astype(np.int32)."
            )
        object.__setattr__(self, "array", a)
        object.__setattr__(self, "label_map", LabelMap.coerce(self.label_map))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    def resolve(self, label: int | str) -> int:
        """The id of ``label`` (name or id; names need a label map)."""
        if self.label_map is not None:
            return self.label_map.resolve(label)
        if isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
            return int(label)
        if isinstance(label, str) and re.fullmatch(r"\s*[+-]?\d+\s*", label):
            return int(label)
        raise ValueError(
            f"This label volume has no label map, so {label!r} cannot be looked up by name; "
            "pass an integer id, or load it with label_map=... (a LabelMap, 'SABS'/'CHAOST2' or "
            "a {id: name} dict)."
        )

    def mask(self, label: int | str) -> np.ndarray:
        """Boolean (Z, H, W) mask of one class."""
        return self.array == self.resolve(label)

    def present(self) -> tuple[int, ...]:
        """Label ids that occur (background included), ascending."""
        return tuple(int(i) for i in np.unique(self.array))

    def slices_with(self, label: int | str) -> np.ndarray:
        """Ascending z indices of the slices containing ``label`` (the protocol's classmap)."""
        return np.flatnonzero(self.mask(label).any(axis=(1, 2)))

    def __repr__(self) -> str:
        ids = self.present()
        shown = ", ".join(
            f"{i}={self.label_map.names[self.label_map.ids.index(i)]}"
            if self.label_map is not None and i in self.label_map.ids
            else str(i)
            for i in ids[:12]
        )
        more = f", ... ({len(ids)} ids)" if len(ids) > 12 else ""
        lm = f", map={self.label_map.name}" if self.label_map and self.label_map.name else ""
        return f"LabelVolume(shape={self.shape}, ids=[{shown}{more}]{lm})"


@dataclass(frozen=True, eq=False, repr=False)
class Volume:
    """A 3D scan as a ``(Z, H, W)`` float32 stack of axial slices, with its provenance.

    Parameters
    ----------
    array : ndarray, (Z, H, W)
        Intensities; stored as float32. Must be finite.
    spacing : tuple of 3 float
        Voxel size along (Z, H, W) in mm.
    affine : ndarray, (4, 4), optional
        Voxel-to-world affine of the **original file** (not of ``array``; see
        :attr:`array_affine`). Default: an affine whose array axes point
        :data:`CANONICAL_AXCODES` with ``spacing``.
    orientation : tuple of 3 str, optional
        Axis codes of the original file (``nibabel.aff2axcodes(affine)``); derived when omitted.
    modality : {"CT", "MR", ""}
        Imaging modality ("" when unknown). "MRI" is accepted as "MR".
    case_id : str
        Scan id.
    labels : LabelVolume or ndarray, optional
        Labels on the same (Z, H, W) grid.
    path : Path, optional
        The file the volume was read from.

    Notes
    -----
    Use :func:`load_nifti` or :func:`load_alp_folder` to read files: they record how the array
    maps back onto the file's grid, which :meth:`mask_to_nifti` needs. A Volume built directly
    treats ``array``'s axes as the voxel axes of ``affine``.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    orientation: tuple[str, str, str] | None = None
    modality: str = ""
    case_id: str = ""
    labels: LabelVolume | None = None
    path: Path | None = None
    _grid: _SourceGrid | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        case = self.case_id or "<unnamed>"
        a = np.asarray(self.array)
        if a.ndim != 3:
            raise ValueError(
                f"Volume {case!r}: expected a 3D (Z, H, W) array, got shape {a.shape}. "
                "Select one channel/time point first."
            )
        if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
            raise TypeError(f"Volume {case!r}: expected a numeric array, got dtype {a.dtype}.")
        a = np.ascontiguousarray(a, dtype=np.float32)
        finite = np.isfinite(a)
        if not finite.all():
            n_nan = int(np.isnan(a).sum())
            n_bad = int(a.size - np.count_nonzero(finite))
            where = f" (file {self.path})" if self.path else ""
            raise ValueError(
                f"Volume {case!r}{where}: {n_bad} of {a.size} voxels are not finite "
                f"({n_nan} NaN, {n_bad - n_nan} inf). Replace them before use, e.g. "
                "np.nan_to_num(array, nan=array[np.isfinite(array)].min())."
            )
        object.__setattr__(self, "array", a)

        sp = tuple(float(s) for s in np.ravel(self.spacing))
        if len(sp) != 3 or not all(np.isfinite(s) and s > 0 for s in sp):
            raise ValueError(
                f"Volume {case!r}: spacing must be 3 positive numbers (z, y, x) in mm, "
                f"got {self.spacing!r}."
            )
        object.__setattr__(self, "spacing", sp)

        aff = _spl_affine(sp) if self.affine is None else np.asarray(self.affine, dtype=float)
        if aff.shape != (4, 4) or not np.isfinite(aff).all():
            raise ValueError(
                f"Volume {case!r}: affine must be a finite 4x4 matrix, got shape {aff.shape}."
            )
        object.__setattr__(self, "affine", aff)
        if self.orientation is None:
            object.__setattr__(self, "orientation", _axcodes(aff))
        else:
            object.__setattr__(self, "orientation", tuple(str(c) for c in self.orientation))

        mod = _MODALITY_ALIASES.get(str(self.modality).strip().upper())
        if mod is None:
            raise ValueError(
                f"Volume {case!r}: modality must be one of {_MODALITIES} ('' = unknown), "
                f"got {self.modality!r}."
            )
        object.__setattr__(self, "modality", mod)
        object.__setattr__(self, "case_id", str(self.case_id))
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

        if self.labels is not None:
            lab = self.labels if isinstance(self.labels, LabelVolume) else LabelVolume(self.labels)
            if lab.shape != a.shape:
                raise ValueError(
                    f"Volume {case!r}: image shape {a.shape} and label shape {lab.shape} differ; "
                    "labels must be on the image's voxel grid."
                )
            object.__setattr__(self, "labels", lab)

        if self._grid is None:
            object.__setattr__(
                self, "_grid", _SourceGrid(a.shape, _identity_ornt(), a.shape)  # type: ignore[arg-type]
            )
        elif any(f < n for f, n in zip(self._grid.full_shape, a.shape)):
            raise ValueError(
                f"Volume {case!r}: array shape {a.shape} does not fit its source grid "
                f"{self._grid.full_shape}."
            )

    # ---------------------------------------------------------------- properties
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(Z, H, W)``."""
        return self.array.shape  # type: ignore[return-value]

    @property
    def n_slices(self) -> int:
        return self.array.shape[0]

    @property
    def array_affine(self) -> np.ndarray:
        """Voxel-to-world affine of :attr:`array` (indices in (Z, H, W) order)."""
        g = self._grid
        assert g is not None
        raw_shape = tuple(int(n) for n in g.file_shape[:3])
        # inv_ornt_aff(ornt, shape) maps the *transformed* array's indices to the input's.
        to_file_idx = nio.inv_ornt_aff(g.to_array, raw_shape)
        return self.affine @ to_file_idx  # type: ignore[operator]

    @property
    def array_axcodes(self) -> tuple[str, str, str]:
        """Axis codes of :attr:`array`'s axes (closest world axes)."""
        return _axcodes(self.array_affine)

    def mask(self, label: int | str) -> np.ndarray:
        """Boolean (Z, H, W) mask of one class of :attr:`labels`."""
        if self.labels is None:
            raise ValueError(
                f"Volume {self.case_id!r} has no labels; load it with label_path=... "
                "(or from an ALP folder, which pairs label_<id>.nii.gz)."
            )
        return self.labels.mask(label)

    # ---------------------------------------------------------------- writing
    def mask_to_nifti(self, mask: np.ndarray, *, dtype: np.dtype | type = np.uint8) -> nib.Nifti1Image:
        """Put a (Z, H, W) mask back into the source file's grid.

        Parameters
        ----------
        mask : ndarray, (Z, H, W)
            Bool or integer mask in this volume's array layout.
        dtype : numpy dtype, keyword-only
            Stored data type (default uint8). Values must be representable exactly.

        Returns
        -------
        nibabel.Nifti1Image
            Same shape, affine, qform/sform (with their codes) and orientation as the file the
            volume was read from; voxels outside a crop (e.g. SABS's 257th row) are 0.
        """
        m = np.asarray(mask)
        if m.shape != self.shape:
            raise ValueError(
                f"mask_to_nifti: expected a mask of the volume's shape {self.shape} (Z, H, W), "
                f"got {m.shape}. Predict on volume.array, or stack per-slice masks with np.stack."
            )
        dt = np.dtype(dtype)
        cast = m.astype(dt)
        if not np.array_equal(cast, m):
            raise ValueError(
                f"mask_to_nifti: the mask's values (dtype {m.dtype}, range "
                f"[{m.min()}, {m.max()}]) do not fit dtype {dt} exactly; threshold it first "
                "(e.g. probs > 0.5) or pass dtype=np.float32."
            )
        g = self._grid
        assert g is not None
        raw = g.to_file(cast)
        if g.header is None:
            img = nib.Nifti1Image(raw, self.affine, dtype=dt)
            img.header.set_data_dtype(dt)
            return img
        hdr = g.header.copy()
        hdr.set_data_dtype(dt)
        hdr.set_slope_inter(None, None)
        hdr["cal_min"] = 0
        hdr["cal_max"] = 0
        # Passing the header's own best affine keeps qform/sform and their codes untouched.
        img = g.image_class(raw, hdr.get_best_affine(), header=hdr)
        return img

    def save_mask(self, mask: np.ndarray, path: str | os.PathLike, *, dtype: np.dtype | type = np.uint8) -> Path:
        """Write ``mask`` (Z, H, W) to ``path`` in the source file's grid; see :func:`save_mask`."""
        return save_mask(mask, path, like=self, dtype=dtype)

    def __repr__(self) -> str:
        z, h, w = self.shape
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        ori = "".join(self.orientation or ())
        arr = "".join(self.array_axcodes)
        lo, hi = (float(self.array.min()), float(self.array.max())) if self.array.size else (0, 0)
        lab = "None" if self.labels is None else repr(self.labels)
        mod = self.modality or "?"
        return (
            f"Volume(case={self.case_id!r}, {mod}, shape=(Z={z}, H={h}, W={w}), "
            f"spacing=({sp}) mm, orientation={ori} (array {arr}), "
            f"range=[{lo:.4g}, {hi:.4g}], labels={lab})"
        )


def _axcodes(affine: np.ndarray) -> tuple[str, str, str]:
    codes = nib.aff2axcodes(affine)
    return tuple(str(c) for c in codes)  # type: ignore[return-value]


# =====================================================================================
# NIfTI I/O
# =====================================================================================


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found: {path} (absolute: {path.absolute()}). Check the path and that "
            "the data were downloaded (see data/README.md)."
        )
    if path.is_dir():
        raise IsADirectoryError(f"{what} is a directory, expected a NIfTI file: {path}.")


def _read_image(path: Path, what: str) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """Load a NIfTI image and its data array (file order); damaged files -> ValueError."""
    _check_exists(path, what)
    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise ValueError(
            f"Could not read {what} {path} as NIfTI ({type(exc).__name__}: {exc}). The file is "
            "probably truncated or not a NIfTI file; re-download or re-export it."
        ) from exc
    return img, data


def _as_3d(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim == 3:
        return data
    if data.ndim > 3 and data.shape[:3] and all(n == 1 for n in data.shape[3:]):
        return data.reshape(data.shape[:3])
    raise ValueError(
        f"{path}: expected a 3D volume, got data of shape {data.shape}. For 4D files select one "
        "volume first (e.g. nibabel.funcs.four_to_three)."
    )


def _as_labels(data: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return data.astype(np.int32)
    if not np.isfinite(data).all():
        raise ValueError(f"Label file {path} contains NaN or inf values.")
    return np.rint(data).astype(np.int32)


def _header_of(img: nib.spatialimages.SpatialImage) -> tuple[object | None, type]:
    if isinstance(img, nib.Nifti2Image):
        return img.header.copy(), nib.Nifti2Image
    if isinstance(img, nib.Nifti1Image):
        return img.header.copy(), nib.Nifti1Image
    return None, nib.Nifti1Image  # another format: write a fresh NIfTI header


def _canonical_grid(img, data: np.ndarray, where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[float], _SourceGrid]:
    """Reorient an image's voxels to :data:`CANONICAL_AXCODES` (permutations and flips only).

    Returns (raw 3D data, canonical float32 array, affine, orientation transform, spacing in
    array axis order, the source grid that lets masks be written back exactly).
    """
    raw = _as_3d(data, where)
    affine = np.asarray(img.affine, dtype=float)
    if not np.isfinite(affine).all():
        raise ValueError(f"{where}: the affine is not finite:\n{affine}")
    src = nio.io_orientation(affine)
    if np.isnan(src).any():
        raise ValueError(
            f"{where}: cannot tell the voxel axes' directions from the affine (degenerate "
            f"matrix):\n{affine}\nFix the image's qform/sform."
        )
    to_array = nio.ornt_transform(src, nio.axcodes2ornt(CANONICAL_AXCODES))
    array = nio.apply_orientation(raw.astype(np.float32), to_array)
    vox = nib.affines.voxel_sizes(affine)
    spacing = [0.0, 0.0, 0.0]
    for i in range(3):
        spacing[int(to_array[i, 0])] = float(vox[i])
    header, klass = _header_of(img)
    grid = _SourceGrid(
        file_shape=tuple(int(n) for n in data.shape),
        to_array=to_array,
        full_shape=tuple(int(n) for n in array.shape),  # type: ignore[arg-type]
        header=header,  # type: ignore[arg-type]
        image_class=klass,
    )
    return raw, np.ascontiguousarray(array), affine, to_array, spacing, grid


def load_nifti(
    path: str | os.PathLike,
    *,
    label_path: str | os.PathLike | None = None,
    modality: str = "",
    case_id: str | None = None,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
) -> Volume:
    """Read a NIfTI scan (and optionally its label file) into a canonical axial :class:`Volume`.

    Parameters
    ----------
    path : path-like
        The image (``.nii`` or ``.nii.gz``; any orientation, oblique affines included).
    label_path : path-like, optional, keyword-only
        A label file on the same voxel grid (same shape and affine). Float labels are rounded.
    modality : {"CT", "MR", ""}, keyword-only
        Recorded on the volume.
    case_id : str, optional, keyword-only
        Default: the file name without ``.nii``/``.nii.gz``.
    label_map : LabelMap, dataset name, or {id: name}, optional, keyword-only
        Names of the label ids.

    Returns
    -------
    Volume
        ``array`` is (Z, H, W) float32 with axes closest to :data:`CANONICAL_AXCODES`
        (inferior->superior, anterior->posterior, right->left); only permutations and flips
        are applied. ``affine`` / ``orientation`` describe the original file;
        :meth:`Volume.mask_to_nifti` inverts the reorientation exactly.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file is damaged or not 3D, contains NaN/inf, or image and labels do not share a grid.
    """
    path = Path(path)
    img, data = _read_image(path, "Image file")
    raw, array, affine, to_array, spacing, grid = _canonical_grid(img, data, path)

    labels = None
    if label_path is not None:
        label_path = Path(label_path)
        limg, ldata = _read_image(label_path, "Label file")
        lraw = _as_3d(ldata, label_path)
        if lraw.shape != raw.shape:
            raise ValueError(
                f"Label file {label_path} has shape {lraw.shape}, image {path} has {raw.shape}; "
                "they must share one voxel grid. Resample the labels onto the image first."
            )
        laff = np.asarray(limg.affine, dtype=float)
        if not np.allclose(laff, affine, rtol=1e-4, atol=1e-3):
            diff = float(np.abs(laff - affine).max())
            raise ValueError(
                f"Label file {label_path} and image {path} have different affines (max "
                f"difference {diff:.4g}):\nimage:\n{affine}\nlabels:\n{laff}\n"
                "They must share one voxel grid; resample the labels onto the image first."
            )
        labels = LabelVolume(
            nio.apply_orientation(_as_labels(lraw, label_path), to_array),
            LabelMap.coerce(label_map),
        )

    return Volume(
        array=array,
        spacing=tuple(spacing),  # type: ignore[arg-type]
        affine=affine,
        orientation=_axcodes(affine),
        modality=modality,
        case_id=_stem(path) if case_id is None else str(case_id),
        labels=labels,
        path=path,
        _grid=grid,
    )


def _stem(path: Path) -> str:
    name = path.name
    for suf in _NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def save_mask(
    mask: np.ndarray,
    path: str | os.PathLike,
    *,
    like: Volume,
    dtype: np.dtype | type = np.uint8,
) -> Path:
    """Write a (Z, H, W) mask as NIfTI in the grid of the file ``like`` was read from.

    The file is written atomically: to a temporary file in the same folder, then renamed over
    ``path``, so an error never leaves a half-written file. Missing parent folders are created.

    Parameters
    ----------
    mask : ndarray, (Z, H, W)
        In ``like.array``'s layout.
    path : path-like
        Output file, ending in ``.nii.gz`` or ``.nii``.
    like : Volume, keyword-only
        The volume the mask belongs to.
    dtype : numpy dtype, keyword-only
        Stored data type (default uint8).

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(like, Volume):
        raise TypeError(f"save_mask: like= must be the Volume the mask belongs to, got {type(like).__name__}.")
    path = Path(path)
    suffix = next((s for s in _NIFTI_SUFFIXES if path.name.endswith(s)), None)
    if suffix is None:
        raise ValueError(
            f"save_mask writes NIfTI: the path must end in .nii.gz or .nii, got {path.name!r}."
        )
    img = like.mask_to_nifti(mask, dtype=dtype)
    _atomic_save(img, path, suffix)
    return path


def label_dtype(max_id: int) -> np.dtype:
    """The smallest unsigned type for a label volume whose largest id is ``max_id``.

    uint8 up to 255, uint16 up to 65535; larger ids raise ValueError.
    """
    m = int(max_id)
    if m < 0:
        raise ValueError(f"Label ids must be >= 0, got {m}.")
    if m <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if m <= np.iinfo(np.uint16).max:
        return np.dtype(np.uint16)
    raise ValueError(f"Label id {m} does not fit uint16 (max 65535); use smaller ids.")


def array_axes_in_file(volume: Volume) -> tuple[tuple[int, bool], ...]:
    """Where each axis of ``volume.array`` lies in its source file.

    Returns
    -------
    tuple of 3 (file_axis, reversed)
        For array axes (Z, H, W): the voxel axis of the file (0, 1, 2 = i, j, k) and whether
        the array runs against it. E.g. for a RAS file read by :func:`load_nifti`, ``Z`` is
        file axis 2, not reversed, so array slice ``z`` is file index ``k = z``; when
        ``reversed`` it is ``k = n - 1 - z``.
    """
    g = volume._grid
    assert g is not None
    out = []
    for a in range(3):
        (i,) = [int(k) for k in range(3) if int(g.to_array[k, 0]) == a]
        out.append((i, bool(g.to_array[i, 1] < 0)))
    return tuple(out)


def volume_from_nifti_image(
    img: nib.spatialimages.SpatialImage,
    *,
    modality: str = "",
    case_id: str = "",
    path: str | os.PathLike | None = None,
) -> Volume:
    """A :class:`Volume` from an in-memory NIfTI image, exactly as :func:`load_nifti` reads files.

    Used for images that never were a file (e.g. a DICOM series, :mod:`fsm2kit.dicom`): the
    array is reoriented to :data:`CANONICAL_AXCODES` and :meth:`Volume.mask_to_nifti` writes
    masks back into ``img``'s grid (shape, affine, qform/sform).

    Parameters
    ----------
    img : nibabel image
        A 3D image (4D with trailing singleton axes is squeezed).
    modality, case_id : str, keyword-only
    path : path-like, optional, keyword-only
        Recorded as the volume's source (e.g. the DICOM folder).
    """
    where = Path(path) if path is not None else Path(case_id or "<in-memory image>")
    _, array, affine, _, spacing, grid = _canonical_grid(img, np.asarray(img.dataobj), where)
    return Volume(
        array=array,
        spacing=tuple(spacing),  # type: ignore[arg-type]
        affine=affine,
        orientation=_axcodes(affine),
        modality=modality,
        case_id=str(case_id),
        path=Path(path) if path is not None else None,
        _grid=grid,
    )


def load_label_nifti(
    path: str | os.PathLike,
    *,
    like: Volume,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
    what: str = "Label file",
) -> LabelVolume:
    """Read a label (or mask) file that must lie on the voxel grid of ``like``, strictly.

    Unlike ``load_nifti(..., label_path=...)``, which rounds float labels, values that are not
    whole numbers are refused (a probability map or a resampled mask is not a label map).

    Parameters
    ----------
    path : path-like
        NIfTI label file.
    like : Volume, keyword-only
        The image the labels belong to (from :func:`load_nifti` or
        :func:`volume_from_nifti_image`): same shape and affine required.
    label_map : LabelMap, dataset name or {id: name}, optional, keyword-only
    what : str, keyword-only
        How to call the file in messages (e.g. "Support mask").

    Returns
    -------
    LabelVolume
        In ``like.array``'s (Z, H, W) layout, integer ids (int32).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Damaged file, another grid (shape or affine), NaN/inf, non-integer or negative values.
    """
    if not isinstance(like, Volume):
        raise TypeError(f"load_label_nifti: like= must be a Volume, got {type(like).__name__}.")
    path = Path(path)
    img, data = _read_image(path, what)
    raw = _as_3d(data, path)
    grid = like._grid
    assert grid is not None
    file_shape = tuple(int(n) for n in grid.file_shape[:3])
    src = f"the image {like.path}" if like.path is not None else f"the image {like.case_id!r}"
    if raw.shape != file_shape:
        raise ValueError(
            f"{what} {path} has shape {raw.shape} but {src} has {file_shape}: they must share one "
            "voxel grid. Draw the mask on this image, or resample it onto the image first."
        )
    laff = np.asarray(img.affine, dtype=float)
    if not np.allclose(laff, like.affine, rtol=1e-4, atol=1e-3):
        diff = float(np.abs(laff - like.affine).max())
        raise ValueError(
            f"{what} {path} and {src} have different affines (max difference {diff:.4g}); they "
            f"must share one voxel grid.\nimage:\n{like.affine}\nmask:\n{laff}\nResample the "
            "mask onto the image first."
        )
    if not (np.issubdtype(raw.dtype, np.integer) or raw.dtype == bool):
        if not np.isfinite(raw).all():
            raise ValueError(f"{what} {path} contains NaN or inf values; it is not a label map.")
        frac = raw != np.round(raw)
        if frac.any():
            vals = np.unique(raw[frac])[:5].tolist()
            raise ValueError(
                f"{what} {path} is not a label map: {int(frac.sum())} voxels hold non-integer "
                f"values such as {vals}. Expected a binary mask (0/1) or integer label ids; "
                "threshold probabilities first (e.g. p > 0.5)."
            )
    lab = np.asarray(raw)
    if lab.size and lab.min() < 0:
        raise ValueError(f"{what} {path} has negative values (min {lab.min()}); label ids are >= 0.")
    lab = lab.astype(np.int64)
    if lab.size and lab.max() > np.iinfo(np.int32).max:
        raise ValueError(f"{what} {path} has label ids beyond int32.")
    arr = nio.apply_orientation(lab.astype(np.int32), grid.to_array)
    z, h, w = like.shape
    arr = arr[:z, :h, :w]
    return LabelVolume(np.ascontiguousarray(arr), LabelMap.coerce(label_map))


def _atomic_save(img: nib.spatialimages.SpatialImage, path: Path, suffix: str) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=parent)
    except OSError as exc:
        raise PermissionError(
            f"Cannot write {path}: the folder {parent} is not writable or cannot be created "
            f"({type(exc).__name__}: {exc}). Choose another output folder or fix its permissions."
        ) from exc
    os.close(fd)
    try:
        nib.save(img, tmp)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# =====================================================================================
# SSL-ALPNet preprocessed folders
# =====================================================================================

_ALP_FILE = re.compile(r"^(image|label)_(\d+)\.nii\.gz$")
_ALP_MODALITY = {"SABS": "CT", "CHAOST2": "MR"}


@dataclass(frozen=True, eq=False, repr=False)
class ALPDataset:
    """An SSL-ALPNet preprocessed folder (``image_<id>.nii.gz`` + ``label_<id>.nii.gz``).

    Volumes are read lazily with :meth:`load`, in the protocol's layout (PROTOCOL.md 1.3):
    SimpleITK ``(z, y, x)`` array order, no reorientation, float32 image, integer labels, and
    for ``crop256=True`` the in-plane crop ``[:, :256, :256]`` (ALP/FS-MedSAM2 variant; GMRD
    keeps SABS's 257x257).

    Attributes
    ----------
    dataset : str
        ``"SABS"`` or ``"CHAOST2"``.
    root : Path
        The folder.
    scan_ids : tuple of str
        Scan ids in numeric order.
    label_map : LabelMap
    crop256 : bool
    modality : str
    """

    dataset: str
    root: Path
    scan_ids: tuple[str, ...]
    label_map: LabelMap
    crop256: bool = True
    modality: str = ""
    _files: tuple[tuple[str, Path, Path], ...] = field(default=(), repr=False)

    def __len__(self) -> int:
        return len(self.scan_ids)

    def __contains__(self, scan_id: object) -> bool:
        try:
            self._key(scan_id)  # type: ignore[arg-type]
        except (KeyError, ValueError, TypeError):
            return False
        return True

    def _key(self, scan_id: int | str) -> int:
        s = str(scan_id).strip()
        if isinstance(scan_id, (bool, np.bool_)) or not re.fullmatch(r"\d+", s):
            raise ValueError(f"Scan ids are non-negative integers, got {scan_id!r}.")
        s = str(int(s))
        if s not in self.scan_ids:
            raise KeyError(
                f"{self.dataset} folder {self.root} has no scan {scan_id!r}; available: "
                f"{', '.join(self.scan_ids)}."
            )
        return self.scan_ids.index(s)

    def image_path(self, scan_id: int | str) -> Path:
        return self._files[self._key(scan_id)][1]

    def label_path(self, scan_id: int | str) -> Path:
        return self._files[self._key(scan_id)][2]

    def load(self, scan_id: int | str) -> Volume:
        """Read one scan with its labels as a :class:`Volume` (array (Z, H, W), file order)."""
        sid, ipath, lpath = self._files[self._key(scan_id)]
        img, data = _read_image(ipath, "Image file")
        raw = _as_3d(data, ipath)
        _, ldata = _read_image(lpath, "Label file")
        lraw = _as_3d(ldata, lpath)
        if lraw.shape != raw.shape:
            raise ValueError(
                f"{self.dataset} scan {sid}: image {ipath.name} has shape {raw.shape} but label "
                f"{lpath.name} has {lraw.shape}; the preprocessing output is inconsistent."
            )
        # nibabel gives (x, y, z); SimpleITK's GetArrayFromImage gives (z, y, x).
        to_array = np.array([[2, 1], [1, 1], [0, 1]], dtype=float)
        image = np.transpose(raw, (2, 1, 0)).astype(np.float32)
        labels = np.transpose(_as_labels(lraw, lpath), (2, 1, 0))
        full_shape = image.shape
        if self.crop256:
            image, labels = image[:, :256, :256], labels[:, :256, :256]
        affine = np.asarray(img.affine, dtype=float)
        vox = nib.affines.voxel_sizes(affine)
        header, klass = _header_of(img)
        grid = _SourceGrid(
            file_shape=tuple(int(n) for n in data.shape),
            to_array=to_array,
            full_shape=tuple(int(n) for n in full_shape),  # type: ignore[arg-type]
            header=header,  # type: ignore[arg-type]
            image_class=klass,
        )
        return Volume(
            array=np.ascontiguousarray(image),
            spacing=(float(vox[2]), float(vox[1]), float(vox[0])),
            affine=affine,
            orientation=_axcodes(affine),
            modality=self.modality,
            case_id=sid,
            labels=LabelVolume(np.ascontiguousarray(labels), self.label_map),
            path=ipath,
            _grid=grid,
        )

    def volumes(self) -> Iterator[Volume]:
        """Load the scans one by one, in :attr:`scan_ids` order."""
        for sid in self.scan_ids:
            yield self.load(sid)

    def __repr__(self) -> str:
        ids = list(self.scan_ids)
        shown = ", ".join(ids if len(ids) <= 8 else ids[:4] + ["..."] + ids[-3:])
        return (
            f"ALPDataset({self.dataset!r}, root={str(self.root)!r}, {len(ids)} scans [{shown}], "
            f"{self.modality or '?'}, crop256={self.crop256}, labels={len(self.label_map)})"
        )


def load_alp_folder(
    root: str | os.PathLike,
    dataset: str,
    *,
    ids: Iterable[int | str] | None = None,
    crop256: bool = True,
) -> ALPDataset:
    """Index an SSL-ALPNet preprocessed folder (``sabs_CT_normalized`` / ``chaos_MR_T2_normalized``).

    Parameters
    ----------
    root : path-like
        Folder with ``image_<id>.nii.gz`` and ``label_<id>.nii.gz`` (other files are ignored,
        e.g. ``superpix-*`` and ``classmap_1.json``).
    dataset : {"SABS", "CHAOST2"}
    ids : iterable of int or str, optional, keyword-only
        Restrict to these scan ids (all of them must exist).
    crop256 : bool, keyword-only
        Crop to ``[:, :256, :256]`` (ALP / FS-MedSAM2, default) or keep the stored size (GMRD).

    Returns
    -------
    ALPDataset
        Nothing is read until :meth:`ALPDataset.load`.
    """
    key = _dataset_key(dataset)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{key} folder not found: {root}. Expected the SSL-ALPNet preprocessing output "
            "(see data/README.md and PROTOCOL.md section 1)."
        )
    images: dict[str, tuple[str, Path]] = {}
    labels: dict[str, tuple[str, Path]] = {}
    others: list[str] = []
    for p in sorted(root.iterdir()):
        m = _ALP_FILE.match(p.name)
        if not m:
            others.append(p.name)
            continue
        sid = str(int(m.group(2)))
        (images if m.group(1) == "image" else labels)[sid] = (m.group(2), p)
    if not images:
        found = ", ".join(others[:10]) + (" ..." if len(others) > 10 else "") or "nothing"
        raise ValueError(
            f"No image_<id>.nii.gz files in {root}; found: {found}. Point root at the "
            f"SSL-ALPNet output folder for {key}."
        )
    unpaired = sorted(set(images) ^ set(labels), key=int)
    if unpaired:
        raise ValueError(
            f"{root}: image and label files do not pair up; ids with only one of the two: "
            f"{', '.join(unpaired)}. Each scan needs image_<id>.nii.gz and label_<id>.nii.gz."
        )
    available = sorted(images, key=int)
    if ids is not None:
        wanted = []
        for i in ids:
            s = str(i).strip()
            if not re.fullmatch(r"\d+", s):
                raise ValueError(f"Scan ids are non-negative integers, got {i!r}.")
            wanted.append(str(int(s)))
        missing = [w for w in wanted if w not in images]
        if missing:
            raise ValueError(
                f"Scan ids {missing} are not in {root}; available: {', '.join(available)}."
            )
        available = sorted(set(wanted), key=int)
    files = tuple((sid, images[sid][1], labels[sid][1]) for sid in available)
    return ALPDataset(
        dataset=key,
        root=root,
        scan_ids=tuple(available),
        label_map=LabelMap.from_dataset(key),
        crop256=bool(crop256),
        modality=_ALP_MODALITY[key],
        _files=files,
    )


# =====================================================================================
# FS-MedSAM2 npz dumps
# =====================================================================================

_NPZ_NAME = re.compile(r"^(?P<k>\d+)_(?P<t>\d+)_case_(?P<scan>.+)_z(?P<z>\d+)\.npz$")


class NpzName(NamedTuple):
    """Parsed ``{k}_{t}_case_{scanid}_z{z}.npz`` (PROTOCOL.md 6.1).

    Attributes
    ----------
    k : int
        1-based position of the class in the run's (ascending) test-label set.
    t : int
        1-based slice counter over the fold's validation set, restarting per class.
    scan_id : str
        Query scan id.
    z : int
        Query slice index.
    """

    k: int
    t: int
    scan_id: str
    z: int

    @property
    def group_key(self) -> str:
        """The FS-MedSAM2 notebook's grouping key ``"{scan_id}_{k}"``."""
        return f"{self.scan_id}_{self.k}"


def parse_npz_name(name: str | os.PathLike) -> NpzName:
    """Parse an FS-MedSAM2 npz file name, e.g. ``1_13_case_1_z12.npz`` -> ``(1, 13, "1", 12)``."""
    base = os.path.basename(os.fspath(name))
    m = _NPZ_NAME.match(base)
    if not m:
        raise ValueError(
            f"{base!r} is not an FS-MedSAM2 npz name; expected '{{k}}_{{t}}_case_{{scanid}}_"
            "z{z}.npz', e.g. '1_13_case_1_z12.npz'."
        )
    return NpzName(int(m["k"]), int(m["t"]), m["scan"], int(m["z"]))


def _first_channel(a: np.ndarray, what: str, fname: str) -> np.ndarray:
    if a.ndim != 4 or a.shape[0] != 1 or a.shape[1] < 1:
        raise ValueError(f"{fname}: {what} should have shape (1, 3, H, W), got {a.shape}.")
    ch = a[0]
    if not all(np.array_equal(ch[0], ch[c]) for c in range(1, ch.shape[0])):
        raise ValueError(
            f"{fname}: the {ch.shape[0]} channels of {what} differ; the FS-MedSAM2 dumps repeat "
            "one grey image on 3 channels, so this file is not such a dump."
        )
    return np.ascontiguousarray(ch[0], dtype=np.float32)


def _plane(a: np.ndarray, what: str, fname: str) -> np.ndarray:
    if a.ndim != 3 or a.shape[0] != 1:
        raise ValueError(f"{fname}: {what} should have shape (1, H, W), got {a.shape}.")
    return a[0]


@dataclass(frozen=True, eq=False)
class _NpzSlice:
    name: NpzName
    fname: str
    label: int
    image: np.ndarray
    gt: np.ndarray
    sup_hash: str
    sup_image: np.ndarray
    sup_mask: np.ndarray
    n_scan: int | None


def _read_npz(path: Path) -> _NpzSlice:
    name = parse_npz_name(path.name)
    need = ("query_images", "query_labels", "sup_img_part", "sup_fgm_part", "labels")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in need if k not in f.files]
            if missing:
                raise ValueError(
                    f"{path.name}: missing keys {missing}; an FS-MedSAM2 dump has "
                    f"{list(need)} (+ sup_bgm_part, n_scan). Found {sorted(f.files)}."
                )
            arrs = {k: f[k] for k in need}
            n_scan = int(f["n_scan"]) if "n_scan" in f.files else None
    except (OSError, EOFError, zlib.error, struct.error) as exc:
        raise ValueError(f"Could not read {path} as npz ({type(exc).__name__}: {exc}).") from exc
    lab = np.ravel(arrs["labels"])
    if lab.size != 1:
        raise ValueError(f"{path.name}: 'labels' should hold one class id, got {arrs['labels']!r}.")
    image = _first_channel(arrs["query_images"], "query_images", path.name)
    gt = _plane(arrs["query_labels"], "query_labels", path.name) > 0.5
    sup = arrs["sup_img_part"]
    sup_image = _first_channel(sup, "sup_img_part", path.name)
    sup_mask = _plane(arrs["sup_fgm_part"], "sup_fgm_part", path.name) > 0.5
    if gt.shape != image.shape or sup_image.shape != image.shape or sup_mask.shape != image.shape:
        raise ValueError(
            f"{path.name}: query image {image.shape}, query label {gt.shape}, support image "
            f"{sup_image.shape} and support mask {sup_mask.shape} must share one (H, W)."
        )
    h = hashlib.sha1()
    h.update(str((sup.shape, sup.dtype.str)).encode())
    h.update(np.ascontiguousarray(sup).tobytes())
    return _NpzSlice(
        name=name,
        fname=path.name,
        label=int(lab[0]),
        image=image,
        gt=gt,
        sup_hash=h.hexdigest(),
        sup_image=sup_image,
        sup_mask=sup_mask,
        n_scan=n_scan,
    )


def _scan_sort_key(scan_id: str) -> tuple:
    return (0, int(scan_id), "") if scan_id.isdigit() else (1, 0, scan_id)


def load_npz_episodes(
    folder: str | os.PathLike, *, dataset: str = "CHAOST2", npart: int = 3
) -> list[Episode]:
    """Turn a folder of FS-MedSAM2 npz dumps into one :class:`Episode` per (scan, class).

    Parameters
    ----------
    folder : path-like
        Files ``{k}_{t}_case_{scanid}_z{z}.npz`` (PROTOCOL.md 6.1); non-npz files are skipped.
        One folder must hold one label set (the two sets' names collide, PROTOCOL.md A8).
    dataset : {"CHAOST2", "SABS"}, keyword-only
        Names the class ids (``labels`` in each file).
    npart : int, keyword-only
        Number of chunks of the [ALP] protocol (3).

    Returns
    -------
    list of Episode
        Sorted by (numeric scan id, class id). Query slices sorted by z: ``images`` is channel 0
        of ``query_images`` (float32), ``labels`` is ``query_labels > 0.5``. Files with identical
        ``sup_img_part`` share one :class:`Support` (mask ``sup_fgm_part > 0.5``, ``z`` and
        ``case_id`` unknown). Chunks follow [ALP]: ``min(floor(npart (z - z_min) /
        (z_max - z_min)), npart - 1)`` over the dumped z range; a support's chunk is that of
        its query slices.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    ValueError
        No npz files, a badly named or malformed file, mixed channels, a support used in two
        chunks, two supports for one chunk, or a duplicate (scan, class, z).
    """
    key = _dataset_key(dataset)
    names = DATASET_LABELS[key]
    if int(npart) < 1:
        raise ValueError(f"npart must be >= 1, got {npart}.")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"npz folder not found: {folder} (absolute: {folder.absolute()}).")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".npz")
    if not paths:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(f"No .npz files in {folder}; found: {found or 'nothing'}.")
    for p in paths:  # name check first, so a bad name fails before any data is read
        parse_npz_name(p.name)

    groups: dict[tuple[str, int], list[_NpzSlice]] = {}
    for p in paths:
        s = _read_npz(p)
        if s.label not in names:
            raise ValueError(
                f"{s.fname}: class id {s.label} is not a {key} label ({dict(names)}); "
                "pass the right dataset=... ('SABS' or 'CHAOST2')."
            )
        groups.setdefault((s.name.scan_id, s.label), []).append(s)

    episodes: list[Episode] = []
    for (scan_id, label) in sorted(groups, key=lambda g: (_scan_sort_key(g[0]), g[1])):
        slices = sorted(groups[(scan_id, label)], key=lambda s: s.name.z)
        zs = [s.name.z for s in slices]
        dup = sorted({z for z in zs if zs.count(z) > 1})
        if dup:
            files = [s.fname for s in slices if s.name.z in dup]
            raise ValueError(
                f"Scan {scan_id}, class {label}: slices z={dup} occur more than once ({files}). "
                "Dumps of different label sets or folds were mixed in one folder; keep one run "
                "per folder."
            )
        z_min, z_max = zs[0], zs[-1]
        chunks = [alp_chunk_index(z, z_min, z_max, int(npart)) for z in zs]

        sup_chunks: dict[str, set[int]] = {}
        sup_first: dict[str, _NpzSlice] = {}
        for s, c in zip(slices, chunks):
            sup_chunks.setdefault(s.sup_hash, set()).add(c)
            first = sup_first.setdefault(s.sup_hash, s)
            if not np.array_equal(first.sup_mask, s.sup_mask):
                raise ValueError(
                    f"{first.fname} and {s.fname} share a support image but not its mask."
                )
        claimed: dict[int, str] = {}
        supports = []
        for hsh, cs in sup_chunks.items():
            users = [s.fname for s in slices if s.sup_hash == hsh]
            if len(cs) > 1:
                raise ValueError(
                    f"Scan {scan_id}, class {label}: one support image is used by query slices "
                    f"of chunks {sorted(cs)} ({users}); with npart={npart} each chunk has its "
                    "own support. Check npart or the dump."
                )
            (c,) = cs
            if c in claimed:
                raise ValueError(
                    f"Scan {scan_id}, class {label}: two different support images claim chunk "
                    f"{c} (used by {claimed[c]} and {users[0]}); check npart or the dump."
                )
            claimed[c] = users[0]
            first = sup_first[hsh]
            try:
                supports.append(Support(image=first.sup_image, mask=first.sup_mask, chunk=c))
            except ValueError as exc:
                raise ValueError(f"Support of chunk {c} (file {first.fname}): {exc}") from exc
        supports.sort(key=lambda s: s.chunk)

        episodes.append(
            Episode(
                case_id=scan_id,
                label=label,
                label_name=names[label],
                z=np.asarray(zs, dtype=np.int64),
                images=np.stack([s.image for s in slices]).astype(np.float32, copy=False),
                labels=np.stack([s.gt for s in slices]),
                chunks=np.asarray(chunks, dtype=np.int64),
                supports=tuple(supports),
                dataset=key,
                fold=None,
                variant="ALP",
                npart=int(npart),
                meta={
                    "source": str(folder),
                    "files": tuple(s.fname for s in slices),
                    "group_key": slices[0].name.group_key,
                    "k": sorted({s.name.k for s in slices}),
                    "n_scan": sorted({s.n_scan for s in slices if s.n_scan is not None}),
                },
            )
        )
    return episodes


# =====================================================================================
# Bundled example data
# =====================================================================================

#: TotalSegmentator "total" ids of the bundled CT's mask that data/README.md names.
_TOTALSEG_LABELS = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
}


def example_dir() -> Path:
    """The bundled example data folder (``data/examples`` of the repository).

    Set the environment variable ``FSM2KIT_DATA`` to use another folder with the same layout.
    """
    env = os.environ.get("FSM2KIT_DATA")
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "examples"
    if not d.is_dir():
        src = "FSM2KIT_DATA" if env else "the repository's data/examples"
        raise FileNotFoundError(
            f"Example data folder not found: {d} (from {src}). Use a source checkout of fsm2kit "
            "or set FSM2KIT_DATA to a folder holding chaos_t2spir_case1_liver/ and "
            "totalseg_ct_small/."
        )
    return d


def example_episodes() -> list[Episode]:
    """The bundled CHAOS-T2 case 1 liver episode (FS-MedSAM2 example dump, 24 slices z12..35)."""
    return load_npz_episodes(example_dir() / "chaos_t2spir_case1_liver", dataset="CHAOST2")


def example_ct(*, with_labels: bool = True) -> Volume:
    """The bundled small abdominal CT (TotalSegmentator reference files; model-made masks)."""
    d = example_dir() / "totalseg_ct_small"
    return load_nifti(
        d / "example_ct_sm.nii.gz",
        label_path=d / "example_seg.nii.gz" if with_labels else None,
        modality="CT",
        case_id="totalseg_example",
        label_map=LabelMap(_TOTALSEG_LABELS, name="TotalSegmentator (partial)"),
    )
