"""Episodes: one query scan, one support scan and one class put together (PROTOCOL.md section 3).

:func:`build_episode` combines the protocol's rules (:mod:`fsm2kit.protocol.slices`) into an
:class:`~fsm2kit.protocol.episode.Episode`; the support slices may come from another rule
(``support_selector``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from numbers import Integral

import numpy as np

from .episode import Episode, Support
from .checks import as_int, canonical_dataset, canonical_variant, check_npart, check_volume
from .labels import DATASET_LABELS, resolve_label
from .slices import chunk_ids, class_slices, scored_range, support_slices

__all__ = ["build_episode"]

#: A support-slice rule: ``(support_label_zhw, label_id, npart) -> one support z per chunk``.
SliceRule = Callable[[np.ndarray, int, int], Sequence[int]]


def build_episode(
    query_image: np.ndarray,
    query_label: np.ndarray,
    support_image: np.ndarray,
    support_label: np.ndarray,
    label: int | str,
    *,
    case_id: object,
    support_case_id: object,
    dataset: str = "",
    fold: int | None = None,
    variant: str = "ALP",
    npart: int = 3,
    label_name: str | None = None,
    support_selector: SliceRule | None = None,
) -> Episode:
    """One 1-way 1-shot episode from a query and a support volume (PROTOCOL.md section 3).

    The query's scored slices come from its own ground truth (:func:`scored_range`), each is
    assigned a chunk (:func:`chunk_ids`), and chunk ``p`` gets the support slice
    :func:`support_slices` ``[p]`` (or ``support_selector(...)[p]``) with the mask
    ``support_label[z] == label``. All ``npart`` supports are returned, even for chunks without
    a scored query slice.

    Parameters
    ----------
    query_image, query_label : ndarray, (Z, H, W)
        Query scan intensities and labels, in the same (z, y, x) order.
    support_image, support_label : ndarray, (Z', H, W)
        Support scan intensities and labels; the in-plane size must match the query's.
    label : int or str
        Class id; a name or alias needs ``dataset`` (see :func:`resolve_label`).
    case_id, support_case_id : keyword-only
        Query and support scan ids (stored as ``str``).
    dataset : {"", "SABS", "CHAOST2"}, keyword-only
        When given, ``label`` is validated against the dataset and its name is looked up.
    fold : int, optional, keyword-only
        Provenance only.
    variant : {"ALP", "GMRD"}, keyword-only
        Scored slices and chunking rule. Default ``"ALP"`` (what FS-MedSAM2 used).
    npart : int, keyword-only
        Number of chunks (odd). Default 3.
    label_name : str, optional, keyword-only
        Overrides the class name (default: the dataset's name, or ``str(label)``).
    support_selector : callable, optional, keyword-only
        The support-slice rule, called as ``support_selector(support_label, label_id, npart)``
        with the (Z', H, W) support label volume, the resolved class id and the number of
        chunks; it returns ``npart`` slice indices, the support slice of chunk 0, 1, ...
        Each must be an integer in ``0..Z'-1`` whose slice contains the class. Default
        ``None``: the protocol's rule, :func:`support_slices`.

    Returns
    -------
    Episode
        ``images`` float32, ``labels`` bool; ``meta`` holds ``z_min``, ``z_max``,
        ``support_z``, ``support_n_slices`` and ``chunk_sizes``.

    Raises
    ------
    ValueError
        On shape mismatches, NaN/inf, an even ``npart``, a class absent from the query or
        support scan, or support slices from ``support_selector`` that are not ``npart``
        in-range slices containing the class.
    """
    v = canonical_variant(variant)
    n_part = check_npart(npart)
    qi = check_volume("query_image", query_image)
    ql = check_volume("query_label", query_label)
    si = check_volume("support_image", support_image)
    sl = check_volume("support_label", support_label)
    if qi.shape != ql.shape:
        raise ValueError(
            f"query_image and query_label differ in shape: {qi.shape} vs {ql.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if si.shape != sl.shape:
        raise ValueError(
            f"support_image and support_label differ in shape: {si.shape} vs {sl.shape}. "
            "Pass the image and label volume of the same scan, both as (Z, H, W)."
        )
    if qi.shape[1:] != si.shape[1:]:
        raise ValueError(
            f"Query and support slices differ in size: {qi.shape[1:]} vs {si.shape[1:]}. "
            "Bring both scans to one in-plane size first (e.g. the [:256, :256] crop for SABS)."
        )

    ds = canonical_dataset(dataset) if dataset else ""
    if ds:
        label_id = resolve_label(ds, label)
        name = label_name if label_name is not None else DATASET_LABELS[ds][label_id]
    else:
        if isinstance(label, str) and not label.strip().isdigit():
            raise ValueError(
                f"Class {label!r} is a name; pass dataset='SABS' or 'CHAOST2' to resolve it, "
                "or give the integer class id."
            )
        label_id = int(label) if isinstance(label, str) else as_int("label", label)
        name = label_name if label_name is not None else str(label_id)

    z = scored_range(ql, label_id, variant=v, case_id=case_id)
    chunks = chunk_ids(z, npart=n_part, variant=v)
    if support_selector is None:
        sz = support_slices(sl, label_id, npart=n_part, case_id=support_case_id)
    else:
        sz = _selected_slices(support_selector, sl, label_id, n_part, support_case_id)
    sup_case = None if support_case_id is None else str(support_case_id)
    supports = tuple(
        Support(
            image=np.asarray(si[s], dtype=np.float32),
            mask=np.asarray(sl[s] == label_id),
            chunk=p,
            z=s,
            case_id=sup_case,
        )
        for p, s in enumerate(sz)
    )
    meta = {
        "z_min": int(z[0]),
        "z_max": int(z[-1]),
        "support_z": tuple(sz),
        "support_n_slices": int(class_slices(sl, label_id).size),
        "chunk_sizes": tuple(int(c) for c in np.bincount(chunks, minlength=n_part)),
    }
    return Episode(
        case_id=str(case_id),
        label=label_id,
        label_name=name,
        z=z,
        images=np.asarray(qi[z], dtype=np.float32),
        labels=np.asarray(ql[z] == label_id),
        chunks=chunks,
        supports=supports,
        dataset=ds,
        fold=fold,
        variant=v,
        npart=n_part,
        meta=meta,
    )


def _selected_slices(
    selector: SliceRule, sl: np.ndarray, label_id: int, npart: int, case_id: object
) -> list[int]:
    """``selector``'s support slices, checked: ``npart`` in-range slices that contain the class."""
    if not callable(selector):
        raise TypeError(
            f"support_selector must be a callable (support_label, label_id, npart) -> slice "
            f"indices, or None for the protocol's rule; got {type(selector).__name__}."
        )
    name = getattr(selector, "__name__", type(selector).__name__)
    case = f" {case_id}" if case_id is not None else ""
    chosen = selector(sl, label_id, npart)
    if isinstance(chosen, (str, bytes)) or np.ndim(chosen) != 1:
        raise ValueError(
            f"support_selector {name} must return a sequence of {npart} slice indices (one per "
            f"chunk); got {chosen!r}."
        )
    chosen = list(chosen)
    if len(chosen) != npart:
        raise ValueError(
            f"support_selector {name} returned {len(chosen)} slice indices {chosen!r}; expected "
            f"npart={npart}, one support slice per chunk."
        )
    out = []
    n_z = sl.shape[0]
    for p, z in enumerate(chosen):
        if isinstance(z, (bool, np.bool_)) or not isinstance(z, Integral):
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p} is {z!r}, not an "
                "integer slice index."
            )
        if not 0 <= int(z) < n_z:
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p} is z={int(z)}, outside "
                f"the support scan{case} (slices 0..{n_z - 1})."
            )
        if not (sl[int(z)] == label_id).any():
            raise ValueError(
                f"support_selector {name}: the support slice of chunk {p}, z={int(z)}, does not "
                f"contain class {label_id} in the support scan{case}; choose slices among "
                f"{class_slices(sl, label_id).tolist()}."
            )
        out.append(int(z))
    return out
