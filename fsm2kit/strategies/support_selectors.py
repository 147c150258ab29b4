"""Support selectors: which slices of the support scan annotate the query (contract, built-ins, registry).

A selector serves two callers, through one object (:class:`SupportSelector`):

episodes (per chunk)
    ``selector(support_label_zhw, label_id, npart) -> Sequence[int]``, what
    ``fsm2kit.protocol.build_episode(support_selector=...)`` calls: one support-scan slice ``z``
    per chunk (``npart`` of them, chunk order), each containing ``label_id``.
whole volume (``fsm2kit segment``)
    :meth:`SupportSelector.volume_choice` (``volume_slices`` for the slices alone): the slice(s)
    one propagation through the whole scan starts from, all of them conditioning memories.

``L`` below is the ascending list of support slices that contain the class; *per chunk* means
over ``L`` split into ``npart`` runs of (nearly) equal length (``gmrd_chunk_boundaries``), a chunk
left empty by a short organ taking the protocol's slice.

=============  ===================================================  ===============================
name           episodes (per chunk)                                 segment (whole volume)
=============  ===================================================  ===============================
protocol       ``L[int(pcts[p] * n)]``, the protocol (default)      the ``npart`` protocol slices
middle         the middle organ slice of each chunk                 the middle organ slice
largest        the slice of largest organ area in each chunk        the largest over the organ
given:Z,..     these slices (one for all chunks, or one per chunk)  these slices
random:S       one organ slice per chunk drawn with seed S          one organ slice (seed S)
similar        per chunk: the most similar slice of the chunk to    the organ slice most similar to
               the chunk's query slices (needs the model)           the query slice it would start
                                                                    from (needs the model)
similar:query  per query slice its own support(s) (1S1Q, 3S1Q)      refused (see below)
=============  ===================================================  ===============================

``similar`` has one rule (:func:`most_similar`): among candidate organ slices, the one whose SAM2
image embedding (:func:`slice_embedding`: the image encoder's top feature map, flattened, unit
length, from the engine's cache) has the highest mean cosine similarity to its target query
slices; scores equal to 6 decimals tie, and ties go to the candidate nearest the middle of the
candidates, then to the lower z. The modes differ only in candidates and targets:

* ``similar`` (per chunk; ``run``): for chunk p, the organ slices of chunk p, each compared with
  the episode's query slices of chunk p (all query slices when the chunk has none);
* ``similar:query`` (``run``, 1S1Q and 3S1Q): for every query slice and chunk, the organ slices of
  that chunk compared with that query slice alone (1S1Q uses its own chunk's, 3S1Q every chunk's);
* ``fsm2kit segment`` (``similar``): the scan is one chunk whose organ slices in the query are
  unknown, so each organ slice c is compared with the query slice its propagation would start
  from: the given start, else c's relative position along z.

``similar:query`` chooses a support per query slice; the FQ settings and a whole-volume
propagation condition every slice on the same supports, so ``run`` (FQ) and ``segment`` refuse it
with that reason (:meth:`SupportSelector.refusal`).

A user's selector is any function with the per-chunk contract, registered with
:func:`register_support_selector`; the registry wraps it in a :class:`SupportSelector` (which
checks its answers; ``segment`` calls it with its ``npart`` and propagates from every slice it
returns, as for ``protocol``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

from .registry import Registry, parse_index

if TYPE_CHECKING:
    import numpy as np

__all__ = ["SupportSelector", "SUPPORT_SELECTORS", "register_support_selector", "get_support_selector",
           "check_support_choice", "organ_slices", "given_slices", "chunk_middle_slices", "chunk_largest_slices",
           "protocol_chunk_slices", "chunk_candidates", "chunk_random_slices", "given_selector", "SIMILARITY_MODES",
           "SIMILARITY_DECIMALS", "slice_embedding", "similarity_matrix", "SimilarityChoice", "most_similar",
           "VolumeInputs"]

#: The modes of ``similar``: ``chunk`` (one support per chunk, the default) and ``query`` (per query slice).
SIMILARITY_MODES = ("chunk", "query")
#: Similarity scores equal to this many decimals tie (:func:`most_similar`).
SIMILARITY_DECIMALS = 6


# ----------------------------------------------------------------------------- pure helpers
def _volume(support_label_zhw, label_id) -> tuple["np.ndarray", "np.ndarray"]:
    import numpy as np

    lab = np.asarray(support_label_zhw)
    if lab.ndim != 3:
        raise ValueError(f"support label volume: expected (Z, H, W), got shape {lab.shape}")
    present = np.flatnonzero((lab == label_id).any(axis=(1, 2)))
    if present.size == 0:
        raise ValueError(f"class {label_id} absent from the support scan: no slice of its label volume "
                         f"(shape {lab.shape}) contains it")
    return lab, present


def _npart(npart: object) -> int:
    if isinstance(npart, bool) or not hasattr(npart, "__index__"):
        raise TypeError(f"npart must be an integer, got {npart!r}")
    n = int(npart.__index__())
    if n < 1:
        raise ValueError(f"npart must be >= 1, got {n}")
    return n


def _chunks(n: int, npart: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` positions of each chunk in an ``n``-slice organ list (equal-length runs)."""
    return [((p * n) // npart, ((p + 1) * n) // npart) for p in range(npart)]


def _fallback(n: int, p: int, npart: int) -> int:
    """The protocol's position for chunk ``p`` (``int(pcts[p] * n)``), for chunks left empty."""
    if npart == 1:
        return n // 2
    from ..protocol.slices import alp_support_index

    if npart % 2:
        return alp_support_index(n, p, npart)
    return min(n - 1, (n * (2 * p + 1)) // (2 * npart))


def _mask(mask, label: int | None, what: str = "support mask") -> "np.ndarray":
    import numpy as np

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
        raise ValueError(f"{what} is not binary (values {vals[:6].tolist()}{' ...' if vals.size > 6 else ''}); "
                         "pass label=<id> to select one class of a label volume.")
    return m.astype(bool)


def organ_slices(mask, *, label: int | None = None) -> "np.ndarray":
    """Ascending z of the slices that contain the organ (``L``) of a binary ``(Z, H, W)`` mask, or
    of class ``label`` of a label volume. ValueError when the organ is on no slice."""
    import numpy as np

    m = _mask(mask, label)
    z = np.flatnonzero(m.any(axis=(1, 2))).astype(np.int64)
    if z.size == 0:
        what = f"label {label}" if label is not None else "the organ"
        raise ValueError(f"The support mask is empty for {what}: no slice of the (Z, H, W) = {m.shape} mask "
                         "contains it. Check the label id and that the mask belongs to the support image.")
    return z


def given_slices(mask, z: int | Sequence[int], *, label: int | None = None) -> list[int]:
    """Support slices chosen by hand, checked to exist and to contain the organ (negative indices
    count from the end, as in numpy). ValueError names a bad slice and where the organ is drawn."""
    import numpy as np

    m = _mask(mask, label)
    present = organ_slices(m)
    zs = [z] if isinstance(z, (int, np.integer)) else list(z)
    if not zs:
        raise ValueError("given_slices: no slice index given.")
    out, n = [], m.shape[0]
    for k in zs:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"Support slice indices must be integers, got {k!r}.")
        kk = int(k) + n if int(k) < 0 else int(k)
        if not 0 <= kk < n:
            raise ValueError(f"Support slice {int(k)} is outside the support volume's {n} slices (0..{n - 1}).")
        if not m[kk].any():
            rng = f"{present[0]}..{present[-1]}" if present.size > 1 else str(present[0])
            what = f"label {label}" if label is not None else "the organ"
            raise ValueError(f"The support mask is empty for {what} on slice {kk}: pick a slice where it is "
                             f"drawn ({present.size} slices, z {rng}).")
        out.append(kk)
    return out


def protocol_chunk_slices(support_label_zhw, label_id: int, npart: int = 3) -> list[int]:
    """The protocol's support slices ``L[int(pcts[p] * n)]`` (:func:`fsm2kit.protocol.support_slices`)."""
    from ..protocol.slices import support_slices

    return support_slices(support_label_zhw, label_id, npart=_npart(npart))


def chunk_middle_slices(support_label_zhw, label_id: int, npart: int = 3) -> list[int]:
    """The middle organ slice of each chunk of ``L``: ``L[(lo + hi) // 2]`` (one chunk: ``L[n // 2]``)."""
    _, present = _volume(support_label_zhw, label_id)
    n, k = int(present.size), _npart(npart)
    return [int(present[(lo + hi) // 2 if hi > lo else _fallback(n, p, k)])
            for p, (lo, hi) in enumerate(_chunks(n, k))]


def chunk_largest_slices(support_label_zhw, label_id: int, npart: int = 3) -> list[int]:
    """The slice of largest organ area in each chunk of ``L`` (lowest z on ties)."""
    import numpy as np

    lab, present = _volume(support_label_zhw, label_id)
    n, k = int(present.size), _npart(npart)
    area = (lab[present] == label_id).reshape(n, -1).sum(axis=1)
    out = []
    for p, (lo, hi) in enumerate(_chunks(n, k)):
        i = lo + int(np.argmax(area[lo:hi])) if hi > lo else _fallback(n, p, k)
        out.append(int(present[i]))
    return out


def chunk_candidates(support_label_zhw, label_id: int, npart: int = 3) -> list["np.ndarray"]:
    """The organ slices of each chunk of ``L`` (ascending z); a chunk left empty by a short organ
    gets the protocol's slice. What per-chunk selectors choose from."""
    import numpy as np

    _, present = _volume(support_label_zhw, label_id)
    n, k = int(present.size), _npart(npart)
    return [present[lo:hi].astype(np.int64) if hi > lo else present[[_fallback(n, p, k)]].astype(np.int64)
            for p, (lo, hi) in enumerate(_chunks(n, k))]


def chunk_random_slices(support_label_zhw, label_id: int, npart: int = 3, *, seed: int = 0) -> list[int]:
    """One organ slice per chunk of ``L``, drawn uniformly with ``numpy.random.default_rng(seed)``
    (chunk 0 first): the same seed gives the same slices."""
    import numpy as np

    rng = np.random.default_rng(int(seed))
    return [int(c[rng.integers(c.size)]) for c in chunk_candidates(support_label_zhw, label_id, npart)]


def check_support_choice(zs: object, support_label_zhw, label_id: int, npart: int | None, *,
                         name: str = "support selector") -> list[int]:
    """Check a selector's answer: integers, inside the volume, on slices with the class, ``npart`` of them.

    ``npart`` None accepts any number (at least one). Returns the slices as a list of int.
    """
    import numpy as np

    lab = np.asarray(support_label_zhw)
    try:
        items = list(zs)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError(f"support selector {name!r} returned {zs!r}, not a sequence of slice indices") from None
    if npart is not None and len(items) != npart:
        raise ValueError(f"support selector {name!r} returned {len(items)} slices {items} for {npart} chunks "
                         "(one per chunk expected)")
    if not items:
        raise ValueError(f"support selector {name!r} returned no slice")
    out = []
    for z in items:
        if isinstance(z, (bool, np.bool_)) or not isinstance(z, (int, np.integer)):
            raise ValueError(f"support selector {name!r} returned {z!r}: slice indices must be integers")
        z = int(z)
        if not 0 <= z < lab.shape[0]:
            raise ValueError(f"support selector {name!r} returned slice {z}, outside the support's "
                             f"{lab.shape[0]} slices")
        if not (lab[z] == label_id).any():
            raise ValueError(f"support selector {name!r} returned slice {z}, where class {label_id} is not drawn")
        out.append(z)
    return out


# ----------------------------------------------------------------------------- similarity (the model's view)
def slice_embedding(engine, image, *, pool: str = "flat") -> "np.ndarray":
    """A slice's SAM2 image embedding as a unit vector (cosine similarity = dot product).

    The image encoder's top feature map (``backbone_fpn[-1]``, 256 x S/16 x S/16, what SAM2's
    decoder calls ``image_embed``), from the engine's cache. ``pool="flat"``: the whole map
    (compares layout); ``"mean"``: the 256 channel means (position-invariant).
    """
    import numpy as np

    t = engine.encode(image).backbone_fpn[-1].detach().float().to("cpu")[0]  # (C, h, w)
    if pool == "flat":
        v = t.reshape(-1).numpy().astype(np.float64)
    elif pool == "mean":
        v = t.mean(dim=(1, 2)).numpy().astype(np.float64)
    else:
        raise ValueError(f"pool must be 'flat' or 'mean', got {pool!r}.")
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def similarity_matrix(engine, query_images, support_images, *, pool: str = "flat") -> "np.ndarray":
    """Cosine similarity of SAM2 embeddings, ``(n_query, n_support)``; each slice encoded once (cache)."""
    import numpy as np

    q = np.stack([slice_embedding(engine, im, pool=pool) for im in query_images])
    s = np.stack([slice_embedding(engine, im, pool=pool) for im in support_images])
    return q @ s.T


@dataclass(frozen=True, eq=False)
class SimilarityChoice:
    """What ``similar`` chose (:func:`most_similar`).

    Attributes
    ----------
    mode : {"chunk", "query", "volume"}
        ``similar`` per chunk, ``similar:query``, or ``fsm2kit segment``'s whole volume.
    targets : tuple
        What each decision is for: chunk ids (chunk), ``(query position, chunk)`` pairs (query),
        ``("volume",)`` (volume).
    support_z : tuple of int
        The chosen support slice of each decision.
    candidates : tuple of int
        Every support slice compared (ascending z).
    scores : ndarray, (n_decisions, n_candidates)
        Each candidate's score in each decision (NaN: not a candidate of that decision).
    pool : str
    """

    mode: str
    targets: tuple
    support_z: tuple[int, ...]
    candidates: tuple[int, ...]
    scores: "np.ndarray"
    pool: str = "flat"

    def best_score(self) -> "np.ndarray":
        """The score of each decision's chosen slice."""
        import numpy as np

        return np.nanmax(self.scores, axis=1)

    def as_dict(self) -> dict:
        """``{target: support z}``."""
        return dict(zip(self.targets, self.support_z))

    def __repr__(self) -> str:
        pairs = ", ".join(f"{t}->{z}" for t, z in list(zip(self.targets, self.support_z))[:8])
        more = " ..." if len(self.targets) > 8 else ""
        best = self.best_score()
        return (f"SimilarityChoice({self.mode}, {len(self.candidates)} candidate slices, [{pairs}{more}], "
                f"best cos {best.min():.3f}..{best.max():.3f})")


def most_similar(engine, query_images, support_images, decisions: Sequence[Sequence[tuple[int, Sequence[int]]]], *,
                 mode: str, targets: Sequence, pool: str = "flat") -> SimilarityChoice:
    """The one rule of ``similar`` (see the module docstring).

    Parameters
    ----------
    engine : Engine
        Encodes the slices (through its cache: each slice once, however often compared).
    query_images, support_images : (Z, H, W) arrays or sequences of (H, W)
    decisions : sequence of sequences of ``(z, query positions)``
        Per decision, its candidate support slices ``z``, each with the query slices (positions in
        ``query_images``) its embedding is compared with; its score is the mean cosine similarity.
    mode, targets
        Recorded in the result (:class:`SimilarityChoice`).

    Returns
    -------
    SimilarityChoice
        Per decision the best candidate: the highest score to :data:`SIMILARITY_DECIMALS`
        decimals, ties to the candidate nearest the middle of that decision's candidates, then
        the lower z.
    """
    import numpy as np

    decisions = [[(int(z), [int(q) for q in qs]) for z, qs in d] for d in decisions]
    if not decisions or any(not d or any(not qs for _, qs in d) for d in decisions):
        raise ValueError("most_similar: every decision needs candidates, each compared with query slices")
    if len(targets) != len(decisions):
        raise ValueError(f"most_similar: {len(targets)} targets for {len(decisions)} decisions")
    qpos = sorted({q for d in decisions for _, qs in d for q in qs})
    cand = sorted({z for d in decisions for z, _ in d})
    sim = similarity_matrix(engine, [query_images[q] for q in qpos], [support_images[z] for z in cand], pool=pool)
    row, col = {q: i for i, q in enumerate(qpos)}, {z: j for j, z in enumerate(cand)}
    scores = np.full((len(decisions), len(cand)), np.nan)
    chosen = []
    for i, d in enumerate(decisions):
        for z, qs in d:
            scores[i, col[z]] = float(sim[[row[q] for q in qs], col[z]].mean())
        zs = sorted(z for z, _ in d)
        mid = zs[len(zs) // 2]
        chosen.append(max(zs, key=lambda z: (round(float(scores[i, col[z]]), SIMILARITY_DECIMALS), -abs(z - mid), -z)))
    return SimilarityChoice(mode, tuple(targets), tuple(chosen), tuple(cand), scores, pool)


@dataclass(frozen=True, eq=False)
class VolumeInputs:
    """What a selector that needs the model gets from ``fsm2kit segment`` (:meth:`SupportSelector.volume_choice`).

    Attributes
    ----------
    engine : Engine
    query_images : ndarray, (Zq, H, W)
        The query scan (positions are its z).
    support_images : ndarray, (Zs, H', W')
        The support scan.
    start_of : callable
        ``start_of(z)``: the query slice a propagation from support slice ``z`` starts at.
    """

    engine: object
    query_images: object
    support_images: object
    start_of: Callable[[int], int]


# ----------------------------------------------------------------------------- the selector object
@dataclass(frozen=True, eq=False)
class SupportSelector:
    """A named support selector, checking what its rule returns.

    Attributes
    ----------
    name : str
        The spec it is recorded under (``"given:12,20,31"``).
    swap : int
        Per-slice supports (``swap:K``): for each query step the K support slices most similar to
        it join as conditioning memories for that step only (:func:`fsm2kit.run.support_plans.swap_supports`);
        0 for the others.
    choose : callable or None
        The per-chunk rule ``(support_label_zhw, label_id, npart) -> one z per chunk``; None for
        a selector that needs the model (``similar``).
    summary : str
    volume : callable, optional
        ``fsm2kit segment``'s rule ``(support_label_zhw, label_id, npart) -> slices`` (any number);
        default the per-chunk rule.
    """

    name: str
    choose: Callable[..., Sequence[int]] | None
    summary: str = ""
    volume: Callable[..., Sequence[int]] | None = None
    swap: int = 0

    @property
    def strategy_name(self) -> str:
        return self.name

    @property
    def needs_model(self) -> bool:
        return self.choose is None

    @property
    def similarity(self) -> str | None:
        """``"chunk"`` or ``"query"`` for a selector by SAM2 embedding (``similar``), else None."""
        if not self.needs_model:
            return None
        mode = self.name.partition(":")[2].strip().lower() or "chunk"
        return mode if mode in SIMILARITY_MODES else "chunk"

    def refusal(self, use: str) -> str | None:
        """Why this selector cannot serve ``use`` (``"episodes"``, ``"experiments"``, ``"segment"``), or None."""
        if use == "episodes" and self.needs_model:
            return ("compares SAM2 embeddings of query and support slices: it needs a model: run_experiment and "
                    "fsm2kit segment choose it with theirs, build_episode cannot")
        if use == "segment" and self.swap:
            return ("adds per-slice supports to the steps of fsm2kit run and inspect; segment's whole-volume "
                    "propagation does not take them: use 'similar' or 'protocol'")
        if use == "segment" and self.similarity == "query":
            return ("chooses a support per query slice, which only 1S1Q and 3S1Q can use; a whole-volume "
                    "propagation conditions every slice on the same supports (as the FQ settings do): use 'similar'")
        return None

    @property
    def serves(self) -> tuple[str, ...]:
        """What it serves: ``"episodes"`` (build_episode's per-chunk contract), ``"experiments"``, ``"segment"``."""
        return tuple(u for u in ("episodes", "experiments", "segment") if self.refusal(u) is None)

    def _refuse(self, use: str) -> None:
        why = self.refusal(use)
        if why is not None:
            raise ValueError(f"support selector {self.name!r} {why}")

    def __call__(self, support_label_zhw, label_id: int, npart: int) -> list[int]:
        """One support slice per chunk (build_episode's contract), checked."""
        self._refuse("episodes")
        k = _npart(npart)
        return check_support_choice(self.choose(support_label_zhw, label_id, k), support_label_zhw, label_id, k,
                                    name=self.name)

    def episode_choice(self, engine, query_images, query_chunks, support_images, support_label_zhw, label_id: int,
                       npart: int) -> SimilarityChoice:
        """``similar`` / ``similar:query`` for an episode (``run``): per chunk p, or per (query slice q, chunk p)."""
        import numpy as np

        if not self.needs_model:
            raise ValueError(f"support selector {self.name!r} needs no model: call it with the support labels")
        cands = chunk_candidates(support_label_zhw, label_id, npart)
        chunks = np.asarray(query_chunks).astype(int)
        if self.similarity == "chunk":
            rows = [np.flatnonzero(chunks == p) if (chunks == p).any() else np.arange(chunks.size)
                    for p in range(len(cands))]
            decisions = [[(z, r) for z in c] for c, r in zip(cands, rows)]
            return most_similar(engine, query_images, support_images, decisions, mode="chunk",
                                targets=tuple(range(len(cands))), pool="flat")
        pairs = [(q, p) for q in range(chunks.size) for p in range(len(cands))]
        return most_similar(engine, query_images, support_images, [[(z, [q]) for z in cands[p]] for q, p in pairs],
                            mode="query", targets=tuple(pairs))

    def volume_choice(self, support_label_zhw, label_id: int, *, npart: int = 3,
                      model: VolumeInputs | None = None) -> tuple[list[int], SimilarityChoice | None]:
        """The support slices ``fsm2kit segment`` propagates from (checked) and, for ``similar``,
        what was compared (:class:`SimilarityChoice`; None for the others)."""
        self._refuse("segment")
        if self.needs_model:
            if model is None:
                raise ValueError(f"support selector {self.name!r} needs the engine: use "
                                 "segment_volume(support_select='similar') or pass model=VolumeInputs(...)")
            (organ,) = chunk_candidates(support_label_zhw, label_id, 1)
            decision = [(int(z), [int(model.start_of(int(z)))]) for z in organ]
            choice = most_similar(model.engine, model.query_images, model.support_images, [decision],
                                  mode="volume", targets=("volume",))
            return list(choice.support_z), choice
        rule = self.volume if self.volume is not None else self.choose
        return check_support_choice(rule(support_label_zhw, label_id, _npart(npart)), support_label_zhw,
                                    label_id, None, name=self.name), None

    def volume_slices(self, support_label_zhw, label_id: int, *, npart: int = 3,
                      model: VolumeInputs | None = None) -> list[int]:
        """The support slices ``fsm2kit segment`` propagates from (one, or several), checked."""
        return self.volume_choice(support_label_zhw, label_id, npart=npart, model=model)[0]

    def __repr__(self) -> str:
        return f"SupportSelector({self.name!r}, serves {'+'.join(self.serves)})"


def _one(rule):
    def volume(support_label_zhw, label_id, npart):
        return rule(support_label_zhw, label_id, 1)

    return volume


def given_selector(zs: int | Sequence[int]) -> SupportSelector:
    """``given:Z1,Z2,...``: these slices (episodes: one for all chunks, or one per chunk; segment:
    these, negative indices counting from the end as in numpy)."""
    zs = (int(zs),) if not isinstance(zs, (list, tuple)) and hasattr(zs, "__index__") else tuple(zs)
    name = f"given:{','.join(map(str, zs))}"

    def choose(support_label_zhw, label_id, npart):
        if len(zs) == 1:
            return list(zs) * npart
        if len(zs) != npart:
            raise ValueError(f"{name} names {len(zs)} slices for {npart} chunks; "
                             "give one slice for all chunks or one per chunk")
        return list(zs)

    def volume(support_label_zhw, label_id, npart):
        import numpy as np

        return given_slices(np.asarray(support_label_zhw) == label_id, list(zs))

    return SupportSelector(name, choose, "these support slices", volume)


def _random(seed: int) -> SupportSelector:
    def choose(support_label_zhw, label_id, npart):
        return chunk_random_slices(support_label_zhw, label_id, npart, seed=seed)

    def volume(support_label_zhw, label_id, npart):
        return chunk_random_slices(support_label_zhw, label_id, 1, seed=seed)

    return SupportSelector(f"random:{seed}", choose, f"random organ slice per chunk (seed {seed})", volume)


def _parse_seed(text: str) -> int:
    return parse_index(text, "SEED is an integer >= 0")


def _similar(mode: str) -> SupportSelector:
    name = "similar" if mode == "chunk" else f"similar:{mode}"
    return SupportSelector(name, None, f"most similar SAM2 embedding (per {mode})")


def _parse_mode(text: str) -> str:
    mode = text.strip().lower()
    if mode not in SIMILARITY_MODES:
        raise ValueError(f"MODE is one of {', '.join(SIMILARITY_MODES)}, got {text!r}")
    return mode


def _parse_given(text: str) -> tuple[int, ...]:
    parts = [t.strip() for t in text.replace(";", ",").split(",") if t.strip()]
    if not parts:
        raise ValueError("no slice index")
    try:
        zs = tuple(int(t) for t in parts)
    except ValueError:
        raise ValueError("slice indices are integers separated by commas") from None
    bad = [z for z in zs if z < 0]
    if bad:
        raise ValueError(f"slice indices are >= 0, got {bad}")
    return zs


def _coerce(obj: object, spec: str) -> object:
    if isinstance(obj, SupportSelector):
        if obj.name == spec or obj.name.partition(":")[0] == spec.partition(":")[0]:
            return obj
        return replace(obj, name=spec)
    if not callable(obj):
        raise TypeError(f"a support selector is a callable (support_label_zhw, label_id, npart) -> slices, got {obj!r}")
    return SupportSelector(spec, obj, getattr(obj, "__doc__", None) or "")


SUPPORT_SELECTORS = Registry(
    "support selector",
    description="which support slice annotates each chunk: (support_label_zhw, label_id, npart) -> one z per chunk",
    default="protocol",
    coerce=_coerce,
    option="--support-select",
)
SUPPORT_SELECTORS.register(
    "protocol", SupportSelector("protocol", protocol_chunk_slices, "the protocol's chunk slices"),
    origin="fsm2kit", details="episodes, segment",
    summary="the protocol's slice of each chunk, L[int(pcts[p] * n)] (1/6, 1/2, 5/6 of the organ for 3 chunks)")
SUPPORT_SELECTORS.register(
    "middle", SupportSelector("middle", chunk_middle_slices, "middle organ slice per chunk", _one(chunk_middle_slices)),
    origin="fsm2kit", details="episodes, segment: one slice",
    summary="the middle organ slice of each chunk of the support scan (segment: the middle organ slice)")
SUPPORT_SELECTORS.register(
    "largest", SupportSelector("largest", chunk_largest_slices, "largest organ area per chunk",
                               _one(chunk_largest_slices)),
    origin="fsm2kit", details="episodes, segment: one slice",
    summary="the slice of largest organ area in each chunk of the support scan (segment: over the whole organ)")
SUPPORT_SELECTORS.register(
    "given", given_selector, arg="Z1,Z2,...", parse=_parse_given, origin="fsm2kit", details="episodes, segment",
    summary="these support slices: one for every chunk, or one per chunk")
SUPPORT_SELECTORS.register(
    "random", _random, arg="SEED", default="0", parse=_parse_seed, origin="fsm2kit",
    details="episodes, segment: one slice",
    summary="one organ slice per chunk of the support scan drawn with this seed (deterministic; segment: one)")
SUPPORT_SELECTORS.register(
    "similar", _similar, arg="MODE", default="chunk", parse=_parse_mode, origin="fsm2kit",
    details="needs the model; MODE chunk (experiments, segment) or query (experiments: 1S1Q/3S1Q)",
    summary="the support slice whose SAM2 image embedding is most similar to the query slices: per chunk "
            "(default; segment: to the query slice it starts from), or per query slice (similar:query)")


def _swap(k: int) -> SupportSelector:
    return SupportSelector(f"swap:{k}", protocol_chunk_slices,
                           f"protocol supports + {k} most similar per query step", swap=k)


def _parse_swap(text: str) -> int:
    k = parse_index(text, "K is the number of per-slice supports, an integer in 1..8")
    if not 1 <= k <= 8:
        raise ValueError(f"K is the number of per-slice supports, an integer in 1..8, got {k}")
    return k


SUPPORT_SELECTORS.register(
    "swap", _swap, arg="K", default="3", parse=_parse_swap, origin="fsm2kit",
    details="needs the model; run, inspect (npz dumps: candidates are the support views)",
    summary="per-slice supports (FATE-SAM): the protocol's supports, plus for each query step the K support-scan "
            "organ slices most similar to it (SAM2 embeddings) as conditioning memories for that step only")


def register_support_selector(name: str, selector: Callable | str | None = None, *, summary: str | None = None,
                              arg: str | None = None, default: object = None, parse: Callable | None = None,
                              overwrite: bool = False):
    """Register ``selector(support_label_zhw, label_id, npart) -> one z per chunk`` (or a factory, with ``arg``).

    Works as a decorator when ``selector`` is omitted. The registry wraps a plain function in a
    :class:`SupportSelector` (which checks its answers). See :meth:`Registry.register`.
    """
    return SUPPORT_SELECTORS.register(name, selector, summary=summary, arg=arg, default=default, parse=parse,
                                      overwrite=overwrite)


def get_support_selector(spec: object = None):
    """The support selector for a name (``None``: ``protocol``); a selector object is returned unchanged."""
    return SUPPORT_SELECTORS.get(spec)
