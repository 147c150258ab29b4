"""Augmented support views: deterministic transformed copies of a support slice (an exploration aid).

``views:N`` (``ExperimentConfig(support_views=N)``, ``--support-views N``) adds, for every
support slice, the first N views of :data:`VIEW_SEQUENCE` as further conditioning memories,
each placed in the plan right after its support's frame (:func:`plan_with_views`). The
transforms are pure numpy functions of an (H, W) image and its mask, applied to both:

=====  ============  ===========================================================================
k      view          what it does
=====  ============  ===========================================================================
1      ``hflip``     horizontal flip (``[:, ::-1]``)
2      ``scale:1.1`` zoom in by 10 % about the slice centre (bilinear image, nearest mask)
3      ``scale:0.9`` zoom out by 10 % (the border repeats the edge; the mask is 0 outside)
4      ``gamma:0.8`` intensity gamma 0.8 on the slice's min-max range (mask unchanged)
5      ``gamma:1.25`` intensity gamma 1.25
=====  ============  ===========================================================================

A view whose mask comes out empty (an organ at the border zoomed out of the slice) is left out.
Off by default (N = 0): the plans, supports and logits are exactly those without views. SAM2 was
not trained with several conditioning views of one slice: results are for exploring, not a
method of the paper.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from ..protocol.episodes import Support
    from ..engine.plans import Plan

__all__ = ["VIEW_SEQUENCE", "MAX_VIEWS", "hflip_view", "scale_view", "gamma_view", "apply_view",
           "check_views", "support_views", "plan_with_views"]

#: The fixed sequence of views: ``views:N`` uses the first N.
VIEW_SEQUENCE: tuple[str, ...] = ("hflip", "scale:1.1", "scale:0.9", "gamma:0.8", "gamma:1.25")
#: The largest N.
MAX_VIEWS = len(VIEW_SEQUENCE)


def _pair(image, mask) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    m = np.asarray(mask).astype(bool)
    if img.ndim != 2 or img.shape != m.shape:
        raise ValueError(f"a view needs an (H, W) image and a mask of the same shape, got {img.shape} and {m.shape}")
    return img, m


def hflip_view(image, mask) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask flipped left-right."""
    img, m = _pair(image, mask)
    return np.ascontiguousarray(img[:, ::-1]), np.ascontiguousarray(m[:, ::-1])


def scale_view(image, mask, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Image and mask zoomed by ``factor`` about the slice centre, same shape.

    Output pixel ``(y, x)`` samples the input at ``c + ((y, x) - c) / factor`` with
    ``c = ((H - 1) / 2, (W - 1) / 2)``: bilinear for the image (coordinates clipped to the
    slice, so the border repeats the edge), nearest for the mask (0 outside the slice).
    """
    img, m = _pair(image, mask)
    f = float(factor)
    if not f > 0:
        raise ValueError(f"scale factor must be > 0, got {factor}")
    h, w = img.shape
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    sy = cy + (np.arange(h, dtype=np.float64) - cy) / f
    sx = cx + (np.arange(w, dtype=np.float64) - cx) / f
    # image: bilinear on clipped coordinates
    yc, xc = np.clip(sy, 0, h - 1), np.clip(sx, 0, w - 1)
    y0, x0 = np.floor(yc).astype(int), np.floor(xc).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (yc - y0)[:, None], (xc - x0)[None, :]
    a = img.astype(np.float64)
    out = ((1 - wy) * ((1 - wx) * a[np.ix_(y0, x0)] + wx * a[np.ix_(y0, x1)])
           + wy * ((1 - wx) * a[np.ix_(y1, x0)] + wx * a[np.ix_(y1, x1)]))
    # mask: nearest, background outside
    ny, nx = np.floor(sy + 0.5).astype(int), np.floor(sx + 0.5).astype(int)
    iy, ix = (ny >= 0) & (ny < h), (nx >= 0) & (nx < w)
    mm = m[np.ix_(np.clip(ny, 0, h - 1), np.clip(nx, 0, w - 1))] & iy[:, None] & ix[None, :]
    return out.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32), mm


def gamma_view(image, mask, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Intensities through gamma ``g`` on the slice's own range: ``lo + (hi - lo) * ((x - lo) / (hi - lo)) ** g``.

    A constant slice is returned unchanged; the mask is unchanged.
    """
    img, m = _pair(image, mask)
    g = float(gamma)
    if not g > 0:
        raise ValueError(f"gamma must be > 0, got {gamma}")
    a = img.astype(np.float64)
    lo, hi = float(a.min()), float(a.max())
    if not hi > lo:
        return img.copy(), m.copy()
    out = lo + (hi - lo) * ((a - lo) / (hi - lo)) ** g
    return out.astype(img.dtype if np.issubdtype(img.dtype, np.floating) else np.float32), m.copy()


def apply_view(name: str, image, mask) -> tuple[np.ndarray, np.ndarray]:
    """One view of :data:`VIEW_SEQUENCE` by name (``"hflip"``, ``"scale:1.1"``, ``"gamma:0.8"``, ...)."""
    kind, _, arg = str(name).partition(":")
    if kind == "hflip" and not arg:
        return hflip_view(image, mask)
    if kind == "scale" and arg:
        return scale_view(image, mask, float(arg))
    if kind == "gamma" and arg:
        return gamma_view(image, mask, float(arg))
    raise ValueError(f"unknown view {name!r}; views: {', '.join(VIEW_SEQUENCE)}")


def check_views(n: object) -> int:
    """``n`` as an int in 0..:data:`MAX_VIEWS` (one-line error otherwise)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer, str)):
        raise ValueError(f"support views: expected an integer 0..{MAX_VIEWS} (views {', '.join(VIEW_SEQUENCE)}), "
                         f"got {n!r}")
    try:
        k = int(n)
    except ValueError:
        raise ValueError(f"support views: expected an integer 0..{MAX_VIEWS} (views {', '.join(VIEW_SEQUENCE)}), "
                         f"got {n!r}") from None
    if not 0 <= k <= MAX_VIEWS:
        raise ValueError(f"support views: expected 0..{MAX_VIEWS} (the views, in order: {', '.join(VIEW_SEQUENCE)}), "
                         f"got {k}")
    return k


def support_views(support: "Support", n: int) -> list["Support"]:
    """The first ``n`` views of a support (same chunk, z and case), those with a non-empty mask."""
    out = []
    for name in VIEW_SEQUENCE[:check_views(n)]:
        img, m = apply_view(name, support.image, support.mask)
        if m.any():
            out.append(replace(support, image=np.asarray(img, dtype=np.float32), mask=m))
    return out


def plan_with_views(plan: "Plan", views: Mapping[int, Sequence[int]]) -> "Plan":
    """``plan`` with each support frame ``i`` followed by frames of the supports ``views[i]``.

    Steps keep their query frames (re-indexed); the processing order, directions and
    ``store_predictions`` are unchanged. An empty mapping returns ``plan`` itself.
    """
    from ..engine.plans import Frame, Plan, Step

    if not any(views.get(f.index) for f in plan.frames if f.kind == "support"):
        return plan
    frames, where = [], {}
    for i, f in enumerate(plan.frames):
        where[i] = len(frames)
        frames.append(f)
        if f.kind == "support":
            frames.extend(Frame("support", int(v)) for v in views.get(f.index, ()))
    steps = tuple(Step(where[s.frame_idx], s.reverse) for s in plan.steps)
    return Plan(tuple(frames), steps, plan.store_predictions)
