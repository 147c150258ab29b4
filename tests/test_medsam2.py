"""MedSAM2 by name: the table row, checkpoint names and architecture checks, and fidelity to sam2's own
SAM2VideoPredictor built with MedSAM2's t512 values, on a seeded random model saved in MedSAM2's format."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from fsm2kit.cli import main
from fsm2kit.model.specs import (MODELS, check_model_image_size, data_caveats, image_size_for, release_file,
                                 resolve_spec, rope_feat_sizes)

from conftest import EXAMPLE_NPZ

#: MedSAM2's sam2.1_hiera_t512.yaml = sam2's configs/sam2.1/sam2.1_hiera_t.yaml with these three values
#: (written out here from the MedSAM2 repository, independently of fsm2kit's table).
T512_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
T512 = ["++model.image_size=512",
        "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
        "++model.memory_attention.layer.cross_attention.feat_sizes=[32,32]"]


# ----------------------------------------------------------------------------- the table (no torch work)
def test_medsam2_row():
    spec = resolve_spec("MedSAM2")
    assert spec is MODELS["medsam2"] and spec.config == T512_CONFIG and spec.image_size == 512
    assert spec.version == "2.1" and spec.architecture == "SAM 2.1 Hiera-tiny" == MODELS["sam2.1-tiny"].architecture
    assert spec.checkpoint == "MedSAM2_latest.pt" and spec.url.endswith("/wanglab/MedSAM2/resolve/main/MedSAM2_latest.pt")
    assert spec.releases == ("MedSAM2_latest.pt", "MedSAM2_2411.pt", "MedSAM2_CTLesion.pt",
                             "MedSAM2_MRI_LiverLesion.pt", "MedSAM2_US_Heart.pt")
    assert spec.licence == "CC-BY-SA-4.0" and MODELS["sam2-tiny"].licence == "Apache-2.0"
    assert "Synapse" in spec.caveat and "CHAOS" in spec.caveat


def test_image_size_follows_the_model_and_rope_follows_the_size():
    assert image_size_for("medsam2") == 512 and image_size_for("sam2.1-tiny") == 1024
    assert image_size_for("medsam2", 256) == 256
    assert rope_feat_sizes(1024) == (64, 64) and rope_feat_sizes(512) == (32, 32) and rope_feat_sizes(128) == (8, 8)
    assert check_model_image_size("medsam2", None) is None and check_model_image_size("medsam2", 512) is None
    assert check_model_image_size("sam2-tiny", 512) is None  # SAM2 at any size: an experiment axis
    assert "trained at 512 px" in check_model_image_size("medsam2", 1024)
    with pytest.raises(ValueError, match="multiple of 64"):
        check_model_image_size("medsam2", 500)


def test_release_names():
    spec = MODELS["medsam2"]
    assert release_file(spec, "MedSAM2_CTLesion.pt") == "MedSAM2_CTLesion.pt"
    assert release_file(spec, "/data/MedSAM2_CTLesion.pt") is None  # a path: a local file
    assert release_file(spec, "my_model.pt") is None
    with pytest.raises(ValueError, match="Unknown medsam2 checkpoint 'MedSAM2_2025.pt'.*MedSAM2_latest.pt"):
        release_file(spec, "MedSAM2_2025.pt")


def test_data_caveats():
    assert data_caveats(["medsam2"], ["SABS"]) and data_caveats(["medsam2"], ["CHAOST2", "SABS"])
    assert "(SABS here)" in data_caveats(["medsam2"], ["Synapse"])[0]
    assert data_caveats(["sam2-tiny"], ["SABS"]) == [] and data_caveats(["medsam2"], ["MyData"]) == []


def test_caption_and_note_carry_the_caveat():
    from fsm2kit.tables.dice_table import dice_table

    s = pd.DataFrame([dict(dataset="CHAOST2", label_name="LIVER", metric="mean_per_volume", dice=0.5,
                           std_per_volume=0.1, n_volumes=2, model=m, setting="S1SFQ", order="middle",
                           weights="random weights (seed 0)", protocol_variant="ALP") for m in ("medsam2",)])
    assert "not few-shot-clean" in dice_table(s).caption
    assert "not few-shot-clean" not in dice_table(s.assign(model="sam2-tiny")).caption


def test_help_lists_the_models(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "medsam2 (512 px, CC-BY-SA-4.0)" in out and "sam2.1-large (1024 px, Apache-2.0)" in out


# ----------------------------------------------------------------------------- bad input: one line, no model
def _argv(out, checkpoint, *extra, episodes=EXAMPLE_NPZ):
    return ["run", "--episodes", str(episodes), "--setting", "S1SFQ", "--model", "medsam2", "--checkpoint",
            str(checkpoint), "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def test_unknown_medsam2_name_is_one_line(tmp_path, no_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(_argv(tmp_path / "o", "MedSAM2_v9.pt")) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Unknown medsam2 checkpoint 'MedSAM2_v9.pt'" in err


def test_other_architecture_is_one_line_before_the_model(tmp_path, tiny128, no_model, capsys):
    from fsm2kit.model.loading import save_checkpoint

    ckpt = save_checkpoint(tiny128, tmp_path / "sam2_tiny.pt")  # SAM 2.0 tiny
    assert main(_argv(tmp_path / "o", ckpt)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "holds SAM 2.0 Hiera-tiny weights, not the SAM 2.1 Hiera-tiny of medsam2; pass --model sam2-tiny" in err
    assert not (tmp_path / "o").exists()


def test_released_name_downloads_through_the_mirror(tmp_path, monkeypatch):
    """A released file name downloads by name from $FSM2KIT_CHECKPOINT_URL (a closed port: offline)."""
    from fsm2kit.model import load_sam2
    from fsm2kit.model.specs import CheckpointDownloadError

    monkeypatch.setenv("FSM2KIT_CHECKPOINT_URL", "http://127.0.0.1:9/mirror")
    monkeypatch.setenv("FSM2KIT_CACHE", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointDownloadError, match="http://127.0.0.1:9/mirror/MedSAM2_CTLesion.pt"):
        load_sam2("medsam2", "MedSAM2_CTLesion.pt", device="cpu", progress=False)
    with pytest.raises(CheckpointDownloadError, match="http://127.0.0.1:9/mirror/MedSAM2_latest.pt"):
        load_sam2("medsam2", device="cpu", progress=False)


# ----------------------------------------------------------------------------- fidelity at 512 px
@pytest.fixture(scope="module")
def medsam2_file(tmp_path_factory):
    """A seeded random model built by sam2 itself with MedSAM2's t512 values, its object-score head
    shifted (+4: random weights call every object absent), saved as MedSAM2 releases it:
    ``{"model": state_dict}``."""
    from sam2.build_sam import build_sam2_video_predictor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_sam2_video_predictor(T512_CONFIG, None, device="cpu", hydra_overrides_extra=T512)
    head = model.sam_mask_decoder.pred_obj_score_head
    lin = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        lin.bias += 4.0
    path = tmp_path_factory.mktemp("medsam2") / "MedSAM2_random.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def three_slices(tmp_path_factory):
    """The bundled case cut to 3 query slices, one per chunk (an npz episode folder)."""
    d = tmp_path_factory.mktemp("ep3")
    for z in (16, 24, 31):
        (f,) = EXAMPLE_NPZ.glob(f"*_z{z}.npz")
        shutil.copy(f, d / f.name)
    return d


@pytest.fixture(scope="module")
def oracle(medsam2_file, three_slices):
    """sam2 1.1.0's SAM2VideoPredictor, built by sam2 with the t512 values and loading the file itself,
    driven the published way (S1SFQ, middle)."""
    from sam2.build_sam import build_sam2_video_predictor

    from fsm2kit.io.npz import load_npz_episodes
    from fsm2kit.model import install_cpu_connected_components
    from fsm2kit.testing.reference import published_logits

    install_cpu_connected_components()
    predictor = build_sam2_video_predictor(T512_CONFIG, str(medsam2_file), device="cpu", hydra_overrides_extra=T512)
    assert predictor.image_size == 512
    (ep,) = load_npz_episodes(three_slices)
    ref = published_logits(predictor, "S1SFQ", list(ep.images), ep.chunks, [s.image for s in ep.supports],
                           [s.mask for s in ep.supports], order="middle")
    assert (ref > 0).any() and (ref <= 0).any(), "the oracle must predict a non-trivial mask"
    return ep, ref


@pytest.mark.slow
def test_medsam2_by_name_builds_t512(medsam2_file):
    """load_sam2("medsam2", file) with no image size: 512 px and RoPE 32x32 (MedSAM2's t512), the file
    loaded strictly, licence and caveat in the model's record. (Its logits: the CLI test below.)"""
    import warnings

    from fsm2kit.model import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_sam2("medsam2", medsam2_file, device="cpu", progress=False)
    assert model.image_size == 512 and model.module.image_size == 512
    for layer in model.module.memory_attention.layers:
        assert layer.self_attn.freqs_cis.shape[0] == layer.cross_attn_image.freqs_cis.shape[0] == 32 * 32
    sd = torch.load(medsam2_file, weights_only=True)["model"]
    assert all(torch.equal(v, sd[k]) for k, v in model.module.state_dict().items())
    prov = model.provenance()
    assert prov["licence"] == "CC-BY-SA-4.0" and "CHAOS" in prov["training_data_caveat"] and prov["image_size"] == 512


@pytest.mark.slow
def test_cli_run_medsam2_records_512_and_matches(tmp_path, medsam2_file, oracle, three_slices, capsys):
    """The fidelity test: `fsm2kit run --model medsam2 --checkpoint FILE` (no --image-size; the model
    loads through load_sam2("medsam2", FILE)) gives sam2's predictor's logits under the shared
    tolerance rule, records 512 in slices.csv and the run record with licence and caveat, and notes
    the caveat beside the Dice (the npz dumps are CHAOST2)."""
    from fsm2kit.testing import assert_logits_close, assert_masks_agree

    ep, ref = oracle
    out = tmp_path / "o"
    assert main(_argv(out, medsam2_file, "--order", "middle", episodes=three_slices)) == 0
    printed = capsys.readouterr().out
    assert "not few-shot-clean" in printed  # CHAOST2 (the npz dumps' default data set) with medsam2
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["image_size"]) == {512} and set(slices["model"]) == {"medsam2"}
    prov = json.loads((out / "provenance.json").read_text())
    (m,) = prov["models"]
    assert m["image_size"] == 512 and m["model"] == "medsam2" and m["licence"] == "CC-BY-SA-4.0"
    assert m["training_data_caveat"] and m["precision"] == "fp32" and m["sam_version"] == "2.1"
    a = np.load(out / "logits.npz")
    ours = np.stack([a[f"medsam2_S1SFQ-middle_case1_label1_z{z}"] for z in ep.z])
    assert_logits_close(ours, ref)
    assert_masks_agree(ours, ref)


def test_every_command_takes_medsam2_at_512(no_model, capsys):
    """run, segment and inspect share the model options: medsam2 passes the checks with no image size
    (its 512 px), and at another size the checks say it leaves the model's training (a note, allowed)."""
    from fsm2kit.cli import build_parser
    from fsm2kit.cli.common import check_model_args

    p = build_parser()
    for cmd in (["segment", "--image", "a", "--support-image", "a", "--support-mask", "m", "--out", "o.nii.gz"],
                ["inspect", "--setting", "S1SFQ", "--out", "o"],
                ["run", "--episodes", "e", "--setting", "S1SFQ", "--out", "o"]):
        args = p.parse_args([*cmd, "--model", "medsam2", "--checkpoint", "random"])
        check_model_args(args)
        assert args.image_size is None and image_size_for(args.model, args.image_size) == 512
        assert capsys.readouterr().err == ""
        check_model_args(p.parse_args([*cmd, "--model", "medsam2", "--checkpoint", "random", "--image-size", "1024"]))
        assert "NOTE: medsam2 was trained at 512 px" in capsys.readouterr().err
