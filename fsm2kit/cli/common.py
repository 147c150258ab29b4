"""Options shared by the subcommands that run SAM2, and the model/engine they ask for."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["add_model_args", "check_model_args", "model_from_args", "engine_from_args", "EPISODE_FAMILIES",
           "strategy_flags", "Strategies", "add_plugins_arg", "add_strategy_args", "strategies_from_args",
           "add_overwrite_arg", "check_outputs", "check_output_folder", "checks_passed", "claim_output",
           "check_device_arg", "check_order_applies"]


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The model options every subcommand that runs SAM2 shares."""
    from ..model.specs import MODELS, PRECISIONS

    p.add_argument("--model", default="sam2-tiny", metavar="NAME",
                   help=f"model: {', '.join(MODELS)} (default sam2-tiny; medsam2: MedSAM2, 512 px, CC-BY-SA-4.0)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="checkpoint file, a released file name of the model (e.g. MedSAM2_CTLesion.pt: downloaded), "
        "or 'random' for random weights (smoke runs); omitted: download the model's released checkpoint "
        "by name (needs internet; cached)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of random weights, 0 to 2**63 - 1 (default 0)")
    p.add_argument("--image-size", type=int, default=None,
                   help="SAM2 input size: a multiple of 64 from 128 to 2048 (default: the model's own, 1024 for "
                        "SAM2 as published, 512 for medsam2; 256 for a fast smoke run; the memory attention's RoPE "
                        "sizes follow)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="fp32, or bf16 autocast (default: bf16 on CUDA as published, fp32 elsewhere; bf16 on the "
                        "CPU runs the GPU's dtype path)")
    p.add_argument("--device", default=None, choices=["cpu", "cuda", "mps"], help="default: cuda, mps, cpu")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--object-batch-size", type=int, default=None,
                   help="tracking steps of independent runs (organs, per-query plans) per SAM2 forward "
                   "(default 16 on CUDA, 1 on CPU)")
    p.add_argument("--compile-encoder", action="store_true",
                   help="torch.compile the image encoder (worth it on a GPU for long runs)")


def check_model_args(args: argparse.Namespace) -> None:
    """Check the options of :func:`add_model_args` without loading anything (one-line ValueError).

    Model name, image size (and a note on stderr when it is not the size a model was trained at),
    precision, threads, object batch size, that a ``--checkpoint`` file exists and holds the
    model's architecture (a few keys read, no model built), or is a released file name of the model.
    """
    from ..model.specs import (MAX_IMAGE_SIZE, check_model_image_size, check_precision, check_seed, release_file,
                               resolve_spec)

    spec = resolve_spec(args.model)
    try:
        note = check_model_image_size(spec.name, args.image_size)
    except ValueError:
        raise ValueError(f"--image-size {args.image_size}: valid sizes are multiples of 64 from 128 to "
                         f"{MAX_IMAGE_SIZE} (128, 192, 256, ...; 1024 as published, 256 or 512 for fast smoke "
                         "runs).") from None
    if note:
        print(f"NOTE: {note}.", file=sys.stderr)
    try:
        check_seed(args.seed)
    except ValueError:
        raise ValueError(f"--seed {args.seed}: a seed is an integer from 0 to 2**63 - 1.") from None
    check_device_arg(getattr(args, "device", None))
    try:
        check_precision(getattr(args, "precision", None), getattr(args, "device", None))
    except ValueError as e:
        raise ValueError(f"--{e}") from None
    for flag, value in (("--threads", getattr(args, "threads", None)),
                        ("--object-batch-size", getattr(args, "object_batch_size", None))):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1, got {value}.")
    ck = args.checkpoint
    if ck is not None and str(ck) != "random":
        path = Path(ck).expanduser()
        if not path.exists() and release_file(spec, str(ck)):
            return  # a released file name: downloaded by name when the model loads
        if path.is_dir():
            raise IsADirectoryError(f"--checkpoint {ck} is a folder; pass the checkpoint file in it "
                                    f"(e.g. {path / 'sam2_hiera_tiny.pt'}), or 'random'.")
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint file {str(ck)!r} does not exist; pass a SAM2 .pt file, "
                                    "'random' for random weights, or leave --checkpoint out to download.")
        from ..model.loading import check_checkpoint

        check_checkpoint(spec.name, path)  # another architecture: one line, before any model is built


