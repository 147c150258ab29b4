"""Orderings: how an episode's query slices are processed, as the plans the engine runs.

An ordering is a callable ``ordering(setting, episode) -> list[Plan]`` (:class:`Ordering`). This
registry is the one vocabulary of orders: every ``--order`` (``fsm2kit run``, ``segment``,
``inspect``) and ``ExperimentConfig.orders`` is checked here. The built-ins are the FQ orders the
engine builds itself (:data:`fsm2kit.engine.plans.ORDERS`, registered from that list) and the
start orders (the 1Q settings have one plan per query slice and no order):

``middle`` (default)
    supports in the middle of the query range; forward to the end, then backward to the first
    slice (published ``by_volume_from_middle``; the paper's choice).
``top``
    supports first, then the query slices in ascending z (published ``by_volume``).
``from:P``
    start at the query slice at relative position ``P`` in [0, 1] (position
    ``floor(P * (M - 1) + 0.5)`` of the M query slices) and go both ways: forward to the end,
    then backward to the first, in one memory state, as own-scan segmentation does
    (:func:`fsm2kit.engine.plans.split_plan`). ``from:0.5`` is ``middle``, ``from:0`` is ``top``.
``at:Z``
    the same, starting at the query slice whose z is ``Z`` (``fsm2kit segment --start-slice Z``
    is ``--order at:Z``).

A user's ordering may return any plans (e.g. :func:`fsm2kit.engine.plans.custom_plan`)::

    from fsm2kit.engine.plans import build_plans, custom_plan
    from fsm2kit.strategies import register_ordering

    @register_ordering("bottom", summary="supports first, query slices in descending z")
    def bottom(setting, episode):
        if not setting.upper().endswith("FQ"):
            return build_plans(setting, chunks=list(episode.chunks),
                               support_chunks=[s.chunk for s in episode.supports], npart=episode.npart)
        return [custom_plan(range(len(episode.z) - 1, -1, -1), range(len(episode.supports)))]

:func:`engine_arguments` gives what to pass to ``Engine.segment`` for an ordering: the built-in
order's name (so results record it) or the ordering's plans.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, runtime_checkable

from ..engine.plans import ORDERS  # plain tuples: no numpy, no torch
from ..records.naming import strategy_name
from .registry import Registry, parse_index

if TYPE_CHECKING:  # no numpy at import: the CLI lists orderings while it builds its parser
    from ..protocol.episodes import Episode
    from ..engine.plans import Plan

__all__ = ["Ordering", "PlanOrder", "StartOrder", "ORDERINGS", "register_ordering", "get_ordering", "engine_arguments",
           "check_start"]


@runtime_checkable
class Ordering(Protocol):
    """What an ordering is: a function of the setting and the episode to the plans to run."""

    def __call__(self, setting: str, episode: "Episode") -> Sequence["Plan"]: ...


@dataclass(frozen=True)
class PlanOrder:
    """A built-in order of :func:`~fsm2kit.engine.plans.build_plans` (``"middle"`` or ``"top"``)."""

    order: str

    @property
    def strategy_name(self) -> str:
        return self.order

    def __call__(self, setting: str, episode: "Episode") -> list["Plan"]:
        from ..engine.plans import build_plans

        return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                           support_chunks=[s.chunk for s in episode.supports], npart=episode.npart,
                           order=self.order)

    def __repr__(self) -> str:
        return f"PlanOrder({self.order!r})"


def _fq_supports(setting: str, episode: "Episode") -> list[int]:
    """The support indices the setting's FQ plan conditions on (S1SFQ: the middle chunk's; 3SFQ: all)."""
    from ..engine.plans import build_plans

    (plan,) = build_plans(setting, chunks=[int(c) for c in episode.chunks],
                          support_chunks=[s.chunk for s in episode.supports], npart=episode.npart, order="top")
    return [i for _, i in plan.support_frames]


@dataclass(frozen=True)
class StartOrder:
    """Start at one query slice and go both ways (``from:P`` or ``at:Z``; :func:`~fsm2kit.engine.plans.split_plan`).

    Attributes
    ----------
    kind : {"from", "at"}
        ``from``: ``value`` is a relative position P in [0, 1]; ``at``: the z of a query slice.
    value : float or int
    """

    kind: str
    value: float

    @property
    def strategy_name(self) -> str:
        return f"{self.kind}:{self.value:g}" if self.kind == "from" else f"at:{int(self.value)}"

    def start_position(self, z: Sequence[int], *, case: str = "", option: str = "order") -> int:
        """The position (0 .. M-1) of the start slice among the query slices ``z`` (ascending);
        ``option`` names it in the error (``--order`` on the command line)."""
        zs = [int(v) for v in z]
        if not zs:
            raise ValueError("no query slice to start from")
        if self.kind == "from":
            return int(math.floor(float(self.value) * (len(zs) - 1) + 0.5))
        if int(self.value) not in zs:
            raise ValueError(f"{option} {self.strategy_name}: z={int(self.value)} is not a query slice"
                             f"{' of ' + case if case else ''}; its query slices are z {zs[0]}..{zs[-1]} "
                             f"({len(zs)} slices: {zs[:12]}{' ...' if len(zs) > 12 else ''})")
        return zs.index(int(self.value))

    def __call__(self, setting: str, episode: "Episode") -> list["Plan"]:
        from ..engine.plans import build_plans, normalize_setting, split_plan

        if not normalize_setting(setting).endswith("FQ"):  # 1Q settings: one plan per slice, no order
            return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                               support_chunks=[s.chunk for s in episode.supports], npart=episode.npart)
        start = self.start_position(episode.z, case=f"{episode.case_id}/{episode.label_name}")
        return [split_plan(len(episode.z), _fq_supports(setting, episode), start)]

    def __repr__(self) -> str:
        return f"StartOrder({self.strategy_name!r})"


def _parse_position(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        raise ValueError(f"P is a relative position, a number in [0, 1] (0 first query slice, 0.5 middle, "
                         f"1 last), got {text!r}") from None
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"P is a relative position in [0, 1] (0 first query slice, 0.5 middle, 1 last), got {text}")
    return p


def _parse_z(text: str) -> int:
    return parse_index(text, "Z is a slice index, an integer >= 0")


#: One line on each order the engine builds itself (:data:`fsm2kit.engine.plans.ORDERS`).
_PLAN_ORDER_SUMMARIES = {
    "middle": "supports mid-volume; forward to the end, then backward to the first slice (the paper's)",
    "top": "supports first, then the query slices in ascending z (published by_volume)",
}

ORDERINGS = Registry(
    "ordering",
    description="how the query slices are processed: (setting, episode) -> the plans the engine runs",
    default="middle",
    option="--order",
)
for _order in ORDERS:  # the engine's own FQ orders, registered from the engine's list (one vocabulary)
    ORDERINGS.register(_order, PlanOrder(_order), origin="fsm2kit",
                       summary=_PLAN_ORDER_SUMMARIES.get(_order, f"the engine's {_order!r} order (fq_plan)"))
del _order
ORDERINGS.register("from", lambda p: StartOrder("from", p), arg="P", parse=_parse_position, origin="fsm2kit",
                   details="P in [0, 1]",
                   summary="start at the query slice at relative position P, forward to the end, then backward "
                           "(from:0.5 = middle, from:0 = top)")
ORDERINGS.register("at", lambda z: StartOrder("at", z), arg="Z", parse=_parse_z, origin="fsm2kit",
                   details="Z a query slice's z; segment --start-slice Z",
                   summary="start at the query slice with z = Z, forward to the end, then backward")


def register_ordering(name: str, ordering: Callable | str | None = None, *, summary: str | None = None,
                      arg: str | None = None, default: object = None, parse: Callable | None = None,
                      overwrite: bool = False):
    """Register an ordering ``(setting, episode) -> plans`` (or, with ``arg``, a factory of them).

    Works as a decorator when ``ordering`` is omitted. See :meth:`Registry.register`.
    """
    return ORDERINGS.register(name, ordering, summary=summary, arg=arg, default=default, parse=parse,
                              overwrite=overwrite)


def get_ordering(spec: object = None) -> Ordering:
    """The ordering for a name (``None``: ``middle``); an ordering object is returned unchanged."""
    return ORDERINGS.get(spec)


def check_start(ordering: object, setting: str, episodes: Sequence["Episode"], *, option: str = "order") -> None:
    """``at:Z``: Z must be a query slice of every episode (FQ settings; checked before any model loads).

    Raises
    ------
    ValueError
        One line naming ``option`` (``"--order"`` for the command line), Z and the query's z range.
    """
    from ..engine.plans import normalize_setting

    o = ORDERINGS.get(ordering)
    if not isinstance(o, StartOrder) or not normalize_setting(setting).endswith("FQ"):
        return
    for ep in episodes:
        o.start_position(ep.z, case=f"{ep.case_id}/{ep.label_name}", option=option)


def engine_arguments(ordering: object, setting: str, episode: "Episode") -> dict:
    """Keyword arguments of ``Engine.segment`` for ``ordering``: ``{"order": name}`` for a built-in
    order (the engine builds the plans and records the order), else ``{"plans": ordering(setting, episode)}``."""
    ordering = ORDERINGS.get(ordering)
    if isinstance(ordering, PlanOrder):
        return {"order": ordering.order}
    plans = list(ordering(setting, episode))
    if not plans:
        raise ValueError(f"ordering {strategy_name(ordering)!r} returned no plans for {setting} on {episode.case_id}.")
    return {"plans": plans}
