"""The bundled example data of the repository (``data/examples``; see data/README.md)."""

from __future__ import annotations

import os
from pathlib import Path

from ..protocol.episodes import Episode
from ..protocol.labels import LabelMap
from .nifti import load_nifti
from .npz import load_npz_episodes
from .volumes import Volume

__all__ = ["example_dir", "example_episodes", "example_ct"]

#: TotalSegmentator "total" ids of the bundled CT's mask that data/README.md names.
_TOTALSEG_LABELS = {
    0: "background",
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
}


def example_dir() -> Path:
    """The bundled example data folder (``data/examples`` of the repository).

    Set the environment variable ``FSM2KIT_DATA`` to use another folder with the same layout.
    """
    env = os.environ.get("FSM2KIT_DATA")
    # this file is <repo>/fsm2kit/io/examples.py: parents[2] is the repository root
    d = Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "examples"
    if not d.is_dir():
        src = "FSM2KIT_DATA" if env else "the repository's data/examples"
        raise FileNotFoundError(
            f"Example data folder not found: {d} (from {src}). Use a source checkout of fsm2kit "
            "or set FSM2KIT_DATA to a folder holding chaos_t2spir_case1_liver/ and "
            "totalseg_ct_small/."
        )
    return d


def example_episodes() -> list[Episode]:
    """The bundled CHAOS-T2 case 1 liver episode (FS-MedSAM2 example dump, 24 slices z12..35)."""
    return load_npz_episodes(example_dir() / "chaos_t2spir_case1_liver", dataset="CHAOST2")


def example_ct(*, with_labels: bool = True) -> Volume:
    """The bundled small abdominal CT (TotalSegmentator reference files; model-made masks)."""
    d = example_dir() / "totalseg_ct_small"
    return load_nifti(
        d / "example_ct_sm.nii.gz",
        label_path=d / "example_seg.nii.gz" if with_labels else None,
        modality="CT",
        case_id="totalseg_example",
        label_map=LabelMap(_TOTALSEG_LABELS, name="TotalSegmentator (partial)"),
    )
