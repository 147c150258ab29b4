"""Sweep files: a notebook x a parameter grid, validated and expanded into runs (see :mod:`.sweeps`)."""

from __future__ import annotations

import ast
import datetime
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..records.fileio import file_sha256, file_sha256_cached, folder_digest

__all__ = ['KERNEL_NAME', 'DONE_MARKER', 'FAILED_MARKER', 'SWEEP_KEYS', 'KERNEL_ENV', 'WORK_DIR', 'Sweep', 'RunSpec',
           'load_sweep', 'safe_name', 'value_text', 'require_module', 'plugin_digest', 'inputs_digest']

KERNEL_NAME = "python3"
DONE_MARKER = "done.json"
FAILED_MARKER = "failed.json"
SWEEP_KEYS = ("name", "notebook", "run_name", "grid", "parameters", "export_html", "timeout", "description",
              "plugins")
#: Environment variables set for every run's kernel (on a copy of the worker's environment).
KERNEL_ENV = {"TQDM_DISABLE": "1"}
#: The sweep's own work folder under ``reports/<sweep>/``: temporary, failed and stale run folders.
#: Run names never start with ``.`` (:func:`safe_name`), so no run can be or reach it.
WORK_DIR = ".fsm2kit-work"
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


# ============================================================================ sweeps
def safe_name(text: str) -> str:
    s = _SAFE.sub("_", str(text)).strip("._")
    if not s:
        raise ValueError(f"{text!r} gives an empty file name; use letters, digits, '.', '_', '-', '='.")
    return s[:120]


