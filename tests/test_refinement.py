"""Refinement passes (``--refine``, fsm2kit.engine.passes + fsm2kit.strategies.refinement).

* the rule by hand: ``revsam2:top=K`` / ``score=T`` on given scores; the one slice score;
* through the engine (random sam2-tiny at 128 px with object scores shifted so masks are
  non-empty): ``revsam2:top=0`` equals a plain run bit for bit; a promoted slice is in the bank
  as a conditioning memory for pass 2 and is attended to by pass 2's steps (the observer hook);
* config and command line: 1Q settings refused, bad specs one line before any model, the run
  records the scores and the promoted flag per slice.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fsm2kit.engine.passes import SliceScores
from fsm2kit.strategies import REFINEMENTS

from conftest import EXAMPLE_NPZ


def test_slice_score_by_hand():
    s = SliceScores(object_score=0.0, iou=0.8, consistency=0.5)
    assert s.score == pytest.approx(0.5 * 0.8 * 0.5)
    assert SliceScores(-1024.0, 1.0, 1.0).score == 0.0
    assert SliceScores(50.0, 1.7, 1.0).score == pytest.approx(1.0)  # IoU clipped to [0, 1]


def test_revsam2_rules_by_hand():
    scores = [SliceScores(10.0, 1.0, c) for c in (0.2, 0.9, 0.5, 0.9)]
    assert REFINEMENTS.get("revsam2:top=2").promote(scores) == [1, 3]  # ties: earlier first
    assert REFINEMENTS.get("revsam2:top=3").promote(scores) == [1, 2, 3]
    assert REFINEMENTS.get("revsam2:top=0").promote(scores) == []
    assert REFINEMENTS.get("revsam2:score=0.4").promote(scores) == [1, 2, 3]
    assert REFINEMENTS.get("revsam2").strategy_name == "revsam2:top=3"
    assert REFINEMENTS.get("revsam2:top=1,passes=3").passes == 3
    assert REFINEMENTS.get(None).strategy_name == "none" and REFINEMENTS.get("none").passes == 1


@pytest.mark.parametrize("spec", ["revsam2:top=-1", "revsam2:score=2", "revsam2:k=3", "revsam2:top=1,passes=0",
                                  "revsam2:top=1,score=0.5", "second-pass"])
def test_bad_specs(spec):
    with pytest.raises(ValueError) as e:
        REFINEMENTS.get(spec)
    assert "\n" not in str(e.value)


@pytest.fixture(scope="module")
def small(example_episode):
    from fsm2kit.run.sources import subset_episode

    return subset_episode(example_episode, max_slices=6)


@pytest.fixture(scope="module")
def engine(present128):
    from fsm2kit.engine.engine import Engine

    return Engine(present128, progress=False)


def test_top0_equals_a_plain_run_bit_for_bit(engine, small):
    plain = engine.segment(small, "S1SFQ", order="middle")
    refined = engine.segment(small, "S1SFQ", order="middle", refinement=REFINEMENTS.get("revsam2:top=0"))
    assert refined.refinement == "revsam2:top=0" and plain.refinement == "none"
    for a, b in zip(plain.slices, refined.slices):
        assert a.z == b.z and np.array_equal(a.logits, b.logits) and a.object_score == b.object_score
        assert b.scores is not None and not b.promoted and b.refine_pass == 1
    assert any(s.prediction.any() for s in plain.slices), "the shifted model must predict something"


class _Watch:
    def __init__(self):
        self.steps = []

    def before_forward(self, requests, layouts):
        for r in requests:
            self.steps.append((r.role, r.index, dict(r.bank.cond), r.selection))

    def after_forward(self, requests, outputs):
        pass


def test_promoted_slice_is_a_conditioning_memory_in_pass_2(engine, small):
    rule = REFINEMENTS.get("revsam2:top=1")
    watch = _Watch()
    with engine.observe(watch):
        res = engine.segment(small, "S1SFQ", order="top", refinement=rule, keep_banks=True)
    promoted = [s for s in res.slices if s.promoted]
    assert len(promoted) == 1
    p = promoted[0]
    # the promoted slice had the best score among the non-empty predictions of pass 1
    cands = [s for s in res.slices if s.scores is not None and s.refine_pass == 1 and s.prediction.any()] + promoted
    assert p.scores.score == max(s.scores.score for s in cands if s.scores is not None and
                                 (s.promoted or s.prediction.any()))
    plan = res.plans[0]
    frame = next(i for i, f in enumerate(plan.frames) if f.kind == "query" and f.index == p.position)
    bank = res.banks[0]
    assert frame in bank.cond and bank.cond[frame].promoted and bank.cond[frame].kind == "query"
    # steps: pass 1 (6 query steps, frame not yet conditioning), consistency steps, then pass 2 (5 steps)
    roles = [r for r, *_ in watch.steps]
    n = len(small.z)
    assert roles[:n] == ["query"] * n and roles.count("query") == 2 * n - 1
    assert "consistency" in roles
    pass1 = [st for st in watch.steps if st[0] == "query"][:n]
    pass2 = [st for st in watch.steps if st[0] == "query"][n:]
    assert all(frame not in cond for _, _, cond, _ in pass1)
    for _, index, cond, sel in pass2:
        assert index != p.position
        assert frame in cond and cond[frame].is_cond and cond[frame].promoted
        assert any(r.frame_idx == frame and r.is_cond and r.t_pos == 0 for r in sel.spatial)
    assert all(s.refine_pass == 2 for s in res.slices if not s.promoted)
    df = res.to_frame()
    assert {"score_object", "score_iou", "score_consistency", "score", "promoted", "refine_pass"} <= set(df.columns)
    assert int(df["promoted"].sum()) == 1


def test_inspector_labels_promoted_memories(engine, small):
    from fsm2kit.inspector.inspection import inspect_episode

    insp = inspect_episode(engine, small, "S1SFQ", order="top", layers=[0],
                           refinement=REFINEMENTS.get("revsam2:top=1"))
    assert len(insp.steps) == len(small.z)
    labels = {e.label for st in insp.steps for e in st.layout.entries} if hasattr(insp.steps[0], "layout") else set()
    roles = set(insp.masses["role"]) if "role" in insp.masses.columns else set()
    assert any("promoted" in str(x) for x in labels | roles)


def test_config_refuses_1q_settings():
    from fsm2kit.run.config import ExperimentConfig

    with pytest.raises(ValueError, match="segment each slice alone"):
        ExperimentConfig(settings=["1S1Q"], refinement="revsam2:top=2")
    c = ExperimentConfig(settings=["S1SFQ"], refinement="revsam2:top=2")
    assert c.to_dict()["refinement"] == "revsam2:top=2" and "refine=revsam2:top=2" in repr(c)
    assert ExperimentConfig(settings=["1S1Q"], refinement="revsam2:top=2,passes=1").refinement


def _argv(out, refine, episodes=EXAMPLE_NPZ, setting="S1SFQ", extra=()):
    return ["run", "--episodes", str(episodes), "--setting", setting, "--refine", refine, "--checkpoint", "random",
            "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


@pytest.mark.parametrize("spec,setting", [("revsam2:top=x", "S1SFQ"), ("polish", "S1SFQ"), ("revsam2", "1S1Q")])
def test_cli_bad_refine_fails_before_any_model(spec, setting, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    assert main(_argv(tmp_path / "o", spec, setting=setting)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refine" in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", [pytest.param("npz", marks=pytest.mark.slow), "alp"])
def test_cli_run_records_refinement(where, tmp_path, present128, monkeypatch, alp_folder):
    import pandas as pd

    import fsm2kit.model.loading as models
    from fsm2kit.cli import main

    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: present128)
    out = tmp_path / "run"
    extra = ["--max-slices", "5"] if where == "npz" else ["--dataset", "CHAOST2", "--fold", "0", "--label", "liver"]
    episodes = EXAMPLE_NPZ if where == "npz" else alp_folder
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        argv = _argv(out, "revsam2:top=1", episodes=episodes, extra=extra)
        if where == "npz":
            argv = [a for a in argv if a not in ("--max-slices", "5")]
        assert main(argv) == 0
    rec = json.loads((out / "provenance.json").read_text())
    assert rec["refinement"] == ["revsam2:top=1"] and rec["configs"][0]["refinement"] == "revsam2:top=1"
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["refinement"]) == {"revsam2:top=1"}
    assert {"score", "score_consistency", "promoted"} <= set(slices.columns)
    assert slices.groupby(["case_id", "label"])["promoted"].sum().le(1).all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["refinement"]) == {"revsam2:top=1"}


def test_python_run_study_style_config_runs_refinement(present128, alp_folder):
    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.runner import run_experiments

    c = ExperimentConfig(episodes=str(alp_folder), dataset="CHAOST2", folds=[0], classes=["liver"],
                         settings=["S1SFQ"], refinement="revsam2:score=0.0", image_size=128, checkpoint="random")
    res = run_experiments(c, models={"sam2-tiny": present128}, progress=False)
    assert set(res.slices["refinement"]) == {"revsam2:score=0"}
    assert res.slices["promoted"].any()


@pytest.mark.slow
def test_segment_volume_with_refinement(present128, tmp_path):
    from fsm2kit.engine.engine import Engine
    from fsm2kit.io.examples import example_ct
    from fsm2kit.segment.own_scan import segment_volume

    ct = example_ct()
    res = segment_volume(ct, ct, ct.labels.array, engine=Engine(present128, progress=False), labels="liver=5",
                         refinement="revsam2:top=2")
    o = res.organs[0].propagation
    assert res.options["refinement"] == "revsam2:top=2" and res.options["stop"] == "none"
    assert o.refinement == "revsam2:top=2" and len(o.promoted_z) <= 2 and res.options["promoted_z"]["liver"] == list(o.promoted_z)
    assert o.processed.all()
    _, side = res.save(tmp_path / "pred.nii.gz")
    assert json.loads(side.read_text())["options"]["refinement"] == "revsam2:top=2"
