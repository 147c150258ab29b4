"""The one provenance record: how an output of fsm2kit was made.

Every file fsm2kit writes next to its results carries one :class:`Provenance` (as JSON): the
experiment folder's ``provenance.json`` (``fsm2kit run`` and the notebooks), the sidecar of
``fsm2kit segment`` and the ``inspect.json`` of ``fsm2kit inspect``. It records

* the model(s): :meth:`SAM2Model.provenance() <fsm2kit.model.loading.SAM2Model.provenance>` of each,
  whose ``weights`` read ``"sha256:<checkpoint hash>"`` or ``"random weights (seed N)"``, with its
  image size, precision, the weights' ``licence`` (Apache-2.0 for SAM2, CC-BY-SA-4.0 for MedSAM2)
  and ``training_data_caveat`` (MedSAM2: its training data may include Synapse/BTCV and CHAOS);
* the FS-MedSAM2 settings and orders that ran;
* the strategies used: the support selector and the memory policy (the order is the ordering);
* the protocol variant(s) of the episodes (none for own scans);
* the versions of fsm2kit, torch, sam2 and Python, the platform, the command line (when there
  is one) and the time the output was finished;
* ``details``: what else that kind of output records (configs, timing, per-label scores, ...),
  written at the top level of the JSON next to the fields above.

Random weights are said in three places: ``weights``, ``random_weights`` and ``note``
(:data:`RANDOM_NOTE`).
"""

from __future__ import annotations

import platform as _platform
import shlex
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

__all__ = ["RANDOM_NOTE", "Provenance", "command_line", "inspection_provenance"]

#: Said next to every number computed with random weights.
RANDOM_NOTE = "RANDOM WEIGHTS: these numbers say nothing about SAM2 or FS-MedSAM2 (smoke run only)"

_RANDOM = "random weights"


def command_line(args: Iterable[str] | None = None, *, prog: str = "fsm2kit") -> str:
    """The command as typed: ``prog`` and the arguments (default ``sys.argv[1:]``), shell-quoted."""
    return shlex.join([prog, *(sys.argv[1:] if args is None else args)])


def _names(values: Iterable) -> tuple[str, ...]:
    return tuple(dict.fromkeys(str(v) for v in values if v is not None))


@dataclass(frozen=True)
class Provenance:
    """How an output was made (see the module docstring); :meth:`to_dict` is its JSON.

    Attributes
    ----------
    kind : str
        ``"experiment"`` (``fsm2kit run``, notebooks), ``"segment"`` or ``"inspect"``.
    models : tuple of dict
        :meth:`SAM2Model.provenance` of each model used.
    settings, orders : tuple of str
        FS-MedSAM2 settings and orders (``"n/a"`` for the 1Q settings).
    support_selector : str
        How the support slices were chosen (``"protocol"`` for episodes built by the protocol).
    memory_policies : tuple of str
        Memory policies of the runs (``"sam2"``: SAM2's own rule).
    protocol_variants : tuple of str
        ``"ALP"`` / ``"GMRD"`` of the episodes; empty for own scans.
    command : str or None
        The command line, when the output came from one.
    details : dict
        Kind-specific fields, written at the JSON's top level (they may not reuse its keys).
    """

    kind: str
    models: tuple[dict, ...]
    settings: tuple[str, ...] = ()
    orders: tuple[str, ...] = ()
    support_selector: str = "protocol"
    memory_policies: tuple[str, ...] = ("sam2",)
    protocol_variants: tuple[str, ...] = ()
    command: str | None = None
    details: dict = field(default_factory=dict)
    python: str = field(default_factory=_platform.python_version)
    platform: str = field(default_factory=_platform.platform)
    finished: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def __post_init__(self) -> None:
        s = object.__setattr__
        models = tuple(dict(m) for m in self.models)
        if not models:
            raise ValueError("Provenance needs the provenance of at least one model.")
        s(self, "models", models)
        for name in ("settings", "orders", "memory_policies", "protocol_variants"):
            s(self, name, _names(getattr(self, name)))
        s(self, "details", dict(self.details))

    # ------------------------------------------------------------------ derived
    @property
    def weights(self) -> str:
        """The weights of all models, e.g. ``"random weights (seed 0)"`` or ``"sha256:..."``."""
        return "; ".join(_names(m.get("weights") for m in self.models))

    @property
    def random_weights(self) -> bool:
        """True when any model had random weights (then no number means anything)."""
        return any(bool(m.get("random_weights")) or _RANDOM in str(m.get("weights", "")) for m in self.models)

    @property
    def note(self) -> str:
        """:data:`RANDOM_NOTE` for random weights, else empty."""
        return RANDOM_NOTE if self.random_weights else ""

    @property
    def versions(self) -> dict[str, str | None]:
        """Versions of fsm2kit, torch and sam2 (from the models' provenance) and Python."""
        m = self.models[0]
        return {"fsm2kit": m.get("fsm2kit_version"), "torch": m.get("torch_version"),
                "sam2": m.get("sam2_version"), "python": self.python}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict:
        """The JSON-able record: the fields above, then ``details`` at the top level."""
        out = {
            "tool": "fsm2kit",
            "kind": self.kind,
            "command": self.command,
            "weights": self.weights,
            "random_weights": self.random_weights,
            "note": self.note,
            "models": [dict(m) for m in self.models],
            "settings": list(self.settings),
            "orders": list(self.orders),
            "support_selector": self.support_selector,
            "memory_policy": list(self.memory_policies),
            "protocol_variant": list(self.protocol_variants),
            "versions": self.versions,
            "platform": self.platform,
            "finished": self.finished,
        }
        clash = sorted(set(out) & set(self.details))
        if clash:
            raise ValueError(f"Provenance.details may not reuse the record's keys {clash}.")
        out.update(self.details)
        return out

    def with_details(self, details: Mapping | None = None, *, command: str | None = None) -> "Provenance":
        """A copy with more details (and the command line, when given)."""
        return replace(self, details={**self.details, **dict(details or {})},
                       command=self.command if command is None else command)

    def __repr__(self) -> str:
        runs = "+".join(self.settings) + (f" ({'/'.join(self.orders)})" if self.orders else "")
        models = ", ".join(str(m.get("model")) for m in self.models)
        return (f"Provenance({self.kind}: {models}; {runs or '-'}; support {self.support_selector}; "
                f"memory {'/'.join(self.memory_policies)}; {self.weights})")


#: Fields of :attr:`Inspection.provenance <fsm2kit.inspector.inspection.Inspection.provenance>` kept
#: as details of an inspection's record (what was inspected and how it was captured).
_INSPECTION_DETAILS = ("case_id", "label", "label_name", "dataset", "fold", "layers", "heads", "verify",
                       "max_rel_error", "inspector")


def inspection_provenance(inspection, *, command: str | None = None) -> Provenance:
    """The record of a memory-attention inspection (kind ``"inspect"``; ``fsm2kit inspect``'s
    ``inspect.json``): the run's model, setting, order, memory policy and protocol variant, with
    the episode and the capture settings (layers, heads, verification error) as details."""
    r, capture = inspection.result, inspection.provenance
    return Provenance(
        kind="inspect",
        models=(r.provenance,),
        settings=(r.setting,),
        orders=(r.order or "n/a",),
        support_selector="protocol",
        memory_policies=(r.memory_policy,),
        protocol_variants=(capture.get("variant"),),
        command=command,
        details={k: capture.get(k) for k in _INSPECTION_DETAILS},
    )
