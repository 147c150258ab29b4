"""Loading SAM2 (SAM 2.0 and 2.1, Hiera tiny/small/base+/large) the way FS-MedSAM2 builds it.

One loader, :func:`load_sam2`, with a small table from model names to sam2 config and checkpoint
file (like sam2's own ``build_sam.py``). Checkpoints come from a local file, from a download by
name (cached; only on a machine that is online), or are ``"random"``: a seeded random
initialisation for tests and smoke runs, which warns loudly and is labelled "random weights" in
every output.

The build applies the overrides of the published code (identical to sam2's
``build_sam2_video_predictor``): dynamic multimask via stability (delta 0.05, threshold 0.98),
``binarize_mask_from_pts_for_mem_enc`` and ``fill_hole_area=8``. sam2 fills holes only with its
CUDA extension and silently skips the step elsewhere; :func:`fill_holes` is the same
post-processing on any device, so CPU and GPU runs agree.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MODELS",
    "ModelSpec",
    "SAM2Model",
    "CheckpointError",
    "CheckpointDownloadError",
    "load_sam2",
    "resolve_device",
    "fill_holes",
    "connected_components",
    "install_cpu_connected_components",
    "file_sha256",
    "RANDOM_WEIGHTS",
    "save_checkpoint",
    "download_checkpoint",
    "cache_dir",
]

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


# ----------------------------------------------------------------------------- devices
def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The compute device: the one asked for, else CUDA, else MPS, else CPU.

    Raises
    ------
    RuntimeError
        If CUDA or MPS is requested but not available.
    """
    if device is None or device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA GPU; use --device cpu.")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise RuntimeError("device='mps' was requested but MPS is not available; use --device cpu.")
    return dev


# ----------------------------------------------------------------------------- hole filling
def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of binary masks, like sam2's CUDA ``get_connected_componnets``.

    Parameters
    ----------
    mask : Tensor, (N, 1, H, W)
        Binary masks (nonzero = in a component).

    Returns
    -------
    labels, areas : Tensor, (N, 1, H, W) int32
        Component label (0 outside the mask) and the area of each pixel's component
        (0 outside the mask), on the input's device.
    """
    from scipy import ndimage

    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"connected_components expects (N, 1, H, W) masks, got {tuple(mask.shape)}.")
    m = mask.detach().to("cpu").numpy().astype(bool)
    labels = np.zeros(m.shape, dtype=np.int32)
    areas = np.zeros(m.shape, dtype=np.int32)
    structure = np.ones((3, 3), dtype=bool)
    for i in range(m.shape[0]):
        lab, n = ndimage.label(m[i, 0], structure=structure)
        if n:
            counts = np.bincount(lab.ravel())
            counts[0] = 0
            labels[i, 0] = lab
            areas[i, 0] = counts[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def fill_holes(logits: torch.Tensor, max_area: int = 8) -> torch.Tensor:
    """SAM2's hole filling, on any device.

    Background connected components (score <= 0, 8-connectivity) with an area of at most
    ``max_area`` pixels are set to +0.1 (foreground), exactly as sam2's
    ``fill_holes_in_mask_scores`` does with its CUDA extension.

    Parameters
    ----------
    logits : Tensor, (N, 1, H, W)
        Low-resolution mask logits (H = W = image_size / 4 in SAM2).
    max_area : int
        Largest hole area to fill; 0 disables filling.
    """
    if max_area <= 0:
        return logits
    labels, areas = connected_components(logits <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits)


def install_cpu_connected_components() -> None:
    """Provide ``sam2._C.get_connected_componnets`` (sic) backed by :func:`connected_components`.

    sam2 looks the function up in its CUDA extension and skips hole filling when the extension
    is missing (always on CPU). After this call sam2's own predictors post-process like
    fsm2kit does. Used by the faithfulness tests to give the oracle the same post-processing;
    it changes nothing if the real extension is importable.
    """
    try:  # the real extension wins
        import sam2._C  # noqa: F401

        return
    except ImportError:
        pass
    mod = types.ModuleType("sam2._C")
    mod.get_connected_componnets = lambda m: connected_components(m)  # type: ignore[attr-defined]
    sys.modules["sam2._C"] = mod
    import sam2

    sam2._C = mod  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- checkpoints
def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$FSM2KIT_CACHE`` or ``~/.cache/fsm2kit``."""
    return Path(os.environ.get("FSM2KIT_CACHE", Path.home() / ".cache" / "fsm2kit")) / "checkpoints"


