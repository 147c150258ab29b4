"""fsm2kit.io.dicom on synthetic series written by pydicom (known geometry and pixel values)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402

from fsm2kit.io.nifti import load_nifti  # noqa: E402
from fsm2kit.io.dicom import dicom_affine, read_dicom_series, trailing_number  # noqa: E402

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _ds(v: float) -> str:
    return f"{v:.6f}".rstrip("0").rstrip(".") if "." in f"{v:.6f}" else f"{v}"


def write_slice(path: Path, pixels: np.ndarray, *, position, orientation=AXIAL, spacing=(0.75, 0.5),
                instance: int | None = 1, series_uid: str = "1.2.3.4", slope: float = 1.0,
                intercept: float = 0.0, modality: str = "MR", thickness: float = 2.5,
                drop: tuple[str, ...] = ()) -> Path:
    """One uncompressed 16-bit DICOM slice with the given geometry."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = "1.2.3.5"
    ds.Modality = modality
    if instance is not None:
        ds.InstanceNumber = int(instance)
    ds.ImagePositionPatient = [_ds(float(x)) for x in position]
    ds.ImageOrientationPatient = [_ds(float(x)) for x in orientation]
    ds.PixelSpacing = [_ds(float(x)) for x in spacing]
    ds.SliceThickness = _ds(thickness)
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    for tag in drop:
        delattr(ds, tag)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def write_series(folder: Path, pixels: np.ndarray, *, origin=(-10.0, -20.0, 30.0), step=2.5,
                 orientation=AXIAL, spacing=(0.75, 0.5), names=None, instances=None,
                 positions=None, **kw) -> list[Path]:
    """A series of len(pixels) slices; slice k at origin + k*step along the normal."""
    folder.mkdir(parents=True, exist_ok=True)
    o = np.asarray(orientation, float)
    normal = np.cross(o[:3], o[3:])
    paths = []
    for k, px in enumerate(pixels):
        pos = positions[k] if positions is not None else np.asarray(origin) + k * step * normal
        name = names[k] if names is not None else f"IMG-0002-{k + 1:05d}.dcm"
        inst = instances[k] if instances is not None else k + 1
        paths.append(write_slice(folder / name, px, position=pos, orientation=orientation,
                                 spacing=spacing, instance=inst, **kw))
    return paths


@pytest.fixture
def pixels() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, size=(5, 6, 8)).astype(np.uint16)


