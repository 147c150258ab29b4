"""The 3D / three-plane view (NiiVue through ipyniivue): layers, colours by meaning, segment outputs.
tests/test_browser.py checks in Chromium that the overlay is drawn."""

import numpy as np
import pytest

pytest.importorskip("ipyniivue")


def _volumes():
    img = np.random.default_rng(0).random((6, 32, 32)).astype(np.float32)
    lab = np.zeros((6, 32, 32), np.uint8)
    lab[2:4, 8:20, 8:20] = 1
    return img, lab


def test_volume_viewer_layers_and_colours(tmp_path):
    import nibabel as nib

    from fsm2kit.viz.display import COLORS
    from fsm2kit.viz.drawing import hex_rgb
    from fsm2kit.widgets import volume_viewer
    from fsm2kit.widgets.volume_view import axcodes_affine

    img, lab = _volumes()
    nv = volume_viewer(img, lab, ground_truth=lab * 3, uncertainty=np.random.rand(6, 32, 32), axcodes=("S", "P", "L"))
    assert nv.layers == ("scan", "prediction", "ground truth", "uncertainty")
    assert nv.opts.is_radiological_convention  # patient right on screen left, as every fsm2kit view
    pred, gt = nv.volumes[1].colormap_label.lut, nv.volumes[2].colormap_label.lut
    assert pred[:4] == [0, 0, 0, 0] and pred[4:7] == [round(255 * v) for v in hex_rgb(COLORS["prediction"])]
    assert gt[4:7] == [round(255 * v) for v in hex_rgb(COLORS["ground_truth"])]
    assert nv.volumes[3].colormap == "cividis"
    back = nib.Nifti1Image.from_bytes(nv.volumes[2].data)
    assert set(np.unique(np.asarray(back.dataobj))) == {0, 1}  # ground truth as one layer
    assert np.allclose(back.affine, axcodes_affine(("S", "P", "L")))
    assert nib.aff2axcodes(back.affine) == ("S", "P", "L")
    # paths work as well: a segment output and its scan
    nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / "scan.nii.gz")
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "pred.nii.gz")
    from fsm2kit.widgets import show_segmentation

    nv2 = show_segmentation(tmp_path / "pred.nii.gz", image=tmp_path / "scan.nii.gz")
    assert nv2.layers == ("scan", "prediction")
    with pytest.raises(ValueError, match="needs image="):
        show_segmentation(tmp_path / "pred.nii.gz")
    with pytest.raises(ValueError, match="affine= or axcodes="):
        volume_viewer(img, lab)


def test_show_prediction_of_an_episode(example_episode):
    from types import SimpleNamespace

    from fsm2kit.widgets import show_prediction

    ep = example_episode
    slices = [SimpleNamespace(position=i, prediction=np.asarray(ep.labels[i]) > 0) for i in range(ep.n_slices)]
    nv = show_prediction((ep, SimpleNamespace(slices=slices)))
    assert nv.layers == ("scan", "prediction", "ground truth")
