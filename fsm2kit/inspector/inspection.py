"""An inspected run: captured steps attached to the engine's result, as tidy tables."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..engine.results import EpisodeResult
from .attention import PixelAttention, StepAttention
from .capture import MemoryInspector
from .layout import KeyEntry, query_token

__all__ = ["Inspection", "inspect_episode", "MASS_COLUMNS", "mean_shares", "MEAN_SHARE_NOTE"]

#: Columns of :attr:`Inspection.masses`, in order.
MASS_COLUMNS = (
    "case_id", "label_name", "setting", "order", "variant", "plan", "step", "proc_index",
    "position", "z", "layer", "head", "region", "entry", "entry_kind", "entry_source",
    "entry_index", "entry_z", "entry_frame", "t_pos", "is_cond", "role", "group", "n_tokens",
    "mass", "model", "weights",
)


# ----------------------------------------------------------------------------- the inspection
@dataclass(eq=False)
class Inspection:
    """Memory attention of every query slice of one run (one episode, setting and order).

    Attributes
    ----------
    steps : list of StepAttention
        In processing order (``proc_index``).
    result : EpisodeResult
    episode : Episode or None
        Needed for image panels (support images and masks).
    engine : Engine or None
        Needed to recompute attention maps for new pixels (:meth:`pixel_attention`).
    options : dict
        The capture options (layers, heads, pixels, verify).
    """

    steps: list[StepAttention]
    result: EpisodeResult = field(repr=False)
    episode: Episode | None = field(repr=False, default=None)
    engine: Engine | None = field(repr=False, default=None)
    options: dict = field(repr=False, default_factory=dict)
    files: dict = field(repr=False, default_factory=dict)  # what inspect_run wrote: name -> path
    _masses: object = field(repr=False, default=None)
    _pixel_cache: dict = field(repr=False, default_factory=dict)

    # ---------------------------------------------------------------- provenance
    @property
    def provenance(self) -> dict:
        """Model provenance (weights!) + run and capture settings."""
        p = dict(self.result.provenance)
        ep = self.episode
        p.update(
            case_id=self.result.case_id, label=self.result.label, label_name=self.result.label_name,
            setting=self.result.setting, order=self.result.order or "n/a",
            variant=getattr(ep, "variant", None), dataset=getattr(ep, "dataset", None),
            fold=getattr(ep, "fold", None), layers=list(self.layers), heads=list(self.heads),
            verify=bool(self.options.get("verify")), max_rel_error=self.max_rel_error,
            inspector="fsm2kit.inspector (forward hooks on memory_attention.layers[i].cross_attn_image)",
        )
        return p

    @property
    def weights(self) -> str:
        """``"random weights (seed N)"`` or ``"sha256:..."``: name it next to every output."""
        return str(self.result.provenance.get("weights"))

    @property
    def random_weights(self) -> bool:
        return bool(self.result.provenance.get("random_weights"))

    @property
    def layers(self) -> tuple[int, ...]:
        return self.steps[0].layers if self.steps else tuple(self.options.get("layers", ()))

    @property
    def heads(self) -> tuple[int, ...]:
        return self.steps[0].heads if self.steps else tuple(self.options.get("heads", ()))

    @property
    def max_rel_error(self) -> float | None:
        errs = [float(np.max(s.rel_error)) for s in self.steps if s.rel_error is not None]
        return max(errs) if errs else None

    @property
    def max_token_sum_error(self) -> float:
        return max((s.token_sum_error for s in self.steps), default=0.0)

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, k: int) -> StepAttention:
        return self.steps[k]

    def step_of_z(self, z: int) -> int:
        """Processing index of the (first) step that segmented slice ``z``."""
        for k, s in enumerate(self.steps):
            if s.z == z:
                return k
        raise KeyError(f"no step segmented slice z={z}; slices: {sorted({s.z for s in self.steps})}")

    # ---------------------------------------------------------------- tables
    @property
    def masses(self):
        """Tidy attention-mass table (columns :data:`MASS_COLUMNS`), one row per step, layer,
        head, memory entry and region (``all`` query tokens, or the predicted ``foreground``;
        foreground rows are absent for steps with an empty prediction)."""
        if self._masses is None:
            self._masses = self._mass_frame()
        return self._masses

    def _mass_frame(self):
        import pandas as pd

        r = self.result
        prov = r.provenance
        variant = getattr(self.episode, "variant", None) or "n/a"
        cols: dict[str, list] = {c: [] for c in MASS_COLUMNS}
        for k, s in enumerate(self.steps):
            for region, arr in (("all", s.mass_all), ("foreground", s.mass_fg)):
                if arr is None:
                    continue
                for li, layer in enumerate(s.layers):
                    for hi, head in enumerate(s.heads):
                        for e in s.layout:
                            for c, v in (
                                ("case_id", r.case_id), ("label_name", r.label_name), ("setting", r.setting),
                                ("order", r.order or "n/a"), ("variant", variant), ("plan", s.plan_index),
                                ("step", s.step), ("proc_index", k), ("position", s.position), ("z", s.z),
                                ("layer", layer), ("head", head), ("region", region), ("entry", e.position),
                                ("entry_kind", e.kind), ("entry_source", e.source), ("entry_index", e.index),
                                ("entry_z", e.z), ("entry_frame", e.frame_idx), ("t_pos", e.t_pos),
                                ("is_cond", e.is_cond), ("role", e.role), ("group", e.group),
                                ("n_tokens", e.n_tokens), ("mass", float(arr[li, hi, e.position])),
                                ("model", prov.get("model")), ("weights", prov.get("weights")),
                            ):
                                cols[c].append(v)
        df = pd.DataFrame(cols)
        df["entry_z"] = df["entry_z"].astype("Int64")
        df["z"] = df["z"].astype("Int64")
        return df

    def shares(self, *, region: str = "all"):
        """Mass per group (``support memory`` / ``query memory`` / ``pointers``) per step and layer."""
        m = self.masses
        m = m[m["region"] == region]
        keys = ["proc_index", "plan", "step", "position", "z", "layer", "head", "group"]
        out = m.groupby(keys, as_index=False, sort=True)["mass"].sum()
        out["model"], out["weights"] = self.result.provenance.get("model"), self.weights
        return out

    def mean_shares(self, *, region: str = "all"):
        """The mean attention share of each group over the query slices (:func:`mean_shares`):
        a group absent from a slice's memory counts as 0 there, so the shares sum to 1."""
        return mean_shares(self.shares(region=region))

    def layouts(self):
        """Tidy table of every step's key layout (which key tokens belong to which entry)."""
        import pandas as pd

        frames = []
        for k, s in enumerate(self.steps):
            df = s.layout.to_frame()
            df.insert(0, "query_z", s.z)
            df.insert(0, "proc_index", k)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)

    def pixel_frame(self):
        """Tidy table of the pixel attention rows captured with ``pixels=``."""
        import pandas as pd

        frames = [p.to_frame() for s in self.steps for p in s.pixels]
        if not frames:
            return pd.DataFrame(columns=["step", "z", "query_y", "query_x", "layer", "head", "entry", "row", "col", "weight"])
        df = pd.concat(frames, ignore_index=True)
        df["weights"] = self.weights
        return df

    # ---------------------------------------------------------------- pixel maps, on demand
    def pixel_attention(self, step: int, pixel: tuple[int, int], *, layer: int | None = None,
                        head: int = 0) -> PixelAttention:
        """The attention row of ``pixel`` (y, x) of step ``step``'s query slice in one layer.

        Captured rows are reused; otherwise the step is re-run (``engine.track`` with the same
        selection and bank, ``store=False``) under a capture for that pixel (one tracking step).
        """
        if not 0 <= step < len(self.steps):
            raise IndexError(f"step {step} outside 0..{len(self.steps) - 1}")
        s = self.steps[step]
        layer = s.layers[-1] if layer is None else int(layer)
        s.layer_axis(layer)
        key = (step, tuple(int(v) for v in pixel), layer, head)
        for p in s.pixels:
            if (p.pixel, p.layer, p.head) == key[1:]:
                return p
        if key in self._pixel_cache:
            return self._pixel_cache[key]
        if self.engine is None or s.image is None or s.bank is None:
            raise RuntimeError("this Inspection has no engine to recompute attention for a new pixel; "
                               "build it with inspect_episode(...) or inspection(..., engine=engine).")
        query_token(pixel, s.image_shape, s.grid)  # validates the pixel
        insp = MemoryInspector()
        with insp.capture(self.engine, layers=list(s.layers), heads=list(s.heads), pixels=[key[1]]):
            self.engine.track(s.image, s.selection, s.bank, store=False, index=s.position, z=s.z)
        (rec,) = insp.records
        for p in rec.pixels:
            self._pixel_cache[(step, p.pixel, p.layer, p.head)] = replace(p, step=step)
        return self._pixel_cache[key]

    # ---------------------------------------------------------------- images of memory frames
    def entry_image(self, entry: KeyEntry) -> tuple[np.ndarray, np.ndarray | None]:
        """The image of a memory entry's frame and its mask (support mask, or the prediction
        of that query slice in this run)."""
        if self.episode is None:
            raise RuntimeError("this Inspection has no episode: pass episode= to get memory-frame images.")
        if entry.source == "support":
            sup = self.episode.supports[entry.index]
            return np.asarray(sup.image), np.asarray(sup.mask, dtype=bool)
        pred = None
        for s in self.result.slices:
            if s.position == entry.index:
                pred = s.prediction
        return np.asarray(self.episode.images[entry.index]), pred

    def default_pixel(self, step: int) -> tuple[int, int]:
        """The centroid of the step's predicted foreground (rounded), else the slice centre."""
        s = self.steps[step]
        if s.prediction is not None and s.prediction.any():
            ys, xs = np.nonzero(s.prediction)
            y, x = int(round(ys.mean())), int(round(xs.mean()))
            if s.prediction[y, x]:
                return y, x
            i = int(np.argmin((ys - y) ** 2 + (xs - x) ** 2))
            return int(ys[i]), int(xs[i])
        return s.image_shape[0] // 2, s.image_shape[1] // 2

    def __repr__(self) -> str:
        r = self.result
        order = f"-{r.order}" if r.order else ""
        err = f", max rel. error {self.max_rel_error:.1e}" if self.max_rel_error is not None else ""
        return (f"Inspection({r.case_id}/{r.label_name}, {r.setting}{order}, {len(self.steps)} steps, "
                f"layers {list(self.layers)}, {self.weights}{err})")


