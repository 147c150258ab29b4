"""Memory policies: which memories each tracking step attends to.

The contract is :class:`fsm2kit.core.memory.MemoryPolicy`, a pure function
``policy(bank, frame_idx, *, reverse, settings) -> MemorySelection``; the engine takes one as
``Engine.segment(..., memory_policy=...)`` and checks its choice
(:func:`~fsm2kit.core.memory.check_selection`: only frames in the bank, at most
``num_maskmem - 1`` non-conditioning slots, at least one conditioning memory).

Built-in: ``sam2`` (default), SAM2's own rule (:func:`fsm2kit.core.memory.sam2_memory_policy`).
A user's policy, e.g. one that attends to the support memories only::

    from fsm2kit.core.memory import MemorySelection
    from fsm2kit.strategies import register_memory_policy

    @register_memory_policy("cond_only", summary="attend to the conditioning (support) memories only")
    def cond_only(bank, frame_idx, *, reverse, settings):
        sel = bank.select(frame_idx, reverse=reverse, settings=settings)
        return MemorySelection(sel.frame_idx, sel.reverse, tuple(r for r in sel.spatial if r.is_cond),
                               tuple(p for p in sel.pointers if p.is_cond), sel.max_obj_ptrs)
"""

from __future__ import annotations

from typing import Callable

from .registry import Registry

__all__ = ["MEMORY_POLICIES", "register_memory_policy", "get_memory_policy"]

MEMORY_POLICIES = Registry(
    "memory policy",
    description="which memories a tracking step attends to: (bank, frame_idx, *, reverse, settings) -> MemorySelection",
    default="sam2",
)
# a "module:attribute" target: listing the policies imports no torch
MEMORY_POLICIES.register("sam2", "fsm2kit.core.memory:sam2_memory_policy", origin="fsm2kit",
                         summary="SAM2's rule: all support memories, the previous num_maskmem-1 predictions, "
                                 "object pointers")


def register_memory_policy(name: str, policy: Callable | str | None = None, *, summary: str | None = None,
                           arg: str | None = None, default: object = None, parse: Callable | None = None,
                           overwrite: bool = False):
    """Register a memory policy (or, with ``arg``, a factory of them); a decorator when ``policy`` is omitted.

    See :meth:`fsm2kit.strategies.registry.Registry.register`.
    """
    return MEMORY_POLICIES.register(name, policy, summary=summary, arg=arg, default=default, parse=parse,
                                    overwrite=overwrite)


def get_memory_policy(spec: object = None):
    """The memory policy for a name (``None``: ``sam2``, i.e. ``sam2_memory_policy`` itself); a policy
    object is returned unchanged."""
    return MEMORY_POLICIES.get(spec)