def test_axial_series_geometry_and_values(tmp_path, pixels):
    # files written under names that do not sort by position: the reader sorts along the normal
    names = ["e.dcm", "c.dcm", "a.dcm", "d.dcm", "b.dcm"]
    write_series(tmp_path / "s", pixels, names=names, slope=2.0, intercept=-100.0)
    s = read_dicom_series(tmp_path / "s")
    assert s.shape == (5, 6, 8) and s.array.dtype == np.float32
    np.testing.assert_array_equal(s.array, pixels.astype(np.float32) * 2 - 100)
    assert [p.name for p in s.files] == names
    assert s.spacing == pytest.approx((2.5, 0.75, 0.5))
    # voxel (column c, row r, slice k) -> LPS (-10 + 0.5c, -20 + 0.75r, 30 + 2.5k) -> RAS
    for c, r, k in [(0, 0, 0), (7, 0, 0), (0, 5, 0), (3, 2, 4)]:
        lps = np.array([-10 + 0.5 * c, -20 + 0.75 * r, 30 + 2.5 * k])
        np.testing.assert_allclose(s.affine @ [c, r, k, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-9)
    assert s.axcodes == ("L", "P", "S")
    assert "5 slices" in repr(s) and "MR" in repr(s)

    # plain slope/intercept keeps the stored integers
    write_series(tmp_path / "plain", pixels)
    p = read_dicom_series(tmp_path / "plain")
    assert p.array.dtype == np.uint16 and np.array_equal(p.array, pixels)

    # NIfTI round trip: for an axial series the canonical (Z, H, W) array is the DICOM stack
    out = p.save_nifti(tmp_path / "s.nii.gz")
    v = load_nifti(out)
    np.testing.assert_array_equal(v.array, pixels.astype(np.float32))
    np.testing.assert_allclose(v.spacing, (2.5, 0.75, 0.5))
    vol = p.to_volume(case_id="syn")
    np.testing.assert_array_equal(vol.array, v.array)
    img = vol.mask_to_nifti(vol.array > 2000)
    np.testing.assert_array_equal(img.affine, p.affine)
    assert img.shape == (8, 6, 5)
    np.testing.assert_array_equal(np.asarray(img.dataobj).transpose(2, 1, 0) > 0, pixels > 2000)


def test_instance_order_and_descending_positions(tmp_path, pixels):
    # instance numbers run head -> feet: positions descend
    write_series(tmp_path / "s", pixels, step=-3.0)
    by_pos = read_dicom_series(tmp_path / "s")
    by_inst = read_dicom_series(tmp_path / "s", order="instance")
    np.testing.assert_array_equal(by_inst.array, pixels)
    np.testing.assert_array_equal(by_pos.array, pixels[::-1])
    assert by_inst.instance_numbers == (1, 2, 3, 4, 5) and by_pos.instance_numbers == (5, 4, 3, 2, 1)
    assert by_inst.axcodes[2] == "I" and by_pos.axcodes[2] == "S"
    # both describe the same world: slice k of one is slice 4-k of the other
    np.testing.assert_allclose(by_inst.affine @ [2, 3, 0, 1], by_pos.affine @ [2, 3, 4, 1], atol=1e-9)
    assert trailing_number("IMG-0002-00017.dcm") == 17


def test_oblique_series_affine(tmp_path, pixels):
    a = np.radians(30)
    ori = (np.cos(a), np.sin(a), 0.0, -np.sin(a), np.cos(a), 0.0)
    write_series(tmp_path / "s", pixels, orientation=ori)
    s = read_dicom_series(tmp_path / "s")
    o = np.array([float(f"{x:.6f}") for x in ori])
    expected = dicom_affine(np.array([-10, -20, 30.0]), o, (0.75, 0.5), np.array([0, 0, 2.5]))
    np.testing.assert_allclose(s.affine, expected, atol=1e-5)
    v = s.to_volume()
    w = v.mask_to_nifti(np.ones(v.shape, bool))
    np.testing.assert_allclose(w.affine, s.affine)


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", r"missing slice\(s\).*about 1 slice"),
        ("irregular", "irregular slice spacing"),
        ("mixed", "mixed orientations"),
        ("duplicate", "same position"),
        ("two_series", "2 DICOM series"),
        ("tilt", "gantry tilt|one line"),
        ("not_dicom", "not a readable DICOM file"),
        ("no_position", "ImagePositionPatient is missing"),
        ("spacing", "PixelSpacing differs"),
        ("size", "slice sizes differ"),
    ],
)
def test_bad_series_are_refused(tmp_path, pixels, case, message):
    d = tmp_path / case
    if case == "missing":
        write_series(d, pixels, positions=[(0, 0, z) for z in (0, 2.5, 5, 10, 12.5)])
    elif case == "irregular":
        write_series(d, pixels, positions=[(0, 0, z) for z in (0, 2.5, 5, 6, 8.5)])
    elif case == "mixed":
        write_series(d, pixels)
        write_slice(d / "IMG-0002-00003.dcm", pixels[2], position=(0, 0, 35.0), orientation=(1, 0, 0, 0, 0, -1))
    elif case == "duplicate":
        write_series(d, pixels, positions=[(0, 0, z) for z in (0, 2.5, 2.5, 5, 7.5)])
    elif case == "two_series":
        write_series(d, pixels[:3])
        write_series(d, pixels[3:], names=["x1.dcm", "x2.dcm"], series_uid="9.9.9")
    elif case == "tilt":
        write_series(d, pixels, positions=[(k * 1.0, 0, k * 2.5) for k in range(5)])
    elif case == "not_dicom":
        write_series(d, pixels)
        (d / "notes.txt").write_text("scanner notes")
    elif case == "no_position":
        write_series(d, pixels)
        write_slice(d / "IMG-0002-00003.dcm", pixels[2], position=(0, 0, 0), drop=("ImagePositionPatient",))
    elif case == "spacing":
        write_series(d, pixels)
        write_slice(d / "IMG-0002-00003.dcm", pixels[2], position=(-10, -20, 35.0), spacing=(0.8, 0.5))
    elif case == "size":
        write_series(d, pixels)
        write_slice(d / "IMG-0002-00003.dcm", np.zeros((7, 8), np.uint16), position=(-10, -20, 35.0))
    with pytest.raises(ValueError, match=message):
        read_dicom_series(d)


def test_missing_folder_and_empty(tmp_path, pixels):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dicom_series(tmp_path / "nope")
    f = tmp_path / "file.dcm"
    write_slice(f, pixels[0], position=(0, 0, 0))
    with pytest.raises(NotADirectoryError):
        read_dicom_series(f)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No DICOM files"):
        read_dicom_series(tmp_path / "empty")
    with pytest.raises(ValueError, match="order"):
        read_dicom_series(tmp_path / "empty", order="z")


def test_instance_order_must_follow_positions(tmp_path, pixels):
    write_series(tmp_path / "s", pixels, instances=[1, 3, 2, 4, 5])
    with pytest.raises(ValueError, match="not monotonic"):
        read_dicom_series(tmp_path / "s", order="instance")
    assert read_dicom_series(tmp_path / "s").shape == (5, 6, 8)


def test_single_slice_uses_thickness(tmp_path, pixels):
    write_series(tmp_path / "one", pixels[:1], thickness=4.0)
    s = read_dicom_series(tmp_path / "one")
    assert s.shape == (1, 6, 8) and s.spacing[0] == pytest.approx(4.0)
    assert nib.aff2axcodes(s.affine) == ("L", "P", "S")
