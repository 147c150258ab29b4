"""Inference settings and orders as plans: small pure functions of slice counts.

A :class:`Plan` is the "video" SAM2 sees in one run: a layout of frames (support slices and
query slices) and the steps that segment query frames, in processing order. The engine runs a
plan against a fresh memory bank: support frames become conditioning memories, and in the FQ
settings every segmented query frame joins the bank as a non-conditioning memory.

Settings (FS-MedSAM2, Bai et al. 2024):

``1S1Q``
    every query slice alone with the support of its chunk: frames ``[support_c, query]``.
``3S1Q``
    every query slice alone with all supports: frames ``[s_0, ..., s_k, query]`` (this is what
    the published ``by_slice`` script runs).
``S1SFQ``
    the middle chunk's support and the whole query range; predictions join memory.
``3SFQ``
    all supports and the whole query range; predictions join memory.

Orders for the FQ settings:

``top``
    supports first, then the query slices in ascending z (published ``by_volume``).
``middle``
    frames ``queries[:M//2] + supports + queries[M//2:]``; propagate forward from the frame after
    the supports to the end, then backward from the frame before them to the first, in one
    state, so the backward pass may attend to forward-pass predictions (published
    ``by_volume_from_middle``; the paper's choice).
``from:P`` / ``at:Z``
    :func:`split_plan`: the "middle" layout with the split at any query slice (start there,
    forward to the end, then backward to the first; what own-scan segmentation does).
custom
    :func:`custom_plan` with any processing order of the query slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

__all__ = [
    "SETTINGS",
    "ORDERS",
    "Frame",
    "Step",
    "Plan",
    "plans_1s1q",
    "plans_3s1q",
    "fq_plan",
    "split_plan",
    "custom_plan",
    "build_plans",
    "normalize_setting",
]

SETTINGS = ("1S1Q", "3S1Q", "S1SFQ", "3SFQ")
#: The FQ orders :func:`fq_plan` builds itself. The orders users name (these, ``from:P``, ``at:Z``
#: and plugins' orderings) are one registry, :data:`fsm2kit.strategies.ORDERINGS`, which registers
#: these from this tuple; every ``--order`` is checked there.
ORDERS = ("middle", "top")


@dataclass(frozen=True)
class Frame:
    """A frame of a plan's layout: support ``index`` of the episode, or query slice ``index``."""

    kind: Literal["support", "query"]
    index: int


@dataclass(frozen=True)
class Step:
    """Segment frame ``frame_idx`` (a query frame), tracking in reverse or not."""

    frame_idx: int
    reverse: bool = False


@dataclass(frozen=True)
class Plan:
    """One SAM2 run: a frame layout, the query steps, and whether predictions join memory."""

    frames: tuple[Frame, ...]
    steps: tuple[Step, ...]
    store_predictions: bool

    def __post_init__(self) -> None:
        for s in self.steps:
            if not 0 <= s.frame_idx < len(self.frames):
                raise ValueError(f"step frame {s.frame_idx} outside the {len(self.frames)} frames")
            if self.frames[s.frame_idx].kind != "query":
                raise ValueError(f"step frame {s.frame_idx} is not a query frame")
        if not any(f.kind == "support" for f in self.frames):
            raise ValueError("a plan needs at least one support frame")

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    @property
    def support_frames(self) -> tuple[tuple[int, int], ...]:
        """(frame index, support index) of the support frames, in frame order."""
        return tuple((i, f.index) for i, f in enumerate(self.frames) if f.kind == "support")

    @property
    def query_order(self) -> tuple[int, ...]:
        """Query slice positions in processing order."""
        return tuple(self.frames[s.frame_idx].index for s in self.steps)

    def __repr__(self) -> str:
        lay = "".join("S" if f.kind == "support" else "q" for f in self.frames)
        if len(lay) > 40:
            lay = lay[:18] + "..." + lay[-18:]
        return (
            f"Plan({self.num_frames} frames [{lay}], {len(self.steps)} steps, "
            f"{'predictions join memory' if self.store_predictions else 'queries independent'})"
        )


def normalize_setting(setting: str) -> str:
    """Canonical setting name (case-insensitive); raises ValueError listing the valid ones."""
    key = setting.strip().upper()
    if key not in SETTINGS:
        raise ValueError(f"Unknown setting {setting!r}; expected one of {', '.join(SETTINGS)}.")
    return key


def plans_1s1q(chunks: Sequence[int], support_chunks: Sequence[int]) -> list[Plan]:
    """1S1Q: one plan per query slice, ``[support of its chunk, query]``.

    Parameters
    ----------
    chunks : sequence of int
        Chunk id of each query slice.
    support_chunks : sequence of int
        Chunk id of each support (support ``i`` serves chunk ``support_chunks[i]``).
    """
    by_chunk = {c: i for i, c in enumerate(support_chunks)}
    plans = []
    for q, c in enumerate(chunks):
        if c not in by_chunk:
            raise ValueError(
                f"Query slice {q} is in chunk {c}, which has no support (supports cover chunks "
                f"{sorted(by_chunk)})."
            )
        plans.append(Plan((Frame("support", by_chunk[c]), Frame("query", q)), (Step(1),), False))
    return plans


