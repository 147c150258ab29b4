"""How things look.

- ``display``: radiological display orientation with edge letters, and the one colour scheme.
- ``drawing``: the one image renderer (slices, masks, outlines, attention) and panel drawing.
- ``figures``: matplotlib figures of tidy tables (overlay panels).
- ``dice_charts``: altair Dice charts in the paper's order.
- ``export``: the one export writer, presets ``screen`` and ``paper``.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dice_charts": ["AXIS_TITLES", "dice_bars", "relative_position_chart", "relative_position_dice", "runs_dice_chart", "slice_dice_curves", "sort_order"],
    ".display": ["ATTENTION_CMAP", "COLORS", "DisplayOrientation", "DisplaySlice", "MEMORY_GROUP_COLORS", "OKABE_ITO", "PROTOCOL_AXCODES", "axcodes_from_affine", "display_orientation", "display_slice", "episode_axcodes"],
    ".drawing": ["PANEL_MIN_FONT_PX", "captioned", "centered_note", "colorbar", "draw_marker", "edge_letters", "gray01", "grid", "heat_overlay", "hex_rgb", "legend_strip", "oriented", "outline", "paint_fill", "paint_outline", "pil_font", "png_bytes", "png_img_tag", "to_pil"],
    ".export": ["CHART_FORMATS", "COLUMN_WIDTHS_MM", "ExportPreset", "PRESETS", "paper_config", "save_figure", "save_presets"],
    ".figures": ["class_panels", "slice_overlays", "weights_label"],
})
