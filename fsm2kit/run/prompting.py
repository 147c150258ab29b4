"""Correction prompts in the run path and in own-scan segmentation.

:func:`episode_rounds` matches a prompt file (:mod:`fsm2kit.io.prompts`) to a run's episodes and
checks every correction against its episode (before any model loads);
:func:`segment_corrected` runs one episode's rounds with the inputs of a (setting, ordering) run
(:func:`~fsm2kit.run.support_plans.prepare_runs`), so supports, views, orderings and
memory policies apply as in a run without corrections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np

from ..engine.corrections import Correction, check_rounds, segment_with_corrections
from ..protocol.episodes import Episode
from ..io.prompts import PromptError, PromptFile, label_matches, prompts_json

__all__ = ["corrections_record", "episode_rounds", "label_rounds", "prompt_record", "segment_corrected"]


def _episode_names(episodes: Sequence[Episode]) -> str:
    names = [f"{e.case_id}/{e.label_name}" for e in episodes]
    return ", ".join(names[:8]) + (f" (+{len(names) - 8})" if len(names) > 8 else "")


def episode_rounds(prompts: PromptFile, episodes: Sequence[Episode]) -> list[list[list[Correction]]]:
    """Per episode, its rounds of corrections (rounds without one for it left out).

    Each correction must target exactly the episodes it names: with several episodes, every
    correction needs ``"case"`` and ``"label"``; a correction that names no episode of the run,
    a z outside its episode's query slices and a prompt outside the slice are refused with the
    file, round and correction named.
    """
    eps = list(episodes)
    if len(eps) > 1:
        for r, rnd in enumerate(prompts.rounds):
            for k, p in enumerate(rnd):
                if p.case is None or p.label is None:
                    raise PromptError(
                        f"{prompts.where(r, k)}: the run has {len(eps)} episodes ({_episode_names(eps)}); "
                        'give each correction "case" and "label" keys, e.g. '
                        f'{{"case": "{eps[0].case_id}", "label": "{eps[0].label_name}", "z": {p.correction.z}, ...}}.')
    for r, rnd in enumerate(prompts.rounds):
        for k, p in enumerate(rnd):
            if not any(p.matches(case=e.case_id, label=e.label, label_name=e.label_name) for e in eps):
                raise PromptError(f"{prompts.where(r, k)}: {p.target()} names no episode of the run; "
                                  f"the episodes are {_episode_names(eps)}.")
    return [prompts.rounds_for(case=e.case_id, label=e.label, label_name=e.label_name, z_range=e.z,
                               shape=tuple(e.images.shape[1:])) for e in eps]


def label_rounds(corrections, organs, shape: tuple[int, int, int]) -> dict[int, list[list[Correction]]]:
    """Own-scan segmentation: {label id: rounds} of a query volume of ``shape`` (Z, H, W).

    ``corrections`` is a :class:`~fsm2kit.io.prompts.PromptFile` (``"label"`` keys needed when
    several labels are segmented; z is the query volume's slice index), rounds of
    :class:`Correction` (one label only), or a mapping {label name or id: rounds}. Every
    correction is checked (z in ``0..Z-1``, prompts inside the slice) and must name a label
    being segmented.
    """
    organs = list(organs)
    names = ", ".join(f"{o.name} ({o.label_id})" for o in organs)
    z, h, w = (int(v) for v in shape)
    if corrections is None:
        return {}
    if isinstance(corrections, PromptFile):
        if len(organs) > 1:
            for r, rnd in enumerate(corrections.rounds):
                for k, p in enumerate(rnd):
                    if p.label is None:
                        raise PromptError(f"{corrections.where(r, k)}: {len(organs)} labels are segmented ({names}); "
                                          'give each correction a "label" key (a name or id).')
        for r, rnd in enumerate(corrections.rounds):
            for k, p in enumerate(rnd):
                if p.case is not None:
                    raise PromptError(f"{corrections.where(r, k)}: \"case\" applies to fsm2kit run; segment "
                                      'corrects the query scan: name the "label" only.')
                if not any(p.matches(label=o.label_id, label_name=o.name) for o in organs):
                    raise PromptError(f"{corrections.where(r, k)}: label {p.label} is not segmented; the labels are "
                                      f"{names}.")
        out = {o.label_id: corrections.rounds_for(label=o.label_id, label_name=o.name, z_range=range(z),
                                                  shape=(h, w)) for o in organs}
        return {k: v for k, v in out.items() if v}
    if isinstance(corrections, Mapping):
        out = {}
        for key, rounds in corrections.items():
            match = [o for o in organs if label_matches(key, label=o.label_id, label_name=o.name)]
            if not match:
                raise ValueError(f"corrections for label {key!r}: it is not segmented; the labels are {names}.")
            out[match[0].label_id] = _nonempty(check_rounds(rounds, z=range(z), shape=(h, w), what=f"label {key}: "))
        return {k: v for k, v in out.items() if v}
    if len(organs) > 1:
        raise ValueError(f"corrections: {len(organs)} labels are segmented ({names}); give a mapping "
                         "{label: rounds} or a prompt file with \"label\" keys.")
    rounds = _nonempty(check_rounds(corrections, z=range(z), shape=(h, w), what="corrections: "))
    return {organs[0].label_id: rounds} if rounds else {}


def _nonempty(rounds: list[list[Correction]]) -> list[list[Correction]]:
    return [r for r in rounds if r]


def prompt_record(prompts: PromptFile | None) -> dict | None:
    """What a run record keeps of a prompt file: its path and its content."""
    if prompts is None:
        return None
    return {"file": prompts.source, "rounds": prompts.to_json(), "corrections": prompts.n_corrections}


def corrections_record(corrections, by_label: Mapping[str, list]) -> dict:
    """What a segmentation record keeps of its corrections: the prompt file, or per label the
    rounds as prompt-file JSON (a mask correction as its shape and pixel count)."""
    if isinstance(corrections, PromptFile):
        return prompt_record(corrections)

    def one(c: Correction):
        if c.mask is None:
            return prompts_json([[c]])[0][0]
        m = np.asarray(c.mask, dtype=bool)
        return {"z": int(c.z), "mask": f"{m.shape[0]}x{m.shape[1]}, {int(m.sum())} px"}

    return {name: [[one(c) for c in rnd] for rnd in rounds] for name, rounds in by_label.items()}


def segment_corrected(engine, inputs, e: int, setting: str, rounds, *, memory_policy=None):
    """Episode ``e`` of a run's inputs, with its correction rounds: the final stage's result.

    ``inputs`` is the run's :class:`~fsm2kit.run.support_plans.RunInputs`: a built-in
    order goes by name, a user's ordering (or views) by its plan and supports.
    """
    ep = inputs.episodes[e]
    if "plans" in inputs.kwargs:
        plans = list(inputs.kwargs["plans"][e])
        if len(plans) != 1:
            raise ValueError(f"corrections need one propagation per episode; the ordering gives {len(plans)} plans.")
        run = segment_with_corrections(engine, ep, setting, rounds, plan=plans[0], supports=inputs.supports[e],
                                       memory_policy=memory_policy)
        result = run.final
        result.order = inputs.order
    else:
        run = segment_with_corrections(engine, ep, setting, rounds, order=inputs.kwargs["order"],
                                       memory_policy=memory_policy)
        result = run.final
    return result
