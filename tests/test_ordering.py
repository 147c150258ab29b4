"""Tests of fsm2kit.engine.plans: plans of the four settings and the top / middle orders.

Layouts follow PROTOCOL.md section 6.4 (published ``by_slice``, ``by_volume`` and
``by_volume_from_middle`` scripts) and fsm2kit's 1S1Q / 3SFQ generalisations.
"""

from __future__ import annotations

import pytest

from fsm2kit.engine.plans import (
    ORDERS,
    SETTINGS,
    Frame,
    Plan,
    Step,
    build_plans,
    custom_plan,
    fq_plan,
    normalize_setting,
    plans_1s1q,
    plans_3s1q,
)


def sup(i):
    return Frame("support", i)


def q(i):
    return Frame("query", i)


def layout(plan):
    return "".join("S" if f.kind == "support" else "q" for f in plan.frames)


# --------------------------------------------------------------------------- 1S1Q / 3S1Q


def test_plans_1s1q_pairs_each_query_with_its_chunk_support():
    chunks = [0, 0, 1, 2, 2]
    plans = plans_1s1q(chunks, support_chunks=[0, 1, 2])
    assert len(plans) == 5
    for qi, (plan, c) in enumerate(zip(plans, chunks)):
        assert plan.frames == (sup(c), q(qi))
        assert plan.steps == (Step(1),)
        assert plan.store_predictions is False
        assert plan.support_frames == ((0, c),)
        assert plan.query_order == (qi,)
        assert plan.num_frames == 2


def test_plans_1s1q_uses_support_position_not_chunk_id():
    # support 0 serves chunk 2, support 1 chunk 0, support 2 chunk 1
    plans = plans_1s1q([0, 1, 2], support_chunks=[2, 0, 1])
    assert [p.frames[0] for p in plans] == [sup(1), sup(2), sup(0)]


def test_plans_1s1q_chunk_without_support_raises():
    with pytest.raises(ValueError, match="chunk 1"):
        plans_1s1q([0, 1, 2], support_chunks=[0, 2])


def test_plans_1s1q_no_queries_gives_no_plans():
    assert plans_1s1q([], support_chunks=[0, 1, 2]) == []


def test_plans_3s1q_all_supports_then_the_query():
    plans = plans_3s1q(4, 3)
    assert len(plans) == 4
    for qi, plan in enumerate(plans):
        assert plan.frames == (sup(0), sup(1), sup(2), q(qi))
        assert plan.steps == (Step(3),)
        assert plan.store_predictions is False
        assert plan.support_frames == ((0, 0), (1, 1), (2, 2))
        assert plan.query_order == (qi,)


def test_plans_3s1q_with_two_supports():
    (plan,) = plans_3s1q(1, 2)
    assert plan.frames == (sup(0), sup(1), q(0)) and plan.steps == (Step(2),)


# --------------------------------------------------------------------------- FQ orders


def test_fq_top_supports_then_queries_forward():
    plan = fq_plan(5, [1], order="top")
    assert plan.frames == (sup(1), q(0), q(1), q(2), q(3), q(4))
    assert plan.steps == tuple(Step(i) for i in range(1, 6))
    assert all(not s.reverse for s in plan.steps)
    assert plan.store_predictions is True
    assert plan.query_order == (0, 1, 2, 3, 4)
    assert plan.support_frames == ((0, 1),)


def test_fq_top_three_supports():
    plan = fq_plan(3, [0, 1, 2], order="top")
    assert layout(plan) == "SSSqqq"
    assert plan.steps == (Step(3), Step(4), Step(5))


def test_fq_middle_m24():
    plan = fq_plan(24, [1], order="middle")
    assert plan.num_frames == 25
    assert plan.frames == tuple(q(i) for i in range(12)) + (sup(1),) + tuple(q(i) for i in range(12, 24))
    # forward from the frame after the support (13) to the end (24), then reverse from 11 to 0
    assert plan.steps == tuple(Step(i) for i in range(13, 25)) + tuple(
        Step(i, reverse=True) for i in range(11, -1, -1)
    )
    assert plan.query_order == tuple(range(12, 24)) + tuple(range(11, -1, -1))
    assert plan.support_frames == ((12, 1),)
    assert plan.store_predictions is True


