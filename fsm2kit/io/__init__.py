"""Volumes and label maps, NIfTI, DICOM, SSL-ALPNet folders, npz episodes, bundled examples, dataset preparation.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".charts": ['CHART_FORMATS', 'save_chart'],
    ".dicom": ['DicomSeries', 'read_dicom_series', 'dicom_affine', 'trailing_number'],
    ".prepare": ['SABS_CLASSMAP_NAMES', 'CHAOST2_CLASSMAP_NAMES', 'CHAOS_SPACING', 'HIST_CUT_TOP', 'SABS_SPACING_FACTOR', 'CROP_SIZE', 'resampled_shape', 'resample_linear', 'resample_labels', 'sabs_window', 'histogram_cut_top', 'crop_or_pad_center', 'class_slice_index', 'RawScan', 'PreparedScan', 'PrepareReport', 'find_synapse_scans', 'find_chaos_scans', 'prepare_synapse', 'prepare_chaos'],
    ".volumes": ['CANONICAL_AXCODES', 'LabelMap', 'LabelVolume', 'Volume', 'load_nifti', 'load_label_nifti', 'volume_from_nifti_image', 'save_mask', 'label_dtype', 'array_axes_in_file', 'ALPDataset', 'load_alp_folder', 'NpzName', 'parse_npz_name', 'load_npz_episodes', 'example_dir', 'example_episodes', 'example_ct'],
})
