"""Sweeps: a notebook x a parameter grid, run through papermill on Dask into ``reports/``.

- ``sweep_spec``: sweep files, validated and expanded into runs.
- ``sweep_runs``: one run of a sweep, on a worker.
- ``sweep_index``: the index of a sweep (CSV and HTML).
- ``sweeps``: :func:`run_sweep`, the batch of runs.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".sweep_index": ["collect_index"],
    ".sweep_runs": ["export_html"],
    ".sweep_spec": ["Sweep", "load_sweep", "require_module"],
    ".sweeps": ["plan_runs", "run_sweep"],
})
