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
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..records.fileio import atomic_write, file_sha256
from .specs import (
    RANDOM_WEIGHTS,
    CheckpointDownloadError,
    CheckpointError,
    ModelSpec,
    check_image_size,
    check_precision,
    check_seed,
    image_size_for,
    release_file,
    resolve_spec,
    rope_feat_sizes,
)

__all__ = [
    "SAM2Model",
    "load_sam2",
    "save_checkpoint",
    "resolve_device",
    "download_checkpoint",
    "cache_dir",
    "checkpoint_architecture",
    "check_checkpoint",
]







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
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA GPU; use device='cpu'.")
    if dev.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise RuntimeError("device='mps' was requested but MPS is not available; use device='cpu'.")
    return dev


def cache_dir() -> Path:
    """Where downloaded checkpoints live: ``$FSM2KIT_CACHE`` or ``~/.cache/fsm2kit``."""
    return Path(os.environ.get("FSM2KIT_CACHE", Path.home() / ".cache" / "fsm2kit")) / "checkpoints"


def download_checkpoint(spec: ModelSpec, *, progress: bool = True, file: str | None = None) -> Path:
    """Download ``spec``'s checkpoint into :func:`cache_dir` (once) and return its path.

    ``$FSM2KIT_CHECKPOINT_URL`` replaces the base URL (a mirror, or a local server).
    ``file`` is another of the model's released files (:attr:`ModelSpec.releases`, e.g.
    ``MedSAM2_CTLesion.pt``), from the same place; default :attr:`ModelSpec.checkpoint`.

    Raises
    ------
    CheckpointDownloadError
        When the download fails, e.g. on an offline machine.
    """
    file = spec.checkpoint if file is None else file
    if file not in spec.releases:
        raise ValueError(f"{file!r} is not a released {spec.name} checkpoint; expected one of {', '.join(spec.releases)}.")
    target = cache_dir() / file
    if target.is_file():
        return target
    base = os.environ.get("FSM2KIT_CHECKPOINT_URL")
    url = (base.rstrip("/") + "/" + file) if base else spec.base_url + file
    try:  # the temporary file is removed if the download fails
        atomic_write(target, lambda tmp: torch.hub.download_url_to_file(url, tmp, progress=progress))
    except Exception as e:  # URLError, HTTPError, socket errors, ...
        raise CheckpointDownloadError(
            f"Could not download the {spec.name} checkpoint from {url} ({type(e).__name__}: {e}). "
            f"This machine may be offline. Download {file} on a machine with internet "
            f"access, copy it here and pass it with --checkpoint FILE (Python: "
            f"load_sam2({spec.name!r}, checkpoint='FILE')), or use --checkpoint random for a "
            "smoke run with random weights."
        ) from e
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
        "checkpoint (sam2.1_hiera_*.pt) a 'sam2.1-*' name (a MedSAM2_*.pt: 'medsam2'); the size "
        "(tiny/small/base_plus/large) must match too."
    )
    lines.append(hint)
    raise CheckpointError("\n".join(lines))


