"""The one Dice-table builder: paper-style tables of a summary; CSV, Markdown and LaTeX.

Both builders lay out a summary (:meth:`ExperimentResult.summary
<fsm2kit.run.experiment_result.ExperimentResult.summary>`) as FS-MedSAM2's tables do: organs as
columns per dataset (:data:`~fsm2kit.tables.paper.ORGAN_ORDER`), ``Mean`` last, rows in the
paper's order (:func:`~fsm2kit.tables.paper.paper_order`).

* :func:`results_table`: the numbers, a DataFrame (Dice in [0, 1]) with any row columns (e.g. the
  strategies of a strategy study).
* :func:`dice_table`: paper-grade, for a paper table number with the paper's printed values
  (:mod:`fsm2kit.tables.paper`) beside ours: per run a ``published`` line, an ``ours`` line (Dice
  in %, ± std over query volumes, n volumes) and a ``Δ ours − published`` line. Best values are
  bold and the second best underlined, per column, as in the paper. The :class:`DiceTable`
  carries a caption that names the dataset, the protocol variant, the Dice variant of each line,
  the model and the weights.

:func:`save_table` is the one writer: a :class:`DiceTable` as CSV (tidy, with ``weights`` and
``random_weights`` columns), Markdown and LaTeX (booktabs) plus a JSON sidecar; a
:func:`results_table` as CSV under a ``#`` note line. Every file is written atomically.
"""

from __future__ import annotations

import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..records.fileio import atomic_write
from ..model.specs import data_caveats
from ..records.provenance import RANDOM_NOTE
from .paper import (BASELINE_DICE_VARIANT, ORGAN_ORDER, PAPER_CITATION, PAPER_DATASETS, PAPER_DICE_VARIANT,
                    PUBLISHED_BASELINES, paper_order, published_dice)

__all__ = ["TABLE_FORMATS", "OURS_DICE_VARIANTS", "DiceTable", "dice_table", "results_table", "save_table", "short_sha"]

#: Formats :func:`save_table` writes by default (a JSON sidecar is always written too).
TABLE_FORMATS = ("csv", "md", "tex")
#: How tables name fsm2kit's two Dice averages.
OURS_DICE_VARIANTS = {
    "mean_per_volume": "mean of per-volume 3D Dice",
    "pooled": "pooled Dice (2ΣTP / (2ΣTP + ΣFP + ΣFN) over all scored slices)",
}
_KINDS = {"published": "published", "ours": "ours", "difference": "Δ ours − published"}
_ORGAN_TEXT = {"LK": "LK", "RK": "RK", "SPLEEN": "Spleen", "LIVER": "Liver", "Mean": "Mean"}
_PAPER_NAME = {v: k for k, v in PAPER_DATASETS.items()}
_CSV_COLUMNS = ["row", "kind", "dataset", "organ", "dice_percent", "std_percent", "n_volumes", "rank",
                "dice_variant", "method", "model", "setting", "order", "weights", "random_weights"]


def _finite(v) -> bool:
    """A number that is there (not None, NaN or pd.NA)."""
    return v is not None and v is not pd.NA and not (isinstance(v, float) and math.isnan(v))


def _dataset_text(ds: str) -> str:
    return f"{_PAPER_NAME[ds]} ({ds})" if ds in _PAPER_NAME else str(ds)


