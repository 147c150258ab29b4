"""Correct and re-propagate in the notebook: prompts on a query slice, then the memory inspector.

:class:`CorrectionWidget` (JupyterLab, offline; a sibling of
:class:`~fsm2kit.widgets.inspector_widget.MemoryInspectorWidget`):

* a slider over the query slices (by z) and a mode: positive point, negative point or box;
* the query slice (radiological, edge letters) with the current prediction (orange), the ground
  truth contour and the pending prompts: click to add a point, drag (or click two corners) for a
  box. Clicks on the displayed (possibly flipped or transposed) slice are mapped back to the
  stored pixel coordinates the prompts use (:func:`~fsm2kit.inspector.panels.clicked_pixel`);
* the pending corrections of the round (one :class:`~fsm2kit.engine.corrections.Correction` per
  slice: points and box on one slice merge);
* "re-propagate" ends the round: one propagation from the state the last round left
  (:class:`~fsm2kit.inspector.corrected.InspectedCorrections`, bit-equal to replaying every
  round); "undo" restores the state saved before the last round at once; while a round runs the
  widget is busy (a spinner, a count of the slices propagated, buttons disabled; clicks made
  meanwhile wait and join the pending prompts after it); "clear pending"; "save prompts" writes
  the rounds as a prompt file
  (:func:`fsm2kit.io.prompts.write_prompts`) that ``fsm2kit run/segment --prompts`` replays;
* the Dice against the ground truth (when the episode has one: the slice shown and the whole
  volume, by :func:`fsm2kit.protocol.metrics.dice`);
* the predicted area along z before and after the last round, and the attention-mass chart of
  the last propagation (the corrected slices' conditioning memories are ``query (SAM2 d=0)``).
  Prompts are drawn with black and white halos and a sign, visible on any fill.
"""

from __future__ import annotations

import html
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import numpy as np

from ..engine.corrections import Correction
from ..viz.display import COLORS, OKABE_ITO
from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..io.prompts import read_prompts, write_prompts
from ..inspector.corrected import InspectedCorrections, correction_stages
from ..protocol.metrics import dice
from ..tables.dice_table import short_sha
from ..viz.drawing import draw_marker, hex_rgb, png_bytes, png_img_tag
from ..inspector.inspection import Inspection
from ..inspector.panels import chart_png, clicked_pixel, mass_chart, panel_orientation, query_image
from .image import legend_html, show_png, slice_image

__all__ = ["CorrectionWidget", "correct_episode", "show_corrections", "example_correction"]

_MODES = (("+ point", "positive"), ("- point", "negative"), ("box", "box"))

def example_correction(episode: Episode, *, z: int | None = None) -> Correction:
    """One positive point: at the ground truth's centre on slice ``z`` (default: the slice with the
    largest ground truth, else the middle slice), else the slice centre. For demonstrations."""
    zs = [int(v) for v in episode.z]
    if z is None:
        areas = [0] * len(zs) if episode.labels is None else [int(np.sum(m)) for m in episode.labels]
        pos = int(np.argmax(areas)) if max(areas) > 0 else len(zs) // 2
    else:
        if int(z) not in zs:
            raise ValueError(f"z={z} is not a query slice (z {zs[0]}..{zs[-1]}).")
        pos = zs.index(int(z))
    h, w = episode.images[pos].shape
    y, x = h // 2, w // 2
    if episode.labels is not None and np.any(episode.labels[pos]):
        ys, xs = np.nonzero(episode.labels[pos])
        i = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))  # a foreground pixel near the centroid
        y, x = int(ys[i]), int(xs[i])
    return Correction(zs[pos], points=((x, y, 1),))


