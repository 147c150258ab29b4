"""Workflows: the one run path (configs, episodes, runner, results, tables), notebook studies,
own-scan segmentation, figures, provenance and sweeps.

Module map: ``config`` (ExperimentConfig) · ``episodes`` (loading and subsets) · ``experiments``
(the one runner) · ``results`` (ExperimentResult and the one output format) · ``tables`` and
``baselines`` (paper-style tables, the paper's numbers) · ``dice_tables`` (paper-grade tables:
CSV, Markdown, LaTeX) · ``dice_charts`` (Dice charts in the paper's order) · ``studies`` (one call per notebook section) ·
``provenance`` (the one provenance record) · ``figures`` · ``labels``, ``propagation``,
``segment`` and ``segment_results`` (own scans) · ``support_plans`` (supports chosen with the
model, augmented views) · ``sweeps`` (batch runs).

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..core.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".baselines": ['PAPER_CITATION', 'PAPER_CSV', 'PAPER_DICE_VARIANT', 'BASELINE_DICE_VARIANT', 'PAPER_DATASETS', 'PAPER_ORGANS', 'paper_numbers', 'published_dice', 'QuotedRow', 'PUBLISHED_BASELINES', 'baseline_table'],
    ".config": ['METRICS', 'ExperimentConfig'],
    ".corrections": ['corrections_record', 'episode_rounds', 'label_rounds', 'prompt_record', 'segment_corrected'],
    ".dice_charts": ['AXIS_TITLES', 'sort_order', 'dice_bars', 'slice_dice_curves', 'relative_position_dice', 'relative_position_chart', 'runs_dice_chart'],
    ".dice_tables": ['TABLE_FORMATS', 'OURS_DICE_VARIANTS', 'DiceTable', 'dice_table', 'save_table'],
    ".episodes": ['episode_folder_kind', 'require_folder_options', 'load_episodes', 'subset_episode', 'load_config_episodes', 'bars_off', 'npz_episodes_matching'],
    ".experiments": ['run_experiment', 'run_experiments'],
    ".figures": ['PRED_COLOR', 'GT_COLOR', 'SUPPORT_COLOR', 'weights_label', 'slice_overlays', 'class_panels'],
    ".inspection": ['inspect_run'],
    ".labels": ['OrganSpec', 'parse_labels', 'check_label_map_fits', 'describe_ids'],
    ".propagation": ['DEFAULT_PATIENCE', 'NOT_RUN_LOGIT', 'ECHO_LOGIT', 'relative_start', 'should_stop', 'absent_after', 'propagation_plan', 'Propagation', 'propagation_job', 'propagate_volume'],
    ".provenance": ['RANDOM_NOTE', 'Provenance', 'command_line', 'inspection_provenance'],
    ".results": ['GROUP_KEYS', 'PROVENANCE_COLUMNS', 'RESULT_FILES', 'slice_dice', 'tidy_slices', 'ModelRun', 'Prediction', 'ExperimentResult', 'logits_key', 'format_dice', 'read_results'],
    ".segment": ['resolve_overlaps', 'check_request', 'segment_volume', 'start_from_order'],
    ".segment_results": ['MODES', 'OrganResult', 'SegmentResult', 'modes_dice_table', 'load_scan', 'sidecar_path', 'check_output', 'check_dicom_output', 'OUTPUT_SUFFIXES', 'dice_csv_path', 'output_files', 'SUPPORT_FROM_QUERY'],
    ".support_plans": ['SupportScan', 'attach_support_scan', 'similar_per_chunk', 'similar_per_query', 'with_views', 'RunInputs', 'prepare_runs'],
    ".studies": ['Study', 'run_study', 'DICE_COLUMNS'],
    ".strategy_studies": ['StrategyStudy', 'run_strategy_study', 'STRATEGY_ROWS'],
    ".sweep_index": ['collect_index', 'organ_dice', 'write_index'],
    ".sweep_runs": ['RunOutcome', 'read_run_summary', 'execute_run', 'kernel_manager_class', 'export_html', 'write_json', 'remove_tree'],
    ".sweep_spec": ['KERNEL_NAME', 'DONE_MARKER', 'FAILED_MARKER', 'SWEEP_KEYS', 'KERNEL_ENV', 'Sweep', 'RunSpec', 'load_sweep', 'safe_name', 'value_text', 'require_module', 'WORK_DIR'],
    ".sweeps": ['SweepResult', 'run_sweep', 'plan_runs'],
    ".tables": ['ORGAN_ORDER', 'ORDER_ORDER', 'paper_order', 'results_table'],
})
