"""Segment your own scan: one annotated support slice in, a 3D label volume in the scan's grid out.

The protocol of the paper hands the method the query organ's slice range from ground truth;
real scans come without it. :func:`segment_volume` (and ``fsm2kit segment``) therefore

1. picks the support slice(s) of each requested label with a support selector of the registry
   (:mod:`fsm2kit.strategies.support_selectors`, :meth:`SupportSelector.volume_choice
   <fsm2kit.strategies.support_selectors.SupportSelector.volume_choice>`: ``middle``,
   ``largest``, ``protocol``, ``given`` indices, ``random:SEED``, ``similar`` by SAM2 embedding,
   or a user's);
2. starts at the query slice at the support's relative position along z (or a given one) and
   propagates through the **whole volume**, forward then backward, in one SAM2 memory state laid
   out like the paper's "middle" order (:func:`~fsm2kit.segment.propagation.propagation_plan`,
   run by the engine's plan machinery): the support frame(s) sit at the start slice's position;
3. decides where the organ ends with a stopping rule of :data:`fsm2kit.strategies.STOPPING_RULES`
   (default ``patience:3``: a direction stops after 3 consecutive slices whose object score is
   not positive, SAM2's own "object absent" test ``score > 0``; ``none``: every slice; or a
   user's); slices beyond are background (:mod:`fsm2kit.segment.propagation`);
4. runs every label with the same :class:`~fsm2kit.engine.engine.Engine`, whose content cache
   encodes each slice once for all labels; the labels' propagations run side by side
   (:meth:`Engine.drive <fsm2kit.engine.engine.Engine.drive>`), so their steps share SAM2
   forwards (``object_batch_size``); overlaps are resolved by the highest logit
   (:func:`resolve_overlaps`);
5. with ground truth, also runs the paper's **oracle range** (propagation restricted to the
   ground-truth slice range of each label, no stopping rule) and reports the 3D Dice of both
   modes (:func:`~fsm2kit.segment.segment_result.modes_dice_table`), so the price of not
   knowing the range is visible. A support slice taken from the query scan itself is left out
   of the Dice (its annotation is copied, not predicted); the table says how many slices were
   left out and why (``excluded_slices``, ``excluded_z``, ``excluded_why``).

Labels are parsed by :mod:`fsm2kit.segment.organs`; the result and its files (label volume,
JSON sidecar with the one provenance record) are :mod:`fsm2kit.segment.segment_result`.

The support slice itself. When the support image *is* the query scan (the user annotated a
slice of the scan being segmented), that slice is not re-predicted: it is SAM2's conditioning
frame, and SAM2 "echoes" the mask prompt as the frame's output. SAM2's echo goes through two
resizes (to the model's input size and back from its 1/4-resolution mask), so it is not pixel
exact at the scan's resolution (measured on the bundled CT at 256 px: 24 of ~1500 pixels
differ); fsm2kit writes the support mask itself on that slice, as +-10 logits (SAM2's
mask-as-output values), so the output reproduces the annotation exactly.

Inputs are the canonical (Z, H, W) arrays of :func:`fsm2kit.io.nifti.load_nifti` (Z inferior ->
superior), so any file orientation (RAS, LPS, oblique) works and the output mask is written
into exactly the query file's grid (shape, affine, qform/sform, orientation) by
:meth:`fsm2kit.io.volumes.Volume.mask_to_nifti`. Slice indices (``support_slices``, ``start``, and
per-slice scores in the JSON sidecar) are indices along that Z axis; the sidecar also says
which file axis that is.

CT window: ``ct_window=(lo, hi)`` (CLI ``--ct-window=-125,275``) clips the query and support
intensities before SAM2. The engine min-max normalises each slice anyway, so raw HU work; the
window only changes contrast (e.g. soft tissue instead of bone-to-air).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from typing import Sequence

import numpy as np

from ..protocol.episodes import Support
from ..engine.memory import MemoryPolicy
from ..io.volumes import LabelVolume, Volume, label_dtype
from ..protocol.labels import LabelMap
from ..records.naming import strategy_name
from ..strategies.ensembles import ENSEMBLES
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.refinement import REFINEMENTS
from ..strategies.stopping import NOSTOP, STOPPING_RULES, stopping_rule
from ..strategies.support_selectors import SUPPORT_SELECTORS, SupportSelector, VolumeInputs, given_selector
from .organs import OrganSpec, parse_labels
from .propagation import echo_slices, propagation_job, refined_propagation_job, relative_start
from .segment_result import OrganResult, SegmentResult, modes_dice_table

__all__ = ["resolve_overlaps", "check_request", "start_from_order", "segment_volume", "check_corrections_off_support",
           "constant_volume_note"]


def constant_volume_note(array: np.ndarray, what: str) -> str | None:
    """A warning when every voxel of ``array`` has one value (an all-zero export, a blank series):
    nothing can be segmented there. None otherwise."""
    a = np.asarray(array)
    if a.size and np.ptp(a) == 0:
        return (f"{what} is constant (every voxel {a.flat[0]:g}): there is no image to segment, so the masks will "
                "be empty or meaningless; check that the right file was exported.")
    return None


def start_from_order(order, n_slices: int) -> int | None:
    """The start slice of a whole-volume propagation for an ordering (None: no ordering given).

    ``at:Z`` starts at slice Z (``--start-slice Z``), ``from:P`` at ``floor(P * (Z - 1) + 0.5)``,
    ``top`` at 0 and ``middle`` at ``Z // 2`` (the query volume's Z slices are all query slices).

    Raises
    ------
    ValueError
        An ordering that is not a start position (one line, listing the ones that are), or a
        start outside the volume.
    """
    if order is None:
        return None
    from ..records.naming import strategy_name
    from ..strategies.orderings import ORDERINGS, PlanOrder, StartOrder

    o = ORDERINGS.get(order)
    n = int(n_slices)
    if isinstance(o, StartOrder):
        if o.kind == "at" and not 0 <= int(o.value) < n:
            raise ValueError(f"order {o.strategy_name}: slice {int(o.value)} is outside the query's {n} slices (0..{n - 1}).")
        return o.start_position(range(n))
    if isinstance(o, PlanOrder):
        return 0 if o.order == "top" else n // 2
    raise ValueError(f"order {strategy_name(o)!r} is not a start position; fsm2kit segment takes top, middle, "
                     "from:P (P in [0, 1]) or at:Z (a slice index).")


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
    from ..engine.features import prompt_mask

    return bool(prompt_mask(mask2d, image_size).any())


def _selector(support_select) -> SupportSelector:
    """The support selector of the registry (unknown names: one line listing the registered), checked
    to serve whole-volume segmentation (``similar:query`` does not, and says why)."""
    selector = SUPPORT_SELECTORS.get(support_select)
    if not isinstance(selector, SupportSelector):  # a selector object given directly
        if not callable(selector):
            raise TypeError(f"support_select: a registered name or a selector (support_label_zhw, label_id, npart) "
                            f"-> slices, got {selector!r}")
        selector = SupportSelector(strategy_name(selector), selector)
    why = selector.refusal("segment")
    if why is not None:
        raise ValueError(f"support selector {selector.name!r} {why}")
    return selector


def _label_selector(selector: SupportSelector | None, given, organ: OrganSpec) -> SupportSelector:
    """A label's selector: the slices given by hand (``given``, as ``given:...``), else ``selector``."""
    return given_selector(_given_for(given, organ)) if given is not None else selector


