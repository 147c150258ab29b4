"""Figures from tidy tables: overlay panels (matplotlib) and Dice charts (altair), offline.

* :func:`slice_overlays`: a few query slices of one run, each with its chunk's support (and
  mask), the prediction and the ground truth (the quickstart figure).
* :func:`class_panels`: FS-MedSAM2 Figure 3/4 style, one row per class: support image with its
  mask, the query prediction and the ground truth on one query slice.
* :func:`dice_bars`: grouped Dice bars per class from :meth:`ExperimentResult.summary`.
* :func:`slice_dice_curves`: per-slice Dice along z per order / setting, from
  ``ExperimentResult.slices`` (where the ``top`` order collapses shows up).
* :func:`fsm2kit.io.charts.save_chart` writes PNG/SVG through vl-convert and HTML with the Vega libraries
  inlined (``inline=True``), so every file opens offline; :func:`save_figure` writes PNGs.

Charts and figures made from random weights say so in their titles.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.fileio import atomic_write
from ..protocol.metrics import dice

__all__ = [
    "PRED_COLOR",
    "GT_COLOR",
    "SUPPORT_COLOR",
    "weights_label",
    "slice_overlays",
    "class_panels",
    "dice_bars",
    "slice_dice_curves",
    "save_figure",
]

PRED_COLOR = "#ff7f0e"  # prediction: orange
GT_COLOR = "#2ca02c"  # ground truth: green
SUPPORT_COLOR = "#1f77b4"  # support mask: blue


def weights_label(weights: str | Sequence[str] | pd.Series | None) -> str:
    """A short label of the weights for titles: ``"RANDOM WEIGHTS (seed 0)"`` or ``"sha256:ab12…"``."""
    if weights is None:
        return ""
    if isinstance(weights, str):
        vals = [weights]
    else:
        vals = list(dict.fromkeys(str(w) for w in weights))
    out = []
    for w in vals:
        if "random weights" in w:
            out.append(w.replace("random weights", "RANDOM WEIGHTS (numbers mean nothing)"))
        elif w.startswith("sha256:"):
            out.append(w[:19] + "…")
        else:
            out.append(w)
    return "; ".join(out)


# ============================================================================ matplotlib panels
def _figure(nrows: int, ncols: int, size: float):
    import matplotlib.pyplot as plt  # in Jupyter this activates the inline display of figures

    fig = plt.figure(figsize=(size * ncols, size * nrows + 0.6), layout="constrained")
    plt.close(fig)  # not kept by pyplot: shown once when returned as a cell's value, never twice
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes


def _show(ax, image, mask=None, color=PRED_COLOR, title=""):
    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [0.5, 99.5]) if img.size else (0, 1)
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    if mask is not None:
        m = np.asarray(mask).astype(bool)
        if m.any():
            from matplotlib.colors import to_rgba

            rgba = np.zeros((*m.shape, 4), np.float32)
            rgba[m] = to_rgba(color, 0.35)
            ax.imshow(rgba, interpolation="nearest")
            ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def _slice_dice(pred: np.ndarray, gt: np.ndarray | None) -> str:
    """``", Dice 0.812"`` by the one Dice (:func:`fsm2kit.protocol.metrics.dice`), or ``", Dice n/a"``."""
    if gt is None:
        return ""
    d = dice(np.asarray(pred).astype(bool), np.asarray(gt).astype(bool))
    return f", Dice {d:.3f}" if np.isfinite(d) else ", Dice n/a"


def _positions(episode, n: int, positions: Sequence[int] | None) -> list[int]:
    m = episode.n_slices
    if positions is not None:
        bad = [p for p in positions if not 0 <= int(p) < m]
        if bad:
            raise ValueError(f"positions {bad} outside the episode's {m} query slices (0..{m - 1}).")
        return [int(p) for p in positions]
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    return sorted(set(np.round(np.linspace(0, m - 1, min(n, m))).astype(int).tolist()))


def _support_for(episode, result, position: int):
    """The support a slice saw: its chunk's support (1S1Q), else the middle one."""
    chunk = int(episode.chunks[position])
    if result.setting == "1S1Q":
        return episode.support_for_chunk(chunk)
    try:
        return episode.middle_support
    except KeyError:
        return episode.supports[0]


