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
            done.json                the marker of a finished run (parameters, fingerprint, timing, summary)
        .fsm2kit-work/               the batch's own folder (no run name can reach it: names never start with '.')
            tmp/<run>.tmp-<id>/      runs being executed
            failed/<run>/            the last failed attempt of a run: notebook so far, failed.json

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

Parameter names must be in the notebook's ``parameters`` cell. Values are checked when the
sweep is read (``--dry-run`` included), each error naming the parameter: a value must have the
type of the notebook's default (booleans are YAML ``true``/``false``, never strings such as
``"false"``; numbers mix; a default of None takes anything), a grid value is never null (``x:``),
YAML dates and sets are refused (quote a date; write a list), and ``export_html`` is a boolean.
Strings get ``~`` and ``$VARS`` expanded; a variable that is not set is an error. The kernel
runs inside the run's temporary folder, so give data paths absolute (or through an environment
variable); ``output_dir`` is set to ``"."`` when the notebook has it.

Plugins: each run's notebook gets the parameter ``plugins`` (a list; the notebook must declare
it) and loads them with ``fsm2kit.strategies.load_plugins(plugins)`` before it asks for a
strategy by name. An entry is a module name (importable by the kernel: installed, or on
``PYTHONPATH``) or a ``.py`` file, relative to the sweep file (passed on as an absolute path).
The plugins are recorded in each run's ``done.json`` and in the index.

The kernels get a copy of this process's environment with ``TQDM_DISABLE=1`` (no widget
progress bars in reports); the worker's own environment is left alone.

