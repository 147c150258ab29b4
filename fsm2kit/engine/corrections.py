"""Correction rounds: prompts on query slices, then re-propagation over the same memory bank.

Faithful to sam2 1.1.0's ``SAM2VideoPredictor`` built with
``add_all_frames_to_correct_as_cond=True`` and driven as: ``add_new_mask`` on the supports, the
setting's propagation, then per round ``add_new_points_or_box`` (pixel coordinates,
``normalize_coords=True``, ``clear_old_points=True``) for each correction and the same
propagation again. Per correction, SAM2's refinement runs: the slice's previous low-resolution
mask logits (clamped to +-32) plus the point/box prompts go through the tracking step with
memory (in the direction the slice was last tracked), and the output becomes a conditioning
memory. As in SAM2, the memories of a round's corrections are added to the bank only after all
corrections of the round ran (``propagate_in_video_preflight``), in the order given; the
re-propagation re-tracks every non-conditioning slice, replacing its memory, while memories of
earlier propagations persist until replaced. Undo is :func:`segment_with_corrections` without
the last round.

:class:`CorrectionSession` does the rounds one at a time, as a user makes them: it keeps the
state after every round (the bank, the last low-resolution logits, the corrected slices'
outputs), so a round costs its corrections and one propagation instead of a replay of every
earlier round, and undo restores the saved state at once. The same operations run in the same
order, so its stages are bit-equal to :func:`segment_with_corrections` of the same rounds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch

from .engine import Engine
from ..protocol.episodes import Episode
from .memory import MemoryBank, MemoryEntry, policy_or_sam2
from ..records.naming import strategy_name
from .plans import Plan, build_plans, normalize_setting
from .results import EpisodeResult, SliceResult
from .tracking import TrackRequest

__all__ = ["Correction", "CorrectionRun", "CorrectionSession", "check_rounds", "corrections_job",
           "segment_with_corrections"]


@dataclass(frozen=True, eq=False)
class Correction:
    """Prompts on one query slice: points and/or a box, or a mask.

    Parameters
    ----------
    z : int
        The slice's z in the episode (``Episode.z``).
    points : sequence of (x, y, label)
        Pixel coordinates of the slice as stored (x = column, y = row); label 1 positive, 0
        negative.
    box : (x0, y0, x1, y1) or None
        Pixel coordinates, ``x0 < x1`` and ``y0 < y1``.
    mask : ndarray (H, W) or None
        SAM2's ``add_new_mask`` meaning: the mask is the slice's output and a conditioning
        memory. Not combined with points or a box.
    """

    z: int
    points: tuple[tuple[float, float, int], ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple((float(x), float(y), int(lab)) for x, y, lab in self.points))
        if self.box is not None:
            object.__setattr__(self, "box", tuple(float(v) for v in self.box))
            if len(self.box) != 4 or not (self.box[0] < self.box[2] and self.box[1] < self.box[3]):
                raise ValueError(f"box {self.box}: expected (x0, y0, x1, y1) with x0 < x1 and y0 < y1.")
        bad = [p for p in self.points if p[2] not in (0, 1)]
        if bad:
            raise ValueError(f"point labels must be 1 (positive) or 0 (negative), got {bad}.")
        if self.mask is not None and (self.points or self.box is not None):
            raise ValueError("a mask correction takes no points or box; give them as a separate correction.")
        if self.mask is None and not self.points and self.box is None:
            raise ValueError(f"correction on z={self.z} is empty: give points, a box or a mask.")

    def check(self, shape: tuple[int, int]) -> None:
        """Refuse prompts outside a slice of this (H, W) shape (points: x < W, y < H; box edges up to W, H)."""
        h, w = shape
        out = [p for p in self.points if not (0 <= p[0] < w and 0 <= p[1] < h)]
        if out:
            raise ValueError(f"point(s) {[list(p) for p in out]} outside the {w}x{h} slice "
                             f"(x = column in 0..{w - 1}, y = row in 0..{h - 1}, as stored).")
        b = self.box
        if b is not None and not (0 <= b[0] and 0 <= b[1] and b[2] <= w and b[3] <= h):
            raise ValueError(f"box {list(b)} reaches outside the {w}x{h} slice "
                             f"(x in 0..{w}, y in 0..{h}, as stored).")
        if self.mask is not None and np.shape(self.mask) != (h, w):
            raise ValueError(f"correction mask on z={self.z} has shape {np.shape(self.mask)}, the slice {(h, w)}.")

    def prompt(self, shape: tuple[int, int], image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """SAM2's point inputs, computed as ``add_new_points_or_box`` does (box corners first)."""
        pts = torch.tensor([[p[0], p[1]] for p in self.points], dtype=torch.float32).reshape(1, -1, 2)
        labels = torch.tensor([p[2] for p in self.points], dtype=torch.int32).reshape(1, -1)
        if self.box is not None:
            pts = torch.cat([torch.tensor(self.box, dtype=torch.float32).reshape(1, 2, 2), pts], dim=1)
            labels = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), labels], dim=1)
        h, w = shape
        pts = pts / torch.tensor([w, h])
        return pts * image_size, labels

    def __repr__(self) -> str:
        what = "mask" if self.mask is not None else ", ".join(
            ([f"{len(self.points)} points"] if self.points else []) + (["box"] if self.box is not None else []))
        return f"Correction(z={self.z}, {what})"


