"""Dataset preparation: the SSL-ALPNet preprocessing of Synapse-CT (SABS) and CHAOS-MR (CHAOST2).

``fsm2kit prepare synapse RAW_DIR OUT_DIR`` and ``fsm2kit prepare chaos RAW_DIR OUT_DIR`` turn the
public downloads into the folders the evaluation protocol reads (``image_<id>.nii.gz``,
``label_<id>.nii.gz``, ``classmap_1.json``), reproducing PROTOCOL.md section 1 with numpy and
pydicom only (no SimpleITK, no dcm2nii):

SABS (PROTOCOL.md 1.1; ``data/SABS/*.ipynb`` of SSL-ALPNet)
    scans re-indexed 0..N-1 in lexicographic order of ``img/img*.nii.gz``; HU clipped to
    [-125, 275] and min-max scaled to [0, 255] (float64); a 32-pixel in-plane border cut;
    in-plane spacing x 1.75 with :func:`resample_linear` (SimpleITK's linear interpolation,
    output size ``int(n*old/new + 1)``, hence the **257 x 257 x (Z+1)** quirk: the last row,
    column and slice lie outside the input and are 0, and the loader crops ``[:256, :256]``);
    labels resampled one id at a time (:func:`resample_labels`); class-slice index.
CHAOST2 (PROTOCOL.md 1.2; ``data/CHAOST2/*``)
    T2-SPIR DICOM read with :mod:`fsm2kit.dicom` (slices in file-number order; rows flipped,
    see below); ``Ground`` PNGs sorted by their trailing number, rows flipped, gray values
    0/63/126/189/252 -> 0..4; top 0.5 % of the histogram cut; resampled to (1.25, 1.25, 7.70)
    mm; centre crop / pad to 256 x 256 (image padded with its minimum, labels with 0);
    class-slice index.

Orientation of CHAOS (PROTOCOL.md A11). SSL-ALPNet converted the DICOM with the legacy
``dcm2nii`` and flipped the PNG stack along its rows to match. That tool is not reproducible
here, so fsm2kit writes the image with **DICOM rows reversed** (the stored row axis runs from the
last DICOM row to the first, i.e. posterior -> anterior for an axial series) and slices in
ascending file number (= ``InstanceNumber`` order, the order the PNGs are sorted in); the affine
is adjusted so the file is still geometrically correct. This gives arrays laid out like the
published CHAOST2 data (spine at the top of the array, the patient's right on the left) and the
notebook's PNG flip then aligns labels with images exactly. Each PNG is paired with the DICOM
file of the same name (``IMG-0002-00017.png`` <-> ``IMG-0002-00017.dcm``).

Other recorded choices: the CHAOS ids are the patient folder names; integer images stay
integer through resampling with truncation towards zero (SimpleITK keeps the pixel type and
casts with ``static_cast``); output headers keep the source origin after the crop (as the
notebooks do, so world positions of cropped files are shifted: the arrays are what matter).
Every output is written atomically and listed with its sha256 in ``SHA256SUMS``; ``prepare.json``
records the inputs, the mapping from raw files to ids and the parameters.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from ..core.fileio import atomic_write
from ..core.fileio import file_sha256
from ..protocol.rules import CHAOS_GRAY_VALUES, CT_WINDOW, SABS_BORDER, chaos_gray_to_label, ct_window

__all__ = [
    "SABS_CLASSMAP_NAMES",
    "CHAOST2_CLASSMAP_NAMES",
    "CHAOS_SPACING",
    "HIST_CUT_TOP",
    "SABS_SPACING_FACTOR",
    "CROP_SIZE",
    "resampled_shape",
    "resample_linear",
    "resample_labels",
    "sabs_window",
    "histogram_cut_top",
    "crop_or_pad_center",
    "class_slice_index",
    "RawScan",
    "PreparedScan",
    "PrepareReport",
    "find_synapse_scans",
    "find_chaos_scans",
    "prepare_synapse",
    "prepare_chaos",
]

#: Class names of the SABS ``classmap_1.json`` (``Synapse_abdominal_classmap.ipynb``), by id.
SABS_CLASSMAP_NAMES: tuple[str, ...] = (
    "BGD", "SPLEEN", "KID_R", "KID_l", "GALLBLADDER", "ESOPHAGUS", "LIVER", "STOMACH", "AORTA",
    "IVC", "PS_VEIN", "PANCREAS", "AG_R", "AG_L",
)
#: Class names of the CHAOST2 ``classmap_1.json`` (``class_slice_index_gen.ipynb``), by id.
CHAOST2_CLASSMAP_NAMES: tuple[str, ...] = ("BG", "LIVER", "RK", "LK", "SPLEEN")
#: CHAOST2 target spacing (x, y, z) in mm (``NEW_SPA``).
CHAOS_SPACING: tuple[float, float, float] = (1.25, 1.25, 7.70)
#: Percent of the top of the histogram cut from CHAOS images (``HIST_CUT_TOP``).
HIST_CUT_TOP: float = 0.5
#: SABS in-plane spacing factor ``(512 - 2 * 32) / 256`` (``SPA_FAC``).
SABS_SPACING_FACTOR: float = (512 - 2 * SABS_BORDER) / 256
#: CHAOS in-plane output size.
CROP_SIZE: int = 256


# =====================================================================================
# Formulas (pure functions on arrays; (z, y, x) = SimpleITK's array order)
# =====================================================================================


def _spacing3(name: str, s: Sequence[float]) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64).ravel()
    if a.size != 3 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be 3 positive spacings (z, y, x) in mm, got {s!r}.")
    return a


def resampled_shape(
    shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Output size of SSL-ALPNet's ``resample_by_res``: ``int(n * (old / new) + 1)`` per axis.

    Computed in float64 in the notebook's order (``RES_COE = old / new``, then ``n * RES_COE``).
    For SABS in-plane (448 pixels, spacing x 1.75) this is 257, and Z + 1 along z.
    """
    old = _spacing3("old_spacing", old_spacing)
    new = _spacing3("new_spacing", new_spacing)
    n = np.asarray(shape, dtype=np.float64)
    if n.size != 3:
        raise ValueError(f"shape must have 3 entries (z, y, x), got {shape!r}.")
    coe = old * 1.0 / new
    return tuple(int(v + 1) for v in n * coe)


