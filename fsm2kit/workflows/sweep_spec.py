"""Sweep files: a notebook x a parameter grid, validated and expanded into runs (see :mod:`.sweeps`)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path


__all__ = ['KERNEL_NAME', 'DONE_MARKER', 'FAILED_MARKER', 'SWEEP_KEYS', 'KERNEL_ENV', 'Sweep', 'RunSpec', 'load_sweep', 'safe_name', 'value_text', 'require_module']

KERNEL_NAME = "python3"
DONE_MARKER = "done.json"
FAILED_MARKER = "failed.json"
SWEEP_KEYS = ("name", "notebook", "run_name", "grid", "parameters", "export_html", "timeout", "description",
              "plugins")
#: Environment variables set for every run's kernel (on a copy of the worker's environment).
KERNEL_ENV = {"TQDM_DISABLE": "1"}
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
    def failed_folder(self) -> Path:
        return Path(self.sweep_dir) / f"{self.name}.failed"

    @property
    def done(self) -> bool:
        return (self.folder / DONE_MARKER).is_file()

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


def require_module(module: str):
    """Import an optional dependency of batch runs, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise RuntimeError(
            f"fsm2kit batch needs {module} ({e}); install the notebook extras: "
            "pip install 'fsm2kit[notebooks]' (papermill, nbconvert, ipykernel, dask[distributed])."
        ) from None


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
    plugins = _check_plugins(path, data.get("plugins"), grid_in, fixed_in, declared, nb)
    timeout = data.get("timeout")
    name = safe_name(data.get("name") or path.stem)
    return Sweep(
        name=name,
        notebook=nb,
        grid=tuple(grid),
        parameters=tuple((str(k), v) for k, v in fixed_in.items()),
        run_name=data.get("run_name"),
        export_html=bool(data.get("export_html", True)),
        timeout=float(timeout) if timeout is not None else None,
        source=path.resolve(),
        description=str(data.get("description") or ""),
        declared=tuple(declared),
        plugins=plugins,
    )


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


