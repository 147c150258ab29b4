"""How things look.

- ``display``: radiological display orientation with edge letters, and the one colour scheme.
- ``drawing``: the one image renderer (slices, masks, outlines, attention) and panel drawing.
- ``figures``: matplotlib figures of tidy tables (overlay panels).
- ``dice_charts``: altair Dice charts in the paper's order.
- ``export``: the one export writer, presets ``screen`` and ``paper``.
- ``style``: one figure style for matplotlib and altair (font, TrueType fonts, the altair theme).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".dice_charts": ["dice_bars", "relative_position_chart", "runs_dice_chart", "slice_dice_curves"],
    ".display": ["COLORS", "MEMORY_GROUP_COLORS", "OKABE_ITO", "display_orientation", "episode_axcodes"],
    ".drawing": ["captioned", "centered_note", "colorbar", "draw_marker", "edge_letters", "grid", "hex_rgb", "legend_strip", "png_bytes", "png_img_tag", "to_pil"],
    ".export": ["save_figure", "save_presets"],
    ".figures": ["class_panels", "slice_overlays"],
    ".style": ["mpl_style", "use_style"],
})
