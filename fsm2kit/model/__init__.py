"""SAM2 models.

- ``specs``: the name -> config table, checkpoint files and URLs (no torch).
- ``loading``: :func:`load_sam2` with the published overrides, checkpoints, downloads.
- ``holes``: SAM2's small-hole filling on any device.
- ``sam2_adapter``: the one module through which every call of a SAM2-private method passes.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".holes": ["fill_holes"],
    ".loading": ["SAM2Model", "cache_dir", "load_sam2"],
    ".sam2_adapter": ["encode_memory", "forward_heads", "install_cpu_connected_components", "recombine_heads", "separate_heads", "use_mask_as_output", "use_multimask"],
    ".specs": ["CheckpointError", "MODELS", "check_image_size", "resolve_spec"],
})