# ----------------------------------------------------------------------------- plain functions
#: What :func:`mean_shares` averages over, for every printed or plotted mean.
MEAN_SHARE_NOTE = ("mean over {n} query slice(s) of each slice's share (mean of layers and heads); a memory "
                   "group absent from a slice's memory counts as 0 there")


def mean_shares(shares):
    """Mean attention share per memory group over the query slices.

    Parameters
    ----------
    shares : pandas.DataFrame
        :meth:`Inspection.shares`: mass per ``proc_index``, ``layer``, ``head`` and ``group``.

    Returns
    -------
    pandas.Series
        group -> mean share. Each slice's share is the mean over its layers and heads; a group a
        slice does not attend to (no query memory on the first slice) counts as 0 for that slice,
        so the means sum to 1 (averaging only over the slices where a group exists would not).
        ``Series.attrs["n_slices"]`` holds the number of slices averaged over.
    """
    import pandas as pd

    if shares.empty:
        out = pd.Series(dtype=float, name="mass")
        out.attrs["n_slices"] = 0
        return out
    wide = shares.pivot_table(index=["proc_index", "layer", "head"], columns="group", values="mass",
                              aggfunc="sum", fill_value=0.0)
    per_slice = wide.groupby(level="proc_index").mean()
    out = per_slice.mean(axis=0).rename("mass")
    out.index.name = "group"
    out.attrs["n_slices"] = int(len(per_slice))
    return out


