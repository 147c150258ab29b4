"""Tests of the input preparation and post-processing that must match the published pipeline.

``preprocess_slice`` / ``prompt_mask`` (fsm2kit.engine.features) against PROTOCOL.md sections 6.3, 6.4
and section 8 items 15 and 17; ``fill_holes`` / ``connected_components`` (fsm2kit.model.holes)
against section 6.5 (SAM2's ``fill_holes_in_mask_scores``: background components, score <= 0,
8-connectivity, area <= 8, set to +0.1).
"""

from __future__ import annotations

import sys
import types
from collections import deque

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from fsm2kit.engine.features import IMAGENET_MEAN, IMAGENET_STD, preprocess_slice
from fsm2kit.engine import prompt_mask
from fsm2kit.model.holes import connected_components
from fsm2kit.model import fill_holes

torch.set_num_threads(2)

MEAN = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float32)[:, None, None]
STD = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float32)[:, None, None]


def published_preprocess(slice_2d: np.ndarray, image_size: int) -> torch.Tensor:
    """A literal transcription of the published pipeline (PROTOCOL.md 6.3)."""
    img = np.repeat(slice_2d[None, None], 3, axis=1)  # the npz layout (1, 3, H, W)
    img = (img - img.min()) / (img.max() - img.min())  # npz_loader.normalize_img
    t = torch.from_numpy(img)
    t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False)
    t -= MEAN
    t /= STD
    return t


def smooth_random_slice(rng, h=64, w=64):
    x = rng.normal(size=(h, w)).astype(np.float32)
    x = ndimage.gaussian_filter(x, 2).astype(np.float32)
    return (x * 300 + 40).astype(np.float32)  # CT-like range


# --------------------------------------------------------------------------- preprocess_slice


def test_imagenet_constants():
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_preprocess_shape_dtype_and_identical_channels_before_normalisation():
    x = smooth_random_slice(np.random.default_rng(0), 40, 56)
    out = preprocess_slice(x, 64)
    assert out.shape == (1, 3, 64, 64) and out.dtype == torch.float32
    raw = out * STD + MEAN  # undo mean/std: the three channels are the same image
    torch.testing.assert_close(raw[0, 0], raw[0, 1], rtol=0, atol=1e-6)
    torch.testing.assert_close(raw[0, 0], raw[0, 2], rtol=0, atol=1e-6)
    assert raw.min() >= -1e-6 and raw.max() <= 1 + 1e-6


@pytest.mark.parametrize("size", [16, 64, 128])
def test_preprocess_equals_published_pipeline_bit_for_bit(size):
    rng = np.random.default_rng(size)
    for shape in [(64, 64), (32, 48)]:
        x = smooth_random_slice(rng, *shape)
        assert torch.equal(preprocess_slice(x, size), published_preprocess(x, size))


def test_preprocess_accepts_npz_channel_layouts():
    x = smooth_random_slice(np.random.default_rng(1), 32, 32)
    ref = preprocess_slice(x, 64)
    assert torch.equal(preprocess_slice(np.repeat(x[None], 3, axis=0), 64), ref)
    assert torch.equal(preprocess_slice(x[None], 64), ref)
    with pytest.raises(ValueError, match="2D"):
        preprocess_slice(np.stack([x, x + 1, x]), 64)  # channels differ
    with pytest.raises(ValueError, match="2D"):
        preprocess_slice(x[None, None], 64)
    bad = x.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        preprocess_slice(bad, 64)


@pytest.mark.parametrize("a,b", [(2.0, 0.0), (0.01, -5.0), (1000.0, 1e4), (1.0, -1024.0)])
def test_preprocess_is_invariant_to_positive_affine_intensity_maps(a, b):
    x = smooth_random_slice(np.random.default_rng(2))
    y = (a * x.astype(np.float64) + b).astype(np.float32)
    torch.testing.assert_close(preprocess_slice(y, 64), preprocess_slice(x, 64), rtol=0, atol=2e-5)


