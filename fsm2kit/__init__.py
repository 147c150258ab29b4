"""fsm2kit: training-free few-shot medical image segmentation with SAM2 (after FS-MedSAM2).

The main objects::

    from fsm2kit import load_sam2, Engine, example_episodes
    model = load_sam2("sam2-tiny", "checkpoints/sam2_hiera_tiny.pt")   # or "random" for smoke runs
    engine = Engine(model)
    (episode,) = example_episodes()
    result = engine.segment(episode, "S1SFQ", order="middle")

The package is laid out in rooms (``core``, ``protocol``, ``io``, ``strategies``, ``inspector``,
``workflows``, ``cli``; see the README's Layout section). Every name below loads lazily:
``import fsm2kit`` imports no torch.
"""

from .lazy import lazy_exports
from .version import __version__

__getattr__, __dir__, _names = lazy_exports(__name__, {
    ".io.volumes": ["LabelVolume", "Volume"],
    ".io.nifti": ["load_nifti"],
    ".io.alp": ["load_alp_folder"],
    ".io.npz": ["load_npz_episodes"],
    ".io.examples": ["example_episodes"],
    ".protocol.labels": ["LabelMap"],
    ".engine.engine": ["Engine"],
    ".engine.results": ["EpisodeResult", "SliceResult"],
    ".protocol.episodes": ["Episode", "Support", "build_episode"],
    ".engine.memory": ["MemoryBank", "MemoryEntry", "MemorySelection", "select_memories"],
    ".protocol.metrics": ["dice", "pooled_dice", "mean_volume_dice", "summarize_dice"],
    ".model.loading": ["SAM2Model", "load_sam2"],
    ".model.specs": ["MODELS"],
    ".engine.plans": ["SETTINGS", "ORDERS", "Plan", "build_plans", "custom_plan", "fq_plan"],
    ".run.sources": ["load_episodes"],
    ".run.config": ["ExperimentConfig"],
    ".run.experiment_result": ["ExperimentResult"],
    ".run.runner": ["run_experiment", "run_experiments"],
    ".studies.study": ["run_study"],
    ".studies.run_inspection": ["inspect_run"],
    ".segment.own_scan": ["segment_volume"],
    ".inspector.capture": ["MemoryInspector"],
    ".inspector.inspection": ["Inspection", "inspect_episode"],
    ".strategies.support_selectors": ["SUPPORT_SELECTORS"],
})
__all__ = ["__version__", *_names]
