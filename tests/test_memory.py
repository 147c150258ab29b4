"""Tests of fsm2kit.engine.memory: SAM2's memory-selection rule, by hand and against SAM2 itself.

The hand cases follow ``SAM2Base._prepare_memory_conditioned_features`` (sam2 1.1.0,
``sam2/modeling/sam2_base.py``): conditioning memories at t_pos 0 (``maskmem_tpos_enc`` index
``num_maskmem - 1``), non-conditioning memory ``t_rel`` frames away at ``t_pos = num_maskmem -
t_rel`` (index ``num_maskmem - t_pos - 1``), missing frames skipped, then object pointers.
"""

from __future__ import annotations

import random
import warnings

import pytest
import torch

from fsm2kit.engine.memory import (
    MemoryBank,
    MemorySettings,
    select_closest_cond_frames,
    select_memories,
)

from helpers import P, S, memory_entry

torch.set_num_threads(2)

DEFAULT = MemorySettings()  # num_maskmem 7, all cond frames, stride 1, 16 pointers, only past


def sel(frame_idx, cond, non_cond, num_frames, reverse=False, settings=DEFAULT):
    return select_memories(
        frame_idx, cond_frames=cond, non_cond_frames=non_cond, num_frames=num_frames,
        reverse=reverse, settings=settings,
    )


# --------------------------------------------------------------------------- default policy


def test_policy_defaults_are_sam2_eval_settings():
    assert DEFAULT == MemorySettings(7, -1, 1, True, 16, True, False)


def test_forward_full_history_takes_six_recent_frames_and_all_past_pointers():
    s = sel(10, [0], range(1, 10), num_frames=11)
    assert s.spatial == (
        S(0, 0, cond=True),
        S(4, 1), S(5, 2), S(6, 3), S(7, 4), S(8, 5), S(9, 6),
    )
    # the latest memory (frame 9, t_rel 1) gets t_pos 6, i.e. maskmem_tpos_enc[0]
    assert s.spatial[-1].tpos_index == 0 and s.spatial[0].tpos_index == 6
    assert [r.tpos_index for r in s.spatial] == [6, 5, 4, 3, 2, 1, 0]
    assert s.pointers == (P(0, 10, cond=True),) + tuple(P(9 - k, 1 + k) for k in range(9))
    assert s.max_obj_ptrs == 11  # min(num_frames, 16)
    assert s.frames == (0, 4, 5, 6, 7, 8, 9)
    assert s.frame_idx == 10 and s.reverse is False


def test_forward_pointer_lookback_is_bounded_by_max_obj_ptrs_minus_one():
    s = sel(25, [0], range(1, 25), num_frames=40)
    assert s.frames == (0, 19, 20, 21, 22, 23, 24)
    # t_diff 1..15 only: frames 24..10; frame 9 (t_diff 16) is out of reach
    assert s.pointers == (P(0, 25, cond=True),) + tuple(P(25 - d, d) for d in range(1, 16))
    assert s.max_obj_ptrs == 16


def test_pointer_lookback_is_bounded_by_num_frames():
    # reverse tracking from frame 1 of 6: t = 2..5 exist, t = 6 would be outside the layout
    s = sel(1, [0], {2, 3, 4, 5}, num_frames=6, reverse=True)
    assert s.max_obj_ptrs == 6
    # cond frame 0 is in the "future" when tracking in reverse: no pointer from it
    assert s.pointers == (P(2, 1), P(3, 2), P(4, 3), P(5, 4))
    # spatial: t_rel 1 -> frame 2, t_rel 2..5 -> frames 3..6 (6 missing)
    assert s.spatial == (S(0, 0, True), S(5, 3), S(4, 4), S(3, 5), S(2, 6))


def test_missing_frames_are_skipped_not_padded():
    s = sel(10, [0], {1, 2, 3, 5, 7, 9}, num_frames=11)
    # t_pos 1 -> frame 4 (missing), 2 -> 5, 3 -> 6 (missing), 4 -> 7, 5 -> 8 (missing), 6 -> 9
    assert s.spatial == (S(0, 0, True), S(5, 2), S(7, 4), S(9, 6))
    assert [r.tpos_index for r in s.spatial] == [6, 4, 2, 0]
    assert s.pointers == (P(0, 10, True), P(9, 1), P(7, 3), P(5, 5), P(3, 7), P(2, 8), P(1, 9))


