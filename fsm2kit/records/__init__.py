"""Records: what fsm2kit writes is written whole or not at all, and says how it was made.

- ``fileio``: the one atomic writer of a file, a group of files and a folder; file hashes.
- ``provenance``: the one provenance record (how an output was made).
- ``naming``: how a strategy is named in results and provenance.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".fileio": ["atomic_folder", "atomic_write", "atomic_write_group", "check_can_create", "file_sha256",
                "file_sha256_cached", "folder_digest", "fsync_tree", "RECORD_FILES", "output_kind", "check_replaceable",
                "recover_output", "output_lock", "save_output_folder", "holds_working_folder", "check_output_dir",
                "folder_sha256", "links_outside", "recover_group", "input_record"],
    ".naming": ["strategy_name"],
    ".provenance": ["Provenance", "RANDOM_NOTE", "command_line", "inspection_provenance"],
})
