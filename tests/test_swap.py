"""Per-slice supports (support selector ``swap:K``; engine ``step_supports``; memory ``with_step_memories``).

* by hand: a step's selection and bank with per-step conditioning memories (the bank itself unchanged);
* through the engine's observer hook: a swapped support is attended at its step and gone at the next;
* through the runner (SSL-ALPNet folder and the bundled npz case): K more conditioning memories per
  step, each candidate encoded once; bad specs fail before any model; ``segment`` refuses it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fsm2kit.engine.memory import MemoryBank, MemorySettings, PointerRef, select_memories, with_step_memories
from fsm2kit.strategies import SUPPORT_SELECTORS

from conftest import EXAMPLE_NPZ
from helpers import S, memory_entry


def test_with_step_memories_by_hand():
    bank = MemoryBank(4)
    bank.add(1, memory_entry(True, 0))
    bank.add(0, memory_entry(False, 0))
    sel = bank.select(2, settings=MemorySettings())
    extra = [memory_entry(True, 7, z=30), memory_entry(True, 8, z=31)]
    sel2, step = with_step_memories(bank, sel, extra, MemorySettings())
    assert step.num_frames == 6 and list(step.cond) == [1, 4, 5] and 0 in step.non_cond
    assert list(bank.cond) == [1] and bank.num_frames == 4  # the run's bank is unchanged
    assert sel2.spatial == (S(1, 0, True), S(4, 0, True), S(5, 0, True), *sel.spatial[1:])
    assert sel2.pointers[:3] == (sel.pointers[0], PointerRef(4, 0, True), PointerRef(5, 0, True))
    assert sel2.pointers[3:] == sel.pointers[1:]
    assert with_step_memories(bank, sel, [], MemorySettings()) == (sel, bank)
    with pytest.raises(ValueError, match="conditioning"):
        with_step_memories(bank, sel, [memory_entry(False, 3)], MemorySettings())
    no_ptrs = MemorySettings(use_obj_ptrs=False)
    sel3 = select_memories(2, cond_frames=[1], non_cond_frames=[0], num_frames=4, settings=no_ptrs)
    assert with_step_memories(bank, sel3, extra, no_ptrs)[0].pointers == ()


class _Watch:
    def __init__(self):
        self.steps = []

    def before_forward(self, requests, layouts):
        for r in requests:
            self.steps.append((r.index, r.bank, r.selection))

    def after_forward(self, requests, outputs):
        pass


def test_swapped_support_attended_at_its_step_and_gone_at_the_next(tiny128, example_episode):
    from fsm2kit.engine.engine import Engine
    from fsm2kit.engine.plans import build_plans
    from fsm2kit.run.sources import subset_episode
    from fsm2kit.strategies.views import support_views

    ep = subset_episode(example_episode, max_slices=4)
    engine = Engine(tiny128, progress=False)
    (plan,) = build_plans("S1SFQ", chunks=[int(c) for c in ep.chunks], support_chunks=[s.chunk for s in ep.supports],
                          npart=ep.npart, order="top")
    first, second = plan.frames[plan.steps[0].frame_idx].index, plan.frames[plan.steps[1].frame_idx].index
    swap = support_views(ep.supports[0], 1)[0]  # an hflipped copy of the support: a distinct memory
    watch = _Watch()
    passes0 = engine.stats.memory_encoder_passes
    with engine.observe(watch):
        job = engine.plan_job(plan, ep.images, ep.supports, z=ep.z, step_supports={first: [swap], second: []})
        ((results, bank),) = engine.drive([job])
    n = plan.num_frames
    (q0, bank0, sel0), (q1, bank1, sel1) = watch.steps[:2]
    assert q0 == first and q1 == second
    import torch

    assert n in bank0.cond and torch.equal(bank0.cond[n].maskmem_features,
                                           engine.support_memory(swap).entry.maskmem_features)
    assert any(r.frame_idx == n and r.is_cond and r.t_pos == 0 for r in sel0.spatial)
    assert any(p.frame_idx == n for p in sel0.pointers)
    assert bank1.num_frames == n and n not in bank1 and all(r.frame_idx < n for r in sel1.spatial)
    assert n not in bank and bank.num_frames == n
    assert results[0].selection == sel0  # the result records what the step attended to
    # the swapped support's memory was encoded once (cached) and reused by support_memory above
    assert engine.stats.memory_encoder_passes - passes0 <= 1 + len(results) + 1


def test_swap_spec():
    sel = SUPPORT_SELECTORS.get("swap")
    assert sel.swap == 3 and sel.name == "swap:3" and "segment" not in sel.serves
    assert SUPPORT_SELECTORS.get("swap:1").swap == 1
    for bad in ("swap:0", "swap:9", "swap:x"):
        with pytest.raises(ValueError):
            SUPPORT_SELECTORS.get(bad)


@pytest.mark.parametrize("spec", ["swap:0", "swap:abc"])
def test_cli_bad_swap_fails_before_any_model(spec, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--support-select", spec, "--checkpoint",
            "random", "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "support selector" in err[0], err


def test_config_refuses_swap_with_refinement():
    from fsm2kit.run.config import ExperimentConfig

    with pytest.raises(ValueError, match="swap:2"):
        ExperimentConfig(support_selector="swap:2", refinement="revsam2:top=1")


def test_runner_swap_on_alp_folder(tiny128, alp_folder):
    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.runner import run_experiments

    base = dict(episodes=str(alp_folder), dataset="CHAOST2", folds=[0], classes=["liver"], settings=["3SFQ"],
                image_size=128, checkpoint="random")
    plain = run_experiments(ExperimentConfig(**base), models={"sam2-tiny": tiny128}, progress=False)
    res = run_experiments(ExperimentConfig(**base, support_selector="swap:1"), models={"sam2-tiny": tiny128},
                          progress=False)
    assert set(res.slices["support_selector"]) == {"swap:1"}
    # every step attends to one more conditioning memory than the plain run's (the organ has 4 slices,
    # 3 are the protocol's supports: one candidate)
    assert (res.slices["n_memories"].values >= plain.slices["n_memories"].values).all()
    assert (res.slices["n_memories"].values - plain.slices["n_memories"].values == 1).any()


@pytest.mark.slow
def test_cli_run_swap_on_the_bundled_case(tmp_path, tiny128, monkeypatch):
    import pandas as pd

    import fsm2kit.model.loading as models
    from fsm2kit.cli import main

    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: tiny128)
    out = tmp_path / "run"
    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--support-select", "swap:2", "--checkpoint",
            "random", "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["support_selector"]) == {"swap:2"}
