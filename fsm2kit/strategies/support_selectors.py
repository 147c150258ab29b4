"""Support selectors: which slice of the support scan annotates each chunk.

The contract (what ``fsm2kit.protocol.build_episode(support_selector=...)`` calls)::

    selector(support_label_zhw: ndarray, label_id: int, npart: int) -> Sequence[int]

returns one support-scan slice ``z`` per chunk (``npart`` of them, chunk order), each containing
``label_id``. ``L`` below is the ascending list of support slices that contain the class; *per
chunk* means over ``L`` split into ``npart`` runs of (nearly) equal length
(``gmrd_chunk_boundaries``), a chunk left empty by a short organ taking the protocol's slice.

==========  ====================================================  =========================
name        rule                                                  serves
==========  ====================================================  =========================
protocol    ``L[int(pcts[p] * n)]``, the protocol (default)       episodes, segment
middle      the middle organ slice of each chunk                  episodes, segment (1 slice)
largest     the slice of largest organ area in each chunk         episodes, segment (1 slice)
given:Z,..  these slices (one for all chunks, or one per chunk)   episodes, segment
random:S    one organ slice per chunk drawn with seed S           episodes, segment (1 slice)
similar     per chunk: the chunk's slice most similar (SAM2        experiments, segment
            image embedding) on average to the query slices of     (needs a model)
            that chunk; ``similar:query``: each query slice's
            own support(s) (1S1Q, 3S1Q only)
==========  ====================================================  =========================

``similar`` needs the model's image encoder, so it is not a per-chunk rule
(:attr:`SupportSelector.needs_model`): the experiment workflow chooses with its engine
(:mod:`fsm2kit.run.support_plans`), ``fsm2kit segment`` with its own.

``fsm2kit segment`` (:mod:`fsm2kit.segment.own_scan`) propagates one label through a whole scan
and asks :meth:`SupportSelector.volume_slices`: ``middle`` and ``largest`` give one slice (the
per-chunk rule with one chunk: :func:`~fsm2kit.strategies.selectors.middle_slice`,
:func:`~fsm2kit.strategies.selectors.largest_slice`), ``protocol`` its ``npart`` slices,
``given`` its slices; ``similar`` compares SAM2 embeddings of query and support slices, which
needs the engine, so the segment workflow chooses it itself
(:func:`~fsm2kit.strategies.selectors.most_similar_per_query`).

A user's selector is any function with the contract, registered with
:func:`register_support_selector`; the registry wraps it in a :class:`SupportSelector`, which
checks what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable, Sequence

from .registry import Registry, parse_index

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SupportSelector",
    "SUPPORT_SELECTORS",
    "register_support_selector",
    "get_support_selector",
    "check_support_choice",
    "chunk_middle_slices",
    "chunk_largest_slices",
    "protocol_chunk_slices",
    "chunk_candidates",
    "chunk_random_slices",
    "SIMILARITY_MODES",
]

#: The modes of ``similar``: ``chunk`` (one support per chunk, the default) and ``query`` (per query slice).
SIMILARITY_MODES = ("chunk", "query")


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


@dataclass(frozen=True, eq=False)
class SupportSelector:
    """A named support selector, checking what its rule returns.

    Attributes
    ----------
    name : str
        The spec it is recorded under (``"given:12,20,31"``).
    choose : callable or None
        The per-chunk rule ``(support_label_zhw, label_id, npart) -> one z per chunk``; None for
        a selector that needs a model (``similar``).
    summary : str
    volume : callable, optional
        ``fsm2kit segment``'s rule ``(support_label_zhw, label_id, npart) -> slices`` (any number);
        default the per-chunk rule.
    """

    name: str
    choose: Callable[..., Sequence[int]] | None
    summary: str = ""
    volume: Callable[..., Sequence[int]] | None = None

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

    @property
    def serves(self) -> tuple[str, ...]:
        """``"episodes"`` (build_episode's per-chunk contract), ``"experiments"`` and/or ``"segment"``."""
        return ("experiments", "segment") if self.needs_model else ("episodes", "experiments", "segment")

    def __call__(self, support_label_zhw, label_id: int, npart: int) -> list[int]:
        """One support slice per chunk (build_episode's contract), checked."""
        if self.choose is None:
            raise ValueError(f"support selector {self.name!r} compares SAM2 embeddings of query and support slices: "
                             "it needs a model: run_experiment and fsm2kit segment choose it with theirs, "
                             "build_episode cannot")
        k = _npart(npart)
        return check_support_choice(self.choose(support_label_zhw, label_id, k), support_label_zhw, label_id, k,
                                    name=self.name)

    def volume_slices(self, support_label_zhw, label_id: int, *, npart: int = 3) -> list[int]:
        """The support slices ``fsm2kit segment`` propagates from (one, or several), checked."""
        if self.choose is None:
            raise ValueError(f"support selector {self.name!r} needs the engine: use "
                             "segment_volume(support_select='similar') or most_similar_per_query")
        rule = self.volume if self.volume is not None else self.choose
        return check_support_choice(rule(support_label_zhw, label_id, _npart(npart)), support_label_zhw,
                                    label_id, None, name=self.name)

    def __repr__(self) -> str:
        return f"SupportSelector({self.name!r}, serves {'+'.join(self.serves)})"


def _one(rule):
    def volume(support_label_zhw, label_id, npart):
        return rule(support_label_zhw, label_id, 1)

    return volume


def _given(zs: tuple[int, ...]) -> SupportSelector:
    def choose(support_label_zhw, label_id, npart):
        if len(zs) == 1:
            return list(zs) * npart
        if len(zs) != npart:
            raise ValueError(f"given:{','.join(map(str, zs))} names {len(zs)} slices for {npart} chunks; "
                             "give one slice for all chunks or one per chunk")
        return list(zs)

    def volume(support_label_zhw, label_id, npart):
        return list(zs)

    return SupportSelector(f"given:{','.join(map(str, zs))}", choose, "these support slices", volume)


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
    "given", _given, arg="Z1,Z2,...", parse=_parse_given, origin="fsm2kit", details="episodes, segment",
    summary="these support slices: one for every chunk, or one per chunk")
SUPPORT_SELECTORS.register(
    "random", _random, arg="SEED", default="0", parse=_parse_seed, origin="fsm2kit",
    details="episodes, segment: one slice",
    summary="one organ slice per chunk of the support scan drawn with this seed (deterministic; segment: one)")
SUPPORT_SELECTORS.register(
    "similar", _similar, arg="MODE", default="chunk", parse=_parse_mode, origin="fsm2kit",
    details="experiments, segment: needs a model; MODE chunk or query (1S1Q/3S1Q)",
    summary="the support slice whose SAM2 image embedding is most similar to the query slices: per chunk "
            "(default), or per query slice")


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
