"""The memory attention's key axis, named: which tokens belong to which memory entry.

The engine lays out a step's keys with :func:`fsm2kit.engine.memory.token_layout` (spatial
memories, then object pointers); :func:`key_layout` names those spans after the memory bank's
entries (:class:`KeyEntry`: support memory, previous-query memory, object pointer) for tables,
charts and panels. Also the mapping between query pixels and memory-attention tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Literal

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.memory import MemoryBank, MemorySelection, TokenLayout, token_layout

__all__ = ["KeyEntry", "KeyLayout", "key_layout", "layout_entries", "query_token", "token_weights", "ENTRY_GROUPS"]

#: Entry kind -> the group it is charted in.
ENTRY_GROUPS = {"support": "support memory", "query": "query memory", "pointer": "pointers"}

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
    promoted: bool = False

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
        """``"support memory"``, ``"query memory"`` or ``"pointers"``."""
        return ENTRY_GROUPS[self.kind]

    @property
    def role(self) -> str:
        """A name stable across steps (charts): ``support #1 (z=17)``, ``query (SAM2 d=2)``, ``pointers``.

        One naming scheme for memory entries in tables, charts and the widget. ``d`` is SAM2's
        frame distance (:attr:`distance`): frames between the memory and the query frame in
        SAM2's frame order, where the support frames count too, so it is not "slices back" (with
        one support before a middle-out run, z=12's memories have d = 1, 2, 4, 5, 6). Charts need
        a name that is the same at every step, so they use d; :attr:`label` names the memory by
        its slice z (and d).
        """
        if self.kind == "pointer":
            return "pointers"
        if self.source == "support":
            return self._support_name
        if self.promoted:
            return "promoted"
        return f"query (SAM2 d={self.distance})"

    @property
    def _support_name(self) -> str:
        where = [f"z={self.z}"] if self.z is not None else []
        if not (self.t_pos == 0 or self.kind == "pointer"):
            where.append(f"SAM2 d={self.distance}")
        return f"support #{self.index}" + (f" ({', '.join(where)})" if where else "")

    @property
    def label(self) -> str:
        """This very entry, by its slice: ``support #1 (z=17)``, ``query z=22 (SAM2 d=1)``,
        ``pointers: query z=22 (SAM2 d=1)``."""
        if self.source == "support":
            frame = self._support_name
        elif self.promoted:  # a refinement pass promoted this query slice to a conditioning memory
            frame = f"promoted z={self.z}" if self.z is not None else f"promoted #{self.index}"
        else:
            d = self.t_pos if self.kind == "pointer" else self.distance
            frame = (f"query z={self.z}" if self.z is not None else f"query #{self.index}") + f" (SAM2 d={d})"
        return f"pointers: {frame}" if self.kind == "pointer" else frame

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
    """Name the spans of a :class:`~fsm2kit.engine.memory.TokenLayout` after the bank's entries."""
    entries: list[KeyEntry] = []
    for span in layout.spans:
        ref = span.ref
        e = bank[ref.frame_idx]
        if span.is_pointer:
            entries.append(KeyEntry(len(entries), "pointer", e.kind, ref.frame_idx, e.index, e.z, ref.is_cond,
                                    ref.t_diff, span.start, span.stop, None, num_maskmem,
                                    bool(getattr(e, "promoted", False))))
        else:
            entries.append(KeyEntry(len(entries), "support" if e.kind == "support" else "query", e.kind,
                                    ref.frame_idx, e.index, e.z, ref.is_cond, ref.t_pos, span.start, span.stop,
                                    span.grid, num_maskmem, bool(getattr(e, "promoted", False))))
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


