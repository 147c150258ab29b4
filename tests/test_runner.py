"""Episodes from an SSL-ALPNet dataset folder through the protocol, the engine and the writers."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fsm2kit.cli import main
from fsm2kit.core import Engine
from fsm2kit.protocol import SCAN_IDS
from fsm2kit.workflows.runner import load_episodes, run_episodes, write_run
from fsm2kit.testing import assert_masks_agree

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


def test_run_and_write(chaos_folder, tiny256, tmp_path):
    eps = load_episodes(chaos_folder, dataset="CHAOST2", fold=0, label="RK")
    run = run_episodes(Engine(tiny256, progress=False), eps, "1S1Q")
    assert len(run.slices) == 12 and run.encoder_passes == 4 * 3 + 3
    d = run.dice()
    summary = d[d["case_id"] == "all"].set_index("metric")
    assert summary.loc["pooled", "n_volumes"] == 4 and summary.loc["mean_per_volume", "n_slices"] == 12
    assert (d["metric"] == "volume").sum() == 4
    paths = write_run(run, tmp_path / "out")
    keys = np.load(paths["logits"]).files
    assert len(keys) == 12 and keys[0].startswith("case1_label2_z")
    meta = json.loads(paths["run"].read_text())
    assert meta["random_weights"] and [e["case_id"] for e in meta["episodes"]] == ["1", "2", "3", "5"]
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_cli_on_dataset_folder(chaos_folder, tmp_path):
    argv = ["run", "--episodes", str(chaos_folder), "--dataset", "CHAOST2", "--fold", "4", "--label", "spleen",
            "--setting", "S1SFQ", "--checkpoint", "random", "--image-size", "256", "--device", "cpu",
            "--no-progress", "--out", str(tmp_path / "o")]
    # spleen (4) is absent from every scan of this synthetic set: a clear error, exit 2
    assert main(argv) == 2
    argv[argv.index("spleen")] = "liver"
    assert main(argv) == 0
    dice = pd.read_csv(tmp_path / "o" / "dice.csv")
    assert set(dice["label_name"]) == {"LIVER"}
    assert json.loads((tmp_path / "o" / "run.json").read_text())["fold"] == 4


def test_run_episodes_side_by_side_matches_one_by_one(chaos_folder, tiny256):
    eps = load_episodes(chaos_folder, dataset="CHAOST2", fold=0, label="RK")
    one = run_episodes(Engine(tiny256, progress=False, object_batch_size=1), eps, "S1SFQ")
    eng = Engine(tiny256, progress=False, object_batch_size=4)
    many = run_episodes(eng, eps, "S1SFQ")
    assert eng.stats.tracking_forwards < eng.stats.tracking_steps == 12
    # batched vs single steps add up in another order: the shared tolerance rule; a pixel that
    # flips under it moves at most one count of TP/FP and one of FN
    pd.testing.assert_frame_equal(many.slices[["case_id", "z"]], one.slices[["case_id", "z"]])
    flips = 0
    for a, b in zip(many.results, one.results):
        np.testing.assert_allclose(a.logits(), b.logits(), rtol=1e-4, atol=1e-3)
        flips += assert_masks_agree(a.logits(), b.logits()).n_differ
    counts = (many.slices[["tp", "fp", "fn"]].to_numpy() - one.slices[["tp", "fp", "fn"]].to_numpy())
    assert np.abs(counts).sum() <= 2 * flips