def check_device_arg(device: str | None) -> None:
    """``--device cuda`` / ``mps`` only where torch sees one (imports torch; loads no model)."""
    if device not in ("cuda", "mps"):
        return
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: torch sees no CUDA GPU on this machine (or this torch is a CPU build); "
                         "use --device cpu, or leave --device out to take the best one available.")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError("--device mps: Apple's MPS is not available on this machine; use --device cpu, or leave "
                         "--device out to take the best one available.")


def check_order_applies(setting: str, order: str | None, *, prompts: str | None = None,
                        support_select: str | None = None) -> None:
    """Options that do not apply to ``setting`` are refused in the command line's words (never
    dropped): ``--order`` or ``--prompts`` with 1S1Q / 3S1Q (each query slice segmented alone: no
    order, no propagation to correct), ``--support-select similar:query`` with S1SFQ / 3SFQ."""
    fq = str(setting).upper().endswith("FQ")
    if order is not None and not fq:
        raise ValueError(f"--order {order} does not apply to {setting}: it segments each query slice on its own, "
                         "so there is no processing order; leave --order out (it applies to S1SFQ and 3SFQ).")
    if prompts is not None and not fq:
        raise ValueError(f"--prompts {prompts}: corrections need a propagation to correct, but {setting} segments "
                         "each query slice on its own; use --setting S1SFQ or 3SFQ.")
    if support_select is not None and fq and str(support_select).strip().lower().replace(" ", "") == "similar:query":
        raise ValueError(f"--support-select similar:query chooses a support per query slice, which only 1S1Q and "
                         f"3S1Q can use; {setting} runs every slice in one memory state: use --support-select similar.")


def checks_passed(args: argparse.Namespace) -> None:
    """Mark that every argument was checked: errors from here on are failures (exit 1), not usage (2)."""
    args.checks_passed = True


