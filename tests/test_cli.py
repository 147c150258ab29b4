"""The `fsm2kit run` command on the bundled case: all four settings, outputs, provenance."""

import json

import numpy as np
import pandas as pd
import pytest

from fsm2kit.cli import main
from fsm2kit.model.loading import save_checkpoint

from conftest import EXAMPLE_NPZ

pytestmark = pytest.mark.slow


def _run(out, setting, checkpoint="random", order="middle", extra=()):
    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", setting,
            *(["--order", order] if setting.endswith("FQ") else []),  # 1S1Q/3S1Q refuse --order (no order)
            "--model", "sam2-tiny", "--checkpoint", str(checkpoint), "--image-size", "128",
            "--device", "cpu", "--no-progress", "--out", str(out), *extra]
    return main(argv)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny128):
    return save_checkpoint(tiny128, tmp_path_factory.mktemp("ckpt") / "random_sam2_tiny.pt")


@pytest.mark.parametrize("setting", ["1S1Q", "3S1Q", "S1SFQ", "3SFQ"])
def test_run_all_settings_random_and_from_file(tmp_path, ckpt, setting, capsys):
    assert _run(tmp_path / "random", setting) == 0
    printed = capsys.readouterr()
    assert "RANDOM WEIGHTS" in printed.out and "pooled" in printed.out and "mean_per_volume" in printed.out
    assert "random weights (seed 0)" in printed.out and "RANDOM WEIGHTS" in printed.err

    a = np.load(tmp_path / "random" / "logits.npz")
    run = f"{setting}-middle" if setting.endswith("FQ") else setting
    assert sorted(a.files) == sorted([*(f"sam2-tiny_{run}_case1_label1_z{z}" for z in range(12, 36)), "weights"])
    assert str(a["weights"]) == "random weights (seed 0)"  # the random-weights marker travels with the logits
    for k in set(a.files) - {"weights"}:
        assert a[k].dtype == np.float32 and a[k].shape == (256, 256)  # the slices' own size (model at 128 px)
    if setting in ("3S1Q", "3SFQ"):  # the saved checkpoint gives the same logits (one per-query and one FQ setting)
        assert _run(tmp_path / "file", setting, checkpoint=ckpt) == 0
        b = np.load(tmp_path / "file" / "logits.npz")
        assert sorted(a.files) == sorted(b.files) and str(b["weights"]).startswith("sha256:")  # weights by hash
        for k in set(a.files) - {"weights"}:
            np.testing.assert_array_equal(a[k], b[k])

    dice = pd.read_csv(tmp_path / "random" / "summary.csv")
    assert set(dice["metric"]) == {"pooled", "mean_per_volume"}
    assert set(dice["weights"]) == {"random weights (seed 0)"}
    assert set(dice["label_name"]) == {"LIVER"}
    vols = pd.read_csv(tmp_path / "random" / "volumes.csv")
    assert len(vols) == 1 and set(vols["weights"]) == {"random weights (seed 0)"}
    slices = pd.read_csv(tmp_path / "random" / "slices.csv", keep_default_na=False, na_values=[""])
    assert len(slices) == 24 and set(slices["weights"]) == {"random weights (seed 0)"}

    prov = json.loads((tmp_path / "random" / "provenance.json").read_text())
    assert prov["kind"] == "experiment" and prov["command"].startswith("fsm2kit run --episodes ")
    assert f"--setting {setting}" in prov["command"] and "--checkpoint random" in prov["command"]
    assert prov["settings"] == [setting]
    assert prov["orders"] == (["middle"] if setting.endswith("FQ") else ["n/a"])
    assert prov["random_weights"] is True and "RANDOM WEIGHTS" in prov["note"]
    assert prov["weights"] == "random weights (seed 0)"
    assert prov["models"][0]["checkpoint_sha256"] == "random weights"
    assert prov["protocol_variant"] == ["ALP"] and prov["memory_policy"] == ["sam2"]
    assert prov["versions"]["sam2"] == "1.1.0" and prov["versions"]["fsm2kit"] and prov["versions"]["python"]
    assert prov["encoder_passes"] == (25 if setting == "S1SFQ" else 27)
    assert prov["configs"][0]["settings"] == [setting] and prov["episodes"][0]["z"] == list(range(12, 36))

    if setting not in ("3S1Q", "3SFQ"):
        return
    prov_file = json.loads((tmp_path / "file" / "provenance.json").read_text())
    assert prov_file["random_weights"] is False and prov_file["note"] == ""
    assert len(prov_file["models"][0]["checkpoint_sha256"]) == 64
    assert prov_file["weights"] == "sha256:" + prov_file["models"][0]["checkpoint_sha256"]


def test_cli_errors_exit_2_with_a_message(tmp_path, capsys):
    assert _run(tmp_path / "o", "S1SFQ", checkpoint=tmp_path / "missing.pt") == 2
    assert "does not exist" in capsys.readouterr().err
    argv = ["run", "--episodes", str(tmp_path / "nowhere"), "--setting", "1S1Q", "--checkpoint", "random",
            "--image-size", "256", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--model", "sam3-x",
           "--checkpoint", "random", "--out", str(tmp_path / "o")]
    assert main(bad) == 2
    assert "Unknown model name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "4S4Q", "--out", str(tmp_path)])


def test_dataset_folder_needs_fold_and_label(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "image_1.nii.gz").write_bytes(b"")
    argv = ["run", "--episodes", str(tmp_path / "data"), "--setting", "1S1Q", "--checkpoint", "random",
            "--image-size", "256", "--out", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--dataset, --fold, --label" in capsys.readouterr().err


def test_engine_options_from_the_command_line(tiny256):
    from fsm2kit.cli import build_parser
    from fsm2kit.cli.common import engine_from_args

    base = ["run", "--episodes", "x", "--setting", "1S1Q", "--out", "o"]
    args = build_parser().parse_args(base + ["--object-batch-size", "3", "--no-progress", "--compile-encoder"])
    assert args.compile_encoder is True
    eng = engine_from_args(tiny256, args)
    assert eng.object_batch_size == 3 and eng.progress is False
    args = build_parser().parse_args(base)
    assert engine_from_args(tiny256, args).object_batch_size == 1  # CPU default


def test_run_builds_the_notebooks_config():
    """`fsm2kit run` runs an ExperimentConfig, the object the notebooks use, through the one runner."""
    from fsm2kit.cli import build_parser
    from fsm2kit.cli.run import config_from_args

    args = build_parser().parse_args(["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "s1sfq", "--order", "top",
                                      "--fold", "2", "--label", "liver", "--checkpoint", "random", "--seed", "3",
                                      "--image-size", "256", "--object-batch-size", "3", "--out", "o"])
    cfg = config_from_args(args)
    assert cfg.settings == ("S1SFQ",) and cfg.orders == ("top",) and cfg.models == ("sam2-tiny",)
    assert cfg.checkpoint == "random" and cfg.seed == 3 and cfg.image_size == 256 and cfg.object_batch_size == 3
    # an npz folder is one fold's episodes: --fold/--label are kept and checked when the dumps load
    assert cfg.folds == (2,) and cfg.classes == ("liver",)
    from fsm2kit.run.sources import load_config_episodes

    with pytest.raises(ValueError, match="not query scans of CHAOST2 fold 2"):
        load_config_episodes(cfg, progress=False)
