"""Dice and the two ways the literature averages it (PROTOCOL.md section 4).

Arrays in, numbers out; tables in, tables out:

- :func:`dice`, :func:`dice_counts` and :class:`DiceCounts` work on binary masks of any shape;
- :func:`pooled_dice` is ``2*sum(TP) / (2*sum(TP) + sum(FP) + sum(FN))`` over many slices and
  scans, the number the published FS-MedSAM2 notebooks print (a micro average, PROTOCOL.md 4.3);
- :func:`mean_volume_dice` is the mean over query volumes of each volume's 3D Dice, what
  SSL-ALPNet and GMRD report (PROTOCOL.md 4.1, 4.2);
- :func:`per_volume_dice` and :func:`summarize_dice` compute both from a long-form per-slice
  pandas table.

The two averages differ (PROTOCOL.md section 8 item 14: scans with Dice 0.9 and 0.5 give 0.70
as a mean of volumes and 0.8333 pooled), so a results table must say which one it reports.

Beyond Dice (what reviewers ask for):

- :func:`surface_metrics` (:func:`hd95`, :func:`normalized_surface_dice`): the 95th-percentile
  symmetric Hausdorff distance and the normalized surface Dice at a tolerance of ``tau`` mm, in
  world units from the voxel spacing, by MONAI's ``compute_hausdorff_distance`` (percentile 95)
  and ``compute_surface_dice`` (imported when first called: ``import fsm2kit`` loads no torch);
- :func:`extent_errors` and :func:`slice_extent_flags`: false-positive slices beyond the ground
  truth's z-extent (over-propagation) and slices missed inside it;
- :func:`summarize_metrics`: mean, standard deviation and count of any per-volume metric.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import pandas as pd

__all__ = [
    "DiceCounts",
    "dice_counts",
    "dice",
    "slice_dice",
    "pooled_dice",
    "mean_volume_dice",
    "per_volume_dice",
    "summarize_dice",
    "METRIC_POOLED",
    "METRIC_MEAN_PER_VOLUME",
    "NSD_TOLERANCE_MM",
    "SURFACE_METRICS",
    "hd95",
    "normalized_surface_dice",
    "surface_metrics",
    "extent_errors",
    "slice_extent_flags",
    "summarize_metrics",
]

#: ``metric`` value of :func:`summarize_dice` rows pooled over all slices (FS-MedSAM2 notebooks).
METRIC_POOLED = "pooled"
#: ``metric`` value of :func:`summarize_dice` rows averaged over volumes (SSL-ALPNet, GMRD).
METRIC_MEAN_PER_VOLUME = "mean_per_volume"


# --------------------------------------------------------------------------- arrays


def _as_binary(name: str, a: object) -> np.ndarray:
    """A boolean view of a binary-like array (bool, or numbers that are all 0 or 1)."""
    arr = np.asarray(a)
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(
            f"{name}: expected a binary mask (bool or 0/1 numbers), got dtype {arr.dtype}."
        )
    ok = (arr == 0) | (arr == 1)
    if not ok.all():
        bad = np.unique(arr[~ok])[:5].tolist()
        raise ValueError(
            f"{name} must be a binary mask (bool, or numbers that are all 0 or 1); found values "
            f"such as {bad}. Threshold it first: `probs > 0.5`, `logits > 0`, or "
            "`label == class_id` for a label map."
        )
    return arr.astype(bool)


def _pair(pred: object, target: object) -> tuple[np.ndarray, np.ndarray]:
    p = _as_binary("pred", pred)
    t = _as_binary("target", target)
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target differ in shape: {p.shape} vs {t.shape}. They must cover the same "
            "pixels; resize the prediction to the label's grid first."
        )
    return p, t


def _count(name: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Real):
        raise TypeError(f"DiceCounts.{name} must be a count (integer), got {value!r}.")
    if not isinstance(value, Integral):
        if not (math.isfinite(float(value)) and float(value).is_integer()):
            raise ValueError(f"DiceCounts.{name} must be a whole number, got {value!r}.")
    v = int(value)
    if v < 0:
        raise ValueError(f"DiceCounts.{name} must be >= 0, got {v}.")
    return v


@dataclass(frozen=True)
class DiceCounts:
    """Foreground true positives, false positives and false negatives of one or more masks.

    Counts add up (``a + b``, and ``sum(list_of_counts)``), so slices can be pooled into a
    volume and volumes into a data set.

    Attributes
    ----------
    tp, fp, fn : int
        Non-negative pixel counts.
    """

    tp: int = 0
    fp: int = 0
    fn: int = 0

    def __post_init__(self) -> None:
        for name in ("tp", "fp", "fn"):
            object.__setattr__(self, name, _count(name, getattr(self, name)))

    def __add__(self, other: object) -> DiceCounts:
        if not isinstance(other, DiceCounts):
            return NotImplemented
        return DiceCounts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn)

    def __radd__(self, other: object) -> DiceCounts:
        # sum() starts from 0
        if isinstance(other, Integral) and not isinstance(other, bool) and other == 0:
            return self
        return NotImplemented

    def dice(self, *, empty: float = float("nan")) -> float:
        """``2TP / (2TP + FP + FN)``; ``empty`` when prediction and target are both empty."""
        denom = 2 * self.tp + self.fp + self.fn
        if denom == 0:
            return float(empty)
        return 2.0 * self.tp / denom


def dice_counts(pred: np.ndarray, target: np.ndarray) -> DiceCounts:
    """Foreground TP, FP and FN of a predicted mask against a target mask.

    Parameters
    ----------
    pred, target : array_like, same shape
        Binary masks: bool, or numbers that are all 0 or 1 (anything else raises; threshold
        probabilities or logits first).

    Returns
    -------
    DiceCounts
    """
    p, t = _pair(pred, target)
    tp = int(np.count_nonzero(p & t))
    return DiceCounts(tp=tp, fp=int(np.count_nonzero(p)) - tp, fn=int(np.count_nonzero(t)) - tp)


def dice(pred: np.ndarray, target: np.ndarray, *, empty: float = float("nan")) -> float:
    """Dice coefficient ``2|A ∩ B| / (|A| + |B|)`` of two binary masks.

    Parameters
    ----------
    pred, target : array_like, same shape
        Binary masks (bool, or numbers that are all 0 or 1).
    empty : float, keyword-only
        Returned when both masks are empty (default NaN: undefined). Use 1.0 to count an
        empty-vs-empty slice as perfect.

    Returns
    -------
    float
    """
    return dice_counts(pred, target).dice(empty=empty)


def slice_dice(tp, fp, fn):
    """Per-slice Dice from counts, by the one Dice (:meth:`DiceCounts.dice`).

    ``2TP / (2TP + FP + FN)``; NaN where prediction and target are both empty. Works on numbers
    and on arrays / Series of counts (returns an array of the broadcast shape).
    """
    arrays = np.broadcast_arrays(*(np.asarray(x) for x in (tp, fp, fn)))
    if arrays[0].ndim == 0:
        return DiceCounts(*(a.item() for a in arrays)).dice()
    flat = zip(*(a.ravel().tolist() for a in arrays))
    return np.fromiter((DiceCounts(*c).dice() for c in flat), dtype=float, count=arrays[0].size).reshape(
        arrays[0].shape)


def _as_counts(item: object) -> DiceCounts:
    if isinstance(item, DiceCounts):
        return item
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
        return DiceCounts(*item)
    raise TypeError(f"Expected DiceCounts or a (tp, fp, fn) triple, got {item!r}.")


def pooled_dice(counts: Iterable[DiceCounts], *, empty: float = float("nan")) -> float:
    """Dice pooled over many masks: ``2ΣTP / (2ΣTP + ΣFP + ΣFN)``.

    This is what the FS-MedSAM2 notebooks print per class (one accumulator over every scored
    slice of every query scan, PROTOCOL.md 4.3). Large organs and long scans weigh more.

    Parameters
    ----------
    counts : iterable of DiceCounts or (tp, fp, fn)
        Per-slice or per-volume counts.
    empty : float, keyword-only
        Returned when the pooled prediction and target are both empty.

    Returns
    -------
    float
    """
    items = [_as_counts(c) for c in counts]
    if not items:
        raise ValueError("pooled_dice got no counts; pass at least one DiceCounts.")
    return sum(items, DiceCounts()).dice(empty=empty)


def mean_volume_dice(
    per_volume_counts: Iterable[DiceCounts] | Mapping[object, DiceCounts],
    *,
    empty: float = float("nan"),
) -> float:
    """Mean over volumes of each volume's 3D Dice (SSL-ALPNet and GMRD class Dice).

    Each item holds one query volume's counts summed over its scored slices; its Dice is
    ``2ΣTP / (2ΣTP + ΣFP + ΣFN)`` (PROTOCOL.md 4.1, 4.2), and the result is the plain mean.

    Parameters
    ----------
    per_volume_counts : iterable or mapping of DiceCounts or (tp, fp, fn)
        One entry per volume (a mapping's values are used, e.g. ``{case_id: counts}``).
    empty : float, keyword-only
        Dice of a volume whose prediction and target are both empty. The default NaN makes
        the mean NaN, so such a volume (impossible under the protocol, where the scored range
        comes from the ground truth) does not go unnoticed.

    Returns
    -------
    float
    """
    values = (
        per_volume_counts.values()
        if isinstance(per_volume_counts, Mapping)
        else per_volume_counts
    )
    scores = [_as_counts(c).dice(empty=empty) for c in values]
    if not scores:
        raise ValueError("mean_volume_dice got no volumes; pass one DiceCounts per volume.")
    return float(np.mean(scores))


# --------------------------------------------------------------------------- tables


def _keys(by: str | Sequence[str]) -> list[str]:
    if isinstance(by, str):
        return [by]
    keys = list(by)
    if not all(isinstance(k, str) for k in keys):
        raise TypeError(f"by must be a column name or a sequence of column names; got {by!r}.")
    return keys


def _unit_keys(df: pd.DataFrame, by: list[str], volume_key: list[str]) -> list[str]:
    extra = ["fold"] if "fold" in df.columns else []
    return list(dict.fromkeys([*by, *extra, *volume_key, "label"]))


def _check_table(df: object, by: list[str], volume_key: list[str]) -> list[str]:
    """Validate a per-slice table and return the columns that identify one volume."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(
            f"Expected a pandas DataFrame of per-slice counts, got {type(df).__name__}."
        )
    required = list(dict.fromkeys([*by, *volume_key, "label", "z", "tp", "fp", "fn"]))
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(
            f"The per-slice table lacks columns {missing}; it has {list(df.columns)}. Needed: "
            f"{required} (one row per scored query slice). Add the columns, or pass by=... with "
            "the grouping columns the table has."
        )
    for c in ("tp", "fp", "fn"):
        col = df[c]
        if not pd.api.types.is_numeric_dtype(col) or col.isna().any() or (col < 0).any():
            raise ValueError(f"Column {c!r} must hold non-negative counts without NaN.")
    units = _unit_keys(df, by, volume_key)
    dup = df.duplicated(subset=[*units, "z"], keep=False)
    if dup.any():
        first = df.loc[dup, [*units, "z"]].iloc[0].to_dict()
        raise ValueError(
            f"{int(dup.sum())} rows share the same slice {first}: each (volume, z) must appear "
            f"once per group of {by}. If the table holds several runs or settings, add the "
            "column that tells them apart to by=."
        )
    return units


