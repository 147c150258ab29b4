"""Notebook studies: one call runs the experiment, the others make its tables and figures.

Each experiment notebook (``notebooks/0*_*.ipynb``) is a parameters cell and one call per
section::

    study = run_study("01_table1_settings", datasets={"CHAOST2": None}, settings=[...],
                      checkpoint="random", image_size=256, output_dir="out/")
    study.table("mean_per_volume", paper_table=1, file="table1_mean_per_volume")
    study.dice_bars(column="dataset")
    study.provenance()

:func:`run_study` builds one :class:`~fsm2kit.run.config.ExperimentConfig` per dataset,
runs them through the one runner (:func:`~fsm2kit.run.runner.run_experiments`) and
writes the one output format into ``output_dir`` (:meth:`ExperimentResult.save
<fsm2kit.run.experiment_result.ExperimentResult.save>`). Each :class:`Study` method returns a
table or a figure and writes it into ``output_dir`` too; every one says which weights made it
(the tables' captions and ``weights`` columns, the figures' titles, the study's repr).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..records.fileio import check_output_dir

import pandas as pd

from ..tables.dice_table import TABLE_FORMATS, DiceTable
from ..run.config import ExperimentConfig
from ..run.runner import run_experiments
from ..records.provenance import Provenance
from ..run.experiment_result import ExperimentResult

__all__ = ["Study", "run_study", "DICE_COLUMNS"]

#: Columns of :meth:`Study.dice`.
DICE_COLUMNS = ("dataset", "label_name", "setting", "order", "model", "metric", "dice", "n_volumes", "n_slices",
                "weights")


def run_study(
    name: str,
    config: ExperimentConfig | None = None,
    *,
    datasets: Mapping[str, str | os.PathLike | None],
    output_dir: str | os.PathLike,
    keep_predictions: bool = False,
    progress: bool = True,
    **overrides,
) -> "Study":
    """Run one experiment per dataset and save the results; returns the :class:`Study`.

    Parameters
    ----------
    name : str
        The study's name (the ``experiment`` column of every table).
    config : ExperimentConfig or None
        What to run (:class:`~fsm2kit.run.config.ExperimentConfig`: settings, orders, strategies,
        models, weights, size, ...), the same for every dataset; its ``episodes`` and ``dataset``
        are set per entry of ``datasets``. None: the defaults. A notebook builds it from its
        parameters: ``ExperimentConfig.from_parameters(globals())``.
    datasets : mapping {dataset: folder or None}, keyword-only
        ``{"CHAOST2": "/data/chaos_MR_T2_normalized", "SABS": ...}``: SSL-ALPNet preprocessed
        folders or npz episode folders; None is the bundled CHAOS case.
    output_dir : path, keyword-only
        Created if missing; gets the result files, tables and figures.
    keep_predictions : bool, keyword-only
        Keep the predictions (``logits.npz``, :meth:`Study.overlays`, :meth:`Study.panels`).
    progress : bool, keyword-only
    **overrides
        Config fields applied on top of ``config`` (:meth:`ExperimentConfig.replace
        <fsm2kit.run.config.ExperimentConfig.replace>`), e.g. ``settings=["3SFQ"]``.
    """
    if not datasets:
        raise ValueError("run_study: datasets is empty; give {dataset: folder or None}.")
    base = ExperimentConfig.given(config, "run_study", name=name, **overrides)
    configs = [base.replace(episodes=path, dataset=dataset) for dataset, path in datasets.items()]
    out = Path(output_dir)
    check_output_dir(out)  # new, empty, the working folder or an earlier experiment: before the compute
    result = run_experiments(configs, keep_predictions=keep_predictions, progress=progress)
    study = Study(name, result, out)
    study.save()
    return study


@dataclass(eq=False)
class Study:
    """An experiment's result and the folder its tables and figures go to (see :func:`run_study`)."""

    name: str
    result: ExperimentResult
    output_dir: Path

    @property
    def note(self) -> str:
        """The weights line (a warning for random weights): :attr:`ExperimentResult.note`."""
        return self.result.note

    def save(self) -> dict[str, Path]:
        """Write the one output format (:meth:`ExperimentResult.save`) into ``output_dir``."""
        return self.result.save(self.output_dir)

    def provenance(self) -> Provenance:
        """The one provenance record of the result (models, weights, settings, versions, ...)."""
        return self.result.provenance()

    def _path(self, file: str | None) -> Path | None:
        return None if file is None else self.output_dir / file

    # ------------------------------------------------------------------ tables
    def dice(self, metric: str = "both") -> pd.DataFrame:
        """Both Dice averages per class, setting, order and model (the main columns)."""
        return self.result.summary(metric)[list(DICE_COLUMNS)]

    def table(self, metric: str = "mean_per_volume", *, rows: Sequence[str] = ("model", "setting", "order"),
              settings: Sequence[str] | str | None = None, paper_table: int | None = None,
              title: str | None = None, file: str | None = None,
              formats: Sequence[str] = TABLE_FORMATS) -> DiceTable:
        """A paper-grade table (:func:`~fsm2kit.tables.dice_table.dice_table`), saved in ``output_dir``.

        Parameters
        ----------
        metric : {"mean_per_volume", "pooled"}
        rows : sequence of str
            Which of ``model``, ``setting``, ``order`` name the rows.
        settings : str or sequence of str, optional
            Only these settings' rows (e.g. one table per setting).
        paper_table : {1, 2, 3, 4}, optional
            Show that table's printed values (and Table 1's baselines) beside ours, with the
            difference.
        title : str, optional
        file : str, optional
            File stem in ``output_dir``: ``file.csv``, ``.md``, ``.tex`` (``formats``) and the
            ``file.json`` sidecar with the caption and the run's provenance.
        """
        t = self.result.dice_table(metric, rows=rows, paper_table=paper_table, settings=settings, title=title)
        if file is not None:
            t.save(self._path(file), formats=formats, provenance=self.provenance().to_dict())
        return t

    def image_sizes(self, sizes: Sequence[int] | None = None, *, setting: str = "S1SFQ", order: str | None = None,
                    model: str | None = None, file: str | None = "image_sizes") -> pd.DataFrame:
        """One setting at several image sizes: Dice, time and agreement of the masks.

        Runs the study's data once per size (``setting``, ``order``, one ``model``: the same
        weights, a fresh engine per size so encoding is timed too), through the one run path.

        Parameters
        ----------
        sizes : sequence of int, optional
            Image sizes, the first is the reference of the agreement; default: the model's size
            in the study's config (:meth:`ExperimentConfig.image_size_for`; 1024 for SAM2,
            512 for MedSAM2) and half of it (twice it below 256 px).
        setting : str
        order : str, optional
            Default: the config's first order.
        model : str, optional
            Default: the config's first model.
        file : str, optional
            ``file.csv`` in ``output_dir`` (under a ``#`` line naming the weights).

        Returns
        -------
        DataFrame
            One row per (dataset, label_name, image_size): ``dice_pooled``,
            ``dice_mean_per_volume``, ``seconds`` (segmenting, encoding included), ``s_per_slice``,
            ``agreement`` (pooled Dice of the masks against those at the first size; 1 at it),
            ``n_slices``, ``weights``.
        """
        from ..model.specs import check_image_size
        from ..protocol.metrics import dice_counts, pooled_dice
        from ..records.naming import strategy_name

        base = self.result.configs
        model = model or base[0].models[0]
        own = base[0].image_size_for(model)
        if sizes is None:
            sizes = [own, own // 2] if own // 2 >= 128 else [own, own * 2]
        sizes = [check_image_size(s) for s in sizes]
        order = order or (strategy_name(base[0].orders[0]) if base[0].orders else "middle")
        masks: dict[int, dict] = {}
        rows = []
        for size in sizes:
            configs = [c.replace(settings=[setting], orders=[order], models=[model], image_size=size) for c in base]
            res = run_experiments(configs, keep_predictions=True, progress=False)
            where = {(str(r.case_id), int(r.label)): str(r.dataset)
                     for r in res.slices[["case_id", "label", "dataset"]].drop_duplicates().itertuples()}
            masks[size] = {}
            secs: dict = {}
            for p in res.predictions:
                ds = where[(str(p.result.case_id), int(p.result.label))]
                key = (ds, p.result.label_name)
                secs[key] = secs.get(key, 0.0) + p.result.seconds
                for sl in p.result.slices:
                    masks[size][(*key, str(p.result.case_id), sl.z)] = sl.prediction
            wide = res.summary("both").pivot_table(index=["dataset", "label_name"], columns="metric", values="dice",
                                                   aggfunc="first")
            for (ds, lab), d in wide.iterrows():
                keys = [k for k in masks[size] if k[:2] == (ds, lab)]
                agree = pooled_dice([dice_counts(masks[size][k], masks[sizes[0]][k]) for k in keys], empty=1.0)
                rows.append({"dataset": ds, "label_name": lab, "model": model, "setting": setting, "order": order,
                             "image_size": size, "dice_pooled": d.get("pooled"),
                             "dice_mean_per_volume": d.get("mean_per_volume"), "seconds": secs[(ds, lab)],
                             "s_per_slice": secs[(ds, lab)] / len(keys), "agreement": agree, "n_slices": len(keys),
                             "weights": res.weights})
        table = pd.DataFrame(rows)
        if file is not None:
            from ..tables.dice_table import save_table

            save_table(table.set_index(["dataset", "label_name", "image_size"]), self._path(file),
                       note=f"{self.note}; agreement: pooled Dice of the masks against {sizes[0]} px")
        return table

    # ------------------------------------------------------------------ figures
    def _save_chart(self, chart, file: str, presets: Sequence[str], formats: Sequence[str] | None) -> None:
        """``file.*`` in the ``screen`` preset and ``file_paper.*`` in the ``paper`` one
        (:func:`fsm2kit.viz.export.save_presets`); with ``formats``, just those files (no preset)."""
        from ..viz.export import save_figure, save_presets

        if formats is not None:
            save_figure(chart, self._path(file), formats=formats)
        else:
            save_presets(chart, self._path(file), presets=presets)

    def dice_bars(self, metric: str = "mean_per_volume", *, color: str = "run", column: str | None = "model",
                  file: str | None = "dice_bars", presets: Sequence[str] = ("screen", "paper"),
                  formats: Sequence[str] | None = None):
        """Grouped Dice bars per organ (:func:`~fsm2kit.viz.dice_charts.dice_bars`), saved in ``presets`` (``file.*``, ``file_paper.*``)."""
        from ..viz.dice_charts import dice_bars

        chart = dice_bars(self.result.summary(), metric=metric, color=color, column=column)
        if file is not None:
            self._save_chart(chart, file, presets, formats)
        return chart

    def slice_dice_curves(self, *, color: str = "order", row: str | None = "setting", column: str | None = "model",
                          file: str | None = "slice_dice_curves", presets: Sequence[str] = ("screen", "paper"),
                          formats: Sequence[str] | None = None):
        """Per-slice Dice along z (:func:`~fsm2kit.viz.dice_charts.slice_dice_curves`), saved in ``presets`` (``file.*``, ``file_paper.*``)."""
        from ..viz.dice_charts import slice_dice_curves

        chart = slice_dice_curves(self.result.slices, color=color, row=row, column=column)
        if file is not None:
            self._save_chart(chart, file, presets, formats)
        return chart

    def relative_position(self, *, color: str = "order", row: str | None = "setting", column: str | None = "model",
                          bins: int = 10, file: str | None = "relative_position",
                          presets: Sequence[str] = ("screen", "paper"), formats: Sequence[str] | None = None):
        """Per-slice Dice by relative position in the organ, mean and 95 % band across volumes
        (:func:`~fsm2kit.viz.dice_charts.relative_position_chart`), saved in ``presets`` (``file.*``, ``file_paper.*``)."""
        from ..viz.dice_charts import relative_position_chart

        chart = relative_position_chart(self.result.slices, color=color, row=row, column=column, bins=bins)
        if file is not None:
            self._save_chart(chart, file, presets, formats)
        return chart

    def overlays(self, *, setting: str | None = None, order: str | None = None, model: str | None = None,
                 n: int = 4, file: str | None = "overlays", presets: Sequence[str] = ("screen", "paper")):
        """Support, prediction and ground truth on ``n`` slices of the first matching run
        (:func:`~fsm2kit.viz.figures.slice_overlays`; needs ``keep_predictions=True``),
        saved in ``presets`` (:func:`fsm2kit.viz.export.save_presets`: ``file.png/.svg`` and
        ``file_paper.png/.pdf/.svg``)."""
        from ..viz.export import save_presets
        from ..viz.figures import slice_overlays

        p = self.result.prediction(setting=setting, order=order, model=model)
        fig = slice_overlays(p.episode, p.result, n=n)
        if file is not None:
            save_presets(fig, self._path(file), presets=presets)
        return fig

    def panels(self, *, setting: str | None = None, order: str | None = None, case_id: str | None = None,
               file: str | None = "panels", presets: Sequence[str] = ("screen", "paper")):
        """Figure 3/4 style panels, one row per class of the matching runs
        (:func:`~fsm2kit.viz.figures.class_panels`; needs ``keep_predictions=True``), saved
        in ``presets`` (``file.png/.svg``, ``file_paper.png/.pdf/.svg``)."""
        from ..viz.export import save_presets
        from ..viz.figures import class_panels

        fig = class_panels(self.result.select_predictions(setting=setting, order=order, case_id=case_id))
        if file is not None:
            save_presets(fig, self._path(file), presets=presets)
        return fig

    def __repr__(self) -> str:
        return f"Study({self.name!r}: {self.result!r})\n{self.note}\nfiles: {self.output_dir}"
