"""SAM2's tracking step on a typed memory bank, batched over independent runs.

A :class:`TrackRequest` is one step: a query slice, the memories it attends to (a
:class:`~fsm2kit.engine.memory.MemorySelection`) and the bank holding them. :class:`Tracker` runs
one or more requests in one SAM2 forward (memory attention, mask decoder, optionally the memory
encoder), composed of ``SAM2Base``'s own methods exactly as the video predictor calls them (the
private ones through :mod:`fsm2kit.model.sam2_adapter`), and calls its observers
(:class:`TrackObserver`) around each forward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Generator, Hashable, Iterator, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .features import FeatureCache, SliceFeatures
from ..model.holes import fill_holes
from .memory import MemoryBank, MemoryEntry, MemorySelection, MemorySettings, TokenLayout, token_layout
from ..model.loading import SAM2Model
from ..model.sam2_adapter import encode_memory, forward_heads, use_multimask
from .results import EngineStats

__all__ = [
    "TrackRequest",
    "TrackOutput",
    "TrackJob",
    "TrackObserver",
    "request_signature",
    "batch_groups",
    "Tracker",
]


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
    #: SAM2 point prompts of a correction step: ``(coords (1, N, 2) float32 in model-input
    #: pixels, labels (1, N) int32)`` (box corners first, labels 2 and 3), or None
    points: tuple | None = None
    #: the slice's previous low-resolution mask logits fed with the points (SAM2's
    #: ``prev_sam_mask_logits``, clamped to +-32), or None
    mask_logits: torch.Tensor | None = None
    #: why the step runs: ``"query"`` (a query slice of a plan), ``"consistency"`` (a refinement
    #: pass predicting a support from a query slice's mask, :mod:`fsm2kit.engine.passes`)
    role: str = "query"


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
    if request.points is None and request.mask_logits is None:
        return (len(sel.spatial), len(sel.pointers), bool(request.store))
    n_pts = 0 if request.points is None else int(request.points[1].shape[-1])
    return (len(sel.spatial), len(sel.pointers), bool(request.store), n_pts, request.mask_logits is not None)


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



class Tracker:
    """Runs tracking steps for one SAM2 model (see the module docstring).

    Parameters
    ----------
    model : SAM2Model
    features : FeatureCache
        Where slice features come from (each slice encoded once).
    stats : EngineStats
        Counters to update (memory-encoder passes, tracking steps and forwards).
    storage_device : torch.device
        Where stored memories live.
    """

    def __init__(self, model: SAM2Model, features: FeatureCache, *, stats: EngineStats,
                 storage_device: torch.device):
        self.model = model
        self.module = model.module
        self.device = model.device
        self.features = features
        self.stats = stats
        self.storage_device = storage_device
        self.settings = MemorySettings.from_module(self.module)
        self._maskmem_pos: torch.Tensor | None = None
        self._observers: list[TrackObserver] = []

    def __repr__(self) -> str:
        return f"Tracker({self.model.name}, {self.settings}, {len(self._observers)} observers)"

    def store_maskmem(self, maskmem: torch.Tensor, pos: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self._maskmem_pos is None:  # identical for every frame: one shared copy
            self._maskmem_pos = pos[-1][0:1].clone().to(self.storage_device)
        return maskmem.to(torch.bfloat16).to(self.storage_device), self._maskmem_pos

    @torch.inference_mode()
    def mask_memory(self, image: np.ndarray, low_res: torch.Tensor, object_score: float) -> tuple[torch.Tensor, torch.Tensor]:
        """A conditioning memory from a slice's hole-filled low-resolution logits.

        What SAM2's ``propagate_in_video_preflight`` does with a prompted frame: the logits are
        upsampled to image size and encoded as a mask from points (binarised). Returns the stored
        (maskmem, pos) pair (:meth:`store_maskmem`).
        """
        m = self.module
        feats = self.features.on_device(self.features.encode(image))
        score = torch.tensor([[object_score]], dtype=torch.float32, device=self.device)
        size = (self.model.image_size,) * 2
        with self.model.autocast():
            high = F.interpolate(low_res.to(self.device).float(), size=size, mode="bilinear", align_corners=False)
            maskmem, pos = encode_memory(m, list(feats.vision_feats), list(feats.feat_sizes), high, score,
                                         is_mask_from_pts=True)
        self.stats.memory_encoder_passes += 1
        return self.store_maskmem(maskmem, pos)

    def to_video_res(self, low_res: torch.Tensor, shape: tuple[int, int]) -> np.ndarray:
        x = low_res.float()
        if tuple(x.shape[-2:]) != tuple(shape):
            x = F.interpolate(x, size=shape, mode="bilinear", align_corners=False)
        return x[0, 0].to("cpu").numpy().astype(np.float32)

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
        """The memory-token layout of a step (:func:`fsm2kit.engine.memory.token_layout`)."""
        return token_layout(selection, bank, tokens_per_pointer=self.tokens_per_pointer)

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
            curr_pos=[self.features.positions(feats[0])[-1].expand(-1, B, -1)],
            memory=memory,
            memory_pos=memory_pos,
            num_obj_ptr_tokens=n_ptr_tokens,
        )
        return out.permute(1, 2, 0).reshape(B, C, h, w)

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
        feats = self.features.encode_all([r.image for r in requests], desc="encode") if B > 1 else [self.features.encode(requests[0].image)]
        feats = [self.features.on_device(f) for f in feats]
        n_hr = len(feats[0].backbone_fpn) - 1
        high_res = [feats[0].backbone_fpn[i] if B == 1 else torch.cat([f.backbone_fpn[i] for f in feats])
                    for i in range(n_hr)]
        store = requests[0].store
        layouts = [self.layout(r.selection, r.bank) for r in requests]
        for ob in observers:
            ob.before_forward(requests, layouts)
        with self.model.autocast():
            pix = self._condition(feats, requests, layouts)
            point_inputs = mask_inputs = None
            if requests[0].points is not None:  # a correction: SAM2's refinement with prompts
                point_inputs = {
                    "point_coords": torch.cat([r.points[0] for r in requests]).to(self.device),
                    "point_labels": torch.cat([r.points[1] for r in requests]).to(self.device),
                }
            if requests[0].mask_logits is not None:
                mask_inputs = torch.cat([r.mask_logits for r in requests]).to(self.device)
            multimask = use_multimask(m, False, point_inputs)
            _, _, ious, low_res, high_res_masks, obj_ptr, score = forward_heads(
                m,
                backbone_features=pix,
                point_inputs=point_inputs,
                mask_inputs=mask_inputs,
                high_res_features=high_res,
                multimask_output=multimask,
            )
            if store:
                vf = feats[0].vision_feats if B == 1 else [
                    torch.cat(level, dim=1) for level in zip(*(f.vision_feats for f in feats))
                ]
                maskmem, pos = encode_memory(
                    m, vf, list(feats[0].feat_sizes), high_res_masks, score, is_mask_from_pts=False
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
            # SAM2 keeps the mask of highest predicted IoU (multimask): that mask's IoU
            iou = float(ious[i].max().item()) if multimask else float(ious[i, 0].item())
            if store:
                mm, mp = self.store_maskmem(maskmem[i:i + 1], pos)
                entry = MemoryEntry("query", False, r.index, mm, mp, obj_ptr[i:i + 1], scores[i], r.z,
                                    iou=iou, reverse=bool(r.selection.reverse))
            outs.append(TrackOutput(
                low_res_logits=low_res[i:i + 1],
                logits=self.to_video_res(low_res[i:i + 1], f.input_shape),
                object_score=scores[i],
                iou=iou,
                obj_ptr=obj_ptr[i:i + 1],
                memory=entry,
            ))
        for ob in observers:
            ob.after_forward(requests, outs)
        return outs