def per_volume_dice(
    df: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("setting", "label_name"),
    volume_key: str | Sequence[str] = "case_id",
    empty: float = float("nan"),
) -> pd.DataFrame:
    """3D Dice of every query volume from a long-form per-slice table.

    A volume is one (``volume_key``, ``label``) pair within a ``by`` group; when the table has
    a ``fold`` column it is part of the key too (under GMRD folds a scan can be a query in two
    folds). Its counts are summed over its scored slices (PROTOCOL.md 4.1).

    Parameters
    ----------
    df : DataFrame
        One row per scored slice with columns ``volume_key``, ``label``, ``z``, ``tp``, ``fp``,
        ``fn`` and the ``by`` columns.
    by : str or sequence of str, keyword-only
        Grouping columns (default ``("setting", "label_name")``).
    volume_key : str or sequence of str, keyword-only
        Column(s) naming the query scan (default ``"case_id"``).
    empty : float, keyword-only
        Dice of a volume with empty prediction and target.

    Returns
    -------
    DataFrame
        One row per volume: the key columns, ``tp``, ``fp``, ``fn``, ``n_slices``, ``dice``.
    """
    keys, vk = _keys(by), _keys(volume_key)
    units = _check_table(df, keys, vk)
    g = df.groupby(units, dropna=False, sort=True)
    out = g[["tp", "fp", "fn"]].sum().astype("int64")
    out["n_slices"] = g.size().astype("int64")
    denom = 2 * out["tp"] + out["fp"] + out["fn"]
    out["dice"] = np.where(denom > 0, 2 * out["tp"] / denom.where(denom > 0, 1), float(empty))
    return out.reset_index()


