"""Argument checks shared by the protocol modules: dataset and variant names, integers, volumes.

Each check returns the canonical value or raises with a message that says what was expected,
so every protocol function refuses bad input the same way.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

__all__ = [
    "DATASETS",
    "PROTOCOL_VARIANTS",
    "canonical_dataset",
    "canonical_variant",
    "as_int",
    "check_npart",
    "check_volume",
]

#: The two datasets of the protocol.
DATASETS: tuple[str, ...] = ("SABS", "CHAOST2")

#: Protocol variants: SSL-ALPNet (also used by the FS-MedSAM2 dumps) and GMRD (PROTOCOL.md sec. 7).
PROTOCOL_VARIANTS: tuple[str, ...] = ("ALP", "GMRD")


def canonical_dataset(dataset: str) -> str:
    """Canonical dataset name (case-insensitive match against :data:`DATASETS`).

    Raises
    ------
    ValueError
        For anything else; the message lists the datasets.
    """
    if isinstance(dataset, str):
        for name in DATASETS:
            if dataset.strip().upper() == name:
                return name
    raise ValueError(
        f"Unknown dataset {dataset!r}: expected one of {list(DATASETS)} "
        "(SABS = Synapse/BTCV abdominal CT, CHAOST2 = CHAOS MR T2-SPIR)."
    )


def canonical_variant(variant: str) -> str:
    """Canonical protocol variant (case-insensitive match against :data:`PROTOCOL_VARIANTS`).

    Raises
    ------
    ValueError
        For anything else; the message lists the variants.
    """
    if isinstance(variant, str):
        for name in PROTOCOL_VARIANTS:
            if variant.strip().upper() == name:
                return name
    raise ValueError(
        f"Unknown protocol variant {variant!r}: expected one of {list(PROTOCOL_VARIANTS)} "
        '("ALP" = SSL-ALPNet and the FS-MedSAM2 dumps, "GMRD" = GMRD; see PROTOCOL.md section 7).'
    )


def as_int(name: str, value: object) -> int:
    """An integer argument called ``name`` (numpy integers accepted, bool refused).

    Raises
    ------
    TypeError
        For booleans and non-integers.
    """
    if type(value) is int:  # fast path
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__}).")
    return int(value)


def check_npart(npart: object) -> int:
    """The number of chunks: a positive odd integer (SSL-ALPNet asserts an odd number).

    Raises
    ------
    ValueError
        For an even or non-positive ``npart``.
    """
    n = as_int("npart", npart)
    if n < 1 or n % 2 == 0:
        raise ValueError(
            f"npart must be a positive odd integer (SSL-ALPNet asserts an odd number of chunks, "
            f"ManualAnnoDatasetv2.py:360); got {n}. Use npart=3, the published setting."
        )
    return n


def check_volume(name: str, a: object, *, finite: bool = True) -> np.ndarray:
    """A (Z, H, W) numeric or boolean array called ``name``, optionally checked for NaN/inf.

    Returns
    -------
    ndarray
        ``np.asarray(a)`` (no copy).

    Raises
    ------
    ValueError
        Not 3D, or NaN/inf values when ``finite``.
    TypeError
        Not numeric or boolean.
    """
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
