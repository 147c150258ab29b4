"""Batching tracking steps of independent runs: grouping rules and results equal to unbatched."""

import numpy as np
import pytest

from fsm2kit.io.examples import example_dir
from fsm2kit.io.nifti import load_nifti
from fsm2kit.engine import Engine, TrackRequest, batch_groups
from fsm2kit.engine.tracking import request_signature
from fsm2kit.engine.memory import MemoryBank, MemorySelection, PointerRef, SpatialRef
from fsm2kit.protocol import build_episode
from fsm2kit.testing import assert_masks_agree


def test_batch_groups_hand_cases():
    assert batch_groups([], 4) == []
    assert batch_groups(["a", "b", "a", "a"], 2) == [[0, 2], [3], [1]]
    assert batch_groups([(1, 1, True)] * 5, 16) == [[0, 1, 2, 3, 4]]
    assert batch_groups(["x", "y", "z"], 1) == [[0], [1], [2]]
    with pytest.raises(ValueError, match="max_batch"):
        batch_groups(["a"], 0)


def _request(n_spatial, n_ptr, store):
    sel = MemorySelection(
        5, False,
        tuple(SpatialRef(i, 0, 6, True) for i in range(n_spatial)),
        tuple(PointerRef(i, 5 - i, True) for i in range(n_ptr)), 16,
    )
    return TrackRequest(np.zeros((4, 4), np.float32), sel, MemoryBank(6), store)


def test_request_signature():
    assert request_signature(_request(3, 3, False)) == (3, 3, False)
    assert request_signature(_request(3, 3, False)) != request_signature(_request(3, 2, False))
    assert request_signature(_request(1, 1, True)) != request_signature(_request(1, 1, False))


def test_track_batch_refuses_mixed_steps(tiny256):
    eng = Engine(tiny256, progress=False)
    with pytest.raises(ValueError, match="differ"):
        eng.track_batch([_request(1, 1, False), _request(2, 1, False)])
    assert eng.track_batch([]) == []


def test_drive_runs_jobs_without_steps(tiny256):
    def empty():
        return "done"
        yield  # noqa: unreachable, makes this a generator

    assert Engine(tiny256, progress=False).drive([empty(), empty()]) == ["done", "done"]


@pytest.fixture(scope="module")
def organ_episodes():
    d = example_dir() / "totalseg_ct_small"
    ct = load_nifti(d / "example_ct_sm.nii.gz", label_path=d / "example_seg.nii.gz", modality="CT")
    return [build_episode(ct.array, ct.labels.array, ct.array, ct.labels.array, lab, case_id="ct",
                          support_case_id="ct", label_name=name)
            for name, lab in {"right kidney": 2, "left kidney": 3}.items()]


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["S1SFQ", "1S1Q"])
def test_organs_batched_match_one_by_one(tiny256, organ_episodes, setting):
    """Batched vs single steps add up in another order: the shared tolerance rule applies."""
    single = Engine(tiny256, progress=False, object_batch_size=1)
    refs = [single.segment(ep, setting) for ep in organ_episodes]
    assert single.stats.tracking_forwards == single.stats.tracking_steps
    eng = Engine(tiny256, progress=False, object_batch_size=8)
    outs = eng.segment_many(organ_episodes, setting)
    assert eng.stats.tracking_steps == single.stats.tracking_steps
    assert eng.stats.tracking_forwards < eng.stats.tracking_steps
    assert eng.stats.encoder_passes == single.stats.encoder_passes  # shared slices encoded once
    for out, ref in zip(outs, refs):
        assert [s.z for s in out.slices] == [s.z for s in ref.slices]
        a, b = out.logits(), ref.logits()
        assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b)
        assert_masks_agree(a, b)
        np.testing.assert_allclose([s.object_score for s in out.slices],
                                   [s.object_score for s in ref.slices], rtol=1e-4, atol=1e-4)


def test_segment_many_checks_plans(tiny256, organ_episodes):
    with pytest.raises(ValueError, match="one sequence of plans per episode"):
        Engine(tiny256, progress=False).segment_many(organ_episodes, "S1SFQ", plans=[[]])
