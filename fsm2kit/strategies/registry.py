"""A registry of named strategies: one list for docs, CLI choices and validation.

Every strategy family (orderings, support selectors, memory policies, stopping rules) keeps a
:class:`Registry`: ``name -> strategy`` with a one-line summary. A strategy is asked for by a
*spec*, ``NAME`` or ``NAME:ARG`` (``"patience:3"``, ``"given:12,20,31"``)::

    >>> from fsm2kit.strategies import STOPPING_RULES
    >>> STOPPING_RULES.get("patience:5")
    Patience(5)
    >>> STOPPING_RULES.get("patience").strategy_name      # the default argument, recorded
    'patience:3'

:meth:`Registry.get` returns the strategy object carrying its full spec as ``strategy_name``
(:func:`fsm2kit.records.naming.strategy_name` reads it for provenance); a strategy object given
instead of a spec is returned unchanged. Unknown names and bad arguments raise a one-line
``ValueError`` that lists the registered names.

Registering: ``register(name, obj)`` for a strategy that takes no argument, or
``register(name, factory, arg="N", parse=int, default="3")`` for one built from an argument
(``factory(parse(text))``). ``obj`` may also be a ``"module:attribute"`` string, imported the
first time it is asked for (how built-ins that need torch stay cheap to list). Taking a
registered name needs ``overwrite=True``.

The first read of any registry also loads the strategies that installed packages register
through the entry-point group ``fsm2kit.strategies`` (:func:`fsm2kit.strategies.plugins.load_entry_points`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

__all__ = ["Entry", "Registry", "NamedStrategy", "named", "parse_spec", "parse_index", "registries", "FAMILY_MODULES"]

#: The built-in families, in display order: ``family -> module``. Each module defines its family's
#: contract, built-ins and one :class:`Registry` (with the command-line ``option`` that takes its
#: specs). Adding a family is that module plus one line here: ``fsm2kit strategies`` lists it and
#: :func:`fsm2kit.cli.common.add_strategy_args` offers its option to the commands that apply it.
FAMILY_MODULES: dict[str, str] = {
    "ordering": "fsm2kit.strategies.orderings",
    "support selector": "fsm2kit.strategies.support_selectors",
    "memory policy": "fsm2kit.strategies.memory_policies",
    "stopping rule": "fsm2kit.strategies.stopping",
    "refinement": "fsm2kit.strategies.refinement",
    "ensemble": "fsm2kit.strategies.ensembles",
}

_ALL: dict[str, "Registry"] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_.+-]*$")


def registries() -> dict[str, "Registry"]:
    """Every registry, built-in families first (in :data:`FAMILY_MODULES` order), by family name."""
    for module in FAMILY_MODULES.values():
        importlib.import_module(module)
    first = [f for f in FAMILY_MODULES if f in _ALL]
    return {f: _ALL[f] for f in first + [f for f in _ALL if f not in FAMILY_MODULES]}


def parse_index(text: str, what: str) -> int:
    """An argument that is an integer >= 0 (a slice index, a seed); ``what`` says so in the error,
    e.g. ``"Z is a slice index, an integer >= 0"``."""
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what}, got {text!r}") from None
    if n < 0:
        raise ValueError(f"{what}, got {n}")
    return n


def parse_spec(spec: str) -> tuple[str, str | None]:
    """``"NAME"`` -> ``("name", None)``; ``"NAME:ARG"`` -> ``("name", "ARG")`` (name lower-cased)."""
    if not isinstance(spec, str):
        raise TypeError(f"a strategy spec is a string NAME or NAME:ARG, got {spec!r}")
    name, sep, arg = spec.strip().partition(":")
    return name.strip().lower(), (arg.strip() if sep else None)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _describe_obj(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    mod = getattr(obj, "__module__", None)
    qual = getattr(obj, "__qualname__", None)
    if mod and qual and callable(obj) and not isinstance(obj, type) and "<locals>" not in qual:
        return f"{mod}.{qual}"
    return repr(obj)


class NamedStrategy:
    """A strategy under the name it was registered with (calls and attributes go to it).

    Used when the object does not name itself (a plain function, say): ``strategy_name`` is the
    spec it was asked for; ``strategy`` is the object itself.
    """

    __slots__ = ("strategy", "strategy_name", "family")

    def __init__(self, strategy: object, name: str, family: str = "strategy") -> None:
        object.__setattr__(self, "strategy", strategy)
        object.__setattr__(self, "strategy_name", name)
        object.__setattr__(self, "family", family)

    def __call__(self, *args, **kwargs):
        return self.strategy(*args, **kwargs)

    def __getattr__(self, attr: str):
        if attr in NamedStrategy.__slots__:  # not yet set (copy/pickle): no recursion
            raise AttributeError(attr)
        return getattr(self.strategy, attr)

    def __setattr__(self, attr, value):
        raise AttributeError("NamedStrategy is read-only")

    def __reduce__(self):
        return (NamedStrategy, (self.strategy, self.strategy_name, self.family))

    def __repr__(self) -> str:
        return f"<{self.family} {self.strategy_name!r}: {_describe_obj(self.strategy)}>"


def _own_name(obj: object) -> str | None:
    for attr in ("strategy_name", "name"):
        value = getattr(obj, attr, None)
        if isinstance(value, str) and value:
            return value
    return None


def named(obj: object, spec: str, family: str = "strategy") -> object:
    """``obj`` itself when it already carries ``spec`` (or a spec of the same name), else a
    :class:`NamedStrategy` that does."""
    own = _own_name(obj)
    if own is not None and (own == spec or own.partition(":")[0].strip().lower() == spec.partition(":")[0]):
        return obj
    return NamedStrategy(obj, spec, family)


@dataclass(frozen=True, eq=False)
class Entry:
    """One registered strategy.

    Attributes
    ----------
    family, name, summary : str
        The registry's family, the name (lower case), a one-line description.
    target : object
        The strategy (``arg`` None) or a factory called with the parsed argument; a
        ``"module:attribute"`` string is imported on first use.
    arg : str or None
        The argument's placeholder in usage lines (``"N"``); None: the strategy takes no argument.
    default : str or None
        The argument used for a plain ``NAME`` (None with ``arg``: the argument is required).
    parse : callable
        Turns the argument text into the factory's argument (default: the text itself).
    origin : str
        The module that registered the entry (``"fsm2kit"`` for built-ins).
    details : str
        Extra words for listings, e.g. which contract a support selector serves.
    """

    family: str
    name: str
    summary: str
    target: object = field(repr=False)
    arg: str | None = None
    default: str | None = None
    parse: Callable[[str], Any] | None = field(default=None, repr=False)
    origin: str = ""
    details: str = ""

    @property
    def usage(self) -> str:
        """``"name"``, ``"name:ARG"`` (argument required) or ``"name[:ARG]"`` (optional)."""
        if self.arg is None:
            return self.name
        return f"{self.name}[:{self.arg}]" if self.default is not None else f"{self.name}:{self.arg}"

    @property
    def builtin(self) -> bool:
        return self.origin == "fsm2kit"

    def row(self) -> dict:
        """A tidy row: family, name, usage, default argument, summary, details, origin."""
        return {"family": self.family, "name": self.name, "usage": self.usage, "default_arg": self.default,
                "summary": self.summary, "details": self.details, "origin": self.origin}

    def __repr__(self) -> str:
        extra = f" [{self.details}]" if self.details else ""
        origin = "" if self.builtin else f" (from {self.origin})"
        return f"Entry({self.family} {self.usage!r}: {self.summary}{extra}{origin})"


class Registry:
    """``name -> strategy`` of one family, with one-line summaries.

    Parameters
    ----------
    family : str
        What the strategies are, in messages (``"stopping rule"``).
    description : str
        One line on the family's contract (listings).
    default : str, optional
        The spec :meth:`get` resolves for ``None``.
    coerce : callable, optional
        ``coerce(obj, spec) -> strategy``: how a registered object or a factory's product becomes
        the strategy carrying ``spec`` (default :func:`named`).
    listed : bool
        Whether :func:`registries` (and ``fsm2kit strategies``) include it (a family of a plugin:
        yes; a scratch registry in a test: no).
    option : str, optional
        The command-line option that takes this family's specs (``"--stop"``); its ``dest`` is
        :attr:`dest` (``"stop"``). None: no command offers it.
    """

    def __init__(self, family: str, *, description: str = "", default: str | None = None,
                 coerce: Callable[[object, str], object] | None = None, listed: bool = True,
                 option: str | None = None) -> None:
        if option is not None and not re.match(r"^--[a-z][a-z0-9-]*$", option):
            raise ValueError(f"{family}: option must look like '--name', got {option!r}")
        self.family = family
        self.description = _one_line(description)
        self.default = default
        self.option = option
        self._coerce = coerce
        self._entries: dict[str, Entry] = {}
        self._cache: dict[str, object] = {}
        if listed:
            _ALL[family] = self

    @property
    def dest(self) -> str | None:
        """The attribute the command line stores :attr:`option` in (``"--memory-policy"`` -> ``"memory_policy"``)."""
        return None if self.option is None else self.option[2:].replace("-", "_")

    # ------------------------------------------------------------------ writing
    def register(self, name: str, obj_or_factory: object = None, *, summary: str | None = None,
                 arg: str | None = None, default: object = None, parse: Callable[[str], Any] | None = None,
                 details: str = "", overwrite: bool = False, origin: str | None = None):
        """Register a strategy (``arg`` None) or a factory of strategies (``arg`` the argument's name).

        Parameters
        ----------
        name : str
            Lower-case letters, digits and ``_.+-``, starting with a letter (no ``:``).
        obj_or_factory : object, or ``"module:attribute"``
            Omitted: returns a decorator (``@registry.register("mine", summary=...)``).
        summary : str
            One line; default the first line of the object's docstring.
        arg, default, parse
            See :class:`Entry`; ``default`` is kept as text (``default=3`` -> ``"3"``).
        details : str
            Extra words for listings.
        overwrite : bool
            Needed to replace a registered name.
        origin : str, optional
            Who registers (default: the calling module).

        Returns
        -------
        obj_or_factory (so the method works as a decorator).
        """
        if obj_or_factory is None:
            def decorator(obj):
                self.register(name, obj, summary=summary, arg=arg, default=default, parse=parse, details=details,
                              overwrite=overwrite, origin=origin or getattr(obj, "__module__", None))
                return obj
            return decorator
        key = str(name).strip().lower()
        if not _NAME.match(key):
            raise ValueError(f"{self.family} name {name!r} is not valid: use lower-case letters, digits and _.+- "
                             "starting with a letter (':' separates the argument).")
        if key in self._entries and not overwrite:
            old = self._entries[key]
            raise ValueError(f"{self.family} {key!r} is already registered (by {old.origin}: {old.summary}); "
                             "pass overwrite=True to replace it.")
        if summary is None:
            doc = getattr(obj_or_factory, "__doc__", None) if not isinstance(obj_or_factory, str) else None
            summary = (doc or "").strip().splitlines()[0] if (doc or "").strip() else ""
        if not str(summary).strip():
            raise ValueError(f"{self.family} {key!r}: give summary='one line on what it does'.")
        if "\n" in str(summary).strip():
            raise ValueError(f"{self.family} {key!r}: the summary must be one line.")
        if isinstance(obj_or_factory, str) and ":" not in obj_or_factory:
            raise ValueError(f"{self.family} {key!r}: a string target must be 'module:attribute', got {obj_or_factory!r}.")
        if arg is None and (default is not None or parse is not None):
            raise ValueError(f"{self.family} {key!r}: default= and parse= need arg= (the argument's name).")
        if origin is None:
            origin = _caller_module()
        self._entries[key] = Entry(self.family, key, _one_line(summary), obj_or_factory, arg,
                                   None if default is None else str(default), parse, origin, _one_line(details))
        for spec in [s for s in self._cache if parse_spec(s)[0] == key]:
            del self._cache[spec]
        return obj_or_factory

    def unregister(self, name: str) -> Entry:
        """Remove a registered name (returns its entry)."""
        key = str(name).strip().lower()
        if key not in self._entries:
            raise ValueError(self._unknown(key))
        for spec in [s for s in self._cache if parse_spec(s)[0] == key]:
            del self._cache[spec]
        return self._entries.pop(key)

    # ------------------------------------------------------------------ reading
    def _load(self, plugins: bool) -> None:
        if plugins:
            from .plugins import load_entry_points

            load_entry_points()

    def entries(self, *, plugins: bool = True) -> tuple[Entry, ...]:
        """Every entry, in registration order (``plugins=False``: without loading entry points)."""
        self._load(plugins)
        return tuple(self._entries.values())

    def names(self, *, plugins: bool = True) -> tuple[str, ...]:
        """Registered names, in registration order (built-ins first)."""
        return tuple(e.name for e in self.entries(plugins=plugins))

    def usages(self, *, plugins: bool = True) -> tuple[str, ...]:
        """``name``, ``name:ARG`` or ``name[:ARG]`` of every entry (what a user may type)."""
        return tuple(e.usage for e in self.entries(plugins=plugins))

    def entry(self, name: str) -> Entry:
        """The entry of ``name`` (or of a spec ``name:arg``)."""
        key = parse_spec(name)[0]
        self._load(True)
        if key not in self._entries:
            raise ValueError(self._unknown(key, name))
        return self._entries[key]

    def describe(self, *, plugins: bool = True) -> list[dict]:
        """Tidy rows (``pandas.DataFrame(registry.describe())``): see :meth:`Entry.row`."""
        return [e.row() for e in self.entries(plugins=plugins)]

    def __contains__(self, spec: object) -> bool:
        if not isinstance(spec, str):
            return False
        self._load(True)
        return parse_spec(spec)[0] in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.entries())

    def _unknown(self, key: str, spec: object = None) -> str:
        from .plugins import plugin_errors

        shown = spec if isinstance(spec, str) else key
        have = ", ".join(e.usage for e in self._entries.values()) or "none"
        msg = (f"unknown {self.family} {shown!r}; registered: {have} "
               "(fsm2kit strategies lists them; --plugins MODULE adds your own)")
        errors = plugin_errors()
        if errors:
            msg += f"; plugins that failed to load: {'; '.join(errors)}"
        return msg

    def get(self, spec: object = None) -> object:
        """The strategy for ``spec`` (``NAME`` or ``NAME:ARG``), carrying the full spec as ``strategy_name``.

        ``None`` resolves the registry's default; any other non-string (a strategy object) is
        returned unchanged.

        Raises
        ------
        ValueError
            One line: an unknown name (listing the registered ones), an argument given to a
            strategy that takes none, a missing or bad argument (with the usage).
        """
        if spec is None:
            if self.default is None:
                raise ValueError(f"no {self.family} given and the registry has no default; "
                                 f"registered: {', '.join(self.usages())}")
            spec = self.default
        if not isinstance(spec, str):
            return spec
        key, arg = parse_spec(spec)
        self._load(True)
        entry = self._entries.get(key)
        if entry is None:
            raise ValueError(self._unknown(key, spec))
        if entry.arg is None and arg is not None:
            raise ValueError(f"{self.family} {key!r} takes no argument, got {spec!r}; usage: {entry.usage}")
        if entry.arg is not None:
            if arg is None or arg == "":
                arg = entry.default
            if arg is None:
                raise ValueError(f"{self.family} {key!r} needs an argument: {entry.usage} ({entry.summary})")
        canonical = key if arg is None else f"{key}:{arg}"
        if canonical in self._cache:
            return self._cache[canonical]
        target = _resolve(entry)
        if entry.arg is None:
            obj = target
        else:
            try:
                value = entry.parse(arg) if entry.parse is not None else arg
                obj = target(value)
            except (ValueError, TypeError) as e:
                raise ValueError(f"{self.family} {spec!r}: bad argument {arg!r} ({_one_line(e)}); "
                                 f"usage: {entry.usage} ({entry.summary})") from None
        obj = self._coerce(obj, canonical) if self._coerce is not None else named(obj, canonical, self.family)
        self._cache[canonical] = obj
        return obj

    __call__ = get

    def __repr__(self) -> str:
        shown = ", ".join(e.usage for e in self._entries.values())
        default = f"; default {self.default}" if self.default else ""
        return f"Registry({self.family}: {shown}{default})"


def _resolve(entry: Entry) -> object:
    target = entry.target
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"{entry.family} {entry.name!r}: cannot load {target!r} ({type(e).__name__}: {e})") from None
    return obj


def _caller_module() -> str:
    """The first module outside ``fsm2kit.strategies`` on the stack (who registers)."""
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        mod = frame.f_globals.get("__name__", "")
        if mod and not mod.startswith("fsm2kit.strategies.") and not mod.startswith("importlib"):
            return mod
        frame = frame.f_back
    return "?"
