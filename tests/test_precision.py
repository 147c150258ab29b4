"""The GPU's precision path on the CPU: ``precision="bf16"`` (bfloat16 autocast) through run, segment,
inspect, corrections and a sweep's parameters, against float32 under the bf16 tolerance rule
(:func:`fsm2kit.testing.assert_bf16_close`). Small: a random tiny model at 128 px, 3-4 query slices.

The model's heads are shifted so that results are decisive: the object-score head says "present"
(random weights call every object absent) and the IoU head ranks the three multimask candidates
apart. Random weights predict the three IoUs within 0.004 of each other, below bf16's resolution
near 0.5 (2^-8): bf16 then ties them and SAM2's argmax picks another candidate, a whole other mask
(seen in a 4-slice propagation). Trained weights separate their candidates; the GPU does the same.
"""

import dataclasses
import json

import numpy as np
import pytest
import torch

from fsm2kit.engine import Engine
from fsm2kit.run import ExperimentConfig
from fsm2kit.run.runner import run_experiments
from fsm2kit.run.sources import subset_episode
from fsm2kit.testing import assert_bf16_close

MEASURED: dict = {}  # (what) -> (relative L2, mask fraction differing); printed with -s


@pytest.fixture(scope="module")
def ep3(example_episode):
    return subset_episode(example_episode, max_slices=3)


@pytest.fixture(scope="module")
def decisive128(load_random):
    """A random sam2-tiny at 128 px with an object present and its multimask candidates ranked apart."""
    from fsm2kit.model import install_cpu_connected_components

    install_cpu_connected_components()
    model = load_random("sam2-tiny", 128)
    dec = model.module.sam_mask_decoder
    heads = [dec.pred_obj_score_head, dec.iou_prediction_head]
    lin = [h.layers[-1] if hasattr(h, "layers") else h for h in heads]
    with torch.no_grad():
        lin[0].bias += 4.0
        lin[1].bias += torch.tensor([0.0, 0.0, 1.0, 0.0])  # the multimask candidate random weights favour, decisively
    return model


@pytest.fixture(scope="module")
def bf16(decisive128):
    """The same weights under bf16 autocast (a copy of the record; the module is shared)."""
    return dataclasses.replace(decisive128, precision="bf16")


def _close(what, a, b):
    MEASURED[what] = assert_bf16_close(a, b)
    print(f"bf16 vs fp32 {what}: relative L2 {MEASURED[what][0]:.2e}, masks differ on {MEASURED[what][1]:.2e}")


def test_precision_policy_is_scoped(decisive128, bf16):
    assert decisive128.dtype == torch.float32 and decisive128.precision is None
    assert bf16.dtype == torch.bfloat16 and bf16.provenance()["precision"] == "bf16"
    assert bf16.feature_key.endswith("-bf16") and not decisive128.feature_key.endswith("-bf16")
    x = torch.ones(4, 4)
    with bf16.autocast():
        assert (x @ x).dtype == torch.bfloat16
    assert (x @ x).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")  # nothing left behind
    with decisive128.autocast():
        assert (x @ x).dtype == torch.float32
    fp32 = dataclasses.replace(decisive128, precision="fp32")
    assert fp32.dtype == torch.float32 and fp32.provenance()["precision"] == "fp32"


def test_precision_values_are_checked():
    from fsm2kit.model.specs import check_precision

    assert check_precision(None) is None and check_precision("BF16") == "bf16" and check_precision("float32") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        check_precision("fp16")
    with pytest.raises(ValueError, match="on mps use fp32"):
        check_precision("bf16", "mps")
    with pytest.raises(ValueError, match="ExperimentConfig.precision must be one of"):
        ExperimentConfig(precision="half")


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["1S1Q", "S1SFQ"])
def test_run_under_bf16(decisive128, ep3, setting):
    """run_experiments with config.precision: the given fp32 model runs under bf16, recorded as such."""
    cfg = ExperimentConfig(checkpoint="random", image_size=128, device="cpu", settings=[setting])
    kw = dict(models={"sam2-tiny": decisive128}, episodes=[[ep3]], keep_predictions=True, progress=False)
    a = run_experiments(cfg, **kw)
    b = run_experiments(cfg.replace(precision="bf16"), **kw)
    la, lb = a.predictions[0].result.logits(), b.predictions[0].result.logits()
    assert np.isfinite(lb).all() and lb.dtype == np.float32
    _close(f"run {setting}", lb, la)
    assert set(b.slices["dtype"]) == {"bfloat16"} and set(a.slices["dtype"]) == {"float32"}
    assert b.model_runs[0].provenance["precision"] == "bf16" and a.model_runs[0].provenance["precision"] == "fp32"
    assert decisive128.precision is None  # the caller's model is left as it was


