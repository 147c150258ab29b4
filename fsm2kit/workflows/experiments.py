"""Experiments: a typed config, a runner that returns tidy tables, and paper-style tables.

An :class:`ExperimentConfig` names the data (an npz episode folder or an SSL-ALPNet preprocessed
folder with dataset, folds and classes), the inference settings and orders, the models and their
checkpoints, the image size and the protocol variant. :func:`run_experiment` (or
:func:`run_experiments` for several configs) runs every (episode, setting, order, model) with one
:class:`~fsm2kit.engine.Engine` per model, so each slice goes through a model's image encoder
once however many settings and orders use it, and returns an :class:`ExperimentResult`:

* ``result.slices``: a tidy (long-form) table, one row per (case, class, setting, order, model,
  slice) with the Dice components (``tp``, ``fp``, ``fn``), the slice's Dice and provenance;
* ``result.volumes()``: one row per query volume (3D Dice);
* ``result.summary()``: per (dataset, model, setting, order, class) both Dice averages
  (``metric = pooled | mean_per_volume``, see :mod:`fsm2kit.metrics`);
* ``result.table()``: a paper-style table (organs as columns, Mean last);
* ``result.save(folder)``: ``slices.csv``, ``volumes.csv``, ``summary.csv``, ``provenance.json``.

Every table carries the provenance of the model that made it (model, ``weights`` =
``"random weights (seed N)"`` or ``"sha256:..."``, versions, image size, protocol variant).

:data:`PUBLISHED_BASELINES` holds the baseline rows of the paper's Table 1 as a user-fillable
table: every value is None until someone copies it from the paper (no numbers are made up here).
"""

from __future__ import annotations

import inspect
import json
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..core.engine import Engine, EpisodeResult
from ..core.episode import Episode
from ..protocol.metrics import per_volume_dice, summarize_dice
from ..core.plans import ORDERS, normalize_setting

__all__ = [
    "METRICS",
    "GROUP_KEYS",
    "PROVENANCE_COLUMNS",
    "ORGAN_ORDER",
    "RESULT_FILES",
    "ExperimentConfig",
    "ModelRun",
    "Prediction",
    "ExperimentResult",
    "QuotedRow",
    "PUBLISHED_BASELINES",
    "QUOTED_PLACEHOLDER",
    "slice_dice",
    "subset_episode",
    "load_config_episodes",
    "run_experiment",
    "run_experiments",
    "results_table",
    "baseline_table",
    "table_with_baselines",
    "read_results",
]

#: Values of ``ExperimentConfig.metric``: which Dice average(s) the summaries report.
METRICS = ("both", "pooled", "mean_per_volume")

#: Columns that identify one group of the summaries (one row per group and metric).
GROUP_KEYS = ("dataset", "model", "image_size", "setting", "order", "label", "label_name")

#: Provenance columns every table carries (from :meth:`fsm2kit.SAM2Model.provenance`).
PROVENANCE_COLUMNS = (
    "weights",
    "checkpoint_sha256",
    "sam_version",
    "device",
    "dtype",
    "fsm2kit_version",
    "sam2_version",
    "torch_version",
    "protocol_variant",
)

#: Organ columns of the paper-style tables, in this order, Mean last. The four evaluated organs
#: of both data sets (SSL-ALPNet ``pa_all``); pass ``organs=`` to lay a table out differently.
ORGAN_ORDER = ("LK", "RK", "SPLEEN", "LIVER")

#: Files written by :meth:`ExperimentResult.save` (and read by :func:`read_results`).
RESULT_FILES = {
    "slices": "slices.csv",
    "volumes": "volumes.csv",
    "summary": "summary.csv",
    "provenance": "provenance.json",
}

_RANDOM = "random weights"


def _bars_off(progress: bool) -> bool:
    """True when progress bars are off (``progress=False`` or ``TQDM_DISABLE`` set)."""
    return (not progress) or os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false")


# ============================================================================ config
def _as_tuple(name: str, value, kind=str) -> tuple:
    if value is None:
        return ()
    if isinstance(value, (str, int, np.integer)):
        value = [value]
    if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, (bytes, bytearray)):
        raise TypeError(f"ExperimentConfig.{name}: expected a list of values, got {type(value).__name__} {value!r}.")
    out = []
    for v in value:
        try:
            out.append(kind(v))
        except (TypeError, ValueError):
            raise TypeError(f"ExperimentConfig.{name}: {v!r} is not a valid {kind.__name__}.") from None
    return tuple(out)