def summarize_dice(
    df: pd.DataFrame,
    *,
    by: str | Sequence[str] = ("setting", "label_name"),
    volume_key: str | Sequence[str] = "case_id",
    empty: float = float("nan"),
) -> pd.DataFrame:
    """Both Dice averages per group, as a long-form table (PROTOCOL.md section 4).

    For each ``by`` group two rows are returned:

    - ``metric="pooled"``: ``2ΣTP / (2ΣTP + ΣFP + ΣFN)`` over all slices of all volumes in
      the group, as the FS-MedSAM2 notebooks print it (4.3). ``std_per_volume`` is NaN.
    - ``metric="mean_per_volume"``: the mean over volumes of each volume's 3D Dice, as
      SSL-ALPNet and GMRD report it (4.1, 4.2), with ``std_per_volume`` the population standard
      deviation across volumes (``ddof=0``, as ``numpy.std`` in SSL-ALPNet's ``get_mDice``).

    Groups follow ``by`` only: to get per-fold numbers (what SSL-ALPNet's code prints) include
    ``"fold"`` in ``by``; without it, volumes of all folds are averaged or pooled together.
    With SSL-ALPNet folds (equal numbers of query scans per fold) the mean over all volumes
    equals the mean of the per-fold means.

    Parameters
    ----------
    df : DataFrame
        One row per scored slice; see :func:`per_volume_dice`.
    by : str or sequence of str, keyword-only
        Grouping columns (default ``("setting", "label_name")``); ``()`` for one overall group.
    volume_key : str or sequence of str, keyword-only
        Column(s) naming the query scan (default ``"case_id"``).
    empty : float, keyword-only
        Dice of a volume (or pooled group) with empty prediction and target; NaN by default,
        and a NaN volume makes its group's mean NaN.

    Returns
    -------
    DataFrame
        Columns ``[*by, "metric", "dice", "std_per_volume", "n_volumes", "n_slices"]``.
    """
    keys, vk = _keys(by), _keys(volume_key)
    pv = per_volume_dice(df, by=keys, volume_key=vk, empty=empty)
    tmp = "__all__"
    gkeys = keys if keys else [tmp]
    frame, vols = df, pv
    if not keys:
        frame = df.assign(**{tmp: 0})
        vols = pv.assign(**{tmp: 0})

    g = frame.groupby(gkeys, dropna=False, sort=True)
    pooled = g[["tp", "fp", "fn"]].sum()
    denom = 2 * pooled["tp"] + pooled["fp"] + pooled["fn"]
    pooled_rows = pd.DataFrame(
        {
            "metric": METRIC_POOLED,
            "dice": np.where(denom > 0, 2 * pooled["tp"] / denom.where(denom > 0, 1), float(empty)),
            "std_per_volume": np.nan,
            "n_volumes": vols.groupby(gkeys, dropna=False, sort=True).size().reindex(pooled.index),
            "n_slices": g.size(),
        },
        index=pooled.index,
    )

    vg = vols.groupby(gkeys, dropna=False, sort=True)["dice"]
    mean_rows = pd.DataFrame(
        {
            "metric": METRIC_MEAN_PER_VOLUME,
            "dice": vg.agg(lambda s: float(np.mean(s.to_numpy()))),
            "std_per_volume": vg.agg(lambda s: float(np.std(s.to_numpy()))),
            "n_volumes": vg.size(),
            "n_slices": vols.groupby(gkeys, dropna=False, sort=True)["n_slices"].sum(),
        }
    )

    out = pd.concat([mean_rows, pooled_rows]).reset_index()
    out = out.sort_values([*gkeys, "metric"], kind="stable").reset_index(drop=True)
    if not keys:
        out = out.drop(columns=[tmp])
    out["n_volumes"] = out["n_volumes"].astype("int64")
    out["n_slices"] = out["n_slices"].astype("int64")
    return out[[*keys, "metric", "dice", "std_per_volume", "n_volumes", "n_slices"]]


