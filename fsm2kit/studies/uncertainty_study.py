"""Uncertainty studies: an ensemble's uncertainty and a refinement pass on one dataset (notebook 07).

One call runs three things through the one runner with one model (each distinct slice encoded
once): the config as it is (plain), the config with an ensemble, and the config with refinement
passes; the other calls lay the results out::

    study = run_uncertainty_study("07_uncertainty", config, output_dir="out/",
                                  ensemble="mean:order=top,middle;views=0,1", refinement="revsam2:top=2")
    study.table("pooled")            # fused and each member's Dice, organs as columns
    study.panels(n=3)                # fused prediction, entropy, variance over the slices (radiological)
    study.error_chart()              # per-slice error against disagreement, with correlations
    study.refinement_chart()         # Dice change per slice after the second pass, promoted slices marked

Every table and chart names the Dice variant and the weights (random weights say so).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..records.naming import strategy_name
from ..run.config import ExperimentConfig
from ..run.experiment_result import ExperimentResult
from ..run.runner import run_experiments
from ..run.sources import load_config_episodes
from ..strategies.ensembles import ENSEMBLES, ensemble_spec
from ..strategies.refinement import REFINEMENTS
from ..tables.dice_table import save_table

__all__ = ["UncertaintyStudy", "run_uncertainty_study"]

_METRIC_TITLE = {"pooled": "pooled Dice (all slices of all volumes)", "mean_per_volume": "mean of per-volume Dice"}


def run_uncertainty_study(
    name: str,
    config: ExperimentConfig | None = None,
    *,
    output_dir: str | os.PathLike,
    ensemble: object = "mean:order=top,middle",
    refinement: str = "revsam2:top=2",
    fusion: str = "mean",
    qc: float | None = None,
    progress: bool = True,
    **overrides,
) -> "UncertaintyStudy":
    """Run one setting plain, as an ensemble and with refinement passes, and save the results.

    Parameters
    ----------
    name : str
        The study's name (the ``experiment`` column: ``name``, ``name: ensemble``, ``name: refined``).
    config : ExperimentConfig or None
        The data, the one setting (an FQ setting for the refinement) and model, weights and size.
    output_dir : path, keyword-only
        Gets the one output format of each run (``plain/``, ``ensemble/`` with ``uncertainty.npz``,
        ``refined/``), the tables and charts.
    ensemble, refinement : str, keyword-only
        Specs of :data:`~fsm2kit.strategies.ENSEMBLES` and :data:`~fsm2kit.strategies.REFINEMENTS`
        (``"none"``: skip that part); checked before the model loads. ``ensemble`` may also be the
        member axes as a mapping ``{"order": ["top", "middle"], "views": [0, 1]}`` (with ``fusion``
        and ``qc``; :func:`~fsm2kit.strategies.ensembles.ensemble_spec`).
    progress : bool, keyword-only
    **overrides
        Config fields applied on top of ``config``.
    """
    from ..model.loading import load_sam2

    ensemble = ensemble_spec(ensemble, fusion=fusion, qc=qc)
    base = ExperimentConfig.given(config, "run_uncertainty_study", name=name, **overrides)
    for what, n in (("settings", len(base.settings)), ("models", len(base.models))):
        if n != 1:
            raise ValueError(f"run_uncertainty_study: one {what[:-1]} per study, got {n} {what}.")
    base = base.replace(ensemble="none", refinement="none")
    parts = {"plain": base}
    if strategy_name(ENSEMBLES.get(ensemble)) != "none":
        parts["ensemble"] = base.replace(ensemble=ensemble, name=f"{name}: ensemble")
    if strategy_name(REFINEMENTS.get(refinement)) != "none":
        parts["refined"] = base.replace(refinement=refinement, name=f"{name}: refined")
    eps = load_config_episodes(base, progress=progress)
    sam2 = load_sam2(base.models[0], base.checkpoint_for(base.models[0]), seed=base.seed, image_size=base.image_size,
                     device=base.device, progress=progress)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for part, c in parts.items():  # one engine per call; the model (and its weights) shared
        results[part] = run_experiments(c, models={base.models[0]: sam2}, episodes=[eps], keep_predictions=True,
                                        progress=progress)
        results[part].save(out / part)
    return UncertaintyStudy(name, results, out, episodes=eps)


@dataclass(eq=False)
class UncertaintyStudy:
    """The results of :func:`run_uncertainty_study` (``results``: ``plain``, ``ensemble``, ``refined``)."""

    name: str
    results: dict[str, ExperimentResult]
    output_dir: Path
    episodes: list = field(repr=False, default_factory=list)

    @property
    def note(self) -> str:
        return self.results["plain"].note

    def provenance(self) -> dict:
        """The run records (one per part), as written in each part's ``provenance.json``."""
        return {part: r.provenance().to_dict() for part, r in self.results.items()}

    def _ensemble(self) -> ExperimentResult:
        if "ensemble" not in self.results:
            raise ValueError("this study ran no ensemble (ensemble='none').")
        return self.results["ensemble"]

    def table(self, metric: str = "pooled", *, file: str | None = "default") -> pd.DataFrame:
        """Dice of the plain run, the fused ensemble and each member (and the refined run), organs as columns."""
        frames = []
        for part, r in self.results.items():
            t = r.table(metric, rows=("setting", "order"))
            member = t.index.get_level_values("member") if "member" in t.index.names else [""] * len(t)
            t = t.droplevel("member") if "member" in t.index.names else t
            t.index = pd.Index([f"{part}: {m}" if m else part for m in member], name="run")
            frames.append(t)
        table = pd.concat(frames)
        if file is not None:
            save_table(table, self.output_dir / (f"uncertainty_{metric}.csv" if file == "default" else file),
                       note=f"{_METRIC_TITLE.get(metric, metric)}; {self.note}")
        return table

    def slices(self) -> pd.DataFrame:
        """The ensemble's fused rows, one per slice: Dice, error, disagreement, QC flag."""
        s = self._ensemble().slices
        d = s[s["member"] == "fused"].copy()
        d["error"] = 1.0 - d["dice"]
        return d.reset_index(drop=True)

    def correlation(self) -> dict:
        """Pearson and Spearman correlation of per-slice error and disagreement (slices with a Dice)."""
        d = self.slices().dropna(subset=["dice"])
        if len(d) < 3:
            return {"pearson": float("nan"), "spearman": float("nan"), "n_slices": len(d)}
        return {"pearson": float(d[["disagreement", "error"]].corr().iloc[0, 1]),
                "spearman": float(d[["disagreement", "error"]].corr(method="spearman").iloc[0, 1]),
                "n_slices": int(len(d))}

    def error_chart(self, *, file: str | None = "error_vs_disagreement", presets=("screen",)):
        """Per-slice error against disagreement (QC-flagged slices marked), with the correlations."""
        from ..viz.dice_charts import uncertainty_error_chart
        from ..viz.export import save_presets

        ens = ENSEMBLES.get(self._ensemble().configs[0].ensemble)
        chart = uncertainty_error_chart(self.slices(), qc=ens.qc)
        if file is not None:
            save_presets(chart, self.output_dir / file, presets=presets)
        return chart

    def panels(self, n: int = 3, *, case_id: str | None = None, label_name: str | None = None,
               file: str | None = "uncertainty_panels"):
        """Fused prediction, entropy and variance maps over the slices of highest disagreement (one episode)."""
        from ..viz.export import save_figure
        from ..viz.figures import uncertainty_panels

        runs = [r for r in self._ensemble().ensembles
                if (case_id is None or r.case_id == str(case_id))
                and (label_name is None or r.label_name.upper() == str(label_name).upper())]
        if not runs:
            raise ValueError(f"no ensemble run for case {case_id!r} / {label_name!r}.")
        run = runs[0]
        ep = next(e for e in self.episodes if str(e.case_id) == run.case_id and int(e.label) == run.label)
        fig = uncertainty_panels(ep, run.probability, run.entropy, run.variance, z=run.z,
                                 disagreement=run.disagreement, n=n, weights=self.results["plain"].weights)
        if file is not None:
            save_figure(fig, self.output_dir / file, formats=("png",))
        return fig

    def refinement_table(self) -> pd.DataFrame:
        """Per slice: Dice of the plain and the refined run, the change, the scores and the promoted flag."""
        if "refined" not in self.results:
            raise ValueError("this study ran no refinement (refinement='none').")
        keys = ["case_id", "label", "z"]
        plain = self.results["plain"].slices[keys + ["dice"]].rename(columns={"dice": "dice_plain"})
        ref = self.results["refined"].slices
        cols = keys + ["dice", "score", "score_object", "score_iou", "score_consistency", "promoted", "refine_pass",
                       "label_name", "weights"]
        d = ref[[c for c in cols if c in ref.columns]].rename(columns={"dice": "dice_refined"}).merge(plain, on=keys)
        d["dice_change"] = d["dice_refined"] - d["dice_plain"]
        return d

    def refinement_chart(self, *, file: str | None = "refinement_changes", presets=("screen",)):
        """Dice change per slice after the refinement passes, promoted slices marked."""
        from ..viz.dice_charts import promotion_chart
        from ..viz.export import save_presets

        chart = promotion_chart(self.refinement_table().fillna({"dice_change": 0.0}))
        if file is not None:
            save_presets(chart, self.output_dir / file, presets=presets)
        return chart

    def __repr__(self) -> str:
        return f"UncertaintyStudy({self.name!r}: {', '.join(self.results)}; {self.note})"
