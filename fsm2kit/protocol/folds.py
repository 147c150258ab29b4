"""Folds of the protocol: the scan ids, and each fold's support scan and query scans.

``fold_split`` implements both references (PROTOCOL.md 3.1 for ``"ALP"``, 3.2 for ``"GMRD"``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral

import numpy as np

from .checks import as_int, canonical_dataset, canonical_variant

__all__ = ["SCAN_IDS", "ALP_SEP", "GMRD_FOLDS", "FoldSplit", "fold_split"]

#: Scan ids after preprocessing (PROTOCOL.md 1.1 step 1 and 1.2 step 3), numerically sorted.
SCAN_IDS: dict[str, tuple[int, ...]] = {
    "SABS": tuple(range(30)),
    "CHAOST2": (1, 2, 3, 5, 8, 10, 13, 15, 19, 20, 21, 22, 31, 32, 33, 34, 36, 37, 38, 39),
}

#: SSL-ALPNet fold separators: fold k validates ``ids[SEP[k] : SEP[k+1] + 1]`` (circularly; 3.1).
ALP_SEP: dict[str, tuple[int, ...]] = {
    "SABS": (0, 6, 12, 18, 24, 30),
    "CHAOST2": (0, 4, 8, 12, 16, 20),
}

#: GMRD folds as positions in the numerically sorted scan list, ascending (``get_folds``; 3.2).
GMRD_FOLDS: dict[str, tuple[tuple[int, ...], ...]] = {
    "SABS": tuple(tuple(range(6 * k, 6 * k + 7)) for k in range(4))
    + ((0, 24, 25, 26, 27, 28, 29),),
    "CHAOST2": tuple(tuple(range(4 * k, 4 * k + 5)) for k in range(4)) + ((0, 16, 17, 18, 19),),
}


def _ids_text(ids: Sequence[int]) -> str:
    return repr([int(i) for i in ids])


@dataclass(frozen=True)
class FoldSplit:
    """Support and query scans of one fold.

    Attributes
    ----------
    dataset : str
        ``"SABS"`` or ``"CHAOST2"``.
    fold : int
        Fold index, 0..4.
    variant : str
        ``"ALP"`` or ``"GMRD"``.
    fold_ids : tuple of int
        The fold's ordered scan list that ``supp_idx`` indexes (ALP: ``ids[SEP[k]:SEP[k+1]+1]``,
        circular; GMRD: the fold's positions, ascending).
    supp_idx : int
        Position of the support scan in ``fold_ids`` (non-negative).
    support_id : int
        The support scan id.
    query_ids : tuple of int
        The query scan ids, in ``fold_ids`` order.
    """

    dataset: str
    fold: int
    variant: str
    fold_ids: tuple[int, ...]
    supp_idx: int
    support_id: int
    query_ids: tuple[int, ...]

    def __repr__(self) -> str:
        return (
            f"FoldSplit({self.dataset} fold {self.fold}, {self.variant}: "
            f"queries={list(self.query_ids)}, support={self.support_id})"
        )


def _scan_ids(ds: str, scan_ids: Iterable[int | str] | None) -> tuple[int, ...]:
    """Validated, numerically sorted scan ids (the standard ones when ``None``)."""
    if scan_ids is None:
        return SCAN_IDS[ds]
    if isinstance(scan_ids, (str, bytes)):
        raise TypeError(f"scan_ids must be a sequence of scan ids, got the string {scan_ids!r}.")
    ids = []
    for s in scan_ids:
        if isinstance(s, str) and s.strip().isdigit():
            ids.append(int(s.strip()))
        elif isinstance(s, Integral) and not isinstance(s, (bool, np.bool_)):
            ids.append(int(s))
        else:
            raise ValueError(
                f"scan_ids: expected integer scan ids (as in image_<id>.nii.gz), got {s!r}."
            )
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"scan_ids contains duplicates: {dup}.")
    expected = ALP_SEP[ds][-1]
    if len(ids) != expected:
        raise ValueError(
            f"{ds} folds are defined for {expected} scans (SEP={list(ALP_SEP[ds])}); got "
            f"{len(ids)} scan ids {sorted(ids)}. Pass all {expected} preprocessed scans, or "
            f"scan_ids=None for the standard ids {_ids_text(SCAN_IDS[ds])}."
        )
    return tuple(sorted(ids))


def fold_split(
    dataset: str,
    fold: int,
    *,
    variant: str = "ALP",
    scan_ids: Iterable[int | str] | None = None,
    supp_idx: int | None = None,
) -> FoldSplit:
    """Support scan and query scans of a fold (PROTOCOL.md 3.1 and 3.2).

    Both variants take a fold's ordered scan list, pick the support at position ``supp_idx``
    and use the remaining scans as queries. They differ in the list and the default position:

    - ``"ALP"`` (SSL-ALPNet, FS-MedSAM2): the list is ``ids[SEP[k] : SEP[k+1] + 1]`` with
      circular indexing (``CircularList``), i.e. the fold's scans plus the first scan of the
      next fold. The default ``supp_idx=-1`` (the config default, the same scan as the
      scripts' ``support_idx=[6]`` / ``[4]``) makes that extra scan the support, so the five
      folds' query sets partition all scans.
    - ``"GMRD"``: the list is the scans at positions ``GMRD_FOLDS[dataset][k]`` of the sorted
      id list, ascending; default ``supp_idx=0`` (``config.py:49``; GMRD's ``evaluate.sh`` uses
      2 for CHAOST2).

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
    fold : int
        0..4.
    variant : {"ALP", "GMRD"}, keyword-only
    scan_ids : iterable of int or str, optional, keyword-only
        The scan ids found on disk (e.g. the ``<id>`` of ``image_<id>.nii.gz``); they are
        sorted numerically. Must hold as many scans as the standard dataset (30 / 20).
        Default: :data:`SCAN_IDS` ``[dataset]``.
    supp_idx : int, optional, keyword-only
        Position of the support in the fold list (negative counts from the end).
        Default: the variant's default (ALP ``-1``, GMRD ``0``).

    Returns
    -------
    FoldSplit

    Examples
    --------
    >>> fold_split("CHAOST2", 0)
    FoldSplit(CHAOST2 fold 0, ALP: queries=[1, 2, 3, 5], support=8)
    >>> fold_split("CHAOST2", 4, variant="GMRD", supp_idx=2).support_id
    37
    """
    ds = canonical_dataset(dataset)
    v = canonical_variant(variant)
    ids = _scan_ids(ds, scan_ids)
    k = as_int("fold", fold)
    n_folds = len(ALP_SEP[ds]) - 1
    if not 0 <= k < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1} for {ds}; got {k}.")
    if v == "ALP":
        sep = ALP_SEP[ds]
        ordered = tuple(ids[i % len(ids)] for i in range(sep[k], sep[k + 1] + 1))
        default = -1
    else:
        ordered = tuple(ids[p] for p in GMRD_FOLDS[ds][k])
        default = 0
    idx = default if supp_idx is None else as_int("supp_idx", supp_idx)
    if not -len(ordered) <= idx < len(ordered):
        raise ValueError(
            f"supp_idx={idx} is outside the {len(ordered)}-scan list of {ds} fold {k} "
            f"({v}: {list(ordered)}); use -{len(ordered)}..{len(ordered) - 1}."
        )
    idx %= len(ordered)
    queries = ordered[:idx] + ordered[idx + 1 :]
    return FoldSplit(
        dataset=ds,
        fold=k,
        variant=v,
        fold_ids=ordered,
        supp_idx=idx,
        support_id=ordered[idx],
        query_ids=queries,
    )