@dataclass(frozen=True)
class ExperimentConfig:
    """What to run: data, settings, orders, models, checkpoint, size, protocol and metric.

    Lists may be given as lists, tuples or a single value; they are stored as tuples.

    Parameters
    ----------
    episodes : str or None
        An npz episode folder (published FS-MedSAM2 dumps) or an SSL-ALPNet preprocessed folder
        (``image_<id>.nii.gz`` / ``label_<id>.nii.gz``). None: the bundled CHAOS case.
    dataset : {"CHAOST2", "SABS"} or None
        Required for preprocessed folders; names the classes of npz dumps (default CHAOST2).
    folds : sequence of int
        Folds of a preprocessed folder (default: all five). Ignored for npz dumps (which hold
        one fold's episodes already).
    classes : sequence of str or int
        Classes to evaluate (names such as ``"liver"``, ``"RK"``, or ids). Preprocessed folder:
        default the dataset's four evaluated organs; npz dumps: default all in the folder.
    settings : sequence of {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
    orders : sequence of {"middle", "top"}
        Orders of the FQ settings (the 1Q settings run once, order ``"n/a"``).
    models : sequence of str
        Model names (``sam2-tiny`` ... ``sam2.1-large``).
    checkpoint : None, "random", a file, a folder, or a mapping {model: file}
        None downloads the released checkpoint of each model; ``"random"`` builds random
        weights (smoke runs: results mean nothing); a file fits one model only; a folder must
        hold the released file names (``sam2_hiera_large.pt`` ...).
    seed : int
        Seed of random weights.
    image_size : int
        SAM2 input size (1024 as published; 256 or 512 for smoke runs).
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"mps"``; None picks the best available.
    variant : {"ALP", "GMRD"}
        Protocol variant (folds, scored slices, chunks) for preprocessed folders.
    metric : {"both", "pooled", "mean_per_volume"}
        Which Dice average the summaries report (``both`` keeps both rows).
    max_slices : int or None
        Keep at most this many query slices per episode, evenly spaced over its range (all
        supports are kept). For smoke runs; None: all.
    z_range : (int, int) or None
        Keep query slices with ``lo <= z <= hi`` (before ``max_slices``).
    cache_dir : str or None
        On-disk feature cache, passed to the Engine when it supports one (``Engine(cache_dir=)``).
    threads : int or None
        ``torch.set_num_threads`` before running (None: leave torch's default).
    name : str
        A name for the experiment (a column of every table).
    """

    episodes: str | None = None
    dataset: str | None = None
    folds: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("S1SFQ",)
    orders: tuple[str, ...] = ("middle",)
    models: tuple[str, ...] = ("sam2-tiny",)
    checkpoint: str | None | tuple[tuple[str, str], ...] = None
    seed: int = 0
    image_size: int = 1024
    device: str | None = None
    variant: str = "ALP"
    metric: str = "both"
    max_slices: int | None = None
    z_range: tuple[int, int] | None = None
    cache_dir: str | None = None
    threads: int | None = None
    name: str = "experiment"

    def __post_init__(self) -> None:
        from ..core.specs import resolve_spec
        from ..protocol.checks import DATASETS, PROTOCOL_VARIANTS

        s = object.__setattr__
        if self.episodes is not None:
            s(self, "episodes", os.fspath(self.episodes))
        if self.dataset is not None:
            ds = str(self.dataset).strip().upper()
            if ds not in DATASETS:
                raise ValueError(f"ExperimentConfig.dataset: expected one of {DATASETS}, got {self.dataset!r}.")
            s(self, "dataset", ds)
        s(self, "folds", _as_tuple("folds", self.folds, int))
        s(self, "classes", _as_tuple("classes", self.classes, str))
        settings = tuple(normalize_setting(x) for x in _as_tuple("settings", self.settings))
        if not settings:
            raise ValueError("ExperimentConfig.settings is empty; give at least one of 1S1Q, 3S1Q, S1SFQ, 3SFQ.")
        s(self, "settings", tuple(dict.fromkeys(settings)))
        orders = tuple(str(o).strip().lower() for o in _as_tuple("orders", self.orders))
        bad = [o for o in orders if o not in ORDERS]
        if bad:
            raise ValueError(f"ExperimentConfig.orders: unknown {bad}; expected some of {list(ORDERS)}.")
        if not orders and any(x.endswith("FQ") for x in settings):
            raise ValueError("ExperimentConfig.orders is empty but an FQ setting needs an order (middle or top).")
        s(self, "orders", tuple(dict.fromkeys(orders)))
        models = tuple(resolve_spec(m).name for m in _as_tuple("models", self.models))
        if not models:
            raise ValueError("ExperimentConfig.models is empty; give at least one model name, e.g. 'sam2-tiny'.")
        s(self, "models", tuple(dict.fromkeys(models)))
        ck = self.checkpoint
        if isinstance(ck, Mapping):
            ck = tuple(sorted((resolve_spec(str(k)).name, os.fspath(v)) for k, v in ck.items()))
            missing = [m for m in models if m not in dict(ck)]
            if missing:
                raise ValueError(
                    f"ExperimentConfig.checkpoint maps {sorted(dict(ck))} but not {missing}; give a "
                    "file for every model, or a folder holding the released file names."
                )
        elif isinstance(ck, (list, tuple)):
            ck = tuple((str(k), os.fspath(v)) for k, v in ck)
        elif ck is not None:
            ck = os.fspath(ck)
            if ck != "random" and len(models) > 1 and not Path(ck).expanduser().is_dir():
                raise ValueError(
                    f"ExperimentConfig.checkpoint {ck!r} is one file but {len(models)} models are "
                    "asked for; pass a folder holding the released files (sam2_hiera_tiny.pt, ...), "
                    "a {model: file} mapping, or 'random'."
                )
        s(self, "checkpoint", ck)
        s(self, "seed", int(self.seed))
        s(self, "image_size", int(self.image_size))
        variant = str(self.variant).strip().upper()
        if variant not in PROTOCOL_VARIANTS:
            raise ValueError(f"ExperimentConfig.variant: expected one of {PROTOCOL_VARIANTS}, got {self.variant!r}.")
        s(self, "variant", variant)
        metric = str(self.metric).strip().lower()
        if metric not in METRICS:
            raise ValueError(f"ExperimentConfig.metric: expected one of {METRICS}, got {self.metric!r}.")
        s(self, "metric", metric)
        if self.max_slices is not None:
            if int(self.max_slices) < 1:
                raise ValueError(f"ExperimentConfig.max_slices must be None or >= 1, got {self.max_slices!r}.")
            s(self, "max_slices", int(self.max_slices))
        if self.z_range is not None:
            zr = _as_tuple("z_range", self.z_range, int)
            if len(zr) != 2 or zr[0] > zr[1]:
                raise ValueError(f"ExperimentConfig.z_range must be (lo, hi) with lo <= hi, got {self.z_range!r}.")
            s(self, "z_range", zr)
        if self.cache_dir is not None:
            s(self, "cache_dir", os.fspath(self.cache_dir))

    # ------------------------------------------------------------------ helpers
    @property
    def random_weights(self) -> bool:
        return self.checkpoint == "random"

    def checkpoint_for(self, model: str) -> str | None:
        """The checkpoint argument of :func:`fsm2kit.load_sam2` for ``model``.

        Raises
        ------
        FileNotFoundError
            A checkpoint folder without the model's released file name.
        """
        from ..core.specs import resolve_spec

        spec = resolve_spec(model)
        ck = self.checkpoint
        if ck is None or ck == "random":
            return ck
        if isinstance(ck, tuple):
            return dict(ck)[spec.name]
        p = Path(ck).expanduser()
        if p.is_dir():
            f = p / spec.checkpoint
            if not f.is_file():
                raise FileNotFoundError(
                    f"Checkpoint folder {str(p)!r} has no {spec.checkpoint} for {spec.name}; "
                    f"download it from {spec.url} into that folder, or pass a {{model: file}} mapping."
                )
            return str(f)
        return str(p)

    def to_dict(self) -> dict:
        """A JSON-able dict of the config (round-trips through ``ExperimentConfig(**d)``)."""
        d = asdict(self)
        if isinstance(self.checkpoint, tuple):
            d["checkpoint"] = dict(self.checkpoint)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def __repr__(self) -> str:
        orders = "/".join(self.orders) if any(x.endswith("FQ") for x in self.settings) else "-"
        sub = []
        if self.max_slices:
            sub.append(f"max_slices={self.max_slices}")
        if self.z_range:
            sub.append(f"z_range={self.z_range}")
        ck = "download" if self.checkpoint is None else (
            "{...}" if isinstance(self.checkpoint, tuple) else self.checkpoint)
        return (
            f"ExperimentConfig({self.name!r}: {self.episodes or 'bundled CHAOS case'}"
            f"{' ' + self.dataset if self.dataset else ''}"
            f"{' folds ' + ','.join(map(str, self.folds)) if self.folds else ''}"
            f"{' classes ' + ','.join(self.classes) if self.classes else ''}; "
            f"{'+'.join(self.settings)} x {orders} x {'+'.join(self.models)}; checkpoint={ck}; "
            f"{self.image_size}px, {self.variant}, metric={self.metric}"
            f"{'; ' + ', '.join(sub) if sub else ''})"
        )


