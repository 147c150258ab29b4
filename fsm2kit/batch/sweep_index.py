"""The index of a sweep: one row per run (parameters, status, Dice per organ, links), CSV and HTML.

``index.csv`` has, besides the parameters and status, the Dice of each organ per run and metric
(``dice_<metric>_<ORGAN>``, with the dataset in the name when a sweep has several; the mean over
the run's settings, orders and models), read from each finished run's ``summary.csv``.
``index.html`` shows them in a table whose columns sort (click a header) and filter (the boxes
under the headers: text, or ``>0.8`` / ``<50`` for numbers) with a small inline script, and a
chart comparing the runs' Dice per organ, drawn by the same script from the rows shown: it
follows the filter and the sort (the runs' bars in the table's order, in the fsm2kit palette).
Each run shows one thumbnail (its first PNG figure, large enough to read; the others are
links), and weights as a short sha (the full one in the cell's tooltip and in ``index.csv``).
The page needs no internet.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

import pandas as pd

from ..records.fileio import atomic_write
from ..tables.dice_table import short_sha
from ..viz.style import CATEGORY_COLORS
from .sweep_runs import read_run_summary
from .sweep_spec import DONE_MARKER, FAILED_MARKER, Sweep, value_text
from ..tables.paper import ORGAN_ORDER

__all__ = ['collect_index', 'organ_dice', 'write_index']

_METRICS = ("mean_per_volume", "pooled")
_METRIC_TEXT = {"mean_per_volume": "mean per volume", "pooled": "pooled"}


def organ_dice(folder: str | os.PathLike) -> dict[str, float]:
    """Dice per organ and metric of one run folder's ``summary.csv``: ``{"dice_<metric>_<ORGAN>": value}``.

    Each value is the mean over the run's rows of that organ (settings x orders x models); the
    dataset joins the name (``dice_<metric>_<DATASET>_<ORGAN>``) when the run has several.
    Empty when there is no readable ``summary.csv``.
    """
    s = read_run_summary(folder)
    if s is None or not {"metric", "dice", "label_name"} <= set(s.columns):
        return {}
    s["label_name"] = s["label_name"].astype(str).str.upper()
    s["dice"] = pd.to_numeric(s["dice"], errors="coerce")
    several = "dataset" in s.columns and s["dataset"].nunique() > 1
    keys = ["dataset", "label_name"] if several else ["label_name"]
    out = {}
    for m in _METRICS:
        g = s[s["metric"] == m].groupby(keys, sort=False)["dice"].mean()
        for k, v in g.items():
            k = k if isinstance(k, tuple) else (k,)
            out[f"dice_{m}_{'_'.join(str(x) for x in k)}"] = round(float(v), 6)
    return out


def _organ_rank(col: str) -> tuple:
    metric = next(m for m in _METRICS if col.startswith(f"dice_{m}_"))
    organ = col[len(f"dice_{metric}_"):].split("_")[-1]
    return (_METRICS.index(metric), ORGAN_ORDER.index(organ) if organ in ORGAN_ORDER else len(ORGAN_ORDER), col)


def _organ_columns(index: pd.DataFrame) -> list[str]:
    cols = [c for c in index.columns if any(c.startswith(f"dice_{m}_") for m in _METRICS)]
    return sorted(cols, key=_organ_rank)

# ============================================================================ the index


def collect_index(sweep: Sweep, reports: str | os.PathLike = "reports") -> pd.DataFrame:
    """One row per run of the sweep, read from the run folders on disk.

    ``status`` is ``done`` (``<run>/done.json``), ``failed``
    (``.fsm2kit-work/failed/<run>/failed.json``) or
    ``pending``. Link columns hold paths relative to ``reports/<sweep>/``.
    """
    rows = []
    grid_keys = [k for k, _ in sweep.grid]
    for spec in sweep.runs(reports):
        row = {"run": spec.name, "status": "pending", "seconds": None, "error": ""}
        row.update({k: value_text(spec.parameters.get(k)) for k in grid_keys})
        rec = None
        if (spec.folder / DONE_MARKER).is_file():
            rec = json.loads((spec.folder / DONE_MARKER).read_text())
            base = spec.name
        elif (spec.failed_folder / FAILED_MARKER).is_file():
            rec = json.loads((spec.failed_folder / FAILED_MARKER).read_text())
            base = spec.failed_folder.relative_to(spec.sweep_dir).as_posix()
        if rec is not None:
            row["status"] = rec["status"]
            row["seconds"] = rec.get("seconds")
            row["finished"] = rec.get("finished")
            row["error"] = rec.get("error", "")
            row.update(rec.get("summary") or {})
            row.update(organ_dice(spec.folder if rec["status"] == "done" else spec.failed_folder))
            row["notebook"] = f"{base}/{rec['executed_notebook']}"
            row["html"] = f"{base}/{rec['html']}" if rec.get("html") else ""
            row["folder"] = f"{base}/"
            figs = [f for f in rec.get("files", []) if f.lower().endswith((".png", ".svg"))]
            row["figures"] = " ".join(f"{base}/{f}" for f in figs)
            csvs = [f for f in rec.get("files", []) if f.lower().endswith(".csv")]
            row["tables"] = " ".join(f"{base}/{f}" for f in csvs)
        row.update({f"param.{k}": value_text(v) for k, v in spec.parameters.items() if k not in grid_keys})
        if sweep.plugins or (rec is not None and rec.get("plugins")):
            row["plugins"] = " ".join(rec["plugins"] if rec is not None and "plugins" in rec else spec.plugins)
        rows.append(row)
    df = pd.DataFrame(rows)
    for c in ("dice_pooled", "dice_mean_per_volume", "weights", "finished", "notebook", "html", "folder",
              "figures", "tables"):
        if c not in df.columns:
            df[c] = None
    first = ["run", "status", *grid_keys, "seconds", "dice_pooled", "dice_mean_per_volume",
             *_organ_columns(df), "weights", "error"]
    rest = [c for c in df.columns if c not in first]
    return df[first + rest]


def _text(v) -> str:
    """A table cell as text: "" for None/NaN."""
    if v is None or (isinstance(v, float) and pd.isna(v)):
        return ""
    return str(v)


def _link(href, text: str) -> str:
    href = _text(href)
    return f'<a href="{html.escape(href, quote=True)}">{html.escape(text)}</a>' if href else ""


_SCRIPT = """
(function () {
  var table = document.getElementById('runs');
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  var inputs = table.tHead.rows[1].querySelectorAll('input');
  function value(row, i) {
    var c = row.cells[i];
    return c.hasAttribute('data-v') ? c.getAttribute('data-v') : c.textContent.trim();
  }
  function num(v) { return v === '' ? NaN : Number(v); }
  var dir = {};
  Array.prototype.forEach.call(heads, function (th, i) {
    th.style.cursor = 'pointer';
    th.title = 'click to sort';
    th.addEventListener('click', function () {
      dir[i] = dir[i] === 1 ? -1 : 1;
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = value(a, i), y = value(b, i), nx = num(x), ny = num(y);
        if (!isNaN(nx) && !isNaN(ny)) { return (nx - ny) * dir[i]; }
        if (isNaN(nx) !== isNaN(ny)) { return isNaN(nx) ? 1 : -1; }
        return x.localeCompare(y) * dir[i];
      });
      rows.forEach(function (r) { body.appendChild(r); });
      Array.prototype.forEach.call(heads, function (h) { h.classList.remove('asc', 'desc'); });
      th.classList.add(dir[i] === 1 ? 'asc' : 'desc');
    });
  });
  function keep(row) {
    for (var i = 0; i < inputs.length; i++) {
      var f = inputs[i].value.trim();
      if (!f) { continue; }
      var v = value(row, Number(inputs[i].getAttribute('data-col')));
      var m = f.match(/^([<>]=?)\\s*(-?[0-9.]+)$/);
      if (m) {
        var n = num(v), t = Number(m[2]);
        if (isNaN(n)) { return false; }
        if ((m[1] === '>' && !(n > t)) || (m[1] === '>=' && !(n >= t)) ||
            (m[1] === '<' && !(n < t)) || (m[1] === '<=' && !(n <= t))) { return false; }
      } else if (v.toLowerCase().indexOf(f.toLowerCase()) < 0 &&
                 row.cells[Number(inputs[i].getAttribute('data-col'))].textContent.toLowerCase()
                   .indexOf(f.toLowerCase()) < 0) { return false; }
    }
    return true;
  }
  Array.prototype.forEach.call(inputs, function (inp) {
    inp.addEventListener('input', function () {
      Array.prototype.forEach.call(body.rows, function (r) { r.style.display = keep(r) ? '' : 'none'; });
      draw();
    });
  });
  Array.prototype.forEach.call(heads, function (th) { th.addEventListener('click', draw); });
  // the chart: the Dice per organ of the runs shown, in the table's order
  var holder = document.getElementById('runs-chart');
  var data = holder ? JSON.parse(document.getElementById('runs-chart-data').textContent) : null;
  function esc(s) { return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;'); }
  function draw() {
    if (!holder) { return; }
    var runs = [];
    Array.prototype.forEach.call(body.rows, function (r) {
      var name = r.getAttribute('data-run');
      if (r.style.display !== 'none' && data.values[name]) { runs.push(name); }
    });
    var organs = data.organs, colors = data.colors;
    var bw = 12, gap = 14, left = 44, top = 28, h = 150;
    var groupW = Math.max(runs.length, 1) * bw + gap;
    var w = left + organs.length * groupW + 10, legendH = 16 * runs.length;
    var s = ["<svg xmlns='http://www.w3.org/2000/svg' width='" + Math.max(w, 320) + "' height='" +
             (top + h + 40 + legendH) + "' font-family='DejaVu Sans, sans-serif' font-size='11'>"];
    s.push("<text x='0' y='14' font-size='13'>" + esc(data.title) + " (" + runs.length + " of " +
           Object.keys(data.values).length + " runs shown)</text>");
    [0, 25, 50, 75, 100].forEach(function (t) {
      var y = top + h - t / 100 * h;
      s.push("<line x1='" + left + "' x2='" + (w - 6) + "' y1='" + y + "' y2='" + y + "' stroke='#ddd'/>");
      s.push("<text x='" + (left - 4) + "' y='" + (y + 4) + "' text-anchor='end'>" + t + "</text>");
    });
    s.push("<text transform='translate(10," + (top + h / 2) + ") rotate(-90)' text-anchor='middle'>" +
           esc(data.ytitle) + "</text>");
    organs.forEach(function (o, j) {
      var x0 = left + j * groupW + gap / 2;
      runs.forEach(function (r, i) {
        var v = data.values[r][o];
        if (v === null || v === undefined) { return; }
        var bh = Math.max(0, Math.min(100, v)) / 100 * h;
        s.push("<rect class='bar' x='" + (x0 + i * bw) + "' y='" + (top + h - bh) + "' width='" + (bw - 1) +
               "' height='" + bh + "' fill='" + colors[r] + "'><title>" + esc(r) + ", " + esc(o) + ": " +
               v.toFixed(2) + " %</title></rect>");
      });
      s.push("<text x='" + (x0 + runs.length * bw / 2) + "' y='" + (top + h + 14) + "' text-anchor='middle'>" +
             esc(o) + "</text>");
    });
    runs.forEach(function (r, i) {
      var y = top + h + 32 + 16 * i;
      s.push("<rect x='" + left + "' y='" + (y - 9) + "' width='10' height='10' fill='" + colors[r] + "'/>");
      s.push("<text x='" + (left + 14) + "' y='" + y + "'>" + esc(r) + "</text>");
    });
    s.push("</svg>");
    holder.innerHTML = s.join('');
  }
  draw();
})();
"""


def _header(col: str, grid_keys: list[str]) -> str:
    fixed = {"run": "Run", "status": "Status", "seconds": "Seconds", "weights": "Weights", "error": "Error",
             "links": "Links", "dice_pooled": "Dice % pooled (all organs)",
             "dice_mean_per_volume": "Dice % mean per volume (all organs)"}
    if col in fixed:
        return fixed[col]
    for m in _METRICS:
        if col.startswith(f"dice_{m}_"):
            return f"{col[len(f'dice_{m}_'):].replace('_', ' ')} Dice % ({_METRIC_TEXT[m]})"
    return col


def _runs_chart_data(index: pd.DataFrame) -> dict | None:
    """What the page's script draws: Dice (%) per run and organ (mean per volume, else pooled),
    organs in the paper's order, one colour per run (the fsm2kit palette); None without data."""
    cols = _organ_columns(index)
    for m in _METRICS:
        mine = [c for c in cols if c.startswith(f"dice_{m}_")]
        if mine and index[mine].notna().any().any():
            break
    else:
        return None
    organs = [c[len(f"dice_{m}_"):].replace("_", " ") for c in mine]
    values = {}
    for _, r in index.iterrows():
        vals = {o: (None if pd.isna(r[c]) else round(100 * float(r[c]), 4)) for o, c in zip(organs, mine)}
        if any(v is not None for v in vals.values()):
            values[str(r["run"])] = vals
    runs = list(values)
    colors = {run: CATEGORY_COLORS[k % len(CATEGORY_COLORS)] for k, run in enumerate(runs)}
    return {"organs": organs, "values": values, "colors": colors, "title": "Dice per organ, by run",
            "ytitle": f"Dice % ({_METRIC_TEXT[m]})"}