# --------------------------------------------------------------------------- beyond Dice

#: Default tolerance of the normalized surface Dice, in mm.
NSD_TOLERANCE_MM = 2.0
#: The per-volume metrics beyond Dice (columns of ``volumes.csv``), lower is better except ``nsd``.
SURFACE_METRICS = ("hd95_mm", "nsd", "fp_slices", "missed_slices")


def _spacing(spacing, ndim: int) -> tuple[float, ...]:
    sp = tuple(float(v) for v in np.ravel(np.asarray(spacing, dtype=float)))
    if len(sp) != ndim or not all(math.isfinite(v) and v > 0 for v in sp):
        raise ValueError(f"spacing must be {ndim} positive numbers in mm (one per axis of the masks, in their "
                         f"order: (z, y, x) for a volume, (y, x) for a slice), got {spacing!r}.")
    return sp


def _one_hot(mask: np.ndarray):
    import torch

    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return torch.cat([1 - t, t], dim=1)


def _monai(kind: str, pred: np.ndarray, target: np.ndarray, spacing: tuple[float, ...], tau: float) -> float:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty masks and deprecation notes: handled by the callers
        from monai.metrics import compute_hausdorff_distance, compute_surface_dice

        if kind == "hd95":
            v = compute_hausdorff_distance(_one_hot(pred), _one_hot(target), include_background=False,
                                           percentile=95, spacing=list(spacing))
        else:
            v = compute_surface_dice(_one_hot(pred), _one_hot(target), [float(tau)], include_background=False,
                                     spacing=list(spacing))
    return float(v.reshape(-1)[0].item())


