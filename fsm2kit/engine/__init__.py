"""The few-shot engine: SAM2's memory mechanism driven directly, with an explicit memory bank.

- ``plans``: the inference settings and orders as :class:`Plan` s.
- ``memory``: the typed :class:`MemoryBank`, SAM2's selection rule, the memory-policy contract.
- ``features``: SAM2's preprocessing and the feature cache (each slice encoded once).
- ``tracking``: SAM2's tracking step on a typed bank, batched, with the observer hook.
- ``engine``: the :class:`Engine` (support memories, ``drive``, plans and episodes).
- ``results``: what the engine returns.
- ``corrections``: correction rounds (prompts, then re-propagation).
- ``passes``: refinement passes (slice scores, promoted conditioning memories, propagation again).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".corrections": ["Correction", "CorrectionRun", "CorrectionSession", "check_rounds", "corrections_job",
                     "segment_with_corrections"],
    ".engine": ["Engine"],
    ".passes": ["Refinement", "SliceScores"],
    ".features": ["prompt_mask"],
    ".memory": ["MemoryBank", "MemoryEntry", "MemoryPolicy", "MemorySelection", "MemorySettings", "PointerRef", "SpatialRef", "TokenLayout", "sam2_memory_policy", "select_memories", "token_layout"],
    ".plans": ["Frame", "ORDERS", "Plan", "SETTINGS", "Step", "build_plans", "custom_plan", "fq_plan", "normalize_setting", "split_plan"],
    ".results": ["EpisodeResult", "SliceResult"],
    ".tracking": ["TrackOutput", "TrackRequest", "batch_groups"],
})
