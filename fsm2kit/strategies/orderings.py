"""Orderings: how an episode's query slices are processed, as the plans the engine runs.

An ordering is a callable ``ordering(setting, episode) -> list[Plan]`` (:class:`Ordering`). The
built-ins are the FQ orders of :func:`fsm2kit.core.plans.build_plans` (the 1Q settings have one
plan per query slice and no order):

``middle`` (default)
    supports in the middle of the query range; forward to the end, then backward to the first
    slice (published ``by_volume_from_middle``; the paper's choice).
``top``
    supports first, then the query slices in ascending z (published ``by_volume``).

A user's ordering may return any plans (e.g. :func:`fsm2kit.core.plans.custom_plan`)::

    from fsm2kit.core.plans import build_plans, custom_plan
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

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol, Sequence, runtime_checkable

from ..core.names import strategy_name
from .registry import Registry

if TYPE_CHECKING:  # no numpy at import: the CLI lists orderings while it builds its parser
    from ..core.episode import Episode
    from ..core.plans import Plan

__all__ = ["Ordering", "PlanOrder", "ORDERINGS", "register_ordering", "get_ordering", "engine_arguments"]


@runtime_checkable
class Ordering(Protocol):
    """What an ordering is: a function of the setting and the episode to the plans to run."""

    def __call__(self, setting: str, episode: "Episode") -> Sequence["Plan"]: ...


@dataclass(frozen=True)
class PlanOrder:
    """A built-in order of :func:`~fsm2kit.core.plans.build_plans` (``"middle"`` or ``"top"``)."""

    order: str

    @property
    def strategy_name(self) -> str:
        return self.order

    def __call__(self, setting: str, episode: "Episode") -> list["Plan"]:
        from ..core.plans import build_plans

        return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                           support_chunks=[s.chunk for s in episode.supports], npart=episode.npart,
                           order=self.order)

    def __repr__(self) -> str:
        return f"PlanOrder({self.order!r})"


ORDERINGS = Registry(
    "ordering",
    description="how the query slices are processed: (setting, episode) -> the plans the engine runs",
    default="middle",
)
ORDERINGS.register("middle", PlanOrder("middle"), origin="fsm2kit",
                   summary="supports mid-volume; forward to the end, then backward to the first slice (the paper's)")
ORDERINGS.register("top", PlanOrder("top"), origin="fsm2kit",
                   summary="supports first, then the query slices in ascending z (published by_volume)")


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
