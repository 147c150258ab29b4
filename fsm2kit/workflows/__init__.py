"""Workflows: the one run path (configs, episodes, runner, results, tables), notebook studies,
own-scan segmentation, figures, provenance and sweeps.

Module map: ``config`` (ExperimentConfig) · ``episodes`` (loading and subsets) · ``experiments``
(the one runner) · ``results`` (ExperimentResult and the one output format) · ``tables`` and
``baselines`` (paper-style tables, quoted rows) · ``studies`` (one call per notebook section) ·
``provenance`` (the one provenance record) · ``figures`` · ``labels``, ``propagation``,
``segment`` and ``segment_results`` (own scans) · ``sweeps`` (batch runs).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ['METRICS', 'ExperimentConfig'],
    ".episodes": ['episode_folder_kind', 'require_folder_options', 'load_episodes', 'subset_episode',
                  'load_config_episodes', 'bars_off'],
    ".experiments": ['run_experiment', 'run_experiments'],
    ".results": ['GROUP_KEYS', 'PROVENANCE_COLUMNS', 'RESULT_FILES', 'slice_dice', 'tidy_slices', 'ModelRun',
                 'Prediction', 'ExperimentResult', 'logits_key', 'format_dice', 'read_results'],
    ".tables": ['ORGAN_ORDER', 'results_table'],
    ".baselines": ['QuotedRow', 'PUBLISHED_BASELINES', 'QUOTED_PLACEHOLDER', 'baseline_table', 'table_with_baselines'],
    ".studies": ['Study', 'run_study', 'DICE_COLUMNS'],
    ".provenance": ['RANDOM_NOTE', 'Provenance', 'command_line', 'inspection_provenance'],
    ".figures": ['PRED_COLOR', 'GT_COLOR', 'SUPPORT_COLOR', 'weights_label', 'slice_overlays', 'class_panels',
                 'dice_bars', 'slice_dice_curves', 'save_chart', 'save_figure', 'CHART_FORMATS'],
    ".labels": ['OrganSpec', 'parse_labels'],
    ".propagation": ['DEFAULT_PATIENCE', 'NOT_RUN_LOGIT', 'ECHO_LOGIT', 'relative_start', 'should_stop',
                     'absent_after', 'propagation_plan', 'Propagation', 'propagation_job', 'propagate_volume'],
    ".segment": ['resolve_overlaps', 'check_request', 'segment_volume'],
    ".segment_results": ['MODES', 'OrganResult', 'SegmentResult', 'modes_dice_table', 'load_scan', 'sidecar_path',
                         'check_output'],
    ".sweeps": ['KERNEL_NAME', 'DONE_MARKER', 'FAILED_MARKER', 'SWEEP_KEYS', 'Sweep', 'RunSpec', 'RunOutcome',
                'SweepResult', 'load_sweep', 'execute_run', 'export_html', 'collect_index', 'write_index', 'run_sweep'],
})
