"""Figures from tidy tables: overlay panels (matplotlib), offline; Dice charts are in
:mod:`fsm2kit.workflows.dice_charts`.

* :func:`slice_overlays`: a few query slices of one run, each with its chunk's support (and
  mask), the prediction and the ground truth (the quickstart figure).
* :func:`class_panels`: FS-MedSAM2 Figure 3/4 style, one row per class: support image with its
  mask, the query prediction and the ground truth on one query slice.
* :func:`save_figure` writes PNGs.

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


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Save a matplotlib figure as PNG (atomically)."""
    out = Path(path)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi))
    return out
