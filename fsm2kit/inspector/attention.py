"""What a capture records: memory attention of one step, and full rows for chosen pixels."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.memory import MemoryBank, MemorySelection
from ..model.sam2_adapter import separate_heads
from .layout import KeyEntry, KeyLayout

__all__ = ["PixelAttention", "StepAttention", "attention_weights", "attention_inputs"]


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True, eq=False)
class PixelAttention:
    """The attention row of one query pixel (its image token) in one layer and head.

    ``weights`` sums to 1 over the key axis; :meth:`grid` is its part over one spatial memory
    (a (h, w) map whose sum is that entry's mass), :meth:`upsampled` that map on the memory
    frame's image.
    """

    pixel: tuple[int, int]
    token: tuple[int, int]
    layer: int
    head: int
    weights: np.ndarray
    layout: KeyLayout
    z: int | None = None
    step: int | None = None

    def mass(self) -> np.ndarray:
        """(n_entries,) attention mass of this pixel on each entry (sums to 1)."""
        return np.array([self.weights[e.start:e.stop].sum() for e in self.layout], dtype=np.float64)

    def _entry(self, entry: int | KeyEntry) -> KeyEntry:
        e = self.layout[entry] if isinstance(entry, (int, np.integer)) else entry
        if e.kind == "pointer":
            raise ValueError(f"{e!r} is an object pointer: it has no spatial map; pick a spatial entry "
                             f"(0..{len(self.layout.spatial) - 1}).")
        return e

    def grid(self, entry: int | KeyEntry) -> np.ndarray:
        """(h, w) attention weights over a spatial memory entry's token grid."""
        e = self._entry(entry)
        return self.weights[e.start:e.stop].reshape(e.grid).astype(np.float32)

    def upsampled(self, entry: int | KeyEntry, shape: tuple[int, int]) -> np.ndarray:
        """The entry's (h, w) map bilinearly upsampled onto an image of ``shape`` (H, W).

        Values stay per-token weights (not divided by the pixels a token covers).
        """
        g = torch.from_numpy(self.grid(entry))[None, None]
        up = F.interpolate(g, size=tuple(int(s) for s in shape), mode="bilinear", align_corners=False)
        return up[0, 0].numpy()

    def to_frame(self):
        """Tidy table: one row per spatial key token (entry, row, col, weight) + one per pointer."""
        import pandas as pd

        frames = []
        for e in self.layout:
            if e.kind == "pointer":
                rows, cols = np.array([-1]), np.array([-1])
                w = np.array([self.weights[e.start:e.stop].sum()])
            else:
                h, wd = e.grid
                rows, cols = np.divmod(np.arange(h * wd), wd)
                w = self.weights[e.start:e.stop]
            frames.append(pd.DataFrame({
                "entry": e.position, "entry_kind": e.kind, "entry_index": e.index, "entry_z": e.z,
                "role": e.role, "row": rows, "col": cols, "weight": w.astype(np.float64),
            }))
        df = pd.concat(frames, ignore_index=True)
        df.insert(0, "head", self.head)
        df.insert(0, "layer", self.layer)
        df.insert(0, "query_x", self.pixel[1])
        df.insert(0, "query_y", self.pixel[0])
        df.insert(0, "z", self.z)
        df.insert(0, "step", self.step)
        return df

    def __repr__(self) -> str:
        top = int(np.argmax(self.mass()))
        return (
            f"PixelAttention(pixel y={self.pixel[0]} x={self.pixel[1]} -> token {self.token}, "
            f"layer {self.layer}, head {self.head}, {len(self.layout)} entries, "
            f"most on {self.layout[top].label} ({self.mass()[top]:.2f}))"
        )


@dataclass(eq=False)
class StepAttention:
    """Memory attention of one tracking step (one query slice), reduced.

    Attributes
    ----------
    call : int
        Capture order (processing order across plans).
    plan_index, step : int or None
        The step's plan and position in it (set from the :class:`EpisodeResult`).
    position, z : int, int or None
        The query slice's position in the episode and its slice index.
    selection : MemorySelection
    layout : KeyLayout
    layers, heads : tuple of int
        Layers and heads captured (axis 0 and 1 of the mass arrays).
    mass_all : ndarray, (L, Hd, E) float64
        Attention mass per entry, averaged over all query tokens.
    mass_fg : ndarray, (L, Hd, E) float64 or None
        The same averaged over the predicted foreground (area-weighted); None when the
        prediction is empty.
    fg_pixels : int
        Predicted foreground pixels of the slice.
    token_sum_error : float
        Largest ``|sum over entries of a query token's mass - 1|`` seen (a check).
    rel_error : ndarray, (L,) or None
        With ``verify=True``: ``|out_proj(A v) - layer output| / |layer output|`` per layer.
    pixels : list of PixelAttention
        Attention rows of the pixels asked for at capture time.
    grid : (int, int)
        The query slice's token grid.
    image_shape : (int, int)
    prediction : ndarray, (H, W) bool
    """

    call: int
    position: int
    z: int | None
    frame_idx: int
    reverse: bool
    selection: MemorySelection = field(repr=False)
    layout: KeyLayout = field(repr=False)
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    mass_all: np.ndarray = field(repr=False)
    mass_fg: np.ndarray | None = field(repr=False)
    fg_pixels: int
    token_sum_error: float
    rel_error: np.ndarray | None
    pixels: list[PixelAttention] = field(repr=False, default_factory=list)
    grid: tuple[int, int] = (0, 0)
    image_shape: tuple[int, int] = (0, 0)
    prediction: np.ndarray | None = field(repr=False, default=None)
    plan_index: int | None = None
    step: int | None = None
    image: np.ndarray | None = field(repr=False, default=None)
    bank: MemoryBank | None = field(repr=False, default=None)

    def layer_axis(self, layer: int) -> int:
        if layer not in self.layers:
            raise ValueError(f"layer {layer} was not captured; captured layers: {list(self.layers)}.")
        return self.layers.index(layer)

    def head_axis(self, head: int) -> int:
        if head not in self.heads:
            raise ValueError(f"head {head} was not captured; captured heads: {list(self.heads)}.")
        return self.heads.index(head)

    def mass(self, *, layer: int | None = None, head: int | None = None,
             region: Literal["all", "foreground"] = "all") -> np.ndarray:
        """(E,) mass per entry for one layer and head (None: mean over the captured ones)."""
        if region not in ("all", "foreground"):
            raise ValueError(f"region must be 'all' or 'foreground', got {region!r}.")
        arr = self.mass_all if region == "all" else self.mass_fg
        if arr is None:
            return np.full(len(self.layout), np.nan)
        arr = arr if layer is None else arr[[self.layer_axis(layer)]]
        arr = arr if head is None else arr[:, [self.head_axis(head)]]
        return arr.mean(axis=(0, 1))

    def __repr__(self) -> str:
        m = self.mass()
        groups: dict[str, float] = {}
        for e in self.layout:
            groups[e.group] = groups.get(e.group, 0.0) + float(m[e.position])
        share = ", ".join(f"{g} {v:.2f}" for g, v in groups.items())
        err = f", rel. error {float(np.max(self.rel_error)):.1e}" if self.rel_error is not None else ""
        where = f"plan {self.plan_index} step {self.step}" if self.plan_index is not None else f"call {self.call}"
        return (f"StepAttention(z={self.z}, {where}, {len(self.layout.spatial)} memories + "
                f"{len(self.layout.pointers)} pointers, {len(self.layers)} layers; mass: {share}{err})")


def attention_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(q, k, v, num_k_exclude_rope) of a ``RoPEAttention`` call, from a forward hook's arguments."""
    names = ("q", "k", "v", "num_k_exclude_rope")
    vals = dict(zip(names, args))
    vals.update({k: v for k, v in kwargs.items() if k in names})
    missing = [n for n in names[:3] if n not in vals]
    if missing:
        raise RuntimeError(f"memory-attention hook: the layer was called without {missing}; "
                           "fsm2kit.inspector supports sam2 1.1.0's RoPEAttention(q, k, v, num_k_exclude_rope).")
    return vals["q"], vals["k"], vals["v"], int(vals.get("num_k_exclude_rope", 0) or 0)


def attention_weights(
    module: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, num_k_exclude_rope: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected, rotated q and k of a sam2 ``RoPEAttention`` call, as its forward computes them.

    Returns (q, k), each (B, heads, N, d), in the projection's dtype.
    """
    from sam2.modeling.position_encoding import apply_rotary_enc

    qh = separate_heads(module, module.q_proj(q))
    kh = separate_heads(module, module.k_proj(k))
    nq = qh.shape[-2]
    freqs = module.freqs_cis.to(qh.device)
    if freqs.shape[0] != nq:  # the forward has just set it to this size; recompute otherwise
        side = math.sqrt(nq)
        freqs = module.compute_cis(end_x=side, end_y=side).to(qh.device)
    n_rope = kh.shape[-2] - num_k_exclude_rope
    qr, kr = apply_rotary_enc(qh, kh[:, :, :n_rope], freqs_cis=freqs, repeat_freqs_k=module.rope_k_repeat)
    return qr, torch.cat([kr, kh[:, :, n_rope:]], dim=2)


