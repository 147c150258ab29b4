"""Reading and writing scans and data.

- ``volumes``: a scan as a ``(Z, H, W)`` stack, its labels and its source grid.
- ``nifti``, ``dicom``: reading scans; ``dicom_seg``: writing a DICOM Segmentation.
- ``alp``: SSL-ALPNet preprocessed folders; ``npz``: the published episode dumps.
- ``examples``: the bundled example data.
- ``prompts``: correction-prompt files (JSON).
- ``preparation``: the SSL-ALPNet preprocessing of the raw downloads (``raw_scans``: their layouts).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".alp": ["load_alp_folder"],
    ".dicom": ["read_dicom_series"],
    ".dicom_seg": ["check_dicom_seg_source", "dicom_seg", "organ_code", "seg_source_headers"],
    ".examples": ["example_dir", "example_episodes"],
    ".nifti": ["load_label_nifti", "load_nifti"],
    ".npz": ["load_npz_episodes"],
    ".preparation": ["prepare_chaos", "prepare_synapse"],
    ".prompts": ["Prompt", "PromptError", "PromptFile", "label_matches", "prompts_json", "read_prompts", "write_prompts"],
    ".volumes": ["LabelVolume", "Volume", "array_axes_in_file", "label_dtype"],
})
