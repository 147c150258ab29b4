"""Stopping rules: when propagation through a volume stops in one direction.

``fsm2kit segment`` (:func:`fsm2kit.segment.propagation.propagation_job`) propagates from a
start slice up and down the scan; after every step of a direction it asks the rule whether that
direction stops now. The rule is the only place this decision is made. The contract:

``rule(scores) -> bool``
    ``scores`` are the object scores of one direction so far, in processing order (SAM2's
    object is present where its score logit is > 0); True stops that direction now: its later
    steps run no forward and add nothing to the memory bank.
``rule.absent_from(scores) -> int | None`` (optional)
    for analysis: the first index from which the rule calls the organ absent (None: never).

``patience[:N]`` (default, N = 3)
    stop after N consecutive slices with object score <= 0 (``fsm2kit segment --patience N`` is
    ``--stop patience:N``).
``none``
    never stop: segment the whole volume (``--patience 0``).

A user's rule, registered from a plugin module, stops ``fsm2kit segment --plugins FILE --stop NAME``::

    from fsm2kit.strategies import register_stopping_rule

    @register_stopping_rule("first_absent", summary="stop at the first slice with object score <= 0")
    def first_absent(scores):
        return len(scores) > 0 and not scores[-1] > 0
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
    "stopping_rule",
    "stop_index",
    "from_patience",
]

#: Patience of the default rule (``patience:3``).
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
        """The first index of the first run of ``patience`` absent scores (None: no such run).

        A direction with these scores processes indices up to ``i + patience - 1``; everything
        from ``i`` on is background (SAM2 predicts nothing where the score is not positive).
        """
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
        if rule(tuple(scores[: k + 1])):
            return k
    return None


def from_patience(patience: int | None):
    """The rule of a ``--patience`` value: ``Patience(n)``, or ``NoStop()`` for 0 / None."""
    if not patience:
        return NOSTOP
    if isinstance(patience, bool) or not isinstance(patience, int):
        raise ValueError(f"patience must be an integer >= 0 or None, got {patience!r}.")
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
    option="--stop",
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


def stopping_rule(stop: object = None, patience: object = ...):
    """The rule of ``stop`` (a spec, a rule object, None: the default ``patience:3``), or of
    ``patience``, the older spelling (N: ``patience:N``; 0 or None: ``none``).

    ``patience`` left out (``...``) means not given. Giving both ``stop`` and ``patience`` is a
    ValueError (one line), as is a rule object that is not callable.
    """
    if patience is not ...:
        if stop is not None:
            raise ValueError(f"give stop={_shown(stop)!r} or patience={patience!r}, not both "
                             "(patience=N is stop='patience:N', patience=None or 0 is stop='none').")
        return from_patience(patience)  # type: ignore[arg-type]
    rule = STOPPING_RULES.get(stop)
    if not callable(rule):
        raise ValueError(f"a stopping rule is a callable (object scores so far) -> bool, got {rule!r}")
    return rule


def _shown(stop: object) -> str:
    from ..records.naming import strategy_name

    return strategy_name(stop)