def _read_state_dict(path: Path, spec: ModelSpec, *, mmap: bool = False) -> dict:
    """The state dict of a checkpoint file (``{"model": state_dict}`` or a bare state dict)."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # a legacy (non-zip) file
    except Exception as e:  # torch's own message advises weights_only=False: unsafe, and wrong here
        raise CheckpointError(
            f"{str(path)!r} is not a SAM2 checkpoint (not a torch weights file, or damaged: "
            f"{type(e).__name__}); expected the released {spec.checkpoint} ({{'model': state_dict}}), "
            "downloaded again if it may be truncated."
        ) from e
    sd = obj.get("model", obj) if isinstance(obj, dict) else None
    sam2_keys = ("image_encoder.", "memory_attention.", "memory_encoder.", "sam_mask_decoder.")
    if isinstance(obj, dict) and "model" not in obj and not any(str(k).startswith(sam2_keys) for k in obj):
        # neither {'model': state_dict} nor a bare SAM2 state dict: say what it holds
        keys = [str(k) for k in obj][:6]
        nested = [str(k) for k, v in obj.items()
                  if isinstance(v, dict) and any(torch.is_tensor(t) for t in v.values())]
        raise CheckpointError(
            f"Checkpoint {str(path)!r} has no 'model' entry (its top-level keys: {keys}"
            f"{' ...' if len(obj) > 6 else ''}); SAM2 checkpoints are {{'model': state_dict}}"
            + (f". Its entry {nested[0]!r} holds weights: save it as {{'model': ...}}" if nested else "")
            + "."
        )
    if not isinstance(sd, dict):
        raise CheckpointError(
            f"Checkpoint {str(path)!r} holds {type(obj).__name__}, expected a dict "
            "{'model': state_dict} as released by SAM2."
        )
    return sd


_EMBED = {112: "base_plus", 144: "large"}  # Hiera-tiny and -small share 96: told apart by depth
_DEPTH = {12: "tiny", 16: "small"}


def checkpoint_architecture(sd: dict) -> str | None:
    """The architecture of a SAM2 state dict from a few of its keys and shapes, e.g.
    ``"SAM 2.1 Hiera-tiny"`` (None: not recognised as SAM2). Cheap: reads no weight values."""
    w = sd.get("image_encoder.trunk.patch_embed.proj.weight")
    if not torch.is_tensor(w) or w.ndim != 4:
        return None
    blocks = {int(k.split(".")[3]) for k in sd if k.startswith("image_encoder.trunk.blocks.")}
    depth = max(blocks) + 1 if blocks else 0
    embed = int(w.shape[0])
    size = _DEPTH.get(depth) if embed == 96 else _EMBED.get(embed)
    if size is None:
        return None
    version = "2.1" if "no_obj_embed_spatial" in sd else "2.0"
    return f"SAM {version} Hiera-{size}"


def check_checkpoint(name: str, checkpoint: str | os.PathLike) -> None:
    """Check, before any model is built, that a checkpoint file holds weights of ``name``'s
    architecture (SAM version and Hiera size, from a few keys; the file is memory-mapped, not
    read whole). Raises a one-line :class:`CheckpointError` naming the model that fits.

    The strict key-by-key check stays in :func:`load_sam2`.
    """
    spec = resolve_spec(name)
    path = Path(checkpoint).expanduser()
    sd = _read_state_dict(path, spec, mmap=True)
    arch = checkpoint_architecture(sd)
    if arch is None or arch == spec.architecture:
        return  # unrecognised layouts get the detailed key check of load_sam2
    from .specs import MODELS

    fits = [m.name for m in MODELS.values() if m.architecture == arch]
    raise CheckpointError(
        f"Checkpoint {str(path)!r} holds {arch} weights, not the {spec.architecture} of {spec.name}; "
        f"pass --model {' or '.join(fits)} (Python: load_sam2({fits[0]!r}, ...)), or a {spec.name} checkpoint "
        f"({', '.join(spec.releases)})."
    )


def _check_finite(sd: dict, source: str) -> None:
    """Refuse a state dict with NaN or inf weights, naming the first bad tensor (one line)."""
    bad = [k for k, v in sd.items() if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        v = sd[bad[0]]
        n = int((~torch.isfinite(v)).sum())
        more = f" and {len(bad) - 1} more tensors" if len(bad) > 1 else ""
        raise CheckpointError(
            f"Checkpoint {source!r} has NaN or inf weights: {bad[0]} ({n} of {v.numel()} values){more}; "
            "the file is damaged or comes from a diverged training: use an intact copy."
        )


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
    tf32 : bool
        Allow TF32 matrix products on CUDA inside :meth:`autocast` (as published on Ampere and
        newer GPUs). Scoped: torch's global flags are set only while the model computes and
        restored afterwards, so loading a model changes no process-wide state.
    precision : {"fp32", "bf16"} or None
        The precision policy of :meth:`autocast`: ``"bf16"`` is bfloat16 autocast (on CUDA as
        published, or on the CPU: the GPU's dtype path, runnable anywhere), ``"fp32"`` none;
        None: the device's default (bf16 on CUDA, fp32 elsewhere). ``dataclasses.replace(model,
        precision=...)`` gives the same weights under another policy.
    """

    module: torch.nn.Module
    spec: ModelSpec
    image_size: int
    device: torch.device
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)
    tf32: bool = False
    precision: str | None = None

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
        """Compute precision: bfloat16 autocast on CUDA (as published) or with ``precision="bf16"``
        (on the CPU too), float32 elsewhere or with ``precision="fp32"``."""
        precision = self.precision or ("bf16" if self.device.type == "cuda" else "fp32")
        return torch.bfloat16 if precision == "bf16" else torch.float32

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision policy as a context manager: bf16 autocast on the model's device when
        :attr:`dtype` is bfloat16 (CUDA by default, the CPU with ``precision="bf16"``), and TF32
        when ``tf32`` (CUDA); a no-op otherwise. Flags it sets are restored on exit."""
        bf16 = self.dtype == torch.bfloat16
        if not bf16 and not self.tf32:
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        if bf16:
            stack.enter_context(torch.autocast(self.device.type, dtype=torch.bfloat16))
        if self.tf32:
            stack.enter_context(_tf32_allowed())
        return stack

    @property
    def feature_key(self) -> str:
        """Names this model's image features: model, image size, a hash of the weights that
        make them (a hash of the image encoder's weights, and of the decoder's high-resolution
        convolutions) and ``-bf16`` when they are computed in bfloat16. Computed on first use and
        kept; :meth:`weights_feature_key` recomputes it (on-disk feature caches call that when
        an engine is created)."""
        cached = self.extra.get("feature_key")
        key = cached if cached else self._weights_key()
        return key + ("-bf16" if self.dtype == torch.bfloat16 else "")

    def weights_feature_key(self) -> str:
        """:attr:`feature_key` recomputed from the weights as they are now (and kept)."""
        self._weights_key()
        return self.feature_key

    def _weights_key(self) -> str:
        h = hashlib.blake2b(digest_size=8)
        mod = self.module
        enc = mod.image_encoder
        parts = [getattr(enc, "_orig_mod", enc)]  # a compiled encoder: its original module's weights
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

        from ..version import __version__

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
            "precision": "bf16" if self.dtype == torch.bfloat16 else "fp32",
            "licence": self.spec.licence,
            "training_data_caveat": self.spec.caveat or None,
            "fsm2kit_version": __version__,
            "sam2_version": getattr(sam2, "__version__", _dist_version("sam2")),
            "torch_version": torch.__version__,
            "compiled_encoder": self.extra.get("compiled_encoder") is not None,
            "tf32": self.tf32,
        }

    def __repr__(self) -> str:
        return (
            f"SAM2Model({self.spec.name}, image_size={self.image_size}, device={self.device}, "
            f"dtype={str(self.dtype).replace('torch.', '')}, weights={self.weights[:23]})"
        )


@contextlib.contextmanager
def _tf32_allowed():
    """TF32 matrix products on CUDA for the duration of the block (flags restored after)."""
    old = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _dist_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "unknown"


def load_sam2(
    name: str = "sam2-tiny",
    checkpoint: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    image_size: int | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    compile_encoder: bool = False,
    tf32: bool | None = None,
    precision: str | None = None,
) -> SAM2Model:
    """Build a SAM2 model as FS-MedSAM2 does and load its weights.

    Parameters
    ----------
    name : str
        ``sam2-tiny|small|base_plus|large`` (SAM 2.0), ``sam2.1-*`` (SAM 2.1) or ``medsam2``
        (MedSAM2: SAM 2.1 tiny fine-tuned on medical scans, at 512 px; licence CC-BY-SA-4.0).
    checkpoint : path, ``"random"`` or None
        A local checkpoint file (``{"model": state_dict}``, as released); one of the model's
        released file names (e.g. ``"MedSAM2_CTLesion.pt"``), downloaded by name when no such
        local file exists; ``"random"`` for a seeded random initialisation (tests and smoke runs
        only: results mean nothing); None to download the model's default checkpoint by name
        (``sam2_hiera_tiny.pt``, ``MedSAM2_latest.pt``, ...; cached; needs internet).
    seed : int
        Seed of the random initialisation (``checkpoint="random"``).
    image_size : int, optional
        Encoder input size; None: the model's own (1024 for SAM2 as published, 512 for
        MedSAM2). 512 or 256 for fast tests. The memory attention's RoPE feature sizes follow
        (image_size / 16).
    device : str, torch.device or None
        ``"cpu"``, ``"cuda"``, ``"mps"``; None picks CUDA, then MPS, then CPU.
    progress : bool
        Progress bar while downloading.
    compile_encoder : bool
        ``torch.compile`` the image encoder (:meth:`SAM2Model.compile_encoder`).
    tf32 : bool, optional
        Allow TF32 matrix products on CUDA while the model computes (scoped, see
        :attr:`SAM2Model.tf32`); default: on for Ampere and newer GPUs, as published.
    precision : {"fp32", "bf16"}, optional
        The precision policy (:attr:`SAM2Model.precision`); None: bf16 autocast on CUDA (as
        published), fp32 elsewhere. ``"bf16"`` on the CPU runs the GPU's dtype path.

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
        The checkpoint holds another architecture (one line, before the model is built), or its
        keys or shapes do not fit the model (strict check).
    CheckpointDownloadError
        A download by name failed (offline): pass ``checkpoint=FILE``.
    """
    spec = resolve_spec(name)
    image_size = image_size_for(spec.name, image_size)
    seed = check_seed(seed)
    dev = resolve_device(device)
    precision = check_precision(precision, dev.type)

    ckpt_path: Path | None = None
    if checkpoint is None:
        ckpt_path = download_checkpoint(spec, progress=progress)
    elif str(checkpoint) != "random" and not Path(checkpoint).expanduser().exists() and release_file(spec, checkpoint):
        ckpt_path = download_checkpoint(spec, progress=progress, file=str(checkpoint))
    elif str(checkpoint) != "random":
        ckpt_path = Path(checkpoint).expanduser()
        if ckpt_path.is_dir():
            raise CheckpointError(
                f"Checkpoint {str(ckpt_path)!r} is a folder, not a file; pass the checkpoint file in "
                f"it (e.g. {str(ckpt_path / spec.checkpoint)!r})."
            )
        if not ckpt_path.is_file():
            raise FileNotFoundError(
                f"Checkpoint file {str(ckpt_path)!r} does not exist. Pass the path of "
                f"{spec.checkpoint} (download: {spec.url}), or 'random' for random weights."
            )
    if ckpt_path is not None:
        check_checkpoint(spec.name, ckpt_path)  # another architecture: one line, before the build

    import sam2  # noqa: F401  (initialises sam2's hydra config module)
    from sam2.build_sam import build_sam2_video_predictor

    feat, _ = rope_feat_sizes(image_size)
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
        sd = _read_state_dict(ckpt_path, spec)
        _check_state_dict(module, sd, repr(str(ckpt_path)), spec)
        _check_finite(sd, str(ckpt_path))
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
    if tf32 is None:  # as published: TF32 on Ampere and newer GPUs
        tf32 = dev.type == "cuda" and torch.cuda.get_device_properties(dev).major >= 8
    model = SAM2Model(
        module=module,
        spec=spec,
        image_size=image_size,
        device=dev,
        checkpoint=str(ckpt_path) if ckpt_path is not None else None,
        checkpoint_sha256=sha,
        seed=None if ckpt_path is not None else seed,
        tf32=bool(tf32) and dev.type == "cuda",
        precision=precision,
    )
    return model.compile_encoder() if compile_encoder else model


def save_checkpoint(model: SAM2Model, path: str | os.PathLike) -> Path:
    """Save ``model``'s weights in the released format ``{"model": state_dict}``."""
    state = {"model": model.module.state_dict()}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))
