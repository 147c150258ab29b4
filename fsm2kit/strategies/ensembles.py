"""Ensembles: several runs of one episode, fused, and where they disagree (``--ensemble NAME:MEMBERS``).

An ensemble spec names the fusion rule and the members::

    mean:order=top,middle;support-select=random:0,random:1     # 4 members (the cartesian product)
    vote:views=0,2                                             # 2 members, majority vote
    mean:model=sam2-tiny,sam2.1-tiny;qc=0.2                    # two models; QC flag above 0.2

Each ``KEY=V1,V2,...`` part is one axis of strategy overrides; the members are every combination
(in the order written, the last axis varying fastest). Keys (:data:`MEMBER_KEYS`): ``order``,
``support-select``, ``memory-policy``, ``views`` (support views), ``refine``, ``model``. A value
holding a comma itself (``given:3,9,14``) is not an axis value: use a registered name without one.
``qc=T`` sets the disagreement threshold of the per-slice QC flag (default :data:`DEFAULT_QC`).
Each member is a whole run of the engine (the engine's feature cache is shared, so every slice is
encoded once per model however many members use it).

The fusion rule (the contract): ``rule(probs) -> fused probability``, ``probs`` the members'
foreground probabilities ``sigmoid(logits)``, shape ``(N, ...)``:

``mean`` (default)
    The mean probability; the prediction is ``mean > 0.5``.
``vote``
    The fraction of members predicting foreground; the prediction is a strict majority (> 0.5).

Uncertainty, from the members' probabilities (pure functions, tested by hand):

* :func:`entropy`: per voxel, the binary entropy (bits) of the mean probability;
* :func:`variance`: per voxel, the members' variance of probability;
* :func:`disagreement`: per slice, ``1 - |AND| / |OR|`` of the members' foreground masks
  (0: all agree, 1: no voxel on which all agree; 0 when no member predicts anything); a slice is
  flagged for QC when it exceeds the threshold.

With one member the fused result is that member's run itself (logits unchanged).
Importing this module needs no torch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .registry import Registry

if TYPE_CHECKING:  # the formulas import numpy when called: listing the registry loads none
    import numpy as np

__all__ = ["ENSEMBLES", "register_ensemble", "ensemble_spec", "MEMBER_KEYS", "DEFAULT_QC", "Ensemble", "NO_ENSEMBLE",
           "probabilities", "mean_fusion", "vote_fusion", "fused_logits", "entropy", "variance", "disagreement"]

#: Member axis key -> the :class:`~fsm2kit.run.config.ExperimentConfig` field it overrides.
MEMBER_KEYS = {
    "order": "orders",
    "support-select": "support_selector",
    "memory-policy": "memory_policy",
    "views": "support_views",
    "refine": "refinement",
    "model": "models",
}

#: Default per-slice disagreement above which a slice is flagged for QC.
DEFAULT_QC = 0.3


# ----------------------------------------------------------------------------- formulas
def probabilities(logits: np.ndarray) -> np.ndarray:
    """``sigmoid(logits)`` in float64 (stable for SAM2's -1024 'absent' logits)."""
    import numpy as np

    x = np.asarray(logits, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def mean_fusion(probs: np.ndarray) -> np.ndarray:
    """The members' mean probability (``probs``: (N, ...))."""
    import numpy as np

    return np.asarray(probs, dtype=np.float64).mean(axis=0)


mean_fusion.strategy_name = "mean"


def vote_fusion(probs: np.ndarray) -> np.ndarray:
    """The fraction of members whose probability is above 0.5 (strict majority: > 0.5)."""
    import numpy as np

    return (np.asarray(probs) > 0.5).mean(axis=0)


vote_fusion.strategy_name = "vote"


def fused_logits(p: np.ndarray, *, clip: float = 1024.0) -> np.ndarray:
    """Logits of a fused probability (``logit(p)``, clipped to +-``clip``): ``> 0`` exactly where ``p > 0.5``."""
    import numpy as np

    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore"):
        x = np.log(p) - np.log1p(-p)
    x = np.where(p == 0.5, -0.0, x)  # a tie is not foreground (strict majority)
    return np.clip(np.nan_to_num(x, nan=-clip, posinf=clip, neginf=-clip), -clip, clip).astype(np.float32)


def entropy(p: np.ndarray) -> np.ndarray:
    """Binary entropy in bits of a (mean) probability, per voxel: 0 at p in {0, 1}, 1 at p = 0.5."""
    import numpy as np

    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(np.where(p > 0, p * np.log2(p), 0.0) + np.where(p < 1, (1 - p) * np.log2(1 - p), 0.0))
    return h.astype(np.float32)


def variance(probs: np.ndarray) -> np.ndarray:
    """The members' (population) variance of probability per voxel (``probs``: (N, ...))."""
    import numpy as np

    return np.asarray(probs, dtype=np.float64).var(axis=0).astype(np.float32)


def disagreement(masks: np.ndarray) -> np.ndarray:
    """Per slice, ``1 - |AND| / |OR|`` of the members' masks (``masks``: (N, M, H, W) bool) -> (M,).

    0 when the members agree (or none predicts anything on the slice).
    """
    import numpy as np

    m = np.asarray(masks, dtype=bool)
    union = m.any(axis=0).sum(axis=(-2, -1))
    inter = m.all(axis=0).sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(union > 0, 1.0 - inter / np.maximum(union, 1), 0.0)
    return d.astype(np.float64)


# ----------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Ensemble:
    """An ensemble: the fusion rule, the member axes, the QC threshold.

    Attributes
    ----------
    fusion : {"mean", "vote"}
    axes : tuple of (key, values)
        The member axes (keys of :data:`MEMBER_KEYS`), in the order written.
    qc : float
        Per-slice disagreement above which a slice is flagged.
    """

    fusion: str = "mean"
    axes: tuple = ()
    qc: float = DEFAULT_QC

    @property
    def active(self) -> bool:
        return bool(self.axes)

    @property
    def rule(self) -> Callable[[np.ndarray], np.ndarray]:
        return vote_fusion if self.fusion == "vote" else mean_fusion

    @property
    def strategy_name(self) -> str:
        if not self.axes:
            return "none"
        arg = ";".join(f"{k}={','.join(v)}" for k, v in self.axes)
        return f"{self.fusion}:{arg}" + ("" if self.qc == DEFAULT_QC else f";qc={self.qc:g}")

    def members(self) -> list[tuple[str, dict]]:
        """``[(label, {config field: value})]``: every combination of the axes (the last varies fastest)."""
        out = []
        for combo in itertools.product(*(v for _, v in self.axes)):
            label = ", ".join(f"{k}={v}" for (k, _), v in zip(self.axes, combo))
            over = {}
            for (k, _), v in zip(self.axes, combo):
                field = MEMBER_KEYS[k]
                over[field] = int(v) if field == "support_views" else ((v,) if field in ("orders", "models") else v)
            out.append((label, over))
        return out

    @classmethod
    def parse(cls, fusion: str, text: str) -> "Ensemble":
        """``"order=top,middle;support-select=random:0,random:1;qc=0.2"``."""
        axes, qc, seen = [], DEFAULT_QC, set()
        for part in [p for p in str(text).split(";") if p.strip()]:
            key, sep, values = part.partition("=")
            key = key.strip().lower()
            if not sep:
                raise ValueError(f"expected KEY=V1,V2,... parts separated by ';', got {part.strip()!r}")
            if key in seen:
                raise ValueError(f"{key!r} is given twice")
            seen.add(key)
            if key == "qc":
                try:
                    qc = float(values)
                except ValueError:
                    raise ValueError(f"qc=T takes a number in [0, 1], got {values.strip()!r}") from None
                if not 0.0 <= qc <= 1.0:
                    raise ValueError(f"qc=T takes a number in [0, 1], got {qc:g}")
                continue
            if key not in MEMBER_KEYS:
                raise ValueError(f"unknown member key {key!r}; expected one of {', '.join(MEMBER_KEYS)} (or qc=T)")
            vals = tuple(v.strip() for v in values.split(",") if v.strip())
            if not vals:
                raise ValueError(f"{key}= needs at least one value")
            if len(set(vals)) != len(vals):
                raise ValueError(f"{key}= repeats a value: {','.join(vals)}")
            axes.append((key, vals))
        if not axes:
            raise ValueError("an ensemble needs at least one member axis, e.g. order=top,middle")
        for key, vals in axes:  # every value through its registry, before any model loads
            for v in vals:
                try:
                    _check_value(key, v)
                except (TypeError, ValueError, KeyError) as e:
                    raise ValueError(f"{key}={v}: {' '.join(str(e).split())}") from None
        return cls(fusion, tuple(axes), qc)


def _check_value(key: str, value: str) -> None:
    """Refuse a member value its family does not know (one line)."""
    if key == "order":
        from .orderings import ORDERINGS
        ORDERINGS.get(value)
    elif key == "support-select":
        from .support_selectors import SUPPORT_SELECTORS
        SUPPORT_SELECTORS.get(value)
    elif key == "memory-policy":
        from .memory_policies import MEMORY_POLICIES
        MEMORY_POLICIES.get(value)
    elif key == "refine":
        from .refinement import REFINEMENTS
        REFINEMENTS.get(value)
    elif key == "views":
        from .views import check_views
        check_views(value)
    elif key == "model":
        from ..model.specs import resolve_spec
        resolve_spec(value)


NO_ENSEMBLE = Ensemble()

ENSEMBLES = Registry(
    "ensemble",
    description="several runs (strategy overrides or models) fused, with an uncertainty map and a per-slice QC "
                "flag: NAME:KEY=V1,V2;KEY=...[;qc=T], members the cartesian product",
    default="none",
    option="--ensemble",
)
ENSEMBLES.register("none", NO_ENSEMBLE, origin="fsm2kit", summary="one run, no ensemble")
_MEMBERS = "KEY=V1,V2[;KEY=...][;qc=T]"
_KEYS = f"keys {', '.join(MEMBER_KEYS)}"
ENSEMBLES.register("mean", lambda text: Ensemble.parse("mean", text), arg=_MEMBERS, origin="fsm2kit",
                   summary="members' mean probability (prediction > 0.5); entropy and variance maps, per-slice "
                           "disagreement and QC flag", details=_KEYS)
ENSEMBLES.register("vote", lambda text: Ensemble.parse("vote", text), arg=_MEMBERS, origin="fsm2kit",
                   summary="majority vote of the members (strict: more than half); the same uncertainty outputs",
                   details=_KEYS)


def ensemble_spec(members, *, fusion: str = "mean", qc: float | None = None) -> str:
    """The spec of an ensemble given as ``{key: [values]}`` (a notebook's parameters), e.g.
    ``ensemble_spec({"order": ["top", "middle"], "views": [0, 1]})`` -> ``"mean:order=top,middle;views=0,1"``;
    an empty mapping is ``"none"``. The spec is checked by :data:`ENSEMBLES`."""
    if isinstance(members, str):
        return members
    parts = [f"{k}={','.join(str(v) for v in (vals if isinstance(vals, (list, tuple)) else [vals]))}"
             for k, vals in dict(members).items()]
    if not parts:
        return "none"
    spec = f"{fusion}:{';'.join(parts)}" + ("" if qc is None else f";qc={qc:g}")
    ENSEMBLES.get(spec)
    return spec


def register_ensemble(name: str, factory: Callable | str | None = None, *, summary: str | None = None,
                      arg: str | None = None, default: object = None, parse: Callable | None = None,
                      overwrite: bool = False):
    """Register an ensemble (a factory of :class:`Ensemble` s from the members' text, with ``arg``)."""
    return ENSEMBLES.register(name, factory, summary=summary, arg=arg, default=default, parse=parse,
                              overwrite=overwrite)
