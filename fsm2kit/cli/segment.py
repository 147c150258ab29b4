"""``fsm2kit segment``: own scans (NIfTI/DICOM in, a label volume in the scan's grid out)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


from .common import add_model_args, add_strategy_args, engine_from_args, model_from_args, strategies_from_args

#: ``--patience`` default; equals fsm2kit.workflows.propagation.DEFAULT_PATIENCE (tested), kept here so
#: that building the parser imports no numerics.
DEFAULT_PATIENCE = 3
#: The support selectors whole-volume segmentation has its own rule for (``middle``, ``largest``,
#: ``protocol``, ``similar``); the others use the registry's ``volume_slices`` (tested against the registry).
SEGMENT_SELECTORS = ("middle", "largest", "protocol", "similar")

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
                   help="support slice index K (inferior->superior, 0-based) for every label "
                        "(= --support-select given:K)")
    p.add_argument("--labels", default=None,
                   help="labels to segment, e.g. liver=6,spleen=1 (name=id in the mask); default all ids")
    p.add_argument("--label-map", default=None, choices=["SABS", "CHAOST2"], type=str.upper,
                   help="resolve label names without ids through a dataset's label map")
    p.add_argument("--start-slice", type=int, default=None, metavar="K",
                   help="first query slice (default: the support's relative position along z); = --order at:K")
    p.add_argument("--order", dest="order", default=None, metavar="NAME[:ARG]",
                   help="where propagation starts: at:Z (slice Z), from:P (relative position P in [0, 1]), top "
                        "(slice 0), middle (the middle slice); default the support's relative position")
    p.add_argument("--patience", type=int, default=DEFAULT_PATIENCE,
                   help=f"stop after N consecutive slices with object score <= 0 (default {DEFAULT_PATIENCE}; "
                        "0 = whole volume)")
    p.add_argument("--ct-window", default=None, metavar="LO,HI",
                   help="clip intensities before SAM2, e.g. --ct-window=-125,275 (or 'abdomen')")
    p.add_argument("--modality", default="", choices=["CT", "MR"], type=str.upper,
                   help="modality recorded on the volumes (default: from DICOM, else unknown)")
    p.add_argument("--ground-truth", default=None,
                   help="query labels (same ids): adds the oracle-range mode and a Dice table")
    p.add_argument("--out", required=True, help="output label volume (.nii.gz); the sidecar is <name>.json")
    # --support-select (registry; default middle), --memory-policy, --support-views, --plugins
    add_strategy_args(p, ordering=False, views=True, defaults={"support selector": "middle"})
    add_model_args(p)
    p.set_defaults(func=cmd_segment)
    return p


def _order_spec(args: argparse.Namespace) -> str | None:
    """``--order`` or ``--start-slice Z`` (= ``at:Z``), checked (one of them); with ``--support-slice``,
    ``--support-select`` must stay at its default."""
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
    if args.order is not None:
        from ..strategies.orderings import ORDERINGS

        ORDERINGS.get(args.order)  # unknown names and bad arguments: one line
    return args.order


def cmd_segment(args: argparse.Namespace) -> int:
    """Handler of ``fsm2kit segment``."""
    import numpy as np

    from ..core.fileio import file_sha256
    from ..io.nifti import load_label_nifti
    from ..protocol.labels import LabelMap
    from ..workflows.labels import parse_labels
    from ..workflows.provenance import RANDOM_NOTE, command_line
    from ..workflows.segment import check_request, segment_volume, start_from_order
    from ..workflows.segment_results import check_output, load_scan

    t0 = time.perf_counter()
    out = Path(args.out)
    check_output(out)  # before anything slow
    window = _parse_window(args.ct_window)
    query = load_scan(args.image, modality=args.modality)
    sup = load_scan(args.support_image, modality=args.modality)
    lm = LabelMap.from_dataset(args.label_map) if args.label_map else None
    mask = load_label_nifti(args.support_mask, like=sup, label_map=lm, what="Support mask")
    gt = None
    if args.ground_truth:
        gt = load_label_nifti(args.ground_truth, like=query, label_map=lm, what="Ground truth")
    organs = parse_labels(args.labels, label_map=lm, present=np.unique(mask.array).tolist())
    strategies = strategies_from_args(args)  # plugins, then names checked: before the model loads
    order = _order_spec(args)
    check_request(organs, mask.array, support_select=args.support_select, support_slices=args.support_slice,
                  image_size=args.image_size)
    start = start_from_order(order, query.shape[0])
    model = model_from_args(args, meaningless="the masks mean nothing")
    engine = engine_from_args(model, args)
    res = segment_volume(
        query, sup, mask, engine=engine, labels=list(organs), label_map=lm,
        support_select=args.support_select, support_slices=args.support_slice, start=start,
        memory_policy=strategies.memory_policy, support_views=strategies.support_views or 0,
        patience=args.patience if args.patience else None, ct_window=window, ground_truth=gt,
        progress=not args.no_progress,
    )
    inputs = {}
    for key, pth in (("image", args.image), ("support_image", args.support_image),
                     ("support_mask", args.support_mask), ("ground_truth", args.ground_truth)):
        if pth is None:
            continue
        pp = Path(pth)
        inputs[key] = {"path": str(pp.absolute()),
                       "sha256": file_sha256(pp) if pp.is_file() else None,
                       "dicom_files": len(list(pp.iterdir())) if pp.is_dir() else None}
    img_path, side = res.save(out, command=command_line(getattr(args, "argv", None)), details={
        "inputs": inputs,
        "total_seconds": round(time.perf_counter() - t0, 3),
    })
    if res.random_weights:
        print("!" * 78 + f"\n!! {RANDOM_NOTE}\n" + "!" * 78)
    print(f"{res.query.case_id}: {len(res.organs)} label(s), {res.encoder_passes} encoder passes, "
          f"{res.seconds:.1f} s ({model.name}, {model.weights})")
    for o in res.organs:
        p = o.propagation
        ext = p.extent()
        print(f"  {o.name}={o.label_id}: support z {list(o.support_z)} ({o.support_method}), start {p.start}, "
              f"ran {int(p.processed.sum())}/{p.logits.shape[0]} slices, organ "
              f"{'z %d..%d' % ext if ext else 'absent'}, {int((res.labels == o.label_id).sum())} voxels")
    if res.dice is not None:
        cols = ["label_name", "mode", "dice", "tp", "fp", "fn", "pred_z_first", "pred_z_last",
                "true_z_first", "true_z_last"]
        print(f"Dice ({model.name}, {model.weights})")
        print(res.dice[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    print(f"wrote {img_path}\n      {side}")
    return 0
