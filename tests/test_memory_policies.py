"""Memory policies (fsm2kit.strategies.memory_policies: the contract, the built-ins and their registry).

* by hand, on small banks of fake memories: what each policy selects (spatial memories in key
  order, their temporal slots, the object pointers), forward and in reverse;
* ``sam2`` is :func:`select_memories`; ``stride:R`` is what SAM2's own
  ``_prepare_memory_conditioned_features`` concatenates with ``memory_temporal_stride_for_eval=R``;
* through the engine (random sam2-tiny at 128 px, one step per forward and batched): what the
  memory attention actually received (a hook on ``memory_attention``, steps named by the
  engine's observer hook) is exactly the policy's selection on the bank of that moment;
* the command line: ``fsm2kit run --memory-policy P`` records P; ``fsm2kit strategies`` lists
  every policy; bad names and arguments fail in one line before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import json
import random
import time
import warnings

import numpy as np
import pytest
import torch

from fsm2kit.engine.memory import (
    MemoryBank,
    MemorySettings,
    check_selection,
    sam2_memory_policy,
    select_memories,
)
from fsm2kit.strategies.memory_policies import (
    MAX_QUERY_SLOTS,
    BestPolicy,
    ConfidentPolicy,
    RecentPolicy,
    StridePolicy,
    previous_query_frames,
    support_only_policy,
)
from fsm2kit.strategies import MEMORY_POLICIES

from conftest import EXAMPLE_NPZ
from helpers import P, S, memory_entry

DEFAULT = MemorySettings()
POLICIES = ["sam2", "stride:2", "support-only", "recent:0", "recent:3", "recent:6", "confident:0",
            "confident:iou=0.5", "best:3"]


def _entry(frame, cond, score=0.0, iou=None, reverse=None):
    """A memory of ``frame`` whose tensors hold frame (+1000 if cond)."""
    return memory_entry(cond, frame, score=score, iou=iou, reverse=reverse, size=(2, 2), marked=True)


def _bank(num_frames, cond, scores=None, ious=None, non_cond=None):
    """Cond frames (insertion order) and query memories with given object scores / IoUs."""
    scores = dict(scores or {})
    bank = MemoryBank(num_frames)
    for t in cond:
        bank.add(t, _entry(t, True))
    for t in sorted(set(scores) | set(non_cond or ())):
        bank.add(t, _entry(t, False, scores.get(t, 0.0), (ious or {}).get(t)))
    return bank


def pol(spec):
    return MEMORY_POLICIES.get(spec)


def run(spec, bank, frame, reverse=False, settings=DEFAULT):
    return check_selection(pol(spec)(bank, frame, reverse=reverse, settings=settings), bank, settings)


# forward, frame 10: support at 0, query memories 1..9 with these object scores
SCORES = {1: 2.0, 2: -1.0, 3: 3.0, 4: -2.0, 5: 1.0, 6: -1.0, 7: 0.5, 8: -3.0, 9: 1.5}


# ============================================================================ by hand
def test_entry_stores_what_policies_need():
    e = _entry(3, False, 0.7, iou=0.8, reverse=True)
    assert (e.object_score, e.iou, e.reverse, e.direction) == (0.7, 0.8, True, "backward")
    assert _entry(3, False, reverse=False).direction == "forward"
    s = _entry(0, True)  # supports: no predicted IoU, no direction; old positional constructors still work
    assert s.iou is None and s.reverse is None and s.direction is None
    assert "iou=0.80" in repr(e) and "backward" in repr(e)


def test_previous_query_frames_nearest_first_in_the_direction():
    bank = _bank(12, [5], non_cond=[1, 2, 3, 6, 8, 9])
    assert previous_query_frames(bank, 7, reverse=False) == [6, 3, 2, 1]
    assert previous_query_frames(bank, 4, reverse=True) == [6, 8, 9]  # the cond frame 5 is not a query memory


def test_support_only_and_recent_zero():
    bank = _bank(11, [0], SCORES)
    s = run("support-only", bank, 10)
    assert s.spatial == (S(0, 0, True),) and s.pointers == (P(0, 10, True),)
    assert s.max_obj_ptrs == 11
    assert run("recent:0", bank, 10) == s
    assert support_only_policy(bank, 10, reverse=False, settings=DEFAULT) == s


def test_recent_forward():
    bank = _bank(11, [0], SCORES)
    s = run("recent:3", bank, 10)
    # slot k (t_pos 7 - k) for the k-th nearest; listed as SAM2 lists them (by increasing t_pos)
    assert s.spatial == (S(0, 0, True), S(7, 4), S(8, 5), S(9, 6))
    assert s.pointers == (P(0, 10, True), P(9, 1), P(8, 2), P(7, 3))
    # recent:6 with every previous frame processed fills the slots as SAM2 does; pointers: only its 6
    sam2 = run("sam2", bank, 10)
    six = run("recent:6", bank, 10)
    assert six.spatial == sam2.spatial and six.pointers == sam2.pointers[:7]


def test_recent_skips_unprocessed_frames_and_reslots_by_rank():
    bank = _bank(11, [0], non_cond=[1, 2, 5, 9])
    s = run("recent:3", bank, 10)
    assert s.spatial == (S(0, 0, True), S(2, 4), S(5, 5), S(9, 6))  # SAM2 would put 5 at t_pos 2
    assert s.pointers == (P(0, 10, True), P(9, 1), P(5, 5), P(2, 8))
    assert run("recent:6", bank, 10).frames == (0, 1, 2, 5, 9)  # fewer than 6 exist: fewer slots filled


def test_recent_reverse_middle_order():
    # middle order: support at frame 5, frames 6..10 tracked forward, now frame 4 in reverse;
    # frame 2 (say, from a custom plan) is not "previous" in reverse
    bank = _bank(11, [5], non_cond=[2, 6, 7, 8, 9, 10])
    s = run("recent:2", bank, 4, reverse=True)
    assert s.spatial == (S(5, 0, True), S(7, 5), S(6, 6))  # SAM2 puts 6 at t_pos 5 (t_rel 2)
    assert s.pointers == (P(5, 1, True), P(6, 2), P(7, 3))
    assert s.reverse is True and s.frame_idx == 4


def test_confident_by_object_score():
    bank = _bank(11, [0], SCORES)
    s = run("confident:0", bank, 10)  # > 0: 9, 7, 5, 3, 1 (nearest first)
    assert s.spatial == (S(0, 0, True), S(1, 2), S(3, 3), S(5, 4), S(7, 5), S(9, 6))
    assert s.pointers == (P(0, 10, True), P(9, 1), P(7, 3), P(5, 5), P(3, 7), P(1, 9))
    s = run("confident:1", bank, 10)  # strictly above: 9 (1.5), 3 (3.0), 1 (2.0); 5 (1.0) does not pass
    assert s.spatial == (S(0, 0, True), S(1, 4), S(3, 5), S(9, 6))
    assert s.pointers == (P(0, 10, True), P(9, 1), P(3, 7), P(1, 9))
    assert run("confident:5", bank, 10) == run("support-only", bank, 10)
    assert pol("confident") == ConfidentPolicy(0.0)  # the default threshold: SAM2's "object present"


def test_confident_keeps_at_most_num_maskmem_minus_one():
    bank = _bank(20, [0], {t: 1.0 for t in range(1, 19)})
    s = run("confident:0", bank, 19)
    assert s.frames == (0, 13, 14, 15, 16, 17, 18) and [r.t_pos for r in s.spatial] == [0, 1, 2, 3, 4, 5, 6]
    small = MemorySettings(num_maskmem=3)
    s = run("confident:0", bank, 19, settings=small)
    assert s.spatial == (S(0, 0, True, n=3), S(17, 1, n=3), S(18, 2, n=3))


def test_confident_by_predicted_iou():
    ious = {1: 0.9, 2: 0.2, 3: 0.95, 4: 0.7, 5: 0.4}
    bank = _bank(7, [0], {t: -5.0 for t in ious}, ious)
    s = run("confident:iou=0.6", bank, 6)  # 4 (0.7), 3 (0.95), 1 (0.9)
    assert s.spatial == (S(0, 0, True), S(1, 4), S(3, 5), S(4, 6))
    assert s.pointers == (P(0, 6, True), P(4, 2), P(3, 3), P(1, 5))
    assert run("confident:0", bank, 6).frames == (0,)  # object scores all -5
    bank.add(5, _entry(5, False, 3.0, iou=None))  # no predicted IoU: never passes an IoU threshold
    assert run("confident:iou=0", bank, 6).frames == (0, 1, 2, 3, 4)
    assert pol("confident:iou=0.6").strategy_name == "confident:iou=0.6"


def test_best():
    bank = _bank(11, [0], SCORES)
    s = run("best:2", bank, 10)  # highest: 3 (3.0), 1 (2.0); by distance: 3 in slot 1, 1 in slot 2
    assert s.spatial == (S(0, 0, True), S(1, 5), S(3, 6))
    assert s.pointers == (P(0, 10, True), P(3, 7), P(1, 9))
    s = run("best:3", bank, 10)  # + 9 (1.5): slots 9, 3, 1
    assert s.spatial == (S(0, 0, True), S(1, 4), S(3, 5), S(9, 6))
    assert run("best:0", bank, 10) == run("support-only", bank, 10)


def test_best_ties_go_to_the_nearer_and_reverse():
    bank = _bank(11, [0], {2: 1.0, 5: 0.0, 8: 1.0})
    assert run("best:1", bank, 10).frames == (0, 8)
    bank = _bank(11, [3], {4: 1.0, 6: 2.0, 9: 2.0, 10: 0.5, 1: 9.0})  # reverse from 2: 1 is not previous
    s = run("best:2", bank, 2, reverse=True)
    assert s.spatial == (S(3, 0, True), S(9, 5), S(6, 6))
    assert s.pointers == (P(3, 1, True), P(6, 4), P(9, 7))


def test_supports_as_sam2_chooses_them_several_and_limited():
    bank = _bank(12, [0, 5, 8], {t: 1.0 for t in (1, 2, 3, 4, 6, 7)})
    s = run("recent:2", bank, 9)
    assert s.spatial == (S(0, 0, True), S(5, 0, True), S(8, 0, True), S(6, 5), S(7, 6))
    assert s.pointers == (P(0, 9, True), P(5, 4, True), P(8, 1, True), P(7, 2), P(6, 3))
    # max_cond_frames 2: only the selected supports (8 and 5), and only their pointers
    s = run("support-only", bank, 9, settings=MemorySettings(max_cond_frames=2))
    assert s.spatial == (S(8, 0, True), S(5, 0, True)) and s.pointers == (P(8, 1, True), P(5, 4, True))
    # no object pointers in the model: none from any policy
    assert run("best:2", bank, 9, settings=MemorySettings(use_obj_ptrs=False)).pointers == ()


def test_stride_is_sam2_with_that_setting_and_stride_one_is_sam2():
    bank = _bank(12, [0], non_cond=range(1, 11))
    got = run("stride:2", bank, 11)
    assert got == select_memories(11, cond_frames=[0], non_cond_frames=range(1, 11), num_frames=12,
                                  settings=MemorySettings(stride=2))
    assert got.spatial == (S(0, 0, True), S(2, 2), S(4, 3), S(6, 4), S(8, 5), S(10, 6))
    assert run("stride:1", bank, 11) == run("sam2", bank, 11)


def _random_bank(rng):
    nf = rng.randint(2, 30)
    frame = rng.randrange(nf)
    others = [f for f in range(nf) if f != frame]
    cond = rng.sample(others, rng.randint(1, min(3, len(others))))
    p = rng.random()
    scores = {f: rng.choice([-2.0, -0.5, 0.0, 0.5, 1.0, 3.0]) for f in others if f not in cond and rng.random() < p}
    ious = {f: rng.random() for f in scores}
    return _bank(nf, cond, scores, ious), frame, rng.random() < 0.5


def test_sam2_policy_is_select_memories_and_every_policy_respects_the_contract():
    rng = random.Random(12)
    for case in range(200):
        bank, frame, reverse = _random_bank(rng)
        exp = select_memories(frame, cond_frames=list(bank.cond), non_cond_frames=bank.non_cond.keys(),
                              num_frames=bank.num_frames, reverse=reverse, settings=DEFAULT)
        assert pol("sam2") is sam2_memory_policy
        assert sam2_memory_policy(bank, frame, reverse=reverse, settings=DEFAULT) == exp
        cond_part = tuple(r for r in exp.spatial if r.t_pos == 0)
        prev = previous_query_frames(bank, frame, reverse=reverse)
        for spec in POLICIES[2:]:
            s = run(spec, bank, frame, reverse)  # check_selection: in the bank, distinct, slots 1..6
            assert s.spatial[:len(cond_part)] == cond_part, (case, spec)
            query = s.spatial[len(cond_part):]
            assert all(not r.is_cond and r.frame_idx in prev for r in query), (case, spec)
            # slots 1..n by rank: the nearest kept in slot 1
            kept = sorted(query, key=lambda r: abs(r.frame_idx - frame))
            assert [7 - r.t_pos for r in kept] == list(range(1, len(kept) + 1)), (case, spec)
            assert [p for p in s.pointers if not p.is_cond] == [P(r.frame_idx, abs(frame - r.frame_idx))
                                                                for r in kept], (case, spec)
            assert s.max_obj_ptrs == exp.max_obj_ptrs


# ============================================================================ against SAM2's own code
@pytest.fixture(scope="module")
def recording_module(load_random):
    from test_memory import _RecordingAttention

    m = load_random("sam2-tiny", 256).module  # its own copy: the memory attention is swapped
    m.memory_attention = _RecordingAttention()
    m.add_tpos_enc_to_obj_ptrs = True  # pointer positions reveal the t_diff SAM2 used
    return m


def test_stride_policy_matches_sam2_prepare_memory_conditioned_features(recording_module, monkeypatch):
    from test_memory import _code, _expected_ptr_pos, _random_layout, _run_sam2

    m = recording_module
    rng = random.Random(31)
    base = MemorySettings.from_module(m)
    assert base.stride == 1
    n_strided = 0
    for case in range(40):
        stride = rng.choice([1, 2, 3, 4])
        monkeypatch.setattr(m, "memory_temporal_stride_for_eval", stride)
        nf, frame, cond, non_cond, reverse = _random_layout(rng)
        spatial, pointers, ptr_pos = _run_sam2(m, frame, cond, non_cond, nf, reverse)
        bank = _bank(nf, cond, non_cond=non_cond)
        s = run(f"stride:{stride}", bank, frame, reverse, settings=base)
        ctx = (case, stride, nf, frame, cond, sorted(non_cond), reverse)
        assert spatial == [(_code(r.frame_idx, r.is_cond), r.tpos_index) for r in s.spatial], ctx
        assert pointers == [_code(p.frame_idx, p.is_cond) for p in s.pointers], ctx
        if s.pointers:
            torch.testing.assert_close(ptr_pos, _expected_ptr_pos(s), rtol=0, atol=0)
        n_strided += stride > 1 and len(non_cond) > 3
    assert n_strided >= 10


# ============================================================================ registry and errors
def test_registry_lists_parses_and_names_every_policy():
    usages = MEMORY_POLICIES.usages()
    for u in ("sam2", "stride:R", "support-only", "recent:K", "confident[:T]", "best:K"):
        assert u in usages
    for spec in POLICIES:
        assert pol(spec).strategy_name == spec
    assert pol("recent:3") == RecentPolicy(3) and pol("best:3") == BestPolicy(3) and pol("stride:2") == StridePolicy(2)
    assert pol("confident:0.50").strategy_name == "confident:0.5"
    assert pol("confident:iou=0.8") == ConfidentPolicy(0.8, "iou")


def test_one_module_one_slot_count():
    """The contract's built-ins and their registry are one module with one slot constant (SAM2's num_maskmem - 1)."""
    import fsm2kit.strategies.memory_policies as mp

    assert MAX_QUERY_SLOTS == DEFAULT.num_maskmem - 1 == mp.MAX_QUERY_SLOTS
    assert not hasattr(mp, "MAX_SLOTS")
    assert f"0 <= K <= {MAX_QUERY_SLOTS}" in MEMORY_POLICIES.entry("recent").summary
    assert RecentPolicy(MAX_QUERY_SLOTS) == pol(f"recent:{MAX_QUERY_SLOTS}")
    with pytest.raises(ModuleNotFoundError):
        __import__("fsm2kit.strategies.policies")


@pytest.mark.parametrize("spec, words", [
    ("recent:9", "0..6"), ("recent", "needs an argument"), ("recent:x", "0..6"), ("confident:abc", "iou=T"),
    ("confident:iou=2", "[0, 1]"), ("confident:snr=1", "iou=T"), ("stride:0", ">= 1"), ("best:7", "0..6"),
    ("support-only:2", "takes no argument"), ("samurai", "registered: sam2, stride:R, support-only"),
])
def test_bad_specs_fail_in_one_line_saying_what_is_valid(spec, words):
    with pytest.raises(ValueError) as e:
        MEMORY_POLICIES.get(spec)
    msg = str(e.value)
    assert "\n" not in msg and words in msg and "memory policy" in msg


def test_direct_construction_is_validated_too():
    for bad in (lambda: RecentPolicy(7), lambda: BestPolicy(-1), lambda: StridePolicy(0),
                lambda: ConfidentPolicy(float("nan")), lambda: ConfidentPolicy(0.5, "dice")):
        with pytest.raises(ValueError):
            bad()
    bank = _bank(11, [0], SCORES)
    with pytest.raises(ValueError, match="2 non-conditioning temporal slots"):
        RecentPolicy(3)(bank, 10, reverse=False, settings=MemorySettings(num_maskmem=3))


# ============================================================================ through the engine
class _Watch:
    """Engine observer + memory-attention hook: what each step's attention actually received."""

    def __init__(self, engine, policy):
        self.engine, self.policy, self.steps, self.batched = engine, policy, 0, 0
        self._pending = None
        self._received = []

    def hook(self, module, args, kwargs, output):
        self._received.append((kwargs["memory"], kwargs["memory_pos"], kwargs["num_obj_ptr_tokens"]))

    def before_forward(self, requests, layouts):
        # the policy's choice on the bank as it is now (the step's own memory comes after)
        self._pending = [self.policy(r.bank, r.selection.frame_idx, reverse=r.selection.reverse,
                                     settings=self.engine.settings) for r in requests]
        self._received.clear()

    def after_forward(self, requests, outputs):
        (memory, memory_pos, n_ptr_tokens), = self._received
        m = self.engine.module
        tpos = m.maskmem_tpos_enc[:, 0, 0, :].float()  # (num_maskmem, 64)
        for i, (r, expected) in enumerate(zip(requests, self._pending)):
            assert r.selection == expected
            mem, mpos = memory[:, i].float(), memory_pos[:, i].float()
            at = 0
            for ref in expected.spatial:
                e = r.bank[ref.frame_idx]
                feats = e.maskmem_features.float().flatten(2)[0].T
                block = slice(at, at + feats.shape[0])
                assert torch.equal(mem[block], feats), (ref, "spatial memory")
                enc = mpos[block] - e.maskmem_pos_enc.float().flatten(2)[0].T
                err = (enc[:, None, :] - tpos[None]).abs().amax(dim=(0, 2))
                assert int(err.argmin()) == ref.tpos_index and float(err.min()) < 1e-5, (ref, err)
                at += feats.shape[0]
            assert n_ptr_tokens == 4 * len(expected.pointers) and mem.shape[0] == at + n_ptr_tokens
            for p in expected.pointers:
                assert torch.equal(mem[at:at + 4].reshape(-1), r.bank[p.frame_idx].obj_ptr.float().reshape(-1)), p
                at += 4
        self.steps += len(requests)
        self.batched += len(requests) > 1


