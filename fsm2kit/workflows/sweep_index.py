"""The index of a sweep: one row per run (parameters, status, Dice summary, links), CSV and HTML."""

from __future__ import annotations

import html
import json
import os
import time
from pathlib import Path

import pandas as pd

from ..core.fileio import atomic_write
from .sweep_spec import DONE_MARKER, FAILED_MARKER, Sweep, value_text

__all__ = ['collect_index', 'write_index']

# ============================================================================ the index
_INDEX_FIRST = ["run", "status", "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error"]


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
    first = ["run", "status", *grid_keys, "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error"]
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


def _index_html(sweep: Sweep, index: pd.DataFrame) -> str:
    random = index["weights"].astype(str).str.contains("random weights").any()
    counts = index["status"].value_counts().to_dict()
    head = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>fsm2kit sweep {html.escape(sweep.name)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}"
        "th{background:#eee}.done{color:#1a7f37}.failed{color:#cf222e;font-weight:bold}"
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
    grid_keys = [k for k, _ in sweep.grid]
    cols = ["run", "status", *grid_keys, "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error", "links"]
    out = ["<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>"]
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
                text = ""
            elif isinstance(v, float):
                text = f"{v:.4f}" if c.startswith("dice") else f"{v:.1f}"
            else:
                text = str(v)
            cls = f" class='{html.escape(text)}'" if c == "status" else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    foot = ("<p>Dice columns: mean over the rows of each run's summary.csv (classes x settings x "
            "orders x models) of the pooled and the mean-per-volume Dice. Notebook HTML pages load "
            "MathJax/require.js from a CDN; tables and images show offline.</p></body></html>")
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


