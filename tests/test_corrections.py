"""Correction rounds (issue 13) against SAM2VideoPredictor with add_all_frames_to_correct_as_cond."""

import dataclasses

import numpy as np
import pytest

from fsm2kit.engine import Correction, Engine, segment_with_corrections
from fsm2kit.engine.plans import split_plan
from fsm2kit.testing import assert_logits_close
from fsm2kit.testing.reference import run_video_corrections

pytestmark = pytest.mark.slow


def _down(a):
    return np.asarray(a)[::2, ::2]


@pytest.fixture(scope="module")
def small_episode(example_episode):
    """8 query slices at 128 x 128 (every 3rd slice of the example), supports downsampled too."""
    ep = example_episode
    keep = np.arange(0, ep.n_slices, 3)[:8]
    sups = tuple(dataclasses.replace(s, image=_down(s.image), mask=_down(s.mask)) for s in ep.supports)
    return dataclasses.replace(ep, z=ep.z[keep], images=np.stack([_down(i) for i in ep.images[keep]]),
                               labels=None if ep.labels is None else np.stack([_down(x) for x in ep.labels[keep]]),
                               chunks=ep.chunks[keep], supports=sups)


def _reference(model, ep, setting, order, rounds, split=None):
    sup_idx = [len(ep.supports) // 2] if setting == "S1SFQ" else list(range(len(ep.supports)))
    k, m = len(sup_idx), ep.n_slices
    sups = [ep.supports[i].image for i in sup_idx]
    masks = [ep.supports[i].mask for i in sup_idx]
    pos = {int(z): i for i, z in enumerate(ep.z)}
    if order == "top":
        frames, cond, props = sups + list(ep.images), list(range(k)), [(0, False)]
        frame_of = lambda q: k + q  # noqa: E731
    else:
        half = m // 2 if split is None else split
        frames = list(ep.images[:half]) + sups + list(ep.images[half:])
        cond, props = list(range(half, half + k)), [(half, False), (half, True)]
        frame_of = lambda q: q if q < half else q + k  # noqa: E731
    ref_rounds = [[(frame_of(pos[c.z]), c.points, c.box, c.mask) for c in rnd] for rnd in rounds]
    stages = run_video_corrections(model.module, frames, cond, masks, props, ref_rounds)
    return [np.stack([st[frame_of(q)] for q in range(m)]) for st in stages]


def _check(model, ep, setting, order, rounds, split=None):
    plan = None
    if split is not None:
        sup_idx = [len(ep.supports) // 2] if setting == "S1SFQ" else list(range(len(ep.supports)))
        plan = split_plan(ep.n_slices, sup_idx, split)
    run = segment_with_corrections(Engine(model, progress=False), ep, setting, rounds, order=order, plan=plan)
    refs = _reference(model, ep, setting, order, rounds, split=split)
    assert len(run.stages) == len(refs) == len(rounds) + 1
    for res, ref in zip(run.stages, refs):
        ours = res.logits()
        assert (ref > 0).any() and (ref <= 0).any()
        assert_logits_close(ours, ref)
        np.testing.assert_array_equal(ours > 0, ref > 0)
    pos = {int(z): i for i, z in enumerate(ep.z)}
    for r, rnd in enumerate(rounds):  # each corrected slice's logits changed in its round
        for c in rnd:
            assert not np.array_equal(refs[r][pos[c.z]], refs[r + 1][pos[c.z]])
    return run, refs


def test_s1sfq_top_one_point(present128, small_episode):
    ep = small_episode
    run, refs = _check(present128, ep, "S1SFQ", "top", [[Correction(int(ep.z[5]), points=[(60, 70, 1)])]])
    assert not np.array_equal(refs[0] > 0, refs[1] > 0), "the correction must change something"


def test_s1sfq_top_box(present128, small_episode):
    ep = small_episode
    _check(present128, ep, "S1SFQ", "top", [[Correction(int(ep.z[2]), box=(20, 30, 90, 100))]])


def test_s1sfq_top_both_two_rounds(present128, small_episode):
    ep = small_episode
    rounds = [[Correction(int(ep.z[1]), points=[(60, 70, 1), (10, 10, 0)], box=(20, 30, 90, 100)),
               Correction(int(ep.z[6]), points=[(50, 50, 0)])],
              [Correction(int(ep.z[6]), points=[(70, 60, 1)]), Correction(int(ep.z[3]), box=(30, 30, 80, 90))]]
    _check(present128, ep, "S1SFQ", "top", rounds)


def test_s1sfq_middle_two_rounds(present128, small_episode):
    ep = small_episode
    rounds = [[Correction(int(ep.z[1]), points=[(60, 70, 1)]), Correction(int(ep.z[6]), box=(20, 30, 90, 100))],
              [Correction(int(ep.z[2]), points=[(40, 60, 1)], box=(20, 30, 90, 100))]]
    _check(present128, ep, "S1SFQ", "middle", rounds)


def test_3sfq_middle_and_mask(present128, small_episode):
    ep = small_episode
    rounds = [[Correction(int(ep.z[0]), points=[(60, 70, 1)]), Correction(int(ep.z[7]), mask=ep.supports[0].mask)]]
    _check(present128, ep, "3SFQ", "middle", rounds)


def test_3sfq_top_one_point(present128, small_episode):
    ep = small_episode
    _check(present128, ep, "3SFQ", "top", [[Correction(int(ep.z[4]), points=[(60, 70, 1)])]])


def test_s1sfq_split_plan_own_scan_start(present128, small_episode):
    ep = small_episode
    _check(present128, ep, "S1SFQ", "middle", [[Correction(int(ep.z[1]), points=[(60, 70, 1)])]], split=5)


def test_undo_equals_fresh_run(present128, small_episode):
    ep = small_episode
    r1 = [Correction(int(ep.z[5]), points=[(60, 70, 1)])]
    r2 = [Correction(int(ep.z[2]), box=(20, 30, 90, 100))]
    eng = Engine(present128, progress=False)
    two = segment_with_corrections(eng, ep, "S1SFQ", [r1, r2], order="top")
    undo = segment_with_corrections(eng, ep, "S1SFQ", [r1, r2][:-1], order="top")
    np.testing.assert_array_equal(undo.final.logits(), two.stages[1].logits())


def test_bad_input(small_episode, tiny256):
    ep = small_episode
    eng = Engine(tiny256, progress=False)
    with pytest.raises(ValueError, match="propagation"):
        segment_with_corrections(eng, ep, "1S1Q", [[Correction(int(ep.z[0]), points=[(1, 1, 1)])]])
    with pytest.raises(ValueError, match="not a query slice"):
        segment_with_corrections(eng, ep, "S1SFQ", [[Correction(-5, points=[(1, 1, 1)])]])
    with pytest.raises(ValueError, match="outside"):
        segment_with_corrections(eng, ep, "S1SFQ", [[Correction(int(ep.z[0]), points=[(500, 1, 1)])]])
    with pytest.raises(ValueError, match="label"):
        Correction(1, points=[(1, 1, 2)])
    with pytest.raises(ValueError, match="x0 < x1"):
        Correction(1, box=(5, 5, 2, 9))
    with pytest.raises(ValueError, match="empty"):
        Correction(1)
