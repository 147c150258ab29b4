"""Ensembles (``--ensemble``, fsm2kit.strategies.ensembles + fsm2kit.run.ensemble_runs).

* the formulas by hand: mean and vote fusion, fused logits, entropy, variance, disagreement;
* specs: members are the cartesian product; bad specs one line, before any model;
* through the runner (random sam2-tiny at 128 px, object scores shifted): the fused probability is
  the mean of the members' probabilities; a one-member ensemble equals a plain run bit for bit;
  members share the engine's features (encoder passes of one run); the run folder holds
  ``uncertainty.npz``; tables carry the fused Dice and each member's.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fsm2kit.strategies import ENSEMBLES
from fsm2kit.strategies.ensembles import (disagreement, entropy, fused_logits, mean_fusion, probabilities, variance,
                                          vote_fusion)

from conftest import EXAMPLE_NPZ


def test_formulas_by_hand():
    probs = np.array([[0.9, 0.2, 0.5, 0.0], [0.7, 0.6, 0.5, 0.0], [0.2, 0.7, 0.5, 1.0]])
    assert np.allclose(mean_fusion(probs), [0.6, 0.5, 0.5, 1 / 3])
    assert np.allclose(vote_fusion(probs), [2 / 3, 2 / 3, 0.0, 1 / 3])
    fl = fused_logits(mean_fusion(probs))
    assert list(fl > 0) == [True, False, False, False]  # 0.5 is a tie: not foreground
    assert np.allclose(fl[0], np.log(0.6 / 0.4), atol=1e-6)
    assert np.allclose(entropy(np.array([0.0, 0.5, 1.0, 0.25])), [0, 1, 0, 0.811278], atol=1e-6)
    assert np.allclose(variance(probs)[:2], [np.var([0.9, 0.7, 0.2]), np.var([0.2, 0.6, 0.7])], atol=1e-7)
    assert np.allclose(probabilities(np.array([0.0, -1024.0, 1024.0])), [0.5, 0.0, 1.0])
    masks = np.zeros((2, 3, 2, 2), bool)
    masks[0, 0] = [[1, 1], [0, 0]]
    masks[1, 0] = [[1, 0], [0, 0]]        # slice 0: AND 1, OR 2 -> 0.5
    masks[:, 1] = True                     # slice 1: all agree -> 0
    assert np.allclose(disagreement(masks), [0.5, 0.0, 0.0])  # slice 2: nothing predicted -> 0


def test_members_are_the_cartesian_product():
    e = ENSEMBLES.get("mean:order=top,middle;support-select=random:0,random:1,random:2")
    labels = [m for m, _ in e.members()]
    assert len(labels) == 6 and labels[0] == "order=top, support-select=random:0"
    assert labels[-1] == "order=middle, support-select=random:2"
    v = ENSEMBLES.get("vote:views=0,2;qc=0.2")
    assert v.fusion == "vote" and v.qc == 0.2 and [o for _, o in v.members()] == [{"support_views": 0},
                                                                                  {"support_views": 2}]
    assert ENSEMBLES.get(None).strategy_name == "none" and not ENSEMBLES.get("none").active


@pytest.mark.parametrize("spec", ["mean", "mean:colour=red", "mean:order=top;qc=2", "mean:order=top,top",
                                  "median:order=top", "mean:order=sideways", "mean:views=9",
                                  "mean:refine=revsam2:top=1"])
def test_cli_bad_ensemble_fails_before_any_model(spec, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    setting = "1S1Q" if "refine" in spec else "S1SFQ"
    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", setting, "--ensemble", spec, "--checkpoint", "random",
            "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ensemble" in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def small(example_episode):
    from fsm2kit.run.sources import subset_episode

    return subset_episode(example_episode, max_slices=5)


def _config(**kw):
    from fsm2kit.run.config import ExperimentConfig

    return ExperimentConfig(settings=["S1SFQ"], image_size=128, checkpoint="random", **kw)


def test_one_member_equals_a_plain_run_bit_for_bit(present128, small):
    from fsm2kit.run.runner import run_experiments

    plain = run_experiments(_config(), models={"sam2-tiny": present128}, episodes=[[small]], keep_predictions=True,
                            progress=False)
    ens = run_experiments(_config(ensemble="mean:order=middle"), models={"sam2-tiny": present128},
                          episodes=[[small]], keep_predictions=True, progress=False)
    (p,) = plain.predictions
    (f,) = ens.predictions
    for a, b in zip(p.result.slices, f.result.slices):
        assert np.array_equal(a.logits, b.logits)
    fused = ens.slices[ens.slices["member"] == "fused"].reset_index(drop=True)
    assert np.array_equal(fused["tp"], plain.slices["tp"]) and np.array_equal(fused["fp"], plain.slices["fp"])
    (run,) = ens.ensembles
    assert not run.qc.any() and np.all(run.variance == 0)


def test_fused_probability_is_the_mean_of_members(present128, small, tmp_path):
    from fsm2kit.run.experiment_result import read_results
    from fsm2kit.run.runner import run_experiments

    res = run_experiments(_config(ensemble="mean:order=top,middle;views=0,1"), models={"sam2-tiny": present128},
                          episodes=[[small]], keep_predictions=True, progress=False)
    (run,) = res.ensembles
    assert run.member_logits.shape[0] == 4 and len(run.members) == 4
    probs = probabilities(run.member_logits)
    assert np.allclose(run.probability, probs.mean(axis=0), atol=1e-6)
    (f,) = res.predictions
    assert np.array_equal(f.result.prediction(), run.probability > 0.5)
    assert np.allclose(run.entropy, entropy(probs.mean(axis=0))) and np.allclose(run.variance, variance(probs))
    assert f.result.order == "top+middle"
    # members share the engine: the query slices are encoded once (views add their own support copies)
    assert res.encoder_passes <= len(small.z) + 1 + 1 + 2
    members = set(res.slices["member"])
    assert members == {"fused", "order=top, views=0", "order=top, views=1", "order=middle, views=0",
                       "order=middle, views=1"}
    table = res.table("pooled")
    assert "member" in table.index.names and len(table) == 5
    names = res.save(tmp_path / "run")
    files = read_results(tmp_path / "run")
    unc = files["uncertainty"]
    key = run.key
    assert np.allclose(unc[f"{key}__probability"], run.probability) and unc[f"{key}__qc"].dtype == bool
    rec = json.loads(names["provenance"].read_text())
    assert rec["ensemble"] == ["mean:order=top,middle;views=0,1"] and len(rec["members"]) == 4
    s = files["slices"]
    assert {"disagreement", "qc_flag"} <= set(s.columns)


def test_vote_is_a_strict_majority(present128, small):
    from fsm2kit.run.runner import run_experiments

    res = run_experiments(_config(ensemble="vote:order=top,middle"), models={"sam2-tiny": present128},
                          episodes=[[small]], keep_predictions=True, progress=False)
    (run,) = res.ensembles
    votes = (run.member_logits > 0).mean(axis=0)
    assert np.allclose(run.probability, votes) and np.array_equal(res.predictions[0].result.prediction(), votes > 0.5)


@pytest.mark.parametrize("where", [pytest.param("npz", marks=pytest.mark.slow), "alp"])
def test_cli_run_ensemble(where, tmp_path, present128, monkeypatch, alp_folder):
    import pandas as pd

    import fsm2kit.model.loading as models
    from fsm2kit.cli import main

    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: present128)
    out = tmp_path / "run"
    if where == "npz":
        argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--ensemble", "mean:order=top,middle"]
    else:
        argv = ["run", "--episodes", str(alp_folder), "--dataset", "CHAOST2", "--fold", "0", "--label", "liver",
                "--setting", "S1SFQ", "--ensemble", "mean:support-select=random:0,random:1;qc=0.1"]
    argv += ["--checkpoint", "random", "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    assert (out / "uncertainty.npz").is_file()
    slices = pd.read_csv(out / "slices.csv", keep_default_na=False)
    assert "fused" in set(slices["member"]) and len(set(slices["member"])) == 3
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    assert set(summary["member"]) == set(slices["member"])


@pytest.mark.slow
def test_segment_ensemble_writes_uncertainty_beside_the_labels(present128, tmp_path):
    import nibabel as nib

    from fsm2kit.engine.engine import Engine
    from fsm2kit.io.examples import example_ct
    from fsm2kit.segment.own_scan import segment_volume
    from fsm2kit.segment.segment_result import uncertainty_paths

    ct = example_ct()
    engine = Engine(present128, progress=False)
    kw = dict(engine=engine, labels="liver=5", stop="none", ground_truth=ct.labels.array)
    res = segment_volume(ct, ct, ct.labels.array, ensemble="mean:order=top,middle;qc=0.2", **kw)
    a = segment_volume(ct, ct, ct.labels.array, order="top", **kw)
    b = segment_volume(ct, ct, ct.labels.array, order="middle", **kw)
    p = (probabilities(a.organs[0].logits) + probabilities(b.organs[0].logits)) / 2
    assert np.array_equal(res.labels == 5, (p > 0.5) | (res.labels == 5) & np.isin(np.arange(ct.shape[0]),
                                                                                    a.organs[0].propagation.echo_z)[:, None, None])
    u = res.uncertainty["liver"]
    assert np.allclose(u["variance"], variance(np.stack([probabilities(a.organs[0].logits),
                                                          probabilities(b.organs[0].logits)])))
    assert res.options["ensemble"] == "mean:order=top,middle;qc=0.2" and len(res.options["members"]) == 2
    out, side = res.save(tmp_path / "pred.nii.gz")
    paths = uncertainty_paths(out)
    ent = nib.load(paths["entropy"])
    assert ent.shape == nib.load(out).shape and ent.get_fdata().max() <= 1.0
    meta = json.loads(side.read_text())
    assert len(meta["uncertainty"]["labels"]["liver"]["disagreement"]) == ct.shape[0]


def test_cli_segment_refuses_a_model_axis(tmp_path, capsys, no_model):
    from fsm2kit.cli import main
    from fsm2kit.io.examples import example_dir

    d = example_dir() / "totalseg_ct_small"
    argv = ["segment", "--image", str(d / "example_ct_sm.nii.gz"), "--support-image", str(d / "example_ct_sm.nii.gz"),
            "--support-mask", str(d / "example_seg.nii.gz"),
            "--out", str(tmp_path / "p.nii.gz"), "--checkpoint", "random", "--ensemble", "mean:model=sam2-tiny,sam2.1-tiny"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ensemble" in err[0], err
