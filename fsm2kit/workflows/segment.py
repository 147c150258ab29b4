"""Segment your own scan: one annotated support slice in, a 3D label volume in the scan's grid out.

The protocol of the paper hands the method the query organ's slice range from ground truth;
real scans come without it. :func:`segment_volume` (and ``fsm2kit segment``) therefore

1. picks the support slice(s) of each requested label (:mod:`fsm2kit.support`: ``middle``,
   ``largest``, ``protocol``, ``given`` indices, or ``similar`` by SAM2 embedding);
2. starts at the query slice at the support's relative position along z (or a given one) and
   propagates through the **whole volume**, forward then backward, in one SAM2 memory state laid
   out like the paper's "middle" order (:func:`propagation_plan`): the support frame(s) sit at
   the start slice's position;
3. decides where the organ ends from SAM2's object score: a direction stops after ``patience``
   consecutive slices whose object score is not positive (SAM2's own "object absent" test,
   ``score > 0``); slices beyond are background (:func:`should_stop`, :func:`absent_after`);
4. runs every label with the same :class:`~fsm2kit.engine.Engine`, whose content cache encodes
   each slice once for all labels; the labels' propagations run side by side
   (:func:`propagation_job`, :meth:`Engine.drive <fsm2kit.engine.Engine.drive>`), so their
   steps share SAM2 forwards (``object_batch_size``); overlaps are resolved by the highest
   logit (:func:`resolve_overlaps`);
5. with ground truth, also runs the paper's **oracle range** (propagation restricted to the
   ground-truth slice range of each label, no stopping rule) and reports the 3D Dice of both
   modes (:func:`modes_dice_table`), so the price of not knowing the range is visible.

The support slice itself. When the support image *is* the query scan (the user annotated a
slice of the scan being segmented), that slice is not re-predicted: it is SAM2's conditioning
frame, and SAM2 "echoes" the mask prompt as the frame's output. SAM2's echo goes through two
resizes (to the model's input size and back from its 1/4-resolution mask), so it is not pixel
exact at the scan's resolution (measured on the bundled CT at 256 px: 24 of ~1500 pixels
differ); fsm2kit writes the support mask itself on that slice, as +-10 logits (SAM2's
mask-as-output values), so the output reproduces the annotation exactly.

Inputs are the canonical (Z, H, W) arrays of :func:`fsm2kit.data.load_nifti` (Z inferior ->
superior), so any file orientation (RAS, LPS, oblique) works and the output mask is written
into exactly the query file's grid (shape, affine, qform/sform, orientation) by
:meth:`fsm2kit.data.Volume.mask_to_nifti`. Slice indices (``support_slices``, ``start``, and
per-slice scores in the JSON sidecar) are indices along that Z axis; the sidecar also says
which file axis that is.

CT window: ``ct_window=(lo, hi)`` (CLI ``--ct-window=-125,275``) clips the query and support
intensities before SAM2. The engine min-max normalises each slice anyway, so raw HU work; the
window only changes contrast (e.g. soft tissue instead of bone-to-air).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..core.fileio import file_sha256
from ..io.volumes import LabelVolume, Volume, array_axes_in_file, label_dtype
from ..protocol.labels import LabelMap
from ..core.episode import Support
from ..core.memory import MemoryBank
from ..core.plans import Frame, Plan, Step

__all__ = [
    "DEFAULT_PATIENCE",
    "NOT_RUN_LOGIT",
    "ECHO_LOGIT",
    "MODES",
    "OrganSpec",
    "parse_labels",
    "relative_start",
    "should_stop",
    "absent_after",
    "propagation_plan",
    "resolve_overlaps",
    "Propagation",
    "propagation_job",
    "propagate_volume",
    "OrganResult",
    "SegmentResult",
    "segment_volume",
    "check_request",
    "modes_dice_table",
    "load_scan",
    "sidecar_path",
    "check_output",
]

#: Default number of consecutive slices with a non-positive object score that end the organ.
DEFAULT_PATIENCE = 3
#: Logit of slices never run (SAM2's ``NO_OBJ_SCORE``): background for any threshold.
NOT_RUN_LOGIT = -1024.0
#: Logit magnitude of a mask used as output (SAM2's ``_use_mask_as_output``: +-10).
ECHO_LOGIT = 10.0
#: The two modes of the Dice table.
MODES = ("whole_volume", "oracle_range")


# =====================================================================================
# Labels
# =====================================================================================


@dataclass(frozen=True)
class OrganSpec:
    """One requested label: a name for people and the id in the support mask and the output."""

    name: str
    label_id: int

    def __repr__(self) -> str:
        return f"OrganSpec({self.name}={self.label_id})"


def _one_label(item: object, label_map: LabelMap | None) -> OrganSpec:
    if isinstance(item, OrganSpec):
        return item
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"A label must be an id or a name, got {item!r}.")
    if isinstance(item, (int, np.integer)):
        lid = int(item)
        name = label_map[lid] if (label_map is not None and lid in label_map.ids) else str(lid)
        return OrganSpec(name, lid)
    if not isinstance(item, str):
        raise TypeError(f"A label must be an id, a name or 'name=id', got {item!r} ({type(item).__name__}).")
    text = item.strip()
    if not text:
        raise ValueError("Empty label in the label list; write e.g. liver=6,spleen=1.")
    if "=" in text:
        name, _, num = text.partition("=")
        name, num = name.strip(), num.strip()
        if not name:
            raise ValueError(f"Label {text!r} has no name before '='; write e.g. liver=6.")
        try:
            lid = int(num)
        except ValueError:
            raise ValueError(f"Label {text!r}: {num!r} is not an integer id; write e.g. liver=6.") from None
        return OrganSpec(name, lid)
    if text.lstrip("+-").isdigit():
        return _one_label(int(text), label_map)
    if label_map is None:
        raise ValueError(
            f"Unknown label name {text!r}: there is no label map to look names up. Give the id "
            f"as {text}=<id> (e.g. --labels {text}=6), or pass a label map (--label-map SABS|CHAOST2)."
        )
    try:
        lid = label_map.resolve(text)
    except ValueError as exc:
        raise ValueError(f"Unknown label name {text!r}: {exc} Or give the id as {text}=<id>.") from None
    return OrganSpec(text, lid)


def parse_labels(
    spec: object = None,
    *,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
    present: Sequence[int] | None = None,
) -> tuple[OrganSpec, ...]:
    """The labels to segment, as :class:`OrganSpec` s (name, id).

    Parameters
    ----------
    spec : str, int, OrganSpec, mapping, sequence or None
        ``"liver=6,spleen=1"`` (name=id pairs; the id is the value in the support mask and in
        the output), ``"6"`` / ``6`` (an id), ``"liver"`` (a name, looked up in ``label_map``),
        ``{"liver": 6}``, or a sequence of any of these. None: every id in ``present``.
    label_map : LabelMap, dataset name or {id: name}, optional, keyword-only
        For names without ids, and to name bare ids.
    present : sequence of int, optional, keyword-only
        Non-zero ids of the support mask (used when ``spec`` is None).

    Raises
    ------
    ValueError
        Unknown names, malformed items, background (0), ids beyond uint16, duplicates.
    """
    lm = LabelMap.coerce(label_map) if not isinstance(label_map, LabelMap) else label_map
    if spec is None:
        if present is None:
            raise ValueError("No labels given and no support mask ids to take them from.")
        ids = sorted({int(i) for i in present if int(i) != 0})
        if not ids:
            raise ValueError("The support mask is empty (all zero): draw the organ on a support slice.")
        items: list = ids
    elif isinstance(spec, str):
        items = [t for t in spec.split(",")]
    elif isinstance(spec, Mapping):
        items = [OrganSpec(str(k), int(v)) for k, v in spec.items()]
    elif isinstance(spec, (OrganSpec, int, np.integer)):
        items = [spec]
    else:
        items = list(spec)  # type: ignore[call-overload]
    out = [_one_label(it, lm) for it in items]
    for o in out:
        if o.label_id == 0:
            raise ValueError(f"Label {o.name!r} has id 0, the background; give the organ's id in the support mask.")
        if not 0 < o.label_id <= 65535:
            raise ValueError(f"Label {o.name!r} has id {o.label_id}; ids must be in 1..65535 (uint16 output).")
    names = [o.name.lower() for o in out]
    dup_n = sorted({n for n in names if names.count(n) > 1})
    dup_i = sorted({o.label_id for o in out if [p.label_id for p in out].count(o.label_id) > 1})
    if dup_n or dup_i:
        raise ValueError(f"Labels repeat (names {dup_n}, ids {dup_i}); list each organ once.")
    return tuple(out)


# =====================================================================================
# Pure pieces: start, stopping rule, layout, overlaps
# =====================================================================================


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


def _absent(score: float) -> bool:
    return not (score > 0)  # SAM2: the object is present iff its score logit is > 0


def should_stop(scores: Sequence[float], patience: int | None) -> bool:
    """True when the last ``patience`` object scores are all non-positive (organ ended).

    ``patience`` None or 0 never stops (propagate through everything).
    """
    if not patience:
        return False
    if patience < 0:
        raise ValueError(f"patience must be >= 0 or None, got {patience}.")
    return len(scores) >= patience and all(_absent(s) for s in scores[-patience:])


def absent_after(scores: Sequence[float], patience: int | None) -> int | None:
    """Where a direction stops: the first index of the first run of ``patience`` absent scores.

    ``scores`` are object scores in processing order. With the stopping rule the direction
    processes indices up to ``i + patience - 1`` and everything from ``i`` on is background
    (SAM2 already predicts nothing where the score is not positive). None: no such run.
    """
    if not patience:
        return None
    run = 0
    for k, s in enumerate(scores):
        run = run + 1 if _absent(s) else 0
        if run == patience:
            return k - patience + 1
    return None


def propagation_plan(query_z: Sequence[int], start: int, n_supports: int = 1) -> Plan:
    """The whole-volume layout: queries below ``start``, the supports, queries from ``start`` on.

    Frames ``[q < start] + supports + [q >= start]``; steps forward from the first frame after
    the supports to the end, then backward (``reverse=True``) from the frame before them to the
    first, all in one memory state. This is :func:`fsm2kit.ordering.fq_plan` 's "middle" order
    with the split at ``start`` instead of ``M // 2``. Query frame ``i`` is ``query_z[i]``.
    """
    zs = [int(z) for z in query_z]
    if any(b <= a for a, b in zip(zs, zs[1:])):
        raise ValueError("query_z must be strictly ascending.")
    if n_supports < 1:
        raise ValueError("A propagation needs at least one support frame.")
    half = sum(1 for z in zs if z < start)
    sup = tuple(Frame("support", i) for i in range(n_supports))
    queries = [Frame("query", i) for i in range(len(zs))]
    frames = tuple(queries[:half]) + sup + tuple(queries[half:])
    forward = tuple(Step(i) for i in range(half + n_supports, len(zs) + n_supports))
    backward = tuple(Step(i, reverse=True) for i in range(half - 1, -1, -1))
    return Plan(frames, forward + backward, True)


def resolve_overlaps(logits: Sequence[np.ndarray], label_ids: Sequence[int]) -> np.ndarray:
    """One label volume from per-label logits: the label with the highest logit, if positive.

    Parameters
    ----------
    logits : sequence of ndarray, same shape
        One logit volume per label (prediction = logit > 0).
    label_ids : sequence of int
        The id written for each.

    Returns
    -------
    ndarray
        ``label_ids[argmax]`` where the largest logit is > 0, else 0; on exact ties the label
        listed first wins. dtype uint8 (ids <= 255) or uint16.
    """
    if len(logits) != len(label_ids) or not len(logits):
        raise ValueError(f"Need one logit volume per label id ({len(logits)} volumes, {len(label_ids)} ids).")
    stack = np.stack([np.asarray(x, dtype=np.float32) for x in logits])
    ids = np.asarray([int(i) for i in label_ids])
    dt = label_dtype(int(ids.max()))
    best = stack.argmax(axis=0)
    top = np.take_along_axis(stack, best[None], axis=0)[0]
    return np.where(top > 0, ids[best], 0).astype(dt)


# =====================================================================================
# Propagation through a volume
# =====================================================================================


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
    patience : int or None
    support_z : tuple
        The support slices (their z in the support volume).
    plan : Plan
        The frame layout.
    seconds : float
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
    patience: int | None
    support_z: tuple
    plan: Plan = field(repr=False)
    seconds: float = 0.0

    @property
    def prediction(self) -> np.ndarray:
        return self.logits > 0

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
            f"stops fwd={self.stop_forward} bwd={self.stop_backward}, patience={self.patience}, "
            f"organ {'z %d..%d' % ext if ext else 'absent'}, echo {list(self.echo_z)})"
        )


def _echo_slices(images: np.ndarray, supports: Sequence[Support], lo: int, hi: int) -> dict[int, int]:
    """{query z: support index} for query slices bit-identical to a support image."""
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
    patience: int | None = DEFAULT_PATIENCE,
    z_range: tuple[int, int] | None = None,
    progress: bool | None = None,
    desc: str = "propagate",
) -> Propagation:
    """Propagate support mask(s) through a volume with SAM2, stopping where the organ ends.

    Parameters
    ----------
    engine : fsm2kit.engine.Engine
        Supplies ``support_memory``, ``drive``, ``settings`` (its cache encodes each slice once).
    images, supports, start, patience, z_range
        As in :func:`propagation_job`.
    progress : bool, optional, keyword-only
        Progress bar (default: the engine's setting).

    Returns
    -------
    Propagation
    """
    job = propagation_job(engine, images, supports, start=start, patience=patience, z_range=z_range)
    return engine.drive([job], progress=progress, desc=desc)[0]


def propagation_job(
    engine,
    images: np.ndarray,
    supports: Sequence[Support],
    *,
    start: int,
    patience: int | None = DEFAULT_PATIENCE,
    z_range: tuple[int, int] | None = None,
):
    """A whole-volume propagation as a tracking job for :meth:`Engine.drive <fsm2kit.engine.Engine.drive>`.

    Arguments are checked at once; the returned generator runs the steps (its return value is
    the :class:`Propagation`). Several such jobs driven together (the organs of one scan)
    share SAM2 forwards; :func:`propagate_volume` runs one.

    Parameters
    ----------
    engine : fsm2kit.engine.Engine
        Supplies ``support_memory``, ``track``, ``settings`` (its cache encodes each slice once).
    images : ndarray, (Z, H, W)
        Query slices.
    supports : sequence of Support
        Support slices and masks; all become conditioning memories at the start position.
    start : int
        The first query slice to segment (forward from it, then backward from ``start - 1``).
    patience : int or None, keyword-only
        Stop a direction after this many consecutive non-positive object scores
        (:func:`should_stop`); None or 0: run to the end of ``z_range``.
    z_range : (lo, hi), optional, keyword-only
        Only visit ``lo..hi`` (inclusive); the oracle-range mode. Default: the whole volume.

    Returns
    -------
    generator
        Yields :class:`~fsm2kit.engine.TrackRequest` s, returns a :class:`Propagation`.
    """
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
    if patience is not None and patience < 0:
        raise ValueError(f"patience must be >= 0 or None, got {patience}.")
    return _propagation_steps(engine, imgs, supports, int(start), patience, lo, hi)


def _propagation_steps(engine, imgs: np.ndarray, supports: Sequence[Support], start: int,
                       patience: int | None, lo: int, hi: int):
    from ..core.engine import TrackRequest

    t0 = time.perf_counter()
    n = imgs.shape[0]
    echo = _echo_slices(imgs, supports, lo, hi)
    query_z = [z for z in range(lo, hi + 1) if z not in echo]

    logits = np.full(imgs.shape, NOT_RUN_LOGIT, dtype=np.float32)
    scores = np.full(n, np.nan)
    processed = np.zeros(n, dtype=bool)
    echo_exact = []
    mems = [engine.support_memory(s, index=i) for i, s in enumerate(supports)]
    for z, i in sorted(echo.items()):
        m = np.asarray(supports[i].mask, dtype=bool)
        logits[z] = np.where(m, ECHO_LOGIT, -ECHO_LOGIT)
        scores[z] = mems[i].entry.object_score
        processed[z] = True
        echo_exact.append(bool(np.array_equal(mems[i].logits > 0, m)))

    plan = propagation_plan(query_z, int(start), len(supports)) if query_z else None
    order: list[int] = []
    stops: dict[bool, int | None] = {False: None, True: None}
    if plan is not None:
        bank = MemoryBank(plan.num_frames)
        for frame_idx, si in plan.support_frames:
            bank.add(frame_idx, mems[si].entry)
        run_scores: dict[bool, list[float]] = {False: [], True: []}
        stopped = {False: False, True: False}
        for step in plan.steps:
            if stopped[step.reverse]:
                continue
            q = plan.frames[step.frame_idx].index
            z = query_z[q]
            sel = bank.select(step.frame_idx, reverse=step.reverse, settings=engine.settings)
            out = yield TrackRequest(imgs[z], sel, bank, True, q, z)
            if out.memory is not None:
                bank.add(step.frame_idx, out.memory)
            logits[z] = out.logits
            scores[z] = out.object_score
            processed[z] = True
            order.append(z)
            run_scores[step.reverse].append(out.object_score)
            if should_stop(run_scores[step.reverse], patience):
                stopped[step.reverse] = True
                stops[step.reverse] = z
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
        patience=patience,
        support_z=tuple(s.z for s in supports),
        plan=plan,
        seconds=time.perf_counter() - t0,
    )


# =====================================================================================
# Whole segmentation: several labels, support selection, overlaps, oracle mode
# =====================================================================================


@dataclass(eq=False)
class OrganResult:
    """One label of a :class:`SegmentResult`: how its support was chosen and its propagation."""

    organ: OrganSpec
    mode: str
    support_z: tuple[int, ...]
    support_method: str
    propagation: Propagation
    similarity: object | None = None

    @property
    def name(self) -> str:
        return self.organ.name

    @property
    def label_id(self) -> int:
        return self.organ.label_id

    @property
    def logits(self) -> np.ndarray:
        return self.propagation.logits

    @property
    def object_scores(self) -> np.ndarray:
        return self.propagation.object_scores

    @property
    def prediction(self) -> np.ndarray:
        return self.propagation.prediction

    def __repr__(self) -> str:
        p = self.propagation
        ext = p.extent()
        return (
            f"OrganResult({self.organ.name}={self.organ.label_id}, {self.mode}, support z "
            f"{list(self.support_z)} ({self.support_method}), start {p.start}, "
            f"ran {int(p.processed.sum())} slices, organ {'z %d..%d' % ext if ext else 'absent'})"
        )


@dataclass(eq=False)
class SegmentResult:
    """A segmented scan: the label volume, per-label results, provenance.

    Attributes
    ----------
    labels : ndarray, (Z, H, W) uint8 or uint16
        The label volume in the query's canonical array layout (whole-volume mode).
    organs : tuple of OrganResult
        Whole-volume results, one per requested label, in request order.
    oracle : tuple of OrganResult or None
        Oracle-range results (only with ground truth; a label absent from the ground truth has
        none).
    oracle_labels : ndarray or None
        The oracle-range label volume.
    dice : pandas.DataFrame or None
        :func:`modes_dice_table` of both modes (with ground truth).
    query : Volume
        The query; :meth:`save` writes into its source grid.
    provenance : dict
        Model (weights: sha256 or "random weights"), settings, versions.
    seconds : float
    encoder_passes : int
        Image-encoder passes this call made (slices already cached cost none).
    """

    labels: np.ndarray
    organs: tuple[OrganResult, ...]
    query: Volume
    provenance: dict
    seconds: float
    encoder_passes: int
    oracle: tuple[OrganResult, ...] | None = None
    oracle_labels: np.ndarray | None = None
    dice: object | None = None
    settings: dict = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        return bool(self.provenance.get("random_weights"))

    def organ(self, label: int | str) -> OrganResult:
        """The whole-volume result of a label, by id or name."""
        for o in self.organs:
            if o.label_id == label or (isinstance(label, str) and o.name.lower() == label.lower()):
                return o
        raise KeyError(f"No label {label!r}; segmented: {[f'{o.name}={o.label_id}' for o in self.organs]}.")

    def to_frame(self):
        """Per-slice table: z, label, mode, processed, object score, predicted pixels."""
        import pandas as pd

        rows = []
        for mode, group in (("whole_volume", self.organs), ("oracle_range", self.oracle or ())):
            for o in group:
                p = o.propagation
                for z in range(p.logits.shape[0]):
                    rows.append({
                        "z": z, "label": o.label_id, "label_name": o.name, "mode": mode,
                        "processed": bool(p.processed[z]),
                        "object_score": float(p.object_scores[z]),
                        "echo": z in p.echo_z,
                        "pred_px": int((p.logits[z] > 0).sum()),
                    })
        df = pd.DataFrame(rows)
        df["model"] = self.provenance.get("model")
        df["weights"] = self.provenance.get("weights")
        return df

    def sidecar(self) -> dict:
        """The JSON sidecar's content (provenance, settings, per-label per-slice scores)."""
        from ..core.version import __version__
        from ..workflows.runner import RANDOM_NOTE

        axes = array_axes_in_file(self.query)

        def organ_dict(o: OrganResult) -> dict:
            p = o.propagation
            ext = p.extent()
            return {
                "name": o.name,
                "id": o.label_id,
                "mode": o.mode,
                "support_z": list(o.support_z),
                "support_method": o.support_method,
                "start": p.start,
                "z_range": list(p.z_range),
                "patience": p.patience,
                "stop_forward_z": p.stop_forward,
                "stop_backward_z": p.stop_backward,
                "processed_z": [int(z) for z in np.flatnonzero(p.processed)],
                "predicted_extent_z": list(ext) if ext else None,
                "echo_z": list(p.echo_z),
                "echo_sam2_exact": list(p.echo_exact),
                "object_scores": [None if not np.isfinite(s) else round(float(s), 5) for s in p.object_scores],
                "voxels": int((self.labels == o.label_id).sum()) if o.mode == "whole_volume" else None,
            }

        out = {
            "tool": "fsm2kit segment",
            "fsm2kit_version": __version__,
            "weights": self.provenance.get("weights"),
            "random_weights": self.random_weights,
            "note": RANDOM_NOTE if self.random_weights else "",
            "model": self.provenance,
            "settings": self.settings,
            "grid": {
                "shape": [int(n) for n in self.query.mask_to_nifti(np.zeros(self.query.shape, np.uint8)).shape],
                "affine": np.asarray(self.query.affine).round(8).tolist(),
                "axcodes": list(self.query.orientation or ()),
                "dtype": str(self.labels.dtype),
            },
            "z_axis": {
                "meaning": "z = index along axis 0 of the (Z, H, W) array (load_nifti: inferior -> superior)",
                "file_axis": axes[0][0],
                "reversed_in_file": axes[0][1],
            },
            "labels": [organ_dict(o) for o in self.organs],
            "oracle": [organ_dict(o) for o in self.oracle] if self.oracle is not None else None,
            "dice": self.dice.to_dict(orient="records") if self.dice is not None else None,  # type: ignore[attr-defined]
            "encoder_passes": self.encoder_passes,
            "seconds": round(self.seconds, 3),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        return out

    def save(self, path: str | os.PathLike, *, extra: dict | None = None) -> tuple[Path, Path]:
        """Write the label volume into the query file's grid and the JSON sidecar, atomically.

        Both files are written to temporary names in the target folder first and renamed only
        when both are complete, so a failure leaves neither half-written.

        Returns
        -------
        (Path, Path)
            The NIfTI file and the sidecar (:func:`sidecar_path`).
        """
        path = Path(path)
        side = sidecar_path(path)
        check_output(path)
        meta = self.sidecar()
        meta["output"] = str(path)
        if extra:
            meta.update(extra)
        img = self.query.mask_to_nifti(self.labels, dtype=self.labels.dtype)
        dice_csv = None
        if self.dice is not None:
            dice_csv = side.with_name(side.name[: -len(".json")] + ".dice.csv")
            meta["dice_csv"] = str(dice_csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        import nibabel as nib

        temps: list[tuple[str, Path]] = []
        try:
            tmp_img = _tmp_in(path)
            temps.append((tmp_img, path))
            nib.save(img, tmp_img)
            meta["output_sha256"] = file_sha256(Path(tmp_img))
            tmp_side = _tmp_in(side)
            temps.append((tmp_side, side))
            Path(tmp_side).write_text(json.dumps(_finite(meta), indent=2, default=_json_default, allow_nan=False))
            if dice_csv is not None:
                tmp_csv = _tmp_in(dice_csv)
                temps.append((tmp_csv, dice_csv))
                self.dice.to_csv(tmp_csv, index=False)  # type: ignore[attr-defined]
            for tmp, final in temps:
                os.chmod(tmp, 0o666 & ~_umask())
            for tmp, final in temps:
                os.replace(tmp, final)
        except BaseException:
            for tmp, _ in temps:
                Path(tmp).unlink(missing_ok=True)
            raise
        return path, side

    def __repr__(self) -> str:
        names = ", ".join(f"{o.name}={o.label_id}" for o in self.organs)
        mode = " + oracle range" if self.oracle is not None else ""
        return (
            f"SegmentResult({self.query.case_id!r}, shape {self.labels.shape}, labels [{names}]{mode}, "
            f"{self.encoder_passes} encoder passes, {self.seconds:.1f} s, {self.provenance.get('weights')})"
        )


def _finite(o):
    """NaN / inf -> None, recursively (JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    return o


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def _tmp_in(final: Path) -> str:
    suffix = ".tmp" + ("".join(final.suffixes[-2:]) if final.name.endswith(".nii.gz") else final.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=suffix, dir=final.parent)
    os.close(fd)
    return tmp


def sidecar_path(path: str | os.PathLike) -> Path:
    """``pred.nii.gz`` -> ``pred.json`` (the provenance sidecar next to a mask)."""
    p = Path(path)
    for suf in (".nii.gz", ".nii"):
        if p.name.endswith(suf):
            return p.with_name(p.name[: -len(suf)] + ".json")
    raise ValueError(f"The output must be a NIfTI file ending in .nii.gz or .nii, got {p.name!r}.")


def check_output(path: Path) -> None:
    """Fail early (before any model runs) when ``path`` cannot be written."""
    sidecar_path(path)
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"Output {path} is a folder; give a file name such as {path / 'pred.nii.gz'}.")
    anc = path.parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise PermissionError(f"Cannot write {path}: {anc} is a file, not a folder. Choose another output path.")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise PermissionError(
            f"Cannot write {path}: the folder {anc} is not writable. Choose another output folder or "
            "fix its permissions."
        )


def modes_dice_table(
    predictions: Mapping[str, np.ndarray],
    truth: np.ndarray,
    organs: Sequence[OrganSpec],
    *,
    case_id: str = "",
    provenance: dict | None = None,
):
    """3D Dice of label volumes per label and mode (e.g. whole volume vs oracle range).

    Parameters
    ----------
    predictions : mapping of mode -> label volume (Z, H, W)
        E.g. ``{"whole_volume": labels, "oracle_range": oracle_labels}``.
    truth : ndarray, (Z, H, W)
        Ground-truth label volume with the same ids.
    organs : sequence of OrganSpec
    case_id : str, keyword-only
    provenance : dict, optional, keyword-only
        Adds ``model`` and ``weights`` columns (say "random weights" next to every number).

    Returns
    -------
    pandas.DataFrame
        One row per (label, mode): ``dice`` (2TP / (2TP + FP + FN) over all voxels of the
        scan), ``tp``, ``fp``, ``fn``, the predicted and true slice extents.
    """
    import pandas as pd

    from ..protocol.metrics import dice_counts

    t = np.asarray(truth)
    rows = []
    for o in organs:
        tm = t == o.label_id
        tz = np.flatnonzero(tm.any(axis=(1, 2)))
        for mode, pred in predictions.items():
            if pred is None:
                continue
            pm = np.asarray(pred) == o.label_id
            c = dice_counts(pm, tm)
            pz = np.flatnonzero(pm.any(axis=(1, 2)))
            rows.append({
                "case_id": case_id, "label": o.label_id, "label_name": o.name, "mode": mode,
                "metric": "volume", "dice": c.dice(), "tp": c.tp, "fp": c.fp, "fn": c.fn,
                "pred_z_first": int(pz[0]) if pz.size else -1, "pred_z_last": int(pz[-1]) if pz.size else -1,
                "true_z_first": int(tz[0]) if tz.size else -1, "true_z_last": int(tz[-1]) if tz.size else -1,
            })
    df = pd.DataFrame(rows)
    if provenance is not None and len(df):
        df["model"] = provenance.get("model")
        df["weights"] = provenance.get("weights")
    return df


def _as_volume(x, what: str) -> Volume:
    if isinstance(x, Volume):
        return x
    a = np.asarray(x)
    if a.ndim != 3:
        hint = " For a single slice use image[None]." if a.ndim == 2 else ""
        raise ValueError(f"{what}: expected a 3D (Z, H, W) volume, got shape {a.shape}.{hint}")
    return Volume(a, case_id=what.replace(" ", "_"))


def _as_label_array(mask, like: Volume, what: str) -> tuple[np.ndarray, LabelMap | None]:
    lm = None
    if isinstance(mask, LabelVolume):
        lm = mask.label_map
        m = mask.array
    elif isinstance(mask, Volume):
        m = mask.array
    else:
        m = np.asarray(mask)
    if m.ndim != 3:
        raise ValueError(f"{what}: expected a (Z, H, W) mask, got shape {m.shape}.")
    if m.shape != like.shape:
        raise ValueError(
            f"{what} has shape {m.shape} but the support image has {like.shape}: the mask must lie on "
            "the support image's voxel grid. Draw it on that image, or resample it first."
        )
    if m.dtype == bool:
        return m.astype(np.int32), lm
    if not np.issubdtype(m.dtype, np.integer):
        if not np.isfinite(m).all():
            raise ValueError(f"{what} contains NaN or inf values; it is not a mask.")
        frac = m != np.round(m)
        if frac.any():
            raise ValueError(
                f"{what} is not binary / a label map: {int(frac.sum())} voxels hold non-integer values "
                f"such as {np.unique(m[frac])[:4].tolist()}. Threshold probabilities first (p > 0.5)."
            )
    if m.size and m.min() < 0:
        raise ValueError(f"{what} has negative values; label ids are >= 0.")
    return m.astype(np.int64).astype(np.int32), lm


def _clip(a: np.ndarray, window: tuple[float, float] | None) -> np.ndarray:
    if window is None:
        return a
    lo, hi = float(window[0]), float(window[1])
    if not lo < hi:
        raise ValueError(f"ct_window needs lo < hi, got {window}.")
    return np.clip(a, lo, hi).astype(np.float32)


def _prompt_survives(mask2d: np.ndarray, image_size: int) -> bool:
    from ..core.engine import prompt_mask

    return bool(prompt_mask(mask2d, image_size).any())


def _choose_support(
    engine,
    organ: OrganSpec,
    lab: np.ndarray,
    sup: np.ndarray,
    query: np.ndarray,
    method: str,
    given,
    start: int | None,
    npart: int,
):
    from ..strategies import selectors as S

    mask3d = _organ_mask(lab, organ)
    sim = None
    if given is not None:
        zs, how = S.given_slices(mask3d, _given_for(given, organ)), "given"
    elif method == "similar":
        cand = S.organ_slices(mask3d)
        zq, zs_ = query.shape[0], sup.shape[0]
        if start is not None:
            choice = S.most_similar_per_query(engine, query, sup, mask3d, queries=[int(start)])
            zs = [choice.support_z[0]]
            sim = choice
        else:
            targets = [relative_start(int(c), zs_, zq) for c in cand]
            m = S.similarity_matrix(engine, [query[t] for t in targets], [sup[int(c)] for c in cand])
            diag, mid = np.diag(m), int(cand[cand.size // 2])
            # most similar to the query slice at its relative position; near-ties -> nearest the middle
            best = max(range(cand.size), key=lambda i: (round(float(diag[i]), 6), -abs(int(cand[i]) - mid)))
            zs = [int(cand[best])]
            sim = S.SimilarityChoice("relative_position", tuple(targets), tuple(int(c) for c in cand),
                                     tuple(int(c) for c in cand), m)
        how = "similar"
    else:
        zs, how = S.select_support_slices(mask3d, method, npart=npart), method
    for z in zs:
        _check_survives(organ, mask3d[z], z, engine.image_size)
    return [int(z) for z in zs], how, sim, mask3d


def check_request(
    organs: Sequence[OrganSpec],
    support_labels: np.ndarray,
    *,
    support_select: str = "middle",
    support_slices=None,
    image_size: int | None = None,
    npart: int = 3,
) -> dict[str, list[int] | None]:
    """Validate what can be validated without a model, and return the support slices.

    Checks that every label is drawn in the support mask, that given support slices contain
    it, and (with ``image_size``) that each mask survives the resize to SAM2's input. Used by
    ``fsm2kit segment`` before loading SAM2, so bad input fails in a second.

    Returns
    -------
    dict
        ``{label name: support slices}`` (None for ``"similar"``, chosen with the model).
    """
    from ..strategies import selectors as S

    lab = np.asarray(support_labels)
    out: dict[str, list[int] | None] = {}
    for organ in organs:
        mask3d = _organ_mask(lab, organ)
        if support_slices is not None:
            zs = S.given_slices(mask3d, _given_for(support_slices, organ))
        elif str(support_select).lower() == "similar":
            out[organ.name] = None
            continue
        else:
            zs = S.select_support_slices(mask3d, support_select, npart=npart)
        if image_size is not None:
            for z in zs:
                _check_survives(organ, mask3d[z], z, image_size)
        out[organ.name] = [int(z) for z in zs]
    return out


def _organ_mask(lab: np.ndarray, organ: OrganSpec) -> np.ndarray:
    mask3d = lab == organ.label_id
    if not mask3d.any():
        present = sorted(int(v) for v in np.unique(lab) if v != 0)
        raise ValueError(
            f"The support mask is empty for label {organ.name!r} (id {organ.label_id}): no voxel has "
            f"that value. Ids present in the support mask: {present or 'none (all zero)'}. Check "
            "--labels (name=id, the id as stored in the mask)."
        )
    return mask3d


def _given_for(given, organ: OrganSpec):
    if isinstance(given, Mapping):
        key = next((k for k in (organ.name, organ.label_id, str(organ.label_id)) if k in given), None)
        if key is None:
            raise ValueError(f"support_slices has no entry for label {organ.name!r}; keys: {list(given)}.")
        return given[key]
    return given


def _check_survives(organ: OrganSpec, mask2d: np.ndarray, z: int, image_size: int) -> None:
    if not _prompt_survives(mask2d, image_size):
        raise ValueError(
            f"The support mask of {organ.name!r} on slice {z} ({int(mask2d.sum())} px) vanishes "
            f"when resized to SAM2's {image_size}-px input; choose a slice where the organ "
            "is larger (e.g. support_select='largest')."
        )


def segment_volume(
    query: Volume | np.ndarray,
    support_image: Volume | np.ndarray,
    support_mask: np.ndarray | LabelVolume | None = None,
    *,
    engine,
    labels: object = None,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
    support_select: str = "middle",
    support_slices: int | Sequence[int] | Mapping | None = None,
    start: int | None = None,
    patience: int | None = DEFAULT_PATIENCE,
    ct_window: tuple[float, float] | None = None,
    ground_truth: np.ndarray | LabelVolume | None = None,
    npart: int = 3,
    progress: bool | None = None,
) -> SegmentResult:
    """Segment labels of a query scan from annotated support slices, through the whole volume.

    Parameters
    ----------
    query : Volume or ndarray (Z, H, W)
        The scan to segment (a Volume from :func:`fsm2kit.data.load_nifti` writes back into
        its file's grid).
    support_image : Volume or ndarray (Zs, Hs, Ws)
        The annotated scan (another patient, or the query itself).
    support_mask : ndarray, LabelVolume or None
        Label ids (or a binary mask) on ``support_image``'s grid; None: ``support_image.labels``.
    engine : fsm2kit.engine.Engine or fsm2kit.models.SAM2Model, keyword-only
        One engine for all labels: each slice is encoded once.
    labels : keyword-only
        What to segment (:func:`parse_labels`): ``"liver=6,spleen=1"``, ids, names (with a
        label map), or None for every id in the support mask.
    label_map : keyword-only
        Names of ids (default: the support mask's, if a LabelVolume).
    support_select : {"middle", "largest", "protocol", "similar"}, keyword-only
        How to choose each label's support slice(s) (:mod:`fsm2kit.support`). ``"protocol"``
        uses the ``npart`` chunk centres together; ``"similar"`` the organ slice whose SAM2
        embedding best matches the query slice at its relative position (or at ``start``).
    support_slices : int, sequence or {label: int or sequence}, keyword-only
        Support slice index(es) given by hand (overrides ``support_select``).
    start : int, optional, keyword-only
        First query slice; default the support's relative position along z
        (:func:`relative_start` of the middle support slice), which for a support taken from
        the query itself is its own slice.
    patience : int or None, keyword-only
        Stopping rule (:func:`should_stop`); None: the whole volume regardless of scores.
    ct_window : (lo, hi), optional, keyword-only
        Clip intensities of query and support before SAM2 (e.g. (-125, 275) HU).
    ground_truth : ndarray or LabelVolume, optional, keyword-only
        Query labels with the same ids: adds the oracle-range mode and :func:`modes_dice_table`.
    npart : int, keyword-only
        Chunks of ``support_select="protocol"``.
    progress : bool, optional, keyword-only

    Returns
    -------
    SegmentResult
    """
    from ..core.engine import Engine
    from ..core.models import SAM2Model

    t0 = time.perf_counter()
    if isinstance(engine, SAM2Model):
        engine = Engine(engine, progress=True if progress is None else progress)
    qvol = _as_volume(query, "query")
    svol = _as_volume(support_image, "support image")
    if support_mask is None:
        if svol.labels is None:
            raise ValueError("No support mask: pass support_mask=... (or a support Volume with labels).")
        support_mask = svol.labels
    lab, lm_mask = _as_label_array(support_mask, svol, "support mask")
    lm = LabelMap.coerce(label_map) if label_map is not None else lm_mask
    organs = parse_labels(labels, label_map=lm, present=np.unique(lab).tolist())
    method = str(support_select).strip().lower()
    if support_slices is None and method not in ("middle", "largest", "protocol", "similar"):
        raise ValueError(
            f"Unknown support_select {support_select!r}; expected middle, largest, protocol or similar "
            "(or give support_slices=...)."
        )
    qarr = _clip(qvol.array, ct_window)
    sarr = _clip(svol.array, ct_window)
    zq, zs_n = qarr.shape[0], sarr.shape[0]
    if start is not None and not 0 <= int(start) < zq:
        raise ValueError(f"start slice {start} is outside the query's {zq} slices (0..{zq - 1}).")
    gt = None
    if ground_truth is not None:
        gt_arr = ground_truth.array if isinstance(ground_truth, LabelVolume) else np.asarray(ground_truth)
        if gt_arr.shape != qvol.shape:
            raise ValueError(f"ground_truth has shape {gt_arr.shape}, the query {qvol.shape}; they must share a grid.")
        gt = gt_arr
    passes0 = engine.stats.encoder_passes

    # every label's propagations (whole volume, and the oracle range with ground truth) run
    # side by side: their steps share SAM2 forwards (engine.object_batch_size)
    jobs, made = [], []
    for organ in organs:
        zs, how, sim, mask3d = _choose_support(engine, organ, lab, sarr, qarr, method, support_slices, start, npart)
        supports = [Support(image=sarr[z], mask=mask3d[z], chunk=0, z=z, case_id=svol.case_id) for z in zs]
        s0 = int(start) if start is not None else relative_start(sorted(zs)[len(zs) // 2], zs_n, zq)
        jobs.append(propagation_job(engine, qarr, supports, start=s0, patience=patience))
        made.append((organ, "whole_volume", tuple(zs), how, sim))
        if gt is not None:
            tz = np.flatnonzero((gt == organ.label_id).any(axis=(1, 2)))
            if tz.size:
                lo, hi = int(tz[0]), int(tz[-1])
                jobs.append(propagation_job(engine, qarr, supports, start=min(max(s0, lo), hi), patience=None,
                                            z_range=(lo, hi)))
                made.append((organ, "oracle_range", tuple(zs), how, sim))
    names = ", ".join(o.name for o in organs)
    props = engine.drive(jobs, progress=progress, desc=names if len(names) <= 40 else f"{len(organs)} labels")
    results, oracle = [], []
    for (organ, mode, zs, how, sim), prop in zip(made, props):
        (results if mode == "whole_volume" else oracle).append(OrganResult(organ, mode, zs, how, prop, sim))

    def combine(group: list[OrganResult]) -> np.ndarray:
        if not group:
            return np.zeros(qvol.shape, dtype=label_dtype(max(o.label_id for o in organs)))
        out = resolve_overlaps([o.logits for o in group], [o.label_id for o in group])
        out = out.astype(label_dtype(max(o.label_id for o in organs)))
        for o in group:  # the user's annotation wins on its own slice
            for z in o.propagation.echo_z:
                out[z][o.propagation.logits[z] > 0] = o.label_id
        return out

    label_vol = combine(results)
    oracle_vol = combine(oracle) if gt is not None else None
    prov = dict(engine.model.provenance())
    settings = {
        "support_select": "given" if support_slices is not None else method,
        "support_slices": support_slices if not isinstance(support_slices, Mapping) else {str(k): v for k, v in support_slices.items()},
        "start": start,
        "patience": patience,
        "ct_window": list(ct_window) if ct_window is not None else None,
        "npart": npart,
        "labels": {o.name: o.label_id for o in organs},
        "query_shape_zhw": list(qvol.shape),
        "support_shape_zhw": list(svol.shape),
        "stopping_rule": "a direction stops after `patience` consecutive slices with object score <= 0",
        "layout": "queries below start + supports + queries from start; forward, then backward (middle order)",
    }
    res = SegmentResult(
        labels=label_vol,
        organs=tuple(results),
        query=qvol,
        provenance=prov,
        seconds=time.perf_counter() - t0,
        encoder_passes=engine.stats.encoder_passes - passes0,
        oracle=tuple(oracle) if gt is not None else None,
        oracle_labels=oracle_vol,
        settings=settings,
    )
    if gt is not None:
        res.dice = modes_dice_table({"whole_volume": label_vol, "oracle_range": oracle_vol}, gt, organs,
                              case_id=qvol.case_id, provenance=prov)
    return res


# =====================================================================================
# Files and CLI
# =====================================================================================


def load_scan(path: str | os.PathLike, *, modality: str = "", case_id: str | None = None) -> Volume:
    """A scan from a NIfTI file or a folder of DICOM slices (:mod:`fsm2kit.dicom`)."""
    from ..io.nifti import load_nifti

    p = Path(path)
    if p.is_dir():
        from ..io.dicom import read_dicom_series

        series = read_dicom_series(p)
        mod = modality or (series.modality if series.modality in ("CT", "MR") else "")
        vol = series.to_volume(case_id=case_id if case_id is not None else p.name)
        if mod and vol.modality != mod:
            vol = dataclasses.replace(vol, modality=mod)
        return vol
    return load_nifti(p, modality=modality, case_id=case_id)


