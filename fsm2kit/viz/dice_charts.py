"""Dice charts (altair) from tidy tables, in the paper's order, with human titles and error bars.

* :func:`dice_bars`: Dice (%) per organ, one bar per run (setting-order), ± std over volumes.
* :func:`slice_dice_curves`: per-slice Dice along z, one line per case and order.
* :func:`relative_position_dice` and :func:`relative_position_chart`: per-slice Dice by relative
  position in the organ (0 = its first slice, 1 = its last), mean and 95 % band across volumes.
* :func:`runs_dice_chart`: Dice per organ of several runs side by side (the sweep index).
* :func:`uncertainty_error_chart`: per-slice error against an ensemble's disagreement, with correlations.
* :func:`promotion_chart`: what a refinement pass changed per slice, promoted slices marked.

Settings, orders, models and organs sort as in the paper (:func:`~fsm2kit.tables.paper.paper_order`)
through explicit sort orders, never alphabetically; no raw column name is shown. Charts made
from random weights say so in their subtitles. ``title="auto"`` (the default) titles a chart,
``title=""`` or None leaves the title out (the random-weights subtitle stays). Save them with :func:`fsm2kit.viz.export.save_figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .figures import weights_label
from ..tables.paper import paper_order

__all__ = ["AXIS_TITLES", "sort_order", "organ_text", "dataset_text", "dice_bars", "slice_dice_curves", "relative_position_dice", "relative_position_chart",
           "runs_dice_chart", "uncertainty_error_chart", "promotion_chart"]

#: Human titles of the columns charts encode.
AXIS_TITLES = {
    "run": "Setting", "setting": "Setting", "order": "Order", "model": "Model", "dataset": "Dataset",
    "label_name": "Organ", "organ": "Organ", "case_id": "Case", "z": "Slice z", "image_size": "Image size (px)",
    "experiment": "Experiment",
}
_METRIC_TITLES = {"mean_per_volume": "mean of per-volume Dice", "pooled": "pooled Dice"}


def _alt():
    import altair as alt

    return alt


#: Organ and dataset names as the tables print them (``LIVER`` -> ``Liver``, ``CHAOST2`` -> ``CHAOS-MRI``).
_ORGAN_NAMES = {"LK": "LK", "RK": "RK", "SPLEEN": "Spleen", "LIVER": "Liver", "MEAN": "Mean"}


def organ_text(name) -> str:
    """An organ as the tables print it: ``LIVER`` -> ``Liver``, ``LK`` stays ``LK``."""
    s = str(name)
    return _ORGAN_NAMES.get(s.upper(), s.replace("_", " ").capitalize() if s.isupper() else s)


def dataset_text(name) -> str:
    """A dataset as the tables print it: ``CHAOST2`` -> ``CHAOS-MRI``, ``SABS`` -> ``Synapse-CT``."""
    from ..tables.paper import PAPER_DATASETS

    return {v: k for k, v in PAPER_DATASETS.items()}.get(str(name), str(name))


_SHOWN = {"label_name": organ_text, "organ": organ_text, "dataset": dataset_text}


def _shown(d: pd.DataFrame) -> pd.DataFrame:
    """Organ and dataset columns as the tables print them (the paper's sort orders follow)."""
    d = d.copy()
    for c, f in _SHOWN.items():
        if c in d.columns:
            d[c] = [f(v) for v in d[c]]
    return d


def _title(col: str) -> str:
    return AXIS_TITLES.get(col, col.replace("_", " ").capitalize())


def _orders(df: pd.DataFrame) -> pd.Series:
    """``order`` with the 1Q settings' "n/a" kept (``pd.read_csv`` turns it into NaN)."""
    return df["order"].astype(object).where(df["order"].notna(), "n/a").astype(str)


def _run_label(df: pd.DataFrame) -> pd.Series:
    order = _orders(df)
    return df["setting"].astype(str) + np.where(order.isin(["n/a", "nan", "None"]), "", "-" + order)


def _run_order() -> list[str]:
    po = paper_order()
    return [s if o == "n/a" else f"{s}-{o}" for s in po["setting"] for o in po["order"]
            if (o == "n/a") == s.endswith("1Q")]


def sort_order(column: str, values) -> list[str]:
    """``values`` of ``column`` in the paper's order (unknown values last, sorted); organ and
    dataset names as stored or as the tables print them (``Liver``, ``CHAOS-MRI``)."""
    po = paper_order()
    vocab = _run_order() if column == "run" else po.get(column, [])
    if column in _SHOWN:
        vocab = [x for v in vocab for x in dict.fromkeys((v, _SHOWN[column](v)))]
    present = list(dict.fromkeys(str(v) for v in values))
    return [v for v in vocab if v in present] + sorted(v for v in present if v not in vocab)


def _subtitle(df: pd.DataFrame) -> str | None:
    return (weights_label(df["weights"]) or None) if "weights" in df.columns else None


def _titled(chart, text: str | None, subtitle: str | None):
    """The chart with its title (``""``/None: none; a random-weights subtitle is always kept)."""
    alt = _alt()
    if not text and not subtitle:
        return chart
    return chart.properties(title=alt.TitleParams(text or "", subtitle=subtitle) if subtitle else alt.TitleParams(text))


def _auto(title: str | None, default: str) -> str | None:
    return default if title == "auto" else title


def _facets(alt, d: pd.DataFrame, row: str | None, column: str | None) -> dict:
    out = {}
    if row and row in d.columns:
        out["row"] = alt.Row(f"{row}:N", title=_title(row), sort=sort_order(row, d[row]))
    if column and column in d.columns:
        out["column"] = alt.Column(f"{column}:N", title=_title(column), sort=sort_order(column, d[column]))
    return out


def dice_bars(summary: pd.DataFrame, *, metric: str = "mean_per_volume", color: str = "run",
              column: str | None = "model", title: str | None = "auto", width: int = 260, height: int = 200):
    """Grouped Dice bars (%): organs on x, one bar per run (setting-order), ± std over volumes.

    Parameters
    ----------
    summary : DataFrame
        :meth:`ExperimentResult.summary` (``label_name``, ``setting``, ``order``, ``metric``,
        ``dice``; ``std_per_volume``, ``n_volumes``, ``model``, ``weights`` used when present).
    metric : {"mean_per_volume", "pooled"}
    color : str
        Column for the bars within a group (``"run"`` = setting-order, made here).
    column : str or None
        Facet column (None: no facets).

    Returns
    -------
    altair.Chart
        Bars plus error bars (mean ± std over volumes; none for pooled Dice), in the paper's order.
    """
    alt = _alt()
    need = {"label_name", "setting", "order", "metric", "dice"}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"dice_bars needs a summary table with {sorted(need)}; missing {missing}.")
    d = summary[summary["metric"] == metric].copy()
    if d.empty:
        raise ValueError(f"No {metric!r} rows in the summary (metrics: {sorted(set(summary['metric']))}).")
    d["order"] = _orders(d)
    d["run"] = _run_label(d)
    d["label_name"] = d["label_name"].astype(str).str.upper()
    d["dice_pct"] = 100 * d["dice"].astype(float)
    std = d["std_per_volume"].astype(float) if "std_per_volume" in d.columns else pd.Series(np.nan, index=d.index)
    d["lo"] = (d["dice_pct"] - 100 * std).clip(lower=0)
    d["hi"] = (d["dice_pct"] + 100 * std).clip(upper=100)
    keep = ["label_name", "run", "dice_pct", "lo", "hi", "setting", "order"] + [
        c for c in (column, color, "dataset", "n_volumes") if c and c in d.columns]
    d = _shown(d[list(dict.fromkeys(keep))])
    x = alt.X("label_name:N", title="Organ", sort=sort_order("label_name", d["label_name"]),
              axis=alt.Axis(labelAngle=0))
    off = alt.XOffset(f"{color}:N", sort=sort_order(color, d[color]))
    col = alt.Color(f"{color}:N", title=_title(color), sort=sort_order(color, d[color]))
    tips = [alt.Tooltip(c, title=_title(c) if c not in ("dice_pct", "lo", "hi", "n_volumes") else
                        {"dice_pct": "Dice (%)", "lo": "− std", "hi": "+ std", "n_volumes": "Volumes (n)"}[c])
            for c in d.columns]
    bars = alt.Chart().mark_bar().encode(
        x=x, xOffset=off, color=col, tooltip=tips,
        y=alt.Y("dice_pct:Q", title=f"Dice (%), {_METRIC_TITLES.get(metric, metric)}",
                scale=alt.Scale(domain=[0, 100])))
    errs = alt.Chart().mark_rule(color="black").encode(x=x, xOffset=off, y="lo:Q", y2="hi:Q")
    chart = alt.layer(bars, errs, data=d).properties(width=width, height=height)
    facets = _facets(alt, d, None, column)
    if facets:
        chart = chart.facet(**facets)
    err = "; error bars: ± std over volumes" if metric == "mean_per_volume" else ""
    return _titled(chart, _auto(title, f"Dice per organ ({_METRIC_TITLES.get(metric, metric)}{err})"), _subtitle(summary))