def inspect_episode(
    engine: Engine,
    episode: Episode,
    setting: str,
    *,
    order: str = "middle",
    plans=None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    verify: bool = False,
    memory_policy=None,
    refinement=None,
    step_supports=None,
) -> Inspection:
    """Segment an episode under a setting while capturing its memory attention.

    Parameters
    ----------
    engine : Engine
    episode : Episode
    setting : {"1S1Q", "3S1Q", "S1SFQ", "3SFQ"}
    order : {"middle", "top"}
        FQ settings only.
    plans : sequence of Plan, optional
        Custom plans (see :meth:`Engine.segment`).
    layers, heads, pixels, verify
        See :meth:`MemoryInspector.capture`.
    memory_policy : MemoryPolicy, optional
        Which memories each step attends to (default SAM2's rule; see :meth:`Engine.segment`).
    refinement : Refinement, optional
        Refinement passes (FQ settings; see :meth:`Engine.segment`): each slice's step is the last
        that tracked it; promoted slices appear in the key layout as ``promoted z=...``.
    step_supports : mapping, optional
        Per-slice supports (``swap:K``; see :meth:`Engine.plan_job`), in the layout of their step only.

    Returns
    -------
    Inspection
        Its ``result`` is the run's :class:`EpisodeResult` (with ``keep_banks=True``); the
        logits are those of a run without inspection.
    """
    insp = MemoryInspector()
    with insp.capture(engine, layers=layers, heads=heads, pixels=pixels, verify=verify):
        result = engine.segment(episode, setting, order=order, plans=plans, keep_banks=True,
                                memory_policy=memory_policy, refinement=refinement, step_supports=step_supports)
    return insp.inspection(result, episode, engine=engine)
