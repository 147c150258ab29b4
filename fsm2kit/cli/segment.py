"""``fsm2kit segment``: own scans (NIfTI/DICOM in, a label volume in the scan's grid out).

The label volume is NIfTI (``--out pred.nii.gz``), or for a DICOM query a DICOM Segmentation
(``--out pred.dcm``) that references the series. Every option and input is checked before the
model loads: ``--out`` (and its sidecar and Dice table) must not be an input and needs
``--overwrite`` to replace an earlier output, ``.dcm`` needs a DICOM query; the label
volume, its JSON sidecar and Dice table are written all or none
(:meth:`~fsm2kit.segment.segment_result.SegmentResult.save`).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path


from .common import (
    EPISODE_FAMILIES,
    add_model_args,
    add_overwrite_arg,
    add_strategy_args,
    check_model_args,
    check_outputs,
    claim_output,
    checks_passed,
    engine_from_args,
    model_from_args,
    strategies_from_args,
)

__all__ = ["register_cli", "cmd_segment"]


def _parse_window(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    if text.strip().lower() in ("abdomen", "soft-tissue", "soft_tissue"):
        from ..protocol.preprocessing import CT_WINDOW

        return CT_WINDOW
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(
            f"--ct-window expects LO,HI in HU, e.g. --ct-window=-125,275 (note the '='), got {text!r}."
        ) from None
    if not lo < hi:
        raise ValueError(f"--ct-window needs LO < HI, got {text!r}.")
    return lo, hi


def register_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``fsm2kit segment`` (own scans: NIfTI/DICOM in, NIfTI label volume out)."""
    p = subparsers.add_parser(
        "segment",
        help="segment a scan from one annotated support slice; writes a label volume in the scan's grid",
        description=(
            "Segment organs of a CT/MR scan (NIfTI file or DICOM folder) from annotated support "
            "slice(s) of another (or the same) scan, propagating through the whole volume and "
            "stopping where SAM2's object score says the organ ends. Writes a uint8/uint16 label "
            "volume with the query's exact grid and a JSON sidecar (provenance, per-slice object "
            "scores). Slice indices count along the scan's inferior->superior axis."
        ),
    )
    p.add_argument("--image", required=True, help="query scan: NIfTI file or DICOM folder")
    p.add_argument("--support-image", required=True, help="annotated scan: NIfTI file or DICOM folder")
    p.add_argument("--support-mask", required=True, help="NIfTI label/mask on the support image's grid")
    p.add_argument("--support-slice", type=int, default=None, metavar="K",
                   help="support slice index K (inferior->superior, 0-based, >= 0) for every label "
                        "(= --support-select given:K)")
    p.add_argument("--labels", default=None,
                   help="labels to segment as name=id in the mask, e.g. liver=5,spleen=1 (the bundled CT's "
                        "TotalSegmentator ids), or 'all'; required when the mask holds several labels")
    p.add_argument("--label-map", default=None, choices=["SABS", "CHAOST2"], type=str.upper,
                   help="the mask uses this dataset's ids (SABS: liver=6, CHAOST2: liver=1): resolve names "
                        "without ids through it; refused if the mask holds ids the map does not have")
    p.add_argument("--start-slice", type=int, default=None, metavar="K",
                   help="first query slice (default: the support's relative position along z); = --order at:K")
    p.add_argument("--patience", type=int, default=None, metavar="N",
                   help="= --stop patience:N (0: --stop none): stop after N consecutive slices with object score "
                        "<= 0; not together with --stop")
    p.add_argument("--ct-window", default=None, metavar="LO,HI",
                   help="clip intensities before SAM2, e.g. --ct-window=-125,275 (or 'abdomen')")
    p.add_argument("--modality", default="", choices=["CT", "MR"], type=str.upper,
                   help="modality recorded on the volumes (default: from DICOM, else unknown)")
    p.add_argument("--ground-truth", default=None,
                   help="query labels (same ids): adds the oracle-range mode and a Dice table")
    p.add_argument("--out", required=True, help="output label volume: .nii.gz (NIfTI), or .dcm (a DICOM "
                   "Segmentation referencing the series; DICOM --image only); the sidecar is <out>.json, e.g. "
                   "pred.nii.gz.json (and <out>.dice.csv with --ground-truth); never one of the inputs")
    p.add_argument("--prompts", default=None, metavar="FILE.json",
                   help="correction rounds after the propagation: a JSON list of rounds, each a list of "
                        '{"z": Z, "points": [[x, y, 1 or 0], ...], "box": [x0, y0, x1, y1]} on slice Z of the query '
                        "as stored (x = column, y = row), with \"label\": NAME when several labels are segmented; "
                        "each round re-propagates (the stopping rule is off for corrected labels)")
    p.add_argument("--max-rounds", type=int, default=100, metavar="N",
                   help="the most correction rounds --prompts may hold (default 100): each round re-propagates, so "
                        "thousands are hours of work")
    add_overwrite_arg(p, "an existing --out (and its sidecar and Dice table)")
    # --order, --support-select (default middle), --memory-policy, --stop, --support-views, --plugins: the
    # registries' options, as run and inspect
    add_strategy_args(
        p, (*EPISODE_FAMILIES, "stopping rule", "ensemble"), views=True,
        defaults={"ordering": None, "support selector": "middle", "stopping rule": None},
        notes={"ordering": "where propagation starts: at:Z slice Z, from:P relative position P, top slice 0, "
                           "middle the middle slice; default the support's relative position"})
    add_model_args(p)
    p.set_defaults(func=cmd_segment)
    return p


