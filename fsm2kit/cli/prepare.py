"""``fsm2kit prepare``: SSL-ALPNet preprocessing of Synapse-CT and CHAOS-MR downloads."""

from __future__ import annotations

import argparse

__all__ = ["register_cli", "cmd_prepare"]


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``prepare synapse|chaos RAW_DIR OUT_DIR`` to the ``fsm2kit`` command line."""
    p = subparsers.add_parser(
        "prepare",
        help="preprocess Synapse-CT (BTCV) or CHAOS-MR downloads as SSL-ALPNet did (PROTOCOL.md 1)",
        description=(
            "Reproduce the SSL-ALPNet preprocessing (PROTOCOL.md section 1). synapse: RAW_DIR holds "
            "img/imgXXXX.nii.gz and label/labelXXXX.nii.gz. chaos: RAW_DIR holds "
            "MR/<id>/T2SPIR/{DICOM_anon,Ground}. Writes image_<id>.nii.gz, label_<id>.nii.gz, "
            "classmap_1.json, SHA256SUMS and prepare.json into OUT_DIR."
        ),
    )
    p.add_argument("dataset", choices=["synapse", "chaos"], type=str.lower, help="which download")
    p.add_argument("raw_dir", help="the raw download folder")
    p.add_argument("out_dir", help="output folder (e.g. sabs_CT_normalized / chaos_MR_T2_normalized)")
    p.add_argument("--overwrite", action="store_true", help="replace prepared files already in OUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_prepare)
    return p


def cmd_prepare(args: argparse.Namespace) -> int:
    """Handler of ``fsm2kit prepare``."""
    from ..io.preparation import check_prepare_output, prepare_chaos, prepare_synapse

    # RAW_DIR is never written to (OUT_DIR not inside it, as run, segment and inspect), before any scan is read
    check_prepare_output(args.raw_dir, args.out_dir, overwrite=args.overwrite, cli=True)
    fn = prepare_synapse if args.dataset == "synapse" else prepare_chaos
    rep = fn(args.raw_dir, args.out_dir, overwrite=args.overwrite, progress=not args.no_progress)
    print(f"{rep.dataset}: {len(rep.scans)} scans prepared in {rep.seconds:.1f} s -> {rep.out_dir}")
    for s in rep.scans:
        print(f"  {s.image.name} <- {s.raw_id}  shape (x, y, z) {s.shape_xyz}")
    print(f"  {rep.classmap.name}, SHA256SUMS, {rep.manifest.name}")
    return 0
