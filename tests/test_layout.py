"""The package's architecture (ARCHITECTURE.md), checked: one concept per package, packages in a
line, unique module names, cheap imports.

Packages stand in a line; a module may import only its own package and packages to its left,
never the package top (``fsm2kit/__init__.py`` is a lazy facade over the packages) and never a
private ``_name`` of another module. Every module's basename is unique in the package, and every
package's docstring names each of its modules (what belongs to the concept, as it says).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "fsm2kit"
ROOMS = ("base", "records", "protocol", "model", "engine", "strategies", "io", "tables", "viz", "inspector", "widgets",
         "run", "segment", "studies", "batch", "cli", "testing")
BASE = ("lazy", "version")  # top-level modules: the lazy-export helper and the version


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield path, parts


def _resolve(parts: list[str], is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        return (node.module or "").split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (node.level - 1)]
    return base + (node.module.split(".") if node.module else [])


def _imports(path: Path, parts: list[str]):
    """(target module parts, imported names or None, line) for every fsm2kit import."""
    tree = ast.parse(path.read_text())
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "fsm2kit":
                    yield a.name.split("."), None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(parts, is_package, node)
            if target and target[0] == "fsm2kit":
                yield target, [a.name for a in node.names], node.lineno


def _room(parts: list[str]) -> str | None:
    if len(parts) == 2 and parts[1] in BASE:
        return "base"
    return parts[1] if len(parts) > 1 and parts[1] in ROOMS else None


def test_every_module_lives_in_a_room():
    loose = [str(p.relative_to(PKG)) for p, parts in _modules() if len(parts) > 1 and _room(parts) is None]
    assert not loose, f"modules outside the rooms {ROOMS}: {loose}"


def test_imports_flow_one_way():
    bad = []
    for path, parts in _modules():
        room = _room(parts)
        if room is None:  # the package's lazy facade
            continue
        for target, names, line in _imports(path, parts):
            where = f"{path.relative_to(PKG.parent)}:{line}"
            if len(target) == 1:
                subs = [n for n in names or [] if n in ROOMS]
                if not subs:
                    bad.append(f"{where} imports the package top ({names})")
                    continue
                target = target + [subs[0]]
            t_room = _room(target)
            if t_room is None:
                bad.append(f"{where} imports {'.'.join(target)}, which is in no room")
            elif room != "testing" and ROOMS.index(t_room) > ROOMS.index(room):
                bad.append(f"{where}: {room} imports {t_room} (to its right)")
    assert not bad, "imports against the rooms' order:\n" + "\n".join(bad)


def test_no_private_name_crosses_modules():
    bad = []
    for path, parts in _modules():
        for target, names, line in _imports(path, parts):
            private = [n for n in names or [] if n.startswith("_") and not n.startswith("__")]
            if private and target != parts:
                bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {private} from {'.'.join(target)}")
    assert not bad, "private names imported from other modules:\n" + "\n".join(bad)


def test_module_names_are_unique():
    seen: dict[str, list[str]] = {}
    for path, parts in _modules():
        if path.name not in ("__init__.py", "__main__.py"):
            seen.setdefault(path.stem, []).append(str(path.relative_to(PKG)))
    twice = {k: v for k, v in seen.items() if len(v) > 1}
    assert not twice, f"module basenames used twice (name each for what it is): {twice}"


@pytest.mark.parametrize("room", [r for r in ROOMS if r != "base"])
def test_package_docstring_names_its_modules(room):
    """A package's modules all belong to its concept, as its docstring says: the docstring names
    each module (``name`` in double back-quotes, or ``:mod:`.name```)."""
    init = PKG / room / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text())) or ""
    assert doc, f"fsm2kit/{room}/__init__.py has no docstring saying what the package's concept is"
    missing = [p.stem for p in sorted((PKG / room).glob("*.py"))
               if p.name not in ("__init__.py", "__main__.py")
               and f"``{p.stem}``" not in doc and f":mod:`.{p.stem}`" not in doc]
    assert not missing, f"fsm2kit/{room}/__init__.py's docstring does not name its modules {missing}"


def test_architecture_lists_every_package():
    text = (PKG.parent / "ARCHITECTURE.md").read_text()
    missing = [r for r in ROOMS if r != "base" and f"`{r}`" not in text]
    assert not missing, f"ARCHITECTURE.md's concept -> package table lacks {missing}"


@pytest.mark.parametrize("code", [
    "import fsm2kit, fsm2kit.cli",
    "import fsm2kit.cli; fsm2kit.cli.build_parser()",
    "import fsm2kit; fsm2kit.__all__; dir(fsm2kit)",
])
def test_cheap_imports_load_no_torch(code):
    check = f"import sys; {code}; heavy = [m for m in ('torch', 'pandas', 'nibabel', 'sam2') if m in sys.modules]; " \
            "assert not heavy, heavy"
    subprocess.run([sys.executable, "-c", check], check=True, cwd=PKG.parent)


def test_lazy_names_resolve():
    import fsm2kit

    for room in ROOMS[1:-2]:
        mod = __import__(f"fsm2kit.{room}", fromlist=["__all__"])
        assert mod.__all__, room
    assert fsm2kit.load_sam2.__module__ == "fsm2kit.model.loading"
    assert fsm2kit.Engine.__name__ == "Engine"
    with pytest.raises(AttributeError, match="no attribute"):
        fsm2kit.not_a_name  # noqa: B018