def test_first_query_after_support_sees_only_the_support():
    s = sel(1, [0], set(), num_frames=2)
    assert s.spatial == (S(0, 0, True),)
    assert s.pointers == (P(0, 1, True),)
    assert s.max_obj_ptrs == 2


def test_three_supports_keep_insertion_order_at_t_pos_zero():
    s = sel(3, [2, 0, 1], set(), num_frames=10)
    assert s.spatial == (S(2, 0, True), S(0, 0, True), S(1, 0, True))
    assert s.pointers == (P(2, 1, True), P(0, 3, True), P(1, 2, True))


def test_middle_order_first_reverse_step_sees_forward_predictions():
    # middle order, M = 10 queries, one support: frames q0..q4, S (frame 5), q5..q9 (frames 6..10).
    # The forward pass has processed frames 6..10; now frame 4 is tracked in reverse.
    s = sel(4, [5], {6, 7, 8, 9, 10}, num_frames=11, reverse=True)
    # t_pos 1 (t_rel 6) -> frame 4+2+4 = 10, ..., t_pos 5 (t_rel 2) -> frame 6,
    # t_pos 6 (t_rel 1) -> frame 5, the (selected) conditioning frame: skipped.
    assert s.spatial == (S(5, 0, True), S(10, 1), S(9, 2), S(8, 3), S(7, 4), S(6, 5))
    # the support (frame 5 >= 4) is "past" in reverse: |4 - 5| = 1; then t = 5 (cond, skipped),
    # 6..10 at t_diff 2..6, t = 11 is outside the layout
    assert s.pointers == (P(5, 1, True), P(6, 2), P(7, 3), P(8, 4), P(9, 5), P(10, 6))


def test_middle_order_second_reverse_step():
    s = sel(3, [5], {4, 6, 7, 8, 9, 10}, num_frames=11, reverse=True)
    # t_pos 1..4 -> frames 9, 8, 7, 6; t_pos 5 -> frame 5 (cond, skipped); t_pos 6 -> frame 4
    assert s.spatial == (S(5, 0, True), S(9, 1), S(8, 2), S(7, 3), S(6, 4), S(4, 6))
    assert s.pointers == (P(5, 2, True), P(4, 1), P(6, 3), P(7, 4), P(8, 5), P(9, 6), P(10, 7))


def test_only_past_pointers_forward_excludes_later_cond_frames():
    s = sel(2, [0, 5], {1}, num_frames=8)
    assert s.spatial == (S(0, 0, True), S(5, 0, True), S(1, 6))
    assert s.pointers == (P(0, 2, True), P(1, 1))


def test_only_past_pointers_reverse_excludes_earlier_cond_frames():
    s = sel(3, [0, 5], {4}, num_frames=8, reverse=True)
    assert s.spatial == (S(0, 0, True), S(5, 0, True), S(4, 6))
    # t = 4 (t_diff 1), t = 5 is a selected cond frame (already listed), t = 6, 7 missing
    assert s.pointers == (P(5, 2, True), P(4, 1))


def test_all_cond_pointers_when_not_only_past():
    pol = MemorySettings(only_past_ptrs=False)
    s = sel(2, [0, 5], {1}, num_frames=8, settings=pol)
    assert s.pointers == (P(0, 2, True), P(5, 3, True), P(1, 1))


def test_signed_tpos_forward_and_reverse():
    signed = MemorySettings(signed_tpos=True)
    # forward: (frame - t) * +1
    s = sel(10, [0], range(1, 10), num_frames=11, settings=signed)
    assert s.pointers[0] == P(0, 10, True)
    # reverse: (frame - t) * -1, positive for a cond frame after the current one
    s = sel(4, [5], {6, 7}, num_frames=8, reverse=True, settings=signed)
    assert s.pointers == (P(5, 1, True), P(6, 2), P(7, 3))
    # non-cond pointers always carry the positive look-back distance
    assert all(p.t_diff > 0 for p in s.pointers)


def test_signed_tpos_negative_offsets_for_future_cond_frames():
    signed_all = MemorySettings(signed_tpos=True, only_past_ptrs=False)
    s = sel(2, [0, 5], {1}, num_frames=8, settings=signed_all)
    assert s.pointers == (P(0, 2, True), P(5, -3, True), P(1, 1))
    s = sel(8, [5, 10], {9}, num_frames=11, reverse=True, settings=signed_all)
    # (8 - 5) * -1 = -3 for the cond frame behind, (8 - 10) * -1 = +2 for the one ahead
    assert s.pointers == (P(5, -3, True), P(10, 2, True), P(9, 1))
    unsigned_all = MemorySettings(signed_tpos=False, only_past_ptrs=False)
    s = sel(8, [5, 10], {9}, num_frames=11, reverse=True, settings=unsigned_all)
    assert s.pointers == (P(5, 3, True), P(10, 2, True), P(9, 1))


