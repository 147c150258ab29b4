"""Reading a DICOM series into a volume with pydicom, with the geometry checks a volume needs.

:func:`read_dicom_series` reads one folder holding one series of 2D slices (CT or MR) and
refuses, with a message naming the files, anything that is not one regular 3D grid:

* files that are not DICOM, or lack a geometry tag (``ImagePositionPatient``,
  ``ImageOrientationPatient``, ``PixelSpacing``, ``Rows``/``Columns``, pixel data);
* several series in one folder (``SeriesInstanceUID``);
* slices with different orientations, pixel spacings or sizes ("mixed orientations");
* two slices at one position, a gantry tilt (slices shifted in-plane along the stack);
* missing slices (a gap that is a multiple of the series' slice spacing) or otherwise
  irregular slice spacing.

The result, :class:`DicomSeries`, keeps the slices as a ``(Z, R, C)`` array (slice, DICOM row,
DICOM column), with ``RescaleSlope`` / ``RescaleIntercept`` applied, and the voxel-to-world
affine of the NIfTI it converts to (:meth:`DicomSeries.to_nifti`): NIfTI voxel axes
``(i, j, k) = (column, row, slice)`` and RAS+ world coordinates in mm, so the written file lands
at the right place in any viewer and :func:`fsm2kit.io.nifti.load_nifti` reorients it like any other
scan.

pydicom is an optional dependency (``pip install fsm2kit[dicom]``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np

__all__ = [
    "DicomSeries",
    "read_dicom_series",
    "dicom_affine",
    "series_files",
    "trailing_number",
]

#: Tolerance (mm) when comparing slice positions, and relative tolerance of slice spacing.
POSITION_TOL_MM = 1e-3
SPACING_RTOL = 0.01
#: Tolerance when comparing direction cosines of different slices.
ORIENTATION_TOL = 1e-4

_SKIP_NAMES = {"DICOMDIR", "LOCKFILE", "VERSION", ".DS_Store", "Thumbs.db"}


def _pydicom():
    try:
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading DICOM needs pydicom: pip install pydicom (or fsm2kit[dicom])."
        ) from exc
    return pydicom


def trailing_number(name: str | os.PathLike) -> int:
    """The last integer in a file name, e.g. ``IMG-0002-00017.dcm`` -> 17.

    This is how the CHAOS files are numbered (and how SSL-ALPNet sorts the label PNGs).
    """
    stem = Path(name).name
    found = re.findall(r"\d+", stem)
    if not found:
        raise ValueError(f"File name {stem!r} has no number; expected names like 'IMG-0002-00017.dcm'.")
    return int(found[-1])


@dataclass(frozen=True, eq=False, repr=False)
class DicomSeries:
    """One DICOM series as a regular 3D grid.

    Attributes
    ----------
    array : ndarray, (Z, R, C)
        Slices in series order (see ``order``), DICOM rows and columns as stored. The stored
        integer type is kept when every slice has slope 1 and intercept 0; otherwise float32
        ``stored * RescaleSlope + RescaleIntercept``.
    affine : ndarray, (4, 4)
        Maps NIfTI voxel indices ``(column, row, slice)`` to RAS+ world coordinates (mm).
    spacing : tuple of 3 float
        ``(slice step, row spacing, column spacing)`` in mm (``PixelSpacing`` is (row, column)).
    orientation : tuple of 6 float
        ``ImageOrientationPatient`` (row direction cosines, then column direction cosines, LPS).
    files : tuple of Path
        One file per slice, in array order.
    instance_numbers : tuple of int or None
        ``InstanceNumber`` of each slice.
    positions : ndarray, (Z, 3)
        ``ImagePositionPatient`` of each slice (LPS, mm).
    series_uid, modality : str
    order : {"position", "instance"}
        How the slices were ordered: along the slice normal (ascending), or by InstanceNumber.
    """

    array: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    orientation: tuple[float, ...]
    files: tuple[Path, ...]
    instance_numbers: tuple[int | None, ...]
    positions: np.ndarray
    series_uid: str
    modality: str
    order: str

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """Axis codes of the NIfTI voxel axes (column, row, slice)."""
        return tuple(str(c) for c in nib.aff2axcodes(self.affine))  # type: ignore[return-value]

    def nifti_data(self) -> np.ndarray:
        """The array in NIfTI voxel order ``(column, row, slice)``."""
        return np.ascontiguousarray(self.array.transpose(2, 1, 0))

    def to_nifti(self) -> nib.Nifti1Image:
        """A NIfTI image of the series (qform and sform set to :attr:`affine`, code 1 = scanner)."""
        img = nib.Nifti1Image(self.nifti_data(), self.affine)
        img.set_qform(self.affine, code=1)
        img.set_sform(self.affine, code=1)
        img.header.set_xyzt_units("mm")
        return img

    def save_nifti(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_nifti` to ``path`` (``.nii`` or ``.nii.gz``)."""
        path = Path(path)
        nib.save(self.to_nifti(), str(path))
        return path

    def to_volume(self, *, case_id: str | None = None):
        """A :class:`fsm2kit.io.volumes.Volume` (canonical axial layout) whose masks write back to
        :meth:`to_nifti`'s grid."""
        from .nifti import volume_from_nifti_image

        mod = self.modality if self.modality in ("CT", "MR") else ""
        cid = case_id if case_id is not None else (self.files[0].parent.name if self.files else "")
        return volume_from_nifti_image(self.to_nifti(), modality=mod, case_id=cid, path=self.files[0].parent)

    def __repr__(self) -> str:
        z, r, c = self.shape
        sp = ", ".join(f"{s:.4g}" for s in self.spacing)
        folder = self.files[0].parent if self.files else "?"
        return (
            f"DicomSeries({folder}, {self.modality or '?'}, {z} slices x {r} rows x {c} cols, "
            f"spacing=({sp}) mm, axes {''.join(self.axcodes)}, order={self.order}, "
            f"dtype={self.array.dtype})"
        )


