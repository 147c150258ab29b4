"""The memory-bank inspector: attention capture, tidy tables, views and the notebook widget.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".capture": ['KeyEntry', 'KeyLayout', 'key_layout', 'query_token', 'token_weights', 'PixelAttention', 'StepAttention', 'Inspection', 'MemoryInspector', 'attention_weights', 'inspect_episode', 'MASS_COLUMNS'],
    ".views": ['chart_masses', 'mass_chart', 'share_chart', 'layer_heatmap', 'save_chart', 'chart_png', 'query_image', 'query_panel', 'memory_panels', 'attention_panels', 'save_panel', 'write_inspection', 'GROUP_COLORS'],
    ".widget": ['ClickImage', 'MemoryInspectorWidget', 'show_inspector'],
})
