"""Saving charts and figures offline, in export presets (``paper``, ``screen``).

* :func:`save_chart` writes an altair chart: PNG/SVG/PDF through vl-convert, HTML with the Vega
  libraries inlined (no CDN), JSON.
* :func:`save_figure` writes a matplotlib figure: PNG, PDF, SVG.

Presets (:data:`PRESETS`):

* ``paper``: 300 dpi PNG plus PDF and SVG, at a journal column width (single 89 mm or double
  183 mm, :data:`COLUMN_WIDTHS_MM`) with every font at least 7 pt at that print size. Altair
  charts are laid out so that 1 px = 1 pt at print size (view widths shrunk to fit the column
  when needed, then scaled up to exactly the column width); matplotlib figures are resized to
  the column width (aspect kept) and small fonts raised to 7 pt for the export.
* ``screen``: PNG at 144 dpi (2x), SVG and self-contained HTML (altair) or PNG and SVG
  (matplotlib), at their own size.

Both take ``preset=None`` for the plain behaviour (``formats`` and ``scale``/``dpi`` as given).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .display import OKABE_ITO
from ..records.fileio import atomic_write

__all__ = ["CHART_FORMATS", "COLUMN_WIDTHS_MM", "ExportPreset", "PRESETS", "paper_config", "save_chart",
           "save_figure", "save_presets"]

#: Formats :func:`save_chart` writes by default (no preset).
CHART_FORMATS = ("png", "svg", "html")
_KNOWN = ("png", "svg", "pdf", "html", "json")
_FIG_KNOWN = ("png", "svg", "pdf")

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
    """

    name: str
    formats: tuple[str, ...]
    dpi: int
    min_font_pt: float | None
    print_width: bool

    @property
    def figure_formats(self) -> tuple[str, ...]:
        return tuple(f for f in self.formats if f in _FIG_KNOWN)


