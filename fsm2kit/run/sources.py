"""Episodes to run: from npz dumps or SSL-ALPNet folders, for a config, and their subsets.

* :func:`load_episodes`: one folder of published FS-MedSAM2 npz episodes, or one (fold, class)
  of an SSL-ALPNet preprocessed folder built by the protocol (:mod:`fsm2kit.protocol`);
* :func:`load_config_episodes`: every episode an :class:`~fsm2kit.run.config.ExperimentConfig`
  names (folds x classes, class filter, subset);
* :func:`subset_episode`: the one way to keep fewer query slices (explicit positions, a z range,
  and ``max_slices``: at most N slices **evenly spaced over the range, first and last kept**).
  ``ExperimentConfig.max_slices``, the notebooks' ``max_slices`` and ``fsm2kit inspect
  --max-slices`` all mean this.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from ..protocol.episodes import Episode
from .config import ExperimentConfig
from .support_plans import SupportScan, attach_support_scan

__all__ = ["episode_folder_kind", "require_folder_options", "npz_episodes_matching", "load_episodes",
           "subset_episode", "load_config_episodes", "bars_off"]


def bars_off(progress: bool) -> bool:
    """True when progress bars are off (``progress=False`` or ``TQDM_DISABLE`` set)."""
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


def episode_folder_kind(path: str | os.PathLike) -> str:
    """``"npz"`` (published episode dumps) or ``"dataset"`` (SSL-ALPNet preprocessed folder).

    Raises
    ------
    FileNotFoundError, NotADirectoryError, ValueError
        Missing path, a file, or a folder holding neither.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"Episode folder {str(p)!r} does not exist.")
    if not p.is_dir():
        raise NotADirectoryError(f"--episodes expects a folder, got the file {str(p)!r}.")
    if any(p.glob("*.npz")):
        return "npz"
    if any(p.glob("image_*.nii*")):
        return "dataset"
    raise ValueError(
        f"{str(p)!r} holds neither FS-MedSAM2 npz episodes (*_case_*_z*.npz) nor an SSL-ALPNet "
        "preprocessed dataset (image_<id>.nii.gz + label_<id>.nii.gz)."
    )


def require_folder_options(path: str | os.PathLike, *, dataset, fold, label) -> None:
    """A preprocessed dataset folder needs a dataset, a fold and a class: say which are missing."""
    missing = [n for n, v in (("--dataset", dataset), ("--fold", fold), ("--label", label)) if v is None]
    if missing:
        raise ValueError(
            f"{str(path)!r} is a preprocessed dataset folder: also pass {', '.join(missing)} "
            "(e.g. --dataset CHAOST2 --fold 0 --label liver)."
        )


def npz_episodes_matching(
    episodes: Sequence[Episode],
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    fold: int | None = None,
    label: str | int | None = None,
    variant: str = "ALP",
) -> list[Episode]:
    """npz episodes checked against the dataset, fold and class a user named; refused if they contradict.

    npz dumps record each query's scan id and class id, not their dataset or fold, so a named
    option is checked against what they do record, never ignored:

    * ``dataset``: every scan id must be a scan of that dataset;
    * ``fold``: every scan must be a query scan of that fold (:func:`~fsm2kit.protocol.folds.fold_split`
      of ``dataset``, default CHAOST2, and ``variant``); the episodes then record the fold;
    * ``label``: the class (resolved in ``dataset``) must be among the episodes' classes; only
      its episodes are kept.

    Raises
    ------
    ValueError
        One line naming the option, what the episodes hold, and the fix.
    """
    from ..protocol.folds import SCAN_IDS, fold_split
    from ..protocol.labels import DATASET_LABELS, resolve_label

    ds = (dataset or "CHAOST2").upper()
    where = f"the npz episodes in {str(path)!r}"
    cases = sorted({str(e.case_id) for e in episodes}, key=lambda c: (not c.isdigit(), int(c) if c.isdigit() else 0, c))
    if dataset is not None:
        alien = [c for c in cases if not (c.isdigit() and int(c) in SCAN_IDS[ds])]
        if alien:
            raise ValueError(f"--dataset {ds}: {where} are of scans {alien}, which {ds} does not have "
                             f"(its scans: {list(SCAN_IDS[ds])}); give the dataset of the dumps.")
    episodes = list(episodes)
    if fold is not None:
        split = fold_split(ds, int(fold), variant=variant)
        outside = [c for c in cases if not (c.isdigit() and int(c) in split.query_ids)]
        if outside:
            raise ValueError(
                f"--fold {fold}: {where} are of scan(s) {outside}, which are not query scans of {ds} fold {fold} "
                f"({split.variant}: queries {list(split.query_ids)}); give the fold the dumps were made for, "
                "or leave --fold out (npz dumps do not record it)."
            )
        episodes = [replace(e, fold=int(fold)) for e in episodes]
    if label is not None:
        cid = resolve_label(ds, label)
        found = sorted({e.label for e in episodes})
        keep = [e for e in episodes if e.label == cid]
        if not keep:
            names = ", ".join(f"{i} {DATASET_LABELS[ds].get(i, '?')}" for i in found)
            raise ValueError(
                f"--label {label}: {where} hold class(es) {names} ({ds} ids), not {cid} "
                f"{DATASET_LABELS[ds][cid]}; give one of these (or leave --label out for all)."
            )
        episodes = keep
    return episodes


