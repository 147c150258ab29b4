"""Strategy studies: memory policy x order x support selector on one dataset (notebook 06).

One call runs every combination through the one runner with one model (each distinct slice is
encoded once), the others lay the results out::

    study = run_strategy_study("06_strategies", dataset="CHAOST2", episodes=None, setting="S1SFQ",
                               orders=["middle", "top"], memory_policies=["sam2", "support-only", "recent:2"],
                               support_selectors=["protocol"], checkpoint="random", image_size=256,
                               output_dir="out/")
    study.table("pooled")          # organs as columns, one row per (policy, selector, order)
    study.memory_chart()           # Dice against the number of attended memories
    study.attention_chart(z=12)    # the inspector's mass per memory entry, one panel per policy

Every table and chart names the Dice variant (pooled or mean per volume) and the weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..records.fileio import check_output_dir

import numpy as np
import pandas as pd

from ..records.naming import strategy_name
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.orderings import ORDERINGS, engine_arguments
from ..run.config import ExperimentConfig
from ..run.sources import load_config_episodes
from ..run.runner import run_experiments
from ..run.experiment_result import ExperimentResult
from ..tables.dice_table import save_table

__all__ = ["StrategyStudy", "run_strategy_study", "STRATEGY_ROWS"]

#: The rows of a strategy table: which memories, which supports, where propagation starts.
STRATEGY_ROWS = ("memory_policy", "support_selector", "order")

_METRIC_TITLE = {"pooled": "pooled Dice (all slices of all volumes)", "mean_per_volume": "mean of per-volume Dice"}


def _names(what: str, values) -> list:
    if isinstance(values, str) or not isinstance(values, Sequence):
        values = [values]
    if not values:
        raise ValueError(f"run_strategy_study: {what} is empty; give at least one.")
    return list(values)


def run_strategy_study(
    name: str,
    config: ExperimentConfig | None = None,
    *,
    output_dir: str | os.PathLike,
    memory_policies: Sequence[object] = ("sam2",),
    support_selectors: Sequence[object] = ("protocol",),
    progress: bool = True,
    **overrides,
) -> "StrategyStudy":
    """Run one setting under every (memory policy, support selector, order) and save the results.

    Parameters
    ----------
    name : str
        The study's name (the ``experiment`` column).
    config : ExperimentConfig or None
        The data, the one setting and model, the orders, plugins, weights and size
        (:class:`~fsm2kit.run.config.ExperimentConfig`; ``episodes=None``: the bundled CHAOS
        case); its ``orders`` are one axis of the study (FQ settings). A notebook builds it from
        its parameters: ``ExperimentConfig.from_parameters(globals())``.
    output_dir : path, keyword-only
        Created if missing; gets the one output format, tables and charts.
    memory_policies, support_selectors : sequence of str or strategy, keyword-only
        The other two axes (registered names with arguments, e.g. ``"recent:2"``, or strategy
        objects); ``fsm2kit strategies`` lists them. All are checked before the model loads.
    progress : bool, keyword-only
    **overrides
        Config fields applied on top of ``config`` (:meth:`ExperimentConfig.replace
        <fsm2kit.run.config.ExperimentConfig.replace>`), e.g. ``setting="3SFQ"``.

    Returns
    -------
    StrategyStudy
    """
    from ..model.loading import load_sam2

    base = ExperimentConfig.given(config, "run_strategy_study", name=name, **overrides)  # loads the plugins first
    for what, n in (("settings", len(base.settings)), ("models", len(base.models))):
        if n != 1:
            raise ValueError(f"run_strategy_study: one {what[:-1]} per study, got {n} {what}; run a study per {what[:-1]}.")
    policies = _names("memory_policies", memory_policies)
    selectors = _names("support_selectors", support_selectors)
    configs = [base.replace(support_selector=sel, memory_policy=pol) for sel in selectors for pol in policies]
    setting, model = base.settings[0], base.models[0]
    # the selector decides the episodes' supports: load them once per selector
    loaded: dict[str, list] = {}
    eps = []
    for c in configs:
        key = strategy_name(c.support_selector)
        if key not in loaded:
            loaded[key] = load_config_episodes(c, progress=progress)
        eps.append(loaded[key])
    c0 = configs[0]
    sam2 = load_sam2(c0.models[0], c0.checkpoint, seed=c0.seed, image_size=c0.image_size_for(model),
                     device=c0.device, progress=progress, precision=c0.precision)
    out = Path(output_dir)
    check_output_dir(out)  # new, empty, the working folder or an earlier experiment: before the compute
    result = run_experiments(configs, models={model: sam2}, episodes=eps, keep_predictions=True, progress=progress)
    study = StrategyStudy(name, result, out, setting=setting, model=sam2)
    study.save()
    return study


@dataclass(eq=False)
class StrategyStudy:
    """The result of :func:`run_strategy_study`, the folder its files go to and the model that made it."""

    name: str
    result: ExperimentResult
    output_dir: Path
    setting: str
    model: object = field(repr=False, default=None)
    _attention: dict = field(repr=False, default_factory=dict)

    @property
    def note(self) -> str:
        """The weights line (a warning for random weights)."""
        return self.result.note

    def save(self) -> dict[str, Path]:
        """Write the one output format into ``output_dir``."""
        return self.result.save(self.output_dir)

    def provenance(self):
        """The one provenance record (model, weights, strategies, versions, ...)."""
        return self.result.provenance()

    # ------------------------------------------------------------------ tables
    def table(self, metric: str = "pooled", *, file: str | None = "default") -> pd.DataFrame:
        """A paper-style table, Dice in %: organs as columns, one row per (memory policy, support selector, order).

        ``metric`` is the Dice variant: ``"pooled"`` (what the published code prints) or
        ``"mean_per_volume"``. The one table writer (:func:`~fsm2kit.tables.dice_table.save_table`)
        saves it as ``strategies_<metric>.csv`` (tidy), ``.md``, ``.tex`` (compiles with pdflatex)
        and a ``.json`` sidecar whose caption says which Dice and which weights (``file``: another stem).
        """
        t = (self.result.table(metric, rows=STRATEGY_ROWS) * 100).round(1)
        t.columns = pd.MultiIndex.from_tuples([(d, o) for d, o in t.columns], names=["dataset", f"{metric} Dice (%)"])
        if file is not None:
            save_table(t, self.output_dir / (f"strategies_{metric}.csv" if file == "default" else file),
                       note=f"{_METRIC_TITLE[metric]}; {self.result.note}")
        return t

    def memories(self) -> pd.DataFrame:
        """Dice (both variants) against what the steps attended to, per strategy and class.

        Columns: the strategy columns, ``label_name``, ``metric``, ``dice``, ``memories``
        (spatial memories per step, mean over the query slices, supports included),
        ``query_memories`` (of those, the previous query slices') and ``pointers``.
        """
        keys = [*STRATEGY_ROWS, "label_name"]
        s = self.result.slices
        n_cond = s.groupby(keys)["n_memories"].transform("min")  # every step attends to all supports
        att = (s.assign(query_memories=s["n_memories"] - n_cond)
               .groupby(keys, as_index=False)
               .agg(memories=("n_memories", "mean"), query_memories=("query_memories", "mean"),
                    pointers=("n_pointers", "mean"), n_slices=("z", "size")))
        dice = self.result.summary("both")[[*keys, "metric", "dice"]]
        out = dice.merge(att, on=keys, how="left")
        out["weights"] = self.result.weights
        return out

    # ------------------------------------------------------------------ charts
    def memory_chart(self, metric: str = "pooled", *, file: str | None = "dice_vs_memories",
                     presets: Sequence[str] = ("screen", "paper")):
        """Dice against the mean number of attended memories per step, one point per strategy; saved in
        ``presets`` (:func:`fsm2kit.viz.export.save_presets`: ``file.*`` and ``file_paper.*``)."""
        import altair as alt

        from ..viz.export import save_presets

        from ..viz.dice_charts import organ_text

        m = self.memories()
        m = m[m["metric"] == metric].copy()
        m["dice_pct"] = 100 * m["dice"].astype(float)  # Dice in %, as every other chart and table
        m["organ"] = [organ_text(o) for o in m["label_name"]]
        chart = alt.Chart(m).mark_point(filled=True, size=80).encode(
            x=alt.X("memories:Q", title="memories per step (mean)", scale=alt.Scale(zero=False)),
            y=alt.Y("dice_pct:Q", title=f"Dice (%), {metric.replace('_', ' ')}", scale=alt.Scale(domain=[0, 100])),
            color=alt.Color("memory_policy:N", title="memory policy", sort=list(dict.fromkeys(m["memory_policy"]))),
            shape=alt.Shape("order:N", title="order"),
            column=alt.Column("organ:N", title=None, header=alt.Header(labelFontWeight="bold")),
            tooltip=[*STRATEGY_ROWS, alt.Tooltip("organ:N", title="organ"),
                     alt.Tooltip("dice_pct:Q", title="Dice (%)", format=".1f"),
                     alt.Tooltip("memories:Q", format=".2f"), alt.Tooltip("pointers:Q", format=".2f")],
        ).properties(width=200, height=200, title={
            "text": f"{self.setting}: Dice against attended memories",
            "subtitle": [f"{_METRIC_TITLE[metric]}; x: spatial memories a query slice attended to (mean, supports "
                         "included)", self.result.note]})
        if file is not None:
            save_presets(chart, self.output_dir / file, presets=presets)
        return chart

    def attention_table(self, z: int | None = None, *, case_id: str | None = None, label_name: str | None = None,
                        order: object | None = None, support_selector: object | None = None,
                        policies: Sequence[object] | None = None, layer: int | None = None) -> pd.DataFrame:
        """The memory inspector's attention mass per memory entry at slice ``z``, under each policy.

        The episode is the first kept one matching ``case_id``/``label_name``/``order``/
        ``support_selector``; each policy (default: the study's) re-segments it while the
        inspector captures the memory attention (:func:`fsm2kit.inspector.inspect_episode`).
        ``z`` defaults to the slice processed last; the mass is the mean over heads and the
        layers (or ``layer``) of the share of the query tokens' attention each entry receives;
        the pointers are summed into one ``pointers`` entry.
        """
        from ..engine.engine import Engine
        from ..inspector.inspection import inspect_episode

        if self.model is None:
            raise ValueError("attention_table needs the study's model; run the study with run_strategy_study.")
        preds = [p for p in self.result.predictions
                 if (case_id is None or p.episode.case_id == case_id)
                 and (label_name is None or p.episode.label_name.upper() == str(label_name).upper())
                 and (order is None or p.order == strategy_name(order))]
        if support_selector is not None:
            pick = self.result.slices
            ok = set(pick.loc[pick["support_selector"] == strategy_name(support_selector), "case_id"])
            preds = [p for p in preds if p.episode.case_id in ok]
        if not preds:
            raise ValueError("attention_table: no kept run matches; the study's runs: "
                             f"{sorted({(p.episode.case_id, p.episode.label_name, p.order) for p in self.result.predictions})}")
        p = preds[0]
        episode, ord_ = p.episode, p.order
        policies = list(policies) if policies is not None else list(dict.fromkeys(self.result.slices["memory_policy"]))
        key = (episode.case_id, episode.label_name, ord_, tuple(strategy_name(q) for q in policies), z, layer)
        if key in self._attention:
            return self._attention[key]
        engine = Engine(self.model, progress=False)
        rows = []
        for pol in policies:
            kw = {} if ord_ == "n/a" else engine_arguments(ORDERINGS.get(ord_), self.setting, episode)
            insp = inspect_episode(engine, episode, self.setting, memory_policy=MEMORY_POLICIES.get(pol), **kw)
            k = len(insp) - 1 if z is None else insp.step_of_z(int(z))
            st = insp[k]
            layers = list(st.layers)
            li = slice(None) if layer is None else [layers.index(layer)]
            mass = np.asarray(st.mass_all)[li].mean(axis=(0, 1))
            for e in st.layout:  # the inspector's one naming scheme; pointers summed into one entry
                entry = "pointers" if e.kind == "pointer" else e.label
                rows.append({"memory_policy": strategy_name(pol), "z": st.z, "entry": entry, "group": e.group,
                             "mass": float(mass[e.position])})
        t = pd.DataFrame(rows).groupby(["memory_policy", "z", "entry", "group"], as_index=False, sort=False)["mass"].sum()
        t["case_id"], t["label_name"], t["order"] = episode.case_id, episode.label_name, ord_
        t["weights"] = self.result.weights
        self._attention[key] = t
        return t

    def attention_chart(self, z: int | None = None, *, file: str | None = "attention_by_policy",
                        presets: Sequence[str] = ("screen", "paper"), **kwargs):
        """:meth:`attention_table` as bars, one panel per policy, side by side; saved in ``presets``."""
        import altair as alt

        from ..viz.export import save_presets

        from ..viz.display import MEMORY_GROUP_COLORS

        t = self.attention_table(z, **kwargs)
        groups = list(MEMORY_GROUP_COLORS)  # colours by meaning: support blue, query orange, pointers grey
        chart = alt.Chart(t).mark_bar().encode(
            x=alt.X("mass:Q", title="attention share", scale=alt.Scale(domain=[0, 1])),
            y=alt.Y("entry:N", title="memory entry", sort=None),
            color=alt.Color("group:N", title="memory", sort=groups,
                            scale=alt.Scale(domain=groups, range=[MEMORY_GROUP_COLORS[g] for g in groups])),
            column=alt.Column("memory_policy:N", title=None, sort=list(dict.fromkeys(t["memory_policy"])),
                              header=alt.Header(labelFontWeight="bold", labelExpr="'policy: ' + datum.label")),
            tooltip=["memory_policy", "entry", alt.Tooltip("mass:Q", format=".3f")],
        ).properties(width=170, title={
            "text": f"Attention of slice z={int(t['z'].iloc[0])} ({t['case_id'].iloc[0]}/{t['label_name'].iloc[0]}, "
                    f"{self.setting} {t['order'].iloc[0]}) per memory entry",
            "subtitle": ["share of the query tokens' attention, mean over heads and layers", self.result.note]})
        if file is not None:
            save_presets(chart, self.output_dir / file, presets=presets)
        return chart

    def __repr__(self) -> str:
        return f"StrategyStudy({self.name!r}, {self.setting}: {self.result!r})\n{self.note}\nfiles: {self.output_dir}"
