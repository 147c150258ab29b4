"""Batch runs of parameterized notebooks: a sweep YAML -> papermill runs on Dask -> ``reports/``.

A *sweep* names one notebook, a grid of parameters (every combination is one *run*) and fixed
parameters. :func:`run_sweep` executes the runs that are not finished yet through papermill
(kernel ``python3``), in parallel on a Dask cluster (a local one by default), and writes::

    reports/<sweep>/
        index.csv, index.html        one row per run: parameters, status, Dice summary, links
        <run>/                       a finished run (never touched again)
            <notebook>.ipynb         the executed notebook
            <notebook>.html          the same, exported for reading without Jupyter
            summary.csv, ...         what the notebook wrote (its ``output_dir`` is the run folder)
            done.json                the marker of a finished run (parameters, timing, summary)
        <run>.failed/                the last failed attempt: notebook so far, failed.json

Sweep files (YAML)::

    name: smoke_2x2                      # optional; default: the file name without .yaml
    notebook: ../notebooks/00_quickstart.ipynb   # relative to the sweep file
    run_name: "{setting}-{order}"        # optional; str.format over all parameters
    grid:                                # every combination is one run
      setting: [S1SFQ, 3SFQ]
      order: [top, middle]
    parameters:                          # the same for every run
      checkpoint: random
      image_size: 256
    export_html: true                    # optional (default true)
    timeout: 1800                        # optional: seconds per cell (default: none)
    plugins: [my_strategies]             # optional: modules registering your own strategies

Parameter names must be in the notebook's ``parameters`` cell. Strings get ``~`` and
``$VARS`` expanded. The kernel runs inside the run's folder, so give data paths absolute (or
through an environment variable); ``output_dir`` is set to ``"."`` when the notebook has it.

Plugins: each run's notebook gets the parameter ``plugins`` (a list; the notebook must declare
it) and loads them with ``fsm2kit.strategies.load_plugins(plugins)`` before it asks for a
strategy by name. An entry is a module name (importable by the kernel: installed, or on
``PYTHONPATH``) or a ``.py`` file, relative to the sweep file (passed on as an absolute path).
The plugins are recorded in each run's ``done.json`` and in the index.

The kernels get a copy of this process's environment with ``TQDM_DISABLE=1`` (no widget
progress bars in reports); the worker's own environment is left alone.

Resuming: a run is finished when ``<run>/done.json`` exists; a rerun skips it. Each run is
executed in ``<run>.tmp-<id>/`` and renamed to ``<run>/`` only when it succeeded, after its
``done.json`` was written, so an interrupted batch (even ``kill -9``) never leaves a
half-written result: the rerun deletes the stale temporary folders and runs what is missing.
Failed runs are retried on every rerun; their error (cell number, exception) is in the index.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import itertools
import json
import os
import re
import shutil
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

__all__ = [
    "KERNEL_NAME",
    "DONE_MARKER",
    "FAILED_MARKER",
    "SWEEP_KEYS",
    "KERNEL_ENV",
    "Sweep",
    "RunSpec",
    "RunOutcome",
    "SweepResult",
    "load_sweep",
    "execute_run",
    "kernel_manager_class",
    "export_html",
    "collect_index",
    "write_index",
    "run_sweep",
]

KERNEL_NAME = "python3"
DONE_MARKER = "done.json"
FAILED_MARKER = "failed.json"
SWEEP_KEYS = ("name", "notebook", "run_name", "grid", "parameters", "export_html", "timeout", "description",
              "plugins")
#: Environment variables set for every run's kernel (on a copy of the worker's environment).
KERNEL_ENV = {"TQDM_DISABLE": "1"}
_SAFE = re.compile(r"[^A-Za-z0-9._=+-]+")


# ============================================================================ sweeps
def _safe_name(text: str) -> str:
    s = _SAFE.sub("_", str(text)).strip("._")
    if not s:
        raise ValueError(f"{text!r} gives an empty file name; use letters, digits, '.', '_', '-', '='.")
    return s[:120]


def _value_text(v) -> str:
    if isinstance(v, dict):  # e.g. {dataset: folder}: named by its keys
        return "+".join(str(k) for k in v)
    if isinstance(v, (list, tuple)):
        return "+".join(_value_text(x) for x in v)
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
                name = "_".join(f"{k}={_value_text(v)}" for k, v in zip(keys, combo)) or "run"
            name = _safe_name(name)
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


def _require(module: str):
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
    pm = _require("papermill")
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
    yaml = _require("yaml")

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
    name = _safe_name(data.get("name") or path.stem)
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


# ============================================================================ one run (on a worker)
@dataclass
class RunOutcome:
    """What happened to one run: status, timing, error location, Dice summary, files."""

    name: str
    status: str  # "done" | "failed" | "skipped"
    seconds: float = 0.0
    cell_index: int | None = None
    exec_count: int | None = None
    ename: str = ""
    evalue: str = ""
    summary: dict = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    host: str = ""

    @property
    def error(self) -> str:
        """``"cell 5 (In [4]): ValueError: ..."`` for a failed run, else ``""``."""
        if self.status != "failed":
            return ""
        where = ""
        if self.cell_index is not None:
            where = f"cell {self.cell_index}" + (f" (In [{self.exec_count}])" if self.exec_count is not None else "") + ": "
        return f"{where}{self.ename}: {self.evalue}".strip()

    def __repr__(self) -> str:
        extra = f", {self.error}" if self.error else ""
        return f"RunOutcome({self.name}: {self.status}, {self.seconds:.1f} s{extra})"


def export_html(notebook: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Export an executed notebook to HTML (nbconvert, lab template) for reading without Jupyter.

    Images are embedded. The page loads MathJax and require.js from a CDN for math and widgets;
    plain outputs, tables and images show offline.
    """
    import nbformat
    from nbconvert import HTMLExporter

    nb_path = Path(notebook)
    out = Path(out) if out is not None else nb_path.with_suffix(".html")
    nb = nbformat.read(nb_path, as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _dice_summary(folder: Path) -> dict:
    """Mean Dice per metric over the rows of the run's ``summary.csv`` (+ weights), if any."""
    p = folder / "summary.csv"
    if not p.is_file():
        return {}
    try:
        s = pd.read_csv(p, keep_default_na=False, na_values=[""])
    except Exception:  # a notebook's own file: never fail the run on it
        return {}
    out = {}
    if {"metric", "dice"} <= set(s.columns):
        for m in ("pooled", "mean_per_volume"):
            vals = pd.to_numeric(s.loc[s["metric"] == m, "dice"], errors="coerce").dropna()
            if len(vals):
                out[f"dice_{m}"] = round(float(vals.mean()), 6)
        out["summary_rows"] = int(len(s))
    if "weights" in s.columns:
        out["weights"] = "; ".join(dict.fromkeys(s["weights"].astype(str)))
    return out


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    os.replace(tmp, path)


def _remove_tree(path: Path) -> None:
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.2)


