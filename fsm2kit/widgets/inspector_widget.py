"""An ipywidgets memory inspector for JupyterLab (works offline).

:class:`MemoryInspectorWidget` shows one :class:`~fsm2kit.inspector.inspection.Inspection`:

* a slider over the query slices in processing order, labelled by their z, and a layer selector;
* the query slice (radiological, with orientation letters) with its prediction (orange),
  the ground-truth contour (bluish green) and the chosen pixel (reddish purple), the colours
  of :data:`fsm2kit.viz.display.COLORS`: click on the slice (:class:`~fsm2kit.widgets.image.ClickImage`) or type the
  pixel's y and x (array indices); "follow foreground" puts the pixel at the centre of each
  slice's predicted foreground;
* the memory entries with the pixel's attention map over each (:func:`memory_panels`);
* the stacked attention-mass chart with the current slice marked (PNG via vl-convert).

All drawing happens in Python (PNG images), so nothing is fetched from the internet.
Attention maps for a new pixel cost one tracking step (cached). The widget's display bundle
also carries a static HTML rendering of its current view (:meth:`MemoryInspectorWidget.static_html`),
which an HTML export of the notebook shows where no widget state was saved.
"""

from __future__ import annotations

import html

import ipywidgets as W

from ..viz.display import COLORS
from ..inspector.inspection import Inspection
from ..viz.drawing import png_bytes, png_img_tag
from ..inspector.panels import chart_png, clicked_pixel, mass_chart, memory_panels, panel_orientation, query_image
from .image import legend_html, show_png, slice_image

__all__ = ["MemoryInspectorWidget", "show_inspector"]