def add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    """``--overwrite``: replace an earlier output (default: refuse it)."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} if it exists (default: refuse); the new output replaces it all at once")


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.expanduser(os.fspath(p))))


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: dict[str, str | os.PathLike], inputs: dict[str, str | os.PathLike | None]) -> None:
    """Refuse outputs that are, lie inside, or contain one of the inputs.

    Parameters
    ----------
    outputs : {what: path}
        E.g. ``{"--out": ..., "the sidecar": ...}``.
    inputs : {option: path or None}
        E.g. ``{"--image": ..., "--support-mask": ...}`` (None: not given; ``"random"`` ignored).

    Raises
    ------
    ValueError
        One line naming the output and the input it would write over.
    """
    for what, out in outputs.items():
        o = Path(out)
        for flag, inp in inputs.items():
            if inp is None or str(inp) == "random":
                continue
            i = Path(inp)
            if _same(o, i):
                raise ValueError(f"{what} {out} is the input {flag} {inp}: fsm2kit never writes over its inputs; "
                                 "choose another output.")
            if _real(i) in _real(o).parents:
                raise ValueError(f"{what} {out} lies inside the input folder {flag} {inp}; choose an output "
                                 "outside it.")
            if _real(o) in _real(i).parents:
                raise ValueError(f"{what} {out} contains the input {flag} {inp}, which replacing the output "
                                 "would delete; choose another output.")


def check_output_folder(out: str | os.PathLike, *, overwrite: bool, kind: str = "experiment") -> None:
    """An output folder: not the working folder (``.``) or one above it, not a file, writable, and
    new, empty or (with ``overwrite``) an fsm2kit output of ``kind``
    (:func:`fsm2kit.records.fileio.check_replaceable`: a folder of other files is refused, whatever
    the flags)."""
    from ..records.fileio import check_can_create, check_replaceable, holds_working_folder

    o = Path(out)
    if holds_working_folder(o):
        raise ValueError(f"--out {out} is the folder you are working in (or holds it); the output replaces its "
                         "folder all at once, so give a new folder, e.g. --out results/run1.")
    if o.exists() and not o.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; give a folder.")
    check_can_create(o / "x")
    check_replaceable(o, kind=kind, overwrite=overwrite)


@contextmanager
def claim_output(out: str | os.PathLike, companions=None):
    """Hold ``--out``'s lock for the rest of the command (a second run to the same ``--out`` is
    refused before its model loads); then repair what a crash left beside it, said on stderr
    (:func:`fsm2kit.records.fileio.recover_output`; with ``companions``, the files written with
    it, :func:`fsm2kit.records.fileio.recover_group`)."""
    from ..records.fileio import output_lock, recover_group, recover_output

    with output_lock(out):
        notes = recover_output(out) if companions is None else recover_group(out, companions)
        for note in notes:
            print(f"fsm2kit: note: {note}.", file=sys.stderr)
        yield


def model_from_args(args: argparse.Namespace, *, meaningless: str = "the numbers mean nothing"):
    """Load the SAM2 model the options of :func:`add_model_args` ask for.

    Sets the torch thread count when ``--threads`` is given, and says on stderr when the
    weights are random.
    """
    import torch

    from ..model.loading import load_sam2

    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_sam2(args.model, args.checkpoint, seed=args.seed, image_size=args.image_size,
                          device=args.device, progress=not args.no_progress,
                          compile_encoder=bool(getattr(args, "compile_encoder", False)),
                          precision=getattr(args, "precision", None))
    if model.random_weights:
        print(f"WARNING: {model.name} has RANDOM WEIGHTS (seed {model.seed}): a smoke run; {meaningless}.",
              file=sys.stderr)
    return model


def engine_from_args(model, args: argparse.Namespace):
    """An :class:`~fsm2kit.engine.Engine` with the options of :func:`add_model_args`."""
    from ..engine.engine import Engine

    return Engine(model, progress=not args.no_progress, object_batch_size=getattr(args, "object_batch_size", None))


# ----------------------------------------------------------------------------- strategies
#: The families of the commands that run episodes (``run``, ``inspect``); ``segment`` adds the stopping rule.
EPISODE_FAMILIES = ("ordering", "support selector", "memory policy", "refinement")


def strategy_flags() -> dict[str, tuple[str, str]]:
    """``{family: (option, dest)}`` of every registered family with a command-line option, in the
    registries' order (:data:`fsm2kit.strategies.registry.FAMILY_MODULES` first)."""
    from ..strategies.registry import registries

    return {f: (r.option, r.dest) for f, r in registries().items() if r.option}


@dataclass(frozen=True)
class Strategies:
    """The strategies a command asked for, resolved.

    ``chosen`` maps each family the command has an option for to its strategy (None: the option
    was left to the command's own default, e.g. ``segment --order``); ``ordering``,
    ``support_selector``, ``memory_policy`` and ``stopping`` read it (None: no such option).
    """

    chosen: dict = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    support_views: int | None = None

    def get(self, family: str) -> object:
        """The strategy of ``family`` (None: not asked for)."""
        return self.chosen.get(family)

    ordering = property(lambda self: self.get("ordering"))
    support_selector = property(lambda self: self.get("support selector"))
    memory_policy = property(lambda self: self.get("memory policy"))
    refinement = property(lambda self: self.get("refinement"))
    stopping = property(lambda self: self.get("stopping rule"))

    def names(self) -> dict[str, str]:
        """``{"order": ..., "support_select": ..., "memory_policy": ..., "stop": ...}`` for provenance
        (the options the command has and that were given or have a default; keyed by the option's
        dest), plus ``support_views`` and ``plugins`` when present."""
        from ..records.naming import strategy_name

        flags = strategy_flags()
        out: dict = {}
        for family, obj in self.chosen.items():
            if obj is not None:
                out[flags[family][1]] = strategy_name(obj)
        if self.support_views is not None:
            out["support_views"] = self.support_views
        if self.plugins:
            out["plugins"] = list(self.plugins)
        return out


