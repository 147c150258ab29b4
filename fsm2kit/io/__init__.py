"""Volumes, NIfTI, DICOM, SSL-ALPNet folders, npz episodes, bundled examples, dataset preparation.

Label maps (:class:`~fsm2kit.protocol.labels.LabelMap`) belong to :mod:`fsm2kit.protocol`.
Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".alp": ['ALPDataset', 'load_alp_folder'],
    ".charts": ['CHART_FORMATS', 'COLUMN_WIDTHS_MM', 'ExportPreset', 'PRESETS', 'paper_config', 'save_chart', 'save_figure', 'save_presets'],
    ".dicom": ['DicomSeries', 'read_dicom_series', 'dicom_affine', 'series_files', 'trailing_number'],
    ".dicom_seg": ['SegmentCode', 'ORGAN_CODES', 'GENERIC_CODE', 'organ_code', 'seg_source_headers', 'check_dicom_seg_source', 'dicom_seg'],
    ".examples": ['example_dir', 'example_episodes', 'example_ct'],
    ".nifti": ['read_image', 'squeeze_to_3d', 'as_label_ids', 'load_nifti', 'volume_from_nifti_image', 'load_label_nifti', 'save_mask'],
    ".npz": ['NpzName', 'parse_npz_name', 'load_npz_episodes'],
    ".prompts": ['PromptError', 'label_matches', 'Prompt', 'PromptFile', 'read_prompts', 'parse_prompts', 'prompts_json', 'write_prompts'],
    ".prepare": ['PreparedScan', 'PrepareReport', 'prepare_synapse', 'prepare_chaos'],
    ".prepare_ops": ['SABS_CLASSMAP_NAMES', 'CHAOST2_CLASSMAP_NAMES', 'CHAOS_SPACING', 'HIST_CUT_TOP', 'SABS_SPACING_FACTOR', 'CROP_SIZE', 'resampled_shape', 'resample_linear', 'resample_labels', 'sabs_window', 'histogram_cut_top', 'crop_or_pad_center', 'class_slice_index'],
    ".raw_scans": ['RawScan', 'find_synapse_scans', 'find_chaos_scans'],
    ".volumes": ['CANONICAL_AXCODES', 'SourceGrid', 'LabelVolume', 'Volume', 'label_dtype', 'array_axes_in_file', 'describe_grid', 'align_to_grid'],
})
