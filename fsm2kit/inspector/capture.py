"""Memory bank inspector: which memories SAM2 attends to when it segments a query slice.

SAM2's memory attention fuses a query slice's image tokens with the memory bank: each layer's
``cross_attn_image`` (a ``RoPEAttention``) attends from the slice's tokens (queries) to the
memory tokens (keys): the spatial tokens of every selected memory frame, in
``selection.spatial`` order, then the object-pointer tokens (each pointer split into
``hidden_dim // mem_dim`` tokens), in ``selection.pointers`` order. SAM2 computes it with
``F.scaled_dot_product_attention`` and never returns the weights.

This module captures them, scoped and read-only:

* :meth:`MemoryInspector.capture` is a context manager that registers forward hooks (with
  ``with_kwargs=True``) on the chosen layers' ``cross_attn_image`` and observes the engine
  through its hook (:meth:`Engine.observe`: each forward's steps and their memory-token
  layouts); both are removed on exit, so with inspection off nothing runs. Batched forwards
  (several steps along SAM2's batch axis) are split step by step.
  The hook recomputes the projections, RoPE and ``softmax(q k^T / sqrt(d))`` from the layer's
  inputs (in chunks of query tokens) and reduces them on the fly: attention mass per memory
  entry for every query token (kept until the step's prediction is known, then averaged over
  all tokens and over the predicted foreground), full attention rows only for chosen pixels.
  With ``verify=True`` it also recomputes ``out_proj(softmax(q k^T / sqrt(d)) v)`` and records
  its relative error against the layer's real output: the capture is checked, not assumed.
* :func:`key_layout` names the spans of the engine's token layout
  (:func:`fsm2kit.core.memory.token_layout`) as :class:`KeyEntry` s (support memories,
  previous-query memories, object pointers).
* :class:`Inspection` holds the typed per-step results (:class:`StepAttention`) and gives tidy
  tables (:attr:`Inspection.masses`, :meth:`Inspection.pixel_frame`) and per-pixel attention
  maps over each memory frame (:class:`PixelAttention`, recomputed on demand for any pixel).

Inspection never changes results: the hooks return nothing and only read their inputs.

Examples
--------
>>> insp = inspect_episode(engine, episode, "S1SFQ", order="middle")      # doctest: +SKIP
>>> insp.masses.query("region == 'all'").groupby("group").mass.mean()      # doctest: +SKIP
>>> pa = insp.pixel_attention(step=3, pixel=(128, 120), layer=0)           # doctest: +SKIP
>>> pa.upsampled(0, (256, 256))          # attention over memory entry 0, on its image
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field, replace
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..core.engine import Engine, EpisodeResult, TrackOutput
from ..core.episode import Episode
from ..core.memory import MemoryBank, MemorySelection, TokenLayout, token_layout

__all__ = [
    "KeyEntry",
    "KeyLayout",
    "key_layout",
    "layout_entries",
    "query_token",
    "token_weights",
    "PixelAttention",
    "StepAttention",
    "Inspection",
    "MemoryInspector",
    "attention_weights",
    "inspect_episode",
    "MASS_COLUMNS",
]

#: Columns of :attr:`Inspection.masses`, in order.
MASS_COLUMNS = (
    "case_id", "label_name", "setting", "order", "variant", "plan", "step", "proc_index",
    "position", "z", "layer", "head", "region", "entry", "entry_kind", "entry_source",
    "entry_index", "entry_z", "entry_frame", "t_pos", "is_cond", "role", "group", "n_tokens",
    "mass", "model", "weights",
)

_GROUPS = {"support": "support memory", "query": "query memory", "pointer": "object pointers"}


# ----------------------------------------------------------------------------- key layout
@dataclass(frozen=True)
class KeyEntry:
    """One memory entry on the key axis of the memory attention: a contiguous token range.

    Attributes
    ----------
    position : int
        Entry number in key order.
    kind : {"support", "query", "pointer"}
        Spatial tokens of a support (conditioning) memory, spatial tokens of a previous query
        slice's memory (its own prediction), or an object pointer.
    source : {"support", "query"}
        Kind of the frame the memory (or pointer) was made from.
    frame_idx : int
        Frame index in the run's layout (the plan).
    index : int
        Support index in the episode (``source="support"``) or query slice position.
    z : int or None
        Slice index of that frame in its scan, when known.
    is_cond : bool
        A conditioning memory (mask prompt) or not.
    t_pos : int
        Spatial entries: SAM2's temporal slot (0 for conditioning memories, ``num_maskmem - d``
        for the memory ``d`` frames away). Pointers: the frame distance ``t_diff``.
    start, stop : int
        Token range ``[start, stop)`` on the key axis.
    grid : (int, int) or None
        Spatial token grid (h, w) of a spatial entry; None for a pointer.
    num_maskmem : int
        SAM2's ``num_maskmem`` (for the distance of query memories).
    """

    position: int
    kind: Literal["support", "query", "pointer"]
    source: Literal["support", "query"]
    frame_idx: int
    index: int
    z: int | None
    is_cond: bool
    t_pos: int
    start: int
    stop: int
    grid: tuple[int, int] | None = None
    num_maskmem: int = 7

    @property
    def n_tokens(self) -> int:
        return self.stop - self.start

    @property
    def spatial(self) -> bool:
        return self.kind != "pointer"

    @property
    def distance(self) -> int:
        """Frames between the memory and the query frame as SAM2 counts them (0: conditioning)."""
        if self.kind == "pointer":
            return self.t_pos
        return 0 if self.t_pos == 0 else self.num_maskmem - self.t_pos

    @property
    def group(self) -> str:
        """``"support memory"``, ``"query memory"`` or ``"object pointers"``."""
        return _GROUPS[self.kind]

    @property
    def role(self) -> str:
        """A label stable across steps (for charts): ``support #1``, ``prev query -2``, ..."""
        src = f"support #{self.index}" if self.source == "support" else f"query -{self.t_pos}"
        if self.kind == "pointer":
            return f"ptr {src}"
        if self.source == "support":
            return src if self.t_pos == 0 else f"{src} (t{self.t_pos})"
        return f"prev query -{self.distance}"

    @property
    def label(self) -> str:
        """A label naming this very entry: ``support #1 z=17``, ``query z=22 (t6)``, ..."""
        z = f" z={self.z}" if self.z is not None else ""
        frame = f"support #{self.index}{z}" if self.source == "support" else (f"query{z}" if z else f"query #{self.index}")
        if self.kind == "pointer":
            return f"ptr {frame} (d={self.t_pos})"
        if self.source == "support" and self.t_pos == 0:
            return frame
        return f"{frame} (t{self.t_pos})"

    def __repr__(self) -> str:
        return f"KeyEntry({self.label}, tokens {self.start}:{self.stop})"


