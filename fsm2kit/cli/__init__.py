"""The ``fsm2kit`` command line: one module per subcommand.

This is the only room that parses arguments, sets torch's thread count or precision flags.
Building the parser imports no torch, pandas or nibabel (``fsm2kit --help`` stays fast): each
subcommand imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["main", "build_parser", "SUBCOMMANDS"]

#: Subcommand modules (``fsm2kit.cli.<name>``), each with ``register_cli(subparsers)``.
SUBCOMMANDS: tuple[str, ...] = ("run", "segment", "inspect", "batch", "prepare", "strategies")


def build_parser() -> argparse.ArgumentParser:
    """The ``fsm2kit`` parser with every subcommand."""
    from ..core.version import __version__

    parser = argparse.ArgumentParser(
        prog="fsm2kit",
        description="Training-free few-shot medical image segmentation with SAM2 (FS-MedSAM2).",
    )
    parser.add_argument("--version", action="version", version=f"fsm2kit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for a bad input, with one message)."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for the provenance record
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError, RuntimeError) as e:
        print(f"fsm2kit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
