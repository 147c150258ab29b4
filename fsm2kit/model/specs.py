"""The model table: names, sam2 configs, checkpoint files and URLs (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelSpec", "RANDOM_WEIGHTS", "PUBLISHED_OVERRIDES", "CheckpointError",
           "CheckpointDownloadError", "resolve_spec", "check_image_size"]


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


def check_image_size(image_size: int) -> int:
    """The SAM2 input size as an int: a multiple of 64, at least 128 (else one-line ValueError)."""
    if (isinstance(image_size, bool) or not hasattr(image_size, "__index__")
            or int(image_size) < 128 or int(image_size) % 64):
        raise ValueError(
            f"image_size must be a multiple of 64 and at least 128 (1024 as published; "
            f"256 or 512 for fast tests), got {image_size!r}."
        )
    return int(image_size)
