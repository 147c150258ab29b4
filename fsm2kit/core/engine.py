"""The few-shot engine: SAM2's memory mechanism driven directly, with an explicit memory bank.

:class:`Engine` wraps one loaded SAM2 model. It

* encodes each slice once: image features are cached by slice content (and image size), so a
  slice is encoded once however many settings, orders, plans or queries use it;
* turns (support image, support mask) pairs into conditioning memories through SAM2's
  mask-prompt path, once per support (cached);
* runs SAM2's tracking step for a query slice against a chosen set of memories
  (:class:`~fsm2kit.memory.MemorySelection`), computing the memory tensors from a typed
  :class:`~fsm2kit.memory.MemoryBank` instead of SAM2's inference-state dicts;
* executes :class:`~fsm2kit.ordering.Plan` s, which is how the four settings and the orders of
  FS-MedSAM2 are expressed.

It reproduces SAM2's video predictor driven the published way (tested against
``SAM2VideoPredictor``): the same preprocessing (per-slice min-max, bilinear resize without
antialias, ImageNet mean/std), the same mask-prompt resize (bilinear + antialias, >= 0.5), spatial
memories stored in bfloat16, conditioning memories encoded from the hole-filled low-resolution
mask, and hole filling on every device.
"""

from __future__ import annotations

import hashlib
import os
import time
import contextlib
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Generator, Hashable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .episode import Episode, Support
from .memory import (
    MemoryBank,
    MemoryEntry,
    MemoryPolicy,
    MemorySelection,
    MemorySettings,
    TokenLayout,
    check_selection,
    sam2_memory_policy,
    strategy_name,
    token_layout,
)
from .models import SAM2Model, fill_holes
from .plans import Plan, build_plans, normalize_setting

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "preprocess_slice",
    "prompt_mask",
    "SliceFeatures",
    "SupportMemory",
    "TrackRequest",
    "TrackOutput",
    "request_signature",
    "batch_groups",
    "TrackJob",
    "TrackObserver",
    "SliceResult",
    "EpisodeResult",
    "EngineStats",
    "Engine",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- preprocessing
def _as_2d_float(image: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and all((a[i] == a[0]).all() for i in range(a.shape[0])):
        a = a[0]  # (C, H, W) with identical channels, as in the published npz dumps
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2D (H, W) slice, got shape {a.shape}.")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf values; clean or mask them first.")
    return a


def preprocess_slice(image: np.ndarray, image_size: int) -> torch.Tensor:
    """A slice as SAM2's input, exactly as the published FS-MedSAM2 code prepares it.

    Per-slice min-max to [0, 1], three identical channels, bilinear resize to
    ``image_size`` (``align_corners=False``, no antialias), ImageNet mean/std.
    A constant slice maps to 0 (the published code would divide by zero).

    Returns
    -------
    Tensor, (1, 3, image_size, image_size) float32 (CPU)
    """
    a = _as_2d_float(image, "image")
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    x = torch.from_numpy(np.ascontiguousarray(a))[None, None].expand(1, 3, *a.shape).contiguous()
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    x -= mean
    x /= std
    return x


def prompt_mask(mask: np.ndarray, image_size: int) -> torch.Tensor:
    """A binary mask as SAM2's mask prompt: bilinear + antialias resize, threshold >= 0.5.

    Returns
    -------
    Tensor, (1, 1, image_size, image_size) float32 of 0/1 (CPU)
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask: expected a 2D (H, W) mask, got shape {m.shape}.")
    t = torch.from_numpy(m.astype(bool)).float()[None, None]
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        t = (t >= 0.5).float()
    return t


def _content_key(a: np.ndarray, *extra) -> str:
    h = hashlib.blake2b(digest_size=16)
    a = np.ascontiguousarray(a)
    h.update(str((a.shape, a.dtype.str) + extra).encode())
    h.update(a.tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- typed state
@dataclass(frozen=True, eq=False)
class SliceFeatures:
    """A slice encoded by SAM2's image encoder (the FPN levels SAM2 uses), cached by content."""

    key: str
    backbone_fpn: tuple[torch.Tensor, ...]
    feat_sizes: tuple[tuple[int, int], ...]
    input_shape: tuple[int, int]

    @property
    def vision_feats(self) -> list[torch.Tensor]:
        """Flattened (HW, 1, C) features per level, as SAM2's ``_prepare_backbone_features``."""
        return [x.flatten(2).permute(2, 0, 1) for x in self.backbone_fpn]

    def __repr__(self) -> str:
        sizes = ", ".join(f"{c}x{h}x{w}" for c, h, w in (x.shape[1:] for x in self.backbone_fpn))
        return f"SliceFeatures({self.input_shape[0]}x{self.input_shape[1]} slice -> [{sizes}])"


@dataclass(frozen=True, eq=False)
class SupportMemory:
    """A support slice turned into a conditioning memory, and SAM2's output on it (the echo)."""

    entry: MemoryEntry
    logits: np.ndarray

    def __repr__(self) -> str:
        return f"SupportMemory({self.entry!r}, output {self.logits.shape})"


