"""One run of a sweep, on a worker: papermill in a temporary folder of the sweep's work folder, renamed when done."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..records.fileio import atomic_write, fsync_tree
from .sweep_spec import DONE_MARKER, FAILED_MARKER, KERNEL_ENV, RunSpec

__all__ = ['RunOutcome', 'read_run_summary', 'execute_run', 'kernel_manager_class', 'export_html', 'write_json', 'remove_tree', 'keep_aside', 'kept_place']

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
    kept: str = ""  # a folder in the run's place the batch did not write, moved here (never deleted)

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
    return atomic_write(out, lambda tmp: Path(tmp).write_text(body, encoding="utf-8"))


def read_run_summary(folder: str | os.PathLike) -> pd.DataFrame | None:
    """A run's ``summary.csv``, or None when it is missing or unreadable (a notebook's own file:
    neither a run nor the index ever fails on it)."""
    p = Path(folder) / "summary.csv"
    if not p.is_file():
        return None
    try:
        return pd.read_csv(p, keep_default_na=False, na_values=[""])
    except Exception:
        return None


def _dice_summary(folder: Path) -> dict:
    """Mean Dice per metric over the rows of the run's ``summary.csv`` (+ weights), if any."""
    s = read_run_summary(folder)
    if s is None:
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


def write_json(path: Path, obj) -> None:
    """``obj`` as JSON, written atomically."""
    text = json.dumps(obj, indent=2, default=str)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def remove_tree(path: Path) -> None:
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

    On POSIX the kernel talks over IPC (Unix domain sockets, readable only by this user) instead
    of TCP on localhost: nothing of a run travels over the network, and ipykernel's "Kernel is
    running over TCP without encryption" warning does not apply (Windows keeps TCP on 127.0.0.1).
    """
    from jupyter_client.manager import AsyncKernelManager

    kernel_env = {str(k): str(v) for k, v in env.items()}
    kernel_cwd = None if cwd is None else str(cwd)

    class RunKernelManager(AsyncKernelManager):
        def __init__(self, **kw):
            self._ipc_dir = None
            if os.name == "posix" and "transport" not in kw:
                # absolute socket paths (the kernel starts in another folder), short (Unix sockets: ~100 chars)
                self._ipc_dir = tempfile.mkdtemp(prefix="fsm2kit-kernel-")
                kw.update(transport="ipc", ip=os.path.join(self._ipc_dir, "k"))
            super().__init__(**kw)

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if self._ipc_dir is not None and not restart:
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

        async def start_kernel(self, **kw):
            kw.setdefault("env", dict(kernel_env))
            if kernel_cwd is not None:
                kw["cwd"] = kernel_cwd
            return await super().start_kernel(**kw)

    return RunKernelManager


def execute_run(spec: RunSpec) -> RunOutcome:
    """Execute one run with papermill in the sweep's work folder and move it into place.

    The run executes in ``<sweep>/.fsm2kit-work/tmp/<run>.tmp-<id>/`` (a folder no run name can
    reach). On success it becomes ``<run>/`` (with ``done.json``, which records the run's
    fingerprint: :meth:`RunSpec.fingerprint`); on failure
    ``<sweep>/.fsm2kit-work/failed/<run>/`` (with ``failed.json``: cell number, exception,
    traceback). Never raises for a failing notebook; a finished run with the same fingerprint is
    left alone (status ``skipped``), one with another fingerprint is replaced when the new run
    succeeds.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from ..version import __version__

    final = spec.folder
    if spec.state()[0] == "done":
        return RunOutcome(spec.name, "skipped")
    fingerprint = spec.fingerprint()  # the notebook as this run reads it
    work = spec.work_dir
    (work / "tmp").mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp" / f"{spec.name}.tmp-{uuid.uuid4().hex[:8]}"
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
        "fingerprint": fingerprint,
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
        "all_files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if not p.is_dir() or p.is_symlink()),
        "host": outcome.host,
        "fsm2kit_version": __version__,
        "papermill_version": pm.__version__,
    }
    if outcome.status == "done":
        write_json(tmp / DONE_MARKER, record)
        why = spec.in_the_way()
        if why:  # never deleted: moved to a named, kept place, and said so
            outcome.kept = f"{keep_aside(final, work)} ({why})"
        fsync_tree(tmp)  # on disk before the rename publishes it
        _replace_folder(tmp, final, work)
        if spec.failed_folder.exists():
            remove_tree(spec.failed_folder)
    else:
        record.update(cell_index=outcome.cell_index, exec_count=outcome.exec_count, ename=outcome.ename,
                      evalue=outcome.evalue, error=outcome.error, traceback=_strip_ansi(tb)[-20000:])
        write_json(tmp / FAILED_MARKER, record)
        spec.failed_folder.parent.mkdir(parents=True, exist_ok=True)
        _replace_folder(tmp, spec.failed_folder, work)
    return outcome


def kept_place(folder: Path, work: Path) -> Path:
    """Where :func:`keep_aside` moves ``folder``: ``<sweep>/.fsm2kit-work/kept/<run>-<UTC time>``."""
    return work / "kept" / f"{folder.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:4]}"


def keep_aside(folder: Path, work: Path) -> Path:
    """Move a folder the batch did not write (or that holds files it did not write) out of a
    run's way, to :func:`kept_place`; nothing in it is deleted."""
    dest = kept_place(folder, work)
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(folder, dest)
    return dest


def _replace_folder(src: Path, dst: Path, work: Path) -> None:
    """Move ``src`` to ``dst``; an existing ``dst`` is first moved into the work folder, and deleted
    once ``src`` is in place (a kill between the two renames: the next batch puts it back,
    :func:`fsm2kit.batch.sweeps.restore_stale`)."""
    stale = None
    if dst.exists():
        (work / "stale").mkdir(parents=True, exist_ok=True)
        stale = work / "stale" / f"{dst.name}.stale-{uuid.uuid4().hex[:8]}"
        os.replace(dst, stale)
    _publish(src, dst)
    if stale is not None:
        remove_tree(stale)


def _publish(src: Path, dst: Path) -> None:
    """The rename that publishes a run folder (a function of its own: tests interrupt it)."""
    os.replace(src, dst)


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


