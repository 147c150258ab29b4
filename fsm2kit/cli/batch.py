"""``fsm2kit batch``: a sweep of parameterized notebooks through papermill on Dask."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register_cli", "main"]


def register_cli(subparsers) -> argparse.ArgumentParser:
    """Add ``fsm2kit batch SWEEP.yaml`` to an argparse subparsers object."""
    p = subparsers.add_parser(
        "batch",
        help="run a sweep of parameterized notebooks through papermill into reports/",
        description="Run every unfinished run of a sweep (a notebook x a parameter grid) through papermill "
        "on a Dask cluster; write reports/<sweep>/<run>/ and reports/<sweep>/index.{csv,html}. "
        "Rerunning skips finished runs and retries failed ones.",
    )
    p.add_argument("sweep", help="sweep YAML file (e.g. sweeps/smoke_2x2.yaml)")
    p.add_argument("--reports", default="reports", help="reports folder (default: reports)")
    p.add_argument("--workers", type=int, default=2, help="local Dask worker processes (default 2)")
    p.add_argument("--scheduler", default=None,
                   help="address of an existing Dask scheduler, tls://HOST:PORT (default: a local cluster with "
                   "TLS and temporary credentials, on 127.0.0.1, no dashboard); its workers need the sweep's "
                   "folders on a shared file system")
    p.add_argument("--tls-ca-file", default=None, metavar="PEM",
                   help="with --scheduler: CA certificate of the cluster (default: Dask's config distributed.comm.tls)")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="with --scheduler: this client's certificate")
    p.add_argument("--tls-key", default=None, metavar="PEM",
                   help="with --scheduler: this client's private key (default: in --tls-cert)")
    p.add_argument("--insecure", action="store_true",
                   help="accept a --scheduler address without tls:// or wss:// (plain TCP: anyone who reaches the "
                        "scheduler can run code on its workers); default: refused")
    p.add_argument("--only", nargs="+", default=None, metavar="RUN", help="run only these runs")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their status, run nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_batch)
    return p


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch.sweep_index import collect_index
    from ..batch.sweep_spec import load_sweep
    from ..batch.sweep_spec import WORK_DIR
    from ..batch.sweeps import check_scheduler, plan_runs, run_sweep

    check_scheduler(args.scheduler, insecure=args.insecure)
    security = _security(args)
    sweep = load_sweep(args.sweep)
    if args.dry_run:
        index = collect_index(sweep, args.reports)
        print(repr(sweep))
        print(index[["run", "status", *[k for k, _ in sweep.grid]]].to_string(index=False))
        _, pending, rerun = plan_runs(sweep.runs(args.reports))
        for name, why in rerun.items():
            print(f"would rerun {name}: {why}")
        for spec in pending:
            why = spec.in_the_way()
            if why:
                print(f"would move {spec.folder} aside to {spec.folder.parent / WORK_DIR / 'kept' / spec.name}-<time>/ "
                      f"when the run succeeds (never deleted): {why}")
        return 0
    res = run_sweep(sweep, reports=args.reports, workers=args.workers, scheduler=args.scheduler,
                    security=security, only=args.only, progress=not args.no_progress, insecure=args.insecure)
    for name, why in res.rerun.items():
        print(f"reran {name}: {why}")
    for name, where in res.kept.items():
        print(f"moved the folder in the place of run {name} aside, kept (not deleted): {where}")
    cols = ["run", "status", "seconds", "dice_pooled", "dice_mean_per_volume", "weights", "error"]
    from ..tables.dice_table import short_sha

    shown = res.index[cols].assign(weights=[short_sha(w) if isinstance(w, str) else w for w in res.index["weights"]])
    print(shown.to_string(index=False, na_rep="", float_format=lambda x: f"{x:.4f}"))  # full sha in index.csv
    if res.index["weights"].astype(str).str.contains("random weights").any():
        print("NOTE: runs with 'random weights' are smoke runs: their Dice numbers mean nothing.")
    print(repr(res))
    return 0 if not len(res.failed) else 1


def _security(args: argparse.Namespace):
    """A ``distributed.Security`` from --tls-*, or None (Dask's configuration applies)."""
    files = {"--tls-ca-file": args.tls_ca_file, "--tls-cert": args.tls_cert, "--tls-key": args.tls_key}
    given = {k: v for k, v in files.items() if v}
    if not given:
        if args.scheduler and args.insecure and not args.scheduler.lower().startswith(("tls://", "wss://")):
            print("fsm2kit batch: warning: --insecure: the scheduler connection is not encrypted and anyone who "
                  "reaches it can run code as its workers.", file=sys.stderr)
        return None
    if not args.scheduler:
        raise ValueError(f"{', '.join(given)} go with --scheduler (the local cluster makes its own credentials).")
    if not (args.tls_ca_file and args.tls_cert):
        raise ValueError("--scheduler over TLS needs --tls-ca-file and --tls-cert (and --tls-key unless the key "
                         "is in the certificate file).")
    from pathlib import Path

    for flag, f in given.items():
        if not Path(f).is_file():
            raise FileNotFoundError(f"{flag} {f}: no such file.")
    from ..batch.sweep_spec import require_module

    require_module("distributed")
    from distributed import Security

    return Security(tls_ca_file=args.tls_ca_file, tls_client_cert=args.tls_cert, tls_client_key=args.tls_key,
                    require_encryption=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m fsm2kit.cli.batch SWEEP.yaml ...`` (same as ``fsm2kit batch``)."""
    parser = argparse.ArgumentParser(prog="fsm2kit")
    sub = parser.add_subparsers(dest="command", required=True)
    register_cli(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "batch":
        argv = ["batch", *argv]
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError, RuntimeError) as e:
        print(f"fsm2kit batch: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
