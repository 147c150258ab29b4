"""Paper-style tables: organs as columns per dataset, ``Mean`` last, rows in the paper's order.

:func:`results_table` lays out a summary (:meth:`ExperimentResult.summary
<fsm2kit.run.experiment_result.ExperimentResult.summary>`) the way FS-MedSAM2's tables do; the
paper's own numbers are in :mod:`fsm2kit.tables.paper`; :func:`paper_order` is the one
sort order of settings, models and orders that every table and chart follows (the paper's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

__all__ = ["ORGAN_ORDER", "ORDER_ORDER", "paper_order", "results_table"]

#: Organ columns of the paper-style tables, in this order, Mean last. The four evaluated organs
#: of both data sets (SSL-ALPNet ``pa_all``); pass ``organs=`` to lay a table out differently.
ORGAN_ORDER = ("LK", "RK", "SPLEEN", "LIVER")
#: Orders as the paper lists them (``n/a``: the 1Q settings, which have none).
ORDER_ORDER = ("n/a", "top", "middle")


def paper_order() -> dict[str, list[str]]:
    """The paper's order of each row variable: ``setting`` (1S1Q, 3S1Q, S1SFQ, 3SFQ), ``model``
    (tiny .. large, SAM 2.0 then 2.1), ``order`` (top, middle), ``organ`` (:data:`ORGAN_ORDER`,
    ``Mean`` last). Tables sort by it and charts pass it as explicit sort orders."""
    from ..engine.plans import SETTINGS
    from ..model.specs import MODELS

    return {"setting": list(SETTINGS), "model": list(MODELS), "order": list(ORDER_ORDER),
            "organ": [*ORGAN_ORDER, "Mean"], "label_name": [*ORGAN_ORDER, "Mean"]}


def _dataset_organs(organs: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    order = [o.upper() for o in (organs or ORGAN_ORDER)]
    extra = sorted(o for o in present if o not in order)
    if organs is None:
        return [o for o in order if o in present] + extra
    return order


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
    if metric not in ("mean_per_volume", "pooled"):
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
        cols = _dataset_organs(organs, present)
        block = wide[ds].reindex(columns=cols) if ds in wide.columns.get_level_values(0) else pd.DataFrame(index=wide.index)
        if mean:
            block = block.assign(Mean=block.mean(axis=1, skipna=True))
        block.columns = pd.MultiIndex.from_product([[ds], list(block.columns)], names=["dataset", "organ"])
        blocks.append(block)
    out = pd.concat(blocks, axis=1)
    out.columns.names = ["dataset", "organ"]
    return _order_rows(out, row_order)


def _order_rows(table: pd.DataFrame, row_order: Mapping[str, Sequence] | None) -> pd.DataFrame:
    known = paper_order()
    known.update({k: list(v) for k, v in (row_order or {}).items()})
    names = list(table.index.names)

    def rank(values):
        vals = values if isinstance(values, tuple) else (values,)
        key = []
        for n, v in zip(names, vals):
            vocab = known.get(n, [])
            key.append((vocab.index(v), "") if v in vocab else (len(vocab), str(v)))
        return tuple(key)

    return table.loc[sorted(table.index, key=rank)]

