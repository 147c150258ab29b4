"""Run a setting over episodes and write what a run produces (logits, Dice, provenance).

:func:`load_episodes` reads either the published npz episode dumps or an SSL-ALPNet
preprocessed dataset folder (episodes built by :mod:`fsm2kit.protocol`); :func:`run_episodes`
segments them with an :class:`~fsm2kit.engine.Engine`; :func:`write_run` writes
``logits.npz``, ``slices.csv``, ``dice.csv`` and ``run.json`` atomically.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..core.engine import Engine, EpisodeResult
from ..core.episode import Episode
from ..core.fileio import atomic_write as _atomic_write
from ..protocol.metrics import summarize_dice

__all__ = [
    "load_episodes",
    "RunResult",
    "run_episodes",
    "write_run",
    "dice_table",
    "format_dice",
    "logits_arrays",
    "RANDOM_NOTE",
]

RANDOM_NOTE = "RANDOM WEIGHTS: these numbers say nothing about SAM2 or FS-MedSAM2 (smoke run only)"


def load_episodes(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    fold: int | None = None,
    label: str | int | None = None,
    variant: str = "ALP",
    npart: int = 3,
) -> list[Episode]:
    """Episodes from an npz dump folder or an SSL-ALPNet preprocessed dataset folder.

    Parameters
    ----------
    path : path-like
        A folder of published FS-MedSAM2 npz episodes (``*_case_*_z*.npz``), or a folder with
        ``image_<id>.nii.gz`` / ``label_<id>.nii.gz`` (then ``dataset``, ``fold`` and
        ``label`` are required).
    dataset : {"SABS", "CHAOST2"}
        Dataset of the folder (npz dumps: default CHAOST2, used for label names).
    fold : int
        Fold (ALP folds by default: the support scan is the first scan of the next fold).
    label : str or int
        Class name or id (e.g. ``liver``, ``RK``, ``6``).
    variant : {"ALP", "GMRD"}
        Protocol variant for folds, scored slices and chunks.
    """
    from ..io.alp import load_alp_folder
    from ..io.npz import load_npz_episodes

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Episode folder {str(p)!r} does not exist.")
    if not p.is_dir():
        raise NotADirectoryError(f"--episodes expects a folder, got the file {str(p)!r}.")
    if any(p.glob("*.npz")):
        return load_npz_episodes(p, dataset=dataset or "CHAOST2")
    if any(p.glob("image_*.nii*")):
        from ..protocol.episodes import build_episode
        from ..protocol.folds import fold_split
        from ..protocol.labels import resolve_label

        missing = [n for n, v in (("--dataset", dataset), ("--fold", fold), ("--label", label)) if v is None]
        if missing:
            raise ValueError(
                f"{str(p)!r} is a preprocessed dataset folder: also pass {', '.join(missing)} "
                "(e.g. --dataset CHAOST2 --fold 0 --label liver)."
            )
        ds = load_alp_folder(p, dataset, crop256=(variant.upper() == "ALP"))
        lab = resolve_label(dataset, label)
        split = fold_split(dataset, int(fold), variant=variant, scan_ids=ds.scan_ids)
        sup = ds.load(split.support_id)
        episodes = []
        for qid in tqdm(split.query_ids, desc="load scans", leave=False):
            q = ds.load(qid)
            episodes.append(
                build_episode(
                    q.array, q.labels.array, sup.array, sup.labels.array, lab,
                    case_id=str(qid), support_case_id=str(split.support_id), dataset=ds.dataset,
                    fold=int(fold), variant=variant, npart=npart,
                )
            )
        return episodes
    raise ValueError(
        f"{str(p)!r} holds neither FS-MedSAM2 npz episodes (*_case_*_z*.npz) nor an SSL-ALPNet "
        "preprocessed dataset (image_<id>.nii.gz + label_<id>.nii.gz)."
    )


@dataclass(eq=False)
class RunResult:
    """The results of one setting (and order) over a list of episodes."""

    setting: str
    order: str | None
    results: list[EpisodeResult]
    slices: pd.DataFrame
    provenance: dict
    seconds: float
    encoder_passes: int
    meta: dict = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        return bool(self.provenance.get("random_weights"))

    def dice(self) -> pd.DataFrame:
        """Pooled and mean-per-volume Dice per class (and per-volume rows); see :func:`dice_table`."""
        return dice_table(self.slices)

    def __repr__(self) -> str:
        order = f"-{self.order}" if self.order else ""
        return (
            f"RunResult({self.setting}{order}, {len(self.results)} episodes, {len(self.slices)} "
            f"slices, {self.encoder_passes} encoder passes, {self.seconds:.1f} s, "
            f"{self.provenance.get('weights')})"
        )


def dice_table(slices: pd.DataFrame) -> pd.DataFrame:
    """Dice per class from a per-slice table: pooled, mean of per-volume, and each volume.

    ``metric`` says which: ``pooled`` (2ΣTP/(2ΣTP+ΣFP+ΣFN) over all slices and scans, what the
    published FS-MedSAM2 code prints), ``mean_per_volume`` (mean of per-volume 3D Dice, what
    the baselines report), ``volume`` (one scan's 3D Dice, ``case_id`` set).
    """
    from ..protocol.metrics import per_volume_dice

    by = ["setting", "order", "label", "label_name"]
    summary = summarize_dice(slices, by=by)
    summary.insert(0, "case_id", "all")
    vols = per_volume_dice(slices, by=by)
    vols = vols.assign(metric="volume", std_per_volume=np.nan, n_volumes=1)
    out = pd.concat([summary, vols[summary.columns]], ignore_index=True)
    for col in ("model", "weights", "protocol_variant"):
        if col in slices.columns:
            out[col] = slices[col].iloc[0]
    return out


def run_episodes(
    engine: Engine,
    episodes: Sequence[Episode],
    setting: str,
    *,
    order: str = "middle",
) -> RunResult:
    """Segment every episode under ``setting`` (and ``order`` for the FQ settings).

    With ``engine.object_batch_size`` > 1 (the default on CUDA), that many episodes run side by
    side (:meth:`Engine.segment_many`), their tracking steps sharing SAM2 forwards.
    """
    if not episodes:
        raise ValueError("no episodes to run")
    for ep in episodes:
        if ep.labels is None:
            raise ValueError(f"episode {ep.case_id}/{ep.label_name} has no ground truth to score")
    t0 = time.perf_counter()
    passes0 = engine.stats.encoder_passes
    group = max(1, int(getattr(engine, "object_batch_size", 1)))
    results, frames = [], []
    bar = tqdm(total=len(episodes), desc="episodes", disable=not engine.progress or len(episodes) < 2, leave=False)
    for k in range(0, len(episodes), group):
        chunk = list(episodes[k:k + group])
        done = engine.segment_many(chunk, setting, order=order) if len(chunk) > 1 else [
            engine.segment(chunk[0], setting, order=order)]
        bar.update(len(chunk))
        for ep, r in zip(chunk, done):
            results.append(r)
            df = r.to_frame(ep.labels)
            df["fold"] = ep.fold if ep.fold is not None else -1
            df["dataset"] = ep.dataset
            df["protocol_variant"] = ep.variant
            frames.append(df)
    bar.close()
    slices = pd.concat(frames, ignore_index=True)
    return RunResult(
        setting=results[0].setting,
        order=results[0].order,
        results=results,
        slices=slices,
        provenance=engine.model.provenance(),
        seconds=time.perf_counter() - t0,
        encoder_passes=engine.stats.encoder_passes - passes0,
    )


def logits_arrays(run: RunResult) -> dict[str, np.ndarray]:
    """``z<index>`` -> float32 logits (prefixed ``case<id>_label<l>_`` when several episodes)."""
    many = len(run.results) > 1
    out = {}
    for r in run.results:
        prefix = f"case{r.case_id}_label{r.label}_" if many else ""
        for s in r.slices:
            out[f"{prefix}z{s.z}"] = s.logits.astype(np.float32)
    return out


def write_run(run: RunResult, out: str | os.PathLike, *, extra: dict | None = None) -> dict[str, Path]:
    """Write ``logits.npz``, ``slices.csv``, ``dice.csv`` and ``run.json`` into ``out``.

    Each file is written to a temporary name and renamed, so an interrupted run never leaves
    a half-written file; ``run.json`` is written last and marks a finished run.
    """
    import sam2

    from ..core.version import __version__

    outdir = Path(out)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(f"Cannot create output folder {str(outdir)!r}: {e}") from e
    paths = {k: outdir / n for k, n in
             (("logits", "logits.npz"), ("slices", "slices.csv"), ("dice", "dice.csv"), ("run", "run.json"))}
    arrays = logits_arrays(run)

    def _npz(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    _atomic_write(paths["logits"], _npz)
    _atomic_write(paths["slices"], lambda tmp: run.slices.to_csv(tmp, index=False))
    _atomic_write(paths["dice"], lambda tmp: run.dice().to_csv(tmp, index=False))
    meta = {
        "tool": "fsm2kit",
        "fsm2kit_version": __version__,
        "sam2_version": getattr(sam2, "__version__", None) or run.provenance.get("sam2_version"),
        "setting": run.setting,
        "order": run.order,
        "protocol_variant": sorted(set(run.slices["protocol_variant"])) if len(run.slices) else [],
        "episodes": [
            {"case_id": r.case_id, "label": r.label, "label_name": r.label_name,
             "z": [int(z) for z in r.z], "seconds": round(r.seconds, 3), "encoder_passes": r.encoder_passes}
            for r in run.results
        ],
        "seconds": round(run.seconds, 3),
        "encoder_passes": run.encoder_passes,
        "weights": run.provenance.get("weights"),
        "random_weights": run.random_weights,
        "note": RANDOM_NOTE if run.random_weights else "",
        "model": run.provenance,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    _atomic_write(paths["run"], lambda tmp: Path(tmp).write_text(json.dumps(meta, indent=2, default=str)))
    return paths


def format_dice(run: RunResult) -> str:
    """The Dice table as text, headed by the weights (and a warning for random weights)."""
    d = run.dice()
    d = d[d["metric"] != "volume"]
    cols = ["setting", "order", "label_name", "metric", "dice", "std_per_volume", "n_volumes", "n_slices"]
    head = f"Dice ({run.provenance.get('model')}, {run.provenance.get('weights')})"
    lines = []
    if run.random_weights:
        lines.append("!" * 78)
        lines.append(f"!! {RANDOM_NOTE}")
        lines.append("!" * 78)
    lines.append(head)
    lines.append(d[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return "\n".join(lines)