@dataclass(frozen=True, eq=False)
class CorrectionRun:
    """The results of a propagation and its correction rounds: ``stages[0]`` before any round."""

    stages: tuple[EpisodeResult, ...]
    rounds: tuple[tuple[Correction, ...], ...]

    @property
    def final(self) -> EpisodeResult:
        return self.stages[-1]

    def __repr__(self) -> str:
        return f"CorrectionRun({len(self.rounds)} rounds, {sum(len(r) for r in self.rounds)} corrections)"


def check_rounds(rounds, *, z: Sequence[int], shape: tuple[int, int], what: str = "") -> list[list[Correction]]:
    """The rounds as lists of :class:`Correction`, checked against the query slices.

    ``z`` are the query slices' z and ``shape`` their (H, W). Refuses a correction that is not a
    :class:`Correction`, a z that is not a query slice, prompts outside the slice and two
    corrections on one slice in a round; ``what`` starts each message (e.g. ``"label liver: "``).
    """
    zs = sorted(int(v) for v in z)
    known = set(zs)
    out = []
    for r, rnd in enumerate(rounds):
        rnd = list(rnd)
        for c in rnd:
            if not isinstance(c, Correction):
                raise TypeError(f"{what}round {r + 1}: expected Correction objects, got {type(c).__name__}.")
            if c.z not in known:
                raise ValueError(f"{what}round {r + 1}: z={c.z} is not a query slice (z {zs[0]}..{zs[-1]}).")
            c.check(tuple(shape))
        at = [c.z for c in rnd]
        if len(set(at)) != len(at):
            raise ValueError(f"{what}round {r + 1}: at most one correction per slice, got z={at}.")
        out.append(rnd)
    return out