def add_plugins_arg(p: argparse.ArgumentParser) -> None:
    """``--plugins MODULE`` (repeatable): modules (or .py files) imported first, registering strategies."""
    if any("--plugins" in a.option_strings for a in p._actions):
        return
    p.add_argument("--plugins", action="append", default=[], metavar="MODULE",
                   help="import MODULE (a module name or a .py file) first: it registers your own strategies "
                        "(repeatable; see fsm2kit strategies)")


def add_strategy_args(
    p: argparse.ArgumentParser,
    families: tuple[str, ...] = EPISODE_FAMILIES,
    *,
    views: bool = False,
    defaults: dict[str, str | None] | None = None,
    notes: dict[str, str] | None = None,
) -> None:
    """The strategy options of ``families`` (each registry's ``option``: ``--order``,
    ``--support-select``, ``--memory-policy``, ``--stop``, ...), ``--plugins`` (and
    ``--support-views N`` with ``views=True``): one definition for every command.

    Each option takes ``NAME`` or ``NAME:ARG`` of its family's registry; the help lists the
    registered names (built-ins and those registered so far; no entry points, no torch).
    ``defaults`` maps a family to another default spec, or to None: the option is not set unless
    given (the command decides; ``notes[family]`` says what happens then in the help). Names are
    checked by :func:`strategies_from_args`, after the plugins are loaded.
    """
    flags = strategy_flags()
    from ..strategies.registry import registries

    regs = registries()
    defaults = dict(defaults or {})
    notes = dict(notes or {})
    unknown = sorted((set(families) | set(defaults) | set(notes)) - set(flags))
    if unknown:
        raise ValueError(f"add_strategy_args: unknown families {unknown}; expected {list(flags)}")
    for family in flags:  # the registries' order
        if family not in families:
            continue
        flag, dest = flags[family]
        reg = regs[family]
        default = defaults.get(family, reg.default)
        said = notes.get(family) or f"default {default if default is not None else reg.default}"
        p.add_argument(flag, dest=dest, default=default, metavar="NAME[:ARG]",
                       help=f"{family}: {', '.join(reg.usages(plugins=False))} ({said}); --plugins adds your own")
    if views:
        p.add_argument("--support-views", dest="support_views", default="0", metavar="N",
                       help="augmented views per support, 0..5 (default 0): the first N of horizontal flip, "
                            "scale 1.1, scale 0.9, gamma 0.8, gamma 1.25, as further conditioning memories "
                            "(an exploration aid)")
    add_plugins_arg(p)


def strategies_from_args(args: argparse.Namespace) -> Strategies:
    """Load ``--plugins``, then resolve the strategy options of :func:`add_strategy_args`.

    An option left unset (default None) resolves to None: the command's own default applies.

    Raises
    ------
    ValueError
        One line, for a plugin that fails to import or an unknown name / bad argument (before
        any model is loaded).
    """
    from ..strategies.plugins import load_plugins
    from ..strategies.registry import registries

    loaded = load_plugins(getattr(args, "plugins", None) or [])
    regs = registries()
    chosen = {}
    for family, (_, dest) in strategy_flags().items():
        if hasattr(args, dest):
            spec = getattr(args, dest)
            chosen[family] = None if spec is None else regs[family].get(spec)
    views = None
    if hasattr(args, "support_views"):
        from ..strategies.views import check_views

        try:
            views = check_views(args.support_views)
        except ValueError as e:
            raise ValueError(f"--support-views {args.support_views}: {e}") from None
    return Strategies(chosen, plugins=tuple(loaded), support_views=views)
