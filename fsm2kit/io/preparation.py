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
    T2-SPIR DICOM read with :mod:`fsm2kit.io.dicom` (slices in file-number order; rows flipped,
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
Every output is written atomically (:func:`fsm2kit.records.fileio.atomic_write`) and listed with its
sha256 in ``SHA256SUMS``; ``prepare.json`` records the inputs, the mapping from raw files to ids
and the parameters.

The formulas are :mod:`fsm2kit.protocol.preprocessing` (pure array functions) and the raw layouts
:mod:`fsm2kit.io.raw_scans`; this module runs them over a download.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from ..records.fileio import atomic_write, check_can_create, file_sha256
from ..protocol.preprocessing import (
    CHAOST2_CLASSMAP_NAMES,
    CHAOS_GRAY_VALUES,
    CHAOS_SPACING,
    CROP_SIZE,
    CT_WINDOW,
    HIST_CUT_TOP,
    SABS_BORDER,
    SABS_CLASSMAP_NAMES,
    SABS_SPACING_FACTOR,
    chaos_gray_to_label,
    class_slice_index,
    crop_or_pad_center,
    histogram_cut_top,
    resample_labels,
    resample_linear,
    resampled_shape,
    sabs_window,
)
from .nifti import read_image
from .raw_scans import find_chaos_scans, find_synapse_scans

__all__ = [
    "PreparedScan",
    "PrepareReport",
    "prepare_synapse",
    "prepare_chaos",
    "check_prepare_output",
]


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


# =====================================================================================
# Writing
# =====================================================================================


def _zyx_to_nifti(array_zyx: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    """A (z, y, x) SimpleITK-order array as a NIfTI file (nibabel order (x, y, z))."""
    data = np.ascontiguousarray(np.asarray(array_zyx).transpose(2, 1, 0))
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm")
    return img


def _save_nifti(img: nib.Nifti1Image, path: Path) -> None:
    atomic_write(path, lambda tmp: nib.save(img, tmp), keep_suffix=True)  # nibabel reads the suffix


_OUTPUT_FILE = re.compile(r"^(image|label)_\d+\.nii\.gz$")  # the scans prepare writes


def check_prepare_output(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                         cli: bool = False) -> None:
    """What :func:`prepare_synapse` / :func:`prepare_chaos` check before reading a scan: ``out_dir``
    is not ``raw_dir``, not inside it and does not contain it (the raw download is never written
    to), is a writable folder, and holds no prepared scans unless ``overwrite``. ``cli`` words the
    errors for ``fsm2kit prepare`` (``RAW_DIR``, ``--overwrite``) instead of Python's."""
    raw, out = Path(raw_dir), Path(out_dir)
    names = ("RAW_DIR", "OUT_DIR", "--overwrite") if cli else ("raw_dir", "out_dir", "overwrite=True")
    r, o = Path(os.path.realpath(raw)), Path(os.path.realpath(out))
    if o == r or r in o.parents:
        raise ValueError(f"{names[1]} {out} {'is' if o == r else 'lies inside'} the raw download {names[0]} {raw}: "
                         "fsm2kit never writes into its inputs; choose an output folder outside it.")
    if o in r.parents:
        raise ValueError(f"{names[1]} {out} contains the raw download {names[0]} {raw}; choose an output folder "
                         "that does not hold the input.")
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{names[1]} {out} is a file; give a folder.")
    check_can_create(out / "x")  # nothing created yet
    _refuse_existing(out, overwrite, names)


def _refuse_existing(out_dir: Path, overwrite: bool, names) -> None:
    existing = sorted(p.name for p in out_dir.iterdir() if _OUTPUT_FILE.match(p.name)) if out_dir.is_dir() else []
    if existing and not overwrite:
        raise FileExistsError(
            f"{names[1]} {out_dir} already holds prepared files ({existing[:4]}{' ...' if len(existing) > 4 else ''}); "
            f"pass {names[2]} to replace them, or choose an empty folder."
        )


def _prepare_out(out_dir: Path, overwrite: bool, *, names=("raw_dir", "out_dir", "overwrite=True")) -> Path:
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{names[1]} {out_dir} is a file; give a folder.")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".fsm2kit-write-test.", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(
            f"Cannot write to {names[1]} {out_dir} ({type(exc).__name__}: {exc}); choose a writable folder."
        ) from exc
    _refuse_existing(out_dir, overwrite, names)
    return out_dir


def _remove_stale_outputs(out_dir: Path, keep: set[str]) -> list[str]:
    """Delete the earlier data set's scans this run did not write (``prepare --overwrite``).

    Only files of prepare's own layout (``image_<id>.nii.gz`` / ``label_<id>.nii.gz``) are
    removed, so the folder then holds exactly the new data set; other files are left alone.
    """
    removed = []
    for p in sorted(out_dir.iterdir()):
        if p.is_file() and _OUTPUT_FILE.match(p.name) and p.name not in keep:
            p.unlink()
            removed.append(p.name)
    return removed


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
    from ..version import __version__

    cm_path = out_dir / "classmap_1.json"
    atomic_write(cm_path, lambda tmp: Path(tmp).write_text(json.dumps(classmap)))
    files = [p for s in scans for p in (s.image, s.label)] + [cm_path]
    removed = _remove_stale_outputs(out_dir, {p.name for p in files})
    if removed:
        notes.append(f"--overwrite: removed {len(removed)} files of the previous data set not made by "
                     f"this run ({', '.join(removed[:6])}{' ...' if len(removed) > 6 else ''})")
    sums = {p.name: file_sha256(p) for p in files}
    atomic_write(out_dir / "SHA256SUMS", lambda tmp: Path(tmp).write_text("".join(f"{h}  {n}\n" for n, h in sums.items())))
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
    atomic_write(man_path, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
    return PrepareReport(dataset, raw_dir, out_dir, scans, cm_path, sums, man_path,
                         time.perf_counter() - t0, notes)


def _read_nifti(path: Path, what: str) -> tuple[nib.spatialimages.SpatialImage, np.ndarray]:
    img, data = read_image(path, what)  # shared damaged-file handling
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
    check_prepare_output(raw_dir, out_dir, overwrite=overwrite)  # the download is never written to
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
    from .dicom import dicom_affine, read_dicom_series, trailing_number

    t0 = time.perf_counter()
    raw = Path(raw_dir)
    check_prepare_output(raw_dir, out_dir, overwrite=overwrite)  # the download is never written to
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