class _RoundState:
    """What a correction run carries from round to round: the bank, each frame's last low-res
    logits (SAM2's ``pred_masks``) and the corrected frames' outputs. :meth:`copy` is a snapshot
    (entries and tensors are shared, never modified in place: the bank replaces entries)."""

    def __init__(self, engine: Engine, plan: Plan, episode: Episode, sups, policy) -> None:
        self.engine, self.plan, self.episode, self.policy = engine, plan, episode, policy
        self.bank = MemoryBank(plan.num_frames)
        for frame_idx, s in plan.support_frames:
            self.bank.add(frame_idx, engine.support_memory(sups[s], index=s).entry)
        self.frame_of = {f.index: i for i, f in enumerate(plan.frames) if f.kind == "query"}
        self.reverse_of = {s.frame_idx: s.reverse for s in plan.steps}
        self.pos_of = {int(z): i for i, z in enumerate(episode.z)}
        self.low: dict[int, torch.Tensor | None] = {}  # frame -> last low-res logits
        self.cond_out: dict[int, tuple] = {}  # corrected frame -> (logits, score, iou, selection)

    def copy(self) -> "_RoundState":
        out = object.__new__(_RoundState)
        out.__dict__.update(self.__dict__)
        b = self.bank
        out.bank = MemoryBank(b.num_frames, dict(b.cond), dict(b.non_cond))
        out.low, out.cond_out = dict(self.low), dict(self.cond_out)
        return out

    def propagate(self):
        """The setting's propagation (a job): the :class:`SliceResult` s in processing order."""
        plan, episode, bank, settings = self.plan, self.episode, self.bank, self.engine.settings
        results = []
        for k, step in enumerate(plan.steps):
            q = plan.frames[step.frame_idx].index
            zq = int(episode.z[q])
            if step.frame_idx in bank.cond:  # a corrected slice: its output is kept, not re-tracked
                logits, score, iou, sel = self.cond_out[step.frame_idx]
                results.append(SliceResult(q, zq, logits, score, iou, 0, k, sel))
                continue
            sel = self.policy(bank, step.frame_idx, reverse=step.reverse, settings=settings)
            out = yield TrackRequest(episode.images[q], sel, bank, True, q, zq)
            bank.add(step.frame_idx, out.memory)
            self.low[step.frame_idx] = out.low_res_logits
            results.append(SliceResult(q, zq, out.logits, out.object_score, out.iou, 0, k, sel))
        return results

    def correct(self, rnd: Sequence[Correction]):
        """A round's corrections (a job); their memories join the bank after all of them ran."""
        engine, episode, bank, settings = self.engine, self.episode, self.bank, self.engine.settings
        new: list[tuple[int, MemoryEntry]] = []
        for c in rnd:
            q = self.pos_of[c.z]
            fi = self.frame_of[q]
            image = episode.images[q]
            reverse = self.reverse_of[fi]
            sel = self.policy(bank, fi, reverse=reverse, settings=settings)
            if c.mask is not None:  # add_new_mask: the mask is the output and a conditioning memory
                sm = engine.support_memory((image, np.asarray(c.mask)), index=q)
                entry = replace(sm.entry, kind="query", index=q, z=int(c.z))
                self.low[fi] = None
                self.cond_out[fi] = (sm.logits, entry.object_score, 1.0, sel)
                new.append((fi, entry))
                continue
            prev = self.low.get(fi)
            if prev is None and fi in self.cond_out:
                raise ValueError(f"z={c.z}: points or a box after a mask correction on the same slice are not supported.")
            out = yield TrackRequest(image, sel, bank, False, q, int(c.z),
                                     points=c.prompt(image.shape, engine.image_size),
                                     mask_logits=None if prev is None else torch.clamp(prev, -32.0, 32.0))
            maskmem, mpos = engine.tracker.mask_memory(image, out.low_res_logits, out.object_score)
            entry = MemoryEntry("query", True, q, maskmem, mpos, out.obj_ptr, out.object_score, int(c.z),
                                iou=out.iou, reverse=reverse)
            self.low[fi] = out.low_res_logits
            self.cond_out[fi] = (out.logits, out.object_score, out.iou, sel)
            new.append((fi, entry))
        for fi, entry in new:  # SAM2's preflight: prompted frames join the bank after the round
            bank.add(fi, entry)

    def round(self, rnd: Sequence[Correction]):
        """A round: its corrections, then the same propagation (a job returning its results)."""
        yield from self.correct(rnd)
        return (yield from self.propagate())


def corrections_job(engine: Engine, plan: Plan, episode: Episode, rounds: Sequence[Sequence[Correction]], *,
                    supports=None, memory_policy=None):
    """Propagate, then per round: corrections, then the same propagation.

    A job for :meth:`Engine.drive <fsm2kit.engine.engine.Engine.drive>` (it yields
    :class:`~fsm2kit.engine.tracking.TrackRequest` s); its return value is ``(stages, bank)``:
    per stage (before the rounds, then after each round) the :class:`SliceResult` s in
    processing order, and the final :class:`MemoryBank`. ``rounds`` must be checked
    (:func:`check_rounds`); ``supports`` are the supports the plan's support frames index
    (default ``episode.supports``); ``memory_policy`` chooses each tracking step's memories
    (default SAM2's rule; the corrections' own steps use it too).
    """
    state = _RoundState(engine, plan, episode, episode.supports if supports is None else supports,
                        policy_or_sam2(memory_policy))
    stages = [(yield from state.propagate())]
    for rnd in rounds:
        stages.append((yield from state.round(rnd)))
    return stages, state.bank


