"""Radiological display: a synthetic body whose anatomy is asymmetric (a bright blob anterior-right)
must be shown top-left (anterior up, patient's right on the image's left) from every source:
NIfTI and DICOM (affine), SSL-ALPNet folders prepared from raw SABS / CHAOS data, the npz dumps."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fsm2kit.viz.display import (
    COLORS,
    OKABE_ITO,
    PROTOCOL_AXCODES,
    axcodes_from_affine,
    display_orientation,
    display_slice,
    episode_axcodes,
)


def _top_left(a: np.ndarray) -> bool:
    """The bright blob lies in the top-left quadrant of the displayed slice."""
    a = np.asarray(a, dtype=float)
    ys, xs = np.nonzero(a > (a.min() + a.max()) / 2)
    assert ys.size, "no blob"
    h, w = a.shape
    return bool(ys.mean() < h / 2 and xs.mean() < w / 2)


@pytest.mark.parametrize(
    "codes, flips",
    [
        (("P", "L"), (False, False, False)),  # already radiological
        (("A", "L"), (False, True, False)),  # CHAOST2 arrays: up-down
        (("A", "R"), (False, True, True)),
        (("L", "P"), (True, False, False)),  # transposed (nibabel (x, y) order of an LPS file)
        (("R", "A"), (True, True, True)),  # RAS file in nibabel order
    ],
)
def test_display_orientation_axial(codes, flips):
    o = display_orientation(codes)
    assert (o.transpose, o.flip_rows, o.flip_cols) == flips
    assert o.letters == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    # an anterior-right blob in the stored array ends up top-left, and points map both ways
    rows, cols = codes
    a = np.zeros((12, 10))
    idx = [slice(None), slice(None)]
    for axis, code in enumerate(codes):
        n = a.shape[axis]
        near = code in ("P", "L")  # index increases away from A / R: A / R at index 0
        idx[axis] = slice(0, 3) if near else slice(n - 3, n)
    a[tuple(idx)] = 1
    d = display_slice(a, codes)
    assert _top_left(d.array)
    for y, x in ((0, 0), (11, 9), (4, 7)):
        assert o.stored_point(*o.point(y, x, a.shape), a.shape) == (y, x)


def test_display_other_planes_and_unknown():
    assert display_orientation(("I", "R")).letters == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert display_orientation(("A", "S")).letters == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    d = display_slice(np.eye(3), None)
    assert d.letters is None and (d.array == np.eye(3)).all()
    with pytest.raises(ValueError, match="axis codes"):
        display_orientation(("X", "L"))
    with pytest.raises(ValueError, match="same axis"):
        display_orientation(("L", "R"))


def test_axcodes_from_affine_match_nibabel():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = np.eye(4)
        a[:3, :3] = np.diag(rng.choice([-1.0, 1.0], 3) * rng.uniform(0.5, 3, 3))[:, rng.permutation(3)]
        a[:3, :3] += rng.normal(scale=0.05, size=(3, 3))
        assert axcodes_from_affine(a) == nib.aff2axcodes(a)


def test_colours_are_okabe_ito():
    assert set(COLORS[k] for k in ("support", "prediction", "ground_truth")) <= set(OKABE_ITO.values())
    assert len({COLORS[k] for k in ("support", "prediction", "ground_truth")}) == 3


def _blob_xyz(shape, x, y, z=None, value=1000.0, background=0.0):
    a = np.full(shape, background, np.float32)
    a[x, y, :] = value
    return a


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("L", "A", "I"), ("P", "R", "S")])
def test_nifti_any_orientation(tmp_path, axcodes):
    from fsm2kit.io.nifti import load_nifti

    # build the file in RAS, with the blob at the anterior (+y) right (+x) corner, then reorient it
    ras = np.zeros((20, 16, 4), np.float32)
    ras[16:20, 12:16, :] = 1000.0  # x increases towards R, y towards A
    target = nib.orientations.axcodes2ornt(axcodes)
    t = nib.orientations.ornt_transform(nib.orientations.axcodes2ornt(("R", "A", "S")), target)
    data = nib.orientations.apply_orientation(ras, t)
    aff = np.diag([1.5, 1.5, 3.0, 1.0]) @ nib.orientations.inv_ornt_aff(t, ras.shape)
    assert nib.aff2axcodes(aff) == axcodes
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "s.nii.gz")
    vol = load_nifti(tmp_path / "s.nii.gz")
    z = vol.n_slices // 2
    d = display_slice(vol.array[z], vol.array_affine)
    assert d.letters == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    assert _top_left(d.array)
    # the raw file slice (nibabel (x, y) order) with the file's own axis codes, as a second route
    if axcodes[2] in "SI":
        raw = display_slice(np.asarray(data[:, :, 1]), axcodes[:2])
        assert _top_left(raw.array)


def test_dicom_series(tmp_path):
    from test_dicom import AXIAL, write_series

    from fsm2kit.io.dicom import read_dicom_series

    px = np.full((3, 20, 24), 100, np.uint16)
    px[:, 0:5, 0:5] = 3000  # DICOM rows run A -> P, columns R -> L (AXIAL): anterior-right
    write_series(tmp_path / "d", px, orientation=AXIAL)
    vol = read_dicom_series(tmp_path / "d").to_volume()
    d = display_slice(vol.array[1], vol.array_affine)
    assert _top_left(d.array) and d.letters["top"] == "A"
    # a series stored posterior -> anterior (rows reversed), as the CHAOS layout
    px2 = px[:, ::-1]
    flipped = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
    write_series(tmp_path / "e", px2, orientation=flipped)
    vol2 = read_dicom_series(tmp_path / "e").to_volume()
    assert _top_left(display_slice(vol2.array[1], vol2.array_affine).array)


def test_chaos_prepared_folder_and_episodes(tmp_path):
    """Raw CHAOS DICOM + PNG (liver block anterior-right) -> prepare_chaos -> protocol arrays -> display."""
    from test_prepare import _chaos_patient

    from fsm2kit.io.alp import load_alp_folder
    from fsm2kit.io.preparation import prepare_chaos
    from fsm2kit.protocol.episodes import build_episode

    mr = tmp_path / "raw" / "MR"
    _chaos_patient(mr, "1", 40, 48, n=5)
    _chaos_patient(mr, "2", 40, 48, n=5)
    prepare_chaos(tmp_path / "raw", tmp_path / "chaos", progress=False)
    ds = load_alp_folder(tmp_path / "chaos", "CHAOST2")
    vol = ds.load("1")
    # the prepared file's affine agrees with the protocol layout of CHAOST2
    assert vol.array_axcodes[1:] == PROTOCOL_AXCODES["CHAOST2"] == ("A", "L")
    liver = vol.labels.mask("liver")
    z = int(np.flatnonzero(liver.any(axis=(1, 2)))[0])
    assert not _top_left(liver[z])  # stored: the anterior liver block is at the bottom of the array
    assert _top_left(display_slice(liver[z], ("A", "L")).array)
    ep = build_episode(vol.array, vol.labels.array, ds.load("2").array, ds.load("2").labels.array, "liver",
                       case_id="1", support_case_id="2", dataset="CHAOST2")
    codes = episode_axcodes(ep)
    assert codes == ("A", "L")
    assert _top_left(display_slice(ep.labels[0], codes).array)
    assert _top_left(display_slice(ep.supports[0].mask, codes).array)


def test_sabs_prepared_folder(tmp_path):
    """A BTCV-like file (LPS direction, nibabel codes L, P, S) with an anterior-right blob -> prepare_synapse."""
    from fsm2kit.io.alp import load_alp_folder
    from fsm2kit.io.preparation import prepare_synapse

    for n in ("0001", "0002", "0003"):
        hu = np.full((100, 100, 3), -1000, np.int16)
        lab = np.zeros((100, 100, 3), np.uint8)
        hu[34:44, 34:44, :] = 200  # x small = right, y small = anterior (L, P codes), inside the 32 px border cut
        lab[34:44, 34:44, :] = 6
        for kind, d in (("img", hu), ("label", lab)):
            (tmp_path / "raw" / kind).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(d, np.diag([-0.8, -0.8, 2.5, 1.0])), tmp_path / "raw" / kind / f"{kind}{n}.nii.gz")
    prepare_synapse(tmp_path / "raw", tmp_path / "sabs", progress=False)
    vol = load_alp_folder(tmp_path / "sabs", "SABS").load("0")
    assert vol.array_axcodes[1:] == PROTOCOL_AXCODES["SABS"] == ("P", "L")
    z = 1
    lab = vol.labels.array[z] == 6
    d = display_slice(lab, PROTOCOL_AXCODES["SABS"])
    assert _top_left(d.array) and _top_left(lab)  # stored radiologically already


def test_npz_dump_episodes_are_chaost2_layout(example_episode):
    assert episode_axcodes(example_episode) == ("A", "L")
    meta_ep = type(example_episode)(**{**example_episode.__dict__, "meta": {"axcodes": ("P", "L")}})
    assert episode_axcodes(meta_ep) == ("P", "L")