def _order_spec(args: argparse.Namespace) -> str | None:
    """``--order`` or ``--start-slice Z`` (= ``at:Z``), checked (one of them); with ``--support-slice``,
    ``--support-select`` must stay at its default. The names themselves are checked by the registry
    (:func:`~fsm2kit.cli.common.strategies_from_args`)."""
    if args.support_slice is not None and args.support_select not in (None, "middle"):
        raise ValueError(f"give --support-slice {args.support_slice} or --support-select {args.support_select}, "
                         "not both (--support-slice K is --support-select given:K).")
    if args.start_slice is not None:
        if args.order is not None and args.order.strip().lower() != f"at:{args.start_slice}":
            raise ValueError(f"give --start-slice {args.start_slice} or --order {args.order}, not both "
                             "(--start-slice Z is --order at:Z).")
        if args.start_slice < 0:
            raise ValueError(f"--start-slice {args.start_slice}: a slice index is >= 0.")
        return f"at:{args.start_slice}"
    return args.order


def _stop_spec(args: argparse.Namespace) -> str | None:
    """``--stop`` or ``--patience N`` (= ``patience:N``; 0 = ``none``), not both; None: the default rule."""
    if args.patience is None:
        return args.stop
    if args.stop is not None:
        raise ValueError(f"give --patience {args.patience} or --stop {args.stop}, not both "
                         "(--patience N is --stop patience:N, --patience 0 is --stop none).")
    if args.patience < 0:
        raise ValueError(f"--patience must be >= 0, got {args.patience}.")
    return f"patience:{args.patience}" if args.patience else "none"


def cmd_segment(args: argparse.Namespace) -> int:
    """Handler of ``fsm2kit segment``."""
    import contextlib

    with contextlib.ExitStack() as args.exit_stack:  # --out's lock, taken once --out is checked
        return _segment(args)