def download_checkpoint(spec: ModelSpec, *, progress: bool = True) -> Path:
    """Download ``spec``'s checkpoint into :func:`cache_dir` (once) and return its path.

    ``$FSM2KIT_CHECKPOINT_URL`` replaces the base URL (a mirror, or a local server).

    Raises
    ------
    CheckpointDownloadError
        When the download fails, e.g. on an offline machine.
    """
    target = cache_dir() / spec.checkpoint
    if target.is_file():
        return target
    base = os.environ.get("FSM2KIT_CHECKPOINT_URL")
    url = (base.rstrip("/") + "/" + spec.checkpoint) if base else spec.url
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(target.suffix + ".part")
    try:
        torch.hub.download_url_to_file(url, str(tmp), progress=progress)
    except Exception as e:  # URLError, HTTPError, socket errors, ...
        tmp.unlink(missing_ok=True)
        raise CheckpointDownloadError(
            f"Could not download the {spec.name} checkpoint from {url} ({type(e).__name__}: {e}). "
            f"This machine may be offline. Download {spec.checkpoint} on a machine with internet "
            f"access, copy it here and pass it with --checkpoint FILE (Python: "
            f"load_sam2({spec.name!r}, checkpoint='FILE')), or use --checkpoint random for a "
            "smoke run with random weights."
        ) from e
    os.replace(tmp, target)
    return target


def _check_state_dict(model: torch.nn.Module, sd: dict, source: str, spec: ModelSpec) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shape = sorted(k for k in set(own) & set(sd) if tuple(own[k].shape) != tuple(sd[k].shape))
    if not (missing or unexpected or shape):
        return

    def show(keys: list[str]) -> str:
        more = f" ... (+{len(keys) - 5} more)" if len(keys) > 5 else ""
        return ", ".join(keys[:5]) + more

    lines = [f"Checkpoint {source} does not fit model {spec.name} ({spec.config}):"]
    if missing:
        lines.append(f"  {len(missing)} missing keys: {show(missing)}")
    if unexpected:
        lines.append(f"  {len(unexpected)} unexpected keys: {show(unexpected)}")
    if shape:
        details = [f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in shape]
        lines.append(f"  {len(shape)} keys with other shapes: {show(details)}")
    hint = (
        "A SAM 2.0 checkpoint (sam2_hiera_*.pt) needs a 'sam2-*' model name and a SAM 2.1 "
        "checkpoint (sam2.1_hiera_*.pt) a 'sam2.1-*' name; the size (tiny/small/base_plus/large) "
        "must match too."
    )
    lines.append(hint)
    raise CheckpointError("\n".join(lines))


