"""``fsm2kit run``: one FS-MedSAM2 setting over episodes; logits, Dice and provenance."""

from __future__ import annotations

import argparse
import os
import sys
import time

from .common import add_model_args, engine_from_args, model_from_args

__all__ = ["register_cli"]


def register_cli(sub) -> argparse.ArgumentParser:
    """Add ``fsm2kit run``."""
    from ..core.plans import ORDERS, SETTINGS

    run = sub.add_parser(
        "run",
        help="run one FS-MedSAM2 setting over episodes and write logits, Dice and provenance",
        description="Run one FS-MedSAM2 setting over npz episodes or an SSL-ALPNet dataset folder.",
    )
    run.add_argument("--episodes", required=True, help="npz episode folder, or SSL-ALPNet preprocessed folder")
    run.add_argument("--setting", required=True, choices=SETTINGS, type=str.upper)
    run.add_argument("--order", default="middle", choices=ORDERS, help="FQ settings only (default middle)")
    run.add_argument("--dataset", default=None, choices=["SABS", "CHAOST2"], type=str.upper)
    run.add_argument("--fold", type=int, default=None, help="fold (dataset folders)")
    run.add_argument("--label", default=None, help="class name or id (dataset folders), e.g. liver")
    run.add_argument("--variant", default="ALP", choices=["ALP", "GMRD"], type=str.upper,
                     help="protocol variant (default ALP, as FS-MedSAM2)")
    run.add_argument("--out", required=True, help="output folder")
    add_model_args(run)
    run.set_defaults(func=_cmd_run)
    return run


def _cmd_run(args: argparse.Namespace) -> int:
    from ..workflows.runner import format_dice, load_episodes, run_episodes, write_run

    t0 = time.perf_counter()
    episodes = load_episodes(args.episodes, dataset=args.dataset, fold=args.fold, label=args.label,
                             variant=args.variant)
    model = model_from_args(args)
    engine = engine_from_args(model, args)
    n = sum(e.n_slices for e in episodes)
    print(f"{len(episodes)} episode(s), {n} query slices; {args.setting}"
          f"{'-' + args.order if args.setting.endswith('FQ') else ''}; {model!r}", file=sys.stderr)
    run = run_episodes(engine, episodes, args.setting, order=args.order)
    paths = write_run(run, args.out, extra={
        "command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
        "episodes_path": os.path.abspath(args.episodes),
        "dataset": args.dataset, "fold": args.fold, "label": args.label,
        "total_seconds": round(time.perf_counter() - t0, 3),
    })
    print(format_dice(run))
    print(f"\n{run.encoder_passes} image-encoder passes, {run.seconds:.1f} s. Outputs:")
    for p in paths.values():
        print(f"  {p}")
    return 0
