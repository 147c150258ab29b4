"""Support selectors, augmented support views and start orders as experiment axes (issue 12, items 2-5).

By hand: selectors on tiny synthetic label volumes, view transforms on small arrays, the plans of
``from:P`` / ``at:Z``. Through the run path at smoke size (random weights, 128 px, 2 slices): each
selector, order and views setting is recorded in the slices and the provenance. The command
line refuses bad input in one line before a model loads; the strategies sweep runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsm2kit.protocol.episodes import Episode, Support
from fsm2kit.engine.plans import Frame, Plan, Step, build_plans, custom_plan, fq_plan, split_plan
from fsm2kit.strategies.views import MAX_VIEWS, VIEW_SEQUENCE, apply_view, gamma_view, hflip_view, scale_view
from fsm2kit.strategies import ORDERINGS, SUPPORT_SELECTORS, StartOrder, plan_with_views
from fsm2kit.strategies.support_selectors import chunk_candidates
from fsm2kit.strategies.views import support_views

REPO = Path(__file__).resolve().parents[1]
SMALL = ["--checkpoint", "random", "--image-size", "128", "--device", "cpu", "--no-progress"]


# ----------------------------------------------------------------------------- selectors by hand
def _labels():
    """12 slices of 6x6; class 2 on z 2..10 with area z - 1 (largest at z 10), class 5 on z 4 only."""
    lab = np.zeros((12, 6, 6), np.uint8)
    for z in range(2, 11):
        lab[z].flat[: z - 1] = 2
    lab[4, 5, 5] = 5
    return lab


def test_per_chunk_selectors_by_hand():
    lab = _labels()  # L = [2..10], n = 9; chunks [2,3,4] [5,6,7] [8,9,10]
    assert [c.tolist() for c in chunk_candidates(lab, 2, 3)] == [[2, 3, 4], [5, 6, 7], [8, 9, 10]]
    assert SUPPORT_SELECTORS.get("middle")(lab, 2, 3) == [3, 6, 9]
    assert SUPPORT_SELECTORS.get("largest")(lab, 2, 3) == [4, 7, 10]
    assert SUPPORT_SELECTORS.get("given:3,6,9")(lab, 2, 3) == [3, 6, 9]
    assert SUPPORT_SELECTORS.get("given:5")(lab, 2, 3) == [5, 5, 5]
    assert SUPPORT_SELECTORS.get("largest").volume_slices(lab, 2) == [10]
    # a one-slice organ: every chunk falls back to its only slice
    assert SUPPORT_SELECTORS.get("random:7")(lab, 5, 3) == [4, 4, 4]
    with pytest.raises(ValueError, match="not drawn"):
        SUPPORT_SELECTORS.get("given:0,6,9")(lab, 2, 3)


def test_random_selector_is_deterministic_per_seed_and_stays_in_its_chunk():
    lab = _labels()
    cands = chunk_candidates(lab, 2, 3)
    draws = {}
    for seed in range(6):
        a = SUPPORT_SELECTORS.get(f"random:{seed}")(lab, 2, 3)
        assert a == SUPPORT_SELECTORS.get(f"random:{seed}")(lab, 2, 3)  # same seed, same slices
        assert all(z in c for z, c in zip(a, cands))  # one per chunk, inside it
        draws[seed] = tuple(a)
    assert len(set(draws.values())) > 1  # seeds differ
    assert SUPPORT_SELECTORS.get("random").strategy_name == "random:0"
    with pytest.raises(ValueError, match="SEED is an integer"):
        SUPPORT_SELECTORS.get("random:x")


def test_similar_selector_modes_need_a_model():
    sim, per_q = SUPPORT_SELECTORS.get("similar"), SUPPORT_SELECTORS.get("similar:query")
    assert (sim.strategy_name, sim.similarity, per_q.similarity) == ("similar", "chunk", "query")
    assert sim.needs_model and "experiments" in sim.serves and "episodes" not in sim.serves
    with pytest.raises(ValueError, match="needs a model"):
        sim(_labels(), 2, 3)
    with pytest.raises(ValueError, match="MODE is one of chunk, query"):
        SUPPORT_SELECTORS.get("similar:slice")


# ----------------------------------------------------------------------------- views by hand
def test_view_transforms_by_hand():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    m = np.zeros((3, 4), bool)
    m[1, 0] = True
    fi, fm = hflip_view(img, m)
    assert fi.tolist() == [[3, 2, 1, 0], [7, 6, 5, 4], [11, 10, 9, 8]] and np.flatnonzero(fm).tolist() == [7]
    # identity scale, then a 2x zoom of a 5x5 ramp about its centre (2, 2): out(y, x) = in(2 + (y-2)/2, ...)
    assert np.array_equal(scale_view(img, m, 1.0)[0], img) and np.array_equal(scale_view(img, m, 1.0)[1], m)
    ramp = np.tile(np.arange(5, dtype=np.float32), (5, 1))
    zi, _ = scale_view(ramp, np.ones((5, 5), bool), 2.0)
    assert np.allclose(zi[0], [1.0, 1.5, 2.0, 2.5, 3.0])
    # zoom out: the mask is 0 outside the slice, the image repeats its edge
    oi, om = scale_view(ramp, np.ones((5, 5), bool), 0.5)
    assert np.allclose(oi[0], [0, 0, 2, 4, 4]) and om.sum() == 9 and om[1:4, 1:4].all()
    # gamma on the slice's own range: ends fixed, middle raised to the power
    g, gm = gamma_view(np.array([[0.0, 5.0, 10.0]]), np.array([[True, False, False]]), 2.0)
    assert np.allclose(g, [[0.0, 2.5, 10.0]]) and gm.tolist() == [[True, False, False]]
    assert np.array_equal(gamma_view(np.ones((2, 2)), np.ones((2, 2), bool), 0.8)[0], np.ones((2, 2)))
    with pytest.raises(ValueError, match="unknown view"):
        apply_view("rotate:10", img, m)


def test_support_views_are_deterministic_and_in_the_documented_order():
    rng = np.random.default_rng(0)
    img = rng.normal(size=(16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[5:11, 3:9] = True
    s = Support(img, mask, chunk=1, z=7, case_id="c")
    views = support_views(s, MAX_VIEWS)
    assert len(views) == len(VIEW_SEQUENCE) == 5 and all((v.chunk, v.z, v.case_id) == (1, 7, "c") for v in views)
    for v, name in zip(views, VIEW_SEQUENCE):
        ref_img, ref_mask = apply_view(name, img, mask)
        assert np.array_equal(v.image, ref_img) and np.array_equal(v.mask, ref_mask)
    again = support_views(s, 2)
    assert all(np.array_equal(a.image, b.image) for a, b in zip(again, views[:2]))
    assert support_views(s, 0) == []
    with pytest.raises(ValueError, match=r"expected 0..5"):
        support_views(s, 6)


def test_plan_with_views_puts_each_view_after_its_support():
    plan = fq_plan(4, [0, 1, 2], "middle")  # q0 q1 S0 S1 S2 q2 q3
    v = plan_with_views(plan, {0: [3], 1: [4], 2: [5]})
    assert [(f.kind[0], f.index) for f in v.frames] == [("q", 0), ("q", 1), ("s", 0), ("s", 3), ("s", 1), ("s", 4),
                                                        ("s", 2), ("s", 5), ("q", 2), ("q", 3)]
    assert v.query_order == plan.query_order == (2, 3, 1, 0)
    assert [s.reverse for s in v.steps] == [s.reverse for s in plan.steps]
    assert plan_with_views(plan, {}) is plan


# ----------------------------------------------------------------------------- orders by hand
def _episode(m=6, z0=10, supports=3):
    img = np.zeros((m, 4, 4), np.float32)
    mask = np.ones((4, 4), bool)
    chunks = np.repeat(np.arange(3), -(-m // 3))[:m]
    return Episode(case_id="c", label=1, label_name="x", z=np.arange(z0, z0 + m), images=img,
                   labels=np.ones((m, 4, 4), bool), chunks=chunks,
                   supports=tuple(Support(img[0], mask, chunk=p, z=p) for p in range(supports)))


def test_from_and_at_plans_by_hand():
    ep = _episode(m=6, z0=10)
    (p,) = ORDERINGS.get("from:0.4")("3SFQ", ep)  # floor(0.4 * 5 + 0.5) = 2
    assert [f.kind[0] for f in p.frames] == list("qqsssqqqq")
    assert p.query_order == (2, 3, 4, 5, 1, 0)
    assert [s.reverse for s in p.steps] == [False] * 4 + [True] * 2
    (a,) = ORDERINGS.get("at:13")("3SFQ", ep)  # z 13 is position 3
    assert a.query_order == (3, 4, 5, 2, 1, 0)
    (s1,) = ORDERINGS.get("at:13")("S1SFQ", ep)  # S1SFQ: the middle chunk's support only
    assert [f.index for f in s1.frames if f.kind == "support"] == [1]
    assert ORDERINGS.get("from:0.5")("1S1Q", ep) == build_plans("1S1Q", chunks=list(ep.chunks),
                                                                 support_chunks=[0, 1, 2])  # 1Q: no order
    with pytest.raises(ValueError, match=r"z=30 is not a query slice of c/x; its query slices are z 10..15"):
        ORDERINGS.get("at:30")("3SFQ", ep)


@pytest.mark.parametrize("m", range(1, 10))
def test_from_half_is_middle_and_from_zero_is_top(m):
    assert split_plan(m, [0, 1, 2], StartOrder("from", 0.5).start_position(range(m))) == fq_plan(m, [0, 1, 2], "middle")
    assert split_plan(m, [0, 1, 2], StartOrder("from", 0.0).start_position(range(m))) == fq_plan(m, [0, 1, 2], "top")
    assert StartOrder("from", 1.0).start_position(range(m)) == m - 1


def test_order_arguments_are_validated_in_one_line():
    for spec, words in (("from:1.5", "P is a relative position in [0, 1]"), ("from:abc", "a number in [0, 1]"),
                        ("at:-2", "Z is a slice index"), ("at", "needs an argument"),
                        ("sideways", "registered: middle, top, from:P, at:Z")):
        with pytest.raises(ValueError) as e:
            ORDERINGS.get(spec)
        assert words in str(e.value) and "\n" not in str(e.value)
    # custom plans stay possible: a registered ordering may return any plan
    assert custom_plan([2, 0, 1], [0]).query_order == (2, 0, 1)
    assert Plan((Frame("support", 0), Frame("query", 0)), (Step(1),), True).query_order == (0,)


# ----------------------------------------------------------------------------- through the run path
def _config(folder, **kw):
    from fsm2kit.run import ExperimentConfig

    base = dict(episodes=str(folder), dataset="CHAOST2", folds=[0], classes=["liver"], checkpoint="random",
                image_size=128, device="cpu", max_slices=2)
    return ExperimentConfig(**{**base, **kw})


def _run(config, model):
    from fsm2kit.run import load_config_episodes, run_experiment

    eps = load_config_episodes(config, progress=False)[:1]
    return run_experiment(config, models={"sam2-tiny": model}, episodes=[eps], progress=False), eps[0]


@pytest.mark.slow
def test_experiment_records_selectors_orders_and_views(alp_folder, tiny128):
    res, ep = _run(_config(alp_folder, settings=["3SFQ"], orders=["from:0.25", "middle"], support_selector="random:3",
                           support_views=1), tiny128)
    s = res.slices
    assert set(s["order"]) == {"from:0.25", "middle"} and set(s["support_selector"]) == {"random:3"}
    assert set(s["support_views"]) == {1}
    assert (s["n_memories"] >= 6).all()  # 3 supports + 3 views as conditioning memories
    rec = res.provenance().to_dict()
    assert rec["support_selector"] == "random:3" and set(rec["orders"]) == {"from:0.25", "middle"}
    assert rec["configs"][0]["support_views"] == 1 and rec["configs"][0]["support_selector"] == "random:3"
    assert rec["support_views"] == [1]
    assert [sp.z for sp in ep.supports] == [int(x) for x in s["support_z"].iloc[0].split(",")]
    # at:Z: the query slice with that z starts; the first processed slice is it
    z = int(ep.z[-1])
    res2, _ = _run(_config(alp_folder, settings=["S1SFQ"], orders=[f"at:{z}"]), tiny128)
    first = res2.slices.sort_values("step").iloc[0]
    assert int(first["z"]) == z and set(res2.slices["order"]) == {f"at:{z}"}
    assert set(res2.slices["start_z"]) == {z}  # issue 25: the start slice is recorded on every row


@pytest.mark.slow
def test_experiment_similar_per_chunk_and_per_query(alp_folder, tiny128):
    res, ep = _run(_config(alp_folder, settings=["1S1Q", "3S1Q"], support_selector="similar:query"), tiny128)
    s = res.slices
    assert set(s["support_selector"]) == {"similar:query"} and set(s["order"]) == {"n/a"}
    assert set(s.loc[s.setting == "1S1Q", "n_memories"]) == {1} and set(s.loc[s.setting == "3S1Q", "n_memories"]) == {3}
    assert res.provenance().to_dict()["support_selector"] == "similar:query"
    res2, _ = _run(_config(alp_folder, settings=["S1SFQ"], support_selector="similar"), tiny128)
    assert set(res2.slices["support_selector"]) == {"similar"}
    with pytest.raises(ValueError, match="similar:query.*only 1S1Q and 3S1Q"):
        _config(alp_folder, settings=["3SFQ"], support_selector="similar:query")
    with pytest.raises(ValueError, match="support_views.*expected 0..5"):
        _config(alp_folder, support_views=9)


# ----------------------------------------------------------------------------- command line
def test_cli_bad_strategy_input_fails_in_one_line_before_a_model(alp_folder, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    base = ["run", "--episodes", str(alp_folder), "--dataset", "CHAOST2", "--fold", "0", "--label", "liver",
            "--setting", "S1SFQ", *SMALL, "--out", str(tmp_path / "o")]
    cases = (["--order", "from:1.5"], ["--support-views", "9"], ["--support-views", "x"],
             ["--support-select", "random:x"], ["--support-select", "similar:query"], ["--order", "at:z"])
    for extra, words in zip(cases, ("[0, 1]", "0..5", "0..5", "SEED", "only 1S1Q and 3S1Q", "Z is a slice index")):
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (extra, err)
    ct = REPO / "data" / "examples" / "totalseg_ct_small"
    seg = ["segment", "--image", str(ct / "example_ct_sm.nii.gz"), "--support-image", str(ct / "example_ct_sm.nii.gz"),
           "--support-mask", str(ct / "example_seg.nii.gz"), "--labels", "liver=5", *SMALL,
           "--out", str(tmp_path / "s.nii.gz")]
    for extra, words in ((["--order", "from:2"], "[0, 1]"), (["--order", "sideways"], "unknown ordering"),
                         (["--start-slice", "3", "--order", "at:4"], "not both"),
                         (["--support-select", "nope"], "unknown support selector"),
                         (["--support-views", "7"], "0..5"), (["--order", "at:999"], "outside")):
        assert main(seg + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], (extra, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "s.nii.gz").exists()


def test_segment_start_slice_is_order_at():
    import argparse

    from fsm2kit.cli.segment import _order_spec, register_cli
    from fsm2kit.segment.own_scan import start_from_order

    p = argparse.ArgumentParser()
    register_cli(p.add_subparsers())
    req = ["segment", "--image", "a", "--support-image", "b", "--support-mask", "c", "--out", "d.nii.gz"]
    a = _order_spec(p.parse_args(req + ["--start-slice", "7"]))
    b = _order_spec(p.parse_args(req + ["--order", "at:7"]))
    assert a == b == "at:7" and start_from_order(a, 20) == start_from_order(b, 20) == 7
    assert start_from_order("from:0.5", 21) == 10 and start_from_order("top", 9) == 0
    assert start_from_order("middle", 9) == 4 and start_from_order(None, 9) is None


def test_strategies_lists_every_selector_order_and_the_views():
    from fsm2kit.cli.strategies import format_strategies

    text = format_strategies()
    for usage in ("from:P", "at:Z", "top", "middle", "random[:SEED]", "similar[:MODE]", "given:Z1,Z2,...",
                  "largest", "protocol", "--support-views N"):
        assert usage in text, usage


# ----------------------------------------------------------------------------- the sweep
@pytest.mark.slow
def test_strategies_sweep_runs(tmp_path):
    from fsm2kit.batch.sweep_spec import DONE_MARKER
    from fsm2kit.batch.sweep_runs import execute_run
    from fsm2kit.batch import load_sweep

    sweep = load_sweep(REPO / "sweeps" / "strategies.yaml")
    specs = sweep.runs(tmp_path / "reports")
    assert [s.name for s in specs] == ["from_0.25-protocol-sam2", "from_0.25-protocol-support-only"]
    for spec in specs:
        out = execute_run(spec)
        assert out.status == "done", out.error
        slices = pd.read_csv(spec.folder / "slices.csv")
        assert set(slices["order"]) == {spec.parameters["order"]} and len(slices) == 3
        assert set(slices["support_selector"]) == {"protocol"}
        assert set(slices["memory_policy"]) == {spec.parameters["memory_policy"]}
        assert json.loads((spec.folder / DONE_MARKER).read_text())["status"] == "done"