# ----------------------------------------------------------------------------- the model
@dataclass(eq=False)
class SAM2Model:
    """A loaded SAM2 model and how it was made.

    Attributes
    ----------
    module : sam2.sam2_video_predictor.SAM2VideoPredictor
        The torch module (a ``SAM2Base``), in eval mode on ``device``.
    spec : ModelSpec
        Name, config and checkpoint file name.
    image_size : int
        Input size of the image encoder (1024 as published; smaller for fast tests).
    device : torch.device
    checkpoint : str or None
        Path of the loaded checkpoint, None for random weights.
    checkpoint_sha256 : str or None
        sha256 of the checkpoint file, None for random weights.
    seed : int or None
        Seed of a random initialisation.
    """

    module: torch.nn.Module
    spec: ModelSpec
    image_size: int
    device: torch.device
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def random_weights(self) -> bool:
        return self.checkpoint is None

    @property
    def weights(self) -> str:
        """``"random weights (seed N)"`` or ``"sha256:<hex>"``: say this next to every result."""
        if self.random_weights:
            return f"{RANDOM_WEIGHTS} (seed {self.seed})"
        return f"sha256:{self.checkpoint_sha256}"

    @property
    def dtype(self) -> torch.dtype:
        """Compute precision: bfloat16 autocast on CUDA (as published), float32 elsewhere."""
        return torch.bfloat16 if self.device.type == "cuda" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision policy as a context manager (bf16 autocast on CUDA, no-op elsewhere)."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def feature_key(self) -> str:
        """Names this model's image features: model, image size and a hash of the weights that
        make them (checkpoint sha256, or a hash of the image encoder's weights for random or
        modified weights). Used by on-disk feature caches."""
        cached = self.extra.get("feature_key")
        if cached:
            return cached
        h = hashlib.blake2b(digest_size=8)
        mod = self.module
        parts = [mod.image_encoder]
        dec = getattr(mod, "sam_mask_decoder", None)
        for name in ("conv_s0", "conv_s1"):
            if dec is not None and getattr(dec, name, None) is not None:
                parts.append(getattr(dec, name))
        for part in parts:
            for k, v in sorted(part.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().to("cpu").contiguous().view(torch.uint8).numpy().tobytes())
        key = f"{self.spec.name}-{self.image_size}px-{h.hexdigest()}"
        self.extra["feature_key"] = key
        return key

    @property
    def low_res_size(self) -> int:
        return self.image_size // 4

    def compile_encoder(self, **options) -> "SAM2Model":
        """Compile the image encoder with ``torch.compile`` (in place; returns the model).

        Worth it on a GPU for long runs: compilation takes a while on the first slices.
        Options go to ``torch.compile`` (default ``dynamic=False``: slices share one input
        size). The feature key of on-disk caches is kept: compiling changes no weights.
        """
        if self.extra.get("compiled_encoder") is not None:
            return self
        _ = self.feature_key  # from the uncompiled weights' names
        options = {"dynamic": False, **options}
        self.module.image_encoder = torch.compile(self.module.image_encoder, **options)
        self.extra["compiled_encoder"] = {k: str(v) for k, v in options.items()}
        return self

    def provenance(self) -> dict:
        """What a result needs to record about the model."""
        import sam2

        from fsm2kit import __version__

        return {
            "model": self.spec.name,
            "sam_version": self.spec.version,
            "config": self.spec.config,
            "checkpoint": self.checkpoint if self.checkpoint else RANDOM_WEIGHTS,
            "checkpoint_sha256": self.checkpoint_sha256 if self.checkpoint_sha256 else RANDOM_WEIGHTS,
            "random_weights": self.random_weights,
            "seed": self.seed,
            "weights": self.weights,
            "image_size": self.image_size,
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "fsm2kit_version": __version__,
            "sam2_version": getattr(sam2, "__version__", _dist_version("sam2")),
            "torch_version": torch.__version__,
            "compiled_encoder": self.extra.get("compiled_encoder") is not None,
        }

    def __repr__(self) -> str:
        return (
            f"SAM2Model({self.spec.name}, image_size={self.image_size}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, weights={self.weights[:23]})"
        )


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"


def _resolve_spec(name: str) -> ModelSpec:
    key = name.strip().lower().replace("-hiera-", "-").replace("base+", "base_plus")
    key = key.replace("baseplus", "base_plus").replace("base-plus", "base_plus")
    if key in MODELS:
        return MODELS[key]
    raise ValueError(
        f"Unknown model name {name!r}. Expected one of: {', '.join(MODELS)} "
        "(SAM 2.0: sam2-*, as FS-MedSAM2 used; SAM 2.1: sam2.1-*)."
    )


def _check_image_size(image_size: int) -> int:
    if not isinstance(image_size, (int, np.integer)) or image_size < 128 or image_size % 64:
        raise ValueError(
            f"image_size must be a multiple of 64 and at least 128 (1024 as published; "
            f"256 or 512 for fast tests), got {image_size!r}."
        )
    return int(image_size)