def value_text(v) -> str:
    if isinstance(v, dict):  # e.g. {dataset: folder}: named by its keys
        return "+".join(str(k) for k in v)
    if isinstance(v, (list, tuple)):
        return "+".join(value_text(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _expand(v):
    if isinstance(v, str):
        return os.path.expandvars(os.path.expanduser(v)) if ("$" in v or v.startswith("~")) else v
    if isinstance(v, list):
        return [_expand(x) for x in v]
    if isinstance(v, dict):
        return {k: _expand(x) for k, x in v.items()}
    return v


@dataclass(frozen=True, eq=False)
class RunSpec:
    """One notebook run of a sweep (what a Dask worker executes)."""

    sweep: str
    name: str
    notebook: str
    parameters: dict
    sweep_dir: str
    export_html: bool = True
    timeout: float | None = None
    kernel_name: str = KERNEL_NAME
    plugins: tuple[str, ...] = ()

    @property
    def notebook_parameters(self) -> dict:
        """What papermill injects: the run's parameters, plus ``plugins`` when the sweep has some."""
        params = dict(self.parameters)
        if self.plugins:
            params["plugins"] = list(self.plugins)
        return params

    @property
    def folder(self) -> Path:
        return Path(self.sweep_dir) / self.name

    @property
    def work_dir(self) -> Path:
        """The sweep's hidden work folder (:data:`WORK_DIR`), out of reach of run names."""
        return Path(self.sweep_dir) / WORK_DIR

    @property
    def failed_folder(self) -> Path:
        """The last failed attempt: ``<sweep>/.fsm2kit-work/failed/<run>/``."""
        return self.work_dir / "failed" / self.name

    def fingerprint(self) -> dict:
        """Hashes of what makes the run's result (sha256 each), recorded in ``done.json``: its
        parameters (plugins included), the notebook file's content, the plugins' source
        (:func:`plugin_digest`) and the contents of file-valued parameters (:func:`inputs_digest`:
        a checkpoint or prompt file by its sha256, a data folder by its listing and sizes)."""
        text = json.dumps(_jsonable(self.notebook_parameters), sort_keys=True)
        return {"parameters": hashlib.sha256(text.encode()).hexdigest(), "notebook": file_sha256(self.notebook),
                "plugins": plugin_digest(self.plugins), "inputs": inputs_digest(self.parameters)}

    def in_the_way(self) -> str:
        """Why the run's folder cannot simply be replaced by the batch ("" when it can: absent,
        or a finished run of this sweep holding only the files it recorded, unchanged since)."""
        folder = self.folder
        if not folder.exists() and not folder.is_symlink():
            return ""
        if folder.is_symlink() or not folder.is_dir():
            return f"{folder.name} is {'a link' if folder.is_symlink() else 'a file'}, not a run folder"
        marker = folder / DONE_MARKER
        try:
            rec = json.loads(marker.read_text())
            assert isinstance(rec, dict)
        except (OSError, ValueError, AssertionError):
            names = sorted(p.name for p in folder.iterdir())
            return ("an empty folder the batch did not write" if not names else
                    f"not a finished run of this sweep (no readable {DONE_MARKER}; it holds "
                    f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''})")
        if rec.get("sweep") != self.sweep or rec.get("run") != self.name:
            return f"its {DONE_MARKER} belongs to run {rec.get('run')!r} of sweep {rec.get('sweep')!r}"
        listed = set(rec.get("all_files") or rec.get("files") or ()) | {DONE_MARKER}
        t_done = marker.stat().st_mtime
        added, changed = [], []
        for p in sorted(folder.rglob("*")):
            if p.is_dir() and not p.is_symlink():
                continue
            rel = str(p.relative_to(folder))
            if rel not in listed:
                added.append(rel)
            elif rel != DONE_MARKER and p.lstat().st_mtime > t_done + 1:
                changed.append(rel)
        why = []
        if added:
            why.append(f"files the run did not write: {', '.join(added[:3])}{' ...' if len(added) > 3 else ''}")
        if changed:
            why.append(f"files changed since it finished: {', '.join(changed[:3])}{' ...' if len(changed) > 3 else ''}")
        return "; ".join(why)

    def state(self) -> tuple[str, str]:
        """``("done", "")`` for a finished run with this fingerprint; ``("changed", why)`` for a
        finished run made with other parameters or another notebook; ``("pending", "")`` else."""
        marker = self.folder / DONE_MARKER
        if not marker.is_file():
            return "pending", ""
        try:
            rec = json.loads(marker.read_text())
            old = rec.get("fingerprint") or {}
        except (OSError, ValueError, AttributeError):
            return "changed", f"its {DONE_MARKER} cannot be read"
        if not old:
            return "changed", "no fingerprint recorded (made by an older fsm2kit)"
        now = self.fingerprint()
        why = []
        if old.get("parameters") != now["parameters"]:
            before = {**(rec.get("parameters") or {}), "plugins": rec.get("plugins") or []}
            after = _jsonable({**self.parameters, "plugins": list(self.plugins)})
            diff = [f"{k}: {value_text(before.get(k))} -> {value_text(after.get(k))}"
                    for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
            why.append("changed parameters" + (f" ({'; '.join(diff)})" if diff else ""))
        if old.get("notebook") != now["notebook"]:
            why.append(f"notebook changed ({Path(self.notebook).name})")
        if old.get("plugins") != now["plugins"]:
            why.append("plugin source changed" if "plugins" in old else "no plugin hash recorded (older fsm2kit)")
        if old.get("inputs") != now["inputs"]:
            why.append("the contents of file parameters changed (checkpoint, prompts or data)" if "inputs" in old
                       else "no input hashes recorded (older fsm2kit)")
        return ("changed", ", ".join(why)) if why else ("done", "")

    @property
    def done(self) -> bool:
        """Finished with the current parameters and notebook (:meth:`state`)."""
        return self.state()[0] == "done"

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.notebook_parameters.items())
        return f"RunSpec({self.sweep}/{self.name}: {Path(self.notebook).name}({params}))"


@dataclass(frozen=True)
class Sweep:
    """A parsed sweep file: a notebook, a parameter grid and fixed parameters.

    Attributes
    ----------
    name : str
        Folder name under the reports folder.
    notebook : Path
        Absolute path of the notebook.
    grid : tuple of (name, values)
        Parameters varied over (cartesian product, in this order).
    parameters : tuple of (name, value)
        Parameters shared by all runs.
    run_name : str or None
        ``str.format`` template of run folder names (default ``k1=v1_k2=v2`` of the grid).
    plugins : tuple of str
        Plugin modules (or absolute ``.py`` paths) each run's notebook loads (parameter ``plugins``).
    """

    name: str
    notebook: Path
    grid: tuple[tuple[str, tuple], ...]
    parameters: tuple[tuple[str, object], ...]
    run_name: str | None = None
    export_html: bool = True
    timeout: float | None = None
    source: Path | None = None
    description: str = ""
    declared: tuple[str, ...] = field(default=(), repr=False)
    plugins: tuple[str, ...] = ()

    def runs(self, reports: str | os.PathLike = "reports") -> list[RunSpec]:
        """Every run of the grid, with its folder under ``reports/<name>/``."""
        sweep_dir = Path(reports).resolve() / self.name
        keys = [k for k, _ in self.grid]
        fixed = dict(self.parameters)
        nb_params = self.declared or tuple(_notebook_parameters(self.notebook))
        specs, seen = [], {}
        combos = itertools.product(*[vals for _, vals in self.grid]) if self.grid else [()]
        for combo in combos:
            params = {**fixed, **dict(zip(keys, combo))}
            if self.run_name:
                try:
                    name = self.run_name.format(**params)
                except (KeyError, IndexError, ValueError) as e:
                    raise ValueError(
                        f"run_name {self.run_name!r} of sweep {self.name!r} cannot be filled from "
                        f"the parameters {sorted(params)}: {e!r}."
                    ) from None
            else:
                name = "_".join(f"{k}={value_text(v)}" for k, v in zip(keys, combo)) or "run"
            name = safe_name(name)
            if name in seen:
                raise ValueError(
                    f"Sweep {self.name!r}: runs {seen[name]} and {params} both get the folder name "
                    f"{name!r}; make run_name include every grid parameter."
                )
            seen[name] = params
            if "output_dir" in nb_params:
                params["output_dir"] = "."
            specs.append(RunSpec(self.name, name, str(self.notebook), _expand(params), str(sweep_dir),
                                 self.export_html, self.timeout, plugins=self.plugins))
        return specs

    def __repr__(self) -> str:
        n = 1
        for _, v in self.grid:
            n *= len(v)
        grid = " x ".join(f"{k}[{len(v)}]" for k, v in self.grid) or "one run"
        plugins = f", plugins {list(self.plugins)}" if self.plugins else ""
        return f"Sweep({self.name!r}: {self.notebook.name}, {grid} = {n} runs, {len(self.parameters)} fixed{plugins})"


def plugin_digest(plugins) -> str:
    """sha256 of the plugins' source: a ``.py`` file's content; a module's file (every ``.py``
    file under it for a package), found without importing it; a module that cannot be found
    counts by its name."""
    import importlib.util

    h = hashlib.sha256()
    for m in plugins:
        h.update(f"{m}\0".encode())
        files: list[Path] = []
        if m.endswith(".py") or os.sep in m or "/" in m:
            files = [Path(m)]
        else:
            try:
                spec = importlib.util.find_spec(m)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and os.path.isfile(spec.origin):
                origin = Path(spec.origin)
                files = sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]
        for f in files:
            h.update(f"{f.name}\0{file_sha256_cached(f) if f.is_file() else 'missing'}\n".encode())
    return h.hexdigest()


