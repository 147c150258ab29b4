"""load_sam2: names, random weights, checkpoint files (strict keys), downloads, image sizes."""

import warnings

import numpy as np
import pytest
import torch

from fsm2kit.engine import Engine
from fsm2kit.model import MODELS, CheckpointError, load_sam2
from fsm2kit.model.specs import CheckpointDownloadError
from fsm2kit.model.loading import resolve_device, save_checkpoint
from fsm2kit.records import file_sha256


def _quiet(*a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sam2(*a, progress=False, device="cpu", **k)


def test_model_table_covers_both_sam_versions():
    assert set(MODELS) == {f"sam2{v}-{s}" for v in ("", ".1") for s in ("tiny", "small", "base_plus", "large")} | {
        "medsam2"}  # MedSAM2: test_medsam2.py
    assert MODELS["sam2-tiny"].config == "configs/sam2/sam2_hiera_t.yaml"
    assert MODELS["sam2.1-large"].checkpoint == "sam2.1_hiera_large.pt"


def test_random_weights_warn_loudly_and_are_labelled():
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        m = load_sam2("sam2-tiny", "random", image_size=256, device="cpu")
    assert m.random_weights and m.checkpoint_sha256 is None
    assert m.weights == "random weights (seed 0)"
    prov = m.provenance()
    assert prov["checkpoint_sha256"] == "random weights" and prov["random_weights"] is True
    assert prov["sam2_version"] == "1.1.0" and prov["image_size"] == 256
    assert "random weights" in repr(m)


def test_published_build_overrides_are_applied(tiny256):
    mod = tiny256.module
    assert type(mod).__name__ == "SAM2VideoPredictor"
    assert mod.fill_hole_area == 8
    assert mod.binarize_mask_from_pts_for_mem_enc is True
    dec = mod.sam_mask_decoder
    assert dec.dynamic_multimask_via_stability is True
    assert dec.dynamic_multimask_stability_delta == 0.05
    assert dec.dynamic_multimask_stability_thresh == 0.98
    assert mod.image_size == 256
    ca = mod.memory_attention.layers[0].cross_attn_image
    assert tuple(ca.freqs_cis.shape)[0] == 16 * 16  # RoPE table for the 16x16 feature map


def test_seeded_random_build_is_reproducible(tiny256):
    again = _quiet("sam2-tiny", "random", image_size=256)
    a, b = tiny256.module.state_dict(), again.module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_logits(tiny256, example_episode, tmp_path):
    path = save_checkpoint(tiny256, tmp_path / "random_tiny.pt")
    loaded = _quiet("sam2-tiny", path, image_size=256)
    assert not loaded.random_weights
    assert loaded.checkpoint_sha256 == file_sha256(path)
    assert loaded.weights == f"sha256:{file_sha256(path)}"
    sub = example_episode  # a short custom run keeps this quick
    from fsm2kit.engine.plans import fq_plan

    plan = fq_plan(sub.n_slices, [1], "middle")
    a = Engine(tiny256, progress=False).segment(sub, "S1SFQ", plans=[plan]).logits()
    b = Engine(loaded, progress=False).segment(sub, "S1SFQ", plans=[plan]).logits()
    np.testing.assert_array_equal(a, b)


def test_missing_and_unexpected_keys_are_reported(tiny256, tmp_path):
    sd = dict(tiny256.module.state_dict())
    sd.pop("maskmem_tpos_enc")
    sd["not_a_sam2_key.weight"] = torch.zeros(1)
    torch.save({"model": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as e:
        _quiet("sam2-tiny", tmp_path / "bad.pt", image_size=256)
    msg = str(e.value)
    assert "1 missing keys: maskmem_tpos_enc" in msg
    assert "1 unexpected keys: not_a_sam2_key.weight" in msg


def test_sam20_checkpoint_into_sam21_config_is_refused_with_a_hint(tiny256, tmp_path):
    """Another architecture is one line naming the model that fits, before the model is built."""
    path = save_checkpoint(tiny256, tmp_path / "sam2_tiny.pt")
    with pytest.raises(CheckpointError, match=r"^[^\n]*holds SAM 2.0 Hiera-tiny weights, not the SAM 2.1 Hiera-tiny "
                                              r"of sam2.1-tiny; pass --model sam2-tiny[^\n]*$"):
        _quiet("sam2.1-tiny", path, image_size=256)


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="is not a SAM2 checkpoint"):
        _quiet("sam2-tiny", tmp_path / "junk.pt", image_size=256)


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*sam2_hiera_tiny.pt"):
        _quiet("sam2-tiny", tmp_path / "nope.pt", image_size=256)


def test_unknown_model_name():
    with pytest.raises(ValueError, match="Unknown model name 'sam3-huge'.*sam2-tiny"):
        load_sam2("sam3-huge", "random")


def test_name_aliases():
    from fsm2kit.model.specs import resolve_spec

    assert resolve_spec("SAM2-Hiera-Tiny").name == "sam2-tiny"
    assert resolve_spec("sam2.1-base+").name == "sam2.1-base_plus"


@pytest.mark.parametrize("size", [240, 64, 1000])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="multiple of 64"):
        load_sam2("sam2-tiny", "random", image_size=size)


def test_offline_download_names_the_checkpoint_option(tmp_path, monkeypatch):
    # a closed port on loopback stands for "no internet": nothing leaves this machine
    monkeypatch.setenv("FSM2KIT_CHECKPOINT_URL", "http://127.0.0.1:9/checkpoints")
    monkeypatch.setenv("FSM2KIT_CACHE", str(tmp_path))
    with pytest.raises(CheckpointDownloadError, match="--checkpoint FILE") as e:
        load_sam2("sam2-tiny", None, image_size=256, device="cpu", progress=False)
    assert "sam2_hiera_tiny.pt" in str(e.value)
    assert not list(tmp_path.rglob("*.part"))


def test_cached_download_is_used_without_network(tiny256, tmp_path, monkeypatch):
    monkeypatch.setenv("FSM2KIT_CHECKPOINT_URL", "http://127.0.0.1:9/checkpoints")
    monkeypatch.setenv("FSM2KIT_CACHE", str(tmp_path))
    save_checkpoint(tiny256, tmp_path / "checkpoints" / "sam2_hiera_tiny.pt")
    m = _quiet("sam2-tiny", None, image_size=256)
    assert m.checkpoint.endswith("sam2_hiera_tiny.pt") and not m.random_weights


def test_device_policy():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(None).type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="device=.cpu."):
            resolve_device("cuda")


def test_cpu_precision_is_float32(tiny256):
    assert tiny256.dtype == torch.float32
    with tiny256.autocast():
        assert torch.ones(2).dtype == torch.float32


@pytest.mark.slow
def test_compiled_encoder_gives_the_same_features(load_random, example_episode):
    """compile_encoder wraps the encoder in torch.compile (the eager backend here: the plumbing,
    not inductor's speed); features, feature key and provenance follow."""
    from fsm2kit.engine import Engine

    plain = load_random("sam2-tiny", 256)
    with pytest.warns(UserWarning, match="RANDOM WEIGHTS"):
        m = load_sam2("sam2-tiny", "random", image_size=256, device="cpu")
    key = m.feature_key
    m.compile_encoder(backend="eager")
    assert m.feature_key == key and m.provenance()["compiled_encoder"] is True
    assert type(m.module.image_encoder).__name__ == "OptimizedModule"
    assert m.compile_encoder() is m  # once only
    img = example_episode.images[3]
    a = Engine(plain, progress=False).encode(img).backbone_fpn
    b = Engine(m, progress=False).encode(img).backbone_fpn
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
