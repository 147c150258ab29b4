"""Post-processing switches (fsm2kit.engine.postprocess): spec, bit-equal defaults, lcc and union."""

from __future__ import annotations

import numpy as np
import pytest

from fsm2kit.engine.postprocess import (PUBLISHED_POSTPROCESS, PostProcess, largest_component_3d, merge_passes,
                                        parse_postprocess)


def test_spec_round_trip_and_errors():
    assert str(PUBLISHED_POSTPROCESS) == "holes:8,stability:on,lcc:off,union:off"
    assert parse_postprocess(None) is PUBLISHED_POSTPROCESS and parse_postprocess("published").published
    assert parse_postprocess("none") == PostProcess(0, False, False, False)
    pp = parse_postprocess("holes:off, lcc:on")
    assert (pp.holes, pp.stability, pp.lcc, pp.union) == (0, True, True, False)
    assert parse_postprocess(str(pp)) == pp and parse_postprocess("holes=4").holes == 4
    assert pp.scored_masks == "largest 3D component of logits > 0"
    for bad, msg in [("lcc", "not an item"), ("holes:x", "pixel area"), ("union:maybe", "on or off"),
                     ("lcc:on,lcc:off", "twice"), ("blur:on", "not an item")]:
        with pytest.raises(ValueError, match=msg):
            parse_postprocess(bad)


def test_config_and_cli_take_the_spec(no_model, tmp_path, capsys):
    from fsm2kit.cli import main
    from fsm2kit.run.config import ExperimentConfig

    c = ExperimentConfig(postprocess="lcc:on")
    assert c.postprocess == "holes:8,stability:on,lcc:on,union:off" and "postprocess=" in repr(c)
    assert ExperimentConfig().postprocess == str(PUBLISHED_POSTPROCESS)
    assert ExperimentConfig(**ExperimentConfig(postprocess="none").to_dict()).postprocess.startswith("holes:off")
    with pytest.raises(ValueError, match="ExperimentConfig.postprocess"):
        ExperimentConfig(postprocess="lcc:maybe")
    from conftest import EXAMPLE_NPZ

    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--checkpoint", "random",
            "--image-size", "128", "--out", str(tmp_path / "o"), "--postprocess", "holes:-1"]
    assert main(argv) == 2
    assert "postprocess" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_largest_component_3d_by_hand():
    m = np.zeros((4, 6, 6), bool)
    m[0:2, 0:2, 0:2] = True  # 8 voxels
    m[3, 4:6, 4:6] = True  # 4 voxels, apart
    m[2, 2, 2] = True  # touches the big one diagonally (26-connectivity): 9 voxels
    out = largest_component_3d(m)
    assert out.sum() == 9 and out[2, 2, 2] and not out[3].any()
    assert not largest_component_3d(np.zeros((2, 3, 3), bool)).any()


def _slice(pos, value, step):
    from fsm2kit.engine.results import SliceResult

    return SliceResult(pos, pos, np.full((2, 2), value, np.float32), 0.0, 0.0, 0, step, None)


def test_merge_passes_last_wins_or_union():
    a = [_slice(1, -1.0, 0), _slice(0, 2.0, 1), _slice(1, 3.0, 2), _slice(1, -5.0, 3)]
    last = merge_passes(a, union=False)
    assert [s.position for s in last] == [0, 1] and last[1] is a[3]
    union = merge_passes(a, union=True)
    assert union[1].logits.max() == 3.0 and union[1].step == 3
    one = [_slice(2, 1.0, 0), _slice(0, 1.0, 1)]
    assert merge_passes(one, union=True) == sorted(one, key=lambda s: s.position)


@pytest.fixture(scope="module")
def small(example_episode):
    from fsm2kit.run.sources import subset_episode

    return subset_episode(example_episode, max_slices=5)


