"""The few-shot engine: SAM2's memory mechanism driven directly, with an explicit memory bank.

:class:`Engine` wraps one loaded SAM2 model. It

* encodes each slice once: image features are cached by slice content (and image size), so a
  slice is encoded once however many settings, orders, plans or queries use it;
* turns (support image, support mask) pairs into conditioning memories through SAM2's
  mask-prompt path, once per support (cached);
* runs SAM2's tracking step for a query slice against a chosen set of memories
  (:class:`~fsm2kit.engine.memory.MemorySelection`), computing the memory tensors from a typed
  :class:`~fsm2kit.engine.memory.MemoryBank` instead of SAM2's inference-state dicts;
* executes :class:`~fsm2kit.engine.plans.Plan` s, which is how the four settings and the orders of
  FS-MedSAM2 are expressed.

It reproduces SAM2's video predictor driven the published way (tested against
``SAM2VideoPredictor``): the same preprocessing (per-slice min-max, bilinear resize without
antialias, ImageNet mean/std), the same mask-prompt resize (bilinear + antialias, >= 0.5), spatial
memories stored in bfloat16, conditioning memories encoded from the hole-filled low-resolution
mask, and hole filling on every device.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..protocol.episodes import Episode, Support
from .features import FeatureCache, SliceFeatures, content_key, prompt_mask
from ..model.holes import fill_holes
from .memory import (
    MemoryBank,
    MemoryEntry,
    MemoryPolicy,
    MemorySelection,
    TokenLayout,
    check_selection,
    policy_or_sam2,
    sam2_memory_policy,
    with_step_memories,
)
from ..records.naming import strategy_name
from ..model.loading import SAM2Model
from ..model.sam2_adapter import encode_memory, mask_decoder_stability, use_mask_as_output
from .passes import refine_job, refinement_passes
from .plans import Plan, build_plans, normalize_setting
from .postprocess import PostProcess, merge_passes, parse_postprocess
from .results import EngineStats, EpisodeResult, SliceResult
from .tracking import TrackJob, TrackObserver, TrackOutput, TrackRequest, Tracker, batch_groups, request_signature

__all__ = ["SupportMemory", "Engine"]


@dataclass(frozen=True, eq=False)
class SupportMemory:
    """A support slice turned into a conditioning memory, and SAM2's output on it (the echo)."""

    entry: MemoryEntry
    logits: np.ndarray

    def __repr__(self) -> str:
        return f"SupportMemory({self.entry!r}, output {self.logits.shape})"



