"""Models, episodes, the memory bank and its selection rule, plans, and the engine that runs them.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from .lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".corrections": ['Correction', 'CorrectionRun', 'check_rounds', 'corrections_job', 'segment_with_corrections'],
    ".display": ['OKABE_ITO', 'COLORS', 'ATTENTION_CMAP', 'MEMORY_GROUP_COLORS', 'PROTOCOL_AXCODES', 'axcodes_from_affine', 'DisplayOrientation', 'display_orientation', 'DisplaySlice', 'display_slice', 'episode_axcodes'],
    ".engine": ['SupportMemory', 'Engine'],
    ".episode": ['Support', 'Episode'],
    ".features": ['IMAGENET_MEAN', 'IMAGENET_STD', 'preprocess_slice', 'prompt_mask', 'content_key', 'as_slice', 'SliceFeatures', 'FeatureCache'],
    ".fileio": ['atomic_write', 'atomic_write_group', 'atomic_folder', 'check_can_create', 'file_sha256'],
    ".holes": ['connected_components', 'fill_holes', 'install_cpu_connected_components'],
    ".memory": ['MemorySettings', 'MemoryPolicy', 'sam2_memory_policy', 'check_selection', 'TokenSpan', 'TokenLayout', 'token_layout', 'MemoryEntry', 'MemoryBank', 'SpatialRef', 'PointerRef', 'MemorySelection', 'select_closest_cond_frames', 'select_memories'],
    ".models": ['SAM2Model', 'load_sam2', 'save_checkpoint', 'resolve_device', 'download_checkpoint', 'cache_dir'],
    ".names": ['strategy_name'],
    ".policies": ['MAX_QUERY_SLOTS', 'previous_query_frames', 'query_memory_selection', 'StridePolicy', 'support_only_policy', 'RecentPolicy', 'ConfidentPolicy', 'BestPolicy'],
    ".plans": ['split_plan', 'SETTINGS', 'ORDERS', 'Frame', 'Step', 'Plan', 'plans_1s1q', 'plans_3s1q', 'fq_plan', 'custom_plan', 'build_plans', 'normalize_setting'],
    ".results": ['SliceResult', 'EpisodeResult', 'EngineStats'],
    ".specs": ['MODELS', 'ModelSpec', 'RANDOM_WEIGHTS', 'PUBLISHED_OVERRIDES', 'CheckpointError', 'CheckpointDownloadError', 'resolve_spec', 'check_image_size'],
    ".tracking": ['TrackRequest', 'TrackOutput', 'TrackJob', 'TrackObserver', 'request_signature', 'batch_groups', 'Tracker'],
})
