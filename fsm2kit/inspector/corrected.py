"""Memory attention of a corrected run: the inspection of the last re-propagation.

:func:`inspect_corrections` runs :func:`~fsm2kit.engine.corrections.segment_with_corrections`
(propagation, then per round: corrections and the same propagation) while capturing every
tracking forward, and returns the :class:`~fsm2kit.inspector.inspection.Inspection` of the
final stage: one step per query slice in processing order, the slices re-tracked by the last
propagation with that propagation's attention, and each corrected slice (a conditioning memory,
not re-tracked) with the attention of its latest correction step (the prompts go to the mask
decoder; the memory attention of that step is what this records). The steps after a corrected
slice attend to its conditioning memory: in the charts it is the role ``query (SAM2 d=0)``.

Each step keeps a snapshot of the memory bank it attended to (a re-propagation replaces the
memories of earlier propagations as it goes), so attention maps recomputed on demand
(:meth:`Inspection.pixel_attention`) use the memories of the time.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from ..engine.corrections import Correction, CorrectionRun, segment_with_corrections
from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..engine.memory import MemoryBank
from .capture import MemoryInspector
from .inspection import Inspection

__all__ = ["inspect_corrections", "correction_stages"]


class _BankSnapshots:
    """An engine observer: per tracked step, a copy of the bank as the step saw it (entries are not copied)."""

    def __init__(self) -> None:
        self.banks: list[MemoryBank] = []

    def before_forward(self, requests, layouts) -> None:
        for r in requests:
            b = r.bank
            self.banks.append(MemoryBank(b.num_frames, dict(b.cond), dict(b.non_cond)))

    def after_forward(self, requests, outputs) -> None:
        pass

    def __repr__(self) -> str:
        return f"_BankSnapshots({len(self.banks)} steps)"


def inspect_corrections(
    engine: Engine,
    episode: Episode,
    setting: str,
    rounds: Sequence[Sequence[Correction]] = (),
    *,
    order: str = "middle",
    plan=None,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    verify: bool = False,
    memory_policy=None,
) -> Inspection:
    """Segment an episode, apply correction rounds, and inspect the final re-propagation.

    Parameters
    ----------
    engine : Engine
    episode : Episode
    setting : {"S1SFQ", "3SFQ"}
    rounds : sequence of sequences of Correction
        Stored pixel coordinates (see :class:`~fsm2kit.engine.corrections.Correction`). Empty:
        the inspection of the plain propagation (as :func:`inspect_episode`).
    order, plan, memory_policy
        As in :func:`~fsm2kit.engine.corrections.segment_with_corrections`.
    layers, heads, pixels, verify
        See :meth:`MemoryInspector.capture`.

    Returns
    -------
    Inspection
        ``result`` is the final stage (``CorrectionRun.final``, with its memory bank);
        ``options["run"]`` is the whole :class:`~fsm2kit.engine.corrections.CorrectionRun`
        (every stage, for comparisons; :func:`correction_stages`). A slice whose latest
        correction is a mask has no tracking step and no step in the inspection.
    """
    insp = MemoryInspector()
    snaps = _BankSnapshots()
    with insp.capture(engine, layers=layers, heads=heads, pixels=pixels, verify=verify), engine.observe(snaps):
        run = segment_with_corrections(engine, episode, setting, rounds, order=order, plan=plan,
                                       memory_policy=memory_policy, keep_bank=True)
    recs = list(insp.records)
    if len(recs) != len(snaps.banks):
        raise RuntimeError(f"{len(recs)} captured steps but {len(snaps.banks)} observed: the capture missed forwards.")
    mask_z = set()
    for rnd in run.rounds:
        for c in rnd:
            (mask_z.add if c.mask is not None else mask_z.discard)(int(c.z))
    final = run.final
    latest: dict[int, int] = {}  # query position -> index of its latest record
    for i, r in enumerate(recs):
        latest[r.position] = i
    steps = []
    for s in sorted(final.slices, key=lambda s: (s.plan_index, s.step)):
        if s.z is not None and int(s.z) in mask_z:
            continue
        i = latest.get(s.position)
        r = None if i is None else recs[i]
        if r is None or r.selection != s.selection:
            raise RuntimeError(f"no captured step matches query slice z={s.z} of the final stage; "
                               "the capture and the run disagree.")
        k = len(steps)
        steps.append(replace(r, plan_index=s.plan_index, step=s.step, call=k, bank=snaps.banks[i],
                             pixels=[replace(p, step=k) for p in r.pixels]))
    options = insp.options
    options["run"] = run
    options["corrected_z"] = sorted({int(c.z) for rnd in run.rounds for c in rnd})
    return Inspection(steps=steps, result=final, episode=episode, engine=engine, options=options)


def correction_stages(inspection: Inspection) -> CorrectionRun | None:
    """The :class:`~fsm2kit.engine.corrections.CorrectionRun` behind an inspection of :func:`inspect_corrections`."""
    return inspection.options.get("run")
