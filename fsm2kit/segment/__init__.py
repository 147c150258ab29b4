"""Own scans: one annotated support slice in, a 3D label volume in the scan's own grid out.

- ``organs``: which labels to segment (``"liver=5,spleen=1"``, ids, names).
- ``propagation``: propagation through the whole volume, stopped by a stopping rule.
- ``own_scan``: :func:`segment_volume`.
- ``segment_result``: what it returns and writes (label volume, sidecar, Dice).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".organs": ["check_label_map_fits", "describe_ids", "parse_labels"],
    ".own_scan": ["check_request", "segment_volume", "start_from_order"],
    ".segment_result": ["SegmentResult", "check_dicom_output", "check_output", "load_scan", "output_files"],
})