# ============================================================================ episodes
def subset_episode(episode: Episode, *, max_slices: int | None = None,
                   z_range: tuple[int, int] | None = None) -> Episode:
    """The episode restricted to some query slices (for smoke runs); supports are kept.

    Parameters
    ----------
    episode : Episode
    max_slices : int, optional
        Keep at most this many query slices, evenly spaced over the range (first and last kept).
    z_range : (int, int), optional
        Keep slices with ``lo <= z <= hi`` first.

    Returns
    -------
    Episode
        Same supports and chunk ids; ``meta["subset"]`` records the selection.
    """
    keep = np.arange(episode.n_slices)
    if z_range is not None:
        lo, hi = z_range
        keep = keep[(episode.z >= lo) & (episode.z <= hi)]
        if keep.size == 0:
            raise ValueError(
                f"z_range {tuple(z_range)} leaves no query slice of {episode.case_id}/{episode.label_name} "
                f"(its slices are z={int(episode.z[0])}..{int(episode.z[-1])})."
            )
    if max_slices is not None and keep.size > max_slices:
        if max_slices < 1:
            raise ValueError(f"max_slices must be >= 1, got {max_slices}.")
        pick = np.unique(np.round(np.linspace(0, keep.size - 1, max_slices)).astype(int))
        keep = keep[pick]
    if keep.size == episode.n_slices:
        return episode
    meta = {**episode.meta, "subset": {"z": [int(z) for z in episode.z[keep]], "of": episode.n_slices}}
    return replace(
        episode,
        z=episode.z[keep],
        images=episode.images[keep],
        labels=None if episode.labels is None else episode.labels[keep],
        chunks=episode.chunks[keep],
        meta=meta,
    )


