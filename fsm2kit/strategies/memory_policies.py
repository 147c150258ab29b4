"""Memory policies: which memories each tracking step attends to (contract, built-ins, registry).

The contract is :class:`fsm2kit.engine.memory.MemoryPolicy`, a pure function
``policy(bank, frame_idx, *, reverse, settings) -> MemorySelection``; the engine takes one as
``Engine.segment(..., memory_policy=...)`` and checks its choice
(:func:`~fsm2kit.engine.memory.check_selection`: only frames in the bank, at most
``num_maskmem - 1`` non-conditioning slots, at least one conditioning memory).

SAM2 attends to every conditioning (support) memory at temporal slot 0, to up to
``num_maskmem - 1`` (:data:`MAX_QUERY_SLOTS`) previous query memories in the non-conditioning
slots of its trained temporal encoding (``maskmem_tpos_enc``), and to object pointers. The
built-ins other than ``sam2`` keep the support memories and the supports' pointers exactly as
SAM2 chooses them, and differ in which query memories come:

========================  ==================================================================
``sam2`` (default)        SAM2's own rule (:func:`fsm2kit.engine.memory.sam2_memory_policy`)
``stride:R``              SAM2's rule with ``memory_temporal_stride_for_eval = R``
``support-only``          no query memory and no query pointer
``recent:K``              the K nearest previous query memories, slots 1..K, their pointers
``confident:T``           nearest previous first, those whose object score is > T (up to
                          ``num_maskmem - 1``), slots 1, 2, ... by rank, their pointers
``confident:iou=T``       the same with SAM2's predicted IoU > T
``best:K``                the K previous query memories of highest object score (ties: the
                          nearer), ordered by distance, slots 1..K, their pointers
========================  ==================================================================

"Previous" is SAM2's: frames already in the bank before the current frame in the current
direction (lower indices when tracking forward, higher when tracking in reverse), nearest first,
however far (SAM2 itself looks back ``num_maskmem - 1`` frames). "Slot k" is the temporal
encoding SAM2 gives a memory ``k`` frames away: ``t_pos = num_maskmem - k``,
``maskmem_tpos_enc[k - 1]``; so ``recent:6`` with every previous frame processed fills the slots
exactly as SAM2 does. A kept query memory's pointer carries its true distance ``|frame_idx - t|``
(as in SAM2; beyond SAM2's 15-frame pointer look-back the sine encoding extrapolates). None of
these needs new weights or changes the number of slots.

A user's policy, e.g. one that attends to the support memories only::

    from fsm2kit.engine.memory import MemorySelection
    from fsm2kit.strategies import register_memory_policy

    @register_memory_policy("cond_only", summary="attend to the conditioning (support) memories only")
    def cond_only(bank, frame_idx, *, reverse, settings):
        sel = bank.select(frame_idx, reverse=reverse, settings=settings)
        return MemorySelection(sel.frame_idx, sel.reverse, tuple(r for r in sel.spatial if r.is_cond),
                               tuple(p for p in sel.pointers if p.is_cond), sel.max_obj_ptrs)

Importing this module needs no torch (:mod:`fsm2kit.engine.memory` imports none): the command
line lists the policies while it builds its parser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Callable

from ..engine.memory import (MemoryBank, MemorySelection, MemorySettings, PointerRef, SpatialRef, sam2_memory_policy,
                             select_memories)
from .registry import Registry

__all__ = [
    "MAX_QUERY_SLOTS",
    "MEMORY_POLICIES",
    "register_memory_policy",
    "get_memory_policy",
    "previous_query_frames",
    "query_memory_selection",
    "StridePolicy",
    "support_only_policy",
    "RecentPolicy",
    "ConfidentPolicy",
    "BestPolicy",
]

#: Non-conditioning temporal slots of the released SAM2 models (``num_maskmem - 1``): the largest K
#: of ``recent:K`` and ``best:K``.
MAX_QUERY_SLOTS = 6


def previous_query_frames(bank: MemoryBank, frame_idx: int, *, reverse: bool) -> list[int]:
    """Frames of the bank's query (non-conditioning) memories before ``frame_idx`` in the
    tracking direction, nearest first (forward: lower indices; reverse: higher)."""
    if reverse:
        return sorted(t for t in bank.non_cond if t > frame_idx)
    return sorted((t for t in bank.non_cond if t < frame_idx), reverse=True)


def query_memory_selection(bank: MemoryBank, frame_idx: int, kept: list[int], *, reverse: bool,
                           settings: MemorySettings) -> MemorySelection:
    """The selection of SAM2's support memories and pointers plus the query memories ``kept``.

    ``kept`` (nearest first or in any rank order) puts its k-th frame in slot k (``t_pos =
    num_maskmem - k``); spatial memories are listed as SAM2 lists them (conditioning first, then
    by increasing ``t_pos``), pointers as SAM2 lists them (supports', then by distance).
    """
    n = settings.num_maskmem
    if len(kept) > n - 1:
        raise ValueError(f"{len(kept)} query memories for frame {frame_idx}, but the model has {n - 1} "
                         "non-conditioning temporal slots.")
    sam2 = select_memories(frame_idx, cond_frames=list(bank.cond), non_cond_frames=(), num_frames=bank.num_frames,
                           reverse=reverse, settings=settings)
    cond = tuple(r for r in sam2.spatial if r.t_pos == 0)
    chosen = {r.frame_idx for r in cond}
    slots = sorted(((n - k, t) for k, t in enumerate(kept, start=1)))  # by increasing t_pos, as SAM2
    spatial = cond + tuple(SpatialRef(t, t_pos, n - t_pos - 1, False) for t_pos, t in slots)
    pointers = tuple(p for p in sam2.pointers if p.is_cond and p.frame_idx in chosen)
    if settings.use_obj_ptrs:
        pointers += tuple(PointerRef(t, abs(frame_idx - t), False)
                          for t in sorted(kept, key=lambda t: abs(frame_idx - t)))
    return MemorySelection(frame_idx, reverse, spatial, pointers, sam2.max_obj_ptrs)


def _check_count(name: str, k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_QUERY_SLOTS:
        raise ValueError(f"{name} takes K in 0..{MAX_QUERY_SLOTS} (query-memory slots), got {k!r}")
    return k


def _fits(name: str, k: int, settings: MemorySettings) -> None:
    if k > settings.num_maskmem - 1:
        raise ValueError(f"{name}: the model has {settings.num_maskmem - 1} non-conditioning temporal slots, "
                         f"fewer than {k}.")


@dataclass(frozen=True)
class StridePolicy:
    """SAM2's rule with ``memory_temporal_stride_for_eval = stride`` (``stride:1`` is ``sam2``)."""

    stride: int

    def __post_init__(self) -> None:
        if isinstance(self.stride, bool) or not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride takes R >= 1 (frames between the older memories), got {self.stride!r}")

    @property
    def strategy_name(self) -> str:
        return f"stride:{self.stride}"

    def __call__(self, bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
        return bank.select(frame_idx, reverse=reverse, settings=replace(settings, stride=self.stride))


def support_only_policy(bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
    """The support memories and the supports' pointers only: no query memory, no query pointer."""
    return query_memory_selection(bank, frame_idx, [], reverse=reverse, settings=settings)


support_only_policy.strategy_name = "support-only"


@dataclass(frozen=True)
class RecentPolicy:
    """The ``k`` nearest previous query memories, slots 1..k, and only their pointers."""

    k: int

    def __post_init__(self) -> None:
        _check_count("recent", self.k)

    @property
    def strategy_name(self) -> str:
        return f"recent:{self.k}"

    def __call__(self, bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
        _fits(self.strategy_name, self.k, settings)
        kept = previous_query_frames(bank, frame_idx, reverse=reverse)[: self.k]
        return query_memory_selection(bank, frame_idx, kept, reverse=reverse, settings=settings)


@dataclass(frozen=True)
class ConfidentPolicy:
    """Nearest previous query memories whose object score (``on="iou"``: predicted IoU) is above
    ``threshold``, up to ``num_maskmem - 1``, in slots 1, 2, ... by that rank; their pointers only.

    Entries without a predicted IoU (``iou`` None) never pass an IoU threshold.
    """

    threshold: float
    on: str = "object_score"

    def __post_init__(self) -> None:
        if self.on not in ("object_score", "iou"):
            raise ValueError(f"confident thresholds 'object_score' or 'iou', got {self.on!r}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise ValueError(f"confident takes a finite threshold T, got {t!r}")
        if self.on == "iou" and not 0.0 <= t <= 1.0:
            raise ValueError(f"confident:iou=T takes T in [0, 1] (a predicted IoU), got {t!r}")
        object.__setattr__(self, "threshold", float(t))

    @classmethod
    def from_arg(cls, text: str) -> "ConfidentPolicy":
        """``"0.5"`` (object score logit > 0.5) or ``"iou=0.8"`` (predicted IoU > 0.8)."""
        text = str(text).strip()
        on, sep, value = text.partition("=")
        if not sep:
            on, value = "object_score", text
        elif on.strip().lower() != "iou":
            raise ValueError(f"expected T (object score) or iou=T, got {text!r}")
        else:
            on = "iou"
        try:
            t = float(value)
        except ValueError:
            raise ValueError(f"expected a number T or iou=T, got {text!r}") from None
        return cls(t, on)

    @property
    def strategy_name(self) -> str:
        return f"confident:{'iou=' if self.on == 'iou' else ''}{self.threshold:g}"

    def passes(self, bank: MemoryBank, t: int) -> bool:
        value = bank[t].iou if self.on == "iou" else bank[t].object_score
        return value is not None and float(value) > self.threshold

    def __call__(self, bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
        kept = [t for t in previous_query_frames(bank, frame_idx, reverse=reverse) if self.passes(bank, t)]
        kept = kept[: settings.num_maskmem - 1]
        return query_memory_selection(bank, frame_idx, kept, reverse=reverse, settings=settings)


@dataclass(frozen=True)
class BestPolicy:
    """The ``k`` previous query memories of highest object score (ties: the nearer), ordered by
    distance, in slots 1..k by that rank; only their pointers."""

    k: int

    def __post_init__(self) -> None:
        _check_count("best", self.k)

    @property
    def strategy_name(self) -> str:
        return f"best:{self.k}"

    def __call__(self, bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
        _fits(self.strategy_name, self.k, settings)
        prev = previous_query_frames(bank, frame_idx, reverse=reverse)  # nearest first
        ranked = sorted(range(len(prev)), key=lambda i: (-bank[prev[i]].object_score, i))[: self.k]
        kept = [prev[i] for i in sorted(ranked)]  # by distance
        return query_memory_selection(bank, frame_idx, kept, reverse=reverse, settings=settings)


# ----------------------------------------------------------------------------- the registry
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
    option="--memory-policy",
)
MEMORY_POLICIES.register("sam2", sam2_memory_policy, origin="fsm2kit",
                         summary="SAM2's rule: all support memories, the previous num_maskmem-1 predictions, "
                                 "object pointers")
MEMORY_POLICIES.register("stride", StridePolicy, arg="R", parse=partial(_int_arg, "R", lo=1),
                         origin="fsm2kit", summary="SAM2's rule with memory_temporal_stride_for_eval=R (R >= 1; "
                                                   "stride:1 is sam2): older memories every R frames")
MEMORY_POLICIES.register("support-only", support_only_policy, origin="fsm2kit",
                         summary="the support memories and their pointers only: no query memory, no query pointer")
MEMORY_POLICIES.register("recent", RecentPolicy, arg="K",
                         parse=partial(_int_arg, "K", lo=0, hi=MAX_QUERY_SLOTS), origin="fsm2kit",
                         summary=f"the K nearest previous query memories (0 <= K <= {MAX_QUERY_SLOTS}) in slots 1..K, "
                                 "only their pointers (recent:0 is support-only)")
MEMORY_POLICIES.register("confident", ConfidentPolicy.from_arg, arg="T", default="0",
                         origin="fsm2kit",
                         summary="nearest previous query memories whose object score is > T (confident:iou=T: "
                                 f"predicted IoU > T, 0 <= T <= 1), up to {MAX_QUERY_SLOTS}, slots 1.. by rank, their "
                                 "pointers")
MEMORY_POLICIES.register("best", BestPolicy, arg="K",
                         parse=partial(_int_arg, "K", lo=0, hi=MAX_QUERY_SLOTS), origin="fsm2kit",
                         summary=f"the K previous query memories (0 <= K <= {MAX_QUERY_SLOTS}) of highest object score "
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
