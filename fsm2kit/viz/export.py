"""Saving charts, figures and image panels offline, in export presets (``paper``, ``screen``).

:func:`save_figure` is the one writer, for all three kinds:

* an altair chart: PNG/SVG/PDF through vl-convert, HTML with the Vega libraries inlined (no CDN),
  JSON;
* a matplotlib figure (:mod:`fsm2kit.viz.figures`): PNG, PDF, SVG;
* an image panel (a PIL image: the inspector's panels): PNG, PDF, SVG (the PNG embedded, sized in
  mm), or JPEG / WebP without a preset.

Every file is written atomically. :func:`save_presets` writes several presets in one call.

Presets (:data:`PRESETS`):

* ``paper``: 300 dpi PNG plus PDF and SVG, at a journal column width (single 89 mm or double
  183 mm, :data:`COLUMN_WIDTHS_MM`) with every font at least 7 pt at that print size. Altair
  charts are laid out so that 1 px = 1 pt at print size (view widths shrunk to fit the column
  when needed, then scaled up to exactly the column width); matplotlib figures are resized to
  the column width (aspect kept) and small fonts raised to 7 pt for the export; panels are
  resampled to the column width, refused when their smallest text
  (:data:`fsm2kit.viz.drawing.PANEL_MIN_FONT_PX`) would print below 7 pt.
* ``screen``: PNG at 144 dpi (2x), SVG and self-contained HTML (altair), PNG and SVG
  (matplotlib), PNG (panels), at their own size.

``preset=None`` is the plain behaviour (``formats`` and ``scale``/``dpi`` as given).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .drawing import PANEL_MIN_FONT_PX
from .style import CATEGORY_COLORS, THEME_NAME, chart_config, mpl_style, register_fonts, register_theme
from ..records.fileio import atomic_write

__all__ = ["CHART_FORMATS", "COLUMN_WIDTHS_MM", "ExportPreset", "PRESETS", "paper_config", "save_figure",
           "save_presets"]

#: Formats :func:`save_figure` writes of a chart by default (no preset).
CHART_FORMATS = ("png", "svg", "html")
#: Formats of each kind of object.
_KNOWN = {"chart": ("png", "svg", "pdf", "html", "json"), "figure": ("png", "svg", "pdf"),
          "image": ("png", "svg", "pdf", "jpg", "jpeg", "webp")}

#: Journal column widths (mm).
COLUMN_WIDTHS_MM = {"single": 89.0, "double": 183.0}
_PT_PER_MM = 72.0 / 25.4


@dataclass(frozen=True)
class ExportPreset:
    """An export preset.

    Attributes
    ----------
    name : str
    formats : tuple of str
        Altair formats; matplotlib figures write those of ``png``/``pdf``/``svg``.
    dpi : int
        PNG resolution (dots per inch, written into the PNG).
    min_font_pt : float or None
        Smallest font at print size (paper), None: not enforced.
    print_width : bool
        Scale to a column width (paper) or keep the figure's own size (screen).
    image_formats : tuple of str
        What image panels (PIL) write.
    """

    name: str
    formats: tuple[str, ...]
    dpi: int
    min_font_pt: float | None
    print_width: bool
    image_formats: tuple[str, ...] = ("png",)

    @property
    def figure_formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in _KNOWN["figure"])

    def formats_of(self, kind: str) -> tuple[str, ...]:
        """The formats this preset writes of a ``chart``, a ``figure`` or an ``image``."""
        return {"chart": self.formats, "figure": self.figure_formats, "image": self.image_formats}[kind]


PRESETS: dict[str, ExportPreset] = {
    "paper": ExportPreset("paper", ("png", "pdf", "svg"), 300, 7.0, True, ("png", "pdf", "svg")),
    "screen": ExportPreset("screen", ("png", "svg", "html"), 144, None, False, ("png",)),
}


def _preset(preset: str | ExportPreset | None) -> ExportPreset | None:
    if preset is None or isinstance(preset, ExportPreset):
        return preset
    if preset not in PRESETS:
        raise ValueError(f"preset {preset!r} unknown; expected one of {', '.join(PRESETS)} (or None).")
    return PRESETS[preset]


def _width_mm(width: str | float) -> float:
    if isinstance(width, str):
        if width not in COLUMN_WIDTHS_MM:
            raise ValueError(f"width {width!r} unknown; expected 'single' (89 mm), 'double' (183 mm) or a number of mm.")
        return COLUMN_WIDTHS_MM[width]
    w = float(width)
    if not 10 <= w <= 400:
        raise ValueError(f"width must be in mm (10-400), got {width!r}.")
    return w


def _base(path: str | os.PathLike, known: Sequence[str]) -> Path:
    base = Path(path)
    return base.with_suffix("") if base.suffix.lower().lstrip(".") in known else base


# ============================================================================ altair
def paper_config(*, font_pt: float = 7.0, title_pt: float = 8.0) -> dict:
    """Vega-Lite ``config`` of the paper preset: every font >= ``font_pt`` (1 px = 1 pt at print)."""
    f, t = float(font_pt), float(max(title_pt, font_pt))
    return _merge(chart_config(), {
        "axis": {"labelFontSize": f, "titleFontSize": f, "titleFontWeight": "normal"},
        "legend": {"labelFontSize": f, "titleFontSize": f, "symbolSize": 40},
        "header": {"labelFontSize": f, "titleFontSize": f},
        "title": {"fontSize": t, "subtitleFontSize": f},
        "text": {"fontSize": f},
        "mark": {"fontSize": f},
    })




def _font_sizes(obj) -> list[float]:
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k.lower().endswith("fontsize"):
                out.append(float(v))
            else:
                out.extend(_font_sizes(v))
    elif isinstance(obj, list):
        for v in obj:
            out.extend(_font_sizes(v))
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _paper_spec(spec: dict, font_pt: float) -> dict:
    """The spec with the paper config; explicit font sizes below ``font_pt`` raised."""
    spec = dict(spec)
    spec["config"] = _merge(spec.get("config", {}), paper_config(font_pt=font_pt))

    def lift(o):
        if isinstance(o, dict):
            return {k: (max(float(v), font_pt) if k.lower().endswith("fontsize") and isinstance(v, (int, float))
                        and not isinstance(v, bool) else lift(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [lift(v) for v in o]
        return o

    return lift(spec)


def _scale_views(spec, f: float):
    """Multiply every view ``width`` (and, when shrinking, ``height``) outside ``config`` by ``f``."""
    keys = ("width", "height") if f < 1 else ("width",)
    if isinstance(spec, dict):
        return {k: (max(20, int(round(v * f))) if k in keys and isinstance(v, (int, float))
                    and not isinstance(v, bool) else (v if k == "config" else _scale_views(v, f)))
                for k, v in spec.items()}
    if isinstance(spec, list):
        return [_scale_views(v, f) for v in spec]
    return spec


def _svg_size(svg: str) -> tuple[float, float]:
    m = re.search(r"<svg[^>]*>", svg)
    head = m.group(0) if m else ""
    w = re.search(r'\swidth="([\d.]+)', head)
    h = re.search(r'\sheight="([\d.]+)', head)
    if not (w and h):
        raise RuntimeError("vl-convert returned an SVG without width/height.")
    return float(w.group(1)), float(h.group(1))


def _svg_resized(svg: str, width: str, height: str) -> str:
    """The root ``<svg>`` with another width/height (its viewBox keeps the drawing)."""
    m = re.search(r"<svg[^>]*>", svg)
    head = m.group(0)
    w, h = _svg_size(svg)
    new = re.sub(r'(\s)width="[^"]*"', rf'\1width="{width}"', head, count=1)
    new = re.sub(r'(\s)height="[^"]*"', rf'\1height="{height}"', new, count=1)
    if "viewBox" not in new:
        new = new[:-1] + f' viewBox="0 0 {w:g} {h:g}">'
    return svg.replace(head, new, 1)


def _vl_version() -> str:
    import altair as alt

    return "v" + "_".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def _wrap_titles(spec, max_chars: int):
    """Every title's ``text`` and ``subtitle`` longer than ``max_chars`` as lines (long words broken)."""
    import textwrap

    def lines(v):
        if isinstance(v, str) and len(v) > max_chars:
            return textwrap.wrap(v, max_chars, break_long_words=True, break_on_hyphens=False)
        return v

    if isinstance(spec, dict):
        out = {}
        for k, v in spec.items():
            if k == "title" and isinstance(v, str):
                out[k] = lines(v)
            elif k == "title" and isinstance(v, dict):
                out[k] = {kk: (lines(vv) if kk in ("text", "subtitle") else vv) for kk, vv in v.items()}
            elif k == "config":
                out[k] = v
            else:
                out[k] = _wrap_titles(v, max_chars)
        return out
    if isinstance(spec, list):
        return [_wrap_titles(v, max_chars) for v in spec]
    return spec