@dataclass(frozen=True, eq=False)
class TrackOutput:
    """SAM2's tracking step on one frame."""

    low_res_logits: torch.Tensor  # (1, 1, S/4, S/4), hole-filled
    logits: np.ndarray  # (H, W) at the input resolution
    object_score: float
    iou: float
    obj_ptr: torch.Tensor
    memory: MemoryEntry | None


@dataclass(frozen=True, eq=False)
class TrackRequest:
    """One tracking step to run: a query slice, the memories it attends to, and its bank."""

    image: np.ndarray
    selection: MemorySelection
    bank: MemoryBank
    store: bool = False
    index: int = 0
    z: int | None = None


#: A tracking job: a generator that yields :class:`TrackRequest` s, receives each one's
#: :class:`TrackOutput`, and returns its result (see :meth:`Engine.drive`).
TrackJob = Generator[TrackRequest, TrackOutput, object]


class TrackObserver(Protocol):
    """Watches the engine's tracking forwards (see :meth:`Engine.observe`).

    ``before_forward`` gets the requests of one SAM2 forward (one or more steps, batched along
    SAM2's batch axis in this order) and each one's memory-token layout; ``after_forward`` gets
    the same requests and their outputs. Module hooks an observer registers on the model (e.g.
    on the memory-attention layers) fire between the two calls.
    """

    def before_forward(self, requests: Sequence[TrackRequest], layouts: Sequence[TokenLayout]) -> None: ...

    def after_forward(self, requests: Sequence[TrackRequest], outputs: Sequence["TrackOutput"]) -> None: ...


def request_signature(request: TrackRequest) -> tuple[int, int, bool]:
    """What must agree for steps to share one SAM2 forward.

    Memory attention concatenates a step's memories into one key sequence and takes the
    number of object-pointer tokens as a scalar, so batched steps need the same number of
    spatial memories and of pointers; and all of them store a memory or none does.
    """
    sel = request.selection
    return (len(sel.spatial), len(sel.pointers), bool(request.store))


