"""The few-shot evaluation protocol of SSL-ALPNet / GMRD / FS-MedSAM2 (see PROTOCOL.md).

Everything here is a small pure function of scan ids, label volumes or numbers, so each rule of
the protocol can be checked on its own:

- dataset constants: scan ids, label ids and names, label groups (PROTOCOL.md sections 1-2);
- folds, support scan and query scans (section 3.1 for ``"ALP"``, 3.2 for ``"GMRD"``);
- scored query slices (3.3), support slices and query chunks (3.4);
- :func:`build_episode`, which puts these together into an :class:`~fsm2kit.episode.Episode`;
- the preprocessing formulas that tests can pin down (CT window, resampled size, CHAOS PNG ids).

Where the reference implementations disagree, each variant is available by name:
``variant="ALP"`` (SSL-ALPNet, and therefore the published FS-MedSAM2 dumps) or ``variant="GMRD"``.
The support-slice and ALP chunk rules are computed with the references' own floating-point
formulas, so episodes match them exactly for any ``npart``; for ``npart = 3`` these equal the
integer closed forms given in PROTOCOL.md (tested exhaustively).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from ..core.episode import Episode, Support

__all__ = [
    # constants
    "DATASET_LABELS",
    "DATASETS",
    "PROTOCOL_VARIANTS",
    "SCAN_IDS",
    "ALP_SEP",
    "GMRD_FOLDS",
    "PA_ALL",
    "LABEL_GROUPS",
    "EVALUATED_CLASSES",
    "LABEL_ALIASES",
    "CT_WINDOW",
    "SABS_BORDER",
    "SABS_SPACING_FACTOR",
    "CHAOS_GRAY_VALUES",
    "CHAOS_GRAY_RANGES",
    # labels
    "resolve_label",
    "label_name",
    "tested_classes",
    # folds
    "FoldSplit",
    "fold_split",
    # slices and chunks
    "class_slices",
    "scored_range",
    "alp_support_pcts",
    "alp_support_index",
    "support_slices",
    "alp_chunk_index",
    "gmrd_chunk_boundaries",
    "chunk_ids",
    # episodes
    "build_episode",
    # preprocessing formulas
    "ct_window",
    "alp_resampled_size",
    "chaos_gray_to_label",
]

#: Label ids of the preprocessed datasets (PROTOCOL.md section 2). Names follow SSL-ALPNet.
DATASET_LABELS: dict[str, dict[int, str]] = {
    "SABS": {
        0: "BG",
        1: "SPLEEN",
        2: "RK",
        3: "LK",
        4: "GALLBLADDER",
        5: "ESOPHAGUS",
        6: "LIVER",
        7: "STOMACH",
        8: "AORTA",
        9: "IVC",
        10: "PS_VEIN",
        11: "PANCREAS",
        12: "AG_R",
        13: "AG_L",
    },
    "CHAOST2": {0: "BG", 1: "LIVER", 2: "RK", 3: "LK", 4: "SPLEEN"},
}

# --------------------------------------------------------------------------- constants

#: The two datasets of the protocol.
DATASETS: tuple[str, ...] = ("SABS", "CHAOST2")

#: Protocol variants: SSL-ALPNet (also used by the FS-MedSAM2 dumps) and GMRD (PROTOCOL.md sec. 7).
PROTOCOL_VARIANTS: tuple[str, ...] = ("ALP", "GMRD")

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

#: The four evaluated organs per dataset, ``pa_all`` of SSL-ALPNet (section 2).
PA_ALL: dict[str, frozenset[int]] = {
    "SABS": frozenset({1, 2, 3, 6}),
    "CHAOST2": frozenset({1, 2, 3, 4}),
}

#: SSL-ALPNet label groups; a run with ``label_sets=k`` tests ``PA_ALL - LABEL_GROUPS[k]``.
LABEL_GROUPS: dict[str, tuple[frozenset[int], ...]] = {
    "SABS": (frozenset({1, 6}), frozenset({2, 3})),
    "CHAOST2": (frozenset({1, 4}), frozenset({2, 3})),
}

#: The evaluated class ids per dataset, ascending (spleen, RK, LK, liver / liver, RK, LK, spleen).
EVALUATED_CLASSES: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in PA_ALL.items()}

#: Accepted alternative class names (lower case, ``_`` separated) -> canonical name.
LABEL_ALIASES: dict[str, str] = {
    "right_kidney": "RK",
    "kidney_right": "RK",
    "kidney_r": "RK",
    "r_kidney": "RK",
    "left_kidney": "LK",
    "kidney_left": "LK",
    "kidney_l": "LK",
    "l_kidney": "LK",
    "gall_bladder": "GALLBLADDER",
    "oesophagus": "ESOPHAGUS",
    "inferior_vena_cava": "IVC",
    "portal_vein": "PS_VEIN",
    "portal_and_splenic_vein": "PS_VEIN",
    "right_adrenal": "AG_R",
    "right_adrenal_gland": "AG_R",
    "left_adrenal": "AG_L",
    "left_adrenal_gland": "AG_L",
}

#: The SABS CT intensity window in HU (PROTOCOL.md 1.1 step 1).
CT_WINDOW: tuple[float, float] = (-125.0, 275.0)

#: Pixels removed on each in-plane side of SABS slices before resampling (``BD_BIAS``, 1.1 step 2).
SABS_BORDER: int = 32

#: In-plane spacing factor of SABS resampling, ``(512 - 2*32) / 256 = 1.75`` (``SPA_FAC``).
SABS_SPACING_FACTOR: float = (512 - 2 * SABS_BORDER) / 256

#: CHAOS PNG gray values of BG, liver, right kidney, left kidney, spleen (1.2 step 2).
CHAOS_GRAY_VALUES: tuple[int, ...] = (0, 63, 126, 189, 252)

#: Gray-value ranges of the CHAOS documentation, as (low, high, CHAOST2 id), inclusive (section 2).
CHAOS_GRAY_RANGES: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (55, 70, 1),
    (110, 135, 2),
    (175, 200, 3),
    (240, 255, 4),
)


# --------------------------------------------------------------------------- validation helpers


def _dataset(dataset: str) -> str:
    """Canonical dataset name (case-insensitive match against :data:`DATASETS`)."""
    if isinstance(dataset, str):
        for name in DATASETS:
            if dataset.strip().upper() == name:
                return name
    raise ValueError(
        f"Unknown dataset {dataset!r}: expected one of {list(DATASETS)} "
        "(SABS = Synapse/BTCV abdominal CT, CHAOST2 = CHAOS MR T2-SPIR)."
    )


def _variant(variant: str) -> str:
    """Canonical protocol variant (case-insensitive match against :data:`PROTOCOL_VARIANTS`)."""
    if isinstance(variant, str):
        for name in PROTOCOL_VARIANTS:
            if variant.strip().upper() == name:
                return name
    raise ValueError(
        f"Unknown protocol variant {variant!r}: expected one of {list(PROTOCOL_VARIANTS)} "
        '("ALP" = SSL-ALPNet and the FS-MedSAM2 dumps, "GMRD" = GMRD; see PROTOCOL.md section 7).'
    )


def _int(name: str, value: object) -> int:
    """An integer argument (numpy integers accepted, bool refused)."""
    if type(value) is int:  # fast path
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    return int(value)


def _check_npart(npart: object) -> int:
    n = _int("npart", npart)
    if n < 1 or n % 2 == 0:
        raise ValueError(
            f"npart must be a positive odd integer (SSL-ALPNet asserts an odd number of chunks, "
            f"ManualAnnoDatasetv2.py:360); got {n}. Use npart=3, the published setting."
        )
    return n


def _check_volume(name: str, a: object, *, finite: bool = True) -> np.ndarray:
    """A (Z, H, W) numeric array, optionally checked for NaN/inf."""
    arr = np.asarray(a)
    if arr.ndim != 3:
        hint = " For a single 2D slice use `slice[None]`." if arr.ndim == 2 else ""
        raise ValueError(f"{name}: expected a (Z, H, W) volume, got shape {arr.shape}.{hint}")
    if not (arr.dtype == bool or np.issubdtype(arr.dtype, np.number)):
        raise TypeError(f"{name}: expected a numeric or boolean array, got dtype {arr.dtype}.")
    if finite and np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(
            f"{name} contains {bad} NaN or inf values; clean the input first "
            "(e.g. np.nan_to_num, or check the file that was loaded)."
        )
    return arr


def _norm_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _ids_text(ids: Sequence[int]) -> str:
    return repr([int(i) for i in ids])


# --------------------------------------------------------------------------- labels


def label_name(dataset: str, label: int | str) -> str:
    """Canonical class name of ``label`` in ``dataset`` (e.g. ``label_name("SABS", 6) == "LIVER"``).

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
        Dataset name (case-insensitive).
    label : int or str
        Anything :func:`resolve_label` accepts.

    Returns
    -------
    str
        The name in :data:`DATASET_LABELS`.
    """
    ds = _dataset(dataset)
    return DATASET_LABELS[ds][resolve_label(ds, label)]


def resolve_label(dataset: str, name_or_id: int | str) -> int:
    """The class id of a label given by id, name or alias.

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
        Dataset name (case-insensitive). The same organ has different ids in the two datasets
        (liver is 6 in SABS and 1 in CHAOST2; PROTOCOL.md section 2).
    name_or_id : int or str
        A class id (``6``, ``np.int64(6)``, ``6.0``, ``"6"``), a canonical name in any case
        (``"liver"``, ``"RK"``), or an alias from :data:`LABEL_ALIASES` (``"right_kidney"``,
        ``"kidney-left"``, ``"left kidney"``). Spaces and hyphens count as underscores.

    Returns
    -------
    int
        The class id in :data:`DATASET_LABELS` ``[dataset]``.

    Raises
    ------
    ValueError
        For background (0), an id or name not in the dataset; the message lists the valid ones.
    TypeError
        For values that are neither integers nor strings.
    """
    ds = _dataset(dataset)
    names = DATASET_LABELS[ds]
    valid = ", ".join(f"{n} ({i})" for i, n in names.items() if i != 0)

    def unknown(reason: str) -> ValueError:
        return ValueError(
            f"{reason} Valid {ds} classes: {valid}. Names are case-insensitive; aliases such as "
            "'right_kidney'/'kidney_right'/'rk' and 'left_kidney'/'lk' are accepted."
        )

    value: object = name_or_id
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"Class must be an id or a name, got the boolean {value!r}.")
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not float(value).is_integer():
            raise unknown(f"Class id {value!r} is not an integer.")
        value = int(value)
    if isinstance(value, Integral):
        cid = int(value)
        if cid == 0:
            raise unknown("Class 0 is the background, which is never a few-shot target.")
        if cid not in names:
            raise unknown(f"Unknown {ds} class id {cid}.")
        return cid
    if isinstance(value, str):
        key = _norm_name(value)
        canonical = LABEL_ALIASES.get(key, key.upper())
        for cid, n in names.items():
            if n == canonical and cid != 0:
                return cid
        raise unknown(f"Unknown {ds} class name {name_or_id!r}.")
    raise TypeError(
        f"Class must be an integer id or a name, got {name_or_id!r} ({type(name_or_id).__name__})."
    )


def tested_classes(dataset: str, label_sets: int) -> tuple[int, ...]:
    """Classes tested by one SSL-ALPNet / FS-MedSAM2 run: ``pa_all - group[label_sets]``.

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
    label_sets : {0, 1}
        ``0`` tests the kidneys {2, 3}; ``1`` tests spleen and liver ({1, 6} for SABS,
        {1, 4} for CHAOST2). Covering all four organs takes two runs per fold
        (PROTOCOL.md section 2, ``validation.py:69``).

    Returns
    -------
    tuple of int
        The tested class ids, ascending.
    """
    ds = _dataset(dataset)
    k = _int("label_sets", label_sets)
    groups = LABEL_GROUPS[ds]
    if not 0 <= k < len(groups):
        raise ValueError(
            f"label_sets must be 0 (test the kidneys) or 1 (test liver and spleen); got {k}."
        )
    return tuple(sorted(PA_ALL[ds] - groups[k]))


tested_classes.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


# --------------------------------------------------------------------------- folds


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
    ds = _dataset(dataset)
    v = _variant(variant)
    ids = _scan_ids(ds, scan_ids)
    k = _int("fold", fold)
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
    idx = default if supp_idx is None else _int("supp_idx", supp_idx)
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


# --------------------------------------------------------------------------- slices and chunks


def class_slices(label_zhw: np.ndarray, label_id: int) -> np.ndarray:
    """Ascending z indices of the slices that contain ``label_id`` (at least one voxel).

    This is the per-scan list of ``classmap_1.json`` (``MIN_TP = 1``; PROTOCOL.md 1.1 step 3).

    Parameters
    ----------
    label_zhw : ndarray, (Z, H, W)
        Label volume (integer or float ids).
    label_id : int
        Class id.

    Returns
    -------
    ndarray of int64
        Possibly empty.
    """
    lab = _check_volume("label volume", label_zhw)
    present = (lab == label_id).any(axis=(1, 2))
    return np.flatnonzero(present).astype(np.int64)


def _absent(label_id: int, role: str, case_id: object, shape: tuple[int, ...]) -> ValueError:
    case = f" {case_id}" if case_id is not None else ""
    return ValueError(
        f"class {label_id} absent from the {role} scan{case}: no slice of its label volume "
        f"(shape {shape}) contains that id. Check the class id for this dataset "
        "(resolve_label), and that the label volume is the preprocessed one that belongs to "
        f"this {role} scan."
    )


def scored_range(
    label_zhw: np.ndarray,
    label_id: int,
    *,
    variant: str = "ALP",
    case_id: object = None,
) -> np.ndarray:
    """The scored query slices of one scan and class (PROTOCOL.md 3.3).

    Parameters
    ----------
    label_zhw : ndarray, (Z, H, W)
        The query scan's ground-truth label volume.
    label_id : int
        Class id.
    variant : {"ALP", "GMRD"}, keyword-only
        ``"ALP"``: every z in ``[z_min, z_max]`` of the class, gap slices included
        (``z_margin = 0``). ``"GMRD"``: only the slices that contain the class.
    case_id : optional, keyword-only
        Used in error messages only.

    Returns
    -------
    ndarray of int64
        Strictly ascending z indices.

    Raises
    ------
    ValueError
        If the class is absent from the scan.
    """
    v = _variant(variant)
    present = class_slices(label_zhw, label_id)
    if present.size == 0:
        raise _absent(label_id, "query", case_id, np.shape(label_zhw))
    if v == "ALP":
        return np.arange(present[0], present[-1] + 1, dtype=np.int64)
    return present


def alp_support_pcts(npart: int = 3) -> tuple[float, ...]:
    """The support-slice fractions ``pcts`` of SSL-ALPNet / GMRD (PROTOCOL.md 3.4).

    ``pcts[p] = 1/(2*npart) + p*(1 - 1/npart)/(npart - 1)``, and ``[0.5]`` for ``npart = 1``,
    computed in floating point exactly as the references do.
    """
    n = _check_npart(npart)
    if n == 1:
        return (0.5,)
    half_part = 1 / (n * 2)
    part_interval = (1.0 - 1.0 / n) / (n - 1)
    return tuple(half_part + part_interval * ii for ii in range(n))


def alp_support_index(n: int, p: int, npart: int = 3) -> int:
    """Position of chunk ``p``'s support slice in an ``n``-slice organ list: ``int(pcts[p] * n)``.

    This is the references' literal float formula. For ``npart <= 7`` it equals
    ``floor(n * (2p + 1) / (2 * npart))`` (for npart = 3 PROTOCOL.md section 8 item 8); for larger
    ``npart`` float rounding makes the two differ for some ``n``, and this function keeps the
    references' value.
    """
    pcts = alp_support_pcts(npart)
    n = _int("n", n)
    p = _int("p", p)
    if n < 1:
        raise ValueError(f"n (the number of organ slices) must be >= 1; got {n}.")
    if not 0 <= p < len(pcts):
        raise ValueError(f"p must be a chunk index in 0..{len(pcts) - 1}; got {p}.")
    return int(pcts[p] * n)


def support_slices(
    support_label_zhw: np.ndarray,
    label_id: int,
    *,
    npart: int = 3,
    case_id: object = None,
) -> list[int]:
    """The support slice of every chunk: ``L[int(pcts[p] * n)]`` (PROTOCOL.md 3.4).

    ``L`` is the ascending list of support-scan slices that contain the class and ``n = len(L)``.
    For ``npart = 3`` this is ``L[floor(n*(2p+1)/6)]``: the slices at 1/6, 1/2 and 5/6 of the
    organ-slice list. SSL-ALPNet, GMRD and FS-MedSAM2 all use this rule.

    Parameters
    ----------
    support_label_zhw : ndarray, (Z, H, W)
        The support scan's label volume.
    label_id : int
        Class id.
    npart : int, keyword-only
        Number of chunks (odd). Default 3.
    case_id : optional, keyword-only
        The support scan id, used in error messages.

    Returns
    -------
    list of int
        ``npart`` z indices, non-decreasing (repeats are possible for tiny organs).

    Raises
    ------
    ValueError
        ``"class X absent from the support scan Y"`` when no slice contains the class.
    """
    n_part = _check_npart(npart)
    present = class_slices(support_label_zhw, label_id)
    if present.size == 0:
        raise _absent(label_id, "support", case_id, np.shape(support_label_zhw))
    n = int(present.size)
    return [int(present[alp_support_index(n, p, n_part)]) for p in range(n_part)]


def alp_chunk_index(z: int, z_min: int, z_max: int, npart: int = 3) -> int:
    """SSL-ALPNet's chunk of query slice ``z``, literally as ``common.py:240-249`` computes it.

    ``int((z - z_min) // ((z_max - z_min) / npart))`` clipped to ``[0, npart - 1]``; when
    ``z_max == z_min`` the division by zero is caught and the chunk is 0. For npart in
    {1, 3, 5, 7} this equals ``min(floor(npart*(z - z_min)/(z_max - z_min)), npart - 1)``
    (PROTOCOL.md section 8 item 8 for npart = 3).
    """
    n_part = _check_npart(npart)
    z, z_min, z_max = _int("z", z), _int("z_min", z_min), _int("z_max", z_max)
    try:
        part = int((z - z_min) // ((z_max - z_min) / n_part))
    except ZeroDivisionError:
        part = 0
    return min(max(part, 0), n_part - 1)


def gmrd_chunk_boundaries(n: int, *, npart: int = 3) -> np.ndarray:
    """GMRD's chunk boundaries over ``n`` organ slices: ``np.linspace(0, n, npart+1).astype(int)``.

    Chunk ``p`` is positions ``[b[p], b[p+1])`` of the compacted organ-slice list
    (``test.py:122-137``). For n = 24 this is [0, 8, 16, 24]; for n = 23, [0, 7, 15, 23].
    """
    n_part = _check_npart(npart)
    n = _int("n", n)
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}.")
    return np.linspace(0, n, n_part + 1).astype(int)


def chunk_ids(
    z: Sequence[int] | np.ndarray,
    *,
    npart: int = 3,
    variant: str = "ALP",
    z_min: int | None = None,
    z_max: int | None = None,
) -> np.ndarray:
    """Chunk (sub-volume) index of each scored query slice (PROTOCOL.md 3.4).

    Parameters
    ----------
    z : sequence of int
        The scored query slices, strictly ascending (:func:`scored_range`).
    npart : int, keyword-only
        Number of chunks (odd). Default 3.
    variant : {"ALP", "GMRD"}, keyword-only
        ``"ALP"``: by z distance within ``[z_min, z_max]``,
        ``min(floor(npart*(z - z_min)/(z_max - z_min)), npart - 1)``, and 0 when
        ``z_max == z_min`` (computed with :func:`alp_chunk_index`). ``"GMRD"``: by position in
        ``z`` (the organ-present slices), with :func:`gmrd_chunk_boundaries`. The two can differ
        by one slice at a boundary.
    z_min, z_max : int, optional, keyword-only
        ALP only: the class's z extent in the query (default ``z[0]`` and ``z[-1]``, which is
        right for an ALP scored range). GMRD chunks do not use them.

    Returns
    -------
    ndarray of int64, same length as ``z``
        A chunk may receive no slice (e.g. chunk 1 of a 2-slice organ).
    """
    n_part = _check_npart(npart)
    v = _variant(variant)
    zz = np.asarray(z)
    if zz.ndim != 1 or zz.size == 0:
        raise ValueError(
            f"z must be a non-empty 1D sequence of slice indices; got shape {zz.shape}."
        )
    if not np.issubdtype(zz.dtype, np.integer):
        raise TypeError(f"z must hold integer slice indices; got dtype {zz.dtype}.")
    if np.any(np.diff(zz) <= 0):
        raise ValueError("z must be strictly ascending (the scored slices in order).")
    if v == "GMRD":
        if z_min is not None or z_max is not None:
            raise ValueError(
                "GMRD chunks are positions in the organ-slice list and do not use z_min/z_max; "
                "omit them, or use variant='ALP'."
            )
        b = gmrd_chunk_boundaries(zz.size, npart=n_part)
        out = np.zeros(zz.size, dtype=np.int64)
        for p in range(n_part):
            out[b[p] : b[p + 1]] = p
        return out
    lo = int(zz[0]) if z_min is None else _int("z_min", z_min)
    hi = int(zz[-1]) if z_max is None else _int("z_max", z_max)
    if lo > hi:
        raise ValueError(f"z_min ({lo}) must not exceed z_max ({hi}).")
    return np.array([alp_chunk_index(int(q), lo, hi, n_part) for q in zz], dtype=np.int64)


# --------------------------------------------------------------------------- episodes


def build_episode(
    query_image: np.ndarray,
    query_label: np.ndarray,
    support_image: np.ndarray,
    support_label: np.ndarray,
    label: int | str,
    *,
    case_id: object,
    support_case_id: object,
    dataset: str = "",
    fold: int | None = None,
    variant: str = "ALP",
    npart: int = 3,
    label_name: str | None = None,
) -> Episode:
    """One 1-way 1-shot episode from a query and a support volume (PROTOCOL.md section 3).

    The query's scored slices come from its own ground truth (:func:`scored_range`), each is
    assigned a chunk (:func:`chunk_ids`), and chunk ``p`` gets the support slice
    :func:`support_slices` ``[p]`` with the mask ``support_label[z] == label``. All ``npart``
    supports are returned, even for chunks without a scored query slice.

    Parameters
    ----------
    query_image, query_label : ndarray, (Z, H, W)
        Query scan intensities and labels, in the same (z, y, x) order.
    support_image, support_label : ndarray, (Z', H, W)
        Support scan intensities and labels; the in-plane size must match the query's.
    label : int or str
        Class id; a name or alias needs ``dataset`` (see :func:`resolve_label`).
    case_id, support_case_id : keyword-only
        Query and support scan ids (stored as ``str``).
    dataset : {"", "SABS", "CHAOST2"}, keyword-only
        When given, ``label`` is validated against the dataset and its name is looked up.
    fold : int, optional, keyword-only
        Provenance only.
    variant : {"ALP", "GMRD"}, keyword-only
        Scored slices and chunking rule. Default ``"ALP"`` (what FS-MedSAM2 used).
    npart : int, keyword-only
        Number of chunks (odd). Default 3.
    label_name : str, optional, keyword-only
        Overrides the class name (default: the dataset's name, or ``str(label)``).

    Returns
    -------
    Episode
        ``images`` float32, ``labels`` bool; ``meta`` holds ``z_min``, ``z_max``,
        ``support_z``, ``support_n_slices`` and ``chunk_sizes``.

    Raises
    ------
    ValueError
        On shape mismatches, NaN/inf, an even ``npart``, or a class absent from the query or
        support scan.
    """
    v = _variant(variant)
    n_part = _check_npart(npart)
    qi = _check_volume("query_image", query_image)
    ql = _check_volume("query_label", query_label)
    si = _check_volume("support_image", support_image)
    sl = _check_volume("support_label", support_label)
    if qi.shape != ql.shape:
        raise ValueError(
            f"query_image and query_label differ in shape: {qi.shape} vs {ql.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if si.shape != sl.shape:
        raise ValueError(
            f"support_image and support_label differ in shape: {si.shape} vs {sl.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if qi.shape[1:] != si.shape[1:]:
        raise ValueError(
            f"Query and support slices differ in size: {qi.shape[1:]} vs {si.shape[1:]}. "
            "Bring both scans to one in-plane size first (e.g. the [:256, :256] crop for SABS)."
        )

    ds = _dataset(dataset) if dataset else ""
    if ds:
        label_id = resolve_label(ds, label)
        name = label_name if label_name is not None else DATASET_LABELS[ds][label_id]
    else:
        if isinstance(label, str) and not label.strip().isdigit():
            raise ValueError(
                f"Class {label!r} is a name; pass dataset='SABS' or 'CHAOST2' to resolve it, "
                "or give the integer class id."
            )
        label_id = int(label) if isinstance(label, str) else _int("label", label)
        name = label_name if label_name is not None else str(label_id)

    z = scored_range(ql, label_id, variant=v, case_id=case_id)
    chunks = chunk_ids(z, npart=n_part, variant=v)
    sz = support_slices(sl, label_id, npart=n_part, case_id=support_case_id)
    sup_case = None if support_case_id is None else str(support_case_id)
    supports = tuple(
        Support(
            image=np.asarray(si[s], dtype=np.float32),
            mask=np.asarray(sl[s] == label_id),
            chunk=p,
            z=s,
            case_id=sup_case,
        )
        for p, s in enumerate(sz)
    )
    meta = {
        "z_min": int(z[0]),
        "z_max": int(z[-1]),
        "support_z": tuple(sz),
        "support_n_slices": int(class_slices(sl, label_id).size),
        "chunk_sizes": tuple(int(c) for c in np.bincount(chunks, minlength=n_part)),
    }
    return Episode(
        case_id=str(case_id),
        label=label_id,
        label_name=name,
        z=z,
        images=np.asarray(qi[z], dtype=np.float32),
        labels=np.asarray(ql[z] == label_id),
        chunks=chunks,
        supports=supports,
        dataset=ds,
        fold=fold,
        variant=v,
        npart=n_part,
        meta=meta,
    )


# --------------------------------------------------------------------------- preprocessing formulas


def ct_window(
    hu: np.ndarray | float,
    *,
    lo: float = CT_WINDOW[0],
    hi: float = CT_WINDOW[1],
    minmax: bool = False,
) -> np.ndarray:
    """Clip CT intensities to ``[lo, hi]`` HU and scale them to [0, 255] (PROTOCOL.md 1.1 step 1).

    The SABS notebook clips to [-125, 275] and then min-max scales the *clipped array by its own
    minimum and maximum*. When both clip limits occur in the volume (the normal case for a CT
    scan, which contains air and bone) that is the fixed map ``(clip(hu) + 125) / 400 * 255``,
    which this function computes by default. Set ``minmax=True`` to reproduce the notebook
    literally for volumes that do not reach both limits.

    Parameters
    ----------
    hu : array_like
        Intensities in Hounsfield units.
    lo, hi : float, keyword-only
        Window limits, ``lo < hi``. Default -125 and 275.
    minmax : bool, keyword-only
        Scale by the clipped array's own range instead of by ``hi - lo``.

    Returns
    -------
    ndarray of float64
        Same shape as ``hu``. E.g. -125 -> 0, 75 -> 127.5, 275 -> 255.
    """
    if not lo < hi:
        raise ValueError(f"The window needs lo < hi; got lo={lo}, hi={hi}.")
    a = np.asarray(hu, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ValueError("ct_window: the input contains NaN or inf values; clean it first.")
    c = np.clip(a, lo, hi)
    if not minmax:
        return (c - lo) / (hi - lo) * 255.0
    cmin, cmax = float(c.min()), float(c.max())
    if cmax == cmin:
        raise ValueError(
            f"ct_window(minmax=True): the clipped array is constant ({cmin} HU), so its own "
            "min-max scaling is undefined. Use minmax=False for the fixed window."
        )
    return (c - cmin) / (cmax - cmin) * 255.0


def alp_resampled_size(n: int, old_spacing: float, new_spacing: float) -> int:
    """Output size of one axis after resampling: ``int(n * old_spacing / new_spacing + 1)``.

    This is the preprocessing notebooks' formula (PROTOCOL.md 1.1 step 2, line 83). For SABS
    (448 cropped pixels, new spacing ``1.75 * old``) it gives 257, not 256; along z (spacing
    unchanged) it gives Z + 1. The data loader later crops SABS to ``[:256, :256]``.
    """
    n = _int("n", n)
    if n < 0:
        raise ValueError(f"n (the input size) must be >= 0; got {n}.")
    if not (old_spacing > 0 and new_spacing > 0):
        raise ValueError(
            f"Spacings must be positive; got old_spacing={old_spacing}, new_spacing={new_spacing}."
        )
    return int(n * old_spacing / new_spacing + 1)


def chaos_gray_to_label(gray: np.ndarray, *, method: str = "rank") -> np.ndarray:
    """CHAOS ground-truth PNG gray values to CHAOST2 ids (PROTOCOL.md 1.2 step 2).

    Parameters
    ----------
    gray : array_like of int
        One scan's stacked PNG masks (any shape; values 0-255).
    method : {"rank", "fixed"}, keyword-only
        ``"rank"`` (the notebook): the sorted unique values are mapped to 0, 1, 2, ...; with the
        CHAOS values 0/63/126/189/252 this gives 0 BG, 1 LIVER, 2 RK, 3 LK, 4 SPLEEN. It is only
        right when all five values occur, so anything other than five unique values raises.
        ``"fixed"``: each value is mapped through the CHAOS ranges (:data:`CHAOS_GRAY_RANGES`),
        which also works for a single slice or a scan that lacks an organ.

    Returns
    -------
    ndarray of uint8
        Same shape, ids 0..4.
    """
    g = np.asarray(gray)
    if not (np.issubdtype(g.dtype, np.integer) or np.issubdtype(g.dtype, np.floating)):
        raise TypeError(
            f"chaos_gray_to_label: expected gray values (numbers), got dtype {g.dtype}."
        )
    if np.issubdtype(g.dtype, np.floating) and not np.all(np.isfinite(g) & (g == np.round(g))):
        raise ValueError(
            "chaos_gray_to_label: gray values must be whole numbers (read the PNGs as integers)."
        )
    values = np.unique(g)
    out = np.zeros(g.shape, dtype=np.uint8)
    if method == "rank":
        if values.size != len(CHAOS_GRAY_VALUES):
            raise ValueError(
                f"The rank mapping needs exactly the 5 CHAOS gray values "
                f"{list(CHAOS_GRAY_VALUES)} in the stack; found {values.size}: "
                f"{values.tolist()[:10]}. With fewer values the ids would shift. Pass the whole "
                "scan's stack, or use method='fixed'."
            )
        for i, val in enumerate(values):
            out[g == val] = i
        return out
    if method == "fixed":
        covered = np.zeros(g.shape, dtype=bool)
        for low, high, cid in CHAOS_GRAY_RANGES:
            m = (g >= low) & (g <= high)
            out[m] = cid
            covered |= m
        if not covered.all():
            bad = np.unique(g[~covered]).tolist()[:10]
            raise ValueError(
                f"Gray values {bad} fall outside the CHAOS ranges "
                f"{[(lo_, hi_) for lo_, hi_, _ in CHAOS_GRAY_RANGES]}; is this a CHAOS T2 "
                "ground-truth PNG?"
            )
        return out
    raise ValueError(f"method must be 'rank' or 'fixed'; got {method!r}.")
