"""Refinement passes: which query slices a second pass conditions on (``--refine NAME[:ARG]``).

The contract (:class:`fsm2kit.engine.passes.Refinement`): an object with ``passes`` (the number
of propagations) and ``promote(scores) -> indices``, given the :class:`~fsm2kit.engine.passes.SliceScores`
of the candidate slices (their object score, predicted IoU and support consistency). The engine
runs pass 1, scores every slice, puts the promoted slices' predicted masks into the memory bank as
conditioning memories and propagates again (:mod:`fsm2kit.engine.passes`). FQ settings only.

Built-ins:

``none`` (default)
    One pass, as FS-MedSAM2.
``revsam2:top=K[,passes=P]``
    After RevSAM2 (arXiv 2409.04298v2): promote the K slices of highest score
    (:attr:`SliceScores.score <fsm2kit.engine.passes.SliceScores.score>`, ties: earlier in
    processing order); ``top=0`` promotes nothing (equals a plain run).
``revsam2:score=T[,passes=P]``
    Promote every slice whose score is above T (0 <= T <= 1).

``P`` (default 2) is the number of propagations; each pass after the first promotes again among
the slices not yet promoted. Importing this module needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from .registry import Registry

__all__ = ["REFINEMENTS", "register_refinement", "NoRefinement", "RevSAM2", "NO_REFINEMENT"]


@dataclass(frozen=True)
class NoRefinement:
    """One pass (no refinement)."""

    passes: int = 1
    strategy_name: str = "none"

    def promote(self, scores: Sequence) -> list[int]:
        return []


NO_REFINEMENT = NoRefinement()


@dataclass(frozen=True)
class RevSAM2:
    """Promote the ``top`` best-scoring slices, or those scoring above ``threshold``, then propagate again."""

    top: int | None = None
    threshold: float | None = None
    passes: int = 2

    def __post_init__(self) -> None:
        if (self.top is None) == (self.threshold is None):
            raise ValueError("revsam2 takes top=K or score=T (one of them)")
        if self.top is not None and (isinstance(self.top, bool) or not isinstance(self.top, int) or self.top < 0):
            raise ValueError(f"revsam2:top=K takes an integer K >= 0, got {self.top!r}")
        if self.threshold is not None and not 0.0 <= float(self.threshold) <= 1.0:
            raise ValueError(f"revsam2:score=T takes T in [0, 1] (the slice score), got {self.threshold!r}")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or not 1 <= self.passes <= 10:
            raise ValueError(f"revsam2 passes=P takes an integer P in 1..10 (propagations), got {self.passes!r}")

    @classmethod
    def from_arg(cls, text: str) -> "RevSAM2":
        """``"top=3"``, ``"score=0.4"``, optionally ``",passes=3"``."""
        kw: dict = {}
        for part in str(text).split(","):
            key, sep, value = part.strip().partition("=")
            key = key.strip().lower()
            if not sep or key not in ("top", "score", "passes") or key in kw:
                raise ValueError(f"expected top=K or score=T, optionally ,passes=P; got {text!r}")
            try:
                kw[key] = float(value) if key == "score" else int(value)
            except ValueError:
                raise ValueError(f"{key}= takes {'a number' if key == 'score' else 'an integer'}, got {value!r}") from None
        return cls(top=kw.get("top"), threshold=kw.get("score"), passes=kw.get("passes", 2))

    @property
    def strategy_name(self) -> str:
        arg = f"top={self.top}" if self.top is not None else f"score={self.threshold:g}"
        return f"revsam2:{arg}" + ("" if self.passes == 2 else f",passes={self.passes}")

    def promote(self, scores: Sequence) -> list[int]:
        values = [s.score for s in scores]
        if self.top is not None:
            return sorted(sorted(range(len(values)), key=lambda i: (-values[i], i))[: self.top])
        return [i for i, v in enumerate(values) if v > self.threshold]


REFINEMENTS = Registry(
    "refinement",
    description="refinement passes of the FQ settings: score pass 1's slices, promote some to conditioning "
                "memories, propagate again ((scores) -> promoted; passes)",
    default="none",
    option="--refine",
)
REFINEMENTS.register("none", NO_REFINEMENT, origin="fsm2kit", summary="one pass (FS-MedSAM2)")
REFINEMENTS.register("revsam2", RevSAM2.from_arg, arg="top=K|score=T[,passes=P]", default="top=3", origin="fsm2kit",
                     summary="RevSAM2: score each slice (object score x predicted IoU x support consistency), "
                             "promote the K best (or all above T) to conditioning memories, propagate again "
                             "(P passes, default 2); FQ settings only",
                     details="S1SFQ, 3SFQ")


def register_refinement(name: str, rule: Callable | str | None = None, *, summary: str | None = None,
                        arg: str | None = None, default: object = None, parse: Callable | None = None,
                        overwrite: bool = False):
    """Register a refinement rule (or, with ``arg``, a factory of them); a decorator when ``rule`` is omitted."""
    return REFINEMENTS.register(name, rule, summary=summary, arg=arg, default=default, parse=parse,
                                overwrite=overwrite)
