"""fsm2kit: training-free few-shot medical image segmentation with SAM2 (after FS-MedSAM2).

The main objects::

    from fsm2kit import load_sam2, Engine, example_episodes
    model = load_sam2("sam2-tiny", "checkpoints/sam2_hiera_tiny.pt")   # or "random" for smoke runs
    engine = Engine(model)
    (episode,) = example_episodes()
    result = engine.segment(episode, "S1SFQ", order="middle")
"""

__version__ = "0.1.0"

from .data import LabelMap, LabelVolume, Volume, example_episodes, load_alp_folder, load_nifti, load_npz_episodes
from .engine import Engine, EpisodeResult, SliceResult
from .episode import Episode, Support
from .memory import MemoryBank, MemoryEntry, MemorySelection, select_memories
from .metrics import dice, pooled_dice, mean_volume_dice, summarize_dice
from .models import MODELS, SAM2Model, load_sam2
from .ordering import SETTINGS, ORDERS, Plan, build_plans, custom_plan, fq_plan
from .runner import load_episodes, run_episodes, write_run

__all__ = [
    "__version__",
    "LabelMap",
    "LabelVolume",
    "Volume",
    "example_episodes",
    "load_alp_folder",
    "load_nifti",
    "load_npz_episodes",
    "Engine",
    "EpisodeResult",
    "SliceResult",
    "Episode",
    "Support",
    "MemoryBank",
    "MemoryEntry",
    "MemorySelection",
    "select_memories",
    "dice",
    "pooled_dice",
    "mean_volume_dice",
    "summarize_dice",
    "MODELS",
    "SAM2Model",
    "load_sam2",
    "SETTINGS",
    "ORDERS",
    "Plan",
    "build_plans",
    "custom_plan",
    "fq_plan",
    "load_episodes",
    "run_episodes",
    "write_run",
]
