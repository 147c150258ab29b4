"""The paper's own numbers: every cell of FS-MedSAM2's Tables 1-4, read from the bundled CSV.

``fsm2kit/data/paper/fs_medsam2_tables.csv`` (package data; citation in its README) holds every
printed Dice of Bai et al., "FS-MedSAM2: Exploring the Potential of SAM2 for Few-Shot Medical
Image Segmentation without Fine-tuning", arXiv:2409.04298 (2024), in percent. Nothing here is
typed by hand: :func:`paper_numbers` reads the file, :data:`PUBLISHED_BASELINES` are its Table 1
rows of the methods the paper compares against (AAS-DCL, RPT, GMRD on Synapse-CT; Q-Net, RPT,
GMRD on CHAOS-MRI), and :func:`published_dice` looks up the paper's own FS-MedSAM2 rows.

The paper does not say which Dice average its own rows use; its published code prints Dice pooled
over all scored slices (:data:`PAPER_DICE_VARIANT`), while the trained baselines report the mean of
per-volume Dice (:data:`BASELINE_DICE_VARIANT`).

The paper's row and column order lives here too: :data:`ORGAN_ORDER`, :data:`ORDER_ORDER` and
:func:`paper_order`, the one sort order of settings, models, orders and organs that every table
and chart follows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import pandas as pd

__all__ = [
    "ORGAN_ORDER", "ORDER_ORDER", "paper_order",
    "PAPER_CITATION", "PAPER_CSV", "PAPER_DICE_VARIANT", "BASELINE_DICE_VARIANT", "PAPER_DATASETS",
    "PAPER_ORGANS", "paper_numbers", "published_dice", "QuotedRow", "PUBLISHED_BASELINES", "baseline_table",
]

#: The paper every published number comes from.
PAPER_CITATION = ("Bai et al., \"FS-MedSAM2: Exploring the Potential of SAM2 for Few-Shot Medical Image "
                  "Segmentation without Fine-tuning\", arXiv:2409.04298 (2024)")
#: The bundled CSV, relative to the ``fsm2kit`` package.
PAPER_CSV = "data/paper/fs_medsam2_tables.csv"
#: How tables label the paper's own FS-MedSAM2 values (the paper does not name its Dice average).
PAPER_DICE_VARIANT = "as printed; the published code prints pooled Dice"
#: How tables label the baselines' values.
BASELINE_DICE_VARIANT = "as printed; the baselines report the mean of per-volume Dice"
#: The paper's dataset names -> fsm2kit's (SSL-ALPNet folder) names.
PAPER_DATASETS = {"Synapse-CT": "SABS", "CHAOS-MRI": "CHAOST2"}
#: The paper's organ names -> fsm2kit's table columns (``Mean``: the paper's Mean column).
PAPER_ORGANS = {"left_kidney": "LK", "right_kidney": "RK", "spleen": "SPLEEN", "liver": "LIVER", "mean": "Mean"}


def _printed_organ_order() -> tuple[str, ...]:
    """The organ columns in the order the paper prints them (the bundled CSV's, row by row)."""
    return tuple(o for o in dict.fromkeys(_read()["organ"].map(PAPER_ORGANS)) if o != "Mean")

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


@lru_cache(maxsize=1)
def _read() -> pd.DataFrame:
    path = resources.files("fsm2kit").joinpath(PAPER_CSV)
    with path.open("r", encoding="utf-8") as f:
        df = pd.read_csv(f, keep_default_na=False, na_values=[""], dtype={"setting": str, "order": str})
    return df


#: Organ columns of the paper-style tables, in the paper's printed order (Spleen, Liver, LK, RK;
#: read from the bundled CSV, whose cells follow the printed columns), Mean last. The four
#: evaluated organs of both data sets (SSL-ALPNet ``pa_all``); pass ``organs=`` to lay a table
#: out differently.
ORGAN_ORDER: tuple[str, ...] = _printed_organ_order()


def paper_numbers() -> pd.DataFrame:
    """Every printed Dice of the paper's Tables 1-4, one row per cell (a fresh copy).

    Returns
    -------
    DataFrame
        The CSV's columns (``table``, ``dataset``, ``method``, ``setting``, ``order``, ``model``,
        ``organ``, ``dice_percent``; see the data README) plus ``dataset_key`` (``SABS`` /
        ``CHAOST2``), ``organ_key`` (``LK``, ``RK``, ``SPLEEN``, ``LIVER``, ``Mean``) and
        ``order_key`` (the order, ``"n/a"`` for the 1Q settings and the baselines).
    """
    df = _read().copy()
    df["dataset_key"] = df["dataset"].map(PAPER_DATASETS)
    df["organ_key"] = df["organ"].map(PAPER_ORGANS)
    df["order_key"] = df["order"].fillna("n/a")
    return df


def published_dice(*, dataset: str, model: str, setting: str, order: str = "n/a",
                   table: int | None = None) -> dict[str, float]:
    """The paper's FS-MedSAM2 values of one run, ``{organ_key: percent}`` (empty if not printed).

    Parameters
    ----------
    dataset : str
        fsm2kit's name (``CHAOST2``, ``SABS``) or the paper's (``CHAOS-MRI``, ``Synapse-CT``).
    model, setting, order : str
        E.g. ``"sam2-tiny"``, ``"S1SFQ"``, ``"middle"`` (``"n/a"`` for 1S1Q and 3S1Q).
    table : int, optional
        Only this table's cells (1-4); default: the first table printing the run.
    """
    df = paper_numbers()
    df = df[df["method"] == "FS-MedSAM2"]
    sel = df[((df["dataset_key"] == dataset) | (df["dataset"] == dataset)) & (df["model"] == model)
             & (df["setting"] == setting) & (df["order_key"] == (order or "n/a"))]
    if table is not None:
        sel = sel[sel["table"] == int(table)]
    if sel.empty:
        return {}
    sel = sel[sel["table"] == sel["table"].min()]
    return dict(zip(sel["organ_key"], sel["dice_percent"].astype(float)))


@dataclass(frozen=True)
class QuotedRow:
    """A baseline row of the paper's Table 1 (values in percent as printed; never computed here).

    ``values`` maps fsm2kit's organ columns (``LK``, ``RK``, ``SPLEEN``, ``LIVER``, ``Mean``) to
    the printed Dice; ``source`` cites the table they come from.
    """

    method: str
    dataset: str
    values: tuple[tuple[str, float], ...]
    metric: str = BASELINE_DICE_VARIANT
    source: str = f"{PAPER_CITATION}, Table 1"

    def value(self, organ: str) -> float | None:
        """The printed Dice (percent) of ``organ`` (``LK``, ``RK``, ``SPLEEN``, ``LIVER`` or ``Mean``)."""
        key = organ.strip()
        key = "Mean" if key.lower() == "mean" else key.upper()
        if key not in PAPER_ORGANS.values():
            raise KeyError(f"QuotedRow has no organ {organ!r}; expected LK, RK, SPLEEN, LIVER or Mean.")
        return dict(self.values).get(key)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={v:.2f}" for k, v in self.values)
        return f"QuotedRow({self.method}, {self.dataset}: {vals} %; {self.source})"


def _baselines() -> tuple[QuotedRow, ...]:
    df = paper_numbers()
    df = df[(df["table"] == 1) & (df["method"] != "FS-MedSAM2")]
    out = []
    for (ds, method), g in df.groupby(["dataset_key", "method"], sort=False):
        out.append(QuotedRow(method, ds, tuple(zip(g["organ_key"], g["dice_percent"].astype(float)))))
    return tuple(out)


#: The methods the paper's Table 1 compares against, with their printed values (from the CSV).
PUBLISHED_BASELINES: tuple[QuotedRow, ...] = _baselines()


def baseline_table(
    baselines: Sequence[QuotedRow] = PUBLISHED_BASELINES,
    *,
    datasets: Sequence[str] | None = None,
    organs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The baseline rows as a table: index ``method``, columns (dataset, organ), Dice in percent.

    A method the paper does not print for a dataset has NaN there (e.g. AAS-DCL on CHAOS-MRI).
    """
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(b.dataset for b in baselines))
    cols = [o.upper() for o in (organs or ORGAN_ORDER)] + ["Mean"]
    methods = list(dict.fromkeys(b.method for b in baselines if b.dataset in datasets))
    by = {(b.method, b.dataset): b for b in baselines}
    data = [[(by[(m, ds)].value(o) if (m, ds) in by else None) for ds in datasets for o in cols] for m in methods]
    columns = pd.MultiIndex.from_tuples([(ds, o) for ds in datasets for o in cols], names=["dataset", "organ"])
    return pd.DataFrame(data, index=pd.Index(methods, name="method"), columns=columns, dtype=float)
