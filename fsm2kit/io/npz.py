"""The published FS-MedSAM2 npz dumps (PROTOCOL.md section 6.1) as typed episodes.

:func:`load_npz_episodes` turns a folder of ``{k}_{t}_case_{scanid}_z{z}.npz`` files into one
:class:`~fsm2kit.protocol.episodes.Episode` per (scan, class); :func:`parse_npz_name` reads a name.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..protocol.episodes import Episode, Support
from ..protocol.checks import canonical_dataset
from ..protocol.labels import DATASET_LABELS
from ..protocol.slices import alp_chunk_index

__all__ = ["NpzName", "parse_npz_name", "load_npz_episodes"]

_NPZ_NAME = re.compile(r"^(?P<k>\d+)_(?P<t>\d+)_case_(?P<scan>.+)_z(?P<z>\d+)\.npz$")


class NpzName(NamedTuple):
    """Parsed ``{k}_{t}_case_{scanid}_z{z}.npz`` (PROTOCOL.md 6.1).

    Attributes
    ----------
    k : int
        1-based position of the class in the run's (ascending) test-label set.
    t : int
        1-based slice counter over the fold's validation set, restarting per class.
    scan_id : str
        Query scan id.
    z : int
        Query slice index.
    """

    k: int
    t: int
    scan_id: str
    z: int

    @property
    def group_key(self) -> str:
        """The FS-MedSAM2 notebook's grouping key ``"{scan_id}_{k}"``."""
        return f"{self.scan_id}_{self.k}"


def parse_npz_name(name: str | os.PathLike) -> NpzName:
    """Parse an FS-MedSAM2 npz file name, e.g. ``1_13_case_1_z12.npz`` -> ``(1, 13, "1", 12)``."""
    base = os.path.basename(os.fspath(name))
    m = _NPZ_NAME.match(base)
    if not m:
        raise ValueError(
            f"{base!r} is not an FS-MedSAM2 npz name; expected '{{k}}_{{t}}_case_{{scanid}}_"
            "z{z}.npz', e.g. '1_13_case_1_z12.npz'."
        )
    return NpzName(int(m["k"]), int(m["t"]), m["scan"], int(m["z"]))


def _first_channel(a: np.ndarray, what: str, fname: str) -> np.ndarray:
    if a.ndim != 4 or a.shape[0] != 1 or a.shape[1] < 1:
        raise ValueError(f"{fname}: {what} should have shape (1, 3, H, W), got {a.shape}.")
    ch = a[0]
    if np.issubdtype(ch.dtype, np.floating) and not np.isfinite(ch).all():
        bad = ~np.isfinite(ch)
        raise ValueError(
            f"{fname}: {what} holds {int(bad.sum())} NaN or inf values (first at channel, row, column "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}); the FS-MedSAM2 dumps hold finite intensities, so "
            "the file is damaged or was not written by the dump code: export it again."
        )
    if not all(np.array_equal(ch[0], ch[c]) for c in range(1, ch.shape[0])):
        raise ValueError(
            f"{fname}: the {ch.shape[0]} channels of {what} differ; the FS-MedSAM2 dumps repeat "
            "one grey image on 3 channels, so this file is not such a dump."
        )
    return np.ascontiguousarray(ch[0], dtype=np.float32)


def _plane(a: np.ndarray, what: str, fname: str) -> np.ndarray:
    if a.ndim != 3 or a.shape[0] != 1:
        raise ValueError(f"{fname}: {what} should have shape (1, H, W), got {a.shape}.")
    return a[0]


@dataclass(frozen=True, eq=False)
class _NpzSlice:
    name: NpzName
    fname: str
    label: int
    image: np.ndarray
    gt: np.ndarray
    sup_hash: str
    sup_image: np.ndarray
    sup_mask: np.ndarray
    n_scan: int | None