def _axis_weights(n_in: int, n_out: int, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices, weights and the inside mask of ITK's linear interpolation on one axis."""
    c = np.arange(n_out, dtype=np.float64) * ratio  # continuous input index of each output voxel
    inside = (c >= -0.5) & (c < n_in - 0.5)  # ITK's IsInsideBuffer: half a voxel around the grid
    base = np.floor(c)
    frac = c - base
    i0 = np.clip(base, 0, n_in - 1).astype(np.intp)
    i1 = np.clip(base + 1, 0, n_in - 1).astype(np.intp)
    frac = np.where(base < 0, 0.0, frac)  # below the first voxel: its value (ITK clamps)
    return i0, i1, frac, inside


def resample_linear(
    array: np.ndarray,
    old_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    shape: Sequence[int] | None = None,
    default: float = 0.0,
) -> np.ndarray:
    """SimpleITK's ``ResampleImageFilter`` with linear interpolation, same origin and direction.

    Output voxel ``o`` (per axis) samples the input at the continuous index
    ``o * new / old``. As in ITK, a point is inside when every continuous index is within
    ``[-0.5, n - 0.5)`` (half a voxel around the grid; neighbours are clamped to the edge
    there), and gets ``default`` (0) otherwise. Interpolation is in float64, x first, then y,
    then z (``a + (b - a) * t``, like ITK), and the result keeps the input's pixel type:
    floats are rounded to it, integers truncated towards zero and clamped to the type's range
    (ITK's ``static_cast``).

    Checked against SimpleITK 2.5.7 (ITK 5.4): on SABS geometry (448 px, spacing x 1.75) label
    resampling is identical and images agree within 1e-11; int16 CHAOS-like input identical.
    ITK computes sample positions through physical coordinates, which can differ from
    ``o * new / old`` in the last bit, so a sample exactly on a tie (half a voxel outside the
    grid, an integer image exactly between two values, a label mask exactly at 0.5) may fall on
    the other side (``tests/test_prepare.py`` has an optional SimpleITK comparison).

    Parameters
    ----------
    array : ndarray, (z, y, x)
        SimpleITK array order.
    old_spacing, new_spacing : 3 floats, (z, y, x) order
    shape : 3 ints, optional, keyword-only
        Output size (z, y, x); default :func:`resampled_shape`.
    default : float, keyword-only
        Value outside the input.

    Returns
    -------
    ndarray, (z', y', x'), same dtype as ``array``
    """
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"resample_linear: expected a 3D (z, y, x) array, got shape {a.shape}.")
    if a.dtype == bool:
        raise TypeError("resample_linear: cast boolean masks to float32 first (as the notebooks do).")
    old = _spacing3("old_spacing", old_spacing)
    new = _spacing3("new_spacing", new_spacing)
    out_shape = tuple(int(s) for s in (shape if shape is not None else resampled_shape(a.shape, old, new)))
    if len(out_shape) != 3 or min(out_shape) < 1:
        raise ValueError(f"resample_linear: output shape must be 3 positive sizes, got {out_shape}.")
    if min(a.shape) < 1:
        raise ValueError(f"resample_linear: empty input of shape {a.shape}.")
    work = a.astype(np.float64)
    inside_all = np.ones(out_shape, dtype=bool)
    for axis in (2, 1, 0):  # x, then y, then z (ITK's order)
        i0, i1, frac, inside = _axis_weights(a.shape[axis], out_shape[axis], new[axis] / old[axis])
        lo = np.take(work, i0, axis=axis)
        hi = np.take(work, i1, axis=axis)
        shp = [1, 1, 1]
        shp[axis] = -1
        work = lo + (hi - lo) * frac.reshape(shp)
        inside_all &= inside.reshape(shp)
    work[~inside_all] = default
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(np.trunc(work), info.min, info.max).astype(a.dtype)
    return work.astype(a.dtype)


