"""``fsm2kit strategies``: every registered strategy family (orderings, support selectors, memory policies,
stopping rules, and any family added to :data:`fsm2kit.strategies.registry.FAMILY_MODULES` or by a
plugin) with its option and its strategies."""

from __future__ import annotations

import argparse

from .common import add_plugins_arg

__all__ = ["register_cli", "cmd_strategies", "format_strategies"]


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``fsm2kit strategies [--plugins MODULE ...]``."""
    p = subparsers.add_parser(
        "strategies",
        help="list the registered strategies (orderings, support selectors, memory policies, stopping rules)",
        description="List every strategy family and its registered strategies, one line each: built-ins, those "
        "installed packages register (entry-point group fsm2kit.strategies), and those of --plugins modules. "
        "Use a name as NAME or NAME:ARG with the option shown next to its family.",
    )
    add_plugins_arg(p)
    p.set_defaults(func=cmd_strategies)
    return p


def format_strategies() -> str:
    """Every family (with its option and default) and every entry, one line each."""
    from ..strategies.registry import registries

    regs = registries()
    width = max((len(e.usage) for r in regs.values() for e in r.entries()), default=8)
    lines = []
    for family, reg in regs.items():
        flag = reg.option
        opts = ", ".join(x for x in (flag, f"default {reg.default}" if reg.default else "") if x)
        lines.append(f"{family}{f' ({opts})' if opts else ''}: {reg.description}")
        for e in reg.entries():
            notes = "; ".join(x for x in (e.details, "" if e.builtin else f"from {e.origin}") if x)
            lines.append(f"  {e.usage:<{width}}  {e.summary}" + (f"  [{notes}]" if notes else ""))
    lines.append("support views (--support-views N, default 0): N = 0..5 augmented copies of each support as further "
                 "conditioning memories, in this order: hflip, scale:1.1, scale:0.9, gamma:0.8, gamma:1.25 "
                 "(an exploration aid)")
    return "\n".join(lines)


def cmd_strategies(args: argparse.Namespace) -> int:
    """Handler of ``fsm2kit strategies``."""
    from ..strategies.plugins import load_plugins

    load_plugins(args.plugins)
    print(format_strategies())
    return 0
