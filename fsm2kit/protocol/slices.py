"""Slices and chunks of the protocol: organ slices, scored query slices, support slices, chunks.

PROTOCOL.md 3.3 (scored query slices) and 3.4 (support slices and query chunks). The
support-slice and ALP chunk rules are computed with the references' own floating-point
formulas, so episodes match them exactly for any ``npart``; for ``npart = 3`` these equal the
integer closed forms given in PROTOCOL.md (tested exhaustively).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .checks import as_int, canonical_variant, check_npart, check_volume

__all__ = [
    "class_slices",
    "scored_range",
    "alp_support_pcts",
    "alp_support_index",
    "support_slices",
    "alp_chunk_index",
    "gmrd_chunk_boundaries",
    "chunk_ids",
]


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
    lab = check_volume("label volume", label_zhw)
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
    v = canonical_variant(variant)
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
    n = check_npart(npart)
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
    n = as_int("n", n)
    p = as_int("p", p)
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
    n_part = check_npart(npart)
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
    n_part = check_npart(npart)
    z, z_min, z_max = as_int("z", z), as_int("z_min", z_min), as_int("z_max", z_max)
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
    n_part = check_npart(npart)
    n = as_int("n", n)
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
    n_part = check_npart(npart)
    v = canonical_variant(variant)
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
    lo = int(zz[0]) if z_min is None else as_int("z_min", z_min)
    hi = int(zz[-1]) if z_max is None else as_int("z_max", z_max)
    if lo > hi:
        raise ValueError(f"z_min ({lo}) must not exceed z_max ({hi}).")
    return np.array([alp_chunk_index(int(q), lo, hi, n_part) for q in zz], dtype=np.int64)