def _fit_paper(chart, target_pt: float, font_pt: float) -> tuple[dict, str, tuple[float, float]]:
    """(Vega-Lite spec with the paper config fitted to ``target_pt``, its SVG, its natural size).

    Titles and subtitles too long for the column (e.g. a checkpoint's sha256) are wrapped into
    lines, so a long title never pushes a one-organ chart to the double width.
    """
    import vl_convert as vlc

    spec = _paper_spec(chart.to_dict(), font_pt)
    spec = _wrap_titles(spec, max(20, int(target_pt / (0.62 * 1.3 * max(font_pt, 7.0)))))
    best = None
    for _ in range(5):  # views shrink (or grow) until the chart is 92-100 % of the column
        svg = vlc.vegalite_to_svg(spec, vl_version=_vl_version())
        w, h = _svg_size(svg)
        if w <= target_pt + 0.5:
            best = (spec, svg, (w, h))
            if w >= 0.92 * target_pt:
                break
        spec = _scale_views(spec, min(2.0, max(0.3, target_pt / w * (0.97 if w > target_pt else 0.99))))
    if best is not None:
        return best
    raise ValueError(f"the chart is {w:.0f} pt wide even with shrunk views and cannot fit {target_pt / _PT_PER_MM:.0f} mm "
                     "at the paper fonts; use width='double' or fewer facets.")


