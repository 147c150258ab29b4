"""The whole volume in 3D and three planes: NiiVue (``ipyniivue``, an anywidget like the project's).

:func:`volume_viewer` shows a scan with the predicted labels, the ground truth as a second
layer and an uncertainty volume (an ensemble's, when there is one) in NiiVue's three planes plus
a 3D rendering, offline (NiiVue ships inside the ipyniivue wheel; WebGL2 in the browser). Each
layer takes a NIfTI path, a :class:`~fsm2kit.io.volumes.Volume`-like object (``.array``,
``.affine``) or a ``(Z, H, W)`` array (with ``affine`` or ``axcodes``). Colours by meaning, as
everywhere (:data:`fsm2kit.viz.display.COLORS`): prediction orange, ground truth bluish green,
uncertainty ``cividis``.

:func:`show_segmentation` opens what ``fsm2kit segment`` / :func:`~fsm2kit.segment.own_scan.segment_volume`
returns or writes (a ``SegmentResult``, or the written mask with its scan), and
:func:`show_prediction` a run's prediction of one episode (``study.result.predictions``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..viz.display import COLORS, OKABE_ITO, PROTOCOL_AXCODES, episode_axcodes
from ..viz.drawing import hex_rgb

__all__ = ["volume_viewer", "show_segmentation", "show_prediction", "axcodes_affine", "LAYER_COLORS"]

#: Colours of the layers (labels: prediction; ground truth), by meaning.
LAYER_COLORS = {"prediction": COLORS["prediction"], "ground_truth": COLORS["ground_truth"]}
_UNCERTAINTY_CMAP = "cividis"
_MORE = [OKABE_ITO[k] for k in ("orange", "sky blue", "reddish purple", "yellow", "vermillion", "blue")]


def axcodes_affine(axcodes, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A 4x4 voxel -> RAS affine whose voxel axes run along ``axcodes`` (nibabel's letters)."""
    a = np.zeros((4, 4))
    a[3, 3] = 1.0
    for j, (c, s) in enumerate(zip(axcodes, spacing)):
        i = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}[c.upper()]
        a[i, j] = float(s) if c.upper() in "RAS" else -float(s)
    return a


def _layer(layer, name: str, affine) -> tuple[np.ndarray, np.ndarray]:
    """``(array, voxel -> RAS affine)`` of a layer: a NIfTI path, a Volume-like object or an array."""
    import nibabel as nib

    if isinstance(layer, (str, os.PathLike)):
        p = Path(layer)
        if not p.is_file():
            raise FileNotFoundError(f"{name}: no file {p}.")
        img = nib.load(str(p))
        return np.asanyarray(img.dataobj), np.asarray(img.affine, float)
    if hasattr(layer, "array") and (hasattr(layer, "array_affine") or hasattr(layer, "affine")):  # a Volume
        aff = getattr(layer, "array_affine", None)
        return np.asarray(layer.array), np.asarray(aff if aff is not None else layer.affine, float)
    arr = np.asarray(layer)
    if arr.ndim != 3:
        raise ValueError(f"{name}: expected a (Z, H, W) volume, a NIfTI path or a Volume, got shape {arr.shape}.")
    if affine is None:
        raise ValueError(f"{name}: an array needs affine= or axcodes= (its voxel axes in the world).")
    return arr, np.asarray(affine, float)


def _volume(arr: np.ndarray, aff: np.ndarray, name: str, dtype, **kwargs):
    import nibabel as nib
    from ipyniivue import Volume

    data = nib.Nifti1Image(np.ascontiguousarray(arr, dtype=dtype), aff).to_bytes()
    return Volume(data=data, name=f"{name}.nii", **kwargs)


def _label_lut(colors, names):
    """NiiVue's label colour table: 0 transparent, then one colour per label value."""
    from ipyniivue import LUT

    rgba = [0, 0, 0, 0]
    for c in colors:
        rgba += [int(round(255 * v)) for v in hex_rgb(c)] + [255]
    return LUT(lut=rgba, min=0, max=len(colors), labels=["background", *names])


