"""Strategies: orderings, support selectors, memory policies and stopping rules, each family a registry.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".selectors": ['SUPPORT_METHODS', 'organ_slices', 'protocol_slices', 'middle_slice', 'largest_slice', 'given_slices', 'select_support_slices', 'slice_embedding', 'similarity_matrix', 'SimilarityChoice', 'most_similar_per_query', 'most_similar_per_chunk'],
})
