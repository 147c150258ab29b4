"""The index of a sweep: one row per run (parameters, status, Dice per organ, links), CSV and HTML.

``index.csv`` has, besides the parameters and status, the Dice of each organ per run and metric
(``dice_<metric>_<ORGAN>``, with the dataset in the name when a sweep has several; the mean over
the run's settings, orders and models), read from each finished run's ``summary.csv``.
``index.html`` shows them in a table whose columns sort (click a header) and filter (the boxes
under the headers: text, or ``>0.8`` / ``<50`` for numbers) with a small inline script, and a
chart comparing the runs' Dice per organ (inline SVG). The page needs no internet.
"""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

import pandas as pd

from ..records.fileio import atomic_write
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
    });
  });
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


def _runs_chart_svg(index: pd.DataFrame) -> str:
    """The runs' Dice per organ (mean per volume, else pooled) as inline SVG; "" without data or altair."""
    cols = _organ_columns(index)
    for m in _METRICS:
        mine = [c for c in cols if c.startswith(f"dice_{m}_")]
        if mine:
            break
    else:
        return ""
    long = index[["run", *mine]].melt(id_vars="run", var_name="organ", value_name="dice").dropna()
    if long.empty:
        return ""
    long["organ"] = long["organ"].str[len(f"dice_{m}_"):].str.replace("_", " ")
    if "weights" in index.columns:
        long = long.merge(index[["run", "weights"]], on="run", how="left")
    try:
        import vl_convert as vlc

        from ..viz.dice_charts import runs_dice_chart

        chart = runs_dice_chart(long, metric_title=_METRIC_TEXT[m] + " Dice", title="Dice per organ, by run")
        return vlc.vegalite_to_svg(chart.to_json())
    except ImportError:  # charts need the notebooks extra (altair, vl-convert)
        return ""


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
        "img{max-height:90px;margin-right:4px}</style></head><body>",
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
    svg = _runs_chart_svg(index)
    if svg:
        head.append(f"<div class='chart'>{svg}</div>")
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
                imgs = [f"<a href='{html.escape(f, quote=True)}'><img src='{html.escape(f, quote=True)}' "
                        f"alt='{html.escape(Path(f).name, quote=True)}'></a>"
                        for f in _text(r.get("figures")).split() if f.endswith(".png")]
                cells.append("<td>" + " ".join(x for x in links if x) + "<br>" + "".join(imgs) + "</td>")
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
        out.append("<tr>" + "".join(cells) + "</tr>")
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