# ============================================================================ one writer
#: What a format becomes: the data (text or bytes) or a function writing it to a (temporary) path.
_Writer = Callable[[str], object] | bytes | str


def _kind(obj) -> str:
    """``figure`` (matplotlib), ``image`` (PIL) or ``chart`` (altair)."""
    if hasattr(obj, "savefig"):
        return "figure"
    from PIL import Image

    if isinstance(obj, Image.Image):
        return "image"
    if hasattr(obj, "to_dict"):
        return "chart"
    raise TypeError(f"save_figure saves an altair chart, a matplotlib figure or a PIL image, not {type(obj).__name__}.")


def _write(base: Path, writers: Mapping[str, _Writer]) -> dict[str, Path]:
    """``<base>.<fmt>`` of every format, each written atomically."""
    written = {}
    for fmt, w in writers.items():
        out = base.with_name(f"{base.name}.{fmt}")
        if isinstance(w, str):
            atomic_write(out, lambda tmp, d=w: Path(tmp).write_text(d, encoding="utf-8"))
        elif isinstance(w, bytes):
            atomic_write(out, lambda tmp, d=w: Path(tmp).write_bytes(d))
        else:
            atomic_write(out, w)
        written[fmt] = out
    return written


def save_figure(obj, path: str | os.PathLike, *, preset: str | ExportPreset | None = None,
                width: str | float | None = None, formats: Sequence[str] | None = None,
                scale: float = 1.0, dpi: int = 100) -> dict[str, Path]:
    """Save an altair chart, a matplotlib figure or an image panel offline, one file per format,
    each written atomically: the one export writer.

    Parameters
    ----------
    obj : altair chart, matplotlib.figure.Figure or PIL.Image.Image
    path : path-like
        Path without extension (a known extension is dropped); one file per format.
    preset : {"paper", "screen"}, optional
        ``paper``: print size ``width`` (PNG at 300 dpi, PDF and SVG sized in mm), fonts >= 7
        pt; ``screen``: PNG at 2x (144 dpi), plus SVG and HTML (charts) or SVG (figures). A
        matplotlib figure itself is restored afterwards. See the module docstring.
    width : {"single", "double"} or float, optional
        Paper preset: column (89 / 183 mm) or a width in mm. Default: figures and panels the
        double column; charts a single column, or both when they do not fit one at the paper fonts.
    formats : sequence of str, optional
        Charts ``png``, ``svg``, ``pdf``, ``html``, ``json`` (default: the preset's, or
        :data:`CHART_FORMATS`; ``html`` embeds the Vega libraries, about 0.9 MB, so it needs no
        CDN); figures ``png``, ``pdf``, ``svg`` (default: the preset's, or PNG); panels ``png``,
        ``pdf``, ``svg``, ``jpg``, ``webp`` (default: the preset's, or the path's extension, else PNG).
    scale : float
        Charts without a preset: PNG scale factor.
    dpi : int
        Figures without a preset: resolution.

    Returns
    -------
    dict
        format -> path written.
    """
    p = _preset(preset)
    kind = _kind(obj)
    known = _KNOWN[kind]
    if formats is not None:
        fmts = tuple(formats)
    elif p is not None:
        fmts = p.formats_of(kind)
    elif kind == "image":
        suffix = Path(path).suffix.lower().lstrip(".")
        fmts = (suffix if suffix in known else "png",)
    else:
        fmts = CHART_FORMATS if kind == "chart" else ("png",)
    bad = [f for f in fmts if f not in known]
    if bad:
        raise ValueError(f"save_figure formats {bad} unknown for a {kind}; expected some of {', '.join(known)}.")
    base = _base(path, known)
    if kind == "figure":
        with _print_size(obj, p, width or "double"):
            return _write(base, _figure_writers(obj, fmts, p.dpi if p is not None else int(dpi)))
    if kind == "image":
        return _write(base, _image_writers(obj, fmts, p, width or "double"))
    import altair as alt

    with alt.data_transformers.disable_max_rows():  # tables are pre-reduced to needed columns
        if width is None and p is not None and p.print_width:  # a single column when the chart fits there
            try:
                writers = _chart_writers(obj, fmts, p, "single", scale)
            except ValueError as exc:
                if "cannot fit" not in str(exc):
                    raise
                writers = _chart_writers(obj, fmts, p, "double", scale)
        else:
            writers = _chart_writers(obj, fmts, p, width or "single", scale)
        return _write(base, writers)


