"""Views of an :class:`~fsm2kit.inspect.Inspection`: altair charts and image panels.

Charts (altair; :func:`fsm2kit.io.charts.save_chart` writes ``.png``/``.svg`` through vl-convert,
or a self-contained ``.html`` that works offline):

* :func:`mass_chart`: stacked attention mass per memory entry along the processing order;
* :func:`share_chart`: support memory vs query memory (vs object pointers) share per slice;
* :func:`layer_heatmap`: layer x memory entry mean mass.

Panels (PIL images; :func:`save_panel`):

* :func:`query_panel`: the query slice with its prediction (and ground truth) and the pixel;
* :func:`memory_panels`: every spatial memory frame's image with the chosen pixel's attention
  map over it (upsampled onto that image), its mask, and the entry's mass;
* :func:`attention_panels`: both, with a provenance footer.

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

from ..core.fileio import atomic_write
from ..io.charts import save_chart

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
    "save_panel",
    "write_inspection",
    "inspection_charts",
    "GROUP_COLORS",
]

#: Colours of the three memory groups (support, query memory, pointers).
GROUP_COLORS = {"support memory": "#1f77b4", "query memory": "#ff7f0e", "object pointers": "#7f7f7f"}


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
    m["role"] = np.where(m["entry_kind"] == "pointer", "object pointers", m["role"])
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
    def key(r: str):
        if r.startswith("support"):
            return (0, r)
        if r.startswith("prev query"):
            return (1, int(r.rsplit("-", 1)[-1]), r)
        return (2, r)

    return sorted(set(roles), key=key)


def _title(insp: Inspection, what: str, layer: int | None, region: str) -> dict:
    r = insp.result
    order = f"-{r.order}" if r.order else ""
    sub = (f"{r.case_id}/{r.label_name}, {r.setting}{order}, {_layer_text(insp, layer)}, "
           f"{'all query tokens' if region == 'all' else 'predicted foreground'}; "
           f"{r.provenance.get('model')}, {insp.weights}")
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
                        scale=alt.Scale(scheme="tableau20")),
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
    """Support memory vs query memory (vs object pointers) share of attention per slice.

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
    """Layer x memory entry heatmap of the mean attention mass (over steps, or one step)."""
    import altair as alt

    m = insp.masses
    m = m[m["region"] == _check_region(region)].copy()
    if step is not None:
        if not 0 <= step < len(insp.steps):
            raise ValueError(f"step {step} outside 0..{len(insp.steps) - 1}")
        m = m[m["proc_index"] == step]
    m["role"] = np.where(m["entry_kind"] == "pointer", "object pointers", m["role"])
    per = m.groupby(["proc_index", "layer", "head", "role"], as_index=False)["mass"].sum()
    df = per.groupby(["layer", "role"], as_index=False)["mass"].mean()
    df["weights"] = insp.weights
    roles = _role_order(df["role"])
    what = "Mean attention mass, layer x memory entry"
    if step is not None:
        what += f" (step {step}, z={insp.steps[step].z})"
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
def _gray(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 3:
        a = a[0]
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    return a


def _edges(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, border_value=0)


def _rgb(gray: np.ndarray, heat: np.ndarray | None = None, *, alpha: float = 0.6, cmap: str = "inferno") -> np.ndarray:
    base = np.repeat(gray[..., None], 3, axis=2)
    if heat is not None:
        import matplotlib

        lut = matplotlib.colormaps[cmap](np.linspace(0, 1, 256))[:, :3]
        h = np.clip(heat, 0, 1)
        col = lut[(h * 255).astype(int)]
        a = alpha * (0.25 + 0.75 * h)[..., None]
        base = (1 - a) * base + a * col
    return base


def _paint(rgb: np.ndarray, mask: np.ndarray | None, color: tuple[float, float, float]) -> np.ndarray:
    if mask is not None and np.any(mask):
        rgb = rgb.copy()
        rgb[_edges(mask)] = color
    return rgb


def _to_image(rgb: np.ndarray, size: int):
    from PIL import Image

    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    if size and img.size != (size, size):
        w, h = img.size
        s = size / max(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return img


def _marker(img, pixel: tuple[int, int], shape: tuple[int, int], color=(0, 255, 255)):
    from PIL import ImageDraw

    y, x = pixel
    sy, sx = img.size[1] / shape[0], img.size[0] / shape[1]
    cy, cx = (y + 0.5) * sy, (x + 0.5) * sx
    d = ImageDraw.Draw(img)
    r = max(4, img.size[0] // 32)
    d.line([(cx - r, cy), (cx + r, cy)], fill=color, width=2)
    d.line([(cx, cy - r), (cx, cy + r)], fill=color, width=2)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], outline=color, width=1)
    return img


def _font(size: int = 12):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _captioned(img, lines: list[str], *, font_size: int = 12):
    from PIL import Image, ImageDraw

    font = _font(font_size)
    pad = 3
    line_h = font_size + 3
    out = Image.new("RGB", (img.size[0], img.size[1] + pad * 2 + line_h * len(lines)), "white")
    out.paste(img, (0, pad * 2 + line_h * len(lines)))
    d = ImageDraw.Draw(out)
    for i, t in enumerate(lines):
        d.text((pad, pad + i * line_h), t, fill=(0, 0, 0), font=font)
    return out


def _grid(tiles: list, *, columns: int, gap: int = 6):
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


def query_image(insp: Inspection, step: int, *, pixel: tuple[int, int] | None = None, size: int = 256,
                ground_truth: bool = True):
    """The query slice (no caption) with its prediction (yellow), ground truth (green) and the pixel."""
    s = insp.steps[step]
    if s.image is None:
        raise RuntimeError("this step has no image (captured without track's image argument).")
    rgb = _rgb(_gray(s.image))
    if ground_truth and insp.episode is not None and insp.episode.labels is not None:
        rgb = _paint(rgb, insp.episode.labels[s.position], (0.2, 0.9, 0.2))
    rgb = _paint(rgb, s.prediction, (1.0, 0.85, 0.0))
    img = _to_image(rgb, size)
    if pixel is not None:
        img = _marker(img, pixel, s.image_shape)
    return img


def query_panel(insp: Inspection, step: int, *, pixel: tuple[int, int] | None = None, size: int = 256):
    """:func:`query_image` with a caption (slice, step, foreground, pixel)."""
    s = insp.steps[step]
    img = query_image(insp, step, pixel=pixel, size=size)
    lines = [f"query z={s.z}  (#{step}, plan {s.plan_index} step {s.step})",
             f"pred {s.fg_pixels} px" + (f", pixel y={pixel[0]} x={pixel[1]}" if pixel else "")]
    return _captioned(img, lines)


def memory_panels(insp: Inspection, step: int, pixel: tuple[int, int] | None = None, *,
                  layer: int | None = None, head: int = 0, size: int = 192, columns: int = 4,
                  normalize: Literal["shared", "each"] = "shared"):
    """Each spatial memory frame of a step with ``pixel``'s attention map over it.

    The map over the frame's token grid is upsampled onto the frame's image (support slice or
    earlier query slice) and overlaid (inferno colour map); the frame's mask (support mask or
    that slice's prediction) is outlined in green. ``normalize="shared"`` scales all maps by
    the largest weight of any spatial memory (comparable across tiles), ``"each"`` by each
    map's own maximum.

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
    tiles = []
    for e in spatial:
        image, mask = insp.entry_image(e)
        up = pa.upsampled(e, np.shape(image)[-2:])
        top = float(up.max()) if normalize == "each" else vmax
        heat = up / top if top > 0 else up
        rgb = _paint(_rgb(_gray(image), heat), mask, (0.2, 0.9, 0.2))
        tiles.append(_captioned(_to_image(rgb, size), [_entry_caption(e), f"mass {mass[e.position]:.3f}"]))
    ptr = sum(mass[e.position] for e in pa.layout.pointers)
    n_ptr = len(pa.layout.pointers)
    grid = _grid(tiles, columns=columns)
    return _captioned(grid, [f"pixel y={pixel[0]} x={pixel[1]}, layer {pa.layer}: {len(spatial)} memories; "
                             f"{n_ptr} object pointers: mass {ptr:.3f}"])


def _entry_caption(e: KeyEntry) -> str:
    return e.label


def attention_panels(insp: Inspection, step: int, pixel: tuple[int, int] | None = None, *,
                     layer: int | None = None, head: int = 0, size: int = 192, columns: int = 4,
                     normalize: Literal["shared", "each"] = "shared"):
    """The query slice and its memory frames with ``pixel``'s attention, with a provenance footer."""
    pixel = insp.default_pixel(step) if pixel is None else tuple(int(v) for v in pixel)
    q = query_panel(insp, step, pixel=pixel, size=size)
    mem = memory_panels(insp, step, pixel, layer=layer, head=head, size=size, columns=columns, normalize=normalize)
    body = _grid([q, mem], columns=2, gap=12)
    r = insp.result
    layer = insp.steps[step].layers[-1] if layer is None else layer
    foot = (f"{r.case_id}/{r.label_name} {r.setting}{'-' + r.order if r.order else ''}, layer {layer}; "
            f"{r.provenance.get('model')}, {insp.weights}")
    lines = [foot]
    if insp.random_weights:
        lines.append("RANDOM WEIGHTS: the attention content is meaningless (smoke run)")
    from PIL import Image

    out = _captioned(body, lines)
    framed = Image.new("RGB", (out.size[0] + 8, out.size[1] + 8), "white")
    framed.paste(out, (4, 4))
    return framed


def save_panel(img, path: str | os.PathLike) -> Path:
    """Save a panel image (``.png``, ``.jpg``, ``.webp``...)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").upper().replace("JPG", "JPEG") or "PNG"
    return atomic_write(path, lambda tmp: img.save(tmp, format=fmt))


# ----------------------------------------------------------------------------- command line
def write_inspection(insp: Inspection, out: str | os.PathLike, *, panels: int = 3,
                     pixel: tuple[int, int] | None = None, formats=("png",),
                     provenance: Mapping | None = None) -> dict[str, Path]:
    """Write an inspection's tables, charts and attention panels to a folder.

    Files: ``masses.csv``, ``shares.csv``, ``layouts.csv``, ``inspect.json`` (provenance),
    ``mass``/``share``/``layers`` charts in ``formats`` and ``panels_<k>_z<z>.png`` for
    ``panels`` slices spread over the processing order.

    ``provenance`` is what ``inspect.json`` holds (``fsm2kit inspect`` passes the one
    provenance record of :mod:`fsm2kit.workflows.provenance`, with the capture settings of
    :attr:`Inspection.provenance` among its details); default :attr:`Inspection.provenance`.
    ``inspect.json`` is written last, atomically (:func:`fsm2kit.core.fileio.atomic_write`).

    Returns
    -------
    dict
        name -> path written.
    """
    import json

    from ..core.fileio import atomic_write

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, df in (("masses", insp.masses), ("shares", insp.shares()), ("layouts", insp.layouts())):
        paths[name] = atomic_write(out / f"{name}.csv", lambda tmp, df=df: df.to_csv(tmp, index=False))
    for name, chart in inspection_charts(insp).items():
        for fmt, p in save_chart(chart, out / name, formats=tuple(formats)).items():
            paths[f"{name}.{fmt}"] = p
    n = len(insp.steps)
    picks = sorted({int(round(i)) for i in np.linspace(0, n - 1, num=max(0, min(panels, n)))}) if panels > 0 else []
    for k in picks:
        p = save_panel(attention_panels(insp, k, pixel), out / f"panels_{k:02d}_z{insp.steps[k].z}.png")
        paths[p.stem] = p
    text = json.dumps(dict(insp.provenance if provenance is None else provenance), indent=2, default=str)
    paths["inspect.json"] = atomic_write(out / "inspect.json", lambda tmp: Path(tmp).write_text(text))
    return paths


def inspection_charts(insp: Inspection) -> dict:
    """The inspection's three charts: ``mass`` per entry, support/query ``share``, ``layers`` heatmap."""
    return {"mass": mass_chart(insp), "share": share_chart(insp), "layers": layer_heatmap(insp)}