@dataclass(eq=False)
class DiceTable:
    """A Dice table ready to print (see the module docstring).

    Attributes
    ----------
    cells : DataFrame
        Tidy, one row per (row, kind, dataset, organ), in display order: ``row`` (the method or
        run), ``kind`` (``published``, ``ours`` or ``difference``), ``dataset``, ``organ``,
        ``dice_percent``, ``std_percent``, ``n_volumes``, ``rank`` (1 best, 2 second, per
        column), ``dice_variant``, ``method``, ``model``, ``setting``, ``order``, ``weights``,
        ``random_weights``.
    caption : str
        Names dataset, protocol variant, Dice variants, model and weights (and says random weights).
    title : str
        E.g. ``"Table 1"``.
    weights : str
        The weights of our rows, e.g. ``"random weights (seed 0)"``.
    random_weights : bool
    """

    cells: pd.DataFrame
    caption: str
    title: str
    weights: str
    random_weights: bool

    # ------------------------------------------------------------------ layout
    @property
    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.cells["dataset"]))

    def organs(self, dataset: str) -> list[str]:
        return list(dict.fromkeys(self.cells.loc[self.cells["dataset"] == dataset, "organ"]))

    def lines(self) -> list[tuple[str, str]]:
        """The table's lines, (row, kind), in display order."""
        return list(dict.fromkeys(zip(self.cells["row"], self.cells["kind"])))

    def _cell(self, row, kind, ds, organ) -> pd.Series | None:
        c = self.cells
        hit = c[(c["row"] == row) & (c["kind"] == kind) & (c["dataset"] == ds) & (c["organ"] == organ)]
        return None if hit.empty else hit.iloc[0]

    def _n_text(self, row, kind, ds) -> str:
        c = self.cells
        n = c.loc[(c["row"] == row) & (c["kind"] == kind) & (c["dataset"] == ds), "n_volumes"].dropna()
        if n.empty:
            return ""
        lo, hi = int(n.min()), int(n.max())
        return str(lo) if lo == hi else f"{lo}–{hi}"

    def _text(self, cell: pd.Series | None, markup: str) -> str:
        if cell is None or not _finite(cell["dice_percent"]):
            return "--" if markup == "latex" else "–"
        v = float(cell["dice_percent"])
        if cell["kind"] == "difference":
            t = f"{v:+.2f}"
            return t.replace("-", "$-$") if markup == "latex" else t.replace("-", "−")
        t = f"{v:.2f}"
        if _finite(cell["std_percent"]):
            pm = " $\\pm$ " if markup == "latex" else " ± "
            t += f"{pm}{float(cell['std_percent']):.2f}"
        elif cell["kind"] == "ours" and _finite(cell["n_volumes"]) and int(cell["n_volumes"]) == 1:
            t += " ($n=1$)" if markup == "latex" else " (n=1)"  # no std of one volume
        rank = cell["rank"]
        wrap = {"markdown": ("**{}**", "<u>{}</u>"), "latex": ("\\textbf{{{}}}", "\\underline{{{}}}"),
                "html": ("<b>{}</b>", "<u>{}</u>")}.get(markup)
        if wrap and _finite(rank) and int(rank) in (1, 2):
            t = wrap[int(rank) - 1].format(t)
        return t

    def grid(self, markup: str = "text") -> tuple[list[str], list[list[str]]]:
        """Header and body as text cells; ``markup`` in ``text``, ``markdown``, ``latex``, ``html``."""
        header = ["method / run", "source"]
        for ds in self.datasets:
            pre = f"{ds} " if len(self.datasets) > 1 else ""
            header += [f"{pre}{_ORGAN_TEXT.get(o, o.title())}" for o in self.organs(ds)] + [f"{pre}n"]
        body, last = [], None
        for row, kind in self.lines():
            line = [row if row != last else "", _KINDS[kind]]
            last = row
            for ds in self.datasets:
                line += [self._text(self._cell(row, kind, ds, o), markup) for o in self.organs(ds)]
                line.append(self._n_text(row, kind, ds))
            body.append(line)
        return header, body

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame of text cells (index: row, kind; columns: dataset, organ)."""
        _, body = self.grid("text")
        cols = [(ds, o) for ds in self.datasets for o in [*self.organs(ds), "n"]]
        index = pd.MultiIndex.from_tuples([(r, _KINDS[k]) for r, k in self.lines()], names=["row", "source"])
        return pd.DataFrame([b[2:] for b in body], index=index,
                            columns=pd.MultiIndex.from_tuples(cols, names=["dataset", "organ"]))

    # ------------------------------------------------------------------ text formats
    def to_markdown(self) -> str:
        header, body = self.grid("markdown")
        esc = lambda s: s.replace("|", "\\|")  # noqa: E731
        out = []
        if self.random_weights:
            out += [f"> **{RANDOM_NOTE}**", ""]
        out += [f"**{self.title}.** {self.caption}" if self.title else self.caption, ""]
        out.append("| " + " | ".join(esc(h) for h in header) + " |")
        out.append("| " + " | ".join([":--", ":--"] + ["--:"] * (len(header) - 2)) + " |")
        out += ["| " + " | ".join(esc(c) for c in line) + " |" for line in body]
        return "\n".join(out) + "\n"

    def to_latex(self) -> str:
        """LaTeX (booktabs) that compiles with pdflatex: every non-ASCII character escaped, the
        tabular shrunk to the line width when wider (``\\resizebox``, graphicx), ``table*`` (both
        columns of a two-column template) for a table of several datasets."""
        _, body = self.grid("latex")
        ncol = 2 + sum(len(self.organs(ds)) + 1 for ds in self.datasets)
        env = "table*" if len(self.datasets) > 1 else "table"
        out = ["% generated by fsm2kit (needs \\usepackage{booktabs,graphicx})"]
        if self.random_weights:
            out.append(f"% {_latex(RANDOM_NOTE)}")
        out += [f"\\begin{{{env}}}[t]", "\\centering", f"\\caption{{{_latex(self.caption)}}}",
                _RESIZE_OPEN, "\\begin{tabular}{ll" + "r" * (ncol - 2) + "}", "\\toprule"]
        top, rules, col = [" ", " "], [], 3
        for ds in self.datasets:
            k = len(self.organs(ds)) + 1
            top.append(f"\\multicolumn{{{k}}}{{c}}{{{_latex(_dataset_text(ds))}}}")
            rules.append(f"\\cmidrule(lr){{{col}-{col + k - 1}}}")
            col += k
        out += [" & ".join(top) + " \\\\", " ".join(rules)]
        sub = ["Method / run", "Source"] + [x for ds in self.datasets
                                          for x in [_ORGAN_TEXT.get(o, o.title()) for o in self.organs(ds)] + ["$n$"]]
        out += [" & ".join(sub) + " \\\\", "\\midrule"]
        for (row, kind), line in zip(self.lines(), body):
            cells = [_latex(line[0]), _latex(line[1])] + [c.replace("–", "--") for c in line[2:]]
            out.append(" & ".join(cells) + " \\\\")
        out += ["\\bottomrule", "\\end{tabular}", "}", f"\\end{{{env}}}"]
        return "\n".join(out) + "\n"

    def to_html(self) -> str:
        header, body = self.grid("html")
        cap = html.escape(f"{self.title}. {self.caption}" if self.title else self.caption)
        rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
        for line in body:
            rows.append("<tr>" + "".join(f"<td>{html.escape(c) if i < 2 else c}</td>" for i, c in enumerate(line))
                        + "</tr>")
        banner = f"<p><b>{html.escape(RANDOM_NOTE)}</b></p>" if self.random_weights else ""
        return f"{banner}<table><caption style='caption-side:top;text-align:left'>{cap}</caption>{''.join(rows)}</table>"

    def to_csv_frame(self) -> pd.DataFrame:
        """The tidy cells with the weights and random-weights columns (what the CSV holds)."""
        return self.cells[_CSV_COLUMNS].copy()

    def _repr_html_(self) -> str:
        return self.to_html()

    def save(self, path: str | os.PathLike, *, formats: Sequence[str] = TABLE_FORMATS,
             provenance: dict | None = None) -> dict[str, Path]:
        """:func:`save_table` of this table."""
        return save_table(self, path, formats=formats, provenance=provenance)

    def __repr__(self) -> str:
        return f"DiceTable({self.title or 'untitled'}: {len(self.lines())} lines; {self.weights})\n{self.caption}"


_LATEX_ESC = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
              "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}",
              "±": "$\\pm$", "Σ": "$\\Sigma$", "Δ": "$\\Delta$", "−": "$-$", "–": "--", "—": "---",
              "×": "$\\times$", "≥": "$\\geq$", "≤": "$\\leq$", "…": "\\ldots{}", "µ": "$\\mu$", "°": "$^\\circ$",
              "“": "``", "”": "''", "‘": "`", "’": "'", "<": "\\textless{}", ">": "\\textgreater{}",
              "|": "\\textbar{}", "\u00a0": "~"}
#: Shrinks a tabular to the line width only when it is wider (graphicx's ``\\resizebox``; closed by ``}``).
_RESIZE_OPEN = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%"


def _latex(text: str) -> str:
    """Text for pdflatex: special characters and the non-ASCII ones tables use escaped, straight
    double quotes as TeX quotes; any other non-ASCII character refused (it would not compile)."""
    import re
    import unicodedata

    t = re.sub(r'"([^"]*)"', "“\\1”", str(text))
    out = []
    for ch in t:
        rep = _LATEX_ESC.get(ch)
        if rep is None and ord(ch) > 127:
            plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
            if not plain:
                raise ValueError(f"no LaTeX for the character {ch!r} (U+{ord(ch):04X}) in {text!r}.")
            rep = _latex(plain)
        out.append(ch if rep is None else rep)
    return "".join(out)


def short_sha(text: str, n: int = 12) -> str:
    """``text`` with every ``sha256:<64 hex>`` cut to its first ``n`` hex digits (captions;
    the full hash stays in the CSV and the JSON sidecar)."""
    import re

    return re.sub(r"(sha256:)([0-9a-fA-F]{%d})[0-9a-fA-F]{%d,}" % (n, 1), r"\1\2", str(text))


def save_table(table: DiceTable | pd.DataFrame, path: str | os.PathLike, *, formats: Sequence[str] | None = None,
               provenance: dict | None = None, note: str | None = None) -> dict[str, Path]:
    """Write a table, each file atomically: the one table writer.

    Parameters
    ----------
    table : DiceTable or DataFrame
        A :class:`DiceTable` (:func:`dice_table`), or a :func:`results_table` (any numbers: a
        strategy study writes Dice in %).
    path : path-like
        Path without extension (an extension is dropped).
    formats : sequence of {"csv", "md", "tex"}, optional
        Default :data:`TABLE_FORMATS`. A DiceTable: ``csv``: the tidy cells
        (:meth:`DiceTable.to_csv_frame`); ``md``: Markdown; ``tex``: LaTeX (booktabs); and always
        ``<path>.json`` (caption, weights, random-weights flag, files, and ``provenance`` when
        given). A results table: ``csv`` tidy (one row per row key, dataset and column: ``value``),
        ``md`` and ``tex`` laid out wide with ``note`` as the caption, and the ``.json`` sidecar.
    note : str, optional
        A results table: its caption (which Dice, which weights).

    Returns
    -------
    dict
        format -> path written (``json`` for the sidecar).
    """
    if isinstance(table, pd.DataFrame):
        frame = table
        writers = {"csv": lambda t: _tidy_frame(frame).to_csv(t, index=False),
                   "md": lambda t: Path(t).write_text(_frame_markdown(frame, note), encoding="utf-8"),
                   "tex": lambda t: Path(t).write_text(_frame_latex(frame, note), encoding="utf-8")}
        formats = TABLE_FORMATS if formats is None else formats
    else:
        writers = {"csv": lambda t: table.to_csv_frame().to_csv(t, index=False),
                   "md": lambda t: Path(t).write_text(table.to_markdown(), encoding="utf-8"),
                   "tex": lambda t: Path(t).write_text(table.to_latex(), encoding="utf-8")}
        formats = TABLE_FORMATS if formats is None else formats
    bad = [f for f in formats if f not in writers]
    if bad:
        raise ValueError(f"save_table formats {bad} unknown; expected some of {', '.join(writers)}.")
    base = Path(path)
    if base.suffix.lower().lstrip(".") in (*writers, "json"):
        base = base.with_suffix("")
    base.parent.mkdir(parents=True, exist_ok=True)
    written = {}
    for fmt in formats:
        out = base.with_name(f"{base.name}.{fmt}")
        atomic_write(out, writers[fmt])
        written[fmt] = out
    if isinstance(table, pd.DataFrame):
        side = {"caption": note, "random_weights": "random weights" in str(note or "").lower(),
                "files": [p.name for p in written.values()]}
        if provenance is not None:
            side["provenance"] = provenance
        written["json"] = base.with_name(f"{base.name}.json")
        text = json.dumps(side, indent=2, default=str, ensure_ascii=False)
        atomic_write(written["json"], lambda t: Path(t).write_text(text, encoding="utf-8"))
        return written
    side = {"title": table.title, "caption": table.caption, "weights": table.weights,
            "random_weights": table.random_weights, "note": RANDOM_NOTE if table.random_weights else None,
            "paper": PAPER_CITATION, "files": [p.name for p in written.values()]}
    if provenance is not None:
        side["provenance"] = provenance
    text = json.dumps(side, indent=2, default=str, ensure_ascii=False)
    written["json"] = base.with_name(f"{base.name}.json")
    atomic_write(written["json"], lambda t: Path(t).write_text(text, encoding="utf-8"))
    return written


def _col_levels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    cols = list(frame.columns)
    return [c if isinstance(c, tuple) else ("", c) for c in cols]


def _tidy_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A wide results table as tidy rows: the row keys, ``dataset``, ``column``, ``value``."""
    names = [n or f"row{i}" for i, n in enumerate(frame.index.names)]
    recs = []
    for key, row in frame.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        for (ds, col), v in zip(_col_levels(frame), row.to_numpy()):
            recs.append({**dict(zip(names, key)), "dataset": ds, "column": col, "value": v})
    return pd.DataFrame(recs)


