"""Bad input: each case gives a clear error that says what was expected and what arrived.

Model and checkpoint errors (unknown name, missing/unexpected keys, offline download) are in
test_models.py; CLI exit codes in test_cli.py.
"""

import numpy as np
import pytest

from fsm2kit.core import Engine, preprocess_slice
from fsm2kit.core.episode import Episode, Support
from fsm2kit.protocol import build_episode


def _vol(z=6, h=16, w=16, organ=(2, 4)):
    img = np.random.default_rng(0).normal(size=(z, h, w)).astype(np.float32)
    lab = np.zeros((z, h, w), np.int16)
    lab[organ[0]:organ[1] + 1, 4:10, 4:10] = 1
    return img, lab


def test_empty_support_mask():
    with pytest.raises(ValueError, match="Support mask .* is empty"):
        Support(np.ones((8, 8), np.float32), np.zeros((8, 8), bool), chunk=0)


def test_empty_support_mask_in_engine(tiny256):
    with pytest.raises(ValueError, match="support mask is empty"):
        Engine(tiny256, progress=False).support_memory((np.ones((8, 8)), np.zeros((8, 8))))


def test_class_absent_from_support_scan():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="class 2 .*absent from the support scan"):
        ql2 = np.where(ql > 0, 2, 0)
        build_episode(qi, ql2, si, sl, 2, case_id="q", support_case_id="s")


def test_class_absent_from_query_scan():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="absent"):
        build_episode(qi, ql * 0, si, sl, 1, case_id="q", support_case_id="s")


def test_image_label_shape_mismatch():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="shape"):
        build_episode(qi, ql[:, :8], si, sl, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="differ in shape"):
        Support(np.ones((8, 8), np.float32), np.ones((8, 9), bool), chunk=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_images(bad):
    qi, ql = _vol()
    si, sl = _vol()
    qi[3, 5, 5] = bad
    with pytest.raises(ValueError, match="NaN|inf"):
        build_episode(qi, ql, si, sl, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="NaN or inf"):
        preprocess_slice(qi[3], 256)


def test_2d_where_3d_is_needed():
    qi, ql = _vol()
    with pytest.raises(ValueError, match="3D|\\(Z, H, W\\)"):
        build_episode(qi[0], ql[0], qi, ql, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="\\(M, H, W\\)"):
        s = Support(np.ones((8, 8), np.float32), np.ones((8, 8), bool), chunk=0)
        Episode("q", 1, "LIVER", np.array([0]), np.ones((8, 8), np.float32), None, np.array([0]), (s,))


def test_3d_where_a_slice_is_needed(tiny256):
    with pytest.raises(ValueError, match="expected a 2D"):
        Engine(tiny256, progress=False).encode(np.ones((4, 8, 8)))


def test_unknown_setting_and_order(tiny256, example_episode):
    eng = Engine(tiny256, progress=False)
    with pytest.raises(ValueError, match="Unknown setting '2S2Q'"):
        eng.segment(example_episode, "2S2Q")
    with pytest.raises(ValueError, match="Unknown order 'bottom'"):
        eng.segment(example_episode, "S1SFQ", order="bottom")


def test_episode_folder_errors(tmp_path):
    from fsm2kit.workflows.episodes import load_episodes

    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither"):
        load_episodes(tmp_path)