@dataclass(frozen=True)
class KeyLayout:
    """The key axis of one tracking step, split into memory entries (in key order).

    Every key token belongs to exactly one entry: spatial entries first (each ``h*w`` tokens),
    then object pointers (each ``tokens_per_pointer`` tokens).
    """

    entries: tuple[KeyEntry, ...]
    n_tokens: int
    tokens_per_pointer: int

    def __post_init__(self) -> None:
        pos = 0
        for i, e in enumerate(self.entries):
            if e.position != i or e.start != pos or e.stop <= e.start:
                raise ValueError(f"KeyLayout entries are not contiguous in key order at entry {i}: {e!r}")
            pos = e.stop
        if pos != self.n_tokens:
            raise ValueError(f"KeyLayout entries cover {pos} tokens, expected {self.n_tokens}.")

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[KeyEntry]:
        return iter(self.entries)

    def __getitem__(self, i: int) -> KeyEntry:
        return self.entries[i]

    @property
    def spatial(self) -> tuple[KeyEntry, ...]:
        return tuple(e for e in self.entries if e.kind != "pointer")

    @property
    def pointers(self) -> tuple[KeyEntry, ...]:
        return tuple(e for e in self.entries if e.kind == "pointer")

    @property
    def n_pointer_tokens(self) -> int:
        return sum(e.n_tokens for e in self.pointers)

    def entry_ids(self) -> np.ndarray:
        """(n_tokens,) int: the entry of every key token."""
        ids = np.empty(self.n_tokens, dtype=np.int64)
        for e in self.entries:
            ids[e.start:e.stop] = e.position
        return ids

    def assignment(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n_tokens, n_entries) float32 one-hot matrix: ``weights @ assignment`` = mass per entry."""
        ids = torch.from_numpy(self.entry_ids()).to(device)
        return F.one_hot(ids, len(self.entries)).to(torch.float32)

    def to_frame(self):
        """A tidy table, one row per entry."""
        import pandas as pd

        return pd.DataFrame([
            {"entry": e.position, "kind": e.kind, "source": e.source, "frame_idx": e.frame_idx,
             "index": e.index, "z": e.z, "is_cond": e.is_cond, "t_pos": e.t_pos, "role": e.role,
             "group": e.group, "start": e.start, "stop": e.stop, "n_tokens": e.n_tokens}
            for e in self.entries
        ])

    def __repr__(self) -> str:
        n_sp, n_ptr = len(self.spatial), len(self.pointers)
        return (
            f"KeyLayout({self.n_tokens} key tokens: {n_sp} spatial memories "
            f"[{', '.join(e.label for e in self.spatial)}] + {n_ptr} pointers x "
            f"{self.tokens_per_pointer} tokens)"
        )


def key_layout(
    selection: MemorySelection,
    bank: MemoryBank,
    *,
    tokens_per_pointer: int = 4,
    num_maskmem: int = 7,
) -> KeyLayout:
    """Split the memory attention's key axis into entries (the engine's token layout, named).

    Parameters
    ----------
    selection : MemorySelection
        The memories the step attends to (``SliceResult.selection``).
    bank : MemoryBank
        The bank holding them (``EpisodeResult.banks[plan]`` with ``keep_banks=True``).
    tokens_per_pointer : int
        Tokens per object pointer: ``hidden_dim // mem_dim`` when ``mem_dim < hidden_dim``
        (4 in SAM2: 256 / 64), else 1 (``Engine.tokens_per_pointer``).
    num_maskmem : int
        SAM2's ``num_maskmem`` (7), for the distance of query memories.

    Returns
    -------
    KeyLayout
    """
    return layout_entries(token_layout(selection, bank, tokens_per_pointer=tokens_per_pointer), bank,
                          num_maskmem=num_maskmem)


def layout_entries(layout: TokenLayout, bank: MemoryBank, *, num_maskmem: int = 7) -> KeyLayout:
    """Name the spans of a :class:`~fsm2kit.core.memory.TokenLayout` after the bank's entries."""
    entries: list[KeyEntry] = []
    for span in layout.spans:
        ref = span.ref
        e = bank[ref.frame_idx]
        if span.is_pointer:
            entries.append(KeyEntry(len(entries), "pointer", e.kind, ref.frame_idx, e.index, e.z, ref.is_cond,
                                    ref.t_diff, span.start, span.stop, None, num_maskmem))
        else:
            entries.append(KeyEntry(len(entries), "support" if e.kind == "support" else "query", e.kind,
                                    ref.frame_idx, e.index, e.z, ref.is_cond, ref.t_pos, span.start, span.stop,
                                    span.grid, num_maskmem))
    return KeyLayout(tuple(entries), layout.n_tokens, layout.tokens_per_pointer)


