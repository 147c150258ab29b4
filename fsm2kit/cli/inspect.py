"""``fsm2kit inspect``: memory-attention masses, charts and panels of one run.

The options, the episode and ``--out`` are checked before the model loads; the output folder is
built beside ``--out`` and renamed into place when complete (``--overwrite`` to replace one).
"""

from __future__ import annotations

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
    engine_from_args,
    model_from_args,
    strategies_from_args,
)

__all__ = ["register_cli"]


def register_cli(subparsers) -> None:
    """Add ``fsm2kit inspect``: memory-attention masses, charts and panels of one run."""
    from ..engine.plans import SETTINGS

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
    p.add_argument("--layers", type=int, nargs="+", default=None, help="memory-attention layers (default all)")
    p.add_argument("--max-slices", type=int, default=None,
                   help="only N query slices, evenly spaced over the query range (first and last included)")
    p.add_argument("--pixel", type=int, nargs=2, metavar=("Y", "X"), default=None,
                   help="query pixel of the attention panels (default: centre of the predicted foreground)")
    p.add_argument("--panels", type=int, default=3, help="slices with attention panels (default 3)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip recomputing each layer's output from the captured weights")
    p.add_argument("--out", required=True, help="output folder (built beside it, then renamed into place)")
    add_overwrite_arg(p, "an existing --out folder")
    # --order (FQ), --support-select, --memory-policy, --plugins: the registries' options, as run and segment
    add_strategy_args(p, EPISODE_FAMILIES, defaults={"ordering": None},
                      notes={"ordering": "default middle; S1SFQ and 3SFQ only"})
    add_model_args(p)
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    import contextlib

    with contextlib.ExitStack() as args.exit_stack:  # --out's lock, taken once --out is checked
        return _inspect(args)


def _inspect(args) -> int:
    from ..studies.run_inspection import inspect_run
    from ..records.provenance import command_line

    check_model_args(args)
    for flag, v in (("--episode-index", args.episode_index), ("--panels", args.panels)):
        if v < 0:
            raise ValueError(f"{flag} must be >= 0, got {v}.")
    if args.max_slices is not None and args.max_slices < 1:
        raise ValueError(f"--max-slices must be >= 1, got {args.max_slices}.")
    check_outputs({"--out": args.out}, {"--episodes": args.episodes, "--checkpoint": args.checkpoint,
                                        **{f"--plugins {m}": m for m in (args.plugins or []) if m.endswith(".py")}})
    check_output_folder(args.out, overwrite=args.overwrite, kind="inspect")
    args.exit_stack.enter_context(claim_output(args.out))
    strategies = strategies_from_args(args)  # plugins first; bad names fail here, in one line, before any model
    check_order_applies(args.setting, args.order)  # 1S1Q/3S1Q have no order: refused, never dropped
    if str(args.support_select or "").strip().lower() == "similar:query":
        raise ValueError("--support-select similar:query chooses a support per query slice; an inspection runs the "
                         "episode with one support per chunk: use --support-select similar (or fsm2kit run for "
                         "1S1Q/3S1Q).")

    def check(episode):  # called by inspect_run once the episode is loaded, before the model
        from ..studies.run_inspection import check_inspection

        check_inspection(episode, args.setting, ordering=strategies.ordering, pixel=args.pixel, layers=args.layers,
                         model=args.model, names={"pixel": "--pixel", "order": "--order", "layers": "--layers"})

    def engine():  # called by inspect_run once the episode is loaded (bad input fails before)
        checks_passed(args)
        model = model_from_args(args, meaningless="the attention content is meaningless")
        return engine_from_args(model, args)

    insp = inspect_run(
        setting=args.setting, order=strategies.ordering, memory_policy=strategies.memory_policy,
        support_selector=strategies.support_selector, episodes=args.episodes, episode_index=args.episode_index,
        dataset=args.dataset, fold=args.fold, label=args.label, engine=engine,
        max_slices=args.max_slices, layers=args.layers, verify=not args.no_verify, output_dir=args.out,
        panels=args.panels, pixel=tuple(args.pixel) if args.pixel else None,
        command=command_line(getattr(args, "argv", None)), overwrite=args.overwrite, check=check,
    )  # the folder is built beside --out and swapped in when complete
    print(insp)
    if insp.max_rel_error is not None:
        print(f"capture check: max relative error of the recomputed layer outputs {insp.max_rel_error:.1e}")
    from ..inspector.inspection import MEAN_SHARE_NOTE

    share = insp.mean_shares()
    print("mean attention share (all query tokens): "
          + ", ".join(f"{g} {v:.3f}" for g, v in share.items())
          + f"; {MEAN_SHARE_NOTE.format(n=share.attrs['n_slices'])}  [{insp.weights}]")
    print("Outputs:")
    for p in insp.files.values():
        print(f"  {p}")
    return 0
