"""What a run produces, and the one output format of ``fsm2kit run`` and the notebooks.

:class:`ExperimentResult` holds the tidy per-slice table of every (episode, setting, order,
model) run, the models' run statistics and, with ``keep_predictions=True``, the predictions
(episodes and logits). :meth:`ExperimentResult.save` writes the one output format, one folder:

``logits.npz``
    float32 logits (H, W) of every query slice, prediction = logits > 0; one array per slice
    named by :func:`logits_key` (``<model>_<setting>[-<order>]_case<id>_label<id>_z<z>``).
    Written when the predictions were kept (``fsm2kit run`` always keeps them). One more entry,
    ``weights`` (:data:`LOGITS_WEIGHTS_KEY`), names the weights: ``"random weights (seed N)"`` or
    ``"sha256:..."``.
``slices.csv``
    One row per (experiment, dataset, fold, case, class, model, setting, order, slice): TP, FP,
    FN, ground-truth and predicted pixels, the slice's Dice (:func:`~fsm2kit.protocol.metrics.slice_dice`), SAM2's object
    score, the memories attended to, the memory policy, ``start_z`` (the query slice its plan
    started from: ``from:P`` / ``at:Z`` orders), ``corrected`` (the correction rounds
    applied to the slice's episode, 0: none), and the provenance columns
    (:data:`PROVENANCE_COLUMNS`: weights, checkpoint sha256, versions, protocol variant).
``summary.csv``
    The Dice table: per (dataset, model, image size, setting, order, class) both averages,
    ``metric = pooled`` (2ΣTP/(2ΣTP+ΣFP+ΣFN) over all scored slices and scans, what the
    published FS-MedSAM2 code prints) and ``metric = mean_per_volume`` (mean of per-scan 3D
    Dice, what the baselines report), with ``std_per_volume``, ``n_volumes``, ``n_slices``,
    ``corrected`` (the most correction rounds of a volume of the row; 0: uncorrected) and
    ``corrected_volumes``, and the provenance columns.
``volumes.csv``
    3D Dice of every query volume (the per-scan numbers behind ``mean_per_volume``), and the
    metrics beyond Dice (:mod:`fsm2kit.protocol.metrics`): ``hd95_mm``, ``nsd`` (at
    ``nsd_tolerance_mm``), ``fp_slices`` (predicted beyond the ground truth's z-extent) and
    ``missed_slices`` (empty inside it), with ``spacing_mm`` and ``spacing_note`` (why a
    distance is NaN: npz dumps carry no spacing). ``slices.csv`` has the same per slice (2D);
    both name the ``postprocess`` switches and the ``scored_masks``.
``clicks.csv``, ``clicks.json``
    With the simulated-click benchmark (:mod:`fsm2kit.run.clicks`): Dice after each click, time
    per round and NoC@target per episode; the clicks as a prompt file ``--prompts`` replays
    (one per model, setting and order: ``clicks_<model>_<setting>[-<order>].json`` when there
    are several).
``uncertainty.npz``
    Ensembles only (``ExperimentConfig.ensemble``): per episode the fused probability, entropy,
    members' variance, per-slice disagreement and QC flag (:func:`fsm2kit.run.ensemble_runs.uncertainty_arrays`);
    ``slices.csv`` then has a ``member`` column (``fused`` and each member's label).
``provenance.json``
    The one provenance record (:class:`~fsm2kit.records.provenance.Provenance`): models and
    weights (``"random weights (seed N)"`` or ``"sha256:..."``), settings, orders, support
    selector, memory policy, protocol variant, versions, command; plus the configs, each
    model's encoder passes and time, and the episodes. Written last: it marks a finished run.

The folder is written all at once (:func:`fsm2kit.records.fileio.save_output_folder`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..records.naming import strategy_name
from ..engine.results import EpisodeResult
from ..protocol.episodes import Episode
from ..engine.plans import normalize_setting
from ..protocol.metrics import per_volume_dice, slice_dice, summarize_dice
from ..model.specs import data_caveats
from .config import METRICS, ExperimentConfig
from ..records.provenance import RANDOM_NOTE, Provenance
from ..tables.dice_table import DiceTable, dice_table, results_table

__all__ = [
    "GROUP_KEYS",
    "PROVENANCE_COLUMNS",
    "RESULT_FILES",
    "tidy_slices",
    "ModelRun",
    "Prediction",
    "ExperimentResult",
    "logits_key",
    "format_dice",
    "read_results",
    "LOGITS_WEIGHTS_KEY",
]

#: Columns that identify one group of the summaries (one row per group and metric).
GROUP_KEYS = ("dataset", "model", "image_size", "setting", "order", "memory_policy", "support_selector", "label",
              "label_name", "refinement", "member", "postprocess")

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

#: The files of the one output format (:meth:`ExperimentResult.save`, :func:`read_results`);
#: ``logits.npz`` only when predictions were kept, ``uncertainty.npz`` only for ensembles.
RESULT_FILES = {
    "logits": "logits.npz",
    "slices": "slices.csv",
    "volumes": "volumes.csv",
    "summary": "summary.csv",
    "provenance": "provenance.json",
    "uncertainty": "uncertainty.npz",
}

_RANDOM = "random weights"

#: The entry of ``logits.npz`` that names the weights (a string: ``"random weights (seed N)"`` or
#: ``"sha256:..."``), so the logits never travel without it; every other entry is one slice's logits.
LOGITS_WEIGHTS_KEY = "weights"


# ============================================================================ per-slice table
_FIRST = ["experiment", "dataset", "fold", "case_id", "label", "label_name", "model", "image_size",
          "setting", "order", "z", "tp", "fp", "fn", "gt_px", "pred_px", "dice"]


def tidy_slices(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One tidy table from per-run frames: ground-truth pixels, Dice per slice, key columns first."""
    df = pd.concat(frames, ignore_index=True)
    df["gt_px"] = (df["tp"] + df["fn"]).astype("int64")
    df["dice"] = slice_dice(df["tp"], df["fp"], df["fn"])
    df["case_id"] = df["case_id"].astype(str)
    rest = [c for c in df.columns if c not in _FIRST]
    return df[[*_FIRST, *rest]]


