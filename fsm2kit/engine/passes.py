"""Refinement passes (after RevSAM2, arXiv 2409.04298v2): score pass 1, promote, propagate again.

A plan whose predictions join memory (the FQ settings) runs its propagation (pass 1). Every query
slice's prediction is then scored (:class:`SliceScores`):

* SAM2's object score (logit) and predicted IoU of the slice's mask;
* **support consistency**: the slice and its predicted mask become the only conditioning memory
  (mask prompt -> SAM2's memory encoder, as a support is) and SAM2 predicts the support slice
  from it; the Dice of that prediction against the support's known mask. With several supports
  (3SFQ) the supports of the slice's chunk are predicted (all supports when no chunk matches)
  and their Dice averaged. An empty prediction scores 0 (it cannot be a mask prompt).

A refinement rule (the contract :class:`Refinement`; built-ins and registry in
:mod:`fsm2kit.strategies.refinement`) picks the slices to promote from the scores. Promoted
slices enter the bank as conditioning memories (their predicted mask through the mask-prompt
path, :meth:`Engine.support_memory <fsm2kit.engine.engine.Engine.support_memory>`; the entry
is marked ``promoted``), and the setting's propagation runs again over the same bank: each
non-promoted slice is re-tracked and its memory replaced, memories of pass 1 persisting until
replaced (as SAM2's video predictor after ``add_new_mask``); a promoted slice keeps its output.
Passes repeat up to the rule's ``passes``; a pass that promotes nothing ends the refinement
(nothing new to condition on), so a rule that never promotes gives pass 1 unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..protocol.metrics import dice
from .memory import MemoryBank, check_selection, policy_or_sam2, sam2_memory_policy
from .plans import Plan
from .results import SliceResult
from .tracking import TrackRequest

__all__ = ["SliceScores", "Refinement", "refinement_passes", "refine_job"]


@dataclass(frozen=True)
class SliceScores:
    """How good a query slice's prediction looks (the evidence a refinement rule promotes on).

    Attributes
    ----------
    object_score : float
        SAM2's object-score logit of the prediction.
    iou : float
        SAM2's predicted IoU of the prediction.
    consistency : float
        Dice of the support predicted from this slice's mask alone against the support's mask
        (0 for an empty prediction).
    """

    object_score: float
    iou: float
    consistency: float

    @property
    def score(self) -> float:
        """One number in [0, 1]: ``sigmoid(object_score) * clip(iou, 0, 1) * consistency``."""
        s = self.object_score
        sig = 1.0 / (1.0 + math.exp(-s)) if s > -60 else 0.0
        return float(sig * min(max(self.iou, 0.0), 1.0) * self.consistency)


@runtime_checkable
class Refinement(Protocol):
    """What the engine asks of a refinement rule.

    ``passes`` is the number of propagations (1: no refinement). ``promote(scores)`` gets the
    :class:`SliceScores` of the candidate slices (non-empty predictions not promoted before), in
    processing order, and returns the indices (into ``scores``) to promote.
    """

    passes: int

    def promote(self, scores: Sequence[SliceScores]) -> Sequence[int]: ...


def refinement_passes(refinement: object) -> int:
    """Propagations a refinement asks for (None: 1)."""
    return 1 if refinement is None else int(getattr(refinement, "passes", 1))


def _consistency(engine, image: np.ndarray, mask: np.ndarray, index: int, z: int, supports):
    """Support consistency of one slice (a sub-job: yields the support predictions' requests)."""
    if not mask.any():
        return 0.0
    entry = engine.support_memory((image, mask), index=index).entry
    entry = replace(entry, kind="query", z=z, promoted=False)
    values = []
    for s in supports:
        bank = MemoryBank(2)
        bank.add(0, entry)
        sel = bank.select(1, reverse=False, settings=engine.settings)
        out = yield TrackRequest(s.image, sel, bank, False, s.chunk, s.z, role="consistency")
        values.append(dice(out.logits > 0, np.asarray(s.mask, bool), empty=1.0))
    return float(np.mean(values))


def refine_job(engine, plan: Plan, queries: Sequence[np.ndarray], supports, *, refinement: Refinement,
               z: Sequence[int] | None = None, chunks: Sequence[int] | None = None, plan_index: int = 0,
               memory_policy=None):
    """One plan with refinement passes, as a job for :meth:`Engine.drive` (returns (results, bank)).

    The results are those of the last pass run, in processing order, each carrying the scores
    that decided the last promotion (``SliceResult.scores``) and whether it was promoted
    (``promoted``); ``SliceResult.refine_pass`` is the pass that produced its output. See the
    module docstring.
    """
    if not plan.store_predictions:
        raise ValueError("refinement passes need a propagation whose predictions join memory (S1SFQ, 3SFQ); "
                         "1S1Q and 3S1Q segment each slice alone.")
    passes = refinement_passes(refinement)
    policy = policy_or_sam2(memory_policy)
    bank = MemoryBank(plan.num_frames)
    used = []
    for frame_idx, s in plan.support_frames:
        bank.add(frame_idx, engine.support_memory(supports[s], index=s).entry)
        used.append(s)
    kept: dict[int, SliceResult] = {}  # promoted frame -> its output (kept in later passes)
    scores: dict[int, SliceScores] = {}
    results: list[SliceResult] = []
    for p in range(passes):
        results = []
        for k, step in enumerate(plan.steps):
            if step.frame_idx in kept:
                results.append(replace(kept[step.frame_idx], step=k))
                continue
            q = plan.frames[step.frame_idx].index
            zq = int(z[q]) if z is not None else q
            sel = policy(bank, step.frame_idx, reverse=step.reverse, settings=engine.settings)
            if policy is not sam2_memory_policy:
                check_selection(sel, bank, engine.settings)
            out = yield TrackRequest(queries[q], sel, bank, plan.store_predictions, q, zq)
            if out.memory is not None:
                bank.add(step.frame_idx, out.memory)
            results.append(SliceResult(q, zq, out.logits, out.object_score, out.iou, plan_index, k, sel,
                                       refine_pass=p + 1))
        if p == passes - 1:
            break
        cands = []
        for r, step in zip(results, plan.steps):
            if step.frame_idx in kept:
                continue
            q = r.position
            mine = [supports[s] for s in dict.fromkeys(used)
                    if chunks is None or supports[s].chunk == int(chunks[q])] or [supports[s] for s in dict.fromkeys(used)]
            pred = r.prediction
            c = yield from _consistency(engine, queries[q], pred, q, r.z, mine)
            scores[step.frame_idx] = SliceScores(float(r.object_score), float(r.iou), c)
            if pred.any():
                cands.append(step.frame_idx)
        chosen = sorted({int(i) for i in refinement.promote([scores[f] for f in cands])})
        bad = [i for i in chosen if not 0 <= i < len(cands)]
        if bad:
            raise ValueError(f"refinement {refinement!r} promoted indices {bad} of {len(cands)} candidates.")
        if not chosen:
            break
        by_frame = {step.frame_idx: r for r, step in zip(results, plan.steps)}
        for i in chosen:
            f = cands[i]
            r = by_frame[f]
            entry = engine.support_memory((queries[r.position], r.prediction), index=r.position).entry
            bank.add(f, replace(entry, kind="query", index=r.position, z=r.z, iou=r.iou, promoted=True))
            kept[f] = replace(r, promoted=True)
    out = []
    for r, step in zip(results, plan.steps):
        s = scores.get(step.frame_idx)
        out.append(r if s is None else replace(r, scores=s))
    return out, bank
