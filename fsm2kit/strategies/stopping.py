"""Stopping rules: when propagation through a volume stops in one direction.

A stopping rule is a pure function of the object scores of one direction so far, in processing
order: ``rule(scores) -> bool``, True to stop that direction now (``fsm2kit segment``
propagates from a start slice up and down the scan; SAM2's object is present where its score
logit is > 0).

``patience[:N]`` (default, N = 3)
    stop after N consecutive slices with object score <= 0 (what
    :func:`fsm2kit.segment.own_scan.should_stop` does for ``--patience N``).
``none``
    never stop: segment the whole volume (``--patience 0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

from .registry import Registry

__all__ = [
    "DEFAULT_PATIENCE",
    "StoppingRule",
    "Patience",
    "NoStop",
    "NOSTOP",
    "STOPPING_RULES",
    "register_stopping_rule",
    "get_stopping_rule",
    "stop_index",
    "from_patience",
]

#: Patience of the default rule (= fsm2kit.segment.own_scan.DEFAULT_PATIENCE).
DEFAULT_PATIENCE = 3


@runtime_checkable
class StoppingRule(Protocol):
    """What a stopping rule is: ``rule(scores so far) -> stop this direction now``."""

    def __call__(self, scores: Sequence[float]) -> bool: ...


def _absent(score: float) -> bool:
    return not (score > 0)  # SAM2: the object is present iff its score logit is > 0 (NaN: absent)


@dataclass(frozen=True)
class Patience:
    """Stop after ``patience`` consecutive object scores <= 0."""

    patience: int

    def __post_init__(self) -> None:
        if isinstance(self.patience, bool) or not isinstance(self.patience, int) or self.patience < 1:
            raise ValueError(f"patience must be an integer >= 1, got {self.patience!r} ('none' runs through "
                             "the whole volume)")

    @property
    def strategy_name(self) -> str:
        return f"patience:{self.patience}"

    def __call__(self, scores: Sequence[float]) -> bool:
        n = self.patience
        return len(scores) >= n and all(_absent(s) for s in list(scores)[-n:])

    def absent_from(self, scores: Sequence[float]) -> int | None:
        """The first index of the first run of ``patience`` absent scores (None: no such run)."""
        run = 0
        for k, s in enumerate(scores):
            run = run + 1 if _absent(s) else 0
            if run == self.patience:
                return k - self.patience + 1
        return None

    def __repr__(self) -> str:
        return f"Patience({self.patience})"


@dataclass(frozen=True)
class NoStop:
    """Never stop: propagate through the whole volume."""

    @property
    def strategy_name(self) -> str:
        return "none"

    @property
    def patience(self) -> None:
        return None

    def __call__(self, scores: Sequence[float]) -> bool:
        return False

    def absent_from(self, scores: Sequence[float]) -> None:
        return None

    def __repr__(self) -> str:
        return "NoStop()"


def stop_index(rule: Callable[[Sequence[float]], bool], scores: Sequence[float]) -> int | None:
    """The index of the step after which ``rule`` stops a direction with these scores (None: never)."""
    scores = list(scores)
    for k in range(len(scores)):
        if rule(scores[: k + 1]):
            return k
    return None


def from_patience(patience: int | None):
    """The rule of a ``--patience`` value: ``Patience(n)``, or ``NoStop()`` for 0 / None."""
    if not patience:
        return NOSTOP
    if patience < 0:
        raise ValueError(f"patience must be >= 0 or None, got {patience}.")
    return Patience(int(patience))


NOSTOP = NoStop()


def _parse_patience(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError("N is a whole number of slices") from None
    if n < 1:
        raise ValueError("N >= 1; 'none' runs through the whole volume")
    return n


STOPPING_RULES = Registry(
    "stopping rule",
    description="when a direction of propagation stops: (object scores so far) -> stop now",
    default=f"patience:{DEFAULT_PATIENCE}",
)
STOPPING_RULES.register("patience", Patience, arg="N", default=DEFAULT_PATIENCE, parse=_parse_patience,
                        origin="fsm2kit",
                        summary="stop a direction after N consecutive slices with object score <= 0")
STOPPING_RULES.register("none", NOSTOP, origin="fsm2kit", summary="never stop: segment the whole volume")


def register_stopping_rule(name: str, rule: Callable | str | None = None, *, summary: str | None = None,
                           arg: str | None = None, default: object = None, parse: Callable | None = None,
                           overwrite: bool = False):
    """Register ``rule(scores so far) -> bool`` (or, with ``arg``, a factory of rules); a decorator
    when ``rule`` is omitted. See :meth:`fsm2kit.strategies.registry.Registry.register`."""
    return STOPPING_RULES.register(name, rule, summary=summary, arg=arg, default=default, parse=parse,
                                   overwrite=overwrite)


def get_stopping_rule(spec: object = None):
    """The stopping rule for a name (``None``: ``patience:3``); a rule object is returned unchanged."""
    return STOPPING_RULES.get(spec)
