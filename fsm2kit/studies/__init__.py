"""Notebook studies: one call per notebook section.

- ``study``: :func:`run_study`, a run with its paper-style tables and figures.
- ``strategy_study``: memory policy x order x support selector on one dataset.
- ``run_inspection``: :func:`inspect_run`, one run with its memory attention captured.
- ``uncertainty_study``: an ensemble's uncertainty and a refinement pass on one dataset.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".run_inspection": ["inspect_run"],
    ".strategy_study": ["run_strategy_study"],
    ".study": ["run_study"],
    ".uncertainty_study": ["run_uncertainty_study"],
})
