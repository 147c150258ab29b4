"""Memory policies: which memories each tracking step attends to.

The contract is :class:`fsm2kit.engine.memory.MemoryPolicy`, a pure function
``policy(bank, frame_idx, *, reverse, settings) -> MemorySelection``; the engine takes one as
``Engine.segment(..., memory_policy=...)`` and checks its choice
(:func:`~fsm2kit.engine.memory.check_selection`: only frames in the bank, at most
``num_maskmem - 1`` non-conditioning slots, at least one conditioning memory).

Built-in (:mod:`fsm2kit.strategies.policies` has their exact semantics): ``sam2`` (default), SAM2's own
rule (:func:`fsm2kit.engine.memory.sam2_memory_policy`); ``stride:R``; ``support-only``;
``recent:K``; ``confident:T`` / ``confident:iou=T``; ``best:K``. They keep SAM2's support memories
and support pointers and choose which previous query memories fill the ``num_maskmem - 1``
temporal slots (and whose pointers come); none needs new weights or changes the number of slots.

A user's policy, e.g. one that attends to the support memories only::

    from fsm2kit.engine.memory import MemorySelection
    from fsm2kit.strategies import register_memory_policy

    @register_memory_policy("cond_only", summary="attend to the conditioning (support) memories only")
    def cond_only(bank, frame_idx, *, reverse, settings):
        sel = bank.select(frame_idx, reverse=reverse, settings=settings)
        return MemorySelection(sel.frame_idx, sel.reverse, tuple(r for r in sel.spatial if r.is_cond),
                               tuple(p for p in sel.pointers if p.is_cond), sel.max_obj_ptrs)
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from .registry import Registry

__all__ = ["MEMORY_POLICIES", "register_memory_policy", "get_memory_policy"]

MAX_SLOTS = 6  # non-conditioning temporal slots of SAM2 (num_maskmem - 1): fsm2kit.strategies.policies.MAX_QUERY_SLOTS


def _int_arg(name: str, text: str, *, lo: int, hi: int | None = None) -> int:
    """An integer argument in ``lo..hi``, or a one-line ValueError saying which."""
    valid = f"an integer {name} >= {lo}" if hi is None else f"an integer {name} in {lo}..{hi}"
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected {valid}, got {text!r}") from None
    if value < lo or (hi is not None and value > hi):
        raise ValueError(f"expected {valid}, got {value}")
    return value


MEMORY_POLICIES = Registry(
    "memory policy",
    description="which memories a tracking step attends to: (bank, frame_idx, *, reverse, settings) -> MemorySelection",
    default="sam2",
)
# a "module:attribute" target: listing the policies imports no torch
MEMORY_POLICIES.register("sam2", "fsm2kit.engine.memory:sam2_memory_policy", origin="fsm2kit",
                         summary="SAM2's rule: all support memories, the previous num_maskmem-1 predictions, "
                                 "object pointers")
MEMORY_POLICIES.register("stride", "fsm2kit.strategies.policies:StridePolicy", arg="R", parse=partial(_int_arg, "R", lo=1),
                         origin="fsm2kit", summary="SAM2's rule with memory_temporal_stride_for_eval=R (R >= 1; "
                                                   "stride:1 is sam2): older memories every R frames")
MEMORY_POLICIES.register("support-only", "fsm2kit.strategies.policies:support_only_policy", origin="fsm2kit",
                         summary="the support memories and their pointers only: no query memory, no query pointer")
MEMORY_POLICIES.register("recent", "fsm2kit.strategies.policies:RecentPolicy", arg="K",
                         parse=partial(_int_arg, "K", lo=0, hi=MAX_SLOTS), origin="fsm2kit",
                         summary=f"the K nearest previous query memories (0 <= K <= {MAX_SLOTS}) in slots 1..K, "
                                 "only their pointers (recent:0 is support-only)")
MEMORY_POLICIES.register("confident", "fsm2kit.strategies.policies:ConfidentPolicy.from_arg", arg="T", default="0",
                         origin="fsm2kit",
                         summary="nearest previous query memories whose object score is > T (confident:iou=T: "
                                 f"predicted IoU > T, 0 <= T <= 1), up to {MAX_SLOTS}, slots 1.. by rank, their "
                                 "pointers")
MEMORY_POLICIES.register("best", "fsm2kit.strategies.policies:BestPolicy", arg="K",
                         parse=partial(_int_arg, "K", lo=0, hi=MAX_SLOTS), origin="fsm2kit",
                         summary=f"the K previous query memories (0 <= K <= {MAX_SLOTS}) of highest object score "
                                 "(ties: nearer), by distance in slots 1..K, only their pointers")


def register_memory_policy(name: str, policy: Callable | str | None = None, *, summary: str | None = None,
                           arg: str | None = None, default: object = None, parse: Callable | None = None,
                           overwrite: bool = False):
    """Register a memory policy (or, with ``arg``, a factory of them); a decorator when ``policy`` is omitted.

    See :meth:`fsm2kit.strategies.registry.Registry.register`.
    """
    return MEMORY_POLICIES.register(name, policy, summary=summary, arg=arg, default=default, parse=parse,
                                    overwrite=overwrite)


def get_memory_policy(spec: object = None):
    """The memory policy for a name (``None``: ``sam2``, i.e. ``sam2_memory_policy`` itself); a policy
    object is returned unchanged."""
    return MEMORY_POLICIES.get(spec)