def volume_viewer(image, labels=None, *, ground_truth=None, uncertainty=None, affine=None, axcodes=None,
                  label_names=None, height: int = 420, opacity: float = 0.5):
    """A NiiVue widget: the scan, the predicted labels, the ground truth and the uncertainty.

    Parameters
    ----------
    image : path, Volume or ndarray (Z, H, W)
        The scan (grey).
    labels : path, Volume or ndarray, optional
        Predicted labels (0 background; label k in the k-th colour, the first the prediction's).
    ground_truth : path, Volume or ndarray, optional
        Shown as a second label layer, in the ground truth's colour.
    uncertainty : path, Volume or ndarray, optional
        E.g. the per-voxel uncertainty an ensemble writes (``cividis``, transparent where 0).
    affine : (4, 4) array, optional
        Voxel -> RAS world of array layers (default from ``axcodes``).
    axcodes : (3,) str, optional
        The voxel axes of array layers in nibabel's letters, e.g. ``("S", "A", "L")``.
    label_names : sequence of str, optional
        Names of the label values 1..K (default ``label 1``...).
    height : int
        Widget height (px).
    opacity : float
        Opacity of the label layers.

    Returns
    -------
    ipyniivue.NiiVue
        Three planes and a 3D rendering (``SliceType.MULTIPLANAR`` with the render shown);
        ``viewer.layers`` names the layers loaded, in order.
    """
    from ipyniivue import NiiVue, ShowRender, SliceType

    if affine is None and axcodes is not None:
        affine = axcodes_affine(axcodes)
    vols, names = [], []
    arr, aff = _layer(image, "scan", affine)
    vols.append(_volume(arr, aff, "scan", np.float32, colormap="gray", opacity=1.0))
    names.append("scan")
    if labels is not None:
        arr, aff = _layer(labels, "prediction", affine)
        k = max(1, int(np.max(arr)) if arr.size else 1)
        lab = list(label_names) if label_names is not None else [f"label {i}" for i in range(1, k + 1)]
        v = _volume(arr, aff, "prediction", np.uint8, opacity=opacity)
        v.colormap_label = _label_lut([LAYER_COLORS["prediction"], *_MORE[1:]][:max(k, len(lab))], lab)
        vols.append(v)
        names.append("prediction")
    if ground_truth is not None:
        arr, aff = _layer(ground_truth, "ground_truth", affine)
        v = _volume(np.asarray(arr) > 0, aff, "ground_truth", np.uint8, opacity=opacity)
        v.colormap_label = _label_lut([LAYER_COLORS["ground_truth"]], ["ground truth"])
        vols.append(v)
        names.append("ground truth")
    if uncertainty is not None:
        arr, aff = _layer(uncertainty, "uncertainty", affine)
        vols.append(_volume(arr, aff, "uncertainty", np.float32, colormap=_UNCERTAINTY_CMAP, opacity=0.6,
                            cal_min=1e-6))
        names.append("uncertainty")
    # radiological convention (patient right on screen left), as every other fsm2kit view
    nv = NiiVue(height=int(height), multiplanar_show_render=ShowRender.ALWAYS, is_colorbar=uncertainty is not None,
                is_radiological_convention=True)
    nv.load_volumes(vols)
    nv.set_slice_type(SliceType.MULTIPLANAR)
    nv.add_class("fsm2-volume-view")
    nv.layers = tuple(names)
    return nv


def show_segmentation(result, *, image=None, ground_truth=None, uncertainty=None, **kwargs):
    """:func:`volume_viewer` of a ``segment`` output.

    Parameters
    ----------
    result : SegmentResult or path
        What :func:`~fsm2kit.segment.own_scan.segment_volume` returns (its scan, labels and, when
        it was given one, ground truth), or the mask file ``fsm2kit segment`` wrote (NIfTI; then
        ``image`` is the scan it segmented).
    image, ground_truth, uncertainty : path, Volume or array, optional
        The scan (needed with a path), the ground truth and an uncertainty volume (e.g. the
        ensemble's), overriding what ``result`` carries.
    """
    if isinstance(result, (str, os.PathLike)):
        if image is None:
            raise ValueError("show_segmentation of a mask file needs image= (the scan it segmented).")
        return volume_viewer(image, result, ground_truth=ground_truth, uncertainty=uncertainty, **kwargs)
    q = result.query
    names = [o.name for o in sorted(result.organs, key=lambda o: o.label_id)]
    gt = ground_truth if ground_truth is not None else getattr(result, "ground_truth", None)
    aff = np.asarray(getattr(q, "array_affine", None) if getattr(q, "array_affine", None) is not None else q.affine)
    return volume_viewer(image if image is not None else q, np.asarray(result.labels), ground_truth=gt,
                         uncertainty=uncertainty, affine=aff, label_names=names, **kwargs)


def show_prediction(prediction, *, uncertainty=None, axcodes=None, **kwargs):
    """:func:`volume_viewer` of a run's prediction of one episode (its query slices as a volume).

    ``prediction``: a ``Prediction`` (``.episode``, ``.result``; ``study.result.predictions``) or
    ``(episode, result)``. The slices' in-plane axes come from the episode
    (:func:`fsm2kit.viz.display.episode_axcodes`), z runs inferior -> superior.
    """
    ep, res = (prediction.episode, prediction.result) if hasattr(prediction, "episode") else prediction
    order = np.argsort(np.asarray(ep.z))
    preds = {int(s.position): np.asarray(s.prediction, np.uint8) for s in res.slices}
    labels = np.stack([preds[int(i)] for i in order])
    gt = None if ep.labels is None else (np.asarray(ep.labels)[order] > 0).astype(np.uint8)
    codes = axcodes or ("S", *(episode_axcodes(ep) or PROTOCOL_AXCODES["SABS"]))
    return volume_viewer(np.asarray(ep.images, np.float32)[order], labels, ground_truth=gt, uncertainty=uncertainty,
                         axcodes=codes, label_names=[str(ep.label_name)], **kwargs)
