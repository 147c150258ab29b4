"""The few-shot engine: SAM2's memory mechanism driven directly, with an explicit memory bank.

- ``plans``: the inference settings and orders as :class:`Plan` s.
- ``memory``: the typed :class:`MemoryBank`, SAM2's selection rule, the memory-policy contract.
- ``features``: SAM2's preprocessing and the feature cache (each slice encoded once).
- ``tracking``: SAM2's tracking step on a typed bank, batched, with the observer hook.
- ``engine``: the :class:`Engine` (support memories, ``drive``, plans and episodes).
- ``results``: what the engine returns.
- ``corrections``: correction rounds (prompts, then re-propagation).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".corrections": ["Correction", "CorrectionRun", "check_rounds", "corrections_job", "segment_with_corrections"],
    ".engine": ["Engine", "SupportMemory"],
    ".features": ["FeatureCache", "IMAGENET_MEAN", "IMAGENET_STD", "SliceFeatures", "as_slice", "content_key", "preprocess_slice", "prompt_mask"],
    ".memory": ["MemoryBank", "MemoryEntry", "MemoryPolicy", "MemorySelection", "MemorySettings", "PointerRef", "SpatialRef", "TokenLayout", "TokenSpan", "check_selection", "sam2_memory_policy", "select_closest_cond_frames", "select_memories", "token_layout"],
    ".plans": ["Frame", "ORDERS", "Plan", "SETTINGS", "Step", "build_plans", "custom_plan", "fq_plan", "normalize_setting", "plans_1s1q", "plans_3s1q", "split_plan"],
    ".results": ["EngineStats", "EpisodeResult", "SliceResult"],
    ".tracking": ["TrackJob", "TrackObserver", "TrackOutput", "TrackRequest", "Tracker", "batch_groups", "request_signature"],
})