@pytest.mark.slow
def test_corrections_under_bf16(decisive128, ep3, tmp_path):
    z = int(ep3.z[1])
    prompts = tmp_path / "fix.json"
    prompts.write_text(json.dumps([[{"z": z, "points": [[120, 130, 1], [60, 60, 0]]}]]))
    cfg = ExperimentConfig(checkpoint="random", image_size=128, device="cpu", settings=["S1SFQ"], prompts=prompts)
    kw = dict(models={"sam2-tiny": decisive128}, episodes=[[ep3]], keep_predictions=True, progress=False)
    a = run_experiments(cfg, **kw)
    b = run_experiments(cfg.replace(precision="bf16"), **kw)
    _close("corrections", b.predictions[0].result.logits(), a.predictions[0].result.logits())


@pytest.mark.slow
def test_segment_under_bf16(decisive128, bf16, example_episode):
    from fsm2kit.segment.own_scan import segment_volume

    query = example_episode.images[10:14]
    sup = example_episode.supports[1]
    out = {}
    for name, model in (("fp32", decisive128), ("bf16", bf16)):
        res = segment_volume(query, sup.image[None], (sup.mask[None] > 0).astype(np.uint8),
                             engine=Engine(model, progress=False), support_slices=0, stop="none", progress=False)
        out[name] = res.organs[0].logits
        assert res.model_provenance["precision"] == name
    _close("segment", out["bf16"], out["fp32"])


@pytest.mark.slow
def test_inspect_under_bf16(decisive128, bf16):
    from fsm2kit.studies import inspect_run

    kw = dict(setting="S1SFQ", order="middle", max_slices=3)
    a = inspect_run(engine=Engine(decisive128, progress=False), **kw)
    b = inspect_run(engine=Engine(bf16, progress=False), **kw)  # verify=True: capture changes nothing under bf16
    _close("inspect", b.result.logits(), a.result.logits())
    assert len(b.masses) == len(a.masses) > 0


def test_cli_precision_option_reaches_every_command(tmp_path):
    """--precision is one shared option (run, segment, inspect); run records it and bf16 is the model's policy."""
    from fsm2kit.cli import build_parser
    from fsm2kit.cli.common import model_from_args
    from fsm2kit.cli.run import config_from_args

    p = build_parser()
    for cmd in (["segment", "--image", "a", "--support-image", "a", "--support-mask", "m", "--out", "o.nii.gz"],
                ["inspect", "--setting", "S1SFQ", "--out", "o"],
                ["run", "--episodes", "e", "--setting", "S1SFQ", "--out", "o"]):
        args = p.parse_args([*cmd, "--precision", "bf16"])
        assert args.precision == "bf16" and args.image_size is None
    with pytest.raises(SystemExit):
        p.parse_args(["run", "--episodes", "e", "--setting", "S1SFQ", "--out", "o", "--precision", "fp16"])
    from conftest import EXAMPLE_NPZ

    args = p.parse_args(["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--out", "o", "--checkpoint",
                         "random", "--image-size", "128", "--device", "cpu", "--no-progress", "--precision", "bf16"])
    assert config_from_args(args).precision == "bf16"
    model = model_from_args(args)
    assert model.precision == "bf16" and model.image_size == 128 and model.dtype == torch.bfloat16


def test_sweep_passes_precision_to_the_notebook(tmp_path):
    """A sweep's ``precision`` (and ``image_size``) reach the notebook's config: the parameters are
    checked against notebook 00's parameters cell and ExperimentConfig.from_parameters takes them.
    (The plumbing, not a papermill run: a bf16 sweep executes the same run path as test_run_under_bf16.)"""
    from conftest import REPO
    from fsm2kit.batch.sweep_spec import load_sweep

    sweep = tmp_path / "bf16.yaml"
    sweep.write_text(f"notebook: {REPO / 'notebooks' / '00_quickstart.ipynb'}\nrun_name: '{{precision}}-{{image_size}}'\n"
                     "grid:\n  precision: [fp32, bf16]\n  image_size: [128, 256]\n"
                     "parameters:\n  checkpoint: random\n  device: cpu\n")
    runs = load_sweep(sweep).runs(tmp_path / "reports")
    assert sorted(r.folder.name for r in runs) == ["bf16-128", "bf16-256", "fp32-128", "fp32-256"]
    for r in runs:
        cfg = ExperimentConfig.from_parameters(r.notebook_parameters)
        assert (cfg.precision, cfg.image_size) == (r.parameters["precision"], r.parameters["image_size"])
