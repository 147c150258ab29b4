"""NIfTI files: read any NIfTI scan into a canonical axial :class:`~fsm2kit.io.volumes.Volume`,
read label files on its grid, and write masks back into exactly the input file's grid.

* :func:`load_nifti` reads any NIfTI file (any orientation, oblique included) into a
  :class:`~fsm2kit.io.volumes.Volume` in the canonical axial layout of
  :data:`~fsm2kit.io.volumes.CANONICAL_AXCODES`; :func:`volume_from_nifti_image` does the same
  for an in-memory image (e.g. a DICOM series).
* :func:`load_label_nifti` reads a label or mask file that must lie on a volume's grid.
* :func:`save_mask` (and :meth:`Volume.save_mask <fsm2kit.io.volumes.Volume.save_mask>`) writes
  a ``(Z, H, W)`` mask back into **exactly** the input file's grid (shape, affine, qform/sform
  and orientation), atomically.
* :func:`read_image` is the shared reader: a damaged or non-NIfTI file becomes a ValueError
  that says so.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations as nio

from ..records.fileio import atomic_write
from ..protocol.labels import LabelMap
from .volumes import CANONICAL_AXCODES, LabelVolume, SourceGrid, Volume, align_to_grid

__all__ = [
    "read_image",
    "squeeze_to_3d",
    "as_label_ids",
    "load_nifti",
    "volume_from_nifti_image",
    "load_label_nifti",
    "save_mask",
]

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


def _check_exists(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(
            f"{what} not found: {path} (absolute: {path.absolute()}). Check the path and that "
            "the data were downloaded (see data/README.md)."
        )
    if path.is_dir():
        raise IsADirectoryError(f"{what} is a directory, expected a NIfTI file: {path}.")


#: The most bytes one volume may need in memory (16 GiB): a header declaring more is refused before
#: anything is allocated.
MAX_VOLUME_BYTES = 16 << 30
#: deflate's largest expansion (about 1032:1): a .gz file cannot hold more than this times its size.
_DEFLATE_RATIO = 1032


def check_readable_file(path: Path, what: str) -> None:
    """A regular file: a FIFO, a device (``/dev/zero``) or a socket is named as such, not read."""
    import stat

    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "a character device" if stat.S_ISCHR(mode)
                else "a block device" if stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise ValueError(f"{what} {path} is {kind}, not a NIfTI file; give the scan's file.")


def check_declared_size(img, path: Path, what: str = "Image file") -> int:
    """Refuse a NIfTI whose header declares more data than its file can hold, before allocating it.

    The data need ``prod(shape) * itemsize`` bytes: an uncompressed file must hold them after its
    header (``vox_offset``); a ``.gz`` file cannot hold more than deflate's largest expansion
    (about 1032:1) of its size; and no volume may need more than :data:`MAX_VOLUME_BYTES`.

    Returns
    -------
    int
        The bytes the data need.
    """
    shape = tuple(int(n) for n in img.shape)
    try:
        itemsize = np.dtype(img.get_data_dtype()).itemsize
    except TypeError:
        itemsize = 8
    need = int(np.prod(shape, dtype=object)) * itemsize if shape else 0
    size = path.stat().st_size
    gz = path.name.lower().endswith(".gz")
    offset = int(getattr(img, "dataobj", None).offset) if hasattr(getattr(img, "dataobj", None), "offset") else 0
    have = size * _DEFLATE_RATIO if gz else max(size - offset, 0)
    gib = need / 2 ** 30
    if need > have:
        raise ValueError(f"{what} {path}: its header declares a {'x'.join(map(str, shape))} volume "
                         f"({gib:.2f} GiB), more than the {size}-byte file can hold"
                         f"{' compressed' if gz else ''}; the file is truncated or its header is wrong.")
    if need > MAX_VOLUME_BYTES:
        raise ValueError(f"{what} {path}: its header declares a {'x'.join(map(str, shape))} volume ({gib:.1f} GiB), "
                         f"more than fsm2kit reads ({MAX_VOLUME_BYTES / 2 ** 30:.0f} GiB); crop or resample it first.")
    return need


def read_image(
    path: str | os.PathLike, what: str = "Image file"
) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    """Load a NIfTI image and its data array (in file order, not reoriented).

    Parameters
    ----------
    path : path-like
    what : str
        How to call the file in messages (e.g. ``"Label file"``).

    Returns
    -------
    (nibabel image, ndarray)
        The image and its data in the stored dtype (scaling applied by nibabel, if any).

    Raises
    ------
    FileNotFoundError, IsADirectoryError
        No such file, or a folder.
    ValueError
        The file is truncated or not a NIfTI file.
    """
    path = Path(path)
    _check_exists(path, what)
    check_readable_file(path, what)
    try:
        img = nib.load(str(path))
        check_declared_size(img, path, what)
        data = np.asarray(img.dataobj)
    except _READ_ERRORS as exc:
        raise ValueError(
            f"Could not read {what} {path} as NIfTI ({type(exc).__name__}: {exc}). The file is "
            "probably truncated or not a NIfTI file; re-download or re-export it."
        ) from exc
    return img, data


def squeeze_to_3d(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """``data`` as a 3D array: trailing singleton axes dropped, anything else refused.

    ``path`` names the file in the error message.
    """
    if data.ndim == 3:
        return data
    if data.ndim > 3 and data.shape[:3] and all(n == 1 for n in data.shape[3:]):
        return data.reshape(data.shape[:3])
    if data.ndim < 3:
        raise ValueError(
            f"{path}: a {data.ndim}D image of shape {data.shape}, not a volume: expected a 3D volume (x, y, z). "
            "Give the whole scan (a single slice saved as 2D can be made a one-slice volume with "
            "data[..., None] in nibabel, keeping its affine)."
        )
    raise ValueError(
        f"{path}: expected a 3D volume, got data of shape {data.shape}. For 4D files select one "
        "volume first (e.g. nibabel.funcs.four_to_three)."
    )


def as_label_ids(data: np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Label data as int32 ids: integers cast, floats rounded (NaN/inf refused).

    ``path`` names the file in the error message.
    """
    if np.issubdtype(data.dtype, np.integer) or data.dtype == bool:
        return data.astype(np.int32)
    if not np.isfinite(data).all():
        raise ValueError(f"Label file {path} contains NaN or inf values.")
    return np.rint(data).astype(np.int32)