def load_sam2(
    name: str = "sam2-tiny",
    checkpoint: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    image_size: int = 1024,
    device: str | torch.device | None = None,
    progress: bool = True,
    compile_encoder: bool = False,
) -> SAM2Model:
    """Build a SAM2 model as FS-MedSAM2 does and load its weights.

    Parameters
    ----------
    name : str
        ``sam2-tiny|small|base_plus|large`` (SAM 2.0) or ``sam2.1-*`` (SAM 2.1).
    checkpoint : path, ``"random"`` or None
        A local checkpoint file (``{"model": state_dict}``, as released); ``"random"`` for a
        seeded random initialisation (tests and smoke runs only: results mean nothing); None to
        download the released checkpoint by name (cached; needs internet).
    seed : int
        Seed of the random initialisation (``checkpoint="random"``).
    image_size : int
        Encoder input size. 1024 as published; 512 or 256 for fast tests (the memory
        attention's RoPE feature sizes follow).
    device : str, torch.device or None
        ``"cpu"``, ``"cuda"``, ``"mps"``; None picks CUDA, then MPS, then CPU.
    progress : bool
        Progress bar while downloading.
    compile_encoder : bool
        ``torch.compile`` the image encoder (:meth:`SAM2Model.compile_encoder`).

    Returns
    -------
    SAM2Model

    Raises
    ------
    ValueError
        Unknown name or bad image size.
    FileNotFoundError
        A checkpoint path that does not exist.
    CheckpointError
        The checkpoint's keys or shapes do not fit the model (strict check).
    CheckpointDownloadError
        A download by name failed (offline): pass ``checkpoint=FILE``.
    """
    spec = _resolve_spec(name)
    image_size = _check_image_size(image_size)
    dev = resolve_device(device)

    ckpt_path: Path | None = None
    if checkpoint is None:
        ckpt_path = download_checkpoint(spec, progress=progress)
    elif str(checkpoint) != "random":
        ckpt_path = Path(checkpoint).expanduser()
        if not ckpt_path.is_file():
            raise FileNotFoundError(
                f"Checkpoint file {str(ckpt_path)!r} does not exist. Pass the path of "
                f"{spec.checkpoint} (download: {spec.url}), or 'random' for random weights."
            )

    import sam2  # noqa: F401  (initialises sam2's hydra config module)
    from sam2.build_sam import build_sam2_video_predictor

    feat = image_size // 16
    overrides = [
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]
    # build_sam2_video_predictor appends PUBLISHED_OVERRIDES itself (apply_postprocessing=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            module = build_sam2_video_predictor(
                spec.config, ckpt_path=None, device="cpu", mode="eval",
                hydra_overrides_extra=overrides, apply_postprocessing=True,
            )
    sha = None
    if ckpt_path is not None:
        try:
            obj = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise CheckpointError(
                f"Could not read checkpoint {str(ckpt_path)!r} ({type(e).__name__}: {e}); is it a "
                "SAM2 .pt file?"
            ) from e
        sd = obj.get("model", obj) if isinstance(obj, dict) else None
        if not isinstance(sd, dict):
            raise CheckpointError(
                f"Checkpoint {str(ckpt_path)!r} holds {type(obj).__name__}, expected a dict "
                "{'model': state_dict} as released by SAM2."
            )
        _check_state_dict(module, sd, repr(str(ckpt_path)), spec)
        module.load_state_dict(sd, strict=True)
        sha = file_sha256(ckpt_path)
    else:
        warnings.warn(
            f"fsm2kit: {spec.name} has RANDOM WEIGHTS (seed {seed}). Results are meaningless; "
            "use this only for tests and smoke runs. Every output will say 'random weights'.",
            UserWarning,
            stacklevel=2,
        )
    module.fill_hole_area = 8  # as published; fsm2kit applies it itself (fill_holes)
    module = module.to(dev).eval()
    if dev.type == "cuda" and torch.cuda.get_device_properties(dev).major >= 8:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    model = SAM2Model(
        module=module,
        spec=spec,
        image_size=image_size,
        device=dev,
        checkpoint=str(ckpt_path) if ckpt_path is not None else None,
        checkpoint_sha256=sha,
        seed=None if ckpt_path is not None else seed,
    )
    return model.compile_encoder() if compile_encoder else model


def save_checkpoint(model: SAM2Model, path: str | os.PathLike) -> Path:
    """Save ``model``'s weights in the released format ``{"model": state_dict}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": model.module.state_dict()}, tmp)
    os.replace(tmp, path)
    return path
