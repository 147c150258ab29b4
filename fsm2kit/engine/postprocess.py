"""Post-processing switches: what turns SAM2's raw outputs into the masks that are scored.

People who reproduce FS-MedSAM2 (arXiv 2409.04298v1) get different numbers when these switches
differ, and nobody records them; fsm2kit makes each one a recorded switch of
:class:`PostProcess`, with the published build's defaults (``build_fsmedsam2.py``: SAM2's own
post-processing on):

``holes:N``
    SAM2's hole filling (``fill_hole_area``): background regions of at most N low-resolution
    pixels inside a predicted mask become foreground (:func:`fsm2kit.model.holes.fill_holes`).
    Published: 8. ``holes:off`` is 0. Acts on the logits (and on the support memories).
``stability:on|off``
    SAM2's dynamic multimask via stability (``dynamic_multimask_via_stability``, delta 0.05,
    threshold 0.98): on a step without points the decoder falls back to its best multimask
    output when the single mask is unstable. Published: on. Acts on the logits.
``lcc:on|off``
    The largest 3D connected component (26-connectivity) of each organ's predicted volume
    (MedSAM2's default post-processing). Published FS-MedSAM2: off. Acts on the final masks
    only: ``logits.npz`` keeps the logits, and the tables say which masks were scored.
``union:on|off``
    Where more than one pass predicts the same query slice (an ordering that runs forward and
    then backward over the same slices), the slice's mask is the union of the passes' masks
    (its logits the element-wise maximum). Off, the last pass wins, as in SAM2's video
    predictor (a later ``propagate_in_video`` overwrites a frame's output). The built-in
    orders ``middle`` and ``top`` predict each slice once, so it changes nothing there.

A spec is a comma-separated list of those items, ``published`` (the defaults) or ``none``
(everything off), e.g. ``holes:off,lcc:on``; items not named keep the published value.
:func:`parse_postprocess` reads one, ``str(pp)`` writes the canonical spec
(``holes:8,stability:on,lcc:off,union:off``) that every record keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = [
    "PostProcess",
    "PUBLISHED_POSTPROCESS",
    "parse_postprocess",
    "largest_component_3d",
    "merge_passes",
]

_ON = {"on": True, "true": True, "yes": True, "1": True, "off": False, "false": False, "no": False, "0": False}


@dataclass(frozen=True)
class PostProcess:
    """The post-processing switches of a run (see the module docstring).

    Parameters
    ----------
    holes : int
        SAM2's ``fill_hole_area`` in low-resolution pixels (0: no hole filling). Published: 8.
    stability : bool
        SAM2's dynamic multimask via stability. Published: True.
    lcc : bool
        Keep the largest 3D connected component of each organ's predicted volume. Published: False.
    union : bool
        Union of the passes that predict the same slice (else the last pass wins). Published: False.
    """

    holes: int = 8
    stability: bool = True
    lcc: bool = False
    union: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.holes, bool) or int(self.holes) != self.holes or int(self.holes) < 0:
            raise ValueError(f"PostProcess.holes must be a whole number >= 0 (0: off), got {self.holes!r}.")
        object.__setattr__(self, "holes", int(self.holes))
        for name in ("stability", "lcc", "union"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"PostProcess.{name} must be True or False, got {getattr(self, name)!r}.")
            object.__setattr__(self, name, bool(getattr(self, name)))

    @property
    def published(self) -> bool:
        """Whether these are the published FS-MedSAM2 switches."""
        return self == PUBLISHED_POSTPROCESS

    @property
    def scored_masks(self) -> str:
        """Which masks the Dice and the other metrics are computed on."""
        return "largest 3D component of logits > 0" if self.lcc else "logits > 0"

    def __str__(self) -> str:
        on = lambda b: "on" if b else "off"  # noqa: E731
        return (f"holes:{self.holes if self.holes else 'off'},stability:{on(self.stability)},"
                f"lcc:{on(self.lcc)},union:{on(self.union)}")


#: The published FS-MedSAM2 build's switches (SAM2's own post-processing).
PUBLISHED_POSTPROCESS = PostProcess()

_ITEMS = ("holes", "stability", "lcc", "union")


def parse_postprocess(spec: "str | PostProcess | None") -> PostProcess:
    """A :class:`PostProcess` from a spec (see the module docstring); None is ``published``.

    >>> str(parse_postprocess("holes:off,lcc:on"))
    'holes:off,stability:on,lcc:on,union:off'
    """
    if spec is None:
        return PUBLISHED_POSTPROCESS
    if isinstance(spec, PostProcess):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"postprocess: expected a spec such as 'holes:8,stability:on,lcc:off,union:off', got "
                        f"{type(spec).__name__}.")
    text = spec.strip().lower()
    if text in ("", "published", "default"):
        return PUBLISHED_POSTPROCESS
    if text == "none":
        return PostProcess(holes=0, stability=False, lcc=False, union=False)
    values: dict = {}
    for item in text.split(","):
        item = item.strip()
        name, sep, value = item.partition(":")
        if not sep:
            name, sep, value = item.partition("=")
        name = name.strip()
        value = value.strip()
        hint = ("expected comma-separated items holes:N|off, stability:on|off, lcc:on|off, union:on|off "
                "(or 'published', 'none')")
        if name not in _ITEMS or not sep or not value:
            raise ValueError(f"postprocess {spec!r}: {item!r} is not an item; {hint}.")
        if name in values:
            raise ValueError(f"postprocess {spec!r}: {name!r} is given twice.")
        if name == "holes":
            if value in ("off", "no", "false"):
                values[name] = 0
            elif value.isdigit():
                values[name] = int(value)
            else:
                raise ValueError(f"postprocess {spec!r}: holes takes a pixel area (e.g. holes:8) or off, got {value!r}.")
        else:
            if value not in _ON:
                raise ValueError(f"postprocess {spec!r}: {name} takes on or off, got {value!r}.")
            values[name] = _ON[value]
    return PostProcess(**values)


def largest_component_3d(mask: np.ndarray) -> np.ndarray:
    """The largest 3D connected component (26-connectivity) of a (Z, H, W) binary volume.

    Ties go to the component met first in C order (lowest label of :func:`scipy.ndimage.label`);
    an empty volume stays empty.
    """
    from scipy import ndimage

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 3:
        raise ValueError(f"largest_component_3d expects a (Z, H, W) volume, got shape {m.shape}.")
    labels, n = ndimage.label(m, structure=np.ones((3, 3, 3), dtype=bool))
    if n <= 1:
        return m.copy()
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    return labels == int(np.argmax(counts))


def merge_passes(slices: Sequence, *, union: bool) -> list:
    """One result per query slice from results in processing order (:class:`~fsm2kit.engine.results.SliceResult`).

    A slice predicted by more than one step keeps the last step's result (SAM2's video predictor
    overwrites a frame's output), or with ``union`` the element-wise maximum of the steps'
    logits (so its mask is the union of theirs), the other fields from the last step. Returns
    the results sorted by position; a list without repeats comes back as it is (sorted).
    """
    from dataclasses import replace

    by_pos: dict[int, list] = {}
    for s in slices:
        by_pos.setdefault(s.position, []).append(s)
    out = []
    for pos in sorted(by_pos):
        group = by_pos[pos]
        last = group[-1]
        if len(group) > 1 and union:
            logits = group[0].logits
            for g in group[1:]:
                logits = np.maximum(logits, g.logits)
            last = replace(last, logits=logits)
        out.append(last)
    return out