@pytest.fixture(scope="module")
def small_episodes(example_episode):
    """Two 6-slice episodes cut from the bundled case (two slices per chunk)."""
    ep = example_episode

    def cut(lo):
        sl = slice(lo, lo + 6)
        return dataclasses.replace(ep, z=ep.z[sl], images=ep.images[sl], labels=ep.labels[sl],
                                   chunks=np.repeat([0, 1, 2], 2))
    return cut(6), cut(12)


@pytest.fixture(scope="module")
def engine128(tiny128, small_episodes):
    """One engine for all policies (slices encoded once); up to 4 steps per forward."""
    from fsm2kit.engine import Engine

    return Engine(tiny128, progress=False, object_batch_size=4)


def _watched(engine, policy):
    watch = _Watch(engine, policy)
    handle = engine.module.memory_attention.register_forward_hook(watch.hook, with_kwargs=True)
    return watch, handle


@pytest.mark.parametrize("spec", ["stride:2", "support-only", "recent:3", "confident:0", "confident:iou=0.5",
                                  "best:3", "confident:median", "confident:iou=median"])
def test_the_model_attends_to_what_the_policy_selected(spec, engine128, small_episodes):
    ep_a, ep_b = small_episodes
    median = spec.endswith("median")
    if median:  # a threshold that splits this run's memories (random weights)
        ref = engine128.segment(ep_a, "S1SFQ", order="middle")
        key = "iou" if "iou" in spec else "object_score"
        spec = spec.replace("median", f"{np.median([getattr(s, key) for s in ref.slices]):.6f}")
    policy = pol(spec)
    watch, handle = _watched(engine128, policy)
    try:
        with engine128.observe(watch):
            # one episode, one plan: one step per forward (segment, then run_plan)
            res = engine128.segment(ep_a, "S1SFQ", order="middle", memory_policy=policy, keep_banks=True)
            (plan,) = res.plans
            engine128.run_plan(plan, ep_a.images, ep_a.supports, memory_policy=policy)
            assert watch.steps == 12 and watch.batched == 0
            # two episodes side by side: their steps share forwards
            both = engine128.segment_many([ep_a, ep_b], "S1SFQ", order="top", memory_policy=policy)
        assert watch.steps == 24 and watch.batched > 0
    finally:
        handle.remove()
    assert res.memory_policy == policy.strategy_name and {r.memory_policy for r in both} == {policy.strategy_name}
    n_query = [sum(not r.is_cond for r in s.selection.spatial) for s in res.slices]
    n_ptr = [sum(not p.is_cond for p in s.selection.pointers) for s in res.slices]
    if spec == "support-only":
        assert max(n_query) == 0 and max(n_ptr) == 0
    elif spec.startswith(("recent", "best")):
        assert max(n_query) == 3 and n_query == n_ptr
    elif spec.startswith("confident"):
        assert n_query == n_ptr
        if median:
            assert 0 < max(n_query) and min(n_query) < 5
    # the memories were stored with what policies read
    bank = res.banks[0]
    assert all(e.iou is not None and e.reverse is not None for e in bank.non_cond.values())
    assert {e.direction for e in bank.non_cond.values()} == {"forward", "backward"}


