"""The raw downloads that ``fsm2kit prepare`` reads: BTCV (Synapse) and CHAOS folder layouts.

:func:`find_synapse_scans` and :func:`find_chaos_scans` list the labelled scans of a download
with the ids SSL-ALPNet gives them (PROTOCOL.md 1.1 and 1.2), or say what is wrong with the
folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RawScan", "find_synapse_scans", "find_chaos_scans"]


@dataclass(frozen=True)
class RawScan:
    """One raw scan found in a download: its output id and source files."""

    scan_id: str
    image: Path
    label: Path
    raw_id: str

    def __repr__(self) -> str:
        return f"RawScan(id={self.scan_id}, raw={self.raw_id}, image={self.image.name}, label={self.label.name})"


def _listing(folder: Path, limit: int = 10) -> str:
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError:
        return "(unreadable)"
    if not names:
        return "nothing"
    return ", ".join(names[:limit]) + (f" ... ({len(names)} entries)" if len(names) > limit else "")


def _check_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {path} (absolute: {path.absolute()}).")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} must be a folder, got the file {path}.")
    return path


_SYN_IMG = re.compile(r"^img(\d+)\.nii(\.gz)?$")
_SYN_LAB = re.compile(r"^label(\d+)\.nii(\.gz)?$")

_SYNAPSE_LAYOUT = (
    "Expected the BTCV 'Abdomen' training data: RAW_DIR/img/imgXXXX.nii.gz and "
    "RAW_DIR/label/labelXXXX.nii.gz (30 labelled scans, 0001-0010 and 0021-0040; e.g. "
    "RawData/Training of the Synapse download). See data/README.md."
)


def find_synapse_scans(raw_dir: str | os.PathLike) -> list[RawScan]:
    """The labelled BTCV scans of ``raw_dir``, re-indexed as SSL-ALPNet does (PROTOCOL.md 1.1).

    Images are sorted lexicographically by file name and numbered 0, 1, ...; each must have
    the label file with the same number. Anything else is refused with a message saying what
    was found.

    Returns
    -------
    list of RawScan
        ``scan_id`` "0".."N-1", ``raw_id`` the BTCV number (e.g. "0021").
    """
    raw = _check_dir(Path(raw_dir), "Synapse RAW_DIR")
    img_dir, lab_dir = raw / "img", raw / "label"
    if not img_dir.is_dir() or not lab_dir.is_dir():
        nested = [p for p in (raw / "Training", raw / "RawData" / "Training", raw / "Abdomen" / "RawData" / "Training")
                  if (p / "img").is_dir()]
        hint = f" Did you mean {nested[0]}?" if nested else ""
        raise ValueError(f"{raw} is not a BTCV training folder: it holds {_listing(raw)}. {_SYNAPSE_LAYOUT}{hint}")
    imgs: dict[str, Path] = {}
    labs: dict[str, Path] = {}
    strays: list[str] = []
    for folder, pat, dest in ((img_dir, _SYN_IMG, imgs), (lab_dir, _SYN_LAB, labs)):
        for p in sorted(folder.iterdir()):
            if p.name.startswith("."):
                continue
            m = pat.match(p.name)
            if m and p.is_file():
                dest[m.group(1)] = p
            else:
                strays.append(f"{folder.name}/{p.name}")
    if strays:
        raise ValueError(
            f"{raw}: unexpected files {strays[:8]}{' ...' if len(strays) > 8 else ''}. {_SYNAPSE_LAYOUT} "
            "Remove or move the other files."
        )
    if not imgs:
        raise ValueError(f"{img_dir} holds no imgXXXX.nii.gz files. {_SYNAPSE_LAYOUT}")
    unpaired = sorted(set(imgs) ^ set(labs))
    if unpaired:
        only_img = [f"img{n}" for n in unpaired if n in imgs]
        only_lab = [f"label{n}" for n in unpaired if n in labs]
        raise ValueError(
            f"{raw}: images and labels do not pair up (images without a label: {only_img[:8]}; "
            f"labels without an image: {only_lab[:8]}). The re-indexing pairs sorted lists, so "
            f"every image needs its label. Test images have no labels: use only the training folder. "
            f"{_SYNAPSE_LAYOUT}"
        )
    ordered = sorted(imgs, key=lambda n: imgs[n].name)  # lexicographic, as glob + sorted
    return [RawScan(str(i), imgs[n], labs[n], n) for i, n in enumerate(ordered)]


_CHAOS_LAYOUT = (
    "Expected the CHAOS training data: RAW_DIR/MR/<patient id>/T2SPIR/DICOM_anon/*.dcm and "
    "RAW_DIR/MR/<patient id>/T2SPIR/Ground/*.png (CHAOS_Train_Sets/Train_Sets of the download). "
    "See data/README.md."
)


def find_chaos_scans(raw_dir: str | os.PathLike) -> list[RawScan]:
    """The CHAOS T2-SPIR scans of ``raw_dir`` (``MR/<id>/T2SPIR/{DICOM_anon,Ground}``).

    ``raw_dir`` may be the folder holding ``MR`` or its parent ``Train_Sets``. Scan ids are the
    patient folder names (numbers), sorted numerically.

    Returns
    -------
    list of RawScan
        ``image`` the DICOM folder, ``label`` the Ground folder.
    """
    raw = _check_dir(Path(raw_dir), "CHAOS RAW_DIR")
    mr = None
    for cand in (raw / "MR", raw / "Train_Sets" / "MR", raw / "CHAOS_Train_Sets" / "Train_Sets" / "MR"):
        if cand.is_dir():
            mr = cand
            break
    if mr is None:
        raise ValueError(f"{raw} holds no MR folder (found {_listing(raw)}). {_CHAOS_LAYOUT}")
    patients = sorted((p for p in mr.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)
    bad_names = [p.name for p in patients if not p.name.isdigit()]
    if bad_names:
        raise ValueError(f"{mr}: patient folders must be numbers, found {bad_names[:8]}. {_CHAOS_LAYOUT}")
    if not patients:
        raise ValueError(f"{mr} holds no patient folders (found {_listing(mr)}). {_CHAOS_LAYOUT}")
    scans, problems = [], []
    for p in sorted(patients, key=lambda p: int(p.name)):
        dcm, gt = p / "T2SPIR" / "DICOM_anon", p / "T2SPIR" / "Ground"
        missing = [str(d.relative_to(mr)) for d in (dcm, gt) if not d.is_dir()]
        if missing:
            problems.append(f"{p.name}: missing {', '.join(missing)}")
            continue
        scans.append(RawScan(str(int(p.name)), dcm, gt, p.name))
    if problems:
        raise ValueError(f"{mr}: incomplete patient folders: {'; '.join(problems[:8])}. {_CHAOS_LAYOUT}")
    return scans