Resuming: a run is finished when ``<run>/done.json`` exists and records the run's current
*fingerprint* (sha256 of its parameters, plugins included, and of the notebook file's content);
a rerun skips it. A finished run whose parameters or notebook changed is run again, and the
batch says which and why (``changed parameters (image_size: 256 -> 512)``, ``notebook
changed``); its old result stays until the new one succeeds. Each run is executed in
``.fsm2kit-work/tmp/<run>.tmp-<id>/`` and renamed to ``<run>/`` only when it succeeded, after
its ``done.json`` was written, so an interrupted batch (even ``kill -9``) never leaves a
half-written result: the rerun deletes what is left in ``.fsm2kit-work/tmp/`` (nothing outside
it) and runs what is missing. Failed runs are retried on every rerun; their error (cell
number, exception) is in the index.

Dask: without ``scheduler`` a local cluster runs the notebooks. It uses TLS with temporary
credentials made for this batch (Dask's ``security=True``; needs the ``cryptography``
package), listens on 127.0.0.1 only and opens no dashboard or HTTP port, so other local users
cannot submit work to it. With ``scheduler`` (a real cluster), pass its TLS credentials as a
``distributed.Security`` (``fsm2kit batch --tls-ca-file/--tls-cert/--tls-key``) or in Dask's
configuration (``distributed.comm.tls.*``); its workers need fsm2kit and the sweep's folders
(notebook, data, plugins, reports) at the same paths on a shared file system.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .sweep_index import write_index
from .sweep_runs import RunOutcome, execute_run, remove_tree, write_json
from .sweep_spec import FAILED_MARKER, WORK_DIR, RunSpec, Sweep, load_sweep, require_module

__all__ = ['SweepResult', 'run_sweep', 'plan_runs', 'check_scheduler', 'SECURE_SCHEMES']

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
    rerun: dict[str, str] = field(default_factory=dict)  # finished runs run again: name -> why
    kept: dict[str, str] = field(default_factory=dict)  # folders in a run's place moved aside: name -> where (why)

    @property
    def failed(self) -> pd.DataFrame:
        return self.index[self.index["status"] == "failed"]

    @property
    def ok(self) -> bool:
        return bool((self.index["status"] == "done").all())

    def __repr__(self) -> str:
        c = self.index["status"].value_counts().to_dict()
        rerun = f", reran {len(self.rerun)} changed" if self.rerun else ""
        return (
            f"SweepResult({self.sweep.name}: {c.get('done', 0)} done, {c.get('failed', 0)} failed, "
            f"{c.get('pending', 0)} pending; this call ran {len(self.executed)}, skipped "
            f"{len(self.skipped)} finished{rerun}; {self.seconds:.1f} s; {self.folder / 'index.html'})"
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
def _dask_client(workers: int, scheduler: str | None, security=None):
    """A Dask client: of ``scheduler`` (with ``security``), or of a local cluster that uses TLS with
    temporary credentials, listens on 127.0.0.1 only and serves no dashboard or HTTP port."""
    require_module("distributed")
    from distributed import Client, LocalCluster

    if scheduler:
        client = Client(scheduler, security=security) if security is not None else Client(scheduler)
        try:
            yield client
        finally:
            client.close()
        return
    import logging

    try:
        import cryptography  # noqa: F401  (Dask's temporary TLS credentials need it)
    except ImportError:
        raise RuntimeError("fsm2kit batch needs the cryptography package for the local cluster's TLS: "
                           "pip install cryptography (it is in fsm2kit[sweeps]).") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                           security=True, dashboard_address=None, silence_logs=logging.ERROR,
                           # Dask opens an HTTP port even without a dashboard (8787 by default): a random
                           # loopback one instead, closed at once
                           scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    try:
        _close_http(cluster.scheduler)
        client = Client(cluster)
        try:
            client.run(_close_http)  # the workers' metrics ports too
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _close_http(dask_worker) -> None:
    """Stop the HTTP server a Dask scheduler or worker opens even without a dashboard."""
    http = getattr(dask_worker, "http_server", None)
    if http is not None:
        http.stop()


def _bars_off(progress: bool) -> bool:
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def run_sweep(
    sweep: Sweep | str | os.PathLike,
    *,
    reports: str | os.PathLike = "reports",
    workers: int = 2,
    scheduler: str | None = None,
    security=None,
    only: Sequence[str] | None = None,
    progress: bool = True,
    insecure: bool = False,
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
        Address of an existing Dask scheduler (``tls://HOST:PORT``). Its workers need fsm2kit
        installed and must see the sweep's folders (notebook, data, plugins and reports) at
        the same paths, on a shared file system. Without it, a local cluster is started: TLS
        with temporary credentials, bound to 127.0.0.1, no dashboard.
    security : distributed.Security, optional, keyword-only
        TLS credentials for ``scheduler`` (default: Dask's configuration,
        ``distributed.comm.tls.*``).
    only : sequence of str, optional, keyword-only
        Run names to run (others are left as they are).
    insecure : bool, keyword-only
        Accept a ``scheduler`` address that is not ``tls://`` or ``wss://`` (plain TCP: anyone
        who reaches it can run code on the workers); refused otherwise (:func:`check_scheduler`).
    progress : bool, keyword-only
        A progress bar over runs.

    Returns
    -------
    SweepResult
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    check_scheduler(scheduler, insecure=insecure)
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
        restored = restore_stale(folder)  # a kill between the two renames of a replacement: the old run back
        for left in ("tmp", "stale"):  # left by a killed batch: never a finished result
            d = folder / WORK_DIR / left
            for stale in (d.iterdir() if d.is_dir() else ()):
                remove_tree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)
        skipped, pending, rerun = plan_runs(specs)
        write_index(sweep, reports)
        executed: list[RunOutcome] = []
        if pending:
            from distributed import as_completed

            bar = tqdm(total=len(pending), desc=f"sweep {sweep.name}", unit="run", disable=_bars_off(progress))
            try:
                with _dask_client(min(workers, len(pending)), scheduler, security) as client:
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
    kept = {o.name: o.kept for o in executed if o.kept}
    for name in restored:
        print(f"fsm2kit batch: note: restored run {name} from {WORK_DIR}/stale/, left by a batch killed while "
              "replacing it.", file=sys.stderr)
    return SweepResult(sweep, index, executed, skipped, time.perf_counter() - t0, folder, rerun, kept)


#: Scheduler address schemes that encrypt and authenticate (with certificates).
SECURE_SCHEMES = ("tls://", "wss://")


def check_scheduler(scheduler: str | None, *, insecure: bool = False) -> None:
    """Refuse a scheduler address that is not ``tls://`` or ``wss://`` (a bare ``HOST:PORT``
    included: Dask reads it as ``tcp://``) unless ``insecure``: over plain TCP or ``ws://``
    anyone who reaches the scheduler can run code on its workers."""
    if not scheduler or insecure:
        return
    if not str(scheduler).strip().lower().startswith(SECURE_SCHEMES):
        scheme = str(scheduler).split("://", 1)[0] + "://" if "://" in str(scheduler) else "no scheme (tcp://)"
        raise ValueError(f"--scheduler {scheduler}: {scheme} is not encrypted and anyone who reaches the scheduler "
                         "can run code on its workers; use tls://HOST:PORT with --tls-ca-file/--tls-cert/--tls-key "
                         "(see the README), or pass --insecure on a network you trust.")


def restore_stale(folder: Path) -> list[str]:
    """Put back a run folder that a killed batch had moved into ``.fsm2kit-work/stale/`` to replace
    it, when nothing took its place (the kill came between the two renames); returns their names."""
    d = folder / WORK_DIR / "stale"
    restored = []
    for old in sorted(d.iterdir(), key=lambda q: q.stat().st_mtime, reverse=True) if d.is_dir() else ():
        name = old.name.rsplit(".stale-", 1)[0]
        target = folder / name
        if old.is_dir() and name and not name.startswith(".") and not target.exists():
            os.replace(old, target)
            restored.append(name)
    return restored


def plan_runs(specs: Sequence[RunSpec]) -> tuple[list[str], list[RunSpec], dict[str, str]]:
    """What a batch does with each run: (finished and unchanged: skipped names, runs to execute,
    {name: why} for the finished runs among them whose parameters or notebook changed)."""
    skipped, pending, rerun = [], [], {}
    for s in specs:
        state, why = s.state()
        if state == "done":
            skipped.append(s.name)
            continue
        pending.append(s)
        if state == "changed":
            rerun[s.name] = why
    return skipped, pending, rerun


def _record_worker_failure(spec: RunSpec, out: RunOutcome) -> None:
    d = spec.failed_folder
    d.mkdir(parents=True, exist_ok=True)
    write_json(d / FAILED_MARKER, {
        "sweep": spec.sweep, "run": spec.name, "status": "failed", "parameters": spec.parameters,
        "notebook": spec.notebook, "executed_notebook": Path(spec.notebook).name, "html": None,
        "error": out.error, "ename": out.ename, "evalue": out.evalue, "cell_index": None, "exec_count": None,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "files": [],
    })
