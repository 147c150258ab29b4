"""DICOM Segmentation out (fsm2kit.io.dicom_seg, SegmentResult.save to .dcm, fsm2kit segment --out pred.dcm).

The synthetic series of test_dicom (known geometry and pixel values) are segmented by a scripted
engine whose logits threshold the slice's own intensities, so the expected segmentation of every
source slice follows from that slice's file alone (its pixels, its ImagePositionPatient): the
SEG read back with highdicom is compared with it frame by frame, in the source's geometry.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

from pydicom.sr.codedict import codes  # noqa: E402
from test_dicom import write_series  # noqa: E402
from test_segment import ScriptedEngine  # noqa: E402

import fsm2kit.cli.segment as cli_segment  # noqa: E402
from fsm2kit.cli import main  # noqa: E402
from fsm2kit.records.fileio import file_sha256  # noqa: E402
from fsm2kit.io.dicom import read_dicom_series  # noqa: E402
from fsm2kit.io.dicom_seg import GENERIC_CODE, ORGAN_CODES, dicom_seg, organ_code, seg_source_headers  # noqa: E402
from fsm2kit.io.examples import example_ct  # noqa: E402
from fsm2kit.segment.own_scan import segment_volume  # noqa: E402
from fsm2kit.segment.segment_result import load_scan, sidecar_path  # noqa: E402

LIVER, SPLEEN = 6, 1
#: Rows towards patient right, columns towards anterior (both flipped against the canonical
#: layout), slices stored superior -> inferior: every axis of the mapping is exercised.
FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
SCORES = [1.0, 1.0, -1.0, 1.0, 1.0, 1.0]  # object score per canonical z (inferior -> superior)
SUPPORT_Z = 4


class ThresholdEngine(ScriptedEngine):
    """Object score ``scores[z]``; where present, the organ is every pixel of at least 2000."""

    def track(self, image, sel, bank, *, store, index, z):
        out = super().track(image, sel, bank, store=store, index=index, z=z)
        if out.object_score > 0:
            out.logits[:] = np.where(np.asarray(image) >= 2000, 5.0, -5.0)
        return out


def _pixels(n=len(SCORES), rows=12, cols=10) -> np.ndarray:
    """Background < 1000, 'liver' 2000..2999, 'spleen' >= 3000, in shapes no flip maps onto themselves."""
    rng = np.random.default_rng(3)
    px = rng.integers(0, 1000, size=(n, rows, cols)).astype(np.uint16)
    for k in range(n):
        px[k, 1:5 + k % 3, 2:7] = 2500
        px[k, 7:11, 1:3 + k % 2] = 3500
    return px


def _series(folder: Path, **kw) -> Path:
    write_series(folder, _pixels(), orientation=FLIPPED, step=-2.5, spacing=(0.8, 0.6),
                 names=[f"f{n}.dcm" for n in (3, 0, 5, 1, 4, 2)], **kw)
    return folder


def _support_mask(query):
    """On canonical slice SUPPORT_Z: liver = 2000..2999, spleen >= 3000 (from the intensities)."""
    lab = np.zeros(query.shape, np.uint8)
    a = query.array[SUPPORT_Z]
    lab[SUPPORT_Z][(a >= 2000) & (a < 3000)] = LIVER
    lab[SUPPORT_Z][a >= 3000] = SPLEEN
    return lab


def _expected(file: Path, z_of_position: dict[float, int]) -> np.ndarray:
    """The labels of one source slice from its own file: its pixels and its position."""
    ds = pydicom.dcmread(file)
    px = ds.pixel_array
    z = z_of_position[round(float(ds.ImagePositionPatient[2]), 3)]
    if z == SUPPORT_Z:  # the annotated slice: both annotations, copied
        return np.where(px >= 3000, SPLEEN, np.where(px >= 2000, LIVER, 0))
    if SCORES[z] > 0:  # both organs claim every pixel >= 2000; ties go to the first label
        return np.where(px >= 2000, LIVER, 0)
    return np.zeros(px.shape, int)


def _check_seg(seg_file: Path, folder: Path, segments=("liver", "spleen")) -> None:
    """The SEG read back with highdicom equals, slice by slice, what the source files say."""
    seg = hd.seg.segread(seg_file)
    files = sorted(folder.glob("*.dcm"))
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == src[0].SeriesInstanceUID == "1.2.3.4"
    assert seg.StudyInstanceUID == src[0].StudyInstanceUID and seg.FrameOfReferenceUID == src[0].FrameOfReferenceUID
    assert [seg.get_segment_description(k).segment_label for k in (1, 2)] == list(segments)
    # canonical z counts inferior -> superior: rank of the slice's S coordinate (LPS z)
    heights = sorted(round(float(d.ImagePositionPatient[2]), 3) for d in src)
    z_of_position = {h: k for k, h in enumerate(heights)}
    got = seg.get_pixels_by_source_instance(source_sop_instance_uids=[d.SOPInstanceUID for d in src],
                                            combine_segments=True)  # segment numbers 1, 2
    assert got.shape == (len(files), 12, 10)
    ids = np.array([0, LIVER, SPLEEN])
    for f, frame in zip(files, got):
        np.testing.assert_array_equal(ids[frame], _expected(f, z_of_position), err_msg=f.name)


# ----------------------------------------------------------------------------- codes
def test_organ_codes_are_snomed_codes_of_pydicom():
    sct = codes.SCT
    for name, concept in [("LIVER", sct.Liver), ("SPLEEN", sct.Spleen), ("RK", sct.Kidney), ("LK", sct.Kidney),
                          ("GALLBLADDER", sct.Gallbladder), ("ESOPHAGUS", sct.Esophagus), ("STOMACH", sct.Stomach),
                          ("AORTA", sct.Aorta), ("IVC", sct.InferiorVenaCava), ("PANCREAS", sct.Pancreas),
                          ("AG_R", sct.AdrenalGland), ("AG_L", sct.AdrenalGland)]:
        code = ORGAN_CODES[name]
        assert (code.value, code.meaning) == (concept.value, concept.meaning), name
        assert code.category == (sct.AnatomicalStructure.value, sct.AnatomicalStructure.meaning)
    for name in ("RK", "AG_R"):
        assert ORGAN_CODES[name].modifier == (sct.Right.value, sct.Right.meaning)
    for name in ("LK", "AG_L"):
        assert ORGAN_CODES[name].modifier == (sct.Left.value, sct.Left.meaning)
    assert (GENERIC_CODE.value, GENERIC_CODE.meaning) == (sct.Tissue.value, sct.Tissue.meaning)
    # every spelling the label resolver accepts; ids and unknown names get the generic code
    assert organ_code("liver") is organ_code("LIVER") is ORGAN_CODES["LIVER"]
    assert organ_code("Left Kidney") is organ_code("kidney_left") is organ_code("lk") is ORGAN_CODES["LK"]
    assert organ_code("kidney_right") is ORGAN_CODES["RK"] and organ_code("spleen") is ORGAN_CODES["SPLEEN"]
    for other in ("5", "6", "tumour", "PS_VEIN", ""):
        assert organ_code(other) is GENERIC_CODE
    assert "Kidney" in repr(ORGAN_CODES["LK"]) and "Left" in repr(ORGAN_CODES["LK"])


# ----------------------------------------------------------------------------- library round trip
def test_save_dcm_round_trip_in_the_source_geometry(tmp_path):
    folder = _series(tmp_path / "dcm")
    query = load_scan(folder)
    assert query.shape == (6, 12, 10)
    res = segment_volume(query, query, _support_mask(query), engine=ThresholdEngine(SCORES),
                         labels="liver=6,spleen=1", support_slices=SUPPORT_Z, patience=None)
    out, side = res.save(tmp_path / "out" / "pred.dcm")
    _check_seg(out, folder)
    # the same result as NIfTI agrees voxel for voxel (through the series' own NIfTI grid)
    nii, _ = res.save(tmp_path / "nii" / "pred.nii.gz")
    series = read_dicom_series(folder)
    import nibabel as nib

    img = nib.load(nii)
    np.testing.assert_allclose(img.affine, series.affine, atol=1e-6)
    seg = hd.seg.segread(out)
    ordered = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=[pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in series.files],
        combine_segments=True)
    np.testing.assert_array_equal(np.array([0, LIVER, SPLEEN])[ordered], np.asarray(img.dataobj).transpose(2, 1, 0))
    # codes, the random-weights marker, the sidecar
    sd = seg.get_segment_description(1)
    assert sd.segmented_property_type.value == "10200004" and sd.segmented_property_category.value == "91723000"
    assert seg.get_segment_description(2).segmented_property_type.value == "78961009"
    assert "RANDOM WEIGHTS" in seg.SeriesDescription and "RANDOM WEIGHTS" in seg.ContentDescription
    meta = json.loads(side.read_text())
    assert meta["random_weights"] is True and meta["output"] == str(out)
    assert meta["output_sha256"] == file_sha256(out)
    rec = meta["dicom_seg"]
    assert rec["referenced_series_uid"] == "1.2.3.4" and rec["sop_instance_uid"] == seg.SOPInstanceUID
    assert [(s["number"], s["label"], s["id"], s["code"]["value"]) for s in rec["segments"]] == [
        (1, "liver", LIVER, "10200004"), (2, "spleen", SPLEEN, "78961009")]
    # overwrite rules as for NIfTI; the old files stay when refused
    with pytest.raises(FileExistsError, match="already exists"):
        res.save(out)
    assert res.save(out, overwrite=True)[0] == out and hd.seg.segread(out).SOPInstanceUID != seg.SOPInstanceUID
    # a NIfTI query cannot have a DICOM SEG
    ct = example_ct()
    ct_res = segment_volume(ct, ct, ct.labels.array, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                            patience=None)
    with pytest.raises(ValueError, match="needs a DICOM series"):
        ct_res.save(tmp_path / "ct.dcm")
    assert not (tmp_path / "ct.dcm").exists() and not (tmp_path / "ct.json").exists()


def test_dicom_seg_checks_its_input(tmp_path):
    folder = _series(tmp_path / "dcm")
    series = read_dicom_series(folder)
    heads = seg_source_headers(series.files)
    assert "PatientID" in heads[0] and not heads[0].PatientID and "PixelData" not in heads[0]  # type 2 copied empty, no pixels read
    lab = np.zeros(series.shape, np.uint8)
    lab[0, 0, 0] = 9
    with pytest.raises(ValueError, match=r"label ids \[9\] have no segment"):
        dicom_seg(lab, heads, [(1, "liver")], series_description="x", content_description="y")
    with pytest.raises(ValueError, match="do not match 6 slices"):
        dicom_seg(lab[:, :-1], heads, [(9, "liver")], series_description="x", content_description="y")
    # an all-empty label volume is a valid SEG; laterality as a modifier of "Kidney"
    seg = dicom_seg(np.zeros(series.shape, np.uint8), heads, [(3, "left kidney")], series_description="x",
                    content_description="y")
    sd = seg.SegmentSequence[0]
    assert sd.SegmentLabel == "left kidney" and sd.SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"
    assert sd.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Left"


# ----------------------------------------------------------------------------- CLI
def _argv(image, mask, out, *extra):
    return ["segment", "--image", str(image), "--support-image", str(image), "--support-mask", str(mask),
            "--out", str(out), "--labels", "liver=6,spleen=1", "--support-slice", str(SUPPORT_Z),
            "--patience", "0", "--model", "sam2-tiny", "--checkpoint", "random", "--image-size", "128",
            "--device", "cpu", "--no-progress", *extra]


def test_cli_writes_a_dicom_seg_with_a_scripted_engine(tmp_path, monkeypatch, capsys, no_model):
    folder = _series(tmp_path / "dcm")
    query = load_scan(folder)
    mask = tmp_path / "mask.nii.gz"
    query.save_mask(_support_mask(query), mask)
    monkeypatch.setattr(cli_segment, "model_from_args", lambda args, **k: SimpleNamespace(
        name="scripted", weights="random weights (seed 0)"))
    monkeypatch.setattr(cli_segment, "engine_from_args", lambda model, args: ThresholdEngine(SCORES))
    out = tmp_path / "out" / "pred.dcm"
    assert main(_argv(folder, mask, out)) == 0
    printed = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in printed and f"wrote {out}" in printed
    _check_seg(out, folder)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["dicom_seg"]["referenced_series_uid"] == "1.2.3.4" and meta["output_sha256"] == file_sha256(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["pred.dcm", "pred.dcm.json"]
    # again: refused without --overwrite (one line, exit 2, nothing touched), replaced with it
    before = out.read_bytes()
    assert main(_argv(folder, mask, out)) == 2
    err = capsys.readouterr().err.strip()
    assert "already exists" in err and "--overwrite" in err and len(err.splitlines()) == 1
    assert out.read_bytes() == before
    assert main(_argv(folder, mask, out, "--overwrite")) == 0 and out.read_bytes() != before


def test_cli_dcm_errors_before_the_model(tmp_path, capsys, no_model):
    folder = _series(tmp_path / "dcm")
    query = load_scan(folder)
    mask = tmp_path / "mask.nii.gz"
    query.save_mask(_support_mask(query), mask)
    nifti = tmp_path / "query.nii.gz"
    read_dicom_series(folder).save_nifti(nifti)

    def one_line_error(argv, *expected):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("fsm2kit segment: error:"), err
        for text in expected:
            assert text in err, err

    # a .dcm out for a NIfTI query
    one_line_error(_argv(nifti, mask, tmp_path / "o" / "pred.dcm"), "needs a DICOM series", "pred.nii.gz")
    # into the query's own folder (it would join the series)
    one_line_error(_argv(folder, mask, folder / "pred.dcm"), "lies inside the input folder")
    # slices without a FrameOfReferenceUID cannot be referenced
    bare = _series(tmp_path / "bare", drop=("FrameOfReferenceUID",))
    one_line_error(_argv(bare, mask, tmp_path / "o" / "pred.dcm"), "FrameOfReferenceUID", "pred.nii.gz")
    # an unknown suffix names all three
    one_line_error(_argv(folder, mask, tmp_path / "o" / "pred.seg"), ".nii.gz", ".dcm")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_dicom_seg_with_a_random_tiny_model(tmp_path, monkeypatch, capsys, load_random):
    """The real path (random sam2-tiny at 128 px): a SEG whose annotated slice is the support's
    annotation, in that source slice's own rows and columns, and which says RANDOM WEIGHTS."""
    import fsm2kit.model.loading

    folder = _series(tmp_path / "dcm")
    query = load_scan(folder)
    mask = tmp_path / "mask.nii.gz"
    query.save_mask(_support_mask(query), mask)
    model = load_random("sam2-tiny", image_size=128)
    monkeypatch.setattr(fsm2kit.model.loading, "load_sam2", lambda *a, **k: model)
    out = tmp_path / "pred.dcm"
    assert main(_argv(folder, mask, out)) == 0
    assert "RANDOM WEIGHTS" in capsys.readouterr().out
    seg = hd.seg.segread(out)
    assert "RANDOM WEIGHTS" in seg.SeriesDescription and "RANDOM WEIGHTS" in seg.ContentDescription
    files = sorted(folder.glob("*.dcm"))
    src = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    heights = sorted(round(float(d.ImagePositionPatient[2]), 3) for d in src)
    z_of_position = {h: k for k, h in enumerate(heights)}
    k = next(i for i, d in enumerate(src) if z_of_position[round(float(d.ImagePositionPatient[2]), 3)] == SUPPORT_Z)
    got = seg.get_pixels_by_source_instance(source_sop_instance_uids=[src[k].SOPInstanceUID], combine_segments=True)
    np.testing.assert_array_equal(np.array([0, LIVER, SPLEEN])[got[0]], _expected(files[k], z_of_position))
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["random_weights"] is True and meta["dicom_seg"]["segments"][1]["code"]["meaning"] == "Spleen"
