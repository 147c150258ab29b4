"""The model table: names, sam2 configs, checkpoint files and URLs (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelSpec", "RANDOM_WEIGHTS", "PUBLISHED_OVERRIDES", "CheckpointError",
           "CheckpointDownloadError", "resolve_spec", "check_image_size", "MAX_IMAGE_SIZE", "check_seed",
           "memory_attention_layers"]


RANDOM_WEIGHTS = "random weights"


_URL_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_URL_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class ModelSpec:
    """A row of the model table: sam2 config name, checkpoint file name and its download URL."""

    name: str
    config: str
    checkpoint: str
    url: str

    @property
    def version(self) -> str:
        return "2.1" if self.name.startswith("sam2.1") else "2.0"


def _spec(name: str, cfg_dir: str, cfg: str, ckpt: str, base: str) -> ModelSpec:
    return ModelSpec(name, f"configs/{cfg_dir}/{cfg}", ckpt, base + ckpt)


#: Model names -> sam2 configs and checkpoints. SAM 2.0 is what FS-MedSAM2 used (PROTOCOL 6.6).
MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        _spec("sam2-tiny", "sam2", "sam2_hiera_t.yaml", "sam2_hiera_tiny.pt", _URL_20),
        _spec("sam2-small", "sam2", "sam2_hiera_s.yaml", "sam2_hiera_small.pt", _URL_20),
        _spec("sam2-base_plus", "sam2", "sam2_hiera_b+.yaml", "sam2_hiera_base_plus.pt", _URL_20),
        _spec("sam2-large", "sam2", "sam2_hiera_l.yaml", "sam2_hiera_large.pt", _URL_20),
        _spec("sam2.1-tiny", "sam2.1", "sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt", _URL_21),
        _spec("sam2.1-small", "sam2.1", "sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt", _URL_21),
        _spec(
            "sam2.1-base_plus", "sam2.1", "sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt",
            _URL_21,
        ),
        _spec("sam2.1-large", "sam2.1", "sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt", _URL_21),
    ]
}

#: The overrides of the published FS-MedSAM2 build (``build_fsmedsam2.py:90-105``).
PUBLISHED_OVERRIDES = (
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
)


class CheckpointError(ValueError):
    """A checkpoint file does not fit the model (missing/unexpected keys, wrong shapes)."""


class CheckpointDownloadError(RuntimeError):
    """A checkpoint could not be downloaded (typically: this machine is offline)."""


def resolve_spec(name: str) -> ModelSpec:
    key = name.strip().lower().replace("-hiera-", "-").replace("base+", "base_plus")
    key = key.replace("baseplus", "base_plus").replace("base-plus", "base_plus")
    if key in MODELS:
        return MODELS[key]
    raise ValueError(
        f"Unknown model name {name!r}. Expected one of: {', '.join(MODELS)} "
        "(SAM 2.0: sam2-*, as FS-MedSAM2 used; SAM 2.1: sam2.1-*)."
    )


#: The largest SAM2 input size fsm2kit accepts: twice the published 1024. Memory attention grows with
#: the 4th power of the size (a 4096 px run would need hundreds of GB for one attention matrix).
MAX_IMAGE_SIZE = 2048


def check_image_size(image_size: int) -> int:
    """The SAM2 input size as an int: a multiple of 64 (the backbone's coarsest stride is 32, the
    memory grid 1/16 of the size), from 128 to :data:`MAX_IMAGE_SIZE` (else one-line ValueError)."""
    if (isinstance(image_size, bool) or not hasattr(image_size, "__index__")
            or not 128 <= int(image_size) <= MAX_IMAGE_SIZE or int(image_size) % 64):
        raise ValueError(
            f"image_size must be a multiple of 64 from 128 to {MAX_IMAGE_SIZE} (1024 as published; "
            f"256 or 512 for fast tests), got {image_size!r}."
        )
    return int(image_size)


def check_seed(seed: int) -> int:
    """A seed of random weights as an int in ``0 .. 2**63 - 1`` (what torch's generator takes), else ValueError."""
    if isinstance(seed, bool) or not hasattr(seed, "__index__") or not 0 <= int(seed) < 2 ** 63:
        raise ValueError(f"seed must be an integer from 0 to 2**63 - 1 = {2 ** 63 - 1}, got {seed!r}.")
    return int(seed)


def memory_attention_layers(spec: ModelSpec | str) -> int:
    """The number of memory-attention layers of a model, read from its sam2 config file (no torch,
    no weights; every released SAM2 config has 4)."""
    import importlib.util
    from pathlib import Path

    import yaml

    spec = resolve_spec(spec) if isinstance(spec, str) else spec
    found = importlib.util.find_spec("sam2")
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError("sam2 is not installed; run scripts/install.sh (see the README).")
    cfg = yaml.safe_load((Path(list(found.submodule_search_locations)[0]) / spec.config).read_text())
    return int(cfg["model"]["memory_attention"]["num_layers"])
