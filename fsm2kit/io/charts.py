"""Saving altair charts offline: PNG/SVG through vl-convert, HTML with Vega inlined (no CDN)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from ..core.fileio import atomic_write

__all__ = ["CHART_FORMATS", "save_chart"]

#: Formats :func:`save_chart` writes by default.
CHART_FORMATS = ("png", "svg", "html")
_KNOWN = ("png", "svg", "html", "json")


def save_chart(chart, path: str | os.PathLike, *, formats: Sequence[str] = CHART_FORMATS,
               scale: float = 1.0) -> dict[str, Path]:
    """Save an altair chart offline, one file per format, each written atomically.

    Parameters
    ----------
    chart : altair chart
    path : path-like
        Path without extension (an extension is dropped); one file per format.
    formats : sequence of {"png", "svg", "html", "json"}
        ``html`` embeds the Vega libraries (``inline=True``, about 0.9 MB), so it needs no CDN.
    scale : float
        PNG scale factor.

    Returns
    -------
    dict
        format -> path written.
    """
    import altair as alt

    base = Path(path)
    if base.suffix.lower().lstrip(".") in _KNOWN:
        base = base.with_suffix("")
    bad = [f for f in formats if f not in _KNOWN]
    if bad:
        raise ValueError(f"save_chart formats {bad} unknown; expected some of {', '.join(_KNOWN)}.")
    written = {}
    with alt.data_transformers.disable_max_rows():  # tables are pre-reduced to needed columns
        for fmt in formats:
            out = base.with_name(f"{base.name}.{fmt}")
            kwargs = {"format": fmt}
            if fmt == "html":
                kwargs["inline"] = True
            elif fmt == "png":
                kwargs["scale_factor"] = scale
            atomic_write(out, lambda tmp, kw=kwargs: chart.save(tmp, **kw))
            written[fmt] = out
    return written
