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
from ..model.loading import load_sam2
from ..inspector.inspection import Inspection, inspect_episode
from ..inspector.panels import write_inspection
from ..io.examples import example_episodes
from ..records.naming import strategy_name
from ..run.sources import load_episodes, subset_episode
from ..run.support_plans import prepare_runs
from ..records.provenance import command_line, inspection_provenance
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.orderings import ORDERINGS
from ..strategies.support_selectors import SUPPORT_SELECTORS

__all__ = ["inspect_run"]


def inspect_run(
    *,
    setting: str,
    order: object = "middle",
    memory_policy: object = None,
    support_selector: object = None,
    episodes: str | os.PathLike | None = None,
    episode_index: int = 0,
    dataset: str | None = None,
    fold: int | None = None,
    label: str | int | None = None,
    model: str = "sam2-tiny",
    checkpoint: str | os.PathLike | None = None,
    seed: int = 0,
    image_size: int = 1024,
    device: str | None = None,
    engine: Engine | Callable[[], Engine] | None = None,
    max_slices: int | None = None,
    layers: Sequence[int] | None = None,
    verify: bool = True,
    output_dir: str | os.PathLike | None = None,
    panels: int = 3,
    pixel: tuple[int, int] | None = None,
    formats: Sequence[str] = ("png",),
    presets: Sequence[str] | None = None,
    progress: bool = False,
    command: str | None = None,
) -> Inspection:
    """Segment one episode while capturing SAM2's memory attention; optionally write the results.

    Parameters
    ----------
    setting, order
        The inference setting and, for the FQ settings, the ordering: a name of
        :data:`fsm2kit.strategies.ORDERINGS` (``middle``, ``top``, ``from:P``, ``at:Z``, a user's)
        or an ordering object.
    memory_policy : str or MemoryPolicy, optional
        Which memories each step attends to (:data:`fsm2kit.strategies.MEMORY_POLICIES`; default
        ``sam2``).
    support_selector : str or SupportSelector, optional
        How the supports are chosen (:data:`fsm2kit.strategies.SUPPORT_SELECTORS`; default
        ``protocol``); other than ``protocol`` it needs an SSL-ALPNet folder (npz dumps, the
        bundled case among them, carry fixed supports). ``similar`` chooses with the engine;
        ``similar:query`` (a support per query slice) is refused: the inspected episode keeps one
        support per chunk.
    episodes : path, optional
        An npz episode folder or an SSL-ALPNet folder (with ``dataset``, ``fold``, ``label``);
        None: the bundled CHAOS case.
    episode_index : int
        Which episode of the folder.
    model, checkpoint, seed, image_size, device
        As in :func:`fsm2kit.load_sam2` (``checkpoint="random"`` for smoke runs); ignored when an
        ``engine`` is given.
    engine : Engine or callable, optional
        The engine to use, or a function that makes it (called once the episode is loaded, so
        bad input fails before a model loads).
    max_slices : int, optional
        At most N query slices, evenly spaced (:func:`fsm2kit.run.sources.subset_episode`).
    layers, verify
        As in :func:`fsm2kit.inspector.inspect_episode`.
    output_dir : path, optional
        When given, tables, charts, panels and provenance are written there
        (:func:`fsm2kit.inspector.panels.write_inspection`) with the one provenance record
        (``command`` recorded in it); the paths are in ``insp.files``.
    presets : sequence of {"screen", "paper"}, optional
        Write the charts and panels in these export presets instead of ``formats``
        (:func:`fsm2kit.viz.export.save_presets`).

    Returns
    -------
    Inspection
    """
    ordering = ORDERINGS.get(order)  # every name checked before any episode or model loads
    policy = MEMORY_POLICIES.get(memory_policy)
    selector = SUPPORT_SELECTORS.get(support_selector)
    if getattr(selector, "similarity", None) == "query":
        raise ValueError(f"support selector {strategy_name(selector)!r} chooses a support per query slice; an "
                         "inspection runs the episode with one support per chunk: use 'similar' (or fsm2kit run "
                         "for 1S1Q/3S1Q)")
    if episodes is None:
        if strategy_name(selector) != "protocol":
            raise ValueError(f"support selector {strategy_name(selector)!r}: the bundled case is an npz episode dump "
                             "whose support slices are fixed; give an SSL-ALPNet folder (--episodes) to choose them")
        all_eps = example_episodes()
    else:
        all_eps = load_episodes(episodes, dataset=dataset, fold=fold, label=label, support_selector=selector)
    if not 0 <= episode_index < len(all_eps):
        raise ValueError(f"episode-index {episode_index}: the folder has {len(all_eps)} episode(s) "
                         f"(0..{len(all_eps) - 1}).")
    episode = all_eps[episode_index]
    if max_slices is not None:
        episode = subset_episode(episode, max_slices=max_slices)
    if engine is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sam2 = load_sam2(model, checkpoint, seed=seed, image_size=image_size, device=device, progress=progress)
        engine = Engine(sam2, progress=progress)
    elif not isinstance(engine, Engine):
        engine = engine()  # a factory: the model loads only after the episode was found
    # the run's strategies as fsm2kit run applies them: similar's supports, a user ordering's plans
    inputs = prepare_runs(engine, [episode], setting, ordering, selector=selector)
    episode = inputs.episodes[0]
    plans = inputs.kwargs["plans"][0] if "plans" in inputs.kwargs else None
    insp = inspect_episode(engine, episode, setting, order=inputs.kwargs.get("order", "middle"), plans=plans,
                           layers=layers, verify=verify, memory_policy=policy)
    if plans is not None:
        insp.result.order = inputs.order  # the ordering's name, not "custom"
    if output_dir is not None:
        record = inspection_provenance(insp, command=command if command is not None else command_line())
        record = replace(record, support_selector=strategy_name(selector))
        insp.files = write_inspection(insp, Path(output_dir), panels=panels, pixel=pixel, formats=tuple(formats),
                                      presets=presets, provenance=record.to_dict())
    return insp