def test_switches_off_and_on_again_give_todays_logits_bit_for_bit(present128, small):
    from fsm2kit.engine import Engine

    engine = Engine(present128, progress=False)
    base = engine.segment(small, "S1SFQ").logits()
    assert engine.postprocess == PUBLISHED_POSTPROCESS
    with engine.postprocessing("none") as pp:
        assert engine.tracker.hole_area == 0 and pp.stability is False
        off = engine.segment(small, "S1SFQ").logits()
    with engine.postprocessing("holes:1000"):  # every background region of the 32x32 low-res mask
        holes_big = engine.segment(small, "S1SFQ").logits()
    with engine.postprocessing("published"):
        again = engine.segment(small, "S1SFQ").logits()
    after = engine.segment(small, "S1SFQ").logits()
    assert np.array_equal(base, again) and np.array_equal(base, after)
    assert engine.postprocess == PUBLISHED_POSTPROCESS and engine.module.fill_hole_area == 8
    assert engine.module.sam_mask_decoder.dynamic_multimask_via_stability is True
    # holes act on the logits; with random weights no hole is <= 8 px, so 'none' equals today here
    assert not np.array_equal(holes_big, base)
    assert off.shape == base.shape
    # stability acts where SAM2 predicts a single mask: a step with 2+ points (tracking steps use
    # multimask output, and a mask prompt is its own output)
    from fsm2kit.engine.corrections import Correction, segment_with_corrections

    z = int(small.z[2])
    rounds = [[Correction(z, points=((100, 120, 1), (60, 60, 0)))]]
    corr = [segment_with_corrections(engine, small, "S1SFQ", rounds).final.logits()]
    with engine.postprocessing("stability:off"):
        corr.append(segment_with_corrections(engine, small, "S1SFQ", rounds).final.logits())
    corr.append(segment_with_corrections(engine, small, "S1SFQ", rounds).final.logits())
    assert not np.array_equal(corr[0], corr[1]) and np.array_equal(corr[0], corr[2])


def test_union_of_passes_that_cover_the_same_slices(present128, small):
    from fsm2kit.engine import Engine
    from fsm2kit.engine.plans import custom_plan, fq_plan

    n = small.n_slices
    down = fq_plan(n, [1], "top")  # supports, then the slices in ascending z
    up = custom_plan(list(reversed(range(n))), [1], n)  # supports, then descending z
    engine = Engine(present128, progress=False)
    fwd = {r.position: r.logits for r in engine.run_plan(down, small.images, small.supports, z=small.z)[0]}
    bwd = {r.position: r.logits for r in engine.run_plan(up, small.images, small.supports, z=small.z)[0]}
    last = engine.segment(small, "S1SFQ", plans=[down, up])
    assert len(last.slices) == n
    assert all(np.array_equal(s.logits, bwd[s.position]) for s in last.slices)  # SAM2: the later pass wins
    with engine.postprocessing("union:on"):
        union = engine.segment(small, "S1SFQ", plans=[down, up])
    for s in union.slices:
        assert np.array_equal(s.prediction, (fwd[s.position] > 0) | (bwd[s.position] > 0))
    assert any(not np.array_equal(f > 0, bwd[p] > 0) for p, f in fwd.items())  # the passes differ


def test_lcc_scores_other_masks_but_keeps_the_logits(present128, small):
    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.runner import run_experiments

    cfgs = [ExperimentConfig(name=f"pp{i}", models=("sam2-tiny",), checkpoint="random", image_size=128,
                             postprocess=pp) for i, pp in enumerate(["published", "lcc:on"])]
    res = run_experiments(cfgs, models={"sam2-tiny": present128}, episodes=[[small], [small]],
                          keep_predictions=True, progress=False)
    a, b = (p.result.logits() for p in res.predictions)
    assert np.array_equal(a, b)  # lcc never touches the logits
    s = res.slices
    assert set(s["scored_masks"]) == {"logits > 0", "largest 3D component of logits > 0"}
    assert set(s["postprocess"]) == {"holes:8,stability:on,lcc:off,union:off", "holes:8,stability:on,lcc:on,union:off"}
    lcc = largest_component_3d(a > 0)
    got = s[s["postprocess"].str.contains("lcc:on")].sort_values("z")["pred_px"].to_numpy()
    assert np.array_equal(got, lcc.reshape(len(lcc), -1).sum(1))
    assert len(res.summary()) == 4  # two switches x two Dice averages, kept apart
    prov = res.provenance().to_dict()
    assert len(prov["postprocess"]) == 2 and len(prov["scored_masks"]) == 2
