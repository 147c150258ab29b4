"""Test-only helpers: the shared tolerance rule and (later) the SAM2 reference driver.

Nothing in the library imports this package.
"""

from .tolerance import (
    LOGIT_REL_L2,
    MASK_LOGIT_ATOL,
    MASK_MAX_FRACTION,
    MaskComparison,
    assert_labels_agree,
    assert_logits_close,
    assert_masks_agree,
    compare_masks,
    rel_l2,
)

__all__ = [
    "LOGIT_REL_L2",
    "MASK_LOGIT_ATOL",
    "MASK_MAX_FRACTION",
    "MaskComparison",
    "assert_labels_agree",
    "assert_logits_close",
    "assert_masks_agree",
    "compare_masks",
    "rel_l2",
]