def slice_dice_curves(slices: pd.DataFrame, *, color: str = "order", row: str | None = "setting",
                      column: str | None = "model", title: str | None = "auto", width: int = 300,
                      height: int = 150):
    """Per-slice Dice (%) along z, one line per case, class and ``color`` value, faceted.

    Parameters
    ----------
    slices : DataFrame
        ``ExperimentResult.slices`` (``z``, ``dice``, ``case_id``, ``label_name`` and the
        ``color``/``row``/``column`` columns).
    color : str
        Line colour (default ``order``: top vs middle).
    row, column : str or None
        Facets (default setting x model).
    """
    alt = _alt()
    need = {"z", "dice", "case_id", "label_name", color} | {c for c in (row, column) if c}
    missing = sorted(need - set(slices.columns))
    if missing:
        raise ValueError(f"slice_dice_curves needs per-slice columns {sorted(need)}; missing {missing}.")
    cols = list(dict.fromkeys(["case_id", "label_name", "z", "dice", color] + [c for c in (row, column) if c]))
    d = slices[cols].copy()
    if "order" in d.columns:
        d["order"] = _orders(d)
    d["case_id"] = d["case_id"].astype(str)
    d["dice"] = 100 * d["dice"].astype(float)
    d["series"] = d["case_id"] + "/" + d["label_name"].astype(str) + "/" + d[color].astype(str)
    d = _shown(d)
    base = alt.Chart(d).mark_line(point=len(d) <= 400).encode(
        x=alt.X("z:Q", title="Slice z", axis=alt.Axis(format="d", tickMinStep=1)),  # slices: integer ticks
        y=alt.Y("dice:Q", title="Slice Dice (%)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color(f"{color}:N", title=_title(color), sort=sort_order(color, d[color])),
        detail="series:N",
        tooltip=[alt.Tooltip(c, title="Slice Dice (%)" if c == "dice" else _title(c)) for c in cols],
    ).properties(width=width, height=height)
    facets = _facets(alt, d, row, column)
    chart = base.facet(**facets) if facets else base
    return _titled(chart, _auto(title, "Per-slice Dice along z"), _subtitle(slices))


def relative_position_dice(slices: pd.DataFrame, *, by: Sequence[str] = ("setting", "order", "model"),
                           bins: int = 10) -> pd.DataFrame:
    """Per-slice Dice by relative position in the organ: mean and 95 % band across volumes.

    Each volume's (case x class x ``by``) scored slices where the ground truth is present are
    placed at ``(z - z_first) / (z_last - z_first)`` (0 = the organ's first slice, 1 = its last;
    0.5 for a one-slice organ) and averaged per volume within ``bins`` equal bins; then, per bin,
    the mean over volumes and its 95 % confidence interval (t distribution over the volumes;
    no band for a single volume).

    Returns
    -------
    DataFrame
        Columns ``[*by, "position", "dice_mean", "dice_lo", "dice_hi", "n_volumes"]``; ``position``
        is the bin centre in [0, 1]; Dice in %.
    """
    from scipy import stats

    by = [c for c in by if c in slices.columns]
    need = {"z", "dice", "case_id", "label_name", "gt_px"}
    missing = sorted(need - set(slices.columns))
    if missing:
        raise ValueError(f"relative_position_dice needs per-slice columns {sorted(need)}; missing {missing}.")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}.")
    d = slices[slices["gt_px"] > 0].copy()
    if "order" in d.columns:
        d["order"] = _orders(d)
    d = d[d["dice"].notna()]
    vol = ["case_id", "label_name", *by]
    g = d.groupby(vol, sort=False)["z"]
    lo, hi = g.transform("min"), g.transform("max")
    span = (hi - lo).where(hi > lo)
    d["rel"] = ((d["z"] - lo) / span).fillna(0.5)
    d["bin"] = np.minimum((d["rel"] * bins).astype(int), bins - 1)
    per_vol = d.groupby([*vol, "bin"], sort=False)["dice"].mean().mul(100).reset_index()
    rows = []
    for key, grp in per_vol.groupby([*by, "bin"], sort=False):
        key = key if isinstance(key, tuple) else (key,)
        v = grp["dice"].to_numpy(float)
        m = float(v.mean())
        if len(v) > 1:
            half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
        else:
            half = 0.0
        rows.append({**dict(zip([*by, "bin"], key)), "dice_mean": m, "dice_lo": max(m - half, 0.0),
                     "dice_hi": min(m + half, 100.0), "n_volumes": len(v)})
    out = pd.DataFrame(rows, columns=[*by, "bin", "dice_mean", "dice_lo", "dice_hi", "n_volumes"])
    out["position"] = (out["bin"].astype(float) + 0.5) / bins
    return out.drop(columns="bin").sort_values([*by, "position"], kind="stable")[
        [*by, "position", "dice_mean", "dice_lo", "dice_hi", "n_volumes"]].reset_index(drop=True)


