"""The ``fsm2kit`` command line: one module per subcommand (``run``, ``segment``, ``inspect``,
``batch``, ``prepare``, ``strategies``), and ``common``: the options they share (model,
strategies, outputs) and the model and engine they ask for.

This is the only package that parses arguments, sets torch's thread count or precision flags.
Building the parser imports no torch, pandas or nibabel (``fsm2kit --help`` stays fast): each
subcommand imports what it needs when it runs.

Errors (:func:`main`): every error is one line ``fsm2kit CMD: error: ...`` on stderr and an exit
code: **2** for a usage error (a bad option or input, found while the command checks its
arguments, before any model loads), **1** for a failure once the checks passed (loading the
model, computing, writing), **130** for Ctrl-C (``interrupted; nothing written`` for the
commands whose outputs appear all at once). ``--debug`` (before or after the subcommand) also
prints the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys

__all__ = ["main", "build_parser", "SUBCOMMANDS", "EXIT_USAGE", "EXIT_FAILURE", "EXIT_INTERRUPTED"]

#: Subcommand modules (``fsm2kit.cli.<name>``), each with ``register_cli(subparsers)``.
SUBCOMMANDS: tuple[str, ...] = ("run", "segment", "inspect", "batch", "prepare", "strategies")
#: Exit codes: a usage error (bad option or input), a failure after the checks, Ctrl-C.
EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 2, 1, 130
#: What Ctrl-C leaves behind, per command (default: nothing, the outputs appear all at once).
_INTERRUPTED = {
    "batch": "runs finished before the interrupt are kept; rerun to continue",
    "prepare": "scans prepared before the interrupt may remain; rerun with --overwrite",
}
#: Exceptions that mean "bad input" while a command checks its arguments (exit 2).
_INPUT_ERRORS = (ValueError, TypeError, LookupError, OSError)


class _Parser(argparse.ArgumentParser):
    """argparse, plus a hint for option values that start with '-' (``--ct-window=-125,275``)."""

    argv: list[str] = []

    def error(self, message: str):  # type: ignore[override]
        m = re.match(r"argument ((?:-\w|--[\w-]+))(?:/[\w-]+)*: expected (?:one|\d+) argument", message)
        if m:
            opt = m.group(1)
            argv = type(self).argv
            nxt = next((argv[i + 1] for i, a in enumerate(argv[:-1]) if a == opt), None)
            if nxt is not None and nxt.startswith("-"):
                message += (f"; a value that starts with '-' must be joined to its option with '=': "
                            f"{opt}={nxt}")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The ``fsm2kit`` parser with every subcommand."""
    from ..model.specs import MODELS
    from ..version import __version__

    groups: dict = {}
    for m in MODELS.values():  # the table, grouped by default size and licence
        groups.setdefault((m.image_size, m.licence), []).append(m.name)
    models = "; ".join(f"{', '.join(names)} ({size} px, {lic})" for (size, lic), names in groups.items())
    parser = _Parser(
        prog="fsm2kit",
        description="Training-free few-shot medical image segmentation with SAM2 (FS-MedSAM2). Errors: one "
        "line and exit code 2 (bad usage or input, found before any model loads), 1 (a failure later), "
        "130 (Ctrl-C); --debug shows the traceback.",
        epilog=f"Models (--model): {models}.",
    )
    parser.add_argument("--version", action="version", version=f"fsm2kit {__version__}")
    parser.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"{__name__}.{name}").register_cli(sub)
    for p in sub.choices.values():
        if not any("--debug" in a.option_strings for a in p._actions):
            p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                           help="on an error, also print the traceback")
    return parser


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    if not isinstance(e, _INPUT_ERRORS + (RuntimeError,)) or not text:
        text = f"{type(e).__name__}: {text}" if text else type(e).__name__
    return text


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    import traceback

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    _Parser.argv = argv
    args = parser.parse_args(argv)
    args.argv = argv  # the command line as given, for the provenance record
    debug = bool(getattr(args, "debug", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"fsm2kit {args.command}: interrupted; {_INTERRUPTED.get(args.command, 'nothing written')}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # every error: one line (and the traceback with --debug)
        if debug:
            traceback.print_exc()
        checked = bool(getattr(args, "checks_passed", False))
        usage = not checked and isinstance(e, _INPUT_ERRORS)
        hint = "" if usage or debug else " (--debug shows the traceback)"
        print(f"fsm2kit {args.command}: error: {_one_line(e)}{hint}", file=sys.stderr)
        return EXIT_USAGE if usage else EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
