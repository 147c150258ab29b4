"""Strategies, one registry per family; each family's contract, built-ins and registry live in
one module, listed once in :data:`~fsm2kit.strategies.registry.FAMILY_MODULES`.

- ``registry``: :class:`Registry` (one list behind the docs, CLI choices and validation).
- ``orderings``: how an episode's query slices are processed, as plans.
- ``support_selectors``: which support slice annotates each chunk (``similar`` included).
- ``memory_policies``: which memories each tracking step attends to.
- ``stopping``: when propagation through a volume stops in one direction.
- ``views``: augmented support views (deterministic transformed copies of a support slice).
- ``plugins``: a user's own strategies from ``--plugins`` files and entry points.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".memory_policies": ["BestPolicy", "ConfidentPolicy", "MAX_QUERY_SLOTS", "MEMORY_POLICIES", "RecentPolicy", "StridePolicy", "get_memory_policy", "previous_query_frames", "query_memory_selection", "register_memory_policy", "support_only_policy"],
    ".orderings": ["ORDERINGS", "Ordering", "PlanOrder", "StartOrder", "engine_arguments", "get_ordering", "register_ordering"],
    ".plugins": ["ENTRY_POINT_GROUP", "PluginError", "load_entry_points", "load_plugin", "load_plugins", "plugin_errors"],
    ".registry": ["Entry", "FAMILY_MODULES", "NamedStrategy", "Registry", "named", "parse_index", "parse_spec", "registries"],
    ".stopping": ["DEFAULT_PATIENCE", "NOSTOP", "NoStop", "Patience", "STOPPING_RULES", "StoppingRule", "from_patience", "get_stopping_rule", "register_stopping_rule", "stop_index", "stopping_rule"],
    ".support_selectors": ["SIMILARITY_MODES", "SUPPORT_SELECTORS", "SimilarityChoice", "SupportSelector", "VolumeInputs", "check_support_choice", "chunk_candidates", "chunk_largest_slices", "chunk_middle_slices", "chunk_random_slices", "get_support_selector", "given_selector", "given_slices", "most_similar", "organ_slices", "protocol_chunk_slices", "register_support_selector", "similarity_matrix", "slice_embedding"],
    # the function support_views is not exported here: the submodule of that name would shadow it
    # (``from fsm2kit.strategies.views import support_views``)
    ".views": ["MAX_VIEWS", "VIEW_SEQUENCE", "apply_view", "check_views", "gamma_view", "hflip_view", "plan_with_views", "scale_view", "support_views"],
})