def test_sam2_through_the_engine_unchanged_by_the_policy_argument(engine128, small_episodes):
    ep, _ = small_episodes
    a = engine128.segment(ep, "S1SFQ")
    b = engine128.segment(ep, "S1SFQ", memory_policy=pol("sam2"))
    c = engine128.segment(ep, "S1SFQ", memory_policy=pol("stride:1"))
    for x, y, z in zip(a.slices, b.slices, c.slices):
        np.testing.assert_array_equal(x.logits, y.logits)
        np.testing.assert_array_equal(x.logits, z.logits)  # same memories, same order: bit-identical


# ============================================================================ command line
def _run_argv(out, policy, size="128"):
    return ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--memory-policy", policy,
            "--checkpoint", "random", "--image-size", size, "--device", "cpu", "--no-progress", "--out", str(out)]


@pytest.mark.parametrize("spec", ["recent:9", "confident:abc", "stride:0", "best:x", "lru"])
def test_cli_bad_policies_fail_before_any_model(spec, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    t0 = time.perf_counter()
    assert main(_run_argv(tmp_path / "o", spec)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory policy" in err[0], err
    assert ("registered: sam2, stride:R, support-only, recent:K, confident[:T], best:K" in err[0]
            if spec == "lru" else "usage:" in err[0])
    assert not (tmp_path / "o").exists() and time.perf_counter() - t0 < 60


def test_cli_strategies_lists_every_policy(capsys):
    from fsm2kit.cli import main

    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for usage in ("sam2", "stride:R", "support-only", "recent:K", "confident[:T]", "best:K"):
        assert f"  {usage} " in out


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["support-only", "stride:2", "recent:1", "confident:iou=0.5", "best:3"])
def test_cli_run_records_the_policy(spec, tmp_path, tiny128, monkeypatch):
    import pandas as pd

    import fsm2kit.model.loading as models
    from fsm2kit.cli import main

    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: tiny128)  # the shared 128 px random model
    out = tmp_path / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(_run_argv(out, spec)) == 0
    rec = json.loads((out / "provenance.json").read_text())
    assert rec["memory_policy"] == [spec] and f"--memory-policy {spec}" in rec["command"]
    slices = pd.read_csv(out / "slices.csv")
    assert len(slices) == 24 and set(slices["memory_policy"]) == {spec}
    if spec == "support-only":
        assert (slices["n_memories"] == 1).all()