def load_episodes(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    fold: int | None = None,
    label: str | int | None = None,
    variant: str = "ALP",
    npart: int = 3,
    support_selector: object = None,
    progress: bool = True,
) -> list[Episode]:
    """Episodes from an npz dump folder or one (fold, class) of an SSL-ALPNet preprocessed folder.

    Parameters
    ----------
    path : path-like
        A folder of published FS-MedSAM2 npz episodes (``*_case_*_z*.npz``), or a folder with
        ``image_<id>.nii.gz`` / ``label_<id>.nii.gz`` (then ``dataset``, ``fold`` and
        ``label`` are required).
    dataset : {"SABS", "CHAOST2"}
        Dataset of the folder (npz dumps: default CHAOST2, used for label names).
    fold : int
        Fold (ALP folds by default: the support scan is the first scan of the next fold). For
        npz dumps, checked against their scans and recorded (:func:`npz_episodes_matching`).
    label : str or int
        Class name or id (e.g. ``liver``, ``RK``, ``6``). For npz dumps, checked against their
        classes and used to keep that class's episodes.
    variant : {"ALP", "GMRD"}
        Protocol variant for folds, scored slices and chunks.
    support_selector : str or SupportSelector, optional
        How each chunk's support slice is chosen (a registered name or a selector; default the
        protocol's rule). npz dumps carry their supports, so only ``"protocol"`` applies to them.
        A selector that needs the model (``similar``) builds the episodes with the protocol's
        supports and keeps the support scan (``meta["support_scan"]``) for the run to choose from
        (:mod:`fsm2kit.run.support_plans`).
    """
    from ..io.alp import load_alp_folder
    from ..io.npz import load_npz_episodes

    from ..records.naming import strategy_name
    from ..strategies.support_selectors import SUPPORT_SELECTORS

    selector = SUPPORT_SELECTORS.get(support_selector)
    p = Path(path)
    if episode_folder_kind(p) == "npz":
        if strategy_name(selector) != "protocol" and not getattr(selector, "swap", 0):  # swap: the views
            raise ValueError(f"support selector {strategy_name(selector)!r}: {str(p)!r} holds npz episode dumps, whose "
                             "support slices are fixed by the files; use an SSL-ALPNet folder to choose supports.")
        return npz_episodes_matching(load_npz_episodes(p, dataset=dataset or "CHAOST2"), p, dataset=dataset,
                                     fold=fold, label=label, variant=variant)
    from ..protocol.episodes import build_episode
    from ..protocol.folds import fold_split
    from ..protocol.labels import resolve_label

    require_folder_options(p, dataset=dataset, fold=fold, label=label)
    ds = load_alp_folder(p, dataset, crop256=(variant.upper() == "ALP"))
    lab = resolve_label(dataset, label)
    split = fold_split(dataset, int(fold), variant=variant, scan_ids=ds.scan_ids)
    sup = ds.load(split.support_id)
    later = bool(getattr(selector, "needs_model", False))
    keep = later or bool(getattr(selector, "swap", 0))  # swap:K draws per-slice supports from the scan
    scan = SupportScan(sup.array, sup.labels.array, lab, str(split.support_id)) if keep else None
    episodes = []
    for qid in tqdm(split.query_ids, desc="load scans", leave=False, disable=bars_off(progress)):
        q = ds.load(qid)
        ep = build_episode(
            q.array, q.labels.array, sup.array, sup.labels.array, lab,
            case_id=str(qid), support_case_id=str(split.support_id), dataset=ds.dataset,
            fold=int(fold), variant=variant, npart=npart,
            support_selector=None if later or strategy_name(selector) == "protocol" else selector,
        )
        episodes.append(attach_support_scan(ep, scan) if keep else ep)
    return episodes


