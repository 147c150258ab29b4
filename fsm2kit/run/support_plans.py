"""What each experiment run conditions on: supports chosen with the model, augmented views, the plans.

The per-chunk support selectors (``protocol``, ``middle``, ``largest``, ``random:S``,
``given:Z,...``) are applied when episodes are built (:func:`~fsm2kit.run.sources.load_episodes`).
Two things need more, and happen here, inside the run with the model's engine
(:func:`prepare_runs`, called by :func:`~fsm2kit.run.runner.run_experiments`):

``similar`` (per chunk) and ``similar:query`` (per query slice; 1S1Q and 3S1Q only)
    chosen by the selector itself (:meth:`SupportSelector.episode_choice
    <fsm2kit.strategies.support_selectors.SupportSelector.episode_choice>`, the one rule of
    ``similar``: :func:`~fsm2kit.strategies.support_selectors.most_similar`). ``similar``
    replaces the episode's supports (every setting then runs as with any per-chunk selector);
    with ``similar:query`` every query slice gets its own support(s): 1S1Q the slice of its chunk
    most similar to it, 3S1Q the most similar slice of each chunk (``npart`` supports). The FQ
    settings run all query slices in one memory state whose conditioning memories are fixed for
    the whole run, so a support per query slice does not exist there: :class:`ExperimentConfig`
    refuses the pair (:meth:`SupportSelector.refusal <fsm2kit.strategies.support_selectors.SupportSelector.refusal>`
    gives the same reason to ``fsm2kit segment``).
``support_views = N``
    every support used by a plan gets the first N views of
    :data:`~fsm2kit.strategies.views.VIEW_SEQUENCE` as further conditioning frames, right after
    its own frame (:func:`~fsm2kit.strategies.views.plan_with_views`).

``swap:K`` (per-slice supports, every setting)
    the episode keeps the protocol's supports, and every query slice gets the K candidates most
    similar to it (:func:`swap_supports`: SAM2 embeddings, each candidate encoded once) as
    conditioning memories for its own step only (the engine's ``step_supports``). Candidates are
    the support scan's organ slices (SSL-ALPNet folders; the episode's own support slices left
    out), or, for npz dumps, the support views of :data:`~fsm2kit.strategies.views.VIEW_SEQUENCE`.

With neither (the default), :func:`prepare_runs` hands the engine what it always got: the
built-in order's name, or a user ordering's plans, and the episodes' own supports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from ..protocol.episodes import Episode, Support
from ..records.naming import strategy_name
from ..engine.plans import Frame, Plan, Step, build_plans, normalize_setting
from ..strategies.orderings import ORDERINGS, engine_arguments
from ..strategies.support_selectors import SIMILARITY_DECIMALS, SUPPORT_SELECTORS, SimilarityChoice, similarity_matrix
from ..strategies.views import check_views, plan_with_views, support_views

__all__ = ["SupportScan", "attach_support_scan", "similar_per_chunk", "similar_per_query", "with_views", "swap_supports",
           "RunInputs", "prepare_runs"]


@dataclass(frozen=True, eq=False)
class SupportScan:
    """The support scan an episode was built from (kept for selectors that need the model).

    Attributes
    ----------
    image : ndarray, (Z', H, W)
    label : ndarray, (Z', H, W)
        Label ids.
    label_id : int
    case_id : str or None
    """

    image: np.ndarray
    label: np.ndarray
    label_id: int
    case_id: str | None = None

    def support(self, z: int, chunk: int) -> Support:
        """Support slice ``z`` for ``chunk`` (image and the class's mask)."""
        return Support(image=np.asarray(self.image[z], dtype=np.float32), mask=np.asarray(self.label[z] == self.label_id),
                       chunk=int(chunk), z=int(z), case_id=self.case_id)

    def __repr__(self) -> str:
        return f"SupportScan({self.case_id}, {self.image.shape}, class {self.label_id})"


def attach_support_scan(episode: Episode, scan: SupportScan) -> Episode:
    """``episode`` with its support scan in ``meta["support_scan"]``."""
    return replace(episode, meta={**episode.meta, "support_scan": scan})


def _scan(episode: Episode) -> SupportScan:
    scan = episode.meta.get("support_scan")
    if not isinstance(scan, SupportScan):
        raise ValueError(f"support selector 'similar' needs the support scan of {episode.case_id}/{episode.label_name}: "
                         "build the episodes from an SSL-ALPNet folder (load_episodes(support_selector='similar')); "
                         "npz dumps carry only their support slices")
    return scan


def _choice(engine, episode: Episode, spec: str) -> SimilarityChoice:
    scan = _scan(episode)
    return SUPPORT_SELECTORS.get(spec).episode_choice(engine, episode.images, episode.chunks, scan.image, scan.label,
                                                      scan.label_id, episode.npart)


def similar_per_chunk(engine, episode: Episode) -> Episode:
    """The episode with each chunk's support chosen by ``similar`` (see the module docstring)."""
    scan = _scan(episode)
    zs = _choice(engine, episode, "similar").support_z
    supports = tuple(scan.support(z, p) for p, z in enumerate(zs))
    return replace(episode, supports=supports, meta={**episode.meta, "support_z": tuple(zs)})


def similar_per_query(engine, episode: Episode, setting: str) -> tuple[list[Support], list[Plan]]:
    """Supports and plans with each query slice's own support(s) (1S1Q: its chunk's; 3S1Q: one per chunk),
    chosen by ``similar:query``."""
    setting = normalize_setting(setting)
    if setting not in ("1S1Q", "3S1Q"):
        raise ValueError(f"support selector similar:query chooses a support per query slice, which only 1S1Q and "
                         f"3S1Q can use; {setting} conditions every slice on the same supports: use 'similar'")
    scan = _scan(episode)
    best = _choice(engine, episode, "similar:query").as_dict()  # {(query position, chunk): z}
    supports: list[Support] = []
    index: dict[tuple[int, int], int] = {}

    def support(z: int, p: int) -> int:
        if (z, p) not in index:
            index[(z, p)] = len(supports)
            supports.append(scan.support(z, p))
        return index[(z, p)]

    plans = []
    for q, c in enumerate(int(c) for c in episode.chunks):
        parts = [c] if setting == "1S1Q" else range(episode.npart)
        sup = tuple(Frame("support", support(best[(q, p)], p)) for p in parts)
        plans.append(Plan(sup + (Frame("query", q),), (Step(len(sup)),), False))
    return supports, plans


def with_views(supports: Sequence[Support], plans: Sequence[Plan], n: int) -> tuple[list[Support], list[Plan]]:
    """Supports and plans with ``n`` augmented views of every support the plans use (:mod:`fsm2kit.strategies.views`)."""
    n = check_views(n)
    out = list(supports)
    if n == 0:
        return out, list(plans)
    used = sorted({i for p in plans for _, i in p.support_frames})
    views: dict[int, list[int]] = {}
    for i in used:
        extra = support_views(out[i], n)
        views[i] = list(range(len(out), len(out) + len(extra)))
        out.extend(extra)
    return out, [plan_with_views(p, views) for p in plans]


def swap_supports(engine, episode: Episode, k: int) -> dict[int, list[Support]]:
    """``{query position: [Support, ...]}``: the ``k`` candidates most similar to each query slice.

    Candidates (see the module docstring) are compared by cosine similarity of SAM2 embeddings
    (:func:`~fsm2kit.strategies.support_selectors.similarity_matrix`, rounded to
    ``SIMILARITY_DECIMALS``; ties to the earlier candidate); each is returned with the query's chunk.
    """
    scan = episode.meta.get("support_scan")
    if isinstance(scan, SupportScan):
        organ = np.flatnonzero((np.asarray(scan.label) == scan.label_id).any(axis=(1, 2)))
        own = {s.z for s in episode.supports}
        cands = [scan.support(int(z), 0) for z in organ if int(z) not in own]
    else:
        cands = [v for sup in episode.supports for v in support_views(sup, 5)]
    if not cands:
        return {}
    sim = np.round(similarity_matrix(engine, list(episode.images), [c.image for c in cands]), SIMILARITY_DECIMALS)
    out = {}
    for q in range(sim.shape[0]):
        best = np.argsort(-sim[q], kind="stable")[:k]
        out[q] = [replace(cands[int(i)], chunk=int(episode.chunks[q])) for i in best]
    return out


@dataclass(frozen=True, eq=False)
class RunInputs:
    """What :meth:`Engine.segment_many` gets for one (setting, ordering) over episodes.

    Attributes
    ----------
    episodes : list of Episode
        The episodes (with supports chosen by ``similar`` when asked).
    kwargs : dict
        ``order=`` (a built-in order), or ``plans=`` (and ``supports=``).
    order : str or None
        The order name the results record (None for the 1Q settings).
    supports : list of list of Support
        The supports each episode's plans index.
    """

    episodes: list
    kwargs: dict
    order: str | None
    supports: list

    def support_z(self, e: int, plan: Plan) -> str:
        """The distinct support z of a plan of episode ``e``, as ``"12,20,31"``."""
        zs = [self.supports[e][i].z for _, i in plan.support_frames]
        return ",".join(str(z) for z in dict.fromkeys(zs))


def _plans(setting: str, ordering, episode: Episode) -> list[Plan]:
    if not setting.endswith("FQ"):
        return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                           support_chunks=[s.chunk for s in episode.supports], npart=episode.npart)
    args = engine_arguments(ordering, setting, episode)
    if "plans" in args:
        return list(args["plans"])
    return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                       support_chunks=[s.chunk for s in episode.supports], npart=episode.npart, order=args["order"])


def prepare_runs(engine, episodes: Sequence[Episode], setting: str, ordering=None, *, selector=None,
                 views: int = 0) -> RunInputs:
    """The episodes, engine arguments and recorded order of one (setting, ordering) run.

    Parameters
    ----------
    engine : Engine
        Encodes the slices ``similar`` compares (through its cache: each slice once).
    episodes : sequence of Episode
    setting : str
    ordering : str or Ordering, optional
        The FQ settings' ordering (ignored by the 1Q settings).
    selector : str or SupportSelector, optional, keyword-only
        The config's support selector; only ``similar`` / ``similar:query`` act here.
    views : int, keyword-only
        Augmented views per support (0: none).
    """
    setting = normalize_setting(setting)
    fq = setting.endswith("FQ")
    sel = SUPPORT_SELECTORS.get(selector)
    mode = getattr(sel, "similarity", None)
    n = check_views(views)
    eps = list(episodes)
    if mode == "chunk":
        eps = [similar_per_chunk(engine, ep) for ep in eps]
    ordering = ORDERINGS.get(ordering) if fq else None
    name = strategy_name(ordering) if fq else None
    swap = {"step_supports": [swap_supports(engine, ep, sel.swap) for ep in eps]} if getattr(sel, "swap", 0) else {}
    if mode != "query" and n == 0:
        sups = [list(ep.supports) for ep in eps]
        if not fq:
            return RunInputs(eps, {**swap}, None, sups)
        args = [engine_arguments(ordering, setting, ep) for ep in eps]
        if "order" in args[0]:
            return RunInputs(eps, {"order": args[0]["order"], **swap}, name, sups)
        return RunInputs(eps, {"plans": [a["plans"] for a in args], **swap}, name, sups)
    plans, sups = [], []
    for ep in eps:
        if mode == "query":
            s, p = similar_per_query(engine, ep, setting)
        else:
            s, p = list(ep.supports), _plans(setting, ordering, ep)
        s, p = with_views(s, p, n)
        plans.append(p)
        sups.append(s)
    return RunInputs(eps, {"plans": plans, "supports": sups, **swap}, name, sups)
