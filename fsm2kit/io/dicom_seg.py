"""Writing a label volume as a DICOM Segmentation (highdicom) that references its source series.

:func:`dicom_seg` turns a ``(Z, R, C)`` label volume in the order of a series' slices (as
:func:`~fsm2kit.io.dicom.read_dicom_series` stacks them: slice, DICOM row, DICOM column) into a
binary DICOM SEG: one segment per label, frame ``k`` of the label volume on source slice ``k``
(its ``SOPInstanceUID``, ``ImagePositionPatient`` and ``ImageOrientationPatient``), the source
series and study referenced, empty frames left out. Each segment has its label's name and a
SNOMED CT code (:func:`organ_code`): category "Anatomical Structure" and the organ as property
type for the organs of PROTOCOL.md (liver, spleen, kidneys; also gallbladder, esophagus,
stomach, aorta, inferior vena cava, pancreas, adrenal glands), with the laterality as a
property type modifier for kidneys and adrenal glands (DICOM CID 7151 names "Kidney", not
"Left kidney"); any other name gets the generic "Tissue" code (:data:`GENERIC_CODE`).

highdicom is an optional dependency (``pip install fsm2kit[dicom]``), imported when used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..protocol.labels import label_name
from .dicom import series_files

__all__ = [
    "SegmentCode",
    "ORGAN_CODES",
    "GENERIC_CODE",
    "organ_code",
    "seg_source_headers",
    "check_dicom_seg_source",
    "dicom_seg",
]

#: SNOMED CT "Anatomical Structure": the segmented property category of every organ.
ANATOMICAL_STRUCTURE = ("91723000", "Anatomical Structure")
_LEFT, _RIGHT = ("7771000", "Left"), ("24028007", "Right")

#: Type 1 attributes a source slice needs for a SEG to reference it (a missing one is refused).
REQUIRED_SOURCE_TAGS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
                        "FrameOfReferenceUID")
#: Type 2 patient/study attributes a SEG copies from its source; a missing one is copied empty.
EMPTY_IF_MISSING = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "StudyID",
                    "AccessionNumber", "StudyDate", "StudyTime", "ReferringPhysicianName")


@dataclass(frozen=True)
class SegmentCode:
    """The coded meaning of one segment (SNOMED CT, scheme ``SCT``).

    Attributes
    ----------
    value, meaning : str
        Segmented property type, e.g. ``("10200004", "Liver")``.
    modifier : (value, meaning) or None
        Segmented property type modifier (laterality), e.g. ``("7771000", "Left")``.
    category : (value, meaning)
        Segmented property category (default "Anatomical Structure").
    generic : bool
        True for :data:`GENERIC_CODE` (a name fsm2kit has no organ code for).
    """

    value: str
    meaning: str
    modifier: tuple[str, str] | None = None
    category: tuple[str, str] = ANATOMICAL_STRUCTURE
    generic: bool = False

    def to_dict(self) -> dict:
        """For the JSON sidecar."""
        return {"scheme": "SCT", "value": self.value, "meaning": self.meaning,
                "modifier": list(self.modifier) if self.modifier else None,
                "category": list(self.category), "generic": self.generic}

    def __repr__(self) -> str:
        mod = f" ({self.modifier[1]})" if self.modifier else ""
        return f"SegmentCode(SCT {self.value} {self.meaning!r}{mod}, category {self.category[1]!r})"


#: SNOMED CT codes per canonical organ name of :data:`fsm2kit.protocol.labels.DATASET_LABELS`
#: (values as in pydicom's ``codes.SCT``; tested). PS_VEIN (portal and splenic vein) has no one code.
ORGAN_CODES: dict[str, SegmentCode] = {
    "LIVER": SegmentCode("10200004", "Liver"),
    "SPLEEN": SegmentCode("78961009", "Spleen"),
    "RK": SegmentCode("64033007", "Kidney", _RIGHT),
    "LK": SegmentCode("64033007", "Kidney", _LEFT),
    "GALLBLADDER": SegmentCode("28231008", "Gallbladder"),
    "ESOPHAGUS": SegmentCode("32849002", "Esophagus"),
    "STOMACH": SegmentCode("69695003", "Stomach"),
    "AORTA": SegmentCode("15825003", "Aorta"),
    "IVC": SegmentCode("64131007", "Inferior vena cava"),
    "PANCREAS": SegmentCode("15776009", "Pancreas"),
    "AG_R": SegmentCode("23451007", "Adrenal gland", _RIGHT),
    "AG_L": SegmentCode("23451007", "Adrenal gland", _LEFT),
}
#: The code of a label whose name is no organ of :data:`ORGAN_CODES` (e.g. ``"5"`` or ``"tumour"``).
GENERIC_CODE = SegmentCode("85756007", "Tissue", category=("85756007", "Tissue"), generic=True)


def organ_code(name: str) -> SegmentCode:
    """The SNOMED CT code of a label name: any spelling :func:`~fsm2kit.protocol.labels.resolve_label`
    accepts (``"liver"``, ``"LK"``, ``"left kidney"``, ``"kidney_right"``); a number or an
    unknown name gets :data:`GENERIC_CODE`."""
    text = str(name).strip()
    if not text or text.lstrip("+-").replace(".", "", 1).isdigit():
        return GENERIC_CODE  # an id, not a name (resolve_label would read it as a SABS id)
    try:
        return ORGAN_CODES.get(label_name("SABS", text), GENERIC_CODE)
    except ValueError:
        return GENERIC_CODE


def _highdicom():
    try:
        import highdicom
        import pydicom
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Writing a DICOM Segmentation needs highdicom: pip install highdicom (or fsm2kit[dicom]); "
            "or write NIfTI (--out pred.nii.gz)."
        ) from exc
    return highdicom, pydicom


def seg_source_headers(files: Sequence[str | os.PathLike]) -> list:
    """The headers (no pixel data) of a series' slices, checked for what a SEG references.

    Missing type 2 patient/study attributes (:data:`EMPTY_IF_MISSING`) are set empty in the
    returned datasets (the files are not touched).

    Raises
    ------
    ValueError
        A slice lacks one of :data:`REQUIRED_SOURCE_TAGS`; one line naming the file.
    """
    _, pydicom = _highdicom()
    headers = []
    for f in files:
        ds = pydicom.dcmread(str(f), stop_before_pixels=True)
        missing = [t for t in REQUIRED_SOURCE_TAGS if not str(getattr(ds, t, "") or "").strip()]
        if missing:
            raise ValueError(
                f"{f}: DICOM tag(s) {', '.join(missing)} missing; a DICOM Segmentation must reference "
                "them. Write NIfTI instead (--out pred.nii.gz)."
            )
        for tag in EMPTY_IF_MISSING:
            if tag not in ds:
                setattr(ds, tag, None)
        headers.append(ds)
    return headers


def check_dicom_seg_source(folder: str | os.PathLike) -> None:
    """Fail early (before any model runs) when a SEG could not reference the series in ``folder``:
    highdicom missing, or a slice without the attributes :func:`seg_source_headers` checks."""
    seg_source_headers(series_files(Path(folder)))


def dicom_seg(
    labels: np.ndarray,
    headers: Sequence,
    segments: Sequence[tuple[int, str]],
    *,
    series_description: str,
    content_description: str,
    model_name: str = "",
    algorithm_version: str = "",
    algorithm_parameters: dict[str, str] | None = None,
    series_number: int = 1000,
):
    """A binary DICOM Segmentation of ``labels`` on the slices ``headers``.

    Parameters
    ----------
    labels : ndarray, (Z, R, C) int
        Label ids; ``labels[k]`` lies on slice ``headers[k]`` (its DICOM rows and columns).
    headers : sequence of pydicom Dataset
        :func:`seg_source_headers` of the series' files, in the order of ``labels``.
    segments : sequence of (label id, name)
        One segment per label, numbered 1, 2, ... in this order; its label is ``name`` and its
        code :func:`organ_code` ``(name)``.
    series_description, content_description : str, keyword-only
        Say how the segmentation was made (e.g. "RANDOM WEIGHTS"); at most 64 characters kept.
    model_name, algorithm_version : str, keyword-only
        Manufacturer model name and the algorithm's version.
    algorithm_parameters : dict, optional, keyword-only
        Recorded in the segments' algorithm identification (e.g. the weights).
    series_number : int, keyword-only

    Returns
    -------
    highdicom.seg.Segmentation
        ``save_as(path)`` writes it.

    Raises
    ------
    ValueError
        ``labels`` does not match the slices, or holds ids that are not in ``segments``.
    """
    hd, pydicom = _highdicom()
    from pydicom.sr.codedict import codes

    lab = np.asarray(labels)
    ref = headers[0] if len(headers) else None
    if ref is None or lab.shape != (len(headers), int(ref.Rows), int(ref.Columns)):
        raise ValueError(f"dicom_seg: labels of shape {lab.shape} do not match {len(headers)} slices of "
                         f"{getattr(ref, 'Rows', '?')} x {getattr(ref, 'Columns', '?')} (expected (slices, rows, columns)).")
    ids = [int(i) for i, _ in segments]
    if len(set(ids)) != len(ids) or 0 in ids or not ids:
        raise ValueError(f"dicom_seg: segments need distinct nonzero label ids, got {ids}.")
    stray = sorted(set(np.unique(lab).tolist()) - {0, *ids})
    if stray:
        raise ValueError(f"dicom_seg: label ids {stray} have no segment (segments: {ids}).")
    numbers = np.zeros(lab.shape, np.uint8 if len(ids) < 256 else np.uint16)
    for k, i in enumerate(ids, start=1):
        numbers[lab == i] = k

    def coded(pair: tuple[str, str]):
        return hd.sr.CodedConcept(value=pair[0], scheme_designator="SCT", meaning=pair[1])

    algorithm = hd.AlgorithmIdentificationSequence(
        name="fsm2kit", family=codes.cid7162.ArtificialIntelligence, version=algorithm_version or "unknown",
        parameters=dict(algorithm_parameters or {}) or None,
    )
    descriptions = []
    for k, (_, name) in enumerate(segments, start=1):
        code = organ_code(name)
        d = hd.seg.SegmentDescription(
            segment_number=k, segment_label=str(name)[:64], segmented_property_category=coded(code.category),
            segmented_property_type=coded((code.value, code.meaning)), algorithm_type="SEMIAUTOMATIC",
            algorithm_identification=algorithm,
        )
        if code.modifier:
            d.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [coded(code.modifier)]
        descriptions.append(d)
    seg = hd.seg.Segmentation(
        source_images=list(headers), pixel_array=numbers, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=pydicom.uid.generate_uid(),
        series_number=int(series_number), sop_instance_uid=pydicom.uid.generate_uid(), instance_number=1,
        manufacturer="fsm2kit", manufacturer_model_name=(model_name or "SAM2")[:64],
        software_versions=algorithm_version or "unknown", device_serial_number="none",
        content_description=content_description[:64], content_label="FSM2KIT",
    )
    seg.SeriesDescription = series_description[:64]
    return seg
