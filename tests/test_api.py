"""The public API, checked (ARCHITECTURE.md, "The public API").

- every name a package exports resolves (all of them, not a sample), and so does every name of
  the ``fsm2kit`` facade, which re-exports package names only;
- no name is exported by two packages;
- every module path named in a docstring, a comment, the README, ARCHITECTURE.md or the other
  docs exists (``fsm2kit.x.y[.name]`` dotted paths, ``fsm2kit/x/y.py`` file paths, and relative
  ``:mod:`.name``` references in docstrings).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fsm2kit"
PACKAGES = sorted(p.name for p in PKG.iterdir() if (p / "__init__.py").exists() and p.name not in ("cli", "testing"))
DOCS = ["README.md", "ARCHITECTURE.md", "notebooks/README.md", "docs/README.md", "data/README.md",
        "benchmarks/RESULTS.md", "tests/data/README.md"]


def _exports(package: str) -> list[str]:
    return list(importlib.import_module(f"fsm2kit.{package}").__all__)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    mod = importlib.import_module(f"fsm2kit.{package}")
    assert mod.__all__, f"fsm2kit.{package} exports nothing"
    for name in mod.__all__:
        obj = getattr(mod, name)
        assert obj is not None or name.isupper(), f"fsm2kit.{package}.{name}"


def test_no_name_is_exported_twice():
    where: dict[str, list[str]] = {}
    for package in PACKAGES:
        for name in _exports(package):
            where.setdefault(name, []).append(package)
    twice = {n: p for n, p in where.items() if len(p) > 1}
    assert not twice, f"names exported by more than one package: {twice}"


def test_the_facade_re_exports_package_names():
    import fsm2kit

    owner = {n: p for p in PACKAGES for n in _exports(p)}
    for name in fsm2kit.__all__:
        if name == "__version__":
            continue
        assert name in owner, f"fsm2kit.{name} is exported by no package"
        assert getattr(fsm2kit, name) is getattr(importlib.import_module(f"fsm2kit.{owner[name]}"), name), name


# ----------------------------------------------------------------------------- paths named in text
_DOTTED = re.compile(r"(?<![\w/.])fsm2kit(?:\.[A-Za-z_]\w*)+")
_FILE = re.compile(r"(?<![\w./~-])fsm2kit/[\w/]*\w(?:\.\w+)?/?")
_REL_MOD = re.compile(r":mod:`~?(\.+[A-Za-z_][\w.]*)`")


def _resolve_dotted(path: str) -> bool:
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            try:
                obj = getattr(obj, attr)
            except AttributeError:
                return False
        return True
    return False


def _texts():
    for path in sorted(PKG.rglob("*.py")):
        yield path, path.read_text()
    for name in DOCS:
        path = ROOT / name
        if path.exists():
            yield path, path.read_text()
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        yield path, path.read_text()


def _missing_paths() -> list[str]:
    bad = []
    for path, text in _texts():
        rel = path.relative_to(ROOT)
        for m in set(_DOTTED.findall(text)):
            m = m.rstrip(".")
            if m.split(".")[-1] in ("py", "md", "json", "csv", "yaml"):
                continue  # a file name such as fsm2kit.cli.py would be a path, not a module
            if m.startswith("fsm2kit.strategies") and m.count(".") == 1:
                continue
            if not _resolve_dotted(m):
                bad.append(f"{rel}: {m}")
        for m in set(_FILE.findall(text)):
            target = ROOT / m.rstrip("/")
            if not target.exists():
                bad.append(f"{rel}: {m}")
        if path.suffix == ".py" and path.is_relative_to(PKG):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            package = parts[:-1]  # the package a relative reference starts from (also for __init__)
            for ref in set(_REL_MOD.findall(text)):
                dots = len(ref) - len(ref.lstrip("."))
                base = package[: len(package) - (dots - 1)]
                if not _resolve_dotted(".".join(base + ref.lstrip(".").split("."))):
                    bad.append(f"{rel}: :mod:`{ref}`")
    return sorted(bad)


def test_module_paths_named_in_text_exist():
    bad = _missing_paths()
    assert not bad, "module paths that do not exist (renamed or moved?):\n" + "\n".join(bad)