def kernel_manager_class(env: dict[str, str], cwd: str | os.PathLike | None = None):
    """A jupyter kernel manager class whose kernels start with ``env`` in ``cwd`` (for papermill/nbclient).

    Giving the kernel its environment and working directory this way leaves the calling
    process's ``os.environ`` and working directory alone (a Dask worker runs many runs, and other
    threads); papermill's own ``cwd=`` would ``chdir`` the whole process while a notebook runs.
    """
    from jupyter_client.manager import AsyncKernelManager

    kernel_env = {str(k): str(v) for k, v in env.items()}
    kernel_cwd = None if cwd is None else str(cwd)

    class RunKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw):
            kw.setdefault("env", dict(kernel_env))
            if kernel_cwd is not None:
                kw["cwd"] = kernel_cwd
            return await super().start_kernel(**kw)

    return RunKernelManager


def execute_run(spec: RunSpec) -> RunOutcome:
    """Execute one run with papermill in ``<run>.tmp-<id>/`` and move it into place.

    On success the folder becomes ``<run>/`` (with ``done.json``); on failure
    ``<run>.failed/`` (with ``failed.json``: cell number, exception, traceback). Never raises
    for a failing notebook; an existing finished run is left alone (status ``skipped``).
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from ..core.version import __version__

    final = spec.folder
    if (final / DONE_MARKER).is_file():
        return RunOutcome(spec.name, "skipped")
    sweep_dir = Path(spec.sweep_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tmp = sweep_dir / f"{spec.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    nb_out = tmp / Path(spec.notebook).name
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    t0 = time.perf_counter()
    outcome = RunOutcome(spec.name, "done", host=socket.gethostname())
    tb = ""
    try:
        pm.execute_notebook(
            spec.notebook, str(nb_out), parameters=spec.notebook_parameters, kernel_name=spec.kernel_name,
            progress_bar=False, log_output=False, execution_timeout=spec.timeout,
            request_save_on_cell_execute=True,
            # the kernel gets its own environment (a copy) and starts in the run folder: this
            # process's os.environ and working directory are not touched
            kernel_manager_class=kernel_manager_class({**os.environ, **KERNEL_ENV}, cwd=tmp),
        )
    except PapermillExecutionError as e:
        outcome.status = "failed"
        outcome.cell_index, outcome.exec_count = e.cell_index, e.exec_count
        outcome.ename, outcome.evalue = str(e.ename), str(e.evalue)
        tb = "\n".join(e.traceback or [])
    except Exception as e:  # kernel died, timeout, bad notebook ...
        outcome.status = "failed"
        outcome.ename, outcome.evalue = type(e).__name__, str(e)
        import traceback

        tb = traceback.format_exc()
    html_error = ""
    if spec.export_html and nb_out.is_file():
        try:
            export_html(nb_out)
        except Exception as e:  # the executed notebook is what matters; note the export failure
            html_error = f"{type(e).__name__}: {e}"
    outcome.seconds = time.perf_counter() - t0
    outcome.summary = _dice_summary(tmp)
    outcome.files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file() and not p.name.startswith("."))
    record = {
        "sweep": spec.sweep,
        "run": spec.name,
        "status": outcome.status,
        "parameters": spec.parameters,
        "plugins": list(spec.plugins),
        "notebook": os.path.relpath(spec.notebook, final),  # from the run folder
        "executed_notebook": nb_out.name,
        "html": nb_out.with_suffix(".html").name if spec.export_html and not html_error else None,
        "html_error": html_error,
        "kernel_name": spec.kernel_name,
        "started": started,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(outcome.seconds, 3),
        "summary": outcome.summary,
        "files": outcome.files,
        "host": outcome.host,
        "fsm2kit_version": __version__,
        "papermill_version": pm.__version__,
    }
    if outcome.status == "done":
        _write_json(tmp / DONE_MARKER, record)
        if final.exists():  # a folder without done.json is never a finished result
            stale = sweep_dir / f"{spec.name}.stale-{uuid.uuid4().hex[:8]}"
            os.replace(final, stale)
            _remove_tree(stale)
        os.replace(tmp, final)
        if spec.failed_folder.exists():
            _remove_tree(spec.failed_folder)
    else:
        record.update(cell_index=outcome.cell_index, exec_count=outcome.exec_count, ename=outcome.ename,
                      evalue=outcome.evalue, error=outcome.error, traceback=_strip_ansi(tb)[-20000:])
        _write_json(tmp / FAILED_MARKER, record)
        if spec.failed_folder.exists():
            _remove_tree(spec.failed_folder)
        os.replace(tmp, spec.failed_folder)
    return outcome


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


# ============================================================================ the index
_INDEX_FIRST = ["run", "status", "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error"]


def collect_index(sweep: Sweep, reports: str | os.PathLike = "reports") -> pd.DataFrame:
    """One row per run of the sweep, read from the run folders on disk.

    ``status`` is ``done`` (``<run>/done.json``), ``failed`` (``<run>.failed/failed.json``) or
    ``pending``. Link columns hold paths relative to ``reports/<sweep>/``.
    """
    rows = []
    grid_keys = [k for k, _ in sweep.grid]
    for spec in sweep.runs(reports):
        row = {"run": spec.name, "status": "pending", "seconds": None, "error": ""}
        row.update({k: _value_text(spec.parameters.get(k)) for k in grid_keys})
        rec = None
        if (spec.folder / DONE_MARKER).is_file():
            rec = json.loads((spec.folder / DONE_MARKER).read_text())
            base = spec.name
        elif (spec.failed_folder / FAILED_MARKER).is_file():
            rec = json.loads((spec.failed_folder / FAILED_MARKER).read_text())
            base = spec.failed_folder.name
        if rec is not None:
            row["status"] = rec["status"]
            row["seconds"] = rec.get("seconds")
            row["finished"] = rec.get("finished")
            row["error"] = rec.get("error", "")
            row.update(rec.get("summary") or {})
            row["notebook"] = f"{base}/{rec['executed_notebook']}"
            row["html"] = f"{base}/{rec['html']}" if rec.get("html") else ""
            row["folder"] = f"{base}/"
            figs = [f for f in rec.get("files", []) if f.lower().endswith((".png", ".svg"))]
            row["figures"] = " ".join(f"{base}/{f}" for f in figs)
            csvs = [f for f in rec.get("files", []) if f.lower().endswith(".csv")]
            row["tables"] = " ".join(f"{base}/{f}" for f in csvs)
        row.update({f"param.{k}": _value_text(v) for k, v in spec.parameters.items() if k not in grid_keys})
        if sweep.plugins or (rec is not None and rec.get("plugins")):
            row["plugins"] = " ".join(rec["plugins"] if rec is not None and "plugins" in rec else spec.plugins)
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("dice_pooled", "dice_mean_per_volume", "weights", "finished", "notebook", "html", "folder",
              "figures", "tables"):
        if c not in df.columns:
            df[c] = None
    first = ["run", "status", *grid_keys, "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error"]
    rest = [c for c in df.columns if c not in first]
    return df[first + rest]


def _text(v) -> str:
    """A table cell as text: "" for None/NaN."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return str(v)