class CorrectionWidget(W.VBox):
    """Prompts on query slices, re-propagation, undo and saving; see the module docstring.

    Parameters
    ----------
    engine : Engine
    episode : Episode
    setting : {"S1SFQ", "3SFQ"}
    order : {"middle", "top"}
    rounds : sequence of sequences of Correction
        Rounds already done (replayed at start), e.g. from a prompt file.
    layers : sequence of int, optional
        Memory-attention layers to capture (default: all); the mass chart shows their mean.
    size : int
        Display size of the query slice (px).
    chart : bool
        Draw the charts (vl-convert, ~0.2 s each).
    path : str
        Initial path of "save prompts".
    memory_policy : MemoryPolicy, optional
    """

    def __init__(self, engine: Engine, episode: Episode, setting: str, *, order: str = "middle",
                 rounds: Sequence[Sequence[Correction]] = (), layers: Sequence[int] | None = None, size: int = 256,
                 chart: bool = True, path: str = "prompts.json", memory_policy=None):
        self.engine, self.episode, self.setting, self.order = engine, episode, setting, order
        self.layers = None if layers is None else list(layers)
        self.memory_policy = memory_policy
        self.size, self.show_chart = int(size), bool(chart)
        self.rounds: list[tuple[Correction, ...]] = [tuple(r) for r in rounds]
        self.pending: dict[int, dict] = {}  # z -> {"points": [(x, y, label)], "box": (x0, y0, x1, y1) | None}
        self._anchor: tuple[int, int] | None = None  # first corner of a two-click box (stored y, x)
        self.seconds: float | None = None
        self.busy = False
        self._deferred: list = []  # prompt events that came while a round ran, applied after it
        self.progress = W.HTML()
        self.progress.add_class("fsm2-corr-progress")
        zs = [int(z) for z in episode.z]
        self.slider = W.SelectionSlider(options=[(f"z={z}", z) for z in zs], value=zs[len(zs) // 2],
                                        description="slice", continuous_update=False, layout=W.Layout(width="420px"))
        self.slider.add_class("fsm2-corr-slider")
        self.mode = W.ToggleButtons(options=list(_MODES), value="positive", description="prompt",
                                    tooltips=["positive point", "negative point", "box: drag, or click two corners"],
                                    style={"button_width": "80px"})
        self.mode.add_class("fsm2-corr-mode")
        self.buttons = {}
        for key, label, style in (("repropagate", "re-propagate", "primary"), ("undo", "undo", ""),
                                  ("clear", "clear pending", ""), ("save", "save prompts", "")):
            b = W.Button(description=label, button_style=style, layout=W.Layout(width="130px"))
            b.add_class(f"fsm2-corr-{key}")
            self.buttons[key] = b
        self.path = W.Text(value=str(path), description="file", layout=W.Layout(width="360px"))
        self.path.add_class("fsm2-corr-path")
        self.overwrite = W.Checkbox(value=False, description="overwrite", indent=False, layout=W.Layout(width="110px"))
        self.status = W.HTML()
        self.status.add_class("fsm2-corr-status")
        self.message = W.HTML()
        self.message.add_class("fsm2-corr-message")
        self.pending_view = W.HTML()
        self.pending_view.add_class("fsm2-corr-pending")
        self.query = slice_image(self.size, on_click=self._on_click, on_drag=self._on_drag)
        self.query.add_class("fsm2-corr-query")
        self.areas = W.Image(format="png")
        self.areas.add_class("fsm2-corr-areas")
        self.chart = W.Image(format="png")
        self.chart.add_class("fsm2-corr-chart")
        self.head = W.HTML()
        t0 = time.perf_counter()
        self._state = InspectedCorrections(engine, episode, setting, self.rounds, order=order, layers=self.layers,
                                           memory_policy=memory_policy)
        self.rounds = self._state.rounds  # one list: the session's
        self._after_round(time.perf_counter() - t0)
        buttons = W.HBox([self.buttons[k] for k in ("repropagate", "undo", "clear")])
        save = W.HBox([self.path, self.overwrite, self.buttons["save"]])
        left = W.VBox([self.query, self.pending_view])
        super().__init__([self.head, W.HBox([self.slider]), self.mode, buttons, save, self.progress, self.status,
                          self.message,
                          W.HBox([left, self.areas]), self.chart])
        self.add_class("fsm2-corrector")
        if self.rounds:
            self.slider.value = int(self.rounds[-1][0].z)
        self.slider.observe(lambda ch: self.refresh(), names="value")
        self.buttons["repropagate"].on_click(lambda b: self.repropagate())
        self.buttons["undo"].on_click(lambda b: self.undo())
        self.buttons["clear"].on_click(lambda b: self.clear_pending())
        self.buttons["save"].on_click(lambda b: self.save())
        self.refresh()

    # ------------------------------------------------------------------ state
    @property
    def z(self) -> int:
        return int(self.slider.value)

    @property
    def run(self):
        """The :class:`~fsm2kit.engine.corrections.CorrectionRun` of the rounds done (every stage)."""
        return correction_stages(self.inspection)

    def pending_corrections(self) -> list[Correction]:
        """The pending corrections of the round, one per slice (points and box merged), by z."""
        return [Correction(z, points=tuple(p["points"]), box=p["box"]) for z, p in sorted(self.pending.items())
                if p["points"] or p["box"] is not None]

    def add_point(self, y: int, x: int, label: int, *, z: int | None = None) -> None:
        """Add a point (stored pixel ``y`` = row, ``x`` = column; label 1 positive, 0 negative)."""
        z = self.z if z is None else int(z)
        self._check_inside(z, y, x)
        self.pending.setdefault(z, {"points": [], "box": None})["points"].append((int(x), int(y), int(label)))
        self.message.value = f"added a {'positive' if label else 'negative'} point on z={z} at x={x}, y={y} (stored)"
        self.refresh()

    def set_box(self, y0: int, x0: int, y1: int, x1: int, *, z: int | None = None) -> None:
        """Set the box of slice ``z`` covering the stored pixels between two corners (inclusive)."""
        z = self.z if z is None else int(z)
        self._check_inside(z, y0, x0)
        self._check_inside(z, y1, x1)
        box = (min(x0, x1), min(y0, y1), max(x0, x1) + 1, max(y0, y1) + 1)
        self.pending.setdefault(z, {"points": [], "box": None})["box"] = tuple(int(v) for v in box)
        self.message.value = f"box on z={z}: x {box[0]}..{box[2]}, y {box[1]}..{box[3]} (stored)"
        self.refresh()

    def _check_inside(self, z: int, y: int, x: int) -> None:
        h, w = self._shape(z)
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"pixel (y={y}, x={x}) is outside the {h}x{w} slice z={z}.")

    def _shape(self, z: int) -> tuple[int, int]:
        pos = [int(v) for v in self.episode.z].index(int(z))
        return tuple(int(s) for s in np.shape(self.episode.images[pos]))

    # ------------------------------------------------------------------ events
    def _on_click(self, change) -> None:
        v = change["new"]
        if not v or len(v) < 2:
            return
        if self.busy:  # a click while a round runs: applied after it, to the next round
            self._deferred.append((self._on_click, change))
            return
        y, x = clicked_pixel((v[0], v[1]), self._shape(self.z), panel_orientation(self.inspection))
        if self.mode.value == "box":
            if self._anchor is None:
                self._anchor = (y, x)
                self.message.value = f"box: first corner y={y}, x={x}; click the opposite corner (or drag)"
                self.refresh()
            else:
                (y0, x0), self._anchor = self._anchor, None
                self.set_box(y0, x0, y, x)
            return
        self.add_point(y, x, 1 if self.mode.value == "positive" else 0)

    def _on_drag(self, change) -> None:
        v = change["new"]
        if not v or len(v) < 4:
            return
        if self.busy:
            self._deferred.append((self._on_drag, change))
            return
        o, shape = panel_orientation(self.inspection), self._shape(self.z)
        y0, x0 = clicked_pixel((v[0], v[1]), shape, o)
        y1, x1 = clicked_pixel((v[2], v[3]), shape, o)
        self._anchor = None
        if self.mode.value != "box":
            self.message.value = "drag draws a box: choose the box mode first"
            return
        self.set_box(y0, x0, y1, x1)

    # ------------------------------------------------------------------ actions
    def repropagate(self) -> None:
        """End the round: the pending corrections become a round, propagated once from the state
        the last round left (busy meanwhile)."""
        if self.busy:
            return
        rnd = self.pending_corrections()
        if not rnd:
            self.message.value = "nothing pending: click on the slice to add prompts first"
            return
        t0 = time.perf_counter()
        corrected = set(self.inspection.options.get("corrected_z", [])) | {c.z for c in rnd}
        total = len(self.episode.z) - len(corrected) + sum(c.mask is None for c in rnd)  # SAM2 steps of the round
        with self._busy(f"round {len(self.rounds) + 1}: {len(rnd)} correction(s), re-propagating", total=total):
            try:
                self._state.apply(rnd)
            except ValueError as e:  # the round is refused; the session and the pending prompts are kept
                self.message.value = f"<span style='color:#b00'>{html.escape(str(e))}</span>"
                ok = False
            else:
                ok = True
                done = {c.z for c in rnd}
                for z in done:  # what was sent is no longer pending (prompts added meanwhile stay)
                    self.pending.pop(z, None)
                self._anchor = None
        if ok:
            self._after_round(time.perf_counter() - t0)
            self.message.value = (f"round {len(self.rounds)}: {len(rnd)} correction(s), re-propagated in "
                                  f"{self.seconds:.1f} s (one propagation)")
        self._flush_deferred()
        self.refresh()

    def undo(self) -> None:
        """Drop the last round: the state saved before it, at once (pending prompts are kept)."""
        if self.busy:
            return
        if not self.rounds:
            self.message.value = "nothing to undo"
            return
        t0 = time.perf_counter()
        self._state.undo()
        self._after_round(time.perf_counter() - t0)
        self.message.value = f"undone: {len(self.rounds)} round(s) left ({self.seconds:.2f} s, no re-propagation)"
        self.refresh()

    @contextmanager
    def _busy(self, what: str, *, total: int):
        """Busy state: buttons, mode and slider disabled, a spinner and a count of the slices done."""
        controls = [*self.buttons.values(), self.mode, self.slider]
        before = [c.disabled for c in controls]
        self.busy = True
        for c in controls:
            c.disabled = True
        count = _ProgressCount(self.progress, what, total)
        count.show()
        self.add_class("fsm2-busy")
        try:
            with self.engine.observe(count):
                yield
        finally:
            for c, d in zip(controls, before):
                c.disabled = d
            self.busy = False
            self.remove_class("fsm2-busy")
            self.progress.value = ""

    def _flush_deferred(self) -> None:
        events, self._deferred = self._deferred, []
        for handler, change in events:
            handler(change)

    def clear_pending(self) -> None:
        self.pending.clear()
        self._anchor = None
        self.message.value = "pending prompts cleared"
        self.refresh()

    def save(self, path: str | None = None, *, overwrite: bool | None = None) -> Path | None:
        """Write the rounds done (not the pending prompts) as a prompt file; refuse to overwrite
        unless the checkbox (or ``overwrite``) says so. Errors go to the message line."""
        p = Path(self.path.value if path is None else path).expanduser()
        ow = bool(self.overwrite.value if overwrite is None else overwrite)
        if not self.rounds:
            self.message.value = "no rounds to save: re-propagate first"
            return None
        try:
            out = write_prompts(p, self.rounds, case=self.episode.case_id, label=self.episode.label_name, overwrite=ow)
        except (OSError, ValueError) as e:
            self.message.value = f"<span style='color:#b00'>not saved: {html.escape(str(e))}</span>"
            return None
        extra = f" ({len(self.pending_corrections())} pending not saved)" if self.pending else ""
        self.message.value = f"saved {len(self.rounds)} round(s) to {html.escape(str(out))}{extra}"
        return out

    def _after_round(self, seconds: float) -> None:
        self.inspection = self._state.inspection
        self.seconds = seconds
        warn = ("<div style='color:#b00;font-weight:bold'>RANDOM WEIGHTS: a smoke run; predictions and "
                "attention are meaningless.</div>") if self.inspection.random_weights else ""
        self.head.value = (f"<b>Correct and re-propagate</b>: {html.escape(self.episode.case_id)}/"
                           f"{html.escape(str(self.episode.label_name))}, {html.escape(self.setting)}-"
                           f"{html.escape(self.order)}; {html.escape(short_sha(self.inspection.weights))}" + warn
                           + _legend_html())

    # ------------------------------------------------------------------ drawing
    def query_png(self) -> bytes:
        """The current slice: prediction, ground truth contour, the prompts of the rounds done on it
        (dots, thin boxes) and the pending ones (cross-hairs, thick box)."""
        from PIL import ImageDraw

        insp, z = self.inspection, self.z
        img = query_image(insp, insp.step_of_z(z), size=self.size)
        o = panel_orientation(insp)
        shape = self._shape(z)
        dshape = (shape[1], shape[0]) if o is not None and o.transpose else shape
        sy, sx = img.size[1] / dshape[0], img.size[0] / dshape[1]
        draw = ImageDraw.Draw(img)

        def show(y, x):
            return o.point(y, x, shape) if o is not None else (y, x)

        def rgb(key):
            return tuple(int(v * 255) for v in hex_rgb(COLORS[key]))

        def box(b, width):
            x0, y0, x1, y1 = (int(round(v)) for v in b)
            a, c = show(y0, x0), show(max(y0, y1 - 1), max(x0, x1 - 1))
            ys, xs = sorted((a[0], c[0])), sorted((a[1], c[1]))
            rect = [xs[0] * sx, ys[0] * sy, (xs[1] + 1) * sx - 1, (ys[1] + 1) * sy - 1]
            draw.rectangle(rect, outline=(0, 0, 0), width=width + 2)  # a black halo: seen on the orange fill
            draw.rectangle(rect, outline=rgb("box"), width=width)

        r = max(3, img.size[0] // 64)
        for c in (c for rnd in self.rounds for c in rnd if c.z == z and c.mask is None):
            if c.box is not None:
                box(c.box, 1)
            for x, y, lab in c.points:
                dy, dx = show(y, x)
                cy, cx = (dy + 0.5) * sy, (dx + 0.5) * sx
                draw.ellipse([cx - r - 2, cy - r - 2, cx + r + 2, cy + r + 2], fill=(0, 0, 0))  # black halo
                draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb("positive_point" if lab else "negative_point"),
                             outline=(255, 255, 255), width=1)
                k = max(1, r - 2)  # the sign, so that the two kinds differ by shape too
                draw.line([(cx - k, cy), (cx + k, cy)], fill=(0, 0, 0), width=2)
                if lab:
                    draw.line([(cx, cy - k), (cx, cy + k)], fill=(0, 0, 0), width=2)
        p = self.pending.get(z, {"points": [], "box": None})
        if p["box"] is not None:
            box(p["box"], 3)
        for x, y, lab in p["points"]:
            draw_marker(img, show(y, x), dshape, COLORS["positive_point" if lab else "negative_point"])
        if self._anchor is not None:
            draw_marker(img, show(*self._anchor), dshape, COLORS["box"])
        return png_bytes(img)

    def area_chart(self):
        """Predicted area (pixels) along z: the stage before the last round and now; corrected z marked."""
        import altair as alt
        import pandas as pd

        run = self.run
        stages = run.stages
        names = {len(stages) - 1: f"now (after {len(stages) - 1} round(s))"}
        if len(stages) > 1:
            names[len(stages) - 2] = "before the last round"
        rows = [dict(z=int(s.z), area=int(np.sum(s.prediction)), stage=name)
                for k, name in names.items() for s in stages[k].slices]
        df = pd.DataFrame(rows)
        order = list(names.values())[::-1]
        lines = alt.Chart(df).mark_line(point=True).encode(
            x=alt.X("z:Q", title="slice z", scale=alt.Scale(zero=False)), y=alt.Y("area:Q", title="predicted pixels"),
            color=alt.Color("stage:N", sort=order, title=None,
                            scale=alt.Scale(domain=order, range=[OKABE_ITO["grey"], COLORS["prediction"]][-len(order):])),
            strokeDash=alt.StrokeDash("stage:N", sort=order, legend=None),
            tooltip=["z:Q", "stage:N", "area:Q"])
        layers = [lines]
        last = sorted({int(c.z) for c in run.rounds[-1]}) if run.rounds else []
        if last:
            layers.append(alt.Chart(pd.DataFrame({"z": last})).mark_rule(color=COLORS["positive_point"],
                                                                        strokeWidth=2).encode(x="z:Q"))
        layers.append(alt.Chart(pd.DataFrame({"z": [self.z]})).mark_rule(color="black", strokeDash=[4, 2]).encode(x="z:Q"))
        sub = f"{short_sha(self.inspection.weights)}" + (" (RANDOM WEIGHTS: content meaningless)" if self.inspection.random_weights else "")
        return alt.layer(*layers).properties(width=300, height=160, title={
            "text": "Masks along z", "subtitle": [sub, "rules: slices corrected in the last round; dashed: shown"],
            "anchor": "start"})

    def refresh(self) -> None:
        """Redraw the slice, the pending list, the charts and the status line."""
        insp = self.inspection
        png = self.query_png()
        self._query_png = png
        show_png(self.query, png)
        items = []
        for c in self.pending_corrections():
            pts = ", ".join(f"{'+' if lab else '-'}({x:g}, {y:g})" for x, y, lab in c.points)
            box = "" if c.box is None else " box (" + ", ".join(f"{v:g}" for v in c.box) + ")"
            items.append(f"<li>z={c.z}: {pts}{box}</li>")
        self.pending_view.value = ("<b>pending</b> (x, y stored):<ul style='margin:0'>" + "".join(items) + "</ul>"
                                   if items else "<i>no pending prompts</i>")
        if self.show_chart:
            self.areas.value = chart_png(self.area_chart())
            self.chart.value = chart_png(mass_chart(insp, highlight=insp.step_of_z(self.z), width=480, height=180))
        s = insp.steps[insp.step_of_z(self.z)]
        n_pending = len(self.pending_corrections())
        gt = self._dice_text()
        corrected = ", ".join(map(str, insp.options.get("corrected_z", []))) or "none"
        warn = " <b style='color:#b00'>RANDOM WEIGHTS</b>" if insp.random_weights else ""
        self.status.value = (
            f"<span class='fsm2-corr-status-text'>{len(self.rounds)} round(s) done; {n_pending} pending "
            f"correction(s){' and a box corner' if self._anchor is not None else ''}; last re-propagation {self.seconds:.1f} s; slice <b>z={self.z}</b> predicted "
            f"{s.fg_pixels} px{gt}; corrected z: {corrected}{warn}</span>")

    def dice(self) -> tuple[float, float] | None:
        """Dice against the ground truth (the one Dice): (the slice shown, the whole volume,
        pooled over the query slices); None without a ground truth."""
        if self.episode.labels is None:
            return None
        pos = [int(v) for v in self.episode.z].index(self.z)
        preds = {int(s.position): np.asarray(s.prediction, bool) for s in self.inspection.result.slices}
        gt = np.asarray(self.episode.labels) > 0
        vol = np.stack([preds[i] for i in range(len(gt))])
        return float(dice(preds[pos], gt[pos])), float(dice(vol, gt))

    def _dice_text(self) -> str:
        d = self.dice()
        if d is None:
            return ""
        f = lambda v: "n/a" if not np.isfinite(v) else f"{100 * v:.1f} %"  # noqa: E731
        return f"; Dice vs ground truth: slice <b class='fsm2-corr-dice'>{f(d[0])}</b>, volume {f(d[1])}"

    # ------------------------------------------------------------------ static rendering
    def static_html(self) -> str:
        """The current view as self-contained HTML (what an HTML export shows without widget state)."""
        return ("<div class='fsm2-static' style='font-family:sans-serif;font-size:13px'>"
                f"<div>{self.head.value}</div><div>{self.status.value}</div>"
                "<div style='display:flex;gap:8px;align-items:flex-start'>"
                f"{png_img_tag(getattr(self, '_query_png', b''), 'fsm2-static-query')}"
                f"{png_img_tag(self.areas.value if self.show_chart else b'', 'fsm2-static-areas')}</div>"
                f"{png_img_tag(self.chart.value if self.show_chart else b'', 'fsm2-static-chart')}</div>")

    def snapshot(self):
        """The current view as a static HTML display object: display it in a cell after the widget
        so that an HTML export shows it where the widget cannot be drawn."""
        from IPython.display import HTML

        return HTML(self.static_html())

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/html"] = self.static_html()
        return data

    def __repr__(self) -> str:
        return (f"CorrectionWidget({self.episode.case_id}/{self.episode.label_name}, {self.setting}-{self.order}, "
                f"{len(self.rounds)} rounds, {len(self.pending_corrections())} pending, {self.inspection.weights})")