def dicom_affine(
    position: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    slice_step: np.ndarray,
) -> np.ndarray:
    """The RAS+ affine of NIfTI voxels ``(column, row, slice)`` from DICOM geometry.

    Parameters
    ----------
    position : (3,) array
        ``ImagePositionPatient`` of the first slice (LPS, mm): the centre of its first pixel.
    orientation : (6,) array
        ``ImageOrientationPatient``: direction of increasing column index, then of increasing
        row index (LPS).
    pixel_spacing : (row spacing, column spacing)
        ``PixelSpacing`` (mm).
    slice_step : (3,) array
        World displacement from one slice to the next (LPS, mm).

    Returns
    -------
    ndarray, (4, 4)
    """
    o = np.asarray(orientation, dtype=float)
    lps = np.eye(4)
    lps[:3, 0] = o[:3] * float(pixel_spacing[1])
    lps[:3, 1] = o[3:] * float(pixel_spacing[0])
    lps[:3, 2] = np.asarray(slice_step, dtype=float)
    lps[:3, 3] = np.asarray(position, dtype=float)
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def _floats(ds, tag: str, n: int, path: Path) -> np.ndarray:
    v = getattr(ds, tag, None)
    if v is None:
        raise ValueError(
            f"{path}: DICOM tag {tag} is missing; a slice of a 3D series needs "
            "ImagePositionPatient, ImageOrientationPatient and PixelSpacing."
        )
    try:
        a = np.array([float(x) for x in v], dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: DICOM tag {tag} is not numeric: {v!r}.") from exc
    if a.size != n or not np.isfinite(a).all():
        raise ValueError(f"{path}: DICOM tag {tag} should hold {n} finite numbers, got {list(v)!r}.")
    return a


@dataclass(frozen=True, eq=False)
class _Slice:
    path: Path
    uid: str
    instance: int | None
    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray
    rows: int
    cols: int
    slope: float
    intercept: float
    modality: str
    thickness: float | None
    ds: object


def _read_one(path: Path) -> _Slice:
    pydicom = _pydicom()
    try:
        ds = pydicom.dcmread(str(path))
    except (pydicom.errors.InvalidDicomError, OSError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a readable DICOM file ({type(exc).__name__}: {exc}). Keep only the "
            "series' .dcm files in the folder."
        ) from exc
    if "PixelData" not in ds:
        raise ValueError(f"{path}: DICOM file without pixel data (not an image slice).")
    for tag in ("Rows", "Columns"):
        if getattr(ds, tag, None) is None:
            raise ValueError(f"{path}: DICOM tag {tag} is missing.")
    pos = _floats(ds, "ImagePositionPatient", 3, path)
    ori = _floats(ds, "ImageOrientationPatient", 6, path)
    sp = _floats(ds, "PixelSpacing", 2, path)
    if np.any(sp <= 0):
        raise ValueError(f"{path}: PixelSpacing must be positive, got {sp.tolist()}.")
    for part, name in ((ori[:3], "row"), (ori[3:], "column")):
        if abs(np.linalg.norm(part) - 1) > 1e-3:
            raise ValueError(f"{path}: ImageOrientationPatient {name} cosines are not a unit vector: {ori.tolist()}.")
    inst = getattr(ds, "InstanceNumber", None)
    thick = getattr(ds, "SpacingBetweenSlices", None) or getattr(ds, "SliceThickness", None)
    return _Slice(
        path=path,
        uid=str(getattr(ds, "SeriesInstanceUID", "")),
        instance=int(inst) if inst is not None and str(inst).strip() != "" else None,
        position=pos,
        orientation=ori,
        spacing=sp,
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        slope=float(getattr(ds, "RescaleSlope", 1) or 1),
        intercept=float(getattr(ds, "RescaleIntercept", 0) or 0),
        modality=str(getattr(ds, "Modality", "")),
        thickness=float(thick) if thick not in (None, "") else None,
        ds=ds,
    )


def series_files(folder: str | os.PathLike) -> list[Path]:
    """The files :func:`read_dicom_series` reads from ``folder``: every regular file, by name,
    except hidden files and ``DICOMDIR``-like names."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name not in _SKIP_NAMES
    )


def read_dicom_series(
    folder: str | os.PathLike,
    *,
    order: Literal["position", "instance"] = "position",
    files: list[str | os.PathLike] | None = None,
) -> DicomSeries:
    """Read one DICOM series from a folder and check that it is one regular 3D grid.

    Parameters
    ----------
    folder : path-like
        A folder holding the slices of one series (every regular file is read; hidden files
        and ``DICOMDIR`` are skipped).
    order : {"position", "instance"}, keyword-only
        Slice order of the array: ascending position along the slice normal (row cosines x
        column cosines), or ascending ``InstanceNumber`` (which must then be unique and
        monotonic in position).
    files : list of path-like, optional, keyword-only
        Read these files instead of listing ``folder``.

    Returns
    -------
    DicomSeries

    Raises
    ------
    FileNotFoundError, NotADirectoryError
        The folder does not exist or is a file.
    ValueError
        Non-DICOM files, missing geometry, several series, mixed orientations / spacings /
        sizes, duplicate positions, gantry tilt, missing slices or irregular spacing; the
        message names the files concerned.
    """
    if order not in ("position", "instance"):
        raise ValueError(f"order must be 'position' or 'instance', got {order!r}.")
    folder = Path(folder)
    if files is None:
        if not folder.exists():
            raise FileNotFoundError(f"DICOM folder not found: {folder} (absolute: {folder.absolute()}).")
        if not folder.is_dir():
            raise NotADirectoryError(f"Expected a folder of DICOM slices, got the file {folder}.")
        paths = series_files(folder)
    else:
        paths = [Path(p) for p in files]
    if not paths:
        raise ValueError(f"No DICOM files in {folder}.")
    slices = [_read_one(p) for p in paths]

    uids = sorted({s.uid for s in slices})
    if len(uids) > 1:
        counts = ", ".join(f"{u or '<none>'} ({sum(s.uid == u for s in slices)} files)" for u in uids)
        raise ValueError(
            f"{folder} holds {len(uids)} DICOM series: {counts}. Put each series in its own folder."
        )

    ref = slices[0]
    mixed = [s for s in slices if np.abs(s.orientation - ref.orientation).max() > ORIENTATION_TOL]
    if mixed:
        groups: dict[tuple, list[str]] = {}
        for s in slices:
            groups.setdefault(tuple(np.round(s.orientation, 4)), []).append(s.path.name)
        desc = "; ".join(f"{list(k)}: {v[:3]}{' ...' if len(v) > 3 else ''}" for k, v in groups.items())
        raise ValueError(
            f"{folder}: mixed orientations, the slices do not share one ImageOrientationPatient "
            f"({desc}). A volume needs parallel slices; split the folder by orientation (e.g. a "
            "localizer mixed into an axial series)."
        )
    for attr, what in (("spacing", "PixelSpacing"),):
        bad = [s.path.name for s in slices if np.abs(getattr(s, attr) - getattr(ref, attr)).max() > 1e-6]
        if bad:
            raise ValueError(
                f"{folder}: {what} differs between slices ({ref.path.name}: {getattr(ref, attr).tolist()}, "
                f"different in {bad[:5]}). A volume needs one in-plane grid."
            )
    bad = [s.path.name for s in slices if (s.rows, s.cols) != (ref.rows, ref.cols)]
    if bad:
        raise ValueError(
            f"{folder}: slice sizes differ ({ref.path.name} is {ref.rows}x{ref.cols}; different: "
            f"{bad[:5]}). A volume needs one in-plane grid."
        )

    normal = np.cross(ref.orientation[:3], ref.orientation[3:])
    dist = np.array([float(normal @ s.position) for s in slices])
    by_pos = np.argsort(dist, kind="stable")
    sorted_d = dist[by_pos]
    dup = np.flatnonzero(np.diff(sorted_d) < POSITION_TOL_MM)
    if dup.size:
        a, b = slices[by_pos[dup[0]]], slices[by_pos[dup[0] + 1]]
        raise ValueError(
            f"{folder}: two slices at the same position ({a.path.name} and {b.path.name}, "
            f"{sorted_d[dup[0]]:.3f} mm along the normal). Remove duplicates or split echoes / "
            "time points into separate folders."
        )

    if order == "instance":
        inst = [s.instance for s in slices]
        if any(i is None for i in inst):
            missing = [s.path.name for s in slices if s.instance is None][:5]
            raise ValueError(f"{folder}: order='instance' needs InstanceNumber in every file; missing in {missing}.")
        if len(set(inst)) != len(inst):
            raise ValueError(f"{folder}: InstanceNumber repeats; use order='position'.")
        idx = np.argsort(np.array(inst), kind="stable")
        d = dist[idx]
        steps = np.diff(d)
        if steps.size and not (np.all(steps > 0) or np.all(steps < 0)):
            raise ValueError(
                f"{folder}: InstanceNumber order is not monotonic along the slice normal; the "
                "stack would be scrambled. Use order='position'."
            )
    else:
        idx = by_pos
    ordered = [slices[i] for i in idx]
    d = dist[idx]

    n = len(ordered)
    positions = np.stack([s.position for s in ordered])
    if n > 1:
        steps = np.abs(np.diff(d))
        step = float(np.median(steps))
        off = np.abs(steps - step) > max(SPACING_RTOL * step, POSITION_TOL_MM)
        if off.any():
            k = int(np.flatnonzero(off)[0])
            gap = float(steps[k])
            a, b = ordered[k].path.name, ordered[k + 1].path.name
            ratio = gap / step
            if ratio > 1.5 and abs(ratio - round(ratio)) < 0.1:
                raise ValueError(
                    f"{folder}: missing slice(s): {gap:.3f} mm between {a} and {b} where the series "
                    f"spacing is {step:.3f} mm, so about {int(round(ratio)) - 1} slice(s) are missing. "
                    "Re-export the complete series."
                )
            raise ValueError(
                f"{folder}: irregular slice spacing: {gap:.3f} mm between {a} and {b}, "
                f"{step:.3f} mm elsewhere. A volume needs evenly spaced slices."
            )
        slice_step = (positions[-1] - positions[0]) / (n - 1)
        # every slice on the line from the first along the normal (no gantry tilt)
        expected = positions[0] + np.arange(n)[:, None] * slice_step
        resid = np.abs(positions - expected).max()
        if resid > max(SPACING_RTOL * step, 10 * POSITION_TOL_MM):
            raise ValueError(
                f"{folder}: the slice positions do not lie on one line (deviation {resid:.3f} mm): "
                "gantry tilt or a sheared stack. Resample the series to an orthogonal grid first."
            )
        tilt = np.linalg.norm(np.cross(slice_step / np.linalg.norm(slice_step), normal))
        if tilt > 1e-3:
            raise ValueError(
                f"{folder}: the slices are stacked at an angle to their normal (gantry tilt, "
                f"sin={tilt:.4f}). Resample the series to an orthogonal grid first."
            )
    else:
        thick = ref.thickness if ref.thickness and ref.thickness > 0 else 1.0
        slice_step = normal * thick

    # pixel data
    arrays = []
    for s in ordered:
        try:
            px = s.ds.pixel_array  # type: ignore[attr-defined]
        except Exception as exc:  # compressed transfer syntax without a decoder, broken data
            raise ValueError(
                f"{s.path}: cannot decode the pixel data ({type(exc).__name__}: {exc}). For "
                "compressed DICOM install a decoder (e.g. pip install pylibjpeg pylibjpeg-libjpeg)."
            ) from exc
        if px.shape != (ref.rows, ref.cols):
            raise ValueError(f"{s.path}: pixel data of shape {px.shape}, expected {(ref.rows, ref.cols)} (one frame).")
        arrays.append(px)
    raw = np.stack(arrays)
    plain = all(s.slope == 1.0 and s.intercept == 0.0 for s in ordered)
    if plain and np.issubdtype(raw.dtype, np.integer):
        array = raw
    else:
        slope = np.array([s.slope for s in ordered], dtype=np.float64)[:, None, None]
        inter = np.array([s.intercept for s in ordered], dtype=np.float64)[:, None, None]
        array = (raw.astype(np.float64) * slope + inter).astype(np.float32)

    affine = dicom_affine(positions[0], ref.orientation, (ref.spacing[0], ref.spacing[1]), slice_step)
    return DicomSeries(
        array=array,
        affine=affine,
        spacing=(float(np.linalg.norm(slice_step)), float(ref.spacing[0]), float(ref.spacing[1])),
        orientation=tuple(float(x) for x in ref.orientation),
        files=tuple(s.path for s in ordered),
        instance_numbers=tuple(s.instance for s in ordered),
        positions=positions,
        series_uid=ref.uid,
        modality=ref.modality,
        order=order,
    )
