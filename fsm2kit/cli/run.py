"""``fsm2kit run``: one FS-MedSAM2 setting over episodes; logits, Dice and provenance.

The command builds the same :class:`~fsm2kit.workflows.config.ExperimentConfig` the notebooks
use and runs it through the one runner (:func:`~fsm2kit.workflows.experiments.run_experiments`),
which writes the one output format (:mod:`fsm2kit.workflows.results`): ``logits.npz``,
``slices.csv``, ``summary.csv`` (Dice, pooled and mean per volume), ``volumes.csv`` and
``provenance.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from .common import add_model_args, add_strategy_args, model_from_args, strategies_from_args

__all__ = ["register_cli", "config_from_args"]


def register_cli(sub) -> argparse.ArgumentParser:
    """Add ``fsm2kit run``."""
    from ..core.plans import SETTINGS

    run = sub.add_parser(
        "run",
        help="run one FS-MedSAM2 setting over episodes and write logits, Dice and provenance",
        description="Run one FS-MedSAM2 setting over npz episodes or an SSL-ALPNet dataset folder. "
        "Writes logits.npz, slices.csv, summary.csv (Dice: pooled and mean per volume), volumes.csv "
        "and provenance.json into --out.",
    )
    run.add_argument("--episodes", required=True, help="npz episode folder, or SSL-ALPNet preprocessed folder")
    run.add_argument("--setting", required=True, choices=SETTINGS, type=str.upper)
    run.add_argument("--dataset", default=None, choices=["SABS", "CHAOST2"], type=str.upper)
    run.add_argument("--fold", type=int, default=None, help="fold (dataset folders)")
    run.add_argument("--label", default=None, help="class name or id (dataset folders), e.g. liver")
    run.add_argument("--variant", default="ALP", choices=["ALP", "GMRD"], type=str.upper,
                     help="protocol variant (default ALP, as FS-MedSAM2)")
    run.add_argument("--out", required=True, help="output folder")
    add_strategy_args(run, views=True)  # --order (FQ), --support-select, --memory-policy, --support-views, --plugins
    add_model_args(run)
    run.set_defaults(func=_cmd_run)
    return run


def config_from_args(args: argparse.Namespace):
    """The :class:`~fsm2kit.workflows.config.ExperimentConfig` of ``fsm2kit run``'s options.

    An SSL-ALPNet dataset folder needs ``--dataset``, ``--fold`` and ``--label`` (one fold, one
    class); an npz folder is one fold's episodes already (``--fold`` and ``--label`` unused).
    """
    from ..workflows.config import ExperimentConfig
    from ..workflows.episodes import episode_folder_kind, require_folder_options

    strategies = strategies_from_args(args)  # plugins first; bad names fail here, in one line, before any model

    dataset_folder = episode_folder_kind(args.episodes) == "dataset"
    if dataset_folder:
        require_folder_options(args.episodes, dataset=args.dataset, fold=args.fold, label=args.label)
    return ExperimentConfig(
        episodes=os.path.abspath(args.episodes),
        dataset=args.dataset,
        folds=(args.fold,) if dataset_folder else (),
        classes=(args.label,) if dataset_folder else (),
        settings=(args.setting,),
        orders=(args.order,),
        support_selector=args.support_select,
        support_views=strategies.support_views or 0,
        memory_policy=args.memory_policy,
        plugins=tuple(getattr(args, "plugins", None) or ()),
        models=(args.model,),
        checkpoint=args.checkpoint,
        seed=args.seed,
        image_size=args.image_size,
        device=args.device,
        variant=args.variant,
        object_batch_size=getattr(args, "object_batch_size", None),
        name="fsm2kit run",
    )


def _cmd_run(args: argparse.Namespace) -> int:
    from ..workflows.episodes import load_config_episodes
    from ..workflows.experiments import run_experiments
    from ..workflows.provenance import command_line
    from ..workflows.results import format_dice

    t0 = time.perf_counter()
    config = config_from_args(args)
    episodes = load_config_episodes(config, progress=not args.no_progress)
    model = model_from_args(args)
    n = sum(e.n_slices for e in episodes)
    print(f"{len(episodes)} episode(s), {n} query slices; {args.setting}"
          f"{'-' + args.order if args.setting.endswith('FQ') else ''}; support {args.support_select}"
          f"{f' +{config.support_views} views' if config.support_views else ''}, "
          f"memory {args.memory_policy}; {model!r}", file=sys.stderr)
    result = run_experiments(config, models={model.name: model}, episodes=[episodes], keep_predictions=True,
                             progress=not args.no_progress)
    paths = result.save(args.out, command=command_line(getattr(args, "argv", None)),
                        details={"total_seconds": round(time.perf_counter() - t0, 3)})
    print(format_dice(result))
    print(f"\n{result.encoder_passes} image-encoder passes, {result.seconds:.1f} s. Outputs:")
    for p in paths.values():
        print(f"  {p}")
    return 0
