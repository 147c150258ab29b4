"""Class labels: the datasets' label tables, the evaluated classes, and the one label resolver.

Every way of naming a class goes through :class:`LabelMap`: :func:`resolve_label` (the protocol
runs, ``fsm2kit run``) looks names up in the dataset's map, and label volumes, ALP folders and
``fsm2kit segment`` use the same class, so a spelling accepted in one place is accepted, with
the same id, everywhere. Accepted spellings of one organ are listed once, in
:data:`LABEL_ALIASES`; an unknown name is refused with the list of valid ones and never falls
back to another organ.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np

from .checks import as_int, canonical_dataset

__all__ = [
    "DATASET_LABELS",
    "PA_ALL",
    "LABEL_GROUPS",
    "EVALUATED_CLASSES",
    "LABEL_ALIASES",
    "LabelMap",
    "resolve_label",
    "label_name",
    "tested_classes",
]

#: Label ids of the preprocessed datasets (PROTOCOL.md section 2). Names follow SSL-ALPNet.
DATASET_LABELS: dict[str, dict[int, str]] = {
    "SABS": {
        0: "BG",
        1: "SPLEEN",
        2: "RK",
        3: "LK",
        4: "GALLBLADDER",
        5: "ESOPHAGUS",
        6: "LIVER",
        7: "STOMACH",
        8: "AORTA",
        9: "IVC",
        10: "PS_VEIN",
        11: "PANCREAS",
        12: "AG_R",
        13: "AG_L",
    },
    "CHAOST2": {0: "BG", 1: "LIVER", 2: "RK", 3: "LK", 4: "SPLEEN"},
}

#: The four evaluated organs per dataset, ``pa_all`` of SSL-ALPNet (section 2).
PA_ALL: dict[str, frozenset[int]] = {
    "SABS": frozenset({1, 2, 3, 6}),
    "CHAOST2": frozenset({1, 2, 3, 4}),
}

#: SSL-ALPNet label groups; a run with ``label_sets=k`` tests ``PA_ALL - LABEL_GROUPS[k]``.
LABEL_GROUPS: dict[str, tuple[frozenset[int], ...]] = {
    "SABS": (frozenset({1, 6}), frozenset({2, 3})),
    "CHAOST2": (frozenset({1, 4}), frozenset({2, 3})),
}

#: The evaluated class ids per dataset, ascending (spleen, RK, LK, liver / liver, RK, LK, spleen).
EVALUATED_CLASSES: dict[str, tuple[int, ...]] = {k: tuple(sorted(v)) for k, v in PA_ALL.items()}

#: Accepted alternative class names -> canonical name (the one table of synonyms).
#:
#: Keys are normalised spellings: lower case, every run of characters other than ``a-z0-9``
#: replaced by ``_`` (so ``"Right Kidney"``, ``"right-kidney"`` and ``"kidney.right"`` are the
#: keys ``right_kidney`` and ``kidney_right``). An alias and its canonical name form a synonym
#: group: a :class:`LabelMap` whose names use another member of the group (e.g.
#: TotalSegmentator's ``kidney_right``) is matched too.
LABEL_ALIASES: dict[str, str] = {
    "background": "BG",
    "right_kidney": "RK",
    "kidney_right": "RK",
    "kidney_r": "RK",
    "r_kidney": "RK",
    "left_kidney": "LK",
    "kidney_left": "LK",
    "kidney_l": "LK",
    "l_kidney": "LK",
    "gall_bladder": "GALLBLADDER",
    "oesophagus": "ESOPHAGUS",
    "inferior_vena_cava": "IVC",
    "vena_cava_inferior": "IVC",
    "portal_vein": "PS_VEIN",
    "portal_and_splenic_vein": "PS_VEIN",
    "portal_vein_and_splenic_vein": "PS_VEIN",
    "portal_splenic_vein": "PS_VEIN",
    "right_adrenal": "AG_R",
    "right_adrenal_gland": "AG_R",
    "adrenal_gland_right": "AG_R",
    "r_adrenal": "AG_R",
    "left_adrenal": "AG_L",
    "left_adrenal_gland": "AG_L",
    "adrenal_gland_left": "AG_L",
    "l_adrenal": "AG_L",
}


def _norm_name(name: object) -> str:
    """The normalised spelling of a name (see :data:`LABEL_ALIASES`)."""
    return re.sub(r"[^0-9a-z]+", "_", str(name).strip().lower()).strip("_")


def _synonym_groups() -> dict[str, frozenset[str]]:
    members: dict[str, set[str]] = {}
    for alias, canonical in LABEL_ALIASES.items():
        members.setdefault(_norm_name(canonical), {_norm_name(canonical)}).add(_norm_name(alias))
    return {key: frozenset(group) for group in members.values() for key in group}


#: Normalised spelling -> its synonym group (the spelling included).
_SYNONYMS: dict[str, frozenset[str]] = _synonym_groups()

_HELP = "names are case-insensitive; aliases like 'right_kidney'/'kidney_right'/'rk' also work"


class _NoMatch(Exception):
    """No label of the map has this id or name (``kind``: "id", "name" or "fraction")."""

    def __init__(self, kind: str, value: object) -> None:
        super().__init__(kind, value)
        self.kind, self.value = kind, value


def _match(ids: tuple[int, ...], keys: tuple[str, ...], label: object) -> int:
    """The id among ``ids`` (normalised names ``keys``) that ``label`` names.

    ``label`` is an id (int, numpy integer, whole float, digit string) or a name: its normalised
    spelling equals a name's, or lies in the same synonym group as exactly one name.
    """
    if isinstance(label, (bool, np.bool_)):
        raise TypeError(f"A label must be an integer id or a name, got the boolean {label!r}.")
    value: object = label
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", value):
        value = int(value)
    if isinstance(value, Real) and not isinstance(value, Integral):
        if not float(value).is_integer():
            raise _NoMatch("fraction", label)
        value = int(value)
    if isinstance(value, Integral):
        if int(value) in ids:
            return int(value)
        raise _NoMatch("id", int(value))
    if not isinstance(value, str):
        raise TypeError(
            f"A label must be an integer id or a name, got {type(label).__name__} {label!r}."
        )
    key = _norm_name(value)
    if key in keys:
        return ids[keys.index(key)]
    group = _SYNONYMS.get(key, ())
    found = [i for i, k in zip(ids, keys) if k in group]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(
            f"The label name {label!r} is ambiguous here: it names ids {found} alike; "
            "use the id."
        )
    raise _NoMatch("name", label)


@dataclass(frozen=True, eq=True, repr=False, init=False)
class LabelMap:
    """Integer label ids <-> organ names, and the resolver of ids, names and aliases.

    Parameters
    ----------
    names : mapping of int to str
        Label id -> name. Names must be unique (case-insensitively).
    name : str, optional
        A short name for the map itself (e.g. the dataset), shown in the repr.

    Examples
    --------
    >>> lm = LabelMap.from_dataset("SABS")
    >>> lm.resolve("liver"), lm.resolve("rk"), lm.resolve("6"), lm[6]
    (6, 2, 6, 'LIVER')
    """

    ids: tuple[int, ...]
    names: tuple[str, ...]
    name: str

    def __init__(self, names: Mapping[int, str], *, name: str = "") -> None:
        if not isinstance(names, Mapping) or not names:
            raise TypeError(
                "LabelMap expects a non-empty mapping {label_id: name}, e.g. {0: 'BG', 1: 'LIVER'}; "
                f"got {type(names).__name__} {names!r}."
            )
        pairs = sorted((self._as_id(k), str(v)) for k, v in names.items())
        seen: dict[str, int] = {}
        for i, n in pairs:
            key = _norm_name(n)
            if not key:
                raise ValueError(f"LabelMap: label {i} has an empty name {n!r}; give it a name.")
            if key in seen:
                raise ValueError(
                    f"LabelMap: labels {seen[key]} and {i} have the same name {n!r} "
                    "(names are compared case-insensitively); make them unique."
                )
            seen[key] = i
        object.__setattr__(self, "ids", tuple(i for i, _ in pairs))
        object.__setattr__(self, "names", tuple(n for _, n in pairs))
        object.__setattr__(self, "name", str(name))
        object.__setattr__(self, "_keys", tuple(seen))

    @staticmethod
    def _as_id(k: object) -> int:
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"LabelMap ids must be integers, got {k!r} ({type(k).__name__}).")
        return int(k)

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_dataset(cls, dataset: str) -> LabelMap:
        """The label map of a preprocessed dataset (``"SABS"`` or ``"CHAOST2"``)."""
        key = canonical_dataset(dataset)
        return cls(DATASET_LABELS[key], name=key)

    @classmethod
    def coerce(cls, value: LabelMap | str | Mapping[int, str] | None) -> LabelMap | None:
        """Accept a :class:`LabelMap`, a dataset name, a ``{id: name}`` mapping or None."""
        if value is None or isinstance(value, LabelMap):
            return value
        if isinstance(value, str):
            return cls.from_dataset(value)
        if isinstance(value, Mapping):
            return cls(value)
        raise TypeError(
            "label_map must be a LabelMap, a dataset name ('SABS'/'CHAOST2'), a {id: name} "
            f"mapping or None; got {type(value).__name__}."
        )

    # ---------------------------------------------------------------- lookups
    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[int]:
        return iter(self.ids)

    def __contains__(self, item: object) -> bool:
        try:
            self.resolve(item)  # type: ignore[arg-type]
        except (ValueError, TypeError):
            return False
        return True

    def __getitem__(self, label_id: int) -> str:
        """Name of ``label_id``."""
        i = self.resolve(label_id)
        return self.names[self.ids.index(i)]

    def items(self) -> tuple[tuple[int, str], ...]:
        """``((id, name), ...)`` in ascending id order."""
        return tuple(zip(self.ids, self.names))

    def resolve(self, label: int | str) -> int:
        """The label id of ``label``.

        Parameters
        ----------
        label : int or str
            An id (``6``, ``np.int64(6)``, ``6.0``), a digit string (``"6"``), a name in any
            case (``"liver"``, ``"Right Kidney"``, ``"kidney.right"``), or an alias of
            :data:`LABEL_ALIASES` (``"right_kidney"``, ``"kidney_right"``, ``"rk"``, ...).

        Returns
        -------
        int

        Raises
        ------
        ValueError
            Unknown id or name (the message lists the valid ones), or a name that matches
            several labels through their aliases.
        TypeError
            Neither an integer nor a string (booleans included).
        """
        try:
            return _match(self.ids, self._keys, label)  # type: ignore[attr-defined]
        except _NoMatch as exc:
            reason = {
                "id": f"Unknown label id {exc.value}",
                "name": f"Unknown label name {exc.value!r}",
                "fraction": f"Label id {exc.value!r} is not an integer",
            }[exc.kind]
            raise ValueError(f"{reason}; {self._valid()}.") from None

    def _valid(self) -> str:
        listing = ", ".join(f"{i} {n}" for i, n in self.items())
        return f"valid labels of {self.name or 'this map'} are: {listing} ({_HELP})"

    def __repr__(self) -> str:
        body = ", ".join(f"{i}={n}" for i, n in self.items())
        prefix = f"{self.name}: " if self.name else ""
        return f"LabelMap({prefix}{body})"


_DATASET_MAPS: dict[str, LabelMap] = {}


def _dataset_map(ds: str) -> LabelMap:
    lm = _DATASET_MAPS.get(ds)
    if lm is None:
        lm = _DATASET_MAPS[ds] = LabelMap.from_dataset(ds)
    return lm


def resolve_label(dataset: str, name_or_id: int | str) -> int:
    """The class id of a few-shot target given by id, name or alias.

    The lookup is :meth:`LabelMap.resolve` on the dataset's map (so ``fsm2kit run`` and
    ``fsm2kit segment --label-map`` accept the same spellings), except that background is
    refused: it is never a few-shot target.

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
        Dataset name (case-insensitive). The same organ has different ids in the two datasets
        (liver is 6 in SABS and 1 in CHAOST2; PROTOCOL.md section 2).
    name_or_id : int or str
        A class id (``6``, ``np.int64(6)``, ``6.0``, ``"6"``), a canonical name in any case
        (``"liver"``, ``"RK"``), or an alias from :data:`LABEL_ALIASES` (``"right_kidney"``,
        ``"kidney-left"``, ``"left kidney"``, ``"kidney.right"``, ``"vena_cava_inferior"``).
        Runs of characters other than letters and digits count as one underscore.

    Returns
    -------
    int
        The class id in :data:`DATASET_LABELS` ``[dataset]``.

    Raises
    ------
    ValueError
        For background (0), an id or name not in the dataset; the message lists the valid ones.
    TypeError
        For values that are neither integers nor strings.
    """
    ds = canonical_dataset(dataset)
    names = DATASET_LABELS[ds]
    valid = ", ".join(f"{n} ({i})" for i, n in names.items() if i != 0)

    def unknown(reason: str) -> ValueError:
        return ValueError(
            f"{reason} Valid {ds} classes: {valid}. Names are case-insensitive; aliases such as "
            "'right_kidney'/'kidney_right'/'rk' and 'left_kidney'/'lk' are accepted."
        )

    lm = _dataset_map(ds)
    try:
        cid = _match(lm.ids, lm._keys, name_or_id)  # type: ignore[attr-defined]
    except _NoMatch as exc:
        reason = {
            "id": f"Unknown {ds} class id {exc.value}.",
            "name": f"Unknown {ds} class name {exc.value!r}.",
            "fraction": f"Class id {exc.value!r} is not an integer.",
        }[exc.kind]
        raise unknown(reason) from None
    if cid == 0:
        raise unknown("Class 0 is the background, which is never a few-shot target.")
    return cid


def label_name(dataset: str, label: int | str) -> str:
    """Canonical class name of ``label`` in ``dataset`` (e.g. ``label_name("SABS", 6) == "LIVER"``).

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
        Dataset name (case-insensitive).
    label : int or str
        Anything :func:`resolve_label` accepts.

    Returns
    -------
    str
        The name in :data:`DATASET_LABELS`.
    """
    ds = canonical_dataset(dataset)
    return DATASET_LABELS[ds][resolve_label(ds, label)]


def tested_classes(dataset: str, label_sets: int) -> tuple[int, ...]:
    """Classes tested by one SSL-ALPNet / FS-MedSAM2 run: ``pa_all - group[label_sets]``.

    Parameters
    ----------
    dataset : {"SABS", "CHAOST2"}
    label_sets : {0, 1}
        ``0`` tests the kidneys {2, 3}; ``1`` tests spleen and liver ({1, 6} for SABS,
        {1, 4} for CHAOST2). Covering all four organs takes two runs per fold
        (PROTOCOL.md section 2, ``validation.py:69``).

    Returns
    -------
    tuple of int
        The tested class ids, ascending.
    """
    ds = canonical_dataset(dataset)
    k = as_int("label_sets", label_sets)
    groups = LABEL_GROUPS[ds]
    if not 0 <= k < len(groups):
        raise ValueError(
            f"label_sets must be 0 (test the kidneys) or 1 (test liver and spleen); got {k}."
        )
    return tuple(sorted(PA_ALL[ds] - groups[k]))


tested_classes.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name
