"""Views of an :class:`~fsm2kit.inspector.inspection.Inspection`: altair charts and image panels.

Charts (altair; :func:`fsm2kit.viz.export.save_figure` writes ``.png``/``.svg`` through vl-convert,
or a self-contained ``.html`` that works offline):

* :func:`mass_chart`: stacked attention mass per memory entry along the processing order;
* :func:`share_chart`: support memory vs query memory (vs pointers) share per slice;
* :func:`layer_heatmap`: layer x memory entry mean mass.

Panels (PIL images; saved by the same :func:`fsm2kit.viz.export.save_figure`):

* :func:`query_panel`: the query slice with its prediction (and ground truth) and the pixel;
* :func:`memory_panels`: every spatial memory frame's image with the chosen pixel's attention
  map over it (upsampled onto that image), its mask, and the entry's mass;
* :func:`attention_panels`: both, with a provenance footer;
* :func:`attention_figure`: the paper version, a matplotlib figure for any chosen slices (one row
  each): the slices raster at their native resolution, contours, markers, text and the colour
  bar vector (TrueType fonts in PDF, ``<text>`` in SVG; :func:`fsm2kit.viz.export.save_figure`).

Every chart title and panel footer names the weights ("random weights (seed N)" for a random
model: then the content is meaningless).

:func:`write_inspection` writes tables, charts and panels to a folder; ``fsm2kit inspect``
(:func:`register_cli`) does it from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..viz.display import COLORS, MEMORY_GROUP_COLORS, OKABE_ITO, display_orientation, episode_axcodes
from ..records.fileio import atomic_write
from ..tables.dice_table import short_sha
from ..viz.export import save_figure, save_presets
from ..viz.drawing import (
    captioned,
    centered_note,
    colorbar,
    draw_marker,
    edge_letters,
    grid,
    legend_strip,
    render_slice,
    to_pil,
)

if TYPE_CHECKING:  # imported lazily: ``fsm2kit --help`` stays light
    from .inspection import Inspection
    from .layout import KeyEntry

__all__ = [
    "chart_masses",
    "mass_chart",
    "share_chart",
    "layer_heatmap",
    "chart_png",
    "query_image",
    "query_panel",
    "memory_panels",
    "attention_panels",
    "attention_figure",
    "write_inspection",
    "inspection_charts",
    "GROUP_COLORS",
    "role_colors",
    "panel_orientation",
    "clicked_pixel",
]

#: Colours of the three memory groups (support memory, query memory, pointers): the one scheme
#: of :data:`fsm2kit.viz.display.MEMORY_GROUP_COLORS`.
GROUP_COLORS = MEMORY_GROUP_COLORS


# ----------------------------------------------------------------------------- tables for charts
def _check_region(region: str) -> str:
    if region not in ("all", "foreground"):
        raise ValueError(f"region must be 'all' or 'foreground', got {region!r}.")
    return region


def _layer_filter(insp: Inspection, layer: int | None):
    m = insp.masses
    if layer is not None:
        if layer not in insp.layers:
            raise ValueError(f"layer {layer} was not captured; captured layers: {list(insp.layers)}.")
        m = m[m["layer"] == layer]
    return m


def _layer_text(insp: Inspection, layer: int | None) -> str:
    return f"layer {layer}" if layer is not None else f"mean of layers {', '.join(map(str, insp.layers))}"


def _slice_labels(insp: Inspection) -> list[str]:
    return [f"{k:02d} z{s.z}" for k, s in enumerate(insp.steps)]


def chart_masses(insp: Inspection, *, layer: int | None = None, region: str = "all"):
    """Mass per step and chart role (pointers merged), averaged over layers (or one layer) and heads.

    Columns: proc_index, slice (``"07 z29"``), z, plan, step, role, group, mass, weights.
    """
    import pandas as pd

    m = _layer_filter(insp, layer)
    m = m[m["region"] == _check_region(region)].copy()
    m["role"] = np.where(m["entry_kind"] == "pointer", "pointers", m["role"])
    # sum within (step, layer, head, role) first (several pointers share a role), then average
    keys = ["proc_index", "z", "plan", "step", "role", "group"]
    per = m.groupby(keys + ["layer", "head"], as_index=False, sort=False)["mass"].sum()
    out = per.groupby(keys, as_index=False, sort=False)["mass"].mean()
    labels = _slice_labels(insp)
    out["slice"] = [labels[k] for k in out["proc_index"]]
    out["weights"] = insp.weights
    if out.empty:
        return pd.DataFrame(columns=keys + ["mass", "slice", "weights"])
    return out


def _role_order(roles) -> list[str]:
    """Supports, then query memories nearest first (``query (SAM2 d=1)``, ``d=2``...), then pointers."""
    import re

    def key(r: str):
        if r.startswith("support"):
            return (0, 0, r)
        m = re.match(r"query \(SAM2 d=(\d+)\)", r)
        if m:
            return (1, int(m.group(1)), r)
        return (2, 0, r)

    return sorted(set(roles), key=key)


_SUPPORT_SHADES = (OKABE_ITO["blue"], OKABE_ITO["sky blue"], "#003F63", "#9CD3F2")
_QUERY_SHADES = (OKABE_ITO["orange"], OKABE_ITO["vermillion"], OKABE_ITO["yellow"], OKABE_ITO["reddish purple"],
                 OKABE_ITO["bluish green"], "#8C5A00", "#F5C96B", OKABE_ITO["black"])


def role_colors(roles) -> dict[str, str]:
    """Colours of memory entries (roles), fixed by meaning, never by position: support ``#i`` the
    i-th support shade (blues), a query memory at SAM2 frame distance ``k`` the k-th query shade
    (the other Okabe-Ito hues), pointers grey (the groups' colours of :data:`GROUP_COLORS`). The
    same role has the same colour in every chart, the inspector's and the corrector's alike."""
    import re

    out = {}
    for r in _role_order(roles):
        num = re.search(r"(?:#|d=)(\d+)", r)
        k = int(num.group(1)) if num else 1
        if r.startswith("support"):
            out[r] = _SUPPORT_SHADES[(k - 1) % len(_SUPPORT_SHADES)]
        elif r.startswith("query"):
            out[r] = _QUERY_SHADES[max(k - 1, 0) % len(_QUERY_SHADES)] if k else OKABE_ITO["black"]
        else:
            out[r] = GROUP_COLORS["pointers"]
    return out


def _title(insp: Inspection, what: str, layer: int | None, region: str) -> dict:
    r = insp.result
    order = f"-{r.order}" if r.order else ""
    sub = (f"{r.case_id}/{r.label_name}, {r.setting}{order}, {_layer_text(insp, layer)}, "
           f"{'all query tokens' if region == 'all' else 'predicted foreground'}; "
           f"{r.provenance.get('model')}, {short_sha(insp.weights)}")
    if insp.random_weights:
        sub += " (RANDOM WEIGHTS: content meaningless)"
    return {"text": what, "subtitle": sub, "anchor": "start"}


# ----------------------------------------------------------------------------- charts
def mass_chart(insp: Inspection, *, layer: int | None = None, region: str = "all",
               highlight: int | None = None, width: int = 520, height: int = 220):
    """Stacked attention mass per memory entry along the processing order.

    Parameters
    ----------
    insp : Inspection
    layer : int, optional
        One memory-attention layer (default: mean over the captured layers).
    region : {"all", "foreground"}
        Average over all query tokens, or over the predicted foreground.
    highlight : int, optional
        Processing index to mark (the widget's current step).

    Returns
    -------
    altair.Chart
    """
    import altair as alt

    df = chart_masses(insp, layer=layer, region=region)
    roles = _role_order(df["role"])
    labels = _slice_labels(insp)
    bars = alt.Chart(df).mark_bar().encode(
        x=alt.X("slice:O", sort=labels, title="query slices in processing order (index, z)"),
        y=alt.Y("sum(mass):Q", title="attention mass", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("role:N", sort=roles, title="memory entry",
                        scale=alt.Scale(domain=roles, range=[role_colors(roles)[r] for r in roles])),
        order=alt.Order("role_rank:Q"),
        tooltip=["slice:O", "z:Q", "plan:Q", "step:Q", "role:N", alt.Tooltip("mass:Q", format=".3f")],
    ).transform_calculate(
        role_rank=f"indexof({roles!r}, datum.role)"
    )
    chart = bars
    if highlight is not None:
        if not 0 <= highlight < len(labels):
            raise ValueError(f"highlight {highlight} outside 0..{len(labels) - 1}")
        import pandas as pd

        mark = alt.Chart(pd.DataFrame({"slice": [labels[highlight]]})).mark_rule(
            color="black", strokeWidth=2, strokeDash=[4, 2]).encode(x=alt.X("slice:O", sort=labels))
        chart = alt.layer(bars, mark)
    return chart.properties(width=width, height=height,
                            title=_title(insp, "Attention mass per memory entry", layer, region))


def share_chart(insp: Inspection, *, layer: int | None = None, region: str = "all",
                width: int = 520, height: int = 200):
    """Support memory vs query memory (vs pointers) share of attention per slice.

    Lines along the processing order, one per group; each point is a slice's mass on that
    group (the three sum to 1).
    """
    import altair as alt

    df = chart_masses(insp, layer=layer, region=region)
    df = df.groupby(["proc_index", "slice", "z", "group"], as_index=False, sort=False)["mass"].sum()
    df["weights"] = insp.weights
    labels = _slice_labels(insp)
    groups = list(GROUP_COLORS)
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("slice:O", sort=labels, title="query slices in processing order (index, z)"),
        y=alt.Y("mass:Q", title="share of attention", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("group:N", title="memory", sort=groups,
                        scale=alt.Scale(domain=groups, range=[GROUP_COLORS[g] for g in groups])),
        tooltip=["slice:O", "z:Q", "group:N", alt.Tooltip("mass:Q", format=".3f")],
    ).properties(width=width, height=height,
                 title=_title(insp, "Support vs query-memory share per slice", layer, region))


def layer_heatmap(insp: Inspection, *, step: int | None = None, region: str = "all",
                  width: int = 420, height: int = 140):
    """Layer x memory entry heatmap of the mean attention mass (over steps, or one step).

    The mean is over the query slices, each slice's mass the mean of its heads; an entry a slice
    does not attend to (``query (SAM2 d=6)`` before six memories exist) counts as 0 for that slice, so
    each layer's row sums to 1. The title says so.
    """
    import altair as alt

    m = insp.masses
    m = m[m["region"] == _check_region(region)].copy()
    if step is not None:
        if not 0 <= step < len(insp.steps):
            raise ValueError(f"step {step} outside 0..{len(insp.steps) - 1}")
        m = m[m["proc_index"] == step]
    m["role"] = np.where(m["entry_kind"] == "pointer", "pointers", m["role"])
    # an entry absent from a slice's memory counts as 0 for that slice: each layer's row sums to 1
    wide = m.pivot_table(index=["proc_index", "layer", "head"], columns="role", values="mass",
                         aggfunc="sum", fill_value=0.0)
    n = wide.index.get_level_values("proc_index").nunique()
    df = wide.groupby(level="layer").mean().reset_index().melt(id_vars="layer", var_name="role", value_name="mass")
    df["weights"] = insp.weights
    roles = _role_order(df["role"])
    what = "Mean attention mass, layer x memory entry"
    if step is not None:
        what += f" (step {step}, z={insp.steps[step].z})"
    else:
        what += f" (mean over {n} query slice(s); an entry absent from a slice counts as 0)"
    title = _title(insp, what, None, region)
    return alt.Chart(df).mark_rect().encode(
        x=alt.X("role:N", sort=roles, title="memory entry"),
        y=alt.Y("layer:O", title="memory-attention layer"),
        color=alt.Color("mass:Q", title="mass", scale=alt.Scale(scheme="viridis")),
        tooltip=["layer:O", "role:N", alt.Tooltip("mass:Q", format=".3f")],
    ).properties(width=width, height=height, title=title)


def chart_png(chart, *, scale: float = 1.0) -> bytes:
    """The chart as PNG bytes (vl-convert; offline)."""
    import vl_convert as vlc

    return vlc.vegalite_to_png(chart.to_dict(), scale=scale)


# ----------------------------------------------------------------------------- panels
def panel_orientation(insp: Inspection):
    """The radiological display of the inspection's slices (None: unknown, shown as stored)."""
    return display_orientation(episode_axcodes(insp.episode)) if insp.episode is not None else None


def clicked_pixel(rel: tuple[float, float], shape: tuple[int, int], orientation=None) -> tuple[int, int]:
    """The stored pixel ``(y, x)`` under a click on the displayed slice.

    Parameters
    ----------
    rel : (float, float)
        The click's relative position ``(y, x)`` in ``[0, 1)`` of the displayed image (what
        :class:`~fsm2kit.widgets.image.ClickImage` reports).
    shape : (int, int)
        The stored slice's ``(H, W)``.
    orientation : DisplayOrientation or None
        How the slice is displayed (:func:`panel_orientation`; None: as stored).
    """
    h, w = shape
    o = orientation
    dh, dw = (w, h) if o is not None and o.transpose else (h, w)  # the displayed slice's shape
    y = min(max(int(float(rel[0]) * dh), 0), dh - 1)
    x = min(max(int(float(rel[1]) * dw), 0), dw - 1)
    if o is not None:
        y, x = (int(c) for c in o.stored_point(y, x, (h, w)))
    return y, x


def query_image(insp: Inspection, step: int, *, pixel: tuple[int, int] | None = None, size: int = 256,
                ground_truth: bool = True):
    """The query slice (no caption), radiological, with edge letters: prediction filled
    (orange), ground truth as a contour over it (bluish green), the pixel (reddish purple);
    "no prediction" when the step predicted nothing."""
    s = insp.steps[step]
    if s.image is None:
        raise RuntimeError("this step has no image (captured without track's image argument).")
    o = panel_orientation(insp)
    gt = insp.episode.labels[s.position] if ground_truth and insp.episode is not None \
        and insp.episode.labels is not None else None
    view = render_slice(s.image, o, fill=s.prediction, fill_color=COLORS["prediction"],
                        outlines=[(gt, COLORS["ground_truth"])])
    img = to_pil(view.array, size)
    if s.prediction is None or not np.any(s.prediction):
        centered_note(img, "no prediction", COLORS["empty"])
    if pixel is not None:
        shown = o.point(*pixel, s.image_shape) if o is not None else pixel
        draw_marker(img, shown, view.array.shape[:2], COLORS["pixel"])
    return edge_letters(img, view.letters)


QUERY_LEGEND = (("prediction", COLORS["prediction"], "fill"), ("ground truth", COLORS["ground_truth"], "line"),
                ("pixel", COLORS["pixel"], "marker"))


def query_panel(insp: Inspection, step: int, *, pixel: tuple[int, int] | None = None, size: int = 256):
    """:func:`query_image` with a caption (slice, step, foreground, pixel) and a legend."""
    s = insp.steps[step]
    img = query_image(insp, step, pixel=pixel, size=size)
    lines = [f"query z={s.z}  (#{step}, plan {s.plan_index} step {s.step})",
             f"pred {s.fg_pixels} px" + (f", pixel y={pixel[0]} x={pixel[1]}" if pixel else "")]
    return grid([captioned(img, lines), legend_strip(list(QUERY_LEGEND), vertical=True)], columns=1, gap=2)


def memory_panels(insp: Inspection, step: int, pixel: tuple[int, int] | None = None, *,
                  layer: int | None = None, head: int = 0, size: int = 192, columns: int = 4,
                  normalize: Literal["shared", "each"] = "shared"):
    """Each spatial memory frame of a step with ``pixel``'s attention map over it.

    The map over the frame's token grid is upsampled onto the frame's image (support slice or
    earlier query slice) and overlaid (``cividis``, with a colour bar); the frame's mask is
    outlined (support mask blue, an earlier slice's prediction orange). Tiles are
    radiological with edge letters. ``normalize="shared"`` scales all maps by the largest
    weight of any spatial memory (comparable across tiles; the colour bar's maximum),
    ``"each"`` by each map's own maximum.

    Returns
    -------
    PIL.Image.Image
    """
    if normalize not in ("shared", "each"):
        raise ValueError(f"normalize must be 'shared' or 'each', got {normalize!r}.")
    pixel = insp.default_pixel(step) if pixel is None else tuple(int(v) for v in pixel)
    pa = insp.pixel_attention(step, pixel, layer=layer, head=head)
    mass = pa.mass()
    spatial = pa.layout.spatial
    vmax = max(float(pa.grid(e).max()) for e in spatial) if spatial else 1.0
    o = panel_orientation(insp)
    tiles = []
    for e in spatial:
        image, mask = insp.entry_image(e)
        up = pa.upsampled(e, np.shape(image)[-2:])
        top = float(up.max()) if normalize == "each" else vmax
        heat = up / top if top > 0 else up
        color = COLORS["support"] if e.source == "support" else COLORS["prediction"]
        view = render_slice(image, o, heat=heat, outlines=[(mask, color)])
        tile = edge_letters(to_pil(view.array, size), view.letters)
        tiles.append(captioned(tile, [_entry_caption(e), f"mass {mass[e.position]:.3f}"]))
    ptr = sum(mass[e.position] for e in pa.layout.pointers)
    n_ptr = len(pa.layout.pointers)
    body = grid(tiles, columns=columns)
    label = "attention weight (shared scale)" if normalize == "shared" else "attention / map's maximum"
    bar = colorbar(min(max(body.size[0], 200), 320), vmax=vmax if normalize == "shared" else 1.0, label=label)
    keys = legend_strip([("support mask", COLORS["support"], "line"),
                         ("earlier prediction", COLORS["prediction"], "line")])
    body = grid([body, bar, keys], columns=1, gap=4)
    return captioned(body, [f"pixel y={pixel[0]} x={pixel[1]}, layer {pa.layer}: {len(spatial)} memories; "
                            f"pointers ({n_ptr}): mass {ptr:.3f}"])


def _entry_caption(e: KeyEntry) -> str:
    return e.label


def attention_panels(insp: Inspection, step: int, pixel: tuple[int, int] | None = None, *,
                     layer: int | None = None, head: int = 0, size: int = 192, columns: int = 4,
                     normalize: Literal["shared", "each"] = "shared"):
    """The query slice and its memory frames with ``pixel``'s attention, with a provenance footer."""
    pixel = insp.default_pixel(step) if pixel is None else tuple(int(v) for v in pixel)
    q = query_panel(insp, step, pixel=pixel, size=size)
    mem = memory_panels(insp, step, pixel, layer=layer, head=head, size=size, columns=columns, normalize=normalize)
    body = grid([q, mem], columns=2, gap=12)
    r = insp.result
    layer = insp.steps[step].layers[-1] if layer is None else layer
    foot = (f"{r.case_id}/{r.label_name} {r.setting}{'-' + r.order if r.order else ''}, layer {layer}; "
            f"{r.provenance.get('model')}, {insp.weights}")
    lines = [foot]
    if insp.random_weights:
        lines.append("RANDOM WEIGHTS: the attention content is meaningless (smoke run)")
    from PIL import Image

    out = captioned(body, lines)
    framed = Image.new("RGB", (out.size[0] + 8, out.size[1] + 8), "white")
    framed.paste(out, (4, 4))
    return framed


def _pick_steps(insp: Inspection, steps) -> list[int]:
    """Processing indices of ``steps`` (ints, or ``"z=<z>"`` strings naming a slice by z)."""
    n = len(insp.steps)
    if isinstance(steps, (int, np.integer, str)):
        steps = [steps]
    out = []
    for s in steps:
        if isinstance(s, str) and s.startswith("z="):
            z = int(s[2:])
            hit = [k for k, st in enumerate(insp.steps) if st.z == z]
            if not hit:
                raise ValueError(f"no processed slice has z={z}; processed z: {[st.z for st in insp.steps]}.")
            out.append(hit[0])
        else:
            k = int(s)
            if not 0 <= k < n:
                raise ValueError(f"step {k} outside 0..{n - 1} (the processing order).")
            out.append(k)
    return out


def attention_figure(insp: Inspection, steps, pixel: tuple[int, int] | None = None, *,
                     layer: int | None = None, head: int = 0, max_memories: int = 6,
                     normalize: Literal["shared", "each"] = "shared", size: float = 1.25,
                     title: str | None = "auto"):
    """The attention panels of chosen slices as a vector matplotlib figure (paper-ready).

    One row per step: the query slice (prediction filled, ground truth as a contour, the pixel as
    a marker), then each spatial memory frame with the pixel's attention map over it (raster at
    the frame's native resolution) and its mask as a contour; captions name each memory by its z
    (and SAM2 frame distance) with its attention mass. Text, contours, markers and the shared
    colour bar are vector; the figure is built in the one style (:mod:`fsm2kit.viz.style`).

    Parameters
    ----------
    insp : Inspection
    steps : int, "z=<z>" or a sequence of them
        Processing indices (or slices by z) to show, e.g. ``[0, len(insp.steps) // 2, -1]``.
    pixel : (y, x), optional
        Stored pixel (default: each step's :meth:`~Inspection.default_pixel`).
    max_memories : int
        Memory columns per row (the nearest memories when a step has more).
    normalize : {"shared", "each"}
        One scale for every map (the colour bar's), or each map by its own maximum.
    size : float
        Inches per tile.
    title : str or None
        ``"auto"``: run, layer, model and weights; ``""`` or None: none (random weights are
        still said in a footer).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from ..viz.figures import attention_colorbar, image_axes, mask_legend, panel_figure, styled

    if normalize not in ("shared", "each"):
        raise ValueError(f"normalize must be 'shared' or 'each', got {normalize!r}.")
    picks = _pick_steps(insp, [s if isinstance(s, str) or s >= 0 else len(insp.steps) + int(s)
                               for s in ([steps] if isinstance(steps, (int, np.integer, str)) else steps)])
    o = panel_orientation(insp)
    rows = []
    for k in picks:
        px = insp.default_pixel(k) if pixel is None else tuple(int(v) for v in pixel)
        pa = insp.pixel_attention(k, px, layer=layer, head=head)
        spatial = sorted(pa.layout.spatial, key=lambda e: (e.source != "support", e.distance))[:max_memories]
        rows.append((k, px, pa, spatial))
    vmax = max([float(pa.grid(e).max()) for _, _, pa, sp in rows for e in sp] or [1.0])
    ncols = 1 + max(len(sp) for *_, sp in rows)

    @styled
    def build():
        fig, axes = panel_figure(len(rows), ncols, size=size, extra_height=2.0)  # captions, colour bar, legend
        for row_axes, (k, px, pa, spatial) in zip(axes, rows):
            s = insp.steps[k]
            gt = insp.episode.labels[s.position] if insp.episode is not None and insp.episode.labels is not None \
                else None
            image_axes(row_axes[0], s.image, o, fill=s.prediction, fill_color=COLORS["prediction"],
                       contours=[(gt, COLORS["ground_truth"])], markers=[(px[0], px[1], COLORS["pixel"])],
                       empty_note="no prediction", title=f"query z={s.z}\npixel y={px[0]} x={px[1]}")
            mass = pa.mass()
            for ax, e in zip(row_axes[1:], spatial):
                image, mask = insp.entry_image(e)
                up = pa.upsampled(e, np.shape(image)[-2:])
                top = float(up.max()) if normalize == "each" else vmax
                heat = up / top if top > 0 else up
                color = COLORS["support"] if e.source == "support" else COLORS["prediction"]
                image_axes(ax, image, o, heat=heat, contours=[(mask, color)],
                           title=_entry_caption(e).replace(" (", "\n(", 1) + f"\nmass {mass[e.position]:.3f}")
            for ax in row_axes[1 + len(spatial):]:
                ax.set_axis_off()
        label = "attention weight (shared scale)" if normalize == "shared" else "attention / map's maximum"
        attention_colorbar(fig, axes[:, 1:].ravel().tolist() if ncols > 1 else axes[:, 0].ravel().tolist(),
                           vmax=vmax if normalize == "shared" else 1.0, label=label)
        r = insp.result
        lay = rows[0][2].layer
        auto = (f"{r.case_id}/{r.label_name} {r.setting}{'-' + r.order if r.order else ''}, layer {lay}, head {head}; "
                f"{r.provenance.get('model')}, {short_sha(insp.weights)}")
        text = auto if title == "auto" else title
        if insp.random_weights:
            text = (text + "\n" if text else "") + "RANDOM WEIGHTS: the attention content is meaningless (smoke run)"
        # the provenance as the legend's title, a footer (a suptitle collides with the tiles' captions)
        mask_legend(fig, [("prediction", COLORS["prediction"], "fill"), ("ground truth", COLORS["ground_truth"], "line"),
                          ("support mask", COLORS["support"], "line"), ("earlier prediction", COLORS["prediction"], "line"),
                          ("pixel", COLORS["pixel"], "marker")], ncols=5, title=text)
        return fig

    return build()


# ----------------------------------------------------------------------------- command line
def write_inspection(insp: Inspection, out: str | os.PathLike, *, panels: int = 3,
                     pixel: tuple[int, int] | None = None, formats=("png",), presets=None,
                     provenance: Mapping | None = None, steps=None) -> dict[str, Path]:
    """Write an inspection's tables, charts and attention panels to a folder.

    Files: ``masses.csv``, ``shares.csv``, ``layouts.csv``, ``inspect.json`` (provenance),
    ``mass``/``share``/``layers`` charts in ``formats`` and ``panels_<k>_z<z>.png`` for
    ``panels`` slices spread over the processing order. With ``presets`` (e.g. ``("screen",
    "paper")``) the charts are written in those presets instead of ``formats``
    (:func:`fsm2kit.viz.export.save_presets`: ``mass.png/.svg/.html``, ``mass_paper.png/.pdf/.svg``
    at 183 mm) and the ``paper`` panels as ``panels_<k>_z<z>_paper.png/.pdf/.svg``: the vector
    :func:`attention_figure` of that slice (slices raster at native resolution, text, contours,
    markers and colour bar vector, TrueType fonts). ``steps`` (processing indices or ``"z=<z>"``)
    chooses the slices instead of ``panels`` spread over the processing order.

    ``provenance`` is what ``inspect.json`` holds (``fsm2kit inspect`` passes the one
    provenance record of :mod:`fsm2kit.records.provenance`, with the capture settings of
    :attr:`Inspection.provenance` among its details); default :attr:`Inspection.provenance`.
    ``inspect.json`` is written last, atomically (:func:`fsm2kit.records.fileio.atomic_write`).

    Returns
    -------
    dict
        name -> path written.
    """
    import json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, df in (("masses", insp.masses), ("shares", insp.shares()), ("layouts", insp.layouts())):
        paths[name] = atomic_write(out / f"{name}.csv", lambda tmp, df=df: df.to_csv(tmp, index=False))
    for name, chart in inspection_charts(insp).items():
        if presets:
            for key, p in save_presets(chart, out / name, presets=tuple(presets), width="double").items():
                paths[f"{name}.{key}"] = p
            continue
        for fmt, p in save_figure(chart, out / name, formats=tuple(formats)).items():
            paths[f"{name}.{fmt}"] = p
    n = len(insp.steps)
    if steps is not None:
        picks = sorted(set(_pick_steps(insp, steps)))
    else:
        picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, num=max(0, min(panels, n)))}) if panels > 0 else []
    for k in picks:
        stem = f"panels_{k:02d}_z{insp.steps[k].z}"
        p = save_figure(attention_panels(insp, k, pixel), out / f"{stem}.png")["png"]
        paths[p.stem] = p
        if presets and "paper" in presets:
            for fmt, f in save_figure(attention_figure(insp, [k], pixel), out / f"{stem}_paper",
                                      preset="paper").items():
                paths[f"{stem}_paper.{fmt}"] = f
    text = json.dumps(dict(insp.provenance if provenance is None else provenance), indent=2, default=str)
    paths["inspect.json"] = atomic_write(out / "inspect.json", lambda tmp: Path(tmp).write_text(text))
    return paths


def inspection_charts(insp: Inspection) -> dict:
    """The inspection's three charts: ``mass`` per entry, support/query ``share``, ``layers`` heatmap."""
    return {"mass": mass_chart(insp), "share": share_chart(insp), "layers": layer_heatmap(insp)}


