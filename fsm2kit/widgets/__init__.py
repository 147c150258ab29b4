"""Notebook widgets: the memory inspector and the correction widget (JupyterLab, offline).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".correction_widget": ["CorrectionWidget", "PromptImage", "correct_episode", "example_correction", "show_corrections"],
    ".inspector_widget": ["ClickImage", "MemoryInspectorWidget", "show_inspector"],
})