def plans_3s1q(n_queries: int, n_supports: int) -> list[Plan]:
    """3S1Q: one plan per query slice, ``[all supports..., query]``."""
    sup = tuple(Frame("support", i) for i in range(n_supports))
    return [Plan(sup + (Frame("query", q),), (Step(n_supports),), False) for q in range(n_queries)]


def fq_plan(n_queries: int, supports: Sequence[int], order: str = "middle") -> Plan:
    """The FQ settings (S1SFQ with one support, 3SFQ with all): one run over the query range.

    Parameters
    ----------
    n_queries : int
        Number of query slices M (positions 0..M-1 in ascending z).
    supports : sequence of int
        Support indices to place as conditioning frames (in this order).
    order : {"middle", "top"}
        ``top``: ``supports + queries``, forward. ``middle``: ``queries[:M//2] + supports +
        queries[M//2:]``, forward from after the supports, then backward from before them.
    """
    if n_queries < 1:
        raise ValueError("need at least one query slice")
    sup = tuple(Frame("support", i) for i in supports)
    k = len(sup)
    queries = [Frame("query", q) for q in range(n_queries)]
    if order == "top":
        frames = sup + tuple(queries)
        steps = tuple(Step(k + q) for q in range(n_queries))
    elif order == "middle":
        half = n_queries // 2
        frames = tuple(queries[:half]) + sup + tuple(queries[half:])
        forward = tuple(Step(i) for i in range(half + k, n_queries + k))
        backward = tuple(Step(i, reverse=True) for i in range(half - 1, -1, -1))
        steps = forward + backward
    else:
        raise ValueError(f"Unknown order {order!r}; expected one of {', '.join(ORDERS)} (or a custom_plan). "
                         f"Another registered ordering gives the plans: "
                         f"plans = fsm2kit.strategies.ORDERINGS.get({order!r})(setting, episode), then plans=plans.")
    return Plan(frames, steps, True)


def split_plan(n_queries: int, supports: Sequence[int], start: int) -> Plan:
    """Start at query position ``start`` and go both ways, in one memory state.

    Frames ``queries[:start] + supports + queries[start:]``; steps forward from ``start`` to the
    last query slice, then backward (``reverse=True``) from ``start - 1`` to the first. This is
    :func:`fq_plan` 's ``middle`` order with the split at ``start`` instead of ``M // 2``
    (``start = M // 2`` gives the same plan; ``start = 0`` the ``top`` plan; ``start = M``
    runs backward only).
    """
    if n_queries < 1:
        raise ValueError("need at least one query slice")
    start = int(start)
    if not 0 <= start <= n_queries:
        raise ValueError(f"start position {start} outside the query slices 0..{n_queries - 1}")
    sup = tuple(Frame("support", int(i)) for i in supports)
    k = len(sup)
    queries = tuple(Frame("query", q) for q in range(n_queries))
    frames = queries[:start] + sup + queries[start:]
    forward = tuple(Step(i) for i in range(start + k, n_queries + k))
    backward = tuple(Step(i, reverse=True) for i in range(start - 1, -1, -1))
    return Plan(frames, forward + backward, True)


def custom_plan(query_order: Sequence[int], supports: Sequence[int], n_queries: int | None = None) -> Plan:
    """Supports first, then the query slices in ``query_order``, tracked forward.

    ``query_order`` must be a permutation of a subset of ``range(n_queries)``.
    """
    order = [int(q) for q in query_order]
    if len(set(order)) != len(order):
        raise ValueError("query_order lists a slice twice")
    if any(q < 0 for q in order):
        raise ValueError(f"query_order has positions outside 0..n-1: {[q for q in order if q < 0]}")
    if n_queries is not None and any(q >= n_queries for q in order):
        raise ValueError(f"query_order has positions outside 0..{n_queries - 1}")
    sup = tuple(Frame("support", i) for i in supports)
    frames = sup + tuple(Frame("query", q) for q in order)
    return Plan(frames, tuple(Step(len(sup) + i) for i in range(len(order))), True)


def build_plans(
    setting: str,
    *,
    chunks: Sequence[int],
    support_chunks: Sequence[int],
    npart: int = 3,
    order: str = "middle",
) -> list[Plan]:
    """The plans of ``setting`` for an episode with these query chunks and supports.

    ``order`` applies to the FQ settings only. S1SFQ uses the support of chunk ``npart // 2``.
    """
    setting = normalize_setting(setting)
    n = len(chunks)
    if setting == "1S1Q":
        return plans_1s1q(chunks, support_chunks)
    if setting == "3S1Q":
        return plans_3s1q(n, len(support_chunks))
    if setting == "S1SFQ":
        mid = npart // 2
        if mid not in support_chunks:
            raise ValueError(
                f"S1SFQ needs the middle chunk's support (chunk {mid}), but the episode has "
                f"supports for chunks {list(support_chunks)} only (e.g. an npz dump of a very "
                "short organ range). Use 3SFQ, or build the episode from volumes."
            )
        return [fq_plan(n, [list(support_chunks).index(mid)], order)]
    return [fq_plan(n, list(range(len(support_chunks))), order)]