def _index_html(sweep: Sweep, index: pd.DataFrame) -> str:
    random = index["weights"].astype(str).str.contains("random weights").any()
    counts = index["status"].value_counts().to_dict()
    head = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>fsm2kit sweep {html.escape(sweep.name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
        "td.num{text-align:right}th{background:#eee}th.asc:after{content:' \\25B2'}th.desc:after{content:' \\25BC'}"
        "thead input{width:100%;box-sizing:border-box;font-size:11px}"
        ".done{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}"
        ".pending{color:#777}.banner{background:#fff3cd;border:1px solid #d39e00;padding:8px;margin:8px 0}"
        "img.thumb{max-height:220px;max-width:360px;margin-top:4px}</style></head><body>",
        f"<h1>Sweep {html.escape(sweep.name)}</h1>",
        f"<p>Notebook <code>{html.escape(sweep.notebook.name)}</code>; "
        + ", ".join(f"{v} {html.escape(str(k))}" for k, v in sorted(counts.items()))
        + f"; updated {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>",
    ]
    if sweep.description:
        head.append(f"<p>{html.escape(sweep.description)}</p>")
    if random:
        head.append("<div class='banner'><b>RANDOM WEIGHTS</b>: runs marked 'random weights' are smoke "
                    "runs; their Dice numbers say nothing about SAM2 or FS-MedSAM2.</div>")
    fixed = ", ".join(f"{k}={value_text(v)}" for k, v in sweep.parameters)
    if fixed:
        head.append(f"<p>Fixed parameters: <code>{html.escape(fixed)}</code></p>")
    if sweep.plugins:
        head.append(f"<p>Plugins: <code>{html.escape(' '.join(sweep.plugins))}</code></p>")
    chart = _runs_chart_data(index)
    if chart:  # drawn by the page's script from the rows shown (follows filter and sort)
        head.append("<div class='chart' id='runs-chart'></div><script type='application/json' id='runs-chart-data'>"
                    + json.dumps(chart).replace("</", "<\\/") + "</script>")
    grid_keys = [k for k, _ in sweep.grid]
    cols = ["run", "status", *grid_keys, "seconds", *_organ_columns(index), "dice_mean_per_volume", "dice_pooled",
            "weights", "error", "links"]
    out = ["<p>Click a header to sort; type in the boxes to filter (text, or <code>&gt;80</code> / "
           "<code>&lt;50</code> for numbers).</p><table id='runs'><thead><tr>"
           + "".join(f"<th>{html.escape(_header(c, grid_keys))}</th>" for c in cols) + "</tr><tr>"
           + "".join(f"<th><input type='search' data-col='{i}' aria-label='filter "
                     f"{html.escape(_header(c, grid_keys), quote=True)}'></th>" for i, c in enumerate(cols))
           + "</tr></thead><tbody>"]
    for _, r in index.iterrows():
        cells = []
        for c in cols:
            if c == "links":
                links = [_link(r.get("html"), "html"), _link(r.get("notebook"), "ipynb"),
                         _link(r.get("folder"), "folder")]
                links += [_link(t, Path(t).name) for t in _text(r.get("tables")).split()]
                pngs = [f for f in _text(r.get("figures")).split() if f.endswith(".png")]
                imgs = [f"<a href='{html.escape(f, quote=True)}'><img class='thumb' src='{html.escape(f, quote=True)}' "
                        f"alt='{html.escape(Path(f).name, quote=True)}'></a>" for f in pngs[:1]]  # one, legible
                links += [_link(f, Path(f).name) for f in pngs[1:]]
                cells.append("<td>" + " ".join(x for x in links if x) + "<br>" + "".join(imgs) + "</td>")
                continue
            if c == "weights" and _text(r.get(c)):
                full = _text(r.get(c))
                cells.append(f"<td title='{html.escape(full, quote=True)}'>{html.escape(short_sha(full))}</td>")
                continue
            v = r.get(c)
            if v is None or (isinstance(v, float) and pd.isna(v)):
                cells.append("<td data-v=''></td>")
                continue
            if isinstance(v, float) and c.startswith("dice"):
                cells.append(f"<td class='num' data-v='{100 * v:.6g}'>{100 * v:.2f}</td>")
                continue
            text = f"{v:.1f}" if isinstance(v, float) else str(v)
            cls = f" class='{html.escape(text)}'" if c == "status" else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        out.append(f"<tr data-run='{html.escape(str(r['run']), quote=True)}'>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    foot = ("<p>Dice in %. Per-organ columns: the mean over each run's summary.csv rows of that organ "
            "(settings x orders x models); 'all organs': the mean over all its rows. Notebook HTML pages load "
            "MathJax/require.js from a CDN; tables and images show offline.</p>"
            f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(head + out + [foot])


def write_index(sweep: Sweep, reports: str | os.PathLike = "reports") -> pd.DataFrame:
    """Rebuild ``index.csv`` and ``index.html`` of a sweep from disk (atomic writes)."""
    index = collect_index(sweep, reports)
    d = Path(reports).resolve() / sweep.name
    d.mkdir(parents=True, exist_ok=True)
    atomic_write(d / "index.csv", lambda tmp: index.to_csv(tmp, index=False))
    page = _index_html(sweep, index)
    atomic_write(d / "index.html", lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return index