def resample_labels(
    labels: np.ndarray,
    old_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """SSL-ALPNet's ``resample_lb_by_res``: each label id resampled linearly on its own.

    For every value ``v`` of ``np.unique(labels)`` (ascending, background first), the float32
    mask ``labels == v`` is resampled with :func:`resample_linear`, rounded with ``np.rint``
    (so a voxel gets ``v`` when the interpolated mask exceeds 0.5) and written over the
    result; where masks overlap the larger id wins.

    Returns
    -------
    ndarray of float32, (z', y', x')
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"resample_labels: expected a 3D (z, y, x) label array, got shape {lab.shape}.")
    out: np.ndarray | None = None
    for idx, v in enumerate(np.unique(lab)):
        m = resample_linear((lab == v).astype(np.float32), old_spacing, new_spacing, shape=shape)
        cur = (np.rint(m) * np.float32(v)).astype(np.float32)
        if idx == 0:
            out = cur
        else:
            out[cur == v] = v
    assert out is not None
    return out


def sabs_window(hu: np.ndarray) -> np.ndarray:
    """SABS step 1: clip to [-125, 275] HU, then min-max of the clipped array to [0, 255] (float64)."""
    return ct_window(hu, lo=CT_WINDOW[0], hi=CT_WINDOW[1], minmax=True)


def histogram_cut_top(array: np.ndarray, cut_percent: float = HIST_CUT_TOP) -> tuple[np.ndarray, float]:
    """CHAOS step 3a: values above the ``100 - cut_percent`` percentile set to it.

    Done in the array's own type, as the notebook (``array[array > hir] = hir``): an integer
    image receives the percentile truncated towards zero.

    Returns
    -------
    (ndarray, float)
        The clipped copy and the percentile ``hir``.
    """
    a = np.array(array, copy=True)
    if not 0 <= cut_percent < 100:
        raise ValueError(f"cut_percent must be in [0, 100), got {cut_percent}.")
    hir = float(np.percentile(a, 100.0 - cut_percent))
    a[a > hir] = hir
    return a, hir


def crop_or_pad_center(array: np.ndarray, size: int = CROP_SIZE, *, pad_value: float = 0.0) -> np.ndarray:
    """CHAOS step 3c: in-plane centre crop or pad to ``size`` x ``size`` (the notebook's ``image_crop``).

    With centre ``(H // 2, W // 2)``, output row ``j`` takes input row ``H // 2 - size // 2 + j``
    when that row exists and ``pad_value`` otherwise; the same for columns. The result is
    float64 (the notebook builds it with ``np.ones(...) * padval``).

    Parameters
    ----------
    array : ndarray, (z, y, x)
    size : int
    pad_value : float, keyword-only
    """
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"crop_or_pad_center: expected (z, y, x), got shape {a.shape}.")
    z, h, w = a.shape
    out = np.full((z, size, size), float(pad_value), dtype=np.float64)
    half = (size + 1) // 2  # int((size + 1) / 2) of the notebook's expanded size
    rows = np.arange(size) + h // 2 - half
    cols = np.arange(size) + w // 2 - half
    rv = (rows >= 0) & (rows < h)
    cv = (cols >= 0) & (cols < w)
    out[:, np.flatnonzero(rv)[:, None], np.flatnonzero(cv)[None, :]] = a[:, rows[rv][:, None], cols[cv][None, :]]
    return out


def class_slice_index(
    labels: dict[str, np.ndarray],
    names: Sequence[str],
    *,
    rule: str = "class",
    min_tp: int = 1,
) -> dict[str, dict[str, list[int]]]:
    """``classmap_1.json``: ``{class name: {scan id: [z with the class]}}`` (PROTOCOL.md 1.1 step 3).

    Parameters
    ----------
    labels : dict of scan id -> ndarray (z, y, x)
        In the order the ids should appear.
    names : sequence of str
        Class names by id (``SABS_CLASSMAP_NAMES`` / ``CHAOST2_CLASSMAP_NAMES``).
    rule : {"class", "sum"}, keyword-only
        ``"class"`` (SABS notebook): the slice has at least ``min_tp`` voxels of the class.
        ``"sum"`` (CHAOS notebook, PROTOCOL.md A9): the class occurs in the slice and the sum
        of *all* label values of the slice is at least ``min_tp`` (so background is listed only
        on slices that also hold an organ).
    """
    if rule not in ("class", "sum"):
        raise ValueError(f"rule must be 'class' or 'sum', got {rule!r}.")
    out: dict[str, dict[str, list[int]]] = {n: {str(pid): [] for pid in labels} for n in names}
    for pid, lab in labels.items():
        for z in range(lab.shape[0]):
            sl = lab[z]
            present = set(np.unique(sl).tolist())
            for cls, name in enumerate(names):
                if cls not in present:
                    continue
                ok = np.sum(sl == cls) >= min_tp if rule == "class" else np.sum(sl) >= min_tp
                if ok:
                    out[name][str(pid)].append(int(z))
    return out


# =====================================================================================
# Raw layouts
# =====================================================================================


@dataclass(frozen=True)
class RawScan:
    """One raw scan found in a download: its output id and source files."""

    scan_id: str
    image: Path
    label: Path
    raw_id: str

    def __repr__(self) -> str:
        return f"RawScan(id={self.scan_id}, raw={self.raw_id}, image={self.image.name}, label={self.label.name})"


@dataclass(frozen=True)
class PreparedScan:
    """One prepared scan: output files, shapes and spacings (x, y, z) before and after."""

    scan_id: str
    raw_id: str
    image: Path
    label: Path
    shape_xyz: tuple[int, int, int]
    spacing_xyz: tuple[float, float, float]
    source_shape_xyz: tuple[int, int, int]
    source_spacing_xyz: tuple[float, float, float]
    label_ids: tuple[int, ...]
    notes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return (
            f"PreparedScan({self.scan_id} <- {self.raw_id}: {self.source_shape_xyz} -> {self.shape_xyz}, "
            f"labels {list(self.label_ids)})"
        )


@dataclass(eq=False)
class PrepareReport:
    """What a ``prepare`` run wrote."""

    dataset: str
    raw_dir: Path
    out_dir: Path
    scans: list[PreparedScan]
    classmap: Path
    checksums: dict[str, str]
    manifest: Path
    seconds: float
    notes: list[str] = field(default_factory=list)

    def __repr__(self) -> str:
        ids = [s.scan_id for s in self.scans]
        shown = ", ".join(ids if len(ids) <= 8 else ids[:4] + ["..."] + ids[-2:])
        return (
            f"PrepareReport({self.dataset}: {len(self.scans)} scans [{shown}] -> {self.out_dir}, "
            f"{len(self.checksums)} files with sha256, {self.seconds:.1f} s)"
        )


def _listing(folder: Path, limit: int = 10) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" ... ({len(names)} entries)" if len(names) > limit else "")


def _check_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path} (absolute: {path.absolute()}).")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} must be a folder, got the file {path}.")
    return path


_SYN_IMG = re.compile(r"^img(\d+)\.nii(\.gz)?$")
_SYN_LAB = re.compile(r"^label(\d+)\.nii(\.gz)?$")

_SYNAPSE_LAYOUT = (
    "Expected the BTCV 'Abdomen' training data: RAW_DIR/img/imgXXXX.nii.gz and "
    "RAW_DIR/label/labelXXXX.nii.gz (30 labelled scans, 0001-0010 and 0021-0040; e.g. "
    "RawData/Training of the Synapse download). See data/README.md."
)


def find_synapse_scans(raw_dir: str | os.PathLike) -> list[RawScan]:
    """The labelled BTCV scans of ``raw_dir``, re-indexed as SSL-ALPNet does (PROTOCOL.md 1.1).

    Images are sorted lexicographically by file name and numbered 0, 1, ...; each must have
    the label file with the same number. Anything else is refused with a message saying what
    was found.

    Returns
    -------
    list of RawScan
        ``scan_id`` "0".."N-1", ``raw_id`` the BTCV number (e.g. "0021").
    """
    raw = _check_dir(Path(raw_dir), "Synapse RAW_DIR")
    img_dir, lab_dir = raw / "img", raw / "label"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        nested = [p for p in (raw / "Training", raw / "RawData" / "Training", raw / "Abdomen" / "RawData" / "Training")
                  if (p / "img").is_dir()]
        hint = f" Did you mean {nested[0]}?" if nested else ""
        raise ValueError(f"{raw} is not a BTCV training folder: it holds {_listing(raw)}. {_SYNAPSE_LAYOUT}{hint}")
    imgs: dict[str, Path] = {}
    labs: dict[str, Path] = {}
    strays: list[str] = []
    for folder, pat, dest in ((img_dir, _SYN_IMG, imgs), (lab_dir, _SYN_LAB, labs)):
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            m = pat.match(p.name)
            if m and p.is_file():
                dest[m.group(1)] = p
            else:
                strays.append(f"{folder.name}/{p.name}")
    if strays:
        raise ValueError(
            f"{raw}: unexpected files {strays[:8]}{' ...' if len(strays) > 8 else ''}. {_SYNAPSE_LAYOUT} "
            "Remove or move the other files."
        )
    if not imgs:
        raise ValueError(f"{img_dir} holds no imgXXXX.nii.gz files. {_SYNAPSE_LAYOUT}")
    unpaired = sorted(set(imgs) ^ set(labs))
    if unpaired:
        only_img = [f"img{n}" for n in unpaired if n in imgs]
        only_lab = [f"label{n}" for n in unpaired if n in labs]
        raise ValueError(
            f"{raw}: images and labels do not pair up (images without a label: {only_img[:8]}; "
            f"labels without an image: {only_lab[:8]}). The re-indexing pairs sorted lists, so "
            f"every image needs its label. Test images have no labels: use only the training folder. "
            f"{_SYNAPSE_LAYOUT}"
        )
    ordered = sorted(imgs, key=lambda n: imgs[n].name)  # lexicographic, as glob + sorted
    return [RawScan(str(i), imgs[n], labs[n], n) for i, n in enumerate(ordered)]


_CHAOS_LAYOUT = (
    "Expected the CHAOS training data: RAW_DIR/MR/<patient id>/T2SPIR/DICOM_anon/*.dcm and "
    "RAW_DIR/MR/<patient id>/T2SPIR/Ground/*.png (CHAOS_Train_Sets/Train_Sets of the download). "
    "See data/README.md."
)


def find_chaos_scans(raw_dir: str | os.PathLike) -> list[RawScan]:
    """The CHAOS T2-SPIR scans of ``raw_dir`` (``MR/<id>/T2SPIR/{DICOM_anon,Ground}``).

    ``raw_dir`` may be the folder holding ``MR`` or its parent ``Train_Sets``. Scan ids are the
    patient folder names (numbers), sorted numerically.

    Returns
    -------
    list of RawScan
        ``image`` the DICOM folder, ``label`` the Ground folder.
    """
    raw = _check_dir(Path(raw_dir), "CHAOS RAW_DIR")
    mr = None
    for cand in (raw / "MR", raw / "Train_Sets" / "MR", raw / "CHAOS_Train_Sets" / "Train_Sets" / "MR"):
        if cand.is_dir():
            mr = cand
            break
    if mr is None:
        raise ValueError(f"{raw} holds no MR folder (found {_listing(raw)}). {_CHAOS_LAYOUT}")
    patients = sorted((p for p in mr.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    bad_names = [p.name for p in patients if not p.name.isdigit()]
    if bad_names:
        raise ValueError(f"{mr}: patient folders must be numbers, found {bad_names[:8]}. {_CHAOS_LAYOUT}")
    if not patients:
        raise ValueError(f"{mr} holds no patient folders (found {_listing(mr)}). {_CHAOS_LAYOUT}")
    scans, problems = [], []
    for p in sorted(patients, key=lambda p: int(p.name)):
        dcm, gt = p / "T2SPIR" / "DICOM_anon", p / "T2SPIR" / "Ground"
        missing = [str(d.relative_to(mr)) for d in (dcm, gt) if not d.is_dir()]
        if missing:
            problems.append(f"{p.name}: missing {', '.join(missing)}")
            continue
        scans.append(RawScan(str(int(p.name)), dcm, gt, p.name))
    if problems:
        raise ValueError(f"{mr}: incomplete patient folders: {'; '.join(problems[:8])}. {_CHAOS_LAYOUT}")
    return scans


# =====================================================================================
# Writing
# =====================================================================================


def _atomic_write(path: Path, write: Callable[[str], None]) -> None:
    atomic_write(path, write, keep_suffix=True)  # nibabel picks the format from the suffix


def _zyx_to_nifti(array_zyx: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A (z, y, x) SimpleITK-order array as a NIfTI file (nibabel order (x, y, z))."""
    data = np.ascontiguousarray(np.asarray(array_zyx).transpose(2, 1, 0))
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def _save_nifti(img: nib.Nifti1Image, path: Path) -> None:
    _atomic_write(path, lambda tmp: nib.save(img, tmp))


def _prepare_out(out_dir: Path, overwrite: bool) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"OUT_DIR {out_dir} is a file; give a folder.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fsm2kit-write-test.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(
            f"Cannot write to OUT_DIR {out_dir} ({type(exc).__name__}: {exc}); choose a writable folder."
        ) from exc
    existing = sorted(p.name for p in out_dir.iterdir() if re.match(r"^(image|label)_\d+\.nii\.gz$", p.name))
    if existing and not overwrite:
        raise FileExistsError(
            f"OUT_DIR {out_dir} already holds prepared files ({existing[:4]}{' ...' if len(existing) > 4 else ''}); "
            "pass --overwrite (overwrite=True) to replace them, or choose an empty folder."
        )
    return out_dir


def _finish(
    dataset: str,
    raw_dir: Path,
    out_dir: Path,
    scans: list[PreparedScan],
    classmap: dict,
    params: dict,
    notes: list[str],
    t0: float,
) -> PrepareReport:
    from ..core.version import __version__

    cm_path = out_dir / "classmap_1.json"
    _atomic_write(cm_path, lambda tmp: Path(tmp).write_text(json.dumps(classmap)))
    files = [p for s in scans for p in (s.image, s.label)] + [cm_path]
    sums = {p.name: file_sha256(p) for p in files}
    _atomic_write(out_dir / "SHA256SUMS", lambda tmp: Path(tmp).write_text("".join(f"{h}  {n}\n" for n, h in sums.items())))
    manifest = {
        "tool": "fsm2kit prepare",
        "fsm2kit_version": __version__,
        "dataset": dataset,
        "protocol": "SSL-ALPNet preprocessing, PROTOCOL.md section 1",
        "raw_dir": str(raw_dir.absolute()),
        "out_dir": str(out_dir.absolute()),
        "parameters": params,
        "notes": notes,
        "scans": [
            {
                "id": s.scan_id, "raw_id": s.raw_id, "image": s.image.name, "label": s.label.name,
                "shape_xyz": list(s.shape_xyz), "spacing_xyz": list(s.spacing_xyz),
                "source_shape_xyz": list(s.source_shape_xyz), "source_spacing_xyz": list(s.source_spacing_xyz),
                "label_ids": list(s.label_ids), "notes": list(s.notes),
                "sha256": {"image": sums[s.image.name], "label": sums[s.label.name]},
            }
            for s in scans
        ],
        "classmap": {"file": cm_path.name, "sha256": sums[cm_path.name]},
        "checksums_file": "SHA256SUMS",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "nibabel": nib.__version__,
        "seconds": round(time.perf_counter() - t0, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    man_path = out_dir / "prepare.json"
    _atomic_write(man_path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return PrepareReport(dataset, raw_dir, out_dir, scans, cm_path, sums, man_path,
                         time.perf_counter() - t0, notes)


def _read_nifti(path: Path, what: str) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    from .volumes import _read_image  # shared damaged-file handling

    img, data = _read_image(path, what)
    if data.ndim > 3 and all(n == 1 for n in data.shape[3:]):
        data = data.reshape(data.shape[:3])
    if data.ndim != 3:
        raise ValueError(f"{what} {path}: expected a 3D volume, got shape {data.shape}.")
    return img, data


# =====================================================================================
# SABS
# =====================================================================================


def prepare_synapse(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """SSL-ALPNet's SABS preprocessing of the BTCV training scans (PROTOCOL.md 1.1).

    For each scan (re-indexed by :func:`find_synapse_scans`): window (:func:`sabs_window`), cut
    32 pixels per in-plane side, resample the in-plane spacing x 1.75 (:func:`resample_linear`,
    257 x 257 x (Z+1) for 512 x 512 input), resample the labels (:func:`resample_labels`), then
    write ``image_<i>.nii.gz`` (float64), ``label_<i>.nii.gz`` (float32), ``classmap_1.json``,
    ``SHA256SUMS`` and ``prepare.json`` into ``out_dir``.

    Parameters
    ----------
    raw_dir : path-like
        Folder with ``img/`` and ``label/`` (see :func:`find_synapse_scans`).
    out_dir : path-like
        Output folder (created; refused if it already holds prepared files, unless
        ``overwrite``).
    overwrite : bool, keyword-only
    progress : bool, keyword-only
        Progress bar over scans.

    Returns
    -------
    PrepareReport
    """
    t0 = time.perf_counter()
    raw = Path(raw_dir)
    scans = find_synapse_scans(raw)
    out = _prepare_out(Path(out_dir), overwrite)
    b = SABS_BORDER
    notes = [
        "scan ids re-indexed 0..N-1 in lexicographic order of img/ (SSL-ALPNet's reindex)",
        f"in-plane border of {b} px cut on each side; header origin kept (as the notebook), so "
        "world positions are shifted by the border",
        "output size int(n*old/new+1): 257x257x(Z+1) for 512x512xZ input; the last row, column "
        "and slice lie outside the input grid and are 0; the ALP loader crops [:256, :256]",
    ]
    if len(scans) != 30:
        notes.append(
            f"{len(scans)} scans instead of the 30 labelled BTCV scans: ids and folds differ from "
            "the published ones (PROTOCOL.md 1.1 assumes exactly 30)"
        )
    done, labels_for_map = [], {}
    for s in tqdm(scans, desc="prepare synapse", disable=not progress, unit="scan"):
        img, data = _read_nifti(s.image, "Image file")
        limg, ldata = _read_nifti(s.label, "Label file")
        if data.shape != ldata.shape:
            raise ValueError(
                f"{s.image.name} has shape {data.shape} but {s.label.name} has {ldata.shape}; "
                "a BTCV image and its label must share one grid."
            )
        if min(data.shape[:2]) <= 2 * b:
            raise ValueError(
                f"{s.image.name}: in-plane size {data.shape[:2]} is too small for the {b}-pixel "
                "border cut of SABS preprocessing (BTCV slices are 512 x 512)."
            )
        if not np.isfinite(data).all():
            raise ValueError(f"{s.image.name} contains NaN or inf values.")
        arr = np.asarray(data).transpose(2, 1, 0)  # SimpleITK order (z, y, x)
        lab = np.asarray(ldata).transpose(2, 1, 0)
        zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)  # (x, y, z)
        old_zyx = zooms[::-1]
        new_zyx = np.array([zooms[2], zooms[1] * SABS_SPACING_FACTOR, zooms[0] * SABS_SPACING_FACTOR])
        win = sabs_window(arr)[:, b:-b, b:-b]
        lab_c = lab[:, b:-b, b:-b]
        shape = resampled_shape(win.shape, old_zyx, new_zyx)
        res = resample_linear(win, old_zyx, new_zyx, shape=shape)
        res_lab = resample_labels(lab_c, old_zyx, new_zyx, shape=shape)
        aff = np.asarray(img.affine, dtype=float) @ np.diag([SABS_SPACING_FACTOR, SABS_SPACING_FACTOR, 1.0, 1.0])
        ipath, lpath = out / f"image_{s.scan_id}.nii.gz", out / f"label_{s.scan_id}.nii.gz"
        _save_nifti(_zyx_to_nifti(res, aff), ipath)
        _save_nifti(_zyx_to_nifti(res_lab, aff), lpath)
        labels_for_map[s.scan_id] = res_lab
        done.append(PreparedScan(
            scan_id=s.scan_id, raw_id=s.raw_id, image=ipath, label=lpath,
            shape_xyz=tuple(int(n) for n in res.shape[::-1]),  # type: ignore[arg-type]
            spacing_xyz=tuple(float(v) for v in new_zyx[::-1]),  # type: ignore[arg-type]
            source_shape_xyz=tuple(int(n) for n in data.shape),  # type: ignore[arg-type]
            source_spacing_xyz=tuple(float(v) for v in zooms),  # type: ignore[arg-type]
            label_ids=tuple(int(v) for v in np.unique(res_lab)),
        ))
    classmap = class_slice_index(labels_for_map, SABS_CLASSMAP_NAMES, rule="class")
    params = {"ct_window_hu": list(CT_WINDOW), "border_px": b, "spacing_factor": SABS_SPACING_FACTOR,
              "interpolation": "linear (SimpleITK semantics)", "image_dtype": "float64", "label_dtype": "float32"}
    return _finish("SABS", raw, out, done, classmap, params, notes, t0)


# =====================================================================================
# CHAOST2
# =====================================================================================


def _flip_rows_affine(affine: np.ndarray, n_rows: int) -> np.ndarray:
    """Affine of NIfTI voxels (col, row, slice) after reversing the row axis."""
    f = np.eye(4)
    f[1, 1] = -1.0
    f[1, 3] = n_rows - 1
    return affine @ f


def _read_pngs(ground: Path, stems: Sequence[str], scan: str) -> np.ndarray:
    from PIL import Image

    pngs = {p.stem: p for p in ground.iterdir() if p.suffix.lower() == ".png"}
    missing = [s for s in stems if s not in pngs]
    extra = sorted(set(pngs) - set(stems))
    if missing or extra:
        raise ValueError(
            f"CHAOS scan {scan}: the Ground PNGs do not pair up with the DICOM slices "
            f"(no PNG for {missing[:5]}; PNGs without a slice: {extra[:5]}). Each "
            "DICOM_anon/IMG-xxxx-NNNNN.dcm needs Ground/IMG-xxxx-NNNNN.png."
        )
    planes = []
    for s in stems:
        try:
            with Image.open(pngs[s]) as im:
                a = np.asarray(im)
        except OSError as exc:
            raise ValueError(f"CHAOS scan {scan}: cannot read {pngs[s]} as PNG ({exc}).") from exc
        if a.ndim == 3:  # RGB(A) export of a gray mask
            a = a[..., 0]
        planes.append(a)
    shapes = {p.shape for p in planes}
    if len(shapes) != 1:
        raise ValueError(f"CHAOS scan {scan}: Ground PNGs of different sizes {sorted(shapes)}.")
    return np.stack(planes)


def prepare_chaos(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """SSL-ALPNet's CHAOST2 preprocessing of the CHAOS T2-SPIR training scans (PROTOCOL.md 1.2).

    For each patient: DICOM -> (z, y, x) array with rows reversed and slices in file-number
    order (module docstring), labels from the ``Ground`` PNGs (rows flipped, gray values
    0/63/126/189/252 -> 0..4 by rank, as the notebook), top-0.5 % histogram cut, resampling
    to (1.25, 1.25, 7.70) mm, centre crop/pad to 256 x 256, then ``image_<id>.nii.gz``,
    ``label_<id>.nii.gz`` (float64, as the notebook's crop makes them), ``classmap_1.json``,
    ``SHA256SUMS`` and ``prepare.json``.

    Parameters
    ----------
    raw_dir : path-like
        Folder with ``MR/<id>/T2SPIR/{DICOM_anon,Ground}`` (see :func:`find_chaos_scans`).
    out_dir : path-like
    overwrite, progress : bool, keyword-only

    Returns
    -------
    PrepareReport
    """
    from ..io.dicom import read_dicom_series, trailing_number

    t0 = time.perf_counter()
    raw = Path(raw_dir)
    scans = find_chaos_scans(raw)
    out = _prepare_out(Path(out_dir), overwrite)
    notes = [
        "DICOM read with pydicom (not dcm2nii): slices in file-number order, DICOM rows reversed "
        "(the array's row axis runs posterior->anterior for axial slices, like the published "
        "CHAOST2 files); the NIfTI affine describes this layout",
        "Ground PNGs sorted by trailing number and flipped along rows (np.flip(vol, axis=1)), "
        "as png_gth_to_nii.ipynb; paired with the DICOM file of the same name",
        "gray values remapped by rank (0, 63, 126, 189, 252 -> 0..4)",
        "integer images stay integer through resampling (truncation, SimpleITK's static_cast)",
        "DICOM spacings rounded to float32, as the pixdim of the NIfTI the notebook resampled",
        "centre crop/pad to 256x256: header origin kept (as the notebook)",
    ]
    if len(scans) != 20:
        notes.append(f"{len(scans)} scans instead of the 20 CHAOS T2-SPIR training scans")
    done, labels_for_map = [], {}
    new_zyx = np.array(CHAOS_SPACING[::-1], dtype=np.float64)
    for s in tqdm(scans, desc="prepare chaos", disable=not progress, unit="scan"):
        try:
            files = sorted(
                (p for p in s.image.iterdir() if p.is_file() and not p.name.startswith(".")),
                key=lambda p: (trailing_number(p.name), p.name),
            )
        except ValueError as exc:
            raise ValueError(f"CHAOS scan {s.scan_id}: {exc}") from exc
        nums = [trailing_number(p.name) for p in files]
        if len(set(nums)) != len(nums):
            raise ValueError(f"CHAOS scan {s.scan_id}: DICOM file numbers repeat in {s.image}.")
        series = read_dicom_series(s.image, order="position", files=files)
        # slices in file-number order (the PNG order), checked to be monotonic in position
        rank = {p: i for i, p in enumerate(files)}
        by_file = sorted(range(len(series.files)), key=lambda i: rank[series.files[i]])
        if by_file != list(range(len(by_file))) and by_file != list(range(len(by_file)))[::-1]:
            raise ValueError(
                f"CHAOS scan {s.scan_id}: the DICOM file numbers do not follow the slice positions; "
                "cannot pair slices with the Ground PNGs by number."
            )
        arr = series.array[by_file]
        pos = series.positions[by_file]
        ordered_files = [series.files[i] for i in by_file]
        n_z, n_r, n_c = arr.shape
        step = (pos[-1] - pos[0]) / (n_z - 1) if n_z > 1 else series.affine[:3, 2] * np.array([-1, -1, 1])
        from ..io.dicom import dicom_affine

        aff = dicom_affine(pos[0], np.array(series.orientation), (series.spacing[1], series.spacing[2]), step)
        aff = _flip_rows_affine(aff, n_r)
        img_zyx = arr[:, ::-1, :]  # rows reversed: dcm2nii-like layout
        gray = _read_pngs(s.label, [p.stem for p in ordered_files], s.scan_id)
        if gray.shape != arr.shape:
            raise ValueError(
                f"CHAOS scan {s.scan_id}: Ground PNGs are {gray.shape[1:]} but the DICOM slices "
                f"are {arr.shape[1:]}."
            )
        gray = np.flip(gray, axis=1)
        values = np.unique(gray)
        if values.size == len(CHAOS_GRAY_VALUES):
            lab = chaos_gray_to_label(gray, method="rank")
            note = ()
        else:
            lab = chaos_gray_to_label(gray, method="fixed")
            note = (f"gray values {values.tolist()}: not all five classes present, mapped by the "
                    "CHAOS ranges instead of rank (rank would shift the ids)",)
        # (slice, row, col); float32 like the pixdim of the NIfTI SimpleITK read in the notebook
        old_zyx = np.array(series.spacing, dtype=np.float32).astype(np.float64)
        cut, hir = histogram_cut_top(np.ascontiguousarray(img_zyx), HIST_CUT_TOP)
        shape = resampled_shape(cut.shape, old_zyx, new_zyx)
        res = resample_linear(cut, old_zyx, new_zyx, shape=shape)
        res_lab = resample_labels(lab, old_zyx, new_zyx, shape=shape)
        img_out = crop_or_pad_center(res, CROP_SIZE, pad_value=float(res.min()))
        lab_out = crop_or_pad_center(res_lab, CROP_SIZE, pad_value=0.0)
        aff_out = aff @ np.diag([CHAOS_SPACING[0] / old_zyx[2], CHAOS_SPACING[1] / old_zyx[1],
                                 CHAOS_SPACING[2] / old_zyx[0], 1.0])
        ipath, lpath = out / f"image_{s.scan_id}.nii.gz", out / f"label_{s.scan_id}.nii.gz"
        _save_nifti(_zyx_to_nifti(img_out, aff_out), ipath)
        _save_nifti(_zyx_to_nifti(lab_out, aff_out), lpath)
        labels_for_map[s.scan_id] = lab_out
        done.append(PreparedScan(
            scan_id=s.scan_id, raw_id=s.raw_id, image=ipath, label=lpath,
            shape_xyz=tuple(int(n) for n in img_out.shape[::-1]),  # type: ignore[arg-type]
            spacing_xyz=CHAOS_SPACING,
            source_shape_xyz=(n_c, n_r, n_z),
            source_spacing_xyz=(float(old_zyx[2]), float(old_zyx[1]), float(old_zyx[0])),
            label_ids=tuple(int(v) for v in np.unique(lab_out)),
            notes=note + (f"histogram cut at {hir:.6g}",),
        ))
    classmap = class_slice_index(labels_for_map, CHAOST2_CLASSMAP_NAMES, rule="sum")
    params = {"hist_cut_top_percent": HIST_CUT_TOP, "spacing_xyz": list(CHAOS_SPACING), "crop": CROP_SIZE,
              "interpolation": "linear (SimpleITK semantics)", "image_dtype": "float64",
              "label_dtype": "float64", "gray_values": list(CHAOS_GRAY_VALUES)}
    return _finish("CHAOST2", raw, out, done, classmap, params, notes, t0)


# =====================================================================================
# CLI
# =====================================================================================


