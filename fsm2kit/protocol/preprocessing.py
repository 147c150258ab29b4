"""The formulas of SSL-ALPNet's preprocessing (PROTOCOL.md section 1), as pure array functions.

The SABS CT window (:func:`ct_window`, :func:`sabs_window`), the notebooks' resampled size
(:func:`alp_resampled_size`, :func:`resampled_shape`), the CHAOS PNG gray values -> label ids
(:func:`chaos_gray_to_label`), resampling with SimpleITK's linear-interpolation semantics
(:func:`resample_linear`, :func:`resample_labels`), the CHAOS histogram cut
(:func:`histogram_cut_top`) and centre crop (:func:`crop_or_pad_center`), and the class-slice
index ``classmap_1.json`` (:func:`class_slice_index`), with their constants. Arrays are in
SimpleITK's ``(z, y, x)`` order. The dataset pipelines that apply them are
:mod:`fsm2kit.io.preparation`.
"""

from __future__ import annotations

from typing import Sequence

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
    "SABS_CLASSMAP_NAMES",
    "CHAOST2_CLASSMAP_NAMES",
    "CHAOS_SPACING",
    "HIST_CUT_TOP",
    "CROP_SIZE",
    "resampled_shape",
    "resample_linear",
    "resample_labels",
    "sabs_window",
    "histogram_cut_top",
    "crop_or_pad_center",
    "class_slice_index",
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

#: Class names of the SABS ``classmap_1.json`` (``Synapse_abdominal_classmap.ipynb``), by id.
SABS_CLASSMAP_NAMES: tuple[str, ...] = (
    "BGD", "SPLEEN", "KID_R", "KID_l", "GALLBLADDER", "ESOPHAGUS", "LIVER", "STOMACH", "AORTA",
    "IVC", "PS_VEIN", "PANCREAS", "AG_R", "AG_L",
)
#: Class names of the CHAOST2 ``classmap_1.json`` (``class_slice_index_gen.ipynb``), by id.
CHAOST2_CLASSMAP_NAMES: tuple[str, ...] = ("BG", "LIVER", "RK", "LK", "SPLEEN")
#: CHAOST2 target spacing (x, y, z) in mm (``NEW_SPA``).
CHAOS_SPACING: tuple[float, float, float] = (1.25, 1.25, 7.70)
#: Percent of the top of the histogram cut from CHAOS images (``HIST_CUT_TOP``).
HIST_CUT_TOP: float = 0.5
# SABS_SPACING_FACTOR, the SABS in-plane spacing factor ``(512 - 2 * 32) / 256`` (``SPA_FAC``),
# is the protocol's constant (fsm2kit.protocol.preprocessing), re-exported here.
#: CHAOS in-plane output size.
CROP_SIZE: int = 256




def _spacing3(name: str, s: Sequence[float]) -> np.ndarray:
    a = np.asarray(s, dtype=np.float64).ravel()
    if a.size != 3 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be 3 positive spacings (z, y, x) in mm, got {s!r}.")
    return a


def resampled_shape(
    shape: Sequence[int], old_spacing: Sequence[float], new_spacing: Sequence[float]
) -> tuple[int, ...]:
    """Output size of SSL-ALPNet's ``resample_by_res``: ``int(n * (old / new) + 1)`` per axis.

    Computed in float64 in the notebook's order (``RES_COE = old / new``, then ``n * RES_COE``).
    For SABS in-plane (448 pixels, spacing x 1.75) this is 257, and Z + 1 along z.
    """
    old = _spacing3("old_spacing", old_spacing)
    new = _spacing3("new_spacing", new_spacing)
    n = np.asarray(shape, dtype=np.float64)
    if n.size != 3:
        raise ValueError(f"shape must have 3 entries (z, y, x), got {shape!r}.")
    coe = old * 1.0 / new
    return tuple(int(v + 1) for v in n * coe)


