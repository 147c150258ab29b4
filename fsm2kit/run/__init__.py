"""The one run path: :class:`ExperimentConfig` in, :class:`ExperimentResult` out.

- ``config``: :class:`ExperimentConfig`, the one config object of the CLI, Python and notebooks.
- ``sources``: the episodes of a config (npz dumps, SSL-ALPNet folders) and their subsets.
- ``support_plans``: what each run conditions on (supports chosen with the model, views, plans).
- ``prompting``: correction prompts in a run and in own-scan segmentation.
- ``runner``: :func:`run_experiments`, the one runner.
- ``experiment_result``: :class:`ExperimentResult` and the one output format.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ["ExperimentConfig", "METRICS"],
    ".experiment_result": ["ExperimentResult", "GROUP_KEYS", "ModelRun", "PROVENANCE_COLUMNS", "Prediction", "RESULT_FILES", "format_dice", "logits_key", "read_results", "tidy_slices"],
    ".prompting": ["corrections_record", "episode_rounds", "label_rounds", "prompt_record", "segment_corrected"],
    ".runner": ["run_experiment", "run_experiments"],
    ".sources": ["bars_off", "episode_folder_kind", "load_config_episodes", "load_episodes", "npz_episodes_matching", "require_folder_options", "subset_episode"],
    ".support_plans": ["RunInputs", "SupportScan", "attach_support_scan", "prepare_runs", "similar_per_chunk", "similar_per_query", "with_views"],
})
