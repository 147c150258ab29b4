"""The one run path: :class:`ExperimentConfig` in, :class:`ExperimentResult` out.

- ``config``: :class:`ExperimentConfig`, the one config object of the CLI, Python and notebooks.
- ``sources``: the episodes of a config (npz dumps, SSL-ALPNet folders) and their subsets.
- ``support_plans``: what each run conditions on (supports chosen with the model, views, plans).
- ``prompting``: correction prompts in a run and in own-scan segmentation.
- ``runner``: :func:`run_experiments`, the one runner.
- ``experiment_result``: :class:`ExperimentResult` and the one output format.
- ``ensemble_runs``: ensembles: members through the runner, fused, with uncertainty maps and QC flags.

Public names load lazily (PEP 562): importing this package imports no submodule.
"""

from ..lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    ".config": ["ExperimentConfig"],
    ".ensemble_runs": ["EnsembleRun", "fuse_results"],
    ".experiment_result": ["ExperimentResult", "format_dice", "read_results"],
    ".prompting": ["corrections_record", "episode_rounds", "label_rounds"],
    ".runner": ["run_experiment", "run_experiments"],
    ".sources": ["episode_folder_kind", "load_config_episodes", "load_episodes", "require_folder_options", "subset_episode"],
    ".support_plans": ["prepare_runs"],
})