# ---------------------------------------------------------------------------- altair
def _chart_writers(chart, fmts: Sequence[str], p: ExportPreset | None, width: str | float,
                   scale: float) -> dict[str, _Writer]:
    import json

    register_fonts()
    if p is None:  # altair's own writer, in the fsm2kit theme; html with the libraries inlined
        import altair as alt

        register_theme()
        kwargs = {"html": {"inline": True}, "png": {"scale_factor": scale}}

        def save(tmp, f):
            with alt.theme.enable(THEME_NAME) if hasattr(alt, "theme") else alt.themes.enable(THEME_NAME):
                chart.save(tmp, format=f, **kwargs.get(f, {}))

        return {fmt: (lambda tmp, f=fmt: save(tmp, f)) for fmt in fmts}
    import vl_convert as vlc

    vl = _vl_version()
    out: dict[str, _Writer] = {}
    if p.print_width:
        w_mm = _width_mm(width)
        target = w_mm * _PT_PER_MM
        spec, svg, (w, h) = _fit_paper(chart, target, float(p.min_font_pt or 0))
        s = target / w  # >= 1: fonts stay >= min_font_pt at print size
        svg_pt = _svg_resized(svg, f"{target:.3f}", f"{h * s:.3f}")  # vl-convert: 1 unit = 1 pt
        for fmt in fmts:
            if fmt == "svg":
                out[fmt] = _svg_resized(svg, f"{w_mm:.2f}mm", f"{h * s / _PT_PER_MM:.2f}mm")
            elif fmt == "png":
                out[fmt] = vlc.svg_to_png(svg_pt, scale=1.0, ppi=p.dpi)  # ppi/72 pixels per pt
            elif fmt == "pdf":
                out[fmt] = vlc.svg_to_pdf(svg_pt)
            elif fmt == "html":
                out[fmt] = vlc.vegalite_to_html(spec, vl_version=vl, bundle=True)
            else:
                out[fmt] = json.dumps(spec, indent=2)
        return out
    spec = chart.to_dict()  # screen: the preset's colours, PNG at the preset's dpi
    spec["config"] = _merge(chart_config(), spec.get("config", {}))
    for fmt in fmts:
        if fmt == "png":
            out[fmt] = vlc.vegalite_to_png(spec, vl_version=vl, scale=1.0, ppi=p.dpi)
        elif fmt == "svg":
            out[fmt] = vlc.vegalite_to_svg(spec, vl_version=vl)
        elif fmt == "pdf":
            out[fmt] = vlc.vegalite_to_pdf(spec, vl_version=vl)
        elif fmt == "html":
            out[fmt] = vlc.vegalite_to_html(spec, vl_version=vl, bundle=True)
        else:
            out[fmt] = json.dumps(spec, indent=2)
    return out


