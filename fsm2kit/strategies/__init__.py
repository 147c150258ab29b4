"""Strategies, one registry per family: orderings, support selectors, memory policies, stopping
rules; augmented support views; users' plugins. Each family's contract, built-ins and registry
live in one module.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".memory_policies": ["MEMORY_POLICIES", "get_memory_policy", "register_memory_policy"],
    ".orderings": ["ORDERINGS", "Ordering", "PlanOrder", "StartOrder", "engine_arguments", "get_ordering", "register_ordering"],
    ".plugins": ["ENTRY_POINT_GROUP", "PluginError", "load_entry_points", "load_plugin", "load_plugins", "plugin_errors"],
    ".policies": ["BestPolicy", "ConfidentPolicy", "MAX_QUERY_SLOTS", "RecentPolicy", "StridePolicy", "previous_query_frames", "query_memory_selection", "support_only_policy"],
    ".registry": ["Entry", "FAMILY_MODULES", "NamedStrategy", "Registry", "named", "parse_index", "parse_spec", "registries"],
    ".selectors": ["SUPPORT_METHODS", "SimilarityChoice", "given_slices", "largest_slice", "middle_slice", "most_similar_per_chunk", "most_similar_per_query", "organ_slices", "protocol_slices", "select_support_slices", "similarity_matrix", "slice_embedding"],
    ".stopping": ["NOSTOP", "NoStop", "Patience", "STOPPING_RULES", "StoppingRule", "from_patience", "get_stopping_rule", "register_stopping_rule", "stop_index"],
    ".support_selectors": ["SIMILARITY_MODES", "SUPPORT_SELECTORS", "SupportSelector", "check_support_choice", "chunk_candidates", "chunk_largest_slices", "chunk_middle_slices", "chunk_random_slices", "get_support_selector", "protocol_chunk_slices", "register_support_selector"],
    ".support_views": ["MAX_VIEWS", "VIEW_SEQUENCE", "apply_view", "check_views", "gamma_view", "hflip_view", "plan_with_views", "scale_view", "support_views"],
})
