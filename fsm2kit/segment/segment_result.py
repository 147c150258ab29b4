"""What ``segment_volume`` returns and writes: per-label results, the Dice of both modes, the files.

:class:`SegmentResult` holds the label volume in the query's grid, one :class:`OrganResult` per
label (and per oracle-range run), the Dice table of both modes (:func:`modes_dice_table`, with
ground truth) and the model's provenance. :meth:`SegmentResult.save` writes the label volume into
the query file's grid and a JSON sidecar (:func:`sidecar_path`): the one provenance record
(:class:`~fsm2kit.records.provenance.Provenance`, kind ``"segment"``) with the options, the
grid, the z axis and per-label per-slice object scores. For a DICOM query the label volume may
also be a DICOM Segmentation (``.dcm``, :mod:`fsm2kit.io.dicom_seg`) referencing the series.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..records.fileio import atomic_write_group, check_can_create, file_sha256, output_lock, recover_group
from ..io.volumes import Volume, array_axes_in_file
from .organs import OrganSpec
from .propagation import Propagation
from ..records.provenance import Provenance

__all__ = [
    "MODES",
    "OrganResult",
    "SegmentResult",
    "modes_dice_table",
    "load_scan",
    "sidecar_path",
    "legacy_sidecar_path",
    "read_sidecar",
    "check_output",
    "check_dicom_output",
    "OUTPUT_SUFFIXES",
    "dice_csv_path",
    "output_files",
    "SUPPORT_FROM_QUERY",
    "uncertainty_paths",
]

#: The label volume's file types: NIfTI, or a DICOM Segmentation (of a DICOM query only).
OUTPUT_SUFFIXES = (".nii.gz", ".nii", ".dcm")

#: The two modes of the Dice table.
MODES = ("whole_volume", "oracle_range")

#: Why the Dice table leaves slices out (its ``excluded_why`` column): a support slice taken from
#: the query scan itself is the user's annotation, copied into the output, not a prediction.
SUPPORT_FROM_QUERY = "support slice taken from this scan: its annotation is copied, not predicted"


@dataclass(eq=False)
class OrganResult:
    """One label of a :class:`SegmentResult`: how its support was chosen and its propagation."""

    organ: OrganSpec
    mode: str
    support_z: tuple[int, ...]
    support_method: str
    propagation: Propagation
    similarity: object | None = None

    @property
    def name(self) -> str:
        return self.organ.name

    @property
    def label_id(self) -> int:
        return self.organ.label_id

    @property
    def logits(self) -> np.ndarray:
        return self.propagation.logits

    @property
    def object_scores(self) -> np.ndarray:
        return self.propagation.object_scores

    @property
    def prediction(self) -> np.ndarray:
        return self.propagation.prediction

    def __repr__(self) -> str:
        p = self.propagation
        ext = p.extent()
        return (
            f"OrganResult({self.organ.name}={self.organ.label_id}, {self.mode}, support z "
            f"{list(self.support_z)} ({self.support_method}), start {p.start}, "
            f"ran {int(p.processed.sum())} slices, organ {'z %d..%d' % ext if ext else 'absent'})"
        )



@dataclass(eq=False)
class SegmentResult:
    """A segmented scan: the label volume, per-label results, provenance.

    Attributes
    ----------
    labels : ndarray, (Z, H, W) uint8 or uint16
        The label volume in the query's canonical array layout (whole-volume mode).
    organs : tuple of OrganResult
        Whole-volume results, one per requested label, in request order.
    query : Volume
        The query; :meth:`save` writes into its source grid.
    model_provenance : dict
        :meth:`SAM2Model.provenance` of the model (weights: sha256 or "random weights (seed N)").
    seconds : float
    encoder_passes : int
        Image-encoder passes this call made (slices already cached cost none).
    oracle : tuple of OrganResult or None
        Oracle-range results (only with ground truth; a label absent from the ground truth has
        none).
    oracle_labels : ndarray or None
        The oracle-range label volume.
    dice : pandas.DataFrame or None
        :func:`modes_dice_table` of both modes (with ground truth).
    options : dict
        The options of the call (support selection, start, stopping rule ``stop``, window, labels,
        shapes).
    uncertainty : dict or None
        An ensemble's (``segment_volume(ensemble=)``): per label name, ``entropy`` and ``variance``
        (Z, H, W) float32 and per slice ``disagreement`` and ``qc``; :meth:`save` writes the
        volumes beside the label volume (:func:`uncertainty_paths`).
    """

    labels: np.ndarray
    organs: tuple[OrganResult, ...]
    query: Volume
    model_provenance: dict
    seconds: float
    encoder_passes: int
    oracle: tuple[OrganResult, ...] | None = None
    oracle_labels: np.ndarray | None = None
    dice: object | None = None
    options: dict = field(default_factory=dict)
    uncertainty: dict | None = field(default=None, repr=False)

    def uncertainty_volumes(self) -> dict[str, np.ndarray]:
        """``{"entropy", "variance"}``: (Z, H, W) float32, each the maximum over the labels (empty without an ensemble)."""
        if not self.uncertainty:
            return {}
        return {k: np.max(np.stack([u[k] for u in self.uncertainty.values()]), axis=0).astype(np.float32)
                for k in ("entropy", "variance")}

    @property
    def random_weights(self) -> bool:
        return bool(self.model_provenance.get("random_weights"))

    @property
    def weights(self) -> str:
        """``"random weights (seed N)"`` or ``"sha256:..."``."""
        return str(self.model_provenance.get("weights"))

    def organ(self, label: int | str) -> OrganResult:
        """The whole-volume result of a label, by id or name."""
        for o in self.organs:
            if o.label_id == label or (isinstance(label, str) and o.name.lower() == label.lower()):
                return o
        raise KeyError(f"No label {label!r}; segmented: {[f'{o.name}={o.label_id}' for o in self.organs]}.")

    def to_frame(self):
        """Per-slice table: z, label, mode, processed, object score, predicted pixels."""
        import pandas as pd

        rows = []
        for mode, group in (("whole_volume", self.organs), ("oracle_range", self.oracle or ())):
            for o in group:
                p = o.propagation
                for z in range(p.logits.shape[0]):
                    rows.append({
                        "z": z, "label": o.label_id, "label_name": o.name, "mode": mode,
                        "processed": bool(p.processed[z]),
                        "object_score": float(p.object_scores[z]),
                        "echo": z in p.echo_z,
                        "pred_px": int((p.logits[z] > 0).sum()),
                    })
        df = pd.DataFrame(rows)
        df["model"] = self.model_provenance.get("model")
        df["weights"] = self.model_provenance.get("weights")
        return df

    def provenance(self, *, command: str | None = None, details: dict | None = None) -> Provenance:
        """The one provenance record of this segmentation (kind ``"segment"``).

        Its details: ``modes``, ``options``, ``grid``, ``z_axis``, ``labels`` and ``oracle``
        (per label: support, start, range, stopping rule and where it stopped, processed slices,
        echo, object scores), ``dice``,
        ``encoder_passes``, ``seconds``, then ``details``.
        """
        axes = array_axes_in_file(self.query)

        def organ_dict(o: OrganResult) -> dict:
            p = o.propagation
            ext = p.extent()
            return {
                "name": o.name,
                "id": o.label_id,
                "mode": o.mode,
                "support_z": list(o.support_z),
                "support_method": o.support_method,
                "start": p.start,
                "z_range": list(p.z_range),
                "stop": p.stop,
                "stop_forward_z": p.stop_forward,
                "stop_backward_z": p.stop_backward,
                "processed_z": [int(z) for z in np.flatnonzero(p.processed)],
                "predicted_extent_z": list(ext) if ext else None,
                "echo_z": list(p.echo_z),
                "echo_sam2_exact": list(p.echo_exact),
                "object_scores": [None if not np.isfinite(s) else round(float(s), 5) for s in p.object_scores],
                "voxels": int((self.labels == o.label_id).sum()) if o.mode == "whole_volume" else None,
            }

        everything = (*self.organs, *(self.oracle or ()))
        return Provenance(
            kind="segment",
            models=(self.model_provenance,),
            # the ordering that ran: --order's, else at:Z for a given start, else middle-out from the
            # support's relative position along z (segment's default)
            orders=(self.options.get("order") or (f"at:{self.options['start']}" if self.options.get("start") is not None
                                                  else "support-relative"),),
            support_selector=str(self.options.get("support_select", "")),
            memory_policies=tuple(o.propagation.memory_policy for o in everything),
            command=command,
            details={
                "modes": list(dict.fromkeys(o.mode for o in everything)),
                "options": self.options,
                "grid": {
                    "shape": [int(n) for n in self.query.mask_to_nifti(np.zeros(self.query.shape, np.uint8)).shape],
                    "affine": np.asarray(self.query.affine).round(8).tolist(),
                    "axcodes": list(self.query.orientation or ()),
                    "dtype": str(self.labels.dtype),
                },
                "z_axis": {
                    "meaning": "z = index along axis 0 of the (Z, H, W) array (load_nifti: inferior -> superior)",
                    "file_axis": axes[0][0],
                    "reversed_in_file": axes[0][1],
                },
                "labels": [organ_dict(o) for o in self.organs],
                "oracle": [organ_dict(o) for o in self.oracle] if self.oracle is not None else None,
                "dice": self.dice.to_dict(orient="records") if self.dice is not None else None,  # type: ignore[attr-defined]
                "encoder_passes": self.encoder_passes,
                "seconds": round(self.seconds, 3),
                **(details or {}),
            },
        )

    def sidecar(self, *, command: str | None = None, details: dict | None = None) -> dict:
        """The JSON sidecar's content: :meth:`provenance` as a dict."""
        return self.provenance(command=command, details=details).to_dict()

    def save(self, path: str | os.PathLike, *, command: str | None = None,
             details: dict | None = None, overwrite: bool = False) -> tuple[Path, Path]:
        """Write the label volume into the query file's grid, the JSON sidecar and (with ground
        truth) ``<name>.dice.csv``: all of them or none.

        Every file is written in full to a temporary name first; then the old label volume (with
        ``overwrite``) and an old Dice table this result has none of are removed, the sidecar
        and the Dice table are renamed into place, and the label volume last
        (:func:`fsm2kit.records.fileio.atomic_write_group`). The label volume marks a complete
        output: it never sits beside an older or a newer sidecar (which also records its
        ``output_sha256``). A failure or an interrupt before the renames leaves every file as
        it was; in the microseconds between the renames the new sidecar may be there without
        the label volume (no result yet), never a mix; an interrupt there puts the old files back,
        and after a kill the next save does (:func:`fsm2kit.records.fileio.recover_group`, said in
        a warning). The save holds the output's lock
        (:func:`fsm2kit.records.fileio.output_lock`).

        Parameters
        ----------
        path : path-like
            ``.nii.gz`` or ``.nii`` (NIfTI), or ``.dcm``: a DICOM Segmentation (highdicom) that
            references the query's DICOM series (:func:`check_dicom_output`), one segment per
            label with its name and SNOMED CT code (:func:`fsm2kit.io.dicom_seg.dicom_seg`); the
            sidecar records its UIDs and codes. The sidecar is :func:`sidecar_path`.
        overwrite : bool, keyword-only
            Replace an existing label volume / sidecar / Dice table (default: refuse).

        Returns
        -------
        (Path, Path)
            The label volume and the sidecar (:func:`sidecar_path`).

        Raises
        ------
        FileExistsError
            One of the files exists and ``overwrite`` is False.
        ValueError
            ``.dcm`` for a query that is not a DICOM series.
        """
        path = Path(path)
        side = sidecar_path(path)
        dice_path = dice_csv_path(path)
        with output_lock(path, what="output"):  # a second writer of this output is refused
            for note in recover_group(path, (side, dice_path)):  # what a kill left of a replacement
                warnings.warn(f"fsm2kit: {note}.", UserWarning, stacklevel=2)
            return self._save(path, side, dice_path, command=command, details=details, overwrite=overwrite)

    def _save(self, path: Path, side: Path, dice_path: Path, *, command, details, overwrite) -> tuple[Path, Path]:
        import nibabel as nib

        check_output(path, overwrite=overwrite)
        old = read_sidecar(path)
        legacy = [Path(old["_sidecar"])] if old is not None and old["_sidecar"] != str(side) else []
        dicom = check_dicom_output(path, self.query.path)
        extra = {"output": str(path), "output_name": path.name}
        if self.dice is not None:
            extra["dice_csv"] = str(dice_path)
        # the file itself says how it was made (random weights first)
        model = self.model_provenance.get("model", "SAM2")
        descrip = f"fsm2kit {model}: " + ("RANDOM WEIGHTS, masks mean nothing" if self.random_weights
                                          else "SAM2 few-shot labels")
        img = self.query.mask_to_nifti(self.labels, dtype=self.labels.dtype)
        tmp_image: list[str] = []
        if dicom:
            seg, extra["dicom_seg"] = self._dicom_seg(img, descrip)

            def write_image(tmp: str) -> None:
                seg.save_as(tmp)
                tmp_image.append(tmp)
        else:
            img.header["descrip"] = descrip.encode("ascii", "replace")[:79]

            def write_image(tmp: str) -> None:
                nib.save(img, tmp)
                tmp_image.append(tmp)

        if self.uncertainty:
            extra["uncertainty"] = {
                "files": {k: str(v) for k, v in uncertainty_paths(path).items()},
                "meaning": "per voxel, max over labels: entropy (bits) of the members' mean probability; their variance",
                "labels": {name: {"disagreement": [round(float(x), 5) for x in u["disagreement"]],
                                  "qc_z": [int(z) for z in np.flatnonzero(u["qc"])]}
                           for name, u in self.uncertainty.items()}}
        meta = self.sidecar(command=command, details={**extra, **(details or {})})

        def write_sidecar(tmp: str) -> None:
            meta["output_sha256"] = file_sha256(tmp_image[0])
            Path(tmp).write_text(json.dumps(_finite(meta), indent=2, default=_json_default, allow_nan=False))

        writes = {path: write_image, side: write_sidecar}
        for kind, upath in uncertainty_paths(path).items():  # an ensemble's maps, in the query's grid
            vol = self.uncertainty_volumes().get(kind)
            if vol is not None:
                uimg = self.query.mask_to_nifti(vol, dtype=np.float32)
                writes[upath] = (lambda im: lambda t: nib.save(im, t))(uimg)
        if self.dice is not None:
            writes[dice_path] = lambda t: self.dice.to_csv(t, index=False)  # type: ignore[attr-defined]
        atomic_write_group(writes, marker=path, remove=(*legacy, *(() if self.dice is not None else (dice_path,))))
        return path, side

    def _dicom_seg(self, img, descrip: str) -> tuple[object, dict]:
        """The DICOM SEG of the label volume ``img`` (in the series' NIfTI grid) and its sidecar record."""
        from ..version import __version__
        from ..io.dicom import read_dicom_series
        from ..io.dicom_seg import dicom_seg, organ_code, seg_source_headers

        series = read_dicom_series(self.query.path)  # type: ignore[arg-type]
        if tuple(img.shape[::-1]) != series.shape or not np.allclose(img.affine, series.affine, atol=1e-5):
            raise ValueError(f"The DICOM series in {self.query.path} changed since it was segmented (now "
                             f"{series.shape[::-1]}, the labels are {img.shape}); segment it again.")
        segments = [(o.label_id, o.name) for o in self.organs]
        model = str(self.model_provenance.get("model", "SAM2"))
        random = " RANDOM WEIGHTS" if self.random_weights else ""
        seg = dicom_seg(
            np.asarray(img.dataobj).transpose(2, 1, 0), seg_source_headers(series.files), segments,
            series_description=f"fsm2kit {model} SEG{random}", content_description=descrip,
            model_name=model, algorithm_version=__version__,
            algorithm_parameters={"model": model, "weights": self.weights},
        )
        record = {
            "sop_class": "Segmentation Storage (binary)",
            "series_instance_uid": str(seg.SeriesInstanceUID),
            "sop_instance_uid": str(seg.SOPInstanceUID),
            "referenced_series_uid": series.series_uid,
            "series_description": str(seg.SeriesDescription),
            "segments": [{"number": k, "label": name, "id": i, "code": organ_code(name).to_dict()}
                         for k, (i, name) in enumerate(segments, start=1)],
        }
        return seg, record

    def __repr__(self) -> str:
        names = ", ".join(f"{o.name}={o.label_id}" for o in self.organs)
        mode = " + oracle range" if self.oracle is not None else ""
        return (
            f"SegmentResult({self.query.case_id!r}, shape {self.labels.shape}, labels [{names}]{mode}, "
            f"{self.encoder_passes} encoder passes, {self.seconds:.1f} s, {self.weights})"
        )


