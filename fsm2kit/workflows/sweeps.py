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

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .sweep_index import write_index
from .sweep_runs import RunOutcome, execute_run, remove_tree, write_json
from .sweep_spec import FAILED_MARKER, RunSpec, Sweep, load_sweep, require_module

__all__ = ['SweepResult', 'run_sweep']

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
    require_module("distributed")
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
                remove_tree(stale)
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
    write_json(d / FAILED_MARKER, {
        "sweep": spec.sweep, "run": spec.name, "status": "failed", "parameters": spec.parameters,
        "notebook": spec.notebook, "executed_notebook": Path(spec.notebook).name, "html": None,
        "error": out.error, "ename": out.ename, "evalue": out.evalue, "cell_index": None, "exec_count": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": [],
    })
