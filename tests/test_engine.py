"""The engine against SAM2's own video predictor driven the published way, and its bookkeeping."""

import dataclasses

import numpy as np
import pytest
import torch

from fsm2kit.engine import Engine
from fsm2kit.model import install_cpu_connected_components
from fsm2kit.engine.plans import custom_plan
from fsm2kit.testing.reference import published_logits
from fsm2kit.testing import assert_logits_close, assert_masks_agree

pytestmark = pytest.mark.slow


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))


def _present(model, bias=4.0):
    """Shift the object-score head so random weights predict 'object present'.

    With random weights the object score is negative and every mask is the constant
    NO_OBJ_SCORE, which would make the comparison trivial. The shift applies to the one model
    both sides use.
    """
    head = model.module.sam_mask_decoder.pred_obj_score_head
    lin = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        lin.bias += bias
    return model


@pytest.fixture(scope="module")
def present256(load_random):
    install_cpu_connected_components()
    return _present(load_random("sam2-tiny", 256))


_ORACLE: dict = {}


def _oracle(model, ep, setting, order):
    """The published code's logits, computed once per (model, episode, setting, order) in this module
    (the faithfulness and the batching tests compare against the same references)."""
    key = (id(model), id(ep), setting, order)
    if key not in _ORACLE:
        _ORACLE[key] = published_logits(
            model.module, setting, list(ep.images), ep.chunks,
            [s.image for s in ep.supports], [s.mask for s in ep.supports], order=order,
        )
    return _ORACLE[key]


CASES = [("1S1Q", None), ("3S1Q", None), ("S1SFQ", "top"), ("S1SFQ", "middle"), ("3SFQ", "top"), ("3SFQ", "middle")]


@pytest.mark.parametrize("setting,order", CASES, ids=[f"{s}-{o or 'na'}" for s, o in CASES])
def test_faithful_to_published_video_predictor(present256, example_episode, setting, order):
    """Bit-exact masks: both sides run the same operations in the same order (one step per forward).

    fsm2kit's engine composes SAM2Base's own methods exactly as the video predictor calls them,
    so the masks must be identical on any CPU; the logits' relative L2 check is a second guard.
    """
    ep = example_episode
    res = Engine(present256, progress=False).segment(ep, setting, order=order or "middle")
    ours = res.logits()
    ref = _oracle(present256, ep, setting, order or "middle")
    assert ours.shape == ref.shape == (24, 256, 256)
    assert (ref > 0).any() and (ref <= 0).any(), "the oracle must predict a non-trivial mask"
    assert _rel(ours, ref) < 1e-3
    np.testing.assert_array_equal(ours > 0, ref > 0)


def test_faithful_when_no_object_is_predicted(load_random, example_episode):
    install_cpu_connected_components()
    model = load_random("sam2-tiny", 256)  # untouched random weights: object scores < 0
    ours = Engine(model, progress=False).segment(example_episode, "S1SFQ").logits()
    ref = _oracle(model, example_episode, "S1SFQ", "middle")
    assert _rel(ours, ref) < 1e-3


def test_faithful_sam21_middle(load_random, example_episode):
    """SAM 2.1 adds signed temporal encodings to object pointers: check them too."""
    install_cpu_connected_components()
    model = _present(load_random("sam2.1-tiny", 256))
    ours = Engine(model, progress=False).segment(example_episode, "S1SFQ", order="middle").logits()
    ref = _oracle(model, example_episode, "S1SFQ", "middle")
    assert _rel(ours, ref) < 1e-3


def test_faithful_at_512(load_random, example_episode):
    """A reduced size other than 256 (video resolution 256 != low-res 128: output is resized)."""
    install_cpu_connected_components()
    model = _present(load_random("sam2-tiny", 512))
    keep = np.arange(0, example_episode.n_slices, 3)  # 8 of the 24 slices, every chunk
    ep = dataclasses.replace(example_episode, z=example_episode.z[keep], images=example_episode.images[keep],
                             labels=example_episode.labels[keep], chunks=example_episode.chunks[keep])
    ours = Engine(model, progress=False).segment(ep, "S1SFQ", order="top").logits()
    ref = _oracle(model, ep, "S1SFQ", "top")
    assert _rel(ours, ref) < 1e-3


def test_each_slice_is_encoded_once_across_settings(tiny256, example_episode):
    eng = Engine(tiny256, progress=False)
    r = eng.segment(example_episode, "3S1Q")
    assert r.encoder_passes == 27  # 24 query slices + 3 supports
    for setting in ("1S1Q", "S1SFQ", "3SFQ"):
        assert eng.segment(example_episode, setting).encoder_passes == 0
    assert eng.stats.encoder_passes == 27


def test_cached_and_uncached_logits_are_identical(tiny256, example_episode):
    """Bit-equal: the cached features came from the same encoder call on the same slice."""
    warm = Engine(tiny256, progress=False)
    warm.segment(example_episode, "3S1Q")
    a = warm.segment(example_episode, "S1SFQ").logits()
    b = Engine(tiny256, progress=False).segment(example_episode, "S1SFQ").logits()
    np.testing.assert_array_equal(a, b)