def test_preprocess_integer_input_matches_float():
    x = np.arange(64, dtype=np.int16).reshape(8, 8) * 7 - 100
    torch.testing.assert_close(
        preprocess_slice(x, 16), preprocess_slice(x.astype(np.float32), 16), rtol=0, atol=0
    )


def test_preprocess_constant_slice_is_finite_zero_image():
    out = preprocess_slice(np.full((20, 20), 7.5, dtype=np.float32), 32)
    assert torch.isfinite(out).all()
    expected = ((torch.zeros(1, 3, 32, 32) - MEAN) / STD)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


def test_preprocess_hand_case_2x2_to_4x4_bilinear():
    # min-max: [[0, 1], [2, 4]] -> [[0, .25], [.5, 1]]. With align_corners=False the 1D weights
    # for 2 -> 4 are: out0 = in0, out1 = .75 in0 + .25 in1, out2 = .25 in0 + .75 in1, out3 = in1.
    x = np.array([[0, 1], [2, 4]], dtype=np.float32)
    resized = torch.tensor(
        [
            [0.0, 0.0625, 0.1875, 0.25],
            [0.125, 0.203125, 0.359375, 0.4375],
            [0.375, 0.484375, 0.703125, 0.8125],
            [0.5, 0.625, 0.875, 1.0],
        ]
    )
    out = preprocess_slice(x, 4)
    expected = (resized[None].expand(3, 4, 4) - MEAN) / STD
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-6)
    # corners equal the (normalised) input corners
    raw = out[0, 0] * STD[0] + MEAN[0]
    assert [round(float(raw[i, j]), 6) for i, j in [(0, 0), (0, 3), (3, 0), (3, 3)]] == [0, 0.25, 0.5, 1]


def test_preprocess_same_size_is_min_max_only():
    x = np.array([[10, 20], [30, 50]], dtype=np.float32)
    out = preprocess_slice(x, 2)
    expected = (torch.tensor([[0.0, 0.25], [0.5, 1.0]])[None] - MEAN) / STD
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-7)


# --------------------------------------------------------------------------- prompt_mask


def blob_mask(rng, size, n=6):
    yy, xx = np.mgrid[:size, :size]
    m = np.zeros((size, size), bool)
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(size / 20, size / 5)
        m |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return m


def test_prompt_mask_at_image_size_passes_through():
    m = blob_mask(np.random.default_rng(3), 64)
    out = prompt_mask(m, 64)
    assert out.shape == (1, 1, 64, 64) and out.dtype == torch.float32
    assert torch.equal(out[0, 0], torch.from_numpy(m).float())
    # nonzero labels count as foreground
    lab = m.astype(np.uint8) * 3
    assert torch.equal(prompt_mask(lab, 64), out)


def test_prompt_mask_256_to_1024_is_antialiased_bilinear_threshold():
    m = blob_mask(np.random.default_rng(4), 256, n=10)
    t = torch.from_numpy(m).float()[None, None]
    expected = (
        F.interpolate(t, size=(1024, 1024), mode="bilinear", align_corners=False, antialias=True) >= 0.5
    ).float()
    out = prompt_mask(m, 1024)
    assert out.shape == (1, 1, 1024, 1024)
    assert torch.equal(out, expected)
    assert set(out.unique().tolist()) == {0.0, 1.0}


def test_prompt_mask_single_pixel_vanishes_when_downsampled_4x():
    # antialiased bilinear 4x: triangle filter over 8 input pixels, weights (1,3,5,7,7,5,3,1)/32;
    # a lone pixel contributes at most (7/32)^2 ~ 0.048 < 0.5 to any output
    m = np.zeros((16, 16), bool)
    m[5, 5] = True
    out = prompt_mask(m, 4)
    assert out.shape == (1, 1, 4, 4) and out.sum() == 0