def _link(href, text: str) -> str:
    href = _text(href)
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>' if href else ""


def _index_html(sweep: Sweep, index: pd.DataFrame) -> str:
    random = index["weights"].astype(str).str.contains("random weights").any()
    counts = index["status"].value_counts().to_dict()
    head = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>fsm2kit sweep {html.escape(sweep.name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
        "th{background:#eee}.done{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}"
        ".pending{color:#777}.banner{background:#fff3cd;border:1px solid #d39e00;padding:8px;margin:8px 0}"
        "img{max-height:90px;margin-right:4px}</style></head><body>",
        f"<h1>Sweep {html.escape(sweep.name)}</h1>",
        f"<p>Notebook <code>{html.escape(sweep.notebook.name)}</code>; "
        + ", ".join(f"{v} {html.escape(str(k))}" for k, v in sorted(counts.items()))
        + f"; updated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>",
    ]
    if sweep.description:
        head.append(f"<p>{html.escape(sweep.description)}</p>")
    if random:
        head.append("<div class='banner'><b>RANDOM WEIGHTS</b>: runs marked 'random weights' are smoke "
                    "runs; their Dice numbers say nothing about SAM2 or FS-MedSAM2.</div>")
    fixed = ", ".join(f"{k}={_value_text(v)}" for k, v in sweep.parameters)
    if fixed:
        head.append(f"<p>Fixed parameters: <code>{html.escape(fixed)}</code></p>")
    if sweep.plugins:
        head.append(f"<p>Plugins: <code>{html.escape(' '.join(sweep.plugins))}</code></p>")
    grid_keys = [k for k, _ in sweep.grid]
    cols = ["run", "status", *grid_keys, "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error", "links"]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
    for _, r in index.iterrows():
        cells = []
        for c in cols:
            if c == "links":
                links = [_link(r.get("html"), "html"), _link(r.get("notebook"), "ipynb"),
                         _link(r.get("folder"), "folder")]
                links += [_link(t, Path(t).name) for t in _text(r.get("tables")).split()]
                imgs = [f"<a href='{html.escape(f, quote=True)}'><img src='{html.escape(f, quote=True)}' "
                        f"alt='{html.escape(Path(f).name, quote=True)}'></a>"
                        for f in _text(r.get("figures")).split() if f.endswith(".png")]
                cells.append("<td>" + " ".join(x for x in links if x) + "<br>" + "".join(imgs) + "</td>")
                continue
            v = r.get(c)
            if v is None or (isinstance(v, float) and pd.isna(v)):
                text = ""
            elif isinstance(v, float):
                text = f"{v:.4f}" if c.startswith("dice") else f"{v:.1f}"
            else:
                text = str(v)
            cls = f" class='{html.escape(text)}'" if c == "status" else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    foot = ("<p>Dice columns: mean over the rows of each run's summary.csv (classes x settings x "
            "orders x models) of the pooled and the mean-per-volume Dice. Notebook HTML pages load "
            "MathJax/require.js from a CDN; tables and images show offline.</p></body></html>")
    return "\n".join(head + out + [foot])


def write_index(sweep: Sweep, reports: str | os.PathLike = "reports") -> pd.DataFrame:
    """Rebuild ``index.csv`` and ``index.html`` of a sweep from disk (atomic writes)."""
    index = collect_index(sweep, reports)
    d = Path(reports).resolve() / sweep.name
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".index.csv.{os.getpid()}.tmp"
    index.to_csv(tmp, index=False)
    os.replace(tmp, d / "index.csv")
    tmp = d / f".index.html.{os.getpid()}.tmp"
    tmp.write_text(_index_html(sweep, index), encoding="utf-8")
    os.replace(tmp, d / "index.html")
    return index


# ============================================================================ the sweep
@dataclass(eq=False)
class SweepResult:
    """The outcome of :func:`run_sweep`: the index and what this call did."""

    sweep: Sweep
    index: pd.DataFrame
    executed: list[RunOutcome]
    skipped: list[str]
    seconds: float
    folder: Path

    @property
    def failed(self) -> pd.DataFrame:
        return self.index[self.index["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return bool((self.index["status"] == "done").all())

    def __repr__(self) -> str:
        c = self.index["status"].value_counts().to_dict()
        return (
            f"SweepResult({self.sweep.name}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
            f"{c.get('pending', 0)} pending; this call ran {len(self.executed)}, skipped "
            f"{len(self.skipped)} finished; {self.seconds:.1f} s; {self.folder / 'index.html'})"
        )


@contextlib.contextmanager
def _sweep_lock(folder: Path):
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / ".lock", "a+")
    try:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            raise RuntimeError(
                f"Another fsm2kit batch is running the sweep in {str(folder)!r} ({f.read().strip()}); "
                "wait for it to finish (or stop it) before rerunning."
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {socket.gethostname()}")
        f.flush()
        yield
    finally:
        f.close()


@contextlib.contextmanager
def _dask_client(workers: int, scheduler: str | None):
    _require("distributed")
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    import logging

    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def _bars_off(progress: bool) -> bool:
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def run_sweep(
    sweep: Sweep | str | os.PathLike,
    *,
    reports: str | os.PathLike = "reports",
    workers: int = 2,
    scheduler: str | None = None,
    only: Sequence[str] | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run the unfinished runs of a sweep in parallel on Dask and write the index.

    Parameters
    ----------
    sweep : Sweep or path of a sweep YAML
    reports : path, keyword-only
        Reports folder; the sweep writes ``reports/<sweep.name>/``.
    workers : int, keyword-only
        Worker processes of the local Dask cluster (one thread each; each run starts its own
        kernel). Ignored with ``scheduler``.
    scheduler : str, optional, keyword-only
        Address of an existing Dask scheduler (``tcp://HOST:PORT``). Its workers need fsm2kit
        installed and must see the same file system (notebook, data and reports paths).
    only : sequence of str, optional, keyword-only
        Run names to run (others are left as they are).
    progress : bool, keyword-only
        A progress bar over runs.

    Returns
    -------
    SweepResult
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    folder = Path(reports).resolve() / sweep.name
    specs = sweep.runs(reports)
    if only:
        names = {s.name for s in specs}
        unknown = sorted(set(only) - names)
        if unknown:
            raise ValueError(f"--only {unknown}: no such run in sweep {sweep.name!r}; runs are {sorted(names)}.")
        specs = [s for s in specs if s.name in set(only)]
    with _sweep_lock(folder):
        for stale in folder.glob("*.tmp-*"):  # left by a killed batch: never a finished result
            if stale.is_dir():
                _remove_tree(stale)
        skipped = [s.name for s in specs if s.done]
        pending = [s for s in specs if not s.done]
        write_index(sweep, reports)
        executed: list[RunOutcome] = []
        if pending:
            from distributed import as_completed

            bar = tqdm(total=len(pending), desc=f"sweep {sweep.name}", unit="run", disable=_bars_off(progress))
            try:
                with _dask_client(min(workers, len(pending)), scheduler) as client:
                    futures = {client.submit(execute_run, s, pure=False, key=f"fsm2kit-{sweep.name}-{s.name}-{uuid.uuid4().hex[:6]}"): s
                               for s in pending}
                    for fut in as_completed(futures):
                        spec = futures[fut]
                        try:
                            out = fut.result()
                        except Exception as e:  # the worker itself died
                            out = RunOutcome(spec.name, "failed", ename=type(e).__name__, evalue=str(e))
                            _record_worker_failure(spec, out)
                        executed.append(out)
                        write_index(sweep, reports)
                        bar.set_postfix_str(f"{out.name}: {out.status}", refresh=False)
                        bar.update(1)
            finally:
                bar.close()
        index = write_index(sweep, reports)
    return SweepResult(sweep, index, executed, skipped, time.perf_counter() - t0, folder)


def _record_worker_failure(spec: RunSpec, out: RunOutcome) -> None:
    d = spec.failed_folder
    d.mkdir(parents=True, exist_ok=True)
    _write_json(d / FAILED_MARKER, {
        "sweep": spec.sweep, "run": spec.name, "status": "failed", "parameters": spec.parameters,
        "notebook": spec.notebook, "executed_notebook": Path(spec.notebook).name, "html": None,
        "error": out.error, "ename": out.ename, "evalue": out.evalue, "cell_index": None, "exec_count": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": [],
    })
