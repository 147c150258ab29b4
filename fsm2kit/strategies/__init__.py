"""Strategies: orderings, support selectors, memory policies and stopping rules, each family a registry
(and augmented support views, :mod:`.views`).

Each family keeps a :class:`~fsm2kit.strategies.registry.Registry` (``name -> strategy``, a
one-line summary each): the one list behind the docs, the command line's choices and their
validation. Ask for a strategy by name (``ORDERINGS.get("top")``, ``STOPPING_RULES.get("patience:5")``),
list them (``fsm2kit strategies``, ``registry.describe()``), add your own with
``register_ordering`` / ``register_support_selector`` / ``register_memory_policy`` /
``register_stopping_rule``; other processes load them with :func:`load_plugins` (``--plugins
MODULE``, a sweep's ``plugins:``) or through the entry-point group ``fsm2kit.strategies``.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".memory_policies": ['MEMORY_POLICIES', 'register_memory_policy', 'get_memory_policy'],
    ".orderings": ['Ordering', 'PlanOrder', 'StartOrder', 'ORDERINGS', 'register_ordering', 'get_ordering', 'engine_arguments'],
    ".plugins": ['ENTRY_POINT_GROUP', 'PluginError', 'load_plugins', 'load_plugin', 'load_entry_points', 'plugin_errors'],
    ".registry": ['Entry', 'Registry', 'NamedStrategy', 'named', 'parse_spec', 'parse_index', 'registries', 'FAMILY_MODULES'],
    ".selectors": ['SUPPORT_METHODS', 'organ_slices', 'protocol_slices', 'middle_slice', 'largest_slice', 'given_slices', 'select_support_slices', 'slice_embedding', 'similarity_matrix', 'SimilarityChoice', 'most_similar_per_query', 'most_similar_per_chunk'],
    ".stopping": ['DEFAULT_PATIENCE', 'StoppingRule', 'Patience', 'NoStop', 'NOSTOP', 'STOPPING_RULES', 'register_stopping_rule', 'get_stopping_rule', 'stop_index', 'from_patience'],
    ".views": ['VIEW_SEQUENCE', 'MAX_VIEWS', 'hflip_view', 'scale_view', 'gamma_view', 'apply_view', 'check_views', 'support_views', 'plan_with_views'],
    ".support_selectors": ['SupportSelector', 'SUPPORT_SELECTORS', 'register_support_selector', 'get_support_selector', 'check_support_choice', 'chunk_middle_slices', 'chunk_largest_slices', 'protocol_chunk_slices', 'chunk_candidates', 'chunk_random_slices', 'SIMILARITY_MODES'],
})
