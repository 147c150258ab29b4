"""Workflows: experiments (the one run path), own-scan segmentation, figures and sweeps.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".experiments": ['METRICS', 'GROUP_KEYS', 'PROVENANCE_COLUMNS', 'ORGAN_ORDER', 'RESULT_FILES', 'ExperimentConfig', 'ModelRun', 'Prediction', 'ExperimentResult', 'QuotedRow', 'PUBLISHED_BASELINES', 'QUOTED_PLACEHOLDER', 'slice_dice', 'subset_episode', 'load_config_episodes', 'run_experiment', 'run_experiments', 'results_table', 'baseline_table', 'table_with_baselines', 'read_results'],
    ".figures": ['PRED_COLOR', 'GT_COLOR', 'SUPPORT_COLOR', 'weights_label', 'slice_overlays', 'class_panels', 'dice_bars', 'slice_dice_curves', 'save_chart', 'save_figure', 'CHART_FORMATS'],
    ".inspection": ['inspect_run', 'middle_slices'],
    ".runner": ['load_episodes', 'RunResult', 'run_episodes', 'write_run', 'dice_table', 'format_dice', 'logits_arrays', 'RANDOM_NOTE'],
    ".segment": ['DEFAULT_PATIENCE', 'NOT_RUN_LOGIT', 'ECHO_LOGIT', 'MODES', 'OrganSpec', 'parse_labels', 'relative_start', 'should_stop', 'absent_after', 'propagation_plan', 'resolve_overlaps', 'Propagation', 'propagation_job', 'propagate_volume', 'OrganResult', 'SegmentResult', 'segment_volume', 'check_request', 'modes_dice_table', 'load_scan', 'sidecar_path', 'check_output'],
    ".sweep_index": ['collect_index', 'write_index'],
    ".sweep_runs": ['RunOutcome', 'execute_run', 'kernel_manager_class', 'export_html', 'write_json', 'remove_tree'],
    ".sweep_spec": ['KERNEL_NAME', 'DONE_MARKER', 'FAILED_MARKER', 'SWEEP_KEYS', 'KERNEL_ENV', 'Sweep', 'RunSpec', 'load_sweep', 'safe_name', 'value_text', 'require_module'],
    ".sweeps": ['SweepResult', 'run_sweep'],
})
