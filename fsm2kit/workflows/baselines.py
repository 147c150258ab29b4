"""Baseline rows quoted from the paper, as a user-fillable table (no number is made up here).

:data:`PUBLISHED_BASELINES` holds the baseline rows of FS-MedSAM2's Table 1: every value is None
until someone copies it from the paper. :func:`table_with_baselines` puts them above a computed
:func:`~fsm2kit.workflows.tables.results_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .tables import ORGAN_ORDER

__all__ = ["QuotedRow", "PUBLISHED_BASELINES", "QUOTED_PLACEHOLDER", "baseline_table", "table_with_baselines"]

#: Shown in a baseline cell whose value has not been copied from the paper yet.
QUOTED_PLACEHOLDER = "quoted (fill from paper)"


@dataclass(frozen=True)
class QuotedRow:
    """A result row quoted from a paper (never computed here).

    Values are Dice in [0, 1] (divide the paper's percentages by 100), or None while not filled
    in. ``source`` must cite the table the numbers were copied from.
    """

    method: str
    dataset: str
    lk: float | None = None
    rk: float | None = None
    spleen: float | None = None
    liver: float | None = None
    mean: float | None = None
    metric: str = "mean_per_volume"
    source: str = "FS-MedSAM2 (Bai et al., arXiv 2409.04298), Table 1"

    @property
    def filled(self) -> bool:
        return any(v is not None for v in (self.lk, self.rk, self.spleen, self.liver, self.mean))

    def value(self, organ: str) -> float | None:
        key = organ.strip().lower()
        if key not in ("lk", "rk", "spleen", "liver", "mean"):
            raise KeyError(f"QuotedRow has no organ {organ!r}; expected LK, RK, SPLEEN, LIVER or Mean.")
        return getattr(self, key)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={'?' if getattr(self, k) is None else getattr(self, k)}"
                         for k in ("lk", "rk", "spleen", "liver", "mean"))
        return f"QuotedRow({self.method}, {self.dataset}: {vals}; {self.source})"


# The baseline rows of FS-MedSAM2's Table 1, to be filled in by hand.
# Every value is None on purpose: copy each number from Table 1 of
#   H. Bai, Q. Chen, Y. Zheng et al., "FS-MedSAM2: Exploring the Potential of SAM2 for Few-Shot
#   Medical Image Segmentation without Fine-tuning", arXiv 2409.04298 (2024),
# as a fraction (the paper prints percentages), keep the citation in ``source``, and add or
# remove methods so the rows match the paper's table. fsm2kit never ships numbers it has not
# computed or checked against the paper.
PUBLISHED_BASELINES: tuple[QuotedRow, ...] = tuple(
    QuotedRow(method, dataset)
    for method in ("SSL-ALPNet", "ADNet", "Q-Net", "GMRD", "FS-MedSAM2 (as published)")
    for dataset in ("CHAOST2", "SABS")
)


def baseline_table(
    baselines: Sequence[QuotedRow] = PUBLISHED_BASELINES,
    *,
    datasets: Sequence[str] | None = None,
    organs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Quoted rows as a table shaped like :func:`results_table` (object dtype).

    Cells not filled in read :data:`QUOTED_PLACEHOLDER`. Index: (``source``, ``method``).
    """
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(b.dataset for b in baselines))
    cols = [o.upper() for o in (organs or ORGAN_ORDER)] + ["Mean"]
    methods = list(dict.fromkeys(b.method for b in baselines))
    by = {(b.method, b.dataset): b for b in baselines}
    data, index = [], []
    for m in methods:
        row, sources = [], set()
        for ds in datasets:
            b = by.get((m, ds))
            for o in cols:
                v = b.value(o) if b is not None else None
                row.append(QUOTED_PLACEHOLDER if v is None else float(v))
            if b is not None:
                sources.add(b.source if b.filled else QUOTED_PLACEHOLDER)
        label = "; ".join(sorted(sources)) if sources else QUOTED_PLACEHOLDER
        index.append((f"quoted: {label}" if label != QUOTED_PLACEHOLDER else QUOTED_PLACEHOLDER, m))
        data.append(row)
    columns = pd.MultiIndex.from_tuples([(ds, o) for ds in datasets for o in cols], names=["dataset", "organ"])
    return pd.DataFrame(data, index=pd.MultiIndex.from_tuples(index, names=["source", "method"]),
                        columns=columns, dtype=object)


def _method_name(names: Sequence[str], key) -> str:
    parts = dict(zip(names, key if isinstance(key, tuple) else (key,)))
    order = str(parts.pop("order", "n/a"))
    if "setting" in parts and order not in ("n/a", "nan", "None"):
        parts["setting"] = f"{parts['setting']}-{order}"
    return " ".join(str(v) for v in parts.values())


def table_with_baselines(
    result_table: pd.DataFrame,
    baselines: Sequence[QuotedRow] = PUBLISHED_BASELINES,
    *,
    source: str,
) -> pd.DataFrame:
    """Quoted baseline rows above this run's rows, in one table (Table 1 layout).

    Parameters
    ----------
    result_table : DataFrame
        From :func:`results_table` (columns (dataset, organ)).
    baselines : sequence of QuotedRow
        Only rows of the table's datasets are shown.
    source : str
        Label of the computed rows, e.g. ``"computed here (random weights (seed 0))"``.

    Returns
    -------
    DataFrame
        Index (``source``, ``method``); the computed rows' method names join their index levels.
    """
    datasets = list(dict.fromkeys(result_table.columns.get_level_values(0)))
    organs = [o for o in dict.fromkeys(result_table.columns.get_level_values(1)) if o != "Mean"]
    rows = [b for b in baselines if b.dataset in datasets]
    quoted = baseline_table(rows, datasets=datasets, organs=organs) if rows else None
    ours = result_table.copy()
    names = [_method_name(ours.index.names, k) for k in ours.index]
    ours.index = pd.MultiIndex.from_tuples([(source, n) for n in names], names=["source", "method"])
    ours = ours.astype(object)
    if quoted is None:
        return ours
    quoted = quoted.reindex(columns=ours.columns, fill_value=QUOTED_PLACEHOLDER)
    return pd.concat([quoted, ours])