class MemoryInspectorWidget(W.VBox):
    """Slider over query slices, layer selector, pixel chooser; query, memories and mass chart.

    Parameters
    ----------
    inspection : Inspection
        From :func:`fsm2kit.inspector.inspection.inspect_episode` (needs its engine and episode).
    layer : int, optional
        Initial layer (default: the last captured one).
    size : int
        Display size of the query slice (px); memory tiles are ``size * 3 // 4``.
    chart : bool
        Show the mass chart (a vl-convert render per slider move, ~0.2 s).
    """

    def __init__(self, inspection: Inspection, *, layer: int | None = None, size: int = 256, chart: bool = True):
        if not inspection.steps:
            raise ValueError("the inspection has no steps to show.")
        if inspection.episode is None or inspection.engine is None:
            raise ValueError("the widget needs an Inspection with its episode and engine "
                             "(build it with fsm2kit.inspector.inspection.inspect_episode).")
        self.inspection = insp = inspection
        self.size = int(size)
        self.show_chart = bool(chart)
        n = len(insp.steps)
        layers = list(insp.layers)
        layer = layers[-1] if layer is None else int(layer)
        if layer not in layers:
            raise ValueError(f"layer {layer} was not captured; captured layers: {layers}.")
        zs = [f"z={s.z}" for s in insp.steps]
        labels = [z if zs.count(z) == 1 else f"{z} (#{k})" for k, z in enumerate(zs)]
        self.slider = W.SelectionSlider(options=list(zip(labels, range(n))), value=0, description="query",
                                        continuous_update=False, layout=W.Layout(width="420px"))
        self.slider.add_class("fsm2-slider")
        self.layer = W.Dropdown(options=[(f"layer {l}", l) for l in layers], value=layer,
                                description="layer", layout=W.Layout(width="180px"))
        self.layer.add_class("fsm2-layer")
        h, w = insp.steps[0].image_shape
        self.py = W.BoundedIntText(value=0, min=0, max=h - 1, description="pixel y", style={"description_width": "initial"},
                                   layout=W.Layout(width="150px"))
        self.px = W.BoundedIntText(value=0, min=0, max=w - 1, description="x", style={"description_width": "initial"},
                                   layout=W.Layout(width="110px"))
        self.follow = W.Checkbox(value=True, description="follow foreground", indent=False,
                                 layout=W.Layout(width="160px"))
        self.status = W.HTML()
        self.status.add_class("fsm2-status")
        self.query = slice_image(self.size, on_click=self._on_click)
        self.query.add_class("fsm2-query")
        self.memories = W.Image(format="png")
        self.memories.add_class("fsm2-memories")
        self.chart = W.Image(format="png")
        self.chart.add_class("fsm2-chart")
        self._busy = False
        warn = ""
        if insp.random_weights:
            warn = ("<div style='color:#b00;font-weight:bold'>RANDOM WEIGHTS: a smoke run; the attention "
                    "content is meaningless.</div>")
        head = W.HTML(f"<b>Memory inspector</b>: {html.escape(repr(insp))}" + warn + _legend_html())
        controls = W.HBox([self.slider, self.layer])
        pixel_box = W.HBox([self.py, self.px, self.follow])
        left = W.VBox([self.query, pixel_box])
        super().__init__([head, controls, self.status, W.HBox([left, self.memories]), self.chart])
        self.add_class("fsm2-inspector")
        self.slider.observe(self._on_change, names="value")
        self.layer.observe(self._on_change, names="value")
        self.py.observe(self._on_pixel, names="value")
        self.px.observe(self._on_pixel, names="value")
        self.follow.observe(self._on_change, names="value")
        self.refresh()

    # ------------------------------------------------------------------ state
    @property
    def step(self) -> int:
        return int(self.slider.value)

    @property
    def pixel(self) -> tuple[int, int]:
        return int(self.py.value), int(self.px.value)

    def _set_pixel(self, y: int, x: int) -> None:
        self._busy = True
        try:
            self.py.value, self.px.value = int(y), int(x)
        finally:
            self._busy = False

    # ------------------------------------------------------------------ events
    def _on_change(self, change=None) -> None:
        if not self._busy:
            self.refresh()

    def _on_pixel(self, change=None) -> None:
        if self._busy:
            return
        self._busy = True
        self.follow.value = False
        self._busy = False
        self.refresh()

    def _on_click(self, change) -> None:
        v = change["new"]
        if not v or len(v) < 2:
            return
        shape = self.inspection.steps[self.step].image_shape
        y, x = clicked_pixel((v[0], v[1]), shape, panel_orientation(self.inspection))
        self._busy = True
        self.follow.value = False
        self._busy = False
        self._set_pixel(y, x)
        self.refresh()

    # ------------------------------------------------------------------ drawing
    def refresh(self) -> None:
        """Redraw everything for the current slice, layer and pixel."""
        insp = self.inspection
        k, layer = self.step, int(self.layer.value)
        s = insp.steps[k]
        if self.follow.value:
            self._set_pixel(*insp.default_pixel(k))
        y, x = self.pixel
        h, w = s.image_shape
        y, x = min(y, h - 1), min(x, w - 1)
        qimg = query_image(insp, k, pixel=(y, x), size=self.size)
        self._query_png = png_bytes(qimg)
        show_png(self.query, self._query_png)
        mem = memory_panels(insp, k, (y, x), layer=layer, size=max(96, self.size * 3 // 4))
        self.memories.value = png_bytes(mem)
        if self.show_chart:
            self.chart.value = chart_png(mass_chart(insp, layer=layer, highlight=k, width=480, height=180))
        m = s.mass(layer=layer)
        share = {}
        for e in s.layout:
            share[e.group] = share.get(e.group, 0.0) + float(m[e.position])
        shares = ", ".join(f"{g} {v:.2f}" for g, v in share.items())
        self.status.value = (
            f"<span class='fsm2-status-text'>slice #{k} of {len(insp.steps)}: <b>z={s.z}</b> "
            f"(plan {s.plan_index}, step {s.step}{', reverse' if s.reverse else ''}); layer {layer}; "
            f"pixel y={y} x={x}; predicted {s.fg_pixels} px; mass: {shares}</span>"
        )

    # ------------------------------------------------------------------ static rendering
    def static_html(self) -> str:
        """The current view as self-contained HTML (PNG images inlined): what an HTML export shows."""
        head = self.children[0].value
        return (
            "<div class='fsm2-static' style='font-family:sans-serif;font-size:13px'>"
            f"<div>{head}</div><div><i>static rendering of the widget's current view "
            f"(query {html.escape(self.slider.label)}, layer {self.layer.value})</i></div>"
            f"<div>{self.status.value}</div>"
            "<div style='display:flex;gap:8px;align-items:flex-start'>"
            f"{png_img_tag(getattr(self, '_query_png', b''), 'fsm2-static-query')}{png_img_tag(self.memories.value, 'fsm2-static-memories')}"
            f"</div>{png_img_tag(self.chart.value if self.show_chart else b'', 'fsm2-static-chart')}</div>"
        )

    def snapshot(self):
        """The current view as a static HTML display object (PNG images inlined).

        Display it in a cell after the widget: an HTML export of the notebook then shows the
        view even where the widget itself cannot be drawn (offline, or no widget state saved).
        """
        from IPython.display import HTML

        return HTML(self.static_html())

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/html"] = self.static_html()  # used where the widget state is not saved (nbconvert HTML)
        return data

    def __repr__(self) -> str:
        return f"MemoryInspectorWidget({self.inspection!r}, slice #{self.step}, layer {self.layer.value})"


def _legend_html() -> str:
    return legend_html((("prediction", COLORS["prediction"], "fill"),
                        ("ground truth (contour)", COLORS["ground_truth"], "line"),
                        ("pixel", COLORS["pixel"], "line"), ("support mask", COLORS["support"], "line")))


def show_inspector(inspection: Inspection, **kwargs) -> MemoryInspectorWidget:
    """Build a :class:`MemoryInspectorWidget` (display it as the cell's last expression)."""
    return MemoryInspectorWidget(inspection, **kwargs)
