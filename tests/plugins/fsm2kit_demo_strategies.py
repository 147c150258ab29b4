"""A demo plugin module: registers one ordering, one support selector and one memory policy.

Load it with ``--plugins fsm2kit_demo_strategies`` (this folder on PYTHONPATH), ``plugins:
[fsm2kit_demo_strategies]`` in a sweep file, ``load_plugins([...])`` in Python, or by path
(``--plugins tests/plugins/fsm2kit_demo_strategies.py``). Importing it twice registers once.
"""

from __future__ import annotations

import numpy as np

from fsm2kit.engine.plans import build_plans, custom_plan
from fsm2kit.strategies import register_memory_policy, register_ordering, register_support_selector


@register_ordering("bottom", summary="supports first, then the query slices in descending z (FQ settings)")
def bottom(setting, episode):
    """FQ settings: one forward run from the last query slice to the first; 1Q settings as usual."""
    if not setting.upper().endswith("FQ"):
        return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                           support_chunks=[s.chunk for s in episode.supports], npart=episode.npart)
    n = len(episode.z)
    if setting.upper() == "S1SFQ":
        mid = episode.npart // 2
        supports = [i for i, s in enumerate(episode.supports) if s.chunk == mid]
    else:
        supports = list(range(len(episode.supports)))
    return [custom_plan(range(n - 1, -1, -1), supports, n)]


@register_support_selector("first", summary="the first organ slice of each chunk of the support scan")
def first(support_label_zhw, label_id, npart):
    present = np.flatnonzero((np.asarray(support_label_zhw) == label_id).any(axis=(1, 2)))
    n = present.size
    return [int(present[(p * n) // npart]) for p in range(npart)]


@register_memory_policy("cond_only", summary="attend to the conditioning (support) memories only, no predictions")
def cond_only(bank, frame_idx, *, reverse, settings):
    from fsm2kit.engine.memory import MemorySelection

    sel = bank.select(frame_idx, reverse=reverse, settings=settings)
    return MemorySelection(sel.frame_idx, sel.reverse, tuple(r for r in sel.spatial if r.is_cond),
                           tuple(p for p in sel.pointers if p.is_cond), sel.max_obj_ptrs)