def segment_with_corrections(
    engine: Engine,
    episode: Episode,
    setting: str,
    rounds: Sequence[Sequence[Correction]] = (),
    *,
    order: str = "middle",
    plan: Plan | None = None,
    supports=None,
    memory_policy=None,
    keep_bank: bool = False,
) -> CorrectionRun:
    """Segment an episode under an FQ setting, then apply correction rounds.

    Parameters
    ----------
    engine : Engine
    episode : Episode
    setting : {"S1SFQ", "3SFQ"}
        1S1Q and 3S1Q have no propagation to correct and are refused.
    rounds : sequence of sequences of Correction
        Each round: corrections on distinct slices, then a re-propagation.
    order : {"middle", "top"}
    plan : Plan, optional
        A plan of the setting instead of the order's, e.g. :func:`~fsm2kit.engine.plans.split_plan`
        (own-scan segmentation starting at a slice); its predictions must join memory.
    supports : sequence of Support, optional
        The supports ``plan``'s support frames index (default ``episode.supports``), e.g. with
        augmented views; needs ``plan``.
    memory_policy : MemoryPolicy, optional
        Which memories each step attends to (default SAM2's rule), as in
        :meth:`Engine.segment <fsm2kit.engine.engine.Engine.segment>`.
    keep_bank : bool
        Keep the final memory bank on the last stage (``final.banks``), e.g. for the inspector.

    Returns
    -------
    CorrectionRun
        One :class:`EpisodeResult` per stage (before the rounds, then after each round).
        Undo: call again with ``rounds[:-1]`` (equal to a fresh run of the remaining rounds).
    """
    checked = check_rounds(rounds, z=episode.z, shape=episode.images.shape[1:]) if normalize_setting(
        setting).endswith("FQ") else []
    setting, plan, label_order, sups = _prepare(episode, setting, order, plan, supports)
    t0 = time.perf_counter()
    passes0 = engine.stats.encoder_passes
    _encode(engine, plan, episode, sups)
    total = len(plan.steps) * (1 + len(checked)) + sum(len(r) for r in checked)
    job = corrections_job(engine, plan, episode, checked, supports=sups, memory_policy=memory_policy)
    ((stages, bank),) = engine.drive([job], total=total, desc=f"{setting} corrections")
    seconds = time.perf_counter() - t0
    out = tuple(_stage_result(engine, episode, setting, label_order, plan, res, seconds,
                              engine.stats.encoder_passes - passes0,
                              bank if keep_bank and k == len(stages) - 1 else None, memory_policy)
                for k, res in enumerate(stages))
    return CorrectionRun(out, tuple(tuple(r) for r in checked))


def _prepare(episode: Episode, setting: str, order: str, plan: Plan | None, supports):
    """(setting, plan, order label, supports) of a correction run, checked."""
    setting = normalize_setting(setting)
    if not setting.endswith("FQ"):
        raise ValueError(f"corrections need a propagation: setting {setting} segments each slice alone; "
                         "use S1SFQ or 3SFQ.")
    if plan is None:
        (plan,) = build_plans(setting, chunks=[int(c) for c in episode.chunks],
                              support_chunks=[s.chunk for s in episode.supports], npart=episode.npart, order=order)
        label_order = order
    elif not plan.store_predictions or sorted(plan.query_order) != list(range(episode.n_slices)):
        raise ValueError("plan: corrections need a plan whose predictions join memory and that segments every "
                         "query slice once (fq_plan, split_plan or custom_plan).")
    else:
        label_order = "custom"
    if supports is not None and label_order != "custom":
        raise ValueError("supports: give them with the plan whose support frames index them.")
    sups = episode.supports if supports is None else tuple(supports)
    return setting, plan, label_order, sups


def _encode(engine: Engine, plan: Plan, episode: Episode, sups) -> None:
    engine.encode_all([sups[i].image for _, i in plan.support_frames], desc="encode supports")
    engine.encode_all(list(episode.images), desc="encode queries")