def _segment(args: argparse.Namespace) -> int:
    import numpy as np

    from ..records.fileio import input_record, links_outside
    from ..io.nifti import load_label_nifti
    from ..segment.organs import check_label_map_fits, describe_ids, parse_labels
    from ..records.provenance import RANDOM_NOTE, command_line
    from ..segment.own_scan import (check_corrections_off_support, check_request, constant_volume_note, segment_volume,
                                    start_from_order)
    from ..model.specs import image_size_for
    from ..segment.segment_result import check_dicom_output, check_output, load_scan, output_files

    t0 = time.perf_counter()
    out = Path(args.out)
    # every option and the output first: before reading a scan, and long before any model
    img_file, side_file, dice_file = output_files(out)  # also checks the suffix
    check_outputs({"--out": img_file, "its sidecar": side_file, "its Dice table": dice_file},
                  {"--image": args.image, "--support-image": args.support_image, "--support-mask": args.support_mask,
                   "--ground-truth": args.ground_truth, "--checkpoint": args.checkpoint, "--prompts": args.prompts})
    check_output(out, overwrite=args.overwrite, cli=True)
    # a second segment to the same --out is refused; what a kill left of a replacement is repaired
    args.exit_stack.enter_context(claim_output(out, companions=(side_file, dice_file)))
    check_output(out, overwrite=args.overwrite, cli=True)  # again, now that no other process writes it
    check_dicom_output(out, args.image)  # .dcm: a DICOM query whose slices a SEG can reference
    if args.support_slice is not None and args.support_slice < 0:
        raise ValueError(f"--support-slice {args.support_slice}: slice indices count from 0 (the most inferior "
                         "slice) upwards; negative values are not counted from the end.")
    if args.start_slice is not None and args.start_slice < 0:
        raise ValueError(f"--start-slice must be >= 0, got {args.start_slice}.")
    check_model_args(args)
    window = _parse_window(args.ct_window)
    args.order = _order_spec(args)
    args.stop = _stop_spec(args)
    strategies = strategies_from_args(args)  # plugins, then every name checked by its registry, in one line
    ens = strategies.get("ensemble")
    if ens is not None and any(k == "model" for k, _ in getattr(ens, "axes", ())):
        raise ValueError(f"--ensemble {args.ensemble}: segment runs one model; members over models run in fsm2kit run.")
    order = strategies.ordering
    for flag, folder in (("--image", args.image), ("--support-image", args.support_image)):
        for link in links_outside(folder):  # followed, and recorded in the sidecar
            print(f"fsm2kit: note: {flag} {folder}: {link['name']} is a link to {link['target']}, outside the "
                  "folder (recorded in the sidecar).", file=sys.stderr)
    query = load_scan(args.image, modality=args.modality)
    constant = constant_volume_note(query.array, f"--image {args.image}")
    if constant:  # said once, before the model loads (segment_volume's own warning is silenced below)
        print(f"WARNING: {constant}", file=sys.stderr)
    sup = load_scan(args.support_image, modality=args.modality)
    mask = load_label_nifti(args.support_mask, like=sup, what="Support mask")
    present = np.unique(mask.array).tolist()
    lm = check_label_map_fits(args.label_map, present) if args.label_map else None
    if args.labels is None and len([i for i in present if i != 0]) > 1:
        raise ValueError(
            f"The support mask holds several labels ({describe_ids(present, lm)}); say which to segment with "
            "--labels, e.g. --labels liver=5,spleen=1 (name=id as stored in the mask), or --labels all."
        )
    gt = None
    if args.ground_truth:
        gt = load_label_nifti(args.ground_truth, like=query, label_map=lm, what="Ground truth")
    labels = None if (args.labels or "").strip().lower() == "all" else args.labels
    organs = parse_labels(labels, label_map=lm, present=present)
    chosen = check_request(organs, mask.array, support_select=strategies.support_selector,
                           support_slices=args.support_slice, image_size=image_size_for(args.model, args.image_size))
    start_from_order(order, query.shape[0])  # a start position inside the query, checked before the model
    prompts = None
    if args.prompts:  # read and checked against the query's slices before the model loads
        from ..io.prompts import read_prompts
        from ..run.prompting import label_rounds

        from ..io.prompts import round_estimate

        if args.max_rounds < 1:
            raise ValueError(f"--max-rounds must be at least 1, got {args.max_rounds}.")
        prompts = read_prompts(args.prompts, max_rounds=args.max_rounds)
        fixes = label_rounds(prompts, organs, query.shape)
        check_corrections_off_support(query, sup, mask, organs, fixes, chosen=chosen, ct_window=window)
        n_rounds = len(prompts.rounds)
        if n_rounds >= 10:  # a long job says what it costs
            print(f"estimate: {round_estimate(n_rounds, query.shape[0] * len(fixes))}", file=sys.stderr)
    checks_passed(args)
    model = model_from_args(args, meaningless="the masks mean nothing")
    engine = engine_from_args(model, args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".* is constant \\(every voxel")  # printed above
        res = segment_volume(
            query, sup, mask, engine=engine, labels=list(organs), label_map=lm,
            support_select=strategies.support_selector, support_slices=args.support_slice, order=order,
            memory_policy=strategies.memory_policy,
            support_views=strategies.support_views or 0, stop=strategies.stopping, ct_window=window, ground_truth=gt,
            corrections=prompts, progress=not args.no_progress,
            refinement=strategies.refinement, ensemble=strategies.get("ensemble"),
        )
    inputs = {}
    for key, pth in (("image", args.image), ("support_image", args.support_image),
                     ("support_mask", args.support_mask), ("ground_truth", args.ground_truth)):
        if pth is None:
            continue
        inputs[key] = input_record(pth)
    img_path, side = res.save(out, command=command_line(getattr(args, "argv", None)), details={
        "inputs": inputs,
        "total_seconds": round(time.perf_counter() - t0, 3),
    }, overwrite=args.overwrite)
    if res.random_weights:
        print("!" * 78 + f"\n!! {RANDOM_NOTE}\n" + "!" * 78)
    print(f"{res.query.case_id}: {len(res.organs)} label(s), {res.encoder_passes} encoder passes, "
          f"{res.seconds:.1f} s ({model.name}, {model.weights})")
    for o in res.organs:
        p = o.propagation
        ext = p.extent()
        print(f"  {o.name}={o.label_id}: support z {list(o.support_z)} ({o.support_method}), start {p.start}, "
              f"ran {int(p.processed.sum())}/{p.logits.shape[0]} slices (stop {p.stop}), organ "
              f"{'z %d..%d' % ext if ext else 'absent'}, {int((res.labels == o.label_id).sum())} voxels")
    if res.dice is not None:
        cols = ["label_name", "mode", "dice", "tp", "fp", "fn", "excluded_slices", "pred_z_first", "pred_z_last",
                "true_z_first", "true_z_last"]
        print(f"Dice ({model.name}, {model.weights})")
        print(res.dice[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
        for row in res.dice[res.dice["excluded_slices"] > 0].drop_duplicates("label").itertuples():
            print(f"  {row.label_name}: {row.excluded_slices} slice(s) left out of its Dice (z {row.excluded_z}): "
                  f"{row.excluded_why}")
    print(f"wrote {img_path}\n      {side}")
    return 0
