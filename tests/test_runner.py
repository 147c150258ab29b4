"""Episodes from an SSL-ALPNet dataset folder through the protocol, the one runner and the one output format."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fsm2kit.cli import main
from fsm2kit.protocol import SCAN_IDS
from fsm2kit.testing import assert_masks_agree
from fsm2kit.run.config import ExperimentConfig
from fsm2kit.run.sources import load_episodes
from fsm2kit.run.runner import run_experiment

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chaos_folder(tmp_path_factory):
    """A synthetic CHAOST2-like preprocessed folder: 20 scans, liver on 3 slices each."""
    root = tmp_path_factory.mktemp("chaos_MR_T2_normalized")
    rng = np.random.default_rng(0)
    for i, sid in enumerate(SCAN_IDS["CHAOST2"]):
        img = rng.normal(size=(32, 32, 8)).astype(np.float32)  # nibabel (x, y, z)
        lab = np.zeros((32, 32, 8), np.float32)
        z0 = 1 + i % 3
        lab[8:20, 10:22, z0:z0 + 3] = 1  # liver
        lab[22:28, 4:10, 2:5] = 2  # right kidney
        img[lab == 1] += 3
        aff = np.diag([1.25, 1.25, 7.7, 1])
        nib.save(nib.Nifti1Image(img, aff), root / f"image_{sid}.nii.gz")
        nib.save(nib.Nifti1Image(lab, aff), root / f"label_{sid}.nii.gz")
    return root


def test_fold_episodes_follow_the_protocol(chaos_folder):
    eps = load_episodes(chaos_folder, dataset="CHAOST2", fold=0, label="liver")
    assert [e.case_id for e in eps] == ["1", "2", "3", "5"]  # ALP fold 0, support scan 8
    assert all(e.n_slices == 3 and e.label == 1 and e.label_name == "LIVER" for e in eps)
    assert all(s.case_id == "8" for e in eps for s in e.supports)
    assert [list(e.chunks) for e in eps] == [[0, 1, 2]] * 4


def _run(folder, tiny256, setting, *, label="RK", **kwargs):
    cfg = ExperimentConfig(episodes=str(folder), dataset="CHAOST2", folds=[0], classes=[label], settings=[setting],
                           checkpoint="random", image_size=256, device="cpu", **kwargs)
    return run_experiment(cfg, models={"sam2-tiny": tiny256}, keep_predictions=True, progress=False)


def test_run_and_write(chaos_folder, tiny256, tmp_path):
    run = _run(chaos_folder, tiny256, "1S1Q")
    (model_run,) = run.model_runs
    assert len(run.slices) == 12 and model_run.encoder_passes == run.encoder_passes == 4 * 3 + 3
    summary = run.summary().set_index("metric")
    assert summary.loc["pooled", "n_volumes"] == 4 and summary.loc["mean_per_volume", "n_slices"] == 12
    assert len(run.volumes()) == 4 and set(run.volumes()["case_id"]) == {"1", "2", "3", "5"}
    paths = run.save(tmp_path / "out")
    assert sorted(paths) == ["logits", "provenance", "slices", "summary", "volumes"]
    keys = np.load(paths["logits"]).files
    assert len(keys) == 13 and keys[0].startswith("sam2-tiny_1S1Q_case1_label2_z") and "weights" in keys
    assert set(run.slices["corrected"]) == {0} and set(run.summary()["corrected"]) == {0}
    assert (run.slices["start_z"] == run.slices["z"]).all()  # 1S1Q: each slice its own plan
    meta = json.loads(paths["provenance"].read_text())
    assert meta["random_weights"] and [e["case_id"] for e in meta["episodes"]] == ["1", "2", "3", "5"]
    assert meta["settings"] == ["1S1Q"] and meta["orders"] == ["n/a"] and meta["protocol_variant"] == ["ALP"]
    assert meta["support_selector"] == "protocol" and meta["memory_policy"] == ["sam2"]
    assert not list((tmp_path / "out").glob("*.tmp")) and not list((tmp_path / "out").glob(".*"))


def test_cli_on_dataset_folder(chaos_folder, tmp_path):
    argv = ["run", "--episodes", str(chaos_folder), "--dataset", "CHAOST2", "--fold", "4", "--label", "spleen",
            "--setting", "S1SFQ", "--checkpoint", "random", "--image-size", "256", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "o")]
    # spleen (4) is absent from every scan of this synthetic set: a clear error, exit 2
    assert main(argv) == 2
    argv[argv.index("spleen")] = "liver"
    assert main(argv) == 0
    dice = pd.read_csv(tmp_path / "o" / "summary.csv")
    assert set(dice["label_name"]) == {"LIVER"} and set(dice["metric"]) == {"pooled", "mean_per_volume"}
    prov = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert prov["configs"][0]["folds"] == [4] and prov["configs"][0]["classes"] == ["liver"]
    assert {e["fold"] for e in prov["episodes"]} == {4} and prov["command"].startswith("fsm2kit run --episodes ")


def test_episodes_side_by_side_match_one_by_one(chaos_folder, tiny256):
    one = _run(chaos_folder, tiny256, "S1SFQ", object_batch_size=1)
    many = _run(chaos_folder, tiny256, "S1SFQ", object_batch_size=4)
    (single,), (batched,) = one.model_runs, many.model_runs
    assert single.tracking_forwards == single.tracking_steps == 12
    assert batched.tracking_forwards < batched.tracking_steps == 12
    # batched vs single steps add up in another order: the shared tolerance rule; a pixel that
    # flips under it moves at most one count of TP/FP and one of FN
    pd.testing.assert_frame_equal(many.slices[["case_id", "z"]], one.slices[["case_id", "z"]])
    flips = 0
    for a, b in zip(many.predictions, one.predictions):
        assert (a.result.case_id, a.result.label) == (b.result.case_id, b.result.label)
        np.testing.assert_allclose(a.result.logits(), b.result.logits(), rtol=1e-4, atol=1e-3)
        flips += assert_masks_agree(a.result.logits(), b.result.logits()).n_differ
    counts = (many.slices[["tp", "fp", "fn"]].to_numpy() - one.slices[["tp", "fp", "fn"]].to_numpy())
    assert np.abs(counts).sum() <= 2 * flips
