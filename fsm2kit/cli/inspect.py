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
    p.add_argument("--max-slices", type=int, default=None,
                   help="at most N query slices, evenly spaced over the range (first and last kept)")
    p.add_argument("--pixel", type=int, nargs=2, metavar=("Y", "X"), default=None,
                   help="query pixel of the attention panels (default: centre of the predicted foreground)")
    p.add_argument("--panels", type=int, default=3, help="slices with attention panels (default 3)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing each layer's output from the captured weights")
    p.add_argument("--out", required=True, help="output folder")
    add_model_args(p)
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    from ..inspector.capture import inspect_episode
    from ..inspector.views import write_inspection
    from ..io.volumes import example_episodes
    from ..workflows.episodes import load_episodes, subset_episode
    from ..workflows.provenance import command_line, inspection_provenance

    if args.episodes is None:
        episodes = example_episodes()
    else:
        episodes = load_episodes(args.episodes, dataset=args.dataset, fold=args.fold, label=args.label)
    if not 0 <= args.episode_index < len(episodes):
        raise ValueError(f"--episode-index {args.episode_index}: the folder has {len(episodes)} episode(s) "
                         f"(0..{len(episodes) - 1}).")
    episode = episodes[args.episode_index]
    if args.max_slices is not None:
        if args.max_slices < 1:
            raise ValueError(f"--max-slices must be >= 1, got {args.max_slices}.")
        episode = subset_episode(episode, max_slices=args.max_slices)
    model = model_from_args(args, meaningless="the attention content is meaningless")
    engine = engine_from_args(model, args)
    insp = inspect_episode(engine, episode, args.setting, order=args.order, layers=args.layers,
                           verify=not args.no_verify)
    pixel = tuple(args.pixel) if args.pixel else None
    record = inspection_provenance(insp, command=command_line(getattr(args, "argv", None)))
    paths = write_inspection(insp, args.out, panels=args.panels, pixel=pixel, provenance=record.to_dict())
    print(insp)
    if insp.max_rel_error is not None:
        print(f"capture check: max relative error of the recomputed layer outputs {insp.max_rel_error:.1e}")
    share = insp.shares().groupby("group")["mass"].mean()
    print("mean attention share (all query tokens, all layers): "
          + ", ".join(f"{g} {v:.3f}" for g, v in share.items()) + f"  [{insp.weights}]")
    print("Outputs:")
    for p in paths.values():
        print(f"  {p}")
    return 0
