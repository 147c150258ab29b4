"""Notebook studies: one call per notebook section (a run with its tables and figures, a
strategy study, an inspected run).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".run_inspection": ["inspect_run"],
    ".strategy_study": ["STRATEGY_ROWS", "StrategyStudy", "run_strategy_study"],
    ".study": ["DICE_COLUMNS", "Study", "run_study"],
})