def _choose_support(engine, organ: OrganSpec, lab: np.ndarray, sup: np.ndarray, query: np.ndarray, selector,
                    start: int | None, npart: int):
    """The label's support slices and what ``similar`` compared (the selector's ``volume_choice``)."""
    mask3d = _organ_mask(lab, organ)
    zq, zs_n = query.shape[0], sup.shape[0]
    model = VolumeInputs(engine, query, sup, lambda z: int(start) if start is not None else relative_start(z, zs_n, zq))
    zs, sim = selector.volume_choice(mask3d.astype(np.uint8), 1, npart=npart, model=model)
    for z in zs:
        _check_survives(organ, mask3d[z], z, engine.image_size)
    return [int(z) for z in zs], sim, mask3d


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

    Checks that every label is drawn in the support mask, that the support selector serves
    whole-volume segmentation, that given support slices contain the label, and (with
    ``image_size``) that each mask survives the resize to SAM2's input. Used by ``fsm2kit
    segment`` before loading SAM2, so bad input fails in a second.

    Returns
    -------
    dict
        ``{label name: support slices}`` (None for a selector that needs the model, ``similar``).
    """
    lab = np.asarray(support_labels)
    chosen = None if support_slices is not None else _selector(support_select)
    out: dict[str, list[int] | None] = {}
    for organ in organs:
        mask3d = _organ_mask(lab, organ)
        selector = _label_selector(chosen, support_slices, organ)
        if selector.needs_model:
            out[organ.name] = None
            continue
        zs = selector.volume_slices(mask3d.astype(np.uint8), 1, npart=npart)
        if image_size is not None:
            for z in zs:
                _check_survives(organ, mask3d[z], z, image_size)
        out[organ.name] = [int(z) for z in zs]
    return out


def check_corrections_off_support(query, support, mask, organs: Sequence[OrganSpec], fixes: Mapping, *,
                                  chosen: Mapping[str, Sequence[int] | None], ct_window=None) -> None:
    """Before the model loads: refuse a correction on a label's support slice when the support
    image is the query scan (that slice is the annotated support itself, SAM2's conditioning
    frame, copied into the output). ``fixes`` are :func:`fsm2kit.run.prompting.label_rounds`'s,
    ``chosen`` :func:`check_request`'s (a selector that needs the model is checked later)."""
    lab = np.asarray(getattr(mask, "array", mask))
    qarr = _clip(np.asarray(getattr(query, "array", query)), ct_window)
    sarr = _clip(np.asarray(getattr(support, "array", support)), ct_window)
    for organ in organs:
        rounds, zs = fixes.get(organ.label_id), chosen.get(organ.name)
        if not rounds or not zs:
            continue
        mask3d = _organ_mask(lab, organ)
        sups = [Support(image=sarr[z], mask=mask3d[z], chunk=0, z=int(z), case_id="") for z in zs]
        on = sorted({c.z for rnd in rounds for c in rnd} & set(echo_slices(qarr, sups, 0, qarr.shape[0] - 1)))
        if on:
            raise ValueError(f"corrections on z={on} ({organ.name}): that slice is the annotated support itself "
                             "(the support image is this scan); edit the support mask instead.")