def test_prompt_mask_aligned_4x4_block_downsampled_4x_is_one_pixel():
    # the block 4..7 gives 1D weight (5+7+7+5)/32 = .75 to output 1: .5625 in 2D -> kept;
    # neighbouring outputs get (3+1)/32 or less per axis -> dropped
    m = np.zeros((16, 16), bool)
    m[4:8, 4:8] = True
    out = prompt_mask(m, 4)
    expected = torch.zeros(4, 4)
    expected[1, 1] = 1
    assert torch.equal(out[0, 0], expected)


def test_prompt_mask_2x2_block_upsampled_2x_stays_a_block():
    # 8 -> 16: output o samples input o/2 - 0.25; o = 4..7 get weight >= .75 from the block
    # (corner .75 * .75 = .5625 >= .5), o = 3 and 8 get .25 -> dropped
    m = np.zeros((8, 8), bool)
    m[2:4, 2:4] = True
    out = prompt_mask(m, 16)
    expected = torch.zeros(16, 16)
    expected[4:8, 4:8] = 1
    assert torch.equal(out[0, 0], expected)


def test_prompt_mask_rejects_non_2d():
    with pytest.raises(ValueError, match="2D"):
        prompt_mask(np.zeros((1, 8, 8), bool), 16)


# --------------------------------------------------------------------------- fill_holes


def logits_from(fg: np.ndarray, fg_value=2.0, bg_value=-3.0) -> torch.Tensor:
    """(1, 1, H, W) logits: ``fg_value`` where fg is True, ``bg_value`` elsewhere."""
    return torch.from_numpy(np.where(fg, fg_value, bg_value).astype(np.float32))[None, None]


def changed(before: torch.Tensor, after: torch.Tensor) -> set:
    return {tuple(int(v) for v in p[2:]) for p in torch.nonzero(before != after)}


def test_fill_holes_single_pixel_hole():
    fg = np.ones((5, 5), bool)
    fg[2, 2] = False
    x = logits_from(fg)
    y = fill_holes(x)
    assert changed(x, y) == {(2, 2)}
    assert y[0, 0, 2, 2] == pytest.approx(0.1)
    assert y.dtype == x.dtype and y.shape == x.shape
    assert torch.equal(x, logits_from(fg))  # input untouched


def test_fill_holes_keeps_large_background_and_foreground():
    fg = np.zeros((12, 12), bool)
    fg[2:9, 2:9] = True
    fg[5, 5] = False  # a 1-pixel hole inside the square; the outer background is 95 pixels
    x = logits_from(fg)
    y = fill_holes(x)
    assert changed(x, y) == {(5, 5)}


def test_fill_holes_area_8_filled_area_9_not():
    fg = np.ones((12, 20), bool)
    fg[2:4, 2:6] = False  # 2x4 = 8 pixels
    fg[6:9, 10:13] = False  # 3x3 = 9 pixels
    x = logits_from(fg)
    y = fill_holes(x, max_area=8)
    assert changed(x, y) == {(r, c) for r in range(2, 4) for c in range(2, 6)}
    assert torch.all(y[0, 0, 2:4, 2:6] == torch.tensor(0.1))
    assert torch.all(y[0, 0, 6:9, 10:13] == -3.0)
    # with max_area 9 both go
    assert len(changed(x, fill_holes(x, max_area=9))) == 17


def test_fill_holes_diagonal_pixels_are_one_component():
    # two 5-pixel holes touching only at a corner: one 10-pixel component (8-connectivity) -> kept.
    # With 4-connectivity they would be two 5-pixel holes and both would be filled.
    fg = np.ones((8, 14), bool)
    fg[2, 1:6] = False
    fg[3, 6:11] = False  # (2, 5) and (3, 6) touch diagonally
    x = logits_from(fg)
    assert changed(x, fill_holes(x, 8)) == set()
    # two 4-pixel holes touching diagonally: 8 pixels -> filled
    fg = np.ones((8, 14), bool)
    fg[2, 1:5] = False
    fg[3, 5:9] = False
    x = logits_from(fg)
    assert len(changed(x, fill_holes(x, 8))) == 8
    # the same 5 + 5 holes apart (not touching): each is filled
    fg = np.ones((8, 14), bool)
    fg[2, 1:6] = False
    fg[4, 6:11] = False
    x = logits_from(fg)
    assert len(changed(x, fill_holes(x, 8))) == 10


