"""Volumes: a scan as a ``(Z, H, W)`` stack of axial slices, its labels, and its source grid.

:class:`Volume` holds the intensities with their spacing and provenance, :class:`LabelVolume`
the label ids on the same grid, and :class:`SourceGrid` how the array maps back onto the voxel
grid of the file it was read from, so a mask predicted on the array is written back into
**exactly** the input file's grid (shape, affine, qform/sform and orientation;
:meth:`Volume.mask_to_nifti`). The readers are :mod:`fsm2kit.io.nifti` (any NIfTI file),
:mod:`fsm2kit.io.alp` (the SSL-ALPNet folders) and :mod:`fsm2kit.io.dicom`.

Array conventions
-----------------
Every :class:`Volume` array is ``(Z, H, W)``: axis 0 indexes axial slices. For files read with
:func:`~fsm2kit.io.nifti.load_nifti` the array is reoriented to the voxel axes closest to
``('S', 'P', 'L')`` (see :data:`CANONICAL_AXCODES`):

* axis 0 (``Z``) runs inferior -> superior,
* axis 1 (``H``, image rows) runs anterior -> posterior, so anterior is at the top,
* axis 2 (``W``, image columns) runs patient right -> left, so the patient's right is on the
  image's left.

``plt.imshow(volume.array[z])`` therefore shows the usual radiological axial view. Only axis
permutations and flips are applied (never resampling), so oblique files keep their voxels and
map to the closest axes. Volumes from :func:`~fsm2kit.io.alp.load_alp_folder` are *not*
reoriented (the protocol uses the stored array order as is); their ``array_axcodes`` say what
the axes are.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from ..protocol.labels import LabelMap

__all__ = [
    "CANONICAL_AXCODES",
    "SourceGrid",
    "LabelVolume",
    "Volume",
    "label_dtype",
    "array_axes_in_file",
    "describe_grid",
    "align_to_grid",
]

#: Axis codes of a :func:`~fsm2kit.io.nifti.load_nifti` array: (Z, H, W) = inferior->Superior,
#: anterior->Posterior, right->Left (nibabel codes name the direction of increasing index).
CANONICAL_AXCODES: tuple[str, str, str] = ("S", "P", "L")

_MODALITIES = ("CT", "MR", "")
_MODALITY_ALIASES = {"CT": "CT", "MR": "MR", "MRI": "MR", "": ""}


def _identity_ornt() -> np.ndarray:
    return np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclass(frozen=True, eq=False)
class SourceGrid:
    """How a Volume's (Z, H, W) array maps back onto the voxel grid of its source file.

    ``file array`` --squeeze--> 3D ``raw`` --apply_orientation(to_array)--> ``full``
    --crop [:Z, :H, :W]--> the Volume's array.

    Attributes
    ----------
    file_shape : tuple of int
        Shape of the file's data array (trailing singleton axes included).
    to_array : ndarray, (3, 2)
        nibabel orientation transform, file axes -> array axes.
    full_shape : tuple of 3 int
        The array's shape before the crop.
    header : Nifti1Header or Nifti2Header, optional
        The source header (None: write a fresh one).
    image_class : type
        ``nibabel.Nifti1Image`` or ``Nifti2Image``.
    """

    file_shape: tuple[int, ...]
    to_array: np.ndarray  # (3, 2) nibabel orientation transform, file axes -> array axes
    full_shape: tuple[int, int, int]  # array shape before the crop
    header: nib.Nifti1Header | None = None  # source header (Nifti1/Nifti2), None: make one
    image_class: type = nib.Nifti1Image

    @classmethod
    def of_image(
        cls,
        img: nib.spatialimages.SpatialImage,
        *,
        file_shape: tuple[int, ...],
        to_array: np.ndarray,
        full_shape: tuple[int, int, int],
    ) -> SourceGrid:
        """The grid of an array read from ``img``, keeping a copy of its NIfTI header.

        Headers of other formats are not kept: masks are then written with a fresh NIfTI-1
        header.
        """
        if isinstance(img, nib.Nifti2Image):
            header, klass = img.header.copy(), nib.Nifti2Image
        elif isinstance(img, nib.Nifti1Image):
            header, klass = img.header.copy(), nib.Nifti1Image
        else:
            header, klass = None, nib.Nifti1Image  # another format: write a fresh NIfTI header
        return cls(
            file_shape=tuple(int(n) for n in file_shape),
            to_array=to_array,
            full_shape=tuple(int(n) for n in full_shape),  # type: ignore[arg-type]
            header=header,  # type: ignore[arg-type]
            image_class=klass,
        )

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
    source_grid : SourceGrid, optional
        How ``array`` maps back onto the voxel grid of the source file (set by the readers).
        Default: ``array``'s axes are the file's voxel axes.

    Notes
    -----
    Use :func:`~fsm2kit.io.nifti.load_nifti` or :func:`~fsm2kit.io.alp.load_alp_folder` to read
    files: they record how the array maps back onto the file's grid, which
    :meth:`mask_to_nifti` needs. A Volume built directly treats ``array``'s axes as the voxel
    axes of ``affine``.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    affine: np.ndarray | None = None
    orientation: tuple[str, str, str] | None = None
    modality: str = ""
    case_id: str = ""
    labels: LabelVolume | None = None
    path: Path | None = None
    source_grid: SourceGrid | None = field(default=None, repr=False)

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

        if self.source_grid is None:
            object.__setattr__(
                self, "source_grid", SourceGrid(a.shape, _identity_ornt(), a.shape)  # type: ignore[arg-type]
            )
        elif any(f < n for f, n in zip(self.source_grid.full_shape, a.shape)):
            raise ValueError(
                f"Volume {case!r}: array shape {a.shape} does not fit its source grid "
                f"{self.source_grid.full_shape}."
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
        g = self.source_grid
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
        g = self.source_grid
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
        """Write ``mask`` (Z, H, W) to ``path`` in the source file's grid; see
        :func:`fsm2kit.io.nifti.save_mask`."""
        from .nifti import save_mask  # the writer lives with the reader

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
    g = volume.source_grid
    assert g is not None
    out = []
    for a in range(3):
        (i,) = [int(k) for k in range(3) if int(g.to_array[k, 0]) == a]
        out.append((i, bool(g.to_array[i, 1] < 0)))
    return tuple(out)


def describe_grid(affine: np.ndarray, shape: tuple[int, ...]) -> str:
    """A voxel grid in world terms: ``"RAS, spacing 0.8 x 0.8 x 2.5 mm, origin (x, y, z) mm, shape (a, b, c)"``.

    The origin is the world position (NIfTI RAS+, mm) of the centre of voxel (0, 0, 0).
    """
    aff = np.asarray(affine, dtype=float)
    codes = "".join(str(c) for c in nib.aff2axcodes(aff))
    sp = " x ".join(f"{v:.4g}" for v in nib.affines.voxel_sizes(aff))
    org = ", ".join(f"{v:.4g}" for v in aff[:3, 3])
    return f"{codes}, spacing {sp} mm, origin ({org}) mm, shape {tuple(int(n) for n in shape[:3])}"


def align_to_grid(
    data: np.ndarray,
    affine: np.ndarray,
    *,
    target_affine: np.ndarray,
    target_shape: tuple[int, ...],
    what: str,
    target: str,
) -> np.ndarray:
    """``data`` (a 3D array with voxel-to-world ``affine``) in the voxel layout of a target grid.

    A file on the same voxel grid as the target but stored in another axis order (axes
    permuted or reversed, as other DICOM/NIfTI converters write them) is reoriented losslessly
    (permutations and flips only); voxel centres must agree within 1e-3 mm (relative 1e-4).
    Anything else is a different grid and is refused with both grids in world terms
    (:func:`describe_grid`).

    Parameters
    ----------
    data : ndarray, 3D
    affine : ndarray, (4, 4)
    target_affine : ndarray, (4, 4), keyword-only
    target_shape : tuple of int, keyword-only
        The target file's array shape (first three axes used).
    what, target : str, keyword-only
        How the two are named in the error message (e.g. ``"Support mask a.nii.gz"``,
        ``"the image b.nii.gz"``).

    Returns
    -------
    ndarray
        ``data`` with the target's shape, voxel ``[i, j, k]`` at the target's voxel ``[i, j, k]``.

    Raises
    ------
    ValueError
        The voxel grids differ (shape, spacing, origin or direction beyond a reordering).
    """
    laff = np.asarray(affine, dtype=float)
    taff = np.asarray(target_affine, dtype=float)
    tshape = tuple(int(n) for n in target_shape[:3])
    data = np.asarray(data)
    if data.shape == tshape and np.allclose(laff, taff, rtol=1e-4, atol=1e-3):
        return data
    ornt = _grid_reordering(laff, data.shape, taff, tshape)
    if ornt is None:
        raise ValueError(
            f"{what} and {target} are on different voxel grids: {what}: "
            f"{describe_grid(laff, data.shape)}; {target}: {describe_grid(taff, tshape)}. They must "
            "share one voxel grid (in any axis order): draw the mask on this image, or resample it "
            "onto the image first."
        )
    return np.ascontiguousarray(nio.apply_orientation(data, ornt))


def _grid_reordering(laff: np.ndarray, lshape: tuple[int, ...], taff: np.ndarray,
                     tshape: tuple[int, ...]) -> np.ndarray | None:
    """The nibabel orientation (permutation + flips) taking the ``laff`` grid's voxels onto the
    ``taff`` grid's, or None when the two grids are not the same set of voxel centres."""
    if len(lshape) != 3 or sorted(lshape) != sorted(tshape) or not np.isfinite(laff).all():
        return None
    try:
        m = np.linalg.solve(taff, laff)  # label voxel -> target voxel
    except np.linalg.LinAlgError:
        return None
    r = np.rint(m[:3, :3])
    if not (np.abs(r).sum(axis=0) == 1).all() or not (np.abs(r).sum(axis=1) == 1).all():
        return None
    ornt = np.zeros((3, 2))
    perm = np.zeros((4, 4))
    perm[3, 3] = 1.0
    for j in range(3):  # label axis j -> target axis i, reversed when the sign is -1
        i = int(np.flatnonzero(r[:, j])[0])
        sign = float(r[i, j])
        if lshape[j] != tshape[i]:
            return None
        ornt[j] = (i, sign)
        perm[i, j] = sign
        perm[i, 3] = 0.0 if sign > 0 else lshape[j] - 1
    if not np.allclose(laff, taff @ perm, rtol=1e-4, atol=1e-3):
        return None
    return ornt
