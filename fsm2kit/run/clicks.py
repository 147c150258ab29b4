"""The simulated-click benchmark: how many clicks reach a target Dice (NoC@target).

``fsm2kit run --simulate-clicks K [--click-target 0.9]`` (``ExperimentConfig(simulate_clicks=K)``)
corrects each episode of an FQ setting with simulated clicks, one per correction round, the way
SAM2's interactive evaluation places them:

1. find the slice and region of largest error: the 8-connected components of the false
   negatives and of the false positives of every query slice, the largest by area (ties: a
   missed region before a false one, then the lower z, then the first in raster order);
2. click at the point of that region farthest from its boundary (Euclidean distance transform,
   the slice border counting as boundary; ties: first in raster order): positive for a missed
   region, negative for a false one;
3. re-propagate through the existing correction rounds
   (:func:`fsm2kit.engine.corrections.corrections_job`: SAM2's refinement on the clicked slice,
   which becomes a conditioning memory, then the same propagation again). Clicks on a slice
   clicked before are given together with the earlier ones (SAM2 accumulates a frame's points).

It stops when the episode's 3D Dice (over its scored slices, on the scored masks: after the
largest-component post-processing when that is on) reaches the target, or after K clicks.
NoC@target is the number of clicks it took (0 when the propagation alone reaches it; K + 1
when it is never reached). Everything is deterministic: the same inputs give the same clicks.

The clicks are a prompt file (:mod:`fsm2kit.io.prompts`) that ``--prompts`` replays to the same
logits; the run folder keeps it (``clicks.json``) with ``clicks.csv`` (Dice after each click,
time per round, NoC).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..engine.corrections import Correction, corrections_job
from ..engine.memory import policy_or_sam2
from ..engine.plans import build_plans, normalize_setting
from ..engine.results import EpisodeResult
from ..protocol.metrics import dice
from ..records.naming import strategy_name

__all__ = ["Click", "ClickEpisode", "next_click", "simulate_clicks", "clicks_prompt_json"]


@dataclass(frozen=True)
class Click:
    """One simulated click: slice ``z``, pixel (``x`` column, ``y`` row) as stored, and its label."""

    z: int
    x: int
    y: int
    positive: bool
    area: int  # pixels of the error region clicked

    def __repr__(self) -> str:
        return f"Click(z={self.z}, x={self.x}, y={self.y}, {'+' if self.positive else '-'}, region {self.area} px)"


def next_click(pred: np.ndarray, target: np.ndarray, z: Sequence[int]) -> Click | None:
    """The click on the largest error region of a stack of slices (see the module docstring).

    Parameters
    ----------
    pred, target : ndarray, (M, H, W) bool
        Predicted and ground-truth masks of the query slices.
    z : sequence of int
        The slices' z.

    Returns
    -------
    Click or None
        None when there is no error left.
    """
    from scipy import ndimage

    p = np.asarray(pred, dtype=bool)
    t = np.asarray(target, dtype=bool)
    if p.shape != t.shape or p.ndim != 3 or len(z) != p.shape[0]:
        raise ValueError(f"next_click: pred {p.shape} and target {t.shape} must be (M, H, W) with M = len(z) = {len(z)}.")
    eight = np.ones((3, 3), dtype=bool)
    best = None  # (-area, kind, i, label, region)
    for i in range(p.shape[0]):
        for kind, err in ((0, t[i] & ~p[i]), (1, p[i] & ~t[i])):  # missed first, then false
            if not err.any():
                continue
            lab, n = ndimage.label(err, structure=eight)
            areas = np.bincount(lab.ravel())[1:]
            k = int(np.argmax(areas))  # the first largest component
            key = (-int(areas[k]), kind, i)
            if best is None or key < best[0]:
                best = (key, lab == k + 1)
    if best is None:
        return None
    (neg_area, kind, i), region = best
    dist = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(dist)), dist.shape)
    return Click(z=int(z[i]), x=int(x), y=int(y), positive=kind == 0, area=-neg_area)


@dataclass(eq=False)
class ClickEpisode:
    """One episode of the click benchmark.

    Attributes
    ----------
    result : EpisodeResult
        The final stage (after the last click).
    clicks : list of Click
    dice : list of float
        The episode's Dice before any click (index 0) and after each click.
    seconds : list of float
        Time of the propagation (index 0) and of each click's round (correction and re-propagation).
    target : float
    max_clicks : int
    """

    result: EpisodeResult
    clicks: list
    dice: list
    seconds: list
    target: float
    max_clicks: int

    @property
    def noc(self) -> int:
        """Clicks to reach the target Dice (0: the propagation alone; ``max_clicks + 1``: never)."""
        for k, d in enumerate(self.dice):
            if d >= self.target:
                return k
        return self.max_clicks + 1

    def rounds(self) -> list[list[Correction]]:
        """The clicks as correction rounds (one click each, a slice's earlier clicks included)."""
        out, on = [], {}
        for c in self.clicks:
            on.setdefault(c.z, []).append((c.x, c.y, 1 if c.positive else 0))
            out.append([Correction(c.z, points=tuple(on[c.z]))])
        return out

    def __repr__(self) -> str:
        r = self.result
        return (f"ClickEpisode({r.case_id}/{r.label_name}, {len(self.clicks)} clicks, Dice "
                f"{' -> '.join(f'{d:.3f}' for d in self.dice)}, NoC@{self.target:g}={self.noc})")


def _tap(job, latest: dict):
    """Pass a corrections job's steps through, keeping each query slice's latest logits."""
    try:
        request = next(job)
        while True:
            out = yield request
            latest[request.index] = out.logits
            request = job.send(out)
    except StopIteration as stop:
        return stop.value


def simulate_clicks(engine, inputs, e: int, setting: str, *, max_clicks: int, target: float = 0.9,
                    memory_policy=None, score: Callable[[np.ndarray], np.ndarray] | None = None) -> ClickEpisode:
    """The click benchmark on episode ``e`` of a run's inputs (see the module docstring).

    Parameters
    ----------
    engine : Engine
    inputs : RunInputs
        From :func:`~fsm2kit.run.support_plans.prepare_runs` (a built-in order goes by name, a
        user's ordering or views by its plan and supports, as :func:`~fsm2kit.run.prompting.segment_corrected`).
    setting : {"S1SFQ", "3SFQ"}
    max_clicks : int
        K: at most this many clicks.
    target : float
        Stop when the episode's Dice reaches it.
    memory_policy : MemoryPolicy, optional
    score : callable, optional
        The scored masks of a (M, H, W) prediction (default: the prediction itself), e.g. the
        largest 3D component.
    """
    setting = normalize_setting(setting)
    if not setting.endswith("FQ"):
        raise ValueError(f"simulated clicks correct a propagation: setting {setting} segments each slice alone; "
                         "use S1SFQ or 3SFQ.")
    ep = inputs.episodes[e]
    if ep.labels is None:
        raise ValueError(f"{ep.case_id}/{ep.label_name}: simulated clicks need the ground truth.")
    if "plans" in inputs.kwargs:
        plans = list(inputs.kwargs["plans"][e])
        if len(plans) != 1:
            raise ValueError(f"clicks need one propagation per episode; the ordering gives {len(plans)} plans.")
        plan, sups, order = plans[0], tuple(inputs.supports[e]), inputs.order
    else:
        order = inputs.kwargs["order"]
        (plan,) = build_plans(setting, chunks=[int(c) for c in ep.chunks],
                              support_chunks=[s.chunk for s in ep.supports], npart=ep.npart, order=order)
        sups = ep.supports
    score = score or (lambda m: m)
    labels = np.asarray(ep.labels, dtype=bool)
    pos = {i: i for i in range(ep.n_slices)}
    latest: dict = {}
    clicks: list[Click] = []
    dices: list[float] = []
    seconds: list[float] = []
    on: dict[int, list] = {}
    t0 = time.perf_counter()
    passes0 = engine.stats.encoder_passes

    class _Rounds:  # rounds made one at a time, from the latest stage's masks
        def __iter__(self):
            t = t0
            while True:
                masks = score(np.stack([latest[pos[i]] for i in range(ep.n_slices)]) > 0)
                dices.append(dice(masks, labels, empty=1.0))
                now = time.perf_counter()
                seconds.append(now - t)
                t = now
                if dices[-1] >= target or len(clicks) >= max_clicks:
                    return
                c = next_click(masks, labels, ep.z)
                if c is None:
                    return
                clicks.append(c)
                on.setdefault(c.z, []).append((c.x, c.y, 1 if c.positive else 0))
                yield [Correction(c.z, points=tuple(on[c.z]))]

    engine.encode_all([sups[i].image for _, i in plan.support_frames], desc="encode supports")
    engine.encode_all(list(ep.images), desc="encode queries")
    job = corrections_job(engine, plan, ep, _Rounds(), supports=sups, memory_policy=memory_policy)
    ((stages, bank),) = engine.drive([_tap(job, latest)], total=None, desc=f"{setting} clicks")
    final = EpisodeResult(
        case_id=ep.case_id, label=ep.label, label_name=ep.label_name, setting=setting,
        order=order if "plans" not in inputs.kwargs else inputs.order,
        slices=sorted(stages[-1], key=lambda r: r.position), provenance=engine.model.provenance(),
        seconds=time.perf_counter() - t0, encoder_passes=engine.stats.encoder_passes - passes0, plans=[plan],
        memory_policy=strategy_name(policy_or_sam2(memory_policy)))
    return ClickEpisode(final, clicks, dices, seconds, float(target), int(max_clicks))


def clicks_prompt_json(episodes: Sequence[ClickEpisode]) -> list:
    """The clicks of several episodes as one prompt file's content (``case`` and ``label`` on each
    correction; round r holds each episode's r-th click), replayable by ``--prompts``."""
    from ..io.prompts import prompts_json

    per = [prompts_json(c.rounds(), case=str(c.result.case_id), label=c.result.label_name) for c in episodes]
    n = max((len(p) for p in per), default=0)
    return [[r[k][0] for r in per if k < len(r)] for k in range(n)]
