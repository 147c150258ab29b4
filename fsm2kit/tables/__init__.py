"""Tables: the paper's published numbers, the paper's row and column order, and the one Dice
table writer (CSV, Markdown, LaTeX).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dice_table": ["DiceTable", "OURS_DICE_VARIANTS", "TABLE_FORMATS", "dice_table", "save_table"],
    ".paper": ["BASELINE_DICE_VARIANT", "PAPER_CITATION", "PAPER_CSV", "PAPER_DATASETS", "PAPER_DICE_VARIANT", "PAPER_ORGANS", "PUBLISHED_BASELINES", "QuotedRow", "baseline_table", "paper_numbers", "published_dice"],
    ".results_table": ["ORDER_ORDER", "ORGAN_ORDER", "paper_order", "results_table"],
})
