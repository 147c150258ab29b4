"""The widgets' image component and legend: one anywidget PNG image that reports clicks (and drags).

:class:`ClickImage` (the memory inspector's query slice) reports clicks; :class:`PromptImage`
(the correction widget's) also reports drags, a press and release within 5 px being a click.
Both are the one JavaScript component (:func:`image_esm`), shipped with anywidget's JupyterLab
extension: nothing is fetched from the internet. Positions are relative ``(y, x)`` in [0, 1) of
the displayed image; :func:`fsm2kit.inspector.panels.clicked_pixel` maps them to stored pixels.
:func:`legend_html` is the colour legend above both widgets.
"""

from __future__ import annotations

import base64
import html

import traitlets

__all__ = ["ClickImage", "PromptImage", "image_esm", "slice_image", "show_png", "legend_html"]

_ESM = """
function render({ model, el }) {
  const img = document.createElement("img");
  img.style.cursor = "crosshair";
  img.style.display = "block";
  img.className = DRAGS ? "fsm2-prompt-image" : "fsm2-click-image";
  if (DRAGS) img.draggable = false;
  const update = () => {
    img.src = "data:image/png;base64," + model.get("png_b64");
    img.style.width = model.get("width") + "px";
  };
  update();
  model.on("change:png_b64", update);
  model.on("change:width", update);
  if (!DRAGS) {
    img.addEventListener("click", (ev) => {
      const r = img.getBoundingClientRect();
      const y = (ev.clientY - r.top) / r.height, x = (ev.clientX - r.left) / r.width;
      model.set("click", [y, x, Date.now()]);
      model.save_changes();
    });
  } else {
    let start = null;
    const rel = (ev) => {
      const r = img.getBoundingClientRect();
      const c = (v) => Math.min(Math.max(v, 0), 0.999999);
      return [c((ev.clientY - r.top) / r.height), c((ev.clientX - r.left) / r.width), ev.clientX, ev.clientY];
    };
    img.addEventListener("mousedown", (ev) => { ev.preventDefault(); start = rel(ev); });
    window.addEventListener("mouseup", (ev) => {
      if (!start) return;
      const end = rel(ev), s = start;
      start = null;
      if (Math.hypot(end[2] - s[2], end[3] - s[3]) < 5) {
        model.set("click", [end[0], end[1], Date.now()]);
      } else {
        model.set("drag", [s[0], s[1], end[0], end[1], Date.now()]);
      }
      model.save_changes();
    });
  }
  el.appendChild(img);
}
export default { render };
"""


def image_esm(*, drags: bool) -> str:
    """The component's JavaScript module: clicks only, or clicks and drags."""
    return f"const DRAGS = {'true' if drags else 'false'};" + _ESM


try:  # anywidget ships its JupyterLab extension, no CDN needed
    import anywidget

    class ClickImage(anywidget.AnyWidget):
        """A PNG image that reports clicks as relative (y, x) in [0, 1) (trait ``click``: ``[y, x, t]``)."""

        _esm = image_esm(drags=False)
        png_b64 = traitlets.Unicode("").tag(sync=True)
        width = traitlets.Int(256).tag(sync=True)
        click = traitlets.List([]).tag(sync=True)

        def set_png(self, data: bytes) -> None:
            self.png_b64 = base64.b64encode(data).decode("ascii")

    class PromptImage(ClickImage):
        """A :class:`ClickImage` that also reports drags (``drag``: relative ``[y0, x0, y1, x1, t]`` in
        [0, 1) of the displayed image); a press and release within 5 px is a click."""

        _esm = image_esm(drags=True)
        drag = traitlets.List([]).tag(sync=True)

except ImportError:  # pragma: no cover - anywidget is part of the notebooks extra
    ClickImage = None  # type: ignore[assignment,misc]
    PromptImage = None  # type: ignore[assignment,misc]


def slice_image(size: int, *, on_click=None, on_drag=None):
    """A widget's slice image, ``size`` px wide: a :class:`PromptImage` when ``on_drag`` is given, else a
    :class:`ClickImage`, with the callbacks observing ``click`` and ``drag``; without anywidget, a
    plain (not clickable) ipywidgets image."""
    cls = PromptImage if on_drag is not None else ClickImage
    if cls is None:  # pragma: no cover - anywidget is part of the notebooks extra
        import ipywidgets as W

        return W.Image(format="png", layout=W.Layout(width=f"{size}px"))
    image = cls(width=size)
    if on_click is not None:
        image.observe(on_click, names="click")
    if on_drag is not None:
        image.observe(on_drag, names="drag")
    return image


def show_png(image, data: bytes) -> None:
    """Show PNG bytes in a :func:`slice_image`."""
    if ClickImage is not None and isinstance(image, ClickImage):
        image.set_png(data)
    else:  # pragma: no cover
        image.value = data


def legend_html(items, note: str = "") -> str:
    """A one-line colour legend: (label, colour, ``"fill"`` or ``"line"``) items, then ``note``."""
    spans = []
    for label, color, kind in items:
        box = (f"background:{color};width:12px;height:12px" if kind == "fill"
               else f"border-top:3px solid {color};width:14px;height:0")
        spans.append(f"<span style='display:inline-block;{box};margin:0 4px 0 10px;vertical-align:middle'></span>"
                     f"{html.escape(label)}")
    tail = f" <span style='margin-left:10px'>{note}</span>" if note else ""
    return "<div class='fsm2-legend'>" + "".join(spans) + tail + "</div>"
