"""Tests of fsm2kit.protocol.metrics: hand-computed Dice cases and PROTOCOL.md section 8 item 14."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fsm2kit.protocol.metrics import (
    DiceCounts,
    dice,
    dice_counts,
    mean_volume_dice,
    per_volume_dice,
    pooled_dice,
    summarize_dice,
)

# --------------------------------------------------------------------------- dice on arrays


def test_dice_hand_computed():
    pred = np.array([[1, 1, 0], [0, 1, 0]])
    target = np.array([[1, 0, 0], [0, 1, 1]])
    # |A| = 3, |B| = 3, |A ∩ B| = 2  ->  4 / 6
    assert dice(pred, target) == pytest.approx(2 / 3)
    assert dice_counts(pred, target) == DiceCounts(tp=2, fp=1, fn=1)


def test_dice_perfect_and_disjoint():
    m = np.zeros((4, 4), bool)
    m[1:3, 1:3] = True
    assert dice(m, m) == 1.0
    assert dice(m, ~m) == 0.0


def test_dice_accepts_bool_int_float_binary():
    a_bool = np.array([True, False, True, True])
    b_bool = np.array([True, True, False, True])
    expected = 2 * 2 / (3 + 3)
    for cast in (bool, np.uint8, np.int64, np.float32, np.float64):
        assert dice(a_bool.astype(cast), b_bool.astype(cast)) == pytest.approx(expected)


def test_dice_empty_handling():
    z = np.zeros((3, 3), bool)
    assert math.isnan(dice(z, z))
    assert dice(z, z, empty=1.0) == 1.0
    one = z.copy()
    one[0, 0] = True
    assert dice(one, z) == 0.0 and dice(z, one) == 0.0  # only one empty: a real 0


def test_dice_works_on_volumes():
    pred = np.zeros((2, 3, 3), bool)
    target = np.zeros((2, 3, 3), bool)
    pred[0, 0, :] = True  # 3 px
    target[0, 0, :2] = True  # 2 px, overlap 2
    target[1, 2, 2] = True  # 1 px, missed
    assert dice_counts(pred, target) == DiceCounts(2, 1, 1)
    assert dice(pred, target) == pytest.approx(4 / 6)


def test_dice_shape_mismatch_error():
    with pytest.raises(ValueError, match=r"differ in shape: \(2, 2\) vs \(2, 3\)"):
        dice(np.zeros((2, 2)), np.zeros((2, 3)))


@pytest.mark.parametrize(
    "bad", [np.array([0.0, 0.7]), np.array([0, 2]), np.array([-1, 0]), np.array([np.nan, 1.0])]
)
def test_dice_non_binary_error(bad):
    with pytest.raises(ValueError, match="binary mask.*Threshold it first"):
        dice(bad, np.array([0, 1]))
    with pytest.raises(ValueError, match="target must be a binary mask"):
        dice(np.array([0, 1]), bad)


def test_dice_non_numeric_error():
    with pytest.raises(TypeError, match="binary mask"):
        dice(np.array(["a", "b"]), np.array([0, 1]))


# --------------------------------------------------------------------------- DiceCounts


def test_dice_counts_add_and_sum():
    a, b = DiceCounts(1, 2, 3), DiceCounts(10, 20, 30)
    assert a + b == DiceCounts(11, 22, 33)
    assert sum([a, b]) == DiceCounts(11, 22, 33)
    assert DiceCounts(2, 1, 1).dice() == pytest.approx(4 / 6)
    assert math.isnan(DiceCounts().dice()) and DiceCounts().dice(empty=0.0) == 0.0


def test_dice_counts_validation_and_frozen():
    with pytest.raises(ValueError, match=">= 0"):
        DiceCounts(-1, 0, 0)
    with pytest.raises(ValueError, match="whole number"):
        DiceCounts(1.5, 0, 0)
    assert DiceCounts(np.int64(3), 2.0, 0) == DiceCounts(3, 2, 0)
    with pytest.raises(AttributeError):
        DiceCounts().tp = 1  # type: ignore[misc]


# --------------------------------------------------------------------------- item 14: averaging

A = DiceCounts(tp=90, fp=10, fn=10)  # Dice 0.9
B = DiceCounts(tp=10, fp=10, fn=10)  # Dice 0.5


def test_item14_per_volume_dice_values():
    assert A.dice() == pytest.approx(0.9)
    assert B.dice() == pytest.approx(0.5)


def test_item14_mean_of_volumes_is_070():
    assert mean_volume_dice([A, B]) == pytest.approx(0.70)
    assert mean_volume_dice({"A": A, "B": B}) == pytest.approx(0.70)


def test_item14_pooled_is_08333():
    assert pooled_dice([A, B]) == pytest.approx(200 / 240)
    assert pooled_dice([A, B]) == pytest.approx(0.8333, abs=5e-5)
    assert pooled_dice([(90, 10, 10), (10, 10, 10)]) == pytest.approx(200 / 240)


def test_pooling_slices_of_one_volume_equals_volume_dice():
    slices = [DiceCounts(30, 5, 0), DiceCounts(60, 0, 10), DiceCounts(0, 5, 0)]
    assert pooled_dice(slices) == pytest.approx(A.dice())


def test_aggregates_empty_inputs_error():
    with pytest.raises(ValueError, match="no counts"):
        pooled_dice([])
    with pytest.raises(ValueError, match="no volumes"):
        mean_volume_dice([])
    with pytest.raises(TypeError, match="triple"):
        pooled_dice([(1, 2)])


def test_mean_volume_dice_nan_volume_propagates():
    assert math.isnan(mean_volume_dice([A, DiceCounts()]))
    assert mean_volume_dice([A, DiceCounts()], empty=1.0) == pytest.approx(0.95)


# --------------------------------------------------------------------------- tables


def item14_table() -> pd.DataFrame:
    """Scan A split over 3 slices, scan B over 2; same totals as item 14."""
    rows = [
        ("A", 0, 30, 5, 0),
        ("A", 1, 60, 0, 10),
        ("A", 2, 0, 5, 0),
        ("B", 7, 10, 0, 4),
        ("B", 8, 0, 10, 6),
    ]
    df = pd.DataFrame(rows, columns=["case_id", "z", "tp", "fp", "fn"])
    df["label"] = 1
    df["label_name"] = "LIVER"
    df["setting"] = "1S1Q"
    return df


def test_item14_summarize_dice_table():
    out = summarize_dice(item14_table())
    assert list(out.columns) == [
        "setting", "label_name", "metric", "dice", "std_per_volume", "n_volumes", "n_slices"
    ]
    rows = out.set_index("metric")
    assert rows.loc["mean_per_volume", "dice"] == pytest.approx(0.70)
    assert rows.loc["mean_per_volume", "std_per_volume"] == pytest.approx(0.2)  # ddof=0
    assert rows.loc["pooled", "dice"] == pytest.approx(200 / 240)
    assert math.isnan(rows.loc["pooled", "std_per_volume"])
    assert rows.loc["pooled", "n_volumes"] == 2 and rows.loc["mean_per_volume", "n_volumes"] == 2
    assert rows.loc["pooled", "n_slices"] == 5 and rows.loc["mean_per_volume", "n_slices"] == 5


def test_per_volume_dice_table():
    pv = per_volume_dice(item14_table())
    assert pv["case_id"].tolist() == ["A", "B"]
    assert pv[["tp", "fp", "fn"]].values.tolist() == [[90, 10, 10], [10, 10, 10]]
    assert pv["n_slices"].tolist() == [3, 2]
    assert pv["dice"].tolist() == pytest.approx([0.9, 0.5])


def test_summarize_groups_by_setting_and_class():
    a = item14_table()
    b = item14_table().assign(setting="S1SFQ", tp=lambda d: d["tp"] * 0 + 1, fp=0, fn=0)
    c = item14_table().assign(label=2, label_name="RK")
    out = summarize_dice(pd.concat([a, b, c]))
    assert len(out) == 6
    s1 = out[(out.setting == "S1SFQ") & (out.metric == "pooled")]
    assert s1["dice"].item() == 1.0
    rk = out[(out.label_name == "RK") & (out.metric == "mean_per_volume")]
    assert rk["dice"].item() == pytest.approx(0.70)


def test_summarize_overall_and_fold_keys():
    a = item14_table().assign(fold=0)
    b = item14_table().assign(fold=3)  # same case ids in another fold (possible under GMRD folds)
    out = summarize_dice(pd.concat([a, b]), by=())
    assert list(out.columns) == ["metric", "dice", "std_per_volume", "n_volumes", "n_slices"]
    assert out.set_index("metric").loc["mean_per_volume", "n_volumes"] == 4
    per_fold = summarize_dice(pd.concat([a, b]), by=("fold", "label_name"))
    assert len(per_fold) == 4


def test_summarize_errors():
    df = item14_table()
    with pytest.raises(ValueError, match=r"lacks columns \['setting'\]"):
        summarize_dice(df.drop(columns="setting"))
    with pytest.raises(ValueError, match="share the same slice"):
        summarize_dice(pd.concat([df, df.assign(setting="other")]), by=("label_name",))
    with pytest.raises(ValueError, match="non-negative counts"):
        summarize_dice(df.assign(fp=-1))
    with pytest.raises(TypeError, match="DataFrame"):
        summarize_dice([1, 2, 3])


def test_per_volume_separates_classes_of_one_case():
    df = pd.concat([item14_table(), item14_table().assign(label=2, label_name="RK")])
    pv = per_volume_dice(df, by=("setting",))
    assert len(pv) == 4  # (case, label) pairs are the volumes
    out = summarize_dice(df, by=("setting",)).set_index("metric")
    assert out.loc["mean_per_volume", "dice"] == pytest.approx(0.70)
    assert out.loc["mean_per_volume", "n_volumes"] == 4
