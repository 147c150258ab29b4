"""The memory-bank inspector: attention capture, tidy tables, views and the notebook widget.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".attention": ['PixelAttention', 'StepAttention', 'attention_weights', 'attention_inputs'],
    ".capture": ['MemoryInspector'],
    ".corrections": ['inspect_corrections', 'correction_stages'],
    ".correction_widget": ['PromptImage', 'CorrectionWidget', 'correct_episode', 'show_corrections', 'example_correction'],
    ".drawing": ['hex_rgb', 'gray01', 'outline', 'heat_overlay', 'paint_outline', 'paint_fill', 'oriented', 'to_pil', 'draw_marker', 'pil_font', 'captioned', 'grid', 'edge_letters', 'centered_note', 'colorbar', 'legend_strip', 'png_bytes', 'png_img_tag'],
    ".inspection": ['Inspection', 'inspect_episode', 'MASS_COLUMNS'],
    ".layout": ['KeyEntry', 'KeyLayout', 'key_layout', 'layout_entries', 'query_token', 'token_weights', 'ENTRY_GROUPS'],
    ".views": ['chart_masses', 'mass_chart', 'share_chart', 'layer_heatmap', 'chart_png', 'query_image', 'query_panel', 'memory_panels', 'attention_panels', 'save_panel', 'write_inspection', 'inspection_charts', 'GROUP_COLORS', 'role_colors', 'panel_orientation', 'clicked_pixel', 'PANEL_MIN_FONT_PX'],
    ".widget": ['ClickImage', 'MemoryInspectorWidget', 'show_inspector'],
})
