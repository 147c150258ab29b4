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
    ".alp": ["ALPDataset", "load_alp_folder"],
    ".dicom": ["DicomSeries", "dicom_affine", "read_dicom_series", "series_files", "trailing_number"],
    ".dicom_seg": ["GENERIC_CODE", "ORGAN_CODES", "SegmentCode", "check_dicom_seg_source", "dicom_seg", "organ_code", "seg_source_headers"],
    ".examples": ["example_ct", "example_dir", "example_episodes"],
    ".nifti": ["as_label_ids", "load_label_nifti", "load_nifti", "read_image", "save_mask", "squeeze_to_3d", "volume_from_nifti_image"],
    ".npz": ["NpzName", "load_npz_episodes", "parse_npz_name"],
    ".preparation": ["PrepareReport", "PreparedScan", "prepare_chaos", "prepare_synapse"],
    ".prompts": ["Prompt", "PromptError", "PromptFile", "label_matches", "parse_prompts", "prompts_json", "read_prompts", "write_prompts"],
    ".raw_scans": ["RawScan", "find_chaos_scans", "find_synapse_scans"],
    ".volumes": ["CANONICAL_AXCODES", "LabelVolume", "SourceGrid", "Volume", "align_to_grid", "array_axes_in_file", "describe_grid", "label_dtype"],
})