def _read_npz(path: Path) -> _NpzSlice:
    name = parse_npz_name(path.name)
    need = ("query_images", "query_labels", "sup_img_part", "sup_fgm_part", "labels")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):  # a bare .npy array, not an npz archive
                raise ValueError("a single array, not an npz archive")
            files = list(f.files)
            missing = [k for k in need if k not in files]
            if not missing:
                arrs = {k: f[k] for k in need}
                n_scan = int(f["n_scan"]) if "n_scan" in files else None
    except (OSError, EOFError, ValueError, KeyError, zlib.error, struct.error, zipfile.BadZipFile) as exc:
        why = ("not an npz (zip) archive of arrays" if isinstance(exc, (ValueError, zipfile.BadZipFile))
               else f"{type(exc).__name__}: {' '.join(str(exc).split())}")  # never numpy's pickle advice
        raise ValueError(f"{path} is not a readable npz file ({why}); replace or remove it.") from exc
    if missing:
        raise ValueError(
            f"{path.name}: missing keys {missing}; an FS-MedSAM2 dump has "
            f"{list(need)} (+ sup_bgm_part, n_scan). Found {sorted(files)}."
        )
    lab = np.ravel(arrs["labels"])
    if lab.size != 1:
        raise ValueError(f"{path.name}: 'labels' should hold one class id, got {arrs['labels']!r}.")
    image = _first_channel(arrs["query_images"], "query_images", path.name)
    gt = _plane(arrs["query_labels"], "query_labels", path.name) > 0.5
    sup = arrs["sup_img_part"]
    sup_image = _first_channel(sup, "sup_img_part", path.name)
    sup_mask = _plane(arrs["sup_fgm_part"], "sup_fgm_part", path.name) > 0.5
    if gt.shape != image.shape or sup_image.shape != image.shape or sup_mask.shape != image.shape:
        raise ValueError(
            f"{path.name}: query image {image.shape}, query label {gt.shape}, support image "
            f"{sup_image.shape} and support mask {sup_mask.shape} must share one (H, W)."
        )
    h = hashlib.sha1()
    h.update(str((sup.shape, sup.dtype.str)).encode())
    h.update(np.ascontiguousarray(sup).tobytes())
    return _NpzSlice(
        name=name,
        fname=path.name,
        label=int(lab[0]),
        image=image,
        gt=gt,
        sup_hash=h.hexdigest(),
        sup_image=sup_image,
        sup_mask=sup_mask,
        n_scan=n_scan,
    )


def _scan_sort_key(scan_id: str) -> tuple:
    return (0, int(scan_id), "") if scan_id.isdigit() else (1, 0, scan_id)