def inputs_digest(parameters) -> str:
    """sha256 of the contents of the file-valued parameters: every string value (in lists and
    mappings too) naming an existing file counts by its sha256 (remembered per (path, size,
    mtime): :func:`~fsm2kit.records.fileio.file_sha256_cached`), a folder by its listing and sizes
    (:func:`~fsm2kit.records.fileio.folder_digest`)."""
    h = hashlib.sha256()

    def visit(key: str, v) -> None:
        if isinstance(v, dict):
            for k in sorted(v, key=str):
                visit(f"{key}.{k}", v[k])
        elif isinstance(v, (list, tuple)):
            for i, x in enumerate(v):
                visit(f"{key}[{i}]", x)
        elif isinstance(v, str) and v and len(v) < 4096:
            p = Path(os.path.expanduser(v))
            try:
                if p.is_file():
                    h.update(f"{key}\0file\0{file_sha256_cached(p)}\n".encode())
                elif p.is_dir():
                    h.update(f"{key}\0folder\0{folder_digest(p)}\n".encode())
            except OSError:
                pass

    for k in sorted(parameters):
        visit(k, parameters[k])
    return h.hexdigest()


def require_module(module: str):
    """Import an optional dependency of batch runs, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(
            f"fsm2kit batch needs {module} ({e}); install the sweeps extra: bash scripts/install.sh VENV sweeps, "
            "or pip install 'fsm2kit[sweeps]' (papermill, nbconvert, ipykernel, dask[distributed], cryptography)."
        ) from None


def _jsonable(obj):
    """``obj`` as it reads back from JSON (what ``done.json`` records)."""
    return json.loads(json.dumps(obj, default=str))


def _notebook_parameters(path: Path) -> dict:
    pm = require_module("papermill")
    return pm.inspect_notebook(str(path))


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read and check a sweep YAML file (see the module docstring for the schema).

    Raises
    ------
    FileNotFoundError
        The sweep file or its notebook does not exist.
    ValueError
        Unknown keys, a malformed grid, or parameters the notebook does not declare.
    """
    yaml = require_module("yaml")

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Sweep file {str(path)!r} not found (expected a YAML file, e.g. sweeps/smoke_2x2.yaml).")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ValueError(f"Sweep file {str(path)!r} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"Sweep file {str(path)!r} must hold a mapping with keys {list(SWEEP_KEYS)}; got {type(data).__name__}.")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"Sweep file {str(path)!r}: unknown keys {unknown}; allowed: {list(SWEEP_KEYS)}.")
    if "notebook" not in data:
        raise ValueError(f"Sweep file {str(path)!r} has no 'notebook:' (path of the notebook, relative to the sweep file).")
    nb = Path(os.path.expanduser(str(data["notebook"])))
    nb = (nb if nb.is_absolute() else path.parent / nb).resolve()
    if not nb.is_file():
        raise FileNotFoundError(f"Sweep {str(path)!r}: notebook {str(nb)!r} not found (paths are relative to the sweep file).")
    grid_in = data.get("grid") or {}
    fixed_in = data.get("parameters") or {}
    if not isinstance(grid_in, dict) or not isinstance(fixed_in, dict):
        raise ValueError(f"Sweep {str(path)!r}: 'grid' and 'parameters' must be mappings of parameter names.")
    grid = []
    for k, v in grid_in.items():
        if v is None:
            raise ValueError(f"Sweep {str(path)!r}: grid parameter {k!r} is null ('{k}:' with nothing after "
                             f"it); give its values as a list, e.g. {k}: [a, b].")
        vals = tuple(v) if isinstance(v, list) else (v,)
        if not vals:
            raise ValueError(f"Sweep {str(path)!r}: grid parameter {k!r} has no values.")
        grid.append((str(k), vals))
    both = sorted(set(grid_in) & set(fixed_in))
    if both:
        raise ValueError(f"Sweep {str(path)!r}: {both} are in both 'grid' and 'parameters'; keep each in one.")
    declared = _notebook_parameters(nb)
    unknown_p = sorted((set(grid_in) | set(fixed_in)) - set(declared))
    if unknown_p:
        raise ValueError(
            f"Sweep {str(path)!r}: parameters {unknown_p} are not in the parameters cell of {nb.name} "
            f"(it declares {sorted(declared)})."
        )
    _check_values(f"Sweep {str(path)!r}", grid, fixed_in, declared)
    _check_options(f"Sweep {str(path)!r}", data)
    plugins = _check_plugins(path, data.get("plugins"), grid_in, fixed_in, declared, nb)
    timeout = data.get("timeout")
    name = safe_name(data.get("name") or path.stem)
    return Sweep(
        name=name,
        notebook=nb,
        grid=tuple(grid),
        parameters=tuple((str(k), v) for k, v in fixed_in.items()),
        run_name=data.get("run_name"),
        export_html=data.get("export_html", True),
        timeout=float(timeout) if timeout is not None else None,
        source=path.resolve(),
        description=str(data.get("description") or ""),
        declared=tuple(declared),
        plugins=plugins,
    )


