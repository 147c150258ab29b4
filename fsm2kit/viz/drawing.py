"""The one image renderer and the drawing primitives of image panels (PIL, numpy).

:func:`render_slice` turns a slice, its masks (filled or outlined), an attention map and its
orientation into the displayed RGB array (radiological, :mod:`fsm2kit.viz.display`) with its
edge letters. Every image shows slices through it: the inspector's PIL panels and the widgets
(:func:`to_pil`, then :func:`edge_letters`, markers, notes, captions) and the matplotlib figures
of :mod:`fsm2kit.viz.figures` (which ``imshow`` the array and only lay out, title and save).
Colours come from :data:`fsm2kit.viz.display.COLORS` and attention maps use
:data:`fsm2kit.viz.display.ATTENTION_CMAP` with a colour bar.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Sequence

from .display import ATTENTION_CMAP, COLORS, DisplayOrientation, DisplaySlice, display_orientation

__all__ = [
    "render_slice",
    "hex_rgb",
    "gray01",
    "outline",
    "heat_overlay",
    "paint_outline",
    "paint_fill",
    "oriented",
    "to_pil",
    "draw_marker",
    "pil_font",
    "captioned",
    "grid",
    "edge_letters",
    "centered_note",
    "colorbar",
    "legend_strip",
    "png_bytes",
    "png_img_tag",
    "PANEL_MIN_FONT_PX",
]

#: Smallest text drawn on panels (px): edge letters and legends (the paper preset of
#: :func:`fsm2kit.viz.export.save_figure` checks that it prints at >= 7 pt).
PANEL_MIN_FONT_PX = 10


def hex_rgb(color: str) -> tuple[float, float, float]:
    """``"#E69F00"`` -> (0.90, 0.62, 0.0)."""
    c = color.lstrip("#")
    return tuple(int(c[i:i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


def gray01(image: np.ndarray, window: tuple[float, float] | None = None) -> np.ndarray:
    """A slice (or its first channel) scaled to [0, 1]: min-max, or between the ``window``
    percentiles (e.g. ``(0.5, 99.5)``), clipped."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a[0]
    if window is None or not a.size:
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 1.0)
    else:
        lo, hi = (float(v) for v in np.percentile(a, window))
    return np.clip((a - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(a)


def outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a mask."""
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, border_value=0)


def heat_overlay(gray: np.ndarray, heat: np.ndarray | None = None, *, alpha: float = 0.65,
                 cmap: str = ATTENTION_CMAP) -> np.ndarray:
    """RGB of a gray slice with a [0, 1] heat map blended over it (stronger where hotter)."""
    base = np.repeat(gray[..., None], 3, axis=2)
    if heat is not None:
        import matplotlib

        lut = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
        h = np.clip(heat, 0, 1)
        col = lut[(h * 255).astype(int)]
        a = alpha * (0.25 + 0.75 * h)[..., None]
        base = (1 - a) * base + a * col
    return base


def paint_outline(rgb: np.ndarray, mask: np.ndarray | None, color: str) -> np.ndarray:
    """``rgb`` with the mask's boundary drawn in ``color``."""
    if mask is not None and np.any(mask):
        rgb = rgb.copy()
        rgb[outline(mask)] = hex_rgb(color)
    return rgb


def paint_fill(rgb: np.ndarray, mask: np.ndarray | None, color: str, *, alpha: float = 0.4,
               outlined: bool = True) -> np.ndarray:
    """``rgb`` with the mask filled (semi-transparent) and (``outlined``) outlined in ``color``."""
    if mask is None or not np.any(mask):
        return rgb
    m = np.asarray(mask, dtype=bool)
    out = rgb.copy()
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(hex_rgb(color))
    return paint_outline(out, m, color) if outlined else out


def render_slice(image: np.ndarray, orientation=None, *, fill: np.ndarray | None = None,
                 fill_color: str = COLORS["prediction"],
                 outlines: Sequence[tuple[np.ndarray | None, str]] = (), heat: np.ndarray | None = None,
                 window: tuple[float, float] | None = None, vector: bool = False) -> DisplaySlice:
    """A slice with its masks as displayed: the one renderer of panels, widgets and figures.

    Parameters
    ----------
    image : ndarray, (H, W) (or (C, H, W): the first channel)
        As stored; masks are in the same (stored) layout.
    orientation : DisplayOrientation, axis codes, affine or None
        See :func:`fsm2kit.viz.display.display_orientation` (None: shown as stored, no letters).
    fill : mask, optional
        Filled (semi-transparent) and outlined in ``fill_color`` (a prediction, a support mask).
    fill_color : str
        A colour of :data:`fsm2kit.viz.display.COLORS`.
    outlines : sequence of (mask or None, colour)
        Outlined only, over the fill, in order (the ground truth; a memory frame's mask).
    heat : ndarray in [0, 1], optional
        An attention map blended over the slice (:data:`~fsm2kit.viz.display.ATTENTION_CMAP`).
    window : (low, high) percentiles, optional
        Grey window (default: min-max).
    vector : bool
        Leave the outlines out of the raster (the fill stays): a vector figure draws them as
        contours (:func:`fsm2kit.viz.figures.image_axes`).

    Returns
    -------
    DisplaySlice
        ``array``: RGB (H', W', 3) in [0, 1], radiological; ``letters``: the edge letters (None
        when the orientation is unknown); ``orientation``.
    """
    o = orientation if orientation is None or isinstance(orientation, DisplayOrientation) \
        else display_orientation(orientation)
    rgb = paint_fill(heat_overlay(gray01(image, window), heat), fill, fill_color, outlined=not vector)
    for mask, color in () if vector else outlines:
        rgb = paint_outline(rgb, mask, color)
    return DisplaySlice(oriented(rgb, o), None if o is None else o.letters, o)


def oriented(a: np.ndarray | None, orientation: DisplayOrientation | None) -> np.ndarray | None:
    """A slice (or (H, W, 3) image, or mask) in the display orientation (None passes through)."""
    if a is None or orientation is None:
        return a
    return np.ascontiguousarray(orientation.apply(np.asarray(a)))


def to_pil(rgb: np.ndarray, size: int):
    """A PIL image of an RGB array in [0, 1], its longer side resized to ``size``."""
    from PIL import Image

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if size and img.size != (size, size):
        w, h = img.size
        s = size / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return img


def draw_marker(img, pixel: tuple[float, float], shape: tuple[int, int], color: str):
    """A cross-hair at display pixel ``(y, x)`` of a slice of display ``shape``."""
    from PIL import ImageDraw

    y, x = pixel
    sy, sx = img.size[1] / shape[0], img.size[0] / shape[1]
    cy, cx = (y + 0.5) * sy, (x + 0.5) * sx
    d = ImageDraw.Draw(img)
    r = max(4, img.size[0] // 32)
    rgb = tuple(int(v * 255) for v in hex_rgb(color))
    for w, c in ((6, (0, 0, 0)), (4, (255, 255, 255)), (2, rgb)):  # black and white halos: seen on any fill
        d.line([(cx - r, cy), (cx + r, cy)], fill=c, width=w)
        d.line([(cx, cy - r), (cx, cy + r)], fill=c, width=w)
    d.ellipse([cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1], outline=(0, 0, 0), width=1)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=rgb, width=2)
    return img


def pil_font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def captioned(img, lines: list[str], *, font_size: int = 12):
    """``img`` with text lines above it."""
    from PIL import Image, ImageDraw

    font = pil_font(font_size)
    pad = 3
    line_h = font_size + 3
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max((int(probe.textlength(t, font=font)) + 2 * pad for t in lines), default=0)
    out = Image.new("RGB", (max(img.size[0], text_w), img.size[1] + pad * 2 + line_h * len(lines)), "white")
    out.paste(img, (0, pad * 2 + line_h * len(lines)))
    d = ImageDraw.Draw(out)
    for i, t in enumerate(lines):
        d.text((pad, pad + i * line_h), t, fill=(0, 0, 0), font=font)
    return out


def grid(tiles: list, *, columns: int, gap: int = 6):
    """Tiles in rows of ``columns`` on white."""
    from PIL import Image

    if not tiles:
        return Image.new("RGB", (1, 1), "white")
    columns = max(1, min(columns, len(tiles)))
    rows = [tiles[i:i + columns] for i in range(0, len(tiles), columns)]
    w = max(sum(t.size[0] for t in r) + gap * (len(r) - 1) for r in rows)
    h = sum(max(t.size[1] for t in r) for r in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (w, h), "white")
    y = 0
    for r in rows:
        x = 0
        for t in r:
            out.paste(t, (x, y))
            x += t.size[0] + gap
        y += max(t.size[1] for t in r) + gap
    return out


def _outlined_text(d, xy, text, font, anchor):
    d.text(xy, text, fill=(255, 255, 255), font=font, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


def edge_letters(img, letters: dict | None, *, font_size: int | None = None):
    """Orientation letters (``top``/``bottom``/``left``/``right``) in the middle of each edge."""
    if not letters:
        return img
    from PIL import ImageDraw

    w, h = img.size
    font = pil_font(font_size or max(10, min(w, h) // 16))
    d = ImageDraw.Draw(img)
    m = 3
    _outlined_text(d, (w / 2, m), letters["top"], font, "mt")
    _outlined_text(d, (w / 2, h - m), letters["bottom"], font, "mb")
    _outlined_text(d, (m, h / 2), letters["left"], font, "lm")
    _outlined_text(d, (w - m, h / 2), letters["right"], font, "rm")
    return img


def centered_note(img, text: str, color: str, *, height: float = 0.8):
    """A short note (e.g. "no prediction") in a coloured box, centred at ``height`` of the image
    (below the middle, where the default pixel marker sits)."""
    from PIL import ImageDraw

    w, h = img.size
    font = pil_font(max(10, w // 18))
    d = ImageDraw.Draw(img)
    xy = (w / 2, h * height)
    box = d.textbbox(xy, text, font=font, anchor="mm")
    fill = tuple(int(v * 255) for v in hex_rgb(color))
    d.rectangle([box[0] - 4, box[1] - 3, box[2] + 4, box[3] + 3], fill=fill)
    d.text(xy, text, fill=(255, 255, 255), font=font, anchor="mm")
    return img


def colorbar(width: int, *, vmax: float, label: str, cmap: str = ATTENTION_CMAP, height: int = 12):
    """A horizontal colour bar 0 .. ``vmax`` with its label and end values."""
    import matplotlib
    from PIL import Image, ImageDraw

    lut = (matplotlib.colormaps[cmap](np.linspace(0, 1, max(2, width - 20)))[:, :3] * 255).astype(np.uint8)
    bar = Image.fromarray(np.repeat(lut[None], height, axis=0))
    font = pil_font(11)
    out = Image.new("RGB", (width, height + 34), "white")
    d = ImageDraw.Draw(out)
    d.text((10, 0), label, fill=(0, 0, 0), font=font)
    out.paste(bar, (10, 15))
    d.rectangle([10, 15, 10 + bar.size[0] - 1, 15 + height - 1], outline=(0, 0, 0))
    d.text((10, 17 + height), "0", fill=(0, 0, 0), font=font)
    d.text((10 + bar.size[0], 17 + height), f"{vmax:.3g}", fill=(0, 0, 0), font=font, anchor="ra")
    return out


def legend_strip(items: list[tuple[str, str, str]], *, font_size: int = 11, vertical: bool = False):
    """A legend of (label, colour, "fill" | "line" | "marker") items, in one line or stacked."""
    from PIL import Image, ImageDraw

    font = pil_font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [probe.textlength(lab, font=font) for lab, _, _ in items]
    line_h = font_size + 10
    if vertical:
        w, h = int(max(widths) + 30), line_h * len(items)
    else:
        w, h = int(sum(widths) + len(items) * 30 + 10), line_h
    out = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(out)
    x, cy = 5, line_h // 2
    for (lab, color, kind), tw in zip(items, widths):
        c = tuple(int(v * 255) for v in hex_rgb(color))
        if kind == "fill":
            d.rectangle([x, cy - 6, x + 14, cy + 6], fill=c, outline=c)
        elif kind == "line":
            d.line([(x, cy), (x + 14, cy)], fill=c, width=3)
        else:
            d.line([(x + 7, cy - 6), (x + 7, cy + 6)], fill=c, width=2)
            d.line([(x, cy), (x + 14, cy)], fill=c, width=2)
        d.text((x + 19, cy), lab, fill=(0, 0, 0), font=font, anchor="lm")
        if vertical:
            cy += line_h
        else:
            x += int(tw) + 30
    return out


def png_bytes(img) -> bytes:
    """A PIL image as PNG bytes (for widget images)."""
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_img_tag(data: bytes, cls: str) -> str:
    """PNG bytes as a self-contained ``<img>`` (a data URI) of class ``cls``; "" for no data."""
    import base64

    if not data:
        return ""
    return (f"<img class='{cls}' style='max-width:100%' "
            f"src='data:image/png;base64,{base64.b64encode(data).decode('ascii')}'/>")