def load_config_episodes(config: ExperimentConfig, *, progress: bool = True) -> list[Episode]:
    """The episodes a config names (loaded, filtered by class, subset for smoke runs)."""
    from ..io.examples import example_dir
    from ..protocol.folds import ALP_SEP
    from ..protocol.labels import EVALUATED_CLASSES, label_name, resolve_label
    from ..workflows.runner import load_episodes

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
        for fold, cls in tqdm(jobs, desc="load folds x classes", disable=_bars_off(progress), leave=False):
            episodes.extend(load_episodes(path, dataset=config.dataset, fold=fold, label=cls, variant=config.variant))
    else:
        episodes = load_episodes(path, dataset=config.dataset)
        if config.folds:
            warnings.warn(
                f"ExperimentConfig.folds={list(config.folds)} ignored: {str(path)!r} holds npz "
                "episode dumps, which already are one fold's episodes.",
                UserWarning,
                stacklevel=2,
            )
        if config.classes:
            ds = config.dataset or "CHAOST2"
            wanted = {resolve_label(ds, c) for c in config.classes}
            found = sorted({e.label for e in episodes})
            episodes = [e for e in episodes if e.label in wanted]
            if not episodes:
                raise ValueError(
                    f"No episode of classes {list(config.classes)} in {str(path)!r}; the folder "
                    f"holds class ids {found} ({ds})."
                )
    unlabelled = [f"{e.case_id}/{e.label_name}" for e in episodes if e.labels is None]
    if unlabelled:
        raise ValueError(
            f"Episodes {unlabelled[:5]} have no ground truth, so they cannot be scored; an experiment "
            "needs labelled query scans (use Engine.segment directly for unlabelled ones)."
        )
    if config.max_slices is not None or config.z_range is not None:
        episodes = [subset_episode(e, max_slices=config.max_slices, z_range=config.z_range) for e in episodes]
    return episodes


# ============================================================================ results
def slice_dice(tp, fp, fn):
    """Per-slice Dice ``2TP / (2TP + FP + FN)``; NaN where prediction and target are both empty.

    Works on numbers and on arrays / Series of counts.
    """
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(denom > 0, 2 * tp / np.where(denom > 0, denom, 1), np.nan)
    return float(out) if out.ndim == 0 else out


@dataclass(eq=False)
class ModelRun:
    """What one model did in an experiment: its provenance, encoder passes and time."""

    model: str
    provenance: dict
    encoder_passes: int
    disk_hits: int
    segment_calls: int
    seconds: float

    def __repr__(self) -> str:
        return (
            f"ModelRun({self.model}, {self.provenance.get('weights')}, {self.segment_calls} runs, "
            f"{self.encoder_passes} encoder passes, {self.disk_hits} disk hits, {self.seconds:.1f} s)"
        )


@dataclass(eq=False)
class Prediction:
    """One (episode, setting, order, model) run kept for figures (``keep_predictions=True``)."""

    model: str
    episode: Episode
    result: EpisodeResult

    @property
    def setting(self) -> str:
        return self.result.setting

    @property
    def order(self) -> str:
        return self.result.order or "n/a"

    def __repr__(self) -> str:
        return f"Prediction({self.model}, {self.result!r})"