_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


def _check_options(where: str, data: dict) -> None:
    """The sweep's own keys: booleans are YAML true/false, the timeout a positive number."""
    if not isinstance(data.get("export_html", True), bool):
        raise ValueError(f"{where}: export_html must be true or false (YAML, no quotes), got "
                         f"{data['export_html']!r}.")
    t = data.get("timeout")
    if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not t > 0):
        raise ValueError(f"{where}: timeout must be a number of seconds > 0 (or left out), got {t!r}.")
    for key in ("name", "run_name", "description", "notebook"):
        if data.get(key) is not None and not isinstance(data[key], str):
            raise ValueError(f"{where}: {key} must be a string, got {data[key]!r} ({type(data[key]).__name__}).")
    _check_unset(where, "plugins", data.get("plugins"))


def _check_unset(where: str, name: str, value) -> None:
    """Refuse ``$VAR`` / ``${VAR}`` in strings when the variable is not set (it would go in literally)."""
    if isinstance(value, str):
        for m in _VAR.finditer(value):
            var = m.group(1).strip("{}")
            if var not in os.environ:
                raise ValueError(f"{where}: parameter {name!r} uses ${var}, which is not set; export {var}=... "
                                 "before running the sweep (or write the value itself).")
    elif isinstance(value, list):
        for x in value:
            _check_unset(where, name, x)
    elif isinstance(value, dict):
        for x in value.values():
            _check_unset(where, name, x)