def batch_groups(signatures: Sequence[Hashable], max_batch: int) -> list[list[int]]:
    """Indices grouped by equal signature (first-appearance order), in chunks of ``max_batch``.

    >>> batch_groups(["a", "b", "a", "a"], 2)
    [[0, 2], [3], [1]]
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    by_sig: dict[Hashable, list[int]] = {}
    for i, sig in enumerate(signatures):
        by_sig.setdefault(sig, []).append(i)
    return [ids[k:k + max_batch] for ids in by_sig.values() for k in range(0, len(ids), max_batch)]


@dataclass(frozen=True, eq=False)
class SliceResult:
    """The prediction for one query slice.

    ``logits`` are at the slice's input resolution; the prediction is ``logits > 0``.
    ``step`` is the processing position within its plan, ``selection`` the memories it used.
    """

    position: int
    z: int
    logits: np.ndarray
    object_score: float
    iou: float
    plan_index: int
    step: int
    selection: MemorySelection

    @property
    def prediction(self) -> np.ndarray:
        return self.logits > 0

    def __repr__(self) -> str:
        return (
            f"SliceResult(z={self.z}, fg={int(self.prediction.sum())} px, "
            f"object_score={self.object_score:+.2f}, iou={self.iou:.3f}, "
            f"memories={len(self.selection.spatial)}+{len(self.selection.pointers)} ptrs)"
        )


@dataclass(eq=False)
class EpisodeResult:
    """All query slices of one episode under one setting (and order)."""

    case_id: str
    label: int
    label_name: str
    setting: str
    order: str | None
    slices: list[SliceResult]
    provenance: dict
    seconds: float
    encoder_passes: int
    plans: list[Plan] = field(repr=False, default_factory=list)
    banks: list[MemoryBank] | None = field(repr=False, default=None)
    memory_policy: str = "sam2"

    @property
    def z(self) -> np.ndarray:
        return np.array([s.z for s in self.slices], dtype=int)

    def logits(self) -> np.ndarray:
        """(M, H, W) float32 logits in ascending z."""
        return np.stack([s.logits for s in self.slices]).astype(np.float32, copy=False)

    def prediction(self) -> np.ndarray:
        return self.logits() > 0

    def to_frame(self, labels: np.ndarray | None = None):
        """A tidy table, one row per query slice (with TP/FP/FN when ``labels`` are given)."""
        import pandas as pd

        rows = []
        for i, s in enumerate(self.slices):
            row = {
                "case_id": self.case_id,
                "label": self.label,
                "label_name": self.label_name,
                "setting": self.setting,
                "order": self.order if self.order else "n/a",
                "memory_policy": self.memory_policy,
                "z": s.z,
                "step": s.step,
                "plan": s.plan_index,
                "object_score": s.object_score,
                "iou_pred": s.iou,
                "n_memories": len(s.selection.spatial),
                "n_pointers": len(s.selection.pointers),
                "pred_px": int(s.prediction.sum()),
            }
            if labels is not None:
                p, t = s.prediction, np.asarray(labels[i]).astype(bool)
                row.update(
                    tp=int(np.count_nonzero(p & t)),
                    fp=int(np.count_nonzero(p & ~t)),
                    fn=int(np.count_nonzero(~p & t)),
                )
            rows.append(row)
        df = pd.DataFrame(rows)
        df["model"] = self.provenance.get("model")
        df["weights"] = self.provenance.get("weights")
        return df

    def __repr__(self) -> str:
        order = f"-{self.order}" if self.order else ""
        return (
            f"EpisodeResult({self.case_id}/{self.label_name}, {self.setting}{order}, "
            f"{len(self.slices)} slices, {self.encoder_passes} encoder passes, "
            f"{self.seconds:.1f} s, {self.provenance.get('weights')})"
        )


@dataclass
class EngineStats:
    """Counters: image-encoder passes, on-disk cache hits, memory-encoder passes, tracking steps,
    and SAM2 forwards that ran them (fewer than steps when steps were batched)."""

    encoder_passes: int = 0
    disk_hits: int = 0
    memory_encoder_passes: int = 0
    tracking_steps: int = 0
    tracking_forwards: int = 0


# ----------------------------------------------------------------------------- the engine
class Engine:
    """Few-shot segmentation with one SAM2 model; encodes each slice once.

    Parameters
    ----------
    model : SAM2Model
        From :func:`fsm2kit.load_sam2`.
    progress : bool
        Show progress bars for encoding and propagation.
    max_cached_slices : int or None
        Bound on slice features held in memory (least recently used are dropped); None:
        unbounded. With a bound smaller than a run's slices, slices are encoded when needed.
    cache_dir : path or None
        On-disk feature cache (one subfolder per model, checkpoint and image size; files keyed
        by slice content), reused across engines, processes and notebook runs.
    encode_batch_size : int or None
        Slices per image-encoder call when encoding up front (default 8 on CUDA, 1 elsewhere).
    storage_device : str or None
        Where cached features and memories live (e.g. ``"cpu"`` to keep only the active step's
        tensors on the GPU); default: the compute device.
    object_batch_size : int or None
        Tracking steps of independent runs (organs, episodes, the per-query plans of 1S1Q and
        3S1Q) that share one SAM2 forward (default 16 on CUDA, 1 elsewhere: on CPU batching
        barely changes throughput, and one step per forward is bit-identical to SAM2's video
        predictor; batched steps agree with it to float rounding).

    Examples
    --------
    >>> model = load_sam2("sam2-tiny", "random", image_size=256)   # doctest: +SKIP
    >>> engine = Engine(model)                                      # doctest: +SKIP
    >>> result = engine.segment(episode, "S1SFQ", order="middle")   # doctest: +SKIP
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        progress: bool = True,
        max_cached_slices: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        encode_batch_size: int | None = None,
        storage_device: str | torch.device | None = None,
        object_batch_size: int | None = None,
    ):
        self.model = model
        self.module = model.module
        self.device = model.device
        self.image_size = model.image_size
        self.settings = MemorySettings.from_module(self.module)
        self.progress = progress
        if max_cached_slices is not None and max_cached_slices < 1:
            raise ValueError(f"max_cached_slices must be None or >= 1, got {max_cached_slices}")
        self.max_cached_slices = max_cached_slices
        self.encode_batch_size = int(encode_batch_size or (8 if self.device.type == "cuda" else 1))
        self.storage_device = torch.device(storage_device) if storage_device is not None else self.device
        self.object_batch_size = int(object_batch_size or (16 if self.device.type == "cuda" else 1))
        if self.object_batch_size < 1:
            raise ValueError(f"object_batch_size must be >= 1, got {object_batch_size}")
        self.cache_dir = Path(cache_dir) / model.feature_key if cache_dir is not None else None
        self.stats = EngineStats()
        self._features: OrderedDict[str, SliceFeatures] = OrderedDict()
        self._supports: dict[str, SupportMemory] = {}
        self._vision_pos: list[torch.Tensor] | None = None
        self._maskmem_pos: torch.Tensor | None = None
        self._observers: list[TrackObserver] = []

    def __repr__(self) -> str:
        return (
            f"Engine({self.model!r}, {len(self._features)} cached slices, "
            f"{len(self._supports)} support memories, {self.stats})"
        )

    def clear_cache(self) -> None:
        """Forget cached slice features and support memories (the on-disk cache stays)."""
        self._features.clear()
        self._supports.clear()

    # ------------------------------------------------------------------ encoding
    def _remember(self, feats: SliceFeatures) -> SliceFeatures:
        self._features[feats.key] = feats
        self._features.move_to_end(feats.key)
        if self.max_cached_slices is not None:
            while len(self._features) > self.max_cached_slices:
                self._features.popitem(last=False)
        return feats

    def _disk_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.pt" if self.cache_dir is not None else None

    def _load_disk(self, key: str, shape: tuple[int, int]) -> SliceFeatures | None:
        path = self._disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            obj = torch.load(path, map_location=self.storage_device, weights_only=True)
            fpn = tuple(obj["backbone_fpn"])
            sizes = tuple(tuple(int(v) for v in s) for s in obj["feat_sizes"])
        except Exception:  # a corrupt or foreign file: recompute (and overwrite it)
            return None
        self.stats.disk_hits += 1
        return SliceFeatures(key, fpn, sizes, shape)

    def _save_disk(self, feats: SliceFeatures) -> None:
        path = self._disk_path(feats.key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save({"backbone_fpn": [x.to("cpu") for x in feats.backbone_fpn],
                    "feat_sizes": [list(s) for s in feats.feat_sizes]}, tmp)
        os.replace(tmp, path)

    def _encode_batch(self, slices: list[np.ndarray], keys: list[str]) -> list[SliceFeatures]:
        x = torch.cat([preprocess_slice(a, self.image_size) for a in slices]).to(self.device)
        with self.model.autocast():
            out = self.module.forward_image(x)
        self.stats.encoder_passes += len(slices)
        n = self.module.num_feature_levels
        levels = out["backbone_fpn"][-n:]
        sizes = tuple((int(p.shape[-2]), int(p.shape[-1])) for p in out["vision_pos_enc"][-n:])
        if self._vision_pos is None:  # identical for every slice: one shared copy
            self._vision_pos = [p[0:1].flatten(2).permute(2, 0, 1) for p in out["vision_pos_enc"][-n:]]
        result = []
        for i, (a, key) in enumerate(zip(slices, keys)):
            fpn = tuple(
                (lvl if len(slices) == 1 else lvl[i:i + 1].clone()).to(self.storage_device) for lvl in levels
            )
            feats = SliceFeatures(key, fpn, sizes, a.shape)
            self._save_disk(feats)
            result.append(self._remember(feats))
        return result

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> SliceFeatures:
        """The image features of a slice, computed once per distinct slice content.

        Looked up in memory, then in the on-disk cache (``cache_dir``), else computed.
        """
        a = _as_2d_float(image, "image")
        key = _content_key(a, self.image_size)
        feats = self._features.get(key)
        if feats is not None:
            self._features.move_to_end(key)
            return feats
        feats = self._load_disk(key, a.shape)
        if feats is not None:
            return self._remember(feats)
        return self._encode_batch([a], [key])[0]

    @torch.inference_mode()
    def encode_all(self, images: Sequence[np.ndarray], *, desc: str = "encode") -> list[SliceFeatures]:
        """Encode slices in batches of ``encode_batch_size`` (cached ones are skipped)."""
        arrays = [_as_2d_float(im, "image") for im in images]
        keys = [_content_key(a, self.image_size) for a in arrays]
        todo: dict[str, np.ndarray] = {}
        for a, k in zip(arrays, keys):
            if k in self._features or k in todo:
                continue
            feats = self._load_disk(k, a.shape)
            if feats is not None:
                self._remember(feats)
            else:
                todo[k] = a
        bs = self.encode_batch_size
        items = list(todo.items())
        bar = tqdm(total=len(items), desc=desc, disable=not self.progress or not items, leave=False)
        for i in range(0, len(items), bs):
            chunk = items[i:i + bs]
            self._encode_batch([a for _, a in chunk], [k for k, _ in chunk])
            bar.update(len(chunk))
        bar.close()
        return [self.encode(a) for a in arrays]

    def _positions(self, feats: SliceFeatures) -> list[torch.Tensor]:
        """Image position encodings (depend on the feature size only; computed once)."""
        if self._vision_pos is None:
            neck = self.module.image_encoder.neck
            self._vision_pos = [
                neck.position_encoding(torch.zeros(1, 1, h, w, device=self.device)).to(x.dtype).flatten(2).permute(2, 0, 1)
                for (h, w), x in zip(feats.feat_sizes, feats.backbone_fpn)
            ]
        return self._vision_pos

    def _high_res(self, feats: SliceFeatures) -> list[torch.Tensor]:
        return list(feats.backbone_fpn[:-1])

    def _on_device(self, feats: SliceFeatures) -> SliceFeatures:
        if self.storage_device == self.device:
            return feats
        fpn = tuple(x.to(self.device, non_blocking=True) for x in feats.backbone_fpn)
        return SliceFeatures(feats.key, fpn, feats.feat_sizes, feats.input_shape)

    # ------------------------------------------------------------------ memories
    def _store_maskmem(self, maskmem: torch.Tensor, pos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._maskmem_pos is None:  # identical for every frame: one shared copy
            self._maskmem_pos = pos[-1][0:1].clone().to(self.storage_device)
        return maskmem.to(torch.bfloat16).to(self.storage_device), self._maskmem_pos

    def _to_video_res(self, low_res: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        x = low_res.float()
        if tuple(x.shape[-2:]) != tuple(shape):
            x = F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
        return x[0, 0].to("cpu").numpy().astype(np.float32)

    @torch.inference_mode()
    def support_memory(self, support: Support | tuple[np.ndarray, np.ndarray], *, index: int = 0) -> SupportMemory:
        """A support slice and its mask as a conditioning memory (SAM2's mask-prompt path).

        As in SAM2's video predictor: the mask prompt becomes the frame's output (+-10 logits,
        downsampled with antialias), holes are filled, and the memory encoder encodes the
        low-resolution output upsampled to image size and binarised.
        """
        if isinstance(support, Support):
            image, mask, z = support.image, support.mask, support.z
        else:
            image, mask = support
            z = None
        mask = np.asarray(mask)
        if mask.shape != np.shape(image)[-2:]:
            raise ValueError(f"support mask shape {mask.shape} differs from its image {np.shape(image)}.")
        if not mask.astype(bool).any():
            raise ValueError("support mask is empty: a support slice must contain the class.")
        feats = self.encode(image)
        key = feats.key + _content_key(mask.astype(bool))
        cached = self._supports.get(key)
        if cached is not None:
            if cached.entry.index == index and cached.entry.z == z:
                return cached
            return SupportMemory(replace(cached.entry, index=index, z=z), cached.logits)
        m = self.module
        feats = self._on_device(feats)
        mask_in = prompt_mask(mask, self.image_size).to(self.device)
        vf = feats.vision_feats
        h, w = feats.feat_sizes[-1]
        pix = vf[-1].permute(1, 2, 0).view(-1, m.hidden_dim, h, w)
        with self.model.autocast():
            _, _, _, low_res, _, obj_ptr, score = m._use_mask_as_output(pix, self._high_res(feats), mask_in)
            low_res = fill_holes(low_res, m.fill_hole_area)
            high = F.interpolate(low_res.float(), size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
            maskmem, pos = m._encode_new_memory(vf, list(feats.feat_sizes), high, score, is_mask_from_pts=True)
        self.stats.memory_encoder_passes += 1
        maskmem, pos = self._store_maskmem(maskmem, pos)
        entry = MemoryEntry("support", True, index, maskmem, pos, obj_ptr, float(score.float().item()), z)
        sm = SupportMemory(entry, self._to_video_res(low_res, mask.shape))
        self._supports[key] = sm
        return sm

    # ------------------------------------------------------------------ observers
    @contextlib.contextmanager
    def observe(self, observer: TrackObserver) -> Iterator[TrackObserver]:
        """Call ``observer`` around every tracking forward run inside the ``with`` block.

        The hook the memory inspector uses: nothing on the engine is patched, batched forwards
        are observed as they run, and the observer is removed on exit (also on errors).
        """
        if observer in self._observers:
            raise RuntimeError(f"{observer!r} already observes this engine; leave the first `with` block first.")
        self._observers.append(observer)
        try:
            yield observer
        finally:
            self._observers.remove(observer)

    @property
    def observers(self) -> tuple[TrackObserver, ...]:
        """The observers now watching this engine's tracking forwards."""
        return tuple(self._observers)

    @property
    def tokens_per_pointer(self) -> int:
        """Key tokens per object pointer: ``hidden_dim // mem_dim`` when ``mem_dim < hidden_dim``."""
        c, mem_dim = int(self.module.hidden_dim), int(self.module.mem_dim)
        return c // mem_dim if mem_dim < c else 1

    def layout(self, selection: MemorySelection, bank: MemoryBank) -> TokenLayout:
        """The memory-token layout of a step (:func:`fsm2kit.core.memory.token_layout`)."""
        return token_layout(selection, bank, tokens_per_pointer=self.tokens_per_pointer)

    # ------------------------------------------------------------------ tracking
    def _memory_tokens(self, selection: MemorySelection, bank: MemoryBank) -> tuple[torch.Tensor, torch.Tensor, int]:
        """A step's memory keys (spatial memories, then object pointers) as SAM2 assembles them.

        Returns (memory, memory_pos, number of pointer tokens), each tensor (tokens, 1, mem_dim).
        """
        from sam2.modeling.sam2_utils import get_1d_sine_pe

        m = self.module
        dev = self.device
        C, mem_dim = m.hidden_dim, m.mem_dim
        to_cat, to_cat_pos = [], []
        for ref in selection.spatial:
            e = bank[ref.frame_idx]
            to_cat.append(e.maskmem_features.to(dev, non_blocking=True).flatten(2).permute(2, 0, 1))
            enc = e.maskmem_pos_enc.to(dev).flatten(2).permute(2, 0, 1)
            to_cat_pos.append(enc + m.maskmem_tpos_enc[ref.tpos_index])
        n_ptr_tokens = 0
        if selection.pointers:
            ptrs = torch.stack([bank[p.frame_idx].obj_ptr for p in selection.pointers], dim=0)
            if m.add_tpos_enc_to_obj_ptrs:
                t_diff_max = selection.max_obj_ptrs - 1
                tpos_dim = C if m.proj_tpos_enc_in_obj_ptrs else mem_dim
                obj_pos = torch.tensor([p.t_diff for p in selection.pointers]).to(device=dev)
                obj_pos = get_1d_sine_pe(obj_pos / t_diff_max, dim=tpos_dim)
                obj_pos = m.obj_ptr_tpos_proj(obj_pos)
                obj_pos = obj_pos.unsqueeze(1).expand(-1, 1, mem_dim)
            else:
                obj_pos = ptrs.new_zeros(len(selection.pointers), 1, mem_dim)
            if mem_dim < C:
                ptrs = ptrs.reshape(-1, 1, C // mem_dim, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
                obj_pos = obj_pos.repeat_interleave(C // mem_dim, dim=0)
            to_cat.append(ptrs)
            to_cat_pos.append(obj_pos)
            n_ptr_tokens = ptrs.shape[0]
        return torch.cat(to_cat, dim=0), torch.cat(to_cat_pos, dim=0), n_ptr_tokens

    def _condition(self, feats: Sequence[SliceFeatures], requests: Sequence[TrackRequest],
                   layouts: Sequence[TokenLayout]) -> torch.Tensor:
        """Each frame's top-level features fused with its selected memories (memory attention).

        Frames are batched along SAM2's batch axis; returns (B, C, h, w). The memory tensors are
        checked against each step's token layout (the one definition of where memories sit).
        """
        m = self.module
        C = m.hidden_dim
        h, w = feats[0].feat_sizes[-1]
        parts = [self._memory_tokens(r.selection, r.bank) for r in requests]
        for (mem, _, n_ptr), lay in zip(parts, layouts):
            if mem.shape[0] != lay.n_tokens or n_ptr != lay.n_pointer_tokens:
                raise RuntimeError(f"memory tensor of {mem.shape[0]} tokens ({n_ptr} pointer tokens) does not match "
                                   f"its layout ({lay.n_tokens}, {lay.n_pointer_tokens}).")
        n_ptr_tokens = layouts[0].n_pointer_tokens
        if any(lay.n_pointer_tokens != n_ptr_tokens for lay in layouts):
            raise ValueError("batched tracking steps must have the same number of object-pointer tokens")
        B = len(requests)
        curr = feats[0].vision_feats[-1] if B == 1 else torch.cat([f.vision_feats[-1] for f in feats], dim=1)
        memory = parts[0][0] if B == 1 else torch.cat([p[0] for p in parts], dim=1)
        memory_pos = parts[0][1] if B == 1 else torch.cat([p[1] for p in parts], dim=1)
        out = m.memory_attention(
            curr=[curr],
            curr_pos=[self._positions(feats[0])[-1].expand(-1, B, -1)],
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=n_ptr_tokens,
        )
        return out.permute(1, 2, 0).reshape(B, C, h, w)

    @torch.inference_mode()
    def track(
        self,
        image: np.ndarray,
        selection: MemorySelection,
        bank: MemoryBank,
        *,
        store: bool = False,
        index: int = 0,
        z: int | None = None,
    ) -> TrackOutput:
        """SAM2's tracking step for one query slice against the selected memories.

        Parameters
        ----------
        image : ndarray, (H, W)
            The query slice.
        selection : MemorySelection
            Which memories of ``bank`` to attend to (see :func:`fsm2kit.memory.select_memories`).
        bank : MemoryBank
        store : bool
            Also encode the prediction into a (non-conditioning) memory entry.
        """
        return self.track_batch([TrackRequest(image, selection, bank, store, index, z)])[0]

    @torch.inference_mode()
    def track_batch(self, requests: Sequence[TrackRequest]) -> list[TrackOutput]:
        """Several tracking steps in one SAM2 forward (steps of independent runs).

        All requests must have the same :func:`request_signature`; each attends only to its own
        memories. Equivalent to calling :meth:`track` on each (up to float rounding for more
        than one request).
        """
        requests = list(requests)
        if not requests:
            return []
        observers = list(self._observers)
        sigs = {request_signature(r) for r in requests}
        if len(sigs) > 1:
            raise ValueError(
                f"track_batch: steps differ in (spatial memories, pointers, store): {sorted(sigs)}; "
                "group them with batch_groups(...) or use Engine.drive."
            )
        m = self.module
        B = len(requests)
        feats = self.encode_all([r.image for r in requests], desc="encode") if B > 1 else [self.encode(requests[0].image)]
        feats = [self._on_device(f) for f in feats]
        n_hr = len(feats[0].backbone_fpn) - 1
        high_res = [feats[0].backbone_fpn[i] if B == 1 else torch.cat([f.backbone_fpn[i] for f in feats])
                    for i in range(n_hr)]
        store = requests[0].store
        layouts = [self.layout(r.selection, r.bank) for r in requests]
        for ob in observers:
            ob.before_forward(requests, layouts)
        with self.model.autocast():
            pix = self._condition(feats, requests, layouts)
            multimask = m._use_multimask(False, None)
            _, _, ious, low_res, high_res_masks, obj_ptr, score = m._forward_sam_heads(
                backbone_features=pix,
                point_inputs=None,
                mask_inputs=None,
                high_res_features=high_res,
                multimask_output=multimask,
            )
            if store:
                vf = feats[0].vision_feats if B == 1 else [
                    torch.cat(level, dim=1) for level in zip(*(f.vision_feats for f in feats))
                ]
                maskmem, pos = m._encode_new_memory(
                    vf, list(feats[0].feat_sizes), high_res_masks, score, is_mask_from_pts=False
                )
                self.stats.memory_encoder_passes += B
        self.stats.tracking_steps += B
        self.stats.tracking_forwards += 1
        low_res = fill_holes(low_res.float(), m.fill_hole_area)
        ious = ious.float()
        scores = score.float().view(-1).tolist()
        outs = []
        for i, (r, f) in enumerate(zip(requests, feats)):
            entry = None
            if store:
                mm, mp = self._store_maskmem(maskmem[i:i + 1], pos)
                entry = MemoryEntry("query", False, r.index, mm, mp, obj_ptr[i:i + 1], scores[i], r.z)
            iou = float(ious[i].max().item()) if multimask else float(ious[i, 0].item())
            outs.append(TrackOutput(
                low_res_logits=low_res[i:i + 1],
                logits=self._to_video_res(low_res[i:i + 1], f.input_shape),
                object_score=scores[i],
                iou=iou,
                obj_ptr=obj_ptr[i:i + 1],
                memory=entry,
            ))
        for ob in observers:
            ob.after_forward(requests, outs)
        return outs

    def drive(
        self,
        jobs: Sequence[TrackJob],
        *,
        progress: bool | None = None,
        total: int | None = None,
        desc: str = "propagate",
    ) -> list:
        """Run tracking jobs side by side, batching their steps into shared SAM2 forwards.

        Each job is a generator that yields :class:`TrackRequest` s and is sent back each
        request's :class:`TrackOutput`; its return value is its result. Every round, each
        unfinished job's pending step is run: steps with equal :func:`request_signature` share
        a forward (at most ``object_batch_size`` per forward, :func:`batch_groups`). A job's
        own steps stay in order and its memory bank is its own, so results do not depend on
        which jobs run together.

        Returns
        -------
        list
            Each job's return value, in the order of ``jobs``.
        """
        jobs = list(jobs)
        results: list = [None] * len(jobs)
        pending: dict[int, TrackRequest] = {}

        def advance(i: int, out: TrackOutput | None) -> None:
            try:
                pending[i] = jobs[i].send(out) if out is not None else next(jobs[i])
            except StopIteration as stop:
                pending.pop(i, None)
                results[i] = stop.value

        for i in range(len(jobs)):
            advance(i, None)
        show = self.progress if progress is None else progress
        bar = tqdm(total=total, desc=desc, disable=not show or not pending, leave=False)
        while pending:
            ids = list(pending)
            for group in batch_groups([request_signature(pending[i]) for i in ids], self.object_batch_size):
                chosen = [ids[g] for g in group]
                outs = self.track_batch([pending[i] for i in chosen])
                for i, out in zip(chosen, outs):
                    advance(i, out)
                bar.update(len(chosen))
        bar.close()
        return results

    # ------------------------------------------------------------------ plans
    def plan_job(
        self,
        plan: Plan,
        queries: Sequence[np.ndarray],
        supports: Sequence[Support],
        *,
        z: Sequence[int] | None = None,
        plan_index: int = 0,
        memory_policy: MemoryPolicy | None = None,
    ) -> TrackJob:
        """One plan as a tracking job for :meth:`drive` (returns (results, bank) when done).

        ``memory_policy`` chooses each step's memories (default SAM2's rule,
        :func:`~fsm2kit.core.memory.sam2_memory_policy`); its choice is checked
        (:func:`~fsm2kit.core.memory.check_selection`).
        """
        policy = sam2_memory_policy if memory_policy is None else memory_policy
        bank = MemoryBank(plan.num_frames)
        for frame_idx, s in plan.support_frames:
            bank.add(frame_idx, self.support_memory(supports[s], index=s).entry)
        results = []
        for k, step in enumerate(plan.steps):
            q = plan.frames[step.frame_idx].index
            zq = int(z[q]) if z is not None else q
            sel = policy(bank, step.frame_idx, reverse=step.reverse, settings=self.settings)
            if policy is not sam2_memory_policy:
                check_selection(sel, bank, self.settings)
            out = yield TrackRequest(queries[q], sel, bank, plan.store_predictions, q, zq)
            if out.memory is not None:
                bank.add(step.frame_idx, out.memory)
            results.append(SliceResult(q, zq, out.logits, out.object_score, out.iou, plan_index, k, sel))
        return results, bank

    def run_plan(
        self,
        plan: Plan,
        queries: Sequence[np.ndarray],
        supports: Sequence[Support],
        *,
        z: Sequence[int] | None = None,
        plan_index: int = 0,
        progress: bool | None = None,
        memory_policy: MemoryPolicy | None = None,
    ) -> tuple[list[SliceResult], MemoryBank]:
        """Run one plan: supports become conditioning memories, query steps run in order.

        Returns the slice results in processing order and the final memory bank.
        """
        job = self.plan_job(plan, queries, supports, z=z, plan_index=plan_index, memory_policy=memory_policy)
        return self.drive([job], progress=progress, total=len(plan.steps))[0]

    def segment(
        self,
        episode: Episode,
        setting: str,
        *,
        order: str = "middle",
        plans: Sequence[Plan] | None = None,
        keep_banks: bool = False,
        memory_policy: MemoryPolicy | None = None,
    ) -> EpisodeResult:
        """Segment an episode's query slices under a setting (and order, for the FQ settings).

        Parameters
        ----------
        episode : Episode
        setting : {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
        order : {"middle", "top"}
            Processing order of the FQ settings; ignored by the 1Q settings.
        plans : sequence of Plan, optional
            Custom plans (e.g. :func:`fsm2kit.ordering.custom_plan`) instead of the setting's.
        keep_banks : bool
            Keep each plan's final memory bank in the result (for inspection).
        memory_policy : MemoryPolicy, optional
            Which memories each step attends to (default: SAM2's rule); recorded in the result.
        """
        return self.segment_many([episode], setting, order=order, plans=None if plans is None else [plans],
                                 keep_banks=keep_banks, memory_policy=memory_policy)[0]

    def segment_many(
        self,
        episodes: Sequence[Episode],
        setting: str,
        *,
        order: str = "middle",
        plans: Sequence[Sequence[Plan]] | None = None,
        keep_banks: bool = False,
        memory_policy: MemoryPolicy | None = None,
    ) -> list[EpisodeResult]:
        """Segment several episodes (e.g. the organs of one scan) side by side.

        Like :meth:`segment` on each, but slices shared between episodes are encoded once and
        the episodes' tracking steps share SAM2 forwards (``object_batch_size``). Each
        episode's memory bank is its own: its results are those of :meth:`segment` (up to
        float rounding when steps are batched).

        Parameters
        ----------
        episodes : sequence of Episode
        setting, order, keep_banks, memory_policy
            As in :meth:`segment`.
        plans : sequence of sequences of Plan, optional
            Custom plans per episode.

        Returns
        -------
        list of EpisodeResult
            In the order of ``episodes``; ``seconds`` and ``encoder_passes`` are those of the
            whole call.
        """
        setting = normalize_setting(setting)
        fq = setting.endswith("FQ")
        episodes = list(episodes)
        if plans is not None and len(plans) != len(episodes):
            raise ValueError(f"plans: expected one sequence of plans per episode ({len(episodes)}), got {len(plans)}.")
        all_plans: list[list[Plan]] = []
        for i, ep in enumerate(episodes):
            if plans is None:
                all_plans.append(list(build_plans(
                    setting,
                    chunks=[int(c) for c in ep.chunks],
                    support_chunks=[s.chunk for s in ep.supports],
                    npart=ep.npart,
                    order=order,
                )))
            else:
                all_plans.append(list(plans[i]))
        label_order = ("custom" if plans is not None else order) if fq or plans is not None else None
        t0 = time.perf_counter()
        passes0 = self.stats.encoder_passes
        # encode every distinct slice once, up front and batched, when the cache can hold them
        # all; otherwise slices are encoded when a step needs them (bounded memory)
        support_imgs = [ep.supports[i].image for ep, ps in zip(episodes, all_plans)
                        for i in sorted({i for p in ps for _, i in p.support_frames})]
        query_imgs = [ep.images[q] for ep, ps in zip(episodes, all_plans)
                      for q in sorted({f.index for p in ps for f in p.frames if f.kind == "query"})]
        bound = self.max_cached_slices
        if bound is None or len(support_imgs) + len(query_imgs) <= bound:
            self.encode_all(support_imgs, desc="encode supports")
            self.encode_all(query_imgs, desc="encode queries")
        jobs, owner = [], []
        for e, (ep, ps) in enumerate(zip(episodes, all_plans)):
            for i, plan in enumerate(ps):
                jobs.append(self.plan_job(plan, ep.images, ep.supports, z=ep.z, plan_index=i,
                                          memory_policy=memory_policy))
                owner.append(e)
        total = sum(len(p.steps) for ps in all_plans for p in ps)
        done = self.drive(jobs, total=total, desc=setting if len(episodes) == 1 else f"{setting} x{len(episodes)}")
        seconds = time.perf_counter() - t0
        passes = self.stats.encoder_passes - passes0
        out = []
        for e, ep in enumerate(episodes):
            mine = [d for d, o in zip(done, owner) if o == e]
            results = sorted((r for res, _ in mine for r in res), key=lambda r: r.position)
            out.append(EpisodeResult(
                case_id=ep.case_id,
                label=ep.label,
                label_name=ep.label_name,
                setting=setting,
                order=label_order,
                slices=results,
                provenance=self.model.provenance(),
                seconds=seconds,
                encoder_passes=passes,
                plans=all_plans[e],
                banks=[bank for _, bank in mine] if keep_banks else None,
                memory_policy=strategy_name(sam2_memory_policy if memory_policy is None else memory_policy),
            ))
        return out