# ---------------------------------------------------------------------------- matplotlib
@contextmanager
def _print_size(fig, p: ExportPreset | None, width: str | float):
    """The figure at the paper preset's column width with its small fonts raised; restored after."""
    import matplotlib.text as mtext

    size = tuple(fig.get_size_inches())
    texts = [(t, t.get_fontsize()) for t in fig.findobj(mtext.Text)]
    try:
        if p is not None and p.print_width:
            w_in = _width_mm(width) / 25.4
            fig.set_size_inches(w_in, size[1] * w_in / size[0])
            for t, fs in texts:
                if p.min_font_pt and fs < p.min_font_pt:
                    t.set_fontsize(p.min_font_pt)
        yield
    finally:
        fig.set_size_inches(*size)
        for t, fs in texts:
            t.set_fontsize(fs)


def _figure_writers(fig, fmts: Sequence[str], dpi: int) -> dict[str, _Writer]:
    def save(tmp, f):
        with mpl_style():  # TrueType fonts in PDF, editable SVG text
            fig.savefig(tmp, format=f, dpi=dpi, metadata={"Software": "fsm2kit"} if f == "png" else None)

    return {fmt: (lambda tmp, f=fmt: save(tmp, f)) for fmt in fmts}


# ---------------------------------------------------------------------------- image panels (PIL)
def _image_writers(img, fmts: Sequence[str], p: ExportPreset | None, width: str | float) -> dict[str, _Writer]:
    import base64
    import io

    from PIL import Image

    dpi = p.dpi if p is not None else None
    mm_per_px = 25.4 / (dpi or 96)
    if p is not None and p.print_width:
        w_mm = _width_mm(width)
        px = int(round(w_mm / 25.4 * p.dpi))
        factor = px / img.size[0]
        smallest_pt = PANEL_MIN_FONT_PX * factor / p.dpi * 72
        if p.min_font_pt and smallest_pt < p.min_font_pt - 1e-6:
            raise ValueError(f"the panel is {img.size[0]} px wide: at {w_mm:g} mm its smallest text prints at "
                             f"{smallest_pt:.1f} pt (< {p.min_font_pt:g}); render it with a smaller size= or a wider width.")
        img = img.convert("RGB").resize((px, max(1, int(round(img.size[1] * factor)))), Image.Resampling.LANCZOS)
        mm_per_px = w_mm / px
    at = {"dpi": (dpi, dpi)} if dpi else {}
    out: dict[str, _Writer] = {}
    for fmt in fmts:
        if fmt == "svg":  # the PNG embedded, sized in mm
            buf = io.BytesIO()
            img.save(buf, format="PNG", **at)
            w, h = img.size
            out[fmt] = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
                        f'width="{w * mm_per_px:.2f}mm" height="{h * mm_per_px:.2f}mm" viewBox="0 0 {w} {h}">'
                        f'<image width="{w}" height="{h}" '
                        f'xlink:href="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode("ascii")}"/></svg>')
        elif fmt == "pdf":
            out[fmt] = lambda tmp: img.convert("RGB").save(tmp, format="PDF", resolution=float(dpi or 72))
        else:
            name = {"jpg": "JPEG", "jpeg": "JPEG"}.get(fmt, fmt.upper())
            rgb = img.convert("RGB") if name == "JPEG" else img
            out[fmt] = lambda tmp, im=rgb, n=name: im.save(tmp, format=n, **at)
    return out


def save_presets(obj, path: str | os.PathLike, *, presets: Sequence[str] = ("screen", "paper"),
                 width: str | float | None = None) -> dict[str, Path]:
    """:func:`save_figure` of a chart, a figure or a panel in several presets in one call.

    The ``screen`` files are ``<path>.<fmt>``, the ``paper`` files ``<path>_paper.<fmt>``.

    Parameters
    ----------
    obj : altair chart, matplotlib.figure.Figure or PIL.Image.Image
    path : path-like
        Path without extension.
    presets : sequence of {"screen", "paper"}
    width : {"single", "double"} or float, optional
        Paper width (default: double column for figures and panels; for charts a single column,
        or both columns when the chart does not fit one at the paper fonts).

    Returns
    -------
    dict
        ``"<preset>.<fmt>"`` -> path written.
    """
    base = _base(path, _KNOWN[_kind(obj)])
    out: dict[str, Path] = {}
    for name in presets:
        target = base if name == "screen" else base.with_name(f"{base.name}_{name}")
        files = save_figure(obj, target, preset=_preset(name), width=width)
        out.update({f"{name}.{fmt}": f for fmt, f in files.items()})
    return out
