"""Slice features: SAM2's preprocessing and the feature cache (each distinct slice encoded once).

:class:`FeatureCache` holds the image-encoder features of slices, keyed by slice content and
image size: in memory (optionally bounded, least recently used dropped) and optionally on disk
(one subfolder per model, checkpoint and image size), so a slice is encoded once however many
settings, orders, plans, organs or notebook runs use it.

On disk nothing is trusted blindly: each file carries its slice key, the model's feature key,
the shapes and dtypes of its tensors and a keyed checksum of their values (a MAC: keyed BLAKE2b
with the cache folder's secret key, :data:`CACHE_KEY_FILE`, created with mode 600), all checked
on read, and its features must be finite; a file that fails a check (forged without the key,
copied from another cache, NaN) is recomputed and replaced (with a warning). Cache folders are
made with mode 755 and files with 644, whatever the umask: no group or world write. The weights' hash in the
folder name (:meth:`~fsm2kit.model.loading.SAM2Model.weights_feature_key`) is taken **when the
cache (the engine) is created**: weights changed in memory afterwards need a new engine. A
cache folder that cannot be written (read-only, disk full) gives one warning, and the run goes
on without the disk cache (no temporary file is left behind).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..records.fileio import atomic_write
from ..model.loading import SAM2Model
from .results import EngineStats

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "preprocess_slice",
    "prompt_mask",
    "content_key",
    "as_slice",
    "SliceFeatures",
    "FeatureCache",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def as_slice(image: np.ndarray, what: str) -> np.ndarray:
    """A finite 2D float32 slice ((C, H, W) with identical channels is accepted), or a clear error."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and all((a[i] == a[0]).all() for i in range(a.shape[0])):
        a = a[0]  # (C, H, W) with identical channels, as in the published npz dumps
    if a.ndim != 2:
        raise ValueError(f"{what}: expected a 2D (H, W) slice, got shape {a.shape}.")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ValueError(f"{what} contains NaN or inf values; clean or mask them first.")
    return a


def preprocess_slice(image: np.ndarray, image_size: int) -> torch.Tensor:
    """A slice as SAM2's input, exactly as the published FS-MedSAM2 code prepares it.

    Per-slice min-max to [0, 1], three identical channels, bilinear resize to
    ``image_size`` (``align_corners=False``, no antialias), ImageNet mean/std.
    A constant slice maps to 0 (the published code would divide by zero).

    Returns
    -------
    Tensor, (1, 3, image_size, image_size) float32 (CPU)
    """
    a = as_slice(image, "image")
    lo, hi = a.min(), a.max()
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    x = torch.from_numpy(np.ascontiguousarray(a))[None, None].expand(1, 3, *a.shape).contiguous()
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None, None]
    x -= mean
    x /= std
    return x


def prompt_mask(mask: np.ndarray, image_size: int) -> torch.Tensor:
    """A binary mask as SAM2's mask prompt: bilinear + antialias resize, threshold >= 0.5.

    Returns
    -------
    Tensor, (1, 1, image_size, image_size) float32 of 0/1 (CPU)
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask: expected a 2D (H, W) mask, got shape {m.shape}.")
    t = torch.from_numpy(m.astype(bool)).float()[None, None]
    if t.shape[-2:] != (image_size, image_size):
        t = F.interpolate(t, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
        t = (t >= 0.5).float()
    return t


def content_key(a: np.ndarray, *extra) -> str:
    """A content hash of an array (shape, dtype and bytes) and ``extra`` values."""
    h = hashlib.blake2b(digest_size=16)
    a = np.ascontiguousarray(a)
    h.update(str((a.shape, a.dtype.str) + extra).encode())
    h.update(a.tobytes())
    return h.hexdigest()


_FILE_FORMAT = "fsm2kit-slice-features-1"


#: The cache folder's secret key (32 random bytes, mode 600): a cache file's checksum is an HMAC
#: with it, so a file written without the key (forged, or copied from another cache) is refused.
CACHE_KEY_FILE = ".fsm2kit-cache-key"
_KEY_BYTES = 32


def cache_key(cache_dir: str | os.PathLike, *, create: bool = True) -> bytes | None:
    """The secret key of a feature cache folder (:data:`CACHE_KEY_FILE`), created with mode 600
    (whatever the umask) on first use; None when there is none and ``create`` is False.

    Raises
    ------
    OSError
        The key cannot be read or created (then the disk cache is not used).
    ValueError
        The key file is not a regular file of 32 bytes, or others may write it.
    """
    root = Path(cache_dir)
    path = root / CACHE_KEY_FILE
    if not path.exists() and not path.is_symlink():
        if not create:
            return None
        _make_dirs(root)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except FileExistsError:  # another process made it just now
            return cache_key(root, create=False)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, os.urandom(_KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    st = path.lstat()
    import stat as _stat

    if not _stat.S_ISREG(st.st_mode) or st.st_size != _KEY_BYTES:
        raise ValueError(f"{path} is not an fsm2kit cache key (a file of {_KEY_BYTES} bytes)")
    if st.st_mode & 0o022:
        raise ValueError(f"{path} may be written by others (mode {oct(st.st_mode & 0o777)}); fix it with chmod 600")
    return path.read_bytes()


def _make_dirs(path: Path) -> None:
    """mkdir -p with mode 755 on every folder made (whatever the umask): no group or world write."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        os.chmod(d, 0o755)


