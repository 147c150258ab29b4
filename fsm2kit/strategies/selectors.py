"""Choosing support slices: the protocol's chunk centres and selectors beyond the protocol.

Every selector is a small function of a support mask ``(Z, H, W)`` (bool, or a label volume
with ``label=``), usable on its own in a notebook:

* :func:`protocol_slices`: the evaluation protocol's slices ``L[int(pcts[p] * n)]`` (one per
  chunk; :func:`fsm2kit.protocol.support_slices`);
* :func:`middle_slice`: the middle organ slice ``L[n // 2]`` (the protocol with one chunk, what
  S1SFQ uses);
* :func:`largest_slice`: the slice where the organ's area is largest;
* :func:`given_slices`: indices you chose, checked to contain the organ;
* :func:`most_similar_per_query` / :func:`most_similar_per_chunk`: the organ slice whose SAM2
  image embedding is most similar (cosine) to a query slice, or on average to a chunk of query
  slices (:func:`similarity_matrix`). Encoding goes through the engine's cache, so slices are
  encoded once however often they are compared or segmented later.

``L`` is always the ascending list of slices that contain the organ, ``n = len(L)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..protocol.slices import support_slices as _protocol_support_slices

__all__ = [
    "SUPPORT_METHODS",
    "organ_slices",
    "protocol_slices",
    "middle_slice",
    "largest_slice",
    "given_slices",
    "select_support_slices",
    "slice_embedding",
    "similarity_matrix",
    "SimilarityChoice",
    "most_similar_per_query",
    "most_similar_per_chunk",
]

#: Selectors of :func:`select_support_slices` (``"similar"`` needs an engine: see segment).
SUPPORT_METHODS: tuple[str, ...] = ("middle", "largest", "protocol", "given", "similar")


def _mask(mask: np.ndarray, label: int | None, what: str = "support mask") -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 3:
        hint = " For one slice use mask[None]." if m.ndim == 2 else ""
        raise ValueError(f"{what}: expected a (Z, H, W) volume, got shape {m.shape}.{hint}")
    if label is not None:
        return m == label
    if m.dtype == bool:
        return m
    vals = np.unique(m)
    if not np.isin(vals, (0, 1)).all():
        raise ValueError(
            f"{what} is not binary (values {vals[:6].tolist()}{' ...' if vals.size > 6 else ''}); "
            "pass label=<id> to select one class of a label volume."
        )
    return m.astype(bool)


def organ_slices(mask: np.ndarray, *, label: int | None = None) -> np.ndarray:
    """Ascending z indices of the slices that contain the organ (``L``).

    Parameters
    ----------
    mask : ndarray, (Z, H, W)
        Binary mask, or a label volume together with ``label``.
    label : int, optional, keyword-only
        Class id to select from a label volume.

    Raises
    ------
    ValueError
        When the organ is on no slice ("support mask is empty").
    """
    m = _mask(mask, label)
    z = np.flatnonzero(m.any(axis=(1, 2))).astype(np.int64)
    if z.size == 0:
        what = f"label {label}" if label is not None else "the organ"
        raise ValueError(
            f"The support mask is empty for {what}: no slice of the (Z, H, W) = {m.shape} mask "
            "contains it. Check the label id and that the mask belongs to the support image."
        )
    return z


def protocol_slices(mask: np.ndarray, *, label: int | None = None, npart: int = 3) -> list[int]:
    """The protocol's support slices, one per chunk: ``L[int(pcts[p] * n)]`` (PROTOCOL.md 3.4).

    For ``npart = 3`` these are the slices at 1/6, 1/2 and 5/6 of ``L``.
    """
    m = _mask(mask, label)
    organ_slices(m)  # the clear "empty" error first
    return _protocol_support_slices(m.astype(np.uint8), 1, npart=npart)


def middle_slice(mask: np.ndarray, *, label: int | None = None) -> int:
    """The middle organ slice ``L[n // 2]`` (the protocol's pct 0.5; the support S1SFQ uses)."""
    z = organ_slices(mask, label=label)
    return int(z[z.size // 2])


def largest_slice(mask: np.ndarray, *, label: int | None = None) -> int:
    """The slice where the organ covers the most pixels (the lowest such z on ties)."""
    m = _mask(mask, label)
    organ_slices(m)
    area = m.reshape(m.shape[0], -1).sum(axis=1)
    return int(np.argmax(area))


def given_slices(mask: np.ndarray, z: int | Sequence[int], *, label: int | None = None) -> list[int]:
    """Support slices chosen by hand, checked to exist and to contain the organ.

    Negative indices count from the end, as in numpy.

    Raises
    ------
    ValueError
        An index outside the volume, or a slice without the organ (the message lists the
        slices that have it).
    """
    m = _mask(mask, label)
    present = organ_slices(m)
    zs = [z] if isinstance(z, (int, np.integer)) else list(z)
    if not zs:
        raise ValueError("given_slices: no slice index given.")
    out = []
    n = m.shape[0]
    for k in zs:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"Support slice indices must be integers, got {k!r}.")
        kk = int(k) + n if int(k) < 0 else int(k)
        if not 0 <= kk < n:
            raise ValueError(f"Support slice {int(k)} is outside the support volume's {n} slices (0..{n - 1}).")
        if not m[kk].any():
            rng = f"{present[0]}..{present[-1]}" if present.size > 1 else str(present[0])
            what = f"label {label}" if label is not None else "the organ"
            raise ValueError(
                f"The support mask is empty for {what} on slice {kk}: pick a slice where it is "
                f"drawn ({present.size} slices, z {rng})."
            )
        out.append(kk)
    return out


def select_support_slices(
    mask: np.ndarray,
    method: str = "middle",
    *,
    label: int | None = None,
    z: int | Sequence[int] | None = None,
    npart: int = 3,
) -> list[int]:
    """Support slices by a named selector that needs no model.

    Parameters
    ----------
    mask : ndarray, (Z, H, W)
    method : {"middle", "largest", "protocol", "given"}
        See the module docstring. ``"similar"`` compares SAM2 embeddings and needs an engine
        (:func:`most_similar_per_query`, or ``fsm2kit.segment.segment_volume``).
    label : int, optional, keyword-only
    z : int or sequence of int, keyword-only
        The slices for ``"given"``.
    npart : int, keyword-only
        Chunks of ``"protocol"``.

    Returns
    -------
    list of int
    """
    key = str(method).strip().lower()
    if key == "middle":
        return [middle_slice(mask, label=label)]
    if key == "largest":
        return [largest_slice(mask, label=label)]
    if key == "protocol":
        return protocol_slices(mask, label=label, npart=npart)
    if key == "given":
        if z is None:
            raise ValueError("method='given' needs z=<slice index or indices>.")
        return given_slices(mask, z, label=label)
    if key == "similar":
        raise ValueError(
            "method='similar' compares SAM2 image embeddings: use most_similar_per_query / "
            "most_similar_per_chunk with an Engine, or segment_volume(support_select='similar')."
        )
    raise ValueError(f"Unknown support selector {method!r}; expected one of {', '.join(SUPPORT_METHODS)}.")


# ----------------------------------------------------------------------------- embeddings


def slice_embedding(engine, image: np.ndarray, *, pool: str = "flat") -> np.ndarray:
    """A slice's SAM2 image embedding as a unit vector (cosine similarity = dot product).

    The embedding is the image encoder's top feature map (``backbone_fpn[-1]``, 256 x S/16 x
    S/16, what SAM2's decoder calls ``image_embed``), from the engine's cache.

    Parameters
    ----------
    engine : fsm2kit.engine.Engine
    image : ndarray, (H, W)
    pool : {"flat", "mean"}, keyword-only
        ``"flat"``: the whole map (compares layout: where things are); ``"mean"``: the 256
        channel means (position-invariant).
    """
    feats = engine.encode(image)
    t = feats.backbone_fpn[-1].detach().float().to("cpu")[0]  # (C, h, w)
    if pool == "flat":
        v = t.reshape(-1).numpy().astype(np.float64)
    elif pool == "mean":
        v = t.mean(dim=(1, 2)).numpy().astype(np.float64)
    else:
        raise ValueError(f"pool must be 'flat' or 'mean', got {pool!r}.")
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def similarity_matrix(
    engine,
    query_images: Sequence[np.ndarray] | np.ndarray,
    support_images: Sequence[np.ndarray] | np.ndarray,
    *,
    pool: str = "flat",
) -> np.ndarray:
    """Cosine similarity of SAM2 embeddings, ``(n_query, n_support)``.

    Every slice is encoded once through the engine's cache.
    """
    q = np.stack([slice_embedding(engine, im, pool=pool) for im in query_images])
    s = np.stack([slice_embedding(engine, im, pool=pool) for im in support_images])
    return q @ s.T


@dataclass(frozen=True, eq=False)
class SimilarityChoice:
    """Support slices chosen by embedding similarity.

    Attributes
    ----------
    mode : {"per_query", "per_chunk"}
    targets : tuple of int
        Query slice indices (per query) or chunk ids (per chunk).
    support_z : tuple of int
        The chosen support slice of each target.
    candidates : tuple of int
        The support slices compared (those containing the organ).
    scores : ndarray, (n_targets, n_candidates)
        Cosine similarity of each target (a chunk: mean over its slices) to each candidate.
    pool : str
    """

    mode: str
    targets: tuple[int, ...]
    support_z: tuple[int, ...]
    candidates: tuple[int, ...]
    scores: np.ndarray
    pool: str = "flat"

    def best_score(self) -> np.ndarray:
        """The similarity of each target to its chosen slice."""
        return self.scores.max(axis=1)

    def as_dict(self) -> dict[int, int]:
        """``{target: support z}``."""
        return dict(zip(self.targets, self.support_z))

    def __repr__(self) -> str:
        pairs = ", ".join(f"{t}->{z}" for t, z in list(zip(self.targets, self.support_z))[:8])
        more = " ..." if len(self.targets) > 8 else ""
        return (
            f"SimilarityChoice({self.mode}, {len(self.candidates)} candidate slices, "
            f"[{pairs}{more}], best cos {self.best_score().min():.3f}..{self.best_score().max():.3f})"
        )


def most_similar_per_query(
    engine,
    query_images: np.ndarray,
    support_images: np.ndarray,
    support_mask: np.ndarray,
    *,
    queries: Sequence[int] | None = None,
    label: int | None = None,
    pool: str = "flat",
) -> SimilarityChoice:
    """For each query slice, the organ slice of the support most similar to it.

    Parameters
    ----------
    engine : fsm2kit.engine.Engine
    query_images : ndarray, (Zq, H, W)
    support_images : ndarray, (Zs, H', W')
    support_mask : ndarray, (Zs, H', W')
        Binary, or a label volume with ``label``.
    queries : sequence of int, optional, keyword-only
        Query slice indices to choose for (default all).
    label : int, optional, keyword-only
    pool : {"flat", "mean"}, keyword-only
    """
    qimg = np.asarray(query_images)
    simg = np.asarray(support_images)
    m = _mask(support_mask, label)
    if simg.shape != m.shape:
        raise ValueError(f"support images {simg.shape} and mask {m.shape} differ in shape.")
    cand = organ_slices(m)
    targets = list(range(qimg.shape[0])) if queries is None else [int(q) for q in queries]
    bad = [q for q in targets if not 0 <= q < qimg.shape[0]]
    if bad:
        raise ValueError(f"query slices {bad} are outside 0..{qimg.shape[0] - 1}.")
    scores = similarity_matrix(engine, [qimg[q] for q in targets], [simg[z] for z in cand], pool=pool)
    best = scores.argmax(axis=1)
    return SimilarityChoice("per_query", tuple(targets), tuple(int(cand[b]) for b in best),
                            tuple(int(c) for c in cand), scores, pool)


def most_similar_per_chunk(
    engine,
    query_images: np.ndarray,
    chunks: Sequence[int],
    support_images: np.ndarray,
    support_mask: np.ndarray,
    *,
    label: int | None = None,
    pool: str = "flat",
) -> SimilarityChoice:
    """For each chunk of query slices, the organ slice most similar on average to its slices.

    ``chunks[i]`` is the chunk id of query slice ``i`` (e.g. an ``Episode.chunks``); the score
    of a candidate for a chunk is its mean cosine similarity over the chunk's slices.
    """
    qimg = np.asarray(query_images)
    ch = np.asarray(chunks, dtype=np.int64)
    if ch.shape != (qimg.shape[0],):
        raise ValueError(f"chunks must give one chunk id per query slice ({qimg.shape[0]}), got {ch.shape}.")
    per_q = most_similar_per_query(engine, qimg, support_images, support_mask, label=label, pool=pool)
    ids = sorted(set(ch.tolist()))
    scores = np.stack([per_q.scores[ch == c].mean(axis=0) for c in ids])
    best = scores.argmax(axis=1)
    cand = np.asarray(per_q.candidates)
    return SimilarityChoice("per_chunk", tuple(ids), tuple(int(cand[b]) for b in best),
                            per_q.candidates, scores, pool)
