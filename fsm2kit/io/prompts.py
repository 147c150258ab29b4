"""Correction prompts as JSON: the file ``fsm2kit run/segment --prompts`` read and the widget saves.

The file is a JSON list of *rounds*; a round is a list of corrections, each on its own slice::

    [[{"z": 16, "points": [[38, 135, 1]]}, {"z": 30, "box": [14, 72, 174, 195]}]]

A correction has ``"z"`` and ``"points"`` (``[x, y, 1 or 0]``: 1 positive, 0 negative), ``"box"``
(``[x0, y0, x1, y1]``) or both, in pixel coordinates of the slice *as stored* (x = column,
y = row; not as displayed). ``"case"`` and ``"label"`` say which episode (``run``) or which
label (``segment``) it corrects; they are needed only when there are several. Each round is
followed by a re-propagation (:func:`fsm2kit.engine.corrections.segment_with_corrections`).

:func:`read_prompts` checks everything the file alone can show (structure, labels 0/1, boxes,
one correction per slice and target in a round) and says where the problem is;
:meth:`PromptFile.rounds_for` checks the rest against an episode (z in its query range,
prompts inside the slice). Mask corrections go through the Python API only.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..engine.corrections import Correction
from ..records.fileio import atomic_write

__all__ = ["PromptError", "label_matches", "Prompt", "PromptFile", "read_prompts", "parse_prompts", "prompts_json", "write_prompts"]

_KEYS = {"z", "points", "box", "case", "label"}


class PromptError(ValueError):
    """A prompt file that cannot be used: the message names the file, round and correction."""


def label_matches(spec: str | int, *, label: int | None = None, label_name: str | None = None) -> bool:
    """Whether ``spec`` (a label id, or a name in any case) names the label ``label`` / ``label_name``."""
    if isinstance(spec, int):
        return label is not None and int(label) == spec
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        return label is not None and int(text) == int(label)
    return label_name is not None and text.lower() == str(label_name).lower()


@dataclass(frozen=True)
class Prompt:
    """One correction of a prompt file with its target (``case``/``label``: None when not given)."""

    correction: Correction
    case: str | None = None
    label: str | int | None = None

    def matches(self, *, case: str | None = None, label: int | None = None, label_name: str | None = None) -> bool:
        """Whether this prompt targets the episode (case id) / label (id or name, any case)."""
        if self.case is not None and case is not None and str(self.case) != str(case):
            return False
        if self.label is not None and (label is not None or label_name is not None):
            return label_matches(self.label, label=label, label_name=label_name)
        return True

    def target(self) -> str:
        parts = ([f"case {self.case}"] if self.case is not None else []) + (
            [f"label {self.label}"] if self.label is not None else [])
        return ", ".join(parts) or "every target"


@dataclass(frozen=True)
class PromptFile:
    """The rounds of a prompt file (see the module docstring); ``source`` is its path or None."""

    rounds: tuple[tuple[Prompt, ...], ...]
    source: str | None = None

    @property
    def n_corrections(self) -> int:
        return sum(len(r) for r in self.rounds)

    def targets(self) -> set[tuple]:
        """The distinct (case, label) pairs the prompts name (None where not given)."""
        return {(p.case, p.label) for r in self.rounds for p in r}

    def rounds_for(self, *, case: str | None = None, label: int | None = None, label_name: str | None = None,
                   z_range: Sequence[int] | None = None, shape: tuple[int, int] | None = None) -> list[list[Correction]]:
        """The corrections for one episode or label, round by round.

        Rounds with no correction for it are left out: each episode is corrected on its own,
        and a round without a correction would re-propagate for nothing. ``z_range`` (the query
        slices' z) and ``shape`` (H, W) check each correction's z and coordinates.
        """
        out = []
        zs = None if z_range is None else {int(z) for z in z_range}
        for r, rnd in enumerate(self.rounds):
            mine = [p.correction for p in rnd if p.matches(case=case, label=label, label_name=label_name)]
            for c in mine:
                where = f"{self.where(r)}, z={c.z}"
                if zs is not None and c.z not in zs:
                    lo, hi = (min(zs), max(zs)) if zs else (None, None)
                    raise PromptError(f"{where}: z={c.z} is outside the query range (z {lo}..{hi}).")
                if shape is not None:
                    try:
                        c.check(shape)
                    except ValueError as e:
                        raise PromptError(f"{where}: {e}") from None
            if mine:
                out.append(mine)
        return out

    def unused(self, used: Sequence[Prompt]) -> list[Prompt]:
        ids = {id(p) for p in used}
        return [p for r in self.rounds for p in r if id(p) not in ids]

    def to_json(self) -> list:
        """The file's content (for run records)."""
        return [[_prompt_dict(p.correction, case=p.case, label=p.label) for p in rnd] for rnd in self.rounds]

    def where(self, r: int, k: int | None = None) -> str:
        """"FILE: round R, correction K" (1-based), for messages."""
        src = Path(self.source).name if self.source else "prompts"
        return f"{src}: round {r + 1}" + ("" if k is None else f", correction {k + 1}")

    def __repr__(self) -> str:
        src = f", {Path(self.source).name}" if self.source else ""
        return f"PromptFile({len(self.rounds)} rounds, {self.n_corrections} corrections{src})"


def _number(v, what: str, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise PromptError(f"{where}: {what} must be a finite number, got {json.dumps(v)}.")
    return float(v)


def _parse_correction(d, where: str) -> Prompt:
    if not isinstance(d, dict):
        raise PromptError(f"{where}: expected an object like {{\"z\": 16, \"points\": [[38, 135, 1]]}}, "
                          f"got {json.dumps(d)[:60]}.")
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        hint = " (a mask correction goes through the Python API only)" if "mask" in unknown else ""
        raise PromptError(f"{where}: unknown key(s) {unknown}; expected z, points, box, case, label{hint}.")
    z = d.get("z")
    if isinstance(z, bool) or not isinstance(z, int) or z < 0:
        raise PromptError(f"{where}: \"z\" must be a slice index (an integer >= 0), got {json.dumps(z)}.")
    points = d.get("points", [])
    if not isinstance(points, list):
        raise PromptError(f"{where}: \"points\" must be a list of [x, y, 1 or 0], got {json.dumps(points)[:60]}.")
    pts = []
    for p in points:
        if not isinstance(p, list) or len(p) != 3:
            raise PromptError(f"{where}: a point must be [x, y, label] (x = column, y = row, label 1 or 0), "
                              f"got {json.dumps(p)}.")
        x, y = _number(p[0], "a point's x", where), _number(p[1], "a point's y", where)
        if isinstance(p[2], bool) or p[2] not in (0, 1):
            raise PromptError(f"{where}: point {json.dumps(p)} has label {json.dumps(p[2])}; "
                              "expected 1 (positive) or 0 (negative).")
        pts.append((x, y, int(p[2])))
    box = d.get("box")
    if box is not None:
        if not isinstance(box, list) or len(box) != 4:
            raise PromptError(f"{where}: \"box\" must be [x0, y0, x1, y1], got {json.dumps(box)}.")
        box = tuple(_number(v, "a box coordinate", where) for v in box)
        if not (box[0] < box[2] and box[1] < box[3]):
            raise PromptError(f"{where}: box {json.dumps(d['box'])} is inverted or empty; "
                              "expected [x0, y0, x1, y1] with x0 < x1 and y0 < y1.")
    if not pts and box is None:
        raise PromptError(f"{where}: the correction on z={z} has no prompt; give \"points\", \"box\" or both.")
    case = d.get("case")
    label = d.get("label")
    if case is not None and not isinstance(case, (str, int)) or isinstance(case, bool):
        raise PromptError(f"{where}: \"case\" must be a case id (text), got {json.dumps(case)}.")
    if label is not None and not isinstance(label, (str, int)) or isinstance(label, bool):
        raise PromptError(f"{where}: \"label\" must be a label name or id, got {json.dumps(label)}.")
    return Prompt(Correction(z, points=pts, box=box), None if case is None else str(case), label)


#: Prompt files larger than this are refused before they are read (a real one is a few kB).
MAX_PROMPT_BYTES = 4 << 20
#: JSON nesting allowed in a prompt file (rounds > corrections > points > [x, y, label] is 4).
MAX_PROMPT_DEPTH = 6
#: Correction rounds allowed unless raised (``--max-rounds``, ``max_rounds=``): each round
#: re-propagates the whole range, so thousands of rounds are hours of work.
MAX_ROUNDS = 100


def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise PromptError(f"the key {dup[0]!r} appears twice in one object; JSON keeps only the last, so say it "
                          "once.")
    return dict(pairs)


def _depth(obj) -> int:
    """Nesting depth of decoded JSON (iterative: no recursion limit)."""
    best, stack = 0, [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, (list, dict)):
            best = max(best, d)
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return best


def round_estimate(n_rounds: int, n_slices: int) -> str:
    """What correction rounds cost: each re-propagates the range (``n_slices`` tracking steps)."""
    steps = (n_rounds + 1) * n_slices
    return (f"{n_rounds} correction round(s) re-propagate {n_slices} slices each: about {steps} tracking steps "
            f"({n_rounds + 1}x a run without corrections)")


def parse_prompts(data, *, source: str | None = None, max_rounds: int | None = MAX_ROUNDS) -> PromptFile:
    """Check a prompt file's content (already decoded JSON) and return it typed.

    More than ``max_rounds`` rounds (default :data:`MAX_ROUNDS`; None: no cap) are refused.
    """
    src = Path(source).name if source else "prompts"
    if not isinstance(data, list) or not all(isinstance(r, list) for r in data):
        raise PromptError(f"{src}: expected a JSON list of rounds, each a list of corrections, e.g. "
                          '[[{"z": 16, "points": [[38, 135, 1]]}]].')
    if not data:
        raise PromptError(f"{src}: the file holds no round; give at least one correction.")
    if max_rounds is not None and len(data) > max_rounds:
        raise PromptError(f"{src}: {len(data)} correction rounds, more than the cap of {max_rounds}; each round "
                          "re-propagates the whole range (thousands of rounds are hours of work): pass "
                          f"--max-rounds {len(data)} (max_rounds={len(data)}) to run them all.")
    rounds = []
    for r, rnd in enumerate(data):
        if not rnd:
            raise PromptError(f"{src}: round {r + 1} is empty; a round holds at least one correction.")
        prompts = [_parse_correction(d, f"{src}: round {r + 1}, correction {k + 1}") for k, d in enumerate(rnd)]
        seen: dict[tuple, int] = {}
        for k, p in enumerate(prompts):
            key = (p.case, None if p.label is None else str(p.label).lower(), p.correction.z)
            if key in seen:
                raise PromptError(f"{src}: round {r + 1}: corrections {seen[key] + 1} and {k + 1} are both on "
                                  f"z={p.correction.z} ({p.target()}); at most one correction per slice in a "
                                  "round (put points and box in one correction, or the second in a new round).")
            seen[key] = k
        rounds.append(tuple(prompts))
    return PromptFile(tuple(rounds), None if source is None else str(source))


def read_prompts(path: str | os.PathLike, *, max_rounds: int | None = MAX_ROUNDS) -> PromptFile:
    """Read and check a prompt file (see the module docstring for the format).

    Bounded before and while reading: a FIFO, a device or a socket is named as such and not
    read; a file over :data:`MAX_PROMPT_BYTES` is refused unread; nesting deeper than
    :data:`MAX_PROMPT_DEPTH`, a key given twice in one object and more than ``max_rounds``
    rounds are refused, each in one line naming the file.
    """
    import stat

    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        raise PromptError(f"prompt file {p} not found.") from None
    if stat.S_ISDIR(st.st_mode):
        raise PromptError(f"prompt file {p} not found (it is a folder).")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise PromptError(f"prompt file {p} is {kind}, not a file; give a JSON file.")
    if st.st_size > MAX_PROMPT_BYTES:
        raise PromptError(f"prompt file {p} is {st.st_size / 2 ** 20:.1f} MB, more than the "
                          f"{MAX_PROMPT_BYTES >> 20} MB a prompt file may have (a real one is a few kB).")
    with open(p, "rb") as f:
        raw = f.read(MAX_PROMPT_BYTES + 1)
    if len(raw) > MAX_PROMPT_BYTES:
        raise PromptError(f"prompt file {p} grew past {MAX_PROMPT_BYTES >> 20} MB while being read.")
    try:
        data = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise PromptError(f"{p.name}: not valid JSON ({e}); expected a list of rounds like "
                          '[[{"z": 16, "points": [[38, 135, 1]]}]].') from None
    except RecursionError:
        raise PromptError(f"{p.name}: JSON nested too deeply (a prompt file nests {MAX_PROMPT_DEPTH} levels at "
                          "most: rounds, corrections, points).") from None
    except PromptError as e:
        raise PromptError(f"{p.name}: {e}") from None
    if _depth(data) > MAX_PROMPT_DEPTH:
        raise PromptError(f"{p.name}: JSON nested {_depth(data)} levels deep, more than the {MAX_PROMPT_DEPTH} "
                          "of a prompt file (rounds, corrections, points).")
    return parse_prompts(data, source=str(p), max_rounds=max_rounds)


def _prompt_dict(c: Correction, *, case=None, label=None) -> dict:
    if c.mask is not None:
        raise PromptError(f"{c!r}: a mask correction cannot be saved as a prompt file; it goes through the "
                          "Python API only.")
    d: dict = {"z": int(c.z)}
    if c.points:
        d["points"] = [[_plain(x), _plain(y), int(lab)] for x, y, lab in c.points]
    if c.box is not None:
        d["box"] = [_plain(v) for v in c.box]
    if case is not None:
        d["case"] = str(case)
    if label is not None:
        d["label"] = label
    return d


def _plain(v: float):
    v = float(v)
    return int(v) if v.is_integer() else round(v, 3)


def prompts_json(rounds: Sequence[Sequence[Correction]], *, case: str | None = None, label=None) -> list:
    """Rounds of :class:`Correction` as the prompt file's JSON content (``case``/``label`` on each)."""
    return [[_prompt_dict(c, case=case, label=label) for c in rnd] for rnd in rounds]


def write_prompts(path: str | os.PathLike, rounds: Sequence[Sequence[Correction]], *, case: str | None = None,
                  label=None, overwrite: bool = False) -> Path:
    """Write rounds of corrections as a prompt file (atomically), replayable by ``--prompts``.

    ``case`` and ``label`` are written on every correction when given (needed when the run has
    several episodes or labels). An existing file is kept unless ``overwrite=True``.
    """
    p = Path(path)
    data = prompts_json(rounds, case=case, label=label)
    parse_prompts(data, source=str(p))  # what is written reads back
    if p.exists() and not overwrite:
        raise FileExistsError(f"{p} exists; pass overwrite=True to replace it.")
    text = "[\n" + ",\n".join(" [\n" + ",\n".join("  " + json.dumps(c) for c in rnd) + "\n ]" for rnd in data) + "\n]\n"
    return atomic_write(p, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
