"""Tests of fsm2kit.io (volumes, nifti, alp, npz, examples): bundled episodes, npz names, NIfTI round
trips, ALP folders, labels."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fsm2kit.io import nifti as fd
from fsm2kit.io.alp import ALPDataset, load_alp_folder
from fsm2kit.io.examples import example_dir, example_episodes
from fsm2kit.io.nifti import load_nifti, save_mask
from fsm2kit.io.npz import load_npz_episodes, parse_npz_name
from fsm2kit.io.volumes import LabelVolume, Volume
from fsm2kit.protocol.labels import LabelMap
from fsm2kit.protocol.episodes import Episode

from helpers import assert_same_grid, stored_as

LIVER_TS = 5  # TotalSegmentator "total" id of the liver


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def episodes() -> list[Episode]:
    return example_episodes()


@pytest.fixture(scope="module")
def ct_paths() -> tuple[Path, Path]:
    d = example_dir() / "totalseg_ct_small"
    return d / "example_ct_sm.nii.gz", d / "example_seg.nii.gz"


@pytest.fixture(scope="module")
def base_volume(ct_paths) -> Volume:
    ct, seg = ct_paths
    return load_nifti(ct, label_path=seg, modality="CT")


# ----------------------------------------------------------------------------- bundled npz
def test_example_episode_facts(episodes):
    assert len(episodes) == 1
    ep = episodes[0]
    assert ep.case_id == "1" and ep.label == 1 and ep.label_name == "LIVER"
    assert ep.dataset == "CHAOST2" and ep.npart == 3
    assert ep.z.tolist() == list(range(12, 36))
    assert ep.images.shape == (24, 256, 256) and ep.images.dtype == np.float32
    assert ep.labels is not None and ep.labels.shape == (24, 256, 256) and ep.labels.dtype == bool
    assert ep.labels.any(axis=(1, 2)).all()  # the liver is on every dumped slice
    assert np.bincount(ep.chunks).tolist() == [8, 8, 8]
    assert ep.chunks.tolist() == [0] * 8 + [1] * 8 + [2] * 8
    assert [s.chunk for s in ep.supports] == [0, 1, 2]
    imgs = [s.image for s in ep.supports]
    assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[1], imgs[2])
    assert all(s.z is None and s.case_id is None and s.mask.dtype == bool for s in ep.supports)
    assert ep.middle_support is ep.supports[1] and ep.middle_support.chunk == 1
    assert ep.meta["group_key"] == "1_1"


def test_example_supports_change_at_20_and_28(episodes):
    ep = episodes[0]
    d = example_dir() / "chaos_t2spir_case1_liver"
    sup = {int(z): np.load(d / f)["sup_img_part"] for z, f in zip(ep.z, ep.meta["files"])}
    changes = [z for z in range(13, 36) if not np.array_equal(sup[z], sup[z - 1])]
    assert changes == [20, 28]
    # the query image is channel 0 of the dump, the support that of its chunk
    f = np.load(d / "1_21_case_1_z20.npz")
    np.testing.assert_array_equal(ep.images[8], f["query_images"][0, 0])
    np.testing.assert_array_equal(ep.supports[1].image, f["sup_img_part"][0, 0])
    np.testing.assert_array_equal(ep.supports[1].mask, f["sup_fgm_part"][0] > 0.5)


def test_parse_npz_name():
    n = parse_npz_name("1_13_case_1_z12.npz")
    assert n == (1, 13, "1", 12)
    assert (n.k, n.t, n.scan_id, n.z) == (1, 13, "1", 12)
    assert n.group_key == "1_1"
    assert parse_npz_name(Path("/x/y/2_40_case_31_z7.npz")) == (2, 40, "31", 7)
    with pytest.raises(ValueError, match="expected"):
        parse_npz_name("case_1_z12.npz")


def _write_npz(folder: Path, name: str, *, z: int, sup: np.ndarray, label: int = 1,
               channels_equal: bool = True) -> None:
    rng = np.random.default_rng(z)
    q = rng.normal(size=(8, 8)).astype(np.float32)
    qi = np.stack([q, q, q if channels_equal else q + 1])[None]
    ql = np.zeros((1, 8, 8), np.float32)
    ql[0, 2:5, 2:5] = 1
    fg = np.zeros((1, 8, 8), np.float32)
    fg[0, 3:6, 3:6] = 1
    np.savez(folder / name, query_images=qi, query_labels=ql,
             sup_img_part=np.repeat(sup[None, None], 3, axis=1).astype(np.float32),
             sup_fgm_part=fg, sup_bgm_part=1 - fg, labels=np.array([label]), n_scan=np.array(0))


def test_npz_synthetic_grouping_and_errors(tmp_path):
    sups = [np.full((8, 8), v, np.float32) for v in (1.0, 2.0, 3.0)]
    # scan "2" class 4: z 5..10 -> chunks 0,0,1,1,2,2 (z distance), plus a stray non-npz file
    for i, z in enumerate(range(5, 11)):
        _write_npz(tmp_path, f"2_{i + 1}_case_2_z{z}.npz", z=z, sup=sups[i // 2], label=4)
    _write_npz(tmp_path, "1_1_case_10_z3.npz", z=3, sup=sups[0], label=1)  # single slice
    (tmp_path / "notes.txt").write_text("skip me")
    eps = load_npz_episodes(tmp_path, dataset="CHAOST2")
    assert [(e.case_id, e.label, e.label_name) for e in eps] == [("2", 4, "SPLEEN"), ("10", 1, "LIVER")]
    assert eps[0].chunks.tolist() == [0, 0, 1, 1, 2, 2] and len(eps[0].supports) == 3
    assert eps[1].chunks.tolist() == [0] and len(eps[1].supports) == 1

    bad = tmp_path / "bad"
    bad.mkdir()
    for z in (5, 6, 7, 8):  # one support over z 5..8 spans chunks 0..2
        _write_npz(bad, f"1_{z}_case_1_z{z}.npz", z=z, sup=sups[0])
    with pytest.raises(ValueError, match="chunks"):
        load_npz_episodes(bad)

    two = tmp_path / "two"
    two.mkdir()
    for i, z in enumerate((0, 1, 9)):  # z 0 and 1 are both chunk 0, different supports
        _write_npz(two, f"1_{z}_case_1_z{z}.npz", z=z, sup=sups[i])
    with pytest.raises(ValueError, match="claim chunk 0"):
        load_npz_episodes(two)

    chan = tmp_path / "chan"
    chan.mkdir()
    _write_npz(chan, "1_1_case_1_z1.npz", z=1, sup=sups[0], channels_equal=False)
    with pytest.raises(ValueError, match="channels"):
        load_npz_episodes(chan)

    named = tmp_path / "named"
    named.mkdir()
    _write_npz(named, "slice_1.npz", z=1, sup=sups[0])
    with pytest.raises(ValueError, match="slice_1.npz"):
        load_npz_episodes(named)

    with pytest.raises(ValueError, match="SABS"):  # class 6 is no CHAOST2 label
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        _write_npz(wrong, "1_1_case_1_z1.npz", z=1, sup=sups[0], label=6)
        load_npz_episodes(wrong, dataset="CHAOST2")
    with pytest.raises(FileNotFoundError):
        load_npz_episodes(tmp_path / "nope")


def test_example_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("FSM2KIT_DATA", str(tmp_path))
    assert example_dir() == tmp_path
    monkeypatch.setenv("FSM2KIT_DATA", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="FSM2KIT_DATA"):
        example_dir()


# ----------------------------------------------------------------------------- NIfTI
@pytest.mark.parametrize("kind", ["RAS", "LPS", "permuted", "oblique"])
def test_nifti_round_trip(kind, ct_paths, base_volume, tmp_path):
    ct, seg = ct_paths
    cimg, simg = nib.load(ct), nib.load(seg)
    cdata, aff = stored_as(np.asarray(cimg.dataobj), cimg.affine, kind)
    sdata, _ = stored_as(np.asarray(simg.dataobj), simg.affine, kind)
    ct_v, seg_v = tmp_path / f"ct_{kind}.nii.gz", tmp_path / f"seg_{kind}.nii.gz"
    nib.save(nib.Nifti1Image(cdata, aff), ct_v)
    nib.save(nib.Nifti1Image(sdata, aff), seg_v)
    src = nib.load(ct_v)

    vol = load_nifti(ct_v, label_path=seg_v, modality="CT", case_id=kind)
    assert vol.orientation == nib.aff2axcodes(src.affine)
    assert vol.array.dtype == np.float32 and vol.array.ndim == 3
    np.testing.assert_allclose(vol.spacing, (3.0, 3.0, 3.0), rtol=1e-5)
    # every storage of the same image gives the same canonical (Z, H, W) array
    np.testing.assert_array_equal(vol.array, base_volume.array)
    np.testing.assert_array_equal(vol.labels.array, base_volume.labels.array)
    if kind != "oblique":
        assert vol.array_axcodes == ("S", "P", "L")
    assert kind in repr(vol) and "spacing" in repr(vol)

    mask = vol.labels.mask(LIVER_TS)
    assert mask.any()
    out = save_mask(mask, tmp_path / "out" / f"liver_{kind}.nii.gz", like=vol)
    w = nib.load(out)
    assert_same_grid(w, src)
    assert w.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(w.dataobj) > 0, sdata == LIVER_TS)
    assert os.listdir(tmp_path / "out") == [f"liver_{kind}.nii.gz"]  # no temp file left


def test_array_affine_maps_array_voxels_to_world(base_volume, ct_paths):
    v = base_volume
    z, y, x = 4, 10, 20
    world = v.array_affine @ [z, y, x, 1]
    i, j, k, _ = np.linalg.inv(v.affine) @ world
    raw = np.asarray(nib.load(ct_paths[0]).dataobj)
    assert raw[int(round(i)), int(round(j)), int(round(k))] == v.array[z, y, x]


def test_mask_to_nifti_checks(base_volume):
    with pytest.raises(ValueError, match="shape"):
        base_volume.mask_to_nifti(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match="threshold"):
        base_volume.mask_to_nifti(np.full(base_volume.shape, 0.5))
    img = base_volume.mask_to_nifti(np.ones(base_volume.shape, bool), dtype=np.int16)
    assert img.get_data_dtype() == np.int16


def test_nan_in_image_raises(ct_paths, tmp_path):
    img = nib.load(ct_paths[0])
    d = np.asarray(img.dataobj).astype(np.float32)
    d[0, 0, :3] = np.nan
    d[1, 1, 1] = np.inf
    p = tmp_path / "nan.nii.gz"
    nib.save(nib.Nifti1Image(d, img.affine), p)
    with pytest.raises(ValueError, match=r"'nancase'.*4 of \d+ voxels.*\(3 NaN, 1 inf\)"):
        load_nifti(p, case_id="nancase")


def test_corrupt_and_missing_files(ct_paths, tmp_path):
    raw = ct_paths[0].read_bytes()
    trunc = tmp_path / "trunc.nii.gz"
    trunc.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(ValueError, match="truncated"):
        load_nifti(trunc)
    junk = tmp_path / "junk.nii.gz"
    junk.write_bytes(b"not a nifti at all")
    with pytest.raises(ValueError, match="junk.nii.gz"):
        load_nifti(junk)
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        load_nifti(tmp_path / "missing.nii.gz")
    with pytest.raises(FileNotFoundError, match="nolabel.nii.gz"):
        load_nifti(ct_paths[0], label_path=tmp_path / "nolabel.nii.gz")


def test_label_grid_mismatch(ct_paths, tmp_path):
    img = nib.load(ct_paths[1])
    shifted = img.affine.copy()
    shifted[0, 3] += 5
    p = tmp_path / "shifted.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), p)
    with pytest.raises(ValueError, match="different voxel grids"):
        load_nifti(ct_paths[0], label_path=p)


def test_unwritable_output_leaves_nothing(base_volume, tmp_path, monkeypatch):
    mask = base_volume.labels.mask(LIVER_TS)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="not writable"):
        save_mask(mask, blocker / "out.nii.gz", like=base_volume)
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(PermissionError):
                save_mask(mask, ro / "out.nii.gz", like=base_volume)
            assert list(ro.iterdir()) == []
        finally:
            ro.chmod(0o755)
    with pytest.raises(ValueError, match=".nii.gz"):
        save_mask(mask, tmp_path / "out.png", like=base_volume)

    # a failure in the middle of writing: no partial file, an existing target untouched
    outdir = tmp_path / "atomic"
    outdir.mkdir()
    target = outdir / "m.nii.gz"
    target.write_bytes(b"previous")

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(fd.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_mask(mask, target, like=base_volume)
    assert sorted(p.name for p in outdir.iterdir()) == ["m.nii.gz"]
    assert target.read_bytes() == b"previous"


def test_volume_validation():
    with pytest.raises(ValueError, match="3D"):
        Volume(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="label shape"):
        Volume(np.zeros((2, 3, 4)), labels=np.zeros((2, 3, 5), np.int32))
    with pytest.raises(ValueError, match="modality"):
        Volume(np.zeros((2, 3, 4)), modality="PET")
    v = Volume(np.zeros((2, 3, 4)), spacing=(5.0, 1.0, 1.0), modality="mri", case_id="x")
    assert v.modality == "MR" and v.orientation == ("S", "P", "L")
    img = v.mask_to_nifti(np.ones((2, 3, 4), bool))
    assert img.shape == (2, 3, 4)


# ----------------------------------------------------------------------------- ALP folders
def _write_alp(folder: Path, sid: str, shape_xyz: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(size=shape_xyz).astype(np.float32)
    lab = rng.integers(0, 4, size=shape_xyz).astype(np.float32)
    aff = np.diag([-1.75, -1.75, 3.0, 1.0])
    nib.save(nib.Nifti1Image(img, aff), folder / f"image_{sid}.nii.gz")
    nib.save(nib.Nifti1Image(lab, aff), folder / f"label_{sid}.nii.gz")
    return img


def test_alp_sabs_like(tmp_path):
    arrays = {sid: _write_alp(tmp_path, sid, (257, 257, 3), int(sid)) for sid in ("0", "2", "10")}
    (tmp_path / "classmap_1.json").write_text("{}")
    ds = load_alp_folder(tmp_path, "sabs")
    assert isinstance(ds, ALPDataset) and ds.dataset == "SABS" and len(ds) == 3
    assert ds.scan_ids == ("0", "2", "10")  # numeric, not lexicographic
    assert ds.label_map[6] == "LIVER" and "SABS" in repr(ds)
    v = ds.load(10)
    assert v.case_id == "10" and v.modality == "CT"
    assert v.shape == (3, 256, 256) and v.labels.shape == (3, 256, 256)
    assert v.array.dtype == np.float32 and np.issubdtype(v.labels.array.dtype, np.integer)
    # SimpleITK order (z, y, x) without reorientation
    np.testing.assert_array_equal(v.array, arrays["10"].transpose(2, 1, 0)[:, :256, :256])
    np.testing.assert_allclose(v.spacing, (3.0, 1.75, 1.75))
    assert ds.load("2").labels.mask("rk").sum() > 0
    full = load_alp_folder(tmp_path, "SABS", crop256=False).load("0")
    assert full.shape == (3, 257, 257)
    # a mask written back lands in the 257x257 file grid, zero outside the crop
    m = v.labels.mask("LK")
    w = v.mask_to_nifti(m)
    assert w.shape == (257, 257, 3)
    np.testing.assert_array_equal(w.affine, nib.load(ds.image_path(10)).affine)
    back = np.asarray(w.dataobj).transpose(2, 1, 0)
    np.testing.assert_array_equal(back[:, :256, :256] > 0, m)
    assert not back[:, 256, :].any() and not back[:, :, 256].any()
    assert load_alp_folder(tmp_path, "SABS", ids=[10, "2"]).scan_ids == ("2", "10")
    with pytest.raises(ValueError, match="available: 0, 2, 10"):
        load_alp_folder(tmp_path, "SABS", ids=[5])
    with pytest.raises(KeyError, match="no scan"):
        ds.load(7)


def test_alp_chaos_like_and_errors(tmp_path):
    for sid in ("1", "2", "3", "5", "10", "19"):
        _write_alp(tmp_path, sid, (16, 12, 4), int(sid))
    ds = load_alp_folder(tmp_path, "CHAOST2")
    assert ds.scan_ids == ("1", "2", "3", "5", "10", "19")
    v = ds.load("5")
    assert v.shape == (4, 12, 16) and v.modality == "MR"
    assert v.labels.label_map.resolve("spleen") == 4

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="readme.txt"):
        load_alp_folder(empty, "CHAOST2")
    with pytest.raises(FileNotFoundError):
        load_alp_folder(tmp_path / "nope", "CHAOST2")
    (tmp_path / "label_19.nii.gz").unlink()
    with pytest.raises(ValueError, match="19"):
        load_alp_folder(tmp_path, "CHAOST2")
    with pytest.raises(ValueError, match="SABS"):
        load_alp_folder(tmp_path, "BTCV")


# ----------------------------------------------------------------------------- labels
def test_label_map_resolve():
    sabs, chaos = LabelMap.from_dataset("SABS"), LabelMap.from_dataset("chaost2")
    assert sabs.resolve("liver") == 6 and chaos.resolve("LIVER") == 1
    assert sabs.resolve("Spleen") == 1 and chaos.resolve("spleen") == 4
    for name in ("right_kidney", "kidney_right", "RK", "right kidney"):
        assert sabs.resolve(name) == 2 and chaos.resolve(name) == 2
    assert sabs.resolve("left_kidney") == 3 and sabs.resolve("lk") == 3
    assert sabs.resolve(6) == 6 and sabs.resolve("6") == 6 and sabs.resolve(np.int64(2)) == 2
    assert chaos[4] == "SPLEEN" and len(chaos) == 5 and "liver" in chaos and "aorta" not in chaos
    with pytest.raises(ValueError, match=r"valid labels of CHAOST2 are: 0 BG, 1 LIVER"):
        chaos.resolve("aorta")
    with pytest.raises(ValueError, match="Unknown label id 9"):
        chaos.resolve(9)
    with pytest.raises(ValueError, match="Unknown dataset"):
        LabelMap.from_dataset("BTCV")
    custom = LabelMap({0: "background", 2: "kidney_right"})
    assert custom.resolve("rk") == 2 and custom.resolve("bg") == 0
    assert "LIVER" in repr(chaos)
    with pytest.raises(ValueError, match="same name"):
        LabelMap({1: "liver", 2: "LIVER"})


def test_label_volume():
    a = np.zeros((3, 4, 5), np.int32)
    a[1, 1, 1] = 6
    lv = LabelVolume(a, "SABS")
    assert lv.slices_with("liver").tolist() == [1] and lv.present() == (0, 6)
    assert "6=LIVER" in repr(lv)
    with pytest.raises(ValueError, match="no label map"):
        LabelVolume(a).mask("liver")
    with pytest.raises(TypeError, match="integer"):
        LabelVolume(a.astype(float))
