"""``fsm2kit inspect``: memory-attention masses, charts and panels of one run."""

from __future__ import annotations

from .common import add_model_args, engine_from_args, model_from_args

__all__ = ["register_cli"]


def register_cli(subparsers) -> None:
    """Add ``fsm2kit inspect``: memory-attention masses, charts and panels of one run."""
    from ..core.plans import ORDERS, SETTINGS

    p = subparsers.add_parser(
        "inspect",
        help="record which memories SAM2 attends to (memory-attention masses, charts, attention panels)",
        description="Segment one episode under a setting while capturing SAM2's memory-attention weights; "
        "write tidy tables (masses.csv: mass per query slice, layer, head and memory entry), charts and "
        "attention panels.",
    )
    p.add_argument("--episodes", default=None,
                   help="npz episode folder or SSL-ALPNet folder (default: the bundled CHAOS case)")
    p.add_argument("--episode-index", type=int, default=0, help="which episode of the folder (default 0)")
    p.add_argument("--dataset", default=None, choices=["SABS", "CHAOST2"], type=str.upper)
    p.add_argument("--fold", type=int, default=None)
    p.add_argument("--label", default=None, help="class name or id (dataset folders)")
    p.add_argument("--setting", required=True, choices=SETTINGS, type=str.upper)
    p.add_argument("--order", default="middle", choices=ORDERS, help="FQ settings only (default middle)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="memory-attention layers (default all)")
    p.add_argument("--max-slices", type=int, default=None, help="only the middle N query slices")
    p.add_argument("--pixel", type=int, nargs=2, metavar=("Y", "X"), default=None,
                   help="query pixel of the attention panels (default: centre of the predicted foreground)")
    p.add_argument("--panels", type=int, default=3, help="slices with attention panels (default 3)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing each layer's output from the captured weights")
    p.add_argument("--out", required=True, help="output folder")
    add_model_args(p)
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    from ..workflows.inspection import inspect_run
    from ..workflows.provenance import command_line

    def engine():
        model = model_from_args(args, meaningless="the attention content is meaningless")
        return engine_from_args(model, args)

    insp = inspect_run(
        setting=args.setting, order=args.order, episodes=args.episodes, episode_index=args.episode_index,
        dataset=args.dataset, fold=args.fold, label=args.label, engine=engine,
        max_slices=args.max_slices, layers=args.layers, verify=not args.no_verify, output_dir=args.out,
        panels=args.panels, pixel=tuple(args.pixel) if args.pixel else None,
        command=command_line(getattr(args, "argv", None)),
    )
    print(insp)
    if insp.max_rel_error is not None:
        print(f"capture check: max relative error of the recomputed layer outputs {insp.max_rel_error:.1e}")
    share = insp.shares().groupby("group")["mass"].mean()
    print("mean attention share (all query tokens, all layers): "
          + ", ".join(f"{g} {v:.3f}" for g, v in share.items()) + f"  [{insp.weights}]")
    print("Outputs:")
    for p in insp.files.values():
        print(f"  {p}")
    return 0