def hd95(pred: np.ndarray, target: np.ndarray, spacing) -> float:
    """95th-percentile symmetric Hausdorff distance between the masks' surfaces, in mm.

    MONAI's ``compute_hausdorff_distance(percentile=95)`` with the voxel ``spacing``: surfaces are
    the mask voxels with a background neighbour, distances are Euclidean in world units, and the
    result is the larger of the two directed 95th percentiles.

    Parameters
    ----------
    pred, target : array_like, same shape (2D or 3D)
        Binary masks.
    spacing : sequence of float
        Voxel size in mm along each axis, in the masks' axis order ((z, y, x) for a volume).

    Returns
    -------
    float
        NaN when both masks are empty; ``inf`` when exactly one is (no surface to measure from).
    """
    p, t = _pair(pred, target)
    sp = _spacing(spacing, p.ndim)
    if not p.any() or not t.any():
        return float("nan") if not (p.any() or t.any()) else float("inf")
    return _monai("hd95", p, t, sp, 0.0)


def normalized_surface_dice(pred: np.ndarray, target: np.ndarray, spacing, *,
                            tolerance: float = NSD_TOLERANCE_MM) -> float:
    """Normalized surface Dice at ``tolerance`` mm (Nikolov et al. 2021), in [0, 1].

    MONAI's ``compute_surface_dice``: the surface voxels of both masks that lie within
    ``tolerance`` mm of the other mask's surface, over all surface voxels of both.

    Returns
    -------
    float
        NaN when both masks are empty; 0 when exactly one is.
    """
    p, t = _pair(pred, target)
    sp = _spacing(spacing, p.ndim)
    if not (float(tolerance) >= 0 and math.isfinite(float(tolerance))):
        raise ValueError(f"tolerance must be a finite number of mm >= 0, got {tolerance!r}.")
    if not p.any() or not t.any():
        return float("nan") if not (p.any() or t.any()) else 0.0
    return _monai("nsd", p, t, sp, float(tolerance))


def surface_metrics(pred: np.ndarray, target: np.ndarray, spacing, *,
                    tolerance: float = NSD_TOLERANCE_MM) -> dict[str, float]:
    """``{"hd95_mm": ..., "nsd": ...}`` of two masks (:func:`hd95`, :func:`normalized_surface_dice`).

    ``spacing`` None gives NaN for both: without the voxel size no distance in mm exists (the
    published npz episode dumps carry none), and none is invented.
    """
    if spacing is None:
        _pair(pred, target)
        return {"hd95_mm": float("nan"), "nsd": float("nan")}
    return {"hd95_mm": hd95(pred, target, spacing),
            "nsd": normalized_surface_dice(pred, target, spacing, tolerance=tolerance)}


