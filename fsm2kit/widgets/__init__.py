"""Notebook widgets (JupyterLab, offline).

- ``image``: the one JS image component (click and drag) and the static fallback.
- ``inspector_widget``: the memory inspector.
- ``correction_widget``: prompts on a query slice, re-propagation and the inspector.
- ``volume_view``: the whole volume in 3D and three planes (NiiVue): scan, labels, ground truth, uncertainty.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".correction_widget": ["correct_episode", "example_correction", "show_corrections"],
    ".inspector_widget": ["show_inspector"],
    ".volume_view": ["show_prediction", "show_segmentation", "volume_viewer"],
})