def _checksum(tensors, key: bytes | None = None) -> str:
    """blake2b of the tensors' shapes, dtypes and bytes; with ``key``, keyed BLAKE2b (a MAC, as HMAC)."""
    h = hashlib.blake2b(digest_size=16, key=key or b"")
    for x in tensors:
        x = x.detach().to("cpu").contiguous()
        h.update(f"{tuple(x.shape)}{x.dtype}".encode())
        h.update(x.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _level_channels(module) -> list[int] | None:
    """Channels of the FPN levels SAM2's decoder uses (None when the module does not say)."""
    try:
        dec = module.sam_mask_decoder
        if module.num_feature_levels == 3 and module.use_high_res_features_in_sam:
            return [int(dec.conv_s0.out_channels), int(dec.conv_s1.out_channels), int(module.hidden_dim)]
    except AttributeError:
        pass
    return None


def _write_bytes(path: str, data) -> None:
    with open(path, "wb") as f:
        f.write(data)


@dataclass(frozen=True, eq=False)
class SliceFeatures:
    """A slice encoded by SAM2's image encoder (the FPN levels SAM2 uses), cached by content."""

    key: str
    backbone_fpn: tuple[torch.Tensor, ...]
    feat_sizes: tuple[tuple[int, int], ...]
    input_shape: tuple[int, int]

    @property
    def vision_feats(self) -> list[torch.Tensor]:
        """Flattened (HW, 1, C) features per level, as SAM2's ``_prepare_backbone_features``."""
        return [x.flatten(2).permute(2, 0, 1) for x in self.backbone_fpn]

    @property
    def high_res(self) -> list[torch.Tensor]:
        """The high-resolution FPN levels the mask decoder uses."""
        return list(self.backbone_fpn[:-1])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{c}x{h}x{w}" for c, h, w in (x.shape[1:] for x in self.backbone_fpn))
        return f"SliceFeatures({self.input_shape[0]}x{self.input_shape[1]} slice -> [{sizes}])"



class FeatureCache:
    """Image-encoder features of slices, computed once per distinct slice content.

    Parameters
    ----------
    model : SAM2Model
    stats : EngineStats
        Counters to update (encoder passes, disk hits).
    max_cached_slices, cache_dir, encode_batch_size, storage_device, progress
        As in :class:`~fsm2kit.engine.engine.Engine`.
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        stats: EngineStats,
        max_cached_slices: int | None = None,
        cache_dir: str | os.PathLike | None = None,
        encode_batch_size: int | None = None,
        storage_device: str | torch.device | None = None,
        progress: bool = True,
    ):
        self.model = model
        self.module = model.module
        self.device = model.device
        self.image_size = model.image_size
        self.stats = stats
        self.progress = progress
        if max_cached_slices is not None and max_cached_slices < 1:
            raise ValueError(f"max_cached_slices must be None or >= 1, got {max_cached_slices}")
        self.max_cached_slices = max_cached_slices
        self.encode_batch_size = int(encode_batch_size or (8 if self.device.type == "cuda" else 1))
        self.storage_device = torch.device(storage_device) if storage_device is not None else self.device
        # the weights' hash is taken now, when the cache (the engine) is created
        self.feature_key = model.weights_feature_key() if cache_dir is not None else None
        self.cache_root = Path(cache_dir) if cache_dir is not None else None  # holds the key (CACHE_KEY_FILE)
        self.cache_dir = Path(cache_dir) / self.feature_key if cache_dir is not None else None
        self._features: OrderedDict[str, SliceFeatures] = OrderedDict()
        self._vision_pos: list[torch.Tensor] | None = None
        self._level_channels: list[int] | None = _level_channels(self.module)

    def __len__(self) -> int:
        return len(self._features)

    def __repr__(self) -> str:
        bound = f", at most {self.max_cached_slices}" if self.max_cached_slices is not None else ""
        disk = f", disk {self.cache_dir}" if self.cache_dir is not None else ""
        return f"FeatureCache({len(self)} slices{bound}{disk})"

    def clear(self) -> None:
        """Forget the features held in memory (the on-disk cache stays)."""
        self._features.clear()

    def remember(self, feats: SliceFeatures) -> SliceFeatures:
        self._features[feats.key] = feats
        self._features.move_to_end(feats.key)
        if self.max_cached_slices is not None:
            while len(self._features) > self.max_cached_slices:
                self._features.popitem(last=False)
        return feats

    def disk_path(self, key: str) -> Path | None:
        return self.cache_dir / key[:2] / f"{key}.pt" if self.cache_dir is not None else None

    def load_disk(self, key: str, shape: tuple[int, int]) -> SliceFeatures | None:
        """Features from the disk cache, or None (absent; a bad file is warned about and recomputed)."""
        path = self.disk_path(key)
        if path is None or not path.is_file():
            return None
        try:
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # torch's message advises weights_only=False: not shown
                raise ValueError(f"not a readable weights file: {type(e).__name__}") from None
            fpn, sizes = self._check_file(obj, key)
        except Exception as e:  # corrupt, foreign or tampered: recompute and replace it
            warnings.warn(f"fsm2kit: feature cache file {path} is not valid ({e}); recomputing and replacing it.",
                          UserWarning, stacklevel=3)
            return None
        self.stats.disk_hits += 1
        fpn = tuple(x.to(self.storage_device) for x in fpn)
        return SliceFeatures(key, fpn, sizes, shape)

    def _check_file(self, obj, key: str) -> tuple[tuple[torch.Tensor, ...], tuple[tuple[int, int], ...]]:
        """The tensors of a cache file after checking its key, shapes, dtypes and checksum."""
        if not isinstance(obj, dict) or obj.get("format") != _FILE_FORMAT:
            raise ValueError("not an fsm2kit feature file")
        if obj.get("key") != key or obj.get("feature_key") != self.feature_key:
            raise ValueError("its key does not match its name")
        fpn = tuple(obj["backbone_fpn"])
        sizes = tuple(tuple(int(v) for v in s) for s in obj["feat_sizes"])
        n = self.module.num_feature_levels
        expected = tuple((self.image_size // (16 // 2 ** (n - 1 - i)),) * 2 for i in range(n))  # strides ..., 8, 16
        if len(fpn) != n or sizes != expected or not all(torch.is_tensor(x) for x in fpn):
            raise ValueError(f"{len(fpn)} levels of sizes {sizes}, expected {n} of {expected}")
        shapes = [list(x.shape) for x in fpn]
        dtypes = [str(x.dtype) for x in fpn]
        if shapes != obj.get("shapes") or dtypes != obj.get("dtypes"):
            raise ValueError(f"tensors {shapes} {dtypes} differ from the recorded {obj.get('shapes')} {obj.get('dtypes')}")
        for x, (h, w) in zip(fpn, sizes):
            if x.ndim != 4 or x.shape[0] != 1 or tuple(x.shape[2:]) != (h, w) or not x.is_floating_point():
                raise ValueError(f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype} for size {h}x{w}")
        if self._level_channels is not None and [int(x.shape[1]) for x in fpn] != self._level_channels:
            raise ValueError(f"channels {[int(x.shape[1]) for x in fpn]}, expected {self._level_channels}")
        key_bytes = cache_key(self.cache_root, create=False) if self.cache_root is not None else None
        if key_bytes is None or not hmac.compare_digest(_checksum(fpn, key_bytes), str(obj.get("checksum"))):
            raise ValueError("its checksum does not match this cache folder's key (a file written without the key: "
                             "forged, or copied from another cache)")
        if not all(bool(torch.isfinite(x).all()) for x in fpn):
            raise ValueError("it holds NaN or inf features")
        return fpn, sizes

    def save_disk(self, feats: SliceFeatures) -> None:
        """Write features to the disk cache; on OSError warn once and go on without it."""
        path = self.disk_path(feats.key)
        if path is None:
            return
        fpn = [x.to("cpu").contiguous() for x in feats.backbone_fpn]
        try:
            key_bytes = cache_key(self.cache_root)
            state = {"format": _FILE_FORMAT, "key": feats.key, "feature_key": self.feature_key,
                     "backbone_fpn": fpn, "feat_sizes": [list(s) for s in feats.feat_sizes],
                     "shapes": [list(x.shape) for x in fpn], "dtypes": [str(x.dtype) for x in fpn],
                     "checksum": _checksum(fpn, key_bytes)}
            buf = io.BytesIO()
            torch.save(state, buf)  # in memory: a full disk then fails as an OSError of the writer
            _make_dirs(path.parent)
            atomic_write(path, lambda tmp: _write_bytes(tmp, buf.getbuffer()), mode=0o644, fsync=False)
        except (OSError, ValueError) as e:
            warnings.warn(
                f"fsm2kit: cannot write the feature cache folder {self.cache_dir} ({type(e).__name__}: "
                f"{getattr(e, 'strerror', None) or e}); continuing without the disk cache.", UserWarning, stacklevel=3)
            self.cache_dir = None

    def encode_batch(self, slices: list[np.ndarray], keys: list[str]) -> list[SliceFeatures]:
        x = torch.cat([preprocess_slice(a, self.image_size) for a in slices]).to(self.device)
        with self.model.autocast():
            out = self.module.forward_image(x)
        self.stats.encoder_passes += len(slices)
        n = self.module.num_feature_levels
        levels = out["backbone_fpn"][-n:]
        sizes = tuple((int(p.shape[-2]), int(p.shape[-1])) for p in out["vision_pos_enc"][-n:])
        self._level_channels = [int(x.shape[1]) for x in levels]
        if self._vision_pos is None:  # identical for every slice: one shared copy
            self._vision_pos = [p[0:1].flatten(2).permute(2, 0, 1) for p in out["vision_pos_enc"][-n:]]
        result = []
        for i, (a, key) in enumerate(zip(slices, keys)):
            fpn = tuple(
                (lvl if len(slices) == 1 else lvl[i:i + 1].clone()).to(self.storage_device) for lvl in levels
            )
            feats = SliceFeatures(key, fpn, sizes, a.shape)
            self.save_disk(feats)
            result.append(self.remember(feats))
        return result

    @torch.inference_mode()
    def encode(self, image: np.ndarray) -> SliceFeatures:
        """The image features of a slice, computed once per distinct slice content.

        Looked up in memory, then in the on-disk cache (``cache_dir``), else computed.
        """
        a = as_slice(image, "image")
        key = content_key(a, self.image_size)
        feats = self._features.get(key)
        if feats is not None:
            self._features.move_to_end(key)
            return feats
        feats = self.load_disk(key, a.shape)
        if feats is not None:
            return self.remember(feats)
        return self.encode_batch([a], [key])[0]

    @torch.inference_mode()
    def encode_all(self, images: Sequence[np.ndarray], *, desc: str = "encode") -> list[SliceFeatures]:
        """Encode slices in batches of ``encode_batch_size`` (cached ones are skipped)."""
        arrays = [as_slice(im, "image") for im in images]
        keys = [content_key(a, self.image_size) for a in arrays]
        todo: dict[str, np.ndarray] = {}
        for a, k in zip(arrays, keys):
            if k in self._features or k in todo:
                continue
            feats = self.load_disk(k, a.shape)
            if feats is not None:
                self.remember(feats)
            else:
                todo[k] = a
        bs = self.encode_batch_size
        items = list(todo.items())
        bar = tqdm(total=len(items), desc=desc, disable=not self.progress or not items, leave=False, unit="slice")
        for i in range(0, len(items), bs):
            chunk = items[i:i + bs]
            self.encode_batch([a for _, a in chunk], [k for k, _ in chunk])
            bar.update(len(chunk))
        bar.close()
        return [self.encode(a) for a in arrays]

    def positions(self, feats: SliceFeatures) -> list[torch.Tensor]:
        """Image position encodings (depend on the feature size only; computed once)."""
        if self._vision_pos is None:
            neck = self.module.image_encoder.neck
            self._vision_pos = [
                neck.position_encoding(torch.zeros(1, 1, h, w, device=self.device)).to(x.dtype).flatten(2).permute(2, 0, 1)
                for (h, w), x in zip(feats.feat_sizes, feats.backbone_fpn)
            ]
        return self._vision_pos

    def on_device(self, feats: SliceFeatures) -> SliceFeatures:
        """The features on the compute device (they may be stored elsewhere, ``storage_device``)."""
        if self.storage_device == self.device:
            return feats
        fpn = tuple(x.to(self.device, non_blocking=True) for x in feats.backbone_fpn)
        return SliceFeatures(feats.key, fpn, feats.feat_sizes, feats.input_shape)

