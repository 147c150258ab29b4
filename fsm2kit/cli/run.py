"""``fsm2kit run``: one FS-MedSAM2 setting over episodes; logits, Dice and provenance.

The command builds the same :class:`~fsm2kit.run.config.ExperimentConfig` the notebooks
use and runs it through the one runner (:func:`~fsm2kit.run.runner.run_experiments`),
which writes the one output format (:mod:`fsm2kit.run.experiment_result`): ``logits.npz``,
``slices.csv``, ``summary.csv`` (Dice, pooled and mean per volume), ``volumes.csv`` and
``provenance.json``.

Everything is checked before any model loads (options, the episodes, and ``--out``: not an input,
not the working folder, writable, not being written by another run (a lock held for the whole
command), new, empty or an earlier run with ``--overwrite``; a folder fsm2kit did not write is
refused even then). The run folder is built beside ``--out`` (a hidden temporary sibling) and
renamed to it when complete (:meth:`ExperimentResult.save
<fsm2kit.run.experiment_result.ExperimentResult.save>`): ``--out`` holds a whole run or nothing,
never a mix of two.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

from .common import (
    EPISODE_FAMILIES,
    add_model_args,
    add_overwrite_arg,
    add_strategy_args,
    check_model_args,
    check_order_applies,
    check_output_folder,
    check_outputs,
    checks_passed,
    claim_output,
    model_from_args,
    strategies_from_args,
)

__all__ = ["register_cli", "config_from_args"]


def register_cli(sub) -> argparse.ArgumentParser:
    """Add ``fsm2kit run``."""
    from ..engine.plans import SETTINGS

    run = sub.add_parser(
        "run",
        help="run one FS-MedSAM2 setting over episodes and write logits, Dice and provenance",
        description="Run one FS-MedSAM2 setting over npz episodes or an SSL-ALPNet dataset folder. "
        "Writes logits.npz, slices.csv, summary.csv (Dice: pooled and mean per volume), volumes.csv "
        "and provenance.json into --out.",
    )
    run.add_argument("--episodes", required=True, help="npz episode folder, or SSL-ALPNet preprocessed folder")
    run.add_argument("--setting", required=True, choices=SETTINGS, type=str.upper)
    run.add_argument("--dataset", default=None, choices=["SABS", "CHAOST2"], type=str.upper,
                     help="dataset of the folder (npz dumps: names their class ids, default CHAOST2; "
                          "checked against their scan ids)")
    run.add_argument("--fold", type=int, default=None,
                     help="fold (dataset folders; npz dumps: checked against their scans and recorded)")
    run.add_argument("--label", default=None,
                     help="class name or id, e.g. liver (SABS id 6, CHAOST2 id 1); dataset folders: required; "
                          "npz dumps: keeps that class, refused if the dumps do not hold it")
    run.add_argument("--variant", default="ALP", choices=["ALP", "GMRD"], type=str.upper,
                     help="protocol variant (default ALP, as FS-MedSAM2)")
    run.add_argument("--out", required=True, help="output folder (built beside it, then renamed into place)")
    add_overwrite_arg(run, "an existing --out folder (an earlier run)")
    run.add_argument("--prompts", default=None, metavar="FILE.json",
                     help="correction rounds after the propagation (S1SFQ/3SFQ): a JSON list of rounds, each a "
                          'list of {"z": Z, "points": [[x, y, 1 or 0], ...], "box": [x0, y0, x1, y1]} in stored '
                          'pixel coordinates (x = column), with "case" and "label" keys when the run has several '
                          "episodes; each round re-propagates. The run record keeps the prompts")
    run.add_argument("--postprocess", default="published", metavar="SPEC",
                     help="post-processing switches, comma-separated: holes:N|off (SAM2's fill_hole_area), "
                          "stability:on|off (dynamic multimask via stability), lcc:on|off (largest 3D connected "
                          "component per organ; scored masks only, logits.npz unchanged), union:on|off (union of "
                          "passes that predict the same slice); 'published' (default: holes:8,stability:on,lcc:off,"
                          "union:off) or 'none'. Recorded in every table and the provenance")
    run.add_argument("--nsd-tolerance", type=float, default=2.0, metavar="MM",
                     help="tolerance of the normalized surface Dice in mm (default 2); HD95 and NSD need the voxel "
                          "spacing, which npz dumps lack (then NaN, said in the tables)")
    run.add_argument("--simulate-clicks", type=int, default=0, metavar="K",
                     help="simulated-click benchmark (S1SFQ/3SFQ): up to K clicks per episode, each on the largest "
                          "error region, re-propagated; writes clicks.csv (Dice per click, NoC, time per round) and "
                          "clicks.json (replayable with --prompts)")
    run.add_argument("--click-target", type=float, default=0.9, metavar="DICE",
                     help="Dice at which --simulate-clicks stops (NoC@target; default 0.9)")
    run.add_argument("--max-rounds", type=int, default=100, metavar="N",
                   help="the most correction rounds --prompts may hold (default 100): each round re-propagates, so "
                        "thousands are hours of work")
    # --order (FQ), --support-select, --memory-policy, --support-views, --plugins: as segment and inspect
    add_strategy_args(run, (*EPISODE_FAMILIES, "ensemble"), views=True, defaults={"ordering": None},
                      notes={"ordering": "default middle; S1SFQ and 3SFQ only"})
    add_model_args(run)
    run.set_defaults(func=_cmd_run)
    return run


def config_from_args(args: argparse.Namespace):
    """The :class:`~fsm2kit.run.config.ExperimentConfig` of ``fsm2kit run``'s options.

    An SSL-ALPNet dataset folder needs ``--dataset``, ``--fold`` and ``--label`` (one fold, one
    class). An npz folder is one fold's episodes already: ``--fold`` and ``--label``, when given,
    are checked against the dumps when they load (refused if they contradict them; the fold is
    recorded), never ignored.
    """
    from ..run.config import ExperimentConfig
    from ..run.sources import episode_folder_kind, require_folder_options

    strategies = strategies_from_args(args)  # plugins first; bad names fail here, in one line, before any model
    # options that do not apply to the setting: refused in CLI words, never dropped
    check_order_applies(args.setting, args.order, prompts=args.prompts, support_select=args.support_select)

    dataset_folder = episode_folder_kind(args.episodes) == "dataset"
    if dataset_folder:
        require_folder_options(args.episodes, dataset=args.dataset, fold=args.fold, label=args.label)
    return ExperimentConfig(
        episodes=os.path.abspath(args.episodes),
        dataset=args.dataset,
        folds=(args.fold,) if args.fold is not None else (),
        classes=(args.label,) if args.label is not None else (),
        settings=(args.setting,),
        orders=(args.order or "middle",),
        support_selector=args.support_select,
        support_views=strategies.support_views or 0,
        memory_policy=args.memory_policy,
        refinement=args.refine,
        ensemble=args.ensemble,
        prompts=os.path.abspath(args.prompts) if getattr(args, "prompts", None) else None,
        plugins=tuple(getattr(args, "plugins", None) or ()),
        models=(args.model,),
        checkpoint=args.checkpoint,
        seed=args.seed,
        image_size=args.image_size,
        device=args.device,
        precision=getattr(args, "precision", None),
        variant=args.variant,
        object_batch_size=getattr(args, "object_batch_size", None),
        name="fsm2kit run",
        postprocess=args.postprocess,
        nsd_tolerance=args.nsd_tolerance,
        simulate_clicks=args.simulate_clicks,
        click_target=args.click_target,
        max_rounds=_max_rounds(args),
    )


def _max_rounds(args: argparse.Namespace) -> int:
    n = getattr(args, "max_rounds", 100)
    if n < 1:
        raise ValueError(f"--max-rounds must be at least 1, got {n}.")
    return n


def _cmd_run(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as args.exit_stack:  # --out's lock, taken once --out is checked
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from ..records.fileio import links_outside
    from ..run.sources import episode_folder_kind, load_config_episodes
    from ..run.runner import run_experiments
    from ..records.provenance import command_line
    from ..run.experiment_result import format_dice
    from ..strategies.orderings import check_start

    t0 = time.perf_counter()
    check_model_args(args)
    check_outputs({"--out": args.out}, {"--episodes": args.episodes, "--checkpoint": args.checkpoint,
                                        "--prompts": args.prompts,
                                        **{f"--plugins {m}": m for m in (args.plugins or []) if m.endswith(".py")}})
    check_output_folder(args.out, overwrite=args.overwrite)
    args.exit_stack.enter_context(claim_output(args.out))
    config = config_from_args(args)
    links = links_outside(args.episodes)  # followed, and recorded in provenance.json
    for link in links:
        print(f"fsm2kit: note: --episodes {args.episodes}: {link['name']} is a link to {link['target']}, outside "
              "the folder (recorded in provenance.json).", file=sys.stderr)
    episodes = load_config_episodes(config, progress=not args.no_progress)  # --fold/--label checked here
    check_start(config.orders[0], args.setting, episodes, option="--order")  # at:Z: a query slice of every episode
    if episode_folder_kind(args.episodes) == "npz":
        classes = ", ".join(dict.fromkeys(f"{e.label} {e.label_name}" for e in episodes))
        print(f"npz episode dumps record scan and class ids only: classes {classes} named as "
              f"{args.dataset or 'CHAOST2'} ids{'' if args.dataset else ' (the default; --dataset to change)'}, "
              f"fold {args.fold if args.fold is not None else 'not recorded (-1)'}", file=sys.stderr)
    if config.prompts:  # every correction checked against its episode before the model loads
        from ..run.prompting import episode_rounds

        from ..io.prompts import round_estimate

        rounds = episode_rounds(config.prompt_file(), episodes)
        n_rounds = max((len(e) for e in rounds), default=0)
        print(f"prompts: {sum(len(r) for e in rounds for r in e)} correction(s) in "
              f"{n_rounds} round(s) on {sum(1 for e in rounds if e)} episode(s)", file=sys.stderr)
        if n_rounds >= 10:  # a long job says what it costs
            print(f"estimate: {round_estimate(n_rounds, sum(e.n_slices for e, r in zip(episodes, rounds) if r))}",
                  file=sys.stderr)
    checks_passed(args)
    model = model_from_args(args)
    n = sum(e.n_slices for e in episodes)
    print(f"{len(episodes)} episode(s), {n} query slices; {args.setting}"
          f"{'-' + config.orders[0] if args.setting.endswith('FQ') else ''}; support {args.support_select}"
          f"{f' +{config.support_views} views' if config.support_views else ''}, "
          f"memory {args.memory_policy}{'' if args.refine == 'none' else '; refine ' + args.refine}"
          f"{'' if args.ensemble == 'none' else '; ensemble ' + args.ensemble}; {model!r}",
          file=sys.stderr)
    result = run_experiments(config, models={model.name: model}, episodes=[episodes], keep_predictions=True,
                             progress=not args.no_progress)
    names = result.save(args.out, command=command_line(getattr(args, "argv", None)), overwrite=args.overwrite,
                        details={"total_seconds": round(time.perf_counter() - t0, 3),
                                 **({"input_links_outside": links} if links else {})})
    print(format_dice(result))
    if result.clicks:
        t = result.clicks_table()
        last = t.groupby(["case_id", "label_name"], sort=False).tail(1)
        print(f"\nsimulated clicks (target Dice {config.click_target:g}, at most {config.simulate_clicks}):")
        print(last[["case_id", "label_name", "click", "dice", "noc", "reached"]].to_string(index=False))
        print(f"time per round: {t['seconds'].mean():.2f} s mean over {len(t)} rounds (click 0: the propagation)")
    print(f"\n{result.encoder_passes} image-encoder passes, {result.seconds:.1f} s. Outputs:")
    for p in names.values():
        print(f"  {p}")
    return 0