def _cell_text(v) -> str:
    return "--" if not _finite(v) else (f"{v:.1f}" if isinstance(v, (float, np.floating)) else str(v))


def _frame_markdown(frame: pd.DataFrame, note: str | None) -> str:
    names = [str(n or "") for n in frame.index.names]
    cols = _col_levels(frame)
    head = names + [f"{ds} {c}".strip() for ds, c in cols]
    out = [note, ""] if note else []
    out += ["| " + " | ".join(head) + " |", "| " + " | ".join([":--"] * len(names) + ["--:"] * len(cols)) + " |"]
    for key, row in frame.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        out.append("| " + " | ".join([str(k) for k in key] + [_cell_text(v).replace("--", "–")
                                                             for v in row.to_numpy()]) + " |")
    return "\n".join(out) + "\n"


def _frame_latex(frame: pd.DataFrame, note: str | None) -> str:
    """A wide results table as booktabs LaTeX (compiles with pdflatex; shrunk to the line width when wider)."""
    names = [str(n or "") for n in frame.index.names]
    cols = _col_levels(frame)
    datasets = list(dict.fromkeys(ds for ds, _ in cols))
    env = "table*" if len(datasets) > 1 else "table"
    out = ["% generated by fsm2kit (needs \\usepackage{booktabs,graphicx})", f"\\begin{{{env}}}[t]", "\\centering"]
    if note:
        out.append(f"\\caption{{{_latex(short_sha(note))}}}")
    out += [_RESIZE_OPEN, "\\begin{tabular}{" + "l" * len(names) + "r" * len(cols) + "}", "\\toprule"]
    if any(datasets):
        top, rules, c = [" "] * len(names), [], len(names) + 1
        for ds in datasets:
            k = sum(1 for d, _ in cols if d == ds)
            top.append(f"\\multicolumn{{{k}}}{{c}}{{{_latex(_dataset_text(ds))}}}")
            rules.append(f"\\cmidrule(lr){{{c}-{c + k - 1}}}")
            c += k
        out += [" & ".join(top) + " \\\\", " ".join(rules)]
    sub = [_latex(n.replace("_", " ").capitalize()) for n in names] + [_latex(_ORGAN_TEXT.get(str(c), str(c)))
                                                                      for _, c in cols]
    out += [" & ".join(sub) + " \\\\", "\\midrule"]
    for key, row in frame.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        out.append(" & ".join([_latex(k) for k in key] + [_cell_text(v) for v in row.to_numpy()]) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}", "}", f"\\end{{{env}}}"]
    return "\n".join(out) + "\n"


