"""Typed few-shot episodes, and how the protocol builds them (PROTOCOL.md section 3).

An :class:`Episode` is one query scan x one class, with its :class:`Support` slices: what the
engine consumes. It is made either from the published FS-MedSAM2 npz dumps
(:func:`fsm2kit.io.npz.load_npz_episodes`) or from preprocessed volumes by :func:`build_episode`,
which combines the protocol's rules (:mod:`fsm2kit.protocol.slices`): one query scan, one support
scan and one class; the support slices may come from another rule (``support_selector``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from numbers import Integral

import numpy as np

from .checks import as_int, canonical_dataset, canonical_variant, check_npart, check_volume
from .labels import DATASET_LABELS, resolve_label
from .slices import chunk_ids, class_slices, scored_range, support_slices

__all__ = ["Support", "Episode", "build_episode"]



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


#: A support-slice rule: ``(support_label_zhw, label_id, npart) -> one support z per chunk``.
SliceRule = Callable[[np.ndarray, int, int], Sequence[int]]


def build_episode(
    query_image: np.ndarray,
    query_label: np.ndarray,
    support_image: np.ndarray,
    support_label: np.ndarray,
    label: int | str,
    *,
    case_id: object,
    support_case_id: object,
    dataset: str = "",
    fold: int | None = None,
    variant: str = "ALP",
    npart: int = 3,
    label_name: str | None = None,
    support_selector: SliceRule | None = None,
) -> Episode:
    """One 1-way 1-shot episode from a query and a support volume (PROTOCOL.md section 3).

    The query's scored slices come from its own ground truth (:func:`scored_range`), each is
    assigned a chunk (:func:`chunk_ids`), and chunk ``p`` gets the support slice
    :func:`support_slices` ``[p]`` (or ``support_selector(...)[p]``) with the mask
    ``support_label[z] == label``. All ``npart`` supports are returned, even for chunks without
    a scored query slice.

    Parameters
    ----------
    query_image, query_label : ndarray, (Z, H, W)
        Query scan intensities and labels, in the same (z, y, x) order.
    support_image, support_label : ndarray, (Z', H, W)
        Support scan intensities and labels; the in-plane size must match the query's.
    label : int or str
        Class id; a name or alias needs ``dataset`` (see :func:`resolve_label`).
    case_id, support_case_id : keyword-only
        Query and support scan ids (stored as ``str``).
    dataset : {"", "SABS", "CHAOST2"}, keyword-only
        When given, ``label`` is validated against the dataset and its name is looked up.
    fold : int, optional, keyword-only
        Provenance only.
    variant : {"ALP", "GMRD"}, keyword-only
        Scored slices and chunking rule. Default ``"ALP"`` (what FS-MedSAM2 used).
    npart : int, keyword-only
        Number of chunks (odd). Default 3.
    label_name : str, optional, keyword-only
        Overrides the class name (default: the dataset's name, or ``str(label)``).
    support_selector : callable, optional, keyword-only
        The support-slice rule, called as ``support_selector(support_label, label_id, npart)``
        with the (Z', H, W) support label volume, the resolved class id and the number of
        chunks; it returns ``npart`` slice indices, the support slice of chunk 0, 1, ...
        Each must be an integer in ``0..Z'-1`` whose slice contains the class. Default
        ``None``: the protocol's rule, :func:`support_slices`.

    Returns
    -------
    Episode
        ``images`` float32, ``labels`` bool; ``meta`` holds ``z_min``, ``z_max``,
        ``support_z``, ``support_n_slices`` and ``chunk_sizes``.

    Raises
    ------
    ValueError
        On shape mismatches, NaN/inf, an even ``npart``, a class absent from the query or
        support scan, or support slices from ``support_selector`` that are not ``npart``
        in-range slices containing the class.
    """
    v = canonical_variant(variant)
    n_part = check_npart(npart)
    qi = check_volume("query_image", query_image)
    ql = check_volume("query_label", query_label)
    si = check_volume("support_image", support_image)
    sl = check_volume("support_label", support_label)
    if qi.shape != ql.shape:
        raise ValueError(
            f"query_image and query_label differ in shape: {qi.shape} vs {ql.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if si.shape != sl.shape:
        raise ValueError(
            f"support_image and support_label differ in shape: {si.shape} vs {sl.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if qi.shape[1:] != si.shape[1:]:
        raise ValueError(
            f"Query and support slices differ in size: {qi.shape[1:]} vs {si.shape[1:]}. "
            "Bring both scans to one in-plane size first (e.g. the [:256, :256] crop for SABS)."
        )

    ds = canonical_dataset(dataset) if dataset else ""
    if ds:
        label_id = resolve_label(ds, label)
        name = label_name if label_name is not None else DATASET_LABELS[ds][label_id]
    else:
        if isinstance(label, str) and not label.strip().isdigit():
            raise ValueError(
                f"Class {label!r} is a name; pass dataset='SABS' or 'CHAOST2' to resolve it, "
                "or give the integer class id."
            )
        label_id = int(label) if isinstance(label, str) else as_int("label", label)
        name = label_name if label_name is not None else str(label_id)

    z = scored_range(ql, label_id, variant=v, case_id=case_id)
    chunks = chunk_ids(z, npart=n_part, variant=v)
    if support_selector is None:
        sz = support_slices(sl, label_id, npart=n_part, case_id=support_case_id)
    else:
        sz = _selected_slices(support_selector, sl, label_id, n_part, support_case_id)
    sup_case = None if support_case_id is None else str(support_case_id)
    supports = tuple(
        Support(
            image=np.asarray(si[s], dtype=np.float32),
            mask=np.asarray(sl[s] == label_id),
            chunk=p,
            z=s,
            case_id=sup_case,
        )
        for p, s in enumerate(sz)
    )
    meta = {
        "z_min": int(z[0]),
        "z_max": int(z[-1]),
        "support_z": tuple(sz),
        "support_n_slices": int(class_slices(sl, label_id).size),
        "chunk_sizes": tuple(int(c) for c in np.bincount(chunks, minlength=n_part)),
    }
    return Episode(
        case_id=str(case_id),
        label=label_id,
        label_name=name,
        z=z,
        images=np.asarray(qi[z], dtype=np.float32),
        labels=np.asarray(ql[z] == label_id),
        chunks=chunks,
        supports=supports,
        dataset=ds,
        fold=fold,
        variant=v,
        npart=n_part,
        meta=meta,
    )


def _selected_slices(
    selector: SliceRule, sl: np.ndarray, label_id: int, npart: int, case_id: object
) -> list[int]:
    """``selector``'s support slices, checked: ``npart`` in-range slices that contain the class."""
    if not callable(selector):
        raise TypeError(
            f"support_selector must be a callable (support_label, label_id, npart) -> slice "
            f"indices, or None for the protocol's rule; got {type(selector).__name__}."
        )
    name = getattr(selector, "__name__", type(selector).__name__)
    case = f" {case_id}" if case_id is not None else ""
    chosen = selector(sl, label_id, npart)
    if isinstance(chosen, (str, bytes)) or np.ndim(chosen) != 1:
        raise ValueError(
            f"support_selector {name} must return a sequence of {npart} slice indices (one per "
            f"chunk); got {chosen!r}."
        )
    chosen = list(chosen)
    if len(chosen) != npart:
        raise ValueError(
            f"support_selector {name} returned {len(chosen)} slice indices {chosen!r}; expected "
            f"npart={npart}, one support slice per chunk."
        )
    out = []
    n_z = sl.shape[0]
    for p, z in enumerate(chosen):
        if isinstance(z, (bool, np.bool_)) or not isinstance(z, Integral):
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p} is {z!r}, not an "
                "integer slice index."
            )
        if not 0 <= int(z) < n_z:
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p} is z={int(z)}, outside "
                f"the support scan{case} (slices 0..{n_z - 1})."
            )
        if not (sl[int(z)] == label_id).any():
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p}, z={int(z)}, does not "
                f"contain class {label_id} in the support scan{case}; choose slices among "
                f"{class_slices(sl, label_id).tolist()}."
            )
        out.append(int(z))
    return out