PRESETS: dict[str, ExportPreset] = {
    "paper": ExportPreset("paper", ("png", "pdf", "svg"), 300, 7.0, True),
    "screen": ExportPreset("screen", ("png", "svg", "html"), 144, None, False),
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
    return {
        "font": "Helvetica, Arial, sans-serif",
        "axis": {"labelFontSize": f, "titleFontSize": f, "titleFontWeight": "normal"},
        "legend": {"labelFontSize": f, "titleFontSize": f, "symbolSize": 40},
        "header": {"labelFontSize": f, "titleFontSize": f},
        "title": {"fontSize": t, "subtitleFontSize": f},
        "text": {"fontSize": f},
        "mark": {"fontSize": f},
        "range": {"category": _CATEGORY},
    }


#: Categorical colours of charts in a preset (Okabe-Ito, colour-blind safe; explicit scales win).
_CATEGORY = [OKABE_ITO[k] for k in ("blue", "orange", "bluish green", "vermillion", "sky blue", "reddish purple",
                                    "yellow", "black", "grey")]


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

    At the double-column width (the widest there is) titles and subtitles too long for it (e.g.
    a checkpoint's sha256) are wrapped into lines; at a single column they are kept, so that a
    chart with a long title goes to the double width.
    """
    import vl_convert as vlc

    spec = _paper_spec(chart.to_dict(), font_pt)
    if target_pt >= COLUMN_WIDTHS_MM["double"] * _PT_PER_MM - 1:
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


def _write_data(out: Path, data: bytes | str) -> None:
    """Write rendered chart data (text or bytes) atomically."""
    atomic_write(out, lambda tmp: (Path(tmp).write_text(data, encoding="utf-8") if isinstance(data, str)
                                   else Path(tmp).write_bytes(data)))


def save_chart(chart, path: str | os.PathLike, *, formats: Sequence[str] | None = None, scale: float = 1.0,
               preset: str | ExportPreset | None = None, width: str | float = "single") -> dict[str, Path]:
    """Save an altair chart offline, one file per format, each written atomically.

    Parameters
    ----------
    chart : altair chart
    path : path-like
        Path without extension (an extension is dropped); one file per format.
    formats : sequence of {"png", "svg", "pdf", "html", "json"}, optional
        Default: the preset's formats, or :data:`CHART_FORMATS` without a preset. ``html``
        embeds the Vega libraries (``inline=True``, about 0.9 MB), so it needs no CDN.
    scale : float
        PNG scale factor without a preset.
    preset : {"paper", "screen"}, optional
        ``paper``: print size ``width`` (PNG at 300 dpi, PDF and SVG sized in mm), fonts >= 7
        pt; ``screen``: PNG at 2x (144 dpi), SVG, HTML.
    width : {"single", "double"} or float
        Paper preset: column (89 / 183 mm) or a width in mm.

    Returns
    -------
    dict
        format -> path written.
    """
    import altair as alt

    p = _preset(preset)
    fmts = tuple(formats) if formats is not None else (p.formats if p else CHART_FORMATS)
    bad = [f for f in fmts if f not in _KNOWN]
    if bad:
        raise ValueError(f"save_chart formats {bad} unknown; expected some of {', '.join(_KNOWN)}.")
    base = _base(path, _KNOWN)
    written = {}
    with alt.data_transformers.disable_max_rows():  # tables are pre-reduced to needed columns
        if p is not None and p.print_width:
            w_mm = _width_mm(width)
            target = w_mm * _PT_PER_MM
            import vl_convert as vlc

            spec, svg, (w, h) = _fit_paper(chart, target, float(p.min_font_pt or 0))
            s = target / w  # >= 1: fonts stay >= min_font_pt at print size
            vl = _vl_version()
            svg_pt = _svg_resized(svg, f"{target:.3f}", f"{h * s:.3f}")  # vl-convert: 1 unit = 1 pt
            for fmt in fmts:
                out = base.with_name(f"{base.name}.{fmt}")
                if fmt == "svg":
                    data: bytes | str = _svg_resized(svg, f"{w_mm:.2f}mm", f"{h * s / _PT_PER_MM:.2f}mm")
                elif fmt == "png":
                    data = vlc.svg_to_png(svg_pt, scale=1.0, ppi=p.dpi)  # ppi/72 pixels per pt
                elif fmt == "pdf":
                    data = vlc.svg_to_pdf(svg_pt)
                elif fmt == "html":
                    data = vlc.vegalite_to_html(spec, vl_version=vl, bundle=True)
                else:
                    import json

                    data = json.dumps(spec, indent=2)
                _write_data(out, data)
                written[fmt] = out
            return written
        if p is not None:  # screen: the preset's colours, PNG at the preset's dpi
            import json

            import vl_convert as vlc

            spec = chart.to_dict()
            spec["config"] = _merge({"range": {"category": _CATEGORY}}, spec.get("config", {}))
            vl = _vl_version()
            for fmt in fmts:
                out = base.with_name(f"{base.name}.{fmt}")
                if fmt == "png":
                    data: bytes | str = vlc.vegalite_to_png(spec, vl_version=vl, scale=1.0, ppi=p.dpi)
                elif fmt == "svg":
                    data = vlc.vegalite_to_svg(spec, vl_version=vl)
                elif fmt == "pdf":
                    data = vlc.vegalite_to_pdf(spec, vl_version=vl)
                elif fmt == "html":
                    data = vlc.vegalite_to_html(spec, vl_version=vl, bundle=True)
                else:
                    data = json.dumps(spec, indent=2)
                _write_data(out, data)
                written[fmt] = out
            return written
        for fmt in fmts:
            out = base.with_name(f"{base.name}.{fmt}")
            kwargs: dict = {"format": fmt}
            if fmt == "html":
                kwargs["inline"] = True
            elif fmt == "png":
                kwargs["scale_factor"] = scale
            atomic_write(out, lambda tmp, kw=kwargs: chart.save(tmp, **kw))
            written[fmt] = out
    return written


# ============================================================================ matplotlib
def save_figure(fig, path: str | os.PathLike, *, preset: str | ExportPreset | None = None,
                width: str | float = "double", formats: Sequence[str] | None = None,
                dpi: int = 100) -> dict[str, Path]:
    """Save a matplotlib figure, one file per format, atomically.

    Parameters
    ----------
    fig : matplotlib.figure.Figure
    path : path-like
        Path without extension (a known extension is dropped).
    preset : {"paper", "screen"}, optional
        ``paper``: resized to ``width`` (aspect kept), fonts below 7 pt raised, PNG at 300 dpi
        plus PDF and SVG; ``screen``: PNG at 144 dpi plus SVG. The figure itself is restored
        afterwards. None: PNG (or ``formats``) at ``dpi``.
    width : {"single", "double"} or float
        Paper preset: column (89 / 183 mm) or mm.
    formats : sequence of {"png", "pdf", "svg"}, optional

    Returns
    -------
    dict
        format -> path written.
    """
    import matplotlib.text as mtext

    p = _preset(preset)
    fmts = tuple(formats) if formats is not None else (p.figure_formats if p else ("png",))
    bad = [f for f in fmts if f not in _FIG_KNOWN]
    if bad:
        raise ValueError(f"save_figure formats {bad} unknown; expected some of {', '.join(_FIG_KNOWN)}.")
    base = _base(path, _FIG_KNOWN)
    size = tuple(fig.get_size_inches())
    texts = [(t, t.get_fontsize()) for t in fig.findobj(mtext.Text)]
    try:
        if p is not None and p.print_width:
            w_in = _width_mm(width) / 25.4
            fig.set_size_inches(w_in, size[1] * w_in / size[0])
            for t, fs in texts:
                if p.min_font_pt and fs < p.min_font_pt:
                    t.set_fontsize(p.min_font_pt)
        res = p.dpi if p is not None else int(dpi)
        written = {}
        for fmt in fmts:
            out = base.with_name(f"{base.name}.{fmt}")
            atomic_write(out, lambda tmp, f=fmt: fig.savefig(tmp, format=f, dpi=res,
                                                             metadata={"Software": "fsm2kit"} if f == "png" else None))
            written[fmt] = out
        return written
    finally:
        fig.set_size_inches(*size)
        for t, fs in texts:
            t.set_fontsize(fs)


def save_presets(obj, path: str | os.PathLike, *, presets: Sequence[str] = ("screen", "paper"),
                 width: str | float | None = None) -> dict[str, Path]:
    """Save a matplotlib figure or an altair chart in several presets in one call.

    The ``screen`` files are ``<path>.<fmt>``, the ``paper`` files ``<path>_paper.<fmt>``.

    Parameters
    ----------
    obj : matplotlib.figure.Figure or altair chart
    path : path-like
        Path without extension.
    presets : sequence of {"screen", "paper"}
    width : {"single", "double"} or float, optional
        Paper width (default: double column for figures; for charts a single column, or both
        columns when the chart does not fit one at the paper fonts).

    Returns
    -------
    dict
        ``"<preset>.<fmt>"`` -> path written.
    """
    base = _base(path, _KNOWN)
    is_figure = hasattr(obj, "savefig")
    out: dict[str, Path] = {}
    for name in presets:
        p = _preset(name)
        target = base if name == "screen" else base.with_name(f"{base.name}_{name}")
        if is_figure:
            files = save_figure(obj, target, preset=p, width=width or "double")
        elif width is not None:
            files = save_chart(obj, target, preset=p, width=width)
        else:  # a single column when the chart fits there at the paper fonts, else both columns
            try:
                files = save_chart(obj, target, preset=p, width="single")
            except ValueError as exc:
                if "cannot fit" not in str(exc):
                    raise
                files = save_chart(obj, target, preset=p, width="double")
        out.update({f"{name}.{fmt}": f for fmt, f in files.items()})
    return out