def load_npz_episodes(
    folder: str | os.PathLike, *, dataset: str = "CHAOST2", npart: int = 3
) -> list[Episode]:
    """Turn a folder of FS-MedSAM2 npz dumps into one :class:`Episode` per (scan, class).

    Parameters
    ----------
    folder : path-like
        Files ``{k}_{t}_case_{scanid}_z{z}.npz`` (PROTOCOL.md 6.1); non-npz files are skipped.
        One folder must hold one label set (the two sets' names collide, PROTOCOL.md A8).
    dataset : {"CHAOST2", "SABS"}, keyword-only
        Names the class ids (``labels`` in each file).
    npart : int, keyword-only
        Number of chunks of the [ALP] protocol (3).

    Returns
    -------
    list of Episode
        Sorted by (numeric scan id, class id). Query slices sorted by z: ``images`` is channel 0
        of ``query_images`` (float32), ``labels`` is ``query_labels > 0.5``. Files with identical
        ``sup_img_part`` share one :class:`Support` (mask ``sup_fgm_part > 0.5``, ``z`` and
        ``case_id`` unknown). Chunks follow [ALP]: ``min(floor(npart (z - z_min) /
        (z_max - z_min)), npart - 1)`` over the dumped z range; a support's chunk is that of
        its query slices.

    Raises
    ------
    FileNotFoundError
        The folder does not exist.
    ValueError
        No npz files, a badly named or malformed file, mixed channels, a support used in two
        chunks, two supports for one chunk, or a duplicate (scan, class, z).
    """
    key = canonical_dataset(dataset)
    names = DATASET_LABELS[key]
    if int(npart) < 1:
        raise ValueError(f"npart must be >= 1, got {npart}.")
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"npz folder not found: {folder} (absolute: {folder.absolute()}).")
    paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".npz")
    if not paths:
        found = sorted(p.name for p in folder.iterdir())[:10]
        raise ValueError(f"No .npz files in {folder}; found: {found or 'nothing'}.")
    for p in paths:  # name check first, so a bad name fails before any data is read
        parse_npz_name(p.name)

    groups: dict[tuple[str, int], list[_NpzSlice]] = {}
    for p in paths:
        s = _read_npz(p)
        if s.label not in names:
            raise ValueError(
                f"{s.fname}: class id {s.label} is not a {key} label ({dict(names)}); "
                "pass the right dataset=... ('SABS' or 'CHAOST2')."
            )
        groups.setdefault((s.name.scan_id, s.label), []).append(s)

    episodes: list[Episode] = []
    for (scan_id, label) in sorted(groups, key=lambda g: (_scan_sort_key(g[0]), g[1])):
        slices = sorted(groups[(scan_id, label)], key=lambda s: s.name.z)
        zs = [s.name.z for s in slices]
        dup = sorted({z for z in zs if zs.count(z) > 1})
        if dup:
            files = [s.fname for s in slices if s.name.z in dup]
            raise ValueError(
                f"Scan {scan_id}, class {label}: slices z={dup} occur more than once ({files}). "
                "Dumps of different label sets or folds were mixed in one folder; keep one run "
                "per folder."
            )
        z_min, z_max = zs[0], zs[-1]
        chunks = [alp_chunk_index(z, z_min, z_max, int(npart)) for z in zs]

        sup_chunks: dict[str, set[int]] = {}
        sup_first: dict[str, _NpzSlice] = {}
        for s, c in zip(slices, chunks):
            sup_chunks.setdefault(s.sup_hash, set()).add(c)
            first = sup_first.setdefault(s.sup_hash, s)
            if not np.array_equal(first.sup_mask, s.sup_mask):
                raise ValueError(
                    f"{first.fname} and {s.fname} share a support image but not its mask."
                )
        claimed: dict[int, str] = {}
        supports = []
        for hsh, cs in sup_chunks.items():
            users = [s.fname for s in slices if s.sup_hash == hsh]
            if len(cs) > 1:
                raise ValueError(
                    f"Scan {scan_id}, class {label}: one support image is used by query slices "
                    f"of chunks {sorted(cs)} ({users}); with npart={npart} each chunk has its "
                    "own support. Check npart or the dump."
                )
            (c,) = cs
            if c in claimed:
                raise ValueError(
                    f"Scan {scan_id}, class {label}: two different support images claim chunk "
                    f"{c} (used by {claimed[c]} and {users[0]}); check npart or the dump."
                )
            claimed[c] = users[0]
            first = sup_first[hsh]
            try:
                supports.append(Support(image=first.sup_image, mask=first.sup_mask, chunk=c))
            except ValueError as exc:
                raise ValueError(f"Support of chunk {c} (file {first.fname}): {exc}") from exc
        supports.sort(key=lambda s: s.chunk)

        episodes.append(
            Episode(
                case_id=scan_id,
                label=label,
                label_name=names[label],
                z=np.asarray(zs, dtype=np.int64),
                images=np.stack([s.image for s in slices]).astype(np.float32, copy=False),
                labels=np.stack([s.gt for s in slices]),
                chunks=np.asarray(chunks, dtype=np.int64),
                supports=tuple(supports),
                dataset=key,
                fold=None,
                variant="ALP",
                npart=int(npart),
                meta={
                    "source": str(folder),
                    "files": tuple(s.fname for s in slices),
                    "group_key": slices[0].name.group_key,
                    "k": sorted({s.name.k for s in slices}),
                    "n_scan": sorted({s.n_scan for s in slices if s.n_scan is not None}),
                },
            )
        )
    return episodes
