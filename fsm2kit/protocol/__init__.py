"""The evaluation protocol of PROTOCOL.md: labels, folds, scored ranges, chunks, support slices, episodes, Dice.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".checks": ['DATASETS', 'PROTOCOL_VARIANTS', 'canonical_dataset', 'canonical_variant', 'as_int', 'check_npart', 'check_volume'],
    ".episodes": ['SupportSelector', 'build_episode'],
    ".folds": ['SCAN_IDS', 'ALP_SEP', 'GMRD_FOLDS', 'FoldSplit', 'fold_split'],
    ".labels": ['DATASET_LABELS', 'PA_ALL', 'LABEL_GROUPS', 'EVALUATED_CLASSES', 'LABEL_ALIASES', 'LabelMap', 'resolve_label', 'label_name', 'tested_classes'],
    ".metrics": ['DiceCounts', 'dice_counts', 'dice', 'pooled_dice', 'mean_volume_dice', 'per_volume_dice', 'summarize_dice', 'METRIC_POOLED', 'METRIC_MEAN_PER_VOLUME'],
    ".preprocessing": ['CT_WINDOW', 'SABS_BORDER', 'SABS_SPACING_FACTOR', 'CHAOS_GRAY_VALUES', 'CHAOS_GRAY_RANGES', 'ct_window', 'alp_resampled_size', 'chaos_gray_to_label'],
    ".slices": ['class_slices', 'scored_range', 'alp_support_pcts', 'alp_support_index', 'support_slices', 'alp_chunk_index', 'gmrd_chunk_boundaries', 'chunk_ids'],
})
