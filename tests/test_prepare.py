"""fsm2kit.io.preparation / prepare_ops / raw_scans: the SSL-ALPNet preprocessing formulas by hand, then both datasets end to end
on synthetic raw data laid out like the real downloads (and SABS on the bundled CT)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from fsm2kit.cli.prepare import register_cli
from fsm2kit.io.alp import load_alp_folder
from fsm2kit.io.examples import example_dir
from fsm2kit.io.preparation import prepare_chaos, prepare_synapse
from fsm2kit.protocol.preprocessing import (
    CHAOST2_CLASSMAP_NAMES,
    SABS_CLASSMAP_NAMES,
    class_slice_index,
    crop_or_pad_center,
    histogram_cut_top,
    resample_labels,
    resample_linear,
    resampled_shape,
    sabs_window,
)
from fsm2kit.io.raw_scans import find_chaos_scans, find_synapse_scans


# ----------------------------------------------------------------------------- formulas
def test_resampled_shape_matches_the_notebook_logs():
    # SABS: 448 cropped pixels, spacing x 1.75 -> 257 (the quirk), Z -> Z + 1
    s = 0.66796875
    assert resampled_shape((147, 448, 448), (3.0, s, s), (3.0, s * 1.75, s * 1.75)) == (148, 257, 257)
    # CHAOS, image_normalize.ipynb prints "Size (256, 256, 36) -> [316. 316. 36.0000214]"
    assert resampled_shape((36, 256, 256), (7.700004577636719, 1.54296875, 1.54296875),
                           (7.7, 1.25, 1.25)) == (37, 317, 317)
    # "Size (320, 320, 30) -> [348. 348. 35.06493506]"
    assert resampled_shape((30, 320, 320), (9.0, 1.359375, 1.359375), (7.7, 1.25, 1.25)) == (36, 349, 349)
    with pytest.raises(ValueError, match="positive"):
        resampled_shape((1, 2, 3), (0, 1, 1), (1, 1, 1))


def _x(values, old, new, **kw):
    """Resample a 1-D profile along x (the array is (1, 1, n))."""
    a = np.asarray(values, dtype=np.float64)[None, None, :]
    return resample_linear(a, (1.0, 1.0, old), (1.0, 1.0, new), **kw)[0, 0]


def test_resample_linear_hand_cases():
    # downsample by 2: samples at input indices 0, 2, 4; 4 lies outside [-0.5, 3.5) -> 0
    np.testing.assert_array_equal(_x([0, 10, 20, 30], 1.0, 2.0), [0, 20, 0])
    # upsample by 2: 0, .5, 1, 1.5, 2, then 2.5 and 3 are outside [-0.5, 2.5)
    np.testing.assert_array_equal(_x([0, 10, 20], 2.0, 1.0), [0, 5, 10, 15, 20, 0, 0])
    # within half a voxel past the last one the edge value is used (ITK clamps the neighbour)
    out = _x([0, 10, 20, 30], 1.0, 0.8)  # samples at 0, .8, 1.6, 2.4, 3.2, 4.0
    np.testing.assert_allclose(out, [0, 8, 16, 24, 30, 0])
    # integers: truncated towards zero, like ITK's static_cast
    a = np.array([[[0, 3], [-3, 0]]], dtype=np.int16)  # (1, 2, 2)
    r = resample_linear(a, (1, 2, 2), (1, 2, 1), shape=(1, 2, 3))
    assert r.dtype == np.int16
    np.testing.assert_array_equal(r[0], [[0, 1, 3], [-3, -1, 0]])  # 1.5 -> 1, -1.5 -> -1
    # trilinear = exact on a linear function inside the grid
    z, y, x = np.meshgrid(np.arange(4), np.arange(5), np.arange(6), indexing="ij")
    f = (3 * z + 2 * y + x).astype(np.float64)
    r = resample_linear(f, (2.0, 1.0, 1.0), (1.0, 0.5, 0.75), shape=(6, 8, 7))
    zz, yy, xx = np.meshgrid(np.arange(6) * 0.5, np.arange(8) * 0.5, np.arange(7) * 0.75, indexing="ij")
    np.testing.assert_allclose(r, 3 * zz + 2 * yy + xx, atol=1e-12)
    with pytest.raises(ValueError, match="3D"):
        resample_linear(np.zeros((2, 2)), (1, 1, 1), (1, 1, 1))
    with pytest.raises(TypeError, match="float32"):
        resample_linear(np.zeros((2, 2, 2), bool), (1, 1, 1), (1, 1, 1))


def test_the_257_quirk():
    """448 x 448 x Z -> 257 x 257 x (Z+1); the extra row, column and slice are 0 (PROTOCOL.md 1.1)."""
    s = 0.7
    out = resample_linear(np.ones((2, 448, 448)), (3.0, s, s), (3.0, s * 1.75, s * 1.75))
    assert out.shape == (3, 257, 257)
    assert (out[:2, :256, :256] == 1).all()
    assert not out[2].any() and not out[:, 256, :].any() and not out[:, :, 256].any()


def test_resample_labels_one_id_at_a_time():
    # [0, 3] upsampled: the masks interpolate to 0.5 at index 0.5; np.rint(0.5) = 0 -> background
    lab = np.array([[[0, 3]]], dtype=np.uint8)
    out = resample_labels(lab, (1, 1, 2), (1, 1, 1))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [0, 0, 3, 0, 0])
    # without background the first id is written by the first iteration; at index 1.5 both masks
    # are exactly 0.5 and round to 0, leaving a hole (the notebook does the same)
    out = resample_labels(np.array([[[2, 2, 5, 5]]]), (1, 1, 1), (1, 1, 0.5))
    np.testing.assert_array_equal(out[0, 0], [2, 2, 2, 0, 5, 5, 5, 0, 0])


def test_windows_histogram_crop():
    np.testing.assert_allclose(sabs_window(np.array([-1000, -125, 75, 275, 1000])), [0, 0, 127.5, 255, 255])
    a, hir = histogram_cut_top(np.arange(1000, dtype=np.float64))
    assert hir == pytest.approx(994.005) and a.max() == pytest.approx(994.005) and a[500] == 500
    ai, hir_i = histogram_cut_top(np.arange(1000, dtype=np.int16))
    assert ai.dtype == np.int16 and ai.max() == 994  # assigned into int16: truncated
    # crop/pad: output row j takes input row H//2 - 128 + j
    v = np.arange(3 * 300 * 200, dtype=np.float64).reshape(3, 300, 200)
    c = crop_or_pad_center(v, 256, pad_value=-1)
    assert c.shape == (3, 256, 256) and c.dtype == np.float64
    np.testing.assert_array_equal(c[:, :, 28:228], v[:, 22:278, :])
    assert (c[:, :, :28] == -1).all() and (c[:, :, 228:] == -1).all()
    small = crop_or_pad_center(np.ones((1, 3, 3)), 4)
    np.testing.assert_array_equal(small[0], [[0, 0, 0, 0], [0, 1, 1, 1], [0, 1, 1, 1], [0, 1, 1, 1]])


def test_class_slice_index_rules():
    a = np.zeros((3, 2, 2))
    a[0] = 0  # background only
    a[1, 0, 0] = 1
    a[2, 0, 0] = 2
    names = ("BG", "A", "B")
    by_class = class_slice_index({"5": a}, names, rule="class")
    assert by_class == {"BG": {"5": [0, 1, 2]}, "A": {"5": [1]}, "B": {"5": [2]}}
    # CHAOS notebook: the sum of all labels must be >= 1, so background-only slices are not listed
    by_sum = class_slice_index({"5": a}, names, rule="sum")
    assert by_sum["BG"] == {"5": [1, 2]} and by_sum["A"] == {"5": [1]}


SIMPLEITK_EXPECTED = Path(__file__).parent / "data" / "simpleitk_resample_expected.npz"


def test_resampling_matches_stored_simpleitk_output():
    """fsm2kit's resampling against SimpleITK's own output, stored once.

    ``tests/data/simpleitk_resample_expected.npz`` holds three small inputs and what SimpleITK
    2.5.7 (ITK 5.4) made of them with the notebooks' ``resample_by_res`` / ``resample_lb_by_res``
    (linear interpolation, same origin and direction, size ``int(n * old / new + 1)``). It was
    written by ``tests/data/make_simpleitk_expected.py`` (see ``tests/data/README.md``), so this
    test runs without SimpleITK installed.
    """
    with np.load(SIMPLEITK_EXPECTED, allow_pickle=False) as f:
        d = {k: f[k] for k in f.files}
    assert "SimpleITK 2.5.7" in str(d["meta"])
    # float64 image, SABS geometry (in-plane spacing x 1.75): agrees up to float rounding
    e = d["image_expected"]
    mine = resample_linear(d["image_input"], d["image_old_spacing"], d["image_new_spacing"])
    assert mine.shape == e.shape == (4, 7, 9) and mine.dtype == e.dtype == np.float64
    np.testing.assert_allclose(mine, e, rtol=0, atol=1e-9)
    # outside the input (half a voxel around it) SimpleITK writes 0: slice z = 3 and column 8
    assert not e[3].any() and not e[:, :, 8].any() and e[:3, :, :8].all()
    # int16 image, CHAOS-like spacing: identical (ITK truncates towards zero)
    e = d["int16_expected"]
    mine = resample_linear(d["int16_input"], d["int16_old_spacing"], d["int16_new_spacing"])
    assert mine.dtype == e.dtype == np.int16
    np.testing.assert_array_equal(mine, e)
    # labels one id at a time: identical
    e = d["labels_expected"]
    mine = resample_labels(d["labels_input"], d["labels_old_spacing"], d["labels_new_spacing"])
    assert mine.dtype == e.dtype == np.float32 and set(np.unique(e).tolist()) == {0.0, 1.0, 2.0}
    np.testing.assert_array_equal(mine, e)


# ----------------------------------------------------------------------------- synapse
def _write_nii(path: Path, data: np.ndarray, zooms=(0.8, 0.8, 2.5)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.diag([-zooms[0], -zooms[1], zooms[2], 1.0])), path)


def _synapse_raw(root: Path, numbers=("0001", "0002", "0010"), shape=(96, 90, 3)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    imgs = {}
    for n in numbers:
        hu = rng.integers(-1000, 1000, size=shape).astype(np.int16)
        lab = np.zeros(shape, np.uint8)
        lab[40:60, 35:55, :] = 6
        lab[45:50, 40:44, min(1, shape[2] - 1)] = 1
        _write_nii(root / "img" / f"img{n}.nii.gz", hu)
        _write_nii(root / "label" / f"label{n}.nii.gz", lab)
        imgs[n] = hu
    return imgs


def _sums_ok(out: Path) -> dict[str, str]:
    lines = (out / "SHA256SUMS").read_text().splitlines()
    sums = dict(reversed(line.split("  ")) for line in lines)
    for name, h in sums.items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == h
    return sums


def test_prepare_synapse_synthetic(tmp_path):
    raw, out = tmp_path / "raw", tmp_path / "sabs"
    hus = _synapse_raw(raw)
    rep = prepare_synapse(raw, out, progress=False)
    assert [(s.scan_id, s.raw_id) for s in rep.scans] == [("0", "0001"), ("1", "0002"), ("2", "0010")]
    assert "3 scans" in repr(rep)
    img = nib.load(out / "image_2.nii.gz")
    lab = nib.load(out / "label_2.nii.gz")
    # (96, 90, 3) -> crop 32 -> (32, 26, 3) -> int(32/1.75+1), int(26/1.75+1), 3+1
    assert img.shape == (19, 15, 4) == lab.shape
    assert img.get_data_dtype() == np.float64 and lab.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.header.get_zooms(), (1.4, 1.4, 2.5), rtol=1e-6)
    a = np.asarray(img.dataobj).transpose(2, 1, 0)  # SimpleITK order (z, y, x)
    win = sabs_window(hus["0010"].transpose(2, 1, 0))
    # output (z, y, x) samples the cropped input at (z, 1.75 y, 1.75 x): y = x = 4 -> 32 + 7 = 39
    assert a[1, 4, 4] == pytest.approx(win[1, 39, 39])
    assert a[0, 0, 0] == pytest.approx(win[0, 32, 32])
    assert a.min() >= 0 and a.max() <= 255
    # the last slice (input z 3 >= 2.5) and column (input x 31.5 >= 31.5) lie outside -> 0;
    # the last row samples input y 24.5 < 25.5, inside
    assert not a[3].any() and not a[:, :, 18].any()
    assert a[1, 14, 4] == pytest.approx(0.5 * (win[1, 56, 39] + win[1, 57, 39]))
    labs = np.asarray(lab.dataobj).transpose(2, 1, 0)
    assert set(np.unique(labs)) == {0.0, 1.0, 6.0}
    cm = json.loads((out / "classmap_1.json").read_text())
    assert list(cm) == list(SABS_CLASSMAP_NAMES)
    assert cm["LIVER"]["2"] == [0, 1, 2] and cm["SPLEEN"]["2"] == [1] and cm["LIVER"].keys() == {"0", "1", "2"}
    sums = _sums_ok(out)
    assert set(sums) == {f"{k}_{i}.nii.gz" for k in ("image", "label") for i in range(3)} | {"classmap_1.json"}
    man = json.loads((out / "prepare.json").read_text())
    assert man["dataset"] == "SABS" and man["scans"][2]["raw_id"] == "0010"
    assert any("30" in n for n in man["notes"])  # 3 scans instead of 30 is recorded
    # the protocol loader reads it
    ds = load_alp_folder(out, "SABS")
    assert ds.scan_ids == ("0", "1", "2") and ds.load(1).shape == (4, 15, 19)
    # refuse to overwrite, unless asked
    with pytest.raises(FileExistsError, match="overwrite"):
        prepare_synapse(raw, out, progress=False)
    assert len(prepare_synapse(raw, out, overwrite=True, progress=False).scans) == 3


def test_prepare_synapse_on_the_bundled_ct(tmp_path):
    src = example_dir() / "totalseg_ct_small"
    raw = tmp_path / "raw"
    (raw / "img").mkdir(parents=True)
    (raw / "label").mkdir()
    (raw / "img" / "img0001.nii.gz").write_bytes((src / "example_ct_sm.nii.gz").read_bytes())
    (raw / "label" / "label0001.nii.gz").write_bytes((src / "example_seg.nii.gz").read_bytes())
    rep = prepare_synapse(raw, tmp_path / "out", progress=False)
    (scan,) = rep.scans
    # 122 x 101 x 30 at 3 mm -> crop 32 -> 58 x 37 -> int(58/1.75+1) x int(37/1.75+1) x 31
    assert scan.source_shape_xyz == (122, 101, 30) and scan.shape_xyz == (34, 22, 31)
    v = load_alp_folder(tmp_path / "out", "SABS").load(0)
    assert v.shape == (31, 22, 34) and 0 <= v.array.min() and v.array.max() <= 255
    seg = np.asarray(nib.load(src / "example_seg.nii.gz").dataobj)
    assert set(np.unique(v.labels.array)) <= set(np.unique(seg).tolist())
    assert (v.labels.array == 5).sum() > 0  # the liver survives the crop and resampling


@pytest.mark.parametrize(
    "layout, error, message",
    [
        ("no_img", ValueError, "img/imgXXXX"),
        ("unpaired", ValueError, "do not pair up.*img0002"),
        ("stray", ValueError, "unexpected files.*readme"),
        ("empty", ValueError, "no imgXXXX"),
        ("missing", FileNotFoundError, "not found"),
        ("nested", ValueError, "Did you mean"),
    ],
)
def test_synapse_layout_refusals(tmp_path, layout, error, message):
    raw = tmp_path / "raw"
    if layout == "no_img":
        raw.mkdir()
        (raw / "scans").mkdir()
    elif layout == "unpaired":
        _synapse_raw(raw, numbers=("0001", "0002"), shape=(70, 70, 1))
        (raw / "label" / "label0002.nii.gz").unlink()
    elif layout == "stray":
        _synapse_raw(raw, numbers=("0001",), shape=(70, 70, 1))
        (raw / "img" / "readme.txt").write_text("x")
    elif layout == "empty":
        (raw / "img").mkdir(parents=True)
        (raw / "label").mkdir()
    elif layout == "nested":
        _synapse_raw(raw / "RawData" / "Training", numbers=("0001",), shape=(70, 70, 1))
    with pytest.raises(error, match=message):
        find_synapse_scans(raw)


def test_synapse_bad_scans(tmp_path):
    raw = tmp_path / "raw"
    _synapse_raw(raw, numbers=("0001",), shape=(60, 60, 1))  # too small for the 32-px border cut
    with pytest.raises(ValueError, match="border"):
        prepare_synapse(raw, tmp_path / "o", progress=False)
    raw2 = tmp_path / "raw2"
    _synapse_raw(raw2, numbers=("0001",), shape=(70, 70, 2))
    _write_nii(raw2 / "label" / "label0001.nii.gz", np.zeros((70, 70, 3), np.uint8))
    with pytest.raises(ValueError, match="share one grid"):
        prepare_synapse(raw2, tmp_path / "o2", progress=False)
    raw3 = tmp_path / "raw3"
    _synapse_raw(raw3, numbers=("0001",), shape=(70, 70, 1))
    (raw3 / "img" / "img0001.nii.gz").write_bytes(b"\x1f\x8b broken")
    with pytest.raises(ValueError, match="img0001"):
        prepare_synapse(raw3, tmp_path / "o3", progress=False)


# ----------------------------------------------------------------------------- chaos
def _chaos_patient(mr: Path, pid: str, rows: int, cols: int, n: int = 4, *, descending: bool = False) -> None:
    """DICOM_anon + Ground of one patient: a bright 'liver' block where the PNGs say liver."""
    from test_dicom import write_series

    base = mr / pid / "T2SPIR"
    gray = np.zeros((n, rows, cols), np.uint8)
    gray[:, 5:15, 10:20] = 63  # liver: DICOM rows 5..14 (anterior, top of the DICOM image)
    gray[:, rows - 12:rows - 6, cols - 12:cols - 6] = 126
    gray[:, rows - 12:rows - 6, 2:8] = 189
    gray[1:, 20:24, 22:26] = 252
    px = np.full((n, rows, cols), 100, np.uint16)
    px[gray == 63] = 1000
    names = [f"IMG-0004-{k + 1:05d}.dcm" for k in range(n)]
    step = -6.0 if descending else 6.0
    write_series(base / "DICOM_anon", px, names=names, step=step, spacing=(2.5, 2.5), thickness=6.0)
    (base / "Ground").mkdir(parents=True)
    for k in range(n):
        Image.fromarray(gray[k], mode="L").save(base / "Ground" / f"IMG-0004-{k + 1:05d}.png")
    (mr / pid / "T1DUAL").mkdir()  # ignored, as in the real download


def test_prepare_chaos_synthetic(tmp_path):
    raw = tmp_path / "CHAOS_Train_Sets" / "Train_Sets"
    mr = raw / "MR"
    _chaos_patient(mr, "1", 40, 48)
    _chaos_patient(mr, "10", 120, 140, descending=True)
    assert [s.scan_id for s in find_chaos_scans(raw)] == ["1", "10"]
    assert [s.scan_id for s in find_chaos_scans(tmp_path / "CHAOS_Train_Sets")] == ["1", "10"]
    rep = prepare_chaos(raw, tmp_path / "chaos", progress=False)
    out = tmp_path / "chaos"
    for sid in ("1", "10"):
        img, lab = nib.load(out / f"image_{sid}.nii.gz"), nib.load(out / f"label_{sid}.nii.gz")
        # 4 slices of 6 mm -> 7.7 mm: int(4*6/7.7 + 1) = 4; in-plane 2.5 -> 1.25 mm, crop/pad 256
        assert img.shape == (256, 256, 4) == lab.shape
        np.testing.assert_allclose(img.header.get_zooms(), (1.25, 1.25, 7.7), rtol=1e-6)
        a = np.asarray(img.dataobj).transpose(2, 1, 0)
        labs = np.asarray(lab.dataobj).transpose(2, 1, 0)
        assert set(np.unique(labs)) == {0, 1, 2, 3, 4}
        liver = labs == 1
        # labels and image agree (the PNG flip matches the image's row flip) ...
        assert (a[liver] > 500).all()
        assert (a[labs == 2] < 500).all()
        # ... and rows run posterior -> anterior: the anterior liver block ends up in the bottom half
        rows = np.flatnonzero(liver.any(axis=(0, 2)))
        assert rows.min() > 128
    # scan 1: 40 x 48 at 2.5 mm -> 81 x 97 -> padded with the image minimum / 0
    a1 = np.asarray(nib.load(out / "image_1.nii.gz").dataobj).transpose(2, 1, 0)
    assert a1[0, 0, 0] == a1.min()
    # scan 10: 120 x 140 -> 241 x 281: columns cropped, rows padded
    s10 = next(s for s in rep.scans if s.scan_id == "10")
    assert s10.source_shape_xyz == (140, 120, 4)
    cm = json.loads((out / "classmap_1.json").read_text())
    assert list(cm) == list(CHAOST2_CLASSMAP_NAMES) and set(cm["LIVER"]) == {"1", "10"}
    assert cm["SPLEEN"]["1"] == [1, 2]  # input slices 1..3 sampled at z 0, 1.28, 2.57 (3.85 is outside)
    _sums_ok(out)
    man = json.loads((out / "prepare.json").read_text())
    assert man["dataset"] == "CHAOST2" and any("rows reversed" in n for n in man["notes"])
    ds = load_alp_folder(out, "CHAOST2")
    assert ds.load("10").labels.mask("liver").any()


@pytest.mark.parametrize(
    "layout, message",
    [
        ("no_mr", "no MR folder"),
        ("no_ground", "missing 5/T2SPIR/Ground"),
        ("bad_name", "must be numbers"),
    ],
)
def test_chaos_layout_refusals(tmp_path, layout, message):
    raw = tmp_path / "raw"
    raw.mkdir()
    if layout == "no_mr":
        (raw / "CT").mkdir()
    elif layout == "no_ground":
        (raw / "MR" / "5" / "T2SPIR" / "DICOM_anon").mkdir(parents=True)
    elif layout == "bad_name":
        (raw / "MR" / "patient_a").mkdir(parents=True)
    with pytest.raises(ValueError, match=message):
        find_chaos_scans(raw)


def test_chaos_png_pairing_and_dicom_errors(tmp_path):
    raw = tmp_path / "raw"
    _chaos_patient(raw / "MR", "2", 30, 30)
    (raw / "MR" / "2" / "T2SPIR" / "Ground" / "IMG-0004-00003.png").unlink()
    with pytest.raises(ValueError, match="do not pair up.*IMG-0004-00003"):
        prepare_chaos(raw, tmp_path / "o", progress=False)
    raw2 = tmp_path / "raw2"
    _chaos_patient(raw2 / "MR", "2", 30, 30, n=5)
    (raw2 / "MR" / "2" / "T2SPIR" / "DICOM_anon" / "IMG-0004-00003.dcm").unlink()
    (raw2 / "MR" / "2" / "T2SPIR" / "Ground" / "IMG-0004-00003.png").unlink()
    with pytest.raises(ValueError, match="missing slice"):
        prepare_chaos(raw2, tmp_path / "o2", progress=False)


def test_prepare_cli(tmp_path, capsys):
    raw = tmp_path / "raw"
    _synapse_raw(raw, numbers=("0001",), shape=(70, 70, 2))
    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["prepare", "synapse", str(raw), str(tmp_path / "out"), "--no-progress"])
    assert args.func(args) == 0
    assert "image_0.nii.gz <- 0001" in capsys.readouterr().out
    args = parser.parse_args(["prepare", "chaos", str(raw), str(tmp_path / "out2"), "--no-progress"])
    with pytest.raises(ValueError, match="no MR folder"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "btcv", str(raw), str(tmp_path)])
