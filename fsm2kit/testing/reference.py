"""The published FS-MedSAM2 inference, driven literally through sam2's own SAM2VideoPredictor.

This is the reference for fsm2kit's engine (its faithfulness tests) and for the benchmarks (the
published per-query loop). It transcribes what the published scripts do
(``infer_fsmedsam2_by_slice.py``, ``infer_fsmedsam2_by_volume.py``,
``infer_fsmedsam2_by_volume_from_middle.py``, and ``load_video_frames_by_np_data`` /
``init_state_by_np_data``; PROTOCOL.md section 6): per-slice min-max of the (1, 3, H, W) npz
arrays, a "video" of numpy frames resized to the model's image size with bilinear interpolation
and ImageNet normalisation, ``add_new_mask`` on the support frames and ``propagate_in_video``.
sam2 1.1.0's ``init_state`` only reads JPEG folders or mp4 files, so the in-memory frames are
handed to it by replacing ``load_video_frames`` for the duration of the call (the published
code added ``init_state_by_np_data`` to do the same).

It shares nothing with fsm2kit's engine except the model object. Give it the same CPU hole
filling with :func:`fsm2kit.model.sam2_adapter.install_cpu_connected_components`.
"""

from __future__ import annotations

__all__ = ["normalize_img", "frames_from_np", "run_video", "published_logits", "run_video_corrections"]

import contextlib
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F


def normalize_img(x: np.ndarray) -> np.ndarray:
    """npz_loader.normalize_img: min-max over the whole array."""
    return (x - x.min()) / (x.max() - x.min())


def frames_from_np(arrays: list[np.ndarray], image_size: int):
    """load_video_frames_by_np_data: (N, 3, H, W) [0,1] frames -> resized, normalised tensor."""
    img_mean = torch.tensor((0.485, 0.456, 0.406), dtype=torch.float32)[:, None, None]
    img_std = torch.tensor((0.229, 0.224, 0.225), dtype=torch.float32)[:, None, None]
    images = torch.from_numpy(np.concatenate(arrays, axis=0).astype(np.float32))
    h, w = images.shape[-2:]
    images = F.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
    images -= img_mean
    images /= img_std
    return images, h, w


@contextlib.contextmanager
def _np_video(images, h, w):
    import sam2.sam2_video_predictor as vp

    with mock.patch.object(vp, "load_video_frames", lambda **kw: (images, h, w)):
        yield


def _as_npz_slice(img2d: np.ndarray) -> np.ndarray:
    """A 2D slice as the published (1, 3, H, W) array, normalised per slice."""
    a = np.repeat(np.asarray(img2d, dtype=np.float32)[None, None], 3, axis=1)
    return normalize_img(a)


def run_video(predictor, frames2d, support_frames, support_masks, propagations):
    """Build a state from 2D frames, add masks, propagate; return {frame_idx: logits (H, W)}."""
    images, h, w = frames_from_np([_as_npz_slice(f) for f in frames2d], predictor.image_size)
    with torch.inference_mode(), _np_video(images, h, w):
        state = predictor.init_state(video_path="<numpy frames>")
    out = {}
    with torch.inference_mode():
        for fi, m in zip(support_frames, support_masks):
            predictor.add_new_mask(state, frame_idx=fi, obj_id=1, mask=np.asarray(m) > 0.5)
        for start, reverse in propagations:
            for fi, _, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                out[fi] = masks[0, 0].float().cpu().numpy()
    return out


def published_logits(predictor, setting, queries, chunks, supports, support_masks, order="middle"):
    """Logits (M, H, W) of every query slice, the published way.

    queries: list of 2D query slices (ascending z); chunks: chunk id per query; supports /
    support_masks: one per chunk (index = chunk).
    """
    m = len(queries)
    res = [None] * m
    if setting in ("1S1Q", "3S1Q"):
        for q in range(m):
            if setting == "1S1Q":  # the paper's 1S1Q: only the chunk's support
                sup_idx = [int(chunks[q])]
            else:  # the published by_slice script: all supports, then the query
                sup_idx = list(range(len(supports)))
            frames = [supports[i] for i in sup_idx] + [queries[q]]
            k = len(sup_idx)
            out = run_video(predictor, frames, list(range(k)), [support_masks[i] for i in sup_idx], [(k, False)])
            res[q] = out[k]
    else:
        sup_idx = [len(supports) // 2] if setting == "S1SFQ" else list(range(len(supports)))
        k = len(sup_idx)
        sups = [supports[i] for i in sup_idx]
        masks = [support_masks[i] for i in sup_idx]
        if order == "top":  # by_volume: [support] + queries sorted by z, forward
            frames = sups + list(queries)
            out = run_video(predictor, frames, list(range(k)), masks, [(0, False)])
            for q in range(m):
                res[q] = out[k + q]
        else:  # by_volume_from_middle: queries[:N//2] + support + queries[N//2:]
            half = m // 2
            frames = list(queries[:half]) + sups + list(queries[half:])
            cond = list(range(half, half + k))
            out = run_video(predictor, frames, cond, masks, [(half, False), (half, True)])
            for q in range(m):
                res[q] = out[q if q < half else q + k]
    return np.stack(res)


def run_video_corrections(predictor, frames2d, support_frames, support_masks, propagations, rounds):
    """:func:`run_video`, then correction rounds, as issue 13 drives SAM2's predictor.

    ``rounds``: per round a list of (frame_idx, points [(x, y, label)], box (x0, y0, x1, y1) or
    None, mask or None). The predictor runs with ``add_all_frames_to_correct_as_cond=True`` (set
    for the call, restored after). Each correction is one ``add_new_points_or_box`` (pixel
    coordinates, ``normalize_coords=True``, ``clear_old_points=True``) or ``add_new_mask``; then
    the same propagations again. Returns one {frame_idx: logits} per stage (before the rounds,
    then after each).
    """
    images, h, w = frames_from_np([_as_npz_slice(f) for f in frames2d], predictor.image_size)
    old = predictor.add_all_frames_to_correct_as_cond
    predictor.add_all_frames_to_correct_as_cond = True
    try:
        with torch.inference_mode(), _np_video(images, h, w):
            state = predictor.init_state(video_path="<numpy frames>")
        stages = []
        with torch.inference_mode():
            for fi, m in zip(support_frames, support_masks):
                predictor.add_new_mask(state, frame_idx=fi, obj_id=1, mask=np.asarray(m) > 0.5)
            for rnd in [None, *rounds]:
                for fi, points, box, mask in rnd or ():
                    if mask is not None:
                        predictor.add_new_mask(state, frame_idx=fi, obj_id=1, mask=np.asarray(mask) > 0.5)
                        continue
                    pts = [[x, y] for x, y, _ in points] or None
                    labels = [lab for _, _, lab in points] or None
                    predictor.add_new_points_or_box(state, frame_idx=fi, obj_id=1, points=pts, labels=labels,
                                                    clear_old_points=True, normalize_coords=True, box=box)
                out = {}
                for start, reverse in propagations:
                    for fi, _, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
                        out[fi] = masks[0, 0].float().cpu().numpy()
                stages.append(out)
    finally:
        predictor.add_all_frames_to_correct_as_cond = old
    return stages