def _stage_result(engine, episode, setting, label_order, plan, res, seconds, passes, bank, memory_policy):
    return EpisodeResult(
        case_id=episode.case_id, label=episode.label, label_name=episode.label_name, setting=setting, order=label_order,
        slices=sorted(res, key=lambda r: r.position), provenance=engine.model.provenance(), seconds=seconds,
        encoder_passes=passes, plans=[plan], banks=None if bank is None else [bank],
        memory_policy=strategy_name(policy_or_sam2(memory_policy)))


class CorrectionSession:
    """Correction rounds one at a time, each costing one propagation; undo restores the saved state.

    Parameters are those of :func:`segment_with_corrections` (without ``rounds``); the
    propagation before any round runs when the session is made. :meth:`apply` runs a round on
    the state the last round left (a copy: a round that fails leaves the session unchanged),
    :meth:`undo` drops the last round and goes back to the state saved before it, without any
    SAM2 step. ``stages`` and ``rounds`` (and :attr:`run`) are bit-equal to
    :func:`segment_with_corrections` with the same rounds.

    Examples
    --------
    >>> session = CorrectionSession(engine, episode, "S1SFQ")           # doctest: +SKIP
    >>> session.apply([Correction(12, points=((120, 130, 1),))])        # doctest: +SKIP
    >>> session.undo()                                                  # doctest: +SKIP
    """

    def __init__(self, engine: Engine, episode: Episode, setting: str, *, order: str = "middle",
                 plan: Plan | None = None, supports=None, memory_policy=None, rounds=()) -> None:
        self.setting, self.plan, self._label_order, sups = _prepare(episode, setting, order, plan, supports)
        self.engine, self.episode, self.memory_policy = engine, episode, memory_policy
        t0 = time.perf_counter()
        passes0 = engine.stats.encoder_passes
        _encode(engine, self.plan, episode, sups)
        state = _RoundState(engine, self.plan, episode, sups, policy_or_sam2(memory_policy))
        (res,) = engine.drive([state.propagate()], total=len(self.plan.steps), desc=f"{self.setting} propagate")
        self._states = [state]
        self.stages: list[EpisodeResult] = [self._result(res, t0, passes0, state)]
        self.rounds: list[tuple[Correction, ...]] = []
        for rnd in rounds:
            self.apply(rnd)

    def _result(self, res, t0: float, passes0: int, state: _RoundState) -> EpisodeResult:
        bank = state.bank
        return _stage_result(self.engine, self.episode, self.setting, self._label_order, self.plan, res,
                             time.perf_counter() - t0, self.engine.stats.encoder_passes - passes0,
                             MemoryBank(bank.num_frames, dict(bank.cond), dict(bank.non_cond)), self.memory_policy)

    def apply(self, corrections: Sequence[Correction]) -> EpisodeResult:
        """One round: ``corrections`` (distinct slices), then the propagation; returns the new stage."""
        (rnd,) = check_rounds([corrections], z=self.episode.z, shape=self.episode.images.shape[1:])
        t0 = time.perf_counter()
        passes0 = self.engine.stats.encoder_passes
        state = self._states[-1].copy()
        (res,) = self.engine.drive([state.round(rnd)], total=len(self.plan.steps) + len(rnd),
                                   desc=f"{self.setting} round {len(self.rounds) + 1}")
        stage = self._result(res, t0, passes0, state)
        self._states.append(state)
        self.stages.append(stage)
        self.rounds.append(tuple(rnd))
        return stage

    def undo(self) -> EpisodeResult:
        """Drop the last round: the state saved before it, at once (no SAM2 step); returns the stage now."""
        if not self.rounds:
            raise ValueError("no round to undo.")
        self._states.pop()
        self.stages.pop()
        self.rounds.pop()
        return self.stages[-1]

    @property
    def final(self) -> EpisodeResult:
        return self.stages[-1]

    @property
    def run(self) -> CorrectionRun:
        """The stages and rounds as a :class:`CorrectionRun` (what :func:`segment_with_corrections` returns)."""
        return CorrectionRun(tuple(self.stages), tuple(self.rounds))

    def __repr__(self) -> str:
        return (f"CorrectionSession({self.episode.case_id}/{self.episode.label_name}, {self.setting}-"
                f"{self._label_order}, {len(self.rounds)} rounds)")