def query_token(pixel: tuple[int, int], image_shape: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """The (row, col) image token that covers ``pixel`` = (y, x) of an image of ``image_shape``.

    SAM2 resizes the slice to a square and tokenises it on a regular ``grid``; pixel centres
    map linearly: ``row = floor((y + 0.5) * h / H)``.
    """
    y, x = (int(v) for v in pixel)
    H, W = (int(v) for v in image_shape)
    if not (0 <= y < H and 0 <= x < W):
        raise ValueError(f"pixel (y={y}, x={x}) is outside the {H}x{W} query slice; expected 0 <= y < {H}, 0 <= x < {W}.")
    h, w = grid
    return min(int((y + 0.5) * h / H), h - 1), min(int((x + 0.5) * w / W), w - 1)


def token_weights(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Fraction of each image token's area covered by ``mask`` (adaptive average pooling).

    The foreground mean of a per-token quantity ``m`` is ``sum(w * m) / sum(w)``: the mean over
    foreground pixels of the value of the token covering each pixel.

    Returns
    -------
    ndarray, (h * w,) float64, row-major
    """
    m = torch.from_numpy(np.asarray(mask, dtype=np.float64))[None, None]
    if m.ndim != 4:
        raise ValueError(f"mask: expected a 2D (H, W) array, got shape {np.shape(mask)}.")
    return F.adaptive_avg_pool2d(m, grid)[0, 0].reshape(-1).numpy()


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


# ----------------------------------------------------------------------------- capture
@dataclass(eq=False)
class _StepContext:
    call: int
    position: int
    z: int | None
    selection: MemorySelection
    bank: MemoryBank
    layout: KeyLayout
    image: np.ndarray
    image_shape: tuple[int, int]
    pixels: tuple[tuple[int, int], ...]
    token_mass: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (Hd, Nq, E)
    rows: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (pixel i, layer, head)
    rel_error: dict[int, float] = field(default_factory=dict)
    sum_error: float = 0.0
    grid: tuple[int, int] | None = None
    tokens: tuple[tuple[int, int], ...] = ()


def _inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    names = ("q", "k", "v", "num_k_exclude_rope")
    vals = dict(zip(names, args))
    vals.update({k: v for k, v in kwargs.items() if k in names})
    missing = [n for n in names[:3] if n not in vals]
    if missing:
        raise RuntimeError(f"memory-attention hook: the layer was called without {missing}; "
                           "fsm2kit.inspect supports sam2 1.1.0's RoPEAttention(q, k, v, num_k_exclude_rope).")
    return vals["q"], vals["k"], vals["v"], int(vals.get("num_k_exclude_rope", 0) or 0)


def attention_weights(
    module: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, num_k_exclude_rope: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projected, rotated q and k of a sam2 ``RoPEAttention`` call, as its forward computes them.

    Returns (q, k), each (B, heads, N, d), in the projection's dtype.
    """
    from sam2.modeling.position_encoding import apply_rotary_enc

    qh = module._separate_heads(module.q_proj(q), module.num_heads)
    kh = module._separate_heads(module.k_proj(k), module.num_heads)
    nq = qh.shape[-2]
    freqs = module.freqs_cis.to(qh.device)
    if freqs.shape[0] != nq:  # the forward has just set it to this size; recompute otherwise
        side = math.sqrt(nq)
        freqs = module.compute_cis(end_x=side, end_y=side).to(qh.device)
    n_rope = kh.shape[-2] - num_k_exclude_rope
    qr, kr = apply_rotary_enc(qh, kh[:, :, :n_rope], freqs_cis=freqs, repeat_freqs_k=module.rope_k_repeat)
    return qr, torch.cat([kr, kh[:, :, n_rope:]], dim=2)


class MemoryInspector:
    """Captures SAM2's memory attention while an :class:`~fsm2kit.engine.Engine` tracks slices.

    Each :meth:`capture` appends one :class:`StepAttention` per tracking step to
    :attr:`records`, in processing order; :meth:`inspection` attaches them to an
    :class:`~fsm2kit.engine.EpisodeResult`.

    Examples
    --------
    >>> inspector = MemoryInspector()                                          # doctest: +SKIP
    >>> with inspector.capture(engine, layers=[0, 3], verify=True):            # doctest: +SKIP
    ...     result = engine.segment(episode, "S1SFQ", keep_banks=True)
    >>> insp = inspector.inspection(result, episode)                           # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.records: list[StepAttention] = []
        self.unattributed_calls = 0
        self._ctx: list[_StepContext] | None = None
        self._active = False
        self._options: dict = {}

    def __repr__(self) -> str:
        state = "capturing" if self._active else "idle"
        return f"MemoryInspector({len(self.records)} steps captured, {state})"

    def clear(self) -> None:
        self.records.clear()
        self.unattributed_calls = 0

    # ------------------------------------------------------------------ the context manager
    @contextlib.contextmanager
    def capture(
        self,
        engine: Engine,
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        pixels: Sequence[tuple[int, int]] | None = None,
        verify: bool = False,
        max_elements: int = 1 << 24,
    ) -> Iterator["MemoryInspector"]:
        """Record memory attention for every tracking step run inside the ``with`` block.

        Parameters
        ----------
        engine : Engine
            The engine whose steps to capture (through :meth:`Engine.observe`; batched forwards
            are captured step by step).
        layers : sequence of int, optional
            Memory-attention layers (default: all; negative indices count from the end).
        heads : sequence of int, optional
            Attention heads (default: all; SAM2's memory attention has 1).
        pixels : sequence of (y, x), optional
            Query-slice pixels whose full attention rows to keep (every step, layer, head).
        verify : bool
            Recompute ``out_proj(softmax(q k^T / sqrt(d)) v)`` and record its relative error
            against the layer's output (:attr:`StepAttention.rel_error`).
        max_elements : int
            Attention weights are computed in chunks of query tokens of at most this many
            elements (default 2**24: 64 MiB in float32).
        """
        if not isinstance(engine, Engine):
            raise TypeError(f"capture(engine): expected an fsm2kit Engine, got {type(engine).__name__}.")
        if self._active:
            raise RuntimeError("this MemoryInspector is already capturing; leave the first `with` block first.")
        if any(isinstance(ob, MemoryInspector) for ob in engine.observers):
            raise RuntimeError("this engine is already being inspected by another MemoryInspector.")
        mods = list(engine.module.memory_attention.layers)
        n_layers = len(mods)
        layer_ids = tuple(range(n_layers)) if layers is None else tuple(int(l) for l in layers)
        bad = [l for l in layer_ids if not -n_layers <= l < n_layers]
        if bad or not layer_ids:
            raise ValueError(f"layers {list(layer_ids)}: the memory attention has {n_layers} layers; "
                             f"pass indices in 0..{n_layers - 1} (or None for all).")
        layer_ids = tuple(sorted({l % n_layers for l in layer_ids}))
        n_heads = int(mods[0].cross_attn_image.num_heads)
        head_ids = tuple(range(n_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
        if not head_ids or any(not 0 <= h < n_heads for h in head_ids):
            raise ValueError(f"heads {list(heads or [])}: the memory attention has {n_heads} head(s); "
                             f"pass indices in 0..{n_heads - 1} (or None for all).")
        pix = tuple((int(y), int(x)) for y, x in (pixels or ()))
        if max_elements < 1:
            raise ValueError(f"max_elements must be >= 1, got {max_elements}.")
        self._options = dict(layers=layer_ids, heads=head_ids, pixels=pix, verify=bool(verify),
                             max_elements=int(max_elements), tokens_per_pointer=engine.tokens_per_pointer,
                             num_maskmem=int(engine.settings.num_maskmem))
        handles = []
        self._active = True
        try:
            for l in layer_ids:
                attn = mods[l].cross_attn_image
                handles.append(attn.register_forward_hook(functools.partial(self._hook, l), with_kwargs=True))
            with engine.observe(self):
                yield self
        finally:
            for h in handles:
                h.remove()
            self._active = False
            self._ctx = None

    # ------------------------------------------------------------------ the engine's observer hook
    def before_forward(self, requests, layouts) -> None:
        """Engine hook: a tracking forward of ``len(requests)`` steps is about to run."""
        self._ctx = [self._begin(r, lay) for r, lay in zip(requests, layouts)]

    def after_forward(self, requests, outputs) -> None:
        """Engine hook: the forward ran; one record per step, in batch order."""
        ctxs, self._ctx = self._ctx, None
        for ctx, out in zip(ctxs or (), outputs):
            self.records.append(self._finish(ctx, out))

    # ------------------------------------------------------------------ per step
    def _begin(self, request, token_layout_: TokenLayout) -> _StepContext:
        o = self._options
        layout = layout_entries(token_layout_, request.bank, num_maskmem=o["num_maskmem"])
        image = request.image
        shape = tuple(int(s) for s in np.shape(image)[-2:])
        for y, x in o["pixels"]:
            if not (0 <= y < shape[0] and 0 <= x < shape[1]):
                raise ValueError(f"pixel (y={y}, x={x}) is outside the {shape[0]}x{shape[1]} query slice.")
        z = request.z
        return _StepContext(
            call=len(self.records), position=int(request.index), z=None if z is None else int(z),
            selection=request.selection, bank=request.bank, layout=layout, image=image, image_shape=shape,
            pixels=o["pixels"],
        )

    @torch.no_grad()
    def _hook(self, layer: int, module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
        ctxs = self._ctx
        if ctxs is None:  # the layer ran outside a tracking forward (e.g. a direct module call)
            self.unattributed_calls += 1
            return None
        q, k, v, n_excl = _inputs(args, kwargs)
        if q.shape[0] != len(ctxs):
            raise RuntimeError(f"memory-attention hook: a batch of {q.shape[0]} query slices, but the engine "
                               f"announced {len(ctxs)} tracking steps for this forward.")
        for ctx in ctxs:
            lay = ctx.layout
            if k.shape[-2] != lay.n_tokens or n_excl != lay.n_pointer_tokens:
                raise RuntimeError(
                    f"memory attention layer {layer} got {k.shape[-2]} key tokens ({n_excl} without RoPE), "
                    f"but the memory selection lays out {lay.n_tokens} ({lay.n_pointer_tokens} pointer "
                    f"tokens): {lay!r}. The engine's memory layout changed; update fsm2kit.core.memory.token_layout."
                )
        qh, kh = attention_weights(module, q, k, n_excl)
        qh, kh = qh.float(), kh.float()
        vh = module._separate_heads(module.v_proj(v), module.num_heads).float() if self._options["verify"] else None
        for b, ctx in enumerate(ctxs):
            self._reduce(b, ctx, layer, module, qh, kh, vh, output)
        return None

    def _reduce(self, b: int, ctx: _StepContext, layer: int, module: torch.nn.Module, qh: torch.Tensor,
                kh: torch.Tensor, vh: torch.Tensor | None, output: torch.Tensor) -> None:
        """Attention of batch element ``b`` (one step), reduced to masses per memory entry."""
        o = self._options
        lay = ctx.layout
        nq, nk, d = qh.shape[-2], kh.shape[-2], qh.shape[-1]
        side = int(round(math.sqrt(nq)))
        ctx.grid = (side, side)
        if not ctx.tokens:
            ctx.tokens = tuple(query_token(p, ctx.image_shape, ctx.grid) for p in ctx.pixels)
        scale = 1.0 / math.sqrt(d)
        assign = lay.assignment(qh.device)
        heads = list(o["heads"])
        chunk = max(1, o["max_elements"] // max(1, nk * qh.shape[1]))
        masses, outs = [], []
        flat_tokens = [r * side + c for r, c in ctx.tokens]
        for c0 in range(0, nq, chunk):
            a = torch.softmax((qh[b, :, c0:c0 + chunk] @ kh[b].transpose(-1, -2)) * scale, dim=-1)  # (Hd, c, Nk)
            m = a[heads] @ assign  # (Hd_sel, c, E)
            ctx.sum_error = max(ctx.sum_error, float((m.sum(-1) - 1).abs().max()))
            masses.append(m)
            for i, t in enumerate(flat_tokens):
                if c0 <= t < c0 + a.shape[1]:
                    for h in heads:
                        ctx.rows[(i, layer, h)] = a[h, t - c0].cpu().numpy().astype(np.float32)
            if vh is not None:
                outs.append(a @ vh[b])  # (Hd, c, dv)
        ctx.token_mass[layer] = torch.cat(masses, dim=1)
        if vh is not None:
            attn = torch.cat(outs, dim=1)[None]  # (1, Hd, Nq, dv)
            re = module.out_proj(module._recombine_heads(attn).to(module.out_proj.weight.dtype)).float()
            ref = output[b:b + 1].float()
            ctx.rel_error[layer] = float((re - ref).norm() / ref.norm().clamp_min(1e-30))

    def _finish(self, ctx: _StepContext, out: TrackOutput) -> StepAttention:
        o = self._options
        layers, heads = o["layers"], o["heads"]
        missing = [l for l in layers if l not in ctx.token_mass]
        if missing:
            raise RuntimeError(f"memory-attention layers {missing} did not run during the tracking step "
                               f"of query slice {ctx.position}; is the engine's track calling memory_attention?")
        pred = np.asarray(out.logits) > 0
        grid = ctx.grid
        w = token_weights(pred, grid)
        tm = torch.stack([ctx.token_mass[l] for l in layers]).cpu().double().numpy()  # (L, Hd, Nq, E)
        mass_all = tm.mean(axis=2)
        fg = int(pred.sum())
        mass_fg = np.einsum("lhqe,q->lhe", tm, w) / w.sum() if w.sum() > 0 else None
        pix = []
        for i, p in enumerate(ctx.pixels):
            for l in layers:
                for h in heads:
                    pix.append(PixelAttention(p, ctx.tokens[i], l, h, ctx.rows[(i, l, h)], ctx.layout, ctx.z))
        rel = np.array([ctx.rel_error[l] for l in layers]) if o["verify"] else None
        sel = ctx.selection
        return StepAttention(
            call=ctx.call, position=ctx.position, z=ctx.z, frame_idx=sel.frame_idx, reverse=sel.reverse,
            selection=sel, layout=ctx.layout, layers=layers, heads=heads, mass_all=mass_all, mass_fg=mass_fg,
            fg_pixels=fg, token_sum_error=ctx.sum_error, rel_error=rel, pixels=pix, grid=grid,
            image_shape=ctx.image_shape, prediction=pred, image=ctx.image, bank=ctx.bank,
        )

    # ------------------------------------------------------------------ attach to a result
    def inspection(self, result: EpisodeResult, episode: Episode | None = None, *, engine: Engine | None = None,
                   records: Sequence[StepAttention] | None = None) -> "Inspection":
        """Attach captured steps to the :class:`EpisodeResult` of the same run.

        Steps are matched in processing order (plans in order, steps in order) and checked
        against each slice's ``selection``.
        """
        recs = list(self.records if records is None else records)
        slices = sorted(result.slices, key=lambda s: (s.plan_index, s.step))
        if len(recs) != len(slices):
            raise ValueError(
                f"{len(recs)} captured tracking steps but the result has {len(slices)} query slices; "
                "capture exactly one engine.segment(...) call (or pass records=...), and clear() in between."
            )
        steps = []
        for k, (r, s) in enumerate(zip(recs, slices)):
            if r.selection != s.selection or r.position != s.position:
                raise ValueError(
                    f"captured step {k} (query {r.position}, frame {r.frame_idx}) does not match the result's "
                    f"slice (query {s.position}, plan {s.plan_index}, step {s.step}): the capture and the "
                    "result come from different runs."
                )
            pixels = [replace(p, step=k) for p in r.pixels]
            steps.append(replace(r, plan_index=s.plan_index, step=s.step, call=k, pixels=pixels))
        return Inspection(steps=steps, result=result, episode=episode, engine=engine, options=dict(self._options))


# ----------------------------------------------------------------------------- the inspection
@dataclass(eq=False)
class Inspection:
    """Memory attention of every query slice of one run (one episode, setting and order).

    Attributes
    ----------
    steps : list of StepAttention
        In processing order (``proc_index``).
    result : EpisodeResult
    episode : Episode or None
        Needed for image panels (support images and masks).
    engine : Engine or None
        Needed to recompute attention maps for new pixels (:meth:`pixel_attention`).
    options : dict
        The capture options (layers, heads, pixels, verify).
    """

    steps: list[StepAttention]
    result: EpisodeResult = field(repr=False)
    episode: Episode | None = field(repr=False, default=None)
    engine: Engine | None = field(repr=False, default=None)
    options: dict = field(repr=False, default_factory=dict)
    _masses: object = field(repr=False, default=None)
    _pixel_cache: dict = field(repr=False, default_factory=dict)

    # ---------------------------------------------------------------- provenance
    @property
    def provenance(self) -> dict:
        """Model provenance (weights!) + run and capture settings."""
        p = dict(self.result.provenance)
        ep = self.episode
        p.update(
            case_id=self.result.case_id, label=self.result.label, label_name=self.result.label_name,
            setting=self.result.setting, order=self.result.order or "n/a",
            variant=getattr(ep, "variant", None), dataset=getattr(ep, "dataset", None),
            fold=getattr(ep, "fold", None), layers=list(self.layers), heads=list(self.heads),
            verify=bool(self.options.get("verify")), max_rel_error=self.max_rel_error,
            inspector="fsm2kit.inspect (forward hooks on memory_attention.layers[i].cross_attn_image)",
        )
        return p

    @property
    def weights(self) -> str:
        """``"random weights (seed N)"`` or ``"sha256:..."``: name it next to every output."""
        return str(self.result.provenance.get("weights"))

    @property
    def random_weights(self) -> bool:
        return bool(self.result.provenance.get("random_weights"))

    @property
    def layers(self) -> tuple[int, ...]:
        return self.steps[0].layers if self.steps else tuple(self.options.get("layers", ()))

    @property
    def heads(self) -> tuple[int, ...]:
        return self.steps[0].heads if self.steps else tuple(self.options.get("heads", ()))

    @property
    def max_rel_error(self) -> float | None:
        errs = [float(np.max(s.rel_error)) for s in self.steps if s.rel_error is not None]
        return max(errs) if errs else None

    @property
    def max_token_sum_error(self) -> float:
        return max((s.token_sum_error for s in self.steps), default=0.0)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> StepAttention:
        return self.steps[k]

    def step_of_z(self, z: int) -> int:
        """Processing index of the (first) step that segmented slice ``z``."""
        for k, s in enumerate(self.steps):
            if s.z == z:
                return k
        raise KeyError(f"no step segmented slice z={z}; slices: {sorted({s.z for s in self.steps})}")

    # ---------------------------------------------------------------- tables
    @property
    def masses(self):
        """Tidy attention-mass table (columns :data:`MASS_COLUMNS`), one row per step, layer,
        head, memory entry and region (``all`` query tokens, or the predicted ``foreground``;
        foreground rows are absent for steps with an empty prediction)."""
        if self._masses is None:
            self._masses = self._mass_frame()
        return self._masses

    def _mass_frame(self):
        import pandas as pd

        r = self.result
        prov = r.provenance
        variant = getattr(self.episode, "variant", None) or "n/a"
        cols: dict[str, list] = {c: [] for c in MASS_COLUMNS}
        for k, s in enumerate(self.steps):
            for region, arr in (("all", s.mass_all), ("foreground", s.mass_fg)):
                if arr is None:
                    continue
                for li, layer in enumerate(s.layers):
                    for hi, head in enumerate(s.heads):
                        for e in s.layout:
                            for c, v in (
                                ("case_id", r.case_id), ("label_name", r.label_name), ("setting", r.setting),
                                ("order", r.order or "n/a"), ("variant", variant), ("plan", s.plan_index),
                                ("step", s.step), ("proc_index", k), ("position", s.position), ("z", s.z),
                                ("layer", layer), ("head", head), ("region", region), ("entry", e.position),
                                ("entry_kind", e.kind), ("entry_source", e.source), ("entry_index", e.index),
                                ("entry_z", e.z), ("entry_frame", e.frame_idx), ("t_pos", e.t_pos),
                                ("is_cond", e.is_cond), ("role", e.role), ("group", e.group),
                                ("n_tokens", e.n_tokens), ("mass", float(arr[li, hi, e.position])),
                                ("model", prov.get("model")), ("weights", prov.get("weights")),
                            ):
                                cols[c].append(v)
        df = pd.DataFrame(cols)
        df["entry_z"] = df["entry_z"].astype("Int64")
        df["z"] = df["z"].astype("Int64")
        return df

    def shares(self, *, region: str = "all"):
        """Mass per group (support memory / query memory / object pointers) per step and layer."""
        m = self.masses
        m = m[m["region"] == region]
        keys = ["proc_index", "plan", "step", "position", "z", "layer", "head", "group"]
        out = m.groupby(keys, as_index=False, sort=True)["mass"].sum()
        out["model"], out["weights"] = self.result.provenance.get("model"), self.weights
        return out

    def layouts(self):
        """Tidy table of every step's key layout (which key tokens belong to which entry)."""
        import pandas as pd

        frames = []
        for k, s in enumerate(self.steps):
            df = s.layout.to_frame()
            df.insert(0, "query_z", s.z)
            df.insert(0, "proc_index", k)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def pixel_frame(self):
        """Tidy table of the pixel attention rows captured with ``pixels=``."""
        import pandas as pd

        frames = [p.to_frame() for s in self.steps for p in s.pixels]
        if not frames:
            return pd.DataFrame(columns=["step", "z", "query_y", "query_x", "layer", "head", "entry", "row", "col", "weight"])
        df = pd.concat(frames, ignore_index=True)
        df["weights"] = self.weights
        return df

    # ---------------------------------------------------------------- pixel maps, on demand
    def pixel_attention(self, step: int, pixel: tuple[int, int], *, layer: int | None = None,
                        head: int = 0) -> PixelAttention:
        """The attention row of ``pixel`` (y, x) of step ``step``'s query slice in one layer.

        Captured rows are reused; otherwise the step is re-run (``engine.track`` with the same
        selection and bank, ``store=False``) under a capture for that pixel (one tracking step).
        """
        if not 0 <= step < len(self.steps):
            raise IndexError(f"step {step} outside 0..{len(self.steps) - 1}")
        s = self.steps[step]
        layer = s.layers[-1] if layer is None else int(layer)
        s.layer_axis(layer)
        key = (step, tuple(int(v) for v in pixel), layer, head)
        for p in s.pixels:
            if (p.pixel, p.layer, p.head) == key[1:]:
                return p
        if key in self._pixel_cache:
            return self._pixel_cache[key]
        if self.engine is None or s.image is None or s.bank is None:
            raise RuntimeError("this Inspection has no engine to recompute attention for a new pixel; "
                               "build it with inspect_episode(...) or inspection(..., engine=engine).")
        query_token(pixel, s.image_shape, s.grid)  # validates the pixel
        insp = MemoryInspector()
        with insp.capture(self.engine, layers=list(s.layers), heads=list(s.heads), pixels=[key[1]]):
            self.engine.track(s.image, s.selection, s.bank, store=False, index=s.position, z=s.z)
        (rec,) = insp.records
        for p in rec.pixels:
            self._pixel_cache[(step, p.pixel, p.layer, p.head)] = replace(p, step=step)
        return self._pixel_cache[key]

    # ---------------------------------------------------------------- images of memory frames
    def entry_image(self, entry: KeyEntry) -> tuple[np.ndarray, np.ndarray | None]:
        """The image of a memory entry's frame and its mask (support mask, or the prediction
        of that query slice in this run)."""
        if self.episode is None:
            raise RuntimeError("this Inspection has no episode: pass episode= to get memory-frame images.")
        if entry.source == "support":
            sup = self.episode.supports[entry.index]
            return np.asarray(sup.image), np.asarray(sup.mask, dtype=bool)
        pred = None
        for s in self.result.slices:
            if s.position == entry.index:
                pred = s.prediction
        return np.asarray(self.episode.images[entry.index]), pred

    def default_pixel(self, step: int) -> tuple[int, int]:
        """The centroid of the step's predicted foreground (rounded), else the slice centre."""
        s = self.steps[step]
        if s.prediction is not None and s.prediction.any():
            ys, xs = np.nonzero(s.prediction)
            y, x = int(round(ys.mean())), int(round(xs.mean()))
            if s.prediction[y, x]:
                return y, x
            i = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
            return int(ys[i]), int(xs[i])
        return s.image_shape[0] // 2, s.image_shape[1] // 2

    def __repr__(self) -> str:
        r = self.result
        order = f"-{r.order}" if r.order else ""
        err = f", max rel. error {self.max_rel_error:.1e}" if self.max_rel_error is not None else ""
        return (f"Inspection({r.case_id}/{r.label_name}, {r.setting}{order}, {len(self.steps)} steps, "
                f"layers {list(self.layers)}, {self.weights}{err})")


# ----------------------------------------------------------------------------- plain functions
def inspect_episode(
    engine: Engine,
    episode: Episode,
    setting: str,
    *,
    order: str = "middle",
    plans=None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    verify: bool = False,
) -> Inspection:
    """Segment an episode under a setting while capturing its memory attention.

    Parameters
    ----------
    engine : Engine
    episode : Episode
    setting : {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
    order : {"middle", "top"}
        FQ settings only.
    plans : sequence of Plan, optional
        Custom plans (see :meth:`Engine.segment`).
    layers, heads, pixels, verify
        See :meth:`MemoryInspector.capture`.

    Returns
    -------
    Inspection
        Its ``result`` is the run's :class:`EpisodeResult` (with ``keep_banks=True``); the
        logits are those of a run without inspection.
    """
    insp = MemoryInspector()
    with insp.capture(engine, layers=layers, heads=heads, pixels=pixels, verify=verify):
        result = engine.segment(episode, setting, order=order, plans=plans, keep_banks=True)
    return insp.inspection(result, episode, engine=engine)
