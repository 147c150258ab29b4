"""The evaluation protocol of PROTOCOL.md as pure numpy functions.

- ``episodes``: the typed :class:`Episode` and :class:`Support`, and how the protocol builds them.
- ``labels``: the datasets' label tables and the one label resolver.
- ``folds``: scan ids, each fold's support and query scans.
- ``slices``: organ slices, scored query ranges, chunks, support slices.
- ``metrics``: the one Dice, pooled and mean per volume; HD95, NSD, FP and missed slices.
- ``preprocessing``: the formulas of SSL-ALPNet's preprocessing.
- ``checks``: the argument checks the protocol modules share.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".checks": ["DATASETS", "PROTOCOL_VARIANTS", "canonical_dataset"],
    ".episodes": ["Episode", "Support", "build_episode"],
    ".folds": ["ALP_SEP", "SCAN_IDS", "fold_split"],
    ".labels": ["DATASET_LABELS", "EVALUATED_CLASSES", "LabelMap", "label_name", "resolve_label"],
    ".metrics": ["slice_dice", "dice", "dice_counts", "mean_volume_dice", "per_volume_dice", "pooled_dice", "summarize_dice",
                 "hd95", "normalized_surface_dice", "surface_metrics", "extent_errors", "summarize_metrics"],
    ".preprocessing": ["SABS_SPACING_FACTOR", "CHAOST2_CLASSMAP_NAMES", "CHAOS_GRAY_VALUES", "CHAOS_SPACING", "CROP_SIZE", "CT_WINDOW", "HIST_CUT_TOP", "SABS_BORDER", "SABS_CLASSMAP_NAMES", "chaos_gray_to_label", "class_slice_index", "crop_or_pad_center", "ct_window", "histogram_cut_top", "resample_labels", "resample_linear", "resampled_shape", "sabs_window"],
    ".slices": ["alp_chunk_index", "alp_support_index", "support_slices"],
})
