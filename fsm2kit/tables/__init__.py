"""Tables.

- ``paper``: the paper's published numbers (Tables 1-4), and its row and column order.
- ``dice_table``: the one Dice-table builder and writer (CSV, Markdown, LaTeX).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dice_table": ["DiceTable", "TABLE_FORMATS", "dice_table", "results_table", "save_table", "short_sha"],
    ".paper": ["ORGAN_ORDER", "PUBLISHED_BASELINES", "paper_numbers", "paper_order"],
})