# ============================================================================ result objects
@dataclass(eq=False)
class ModelRun:
    """What one model did in an experiment: its provenance, encoder passes, forwards and time."""

    model: str
    provenance: dict
    encoder_passes: int
    disk_hits: int
    segment_calls: int
    seconds: float
    tracking_steps: int = 0
    tracking_forwards: int = 0

    def to_dict(self) -> dict:
        return {"model": self.model, "weights": self.provenance.get("weights"),
                "encoder_passes": self.encoder_passes, "disk_hits": self.disk_hits,
                "segment_calls": self.segment_calls, "tracking_steps": self.tracking_steps,
                "tracking_forwards": self.tracking_forwards, "seconds": round(self.seconds, 3)}

    def __repr__(self) -> str:
        return (
            f"ModelRun({self.model}, {self.provenance.get('weights')}, {self.segment_calls} runs, "
            f"{self.encoder_passes} encoder passes, {self.disk_hits} disk hits, {self.seconds:.1f} s)"
        )


@dataclass(eq=False)
class Prediction:
    """One (episode, setting, order, model) run kept for figures and logits (``keep_predictions=True``)."""

    model: str
    episode: Episode
    result: EpisodeResult
    experiment: str = ""

    @property
    def setting(self) -> str:
        return self.result.setting

    @property
    def order(self) -> str:
        return self.result.order or "n/a"

    def __repr__(self) -> str:
        return f"Prediction({self.model}, {self.result!r})"