def test_memory_bank_is_explicit(tiny256, example_episode):
    res = Engine(tiny256, progress=False).segment(example_episode, "S1SFQ", order="middle", keep_banks=True)
    (bank,) = res.banks
    assert list(bank.cond) == [12]  # queries[:12] + support + queries[12:]
    assert len(bank.non_cond) == 24
    entry = bank.cond[12]
    assert entry.kind == "support" and entry.is_cond and entry.maskmem_features.dtype == torch.bfloat16
    first = res.slices[12]  # z=24, the first forward step after the support
    assert first.step == 0 and first.selection.frames == (12,)
    # the backward pass's first step (z=23, frame 11) sees the support and forward-pass predictions
    back = res.slices[11]
    assert back.step == 12
    assert back.selection.frames[0] == 12
    assert all(f > 12 for f in back.selection.frames[1:])
    assert "bfloat16" in repr(entry) and "cond" in repr(bank)


def test_custom_plan_runs(tiny256, example_episode):
    plan = custom_plan([5, 4, 3], supports=[1], n_queries=24)
    res = Engine(tiny256, progress=False).segment(example_episode, "S1SFQ", plans=[plan])
    assert [s.position for s in res.slices] == [3, 4, 5]
    assert res.order == "custom"


def test_support_echo(tiny256, example_episode):
    """SAM2 outputs the mask prompt itself on a support frame (use_mask_input_as_output)."""
    eng = Engine(tiny256, progress=False)
    sup = example_episode.middle_support
    sm = eng.support_memory(sup)
    assert sm.logits.shape == sup.mask.shape
    agree = np.mean((sm.logits > 0) == sup.mask)
    assert agree > 0.99
    assert sm.entry.object_score == pytest.approx(10.0)


def test_result_table(tiny256, example_episode):
    res = Engine(tiny256, progress=False).segment(example_episode, "1S1Q")
    df = res.to_frame(example_episode.labels)
    assert len(df) == 24 and set(df["order"]) == {"n/a"}
    assert {"tp", "fp", "fn", "object_score", "iou_pred", "weights"} <= set(df.columns)
    assert df["weights"].iloc[0].startswith("random weights")
    assert (df["tp"] + df["fn"]).sum() == int(example_episode.labels.sum())


def test_disk_cache_reused_across_engines(tiny256, example_episode, tmp_path):
    """Bit-equal: features read back from disk are the bytes the same encoder call wrote."""
    first = Engine(tiny256, progress=False, cache_dir=tmp_path)
    a = first.segment(example_episode, "S1SFQ").logits()
    assert first.stats.encoder_passes == 25 and first.stats.disk_hits == 0
    files = list(tmp_path.rglob("*.pt"))
    assert len(files) == 25 and all(tiny256.feature_key in str(f) for f in files)
    second = Engine(tiny256, progress=False, cache_dir=tmp_path)
    b = second.segment(example_episode, "S1SFQ").logits()
    assert second.stats.encoder_passes == 0 and second.stats.disk_hits == 25
    np.testing.assert_array_equal(a, b)


def test_bounded_cache_and_cpu_storage_give_identical_logits(tiny256, example_episode):
    """Bit-equal: evicted slices are re-encoded by the same operations, one slice per call."""
    ref = Engine(tiny256, progress=False).segment(example_episode, "S1SFQ", order="top").logits()
    small = Engine(tiny256, progress=False, max_cached_slices=4, storage_device="cpu")
    out = small.segment(example_episode, "S1SFQ", order="top").logits()
    np.testing.assert_array_equal(out, ref)
    assert len(small.features) <= 4


def test_batched_encoding_matches_single(tiny256, example_episode):
    one = Engine(tiny256, progress=False)
    many = Engine(tiny256, progress=False, encode_batch_size=4)
    fa = one.encode_all(list(example_episode.images[:4]))
    fb = many.encode_all(list(example_episode.images[:4]))
    assert many.stats.encoder_passes == 4
    for x, y in zip(fa, fb):
        for u, v in zip(x.backbone_fpn, y.backbone_fpn):
            torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-4)


def test_batched_steps_are_faithful(present256, example_episode):
    """3S1Q's per-query plans and two S1SFQ runs side by side, several steps per SAM2 forward.

    Batched steps add up in another order than the predictor's single steps, so this compares
    under the shared tolerance rule (fsm2kit.testing), not bit for bit.
    """
    ep = example_episode
    eng = Engine(present256, progress=False, object_batch_size=4)
    res = eng.segment(ep, "3S1Q")
    assert eng.stats.tracking_forwards == 6 and eng.stats.tracking_steps == 24
    ref = _oracle(present256, ep, "3S1Q", "middle")
    assert_logits_close(res.logits(), ref)
    assert_masks_agree(res.logits(), ref)
    eng = Engine(present256, progress=False, object_batch_size=4)
    a, b = eng.segment_many([ep, ep], "S1SFQ", order="middle")
    assert eng.stats.tracking_forwards == 24 and eng.stats.tracking_steps == 48
    ref = _oracle(present256, ep, "S1SFQ", "middle")
    for r in (a, b):
        assert_logits_close(r.logits(), ref)
        assert_masks_agree(r.logits(), ref)
