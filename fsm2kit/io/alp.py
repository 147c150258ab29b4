"""SSL-ALPNet preprocessed folders (``image_<id>.nii.gz`` / ``label_<id>.nii.gz``).

:func:`load_alp_folder` indexes such a folder and :meth:`ALPDataset.load` reads a scan exactly
as the evaluation protocol does (PROTOCOL.md section 1.3): SimpleITK's ``(z, y, x)`` array
order, **no** reorientation, float32, SABS cropped to 256. Masks predicted on a loaded volume
still write back into the file's grid (:meth:`~fsm2kit.io.volumes.Volume.mask_to_nifti`).
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..protocol.checks import canonical_dataset
from ..protocol.labels import LabelMap
from .nifti import as_label_ids, read_image, squeeze_to_3d
from .volumes import LabelVolume, SourceGrid, Volume

__all__ = ["ALPDataset", "load_alp_folder"]

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
        img, data = read_image(ipath, "Image file")
        raw = squeeze_to_3d(data, ipath)
        _, ldata = read_image(lpath, "Label file")
        lraw = squeeze_to_3d(ldata, lpath)
        if lraw.shape != raw.shape:
            raise ValueError(
                f"{self.dataset} scan {sid}: image {ipath.name} has shape {raw.shape} but label "
                f"{lpath.name} has {lraw.shape}; the preprocessing output is inconsistent."
            )
        # nibabel gives (x, y, z); SimpleITK's GetArrayFromImage gives (z, y, x).
        to_array = np.array([[2, 1], [1, 1], [0, 1]], dtype=float)
        image = np.transpose(raw, (2, 1, 0)).astype(np.float32)
        labels = np.transpose(as_label_ids(lraw, lpath), (2, 1, 0))
        full_shape = image.shape
        if self.crop256:
            image, labels = image[:, :256, :256], labels[:, :256, :256]
        affine = np.asarray(img.affine, dtype=float)
        vox = nib.affines.voxel_sizes(affine)
        grid = SourceGrid.of_image(
            img, file_shape=data.shape, to_array=to_array, full_shape=full_shape  # type: ignore[arg-type]
        )
        return Volume(
            array=np.ascontiguousarray(image),
            spacing=(float(vox[2]), float(vox[1]), float(vox[0])),
            affine=affine,
            modality=self.modality,
            case_id=sid,
            labels=LabelVolume(np.ascontiguousarray(labels), self.label_map),
            path=ipath,
            source_grid=grid,
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


def _warn_unlisted(root: Path, names: list[str]) -> None:
    """Warn about scan files that the folder's ``prepare.json`` (when it has one) does not list."""
    manifest = root / "prepare.json"
    if not manifest.is_file():
        return
    try:
        scans = json.loads(manifest.read_text()).get("scans", [])
        listed = {s[k] for s in scans for k in ("image", "label")}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        warnings.warn(f"fsm2kit: {manifest} cannot be read; the scan files of {root} are not checked against it.",
                      UserWarning, stacklevel=3)
        return
    extra = sorted(n for n in names if n not in listed)
    if extra:
        shown = ", ".join(extra[:6]) + (" ..." if len(extra) > 6 else "")
        warnings.warn(
            f"fsm2kit: {root} holds {len(extra)} scan files that its prepare.json does not list ({shown}); "
            "they are not from the last 'fsm2kit prepare' run: remove them, or prepare the folder again "
            "with --overwrite.", UserWarning, stacklevel=3)


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
    key = canonical_dataset(dataset)
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
    _warn_unlisted(root, [p.name for _, p in images.values()] + [p.name for _, p in labels.values()])
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
