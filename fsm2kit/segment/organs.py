"""Which labels to segment in an own scan: ``"liver=5,spleen=1"``, ids, names through a label map.

:func:`parse_labels` turns what a user writes (CLI ``--labels``, or Python values) into
:class:`OrganSpec` s (a name for people, the id in the support mask and in the output).
:func:`check_label_map_fits` refuses a dataset label map that is not the mask's own (ids in the
examples are those of the bundled CT, TotalSegmentator's: liver 5, stomach 6; in SABS liver is 6).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..protocol.labels import LabelMap

__all__ = ["OrganSpec", "parse_labels", "check_label_map_fits", "describe_ids"]


@dataclass(frozen=True)
class OrganSpec:
    """One requested label: a name for people and the id in the support mask and the output."""

    name: str
    label_id: int

    def __repr__(self) -> str:
        return f"OrganSpec({self.name}={self.label_id})"


def _one_label(item: object, label_map: LabelMap | None) -> OrganSpec:
    if isinstance(item, OrganSpec):
        return item
    if isinstance(item, (bool, np.bool_)):
        raise TypeError(f"A label must be an id or a name, got {item!r}.")
    if isinstance(item, (int, np.integer)):
        lid = int(item)
        name = label_map[lid] if (label_map is not None and lid in label_map.ids) else str(lid)
        return OrganSpec(name, lid)
    if not isinstance(item, str):
        raise TypeError(f"A label must be an id, a name or 'name=id', got {item!r} ({type(item).__name__}).")
    text = item.strip()
    if not text:
        raise ValueError("Empty label in the label list; write e.g. liver=5,spleen=1.")
    if "=" in text:
        name, _, num = text.partition("=")
        name, num = name.strip(), num.strip()
        if not name:
            raise ValueError(f"Label {text!r} has no name before '='; write e.g. liver=5.")
        try:
            lid = int(num)
        except ValueError:
            raise ValueError(f"Label {text!r}: {num!r} is not an integer id; write e.g. liver=5.") from None
        return OrganSpec(name, lid)
    if text.lstrip("+-").isdigit():
        return _one_label(int(text), label_map)
    if label_map is None:
        raise ValueError(
            f"Unknown label name {text!r}: there is no label map to look names up. Give the id "
            f"as {text}=<id> (e.g. --labels {text}=5), or pass a label map (--label-map SABS|CHAOST2)."
        )
    try:
        lid = label_map.resolve(text)
    except ValueError as exc:
        raise ValueError(f"Unknown label name {text!r}: {exc} Or give the id as {text}=<id>.") from None
    return OrganSpec(text, lid)


def parse_labels(
    spec: object = None,
    *,
    label_map: LabelMap | str | Mapping[int, str] | None = None,
    present: Sequence[int] | None = None,
) -> tuple[OrganSpec, ...]:
    """The labels to segment, as :class:`OrganSpec` s (name, id).

    Parameters
    ----------
    spec : str, int, OrganSpec, mapping, sequence or None
        ``"liver=5,spleen=1"`` (name=id pairs; the id is the value in the support mask and in
        the output), ``"5"`` / ``5`` (an id), ``"liver"`` (a name, looked up in ``label_map``),
        ``{"liver": 5}``, or a sequence of any of these. None: every id in ``present``.
    label_map : LabelMap, dataset name or {id: name}, optional, keyword-only
        For names without ids, and to name bare ids.
    present : sequence of int, optional, keyword-only
        Non-zero ids of the support mask (used when ``spec`` is None).

    Raises
    ------
    ValueError
        Unknown names, malformed items, background (0), ids beyond uint16, duplicates.
    """
    lm = LabelMap.coerce(label_map) if not isinstance(label_map, LabelMap) else label_map
    if spec is None:
        if present is None:
            raise ValueError("No labels given and no support mask ids to take them from.")
        ids = sorted({int(i) for i in present if int(i) != 0})
        if not ids:
            raise ValueError("The support mask is empty (all zero): draw the organ on a support slice.")
        items: list = ids
    elif isinstance(spec, str):
        items = [t for t in spec.split(",")]
    elif isinstance(spec, Mapping):
        items = [OrganSpec(str(k), int(v)) for k, v in spec.items()]
    elif isinstance(spec, (OrganSpec, int, np.integer)):
        items = [spec]
    else:
        items = list(spec)  # type: ignore[call-overload]
    out = [_one_label(it, lm) for it in items]
    for o in out:
        if o.label_id == 0:
            raise ValueError(f"Label {o.name!r} has id 0, the background; give the organ's id in the support mask.")
        if not 0 < o.label_id <= 65535:
            raise ValueError(f"Label {o.name!r} has id {o.label_id}; ids must be in 1..65535 (uint16 output).")
    names = [o.name.lower() for o in out]
    dup_n = sorted({n for n in names if names.count(n) > 1})
    dup_i = sorted({o.label_id for o in out if [p.label_id for p in out].count(o.label_id) > 1})
    if dup_n or dup_i:
        raise ValueError(f"Labels repeat (names {dup_n}, ids {dup_i}); list each organ once.")
    return tuple(out)



def describe_ids(ids: Sequence[int], label_map: LabelMap | None = None, *, limit: int = 12) -> str:
    """``"1, 2, 3, ... (41 labels)"``; with a map, ``"1 spleen, 5 liver"`` where the map names them."""
    ids = sorted({int(i) for i in ids if int(i) != 0})
    named = [f"{i} {label_map[i]}" if label_map is not None and i in label_map.ids else str(i) for i in ids]
    text = ", ".join(named[:limit]) + (f", ... ({len(ids)} labels)" if len(ids) > limit else "")
    return text or "none"


def check_label_map_fits(label_map: LabelMap | str, present: Sequence[int]) -> LabelMap:
    """Refuse a label map that is not the mask's own: the mask holds ids the map does not have.

    A dataset map (``--label-map SABS``) names ids as that dataset does (SABS: liver 6); on a mask
    from another source (the bundled CT's TotalSegmentator ids: liver 5, stomach 6) a name
    would pick another organ. Masks whose ids all exist in the map are accepted (nothing more
    can be checked without names in the file).

    Raises
    ------
    ValueError
        One line: the foreign ids, the map's ids, and the fix (ids as stored in the mask).
    """
    lm = LabelMap.coerce(label_map)
    assert lm is not None
    foreign = sorted({int(i) for i in present if int(i) != 0} - set(lm.ids))
    if foreign:
        raise ValueError(
            f"The support mask is not a {lm.name or 'label-map'} mask: it holds ids {describe_ids(foreign)} that "
            f"{lm.name or 'the map'} does not have ({', '.join(f'{i} {n}' for i, n in lm.items() if i)}), so names "
            "would pick the wrong organs. Drop --label-map and give ids as stored in the mask, e.g. "
            "--labels liver=5 on the bundled CT."
        )
    return lm