def extent_errors(z, gt_px, pred_px) -> dict[str, int]:
    """Over-propagation and gaps of one volume, from per-slice pixel counts.

    Parameters
    ----------
    z : sequence of int
        The slices' z.
    gt_px, pred_px : sequence of int
        Ground-truth and predicted foreground pixels of each slice.

    Returns
    -------
    dict
        ``fp_slices``: slices with a prediction outside the ground truth's z-extent
        ``[min z, max z]`` of its non-empty slices (all predicted slices when the ground truth is
        empty); ``missed_slices``: slices inside that extent where the ground truth has the organ
        and the prediction is empty.
    """
    z, g, p = (np.asarray(a) for a in (z, gt_px, pred_px))
    if not (z.shape == g.shape == p.shape) or z.ndim != 1:
        raise ValueError(f"z, gt_px and pred_px must be 1D of one length, got {z.shape}, {g.shape}, {p.shape}.")
    fp, missed = _extent_flags(z, g, p)
    return {"fp_slices": int(fp.sum()), "missed_slices": int(missed.sum())}


def _extent_flags(z: np.ndarray, g: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    has_gt = g > 0
    if has_gt.any():
        lo, hi = z[has_gt].min(), z[has_gt].max()
        inside = (z >= lo) & (z <= hi)
    else:
        inside = np.zeros(z.shape, dtype=bool)
    return (p > 0) & ~inside, has_gt & (p == 0) & inside


def slice_extent_flags(df: pd.DataFrame, *, volume_keys: Sequence[str]) -> pd.DataFrame:
    """Columns ``fp_slice`` and ``missed_slice`` (bool) of a per-slice table (:func:`extent_errors`
    per volume, a volume being one group of ``volume_keys``); the table's index is kept."""
    fp = pd.Series(False, index=df.index)
    missed = pd.Series(False, index=df.index)
    for _, g in df.groupby(list(volume_keys), dropna=False, sort=False):
        a, b = _extent_flags(g["z"].to_numpy(), g["gt_px"].to_numpy(), g["pred_px"].to_numpy())
        fp.loc[g.index] = a
        missed.loc[g.index] = b
    return pd.DataFrame({"fp_slice": fp.astype(bool), "missed_slice": missed.astype(bool)})


def summarize_metrics(volumes: pd.DataFrame, *, by: str | Sequence[str],
                      metrics: Sequence[str] = SURFACE_METRICS) -> pd.DataFrame:
    """Mean, standard deviation (``ddof=0``, as the Dice's ``std_per_volume``) and count of
    per-volume metrics per group.

    NaN values (no spacing, or both masks empty) are left out of the mean and counted apart
    (``n_nan``); an ``inf`` HD95 (an empty prediction) makes its group's mean ``inf``.

    Returns
    -------
    DataFrame
        Columns ``[*by, "measure", "mean", "std", "n_volumes", "n_nan"]``, one row per group and metric.
    """
    keys = _keys(by)
    rows = []
    missing = [m for m in metrics if m not in volumes.columns]
    if missing:
        raise ValueError(f"The volumes table lacks columns {missing}; it has {list(volumes.columns)}.")
    groups = volumes.groupby(keys, dropna=False, sort=True) if keys else [((), volumes)]
    for k, g in groups:
        k = k if isinstance(k, tuple) else (k,)
        for m in metrics:
            v = g[m].to_numpy(dtype=float)
            ok = v[~np.isnan(v)]
            with np.errstate(invalid="ignore"):
                mean = float(ok.mean()) if ok.size else float("nan")
                std = float(ok.std(ddof=0)) if ok.size and np.isfinite(ok).all() else (
                    float("nan") if not ok.size else float("inf"))
            rows.append({**dict(zip(keys, k)), "measure": m, "mean": mean, "std": std,
                         "n_volumes": int(ok.size), "n_nan": int(v.size - ok.size)})
    return pd.DataFrame(rows, columns=[*keys, "measure", "mean", "std", "n_volumes", "n_nan"])
