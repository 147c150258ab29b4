"""The ``fsm2kit`` command line."""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

__all__ = ["main", "build_parser", "add_model_args", "model_from_args", "engine_from_args"]


#: Modules that add subcommands with ``register_cli(subparsers)`` (each sets ``func``).
_SUBCOMMAND_MODULES: tuple[str, ...] = ("fsm2kit.segment", "fsm2kit.prepare", "fsm2kit.batch", "fsm2kit.inspect_views")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model options every subcommand that runs SAM2 shares."""
    from .models import MODELS

    p.add_argument("--model", default="sam2-tiny", help=f"SAM2 model: {', '.join(MODELS)} (default sam2-tiny)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file, or 'random' for random weights (smoke runs); omitted: download "
        "the released checkpoint by model name (needs internet; cached)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    p.add_argument("--image-size", type=int, default=1024, help="SAM2 input size (default 1024, as published)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "mps"], help="default: cuda, mps, cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--object-batch-size", type=int, default=None,
                   help="tracking steps of independent runs (organs, per-query plans) per SAM2 forward "
                   "(default 16 on CUDA, 1 on CPU)")
    p.add_argument("--compile-encoder", action="store_true",
                   help="torch.compile the image encoder (worth it on a GPU for long runs)")


def model_from_args(args: argparse.Namespace, *, meaningless: str = "the numbers mean nothing"):
    """Load the SAM2 model the options of :func:`add_model_args` ask for.

    Sets the torch thread count when ``--threads`` is given, and says on stderr when the
    weights are random.
    """
    import torch

    from .models import load_sam2

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_sam2(args.model, args.checkpoint, seed=args.seed, image_size=args.image_size,
                          device=args.device, progress=not args.no_progress,
                          compile_encoder=bool(getattr(args, "compile_encoder", False)))
    if model.random_weights:
        print(f"WARNING: {model.name} has RANDOM WEIGHTS (seed {model.seed}): a smoke run; {meaningless}.",
              file=sys.stderr)
    return model


def engine_from_args(model, args: argparse.Namespace):
    """An :class:`~fsm2kit.engine.Engine` with the options of :func:`add_model_args`."""
    from .engine import Engine

    return Engine(model, progress=not args.no_progress, object_batch_size=getattr(args, "object_batch_size", None))


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .ordering import ORDERS, SETTINGS

    parser = argparse.ArgumentParser(
        prog="fsm2kit",
        description="Training-free few-shot medical image segmentation with SAM2 (FS-MedSAM2).",
    )
    parser.add_argument("--version", action="version", version=f"fsm2kit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

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

    import importlib

    for mod in _SUBCOMMAND_MODULES:  # subcommands that live with their feature
        try:
            module = importlib.import_module(mod)
        except ImportError:  # an optional feature whose dependencies are missing
            continue
        module.register_cli(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from .runner import format_dice, load_episodes, run_episodes, write_run

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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError, RuntimeError) as e:
        print(f"fsm2kit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
