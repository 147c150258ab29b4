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

:class:`InspectedCorrections` is the same inspection for rounds made one at a time (the
correction widget): a :class:`~fsm2kit.engine.corrections.CorrectionSession` whose propagations
are captured, so a round costs one propagation and undo is immediate; its ``inspection`` equals
:func:`inspect_corrections` of the same rounds.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

from ..engine.corrections import Correction, CorrectionRun, CorrectionSession, segment_with_corrections
from ..engine.engine import Engine
from ..protocol.episodes import Episode
from ..engine.memory import MemoryBank
from .capture import MemoryInspector
from .inspection import Inspection

__all__ = ["inspect_corrections", "correction_stages", "InspectedCorrections"]


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
    latest: dict[int, tuple] = {}  # query position -> its latest (record, bank snapshot)
    for r, bank in zip(recs, snaps.banks):
        latest[r.position] = (r, bank)
    return _final_inspection(run, latest, episode, engine, insp.options)


def _final_inspection(run: CorrectionRun, latest: dict, episode: Episode, engine: Engine, options: dict) -> Inspection:
    """The inspection of a run's final stage from each query position's latest captured step."""
    mask_z = set()
    for rnd in run.rounds:
        for c in rnd:
            (mask_z.add if c.mask is not None else mask_z.discard)(int(c.z))
    final = run.final
    steps = []
    for s in sorted(final.slices, key=lambda s: (s.plan_index, s.step)):
        if s.z is not None and int(s.z) in mask_z:
            continue
        r, bank = latest.get(s.position, (None, None))
        if r is None or r.selection != s.selection:
            raise RuntimeError(f"no captured step matches query slice z={s.z} of the final stage; "
                               "the capture and the run disagree.")
        k = len(steps)
        steps.append(replace(r, plan_index=s.plan_index, step=s.step, call=k, bank=bank,
                             pixels=[replace(p, step=k) for p in r.pixels]))
    options = dict(options)
    options["run"] = run
    options["corrected_z"] = sorted({int(c.z) for rnd in run.rounds for c in rnd})
    return Inspection(steps=steps, result=final, episode=episode, engine=engine, options=options)


class InspectedCorrections:
    """Correction rounds one at a time with the memory inspector on (the correction widget's state).

    A :class:`~fsm2kit.engine.corrections.CorrectionSession` whose tracking forwards are
    captured: :meth:`apply` runs one round (its corrections and one propagation), :meth:`undo`
    goes back to the state saved before the last round at once; :attr:`inspection` is the
    inspection of the final stage, equal to :func:`inspect_corrections` of the same rounds.

    Parameters are those of :func:`inspect_corrections`; ``observers`` are extra engine
    observers active during every propagation (e.g. a progress count).
    """

    def __init__(self, engine: Engine, episode: Episode, setting: str, rounds: Sequence[Sequence[Correction]] = (),
                 *, order: str = "middle", plan=None, layers: Sequence[int] | None = None,
                 heads: Sequence[int] | None = None, pixels: Sequence[tuple[int, int]] | None = None,
                 memory_policy=None) -> None:
        self.engine, self.episode = engine, episode
        self._capture = dict(layers=layers, heads=heads, pixels=pixels)
        self._latest: list[dict[int, tuple]] = []
        self._options: dict = {}
        self.session = self._captured(lambda: CorrectionSession(engine, episode, setting, order=order, plan=plan,
                                                                memory_policy=memory_policy))
        for rnd in rounds:
            self.apply(rnd)

    def _captured(self, fn):
        insp = MemoryInspector()
        snaps = _BankSnapshots()
        with insp.capture(self.engine, **self._capture), self.engine.observe(snaps):
            out = fn()
        recs = list(insp.records)
        if len(recs) != len(snaps.banks):
            raise RuntimeError(f"{len(recs)} captured steps but {len(snaps.banks)} observed.")
        latest = dict(self._latest[-1]) if self._latest else {}
        for r, bank in zip(recs, snaps.banks):
            latest[r.position] = (r, bank)
        self._latest.append(latest)
        self._options = insp.options
        return out

    @property
    def rounds(self) -> list:
        return self.session.rounds

    @property
    def run(self) -> CorrectionRun:
        return self.session.run

    @property
    def inspection(self) -> Inspection:
        """The inspection of the final stage (as :func:`inspect_corrections`)."""
        return _final_inspection(self.session.run, self._latest[-1], self.episode, self.engine, self._options)

    def apply(self, corrections: Sequence[Correction]) -> Inspection:
        """One round; returns the new :attr:`inspection`. A refused round changes nothing."""
        n = len(self._latest)
        try:
            self._captured(lambda: self.session.apply(corrections))
        except Exception:
            del self._latest[n:]
            raise
        return self.inspection

    def undo(self) -> Inspection:
        """Drop the last round (no SAM2 step); returns the :attr:`inspection` now."""
        self.session.undo()
        self._latest.pop()
        return self.inspection

    def __repr__(self) -> str:
        return f"InspectedCorrections({self.session!r})"


def correction_stages(inspection: Inspection) -> CorrectionRun | None:
    """The :class:`~fsm2kit.engine.corrections.CorrectionRun` behind an inspection of :func:`inspect_corrections`."""
    return inspection.options.get("run")
