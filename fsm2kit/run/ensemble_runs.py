"""Ensemble runs: a config's members run through the one runner, then fused, with uncertainty.

:func:`~fsm2kit.run.runner.run_experiments` hands configs with an ensemble
(``ExperimentConfig.ensemble``, :mod:`fsm2kit.strategies.ensembles`) to :func:`run_ensembles`:
every member (the config with one combination of overrides, :meth:`ExperimentConfig.members`)
runs in one call of the runner, so members of one model share one engine and its feature cache
(each slice is encoded once per model, whatever the number of members). Per (episode, setting,
and order or model unless they are member axes) the members' logits are fused
(:func:`fuse_results`): the fused prediction is a run like any other (its rows in ``slices.csv``
have ``member = "fused"``, the members' rows their label, so every table carries the fused Dice
and each member's), and :class:`EnsembleRun` keeps the uncertainty: the fused probability, the
per-voxel entropy of the mean probability and the members' variance, and per slice the members'
disagreement and a QC flag (``uncertainty.npz`` in the run folder, :func:`uncertainty_arrays`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd

from ..engine.results import EpisodeResult
from ..records.naming import strategy_name
from ..strategies.ensembles import (ENSEMBLES, disagreement, entropy, fused_logits, mean_fusion, probabilities,
                                    variance, vote_fusion)
from .config import ExperimentConfig
from .experiment_result import ExperimentResult, Prediction, tidy_slices
from .sources import load_config_episodes

__all__ = ["EnsembleRun", "fuse_results", "uncertainty_arrays", "run_ensembles"]

#: ``slices.csv`` column of each member axis key.
_COLUMN = {"order": "order", "support-select": "support_selector", "memory-policy": "memory_policy",
           "views": "support_views", "refine": "refinement", "model": "model"}


@dataclass(eq=False)
class EnsembleRun:
    """One episode's ensemble: the members' and fused predictions and where they disagree.

    Attributes
    ----------
    experiment, model, setting, order : str
        The run (``model`` / ``order`` join the members' with ``+`` when they are member axes).
    case_id : str
    label : int
    label_name : str
    z : ndarray, (M,)
    members : tuple of str
        The members' labels (``"order=top, views=0"``).
    fusion : {"mean", "vote"}
    qc_threshold : float
    member_logits : ndarray, (N, M, H, W) float32
    probability : ndarray, (M, H, W) float32
        The fused probability (mean: the mean probability; vote: the fraction voting foreground).
    entropy, variance : ndarray, (M, H, W) float32
        Per voxel: binary entropy (bits) of the mean probability; the members' variance.
    disagreement : ndarray, (M,)
        Per slice: ``1 - |AND| / |OR|`` of the members' masks.
    qc : ndarray, (M,) bool
        ``disagreement > qc_threshold``.
    """

    experiment: str
    model: str
    setting: str
    order: str
    case_id: str
    label: int
    label_name: str
    z: np.ndarray
    members: tuple
    fusion: str
    qc_threshold: float
    member_logits: np.ndarray
    probability: np.ndarray
    entropy: np.ndarray
    variance: np.ndarray
    disagreement: np.ndarray
    qc: np.ndarray

    @property
    def key(self) -> str:
        run = self.setting if self.order in (None, "n/a") else f"{self.setting}-{self.order}"
        return f"{self.model}_{run}_case{self.case_id}_label{int(self.label)}"

    def to_frame(self) -> pd.DataFrame:
        """Per slice: z, disagreement, QC flag, mean entropy and variance over the slice."""
        return pd.DataFrame({
            "experiment": self.experiment, "model": self.model, "setting": self.setting, "order": self.order,
            "case_id": str(self.case_id), "label": int(self.label), "label_name": self.label_name,
            "z": self.z.astype(int), "disagreement": self.disagreement, "qc_flag": self.qc,
            "mean_entropy": self.entropy.reshape(len(self.z), -1).mean(axis=1),
            "mean_variance": self.variance.reshape(len(self.z), -1).mean(axis=1),
        })

    def __repr__(self) -> str:
        return (f"EnsembleRun({self.case_id}/{self.label_name}, {self.setting}, {len(self.members)} members "
                f"({self.fusion}), {int(self.qc.sum())}/{len(self.z)} slices flagged)")


def fuse_results(results: Sequence[EpisodeResult], *, fusion: str = "mean", qc: float = 0.3, labels=(),
                 experiment: str = "", model: str = "", order: str | None = None) -> tuple[EpisodeResult, EnsembleRun]:
    """Fuse the members' runs of one episode: the fused :class:`EpisodeResult` and the :class:`EnsembleRun`.

    The members must have segmented the same query slices. With one member the fused result is
    that member's result itself (its logits unchanged).
    """
    results = list(results)
    if not results:
        raise ValueError("fuse_results needs at least one member result")
    z0 = results[0].z
    for r in results[1:]:
        if not np.array_equal(r.z, z0):
            raise ValueError(f"ensemble members segmented different slices ({z0.tolist()} vs {r.z.tolist()}).")
    logits = np.stack([r.logits() for r in results])  # (N, M, H, W)
    probs = probabilities(logits)
    if fusion not in ("mean", "vote"):
        raise ValueError(f"fusion: expected 'mean' or 'vote', got {fusion!r}")
    p = (vote_fusion if fusion == "vote" else mean_fusion)(probs)
    r0 = results[0]
    fused_order = r0.order if order is None else order
    if len(results) == 1:
        fused = results[0]
    else:
        fl = fused_logits(p)
        score = np.mean([[s.object_score for s in r.slices] for r in results], axis=0)
        iou = np.mean([[s.iou for s in r.slices] for r in results], axis=0)
        slices = [replace(s, logits=fl[m], object_score=float(score[m]), iou=float(iou[m]), scores=None,
                          promoted=False, refine_pass=1) for m, s in enumerate(r0.slices)]
        joined = lambda attr: "+".join(dict.fromkeys(str(getattr(r, attr)) for r in results))  # noqa: E731
        fused = EpisodeResult(case_id=r0.case_id, label=r0.label, label_name=r0.label_name, setting=r0.setting,
                              order=fused_order, slices=slices, provenance=r0.provenance,
                              seconds=sum(r.seconds for r in results),
                              encoder_passes=sum(r.encoder_passes for r in results), plans=[],
                              memory_policy=joined("memory_policy"), refinement=joined("refinement"))
    masks = logits > 0
    run = EnsembleRun(experiment=experiment, model=model, setting=r0.setting, order=fused_order or "n/a",
                      case_id=str(r0.case_id), label=int(r0.label), label_name=r0.label_name, z=np.asarray(z0),
                      members=tuple(labels) or tuple(f"member {k}" for k in range(len(results))), fusion=fusion,
                      qc_threshold=float(qc), member_logits=logits.astype(np.float32),
                      probability=p.astype(np.float32), entropy=entropy(probs.mean(axis=0)),
                      variance=variance(probs), disagreement=disagreement(masks),
                      qc=disagreement(masks) > float(qc))
    return fused, run


def uncertainty_arrays(runs: Sequence[EnsembleRun]) -> dict[str, np.ndarray]:
    """``uncertainty.npz``'s arrays: per run ``<key>__{z, probability, entropy, variance, disagreement, qc}``
    (``key`` as in ``logits.npz`` without the slice: ``<model>_<setting>[-<order>]_case<id>_label<id>``)."""
    out: dict[str, np.ndarray] = {}
    for r in runs:
        for name in ("z", "probability", "entropy", "variance", "disagreement", "qc"):
            out[f"{r.key}__{name}"] = np.asarray(getattr(r, name))
    return out


def run_ensembles(configs: Sequence[ExperimentConfig], *, models=None, episodes=None, keep_predictions: bool = False,
                  progress: bool = True) -> ExperimentResult:
    """Run configs of which some have ensembles (see the module docstring); others run as usual."""
    from .runner import run_experiments

    configs = tuple(configs)
    flat: list[ExperimentConfig] = []
    flat_eps: list = []
    owner: list[tuple[int, str | None]] = []
    for i, c in enumerate(configs):
        base = list(episodes[i]) if episodes is not None else load_config_episodes(c, progress=progress)
        members = c.members() or [(None, c)]
        for k, (label, mc) in enumerate(members):
            # a member choosing its own supports builds its own episodes (same queries, other supports)
            same = strategy_name(mc.support_selector) == strategy_name(c.support_selector)
            flat_eps.append(base if same else load_config_episodes(mc, progress=progress))
            flat.append(mc.replace(name=f"{c.name}\x1f{k}"))
            owner.append((i, label))
    res = run_experiments(flat, models=models, episodes=flat_eps, keep_predictions=True, progress=progress)
    index = {mc.name: k for k, mc in enumerate(flat)}
    slices = res.slices.copy()
    member_col = slices["experiment"].map(lambda n: owner[index[n]][1] or "")
    slices["experiment"] = slices["experiment"].map(lambda n: configs[owner[index[n]][0]].name)
    slices.insert(slices.columns.get_loc("setting"), "member", member_col.values)
    kept: list[Prediction] = []
    runs: list[EnsembleRun] = []
    fused_rows = []
    groups: dict[tuple, list[tuple[int, Prediction]]] = {}
    for p in res.predictions:
        k = index[p.experiment]
        i, label = owner[k]
        c = configs[i]
        if label is None:
            kept.append(replace(p, experiment=c.name))
            continue
        ens = ENSEMBLES.get(c.ensemble)
        axes = {a for a, _ in ens.axes}
        key = (i, str(p.result.case_id), int(p.result.label), p.result.setting,
               None if "order" in axes else p.order, None if "model" in axes else p.model)
        groups.setdefault(key, []).append((k, p))
    for (i, case_id, label, setting, order, model), members in groups.items():
        c = configs[i]
        ens = ENSEMBLES.get(c.ensemble)
        preds = [p for _, p in members]
        fused_model = model or "+".join(dict.fromkeys(p.model for p in preds))
        fused_order = order or "+".join(dict.fromkeys(p.order for p in preds))
        fused, run = fuse_results([p.result for p in preds], fusion=ens.fusion, qc=ens.qc,
                                  labels=[owner[k][1] for k, _ in members], experiment=c.name, model=fused_model,
                                  order=None if order is not None else fused_order)
        runs.append(run)
        ep = preds[0].episode
        kept.append(Prediction(fused_model, ep, fused, c.name))
        k0, p0 = members[0]
        rows0 = res.slices[(res.slices["experiment"] == flat[k0].name) & (res.slices["case_id"] == case_id)
                           & (res.slices["label"] == label) & (res.slices["setting"] == setting)
                           & (res.slices["order"] == p0.order) & (res.slices["model"] == p0.model)]
        rows0 = rows0.set_index("z").loc[[int(s.z) for s in fused.slices]].reset_index()
        df = fused.to_frame(ep.labels)
        for col in rows0.columns:
            if col not in df.columns and col not in ("gt_px", "dice"):
                df[col] = rows0[col].values
        df = df[[col for col in df.columns if not col.startswith("score") and col not in ("promoted", "refine_pass")]]
        df["experiment"] = c.name
        df["member"] = "fused"
        df["model"] = fused_model
        df["order"] = fused_order if setting.endswith("FQ") else "n/a"
        for a in (a for a, _ in ens.axes):
            col = _COLUMN[a]
            if a == "views":
                df[col] = -1  # several: the members' rows say which (a number column stays numeric)
            elif a not in ("order", "model") and col in slices.columns:
                vals = slices.loc[(slices["experiment"] == c.name) & (slices["member"] != ""), col]
                df[col] = "+".join(dict.fromkeys(str(v) for v in vals))
        df["disagreement"] = run.disagreement
        df["qc_flag"] = run.qc
        df["ensemble"] = strategy_name(ens)
        fused_rows.append(df)
    if fused_rows:
        slices = pd.concat([slices, *fused_rows], ignore_index=True)
        slices["ensemble"] = slices["experiment"].map(
            {c.name: strategy_name(c.ensemble) for c in configs}).fillna("none")
        slices = tidy_slices([slices])
    predictions = kept if keep_predictions else []
    return ExperimentResult(configs, slices, res.model_runs, res.seconds, predictions, res.prompts,
                            ensembles=runs)
