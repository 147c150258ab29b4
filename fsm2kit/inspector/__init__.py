"""The memory-bank inspector: which memories SAM2 attends to when it segments a query slice.

- ``layout``: the memory attention's key axis, named.
- ``attention``: what a capture records.
- ``capture``: the engine observer that captures attention.
- ``inspection``: an inspected run as tidy tables.
- ``panels``: its altair charts and image panels.
- ``corrected``: the inspection of a corrected run.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".capture": ["MemoryInspector"],
    ".corrected": ["InspectedCorrections", "correction_stages", "inspect_corrections"],
    ".inspection": ["Inspection", "inspect_episode"],
    ".panels": ["attention_figure", "attention_panels", "chart_png", "clicked_pixel", "inspection_charts", "layer_heatmap", "mass_chart", "memory_panels", "panel_orientation", "query_image", "share_chart", "write_inspection"],
})