@dataclass(eq=False)
class ExperimentResult:
    """The tidy results of one or more :class:`ExperimentConfig`.

    Attributes
    ----------
    configs : tuple of ExperimentConfig
    slices : DataFrame
        One row per (case, class, setting, order, model, slice): ``tp``, ``fp``, ``fn``,
        ``dice`` (NaN on a slice where prediction and ground truth are both empty) and provenance.
    model_runs : tuple of ModelRun
    seconds : float
    predictions : list of Prediction
        Kept only with ``keep_predictions=True`` (for overlays and panels).
    """

    configs: tuple[ExperimentConfig, ...]
    slices: pd.DataFrame
    model_runs: tuple[ModelRun, ...]
    seconds: float
    predictions: list[Prediction] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ properties
    @property
    def random_weights(self) -> bool:
        """True when any model ran on random weights (then no number here means anything)."""
        return bool(self.slices["weights"].astype(str).str.contains(_RANDOM).any())

    @property
    def weights(self) -> str:
        """The weights of all models, e.g. ``"random weights (seed 0)"``."""
        return "; ".join(dict.fromkeys(self.slices["weights"].astype(str)))

    @property
    def metric(self) -> str:
        ms = {c.metric for c in self.configs}
        return ms.pop() if len(ms) == 1 else "both"

    @property
    def note(self) -> str:
        """A line to print next to every number of this result."""
        from ..workflows.runner import RANDOM_NOTE

        return RANDOM_NOTE if self.random_weights else f"weights: {self.weights}"

    # ------------------------------------------------------------------ tables
    def _provenance_frame(self) -> pd.DataFrame:
        cols = ["model", "image_size", *PROVENANCE_COLUMNS]
        return self.slices[cols].drop_duplicates(subset=["model", "image_size", "protocol_variant"])

    def volumes(self) -> pd.DataFrame:
        """3D Dice per query volume (``case_id`` x class x setting x order x model), with provenance."""
        v = per_volume_dice(self.slices, by=list(GROUP_KEYS), volume_key="case_id")
        return v.merge(self._provenance_frame(), on=["model", "image_size"], how="left")

    def summary(self, metric: str | None = None) -> pd.DataFrame:
        """Both Dice averages per (dataset, model, setting, order, class), with provenance.

        Parameters
        ----------
        metric : {"both", "pooled", "mean_per_volume"}, optional
            Default: the configs' ``metric``.
        """
        metric = (metric or self.metric).lower()
        if metric not in METRICS:
            raise ValueError(f"metric: expected one of {METRICS}, got {metric!r}.")
        s = summarize_dice(self.slices, by=list(GROUP_KEYS), volume_key="case_id")
        if metric != "both":
            s = s[s["metric"] == metric].reset_index(drop=True)
        return s.merge(self._provenance_frame(), on=["model", "image_size"], how="left")

    def table(self, metric: str = "mean_per_volume", *, rows: Sequence[str] = ("model", "setting", "order"),
              organs: Sequence[str] | None = None) -> pd.DataFrame:
        """A paper-style table: organs as columns per dataset, Mean last; see :func:`results_table`.

        Rows follow the configs' order of models, settings and orders.
        """
        order = {
            "model": list(dict.fromkeys(m for c in self.configs for m in c.models)),
            "setting": list(dict.fromkeys(x for c in self.configs for x in c.settings)),
            "order": ["n/a", *dict.fromkeys(o for c in self.configs for o in c.orders)],
        }
        return results_table(self.summary("both"), metric=metric, rows=rows, organs=organs, row_order=order)

    def select_predictions(self, *, setting: str | None = None, order: str | None = None,
                           model: str | None = None, case_id: str | None = None,
                           label: str | int | None = None) -> list[Prediction]:
        """The kept predictions matching the filters (needs ``keep_predictions=True``).

        Raises
        ------
        KeyError
            Nothing matches (the message lists what was kept).
        """
        if not self.predictions:
            raise ValueError("No predictions were kept: run with keep_predictions=True.")
        out = []
        for p in self.predictions:
            r = p.result
            if setting is not None and r.setting != normalize_setting(setting):
                continue
            if order is not None and r.setting.endswith("FQ") and p.order != order:
                continue
            if model is not None and p.model != model:
                continue
            if case_id is not None and str(r.case_id) != str(case_id):
                continue
            if label is not None and str(label).upper() not in (str(r.label), r.label_name.upper()):
                continue
            out.append(p)
        if not out:
            have = sorted({(p.model, p.setting, p.order, str(p.result.case_id), p.result.label_name)
                           for p in self.predictions})
            raise KeyError(f"No kept prediction matches; kept (model, setting, order, case, class): {have}.")
        return out

    def prediction(self, **filters) -> Prediction:
        """The first kept prediction matching the filters of :meth:`select_predictions`."""
        return self.select_predictions(**filters)[0]

    # ------------------------------------------------------------------ files
    def provenance(self) -> dict:
        """JSON-able provenance: configs, models, weights, versions, timing."""
        from ..core.version import __version__

        return {
            "tool": "fsm2kit",
            "fsm2kit_version": __version__,
            "random_weights": self.random_weights,
            "note": self.note,
            "weights": self.weights,
            "configs": [c.to_dict() for c in self.configs],
            "models": [
                {"model": r.model, "encoder_passes": r.encoder_passes, "disk_hits": r.disk_hits,
                 "segment_calls": r.segment_calls, "seconds": round(r.seconds, 3), "provenance": r.provenance}
                for r in self.model_runs
            ],
            "rows": int(len(self.slices)),
            "seconds": round(self.seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def save(self, folder: str | os.PathLike) -> dict[str, Path]:
        """Write ``slices.csv``, ``volumes.csv``, ``summary.csv`` and ``provenance.json``.

        Each file is written to a temporary name and renamed; ``provenance.json`` comes last.
        """
        from ..workflows.runner import _atomic_write

        out = Path(folder)
        paths = {k: out / v for k, v in RESULT_FILES.items()}
        _atomic_write(paths["slices"], lambda t: self.slices.to_csv(t, index=False))
        _atomic_write(paths["volumes"], lambda t: self.volumes().to_csv(t, index=False))
        _atomic_write(paths["summary"], lambda t: self.summary().to_csv(t, index=False))
        text = json.dumps(self.provenance(), indent=2, default=str)
        _atomic_write(paths["provenance"], lambda t: Path(t).write_text(text))
        return paths

    def __repr__(self) -> str:
        n_ep = self.slices.groupby(["dataset", "case_id", "label"]).ngroups if len(self.slices) else 0
        combos = self.slices[["model", "setting", "order"]].drop_duplicates()
        runs = ", ".join(f"{m}:{s}{'' if o == 'n/a' else '-' + o}" for m, s, o in combos.itertuples(index=False))
        return (
            f"ExperimentResult({n_ep} episodes, {len(self.slices)} slice rows; {runs}; "
            f"{sum(r.encoder_passes for r in self.model_runs)} encoder passes; {self.seconds:.1f} s; "
            f"{self.weights})"
        )


# ============================================================================ running
def _engine(model, config_cache_dir: str | None) -> Engine:
    kwargs = {"progress": False}
    if config_cache_dir is not None:
        if "cache_dir" in inspect.signature(Engine.__init__).parameters:
            kwargs["cache_dir"] = config_cache_dir
        else:
            warnings.warn(
                "cache_dir ignored: this fsm2kit Engine has no on-disk feature cache yet.",
                UserWarning,
                stacklevel=3,
            )
    return Engine(model, **kwargs)


def _model_key(config: ExperimentConfig, model: str) -> tuple:
    return (model, config.checkpoint_for(model), config.seed, config.image_size, config.device)


def run_experiment(config: ExperimentConfig, **kwargs) -> ExperimentResult:
    """Run one config; see :func:`run_experiments` for the keyword options."""
    return run_experiments([config], **kwargs)


def run_experiments(
    configs: Sequence[ExperimentConfig],
    *,
    models: Mapping[str, object] | None = None,
    keep_predictions: bool = False,
    progress: bool = True,
) -> ExperimentResult:
    """Run every (config, model, episode, setting, order) and return tidy tables.

    One :class:`~fsm2kit.engine.Engine` per distinct (model, checkpoint, seed, image size,
    device), shared by all configs, settings and orders, so each distinct slice is encoded once
    per model (and read from the on-disk cache when ``cache_dir`` is set and the Engine has one).

    Parameters
    ----------
    configs : sequence of ExperimentConfig
    models : mapping {name: SAM2Model}, optional, keyword-only
        Models already loaded (e.g. in a notebook or a test), used as they are (the tables record
        their own weights); their image size must match the config's. Others are loaded with
        :func:`fsm2kit.load_sam2` from the config's checkpoint.
    keep_predictions : bool, keyword-only
        Keep the episodes and per-slice logits (for overlays and panels; costs memory).
    progress : bool, keyword-only
        A progress bar over the runs.

    Returns
    -------
    ExperimentResult
    """
    import torch

    from ..core.models import load_sam2

    if isinstance(configs, ExperimentConfig):
        configs = [configs]
    configs = tuple(configs)
    if not configs or not all(isinstance(c, ExperimentConfig) for c in configs):
        raise TypeError("run_experiments expects a non-empty sequence of ExperimentConfig.")
    t0 = time.perf_counter()
    threads = {c.threads for c in configs if c.threads}
    if threads:
        torch.set_num_threads(max(threads))
    episodes = [load_config_episodes(c, progress=progress) for c in configs]

    # work per model key: [(config index, model name)]
    plan: dict[tuple, list[tuple[int, str]]] = {}
    for i, c in enumerate(configs):
        for m in c.models:
            plan.setdefault(_model_key(c, m), []).append((i, m))

    def units(i: int):
        c = configs[i]
        for ep in episodes[i]:
            for s in c.settings:
                for o in (c.orders if s.endswith("FQ") else ("n/a",)):
                    yield ep, s, o

    total = sum(sum(1 for _ in units(i)) for uses in plan.values() for i, _ in uses)
    bar = tqdm(total=total, desc="experiment", disable=_bars_off(progress))
    frames, runs, kept = [], [], []
    given = dict(models or {})
    try:
        for key, uses in plan.items():
            name, ckpt, seed, size, device = key
            m0 = time.perf_counter()
            model = given.get(name)
            if model is not None:
                if model.image_size != size:
                    raise ValueError(
                        f"models[{name!r}] has image_size {model.image_size} but the config asks for "
                        f"{size}; load it at {size} or change ExperimentConfig.image_size."
                    )
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    model = load_sam2(name, ckpt, seed=seed, image_size=size, device=device, progress=progress)
            cache_dirs = {configs[i].cache_dir for i, _ in uses if configs[i].cache_dir}
            engine = _engine(model, sorted(cache_dirs)[0] if cache_dirs else None)
            prov = model.provenance()
            passes0 = engine.stats.encoder_passes
            hits0 = getattr(engine.stats, "disk_hits", 0)
            calls = 0
            for i, _ in uses:
                c = configs[i]
                for ep, setting, order in units(i):
                    bar.set_postfix_str(f"{name} {setting}{'' if order == 'n/a' else '-' + order} "
                                        f"{ep.case_id}/{ep.label_name}", refresh=False)
                    r = engine.segment(ep, setting, order=order if order != "n/a" else "middle")
                    calls += 1
                    df = r.to_frame(ep.labels)
                    df["experiment"] = c.name
                    df["dataset"] = ep.dataset or (c.dataset or "")
                    df["fold"] = ep.fold if ep.fold is not None else -1
                    df["image_size"] = size
                    df["protocol_variant"] = ep.variant
                    for col in PROVENANCE_COLUMNS:
                        if col in prov:
                            df[col] = prov[col]
                    frames.append(df)
                    if keep_predictions:
                        kept.append(Prediction(name, ep, r))
                    bar.update(1)
            runs.append(ModelRun(
                model=name, provenance=prov, encoder_passes=engine.stats.encoder_passes - passes0,
                disk_hits=getattr(engine.stats, "disk_hits", 0) - hits0, segment_calls=calls,
                seconds=time.perf_counter() - m0,
            ))
            del engine
    finally:
        bar.close()
    slices = _tidy(pd.concat(frames, ignore_index=True))
    return ExperimentResult(configs, slices, tuple(runs), time.perf_counter() - t0, kept)


_FIRST = ["experiment", "dataset", "fold", "case_id", "label", "label_name", "model", "image_size",
          "setting", "order", "z", "tp", "fp", "fn", "gt_px", "pred_px", "dice"]


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    df["gt_px"] = (df["tp"] + df["fn"]).astype("int64")
    df["dice"] = slice_dice(df["tp"], df["fp"], df["fn"])
    df["case_id"] = df["case_id"].astype(str)
    rest = [c for c in df.columns if c not in _FIRST]
    return df[[*_FIRST, *rest]]


# ============================================================================ paper tables
def _dataset_organs(organs: Sequence[str] | None, present: Sequence[str]) -> list[str]:
    order = [o.upper() for o in (organs or ORGAN_ORDER)]
    extra = sorted(o for o in present if o not in order)
    if organs is None:
        return [o for o in order if o in present] + extra
    return order


def results_table(
    summary: pd.DataFrame,
    *,
    metric: str = "mean_per_volume",
    rows: Sequence[str] = ("model", "setting", "order"),
    organs: Sequence[str] | None = None,
    mean: bool = True,
    row_order: Mapping[str, Sequence] | None = None,
) -> pd.DataFrame:
    """A paper-style table from a summary: one column per (dataset, organ), ``Mean`` last.

    Parameters
    ----------
    summary : DataFrame
        From :meth:`ExperimentResult.summary` (columns ``dataset``, ``label_name``, ``metric``,
        ``dice`` and the ``rows`` columns).
    metric : {"mean_per_volume", "pooled"}
        Which Dice average fills the table.
    rows : sequence of str
        Columns that make the table's rows.
    organs : sequence of str, optional
        Organ columns in this order (default :data:`ORGAN_ORDER`, then any other class found).
    mean : bool
        Add a ``Mean`` column per dataset: the mean over that row's organ columns (classes that
        were not run are left out of it).
    row_order : mapping {column: values}, optional
        Order of the rows' values (default: settings as in :data:`fsm2kit.SETTINGS`, orders
        ``n/a, top, middle``, models as in :data:`fsm2kit.MODELS`; others sorted).

    Returns
    -------
    DataFrame
        Index: ``rows``; columns: a (dataset, organ) MultiIndex; values: Dice in [0, 1].
    """
    if metric not in ("mean_per_volume", "pooled"):
        raise ValueError(f"metric: expected 'mean_per_volume' or 'pooled', got {metric!r}.")
    need = {"dataset", "label_name", "metric", "dice", *rows}
    missing = sorted(need - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks columns {missing}; pass ExperimentResult.summary() (has {list(summary.columns)}).")
    s = summary[summary["metric"] == metric]
    if s.empty:
        raise ValueError(f"summary has no {metric!r} rows (metrics present: {sorted(set(summary['metric']))}).")
    s = s.assign(label_name=s["label_name"].astype(str).str.upper())
    wide = s.pivot_table(index=list(rows), columns=["dataset", "label_name"], values="dice", aggfunc="first",
                         sort=False)
    blocks = []
    for ds in dict.fromkeys(s["dataset"]):
        present = list(dict.fromkeys(s.loc[s["dataset"] == ds, "label_name"]))
        cols = _dataset_organs(organs, present)
        block = wide[ds].reindex(columns=cols) if ds in wide.columns.get_level_values(0) else pd.DataFrame(index=wide.index)
        if mean:
            block = block.assign(Mean=block.mean(axis=1, skipna=True))
        block.columns = pd.MultiIndex.from_product([[ds], list(block.columns)], names=["dataset", "organ"])
        blocks.append(block)
    out = pd.concat(blocks, axis=1)
    out.columns.names = ["dataset", "organ"]
    return _order_rows(out, row_order)


def _order_rows(table: pd.DataFrame, row_order: Mapping[str, Sequence] | None) -> pd.DataFrame:
    from ..core.specs import MODELS
    from ..core.plans import SETTINGS

    known = {"setting": list(SETTINGS), "order": ["n/a", "top", "middle"], "model": list(MODELS)}
    known.update({k: list(v) for k, v in (row_order or {}).items()})
    names = list(table.index.names)

    def rank(values):
        vals = values if isinstance(values, tuple) else (values,)
        key = []
        for n, v in zip(names, vals):
            vocab = known.get(n, [])
            key.append((vocab.index(v), "") if v in vocab else (len(vocab), str(v)))
        return tuple(key)

    return table.loc[sorted(table.index, key=rank)]


# ============================================================================ quoted baselines
#: Shown in a baseline cell whose value has not been copied from the paper yet.
QUOTED_PLACEHOLDER = "quoted (fill from paper)"


@dataclass(frozen=True)
class QuotedRow:
    """A result row quoted from a paper (never computed here).

    Values are Dice in [0, 1] (divide the paper's percentages by 100), or None while not filled
    in. ``source`` must cite the table the numbers were copied from.
    """

    method: str
    dataset: str
    lk: float | None = None
    rk: float | None = None
    spleen: float | None = None
    liver: float | None = None
    mean: float | None = None
    metric: str = "mean_per_volume"
    source: str = "FS-MedSAM2 (Bai et al., arXiv 2409.04298), Table 1"

    @property
    def filled(self) -> bool:
        return any(v is not None for v in (self.lk, self.rk, self.spleen, self.liver, self.mean))

    def value(self, organ: str) -> float | None:
        key = organ.strip().lower()
        if key not in ("lk", "rk", "spleen", "liver", "mean"):
            raise KeyError(f"QuotedRow has no organ {organ!r}; expected LK, RK, SPLEEN, LIVER or Mean.")
        return getattr(self, key)

    def __repr__(self) -> str:
        vals = ", ".join(f"{k}={'?' if getattr(self, k) is None else getattr(self, k)}"
                         for k in ("lk", "rk", "spleen", "liver", "mean"))
        return f"QuotedRow({self.method}, {self.dataset}: {vals}; {self.source})"


# The baseline rows of FS-MedSAM2's Table 1, to be filled in by hand.
# Every value is None on purpose: copy each number from Table 1 of
#   H. Bai, Q. Chen, Y. Zheng et al., "FS-MedSAM2: Exploring the Potential of SAM2 for Few-Shot
#   Medical Image Segmentation without Fine-tuning", arXiv 2409.04298 (2024),
# as a fraction (the paper prints percentages), keep the citation in ``source``, and add or
# remove methods so the rows match the paper's table. fsm2kit never ships numbers it has not
# computed or checked against the paper.
PUBLISHED_BASELINES: tuple[QuotedRow, ...] = tuple(
    QuotedRow(method, dataset)
    for method in ("SSL-ALPNet", "ADNet", "Q-Net", "GMRD", "FS-MedSAM2 (as published)")
    for dataset in ("CHAOST2", "SABS")
)


def baseline_table(
    baselines: Sequence[QuotedRow] = PUBLISHED_BASELINES,
    *,
    datasets: Sequence[str] | None = None,
    organs: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Quoted rows as a table shaped like :func:`results_table` (object dtype).

    Cells not filled in read :data:`QUOTED_PLACEHOLDER`. Index: (``source``, ``method``).
    """
    datasets = list(datasets) if datasets is not None else list(dict.fromkeys(b.dataset for b in baselines))
    cols = [o.upper() for o in (organs or ORGAN_ORDER)] + ["Mean"]
    methods = list(dict.fromkeys(b.method for b in baselines))
    by = {(b.method, b.dataset): b for b in baselines}
    data, index = [], []
    for m in methods:
        row, sources = [], set()
        for ds in datasets:
            b = by.get((m, ds))
            for o in cols:
                v = b.value(o) if b is not None else None
                row.append(QUOTED_PLACEHOLDER if v is None else float(v))
            if b is not None:
                sources.add(b.source if b.filled else QUOTED_PLACEHOLDER)
        label = "; ".join(sorted(sources)) if sources else QUOTED_PLACEHOLDER
        index.append((f"quoted: {label}" if label != QUOTED_PLACEHOLDER else QUOTED_PLACEHOLDER, m))
        data.append(row)
    columns = pd.MultiIndex.from_tuples([(ds, o) for ds in datasets for o in cols], names=["dataset", "organ"])
    return pd.DataFrame(data, index=pd.MultiIndex.from_tuples(index, names=["source", "method"]),
                        columns=columns, dtype=object)


def _method_name(names: Sequence[str], key) -> str:
    parts = dict(zip(names, key if isinstance(key, tuple) else (key,)))
    order = str(parts.pop("order", "n/a"))
    if "setting" in parts and order not in ("n/a", "nan", "None"):
        parts["setting"] = f"{parts['setting']}-{order}"
    return " ".join(str(v) for v in parts.values())


def table_with_baselines(
    result_table: pd.DataFrame,
    baselines: Sequence[QuotedRow] = PUBLISHED_BASELINES,
    *,
    source: str,
) -> pd.DataFrame:
    """Quoted baseline rows above this run's rows, in one table (Table 1 layout).

    Parameters
    ----------
    result_table : DataFrame
        From :func:`results_table` (columns (dataset, organ)).
    baselines : sequence of QuotedRow
        Only rows of the table's datasets are shown.
    source : str
        Label of the computed rows, e.g. ``"computed here (random weights (seed 0))"``.

    Returns
    -------
    DataFrame
        Index (``source``, ``method``); the computed rows' method names join their index levels.
    """
    datasets = list(dict.fromkeys(result_table.columns.get_level_values(0)))
    organs = [o for o in dict.fromkeys(result_table.columns.get_level_values(1)) if o != "Mean"]
    rows = [b for b in baselines if b.dataset in datasets]
    quoted = baseline_table(rows, datasets=datasets, organs=organs) if rows else None
    ours = result_table.copy()
    names = [_method_name(ours.index.names, k) for k in ours.index]
    ours.index = pd.MultiIndex.from_tuples([(source, n) for n in names], names=["source", "method"])
    ours = ours.astype(object)
    if quoted is None:
        return ours
    quoted = quoted.reindex(columns=ours.columns, fill_value=QUOTED_PLACEHOLDER)
    return pd.concat([quoted, ours])


# ============================================================================ reading back
def read_results(folder: str | os.PathLike) -> dict[str, pd.DataFrame | dict]:
    """The files :meth:`ExperimentResult.save` wrote, as DataFrames (and the provenance dict)."""
    folder = Path(folder)
    out: dict[str, pd.DataFrame | dict] = {}
    for key, name in RESULT_FILES.items():
        p = folder / name
        if not p.is_file():
            raise FileNotFoundError(f"{str(p)!r} not found; expected the files {list(RESULT_FILES.values())} "
                                    "written by ExperimentResult.save().")
        if name.endswith(".json"):
            out[key] = json.loads(p.read_text())
        else:  # keep the 1Q settings' order "n/a" (pandas reads it as NaN by default)
            out[key] = pd.read_csv(p, keep_default_na=False, na_values=[""], dtype={"case_id": str})
    return out