def test_fq_middle_m5():
    plan = fq_plan(5, [0], order="middle")
    assert plan.frames == (q(0), q(1), sup(0), q(2), q(3), q(4))
    assert plan.steps == (Step(3), Step(4), Step(5), Step(1, True), Step(0, True))
    assert plan.query_order == (2, 3, 4, 1, 0)


def test_fq_middle_m1_is_support_then_query():
    plan = fq_plan(1, [0], order="middle")
    assert plan.frames == (sup(0), q(0))
    assert plan.steps == (Step(1),)


def test_fq_middle_m2():
    plan = fq_plan(2, [0], order="middle")
    assert plan.frames == (q(0), sup(0), q(1))
    assert plan.steps == (Step(2), Step(0, True))


def test_fq_middle_three_supports_3sfq_layout():
    plan = fq_plan(5, [0, 1, 2], order="middle")
    assert plan.frames == (q(0), q(1), sup(0), sup(1), sup(2), q(2), q(3), q(4))
    assert plan.steps == (Step(5), Step(6), Step(7), Step(1, True), Step(0, True))
    assert plan.support_frames == ((2, 0), (3, 1), (4, 2))


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("n_sup", [1, 2, 3])
def test_fq_every_query_processed_exactly_once(order, n_sup):
    for m in range(1, 40):
        plan = fq_plan(m, list(range(n_sup)), order=order)
        assert sorted(plan.query_order) == list(range(m))
        assert len(plan.steps) == m
        assert plan.num_frames == m + n_sup
        # queries sit in ascending z in the layout
        qs = [f.index for f in plan.frames if f.kind == "query"]
        assert qs == list(range(m))
        if order == "middle":
            half = m // 2
            assert [s.reverse for s in plan.steps] == [False] * (m - half) + [True] * half
            assert layout(plan) == "q" * half + "S" * n_sup + "q" * (m - half)
        else:
            assert not any(s.reverse for s in plan.steps)
            assert layout(plan) == "S" * n_sup + "q" * m


def test_fq_errors():
    with pytest.raises(ValueError, match="at least one query"):
        fq_plan(0, [0])
    with pytest.raises(ValueError, match="Unknown order"):
        fq_plan(3, [0], order="bottom")
    with pytest.raises(ValueError, match="support"):
        fq_plan(3, [], order="top")


# --------------------------------------------------------------------------- custom plans


def test_custom_plan_supports_first_then_given_order_forward():
    plan = custom_plan([3, 0, 2], [0, 2], n_queries=4)
    assert plan.frames == (sup(0), sup(2), q(3), q(0), q(2))
    assert plan.steps == (Step(2), Step(3), Step(4))
    assert plan.query_order == (3, 0, 2)
    assert plan.store_predictions is True


def test_custom_plan_validation():
    with pytest.raises(ValueError, match="twice"):
        custom_plan([1, 2, 1], [0])
    with pytest.raises(ValueError, match="outside"):
        custom_plan([0, 4], [0], n_queries=4)
    with pytest.raises(ValueError, match="outside"):
        custom_plan([-1, 0], [0], n_queries=4)
    with pytest.raises(ValueError, match="support"):
        custom_plan([0, 1], [], n_queries=2)


def test_custom_plan_accepts_numpy_like_ints():
    import numpy as np

    plan = custom_plan(np.array([1, 0]), [0], n_queries=2)
    assert plan.query_order == (1, 0) and all(type(f.index) is int for f in plan.frames)


# --------------------------------------------------------------------------- build_plans


CHUNKS = [0, 0, 0, 1, 1, 2, 2, 2]  # 8 query slices in 3 chunks


def test_build_plans_1s1q():
    plans = build_plans("1S1Q", chunks=CHUNKS, support_chunks=[0, 1, 2])
    assert plans == plans_1s1q(CHUNKS, [0, 1, 2])
    assert [p.frames[0].index for p in plans] == CHUNKS


def test_build_plans_3s1q_ignores_chunks_and_order():
    plans = build_plans("3S1Q", chunks=CHUNKS, support_chunks=[0, 1, 2], order="top")
    assert plans == plans_3s1q(8, 3)


