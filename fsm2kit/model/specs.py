"""The model table: names, sam2 configs, checkpoint files and URLs (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODELS", "ModelSpec", "RANDOM_WEIGHTS", "PUBLISHED_OVERRIDES", "CheckpointError",
           "CheckpointDownloadError", "resolve_spec", "check_image_size", "check_model_image_size",
           "image_size_for", "rope_feat_sizes", "release_file", "data_caveats", "MEDSAM2_CAVEAT",
           "PRECISIONS", "check_precision", "MAX_IMAGE_SIZE", "check_seed", "memory_attention_layers"]


RANDOM_WEIGHTS = "random weights"


_URL_20 = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_URL_21 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_URL_MEDSAM2 = "https://huggingface.co/wanglab/MedSAM2/resolve/main/"

_SAM2_LICENCE = "Apache-2.0"
_MEDSAM2_LICENCE = "CC-BY-SA-4.0"

#: MedSAM2's training-data caveat (bowang-lab, arXiv 2504.03600).
MEDSAM2_CAVEAT = (
    "MedSAM2 was fine-tuned on large public CT/MR collections that may include the abdominal scans of "
    "Synapse (BTCV, SABS here) and CHAOS: numbers on them are not few-shot-clean"
)


@dataclass(frozen=True)
class ModelSpec:
    """A row of the model table.

    Attributes
    ----------
    name : str
        The model's name (``--model``).
    config : str
        sam2's config it is built from; the image size and the memory attention's RoPE feature
        sizes (:func:`rope_feat_sizes`) are set on top of it.
    checkpoint : str
        The released (default) checkpoint file name, downloaded by name.
    url : str
        Where :attr:`checkpoint` is downloaded from (``$FSM2KIT_CHECKPOINT_URL`` replaces the base).
    image_size : int
        The input size the weights were trained at: the default image size.
    releases : tuple of str
        Every released checkpoint file name of this model (downloadable by name).
    licence : str
        The weights' licence (SPDX).
    caveat : str
        A caveat about the training data ("" when none).
    caveat_datasets : tuple of str
        Data sets (:data:`fsm2kit.protocol.checks.DATASETS`) whose numbers the caveat concerns.
    """

    name: str
    config: str
    checkpoint: str
    url: str
    image_size: int = 1024
    releases: tuple[str, ...] = ()
    licence: str = _SAM2_LICENCE
    caveat: str = ""
    caveat_datasets: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.releases:
            object.__setattr__(self, "releases", (self.checkpoint,))

    @property
    def version(self) -> str:
        """The SAM version of the architecture ("2.0" or "2.1"; MedSAM2 is a SAM 2.1 tiny)."""
        return "2.1" if "sam2.1" in self.config else "2.0"

    @property
    def base_url(self) -> str:
        return self.url[: len(self.url) - len(self.checkpoint)]

    @property
    def architecture(self) -> str:
        """E.g. ``"SAM 2.1 Hiera-tiny"``: what the weights' shapes must fit."""
        size = self.config.rsplit("_", 1)[-1].removesuffix(".yaml")
        return f"SAM {self.version} Hiera-{_SIZES.get(size, size)}"


_SIZES = {"t": "tiny", "s": "small", "b+": "base_plus", "l": "large"}


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
        # MedSAM2's sam2.1_hiera_t512.yaml is sam2's 2.1 tiny config with image_size 512 and the
        # memory attention's two RoPE feat_sizes [32, 32]: load_sam2 sets exactly those.
        ModelSpec(
            "medsam2", "configs/sam2.1/sam2.1_hiera_t.yaml", "MedSAM2_latest.pt",
            _URL_MEDSAM2 + "MedSAM2_latest.pt", image_size=512,
            releases=("MedSAM2_latest.pt", "MedSAM2_2411.pt", "MedSAM2_CTLesion.pt",
                      "MedSAM2_MRI_LiverLesion.pt", "MedSAM2_US_Heart.pt"),
            licence=_MEDSAM2_LICENCE, caveat=MEDSAM2_CAVEAT, caveat_datasets=("SABS", "CHAOST2"),
        ),
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
        "(SAM 2.0: sam2-*, as FS-MedSAM2 used; SAM 2.1: sam2.1-*; MedSAM2: medsam2)."
    )


