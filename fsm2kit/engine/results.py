"""What the engine returns: per-slice and per-episode results, and its counters."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .memory import MemoryBank, MemorySelection
from .plans import Plan

__all__ = ["SliceResult", "EpisodeResult", "EngineStats"]


@dataclass(frozen=True, eq=False)
class SliceResult:
    """The prediction for one query slice.

    ``logits`` are at the slice's input resolution; the prediction is ``logits > 0``.
    ``step`` is the processing position within its plan, ``selection`` the memories it used.
    With refinement passes (:mod:`fsm2kit.engine.passes`): ``scores`` (the scores that decided
    the last promotion), ``promoted`` and ``refine_pass`` (the pass that produced the output).
    """

    position: int
    z: int
    logits: np.ndarray
    object_score: float
    iou: float
    plan_index: int
    step: int
    selection: MemorySelection
    scores: object = None  # SliceScores (fsm2kit.engine.passes) when refinement scored the slice
    promoted: bool = False
    refine_pass: int = 1

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
    refinement: str = "none"

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
                "refinement": self.refinement,
                "z": s.z,
                "step": s.step,
                "plan": s.plan_index,
                "object_score": s.object_score,
                "iou_pred": s.iou,
                "n_memories": len(s.selection.spatial),
                "n_pointers": len(s.selection.pointers),
                "pred_px": int(s.prediction.sum()),
            }
            if self.refinement != "none":  # refinement passes: the scores and what was promoted
                sc = s.scores
                row.update(score_object=np.nan if sc is None else sc.object_score,
                           score_iou=np.nan if sc is None else sc.iou,
                           score_consistency=np.nan if sc is None else sc.consistency,
                           score=np.nan if sc is None else sc.score,
                           promoted=bool(s.promoted), refine_pass=int(s.refine_pass))
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