def _canonical_grid(img, data: np.ndarray, where: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[float], SourceGrid]:
    """Reorient an image's voxels to :data:`CANONICAL_AXCODES` (permutations and flips only).

    Returns (raw 3D data, canonical float32 array, affine, orientation transform, spacing in
    array axis order, the source grid that lets masks be written back exactly).
    """
    raw = squeeze_to_3d(data, where)
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
    grid = SourceGrid.of_image(
        img, file_shape=data.shape, to_array=to_array, full_shape=array.shape  # type: ignore[arg-type]
    )
    return raw, np.ascontiguousarray(array), affine, to_array, spacing, grid


def _stem(path: Path) -> str:
    name = path.name
    for suf in _NIFTI_SUFFIXES:
        if name.endswith(suf):
            return name[: -len(suf)]
    return path.stem


def volume_from_nifti_image(
    img: nib.spatialimages.SpatialImage,
    *,
    modality: str = "",
    case_id: str = "",
    path: str | os.PathLike | None = None,
    data: np.ndarray | None = None,
) -> Volume:
    """A :class:`~fsm2kit.io.volumes.Volume` from a NIfTI image, reoriented as :func:`load_nifti` does.

    Used for images that never were a file (e.g. a DICOM series, :mod:`fsm2kit.io.dicom`) and by
    :func:`load_nifti` itself: the array is reoriented to
    :data:`~fsm2kit.io.volumes.CANONICAL_AXCODES` and
    :meth:`~fsm2kit.io.volumes.Volume.mask_to_nifti` writes masks back into ``img``'s grid
    (shape, affine, qform/sform).

    Parameters
    ----------
    img : nibabel image
        A 3D image (4D with trailing singleton axes is squeezed).
    modality, case_id : str, keyword-only
    path : path-like, optional, keyword-only
        Recorded as the volume's source (e.g. the DICOM folder), and named in errors.
    data : ndarray, optional, keyword-only
        ``img``'s data array when it was already read (as :func:`read_image` returns it), so
        the file is not read twice. Default: ``np.asarray(img.dataobj)``.

    Returns
    -------
    Volume
        Without labels.
    """
    where = Path(path) if path is not None else Path(case_id or "<in-memory image>")
    raw_data = np.asarray(img.dataobj) if data is None else np.asarray(data)
    _, array, affine, _, spacing, grid = _canonical_grid(img, raw_data, where)
    return Volume(
        array=array,
        spacing=tuple(spacing),  # type: ignore[arg-type]
        affine=affine,
        modality=modality,
        case_id=str(case_id),
        path=Path(path) if path is not None else None,
        source_grid=grid,
    )