# ============================================================================ building
def _organ_columns(organs: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    """A dataset's organ columns: ``organs`` as given, or :data:`ORGAN_ORDER` (those present)
    then any other class present, sorted."""
    order = [o.upper() for o in (organs or ORGAN_ORDER)]
    extra = sorted(o for o in present if o not in order)
    if organs is None:
        return [o for o in order if o in present] + extra
    return order


def _row_sorter(names: Sequence[str], row_order: Mapping[str, Sequence] | None = None):
    """A sort key of row keys (tuples of the ``names`` columns' values): the paper's order
    (:func:`paper_order`, updated by ``row_order``), unknown values last, as text."""
    known = paper_order()
    known.update({k: list(v) for k, v in (row_order or {}).items()})

    def rank(values) -> tuple:
        vals = values if isinstance(values, tuple) else (values,)
        key = []
        for n, v in zip(names, vals):
            vocab = known.get(n, [])
            key.append((vocab.index(v), "") if v in vocab else (len(vocab), str(v)))
        return tuple(key)

    return rank


def results_table(
    summary: pd.DataFrame,
    *,
    metric: str = "mean_per_volume",
    rows: Sequence[str] = ("model", "setting", "order"),
    organs: Sequence[str] | None = None,
    mean: bool = True,
    row_order: Mapping[str, Sequence] | None = None,
) -> pd.DataFrame:
    """A paper-style table from a summary: one column per (dataset, organ), ``Mean`` last.

    Parameters
    ----------
    summary : DataFrame
        From :meth:`ExperimentResult.summary` (columns ``dataset``, ``label_name``, ``metric``,
        ``dice`` and the ``rows`` columns).
    metric : {"mean_per_volume", "pooled"}
        Which Dice average fills the table.
    rows : sequence of str
        Columns that make the table's rows.
    organs : sequence of str, optional
        Organ columns in this order (default :data:`ORGAN_ORDER`, then any other class found).
    mean : bool
        Add a ``Mean`` column per dataset: the mean over that row's organ columns (classes that
        were not run are left out of it).
    row_order : mapping {column: values}, optional
        Order of the rows' values (default: settings as in :data:`fsm2kit.SETTINGS`, orders
        ``n/a, top, middle``, models as in :data:`fsm2kit.MODELS`; others sorted).

    Returns
    -------
    DataFrame
        Index: ``rows``; columns: a (dataset, organ) MultiIndex; values: Dice in [0, 1].
    """
    if metric not in OURS_DICE_VARIANTS:
        raise ValueError(f"metric: expected 'mean_per_volume' or 'pooled', got {metric!r}.")
    need = {"dataset", "label_name", "metric", "dice", *rows}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks columns {missing}; pass ExperimentResult.summary() (has {list(summary.columns)}).")
    s = summary[summary["metric"] == metric]
    if s.empty:
        raise ValueError(f"summary has no {metric!r} rows (metrics present: {sorted(set(summary['metric']))}).")
    s = s.assign(label_name=s["label_name"].astype(str).str.upper())
    wide = s.pivot_table(index=list(rows), columns=["dataset", "label_name"], values="dice", aggfunc="first",
                         sort=False)
    blocks = []
    for ds in dict.fromkeys(s["dataset"]):
        present = list(dict.fromkeys(s.loc[s["dataset"] == ds, "label_name"]))
        cols = _organ_columns(organs, present)
        block = wide[ds].reindex(columns=cols) if ds in wide.columns.get_level_values(0) else pd.DataFrame(index=wide.index)
        if mean:
            block = block.assign(Mean=block.mean(axis=1, skipna=True))
        block.columns = pd.MultiIndex.from_product([[ds], list(block.columns)], names=["dataset", "organ"])
        blocks.append(block)
    out = pd.concat(blocks, axis=1)
    out.columns.names = ["dataset", "organ"]
    return out.loc[sorted(out.index, key=_row_sorter(list(out.index.names), row_order))]


def _run_label(rows: Sequence[str], key: dict) -> str:
    parts = {r: str(key[r]) for r in rows if r in key}
    order = parts.pop("order", "n/a")
    if order not in ("n/a", "nan", "None"):
        if "setting" in parts:
            parts["setting"] = f"{parts['setting']}-{order}"
        else:
            parts["order"] = order
    return " ".join(parts.values())


def _sample_std(std, n):
    """The sample std (``ddof=1``) of ``n`` volumes from the summary's population std (``ddof=0``,
    as SSL-ALPNet's ``get_mDice``): ``std * sqrt(n / (n - 1))``; NaN for one volume."""
    if not (_finite(std) and _finite(n)) or int(n) < 2:
        return np.nan
    return float(std) * math.sqrt(int(n) / (int(n) - 1))


def _rank(cells: pd.DataFrame) -> pd.Series:
    rank = pd.Series(np.nan, index=cells.index)
    scored = cells[cells["kind"].isin(["published", "ours"]) & cells["dice_percent"].notna() & ~cells["partial"]]
    for _, g in scored.groupby(["dataset", "organ"], sort=False):
        if len(g) < 2:
            continue
        shown = g["dice_percent"].round(2)  # ties as printed (2 decimals): all of them marked alike
        levels = sorted(set(shown), reverse=True)
        rank[g.index[shown == levels[0]]] = 1
        if len(levels) > 1:
            rank[g.index[shown == levels[1]]] = 2
    return rank


def dice_table(
    summary: pd.DataFrame,
    *,
    metric: str = "mean_per_volume",
    rows: Sequence[str] = ("model", "setting", "order"),
    paper_table: int | None = None,
    settings: Sequence[str] | str | None = None,
    title: str | None = None,
) -> DiceTable:
    """A paper-grade table from a summary, with the paper's values beside ours.

    Parameters
    ----------
    summary : DataFrame
        :meth:`ExperimentResult.summary` (``dataset``, ``label_name``, ``metric``, ``dice``,
        ``std_per_volume``, ``n_volumes``, ``model``, ``setting``, ``order``, ``weights``,
        ``protocol_variant``).
    metric : {"mean_per_volume", "pooled"}
        Our Dice average (the pooled one has no std over volumes).
    rows : sequence of str
        Which of ``model``, ``setting``, ``order`` name a run's rows.
    paper_table : {1, 2, 3, 4}, optional
        Put this table's printed values beside ours (Table 1: the baselines first); runs the
        paper does not print get an ``ours`` line only. None: ours only.
    settings : str or sequence of str, optional
        Only these settings' runs.
    title : str, optional
        Default ``"Table <paper_table> (reproduction)"`` or ``"Dice"``.
    """
    from ..engine.plans import normalize_setting

    if metric not in OURS_DICE_VARIANTS:
        raise ValueError(f"metric: expected 'mean_per_volume' or 'pooled', got {metric!r}.")
    if paper_table is not None and int(paper_table) not in (1, 2, 3, 4):
        raise ValueError(f"paper_table: expected 1, 2, 3 or 4 (FS-MedSAM2's Tables 1-4), got {paper_table!r}.")
    need = {"dataset", "label_name", "metric", "dice", "std_per_volume", "n_volumes", "model", "setting", "order",
            "weights"}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks columns {missing}; pass ExperimentResult.summary('both').")
    s = summary[summary["metric"] == metric].copy()
    s["order"] = s["order"].astype(object).where(s["order"].notna(), "n/a").astype(str)
    s["label_name"] = s["label_name"].astype(str).str.upper()
    if settings is not None:
        keep = [normalize_setting(x) for x in ([settings] if isinstance(settings, str) else settings)]
        s = s[s["setting"].isin(keep)]
    if s.empty:
        raise ValueError(f"summary has no {metric!r} rows for these settings.")
    weights = "; ".join(dict.fromkeys(s["weights"].astype(str)))
    random = "random weights" in weights
    runs = sorted(s[["model", "setting", "order"]].drop_duplicates().itertuples(index=False, name=None),
                  key=_row_sorter(("model", "setting", "order")))
    keys = [dict(zip(("model", "setting", "order"), k)) for k in runs]
    labels = [_run_label(rows, k) for k in keys]
    if len(set(labels)) < len(labels):
        labels = [_run_label(("model", "setting", "order"), k) for k in keys]
    datasets = list(dict.fromkeys(s["dataset"]))
    present = {ds: _organ_columns(None, list(dict.fromkeys(s.loc[s["dataset"] == ds, "label_name"])))
               for ds in datasets}
    ours_variant = OURS_DICE_VARIANTS[metric]
    base = dict(method="", model="", setting="", order="", std_percent=np.nan, n_volumes=np.nan)
    recs: list[dict] = []
    partial_mean = False

    if paper_table is not None and int(paper_table) == 1:
        for b in PUBLISHED_BASELINES:
            if b.dataset not in datasets:
                continue
            for o in [*present[b.dataset], "Mean"]:
                recs.append({**base, "row": b.method, "kind": "published", "dataset": b.dataset, "organ": o,
                             "dice_percent": b.value(o) if o in _ORGAN_TEXT else np.nan,
                             "dice_variant": BASELINE_DICE_VARIANT, "method": b.method, "weights": "published"})
    for key, label in zip(keys, labels):
        run = s[(s["model"] == key["model"]) & (s["setting"] == key["setting"]) & (s["order"] == key["order"])]
        for ds in datasets:
            g = run[run["dataset"] == ds].drop_duplicates("label_name").set_index("label_name")
            pub = published_dice(dataset=ds, table=paper_table, **key) if paper_table is not None else {}
            ours = {o: 100 * float(g.loc[o, "dice"]) if o in g.index and _finite(g.loc[o, "dice"]) else np.nan
                    for o in present[ds]}
            vals = [v for v in ours.values() if _finite(v)]
            ours["Mean"] = float(np.mean(vals)) if vals else np.nan
            full = set(ORGAN_ORDER) <= {o for o, v in ours.items() if _finite(v)}
            partial_mean |= paper_table is not None and not full
            common = {**base, "row": label, "dataset": ds, "method": "FS-MedSAM2 (fsm2kit)", **key}
            for o in [*present[ds], "Mean"]:
                if pub:
                    recs.append({**common, "kind": "published", "organ": o, "dice_percent": pub.get(o, np.nan),
                                 "dice_variant": PAPER_DICE_VARIANT, "method": "FS-MedSAM2 (paper)",
                                 "weights": "published"})
            for o in [*present[ds], "Mean"]:
                std = g.loc[o, "std_per_volume"] if o in g.index else np.nan
                n = g.loc[o, "n_volumes"] if o in g.index else np.nan
                std = _sample_std(std, n)
                recs.append({**common, "kind": "ours", "organ": o, "dice_percent": ours[o],
                             "std_percent": 100 * float(std) if _finite(std) else np.nan,
                             "n_volumes": float(n) if _finite(n) else np.nan,
                             "dice_variant": ours_variant, "weights": ", ".join(dict.fromkeys(run["weights"])),
                             "partial": o == "Mean" and not full and paper_table is not None})
            if pub:
                for o in [*present[ds], "Mean"]:
                    diff = ours[o] - pub.get(o, np.nan) if (o != "Mean" or full) else np.nan
                    recs.append({**common, "kind": "difference", "organ": o, "dice_percent": diff,
                                 "dice_variant": f"ours ({metric}) − published, percentage points",
                                 "weights": ", ".join(dict.fromkeys(run["weights"]))})
    cells = pd.DataFrame(recs)
    cells["dice_percent"] = pd.to_numeric(cells["dice_percent"], errors="coerce")
    cells["partial"] = cells.get("partial", pd.Series(False, index=cells.index)).fillna(False).astype(bool)
    # keep each line's cells together, lines in first-appearance order, datasets in order
    line_pos = {k: i for i, k in enumerate(dict.fromkeys(zip(cells["row"], cells["kind"])))}
    cells["_l"] = [line_pos[k] for k in zip(cells["row"], cells["kind"])]
    cells["_d"] = cells["dataset"].map({d: i for i, d in enumerate(datasets)})
    cells = cells.sort_values(["_l", "_d"], kind="stable").drop(columns=["_l", "_d"]).reset_index(drop=True)
    cells["rank"] = _rank(cells).astype("Int64")
    cells["random_weights"] = random
    title = title or (f"Table {int(paper_table)} (reproduction)" if paper_table is not None else "Dice")
    caption = _caption(s, metric, paper_table, weights, random, partial_mean)
    return DiceTable(cells=cells, caption=caption, title=title, weights=weights, random_weights=random)


def _caption(s: pd.DataFrame, metric: str, paper_table, weights: str, random: bool, partial_mean: bool) -> str:
    join = lambda col: ", ".join(dict.fromkeys(s[col].astype(str))) if col in s.columns else "n/a"  # noqa: E731
    ds = ", ".join(_dataset_text(d) for d in dict.fromkeys(s["dataset"]))
    std = ", ± sample std over query volumes (ddof=1), n = query volumes" if metric == "mean_per_volume" else \
        " (no std: pooled over all volumes), n = query volumes"
    parts = [f"Dice (%) on {ds}; protocol variant {join('protocol_variant')}.",
             f"Ours: {OURS_DICE_VARIANTS[metric]}{std}; model {join('model')}; weights: {short_sha(weights)}."]
    if "model" in s.columns:  # e.g. MedSAM2 on SABS or CHAOS: its training data may hold these scans
        parts += [f"Note: {c}." for c in data_caveats(s["model"].astype(str), s["dataset"].astype(str))]
    if paper_table is not None:
        pub = f"Published: FS-MedSAM2 {PAPER_DICE_VARIANT}"
        if int(paper_table) == 1:
            pub += f"; baselines {BASELINE_DICE_VARIANT}"
        parts.append(f"{pub} (Table {int(paper_table)} of {PAPER_CITATION}).")
        parts.append("Δ: ours − published, in percentage points.")
        if partial_mean:
            parts.append("Mean: over the organs run here; no Δ where the paper's Mean covers other organs.")
    parts.append("Best in bold, second underlined (per column, as printed: ties marked alike).")
    if random:
        parts.append(RANDOM_NOTE + ".")
    return " ".join(parts)