class _ProgressCount:
    """An engine observer: the busy line, with a spinner and the count of slices tracked so far."""

    def __init__(self, view, what: str, total: int) -> None:
        self.view, self.what, self.total, self.done = view, what, int(total), 0

    def show(self) -> None:
        self.view.value = (f"<span class='fsm2-corr-busy'><span class='fsm2-spinner' style='display:inline-block;"
                           f"animation:fsm2spin 1s linear infinite'>&#9696;</span> {html.escape(self.what)}: "
                           f"<b class='fsm2-corr-count'>{self.done}/{self.total}</b> slices</span>"
                           "<style>@keyframes fsm2spin{to{transform:rotate(360deg)}}</style>")

    def before_forward(self, requests, layouts) -> None:
        pass

    def after_forward(self, requests, outputs) -> None:
        self.done += len(requests)
        self.show()


def _legend_html() -> str:
    items = (("prediction", COLORS["prediction"]), ("ground truth (contour)", COLORS["ground_truth"]),
             ("positive point", COLORS["positive_point"]), ("negative point", COLORS["negative_point"]),
             ("box", COLORS["box"]))
    return legend_html([(label, color, "fill") for label, color in items],
                       "(dots and thin boxes: rounds done; cross-hairs and thick boxes: pending)")


def correct_episode(engine: Engine, episode: Episode, setting: str, *, prompts: str | Path | None = None,
                    rounds: Sequence[Sequence[Correction]] | None = None, **kwargs) -> CorrectionWidget:
    """A :class:`CorrectionWidget` for an episode; ``prompts`` (a prompt file) or ``rounds`` replayed first.

    The prompt file's corrections for this episode (``case``/``label``) are used, checked against
    its slices; keyword arguments go to :class:`CorrectionWidget`.
    """
    if prompts is not None and rounds is not None:
        raise ValueError("give prompts (a file) or rounds, not both.")
    if prompts is not None:
        rounds = read_prompts(prompts).rounds_for(case=episode.case_id, label=episode.label,
                                                  label_name=episode.label_name, z_range=[int(z) for z in episode.z],
                                                  shape=tuple(np.shape(episode.images[0])))
        kwargs.setdefault("path", str(prompts))
    return CorrectionWidget(engine, episode, setting, rounds=rounds or (), **kwargs)


def show_corrections(inspection: Inspection, *, prompts: str | Path | None = None,
                     rounds: Sequence[Sequence[Correction]] | None = None, **kwargs) -> CorrectionWidget:
    """:func:`correct_episode` on the engine, episode, setting and order of an inspection
    (e.g. :func:`~fsm2kit.studies.run_inspection.inspect_run`'s); display it as the cell's last expression."""
    if inspection.engine is None or inspection.episode is None:
        raise ValueError("show_corrections needs an Inspection with its engine and episode (inspect_episode / inspect_run).")
    r = inspection.result
    kwargs.setdefault("order", r.order or "middle")
    kwargs.setdefault("layers", list(inspection.layers))
    return correct_episode(inspection.engine, inspection.episode, r.setting, prompts=prompts, rounds=rounds, **kwargs)