def test_fill_holes_fills_small_background_touching_the_border():
    fg = np.ones((10, 10), bool)
    fg[0, 0:2] = False  # 2 pixels in the corner
    fg[4:7, 9] = False  # 3 pixels on the right edge
    x = logits_from(fg)
    y = fill_holes(x)
    assert changed(x, y) == {(0, 0), (0, 1), (4, 9), (5, 9), (6, 9)}


def test_fill_holes_max_area_zero_returns_input():
    fg = np.ones((5, 5), bool)
    fg[2, 2] = False
    x = logits_from(fg)
    assert fill_holes(x, 0) is x
    assert fill_holes(x, -1) is x


def test_fill_holes_score_zero_is_background():
    x = torch.full((1, 1, 6, 6), 1.0)
    x[0, 0, 3, 3] = 0.0  # exactly 0 counts as background (score <= 0)
    x[0, 0, 1, 1] = 1e-6  # tiny positive is foreground: untouched
    y = fill_holes(x)
    assert changed(x, y) == {(3, 3)}
    assert y[0, 0, 3, 3] == pytest.approx(0.1)
    # a large all-zero image is one big background component: unchanged
    z = torch.zeros(1, 1, 6, 6)
    assert torch.equal(fill_holes(z), z)


def test_fill_holes_all_background_small_image_is_filled():
    # the whole image is one background component of area 4 <= 8
    x = torch.full((1, 1, 2, 2), -1.0)
    assert torch.equal(fill_holes(x), torch.full((1, 1, 2, 2), 0.1))


def test_fill_holes_batch_is_per_image():
    fg_a = np.ones((9, 9), bool)
    fg_a[4, 4] = False
    fg_b = np.zeros((9, 9), bool)  # all background (81 px): nothing to fill
    fg_c = np.ones((9, 9), bool)
    fg_c[0:3, 0:3] = False  # 9 px: too large
    fg_c[6, 6] = False
    x = torch.cat([logits_from(fg_a), logits_from(fg_b), logits_from(fg_c)])
    y = fill_holes(x)
    assert y.shape == (3, 1, 9, 9)
    for i in range(3):
        assert torch.equal(y[i : i + 1], fill_holes(x[i : i + 1]))
    assert changed(x[0:1], y[0:1]) == {(4, 4)}
    assert changed(x[1:2], y[1:2]) == set()
    assert changed(x[2:3], y[2:3]) == {(6, 6)}


def test_fill_holes_keeps_dtype():
    fg = np.ones((5, 5), bool)
    fg[1, 1] = False
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        x = logits_from(fg).to(dtype)
        y = fill_holes(x)
        assert y.dtype == dtype
        assert y[0, 0, 1, 1] == torch.tensor(0.1, dtype=dtype)


def test_fill_holes_matches_sam2_fill_holes_in_mask_scores(monkeypatch):
    """sam2's own post-processing, with its CUDA labeller replaced by scipy (8-connectivity)."""
    from sam2.utils.misc import fill_holes_in_mask_scores

    def get_connected_componnets(mask_u8):
        m = mask_u8.cpu().numpy().astype(bool)
        labels = np.zeros(m.shape, np.int32)
        areas = np.zeros(m.shape, np.int32)
        for i in range(m.shape[0]):
            lab, _ = ndimage.label(m[i, 0], structure=np.ones((3, 3)))
            counts = np.bincount(lab.ravel())
            counts[0] = 0
            labels[i, 0], areas[i, 0] = lab, counts[lab]
        return torch.from_numpy(labels), torch.from_numpy(areas)

    fake = types.ModuleType("sam2._C")
    fake.get_connected_componnets = get_connected_componnets
    monkeypatch.setitem(sys.modules, "sam2._C", fake)
    import sam2

    monkeypatch.setattr(sam2, "_C", fake, raising=False)
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(4, 1, 32, 32)).astype(np.float32))
    x = torch.from_numpy(ndimage.gaussian_filter(x.numpy(), (0, 0, 1, 1)) + 0.02)
    x[0, 0, 10, 10] = 0.0
    for area in (1, 8, 20):
        expected = fill_holes_in_mask_scores(x, area)
        got = fill_holes(x, area)
        assert torch.equal(got, expected)
    assert not torch.equal(fill_holes(x, 8), x)  # the case exercises filling


