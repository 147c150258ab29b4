"""Strategies, one registry per family; each family's contract, built-ins and registry live in
one module, listed once in :data:`~fsm2kit.strategies.registry.FAMILY_MODULES`.

- ``registry``: :class:`Registry` (one list behind the docs, CLI choices and validation).
- ``orderings``: how an episode's query slices are processed, as plans.
- ``support_selectors``: which support slice annotates each chunk (``similar`` included).
- ``memory_policies``: which memories each tracking step attends to.
- ``stopping``: when propagation through a volume stops in one direction.
- ``refinement``: refinement passes (RevSAM2: promote the best slices, propagate again).
- ``ensembles``: ensembles (members as strategy overrides or models), fusion and uncertainty.
- ``views``: augmented support views (deterministic transformed copies of a support slice).
- ``plugins``: a user's own strategies from ``--plugins`` files and entry points.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".ensembles": ["ENSEMBLES", "register_ensemble"],
    ".memory_policies": ["MEMORY_POLICIES", "register_memory_policy"],
    ".orderings": ["ORDERINGS", "Ordering", "PlanOrder", "StartOrder", "engine_arguments", "register_ordering"],
    ".plugins": ["load_plugins"],
    ".refinement": ["REFINEMENTS", "register_refinement"],
    ".registry": ["FAMILY_MODULES", "Registry", "named", "registries"],
    ".stopping": ["NOSTOP", "STOPPING_RULES", "StoppingRule", "register_stopping_rule", "stopping_rule"],
    ".support_selectors": ["SUPPORT_SELECTORS", "SimilarityChoice", "SupportSelector", "VolumeInputs", "given_selector", "register_support_selector"],
    ".views": ["check_views", "plan_with_views", "support_views"],
})