def logits_key(model: str, setting: str, order: str | None, case_id: str, label: int, z: int) -> str:
    """Name of one slice's logits in ``logits.npz``: ``<model>_<setting>[-<order>]_case<id>_label<id>_z<z>``.

    The order is left out for the 1Q settings (``"n/a"``), e.g. ``sam2-tiny_S1SFQ-middle_case1_label1_z12``
    and ``sam2-tiny_1S1Q_case1_label1_z12``.
    """
    run = setting if order in (None, "n/a") else f"{setting}-{order}"
    return f"{model}_{run}_case{case_id}_label{int(label)}_z{int(z)}"


@dataclass(eq=False)
class ExperimentResult:
    """The tidy results of one or more :class:`~fsm2kit.run.config.ExperimentConfig`.

    Attributes
    ----------
    configs : tuple of ExperimentConfig
    slices : DataFrame
        One row per (case, class, setting, order, model, slice): ``tp``, ``fp``, ``fn``,
        ``dice`` (NaN on a slice where prediction and ground truth are both empty) and provenance.
    model_runs : tuple of ModelRun
    seconds : float
    predictions : list of Prediction
        Kept only with ``keep_predictions=True`` (logits, overlays and panels).
    prompts : tuple of dict
        Per config with a prompt file: ``config``, ``file``, ``rounds`` (the file's content, as
        run) and ``corrections``; the run record (``provenance.json``) keeps them.
    """

    configs: tuple[ExperimentConfig, ...]
    slices: pd.DataFrame
    model_runs: tuple[ModelRun, ...]
    seconds: float
    predictions: list[Prediction] = field(default_factory=list, repr=False)
    prompts: tuple = field(default=(), repr=False)
    #: per volume: the metrics beyond Dice (HD95, NSD, FP and missed slices), merged into :meth:`volumes`
    volume_metrics: pd.DataFrame | None = field(default=None, repr=False)
    #: the simulated-click benchmark: (model, experiment, :class:`~fsm2kit.run.clicks.ClickEpisode`)
    clicks: list = field(default_factory=list, repr=False)
    ensembles: list = field(default_factory=list, repr=False)  # EnsembleRun s (fsm2kit.run.ensemble_runs)

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
    def caveats(self) -> list[str]:
        """The models' training-data caveats that concern the data sets here (e.g. MedSAM2 on
        SABS or CHAOS: :func:`fsm2kit.model.specs.data_caveats`)."""
        return data_caveats(self.slices["model"].astype(str), self.slices["dataset"].astype(str))

    @property
    def note(self) -> str:
        """A line to print next to every number of this result (and the data caveats)."""
        line = RANDOM_NOTE if self.random_weights else f"weights: {self.weights}"
        return "; ".join([line, *(f"NOTE {c}" for c in self.caveats)]) if self.caveats else line

    @property
    def encoder_passes(self) -> int:
        """Image-encoder passes of all models (each distinct slice once per model)."""
        return sum(r.encoder_passes for r in self.model_runs)

    # ------------------------------------------------------------------ tables
    def _provenance_frame(self) -> pd.DataFrame:
        cols = ["model", "image_size", *PROVENANCE_COLUMNS]
        return self.slices[cols].drop_duplicates(subset=["model", "image_size", "protocol_variant"])

    def _group_keys(self) -> list[str]:
        """:data:`GROUP_KEYS` present in the slices (tables read from older runs lack the strategies)."""
        return [k for k in GROUP_KEYS if k in self.slices.columns]

    def _with_corrected(self, table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
        """``table`` (rows keyed by ``by``) with ``corrected``: the most correction rounds any of its
        volumes had (0: none corrected), and ``corrected_volumes`` (how many were) when not per volume."""
        if "corrected" not in self.slices.columns or not len(table):
            return table
        per_vol = self.slices.groupby([*by, "case_id"] if "case_id" not in by else by, as_index=False,
                                      dropna=False)["corrected"].max()
        agg = per_vol.groupby(by, as_index=False, dropna=False).agg(
            corrected=("corrected", "max"), corrected_volumes=("corrected", lambda c: int((c > 0).sum())))
        if "case_id" in by:
            agg = agg.drop(columns="corrected_volumes")
        return table.merge(agg, on=by, how="left")

    def volumes(self) -> pd.DataFrame:
        """3D Dice per query volume (``case_id`` x class x setting x order x model), with provenance
        and ``corrected`` (the correction rounds applied to it; 0: none)."""
        keys = self._group_keys()
        v = per_volume_dice(self.slices, by=keys, volume_key="case_id")
        v = self._with_corrected(v, [*keys, "case_id"])
        vm = self.volume_metrics
        if vm is not None and len(vm):
            on = [k for k in v.columns if k in vm.columns]
            v = v.merge(vm.drop_duplicates(subset=on), on=on, how="left")
        return v.merge(self._provenance_frame(), on=["model", "image_size"], how="left")

    def metrics_summary(self) -> pd.DataFrame:
        """Mean ± std (``ddof=0``) over volumes of HD95, NSD, FP and missed slices per group
        (:func:`~fsm2kit.protocol.metrics.summarize_metrics`); empty without them."""
        from ..protocol.metrics import SURFACE_METRICS, summarize_metrics

        v = self.volumes()
        if not all(m in v.columns for m in SURFACE_METRICS):
            return pd.DataFrame()
        return summarize_metrics(v, by=self._group_keys())

    def metrics_table(self, *, rows: Sequence[str] = ("model", "setting", "order", "postprocess"),
                      title: str | None = None):
        """A paper-style table of the metrics beyond Dice (mean ± std per organ), see
        :func:`~fsm2kit.tables.dice_table.metrics_table`."""
        from ..tables.dice_table import metrics_table

        return metrics_table(self.metrics_summary(), rows=rows, title=title, weights=self.weights,
                             random_weights=self.random_weights)

    def clicks_table(self) -> pd.DataFrame:
        """The simulated-click benchmark, one row per (episode, click): ``click`` 0 is the
        propagation alone; ``dice`` after it, ``seconds`` of its round, the click (``z``, ``x``,
        ``y``, ``positive``, ``region_px``), and the episode's ``noc`` at ``target``."""
        rows = []
        for model, experiment, ce in self.clicks:
            r = ce.result
            for k, (d, sec) in enumerate(zip(ce.dice, ce.seconds)):
                c = ce.clicks[k - 1] if k else None
                rows.append({"experiment": experiment, "model": model, "setting": r.setting,
                             "order": r.order or "n/a", "case_id": str(r.case_id), "label": r.label,
                             "label_name": r.label_name, "click": k, "dice": d, "seconds": sec,
                             "z": None if c is None else c.z, "x": None if c is None else c.x,
                             "y": None if c is None else c.y, "positive": None if c is None else c.positive,
                             "region_px": None if c is None else c.area, "target": ce.target,
                             "max_clicks": ce.max_clicks, "noc": ce.noc, "reached": ce.noc <= ce.max_clicks})
        return pd.DataFrame(rows)

    def click_prompts(self) -> dict[str, list]:
        """The clicks as prompt files' content, per file name (``clicks.json``, or one per model,
        setting and order), each replayable by ``fsm2kit run --prompts`` (same setting and order)."""
        from .clicks import clicks_prompt_json

        groups: dict = {}
        for model, _, ce in self.clicks:
            groups.setdefault((model, ce.result.setting, ce.result.order or "n/a"), []).append(ce)
        if len(groups) == 1:
            return {"clicks.json": clicks_prompt_json(next(iter(groups.values())))}
        return {f"clicks_{m}_{s if o == 'n/a' else s + '-' + o}.json": clicks_prompt_json(g)
                for (m, s, o), g in groups.items()}

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
        s = summarize_dice(self.slices, by=self._group_keys(), volume_key="case_id")
        s = self._with_corrected(s, self._group_keys())  # corrected runs never look like uncorrected ones
        if metric != "both":
            s = s[s["metric"] == metric].reset_index(drop=True)
        return s.merge(self._provenance_frame(), on=["model", "image_size"], how="left")

    def table(self, metric: str = "mean_per_volume", *, rows: Sequence[str] = ("model", "setting", "order"),
              organs: Sequence[str] | None = None, settings: Sequence[str] | None = None) -> pd.DataFrame:
        """A paper-style table: organs as columns per dataset, Mean last; see :func:`results_table`.

        Rows follow the configs' order of models, settings and orders; ``settings`` keeps only
        those settings' rows (e.g. one table per setting).
        """
        order = {
            "model": list(dict.fromkeys(m for c in self.configs for m in c.models)),
            "setting": list(dict.fromkeys(x for c in self.configs for x in c.settings)),
            "order": ["n/a", *dict.fromkeys(strategy_name(o) for c in self.configs for o in c.orders)],
            "memory_policy": list(dict.fromkeys(strategy_name(c.memory_policy) for c in self.configs)),
            "support_selector": list(dict.fromkeys(strategy_name(c.support_selector) for c in self.configs)),
        }
        if "member" in self.slices.columns and "member" not in rows:  # an ensemble: fused and each member
            rows = (*rows, "member")
        summary = self.summary("both")
        if settings is not None:
            keep = [normalize_setting(s) for s in ([settings] if isinstance(settings, str) else settings)]
            summary = summary[summary["setting"].isin(keep)]
        return results_table(summary, metric=metric, rows=rows, organs=organs, row_order=order)

    def dice_table(self, metric: str = "mean_per_volume", *, rows: Sequence[str] = ("model", "setting", "order"),
                   paper_table: int | None = None, settings: Sequence[str] | str | None = None,
                   title: str | None = None) -> DiceTable:
        """A paper-grade table (Dice in %, ± std, n, the paper's values beside ours, caption): see
        :func:`~fsm2kit.tables.dice_table.dice_table`; save it with :meth:`DiceTable.save`."""
        return dice_table(self.summary("both"), metric=metric, rows=rows, paper_table=paper_table,
                          settings=settings, title=title)

    # ------------------------------------------------------------------ predictions
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

    def logits(self) -> dict[str, np.ndarray]:
        """Every kept slice's float32 logits, named by :func:`logits_key` (empty without predictions)."""
        out: dict[str, np.ndarray] = {}
        for p in self.predictions:
            r = p.result
            for s in r.slices:
                out[logits_key(p.model, r.setting, p.order, r.case_id, r.label, s.z)] = s.logits.astype(np.float32)
        return out

    # ------------------------------------------------------------------ files
    def _episodes(self) -> list[dict]:
        keys = ["experiment", "dataset", "fold", "case_id", "label", "label_name"]
        out = []
        for k, g in self.slices.groupby(keys, sort=False):
            row = dict(zip(keys, k))
            out.append({**{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()},
                        "z": sorted(int(z) for z in g["z"].unique())})
        return out

    def provenance(self, *, command: str | None = None, details: dict | None = None) -> Provenance:
        """The one provenance record of this result (models, settings, strategies, versions, ...).

        ``details`` adds fields (e.g. the CLI's timing); the record's own details are ``name``,
        ``configs``, ``model_runs``, ``episodes``, ``encoder_passes``, ``rows`` and ``seconds``.
        """
        s = self.slices
        return Provenance(
            kind="experiment",
            models=tuple(r.provenance for r in self.model_runs),
            settings=tuple(x for c in self.configs for x in c.settings),
            orders=tuple(s["order"]),
            support_selector=", ".join(dict.fromkeys(s["support_selector"])) if "support_selector" in s.columns
            else "protocol",
            memory_policies=tuple(s["memory_policy"]) if "memory_policy" in s.columns else ("sam2",),
            protocol_variants=tuple(s["protocol_variant"]),
            command=command,
            details={
                "name": "; ".join(dict.fromkeys(c.name for c in self.configs)),
                "configs": [c.to_dict() for c in self.configs],
                "model_runs": [r.to_dict() for r in self.model_runs],
                "episodes": self._episodes(),
                "encoder_passes": self.encoder_passes,
                "rows": int(len(s)),
                "seconds": round(self.seconds, 3),
                "support_views": sorted({int(v) for v in s["support_views"] if int(v) >= 0}) if "support_views" in s.columns else [0],
                **({"prompts": list(self.prompts)} if self.prompts else {}),
                "postprocess": sorted({str(c.postprocess) for c in self.configs}),
                "scored_masks": sorted({str(x) for x in s["scored_masks"].dropna()}) if "scored_masks" in s.columns
        else ["logits > 0"],
                "nsd_tolerance_mm": sorted({float(c.nsd_tolerance) for c in self.configs}),
                **({"clicks": {"files": sorted(self.click_prompts()), "episodes": len(self.clicks),
                               "noc": [{"case_id": str(ce.result.case_id), "label": ce.result.label_name,
                                        "model": m, "setting": ce.result.setting, "noc": ce.noc,
                                        "target": ce.target, "dice": [round(d, 6) for d in ce.dice]}
                                       for m, _, ce in self.clicks]}} if self.clicks else {}),
                **({"refinement": list(dict.fromkeys(s["refinement"]))} if "refinement" in s.columns else {}),
                **({"ensemble": list(dict.fromkeys(s["ensemble"])),
                    "members": sorted(set(s["member"]) - {"", "fused"})} if "ensemble" in s.columns else {}),
                **(details or {}),
            },
        )

    def save(self, folder: str | os.PathLike, *, command: str | None = None,
             details: dict | None = None, overwrite: bool = True) -> dict[str, Path]:
        """Write the one output format into ``folder`` (see the module docstring), all at once.

        ``logits.npz`` (when predictions were kept), ``slices.csv``, ``volumes.csv``,
        ``summary.csv`` and ``provenance.json`` (:meth:`provenance` with ``command`` and
        ``details``) through the one atomic folder save
        (:func:`fsm2kit.records.fileio.save_output_folder`): built in a hidden temporary
        sibling, fsynced, swapped in. ``folder`` must be new, empty, or an earlier experiment
        output (replaced whole, its old logits included, when ``overwrite``; the default, so a
        notebook can be run again); a folder of other files is refused. The working folder
        itself (``output_dir="."``) gets the files as a group, provenance last.

        Returns
        -------
        dict
            ``{"logits" (if written), "slices", "volumes", "summary", "provenance": path}``.
        """
        from ..records.fileio import save_output_folder

        arrays = self.logits()
        writes = {}
        if arrays:
            arrays[LOGITS_WEIGHTS_KEY] = np.array(self.weights)  # "random weights (seed N)" travels with the logits

            def _npz(tmp):
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **arrays)

            writes[RESULT_FILES["logits"]] = _npz
        writes[RESULT_FILES["slices"]] = lambda t: self.slices.to_csv(t, index=False)
        writes[RESULT_FILES["volumes"]] = lambda t: self.volumes().to_csv(t, index=False)
        writes[RESULT_FILES["summary"]] = lambda t: self.summary().to_csv(t, index=False)
        clicks: dict[str, str] = {}
        if self.clicks:  # the click benchmark: its table and the replayable prompt file(s)
            from ..io.prompts import parse_prompts, prompts_text

            clicks["clicks"] = "clicks.csv"
            writes["clicks.csv"] = lambda t: self.clicks_table().to_csv(t, index=False)
            for fname, data in self.click_prompts().items():
                parse_prompts(data, source=fname)  # what is written reads back
                clicks[fname] = fname
                writes[fname] = lambda t, text=prompts_text(data): Path(t).write_text(text, encoding="utf-8")
        if self.ensembles:  # the ensembles' uncertainty (fsm2kit.run.ensemble_runs.uncertainty_arrays)
            from .ensemble_runs import uncertainty_arrays

            unc = uncertainty_arrays(self.ensembles)

            def _unc(tmp):
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, **unc)

            writes[RESULT_FILES["uncertainty"]] = _unc
        text = json.dumps(self.provenance(command=command, details=details).to_dict(), indent=2, default=str)
        writes[RESULT_FILES["provenance"]] = lambda t: Path(t).write_text(text)
        try:
            written = save_output_folder(folder, writes, kind="experiment", record=RESULT_FILES["provenance"],
                                         overwrite=overwrite,
                                         stale=(() if arrays else (RESULT_FILES["logits"],))
                                         + (() if self.ensembles else (RESULT_FILES["uncertainty"],)))
        except PermissionError as e:
            raise PermissionError(f"Cannot write output folder {str(folder)!r}: {e}") from e
        return {k: written[v] for k, v in {**RESULT_FILES, **clicks}.items() if v in written}

    def __repr__(self) -> str:
        n_ep = self.slices.groupby(["dataset", "case_id", "label"]).ngroups if len(self.slices) else 0
        combos = self.slices[["model", "setting", "order"]].drop_duplicates()
        runs = ", ".join(f"{m}:{s}{'' if o == 'n/a' else '-' + o}" for m, s, o in combos.itertuples(index=False))
        return (
            f"ExperimentResult({n_ep} episodes, {len(self.slices)} slice rows; {runs}; "
            f"{self.encoder_passes} encoder passes; {self.seconds:.1f} s; {self.weights})"
        )