def _axis_weights(n_in: int, n_out: int, ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour indices, weights and the inside mask of ITK's linear interpolation on one axis."""
    c = np.arange(n_out, dtype=np.float64) * ratio  # continuous input index of each output voxel
    inside = (c >= -0.5) & (c < n_in - 0.5)  # ITK's IsInsideBuffer: half a voxel around the grid
    base = np.floor(c)
    frac = c - base
    i0 = np.clip(base, 0, n_in - 1).astype(np.intp)
    i1 = np.clip(base + 1, 0, n_in - 1).astype(np.intp)
    frac = np.where(base < 0, 0.0, frac)  # below the first voxel: its value (ITK clamps)
    return i0, i1, frac, inside


def resample_linear(
    array: np.ndarray,
    old_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    shape: Sequence[int] | None = None,
    default: float = 0.0,
) -> np.ndarray:
    """SimpleITK's ``ResampleImageFilter`` with linear interpolation, same origin and direction.

    Output voxel ``o`` (per axis) samples the input at the continuous index
    ``o * new / old``. As in ITK, a point is inside when every continuous index is within
    ``[-0.5, n - 0.5)`` (half a voxel around the grid; neighbours are clamped to the edge
    there), and gets ``default`` (0) otherwise. Interpolation is in float64, x first, then y,
    then z (``a + (b - a) * t``, like ITK), and the result keeps the input's pixel type:
    floats are rounded to it, integers truncated towards zero and clamped to the type's range
    (ITK's ``static_cast``).

    Checked against SimpleITK 2.5.7 (ITK 5.4): on SABS geometry (448 px, spacing x 1.75) label
    resampling is identical and images agree within 1e-11; int16 CHAOS-like input identical.
    ITK computes sample positions through physical coordinates, which can differ from
    ``o * new / old`` in the last bit, so a sample exactly on a tie (half a voxel outside the
    grid, an integer image exactly between two values, a label mask exactly at 0.5) may fall on
    the other side (``tests/test_prepare.py`` compares with an output stored from SimpleITK,
    ``tests/data/simpleitk_resample_expected.npz``).

    Parameters
    ----------
    array : ndarray, (z, y, x)
        SimpleITK array order.
    old_spacing, new_spacing : 3 floats, (z, y, x) order
    shape : 3 ints, optional, keyword-only
        Output size (z, y, x); default :func:`resampled_shape`.
    default : float, keyword-only
        Value outside the input.

    Returns
    -------
    ndarray, (z', y', x'), same dtype as ``array``
    """
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"resample_linear: expected a 3D (z, y, x) array, got shape {a.shape}.")
    if a.dtype == bool:
        raise TypeError("resample_linear: cast boolean masks to float32 first (as the notebooks do).")
    old = _spacing3("old_spacing", old_spacing)
    new = _spacing3("new_spacing", new_spacing)
    out_shape = tuple(int(s) for s in (shape if shape is not None else resampled_shape(a.shape, old, new)))
    if len(out_shape) != 3 or min(out_shape) < 1:
        raise ValueError(f"resample_linear: output shape must be 3 positive sizes, got {out_shape}.")
    if min(a.shape) < 1:
        raise ValueError(f"resample_linear: empty input of shape {a.shape}.")
    work = a.astype(np.float64)
    inside_all = np.ones(out_shape, dtype=bool)
    for axis in (2, 1, 0):  # x, then y, then z (ITK's order)
        i0, i1, frac, inside = _axis_weights(a.shape[axis], out_shape[axis], new[axis] / old[axis])
        lo = np.take(work, i0, axis=axis)
        hi = np.take(work, i1, axis=axis)
        shp = [1, 1, 1]
        shp[axis] = -1
        work = lo + (hi - lo) * frac.reshape(shp)
        inside_all &= inside.reshape(shp)
    work[~inside_all] = default
    if np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        return np.clip(np.trunc(work), info.min, info.max).astype(a.dtype)
    return work.astype(a.dtype)


def resample_labels(
    labels: np.ndarray,
    old_spacing: Sequence[float],
    new_spacing: Sequence[float],
    *,
    shape: Sequence[int] | None = None,
) -> np.ndarray:
    """SSL-ALPNet's ``resample_lb_by_res``: each label id resampled linearly on its own.

    For every value ``v`` of ``np.unique(labels)`` (ascending, background first), the float32
    mask ``labels == v`` is resampled with :func:`resample_linear`, rounded with ``np.rint``
    (so a voxel gets ``v`` when the interpolated mask exceeds 0.5) and written over the
    result; where masks overlap the larger id wins.

    Returns
    -------
    ndarray of float32, (z', y', x')
    """
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise ValueError(f"resample_labels: expected a 3D (z, y, x) label array, got shape {lab.shape}.")
    out: np.ndarray | None = None
    for idx, v in enumerate(np.unique(lab)):
        m = resample_linear((lab == v).astype(np.float32), old_spacing, new_spacing, shape=shape)
        cur = (np.rint(m) * np.float32(v)).astype(np.float32)
        if idx == 0:
            out = cur
        else:
            out[cur == v] = v
    assert out is not None
    return out


