"""Lazy public names for a package (PEP 562): nothing is imported until a name is used.

``import fsm2kit`` and ``fsm2kit --help`` must stay cheap (no torch, pandas or nibabel until they
are needed), so each room's ``__init__`` lists its public names and the submodule that defines
each, and this helper imports that submodule on first access.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping, Sequence

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, Sequence[str]]) -> tuple[Callable, Callable, list[str]]:
    """Return ``(__getattr__, __dir__, __all__)`` for ``package``.

    ``exports`` maps a submodule (relative, e.g. ``".engine"`` or ``"..core.engine"``) to the
    public names it defines. Submodules themselves stay importable as attributes.
    """
    where: dict[str, str] = {}
    for module, names in exports.items():
        for name in names:
            if name in where:
                raise ValueError(f"{package}: {name!r} is exported twice ({where[name]}, {module})")
            where[name] = module
    names_all = sorted(where)

    def __getattr__(name: str):
        module = where.get(name)
        if module is None and name.startswith("__"):  # __path__, __file__, ...: never a submodule
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        if module is None:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(importlib.import_module(module, package), name)
        return value

    def __dir__() -> list[str]:
        return names_all

    return __getattr__, __dir__, names_all
