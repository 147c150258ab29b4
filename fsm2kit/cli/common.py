"""Options shared by the subcommands that run SAM2, and the model/engine they ask for."""

from __future__ import annotations

import argparse
import sys
import warnings

__all__ = ["add_model_args", "model_from_args", "engine_from_args"]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model options every subcommand that runs SAM2 shares."""
    from ..core.specs import MODELS

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

    from ..core.models import load_sam2

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
    from ..core.engine import Engine

    return Engine(model, progress=not args.no_progress, object_batch_size=getattr(args, "object_batch_size", None))
