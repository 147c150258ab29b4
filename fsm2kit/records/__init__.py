"""Records: what fsm2kit writes is written whole or not at all, and says how it was made.

The atomic writers and file hashes (:mod:`.fileio`), the one provenance record
(:mod:`.provenance`) and how a strategy is named in it (:mod:`.naming`).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".fileio": ["atomic_folder", "atomic_write", "atomic_write_group", "check_can_create", "file_sha256"],
    ".naming": ["strategy_name"],
    ".provenance": ["Provenance", "RANDOM_NOTE", "command_line", "inspection_provenance"],
})