def sabs_window(hu: np.ndarray) -> np.ndarray:
    """SABS step 1: clip to [-125, 275] HU, then min-max of the clipped array to [0, 255] (float64)."""
    return ct_window(hu, lo=CT_WINDOW[0], hi=CT_WINDOW[1], minmax=True)


def histogram_cut_top(array: np.ndarray, cut_percent: float = HIST_CUT_TOP) -> tuple[np.ndarray, float]:
    """CHAOS step 3a: values above the ``100 - cut_percent`` percentile set to it.

    Done in the array's own type, as the notebook (``array[array > hir] = hir``): an integer
    image receives the percentile truncated towards zero.

    Returns
    -------
    (ndarray, float)
        The clipped copy and the percentile ``hir``.
    """
    a = np.array(array, copy=True)
    if not 0 <= cut_percent < 100:
        raise ValueError(f"cut_percent must be in [0, 100), got {cut_percent}.")
    hir = float(np.percentile(a, 100.0 - cut_percent))
    a[a > hir] = hir
    return a, hir


def crop_or_pad_center(array: np.ndarray, size: int = CROP_SIZE, *, pad_value: float = 0.0) -> np.ndarray:
    """CHAOS step 3c: in-plane centre crop or pad to ``size`` x ``size`` (the notebook's ``image_crop``).

    With centre ``(H // 2, W // 2)``, output row ``j`` takes input row ``H // 2 - size // 2 + j``
    when that row exists and ``pad_value`` otherwise; the same for columns. The result is
    float64 (the notebook builds it with ``np.ones(...) * padval``).

    Parameters
    ----------
    array : ndarray, (z, y, x)
    size : int
    pad_value : float, keyword-only
    """
    a = np.asarray(array)
    if a.ndim != 3:
        raise ValueError(f"crop_or_pad_center: expected (z, y, x), got shape {a.shape}.")
    z, h, w = a.shape
    out = np.full((z, size, size), float(pad_value), dtype=np.float64)
    half = (size + 1) // 2  # int((size + 1) / 2) of the notebook's expanded size
    rows = np.arange(size) + h // 2 - half
    cols = np.arange(size) + w // 2 - half
    rv = (rows >= 0) & (rows < h)
    cv = (cols >= 0) & (cols < w)
    out[:, np.flatnonzero(rv)[:, None], np.flatnonzero(cv)[None, :]] = a[:, rows[rv][:, None], cols[cv][None, :]]
    return out


def class_slice_index(
    labels: dict[str, np.ndarray],
    names: Sequence[str],
    *,
    rule: str = "class",
    min_tp: int = 1,
) -> dict[str, dict[str, list[int]]]:
    """``classmap_1.json``: ``{class name: {scan id: [z with the class]}}`` (PROTOCOL.md 1.1 step 3).

    Parameters
    ----------
    labels : dict of scan id -> ndarray (z, y, x)
        In the order the ids should appear.
    names : sequence of str
        Class names by id (``SABS_CLASSMAP_NAMES`` / ``CHAOST2_CLASSMAP_NAMES``).
    rule : {"class", "sum"}, keyword-only
        ``"class"`` (SABS notebook): the slice has at least ``min_tp`` voxels of the class.
        ``"sum"`` (CHAOS notebook, PROTOCOL.md A9): the class occurs in the slice and the sum
        of *all* label values of the slice is at least ``min_tp`` (so background is listed only
        on slices that also hold an organ).
    """
    if rule not in ("class", "sum"):
        raise ValueError(f"rule must be 'class' or 'sum', got {rule!r}.")
    out: dict[str, dict[str, list[int]]] = {n: {str(pid): [] for pid in labels} for n in names}
    for pid, lab in labels.items():
        for z in range(lab.shape[0]):
            sl = lab[z]
            present = set(np.unique(sl).tolist())
            for cls, name in enumerate(names):
                if cls not in present:
                    continue
                ok = np.sum(sl == cls) >= min_tp if rule == "class" else np.sum(sl) >= min_tp
                if ok:
                    out[name][str(pid)].append(int(z))
    return out