# --------------------------------------------------------------------------- connected_components


def flood_fill_components(m: np.ndarray):
    """Independent 8-connected labelling by BFS: list of pixel sets."""
    seen = np.zeros_like(m, bool)
    comps = []
    h, w = m.shape
    for r0 in range(h):
        for c0 in range(w):
            if not m[r0, c0] or seen[r0, c0]:
                continue
            comp, todo = set(), deque([(r0, c0)])
            seen[r0, c0] = True
            while todo:
                r, c = todo.popleft()
                comp.add((r, c))
                for dr in (-1, 0, 1):
                    for dc in (-1, 0, 1):
                        rr, cc = r + dr, c + dc
                        if 0 <= rr < h and 0 <= cc < w and m[rr, cc] and not seen[rr, cc]:
                            seen[rr, cc] = True
                            todo.append((rr, cc))
            comps.append(comp)
    return comps


def test_connected_components_vs_scipy_and_flood_fill_on_random_masks():
    rng = np.random.default_rng(6)
    masks = rng.random((6, 1, 14, 17)) < np.linspace(0.2, 0.7, 6)[:, None, None, None]
    labels, areas = connected_components(torch.from_numpy(masks))
    assert labels.shape == areas.shape == (6, 1, 14, 17)
    assert labels.dtype == areas.dtype == torch.int32
    for i in range(6):
        m = masks[i, 0]
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        assert np.array_equal(labels[i, 0].numpy(), lab)
        assert int(labels[i, 0].max()) == n
        ar = areas[i, 0].numpy()
        assert (ar[~m] == 0).all() and (labels[i, 0].numpy()[~m] == 0).all()
        assert (ar[m] > 0).all()
        comps = flood_fill_components(m)
        assert len(comps) == n
        for comp in comps:
            labs = {int(labels[i, 0, r, c]) for r, c in comp}
            assert len(labs) == 1 and 0 not in labs  # one label per component
            assert {int(ar[r, c]) for r, c in comp} == {len(comp)}


def test_connected_components_hand_case():
    m = torch.tensor(
        [
            [1, 0, 0, 1],
            [0, 1, 0, 1],
            [0, 0, 0, 0],
            [1, 1, 0, 0],
        ],
        dtype=torch.bool,
    )[None, None]
    labels, areas = connected_components(m)
    # (0,0)-(1,1) diagonal: one component of 2; (0,3),(1,3): 2; (3,0),(3,1): 2
    assert areas[0, 0].tolist() == [[2, 0, 0, 2], [0, 2, 0, 2], [0, 0, 0, 0], [2, 2, 0, 0]]
    lab = labels[0, 0]
    assert lab[0, 0] == lab[1, 1] != lab[0, 3] == lab[1, 3] != lab[3, 0] == lab[3, 1]
    assert len({int(lab[0, 0]), int(lab[0, 3]), int(lab[3, 0])}) == 3


def test_connected_components_empty_and_full():
    labels, areas = connected_components(torch.zeros(2, 1, 5, 6))
    assert labels.sum() == 0 and areas.sum() == 0
    labels, areas = connected_components(torch.ones(1, 1, 5, 6))
    assert (labels == 1).all() and (areas == 30).all()


@pytest.mark.parametrize("shape", [(5, 5), (1, 5, 5), (1, 2, 5, 5), (2, 1, 1, 5, 5)])
def test_connected_components_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        connected_components(torch.zeros(shape, dtype=torch.bool))