def slice_overlays(episode, result, *, n: int = 4, positions: Sequence[int] | None = None,
                   size: float = 2.4, title: str | None = None):
    """Overlays of a few query slices: support + mask, prediction, ground truth.

    Parameters
    ----------
    episode : Episode
        The episode the result was computed on.
    result : EpisodeResult
        From :meth:`fsm2kit.Engine.segment` (or ``ExperimentResult.prediction(...).result``).
    n : int, keyword-only
        Number of slices, evenly spaced over the query range (ignored with ``positions``).
    positions : sequence of int, optional
        Query slice positions (0 .. M-1) to show.
    size : float
        Inches per panel.
    title : str, optional
        Figure title (default: case, class, setting, model, weights).

    Returns
    -------
    matplotlib.figure.Figure
        One row per slice; columns support (with its mask, blue), prediction (orange) and
        ground truth (green).
    """
    if len(result.slices) != episode.n_slices:
        raise ValueError(
            f"result has {len(result.slices)} slices but the episode {episode.case_id}/{episode.label_name} "
            f"has {episode.n_slices}: pass the episode the result was computed on."
        )
    pos = _positions(episode, n, positions)
    fig, axes = _figure(len(pos), 3, size)
    for row, p in zip(axes, pos):
        sup = _support_for(episode, result, p)
        pred = result.slices[p].prediction
        gt = None if episode.labels is None else episode.labels[p]
        _show(row[0], sup.image, sup.mask, SUPPORT_COLOR, f"support (chunk {sup.chunk})")
        _show(row[1], episode.images[p], pred, PRED_COLOR, f"prediction z={int(episode.z[p])}{_slice_dice(pred, gt)}")
        _show(row[2], episode.images[p], gt, GT_COLOR, f"ground truth z={int(episode.z[p])}")
    order = f"-{result.order}" if result.order else ""
    fig.suptitle(title or (
        f"case {result.case_id} {result.label_name}, {result.setting}{order}, "
        f"{result.provenance.get('model')} — {weights_label(result.provenance.get('weights'))}"), fontsize=9)
    return fig


def class_panels(predictions: Sequence, *, position: str | int = "largest", size: float = 2.4,
                 title: str | None = None):
    """FS-MedSAM2 Figure 3/4 style panels: one row per class (or run).

    Parameters
    ----------
    predictions : sequence of Prediction or (Episode, EpisodeResult)
        E.g. ``result.predictions`` of :func:`fsm2kit.workflows.experiments.run_experiment` with
        ``keep_predictions=True``, one per class.
    position : "largest", "middle" or int, keyword-only
        Which query slice: the one with the largest ground-truth area, the middle one, or a
        position (0 .. M-1).

    Returns
    -------
    matplotlib.figure.Figure
        Columns: support image with its mask, query prediction, ground truth.
    """
    items = []
    for p in predictions:
        if hasattr(p, "episode") and hasattr(p, "result"):
            items.append((p.episode, p.result))
        else:
            ep, res = p
            items.append((ep, res))
    if not items:
        raise ValueError("class_panels needs at least one prediction (keep_predictions=True when running).")
    fig, axes = _figure(len(items), 3, size)
    weights = []
    for row, (ep, res) in zip(axes, items):
        if position == "largest" and ep.labels is not None:
            p = int(np.argmax(ep.labels.reshape(ep.n_slices, -1).sum(axis=1)))
        elif position in ("middle", "largest"):
            p = ep.n_slices // 2
        else:
            p = _positions(ep, 1, [int(position)])[0]
        sup = _support_for(ep, res, p)
        pred = res.slices[p].prediction
        gt = None if ep.labels is None else ep.labels[p]
        order = f"-{res.order}" if res.order else ""
        lab = f"{res.label_name} ({res.provenance.get('model')}, {res.setting}{order})"
        _show(row[0], sup.image, sup.mask, SUPPORT_COLOR, f"support: {lab}")
        _show(row[1], ep.images[p], pred, PRED_COLOR, f"query {res.case_id} z={int(ep.z[p])}{_slice_dice(pred, gt)}")
        _show(row[2], ep.images[p], gt, GT_COLOR, "ground truth")
        weights.append(res.provenance.get("weights"))
    fig.suptitle(title or f"support / prediction / ground truth — {weights_label(weights)}", fontsize=9)
    return fig


# ============================================================================ altair charts
def _alt():
    import altair as alt

    return alt


def _orders(df: pd.DataFrame) -> pd.Series:
    """``order`` with the 1Q settings' "n/a" kept (``pd.read_csv`` turns it into NaN)."""
    return df["order"].astype(object).where(df["order"].notna(), "n/a").astype(str)