# ----------------------------------------------------------------------------- the engine
class Engine:
    """Few-shot segmentation with one SAM2 model; encodes each slice once.

    Parameters
    ----------
    model : SAM2Model
        From :func:`fsm2kit.load_sam2`.
    progress : bool
        Show progress bars for encoding and propagation.
    max_cached_slices : int or None
        Bound on slice features held in memory (least recently used are dropped); None:
        unbounded. With a bound smaller than a run's slices, slices are encoded when needed.
    cache_dir : path or None
        On-disk feature cache (one subfolder per model, checkpoint and image size; files keyed
        by slice content), reused across engines, processes and notebook runs. The weights'
        hash naming the subfolder is taken when the engine is created: after changing the
        weights in memory, create a new engine. Files are checked on read (key, shapes,
        dtypes, checksum) and recomputed when bad; an unwritable or full folder gives one
        warning and the engine goes on without it.
    encode_batch_size : int or None
        Slices per image-encoder call when encoding up front (default 8 on CUDA, 1 elsewhere).
    storage_device : str or None
        Where cached features and memories live (e.g. ``"cpu"`` to keep only the active step's
        tensors on the GPU); default: the compute device.
    object_batch_size : int or None
        Tracking steps of independent runs (organs, episodes, the per-query plans of 1S1Q and
        3S1Q) that share one SAM2 forward (default 16 on CUDA, 1 elsewhere: on CPU batching
        barely changes throughput, and one step per forward is bit-identical to SAM2's video
        predictor; batched steps agree with it to float rounding).

    Examples
    --------
    >>> model = load_sam2("sam2-tiny", "random", image_size=256)   # doctest: +SKIP
    >>> engine = Engine(model)                                      # doctest: +SKIP
    >>> result = engine.segment(episode, "S1SFQ", order="middle")   # doctest: +SKIP
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        progress: bool = True,
        max_cached_slices: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        encode_batch_size: int | None = None,
        storage_device: str | torch.device | None = None,
        object_batch_size: int | None = None,
    ):
        self.model = model
        self.module = model.module
        self.device = model.device
        self.image_size = model.image_size
        self.progress = progress
        self.stats = EngineStats()
        self.features = FeatureCache(model, stats=self.stats, max_cached_slices=max_cached_slices,
                                     cache_dir=cache_dir, encode_batch_size=encode_batch_size,
                                     storage_device=storage_device, progress=progress)
        self.storage_device = self.features.storage_device
        self.tracker = Tracker(model, self.features, stats=self.stats, storage_device=self.storage_device)
        self.settings = self.tracker.settings
        self.object_batch_size = int(object_batch_size or (16 if self.device.type == "cuda" else 1))
        if self.object_batch_size < 1:
            raise ValueError(f"object_batch_size must be >= 1, got {object_batch_size}")
        self._supports: dict[str, SupportMemory] = {}
        self._postprocess: PostProcess | None = None

    @property
    def postprocess(self) -> PostProcess:
        """The post-processing switches the engine applies now (:mod:`fsm2kit.engine.postprocess`).

        The published ones, with the model's own ``fill_hole_area`` and stability setting,
        unless inside :meth:`postprocessing`.
        """
        if self._postprocess is not None:
            return self._postprocess
        dec = self.module.sam_mask_decoder
        return PostProcess(holes=int(self.module.fill_hole_area),
                           stability=bool(dec.dynamic_multimask_via_stability))

    @contextlib.contextmanager
    def postprocessing(self, spec):
        """Apply the post-processing switches ``spec`` (a :class:`PostProcess` or a spec string)
        to everything the engine runs inside the ``with`` block; restored on exit (also on errors).

        ``holes`` and ``stability`` act on the tracking steps and the support memories;
        ``union`` on slices predicted by more than one pass (:meth:`segment_many`). ``lcc``
        acts on the final masks and is applied by whoever scores them (the runner).
        """
        pp = parse_postprocess(spec)
        saved = (self._postprocess, self.tracker.fill_hole_area, self.tracker.stability)
        self._postprocess = pp
        self.tracker.fill_hole_area, self.tracker.stability = pp.holes, pp.stability
        try:
            yield pp
        finally:
            self._postprocess, self.tracker.fill_hole_area, self.tracker.stability = saved

    def __repr__(self) -> str:
        return (
            f"Engine({self.model!r}, {len(self.features)} cached slices, "
            f"{len(self._supports)} support memories, {self.stats})"
        )

    def clear_cache(self) -> None:
        """Forget cached slice features and support memories (the on-disk cache stays)."""
        self.features.clear()
        self._supports.clear()

    # ------------------------------------------------------------------ encoding
    @property
    def max_cached_slices(self) -> int | None:
        return self.features.max_cached_slices

    @property
    def encode_batch_size(self) -> int:
        return self.features.encode_batch_size

    @property
    def cache_dir(self):
        return self.features.cache_dir

    def encode(self, image: np.ndarray) -> SliceFeatures:
        """The image features of a slice, computed once per distinct slice content (:class:`FeatureCache`)."""
        return self.features.encode(image)

    def encode_all(self, images: Sequence[np.ndarray], *, desc: str = "encode") -> list[SliceFeatures]:
        """Encode slices in batches of ``encode_batch_size`` (cached ones are skipped)."""
        return self.features.encode_all(images, desc=desc)

    # ------------------------------------------------------------------ memories
    @torch.inference_mode()
    def support_memory(self, support: Support | tuple[np.ndarray, np.ndarray], *, index: int = 0) -> SupportMemory:
        """A support slice and its mask as a conditioning memory (SAM2's mask-prompt path).

        As in SAM2's video predictor: the mask prompt becomes the frame's output (+-10 logits,
        downsampled with antialias), holes are filled, and the memory encoder encodes the
        low-resolution output upsampled to image size and binarised.
        """
        if isinstance(support, Support):
            image, mask, z = support.image, support.mask, support.z
        else:
            image, mask = support
            z = None
        mask = np.asarray(mask)
        if mask.shape != np.shape(image)[-2:]:
            raise ValueError(f"support mask shape {mask.shape} differs from its image {np.shape(image)}.")
        if not mask.astype(bool).any():
            raise ValueError("support mask is empty: a support slice must contain the class.")
        feats = self.encode(image)
        holes, stability = self.tracker.hole_area, self.tracker.stability
        key = feats.key + content_key(mask.astype(bool))
        if self._postprocess is not None:  # memories of other switches are cached apart
            key += f"|holes={holes},stability={stability}"
        cached = self._supports.get(key)
        if cached is not None:
            if cached.entry.index == index and cached.entry.z == z:
                return cached
            return SupportMemory(replace(cached.entry, index=index, z=z), cached.logits)
        m = self.module
        feats = self.features.on_device(feats)
        mask_in = prompt_mask(mask, self.image_size).to(self.device)
        vf = feats.vision_feats
        h, w = feats.feat_sizes[-1]
        pix = vf[-1].permute(1, 2, 0).view(-1, m.hidden_dim, h, w)
        with self.model.autocast():
            with mask_decoder_stability(m, stability):  # the object pointer comes from SAM2's heads
                _, _, _, low_res, _, obj_ptr, score = use_mask_as_output(m, pix, feats.high_res, mask_in)
            low_res = fill_holes(low_res, holes)
            high = F.interpolate(low_res.float(), size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
            maskmem, pos = encode_memory(m, vf, list(feats.feat_sizes), high, score, is_mask_from_pts=True)
        self.stats.memory_encoder_passes += 1
        maskmem, pos = self.tracker.store_maskmem(maskmem, pos)
        entry = MemoryEntry("support", True, index, maskmem, pos, obj_ptr, float(score.float().item()), z)
        sm = SupportMemory(entry, self.tracker.to_video_res(low_res, mask.shape))
        self._supports[key] = sm
        return sm

    # ------------------------------------------------------------------ observers and tracking
    def observe(self, observer: TrackObserver):
        """Call ``observer`` around every tracking forward run inside the ``with`` block.

        The hook the memory inspector uses (:class:`~fsm2kit.engine.tracking.TrackObserver`): nothing
        on the engine is patched, batched forwards are observed as they run, and the observer is
        removed on exit (also on errors).
        """
        return self.tracker.observe(observer)

    @property
    def observers(self) -> tuple[TrackObserver, ...]:
        """The observers now watching this engine's tracking forwards."""
        return self.tracker.observers

    @property
    def tokens_per_pointer(self) -> int:
        """Key tokens per object pointer: ``hidden_dim // mem_dim`` when ``mem_dim < hidden_dim``."""
        return self.tracker.tokens_per_pointer

    def layout(self, selection: MemorySelection, bank: MemoryBank) -> TokenLayout:
        """The memory-token layout of a step (:func:`fsm2kit.engine.memory.token_layout`)."""
        return self.tracker.layout(selection, bank)

    @torch.inference_mode()
    def track(
        self,
        image: np.ndarray,
        selection: MemorySelection,
        bank: MemoryBank,
        *,
        store: bool = False,
        index: int = 0,
        z: int | None = None,
    ) -> TrackOutput:
        """SAM2's tracking step for one query slice against the selected memories.

        Parameters
        ----------
        image : ndarray, (H, W)
            The query slice.
        selection : MemorySelection
            Which memories of ``bank`` to attend to (see :func:`fsm2kit.engine.memory.select_memories`).
        bank : MemoryBank
        store : bool
            Also encode the prediction into a (non-conditioning) memory entry.
        """
        return self.track_batch([TrackRequest(image, selection, bank, store, index, z)])[0]

    def track_batch(self, requests: Sequence[TrackRequest]) -> list[TrackOutput]:
        """Several tracking steps in one SAM2 forward (:meth:`Tracker.track_batch`)."""
        return self.tracker.track_batch(requests)

    def drive(
        self,
        jobs: Sequence[TrackJob],
        *,
        progress: bool | None = None,
        total: int | None = None,
        desc: str = "propagate",
    ) -> list:
        """Run tracking jobs side by side, batching their steps into shared SAM2 forwards.

        Each job is a generator that yields :class:`TrackRequest` s and is sent back each
        request's :class:`TrackOutput`; its return value is its result. Every round, each
        unfinished job's pending step is run: steps with equal :func:`request_signature` share
        a forward (at most ``object_batch_size`` per forward, :func:`batch_groups`). A job's
        own steps stay in order and its memory bank is its own, so results do not depend on
        which jobs run together.

        Returns
        -------
        list
            Each job's return value, in the order of ``jobs``.
        """
        jobs = list(jobs)
        results: list = [None] * len(jobs)
        pending: dict[int, TrackRequest] = {}

        def advance(i: int, out: TrackOutput | None) -> None:
            try:
                pending[i] = jobs[i].send(out) if out is not None else next(jobs[i])
            except StopIteration as stop:
                pending.pop(i, None)
                results[i] = stop.value

        for i in range(len(jobs)):
            advance(i, None)
        show = self.progress if progress is None else progress
        bar = tqdm(total=total, desc=desc, disable=not show or not pending, leave=False, unit="slice")
        while pending:
            ids = list(pending)
            for group in batch_groups([request_signature(pending[i]) for i in ids], self.object_batch_size):
                chosen = [ids[g] for g in group]
                outs = self.track_batch([pending[i] for i in chosen])
                for i, out in zip(chosen, outs):
                    advance(i, out)
                bar.update(len(chosen))
        bar.close()
        return results

    # ------------------------------------------------------------------ plans
    def plan_job(
        self,
        plan: Plan,
        queries: Sequence[np.ndarray],
        supports: Sequence[Support],
        *,
        z: Sequence[int] | None = None,
        plan_index: int = 0,
        memory_policy: MemoryPolicy | None = None,
        refinement=None,
        chunks: Sequence[int] | None = None,
        step_supports=None,
    ) -> TrackJob:
        """One plan as a tracking job for :meth:`drive` (returns (results, bank) when done).

        ``memory_policy`` chooses each step's memories (default SAM2's rule,
        :func:`~fsm2kit.engine.memory.sam2_memory_policy`; other policy objects from
        ``fsm2kit.strategies.MEMORY_POLICIES.get("recent:3")``, see :mod:`fsm2kit.strategies.memory_policies`);
        any other policy's choice is checked (:func:`~fsm2kit.engine.memory.check_selection`). Steps of
        jobs whose selections have equal sizes share forwards in :meth:`drive`.

        ``refinement`` (a :class:`~fsm2kit.engine.passes.Refinement`, e.g.
        ``fsm2kit.strategies.REFINEMENTS.get("revsam2:top=3")``) adds refinement passes
        (:func:`~fsm2kit.engine.passes.refine_job`; ``chunks``: each query's chunk, for support
        consistency); None, or a rule of one pass, runs the plan once.

        ``step_supports`` (``{query position: [Support, ...]}``, e.g. from the support selector
        ``swap:K``) adds per-slice supports: at that query's step they join as conditioning
        memories (:func:`~fsm2kit.engine.memory.with_step_memories`; each support's memory encoded
        once, cached), and they are gone at the next step.
        """
        if step_supports and refinement_passes(refinement) > 1:
            raise ValueError("per-slice supports (swap) and refinement passes do not combine; choose one.")
        if refinement_passes(refinement) > 1:
            return (yield from refine_job(self, plan, queries, supports, refinement=refinement, z=z, chunks=chunks,
                                          plan_index=plan_index, memory_policy=memory_policy))
        policy = policy_or_sam2(memory_policy)
        bank = MemoryBank(plan.num_frames)
        for frame_idx, s in plan.support_frames:
            bank.add(frame_idx, self.support_memory(supports[s], index=s).entry)
        results = []
        for k, step in enumerate(plan.steps):
            q = plan.frames[step.frame_idx].index
            zq = int(z[q]) if z is not None else q
            sel = policy(bank, step.frame_idx, reverse=step.reverse, settings=self.settings)
            if policy is not sam2_memory_policy:
                check_selection(sel, bank, self.settings)
            extra = step_supports.get(q) if step_supports else None
            step_bank = bank
            if extra:
                entries = [self.support_memory(sp, index=int(sp.chunk)).entry for sp in extra]
                sel, step_bank = with_step_memories(bank, sel, entries, self.settings)
            out = yield TrackRequest(queries[q], sel, step_bank, plan.store_predictions, q, zq)
            if out.memory is not None:
                bank.add(step.frame_idx, out.memory)
            results.append(SliceResult(q, zq, out.logits, out.object_score, out.iou, plan_index, k, sel))
        return results, bank

    def run_plan(
        self,
        plan: Plan,
        queries: Sequence[np.ndarray],
        supports: Sequence[Support],
        *,
        z: Sequence[int] | None = None,
        plan_index: int = 0,
        progress: bool | None = None,
        memory_policy: MemoryPolicy | None = None,
    ) -> tuple[list[SliceResult], MemoryBank]:
        """Run one plan: supports become conditioning memories, query steps run in order.

        Returns the slice results in processing order and the final memory bank.
        """
        job = self.plan_job(plan, queries, supports, z=z, plan_index=plan_index, memory_policy=memory_policy)
        return self.drive([job], progress=progress, total=len(plan.steps))[0]

    def segment(
        self,
        episode: Episode,
        setting: str,
        *,
        order: str = "middle",
        plans: Sequence[Plan] | None = None,
        keep_banks: bool = False,
        memory_policy: MemoryPolicy | None = None,
        refinement=None,
        step_supports=None,
    ) -> EpisodeResult:
        """Segment an episode's query slices under a setting (and order, for the FQ settings).

        Parameters
        ----------
        episode : Episode
        setting : {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
        order : {"middle", "top"}
            Processing order of the FQ settings; ignored by the 1Q settings.
        plans : sequence of Plan, optional
            Custom plans (e.g. :func:`fsm2kit.engine.plans.custom_plan`) instead of the setting's.
        keep_banks : bool
            Keep each plan's final memory bank in the result (for inspection).
        memory_policy : MemoryPolicy, optional
            Which memories each step attends to (default: SAM2's rule); recorded in the result.
        refinement : Refinement, optional
            Refinement passes of the FQ settings (:mod:`fsm2kit.engine.passes`); recorded in the result.
        step_supports : mapping, optional
            ``{query position: [Support, ...]}``: per-slice supports for that step only (:meth:`plan_job`).
        """
        return self.segment_many([episode], setting, order=order, plans=None if plans is None else [plans],
                                 keep_banks=keep_banks, memory_policy=memory_policy, refinement=refinement,
                                 step_supports=None if step_supports is None else [step_supports])[0]

    def segment_many(
        self,
        episodes: Sequence[Episode],
        setting: str,
        *,
        order: str = "middle",
        plans: Sequence[Sequence[Plan]] | None = None,
        keep_banks: bool = False,
        memory_policy: MemoryPolicy | None = None,
        supports: Sequence[Sequence[Support]] | None = None,
        refinement=None,
        step_supports=None,
    ) -> list[EpisodeResult]:
        """Segment several episodes (e.g. the organs of one scan) side by side.

        Like :meth:`segment` on each, but slices shared between episodes are encoded once and
        the episodes' tracking steps share SAM2 forwards (``object_batch_size``). Each
        episode's memory bank is its own: its results are those of :meth:`segment` (up to
        float rounding when steps are batched).

        Parameters
        ----------
        episodes : sequence of Episode
        setting, order, keep_banks, memory_policy
            As in :meth:`segment`.
        plans : sequence of sequences of Plan, optional
            Custom plans per episode.
        supports : sequence of sequences of Support, optional
            Per episode, the supports its (custom) plans' support frames index, instead of
            ``episode.supports`` (augmented views, a support per query slice); needs ``plans``.
        step_supports : sequence of mappings, optional
            Per episode, ``{query position: [Support, ...]}``: per-slice supports joining that
            query's step only (see :meth:`plan_job`).

        Returns
        -------
        list of EpisodeResult
            In the order of ``episodes``; ``seconds`` and ``encoder_passes`` are those of the
            whole call.
        """
        setting = normalize_setting(setting)
        fq = setting.endswith("FQ")
        if refinement_passes(refinement) > 1 and not fq:
            raise ValueError(f"refinement {strategy_name(refinement)!r} needs a propagation (S1SFQ, 3SFQ); "
                             f"{setting} segments each slice alone.")
        episodes = list(episodes)
        if plans is not None and len(plans) != len(episodes):
            raise ValueError(f"plans: expected one sequence of plans per episode ({len(episodes)}), got {len(plans)}.")
        if supports is not None and (plans is None or len(supports) != len(episodes)):
            raise ValueError("supports: give one sequence of supports per episode, together with plans.")
        sups = [list(ep.supports) for ep in episodes] if supports is None else [list(s) for s in supports]
        all_plans: list[list[Plan]] = []
        for i, ep in enumerate(episodes):
            if plans is None:
                all_plans.append(list(build_plans(
                    setting,
                    chunks=[int(c) for c in ep.chunks],
                    support_chunks=[s.chunk for s in ep.supports],
                    npart=ep.npart,
                    order=order,
                )))
            else:
                all_plans.append(list(plans[i]))
        label_order = ("custom" if plans is not None else order) if fq or plans is not None else None
        t0 = time.perf_counter()
        passes0 = self.stats.encoder_passes
        # encode every distinct slice once, up front and batched, when the cache can hold them
        # all; otherwise slices are encoded when a step needs them (bounded memory)
        support_imgs = [sup[i].image for sup, ps in zip(sups, all_plans)
                        for i in sorted({i for p in ps for _, i in p.support_frames})]
        query_imgs = [ep.images[q] for ep, ps in zip(episodes, all_plans)
                      for q in sorted({f.index for p in ps for f in p.frames if f.kind == "query"})]
        bound = self.max_cached_slices
        if bound is None or len(support_imgs) + len(query_imgs) <= bound:
            self.encode_all(support_imgs, desc="encode supports")
            self.encode_all(query_imgs, desc="encode queries")
        jobs, owner = [], []
        for e, (ep, ps) in enumerate(zip(episodes, all_plans)):
            for i, plan in enumerate(ps):
                jobs.append(self.plan_job(plan, ep.images, sups[e], z=ep.z, plan_index=i,
                                          memory_policy=memory_policy, refinement=refinement, chunks=ep.chunks,
                                          step_supports=None if step_supports is None else step_supports[e]))
                owner.append(e)
        total = sum(len(p.steps) for ps in all_plans for p in ps)
        done = self.drive(jobs, total=total, desc=setting if len(episodes) == 1 else f"{setting} x{len(episodes)}")
        seconds = time.perf_counter() - t0
        passes = self.stats.encoder_passes - passes0
        out = []
        for e, ep in enumerate(episodes):
            mine = [d for d, o in zip(done, owner) if o == e]
            # one result per slice: the last pass, or with ``union`` all passes (postprocess)
            results = merge_passes([r for res, _ in mine for r in res], union=self.postprocess.union)
            out.append(EpisodeResult(
                case_id=ep.case_id,
                label=ep.label,
                label_name=ep.label_name,
                setting=setting,
                order=label_order,
                slices=results,
                provenance=self.model.provenance(),
                seconds=seconds,
                encoder_passes=passes,
                plans=all_plans[e],
                banks=[bank for _, bank in mine] if keep_banks else None,
                memory_policy=strategy_name(policy_or_sam2(memory_policy)),
                refinement="none" if refinement is None else strategy_name(refinement),
            ))
        return out
