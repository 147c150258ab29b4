"""One figure style for matplotlib and altair: one font family, embedded TrueType fonts, one palette.

* :data:`FONT_FAMILY` (DejaVu Sans: shipped with matplotlib, so it is there offline) is the font of
  every matplotlib figure and every altair chart; :func:`register_fonts` makes vl-convert (the
  chart exporter) find it even where the system has no copy.
* :func:`mpl_style` is a ``matplotlib.rc_context`` (never a process-wide change): fonts
  embedded as TrueType in PDF and PostScript (``pdf.fonttype=42``, no Type 3 fonts, as IEEE PDF
  eXpress requires), SVG text kept as editable ``<text>`` (``svg.fonttype='none'``), the one font
  family. :mod:`fsm2kit.viz.figures` builds its figures inside it and
  :func:`fsm2kit.viz.export.save_figure` saves them inside it.
* :func:`chart_config` is the Vega-Lite ``config`` of the registered altair theme
  :data:`THEME_NAME` (``"fsm2kit"``): the font and the categorical colours
  (:data:`CATEGORY_COLORS`, Okabe-Ito). :func:`fsm2kit.viz.export.save_figure` merges it into
  every chart it saves, so a chart looks the same in a notebook (after :func:`use_style`) and in
  its files.
* :func:`use_style` is what a notebook calls once at its top: it registers and enables the theme
  and the offline ``svg`` renderer (charts drawn by vl-convert in the kernel: no CDN, so they
  show offline in JupyterLab and in exported HTML). It changes altair's process-wide theme and
  renderer, which is why only notebooks and the CLI call it, never a library function.
"""

from __future__ import annotations

from contextlib import contextmanager

from .display import OKABE_ITO

__all__ = ["FONT_FAMILY", "THEME_NAME", "CATEGORY_COLORS", "MPL_RC", "mpl_style", "chart_config",
           "register_theme", "register_fonts", "use_style"]

#: The one font family of figures and charts.
FONT_FAMILY = "DejaVu Sans"
#: Name of the registered altair theme.
THEME_NAME = "fsm2kit"
#: Categorical colours of charts (Okabe-Ito, colour-blind safe; explicit scales win).
CATEGORY_COLORS: list[str] = [OKABE_ITO[k] for k in ("blue", "orange", "bluish green", "vermillion", "sky blue",
                                                      "reddish purple", "yellow", "black", "grey")]

#: The matplotlib settings of :func:`mpl_style`.
MPL_RC: dict = {
    "pdf.fonttype": 42,  # TrueType (Type 42), never Type 3
    "ps.fonttype": 42,
    "svg.fonttype": "none",  # SVG text stays <text>, editable
    "font.family": "sans-serif",
    "font.sans-serif": [FONT_FAMILY],
    "mathtext.fontset": "dejavusans",
    "axes.titlesize": 8,
    "font.size": 8,
}


@contextmanager
def mpl_style():
    """The one matplotlib style, as a context (``matplotlib.rc_context``): restored on exit.

    Examples
    --------
    >>> from fsm2kit.viz.style import mpl_style
    >>> import matplotlib
    >>> with mpl_style():
    ...     matplotlib.rcParams["pdf.fonttype"]
    42
    """
    import matplotlib

    with matplotlib.rc_context(MPL_RC):
        yield


def chart_config() -> dict:
    """The Vega-Lite ``config`` of the fsm2kit theme: the font and the categorical colours."""
    return {
        "font": FONT_FAMILY,
        "range": {"category": list(CATEGORY_COLORS)},
        "axis": {"labelFont": FONT_FAMILY, "titleFont": FONT_FAMILY},
        "legend": {"labelFont": FONT_FAMILY, "titleFont": FONT_FAMILY},
        "header": {"labelFont": FONT_FAMILY, "titleFont": FONT_FAMILY},
        "title": {"font": FONT_FAMILY, "subtitleFont": FONT_FAMILY},
    }


def register_theme() -> str:
    """Register the altair theme :data:`THEME_NAME` (not enabled); returns its name.

    Works with altair 5.5+ (``alt.theme.register``) and older (``alt.themes.register``).
    """
    import altair as alt

    def theme():
        return {"config": chart_config()}

    reg = getattr(getattr(alt, "theme", None), "register", None)
    if reg is not None:
        reg(THEME_NAME, enable=False)(theme)
    else:  # altair < 5.5
        alt.themes.register(THEME_NAME, theme)
    return THEME_NAME


_FONTS_REGISTERED = False


def register_fonts() -> None:
    """Make vl-convert find :data:`FONT_FAMILY` (matplotlib's copy of DejaVu); once per process."""
    global _FONTS_REGISTERED
    if _FONTS_REGISTERED:
        return
    import os

    import matplotlib
    import vl_convert as vlc

    vlc.register_font_directory(os.path.join(matplotlib.get_data_path(), "fonts", "ttf"))
    _FONTS_REGISTERED = True


def use_style(*, renderer: str = "svg") -> None:
    """A notebook's one call: enable the fsm2kit altair theme and the offline renderer.

    Parameters
    ----------
    renderer : str
        Altair renderer (default ``"svg"``: drawn by vl-convert in the kernel, no CDN).
    """
    import altair as alt

    register_theme()
    register_fonts()
    enable = getattr(getattr(alt, "theme", None), "enable", None)
    if enable is not None:
        enable(THEME_NAME)
    else:  # altair < 5.5
        alt.themes.enable(THEME_NAME)
    alt.renderers.enable(renderer)
