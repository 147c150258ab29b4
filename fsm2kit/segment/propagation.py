"""Propagating support masks through a whole volume: start, stopping rule, layout, the tracking job.

A propagation is one of the engine's plans (:func:`propagation_plan`: FS-MedSAM2's "middle"
order with the split at the start slice) run by :meth:`Engine.plan_job
<fsm2kit.engine.engine.Engine.plan_job>`, the same machinery as the paper's settings (support
memories, the memory policy, one memory bank), with a stopping rule on top: after every step of a
direction the rule (a strategy of :data:`fsm2kit.strategies.STOPPING_RULES`, default
``patience:3``: stop after 3 consecutive slices whose object score is not positive, SAM2's own
"object absent" test ``score > 0``) is called with that direction's object scores so far and
says whether it stops; nothing else stops a direction. Steps of a stopped direction run no
forward and add nothing to the bank. Query slices identical to a support image are not
re-predicted: they "echo" the support mask (:data:`ECHO_LOGIT`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..engine.tracking import TrackOutput
from ..protocol.episodes import Support
from ..engine.memory import MemoryPolicy, policy_or_sam2
from ..records.naming import strategy_name
from ..engine.plans import Frame, Plan, split_plan
from ..strategies.stopping import NOSTOP, stopping_rule

__all__ = [
    "NOT_RUN_LOGIT",
    "ECHO_LOGIT",
    "relative_start",
    "propagation_plan",
    "Propagation",
    "propagation_job",
    "propagate_volume",
    "corrected_propagation_job",
    "refined_propagation_job",
    "echo_slices",
]

#: Logit of slices never run (SAM2's ``NO_OBJ_SCORE``): background for any threshold.
NOT_RUN_LOGIT = -1024.0
#: Logit magnitude of a mask used as output (SAM2's ``_use_mask_as_output``: +-10).
ECHO_LOGIT = 10.0

#: Sent back to the plan job for a step of a stopped direction: no forward ran, nothing joins the bank.
_SKIPPED = TrackOutput(None, None, float("nan"), float("nan"), None, None)


def relative_start(support_z: float, n_support: int, n_query: int) -> int:
    """The query slice at the support slice's relative position along z.

    ``round(support_z / (n_support - 1) * (n_query - 1))`` (halves round up); the middle
    query slice when the support volume has a single slice.
    """
    if n_support < 1 or n_query < 1:
        raise ValueError(f"Volumes need at least one slice (support {n_support}, query {n_query}).")
    if not 0 <= support_z <= n_support - 1:
        raise ValueError(f"support_z={support_z} outside the support's 0..{n_support - 1}.")
    if n_support == 1:
        return (n_query - 1) // 2
    return int(math.floor(support_z / (n_support - 1) * (n_query - 1) + 0.5))


def propagation_plan(query_z: Sequence[int], start: int, n_supports: int = 1) -> Plan:
    """The whole-volume layout: queries below ``start``, the supports, queries from ``start`` on.

    Frames ``[q < start] + supports + [q >= start]``; steps forward from the first frame after
    the supports to the end, then backward (``reverse=True``) from the frame before them to the
    first, all in one memory state. This is :func:`fsm2kit.engine.plans.fq_plan` 's "middle" order
    with the split at ``start`` instead of ``M // 2``. Query frame ``i`` is ``query_z[i]``.
    """
    zs = [int(z) for z in query_z]
    if any(b <= a for a, b in zip(zs, zs[1:])):
        raise ValueError("query_z must be strictly ascending.")
    if n_supports < 1:
        raise ValueError("A propagation needs at least one support frame.")
    return split_plan(len(zs), range(n_supports), sum(1 for z in zs if z < start))


@dataclass(eq=False)
class Propagation:
    """One label propagated through a volume (or through a z range of it).

    Attributes
    ----------
    logits : ndarray, (Z, H, W) float32
        SAM2's logits at the query resolution; :data:`NOT_RUN_LOGIT` on slices not run;
        +-:data:`ECHO_LOGIT` on echo slices (the support mask itself).
    object_scores : ndarray, (Z,) float64
        SAM2's object score per slice (NaN where not run; +10 on echo slices).
    processed : ndarray, (Z,) bool
        Slices that got a prediction (tracked, or echo).
    order : tuple of int
        z of the tracked slices in processing order.
    start : int
        The start slice.
    z_range : (int, int)
        The slice range the propagation was allowed to visit (inclusive).
    echo_z : tuple of int
        Query slices identical to a support image (their output is that support's mask).
    echo_exact : tuple of bool
        Per echo slice: whether SAM2's own echo (``> 0`` at the scan's resolution) equals the
        mask exactly (informative; the mask is written either way).
    stop_forward, stop_backward : int or None
        The last z run in each direction when the stopping rule ended it; None when it ran to
        the range's end.
    stop : str
        Name of the stopping rule the directions used (``"patience:3"``; ``"none"``: every slice).
    support_z : tuple
        The support slices (their z in the support volume).
    plan : Plan
        The frame layout.
    seconds : float
    memory_policy : str
        Name of the memory policy the steps used (``"sam2"``: SAM2's rule).
    refinement : str
        Refinement passes that ran (``"none"``; :func:`refined_propagation_job`).
    promoted_z : tuple of int
        Slices a refinement pass promoted to conditioning memories.
    """

    logits: np.ndarray
    object_scores: np.ndarray
    processed: np.ndarray
    order: tuple[int, ...]
    start: int
    z_range: tuple[int, int]
    echo_z: tuple[int, ...]
    echo_exact: tuple[bool, ...]
    stop_forward: int | None
    stop_backward: int | None
    stop: str
    support_z: tuple
    plan: Plan = field(repr=False)
    seconds: float = 0.0
    memory_policy: str = "sam2"
    refinement: str = "none"
    promoted_z: tuple[int, ...] = ()

    @property
    def prediction(self) -> np.ndarray:
        return self.logits > 0

    @property
    def patience(self) -> int | None:
        """The N of a ``patience:N`` rule; None for any other rule (``none``, a user's)."""
        kind, _, arg = self.stop.partition(":")
        return int(arg) if kind == "patience" and arg.isdigit() else None

    def extent(self) -> tuple[int, int] | None:
        """(first, last) z with a predicted voxel, or None."""
        z = np.flatnonzero(self.prediction.any(axis=(1, 2)))
        return (int(z[0]), int(z[-1])) if z.size else None

    def __repr__(self) -> str:
        ran = np.flatnonzero(self.processed)
        span = f"z {ran[0]}..{ran[-1]}" if ran.size else "nothing"
        ext = self.extent()
        return (
            f"Propagation(start={self.start}, ran {span} ({ran.size} slices), "
            f"stops fwd={self.stop_forward} bwd={self.stop_backward}, stop={self.stop}, "
            f"organ {'z %d..%d' % ext if ext else 'absent'}, echo {list(self.echo_z)})"
        )


def echo_slices(images: np.ndarray, supports: Sequence[Support], lo: int, hi: int) -> dict[int, int]:
    """{query z: support index} for query slices bit-identical to a support image (in ``lo..hi``):
    the annotated support slice itself when the support image is the query scan."""
    out: dict[int, int] = {}
    for i, s in enumerate(supports):
        if s.image.shape != images.shape[1:]:
            continue
        cand = range(lo, hi + 1)
        if s.z is not None and lo <= s.z <= hi:
            cand = [s.z] + [z for z in cand if z != s.z]  # try its own index first
        for z in cand:
            if z not in out and np.array_equal(images[z], s.image):
                out[z] = i
                break
    return out



def propagate_volume(
    engine,
    images: np.ndarray,
    supports: Sequence[Support],
    *,
    start: int,
    stop: object = None,
    patience: int | None = ...,  # type: ignore[assignment]
    z_range: tuple[int, int] | None = None,
    memory_policy: MemoryPolicy | None = None,
    progress: bool | None = None,
    desc: str = "propagate",
) -> Propagation:
    """Propagate support mask(s) through a volume with SAM2, stopping where the organ ends.

    Parameters
    ----------
    engine : fsm2kit.engine.engine.Engine
        Supplies ``plan_job``, ``drive`` and ``support_memory`` (its cache encodes each slice once).
    images, supports, start, stop, patience, z_range, memory_policy
        As in :func:`propagation_job`.
    progress : bool, optional, keyword-only
        Progress bar (default: the engine's setting).

    Returns
    -------
    Propagation
    """
    job = propagation_job(engine, images, supports, start=start, stop=stop, patience=patience, z_range=z_range,
                          memory_policy=memory_policy)
    return engine.drive([job], progress=progress, desc=desc)[0]


def _checked_volume(images, supports, start: int, z_range) -> tuple[np.ndarray, int, int]:
    """The (Z, H, W) volume and the range ``lo..hi`` a propagation visits, checked with its start."""
    imgs = np.asarray(images)
    if imgs.ndim != 3:
        raise ValueError(f"images: expected a (Z, H, W) volume, got shape {imgs.shape}.")
    if not supports:
        raise ValueError("propagate_volume needs at least one support.")
    n = imgs.shape[0]
    lo, hi = (0, n - 1) if z_range is None else (int(z_range[0]), int(z_range[1]))
    if not 0 <= lo <= hi < n:
        raise ValueError(f"z_range {z_range} is not inside the volume's 0..{n - 1}.")
    if not lo <= int(start) <= hi:
        raise ValueError(f"start slice {start} is outside the range {lo}..{hi}.")
    return imgs, lo, hi


def propagation_job(
    engine,
    images: np.ndarray,
    supports: Sequence[Support],
    *,
    start: int,
    stop: object = None,
    patience: int | None = ...,  # type: ignore[assignment]
    z_range: tuple[int, int] | None = None,
    memory_policy: MemoryPolicy | None = None,
):
    """A whole-volume propagation as a tracking job for :meth:`Engine.drive <fsm2kit.engine.engine.Engine.drive>`.

    Arguments are checked at once; the returned generator runs the steps of
    :func:`propagation_plan` through :meth:`Engine.plan_job <fsm2kit.engine.engine.Engine.plan_job>`
    with the stopping rule on top (its return value is the :class:`Propagation`). Several
    such jobs driven together (the organs of one scan) share SAM2 forwards;
    :func:`propagate_volume` runs one.

    Parameters
    ----------
    engine : fsm2kit.engine.engine.Engine
        Supplies ``plan_job`` and ``support_memory`` (its cache encodes each slice once).
    images : ndarray, (Z, H, W)
        Query slices.
    supports : sequence of Support
        Support slices and masks; all become conditioning memories at the start position.
    start : int
        The first query slice to segment (forward from it, then backward from ``start - 1``).
    stop : str or stopping rule, optional, keyword-only
        When a direction stops: a spec of :data:`fsm2kit.strategies.STOPPING_RULES`
        (``"patience:N"``, ``"none"``, a user's) or a rule ``rule(scores so far) -> bool``;
        default ``patience:3``. ``"none"``: run to the end of ``z_range``.
    patience : int or None, keyword-only
        The older spelling of ``stop``: N is ``"patience:N"``, None or 0 is ``"none"`` (not
        together with ``stop``).
    z_range : (lo, hi), optional, keyword-only
        Only visit ``lo..hi`` (inclusive); the oracle-range mode. Default: the whole volume.
    memory_policy : MemoryPolicy, optional, keyword-only
        Which memories each step attends to (default SAM2's rule), as in :meth:`Engine.segment`.

    Returns
    -------
    generator
        Yields :class:`~fsm2kit.engine.engine.TrackRequest` s, returns a :class:`Propagation`.
    """
    imgs, lo, hi = _checked_volume(images, supports, start, z_range)
    rule = stopping_rule(stop, patience)
    return _propagation_steps(engine, imgs, supports, int(start), rule, lo, hi, memory_policy)


def refined_propagation_job(engine, images: np.ndarray, supports: Sequence[Support], refinement, *, start: int,
                            z_range: tuple[int, int] | None = None, memory_policy: MemoryPolicy | None = None):
    """A whole-volume propagation with refinement passes (:mod:`fsm2kit.engine.passes`), a job for ``Engine.drive``.

    The layout is :func:`propagation_plan` 's; as corrections, it runs without a stopping rule
    (every pass tracks every slice of the range). Support consistency predicts every support (and
    view) from a slice's mask. Returns the last pass's :class:`Propagation` (``promoted_z``: the
    slices promoted to conditioning memories). Arguments are checked at once.
    """
    t0 = time.perf_counter()
    imgs, lo, hi = _checked_volume(images, supports, start, z_range)
    return _refined_steps(engine, imgs, supports, refinement, int(start), lo, hi, memory_policy, t0)


def _refined_steps(engine, imgs, supports, refinement, start, lo, hi, memory_policy, t0):
    echo = echo_slices(imgs, supports, lo, hi)
    query_z = [z for z in range(lo, hi + 1) if z not in echo]
    logits, scores, processed, echo_exact = _echo_outputs(engine, imgs, supports, echo)
    results = []
    if query_z:
        plan = propagation_plan(query_z, start, len(supports))
        results, _ = yield from engine.plan_job(plan, [imgs[z] for z in query_z], supports, z=query_z,
                                                memory_policy=memory_policy, refinement=refinement)
    else:
        plan = Plan((Frame("support", 0),), (), True)
    final = sorted(results, key=lambda r: r.step)
    for r in final:
        logits[r.z] = r.logits
        scores[r.z] = r.object_score
        processed[r.z] = True
    return Propagation(
        logits=logits, object_scores=scores, processed=processed, order=tuple(r.z for r in final), start=start,
        z_range=(lo, hi), echo_z=tuple(sorted(echo)), echo_exact=tuple(echo_exact), stop_forward=None,
        stop_backward=None, stop=strategy_name(NOSTOP), support_z=tuple(s.z for s in supports), plan=plan,
        seconds=time.perf_counter() - t0, memory_policy=strategy_name(policy_or_sam2(memory_policy)),
        refinement=strategy_name(refinement), promoted_z=tuple(sorted(r.z for r in final if r.promoted)))


def _echo_outputs(engine, imgs: np.ndarray, supports: Sequence[Support], echo: dict[int, int]):
    """Logits, scores, processed flags with the echo slices filled, and whether SAM2's echo is exact."""
    n = imgs.shape[0]
    logits = np.full(imgs.shape, NOT_RUN_LOGIT, dtype=np.float32)
    scores = np.full(n, np.nan)
    processed = np.zeros(n, dtype=bool)
    echo_exact = []
    for z, i in sorted(echo.items()):
        mem = engine.support_memory(supports[i], index=i)
        m = np.asarray(supports[i].mask, dtype=bool)
        logits[z] = np.where(m, ECHO_LOGIT, -ECHO_LOGIT)
        scores[z] = mem.entry.object_score
        processed[z] = True
        echo_exact.append(bool(np.array_equal(mem.logits > 0, m)))
    return logits, scores, processed, echo_exact


def corrected_propagation_job(
    engine,
    images: np.ndarray,
    supports: Sequence[Support],
    rounds,
    *,
    start: int,
    z_range: tuple[int, int] | None = None,
    memory_policy: MemoryPolicy | None = None,
    case_id: str = "query",
    label: int = 1,
    label_name: str = "label",
):
    """A whole-volume propagation followed by correction rounds, as a job for ``Engine.drive``.

    The layout is :func:`propagation_plan` 's (supports at ``start``, forward then backward)
    without a stopping rule (as SAM2's predictor, every slice is tracked, in each
    re-propagation too); then per round the corrections run and the volume is propagated again
    (:func:`fsm2kit.engine.corrections.corrections_job`). ``rounds`` are rounds of
    :class:`~fsm2kit.engine.corrections.Correction` whose z are slice indices of ``images``; a
    correction on an echo slice (the annotated support slice itself) is refused. With
    ``z_range`` (the oracle-range mode) only ``lo..hi`` is visited and corrections outside it
    are left out (rounds left empty are dropped). Returns the final stage's
    :class:`Propagation` (stop ``"none"``). Arguments and corrections are checked at once.
    """
    from ..engine.corrections import check_rounds
    from ..protocol.episodes import Episode

    t0 = time.perf_counter()
    imgs, lo, hi = _checked_volume(images, supports, start, z_range)
    if z_range is not None:
        rounds = [r for r in ([c for c in rnd if lo <= c.z <= hi] for rnd in rounds) if r]
    echo = echo_slices(imgs, supports, lo, hi)
    on_echo = sorted({c.z for rnd in rounds for c in rnd} & set(echo))
    if on_echo:
        raise ValueError(f"corrections on z={on_echo}: that slice is the annotated support itself; "
                         "edit the support mask instead.")
    query_z = [z for z in range(lo, hi + 1) if z not in echo]
    episode = Episode(case_id=str(case_id), label=int(label), label_name=str(label_name), z=np.asarray(query_z),
                      images=imgs[query_z], labels=None, chunks=np.zeros(len(query_z), dtype=int),
                      supports=(supports[0],), npart=1)
    checked = check_rounds(rounds, z=episode.z, shape=imgs.shape[1:])
    plan = propagation_plan(query_z, int(start), len(supports))
    return _corrected_steps(engine, imgs, supports, echo, episode, plan, checked, memory_policy, int(start),
                            (lo, hi), t0)


def _corrected_steps(engine, imgs, supports, echo, episode, plan, checked, memory_policy, start, z_range, t0):
    from ..engine.corrections import corrections_job

    stages, _ = yield from corrections_job(engine, plan, episode, checked, supports=supports,
                                           memory_policy=memory_policy)
    logits, scores, processed, echo_exact = _echo_outputs(engine, imgs, supports, echo)
    final = sorted(stages[-1], key=lambda r: r.step)
    for r in final:
        logits[r.z] = r.logits
        scores[r.z] = r.object_score
        processed[r.z] = True
    return Propagation(
        logits=logits, object_scores=scores, processed=processed, order=tuple(r.z for r in final), start=start,
        z_range=z_range, echo_z=tuple(sorted(echo)), echo_exact=tuple(echo_exact), stop_forward=None,
        stop_backward=None, stop=strategy_name(NOSTOP), support_z=tuple(s.z for s in supports), plan=plan,
        seconds=time.perf_counter() - t0,
        memory_policy=strategy_name(policy_or_sam2(memory_policy)))


def _propagation_steps(engine, imgs: np.ndarray, supports: Sequence[Support], start: int,
                       rule, lo: int, hi: int, memory_policy: MemoryPolicy | None):
    t0 = time.perf_counter()
    echo = echo_slices(imgs, supports, lo, hi)
    query_z = [z for z in range(lo, hi + 1) if z not in echo]

    logits, scores, processed, echo_exact = _echo_outputs(engine, imgs, supports, echo)

    order: list[int] = []
    stops: dict[bool, int | None] = {False: None, True: None}
    if query_z:
        plan = propagation_plan(query_z, start, len(supports))
        job = engine.plan_job(plan, [imgs[z] for z in query_z], supports, z=query_z, memory_policy=memory_policy)
        run_scores: dict[bool, list[float]] = {False: [], True: []}
        stopped = {False: False, True: False}
        out = None
        for step in plan.steps:  # the job yields one request per step, in this order
            request = job.send(out) if out is not None else next(job)
            if stopped[step.reverse]:
                out = _SKIPPED
                continue
            out = yield request
            z = request.z
            logits[z] = out.logits
            scores[z] = out.object_score
            processed[z] = True
            order.append(z)
            run_scores[step.reverse].append(out.object_score)
            if rule(tuple(run_scores[step.reverse])):  # the stopping rule decides, nothing else
                stopped[step.reverse] = True
                stops[step.reverse] = z
        try:
            job.send(out)
        except StopIteration:
            pass
        else:  # pragma: no cover - plan_job yields exactly one request per step
            raise RuntimeError("the plan job yielded more requests than its plan has steps")
    else:
        plan = Plan((Frame("support", 0),), (), True)
    return Propagation(
        logits=logits,
        object_scores=scores,
        processed=processed,
        order=tuple(order),
        start=start,
        z_range=(lo, hi),
        echo_z=tuple(sorted(echo)),
        echo_exact=tuple(echo_exact),
        stop_forward=stops[False],
        stop_backward=stops[True],
        stop=strategy_name(rule),
        support_z=tuple(s.z for s in supports),
        plan=plan,
        seconds=time.perf_counter() - t0,
        memory_policy=strategy_name(policy_or_sam2(memory_policy)),
    )
