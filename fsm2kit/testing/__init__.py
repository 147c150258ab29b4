"""Test-only helpers: ``tolerance`` (the one tolerance rule for comparing different
computations) and ``reference`` (the published FS-MedSAM2 inference, driven through sam2's own
``SAM2VideoPredictor``).

Nothing in the library imports this package.
"""

from .tolerance import (
    BF16_LOGIT_REL_L2,
    BF16_MASK_MAX_FRACTION,
    LOGIT_REL_L2,
    MASK_LOGIT_ATOL,
    MASK_MAX_FRACTION,
    MaskComparison,
    assert_bf16_close,
    assert_labels_agree,
    assert_logits_close,
    assert_masks_agree,
    compare_masks,
    rel_l2,
)

__all__ = [
    "BF16_LOGIT_REL_L2",
    "BF16_MASK_MAX_FRACTION",
    "LOGIT_REL_L2",
    "MASK_LOGIT_ATOL",
    "MASK_MAX_FRACTION",
    "MaskComparison",
    "assert_bf16_close",
    "assert_labels_agree",
    "assert_logits_close",
    "assert_masks_agree",
    "compare_masks",
    "rel_l2",
]
