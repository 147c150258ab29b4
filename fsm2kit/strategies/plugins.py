"""A user's own strategies, in other processes: plugin modules and entry points.

In a notebook, strategies registered in a cell serve that kernel. The command line and sweep
workers are other processes, so they import a *plugin module* first, whose import registers
the strategies (``register_ordering(...)``, ``register_memory_policy(...)``, ...)::

    fsm2kit run ... --plugins my_strategies --memory-policy cond_only
    # sweep file:  plugins: [my_strategies]      (each run's notebook gets plugins=[...])

A plugin is a module name (importable: installed, or on ``PYTHONPATH``) or the path of a
``.py`` file. An installed package can instead register through the entry-point group
``fsm2kit.strategies``; those load once, lazily, the first time any registry is read::

    [project.entry-points."fsm2kit.strategies"]
    mine = "my_package.strategies"              # a module: importing it registers
    more = "my_package.strategies:register"     # a callable: called with no argument
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType
from typing import Iterable

__all__ = ["ENTRY_POINT_GROUP", "PluginError", "load_plugins", "load_plugin", "load_entry_points", "plugin_errors"]

#: The entry-point group installed packages register strategies through.
ENTRY_POINT_GROUP = "fsm2kit.strategies"

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_state = {"entry_points": "idle"}  # idle | loading | done
_loaded_entry_points: set[tuple[str, str]] = set()
_errors: list[str] = []


class PluginError(ValueError):
    """A plugin module that cannot be found or fails while it is imported (one-line message)."""


def _is_file(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or os.sep in spec


def load_plugin(spec: str) -> ModuleType:
    """Import one plugin module (a module name or a ``.py`` file); its import registers its strategies.

    A module already imported is not imported again (its registrations stand).

    Raises
    ------
    PluginError
        The module cannot be found, or its import fails (the message names the module).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise PluginError(f"a plugin is a module name or a .py file, got {spec!r}")
    spec = spec.strip()
    if _is_file(spec):
        return _load_file(spec)
    if not _MODULE.match(spec):
        raise PluginError(f"plugin {spec!r} is neither a module name (a.b.c) nor a .py file")
    if spec in sys.modules:
        return sys.modules[spec]
    try:
        return importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name and (spec == e.name or spec.startswith(e.name + ".")):
            raise PluginError(f"plugin module {spec!r} not found: install it or put its folder on PYTHONPATH "
                              "(or give the path of the .py file)") from None
        raise PluginError(f"plugin module {spec!r} failed to import: {type(e).__name__}: {e}") from e
    except Exception as e:
        raise PluginError(f"plugin module {spec!r} failed to import: {type(e).__name__}: {_line(e)}") from e


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())


def _load_file(spec: str) -> ModuleType:
    path = Path(os.path.expanduser(spec)).resolve()
    if not path.is_file():
        raise PluginError(f"plugin file {spec!r} not found")
    name = path.stem
    if not _MODULE.match(name) or "." in name:
        raise PluginError(f"plugin file {spec!r}: its name must be a Python identifier (it becomes the module name)")
    have = sys.modules.get(name)
    if have is not None:
        if getattr(have, "__file__", None) and Path(have.__file__).resolve() == path:
            return have
        raise PluginError(f"plugin file {spec!r}: a different module named {name!r} is already imported; rename the file")
    mspec = importlib.util.spec_from_file_location(name, path)
    if mspec is None or mspec.loader is None:
        raise PluginError(f"plugin file {spec!r} cannot be imported")
    module = importlib.util.module_from_spec(mspec)
    sys.modules[name] = module
    try:
        mspec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise PluginError(f"plugin file {spec!r} failed to import: {type(e).__name__}: {_line(e)}") from e
    return module


def load_plugins(modules: str | Iterable[str] | None) -> list[str]:
    """Import plugin modules in order (``--plugins``, a sweep's ``plugins:``); returns their names.

    ``None`` or an empty list does nothing. Entry points are loaded first, so a plugin module
    may build on strategies an installed package registers.
    """
    if modules is None:
        return []
    if isinstance(modules, str):
        modules = [modules]
    load_entry_points()
    return [load_plugin(m).__name__ for m in modules]


def load_entry_points(*, reload: bool = False) -> list[str]:
    """Load the ``fsm2kit.strategies`` entry points (once; ``reload=True`` looks again for new ones).

    Each entry point's object is a module (importing it registers) or a callable (called with no
    argument). One that fails is reported with a ``RuntimeWarning`` and in :func:`plugin_errors`
    (and in unknown-name messages), and does not stop the others. Returns the names loaded now.
    """
    if _state["entry_points"] == "loading" or (_state["entry_points"] == "done" and not reload):
        return []
    _state["entry_points"] = "loading"
    done: list[str] = []
    try:
        try:
            eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
        except Exception as e:  # broken metadata somewhere on sys.path
            _report(f"reading entry points failed: {type(e).__name__}: {_line(e)}")
            return done
        for ep in eps:
            key = (ep.name, ep.value)
            if key in _loaded_entry_points:
                continue
            _loaded_entry_points.add(key)
            try:
                obj = ep.load()
                if not isinstance(obj, ModuleType) and callable(obj):
                    obj()
            except Exception as e:
                _report(f"entry point {ep.name} = {ep.value}: {type(e).__name__}: {_line(e)}")
                continue
            done.append(ep.name)
    finally:
        _state["entry_points"] = "done"
    return done


def _report(message: str) -> None:
    _errors.append(message)
    warnings.warn(f"fsm2kit strategies plugin: {message}", RuntimeWarning, stacklevel=3)


def plugin_errors() -> tuple[str, ...]:
    """Messages of entry points that failed to load (this process)."""
    return tuple(_errors)