def _rule_summary(rule) -> str:
    """``"patience:3: stop a direction after ..."``: the rule's name and its registry summary."""
    name = strategy_name(rule)
    try:
        entry = STOPPING_RULES.entry(name)
    except ValueError:  # a rule object that is not registered
        return name
    return f"{name}: {entry.summary}"


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


def _from_config(config, *, support_select, order, start, support_views, memory_policy, refinement=None,
                 ensemble=None) -> tuple:
    """The strategies of ``config`` for :func:`segment_volume`, under its explicit keywords."""
    from ..run.config import ExperimentConfig

    config = ExperimentConfig.given(config, "segment_volume")
    if len(config.orders) > 1:
        raise ValueError(f"segment_volume: one propagation has one start; the config has {len(config.orders)} "
                         f"orders {[strategy_name(o) for o in config.orders]}: give one.")
    if config.prompts is not None:
        raise ValueError("segment_volume: the config's correction prompts name episodes of a run; give the "
                         "corrections of this scan as corrections=... (a prompt file, rounds or {label: rounds}).")
    if order is None and start is None and config.orders:
        order = config.orders[0]
    return (config.support_selector if support_select is None else support_select, order,
            config.support_views if support_views is None else support_views,
            config.memory_policy if memory_policy is None else memory_policy,
            config.refinement if refinement is None else refinement,
            config.ensemble if ensemble is None else ensemble)


