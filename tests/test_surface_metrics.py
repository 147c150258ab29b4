"""Metrics beyond Dice (fsm2kit.protocol.metrics): hand-computed HD95, NSD and slice-extent errors."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from fsm2kit.protocol.metrics import (extent_errors, hd95, normalized_surface_dice, slice_extent_flags,
                                      summarize_metrics, surface_metrics)


def _cube():
    g = np.zeros((10, 10, 10), bool)
    g[2:6, 2:6, 2:6] = True  # a 4-voxel cube: 56 surface voxels (64 - the 2x2x2 inside)
    return g, np.roll(g, 1, axis=0)  # the prediction: shifted by one slice along z


def test_cube_shifted_one_voxel_at_anisotropic_spacing():
    # By hand, spacing (z 2 mm, y 1 mm, x 1 mm). Prediction surface -> ground-truth surface:
    # 36 voxels on shared side walls (0 mm), the 4 inner voxels of its bottom face (1 mm, the wall
    # beside them), its 16 top-face voxels (one slice above the truth's top: 2 mm); the reverse
    # direction is the mirror image. 95th percentile of 56 values (index 52.25 sorted): 2 mm.
    g, p = _cube()
    assert hd95(p, g, (2.0, 1.0, 1.0)) == pytest.approx(2.0)
    assert hd95(p, g, (1.0, 1.0, 1.0)) == pytest.approx(1.0)  # isotropic: one voxel
    # NSD at 1 mm: 40 of 56 surface voxels on each side are within tolerance -> 80 / 112 = 5/7
    assert normalized_surface_dice(p, g, (2.0, 1.0, 1.0), tolerance=1.0) == pytest.approx(5 / 7, abs=1e-6)
    assert normalized_surface_dice(p, g, (2.0, 1.0, 1.0), tolerance=2.0) == pytest.approx(1.0)
    assert normalized_surface_dice(p, g, (2.0, 1.0, 1.0)) == pytest.approx(1.0)  # default 2 mm
    assert hd95(g, g, (2.0, 1.0, 1.0)) == 0.0 and normalized_surface_dice(g, g, (2.0, 1.0, 1.0)) == 1.0


def test_empty_prediction_and_missing_spacing():
    g, _ = _cube()
    e = np.zeros_like(g)
    assert math.isinf(hd95(e, g, (2, 1, 1))) and normalized_surface_dice(e, g, (2, 1, 1)) == 0.0
    assert math.isnan(hd95(e, e, (2, 1, 1))) and math.isnan(normalized_surface_dice(e, e, (2, 1, 1)))
    out = surface_metrics(g, g, None)  # no spacing: no distance in mm, none invented
    assert math.isnan(out["hd95_mm"]) and math.isnan(out["nsd"])
    with pytest.raises(ValueError, match="spacing must be 3 positive numbers"):
        hd95(g, g, (1, 1))
    with pytest.raises(ValueError, match="differ in shape"):
        surface_metrics(g, g[0], None)


def test_extent_errors_by_hand():
    z = [10, 11, 12, 13, 14, 15]
    gt = [0, 5, 0, 7, 3, 0]  # extent 11..14; slice 12 has no organ
    pred = [2, 0, 4, 6, 0, 1]  # 10 and 15 beyond the extent; 11 and 14 missed inside it
    assert extent_errors(z, gt, pred) == {"fp_slices": 2, "missed_slices": 2}
    assert extent_errors(z, [0] * 6, pred) == {"fp_slices": 4, "missed_slices": 0}
    df = pd.DataFrame({"case_id": ["a"] * 6 + ["b"] * 2, "z": z + [0, 1], "gt_px": gt + [1, 1], "pred_px": pred + [0, 1]})
    f = slice_extent_flags(df, volume_keys=["case_id"])
    assert f["fp_slice"].tolist() == [True, False, False, False, False, True, False, False]
    assert f["missed_slice"].tolist() == [False, True, False, False, True, False, True, False]


def test_summarize_metrics_mean_std_and_nan():
    v = pd.DataFrame({"label_name": ["LIVER"] * 3, "hd95_mm": [1.0, 3.0, np.nan], "nsd": [0.5, 1.0, np.nan],
                      "fp_slices": [0, 2, 1], "missed_slices": [1, 1, 1]})
    s = summarize_metrics(v, by="label_name").set_index("measure")
    assert s.loc["hd95_mm", "mean"] == 2.0 and s.loc["hd95_mm", "std"] == 1.0  # ddof=0
    assert s.loc["hd95_mm", "n_volumes"] == 2 and s.loc["hd95_mm", "n_nan"] == 1
    assert s.loc["fp_slices", "mean"] == 1.0 and s.loc["missed_slices", "std"] == 0.0
    v.loc[0, "hd95_mm"] = np.inf
    assert math.isinf(summarize_metrics(v, by="label_name").set_index("measure").loc["hd95_mm", "mean"])


def test_metrics_table_says_no_spacing():
    from fsm2kit.tables.dice_table import metrics_table

    v = pd.DataFrame({"model": "m", "setting": "S1SFQ", "label_name": ["LIVER", "LIVER"], "hd95_mm": [np.nan] * 2,
                      "nsd": [np.nan] * 2, "fp_slices": [0, 2], "missed_slices": [1, 3]})
    t = metrics_table(summarize_metrics(v, by=["model", "setting", "label_name"]), rows=("model", "setting"))
    assert t.loc["m / S1SFQ", "HD95 (mm) LIVER"] == "n/a" and t.loc["m / S1SFQ", "FP slices LIVER"] == "1.00 ± 1.41"  # sample std
    assert "no voxel spacing" in t.attrs["caption"] and "2409.04298v1" in t.attrs["caption"]


def test_run_writes_metrics_with_spacing(present128, example_episode, tmp_path):
    from dataclasses import replace

    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.experiment_result import read_results
    from fsm2kit.run.runner import run_experiments
    from fsm2kit.run.sources import subset_episode

    ep = subset_episode(example_episode, z_range=(20, 24))
    spaced = replace(ep, meta={**ep.meta, "spacing": (8.0, 1.5, 1.5)})
    cfg = ExperimentConfig(models=("sam2-tiny",), checkpoint="random", image_size=128, nsd_tolerance=3.0)
    res = run_experiments(cfg, models={"sam2-tiny": present128}, episodes=[[spaced]], keep_predictions=True,
                          progress=False)
    vol = res.volumes().iloc[0]
    assert vol["spacing_mm"] == "8x1.5x1.5" and vol["nsd_tolerance_mm"] == 3.0 and vol["spacing_note"] == ""
    pred = res.predictions[0].result.prediction()  # the 3D numbers are the functions' on the scored masks
    want = surface_metrics(pred, spaced.labels, (8.0, 1.5, 1.5), tolerance=3.0)
    assert vol["nsd"] == pytest.approx(want["nsd"], nan_ok=True)
    assert vol["hd95_mm"] == pytest.approx(want["hd95_mm"], nan_ok=True)
    assert vol[["fp_slices", "missed_slices"]].tolist() == list(extent_errors(
        spaced.z, spaced.labels.reshape(len(pred), -1).sum(1), pred.reshape(len(pred), -1).sum(1)).values())
    nos = run_experiments(cfg, models={"sam2-tiny": present128}, episodes=[[ep]], progress=False)
    v2 = nos.volumes().iloc[0]
    assert np.isnan(v2["hd95_mm"]) and "npz dumps carry none" in v2["spacing_note"]
    assert "n/a" in nos.metrics_table().to_string()  # the npz episode has no spacing
    for col in ("hd95_mm", "nsd", "fp_slice", "missed_slice", "spacing_note"):
        assert col in res.slices.columns
    res.save(tmp_path / "o")
    back = read_results(tmp_path / "o")
    assert {"hd95_mm", "nsd", "fp_slices", "missed_slices"} <= set(back["volumes"].columns)
    ms = res.metrics_summary()
    assert set(ms["measure"]) == {"hd95_mm", "nsd", "fp_slices", "missed_slices"}
