"""Figures from tidy tables: overlay panels (matplotlib), offline; Dice charts are in
:mod:`fsm2kit.viz.dice_charts`.

* :func:`slice_overlays`: a few query slices of one run, each with its chunk's support (and
  mask), the prediction and the ground truth (the quickstart figure).
* :func:`class_panels`: FS-MedSAM2 Figure 3/4 style, one row per class: support image with its
  mask, the query prediction and the ground truth on one query slice.
* :func:`uncertainty_panels`: an ensemble's fused prediction, entropy and variance maps per slice.
* :func:`fsm2kit.viz.export.save_figure` writes charts, figures and panels
  offline in the ``paper`` (300 dpi PNG, PDF, SVG at 89 / 183 mm, fonts >= 7 pt) or
  ``screen`` preset; :func:`fsm2kit.viz.export.save_presets` writes both in one call.

Image panels are rendered by the one renderer (:func:`fsm2kit.viz.drawing.render_slice`, as the
inspector's panels are): radiological (anterior up, patient's right on the left, edge letters;
:mod:`fsm2kit.viz.display`), in its colour-blind-safe colours (:data:`~fsm2kit.viz.display.COLORS`:
support blue, prediction orange, ground truth a bluish-green contour over the prediction); matplotlib
only lays them out, titles them, adds a legend and saves.
Charts and figures made from random weights say so in their titles.

Figures are vector where it matters: each slice is one raster image at its native resolution
(``imshow``, nearest), while contours, markers, text and colour bars are vector; they are built
and saved in the one style (:func:`fsm2kit.viz.style.mpl_style`: TrueType fonts, editable SVG
text). :func:`image_axes`, :func:`panel_figure`, :func:`attention_colorbar` and :func:`mask_legend`
are the pieces other packages' figures use (the inspector's vector attention figure).
``title=""`` (or None where a default exists and ``title=""``) removes a figure's title.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

import functools

from ..protocol.metrics import dice
from .display import COLORS, episode_axcodes
from .drawing import oriented, render_slice
from .style import mpl_style

__all__ = [
    "weights_label",
    "slice_overlays",
    "class_panels",
    "uncertainty_panels",
    "styled",
    "panel_figure",
    "image_axes",
    "attention_colorbar",
    "mask_legend",
]

#: Grey window of the figures' slices (percentiles): an outlier does not wash out the rest.
_WINDOW = (0.5, 99.5)


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
def styled(fn):
    """Build a figure inside :func:`fsm2kit.viz.style.mpl_style` (its texts take the style's font)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl_style():
            return fn(*args, **kwargs)

    return wrapper


def panel_figure(nrows: int, ncols: int, *, size: float = 2.4, extra_height: float = 0.8):
    """A constrained-layout figure of ``nrows`` x ``ncols`` image axes (not kept by pyplot).

    Call inside :func:`fsm2kit.viz.style.mpl_style` (or a :func:`styled` function).
    """
    import matplotlib.pyplot as plt  # in Jupyter this activates the inline display of figures

    fig = plt.figure(figsize=(size * ncols, size * nrows + extra_height), layout="constrained")
    plt.close(fig)  # not kept by pyplot: shown once when returned as a cell's value, never twice
    axes = np.asarray(fig.subplots(nrows, ncols, squeeze=False))
    return fig, axes



def _figure(nrows: int, ncols: int, size: float):
    return panel_figure(nrows, ncols, size=size)


def image_axes(ax, image, orientation=None, *, fill=None, fill_color: str = COLORS["prediction"],
               contours=(), heat=None, markers=(), title: str | None = "", empty_note: str | None = None,
               window: tuple[float, float] | None = None, linewidth: float = 1.0):
    """A slice on ``ax``: the image raster at its native resolution, everything else vector.

    Parameters
    ----------
    ax : matplotlib Axes
    image : ndarray (H, W)
        As stored; masks and markers in the same (stored) layout.
    orientation : DisplayOrientation, axis codes, affine or None
        Radiological display with edge letters (:func:`fsm2kit.viz.display.display_orientation`).
    fill : mask, optional
        Filled (in the raster, semi-transparent) and outlined (vector) in ``fill_color``.
    contours : sequence of (mask or None, colour)
        Vector outlines over the fill (the ground truth, a memory frame's mask).
    heat : ndarray in [0, 1], optional
        Attention map blended into the raster (:data:`~fsm2kit.viz.display.ATTENTION_CMAP`).
    markers : sequence of (y, x, colour[, marker])
        Stored pixel positions, drawn as vector markers with a black edge.
    title : str or None
        Axes title ("" or None: none).
    empty_note : str, optional
        Shown when ``fill`` is given and empty ("no prediction").

    Returns
    -------
    DisplaySlice
        What :func:`fsm2kit.viz.drawing.render_slice` returned (``orientation`` for more drawing).
    """
    view = render_slice(image, orientation, fill=fill, fill_color=fill_color, heat=heat, window=window,
                        vector=True)
    o = view.orientation
    ax.imshow(view.array, interpolation="none")  # PDF/SVG embed the slice at its native resolution
    for mask, color in [(fill, fill_color), *contours]:
        if mask is None or not np.any(mask):
            continue
        m = np.asarray(oriented(np.asarray(mask, dtype=float), o))
        ax.contour(m, levels=[0.5], colors=[color], linewidths=linewidth)
    shape = np.shape(image)[-2:]
    for mk in markers:
        y, x, color = mk[:3]
        marker = mk[3] if len(mk) > 3 else "o"
        yy, xx = o.point(y, x, shape) if o is not None else (y, x)
        ax.plot([xx], [yy], marker=marker, markersize=6, markerfacecolor=color, markeredgecolor="black",
                markeredgewidth=0.8, linestyle="none")
    if fill is not None and not np.any(fill) and empty_note:  # low, not over the centre (a marker's place)
        ax.text(0.5, 0.16, empty_note, transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="white", bbox=dict(boxstyle="round,pad=0.25", fc=COLORS["empty"], ec="none", alpha=0.9))
    _letters(ax, view.letters)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return view


def attention_colorbar(fig, axes, *, vmax: float, label: str):
    """A vector colour bar of the attention colour map (0 .. ``vmax``) beside ``axes``."""
    import matplotlib as mpl

    from .display import ATTENTION_CMAP

    sm = mpl.cm.ScalarMappable(norm=mpl.colors.Normalize(0.0, vmax), cmap=ATTENTION_CMAP)
    cb = fig.colorbar(sm, ax=axes, orientation="horizontal", fraction=0.04, pad=0.02, aspect=40)
    if cb.solids is not None:
        cb.solids.set_rasterized(False)  # matplotlib rasterizes long colour bars; this one stays vector
    cb.set_label(label, fontsize=7)
    cb.ax.tick_params(labelsize=7)
    return cb


def mask_legend(fig, items, *, ncols: int | None = None, title: str | None = None) -> None:
    """A legend below the figure: ``items`` of (label, colour, kind), kind ``fill``, ``line`` or
    ``marker``; ``title`` (e.g. a provenance footer) above its entries."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = []
    for label, color, kind in items:
        if kind == "fill":
            handles.append(Patch(facecolor=color, edgecolor=color, alpha=0.6, label=label))
        elif kind == "marker":
            handles.append(Line2D([], [], marker="o", markerfacecolor=color, markeredgecolor="black",
                                  linestyle="none", label=label))
        else:
            handles.append(Line2D([], [], color=color, linewidth=1.5, label=label))
    leg = fig.legend(handles=handles, loc="outside lower center", ncols=ncols or len(handles), fontsize=8,
                     frameon=False, title=title or None, title_fontsize=8)
    if title:
        leg.get_title().set_multialignment("center")


def _letters(ax, letters: dict | None) -> None:
    """Orientation letters in the middle of each edge (white on a dark outline)."""
    if not letters:
        return
    import matplotlib.patheffects as pe

    kw = dict(transform=ax.transAxes, fontsize=7, color="white", fontweight="bold",
              path_effects=[pe.withStroke(linewidth=1.5, foreground="black")])
    ax.text(0.5, 0.985, letters["top"], ha="center", va="top", **kw)
    ax.text(0.5, 0.015, letters["bottom"], ha="center", va="bottom", **kw)
    ax.text(0.015, 0.5, letters["left"], ha="left", va="center", **kw)
    ax.text(0.985, 0.5, letters["right"], ha="right", va="center", **kw)


def _show(ax, image, *, orientation=None, fill=None, fill_color=COLORS["prediction"], contour=None, title="",
          empty_note: str | None = None):
    """A slice rendered by :func:`render_slice` (``fill``: a mask, filled; ``contour``: the ground
    truth, outlined on top), its edge letters, a note when ``fill`` is empty, and a title."""
    image_axes(ax, image, orientation, fill=fill, fill_color=fill_color,
               contours=[(contour, COLORS["ground_truth"])], title=title, empty_note=empty_note, window=_WINDOW)


def _blank(ax, text: str = "") -> None:
    ax.set_axis_off()
    if text:
        ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, color="0.4")


def _legend(fig) -> None:
    mask_legend(fig, [("support mask", COLORS["support"], "fill"), ("prediction", COLORS["prediction"], "fill"),
                      ("ground truth (contour)", COLORS["ground_truth"], "line")])


def _slice_dice(pred: np.ndarray, gt: np.ndarray | None) -> str:
    """``"\\nDice 0.812"`` (a second title line) by the one Dice (:func:`fsm2kit.protocol.metrics.dice`), or ``"\\nDice n/a"``."""
    if gt is None:
        return ""
    d = dice(np.asarray(pred).astype(bool), np.asarray(gt).astype(bool))
    return f"\nDice {d:.3f}" if np.isfinite(d) else "\nDice n/a"


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


def _support_title(sup) -> str:
    z = getattr(sup, "z", None)
    case = getattr(sup, "case_id", None)
    where = ", ".join(x for x in (f"case {case}" if case else "", f"z={z}" if z is not None else "") if x)
    return f"support #{sup.chunk}" + (f" ({where})" if where else "")


@styled
def slice_overlays(episode, result, *, n: int = 4, positions: Sequence[int] | None = None,
                   size: float = 2.4, title: str | None = "auto", orientation=None):
    """Overlays of a few query slices: the supports they used (once each), then each slice's
    prediction (filled) with the ground truth as a contour over it.

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
        Figure title (``"auto"``: case, class, setting, model, weights; ``""`` or None: no title).
    orientation : axis codes or affine, optional
        In-plane orientation of the slices (default :func:`fsm2kit.viz.display.episode_axcodes`);
        panels are shown radiologically (anterior up, patient's right on the left) with edge letters.

    Returns
    -------
    matplotlib.figure.Figure
        The distinct supports (blue mask), then one panel per slice (prediction orange, ground
        truth a bluish-green contour; "no prediction" when empty): one row when they are at
        most 4 panels, else supports in the first row and slices in rows of up to 4; a legend.
    """
    if len(result.slices) != episode.n_slices:
        raise ValueError(
            f"result has {len(result.slices)} slices but the episode {episode.case_id}/{episode.label_name} "
            f"has {episode.n_slices}: pass the episode the result was computed on."
        )
    orient = episode_axcodes(episode) if orientation is None else orientation
    pos = _positions(episode, n, positions)
    sups = list({id(s): s for s in (_support_for(episode, result, p) for p in pos)}.values())
    sups.sort(key=lambda s: s.chunk)
    if len(sups) + len(pos) <= 4:  # one row: supports, then slices
        fig, axes = _figure(1, len(sups) + len(pos), size)
        sup_axes, query_axes = list(axes[0][:len(sups)]), list(axes[0][len(sups):])
    else:  # supports in the first row, slices in rows of up to 4 below
        ncols = max(len(sups), min(len(pos), 4))
        fig, axes = _figure(1 + -(-len(pos) // ncols), ncols, size)
        sup_axes, query_axes = list(axes[0]), [ax for row in axes[1:] for ax in row]
        for ax in sup_axes[len(sups):] + query_axes[len(pos):]:
            _blank(ax)
    for ax, sup in zip(sup_axes, sups):
        _show(ax, sup.image, orientation=orient, fill=sup.mask, fill_color=COLORS["support"], title=_support_title(sup))
    for ax, p in zip(query_axes, pos):
        pred = result.slices[p].prediction
        gt = None if episode.labels is None else episode.labels[p]
        chunk = f" (support #{int(episode.chunks[p])})" if result.setting == "1S1Q" and len(sups) > 1 else ""
        _show(ax, episode.images[p], orientation=orient, fill=pred, contour=gt, empty_note="no prediction",
              title=f"query z={int(episode.z[p])}{chunk}{_slice_dice(pred, gt)}")
    _legend(fig)
    order = f"-{result.order}" if result.order else ""
    if title == "auto":
        title = (f"case {result.case_id} {result.label_name}, {result.setting}{order}, "
                 f"{result.provenance.get('model')} — {weights_label(result.provenance.get('weights'))}")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


@styled
def class_panels(predictions: Sequence, *, position: str | int = "largest", size: float = 2.4,
                 title: str | None = "auto", orientation=None):
    """FS-MedSAM2 Figure 3/4 style panels: one row per class (or run).

    Parameters
    ----------
    predictions : sequence of Prediction or (Episode, EpisodeResult)
        E.g. ``result.predictions`` of :func:`fsm2kit.run.runner.run_experiment` with
        ``keep_predictions=True``, one per class.
    position : "largest", "middle" or int, keyword-only
        Which query slice: the one with the largest ground-truth area, the middle one, or a
        position (0 .. M-1).
    orientation : axis codes or affine, optional
        Default: each episode's (:func:`fsm2kit.viz.display.episode_axcodes`).

    Returns
    -------
    matplotlib.figure.Figure
        Columns: support image with its mask (shown once per class: later rows of the same
        class and support leave it empty), query image, prediction with the ground-truth
        contour over it ("no prediction" when empty); orientation letters; a legend below.
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
    shown: set = set()
    for row, (ep, res) in zip(axes, items):
        orient = episode_axcodes(ep) if orientation is None else orientation
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
        key = (ep.label_name, getattr(sup, "case_id", None), getattr(sup, "z", None), sup.chunk,
               hash(np.asarray(sup.image).tobytes()))
        if key in shown:
            _blank(row[0], f"{res.label_name}: same support as above")
        else:
            shown.add(key)
            _show(row[0], sup.image, orientation=orient, fill=sup.mask, fill_color=COLORS["support"],
                  title=f"{res.label_name}: {_support_title(sup)}")
        _show(row[1], ep.images[p], orientation=orient, title=f"query {res.case_id} z={int(ep.z[p])}")
        _show(row[2], ep.images[p], orientation=orient, fill=pred, contour=gt, empty_note="no prediction",
              title=f"{res.provenance.get('model')}, {res.setting}{order}{_slice_dice(pred, gt)}")
        weights.append(res.provenance.get("weights"))
    _legend(fig)
    if title == "auto":
        title = f"support / query / prediction with ground truth — {weights_label(weights)}"
    if title:
        fig.suptitle(title, fontsize=9)
    return fig




def uncertainty_panels(episode, probability: np.ndarray, entropy: np.ndarray, variance: np.ndarray, *,
                       z: Sequence[int] | None = None, disagreement: Sequence[float] | None = None, n: int = 3,
                       positions: Sequence[int] | None = None, size: float = 2.4, weights: str | None = None):
    """An ensemble's uncertainty over the image: one row per query slice, three panels each.

    The fused prediction (``probability > 0.5``, filled) with the ground truth (contour); the
    per-voxel entropy of the mean probability (bits, 0..1) and the members' variance (scaled to
    its maximum 0.25) as heat maps over the slice (:data:`~fsm2kit.viz.display.ATTENTION_CMAP`).
    Radiological orientation, as every panel (:func:`~fsm2kit.viz.drawing.render_slice`).

    Parameters
    ----------
    episode : Episode
        The query slices (``images``, ``labels``, ``z``) and their orientation.
    probability, entropy, variance : ndarray, (M, H, W)
        Of :class:`fsm2kit.run.ensemble_runs.EnsembleRun` (``z`` its slices; default the episode's).
    disagreement : sequence of float, optional
        Per slice, shown in the row's title.
    n, positions
        How many slices (evenly spaced, the slices of highest disagreement first when given), or which.
    """
    zs = list(episode.z) if z is None else [int(v) for v in z]
    pos_of = {int(v): i for i, v in enumerate(episode.z)}
    m = len(zs)
    if positions is None:
        if disagreement is not None:
            positions = sorted(np.argsort(-np.asarray(disagreement), kind="stable")[:n].tolist())
        else:
            positions = sorted({int(round(x)) for x in np.linspace(0, m - 1, min(n, m))})
    fig, axes = _figure(len(positions), 3, size)
    orientation = episode_axcodes(episode)
    for row, k in enumerate(positions):
        q = pos_of[zs[k]]
        img = episode.images[q]
        gt = None if episode.labels is None else episode.labels[q]
        pred = probability[k] > 0.5
        extra = "" if disagreement is None else f", disagreement {float(disagreement[k]):.2f}"
        _show(axes[row, 0], img, orientation=orientation, fill=pred, contour=gt,
              title=f"z={zs[k]}: fused{extra}{_slice_dice(pred, gt)}", empty_note="no prediction")
        for col, (heat, name) in enumerate(((np.clip(entropy[k], 0, 1), "entropy (bits)"),
                                            (np.clip(variance[k] / 0.25, 0, 1), "members' variance / 0.25")),
                                           start=1):
            view = render_slice(img, orientation, heat=heat, outlines=[(gt, COLORS["ground_truth"])], window=_WINDOW)
            ax = axes[row, col]
            ax.imshow(view.array, interpolation="nearest")
            _letters(ax, view.letters)
            ax.set_title(f"{name}, max {float(heat.max()):.2f}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    label = weights_label(weights)
    fig.suptitle("Ensemble uncertainty" + (f" — {label}" if label else ""), fontsize=9)
    _legend(fig)
    return fig
