"""Own scans: one annotated support slice in, a 3D label volume in the scan's own grid out.

- ``organs``: which labels to segment (``"liver=5,spleen=1"``, ids, names).
- ``propagation``: propagation through the whole volume, stopped by a stopping rule.
- ``own_scan``: :func:`segment_volume`.
- ``segment_result``: what it returns and writes (label volume, sidecar, Dice).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".organs": ["OrganSpec", "check_label_map_fits", "describe_ids", "parse_labels"],
    ".own_scan": ["check_request", "resolve_overlaps", "segment_volume", "start_from_order"],
    ".propagation": ["ECHO_LOGIT", "NOT_RUN_LOGIT", "Propagation", "propagate_volume", "propagation_job", "propagation_plan", "relative_start"],
    ".segment_result": ["MODES", "OUTPUT_SUFFIXES", "OrganResult", "SUPPORT_FROM_QUERY", "SegmentResult", "check_dicom_output", "check_output", "dice_csv_path", "load_scan", "modes_dice_table", "output_files", "sidecar_path"],
})