def test_no_pointers_when_obj_ptrs_disabled():
    s = sel(10, [0], range(1, 10), num_frames=11, settings=MemorySettings(use_obj_ptrs=False))
    assert s.pointers == ()
    assert len(s.spatial) == 7


def test_temporal_stride_forward_and_reverse():
    pol = MemorySettings(stride=2)
    # forward frame 10: t_rel 1 -> 9; t_rel >= 2 -> 8, 6, 4, 2, 0 (every 2nd frame)
    s = sel(10, [0], range(1, 10), num_frames=11, settings=pol)
    assert s.spatial == (S(0, 0, True), S(2, 2), S(4, 3), S(6, 4), S(8, 5), S(9, 6))
    # forward frame 11: base ((11 - 2) // 2) * 2 = 8
    s = sel(11, [0], range(1, 11), num_frames=12, settings=pol)
    assert s.spatial == (S(0, 0, True), S(2, 2), S(4, 3), S(6, 4), S(8, 5), S(10, 6))
    # reverse frame 3: t_rel 1 -> 4; base ceil(5 / 2) * 2 = 6 -> 6, 8, 10, 12, 14
    s = sel(3, [20], set(range(4, 20)), num_frames=21, reverse=True, settings=pol)
    assert s.spatial == (S(20, 0, True), S(14, 1), S(12, 2), S(10, 3), S(8, 4), S(6, 5), S(4, 6))
    # the stride does not affect pointers
    assert [p.frame_idx for p in s.pointers] == [20] + list(range(4, 19))


def test_smaller_num_maskmem():
    pol = MemorySettings(num_maskmem=3)
    s = sel(10, [0], range(1, 10), num_frames=11, settings=pol)
    assert s.spatial == (S(0, 0, True, n=3), S(8, 1, n=3), S(9, 2, n=3))
    assert [r.tpos_index for r in s.spatial] == [2, 1, 0]


def test_unselected_cond_frames_act_as_non_cond_memories():
    pol = MemorySettings(max_cond_frames=2)
    # cond 0, 5, 8; frame 6: closest before = 5, closest after = 8; 0 is unselected
    s = sel(6, [0, 5, 8], {1, 2, 3, 4}, num_frames=10, settings=pol)
    # t_pos 1 -> frame 0 (unselected cond, used as a recent memory), 2..5 -> 1..4, 6 -> 5 (selected)
    assert s.spatial == (
        S(5, 0, True), S(8, 0, True), S(0, 1, True), S(1, 2), S(2, 3), S(3, 4), S(4, 5),
    )
    # past selected cond: 5 only; then t = 5 (selected, skipped), 4..1, 0 (unselected cond)
    assert s.pointers == (P(5, 1, True), P(4, 2), P(3, 3), P(2, 4), P(1, 5), P(0, 6, True))


def test_select_memories_needs_a_cond_frame():
    with pytest.raises(ValueError, match="conditioning"):
        sel(3, [], {1, 2}, num_frames=5)


# --------------------------------------------------------------------------- closest cond frames


def test_select_closest_cond_frames_hand_cases():
    assert select_closest_cond_frames(5, [3, 1, 8], -1) == ([3, 1, 8], [])
    assert select_closest_cond_frames(5, [3, 8], 2) == ([3, 8], [])  # not more than the limit
    # frame before all cond frames: no "before"; after = 4, then closest: 6
    assert select_closest_cond_frames(2, [4, 6, 9], 2) == ([4, 6], [9])
    # frame after all: before = 9, then closest 6
    assert select_closest_cond_frames(12, [4, 6, 9], 2) == ([9, 6], [4])  # sam2's order
    # "after" includes the frame itself (t >= frame_idx)
    assert select_closest_cond_frames(6, [0, 5, 6, 20], 3) == ([5, 6, 0], [20])  # sam2 order
    with pytest.raises(ValueError):
        select_closest_cond_frames(3, [0, 5, 9], 1)


