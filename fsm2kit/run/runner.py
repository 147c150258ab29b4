"""The one run path: :class:`~fsm2kit.run.config.ExperimentConfig` s in, an :class:`ExperimentResult` out.

``fsm2kit run`` and the notebooks both build an :class:`ExperimentConfig` and call
:func:`run_experiments` (or :func:`run_experiment` for one config). It runs every (config,
model, episode, setting, order) with one :class:`~fsm2kit.engine.engine.Engine` per distinct
(model, checkpoint, seed, image size, device), shared by all configs, settings and orders, so
each slice goes through a model's image encoder once however many settings and orders use it.
Episodes run side by side (:meth:`Engine.segment_many <fsm2kit.engine.engine.Engine.segment_many>`):
``object_batch_size`` episodes per call, whose tracking steps (and the per-query plans of 1S1Q
and 3S1Q) share SAM2 forwards up to the engine's ``object_batch_size`` per forward.

The result (:mod:`fsm2kit.run.experiment_result`) holds the tidy per-slice table, both Dice averages,
the paper-style tables and the one output format (:meth:`ExperimentResult.save`). Running sets
no process-wide state: torch's thread count is the caller's (the CLI's ``--threads``); the
config's ``precision`` is applied around the model's computations only.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace

import pandas as pd
from tqdm.auto import tqdm

from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..records.naming import strategy_name
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.refinement import REFINEMENTS
from .config import ExperimentConfig
from .prompting import episode_rounds, prompt_record, segment_corrected
from .clicks import simulate_clicks
from ..engine.postprocess import largest_component_3d
from ..protocol.metrics import extent_errors, slice_extent_flags, surface_metrics
from .sources import bars_off, load_config_episodes
from .support_plans import prepare_runs
from .experiment_result import PROVENANCE_COLUMNS, ExperimentResult, ModelRun, Prediction, tidy_slices

__all__ = ["run_experiment", "run_experiments"]


def _engine(model, cache_dir: str | None, object_batch_size: int | None) -> Engine:
    return Engine(model, progress=False, object_batch_size=object_batch_size, cache_dir=cache_dir)


def _segment(engine: Engine, episodes: Sequence[Episode], setting: str, order, policy, config: ExperimentConfig,
             rounds=None, clicks=None):
    """One (setting, ordering) over episodes side by side, with the config's strategies.

    A built-in order goes to the engine by name; a user's ordering (or ``similar:query``
    supports, or augmented views) gives each episode's plans (:func:`~fsm2kit.run.support_plans.prepare_runs`),
    and the results record the ordering's name. An episode with correction ``rounds`` runs
    them (:func:`~fsm2kit.run.prompting.segment_corrected`); the others run side by
    side as without prompts. Returns the run inputs and the results.
    """
    inputs = prepare_runs(engine, episodes, setting, None if order == "n/a" else order,
                          selector=config.support_selector, views=config.support_views)
    if config.simulate_clicks:  # the click benchmark: each episode's own rounds, made as it goes
        pp = engine.postprocess
        score = largest_component_3d if pp.lcc else None
        runs = [simulate_clicks(engine, inputs, i, setting, max_clicks=config.simulate_clicks,
                                target=config.click_target, memory_policy=policy, score=score)
                for i in range(len(inputs.episodes))]
        if clicks is not None:
            clicks.extend(runs)
        return inputs, [r.result for r in runs]
    plain = [i for i in range(len(inputs.episodes)) if not (rounds and rounds[i])]
    done: list = [None] * len(inputs.episodes)
    if plain:
        kwargs = {k: (v if k == "order" else [v[i] for i in plain]) for k, v in inputs.kwargs.items()}
        refine = REFINEMENTS.get(config.refinement) if setting.endswith("FQ") else None
        for i, r in zip(plain, engine.segment_many([inputs.episodes[i] for i in plain], setting,
                                                   memory_policy=policy, refinement=refine, **kwargs)):
            done[i] = r
            if "plans" in kwargs:
                r.order = inputs.order
    for i in range(len(done)):
        if done[i] is None:
            done[i] = segment_corrected(engine, inputs, i, setting, rounds[i], memory_policy=policy)
    return inputs, done

class _StepCounter:
    """An engine observer that moves a progress bar by the query slices of every tracking forward."""

    def __init__(self, bar):
        self.bar = bar

    def before_forward(self, requests, layouts) -> None:
        pass

    def after_forward(self, requests, outputs) -> None:
        if self.bar.total is not None and self.bar.n + len(requests) > self.bar.total:
            self.bar.total = self.bar.n + len(requests)  # correction rounds: more steps than slices
        self.bar.update(len(requests))


def _model_key(config: ExperimentConfig, model: str) -> tuple:
    return (model, config.checkpoint_for(model), config.seed, config.image_size_for(model), config.device,
            config.precision)


def run_experiment(config: ExperimentConfig, **kwargs) -> ExperimentResult:
    """Run one config; see :func:`run_experiments` for the keyword options."""
    return run_experiments([config], **kwargs)


def run_experiments(
    configs: ExperimentConfig | Sequence[ExperimentConfig],
    *,
    models: Mapping[str, object] | None = None,
    episodes: Sequence[Sequence[Episode]] | None = None,
    keep_predictions: bool = False,
    progress: bool = True,
) -> ExperimentResult:
    """Run every (config, model, episode, setting, order) and return tidy tables.

    One :class:`~fsm2kit.engine.engine.Engine` per distinct (model, checkpoint, seed, image size,
    device, precision), shared by all configs, settings and orders, so each distinct slice is encoded once
    per model (and read from the on-disk cache when ``cache_dir`` is set). Its
    ``object_batch_size`` is the largest the configs sharing it ask for (None: the engine's
    default); ``object_batch_size`` episodes run side by side per call.

    Parameters
    ----------
    configs : ExperimentConfig or sequence of ExperimentConfig
    models : mapping {name: SAM2Model}, optional, keyword-only
        Models already loaded (e.g. by the CLI, in a notebook or a test), used as they are (the
        tables record their own weights); their image size must match the config's. Others are
        loaded with :func:`fsm2kit.load_sam2` from the config's checkpoint.
    episodes : sequence of sequences of Episode, optional, keyword-only
        The episodes of each config, already loaded (:func:`~fsm2kit.run.sources.load_config_episodes`);
        default: loaded here.
    keep_predictions : bool, keyword-only
        Keep the episodes and per-slice logits (for ``logits.npz``, overlays and panels; costs memory).
    progress : bool, keyword-only
        A progress bar over the runs.

    Returns
    -------
    ExperimentResult
    """
    from ..model.loading import load_sam2

    if isinstance(configs, ExperimentConfig):
        configs = [configs]
    configs = tuple(configs)
    if not configs or not all(isinstance(c, ExperimentConfig) for c in configs):
        raise TypeError("run_experiments expects a non-empty sequence of ExperimentConfig.")
    if any(c.members() for c in configs):  # ensembles: members run here, then fused (fsm2kit.run.ensemble_runs)
        from .ensemble_runs import run_ensembles

        return run_ensembles(configs, models=models, episodes=episodes, keep_predictions=keep_predictions,
                             progress=progress)
    t0 = time.perf_counter()
    if episodes is None:
        episodes = [load_config_episodes(c, progress=progress) for c in configs]
    else:
        episodes = [list(e) for e in episodes]
        if len(episodes) != len(configs):
            raise ValueError(f"episodes: expected one list per config ({len(configs)}), got {len(episodes)}.")
    for c, eps in zip(configs, episodes):
        if not eps:
            raise ValueError(f"ExperimentConfig {c.name!r} has no episodes to run.")
        unlabelled = [f"{e.case_id}/{e.label_name}" for e in eps if e.labels is None]
        if unlabelled:
            raise ValueError(f"Episodes {unlabelled[:5]} have no ground truth to score.")
    # correction prompts: read once, checked against the episodes before any model loads
    prompt_files = [c.prompt_file() for c in configs]
    rounds_of = [None if pf is None else episode_rounds(pf, eps) for pf, eps in zip(prompt_files, episodes)]

    # work per model key: [(config index, model name)]
    plan: dict[tuple, list[tuple[int, str]]] = {}
    for i, c in enumerate(configs):
        for m in c.models:
            plan.setdefault(_model_key(c, m), []).append((i, m))

    def runs(i: int) -> list[tuple[str, str]]:
        c = configs[i]
        return [(s, o) for s in c.settings for o in (c.orders if s.endswith("FQ") else ("n/a",))]

    # one bar in query slices (tracking steps; correction rounds add theirs), moved by every forward
    total = sum(sum(e.n_slices for e in episodes[i]) * len(runs(i)) for uses in plan.values() for i, _ in uses)
    bar = tqdm(total=total, desc="run", unit="slice", disable=bars_off(progress))
    steps = _StepCounter(bar)
    # rows and kept predictions in (model, config, episode, setting, order) order, whatever the batching
    frames: list[tuple[tuple, object]] = []
    kept: list[tuple[tuple, Prediction]] = []
    volume_rows: list[tuple[tuple, dict]] = []
    click_runs: list = []
    model_runs = []
    given = dict(models or {})
    try:
        for key, uses in plan.items():
            name, ckpt, seed, size, device, precision = key
            m0 = time.perf_counter()
            model = given.get(name)
            if model is not None:
                if model.image_size != size:
                    raise ValueError(
                        f"models[{name!r}] has image_size {model.image_size} but the config asks for "
                        f"{size}; load it at {size} or change ExperimentConfig.image_size."
                    )
                if precision is not None and model.precision != precision:
                    model = replace(model, precision=precision)  # the same weights, another policy
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    model = load_sam2(name, ckpt, seed=seed, image_size=size, device=device, progress=progress,
                                      precision=precision)
            cache_dirs = sorted({configs[i].cache_dir for i, _ in uses if configs[i].cache_dir})
            batch = [configs[i].object_batch_size for i, _ in uses if configs[i].object_batch_size]
            engine = _engine(model, cache_dirs[0] if cache_dirs else None, max(batch) if batch else None)
            # encoding comes first (each slice once): its own bar below the run's, so nothing sits at 0 %
            engine.features.progress = not bars_off(progress)
            prov = model.provenance()
            stats0 = asdict(engine.stats)
            calls = 0
            with engine.observe(steps):  # the bar moves with every forward
                for i, _ in uses:
                    c, eps = configs[i], episodes[i]
                    policy = MEMORY_POLICIES.get(c.memory_policy)
                    for u, (setting, order) in enumerate(runs(i)):
                        for k in range(0, len(eps), engine.object_batch_size):
                            chunk = eps[k:k + engine.object_batch_size]
                            run_name = setting if order == "n/a" else f"{setting}-{strategy_name(order)}"
                            bar.set_postfix_str(f"{name} {run_name} "
                                                f"{chunk[0].case_id}/{chunk[0].label_name}"
                                                f"{f' +{len(chunk) - 1}' if len(chunk) > 1 else ''}", refresh=False)
                            rounds = None if rounds_of[i] is None else rounds_of[i][k:k + len(chunk)]
                            ran_clicks: list = []
                            with engine.postprocessing(c.postprocess) as pp:  # holes, stability, union
                                inputs, done = _segment(engine, chunk, setting, order, policy, c, rounds, ran_clicks)
                            calls += len(chunk)
                            for e, (ep, r) in enumerate(zip(inputs.episodes, done), start=k):
                                rank = (len(model_runs), i, e, u)
                                masks = largest_component_3d(r.prediction()) if pp.lcc else None
                                df = r.to_frame(ep.labels, masks=masks)
                                df["postprocess"] = str(pp)
                                df["scored_masks"] = pp.scored_masks
                                df["experiment"] = c.name
                                df["dataset"] = ep.dataset or (c.dataset or "")
                                df["fold"] = ep.fold if ep.fold is not None else -1
                                df["image_size"] = size
                                df["protocol_variant"] = ep.variant
                                df["support_selector"] = strategy_name(c.support_selector)
                                df["memory_policy"] = strategy_name(c.memory_policy)
                                df["refinement"] = strategy_name(c.refinement) if setting.endswith("FQ") else "none"
                                df["support_views"] = c.support_views
                                # correction rounds applied to this episode (0: not corrected)
                                df["corrected"] = len(rounds[e - k]) if rounds and rounds[e - k] else 0
                                zs = [inputs.support_z(e - k, r.plans[sl.plan_index]) for sl in r.slices]
                                df["support_z"] = zs
                                # where the slice's plan started (from:P / at:Z say it; 1S1Q/3S1Q: the slice)
                                first = {sl.plan_index: sl.z for sl in sorted(r.slices, key=lambda s: -s.step)}
                                df["start_z"] = [int(first[sl.plan_index]) for sl in r.slices]
                                for col in PROVENANCE_COLUMNS:
                                    if col in prov:
                                        df[col] = prov[col]
                                extra = _beyond_dice(ep, r.prediction() if masks is None else masks, df,
                                                     c.nsd_tolerance)
                                frames.append((rank, df))
                                volume_rows.append((rank, extra))
                                if keep_predictions:
                                    kept.append((rank, Prediction(name, ep, r, c.name)))
                            for e, ce in enumerate(ran_clicks, start=k):
                                click_runs.append(((len(model_runs), i, e, u), name, c, ce))
            d = {k: v - stats0[k] for k, v in asdict(engine.stats).items()}
            model_runs.append(ModelRun(
                model=name, provenance=prov, encoder_passes=d["encoder_passes"], disk_hits=d["disk_hits"],
                segment_calls=calls, seconds=time.perf_counter() - m0, tracking_steps=d["tracking_steps"],
                tracking_forwards=d["tracking_forwards"],
            ))
            del engine
    finally:
        bar.close()
    slices = tidy_slices([df for _, df in sorted(frames, key=lambda x: x[0])])
    predictions = [p for _, p in sorted(kept, key=lambda x: x[0])]
    prompts = tuple({"config": c.name, **prompt_record(pf)} for c, pf in zip(configs, prompt_files) if pf is not None)
    vols = pd.DataFrame([v for _, v in sorted(volume_rows, key=lambda x: x[0])])
    clicks = [(name, c.name, ce) for _, name, c, ce in sorted(click_runs, key=lambda x: x[0])]
    return ExperimentResult(configs, slices, tuple(model_runs), time.perf_counter() - t0, predictions, prompts,
                            volume_metrics=vols, clicks=clicks)


def _beyond_dice(episode: Episode, masks, df, tolerance: float) -> dict:
    """Metrics beyond Dice of one scored episode: per slice (2D, in-plane spacing) into ``df``'s
    columns ``hd95_mm``, ``nsd``, ``fp_slice``, ``missed_slice``; per volume (3D) returned as a
    row keyed like ``df``'s volume.

    Distances need the voxel spacing (``episode.meta["spacing"]``, (z, y, x) mm): the published
    npz dumps carry none, and then the distances are NaN with ``spacing_note`` saying why; 3D
    distances also need contiguous query slices (a ``max_slices`` subset is not).
    """
    import numpy as np

    spacing = episode.meta.get("spacing")
    labels = np.asarray(episode.labels, dtype=bool)
    masks = np.asarray(masks, dtype=bool)
    note = ""
    if spacing is None:
        note = "no voxel spacing (npz dumps carry none)"
    flags = slice_extent_flags(df.assign(gt_px=df["tp"] + df["fn"]), volume_keys=["case_id"])
    df["fp_slice"] = flags["fp_slice"].to_numpy()
    df["missed_slice"] = flags["missed_slice"].to_numpy()
    per = [surface_metrics(m, t, None if spacing is None else spacing[1:], tolerance=tolerance)
           for m, t in zip(masks, labels)]
    df["hd95_mm"] = [p["hd95_mm"] for p in per]
    df["nsd"] = [p["nsd"] for p in per]
    sp3 = spacing
    if spacing is not None and np.any(np.diff(np.asarray(episode.z)) != 1):
        sp3, note = None, "query slices not contiguous in z (a subset): no 3D distances"
    vol = surface_metrics(masks, labels, sp3, tolerance=tolerance)
    key_cols = [c for c in df.columns if c in _VOLUME_KEYS]
    row = {c: df[c].iloc[0] for c in key_cols}
    row.update(vol)
    row.update(extent_errors(df["z"], df["tp"] + df["fn"], df["pred_px"]))
    row["nsd_tolerance_mm"] = float(tolerance)
    row["spacing_mm"] = "" if spacing is None else "x".join(f"{float(v):g}" for v in spacing)
    row["spacing_note"] = note
    df["spacing_note"] = note
    return row


#: Columns that key a volume's row of metrics beyond Dice (those the slice table has).
_VOLUME_KEYS = ("experiment", "dataset", "fold", "case_id", "label", "label_name", "model", "image_size", "setting",
                "order", "memory_policy", "support_selector", "postprocess")