@pytest.mark.parametrize("order", ORDERS)
def test_build_plans_s1sfq_uses_middle_chunk_support(order):
    (plan,) = build_plans("S1SFQ", chunks=CHUNKS, support_chunks=[0, 1, 2], order=order)
    assert plan == fq_plan(8, [1], order)
    # the support index is the position of chunk npart // 2 in support_chunks
    (plan,) = build_plans("S1SFQ", chunks=CHUNKS, support_chunks=[2, 0, 1], order=order)
    assert plan.support_frames[0][1] == 2
    (plan,) = build_plans("s1sfq", chunks=CHUNKS, support_chunks=[0, 1, 2, 3, 4], npart=5, order=order)
    assert [i for _, i in plan.support_frames] == [2]


def test_build_plans_s1sfq_without_middle_support_raises():
    with pytest.raises(ValueError, match="middle chunk"):
        build_plans("S1SFQ", chunks=[0, 2], support_chunks=[0, 2])


@pytest.mark.parametrize("order", ORDERS)
def test_build_plans_3sfq_uses_all_supports(order):
    (plan,) = build_plans("3SFQ", chunks=CHUNKS, support_chunks=[0, 1, 2], order=order)
    assert plan == fq_plan(8, [0, 1, 2], order)
    (plan,) = build_plans("3SFQ", chunks=[0, 2], support_chunks=[0, 2], order=order)
    assert [i for _, i in plan.support_frames] == [0, 1]


def test_build_plans_default_order_is_middle():
    (plan,) = build_plans("3SFQ", chunks=CHUNKS, support_chunks=[0, 1, 2])
    assert plan == fq_plan(8, [0, 1, 2], "middle")


def test_build_plans_unknown_order_raises_for_fq():
    with pytest.raises(ValueError, match="Unknown order"):
        build_plans("3SFQ", chunks=CHUNKS, support_chunks=[0, 1, 2], order="bottom")


def test_normalize_setting():
    assert SETTINGS == ("1S1Q", "3S1Q", "S1SFQ", "3SFQ")
    for s in SETTINGS:
        assert normalize_setting(s) == s
        assert normalize_setting(f"  {s.lower()} ") == s
    for bad in ["", "2S1Q", "S1S FQ", "fq"]:
        with pytest.raises(ValueError, match="expected one of 1S1Q, 3S1Q, S1SFQ, 3SFQ"):
            normalize_setting(bad)
    with pytest.raises(ValueError, match="Unknown setting"):
        build_plans("4SFQ", chunks=CHUNKS, support_chunks=[0, 1, 2])


# --------------------------------------------------------------------------- Plan validation


def test_plan_rejects_step_on_support_frame():
    with pytest.raises(ValueError, match="not a query frame"):
        Plan((sup(0), q(0)), (Step(0),), True)


def test_plan_rejects_step_outside_layout():
    with pytest.raises(ValueError, match="outside"):
        Plan((sup(0), q(0)), (Step(2),), True)
    with pytest.raises(ValueError, match="outside"):
        Plan((sup(0), q(0)), (Step(-1),), True)


def test_plan_needs_a_support_frame():
    with pytest.raises(ValueError, match="support"):
        Plan((q(0), q(1)), (Step(0), Step(1)), True)


def test_plan_without_steps_is_allowed_and_repr():
    plan = Plan((sup(0), q(0)), (), False)
    assert plan.query_order == ()
    assert repr(plan) == "Plan(2 frames [Sq], 0 steps, queries independent)"
    plan = fq_plan(5, [0], "middle")
    assert repr(plan) == "Plan(6 frames [qqSqqq], 5 steps, predictions join memory)"
    plan = fq_plan(60, [0, 1, 2], "top")
    assert repr(plan) == "Plan(63 frames [SSSqqqqqqqqqqqqqqq...qqqqqqqqqqqqqqqqqq], 60 steps, predictions join memory)"


def test_plans_are_frozen_and_hashable():
    plan = fq_plan(3, [0], "top")
    with pytest.raises(Exception):
        plan.store_predictions = False  # type: ignore[misc]
    assert hash(plan) == hash(fq_plan(3, [0], "top"))


def test_custom_plan_rejects_negative_positions_without_n_queries():
    with pytest.raises(ValueError):
        custom_plan([-1, 0], [0])