def relative_position_chart(slices: pd.DataFrame, *, color: str = "order", row: str | None = "setting",
                            column: str | None = "model", bins: int = 10, title: str | None = "auto",
                            width: int = 300, height: int = 160):
    """Per-slice Dice by relative position in the organ (:func:`relative_position_dice`): the mean
    across volumes as a line with its 95 % band, one colour per ``color`` value, faceted."""
    alt = _alt()
    by = list(dict.fromkeys(c for c in (color, row, column) if c))
    d = _shown(relative_position_dice(slices, by=by, bins=bins))
    enc_color = alt.Color(f"{color}:N", title=_title(color), sort=sort_order(color, d[color]))
    x = alt.X("position:Q", title="Relative position in the organ (0 = first slice, 1 = last)",
              scale=alt.Scale(domain=[0, 1]))
    band = alt.Chart().mark_area(opacity=0.25).encode(
        x=x, y=alt.Y("dice_lo:Q", title="Slice Dice (%)", scale=alt.Scale(domain=[0, 100])), y2="dice_hi:Q",
        color=alt.Color(f"{color}:N", title=_title(color), sort=sort_order(color, d[color]),
                        legend=alt.Legend(symbolOpacity=1)))  # one legend, shared, in full colour
    line = alt.Chart().mark_line(point=True).encode(
        x=x, y=alt.Y("dice_mean:Q", title="Slice Dice (%)"),
        color=alt.Color(f"{color}:N", title=_title(color), sort=sort_order(color, d[color]),
                        legend=alt.Legend(symbolOpacity=1)),
        tooltip=[alt.Tooltip("position:Q", title="Relative position", format=".2f"),
                 alt.Tooltip("dice_mean:Q", title="Mean Dice (%)", format=".1f"),
                 alt.Tooltip("dice_lo:Q", title="95 % band, low", format=".1f"),
                 alt.Tooltip("dice_hi:Q", title="95 % band, high", format=".1f"),
                 alt.Tooltip("n_volumes:Q", title="Volumes (n)")])
    chart = alt.layer(band, line, data=d).properties(width=width, height=height)
    facets = _facets(alt, d, row, column)
    if facets:
        chart = chart.facet(**facets)
    return _titled(chart, _auto(title, "Per-slice Dice by relative position in the organ (mean and 95 % band "
                                      "across volumes)"), _subtitle(slices))


