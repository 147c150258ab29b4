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
    from fsm2kit.core import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sam2(name, "random", seed=seed, image_size=image_size, device="cpu", progress=False)


@pytest.fixture(scope="session")
def tiny256():
    """A random-weights sam2-tiny at 256 px (shared: do not modify it)."""
    return _load()


@pytest.fixture(scope="session")
def example_episode():
    from fsm2kit.io.npz import load_npz_episodes

    (ep,) = load_npz_episodes(EXAMPLE_NPZ)
    return ep


@pytest.fixture(scope="session")
def load_random():
    return _load
