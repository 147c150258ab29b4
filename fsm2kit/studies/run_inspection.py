"""Inspect one run end to end: load the model and an episode, capture, write tables and charts.

The one call behind ``fsm2kit inspect`` and notebook 05 (:func:`inspect_run`).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

from dataclasses import replace

from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..model.loading import load_sam2
from ..inspector.inspection import Inspection, inspect_episode
from ..inspector.panels import write_inspection
from ..io.examples import example_episodes
from ..records.fileio import atomic_folder, check_can_create, check_replaceable, holds_working_folder
from ..records.naming import strategy_name
from ..run.config import ExperimentConfig
from ..run.sources import load_episodes, subset_episode
from ..run.support_plans import prepare_runs
from ..records.provenance import command_line, inspection_provenance
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.orderings import ORDERINGS
from ..strategies.refinement import REFINEMENTS
from ..strategies.support_selectors import SUPPORT_SELECTORS

__all__ = ["inspect_run", "check_inspection"]


def check_inspection(episode: Episode, setting: str, *, ordering=None, pixel: tuple[int, int] | None = None,
                     layers: Sequence[int] | None = None, model: str | None = None,
                     names: dict[str, str] | None = None) -> None:
    """What :func:`inspect_run` can check before a model loads: ``pixel`` inside the query slices,
    an ``at:Z`` ordering's Z among them, ``layers`` among ``model``'s memory-attention layers (read
    from its config). ``names`` maps ``pixel`` / ``order`` / ``layers`` to the caller's words
    (``{"pixel": "--pixel"}``: the command line's).

    Raises
    ------
    ValueError
        One line naming the argument, what it got and what fits.
    """
    from ..model.specs import memory_attention_layers
    from ..strategies.orderings import check_start

    names = {"pixel": "pixel=(y, x)", "order": "order", "layers": "layers=", **(names or {})}
    check_start(ordering, setting, [episode], option=names["order"])
    if pixel is not None:
        h, w = (int(v) for v in episode.images.shape[-2:])
        y, x = (int(v) for v in pixel)
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"{names['pixel']} {y} {x}: outside the query slices, which are {h} x {w} "
                             f"(y 0..{h - 1}, x 0..{w - 1}, in stored pixels of the episode).")
    if layers is not None and model is not None:
        n = memory_attention_layers(model)
        bad = [int(v) for v in layers if not -n <= int(v) < n]
        if bad:
            raise ValueError(f"{names['layers']} {' '.join(map(str, layers))}: {model}'s memory attention has {n} "
                             f"layers, 0..{n - 1}.")


def inspect_run(
    config: ExperimentConfig | None = None,
    *,
    episode_index: int = 0,
    engine: Engine | Callable[[], Engine] | None = None,
    layers: Sequence[int] | None = None,
    verify: bool = True,
    output_dir: str | os.PathLike | None = None,
    panels: int = 3,
    pixel: tuple[int, int] | None = None,
    panel_steps: Sequence | None = None,
    formats: Sequence[str] = ("png",),
    presets: Sequence[str] | None = None,
    progress: bool = False,
    command: str | None = None,
    check: Callable[[Episode], None] | None = None,
    overwrite: bool = True,
    **overrides,
) -> Inspection:
    """Segment one episode while capturing SAM2's memory attention; optionally write the results.

    Parameters
    ----------
    config : ExperimentConfig or None
        What to run (:class:`~fsm2kit.run.config.ExperimentConfig`, the config of ``fsm2kit run``
        and the notebooks): one setting, one ordering (``middle``, ``top``, ``from:P``, ``at:Z``,
        a user's), the memory policy, the support selector and views, plugins, the data
        (``episodes``: an npz episode folder, or an SSL-ALPNet folder with ``dataset``, one fold
        and one class; None: the bundled CHAOS case), one model with its checkpoint, seed, image
        size and device, ``max_slices`` / ``z_range`` and the engine's ``cache_dir`` and
        ``object_batch_size``. None: the defaults. A support selector other than ``protocol``
        needs an SSL-ALPNet folder (npz dumps, the bundled case among them, carry fixed
        supports); ``similar:query`` (a support per query slice) is refused: the inspected
        episode keeps one support per chunk. Correction prompts are refused here
        (:func:`fsm2kit.inspector.corrected.inspect_corrections` inspects a corrected run).
    episode_index : int
        Which episode of the folder.
    engine : Engine or callable, optional
        The engine to use, or a function that makes it (called once the episode is loaded, so
        bad input fails before a model loads); the config's model is then not loaded.
    layers, verify
        As in :func:`fsm2kit.inspector.inspection.inspect_episode`.
    output_dir : path, optional
        When given, tables, charts, panels and provenance are written there
        (:func:`fsm2kit.inspector.panels.write_inspection`) with the one provenance record
        (``command`` recorded in it); the paths are in ``insp.files``. The folder is written
        all at once (:func:`fsm2kit.records.fileio.atomic_folder`: built beside it, fsynced,
        swapped in) and must be new, empty, the working folder or an earlier inspection
        (replaced whole with ``overwrite``); checked before anything runs.
    check : callable, optional
        Called with the episode to inspect (after ``max_slices`` / ``z_range``) before any model
        loads: a caller's own checks in its own words (``fsm2kit inspect`` checks ``--pixel``,
        ``--order at:Z`` and ``--layers`` there). ``pixel``, an ``at:Z`` ordering and ``layers``
        are checked here too, before the model, whatever ``check`` does.
    panels, panel_steps
        How many attention panels (spread over the processing order), or which slices
        (processing indices or ``"z=<z>"``); the ``paper`` ones are vector figures
        (:func:`fsm2kit.inspector.panels.attention_figure`).
    presets : sequence of {"screen", "paper"}, optional
        Write the charts and panels in these export presets instead of ``formats``
        (:func:`fsm2kit.viz.export.save_presets`).
    **overrides
        Config fields applied on top of ``config`` (:meth:`ExperimentConfig.replace
        <fsm2kit.run.config.ExperimentConfig.replace>`), in their singular spellings too:
        ``inspect_run(setting="S1SFQ", order="top", checkpoint="random", image_size=256)``.

    Returns
    -------
    Inspection
    """
    config = ExperimentConfig.given(config, "inspect_run", **overrides)  # plugins load; every name is checked
    for what, values in (("settings", config.settings), ("orders", config.orders), ("models", config.models),
                         ("folds", config.folds), ("classes", config.classes)):
        if len(values) > 1:
            raise ValueError(f"inspect_run: one episode is inspected; {what} has {len(values)} values "
                             f"{[strategy_name(v) for v in values]}: give one.")
    if config.prompts is not None:
        raise ValueError("inspect_run: correction prompts are not applied here; inspect a corrected run with "
                         "fsm2kit.inspector.corrected.inspect_corrections (notebook 05, 'Correct and re-propagate').")
    if config.metric != "both":
        raise ValueError(f"inspect_run: metric={config.metric!r} does not apply (an inspection writes no Dice "
                         "summary); leave it at 'both'.")
    if output_dir is not None and not holds_working_folder(output_dir):
        check_replaceable(output_dir, kind="inspect", overwrite=overwrite, what="output_dir")
        check_can_create(Path(output_dir) / "x")
    setting = config.settings[0]
    # the config keeps names (or the objects it was given): the registries give the strategies
    ordering = ORDERINGS.get(config.orders[0] if config.orders else None)
    policy, selector = MEMORY_POLICIES.get(config.memory_policy), SUPPORT_SELECTORS.get(config.support_selector)
    if getattr(selector, "similarity", None) == "query":
        raise ValueError(f"support selector {strategy_name(selector)!r} chooses a support per query slice; an "
                         "inspection runs the episode with one support per chunk: use 'similar' (or fsm2kit run "
                         "for 1S1Q/3S1Q)")
    if config.episodes is None:
        if strategy_name(selector) != "protocol" and not getattr(selector, "swap", 0):
            raise ValueError(f"support selector {strategy_name(selector)!r}: the bundled case is an npz episode dump "
                             "whose support slices are fixed; give an SSL-ALPNet folder (--episodes) to choose them")
        all_eps = example_episodes()
    else:
        all_eps = load_episodes(config.episodes, dataset=config.dataset,
                                fold=config.folds[0] if config.folds else None,
                                label=config.classes[0] if config.classes else None, variant=config.variant,
                                support_selector=selector)
    if not 0 <= episode_index < len(all_eps):
        raise ValueError(f"episode-index {episode_index}: the folder has {len(all_eps)} episode(s) "
                         f"(0..{len(all_eps) - 1}).")
    episode = all_eps[episode_index]
    if config.max_slices is not None or config.z_range is not None:
        episode = subset_episode(episode, max_slices=config.max_slices, z_range=config.z_range)
    if check is not None:
        check(episode)
    check_inspection(episode, setting, ordering=ordering, pixel=pixel, layers=layers,
                     model=config.models[0] if engine is None else None)  # an engine (factory) brings its own model
    if engine is None:
        model = config.models[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sam2 = load_sam2(model, config.checkpoint_for(model), seed=config.seed,
                             image_size=config.image_size_for(model), device=config.device, progress=progress,
                             precision=config.precision)
        engine = Engine(sam2, progress=progress, cache_dir=config.cache_dir, object_batch_size=config.object_batch_size)
    elif not isinstance(engine, Engine):
        engine = engine()  # a factory: the model loads only after the episode was found
    # the run's strategies as fsm2kit run applies them: similar's supports, views, a user ordering's plans
    inputs = prepare_runs(engine, [episode], setting, ordering, selector=selector, views=config.support_views)
    episode = inputs.episodes[0]
    plans = inputs.kwargs["plans"][0] if "plans" in inputs.kwargs else None
    insp = inspect_episode(engine, episode, setting, order=inputs.kwargs.get("order", "middle"), plans=plans,
                           layers=layers, verify=verify, memory_policy=policy,
                           refinement=REFINEMENTS.get(config.refinement) if setting.endswith("FQ") else None,
                           step_supports=inputs.kwargs["step_supports"][0] if "step_supports" in inputs.kwargs else None)
    if plans is not None:
        insp.result.order = inputs.order  # the ordering's name, not "custom"
    if output_dir is not None:
        record = inspection_provenance(insp, command=command if command is not None else command_line())
        record = replace(record, support_selector=strategy_name(selector),
                         details={**record.details, "refinement": insp.result.refinement})
        def write(folder: Path) -> dict:
            return write_inspection(insp, folder, panels=panels, pixel=pixel, formats=tuple(formats),
                                    presets=presets, provenance=record.to_dict(), steps=panel_steps)

        if holds_working_folder(output_dir):  # cannot be swapped: inspect.json is written last
            insp.files = write(Path(output_dir))
        else:
            made: dict = {}
            out = atomic_folder(output_dir, lambda tmp: made.update(write(tmp)), overwrite=overwrite, kind="inspect",
                                keep=("prompts.json",))  # notebook 05's saved corrections stay
            insp.files = {k: out / Path(v).name for k, v in made.items()}
    return insp
