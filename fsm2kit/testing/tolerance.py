"""The one tolerance rule for comparing results of *different* computations.

Two computations that add the same numbers in a different order (steps batched vs one by one,
a compiled vs an eager encoder, features recomputed through another path) agree only up to
rounding, and how they round depends on the CPU's kernels (AVX-512, AVX2 or SSE4 GEMMs). A
logit within rounding of 0 can then change sign. The rule, used by every such test:

* logits: relative L2 error ``||a - r|| / ||r||`` below :data:`LOGIT_REL_L2` (1e-3);
* masks (``logit > 0``): may differ only at pixels where the *reference* logit's magnitude is
  below :data:`MASK_LOGIT_ATOL` (1e-3, absolute, in logit units), and on at most
  :data:`MASK_MAX_FRACTION` (1e-5) of the pixels.

bfloat16 autocast (``precision="bf16"``, the GPU's dtype path) against float32 is a looser
rule: relative L2 below :data:`BF16_LOGIT_REL_L2` (1e-1) and masks differing on at most
:data:`BF16_MASK_MAX_FRACTION` (1e-2) of the pixels (:func:`assert_bf16_close`). bf16 keeps 8 bits
of mantissa (about 3 significant digits); measured on random tiny models at 128 px: about 1e-2
relative L2 and 2e-3 of the pixels (run, segment, inspect), 4.7e-2 after a correction round.

Bit-equality stays the right assertion only where both sides run the same operations in the same
order (for instance fsm2kit vs SAM2's video predictor, one step per forward); such tests say so in
their docstrings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "LOGIT_REL_L2",
    "MASK_LOGIT_ATOL",
    "MASK_MAX_FRACTION",
    "MaskComparison",
    "rel_l2",
    "compare_masks",
    "assert_logits_close",
    "assert_masks_agree",
    "assert_labels_agree",
    "BF16_LOGIT_REL_L2",
    "BF16_MASK_MAX_FRACTION",
    "assert_bf16_close",
]

LOGIT_REL_L2 = 1e-3
MASK_LOGIT_ATOL = 1e-3
MASK_MAX_FRACTION = 1e-5
BF16_LOGIT_REL_L2 = 1e-1
BF16_MASK_MAX_FRACTION = 1e-2


def rel_l2(actual, reference) -> float:
    """Relative L2 error ``||actual - reference|| / ||reference||`` (0 when both are 0)."""
    a = np.asarray(actual, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if a.shape != r.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {r.shape}")
    return float(np.linalg.norm(a - r) / max(np.linalg.norm(r), 1e-12))


@dataclass(frozen=True)
class MaskComparison:
    """How two masks differ, judged against the reference logits.

    ``n_differ`` pixels differ, ``n_far`` of them where the reference logit is *not* near the
    decision boundary (any such pixel breaks the rule).
    """

    n_pixels: int
    n_differ: int
    n_far: int
    atol: float = MASK_LOGIT_ATOL
    max_fraction: float = MASK_MAX_FRACTION

    @property
    def fraction(self) -> float:
        return self.n_differ / max(self.n_pixels, 1)

    @property
    def ok(self) -> bool:
        return self.n_far == 0 and self.fraction <= self.max_fraction

    def __repr__(self) -> str:
        return (f"MaskComparison({self.n_differ}/{self.n_pixels} pixels differ "
                f"({self.fraction:.2e}, limit {self.max_fraction:.0e}), "
                f"{self.n_far} where |reference logit| >= {self.atol:g})")


def _near_boundary(reference_logits: np.ndarray, atol: float) -> np.ndarray:
    return np.abs(np.asarray(reference_logits, dtype=np.float64)) < atol


def compare_masks(actual, reference, *, reference_logits=None, atol: float = MASK_LOGIT_ATOL,
                  max_fraction: float = MASK_MAX_FRACTION) -> MaskComparison:
    """Compare two masks under the shared rule.

    ``actual`` and ``reference`` are logits (thresholded at 0) or boolean masks; when
    ``reference`` is boolean, ``reference_logits`` must be given.
    """
    a = np.asarray(actual)
    r = np.asarray(reference)
    if a.shape != r.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {r.shape}")
    if reference_logits is None:
        if r.dtype == bool:
            raise ValueError("a boolean reference mask needs reference_logits=")
        reference_logits = r
    am = a if a.dtype == bool else a > 0
    rm = r if r.dtype == bool else r > 0
    differ = am != rm
    far = differ & ~_near_boundary(reference_logits, atol)
    return MaskComparison(int(differ.size), int(differ.sum()), int(far.sum()), atol, max_fraction)


def assert_logits_close(actual, reference, *, rel: float = LOGIT_REL_L2) -> float:
    """Assert relative L2 error below ``rel``; returns the error."""
    err = rel_l2(actual, reference)
    assert err < rel, f"relative L2 error {err:.3e} >= {rel:g}"
    return err


def assert_masks_agree(actual, reference, *, reference_logits=None, atol: float = MASK_LOGIT_ATOL,
                       max_fraction: float = MASK_MAX_FRACTION) -> MaskComparison:
    """Assert the shared mask rule (see the module docstring); returns the comparison."""
    cmp = compare_masks(actual, reference, reference_logits=reference_logits, atol=atol,
                        max_fraction=max_fraction)
    assert cmp.ok, f"masks differ beyond the shared tolerance rule: {cmp!r}"
    return cmp


def assert_labels_agree(actual, reference, reference_logits: Sequence, *, atol: float = MASK_LOGIT_ATOL,
                        max_fraction: float = MASK_MAX_FRACTION) -> MaskComparison:
    """The mask rule for label volumes made from several organs' logits.

    A voxel's label may differ only where the decision is within rounding: some organ's reference
    logit is within ``atol`` of 0, or two organs' reference logits are within ``atol`` of each
    other and not both below ``-atol`` (the overlap rule picks the larger positive one); and on at
    most ``max_fraction`` of the voxels.
    """
    a = np.asarray(actual)
    r = np.asarray(reference)
    if a.shape != r.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {r.shape}")
    stack = np.stack([np.asarray(x, dtype=np.float64) for x in reference_logits])
    if stack.shape[1:] != r.shape:
        raise ValueError(f"reference logits {stack.shape[1:]} do not match the labels {r.shape}")
    near = (np.abs(stack) < atol).any(axis=0)
    for i in range(len(stack)):
        for j in range(i + 1, len(stack)):
            near |= (np.abs(stack[i] - stack[j]) < atol) & (np.maximum(stack[i], stack[j]) > -atol)
    differ = a != r
    cmp = MaskComparison(int(differ.size), int(differ.sum()), int((differ & ~near).sum()), atol, max_fraction)
    assert cmp.ok, f"label volumes differ beyond the shared tolerance rule: {cmp!r}"
    return cmp


def assert_bf16_close(actual, reference) -> tuple[float, float]:
    """bf16-autocast logits ``actual`` against float32 ``reference``: relative L2 below
    :data:`BF16_LOGIT_REL_L2` and masks (``> 0``) differing on at most
    :data:`BF16_MASK_MAX_FRACTION` of the pixels. Returns (relative L2, fraction of pixels differing)."""
    a, r = np.asarray(actual), np.asarray(reference)
    err = rel_l2(a, r)
    frac = float(np.mean((a > 0) != (r > 0))) if r.size else 0.0
    assert err < BF16_LOGIT_REL_L2, f"bf16 logits: relative L2 {err:.3e} >= {BF16_LOGIT_REL_L2:g}"
    assert frac <= BF16_MASK_MAX_FRACTION, f"bf16 masks: {frac:.2e} of the pixels differ (limit {BF16_MASK_MAX_FRACTION:g})"
    return err, frac
