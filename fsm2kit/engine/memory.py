"""SAM2's memory bank, made explicit and typed.

SAM2 keeps its memories in nested dicts inside an inference state and picks the ones a frame
attends to deep inside ``SAM2Base._prepare_memory_conditioned_features``. Here the bank is a
small typed object (:class:`MemoryBank` of :class:`MemoryEntry`), and the choice of memories is a
pure function of frame indices (:func:`select_memories`), written to reproduce SAM2's rule:

* every conditioning (support) memory, at temporal slot 0 (``max_cond_frames_in_attn=-1``);
* up to ``num_maskmem - 1`` non-conditioning memories of the frames just before the current one
  (just after it when tracking in reverse), frames that were never processed being skipped;
* object pointers: those of the conditioning frames (only those in the past, in eval), then
  those of up to ``max_obj_ptrs_in_encoder - 1`` previous non-conditioning frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, Sequence, runtime_checkable

if TYPE_CHECKING:  # annotations only: the selection rules (and the memory policies) need no torch
    import torch


__all__ = [
    "MemorySettings",
    "MemoryPolicy",
    "sam2_memory_policy",
    "policy_or_sam2",
    "check_selection",
    "TokenSpan",
    "TokenLayout",
    "token_layout",
    "MemoryEntry",
    "MemoryBank",
    "SpatialRef",
    "PointerRef",
    "MemorySelection",
    "select_closest_cond_frames",
    "select_memories",
    "with_step_memories",
]


@dataclass(frozen=True)
class MemorySettings:
    """The memory-selection settings of a SAM2 model (read off the module in eval mode)."""

    num_maskmem: int = 7
    max_cond_frames: int = -1
    stride: int = 1
    use_obj_ptrs: bool = True
    max_obj_ptrs: int = 16
    only_past_ptrs: bool = True
    signed_tpos: bool = False

    @classmethod
    def from_module(cls, module: torch.nn.Module) -> "MemorySettings":
        return cls(
            num_maskmem=int(module.num_maskmem),
            max_cond_frames=int(module.max_cond_frames_in_attn),
            stride=int(module.memory_temporal_stride_for_eval),
            use_obj_ptrs=bool(module.use_obj_ptrs_in_encoder),
            max_obj_ptrs=int(module.max_obj_ptrs_in_encoder),
            only_past_ptrs=bool(module.only_obj_ptrs_in_the_past_for_eval),
            signed_tpos=bool(getattr(module, "use_signed_tpos_enc_to_obj_ptrs", False)),
        )


@dataclass(frozen=True, eq=False)
class MemoryEntry:
    """One frame's memory: what SAM2's memory encoder made of a slice and its mask.

    Attributes
    ----------
    kind : {"support", "query"}
        A support slice with its annotated mask, or a query slice with its own prediction.
    is_cond : bool
        Conditioning memory (mask prompt) or not (a prediction).
    index : int
        Support position in the episode (``kind="support"``) or query slice position.
    maskmem_features : Tensor, (1, 64, h, w) bfloat16
        Spatial memory, stored in bfloat16 as SAM2's video predictor does.
    maskmem_pos_enc : Tensor, (1, 64, h, w)
        Its spatial position encoding (identical for all entries; shared, not copied).
    obj_ptr : Tensor, (1, 256)
        Object pointer.
    object_score : float
        Object score logit of the mask that made the memory.
    z : int or None
        Slice index in its scan, when known.
    iou : float or None
        SAM2's predicted IoU of the mask that made a query memory (the chosen mask's); None for
        supports (their mask is given, not predicted).
    reverse : bool or None
        Direction of the tracking step that made a query memory (True: towards lower frame
        indices); None for supports. See :attr:`direction`.
    """

    kind: Literal["support", "query"]
    is_cond: bool
    index: int
    maskmem_features: torch.Tensor
    maskmem_pos_enc: torch.Tensor
    obj_ptr: torch.Tensor
    object_score: float
    z: int | None = None
    iou: float | None = None
    reverse: bool | None = None
    promoted: bool = False

    @property
    def direction(self) -> str | None:
        """``"forward"``, ``"backward"`` (the step that made it tracked in reverse) or None (a support)."""
        return None if self.reverse is None else ("backward" if self.reverse else "forward")

    def __repr__(self) -> str:
        shape = "x".join(str(s) for s in self.maskmem_features.shape)
        iou = "" if self.iou is None else f", iou={self.iou:.2f}"
        way = "" if self.reverse is None else f", {self.direction}"
        way += ", promoted" if self.promoted else ""
        return (
            f"MemoryEntry({self.kind} #{self.index}, z={self.z}, "
            f"{'cond' if self.is_cond else 'non-cond'}, maskmem {shape} "
            f"{str(self.maskmem_features.dtype).replace('torch.', '')}, "
            f"object_score={self.object_score:+.2f}{iou}{way})"
        )


@dataclass(eq=False)
class MemoryBank:
    """The memories of one run, by frame index in the run's frame layout.

    Conditioning entries keep their insertion order (SAM2 concatenates them in the order the
    masks were added).
    """

    num_frames: int
    cond: dict[int, MemoryEntry] = field(default_factory=dict)
    non_cond: dict[int, MemoryEntry] = field(default_factory=dict)

    def add(self, frame_idx: int, entry: MemoryEntry) -> None:
        if not 0 <= frame_idx < self.num_frames:
            raise IndexError(f"frame {frame_idx} outside the run's {self.num_frames} frames")
        if entry.is_cond:
            self.non_cond.pop(frame_idx, None)
            self.cond[frame_idx] = entry
        elif frame_idx in self.cond:
            raise ValueError(f"frame {frame_idx} already holds a conditioning memory")
        else:
            self.non_cond[frame_idx] = entry

    def __getitem__(self, frame_idx: int) -> MemoryEntry:
        if frame_idx in self.cond:
            return self.cond[frame_idx]
        return self.non_cond[frame_idx]

    def __contains__(self, frame_idx: int) -> bool:
        return frame_idx in self.cond or frame_idx in self.non_cond

    def __len__(self) -> int:
        return len(self.cond) + len(self.non_cond)

    def select(self, frame_idx: int, *, reverse: bool = False, settings: MemorySettings | None = None) -> "MemorySelection":
        """The memories SAM2 attends to for ``frame_idx`` given this bank (:func:`select_memories`)."""
        return select_memories(
            frame_idx,
            cond_frames=list(self.cond),
            non_cond_frames=self.non_cond.keys(),
            num_frames=self.num_frames,
            reverse=reverse,
            settings=settings if settings is not None else MemorySettings(),
        )

    def __repr__(self) -> str:
        return (
            f"MemoryBank({self.num_frames} frames, cond at {list(self.cond)}, "
            f"{len(self.non_cond)} non-cond)"
        )


@dataclass(frozen=True)
class SpatialRef:
    """A spatial memory chosen for the current frame.

    ``t_pos`` is SAM2's temporal slot: 0 for conditioning memories, else ``num_maskmem - d``
    for the memory ``d`` frames away; ``tpos_index`` indexes ``maskmem_tpos_enc``.
    """

    frame_idx: int
    t_pos: int
    tpos_index: int
    is_cond: bool


@dataclass(frozen=True)
class PointerRef:
    """An object pointer chosen for the current frame, ``t_diff`` frames away (signed or not)."""

    frame_idx: int
    t_diff: int
    is_cond: bool


@dataclass(frozen=True)
class MemorySelection:
    """What one frame attends to: spatial memories, then object pointers, in key order."""

    frame_idx: int
    reverse: bool
    spatial: tuple[SpatialRef, ...]
    pointers: tuple[PointerRef, ...]
    max_obj_ptrs: int

    @property
    def frames(self) -> tuple[int, ...]:
        return tuple(r.frame_idx for r in self.spatial)


def select_closest_cond_frames(
    frame_idx: int, cond_frames: Sequence[int], max_cond_frames: int
) -> tuple[list[int], list[int]]:
    """SAM2's choice of conditioning frames (all when ``max_cond_frames`` is -1).

    Otherwise the closest before and after ``frame_idx`` and then the others by distance.
    Returns (selected, unselected): selected in SAM2's order (all: insertion order; limited:
    closest before, closest after, then by distance), unselected in insertion order.
    """
    if max_cond_frames == -1 or len(cond_frames) <= max_cond_frames:
        return list(cond_frames), []
    if max_cond_frames < 2:
        raise ValueError("max_cond_frames must be -1 or at least 2")
    chosen: list[int] = []  # SAM2's order: closest before, closest after, then by distance
    before = [t for t in cond_frames if t < frame_idx]
    if before:
        chosen.append(max(before))
    after = [t for t in cond_frames if t >= frame_idx]
    if after:
        chosen.append(min(after))
    rest = sorted((t for t in cond_frames if t not in chosen), key=lambda t: abs(t - frame_idx))
    chosen.extend(rest[: max_cond_frames - len(chosen)])
    return chosen, [t for t in cond_frames if t not in chosen]


def select_memories(
    frame_idx: int,
    *,
    cond_frames: Sequence[int],
    non_cond_frames: Sequence[int] | set[int],
    num_frames: int,
    reverse: bool = False,
    settings: MemorySettings = MemorySettings(),
) -> MemorySelection:
    """The memories SAM2 attends to when it tracks ``frame_idx`` (a pure function).

    Parameters
    ----------
    frame_idx : int
        The frame being segmented (not a conditioning frame).
    cond_frames : sequence of int
        Frames holding conditioning memories, in insertion order.
    non_cond_frames : collection of int
        Frames already processed whose predictions are in the bank.
    num_frames : int
        Number of frames in the run's layout (bounds pointer look-back).
    reverse : bool
        Tracking towards lower frame indices.
    settings : MemorySettings
        The model's memory settings.
    """
    if not cond_frames:
        raise ValueError("SAM2 tracking needs at least one conditioning (support) memory.")
    non_cond = set(non_cond_frames)
    selected, unselected = select_closest_cond_frames(frame_idx, cond_frames, settings.max_cond_frames)
    unselected_set = set(unselected)
    n = settings.num_maskmem
    spatial = [SpatialRef(t, 0, n - 1, True) for t in selected]
    for t_pos in range(1, n):
        t_rel = n - t_pos
        if t_rel == 1:
            prev = frame_idx + 1 if reverse else frame_idx - 1
        elif not reverse:
            prev = ((frame_idx - 2) // settings.stride) * settings.stride - (t_rel - 2) * settings.stride
        else:
            prev = -(-(frame_idx + 2) // settings.stride) * settings.stride + (t_rel - 2) * settings.stride
        if prev in non_cond:
            spatial.append(SpatialRef(prev, t_pos, n - t_pos - 1, False))
        elif prev in unselected_set:
            spatial.append(SpatialRef(prev, t_pos, n - t_pos - 1, True))

    pointers: list[PointerRef] = []
    max_ptrs = min(num_frames, settings.max_obj_ptrs)
    if settings.use_obj_ptrs:
        sign = -1 if reverse else 1
        for t in selected:
            if settings.only_past_ptrs and not (t >= frame_idx if reverse else t <= frame_idx):
                continue
            diff = (frame_idx - t) * sign if settings.signed_tpos else abs(frame_idx - t)
            pointers.append(PointerRef(t, diff, True))
        for t_diff in range(1, max_ptrs):
            t = frame_idx + t_diff if reverse else frame_idx - t_diff
            if t < 0 or t >= num_frames:
                break
            if t in non_cond:
                pointers.append(PointerRef(t, t_diff, False))
            elif t in unselected_set:
                pointers.append(PointerRef(t, t_diff, True))
    return MemorySelection(frame_idx, reverse, tuple(spatial), tuple(pointers), max_ptrs)


def with_step_memories(bank: "MemoryBank", selection: MemorySelection, entries: Sequence["MemoryEntry"],
                       settings: MemorySettings = MemorySettings()) -> tuple[MemorySelection, "MemoryBank"]:
    """A step's selection and bank with ``entries`` added as conditioning memories for that step only.

    The entries sit at frames ``bank.num_frames, bank.num_frames + 1, ...`` of a step bank (a
    shallow copy: ``bank`` itself is unchanged, so they are gone at the next step); each is a
    spatial memory at temporal slot 0 (as every conditioning memory) listed after the selection's
    conditioning memories, and its object pointer follows the conditioning pointers with
    ``t_diff = 0`` (a per-slice support stands for the query slice's own position).
    """
    if not entries:
        return selection, bank
    n = bank.num_frames
    step = MemoryBank(n + len(entries), cond=dict(bank.cond), non_cond=dict(bank.non_cond))
    extra_spatial, extra_ptrs = [], []
    for j, e in enumerate(entries):
        if not e.is_cond:
            raise ValueError("per-step memories must be conditioning memories (supports)")
        step.cond[n + j] = e
        extra_spatial.append(SpatialRef(n + j, 0, settings.num_maskmem - 1, True))
        extra_ptrs.append(PointerRef(n + j, 0, True))
    k = sum(1 for r in selection.spatial if r.t_pos == 0)
    spatial = selection.spatial[:k] + tuple(extra_spatial) + selection.spatial[k:]
    kp = sum(1 for p in selection.pointers if p.is_cond and p.frame_idx in bank.cond)
    pointers = (selection.pointers[:kp] + tuple(extra_ptrs) + selection.pointers[kp:]) if settings.use_obj_ptrs \
        else selection.pointers
    return MemorySelection(selection.frame_idx, selection.reverse, spatial, pointers, selection.max_obj_ptrs), step


# ----------------------------------------------------------------------------- memory policies
@runtime_checkable
class MemoryPolicy(Protocol):
    """What the engine asks of a memory policy: which memories a frame attends to.

    A memory policy is a pure function of the bank, the frame being segmented, the direction and
    the model's :class:`MemorySettings`. It may fill fewer than SAM2's ``num_maskmem - 1``
    non-conditioning slots, never more, and may only name frames that are in the bank. SAM2's own
    rule (:func:`sam2_memory_policy`) is the default; the built-in others (``stride:R``,
    ``support-only``, ``recent:K``, ``confident:T``, ``best:K``) are in :mod:`fsm2kit.strategies.memory_policies`;
    all are named in the registry :data:`fsm2kit.strategies.MEMORY_POLICIES`.
    """

    def __call__(self, bank: "MemoryBank", frame_idx: int, *, reverse: bool,
                 settings: MemorySettings) -> MemorySelection: ...


def sam2_memory_policy(bank: MemoryBank, frame_idx: int, *, reverse: bool, settings: MemorySettings) -> MemorySelection:
    """SAM2's memory selection (:func:`select_memories` on the bank's frames): the default policy."""
    return bank.select(frame_idx, reverse=reverse, settings=settings)


sam2_memory_policy.strategy_name = "sam2"


def policy_or_sam2(memory_policy: object) -> MemoryPolicy:
    """The policy a step runs: ``memory_policy``, or SAM2's rule for None.

    The engine sits below the strategy registries, so it takes policy objects; a name is refused
    with the registry call that resolves it."""
    if isinstance(memory_policy, str):
        raise TypeError(f"memory_policy={memory_policy!r}: the engine takes a policy object; for a registered "
                        f"name use fsm2kit.strategies.MEMORY_POLICIES.get({memory_policy!r}).")
    return sam2_memory_policy if memory_policy is None else memory_policy


def check_selection(selection: MemorySelection, bank: MemoryBank, settings: MemorySettings) -> MemorySelection:
    """Refuse a selection the model cannot attend to (what a memory policy must respect).

    Every referenced frame must be in the bank, spatial memories need distinct frames, and at
    most ``num_maskmem - 1`` non-conditioning temporal slots exist (slot indices 1..num_maskmem-1).
    """
    missing = [r.frame_idx for r in (*selection.spatial, *selection.pointers) if r.frame_idx not in bank]
    if missing:
        raise ValueError(f"memory selection for frame {selection.frame_idx} names frames {missing} that are "
                         f"not in the memory bank ({bank!r}).")
    frames = [r.frame_idx for r in selection.spatial]
    if len(set(frames)) != len(frames):
        raise ValueError(f"memory selection for frame {selection.frame_idx} names a spatial memory twice: {frames}.")
    n = settings.num_maskmem
    bad = [r for r in selection.spatial if not r.is_cond and not 1 <= r.t_pos <= n - 1]
    if bad or not selection.spatial:
        raise ValueError(f"memory selection for frame {selection.frame_idx}: non-conditioning memories need a "
                         f"temporal slot in 1..{n - 1} (got {[r.t_pos for r in bad]}), and at least one "
                         "conditioning memory is required.")
    return selection


# ----------------------------------------------------------------------------- token layout
@dataclass(frozen=True)
class TokenSpan:
    """One selected memory on the memory attention's key axis: tokens ``[start, stop)``.

    ``ref`` is the :class:`SpatialRef` (``grid`` = its token grid (h, w)) or the
    :class:`PointerRef` (``grid`` None) it comes from.
    """

    ref: SpatialRef | PointerRef
    start: int
    stop: int
    grid: tuple[int, int] | None = None

    @property
    def is_pointer(self) -> bool:
        return isinstance(self.ref, PointerRef)

    @property
    def n_tokens(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class TokenLayout:
    """The key axis of one tracking step: spatial memories, then object pointers, in key order."""

    spans: tuple[TokenSpan, ...]
    n_tokens: int
    n_pointer_tokens: int
    tokens_per_pointer: int


def token_layout(selection: MemorySelection, bank: MemoryBank, *, tokens_per_pointer: int) -> TokenLayout:
    """Where each selected memory lands on the key axis, as the engine concatenates them.

    Spatial memories contribute ``h * w`` tokens each (their maskmem grid), in selection order;
    each object pointer contributes ``tokens_per_pointer`` tokens (``hidden_dim // mem_dim`` when
    ``mem_dim < hidden_dim``: 4 in SAM2), after all spatial tokens. The one definition of the
    layout: the engine checks its memory tensor against it and hands it to observers.
    """
    if tokens_per_pointer < 1:
        raise ValueError(f"tokens_per_pointer must be >= 1, got {tokens_per_pointer}.")
    spans: list[TokenSpan] = []
    pos = 0
    for ref in selection.spatial:
        if ref.frame_idx not in bank:
            raise KeyError(f"selection refers to frame {ref.frame_idx}, which is not in the memory bank ({bank!r}); "
                           "pass the bank of the same plan (keep_banks=True).")
        h, w = (int(x) for x in bank[ref.frame_idx].maskmem_features.shape[-2:])
        spans.append(TokenSpan(ref, pos, pos + h * w, (h, w)))
        pos += h * w
    n_spatial = pos
    for ref in selection.pointers:
        if ref.frame_idx not in bank:
            raise KeyError(f"selection's pointer refers to frame {ref.frame_idx}, not in the bank {bank!r}.")
        spans.append(TokenSpan(ref, pos, pos + tokens_per_pointer))
        pos += tokens_per_pointer
    return TokenLayout(tuple(spans), pos, pos - n_spatial, tokens_per_pointer)