#: The largest SAM2 input size fsm2kit accepts: twice the published 1024. Memory attention grows with
#: the 4th power of the size (a 4096 px run would need hundreds of GB for one attention matrix).
MAX_IMAGE_SIZE = 2048
def image_size_for(name: str, image_size: int | None = None) -> int:
    """The image size a model runs at: ``image_size`` when given, else the model's own
    (:attr:`ModelSpec.image_size`: 1024 for SAM2, 512 for MedSAM2)."""
    return resolve_spec(name).image_size if image_size is None else check_image_size(image_size)


def rope_feat_sizes(image_size: int) -> tuple[int, int]:
    """The memory attention's RoPE feature sizes for ``image_size``: the stride-16 feature map
    (``[64, 64]`` at 1024 as in sam2's configs, ``[32, 32]`` at 512 as in MedSAM2's t512)."""
    f = check_image_size(image_size) // 16
    return (f, f)


def check_model_image_size(name: str, image_size: int | None) -> str | None:
    """Check ``image_size`` for model ``name`` (pure; one-line ``ValueError`` for a bad size).

    Returns
    -------
    str or None
        A note when the size differs from the one the weights were trained at for a model that
        was trained at one size only (MedSAM2 at 512): the run is allowed (an experiment axis)
        but its numbers are outside the model's training.
    """
    spec = resolve_spec(name)
    if image_size is None:
        return None
    size = check_image_size(image_size)
    if spec.image_size != 1024 and size != spec.image_size:
        return (f"{spec.name} was trained at {spec.image_size} px; at {size} px its results are outside "
                f"its training (leave the image size out to run it at {spec.image_size})")
    return None


#: Values of the precision policy (``--precision``): float32, or bfloat16 autocast.
PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str | None, device_type: str | None = None) -> str | None:
    """The precision policy as ``"fp32"``, ``"bf16"`` or None (the device's default: bf16 on
    CUDA, fp32 elsewhere); one-line ``ValueError`` for another value, or bf16 on MPS."""
    if precision is None:
        return None
    p = str(precision).strip().lower().replace("float32", "fp32").replace("bfloat16", "bf16")
    if p not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} (or left out: bf16 on CUDA, "
                         f"fp32 elsewhere), got {precision!r}.")
    if p == "bf16" and device_type == "mps":
        raise ValueError("precision bf16 runs on cpu and cuda; on mps use fp32 (or leave it out).")
    return p


def release_file(spec: ModelSpec, checkpoint: str) -> str | None:
    """``checkpoint`` when it names one of ``spec``'s released files (a bare file name that
    :func:`fsm2kit.load_sam2` downloads by name), else None.

    Raises
    ------
    ValueError
        A bare name that looks like one of the model's releases (same stem before ``_``, ``.pt``)
        but is not one: one line listing the released files.
    """
    text = str(checkpoint)
    if "/" in text or "\\" in text:
        return None
    if text in spec.releases:
        return text
    prefix = spec.checkpoint.split("_", 1)[0].lower()
    if text.lower().startswith(prefix + "_") and text.lower().endswith(".pt"):
        raise ValueError(
            f"Unknown {spec.name} checkpoint {text!r}: the released files are {', '.join(spec.releases)} "
            "(downloaded by name), or pass the path of a local file."
        )
    return None


def data_caveats(models, datasets) -> list[str]:
    """The training-data caveats of ``models`` that concern ``datasets`` (model and data set
    names as in the tables; unknown names are ignored), e.g. MedSAM2 on SABS or CHAOS."""
    out = []
    sets = {str(d).strip().upper() for d in datasets}
    sets |= {"SABS" for d in sets if "SYNAPSE" in d or "BTCV" in d}
    sets |= {"CHAOST2" for d in sets if d.startswith("CHAOS")}
    for m in dict.fromkeys(str(m) for m in models):
        try:
            spec = resolve_spec(m)
        except ValueError:
            continue
        hit = [d for d in spec.caveat_datasets if d in sets]
        if spec.caveat and hit:
            out.append(f"{spec.name}: {spec.caveat} ({', '.join(hit)} here)")
    return out


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