def _run_label(df: pd.DataFrame) -> pd.Series:
    order = _orders(df)
    return df["setting"].astype(str) + np.where(order.isin(["n/a", "nan", "None"]), "", "-" + order)


def dice_bars(summary: pd.DataFrame, *, metric: str = "mean_per_volume", color: str = "run",
              column: str | None = "model", title: str | None = None, width: int = 260, height: int = 200):
    """Grouped Dice bars: classes on x, one bar per run (setting-order), faceted by model.

    Parameters
    ----------
    summary : DataFrame
        :meth:`ExperimentResult.summary` (columns ``label_name``, ``setting``, ``order``,
        ``model``, ``metric``, ``dice``, ``weights``).
    metric : {"mean_per_volume", "pooled"}
    color : str
        Column for the bars within a group (``"run"`` = setting-order, made here).
    column : str or None
        Facet column (None: no facets).

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    need = {"label_name", "setting", "order", "metric", "dice"}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"dice_bars needs a summary table with {sorted(need)}; missing {missing}.")
    d = summary[summary["metric"] == metric].copy()
    d["order"] = _orders(d)
    if d.empty:
        raise ValueError(f"No {metric!r} rows in the summary (metrics: {sorted(set(summary['metric']))}).")
    d["run"] = _run_label(d)
    keep = ["label_name", "run", "dice", "setting", "order"] + [c for c in (column, color, "dataset", "n_volumes")
                                                              if c and c in d.columns]
    d = d[list(dict.fromkeys(keep))]
    sub = weights_label(summary["weights"]) if "weights" in summary.columns else ""
    chart = alt.Chart(d).mark_bar().encode(
        x=alt.X("label_name:N", title="class"),
        xOffset=alt.XOffset(f"{color}:N"),
        y=alt.Y("dice:Q", title=f"Dice ({metric})", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color(f"{color}:N", title=color),
        tooltip=[c for c in d.columns],
    ).properties(width=width, height=height)
    if column and column in d.columns:
        chart = chart.facet(column=alt.Column(f"{column}:N", title=column))
    return chart.properties(title=alt.TitleParams(title or f"Dice per class ({metric})", subtitle=sub or None))


def slice_dice_curves(slices: pd.DataFrame, *, color: str = "order", row: str | None = "setting",
                      column: str | None = "model", title: str | None = None, width: int = 300,
                      height: int = 150):
    """Per-slice Dice along z, one line per ``color`` value (and per case), faceted.

    Parameters
    ----------
    slices : DataFrame
        ``ExperimentResult.slices`` (columns ``z``, ``dice``, ``case_id``, ``label_name``,
        ``setting``, ``order``, ``model``).
    color : str
        Line colour (default ``order``: top vs middle).
    row, column : str or None
        Facets (default setting x model).

    Returns
    -------
    altair.Chart
    """
    alt = _alt()
    need = {"z", "dice", "case_id", "label_name", color} | {c for c in (row, column) if c}
    missing = sorted(need - set(slices.columns))
    if missing:
        raise ValueError(f"slice_dice_curves needs per-slice columns {sorted(need)}; missing {missing}.")
    cols = list(dict.fromkeys(["case_id", "label_name", "z", "dice", color] + [c for c in (row, column) if c]))
    d = slices[cols].copy()
    if "order" in d.columns:
        d["order"] = _orders(d)
    d["case_id"] = d["case_id"].astype(str)
    d["series"] = d["case_id"] + "/" + d["label_name"].astype(str) + "/" + d[color].astype(str)
    sub = weights_label(slices["weights"]) if "weights" in slices.columns else ""
    base = alt.Chart(d).mark_line(point=len(d) <= 400).encode(
        x=alt.X("z:Q", title="slice z"),
        y=alt.Y("dice:Q", title="slice Dice", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color(f"{color}:N", title=color),
        detail="series:N",
        tooltip=cols,
    ).properties(width=width, height=height)
    facets = {}
    if row:
        facets["row"] = alt.Row(f"{row}:N", title=row)
    if column:
        facets["column"] = alt.Column(f"{column}:N", title=column)
    chart = base.facet(**facets) if facets else base
    return chart.properties(title=alt.TitleParams(title or "per-slice Dice along z", subtitle=sub or None))


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG (atomically)."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return out