def _sam2_select(frame_idx, cond, max_cond):
    from sam2.modeling.sam2_utils import select_closest_cond_frames as sam2_select

    selected, unselected = sam2_select(frame_idx, {t: t for t in cond}, max_cond)
    return list(selected), list(unselected)


def test_select_closest_cond_frames_matches_sam2_as_sets_on_random_cases():
    rng = random.Random(1234)
    for _ in range(500):
        nf = rng.randint(2, 40)
        cond = rng.sample(range(nf), rng.randint(1, min(8, nf)))
        frame = rng.randrange(nf)
        max_cond = rng.choice([-1, 2, 3, 4, 5])
        got_sel, got_unsel = select_closest_cond_frames(frame, cond, max_cond)
        exp_sel, exp_unsel = _sam2_select(frame, cond, max_cond)
        assert set(got_sel) == set(exp_sel), (frame, cond, max_cond)
        assert got_unsel == exp_unsel, (frame, cond, max_cond)  # both in cond_frames order
        assert len(got_sel) == (len(cond) if max_cond == -1 else min(len(cond), max_cond))


def test_select_closest_cond_frames_matches_sam2_with_all_frames():
    rng = random.Random(7)
    for _ in range(100):
        cond = rng.sample(range(30), rng.randint(1, 6))
        frame = rng.randrange(30)
        assert select_closest_cond_frames(frame, cond, -1) == _sam2_select(frame, cond, -1)


def test_select_closest_cond_frames_order_matches_sam2_when_limited():
    # cond inserted as 0, 3, 8; frame 9; limit 2 -> sam2 picks 8 (before) then 3 (closest rest)
    assert _sam2_select(9, [0, 3, 8], 2) == ([8, 3], [0])
    assert select_closest_cond_frames(9, [0, 3, 8], 2) == ([8, 3], [0])


# --------------------------------------------------------------------------- against SAM2 itself


@pytest.fixture(scope="module")
def sam2_module():
    from fsm2kit.model import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights
        model = load_sam2("sam2-tiny", "random", image_size=256, device="cpu")
    return model.module