def format_dice(result: ExperimentResult) -> str:
    """The Dice table as text (pooled and mean per volume), headed by the weights.

    Random weights get a banner (:data:`~fsm2kit.records.provenance.RANDOM_NOTE`) above it.
    """
    d = result.summary("both")
    cols = [c for c in ("dataset", "model") if d[c].nunique() > 1]
    cols += ["setting", "order", "label_name", "metric", "dice", "std_per_volume", "n_volumes", "n_slices"]
    if "corrected" in d.columns and (d["corrected"] > 0).any():
        cols.append("corrected")  # correction rounds: a corrected row never reads as an uncorrected one
    models = ", ".join(dict.fromkeys(r.model for r in result.model_runs))
    lines = []
    if result.random_weights:
        lines += ["!" * 78, f"!! {RANDOM_NOTE}", "!" * 78]
    lines.append(f"Dice ({models}, {result.weights})")
    lines += [f"NOTE: {c}." for c in result.caveats]
    lines.append(d[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return "\n".join(lines)


def read_results(folder: str | os.PathLike) -> dict[str, pd.DataFrame | dict | np.lib.npyio.NpzFile]:
    """The files :meth:`ExperimentResult.save` wrote: DataFrames, the provenance dict and the logits.

    ``"logits"`` (an open :func:`numpy.load` of ``logits.npz``) is there only when the file is.
    """
    folder = Path(folder)
    out: dict = {}
    for key, name in RESULT_FILES.items():
        p = folder / name
        if not p.is_file():
            if key in ("logits", "uncertainty"):
                continue
            raise FileNotFoundError(f"{str(p)!r} not found; expected the files {list(RESULT_FILES.values())} "
                                    "written by ExperimentResult.save().")
        if name.endswith(".json"):
            out[key] = json.loads(p.read_text())
        elif name.endswith(".npz"):
            out[key] = np.load(p)
        else:  # keep the 1Q settings' order "n/a" (pandas reads it as NaN by default)
            out[key] = pd.read_csv(p, keep_default_na=False, na_values=[""], dtype={"case_id": str})
    return out
