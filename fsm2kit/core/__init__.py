"""Models, episodes, the memory bank and its selection rule, plans, and the engine that runs them.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from .lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".engine": ['IMAGENET_MEAN', 'IMAGENET_STD', 'preprocess_slice', 'prompt_mask', 'SliceFeatures', 'SupportMemory', 'TrackRequest', 'TrackOutput', 'request_signature', 'batch_groups', 'TrackJob', 'SliceResult', 'EpisodeResult', 'EngineStats', 'Engine'],
    ".episode": ['Support', 'Episode'],
    ".fileio": ['atomic_write', 'file_sha256'],
    ".holes": ['connected_components', 'fill_holes', 'install_cpu_connected_components'],
    ".memory": ['MemorySettings', 'MemoryEntry', 'MemoryBank', 'SpatialRef', 'PointerRef', 'MemorySelection', 'select_closest_cond_frames', 'select_memories'],
    ".models": ['SAM2Model', 'load_sam2', 'save_checkpoint', 'resolve_device', 'download_checkpoint', 'cache_dir'],
    ".plans": ['SETTINGS', 'ORDERS', 'Frame', 'Step', 'Plan', 'plans_1s1q', 'plans_3s1q', 'fq_plan', 'custom_plan', 'build_plans', 'normalize_setting'],
    ".specs": ['MODELS', 'ModelSpec', 'RANDOM_WEIGHTS', 'PUBLISHED_OVERRIDES', 'CheckpointError', 'CheckpointDownloadError', 'resolve_spec'],
})