class _RecordingAttention(torch.nn.Module):
    """Stands in for ``memory_attention``: records the memory SAM2 concatenated."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens):
        self.calls.append((memory, memory_pos, num_obj_ptr_tokens))
        return curr[0]


FEAT = 16  # 256 / 16
COND_OFFSET = 1000  # cond entries carry frame + 1000, non-cond entries carry frame


def _fake_output(frame, cond):
    v = float(frame + (COND_OFFSET if cond else 0))
    return {
        "maskmem_features": torch.full((1, 64, FEAT, FEAT), v),
        "maskmem_pos_enc": [torch.zeros(1, 64, FEAT, FEAT)],
        "obj_ptr": torch.full((1, 256), v),
    }


def _code(frame, is_cond):
    return frame + (COND_OFFSET if is_cond else 0)


def _run_sam2(module, frame_idx, cond, non_cond, num_frames, reverse):
    rec = module.memory_attention
    output_dict = {
        "cond_frame_outputs": {t: _fake_output(t, True) for t in cond},
        "non_cond_frame_outputs": {t: _fake_output(t, False) for t in sorted(non_cond)},
    }
    z = torch.zeros(FEAT * FEAT, 1, 256)
    module._prepare_memory_conditioned_features(
        frame_idx, False, [z], [z], [(FEAT, FEAT)], output_dict, num_frames, reverse
    )
    memory, memory_pos, n_ptr = rec.calls.pop()
    n_tok = FEAT * FEAT
    n_sp = memory.shape[0] - n_ptr
    assert n_sp % n_tok == 0 and n_ptr % 4 == 0
    tpos = module.maskmem_tpos_enc[:, 0, 0, :]  # (num_maskmem, 64)
    spatial = []
    for i in range(n_sp // n_tok):
        block = memory[i * n_tok : (i + 1) * n_tok]
        assert torch.all(block == block[0, 0, 0])
        pos = memory_pos[i * n_tok : (i + 1) * n_tok]
        hits = [k for k in range(tpos.shape[0]) if torch.equal(pos[0, 0], tpos[k])]
        assert len(hits) == 1 and torch.all(pos == pos[0:1])
        spatial.append((int(block[0, 0, 0]), hits[0]))
    # each 256-dim pointer is split into 4 tokens of 64 dims (mem_dim < hidden_dim)
    ptr_tokens = memory[n_sp:]
    pointers = []
    for i in range(n_ptr // 4):
        toks = ptr_tokens[4 * i : 4 * i + 4]
        assert torch.all(toks == toks[0, 0, 0])
        pointers.append(int(toks[0, 0, 0]))
    return spatial, pointers, memory_pos[n_sp:]


def _expected_ptr_pos(selection):
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    t = torch.tensor([p.t_diff for p in selection.pointers])
    pe = get_1d_sine_pe(t / (selection.max_obj_ptrs - 1), dim=64)  # proj off in sam2-tiny 2.0
    return pe.unsqueeze(1).repeat_interleave(4, dim=0)


def _random_layout(rng):
    nf = rng.randint(2, 30)
    frame = rng.randrange(nf)
    others = [f for f in range(nf) if f != frame]
    cond = rng.sample(others, rng.randint(1, min(4, len(others))))
    p = rng.random()
    non_cond = {f for f in others if f not in cond and rng.random() < p}
    return nf, frame, cond, non_cond, rng.random() < 0.5


@pytest.fixture
def recording_module(sam2_module, monkeypatch):
    # monkeypatch cannot restore a submodule (it lives in _modules, not __dict__): swap by hand
    original = sam2_module.memory_attention
    sam2_module.memory_attention = _RecordingAttention()
    # obj_ptr temporal encodings on (identity projection in the 2.0 tiny model), so that the
    # recorded pointer positions reveal the t_diff SAM2 used
    monkeypatch.setattr(sam2_module, "add_tpos_enc_to_obj_ptrs", True)
    try:
        yield sam2_module
    finally:
        sam2_module.memory_attention = original


def test_policy_from_module_reads_sam2_settings(sam2_module):
    assert MemorySettings.from_module(sam2_module) == MemorySettings()


def test_select_memories_matches_sam2_prepare_memory_conditioned_features(recording_module, monkeypatch):
    m = recording_module
    rng = random.Random(20240917)
    n_reverse = n_ptr_cases = 0
    for case in range(48):
        monkeypatch.setattr(m, "memory_temporal_stride_for_eval", rng.choice([1, 1, 2, 3]))
        monkeypatch.setattr(m, "use_signed_tpos_enc_to_obj_ptrs", rng.random() < 0.5)
        monkeypatch.setattr(m, "only_obj_ptrs_in_the_past_for_eval", rng.random() < 0.7)
        monkeypatch.setattr(m, "max_obj_ptrs_in_encoder", rng.choice([16, 16, 4, 2]))
        nf, frame, cond, non_cond, reverse = _random_layout(rng)
        spatial, pointers, ptr_pos = _run_sam2(m, frame, cond, non_cond, nf, reverse)
        s = select_memories(
            frame, cond_frames=cond, non_cond_frames=non_cond, num_frames=nf, reverse=reverse,
            settings=MemorySettings.from_module(m),
        )
        ctx = (case, nf, frame, cond, sorted(non_cond), reverse, MemorySettings.from_module(m))
        assert spatial == [(_code(r.frame_idx, r.is_cond), r.tpos_index) for r in s.spatial], ctx
        assert pointers == [_code(p.frame_idx, p.is_cond) for p in s.pointers], ctx
        if s.pointers:
            torch.testing.assert_close(ptr_pos, _expected_ptr_pos(s), rtol=0, atol=0)
            n_ptr_cases += 1
        n_reverse += reverse
    assert n_reverse >= 10 and n_ptr_cases >= 30  # the random cases cover both directions


def test_select_memories_matches_sam2_with_max_cond_frames_up_to_cond_order(recording_module, monkeypatch):
    """With ``max_cond_frames_in_attn`` set, the same memories (the cond block compared as a set)."""
    m = recording_module
    rng = random.Random(99)
    n_limited = 0
    for case in range(32):
        max_cond = rng.choice([2, 3])
        monkeypatch.setattr(m, "max_cond_frames_in_attn", max_cond)
        nf, frame, cond, non_cond, reverse = _random_layout(rng)
        spatial, pointers, _ = _run_sam2(m, frame, cond, non_cond, nf, reverse)
        s = select_memories(
            frame, cond_frames=cond, non_cond_frames=non_cond, num_frames=nf, reverse=reverse,
            settings=MemorySettings.from_module(m),
        )
        assert s.spatial[0].is_cond
        n_sel = sum(1 for r in s.spatial if r.t_pos == 0)
        exp_sp = [(_code(r.frame_idx, r.is_cond), r.tpos_index) for r in s.spatial]
        ctx = (case, nf, frame, cond, sorted(non_cond), reverse, max_cond)
        assert sorted(spatial[:n_sel]) == sorted(exp_sp[:n_sel]), ctx
        assert spatial[n_sel:] == exp_sp[n_sel:], ctx
        selected = {r.frame_idx for r in s.spatial[:n_sel]}
        n_cond_ptr = sum(1 for p in s.pointers if p.is_cond and p.frame_idx in selected)
        exp_pt = [_code(p.frame_idx, p.is_cond) for p in s.pointers]
        assert sorted(pointers[:n_cond_ptr]) == sorted(exp_pt[:n_cond_ptr]), ctx
        assert pointers[n_cond_ptr:] == exp_pt[n_cond_ptr:], ctx
        n_limited += len(cond) > max_cond
    assert n_limited >= 5


def test_sam2_concatenates_limited_cond_frames_in_selection_order(recording_module, monkeypatch):
    # cond inserted as 0, 3, 8; frame 9; limit 2 -> selected 8 (closest before), then 3
    m = recording_module
    monkeypatch.setattr(m, "max_cond_frames_in_attn", 2)
    spatial, pointers, _ = _run_sam2(m, 9, [0, 3, 8], set(), 12, False)
    # recent-frame slots 3..8 hold only selected cond frames (skipped): no other spatial memory
    assert spatial == [(1008, 6), (1003, 6)]
    # pointers: past selected cond 8, 3; then t = 8..1 nothing, t = 0 the unselected cond frame
    assert pointers == [1008, 1003, 1000]
    s = sel(9, [0, 3, 8], set(), num_frames=12, settings=MemorySettings.from_module(m))
    assert sorted(s.frames) == [3, 8]
    assert s.pointers[-1] == P(0, 9, True)


def test_select_memories_cond_order_matches_sam2_when_max_cond_frames_limited():
    s = sel(9, [0, 3, 8], set(), num_frames=12, settings=MemorySettings(max_cond_frames=2))
    assert s.spatial == (S(8, 0, True), S(3, 0, True))
    assert s.pointers == (P(8, 1, True), P(3, 6, True), P(0, 9, True))


# --------------------------------------------------------------------------- MemoryBank


def test_memory_bank_add_and_lookup():
    bank = MemoryBank(5)
    a, b, c = memory_entry(True, 1), memory_entry(False, 0), memory_entry(True, 0)
    bank.add(2, a)
    bank.add(3, b)
    bank.add(0, c)
    assert list(bank.cond) == [2, 0]  # insertion order kept
    assert list(bank.non_cond) == [3]
    assert bank[2] is a and bank[3] is b and bank[0] is c
    assert 2 in bank and 3 in bank and 1 not in bank
    assert len(bank) == 3
    with pytest.raises(KeyError):
        bank[1]


def test_memory_bank_cond_replaces_non_cond_but_not_the_reverse():
    bank = MemoryBank(4)
    q = memory_entry(False)
    bank.add(1, q)
    s = memory_entry(True)
    bank.add(1, s)
    assert bank[1] is s and 1 not in bank.non_cond and len(bank) == 1
    with pytest.raises(ValueError, match="conditioning"):
        bank.add(1, memory_entry(False))
    # a newer non-cond entry replaces an older one
    q1, q2 = memory_entry(False, 1), memory_entry(False, 2)
    bank.add(2, q1)
    bank.add(2, q2)
    assert bank[2] is q2 and len(bank) == 2


@pytest.mark.parametrize("frame", [-1, 4, 100])
def test_memory_bank_rejects_frames_outside_the_layout(frame):
    bank = MemoryBank(4)
    with pytest.raises(IndexError):
        bank.add(frame, memory_entry(True))
    assert len(bank) == 0


def test_memory_bank_and_entry_repr():
    bank = MemoryBank(5)
    bank.add(2, memory_entry(True, 1, z=16, score=10.0))
    bank.add(0, memory_entry(True, 0))
    bank.add(3, memory_entry(False, 4))
    assert repr(bank) == "MemoryBank(5 frames, cond at [2, 0], 1 non-cond)"
    assert repr(bank[2]) == (
        "MemoryEntry(support #1, z=16, cond, maskmem 1x64x4x4 bfloat16, object_score=+10.00)"
    )
    assert repr(bank[3]) == (
        "MemoryEntry(query #4, z=None, non-cond, maskmem 1x64x4x4 bfloat16, object_score=+1.00)"
    )
