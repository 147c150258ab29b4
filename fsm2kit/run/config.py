"""What an experiment runs: :class:`ExperimentConfig` (data, settings, orders, models, weights, size).

A config names the data (an npz episode folder or an SSL-ALPNet preprocessed folder with dataset,
folds and classes), the FS-MedSAM2 settings and orders, the models and their checkpoints, the
image size, the protocol variant, the engine's batching and the Dice average to report. The
notebooks and ``fsm2kit run`` build one and hand it to :func:`fsm2kit.run.runner.run_experiments`.
It holds no process-wide options: torch's thread count is set by the caller (the CLI's
``--threads``), never by running a config; its ``precision`` is the models' policy, a context
manager around their computations (nothing global).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np

from ..records.naming import strategy_name
from ..engine.plans import normalize_setting
from ..strategies.memory_policies import MEMORY_POLICIES
from ..strategies.orderings import ORDERINGS
from ..strategies.ensembles import ENSEMBLES
from ..strategies.plugins import load_plugins
from ..strategies.refinement import REFINEMENTS
from ..strategies.support_selectors import SUPPORT_SELECTORS
from ..strategies.views import check_views

__all__ = ["METRICS", "ExperimentConfig"]

#: Values of ``ExperimentConfig.metric``: which Dice average(s) the summaries report.
METRICS = ("both", "pooled", "mean_per_volume")


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



def _strategy(registry, field_name: str, spec):
    """A strategy field: a registered name (validated, kept as the name) or a strategy object."""
    if isinstance(spec, str):
        try:
            return strategy_name(registry.get(spec.strip()))
        except ValueError as e:
            raise ValueError(f"ExperimentConfig.{field_name}: {e}") from None
    if spec is None:
        return strategy_name(registry.get(None))
    if not callable(spec):
        raise TypeError(f"ExperimentConfig.{field_name}: expected a registered name or a strategy object, "
                        f"got {type(spec).__name__}.")
    return spec


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
        Folds of a preprocessed folder (default: all five). npz dumps hold one fold's episodes:
        at most one fold, checked against the dumps' scans and recorded on the episodes
        (:func:`~fsm2kit.run.sources.npz_episodes_matching`); a contradiction is refused.
    classes : sequence of str or int
        Classes to evaluate (names such as ``"liver"``, ``"RK"``, or ids). Preprocessed folder:
        default the dataset's four evaluated organs; npz dumps: default all in the folder.
    settings : sequence of {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
    orders : sequence of str or Ordering
        Orderings of the FQ settings, by registered name (``middle``, ``top``, or one a user
        registered: :mod:`fsm2kit.strategies.orderings`) or as ordering objects (the 1Q settings
        run once, order ``"n/a"``).
    support_selector : str or SupportSelector
        How the support slice of each chunk is chosen when episodes are built from an SSL-ALPNet
        folder (default ``"protocol"``: the protocol's rule); a registered name (``middle``,
        ``largest``, ``random:SEED``, ``given:Z1,Z2,Z3``, ``similar``, ``similar:query``, ...) or a
        selector object. The settings with one support per chunk apply it within each chunk of
        the support scan. ``similar`` compares SAM2 image embeddings with the run's model
        (:mod:`fsm2kit.run.support_plans`); ``similar:query`` (a support per query slice)
        serves 1S1Q and 3S1Q only. npz episode dumps carry their supports: only ``"protocol"``
        applies to them.
    support_views : int
        Augmented views per support (0..5; default 0, none): the first N of horizontal flip,
        scale 1.1, scale 0.9, gamma 0.8, gamma 1.25, added as further conditioning memories
        (:mod:`fsm2kit.strategies.views`). An exploration aid, not the paper's method.
    memory_policy : str or MemoryPolicy
        Which memories each tracking step attends to (default ``"sam2"``: SAM2's rule); a
        registered name or a policy object.
    prompts : str or None
        A correction prompt file (:mod:`fsm2kit.io.prompts`): after each episode's propagation,
        its rounds of corrections run, each followed by a re-propagation
        (:func:`fsm2kit.engine.corrections.segment_with_corrections`), and the tables hold the
        final stage. FQ settings only; checked when the config is made, and against the
        episodes before any model loads. Corrections name ``"case"`` and ``"label"`` when
        the run has several episodes.
    max_rounds : int
        The most correction rounds ``prompts`` may hold (default 100; each re-propagates).
    plugins : sequence of str
        Modules (or ``.py`` files) imported before the strategies are looked up: they register a
        user's own strategies (:func:`fsm2kit.strategies.load_plugins`).
    models : sequence of str
        Model names (``sam2-tiny`` ... ``sam2.1-large``).
    checkpoint : None, "random", a file, a folder, or a mapping {model: file}
        None downloads the released checkpoint of each model; ``"random"`` builds random
        weights (smoke runs: results mean nothing); a file fits one model only; a folder must
        hold the released file names (``sam2_hiera_large.pt`` ...).
    seed : int
        Seed of random weights.
    image_size : int or None
        SAM2 input size for every model; None: each model's own (1024 for SAM2 as published,
        512 for MedSAM2; :meth:`image_size_for`). 256 or 128 for smoke runs.
    device : str or None
        ``"cpu"``, ``"cuda"``, ``"mps"``; None picks the best available.
    precision : {"fp32", "bf16"} or None
        The models' precision policy (:attr:`fsm2kit.model.loading.SAM2Model.precision`): None
        is bf16 autocast on CUDA (as published) and fp32 elsewhere; ``"bf16"`` on the CPU runs
        the GPU's dtype path. Scoped to the model's computations (no process-wide state).
    variant : {"ALP", "GMRD"}
        Protocol variant (folds, scored slices, chunks) for preprocessed folders.
    metric : {"both", "pooled", "mean_per_volume"}
        Which Dice average the summaries report (``both`` keeps both rows).
    max_slices : int or None
        Keep at most this many query slices per episode, evenly spaced over its range, first
        and last kept (:func:`fsm2kit.run.sources.subset_episode`; all supports are
        kept). For smoke runs; None: all.
    z_range : (int, int) or None
        Keep query slices with ``lo <= z <= hi`` (before ``max_slices``).
    cache_dir : str or None
        On-disk image-feature cache of the engine (``Engine(cache_dir=)``), reused across runs.
    refinement : str or Refinement
        Refinement passes of the FQ settings (default ``"none"``; ``"revsam2:top=K"``,
        ``"revsam2:score=T"``, ``,passes=P``): :mod:`fsm2kit.strategies.refinement`. Refused with
        a 1Q setting.
    ensemble : str or Ensemble
        Several runs fused (default ``"none"``): ``"mean:order=top,middle;support-select=random:0,random:1"``
        (members: the cartesian product of strategy overrides; keys order, support-select,
        memory-policy, views, refine, model; ``;qc=T`` the QC threshold), or ``"vote:..."``
        (:mod:`fsm2kit.strategies.ensembles`). Every member config is checked when the config is made
        (:meth:`members`).
    object_batch_size : int or None
        Tracking steps of independent runs (episodes, organs, per-query plans) that share one
        SAM2 forward (``Engine(object_batch_size=)``); None: the engine's default (16 on CUDA,
        1 on CPU). Episodes always run side by side (:meth:`Engine.segment_many`).
    name : str
        A name for the experiment (a column of every table).
    """

    episodes: str | None = None
    dataset: str | None = None
    folds: tuple[int, ...] = ()
    classes: tuple[str, ...] = ()
    settings: tuple[str, ...] = ("S1SFQ",)
    orders: tuple = ("middle",)
    support_selector: object = "protocol"
    support_views: int = 0
    memory_policy: object = "sam2"
    prompts: str | None = None
    plugins: tuple[str, ...] = ()
    models: tuple[str, ...] = ("sam2-tiny",)
    checkpoint: str | None | tuple[tuple[str, str], ...] = None
    seed: int = 0
    image_size: int | None = None
    device: str | None = None
    variant: str = "ALP"
    metric: str = "both"
    max_slices: int | None = None
    z_range: tuple[int, int] | None = None
    cache_dir: str | None = None
    object_batch_size: int | None = None
    refinement: object = "none"
    ensemble: object = "none"
    name: str = "experiment"
    max_rounds: int = 100
    precision: str | None = None

    def __post_init__(self) -> None:
        from ..model.specs import resolve_spec
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
        s(self, "plugins", _as_tuple("plugins", self.plugins))
        load_plugins(self.plugins)  # a user's strategies register before their names are checked
        raw = self.orders if isinstance(self.orders, (list, tuple)) else (self.orders,)
        orders = tuple(_strategy(ORDERINGS, "orders", o) for o in raw)
        if not orders and any(x.endswith("FQ") for x in settings):
            raise ValueError("ExperimentConfig.orders is empty but an FQ setting needs an order (middle or top).")
        s(self, "orders", tuple(dict.fromkeys(orders)))
        s(self, "support_selector", _strategy(SUPPORT_SELECTORS, "support_selector", self.support_selector))
        try:
            s(self, "support_views", check_views(self.support_views))
        except ValueError as e:
            raise ValueError(f"ExperimentConfig.support_views: {e}") from None
        if getattr(SUPPORT_SELECTORS.get(self.support_selector), "similarity", None) == "query":
            fq = [x for x in settings if x.endswith("FQ")]
            if fq:
                raise ValueError(f"ExperimentConfig.support_selector 'similar:query' chooses a support per query slice, "
                                 f"which only 1S1Q and 3S1Q can use, not {'/'.join(fq)} (one memory state for all "
                                 "slices); use 'similar' (per chunk) for the FQ settings.")
        s(self, "memory_policy", _strategy(MEMORY_POLICIES, "memory_policy", self.memory_policy))
        s(self, "refinement", _strategy(REFINEMENTS, "refinement", self.refinement))
        if int(getattr(REFINEMENTS.get(self.refinement), "passes", 1)) > 1:
            one = [x for x in settings if not x.endswith("FQ")]
            if one:
                raise ValueError(f"ExperimentConfig.refinement {strategy_name(self.refinement)!r} promotes slices to "
                                 f"memories of a propagation, but {'/'.join(one)} segment each slice alone; use "
                                 "S1SFQ or 3SFQ (or refinement='none').")
        swap = getattr(SUPPORT_SELECTORS.get(self.support_selector), "swap", 0)
        if swap and (self.prompts is not None or int(getattr(REFINEMENTS.get(self.refinement), "passes", 1)) > 1):
            raise ValueError(f"ExperimentConfig.support_selector 'swap:{swap}' (per-slice supports) does not combine "
                             "with correction prompts or refinement passes yet; choose one.")
        s(self, "ensemble", _strategy(ENSEMBLES, "ensemble", self.ensemble))
        if getattr(ENSEMBLES.get(self.ensemble), "active", False):
            self.members()  # every member is a valid config, checked now
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or self.max_rounds < 1:
            raise ValueError(f"ExperimentConfig.max_rounds must be an integer >= 1, got {self.max_rounds!r}.")
        if self.prompts is not None:
            s(self, "prompts", os.fspath(self.prompts))
            one = [x for x in settings if not x.endswith("FQ")]
            if one:
                raise ValueError(f"ExperimentConfig.prompts: corrections need a propagation to correct, but "
                                 f"{'/'.join(one)} segment each slice alone; use S1SFQ or 3SFQ.")
            self.prompt_file()  # the file is read and checked now
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
        if self.image_size is not None:
            from ..model.specs import check_image_size

            size = self.image_size
            if isinstance(size, float) and size.is_integer() or isinstance(size, str) and size.strip().isdigit():
                size = int(size)  # 256.0 or "256" (a notebook's or a sweep's value)
            try:
                s(self, "image_size", check_image_size(size))
            except ValueError as e:
                raise ValueError(f"ExperimentConfig.{e}") from None
        from ..model.specs import check_precision

        try:
            s(self, "precision", check_precision(self.precision, self.device))
        except ValueError as e:
            raise ValueError(f"ExperimentConfig.{e}") from None
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
        if self.object_batch_size is not None:
            if int(self.object_batch_size) < 1:
                raise ValueError(
                    f"ExperimentConfig.object_batch_size must be None or >= 1, got {self.object_batch_size!r}.")
            s(self, "object_batch_size", int(self.object_batch_size))

    # ------------------------------------------------------------------ building
    #: Singular spellings a notebook's or a function's parameters may use for a config field.
    ALIASES = {"setting": "settings", "order": "orders", "model": "models", "fold": "folds", "label": "classes"}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The config's fields, in order (what :meth:`replace` and :meth:`from_parameters` take)."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def _fields_from(cls, values: Mapping[str, object], where: str, *, strict: bool) -> dict:
        out: dict = {}
        names = cls.field_names()
        for key, value in values.items():
            name = cls.ALIASES.get(key, key)
            if name not in names:
                if strict:
                    raise TypeError(f"{where}: ExperimentConfig has no field {key!r}; expected one of "
                                    f"{', '.join(names)} (or {', '.join(cls.ALIASES)}).")
                continue
            if name in out:
                raise TypeError(f"{where}: {name!r} is given twice (as {name!r} and its spelling {key!r}).")
            out[name] = value
        return out

    def replace(self, **overrides) -> "ExperimentConfig":
        """A copy with ``overrides`` (config fields, or the singular spellings of :attr:`ALIASES`),
        validated as a new config; an unknown name is one ``TypeError`` listing the fields.

        >>> ExperimentConfig().replace(settings="3SFQ", order="top").orders   # doctest: +SKIP
        """
        return replace(self, **self._fields_from(overrides, "ExperimentConfig.replace", strict=True))

    @classmethod
    def given(cls, config: "ExperimentConfig | None", caller: str, **overrides) -> "ExperimentConfig":
        """What an entry point runs: ``config`` (None: the defaults) with ``overrides`` applied
        (:meth:`replace`); anything but a config is one ``TypeError`` naming ``caller``."""
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"{caller}: config is an ExperimentConfig, got {type(config).__name__}; "
                            "give its fields as keywords instead.")
        base = cls() if config is None else config
        return base.replace(**overrides) if overrides else base

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, object], **overrides) -> "ExperimentConfig":
        """A config from a notebook's parameters: the entries of ``parameters`` (e.g. ``globals()``
        after a papermill parameters cell) that are config fields or their singular spellings
        (:attr:`ALIASES`); everything else in ``parameters`` is ignored. ``overrides`` are
        applied on top, checked like :meth:`replace`."""
        values = cls._fields_from(parameters, "ExperimentConfig.from_parameters", strict=False)
        values.update(cls._fields_from(overrides, "ExperimentConfig.from_parameters", strict=True))
        return cls(**values)

    # ------------------------------------------------------------------ helpers
    @property
    def random_weights(self) -> bool:
        return self.checkpoint == "random"

    def prompt_file(self):
        """The checked :class:`~fsm2kit.io.prompts.PromptFile` of ``prompts`` (None without).

        Read once, when the config is made: the run, its checks and its record all use that
        content, even if the file changes afterwards.
        """
        from ..io.prompts import read_prompts

        if self.prompts is None:
            return None
        if "_prompt_file" not in self.__dict__:  # not a field: asdict, eq and hash ignore it
            object.__setattr__(self, "_prompt_file", read_prompts(self.prompts, max_rounds=self.max_rounds))
        return self.__dict__["_prompt_file"]

    def members(self) -> list[tuple[str, "ExperimentConfig"]]:
        """The ensemble's members: ``[(label, config)]``, each this config with the member's overrides
        and no ensemble (:meth:`fsm2kit.strategies.ensembles.Ensemble.members`); ``[]`` without one."""
        ens = ENSEMBLES.get(self.ensemble)
        if not getattr(ens, "active", False):
            return []
        out = []
        for label, over in ens.members():
            try:
                out.append((label, replace(self, ensemble="none", **over)))
            except (TypeError, ValueError) as e:
                raise ValueError(f"ExperimentConfig.ensemble member '{label}': {e}") from None
        return out
    def image_size_for(self, model: str) -> int:
        """The image size ``model`` runs at: :attr:`image_size`, or the model's own when None."""
        from ..model.specs import image_size_for

        return image_size_for(model, self.image_size)

    def checkpoint_for(self, model: str) -> str | None:
        """The checkpoint argument of :func:`fsm2kit.load_sam2` for ``model``.

        Raises
        ------
        FileNotFoundError
            A checkpoint folder without the model's released file name.
        """
        from ..model.specs import resolve_spec

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
        d["orders"] = [strategy_name(o) for o in self.orders]
        d["support_selector"] = strategy_name(self.support_selector)
        d["memory_policy"] = strategy_name(self.memory_policy)
        d["refinement"] = strategy_name(self.refinement)
        d["ensemble"] = strategy_name(self.ensemble)
        if isinstance(self.checkpoint, tuple):
            d["checkpoint"] = dict(self.checkpoint)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}

    def __repr__(self) -> str:
        orders = "/".join(map(strategy_name, self.orders)) if any(x.endswith("FQ") for x in self.settings) else "-"
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
            f"{f'{self.image_size}px' if self.image_size else 'own size'}"
            f"{f' {self.precision}' if self.precision else ''}, {self.variant}, metric={self.metric}, "
            f"support={strategy_name(self.support_selector)}"
            f"{f' +{self.support_views} views' if self.support_views else ''}, memory={strategy_name(self.memory_policy)}"
            f"{f', refine={strategy_name(self.refinement)}' if strategy_name(self.refinement) != 'none' else ''}"
            f"{f', ensemble={strategy_name(self.ensemble)}' if strategy_name(self.ensemble) != 'none' else ''}"
            f"{f', prompts={Path(self.prompts).name}' if self.prompts else ''}"
            f"{'; ' + ', '.join(sub) if sub else ''})"
        )

