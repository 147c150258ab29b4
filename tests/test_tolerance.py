"""The shared tolerance rule (fsm2kit.testing) on hand-made cases."""

import numpy as np
import pytest

from fsm2kit.testing import (
    MASK_LOGIT_ATOL,
    MASK_MAX_FRACTION,
    assert_labels_agree,
    assert_logits_close,
    assert_masks_agree,
    compare_masks,
    rel_l2,
)


def test_constants_are_the_documented_rule():
    assert MASK_LOGIT_ATOL == 1e-3 and MASK_MAX_FRACTION == 1e-5


def test_rel_l2_by_hand():
    assert rel_l2([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert rel_l2([3.0, 4.0 + 0.5], [3.0, 4.0]) == pytest.approx(0.5 / 5.0)
    assert rel_l2([0.0], [0.0]) == 0.0
    with pytest.raises(ValueError, match="shapes"):
        rel_l2([1.0], [1.0, 2.0])


def test_the_issue_case_passes():
    """The AVX-512 failure: one of 1,572,864 pixels flips, logits -2.6e-8 vs +1.6e-8."""
    ref = np.full((24, 256, 256), -5.0, np.float32)
    ref[15, 141, 127] = -2.6e-8
    act = ref + 3e-7 * np.sign(np.arange(ref.size).reshape(ref.shape) % 2 - 0.5).astype(np.float32)
    act[15, 141, 127] = 1.6e-8
    cmp = assert_masks_agree(act, ref)
    assert cmp.n_differ == 1 and cmp.n_far == 0 and cmp.n_pixels == 1_572_864
    assert_logits_close(act, ref)


def test_a_flip_far_from_zero_fails():
    ref = np.full((100, 100), -1.0)
    act = ref.copy()
    act[3, 4] = 0.5  # reference logit -1: not a rounding effect
    cmp = compare_masks(act, ref)
    assert not cmp.ok and cmp.n_far == 1
    with pytest.raises(AssertionError, match="tolerance rule"):
        assert_masks_agree(act, ref)


def test_too_many_near_zero_flips_fail():
    ref = np.full((10, 100, 100), -1.0)  # 100,000 pixels: at most 1 may differ
    ref[0, 0, :3] = -1e-6
    act = ref.copy()
    act[0, 0, 0] = 1e-6
    assert compare_masks(act, ref).ok
    act[0, 0, 1] = 1e-6
    cmp = compare_masks(act, ref)
    assert cmp.n_far == 0 and cmp.n_differ == 2 and not cmp.ok


def test_boolean_masks_need_reference_logits():
    ref_logits = np.array([[-2e-4, 3.0], [-3.0, 1.0]])
    ref = ref_logits > 0
    act = ref.copy()
    act[0, 0] = True
    with pytest.raises(ValueError, match="reference_logits"):
        compare_masks(act, ref)
    cmp = compare_masks(act, ref, reference_logits=ref_logits, max_fraction=0.25)
    assert cmp.ok and cmp.n_differ == 1


def test_logits_tolerance_fails_loudly():
    with pytest.raises(AssertionError, match="relative L2"):
        assert_logits_close([1.0, 2.0], [1.0, 1.0])


def test_label_volumes_near_zero_or_near_tie():
    a = np.array([[-5.0, 2.0, 1.0000004, -1.0]])  # organ 5
    b = np.array([[-5.0, -3.0, 1.0, -1e-5]])       # organ 2
    ref = np.array([[0, 5, 5, 0]])
    act = np.array([[0, 5, 2, 2]])  # a tie between organs, and organ 2 near 0: both allowed
    assert assert_labels_agree(act, ref, [a, b], max_fraction=0.5).n_differ == 2
    act = np.array([[5, 5, 5, 0]])  # both organs at -5: a tie, but no organ is near present
    with pytest.raises(AssertionError, match="label volumes"):
        assert_labels_agree(act, ref, [a, b], max_fraction=0.5)