def _finite(o):
    """NaN / inf -> None, recursively (JSON has no NaN)."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    return o


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    return str(o)


def sidecar_path(path: str | os.PathLike) -> Path:
    """``pred.nii.gz`` -> ``pred.nii.gz.json`` (the provenance sidecar next to a mask), named from the
    whole output name: ``pred.nii``, ``pred.nii.gz`` and ``pred.dcm`` each have their own."""
    p = Path(path)
    if not p.name.endswith(OUTPUT_SUFFIXES):
        raise ValueError(f"The output must be a NIfTI file ending in .nii.gz or .nii (or .dcm, a DICOM Segmentation "
                         f"of a DICOM query), got {p.name!r}.")
    return p.with_name(p.name + ".json")


def legacy_sidecar_path(path: str | os.PathLike) -> Path:
    """The sidecar name of fsm2kit before 0.x (``pred.nii.gz`` -> ``pred.json``), shared by every suffix."""
    p = Path(path)
    for suf in OUTPUT_SUFFIXES:
        if p.name.endswith(suf):
            return p.with_name(p.name[: -len(suf)] + ".json")
    return sidecar_path(p)  # raises


def read_sidecar(path: str | os.PathLike) -> dict | None:
    """The sidecar that describes the output ``path``: ``<name>.json``, or an older ``pred.json``
    whose ``output`` names this file; None when there is none (or it is not fsm2kit's)."""
    p = Path(path)
    for side in (sidecar_path(p), legacy_sidecar_path(p)):
        try:
            if not side.is_file() or side.stat().st_size > (64 << 20):
                continue
            d = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(d, dict) or d.get("tool") != "fsm2kit" or d.get("kind") != "segment":
            continue
        if side == sidecar_path(p) or Path(str(d.get("output", ""))).name == p.name:
            return {**d, "_sidecar": str(side)}
    return None


def check_dicom_output(path: str | os.PathLike, image: str | os.PathLike | None) -> bool:
    """Whether ``path`` is a DICOM SEG output (``.dcm``); if so, check (before any model runs)
    that the query ``image`` is a DICOM folder a SEG can reference
    (:func:`fsm2kit.io.dicom_seg.check_dicom_seg_source`; needs highdicom).

    Raises
    ------
    ValueError
        ``.dcm`` with a query that is not a DICOM folder (one line), or slices without the
        UIDs a SEG references.
    """
    p = Path(path)
    if not p.name.endswith(".dcm"):
        return False
    if image is not None and not Path(image).exists():
        return True  # the query's reader says it is missing
    if image is None or not Path(image).is_dir():
        raise ValueError(f"Output {p.name} is a DICOM Segmentation, which needs a DICOM series (a folder of "
                         f"slices) as the query, got {image}; write NIfTI instead, e.g. {p.name[:-4]}.nii.gz.")
    from ..io.dicom_seg import check_dicom_seg_source

    check_dicom_seg_source(image)
    return True


def dice_csv_path(path: str | os.PathLike) -> Path:
    """``pred.nii.gz`` -> ``pred.nii.gz.dice.csv`` (the Dice table next to a mask, with ground truth)."""
    side = sidecar_path(path)
    return side.with_name(side.name[: -len(".json")] + ".dice.csv")


def uncertainty_paths(path: str | os.PathLike) -> dict[str, Path]:
    """``pred.nii.gz`` -> ``{"entropy": pred.entropy.nii.gz, "variance": pred.variance.nii.gz}`` (an ensemble's maps)."""
    side = sidecar_path(path)
    stem = side.name[: -len(".json")]
    return {k: side.with_name(f"{stem}.{k}.nii.gz") for k in ("entropy", "variance")}


def output_files(path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The files a segmentation writes for ``path``: the label volume, its sidecar, its Dice table."""
    return Path(path), sidecar_path(path), dice_csv_path(path)


def check_output(path: str | os.PathLike, *, overwrite: bool = False, cli: bool = False) -> None:
    """Fail early (before any model runs) when ``path`` cannot be written, or would replace
    something: without ``overwrite`` any of its files; with it, anything but an earlier output of
    fsm2kit segment: a label volume beside its sidecar that records it (name and sha256, so a
    mask edited since is kept), or the sidecar and Dice table of one (``cli``: messages say
    ``--overwrite``, not ``overwrite=True``)."""
    path = Path(path)
    files = output_files(path)
    if path.exists() and path.is_dir():
        raise IsADirectoryError(f"Output {path} is a folder; give a file name such as {path / 'pred.nii.gz'}.")
    check_can_create(path)
    there = [str(f) for f in files if f.exists() or f.is_symlink()]
    if there and not overwrite:
        raise FileExistsError(
            f"Output {there[0]} already exists{' (with ' + ', '.join(there[1:]) + ')' if there[1:] else ''}; "
            f"pass {'--overwrite' if cli else 'overwrite=True'} to replace it, or choose another output."
        )
    if not there:
        return
    side = read_sidecar(path)
    if path.is_symlink():
        raise FileExistsError(f"Output {path} is a symbolic link; fsm2kit does not replace it: choose another output.")
    if path.exists():
        if side is None:
            raise FileExistsError(f"Output {path} has no fsm2kit sidecar ({sidecar_path(path).name}): fsm2kit did not "
                                  "write it and does not replace it, --overwrite included; choose another output.")
        if side.get("output_sha256") != file_sha256(path):
            raise FileExistsError(f"Output {path} changed since fsm2kit wrote it (its sha256 differs from its sidecar "
                                  f"{Path(side['_sidecar']).name}); fsm2kit does not replace it, --overwrite "
                                  "included: choose another output.")
        return
    own = sidecar_path(path)
    if own.exists() and (side is None or side["_sidecar"] != str(own)):
        raise FileExistsError(f"{own} is not an fsm2kit segment sidecar; fsm2kit does not replace it: choose "
                              "another output.")
    if dice_csv_path(path).exists() and side is None:
        raise FileExistsError(f"{dice_csv_path(path)} belongs to no fsm2kit output; fsm2kit does not replace it: "
                              "choose another output.")


def modes_dice_table(
    predictions: Mapping[str, np.ndarray],
    truth: np.ndarray,
    organs: Sequence[OrganSpec],
    *,
    exclude_z: Mapping[int, Sequence[int]] | None = None,
    case_id: str = "",
    provenance: dict | None = None,
):
    """3D Dice of label volumes per label and mode (e.g. whole volume vs oracle range).

    Parameters
    ----------
    predictions : mapping of mode -> label volume (Z, H, W)
        E.g. ``{"whole_volume": labels, "oracle_range": oracle_labels}``.
    truth : ndarray, (Z, H, W)
        Ground-truth label volume with the same ids.
    organs : sequence of OrganSpec
    exclude_z : mapping {label id: z indices}, optional, keyword-only
        Slices left out of a label's Dice in every mode: the support slices taken from the
        query scan itself (:data:`SUPPORT_FROM_QUERY`), whose annotation is copied into the
        output and would count as a perfect prediction.
    case_id : str, keyword-only
    provenance : dict, optional, keyword-only
        Adds ``model`` and ``weights`` columns (say "random weights" next to every number).

    Returns
    -------
    pandas.DataFrame
        One row per (label, mode): ``dice`` (2TP / (2TP + FP + FN) over the voxels of the
        scan's slices except ``exclude_z``; NaN when nothing is left to score), ``tp``,
        ``fp``, ``fn``, ``excluded_slices`` (how many), ``excluded_z`` and ``excluded_why``,
        the predicted and true slice extents (whole scan).
    """
    import pandas as pd

    from ..protocol.metrics import dice_counts

    t = np.asarray(truth)
    rows = []
    for o in organs:
        tm = t == o.label_id
        tz = np.flatnonzero(tm.any(axis=(1, 2)))
        ex = sorted({int(z) for z in (exclude_z or {}).get(o.label_id, ())})
        if any(not 0 <= z < t.shape[0] for z in ex):
            raise ValueError(f"exclude_z of {o.name!r}: {ex} is outside the scan's {t.shape[0]} slices.")
        keep = np.ones(t.shape[0], bool)
        keep[ex] = False
        for mode, pred in predictions.items():
            if pred is None:
                continue
            pm = np.asarray(pred) == o.label_id
            c = dice_counts(pm[keep], tm[keep])
            pz = np.flatnonzero(pm.any(axis=(1, 2)))
            rows.append({
                "case_id": case_id, "label": o.label_id, "label_name": o.name, "mode": mode,
                "metric": "volume", "dice": c.dice(), "tp": c.tp, "fp": c.fp, "fn": c.fn,
                "excluded_slices": len(ex), "excluded_z": " ".join(map(str, ex)),
                "excluded_why": SUPPORT_FROM_QUERY if ex else "",
                "pred_z_first": int(pz[0]) if pz.size else -1, "pred_z_last": int(pz[-1]) if pz.size else -1,
                "true_z_first": int(tz[0]) if tz.size else -1, "true_z_last": int(tz[-1]) if tz.size else -1,
            })
    df = pd.DataFrame(rows)
    if provenance is not None and len(df):
        df["model"] = provenance.get("model")
        df["weights"] = provenance.get("weights")
    return df


def load_scan(path: str | os.PathLike, *, modality: str = "", case_id: str | None = None) -> Volume:
    """A scan from a NIfTI file or a folder of DICOM slices (:mod:`fsm2kit.io.dicom`)."""
    from ..io.nifti import load_nifti

    p = Path(path)
    if p.is_dir():
        from ..io.dicom import read_dicom_series

        series = read_dicom_series(p)
        mod = modality or (series.modality if series.modality in ("CT", "MR") else "")
        vol = series.to_volume(case_id=case_id if case_id is not None else p.name)
        if mod and vol.modality != mod:
            vol = dataclasses.replace(vol, modality=mod)
        return vol
    return load_nifti(p, modality=modality, case_id=case_id)