def subset_episode(
    episode: Episode,
    *,
    positions: Sequence[int] | slice | None = None,
    z_range: tuple[int, int] | None = None,
    max_slices: int | None = None,
) -> Episode:
    """The episode restricted to some query slices; supports and chunk ids are kept.

    The selections apply in this order: ``positions``, then ``z_range``, then ``max_slices``.

    Parameters
    ----------
    episode : Episode
    positions : sequence of int or slice, optional, keyword-only
        Query positions (0 .. M-1) to keep, ascending without duplicates.
    z_range : (int, int), optional, keyword-only
        Keep the slices with ``lo <= z <= hi``.
    max_slices : int, optional, keyword-only
        Keep at most this many query slices, evenly spaced over what is left (first and last
        kept): positions ``unique(round(linspace(0, n - 1, max_slices)))``. For smoke runs and
        quick looks.

    Returns
    -------
    Episode
        ``episode`` itself when nothing is dropped; else a copy whose ``meta["subset"]`` records
        the kept ``z`` and the original number of slices (``of``).
    """
    keep = np.arange(episode.n_slices)
    if positions is not None:
        idx = keep[positions] if isinstance(positions, slice) else np.atleast_1d(np.asarray(positions, dtype=int))
        if idx.size == 0:
            raise ValueError("subset_episode: no query positions selected.")
        if np.any(idx < 0) or np.any(idx >= episode.n_slices) or np.any(np.diff(idx) <= 0):
            raise ValueError(f"subset_episode: positions must be ascending and in 0..{episode.n_slices - 1}, "
                             f"got {idx.tolist()}.")
        keep = idx
    if z_range is not None:
        lo, hi = z_range
        z = np.asarray(episode.z)[keep]
        keep = keep[(z >= lo) & (z <= hi)]
        if keep.size == 0:
            raise ValueError(
                f"z_range {tuple(z_range)} leaves no query slice of {episode.case_id}/{episode.label_name} "
                f"(its slices are z={int(episode.z[0])}..{int(episode.z[-1])})."
            )
    if max_slices is not None:
        if max_slices < 1:
            raise ValueError(f"max_slices must be >= 1, got {max_slices}.")
        if keep.size > max_slices:
            keep = keep[np.unique(np.round(np.linspace(0, keep.size - 1, max_slices)).astype(int))]
    if keep.size == episode.n_slices:
        return episode
    meta = {**episode.meta, "subset": {"z": [int(z) for z in np.asarray(episode.z)[keep]], "of": episode.n_slices}}
    return replace(
        episode,
        z=np.asarray(episode.z)[keep],
        images=np.asarray(episode.images)[keep],
        labels=None if episode.labels is None else np.asarray(episode.labels)[keep],
        chunks=np.asarray(episode.chunks)[keep],
        meta=meta,
    )


def load_config_episodes(config: ExperimentConfig, *, progress: bool = True) -> list[Episode]:
    """The episodes a config names (loaded, filtered by class, subset for smoke runs)."""
    from ..io.examples import example_dir
    from ..protocol.folds import ALP_SEP
    from ..protocol.labels import EVALUATED_CLASSES, label_name, resolve_label

    path = Path(config.episodes).expanduser() if config.episodes else example_dir() / "chaos_t2spir_case1_liver"
    if not path.exists():
        raise FileNotFoundError(
            f"Episode folder {str(path)!r} does not exist; pass an npz episode folder or an "
            "SSL-ALPNet preprocessed folder (episodes=...)."
        )
    if path.is_dir() and not any(path.glob("*.npz")) and any(path.glob("image_*.nii*")):
        if config.dataset is None:
            raise ValueError(
                f"{str(path)!r} is an SSL-ALPNet preprocessed folder: also give dataset='CHAOST2' "
                "or dataset='SABS'."
            )
        folds = config.folds or tuple(range(len(ALP_SEP[config.dataset]) - 1))
        classes = config.classes or tuple(label_name(config.dataset, c) for c in EVALUATED_CLASSES[config.dataset])
        episodes = []
        jobs = [(f, c) for f in folds for c in classes]
        for fold, cls in tqdm(jobs, desc="load folds x classes", disable=bars_off(progress), leave=False):
            episodes.extend(load_episodes(path, dataset=config.dataset, fold=fold, label=cls, variant=config.variant,
                                          support_selector=config.support_selector, progress=progress))
    else:
        if len(config.folds) > 1:
            raise ValueError(
                f"ExperimentConfig.folds={list(config.folds)}: {str(path)!r} holds npz episode dumps, which are "
                "one fold's episodes; give at most one fold (it is checked against the dumps' scans)."
            )
        episodes = load_episodes(path, dataset=config.dataset, support_selector=config.support_selector,
                                 fold=config.folds[0] if config.folds else None, variant=config.variant)
        if config.classes:
            kept = []
            for c in dict.fromkeys(config.classes):
                kept += npz_episodes_matching(episodes, path, dataset=config.dataset, label=c)
            order = {id(e): i for i, e in enumerate(episodes)}
            episodes = sorted(kept, key=lambda e: order[id(e)])
    unlabelled = [f"{e.case_id}/{e.label_name}" for e in episodes if e.labels is None]
    if unlabelled:
        raise ValueError(
            f"Episodes {unlabelled[:5]} have no ground truth, so they cannot be scored; an experiment "
            "needs labelled query scans (use Engine.segment directly for unlabelled ones)."
        )
    if config.max_slices is not None or config.z_range is not None:
        episodes = [subset_episode(e, max_slices=config.max_slices, z_range=config.z_range) for e in episodes]
    return episodes
