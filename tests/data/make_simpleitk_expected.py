"""Make ``simpleitk_resample_expected.npz``: SimpleITK's linear resampling of three small inputs.

``tests/test_prepare.py::test_resampling_matches_stored_simpleitk_output`` compares
:func:`fsm2kit.protocol.preprocessing.resample_linear` / ``resample_labels`` with the arrays stored here,
so the comparison with SimpleITK runs without SimpleITK installed. See README.md beside this file
for the versions the stored file was made with.

Run from the repository root, in an environment with SimpleITK (it is not a dependency)::

    pip install SimpleITK
    python tests/data/make_simpleitk_expected.py
    pip uninstall -y SimpleITK

Every case resamples like SSL-ALPNet's ``resample_by_res`` (``data/SABS/*.ipynb``): same origin
and direction, output spacing ``new``, output size ``int(n * old / new + 1)`` per axis,
``sitk.sitkLinear``, default value 0, output pixel type = input pixel type. Arrays are in
SimpleITK's ``(z, y, x)`` order; spacings are stored in (z, y, x) order too (SimpleITK takes
them as (x, y, z)).

Cases (inputs are stored in the file, so the test does not depend on numpy's random streams):

``image``
    float64 intensities (3, 12, 14), SABS geometry: in-plane spacing x 1.75, z unchanged.
``int16``
    int16 intensities (3, 10, 10), CHAOS-like spacing (9.0, 1.359375, 1.359375) ->
    (7.7, 1.25, 1.25): up- and downsampling, results truncated towards zero by ITK's cast.
``labels``
    uint8 label ids 0/1/2 (3, 10, 10), the same CHAOS-like spacing, resampled as the notebook's
    ``resample_lb_by_res``: each id's float32 mask resampled, ``np.rint``, larger ids written
    last. (The CHAOS-like ratio keeps samples away from ties at exactly 0.5, where ITK's
    physical-coordinate arithmetic can round the other way; see ``resample_linear``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUT = Path(__file__).with_name("simpleitk_resample_expected.npz")
CHAOS_OLD = (9.0, 1.359375, 1.359375)
CHAOS_NEW = (7.7, 1.25, 1.25)


def sitk_resample(arr: np.ndarray, old_zyx, new_zyx) -> np.ndarray:
    """``resample_by_res`` of the SSL-ALPNet notebooks on an array in (z, y, x) order."""
    img = sitk.GetImageFromArray(arr)
    old_xyz = tuple(float(s) for s in old_zyx[::-1])
    new_xyz = tuple(float(s) for s in new_zyx[::-1])
    img.SetSpacing(old_xyz)
    rs = sitk.ResampleImageFilter()
    rs.SetInterpolator(sitk.sitkLinear)
    rs.SetOutputSpacing(new_xyz)
    rs.SetOutputOrigin(img.GetOrigin())
    rs.SetOutputDirection(img.GetDirection())
    res_coe = np.array(old_xyz) * 1.0 / np.array(new_xyz)
    rs.SetSize([int(v) for v in np.array(img.GetSize()) * res_coe + 1])
    return sitk.GetArrayFromImage(rs.Execute(img))


def sitk_resample_labels(lab: np.ndarray, old_zyx, new_zyx) -> np.ndarray:
    """The notebook's ``resample_lb_by_res``: one id at a time, float32 masks, ``np.rint``."""
    out = None
    for idx, v in enumerate(np.unique(lab)):
        m = sitk_resample((lab == v).astype(np.float32), old_zyx, new_zyx)
        cur = (np.rint(m) * np.float32(v)).astype(np.float32)
        if idx == 0:
            out = cur
        else:
            out[cur == v] = v
    return out


def main() -> int:
    rng = np.random.default_rng(20240601)
    image = np.round(rng.normal(size=(3, 12, 14)) * 100, 3)
    image_old = (3.0, 0.8, 0.8)
    image_new = (3.0, 0.8 * 1.75, 0.8 * 1.75)
    int16 = rng.integers(-300, 1200, size=(3, 10, 10)).astype(np.int16)
    labels = np.zeros((3, 10, 10), np.uint8)
    labels[:, 2:7, 1:5] = 1
    labels[1:, 4:9, 5:9] = 2
    labels[0, 0, 9] = 2
    meta = (
        f"made by tests/data/make_simpleitk_expected.py with SimpleITK {sitk.Version.VersionString()} "
        f"(ITK {sitk.Version.ITKVersionString()}), numpy {np.__version__}, "
        f"Python {sys.version.split()[0]}"
    )
    np.savez_compressed(
        OUT,
        meta=np.array(meta),
        image_input=image,
        image_old_spacing=np.array(image_old),
        image_new_spacing=np.array(image_new),
        image_expected=sitk_resample(image, image_old, image_new),
        int16_input=int16,
        int16_old_spacing=np.array(CHAOS_OLD),
        int16_new_spacing=np.array(CHAOS_NEW),
        int16_expected=sitk_resample(int16, CHAOS_OLD, CHAOS_NEW),
        labels_input=labels,
        labels_old_spacing=np.array(CHAOS_OLD),
        labels_new_spacing=np.array(CHAOS_NEW),
        labels_expected=sitk_resample_labels(labels, CHAOS_OLD, CHAOS_NEW),
    )
    print(f"{OUT} ({OUT.stat().st_size} bytes): {meta}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