def runs_dice_chart(dice: pd.DataFrame, *, metric_title: str = "mean of per-volume Dice", title: str | None = "auto",
                    width: int = 320, height: int = 200):
    """Dice per organ of several runs side by side: organs on x, one bar per run.

    Parameters
    ----------
    dice : DataFrame
        Tidy: ``run``, ``organ``, ``dice`` (in [0, 1]); ``weights`` when known. Runs keep
        their order of appearance; organs sort as in the paper, ``Mean`` last.
    """
    alt = _alt()
    missing = sorted({"run", "organ", "dice"} - set(dice.columns))
    if missing:
        raise ValueError(f"runs_dice_chart needs columns run, organ, dice; missing {missing}.")
    d = _shown(dice[["run", "organ", "dice"]].dropna())
    d["dice_pct"] = 100 * d["dice"].astype(float)
    runs = list(dict.fromkeys(d["run"].astype(str)))
    chart = alt.Chart(d).mark_bar().encode(
        x=alt.X("organ:N", title="Organ", sort=sort_order("organ", d["organ"]), axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("run:N", sort=runs),
        y=alt.Y("dice_pct:Q", title=f"Dice (%), {metric_title}", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("run:N", title="Run", sort=runs),
        tooltip=[alt.Tooltip("run:N", title="Run"), alt.Tooltip("organ:N", title="Organ"),
                 alt.Tooltip("dice_pct:Q", title="Dice (%)", format=".2f")],
    ).properties(width=width, height=height)
    return _titled(chart, _auto(title, "Dice per organ and run"), _subtitle(dice))


def uncertainty_error_chart(slices: pd.DataFrame, *, x: str = "disagreement", qc: float | None = None,
                            title: str | None = None, width: int = 300, height: int = 220):
    """Per-slice error (1 - Dice) against an uncertainty score, one point per slice, QC-flagged
    slices marked; the title gives the Pearson and Spearman correlations (over slices with a Dice).

    ``slices``: tidy rows with ``dice`` and ``x`` (e.g. an ensemble's fused rows: ``disagreement``,
    ``qc_flag``); ``qc``: the threshold, drawn as a rule.
    """
    alt = _alt()
    d = slices[slices["dice"].notna()].copy()
    d["error"] = 1.0 - d["dice"]
    d["QC flag"] = d["qc_flag"].map({True: "flagged", False: "ok"}) if "qc_flag" in d.columns else "ok"
    r = d[[x, "error"]].corr(method="pearson").iloc[0, 1] if len(d) > 2 else float("nan")
    rho = d[[x, "error"]].corr(method="spearman").iloc[0, 1] if len(d) > 2 else float("nan")
    points = alt.Chart(d).mark_circle(size=40, opacity=0.8).encode(
        x=alt.X(f"{x}:Q", title=_title(x)), y=alt.Y("error:Q", title="error (1 - slice Dice)"),
        color=alt.Color("QC flag:N", scale=alt.Scale(domain=["ok", "flagged"], range=["#0072B2", "#D55E00"])),
        tooltip=[c for c in ("case_id", "label_name", "z", x, "error") if c in d.columns],
    ).properties(width=width, height=height)
    layers = [points]
    if qc is not None:
        layers.append(alt.Chart(pd.DataFrame({x: [qc]})).mark_rule(strokeDash=[4, 3], color="#999999").encode(
            x=f"{x}:Q"))
    text = title or f"Does uncertainty find the bad slices? Pearson r = {r:.2f}, Spearman ρ = {rho:.2f} ({len(d)} slices)"
    return _titled(alt.layer(*layers), text, _subtitle(d))


def promotion_chart(changes: pd.DataFrame, *, title: str | None = None, width: int = 360, height: int = 200):
    """What a refinement pass changed: per slice (z), Dice after minus Dice before, promoted slices marked.

    ``changes``: ``z``, ``dice_change`` and ``promoted`` (and ``case_id`` / ``label_name`` facets
    by row when several), e.g. :meth:`fsm2kit.studies.uncertainty_study.UncertaintyStudy.refinement_table`.
    """
    alt = _alt()
    d = changes.copy()
    d["slice"] = d["promoted"].map({True: "promoted", False: "re-tracked"})
    chart = alt.Chart(d).mark_bar().encode(
        x=alt.X("z:O", title=_title("z")), y=alt.Y("dice_change:Q", title="Dice change (refined - plain)"),
        color=alt.Color("slice:N", scale=alt.Scale(domain=["promoted", "re-tracked"], range=["#D55E00", "#56B4E9"]),
                        title="Slice"),
        tooltip=[c for c in ("case_id", "z", "dice_plain", "dice_refined", "score", "promoted") if c in d.columns],
    ).properties(width=width, height=height)
    if "case_id" in d.columns and d["case_id"].nunique() > 1:
        chart = chart.facet(row=alt.Row("case_id:N", title=_title("case_id")))
    return _titled(chart, title or "Second pass: Dice change per slice (promoted slices in vermillion)", _subtitle(d))
