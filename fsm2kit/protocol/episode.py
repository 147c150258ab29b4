"""Typed few-shot episodes: one query scan x one class, with its support slices.

An :class:`Episode` is what the engine consumes. It is produced either from the published
FS-MedSAM2 npz dumps (:func:`fsm2kit.data.load_npz_episodes`) or from preprocessed volumes
through the evaluation protocol (:func:`fsm2kit.protocol.build_episode`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Support", "Episode"]


def _check_2d(name: str, a: np.ndarray) -> None:
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2D (H, W) array, got shape {a.shape}.")


@dataclass(frozen=True, eq=False)
class Support:
    """One annotated support slice.

    Attributes
    ----------
    image : ndarray, (H, W) float32
        The support slice's intensities (any affine scaling; the engine min-max normalises).
    mask : ndarray, (H, W) bool
        Binary foreground mask of the episode's class on that slice. Never empty.
    chunk : int
        The query chunk (sub-volume) this support belongs to, 0-based.
    z : int or None
        Slice index in the support scan, when known.
    case_id : str or None
        Support scan id, when known.
    """

    image: np.ndarray
    mask: np.ndarray
    chunk: int
    z: int | None = None
    case_id: str | None = None

    def __post_init__(self) -> None:
        _check_2d("Support.image", self.image)
        _check_2d("Support.mask", self.mask)
        if self.image.shape != self.mask.shape:
            raise ValueError(
                f"Support image and mask differ in shape: {self.image.shape} vs {self.mask.shape}."
            )
        if not np.isfinite(self.image).all():
            raise ValueError("Support image contains NaN or inf values; clean the input first.")
        if not np.asarray(self.mask).any():
            raise ValueError(
                f"Support mask (chunk {self.chunk}, z={self.z}, case {self.case_id}) is empty: "
                "a support slice must contain the class. Pick a slice where the organ is present."
            )

    def __repr__(self) -> str:
        return (
            f"Support(case={self.case_id!r}, z={self.z}, chunk={self.chunk}, "
            f"shape={self.image.shape}, fg={int(np.count_nonzero(self.mask))} px)"
        )


@dataclass(frozen=True, eq=False)
class Episode:
    """One query scan and one class: the scored query slices and their supports.

    Attributes
    ----------
    case_id : str
        Query scan id.
    label : int
        Class id in the dataset's label map.
    label_name : str
        Class name (e.g. ``"LIVER"``).
    z : ndarray, (M,) int
        Slice indices of the scored query slices, strictly ascending.
    images : ndarray, (M, H, W) float32
        The scored query slices.
    labels : ndarray, (M, H, W) bool or None
        Ground truth of the class on those slices (None when unknown).
    chunks : ndarray, (M,) int
        Chunk (sub-volume) index of each query slice, 0-based.
    supports : tuple of Support
        Support slices, one per chunk where known (the protocol defines all ``npart``; an npz
        dump holds only those of chunks with scored slices), sorted by chunk.
    dataset, fold, variant : str / int / str
        Provenance: dataset name, fold, protocol variant (``"ALP"`` or ``"GMRD"``).
    """

    case_id: str
    label: int
    label_name: str
    z: np.ndarray
    images: np.ndarray
    labels: np.ndarray | None
    chunks: np.ndarray
    supports: tuple[Support, ...]
    dataset: str = ""
    fold: int | None = None
    variant: str = "ALP"
    npart: int = 3
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        m = len(self.z)
        if self.images.ndim != 3:
            raise ValueError(
                f"Episode.images: expected (M, H, W) query slices, got shape {self.images.shape}."
            )
        if self.images.shape[0] != m or len(self.chunks) != m:
            raise ValueError(
                f"Episode arrays disagree: {m} z indices, {self.images.shape[0]} images, "
                f"{len(self.chunks)} chunk ids."
            )
        if m == 0:
            raise ValueError(f"Episode {self.case_id}/{self.label_name} has no query slices.")
        if np.any(np.diff(self.z) <= 0):
            raise ValueError("Episode.z must be strictly ascending.")
        if self.labels is not None and self.labels.shape != self.images.shape:
            raise ValueError(
                f"Episode labels shape {self.labels.shape} differs from images {self.images.shape}."
            )
        if not np.isfinite(self.images).all():
            raise ValueError(
                f"Query images of {self.case_id} contain NaN or inf values; clean the input first."
            )
        if not self.supports:
            raise ValueError("An episode needs at least one support slice.")
        if [s.chunk for s in self.supports] != sorted({s.chunk for s in self.supports}):
            raise ValueError("Episode.supports must be sorted by chunk, one support per chunk.")

    # ------------------------------------------------------------------ helpers
    @property
    def n_slices(self) -> int:
        return len(self.z)

    def support_for_chunk(self, chunk: int) -> Support:
        """The support slice of ``chunk`` (raises if that chunk has none)."""
        for s in self.supports:
            if s.chunk == chunk:
                return s
        raise KeyError(
            f"Episode {self.case_id}/{self.label_name} has no support for chunk {chunk}; "
            f"chunks with a support: {[s.chunk for s in self.supports]}."
        )

    @property
    def middle_support(self) -> Support:
        """The middle chunk's support (``npart // 2``), as the paper's S1SFQ uses."""
        return self.support_for_chunk(self.npart // 2)

    def __repr__(self) -> str:
        h, w = self.images.shape[1:]
        return (
            f"Episode(case={self.case_id!r}, class={self.label_name}({self.label}), "
            f"z={int(self.z[0])}..{int(self.z[-1])} ({self.n_slices} slices), {h}x{w}, "
            f"supports={[f'chunk {s.chunk}' + (f' z={s.z}' if s.z is not None else '') for s in self.supports]}, "
            f"dataset={self.dataset!r}, "
            f"fold={self.fold}, variant={self.variant})"
        )
