"""Preprocessing formulas of the protocol that tests can pin down (PROTOCOL.md section 1).

The SABS CT window, the notebooks' resampled size, and the CHAOS PNG gray values -> label ids,
with their constants. The full dataset pipelines are :mod:`fsm2kit.io.prepare`.
"""

from __future__ import annotations

import numpy as np

from .checks import as_int

__all__ = [
    "CT_WINDOW",
    "SABS_BORDER",
    "SABS_SPACING_FACTOR",
    "CHAOS_GRAY_VALUES",
    "CHAOS_GRAY_RANGES",
    "ct_window",
    "alp_resampled_size",
    "chaos_gray_to_label",
]

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
    n = as_int("n", n)
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
