"""How a strategy is named in results and provenance (no torch needed)."""

from __future__ import annotations

__all__ = ["strategy_name"]


def strategy_name(strategy: object) -> str:
    """The name a strategy is recorded under: a name given as a string, the object's
    ``strategy_name`` / ``name``, else its ``__name__`` or repr."""
    if isinstance(strategy, str):
        return strategy
    for attr in ("strategy_name", "name"):
        name = getattr(strategy, attr, None)
        if isinstance(name, str) and name:
            return name
    return getattr(strategy, "__name__", None) or repr(strategy)