def _check_value(where: str, name: str, v, top: bool = True) -> None:
    """A parameter value is plain YAML data: strings, numbers, booleans, lists, mappings (nulls only inside)."""
    if isinstance(v, (datetime.date, datetime.datetime, datetime.time)):
        raise ValueError(f"{where}: parameter {name!r} is a YAML date ({v}); quote it to pass a string: "
                         f"{name}: \"{v}\".")
    if isinstance(v, (set, frozenset)):
        raise ValueError(f"{where}: parameter {name!r} is a YAML set ({sorted(map(str, v))}); write a list "
                         f"[a, b] instead.")
    if v is None:
        if top:
            raise ValueError(f"{where}: parameter {name!r} is null; give it a value (or leave it out to keep the "
                             "notebook's default).")
        return
    if isinstance(v, (list, tuple)):
        for x in v:
            _check_value(where, name, x, top=False)
    elif isinstance(v, dict):
        for k, x in v.items():
            _check_value(where, f"{name}.{k}", k, top=False)
            _check_value(where, name, x, top=False)
    elif not isinstance(v, (str, bool, int, float)):
        raise ValueError(f"{where}: parameter {name!r} has a value of type {type(v).__name__} ({v!r}); use "
                         "strings, numbers, true/false, lists or mappings.")


def _default_type(info) -> type | None:
    """The type of a notebook parameter's default value (None: unknown or None)."""
    try:
        default = ast.literal_eval(str(info.get("default")))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError, AttributeError):
        return None
    return type(default) if default is not None else None


def _check_type(where: str, name: str, v, want: type | None) -> None:
    """A value of the type of the notebook's default (numbers mix; booleans and strings do not)."""
    if want is None or v is None:
        return
    if want is bool:
        ok = isinstance(v, bool)
        what = "true or false (YAML, no quotes)"
    elif want in (int, float):
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and (want is float or isinstance(v, int))
        what = "an integer" if want is int else "a number"
    elif want in (str, list, dict):
        ok = isinstance(v, want)
        what = {str: "a string", list: "a list", dict: "a mapping"}[want]
    else:
        return
    if not ok:
        raise ValueError(f"{where}: parameter {name!r} must be {what} like the notebook's default, got {v!r} "
                         f"({type(v).__name__}).")


def _check_values(where: str, grid: list, fixed: dict, declared: dict) -> None:
    """Every grid value and fixed parameter: plain data, the notebook default's type, no unset ``$VAR``."""
    for name, vals in grid:
        for v in vals:
            if v is None:
                raise ValueError(f"{where}: grid parameter {name!r} has a null value in {list(vals)!r}; remove it "
                                 "or give a value.")
            _check_value(where, name, v)
            _check_type(where, name, v, _default_type(declared.get(name) or {}))
            _check_unset(where, name, v)
    for name, v in fixed.items():
        want = _default_type(declared.get(name) or {})
        if v is None and want is None:  # null where the notebook's default is None: allowed
            continue
        _check_value(where, name, v)
        _check_type(where, name, v, want)
        _check_unset(where, name, v)


_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _check_plugins(path: Path, plugins, grid_in: dict, fixed_in: dict, declared, nb: Path) -> tuple[str, ...]:
    """A sweep's ``plugins:``: a list of module names or .py files (made absolute), the notebook declaring ``plugins``."""
    where = f"Sweep {str(path)!r}"
    if "plugins" in grid_in or "plugins" in fixed_in:
        raise ValueError(f"{where}: give plugins as the top-level key 'plugins: [MODULE, ...]', not in grid/parameters.")
    if plugins is None:
        return ()
    if not isinstance(plugins, list) or not all(isinstance(m, str) and m.strip() for m in plugins):
        raise ValueError(f"{where}: 'plugins' must be a list of module names or .py files, got {plugins!r}.")
    out = []
    for m in plugins:
        m = _expand(m.strip())
        if m.endswith(".py") or "/" in m or os.sep in m:
            f = Path(os.path.expanduser(m))
            f = (f if f.is_absolute() else path.parent / f).resolve()
            if not f.is_file():
                raise FileNotFoundError(f"{where}: plugin file {m!r} not found (paths are relative to the sweep file).")
            out.append(str(f))
        elif _MODULE_NAME.match(m):
            out.append(m)
        else:
            raise ValueError(f"{where}: plugin {m!r} is neither a module name (a.b.c) nor a .py file.")
    if out and "plugins" not in declared:
        raise ValueError(f"{where}: the sweep has plugins but the parameters cell of {nb.name} has no 'plugins' "
                         "parameter; add plugins = [] there and load them with "
                         "fsm2kit.strategies.load_plugins(plugins).")
    return tuple(out)


