import os
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(2)  # results depend on thread count in the last bits: pin it

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_NPZ = REPO / "data" / "examples" / "chaos_t2spir_case1_liver"


def _load(name="sam2-tiny", image_size=256, seed=0):
    from fsm2kit.model import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sam2(name, "random", seed=seed, image_size=image_size, device="cpu", progress=False)


@pytest.fixture(scope="session")
def tiny256():
    """A random-weights sam2-tiny at 256 px (shared: do not modify it)."""
    return _load()


@pytest.fixture(scope="session")
def tiny128():
    """A random-weights sam2-tiny at 128 px (shared: do not modify it)."""
    return _load(image_size=128)


@pytest.fixture(scope="session")
def present128():
    """A random-weights sam2-tiny at 128 px whose object-score head is shifted (+4) so masks are
    non-trivial: random weights alone call every object absent (logits -1024). Shared: do not modify."""
    import torch

    from fsm2kit.model import install_cpu_connected_components

    install_cpu_connected_components()
    model = _load(image_size=128)
    head = model.module.sam_mask_decoder.pred_obj_score_head
    lin = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        lin.bias += 4.0
    return model


@pytest.fixture
def no_model(monkeypatch):
    """Loading a SAM2 model fails the test: what the test does must fail (or finish) before any model loads."""
    import fsm2kit.model.loading

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(fsm2kit.model.loading, "load_sam2", refuse)


@pytest.fixture(scope="session")
def example_episode():
    from fsm2kit.io.npz import load_npz_episodes

    (ep,) = load_npz_episodes(EXAMPLE_NPZ)
    return ep


@pytest.fixture(scope="session")
def load_random():
    return _load


@pytest.fixture(scope="session")
def alp_folder(tmp_path_factory):
    """A synthetic CHAOST2-like SSL-ALPNet folder: liver on 4 slices of each of 20 small scans."""
    import nibabel as nib

    from fsm2kit.protocol.folds import SCAN_IDS

    root = tmp_path_factory.mktemp("chaos_like")
    rng = np.random.default_rng(1)
    for i, sid in enumerate(SCAN_IDS["CHAOST2"]):
        img = rng.normal(size=(32, 32, 8)).astype(np.float32)
        lab = np.zeros((32, 32, 8), np.float32)
        z0 = 1 + i % 3
        lab[8:20, 10:22, z0:z0 + 4] = 1
        img[lab == 1] += 3
        aff = np.diag([1.25, 1.25, 7.7, 1])
        nib.save(nib.Nifti1Image(img, aff), root / f"image_{sid}.nii.gz")
        nib.save(nib.Nifti1Image(lab, aff), root / f"label_{sid}.nii.gz")
    return root