def load_nifti(
    path: str | os.PathLike,
    *,
    label_path: str | os.PathLike | None = None,
    modality: str = "",
    case_id: str | None = None,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
) -> Volume:
    """Read a NIfTI scan (and optionally its label file) into a canonical axial ``Volume``.

    Parameters
    ----------
    path : path-like
        The image (``.nii`` or ``.nii.gz``; any orientation, oblique affines included).
    label_path : path-like, optional, keyword-only
        A label file on the same voxel grid (same voxel centres; stored in any axis order, which
        is reoriented losslessly: :func:`~fsm2kit.io.volumes.align_to_grid`). Float labels are
        rounded.
    modality : {"CT", "MR", ""}, keyword-only
        Recorded on the volume.
    case_id : str, optional, keyword-only
        Default: the file name without ``.nii``/``.nii.gz``.
    label_map : LabelMap, dataset name, or {id: name}, optional, keyword-only
        Names of the label ids.

    Returns
    -------
    Volume
        ``array`` is (Z, H, W) float32 with axes closest to
        :data:`~fsm2kit.io.volumes.CANONICAL_AXCODES` (inferior->superior,
        anterior->posterior, right->left); only permutations and flips are applied.
        ``affine`` / ``orientation`` describe the original file;
        :meth:`~fsm2kit.io.volumes.Volume.mask_to_nifti` inverts the reorientation exactly.
        Built by :func:`volume_from_nifti_image`, with the labels added.

    Raises
    ------
    FileNotFoundError
        A file does not exist.
    ValueError
        A file is damaged or not 3D, contains NaN/inf, or image and labels do not share a grid.
    """
    path = Path(path)
    img, data = read_image(path, "Image file")
    volume = volume_from_nifti_image(
        img,
        modality=modality,
        case_id=_stem(path) if case_id is None else str(case_id),
        path=path,
        data=data,
    )
    if label_path is None:
        return volume

    label_path = Path(label_path)
    grid = volume.source_grid
    assert grid is not None
    limg, ldata = read_image(label_path, "Label file")
    lraw = align_to_grid(squeeze_to_3d(ldata, label_path), limg.affine, target_affine=volume.affine,
                         target_shape=grid.file_shape, what=f"Label file {label_path}", target=f"image {path}")
    labels = LabelVolume(
        nio.apply_orientation(as_label_ids(lraw, label_path), grid.to_array),
        LabelMap.coerce(label_map),
    )
    return dataclasses.replace(volume, labels=labels)


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
        The image the labels belong to (from :func:`load_nifti`,
        :func:`volume_from_nifti_image` or a DICOM series): the same voxel grid required, in
        any axis order (flipped or permuted axes are reoriented losslessly,
        :func:`~fsm2kit.io.volumes.align_to_grid`); another grid is refused with both grids
        in world terms.
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
    img, data = read_image(path, what)
    raw = squeeze_to_3d(data, path)
    grid = like.source_grid
    assert grid is not None
    src = f"the image {like.path}" if like.path is not None else f"the image {like.case_id!r}"
    raw = align_to_grid(raw, img.affine, target_affine=like.affine, target_shape=grid.file_shape,
                        what=f"{what} {path}", target=src)
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


def save_mask(
    mask: np.ndarray,
    path: str | os.PathLike,
    *,
    like: Volume,
    dtype: np.dtype | type = np.uint8,
) -> Path:
    """Write a (Z, H, W) mask as NIfTI in the grid of the file ``like`` was read from.

    The file is written atomically (:func:`fsm2kit.records.fileio.atomic_write`: to a temporary
    file in the same folder, then renamed over ``path``), so an error never leaves a
    half-written file. Missing parent folders are created.

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
    if not any(path.name.endswith(s) for s in _NIFTI_SUFFIXES):
        raise ValueError(
            f"save_mask writes NIfTI: the path must end in .nii.gz or .nii, got {path.name!r}."
        )
    img = like.mask_to_nifti(mask, dtype=dtype)
    _atomic_save(img, path)
    return path


def _atomic_save(img: nib.spatialimages.SpatialImage, path: Path) -> None:
    """``nib.save`` through :func:`~fsm2kit.records.fileio.atomic_write`; a folder that cannot be
    created or written is a PermissionError that says so."""
    writing = False

    def write(tmp: str) -> None:
        nonlocal writing
        writing = True
        nib.save(img, tmp)

    try:
        atomic_write(path, write, keep_suffix=True)  # nibabel picks the format from the suffix
    except OSError as exc:
        if writing:
            raise
        parent = path.parent
        raise PermissionError(
            f"Cannot write {path}: the folder {parent} is not writable or cannot be created "
            f"({type(exc).__name__}: {exc}). Choose another output folder or fix its permissions."
        ) from exc