def segment_volume(
    query: Volume | np.ndarray,
    support_image: Volume | np.ndarray,
    support_mask: np.ndarray | LabelVolume | None = None,
    *,
    engine,
    labels: object = None,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
    config=None,
    support_select: object = None,
    support_slices: int | Sequence[int] | Mapping | None = None,
    start: int | None = None,
    order: object = None,
    support_views: int | None = None,
    stop: object = None,
    patience: int | None = ...,  # type: ignore[assignment]
    ct_window: tuple[float, float] | None = None,
    ground_truth: np.ndarray | LabelVolume | None = None,
    npart: int = 3,
    memory_policy: MemoryPolicy | None = None,
    corrections=None,
    progress: bool | None = None,
    refinement: object = None,
    ensemble: object = None,
) -> SegmentResult:
    """Segment labels of a query scan from annotated support slices, through the whole volume.

    Parameters
    ----------
    query : Volume or ndarray (Z, H, W)
        The scan to segment (a Volume from :func:`fsm2kit.io.nifti.load_nifti` writes back into
        its file's grid).
    support_image : Volume or ndarray (Zs, Hs, Ws)
        The annotated scan (another patient, or the query itself).
    support_mask : ndarray, LabelVolume or None
        Label ids (or a binary mask) on ``support_image``'s grid; None: ``support_image.labels``.
    engine : fsm2kit.engine.engine.Engine or fsm2kit.model.loading.SAM2Model, keyword-only
        One engine for all labels: each slice is encoded once.
    labels : keyword-only
        What to segment (:func:`parse_labels`): ``"liver=6,spleen=1"``, ids, names (with a
        label map), or None for every id in the support mask.
    label_map : keyword-only
        Names of ids (default: the support mask's, if a LabelVolume).
    config : ExperimentConfig, optional, keyword-only
        The strategies of a run's config (:class:`~fsm2kit.run.config.ExperimentConfig`, the one
        config of ``fsm2kit run``, ``run_study`` and ``inspect_run``): its support selector, its
        one ordering (the start), its support views and memory policy apply as they are (the
        config's defaults too: ``protocol`` supports, the ``middle`` start), its plugins are
        loaded. The keywords below override it. Its data and model fields do not apply here (the
        scans and the engine are arguments), and a config with correction prompts is refused
        (give ``corrections``).
    support_select : str or SupportSelector, keyword-only
        How to choose each label's support slice(s) (default ``"middle"``), a support selector of the registry
        (:mod:`fsm2kit.strategies.support_selectors`, its ``volume_choice``): ``"middle"``,
        ``"largest"``, ``"protocol"`` (the ``npart`` chunk centres together), ``"random:SEED"``,
        ``"given:Z,..."``, ``"similar"`` (the organ slice whose SAM2 embedding is most similar to
        the query slice its propagation starts from: ``start``, else its relative position), or a
        user's. ``"similar:query"`` (a support per query slice) is refused: one propagation
        conditions every slice on the same supports.
    support_slices : int, sequence or {label: int or sequence}, keyword-only
        Support slice index(es) given by hand (overrides ``support_select``).
    start : int, optional, keyword-only
        First query slice; default the support's relative position along z
        (:func:`relative_start` of the middle support slice), which for a support taken from
        the query itself is its own slice.
    order : str or Ordering, optional, keyword-only
        The start as an ordering (:func:`start_from_order`): ``at:Z`` (= ``start=Z``),
        ``from:P``, ``top``, ``middle``. Give ``start`` or ``order``, not both.
    support_views : int, keyword-only
        Augmented views per support slice (0..5, default 0), added as further conditioning
        frames next to it (:mod:`fsm2kit.strategies.views`); an exploration aid.
    stop : str or stopping rule, optional, keyword-only
        When a direction of the whole-volume propagation stops: a spec of
        :data:`fsm2kit.strategies.STOPPING_RULES` (default ``"patience:3"``; ``"none"``: the whole
        volume regardless of scores; a user's) or a rule ``rule(scores so far) -> bool``. The
        oracle range and corrected labels run without one (``none``).
    patience : int or None, keyword-only
        The older spelling of ``stop``: N is ``"patience:N"``, None or 0 is ``"none"`` (not
        together with ``stop``).
    ct_window : (lo, hi), optional, keyword-only
        Clip intensities of query and support before SAM2 (e.g. (-125, 275) HU).
    ground_truth : ndarray or LabelVolume, optional, keyword-only
        Query labels with the same ids: adds the oracle-range mode and :func:`modes_dice_table`.
    npart : int, keyword-only
        Chunks of ``support_select="protocol"``.
    memory_policy : str or MemoryPolicy, optional, keyword-only
        Which memories each propagation step attends to (default SAM2's rule; a name of
        :data:`fsm2kit.strategies.MEMORY_POLICIES` or a policy object), as in
        :meth:`Engine.segment <fsm2kit.engine.engine.Engine.segment>`.
    corrections : PromptFile, rounds of Correction or {label: rounds}, optional, keyword-only
        Correction rounds after the propagation (:func:`~fsm2kit.run.prompting.label_rounds`):
        z is the query's slice index, coordinates are the stored slice's (x = column, y = row).
        Each round's corrections run SAM2's refinement and become conditioning memories, then
        the volume is propagated again (:func:`~fsm2kit.engine.corrections.segment_with_corrections`).
        A corrected label runs without the stopping rule (every slice, as SAM2's predictor); in
        the oracle-range mode its corrections inside the range apply.
    progress : bool, optional, keyword-only
    refinement : str or Refinement, optional, keyword-only
        Refinement passes (``"revsam2:top=K"``, ...; :mod:`fsm2kit.strategies.refinement`): each
        label's propagation runs, its best slices are promoted to conditioning memories, and it
        runs again; as corrections, without the stopping rule (every slice). Not with corrections.
    ensemble : str or Ensemble, optional, keyword-only
        Several segmentations fused (:mod:`fsm2kit.strategies.ensembles`: member axes ``order``,
        ``support-select``, ``memory-policy``, ``views``, ``refine``; not ``model``: one engine):
        each member is this call with its overrides (every slice encoded once, the engine's
        cache), the labels come from the fused probability, and the result carries the
        uncertainty (:attr:`SegmentResult.uncertainty`; ``save`` writes the entropy and variance
        volumes beside the label volume).

    Returns
    -------
    SegmentResult
    """
    from ..engine.engine import Engine
    from ..model.loading import SAM2Model

    t0 = time.perf_counter()
    if config is not None:
        support_select, order, support_views, memory_policy, refinement, ensemble = _from_config(
            config, support_select=support_select, order=order, start=start, support_views=support_views,
            memory_policy=memory_policy, refinement=refinement, ensemble=ensemble)
    ens = ENSEMBLES.get(ensemble)
    if getattr(ens, "active", False):
        return _segment_ensemble(ens, dict(
            query=query, support_image=support_image, support_mask=support_mask, engine=engine, labels=labels,
            label_map=label_map, support_select=support_select, support_slices=support_slices, start=start,
            order=order, support_views=support_views, stop=stop, patience=patience, ct_window=ct_window,
            ground_truth=ground_truth, npart=npart, memory_policy=memory_policy, corrections=corrections,
            progress=progress, refinement=refinement), t0)
    refinement = REFINEMENTS.get(refinement)
    refine = int(getattr(refinement, "passes", 1)) > 1
    support_select = "middle" if support_select is None else support_select
    support_views = 0 if support_views is None else support_views
    if memory_policy is not None:  # a registered name (a config's) or a policy object
        memory_policy = MEMORY_POLICIES.get(memory_policy)
    if isinstance(engine, SAM2Model):
        engine = Engine(engine, progress=True if progress is None else progress)
    qvol = _as_volume(query, "query")
    svol = _as_volume(support_image, "support image")
    note = constant_volume_note(qvol.array, "the query")
    if note:
        warnings.warn(note, UserWarning, stacklevel=2)
    if support_mask is None:
        if svol.labels is None:
            raise ValueError("No support mask: pass support_mask=... (or a support Volume with labels).")
        support_mask = svol.labels
    lab, lm_mask = _as_label_array(support_mask, svol, "support mask")
    lm = LabelMap.coerce(label_map) if label_map is not None else lm_mask
    organs = parse_labels(labels, label_map=lm, present=np.unique(lab).tolist())
    from ..strategies.views import check_views, support_views as make_views

    rule = stopping_rule(stop, patience)
    selector = None if support_slices is not None else _selector(support_select)
    method = "given" if selector is None else selector.name
    n_views = check_views(support_views)
    qarr = _clip(qvol.array, ct_window)
    sarr = _clip(svol.array, ct_window)
    zq, zs_n = qarr.shape[0], sarr.shape[0]
    if order is not None:
        if start is not None:
            raise ValueError(f"give start={start} or order={strategy_name(order)!r}, not both (at:Z is start=Z).")
        start = start_from_order(order, zq)
    if start is not None and not 0 <= int(start) < zq:
        raise ValueError(f"start slice {start} is outside the query's {zq} slices (0..{zq - 1}).")
    gt = None
    if ground_truth is not None:
        gt_arr = ground_truth.array if isinstance(ground_truth, LabelVolume) else np.asarray(ground_truth)
        if gt_arr.shape != qvol.shape:
            raise ValueError(f"ground_truth has shape {gt_arr.shape}, the query {qvol.shape}; they must share a grid.")
        gt = gt_arr
    from ..run.prompting import corrections_record, label_rounds
    from .propagation import corrected_propagation_job

    fixes = label_rounds(corrections, organs, qarr.shape)
    passes0 = engine.stats.encoder_passes

    # every label's propagations (whole volume, and the oracle range with ground truth) run
    # side by side: their steps share SAM2 forwards (engine.object_batch_size)
    jobs, made = [], []
    for organ in organs:
        zs, sim, mask3d = _choose_support(engine, organ, lab, sarr, qarr,
                                          _label_selector(selector, support_slices, organ), start, npart)
        how = method
        supports = []
        for z in zs:
            sup = Support(image=sarr[z], mask=mask3d[z], chunk=0, z=z, case_id=svol.case_id)
            supports += [sup, *make_views(sup, n_views)]  # each view right after its support
        s0 = int(start) if start is not None else relative_start(sorted(zs)[len(zs) // 2], zs_n, zq)
        fix = fixes.get(organ.label_id)
        who = dict(case_id=qvol.case_id or "query", label=organ.label_id, label_name=organ.name)
        if fix and refine:
            raise ValueError(f"label {organ.name}: corrections and refinement passes do not combine; choose one.")
        if fix:
            jobs.append(corrected_propagation_job(engine, qarr, supports, fix, start=s0, memory_policy=memory_policy,
                                                  **who))
        elif refine:
            jobs.append(refined_propagation_job(engine, qarr, supports, refinement, start=s0,
                                                memory_policy=memory_policy))
        else:
            jobs.append(propagation_job(engine, qarr, supports, start=s0, stop=rule, memory_policy=memory_policy))
        made.append((organ, "whole_volume", tuple(zs), how, sim))
        if gt is not None:
            tz = np.flatnonzero((gt == organ.label_id).any(axis=(1, 2)))
            if tz.size:
                lo, hi = int(tz[0]), int(tz[-1])
                s1 = min(max(s0, lo), hi)
                jobs.append(corrected_propagation_job(engine, qarr, supports, fix, start=s1, z_range=(lo, hi),
                                                      memory_policy=memory_policy, **who) if fix else
                            refined_propagation_job(engine, qarr, supports, refinement, start=s1, z_range=(lo, hi),
                                                    memory_policy=memory_policy) if refine else
                            propagation_job(engine, qarr, supports, start=s1, stop=NOSTOP,
                                            z_range=(lo, hi), memory_policy=memory_policy))
                made.append((organ, "oracle_range", tuple(zs), how, sim))
    names = ", ".join(o.name for o in organs)
    props = engine.drive(jobs, progress=progress, desc=names if len(names) <= 40 else f"{len(organs)} labels")
    results, oracle = [], []
    for (organ, mode, zs, how, sim), prop in zip(made, props):
        (results if mode == "whole_volume" else oracle).append(OrganResult(organ, mode, zs, how, prop, sim))

    label_vol = _combine(results, organs, qvol.shape)
    oracle_vol = _combine(oracle, organs, qvol.shape) if gt is not None else None
    prov = dict(engine.model.provenance())
    options = {
        "support_select": method,
        "support_slices": support_slices if not isinstance(support_slices, Mapping) else {str(k): v for k, v in support_slices.items()},
        "start": start,
        "order": strategy_name(order) if order is not None else None,
        "support_views": n_views,
        "memory_policy": strategy_name(memory_policy) if memory_policy is not None else "sam2",
        "stop": strategy_name(NOSTOP) if refine else strategy_name(rule),
        "refinement": strategy_name(refinement),
        "promoted_z": {o.name: list(o.propagation.promoted_z) for o in results} if refine else None,
        "corrections": None if not fixes else {
            "rounds": {o.name: len(fixes[o.label_id]) for o in organs if o.label_id in fixes},
            "prompts": corrections_record(corrections, {o.name: fixes[o.label_id] for o in organs if o.label_id in fixes}),
            "stopping_rule": "off for corrected labels (every slice is tracked, as SAM2's predictor)",
        },
        "ct_window": list(ct_window) if ct_window is not None else None,
        "npart": npart,
        "labels": {o.name: o.label_id for o in organs},
        "query_shape_zhw": list(qvol.shape),
        "support_shape_zhw": list(svol.shape),
        "stopping_rule": _rule_summary(rule),
        "layout": "queries below start + supports + queries from start; forward, then backward (middle order)",
    }
    res = SegmentResult(
        labels=label_vol,
        organs=tuple(results),
        query=qvol,
        model_provenance=prov,
        seconds=time.perf_counter() - t0,
        encoder_passes=engine.stats.encoder_passes - passes0,
        oracle=tuple(oracle) if gt is not None else None,
        oracle_labels=oracle_vol,
        options=options,
    )
    if gt is not None:
        # a support slice taken from the query itself is the annotation, copied: not scored
        res.dice = modes_dice_table({"whole_volume": label_vol, "oracle_range": oracle_vol}, gt, organs,
                                    exclude_z={o.label_id: o.propagation.echo_z for o in results},
                                    case_id=qvol.case_id, provenance=prov)
    return res




def _combine(group: list[OrganResult], organs, shape) -> np.ndarray:
    """The label volume of labels' results: overlaps resolved by logit, the annotation wins on its own slice."""
    if not group:
        return np.zeros(shape, dtype=label_dtype(max(o.label_id for o in organs)))
    out = resolve_overlaps([o.logits for o in group], [o.label_id for o in group])
    out = out.astype(label_dtype(max(o.label_id for o in organs)))
    for o in group:  # the user's annotation wins on its own slice
        for z in o.propagation.echo_z:
            out[z][o.propagation.logits[z] > 0] = o.label_id
    return out


#: segment_volume's keyword of each ensemble member's config field.
_MEMBER_KW = {"orders": "order", "support_selector": "support_select", "memory_policy": "memory_policy",
              "support_views": "support_views", "refinement": "refinement"}


def _segment_ensemble(ens, kw: dict, t0: float) -> SegmentResult:
    """segment_volume of every member of ``ens``, fused (see ``segment_volume(ensemble=)``)."""
    import dataclasses

    from ..strategies.ensembles import disagreement, entropy, fused_logits, mean_fusion, probabilities, variance, \
        vote_fusion

    if any(k == "model" for k, _ in ens.axes):
        raise ValueError(f"ensemble {strategy_name(ens)!r}: segment runs one engine (one model); members over "
                         "models run in fsm2kit run (or call segment_volume per model).")
    members = []
    for label, over in ens.members():
        mk = dict(kw)
        for field_name, value in over.items():
            key = _MEMBER_KW[field_name]
            mk[key] = value[0] if field_name == "orders" else value
            if key == "order":
                mk["start"] = None
        members.append((label, segment_volume(**mk)))
    first = members[0][1]
    rule = vote_fusion if ens.fusion == "vote" else mean_fusion

    def fuse(groups):
        fused, unc = [], {}
        for parts in zip(*groups):
            logits = np.stack([o.logits for o in parts])
            probs = probabilities(logits)
            p = rule(probs)
            o0 = parts[0]
            fl = parts[0].logits if len(parts) == 1 else fused_logits(p)
            fused.append(dataclasses.replace(o0, propagation=dataclasses.replace(
                o0.propagation, logits=fl, processed=np.any([o.propagation.processed for o in parts], axis=0))))
            d = disagreement(logits > 0)
            unc[o0.name] = {"entropy": entropy(probs.mean(axis=0)), "variance": variance(probs),
                            "disagreement": d, "qc": d > ens.qc}
        return fused, unc

    organs = [o.organ for o in first.organs]
    results, unc = fuse([m.organs for _, m in members])
    oracle = None
    if first.oracle is not None:
        oracle, _ = fuse([m.oracle for _, m in members])
    label_vol = _combine(results, organs, first.labels.shape)
    oracle_vol = _combine(oracle, organs, first.labels.shape) if oracle is not None else None
    options = {**first.options, "ensemble": strategy_name(ens), "members": [label for label, _ in members],
               "qc_threshold": ens.qc}
    res = SegmentResult(labels=label_vol, organs=tuple(results), query=first.query,
                        model_provenance=first.model_provenance, seconds=time.perf_counter() - t0,
                        encoder_passes=sum(m.encoder_passes for _, m in members), oracle=None if oracle is None
                        else tuple(oracle), oracle_labels=oracle_vol, options=options, uncertainty=unc)
    gt = kw.get("ground_truth")
    if gt is not None:
        gt_arr = gt.array if isinstance(gt, LabelVolume) else np.asarray(gt)
        res.dice = modes_dice_table({"whole_volume": label_vol, "oracle_range": oracle_vol}, gt_arr, organs,
                                    exclude_z={o.label_id: o.propagation.echo_z for o in results},
                                    case_id=first.query.case_id, provenance=first.model_provenance)
    return res
