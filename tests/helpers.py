"""Helpers shared by the test modules: ``from helpers import ...`` (tests/ is on sys.path, as for conftest).

Fixtures shared by the test modules live in conftest.py (``no_model``, the session models, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PYTHON3_KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


# ----------------------------------------------------------------------------- memories
def memory_entry(cond, index=0, *, kind=None, z=None, score=1.0, iou=None, reverse=None, size=(4, 4),
                 channels=64, ptr_dim=256, marked=False, dtype=None):
    """A fake MemoryEntry at position ``index``: zero tensors of spatial ``size`` (h, w) and ``channels``
    channels (the spatial memory in ``dtype``, default bfloat16 as SAM2 stores it) and a ``ptr_dim``
    object pointer; ``kind`` follows ``cond`` unless given. ``marked``: the spatial memory and the
    pointer hold ``index`` (+1000 for a conditioning memory) instead of zeros, so what a selection
    concatenated can be read off the tensors."""
    import torch

    from fsm2kit.engine.memory import MemoryEntry

    h, w = size
    dtype = torch.bfloat16 if dtype is None else dtype
    v = float(index + (1000 if cond else 0)) if marked else 0.0
    return MemoryEntry(kind or ("support" if cond else "query"), cond, index,
                       torch.full((1, channels, h, w), v, dtype=dtype), torch.zeros(1, channels, h, w),
                       torch.full((1, ptr_dim), v), float(score), z, iou=iou, reverse=reverse)


def S(frame, t_pos, cond=False, n=7):
    """Expected spatial memory of ``frame`` at temporal slot ``t_pos`` (of ``n`` memories)."""
    from fsm2kit.engine.memory import SpatialRef

    return SpatialRef(frame, t_pos, n - t_pos - 1, cond)


def P(frame, t_diff, cond=False):
    """Expected object pointer of ``frame``, ``t_diff`` frames away."""
    from fsm2kit.engine.memory import PointerRef

    return PointerRef(frame, t_diff, cond)


# ----------------------------------------------------------------------------- NIfTI storage
def rotation(axis: int, deg: float) -> np.ndarray:
    """4 x 4 rotation by ``deg`` degrees about world axis ``axis``."""
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    i, j = [a for a in range(3) if a != axis]
    r = np.eye(4)
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def stored_as(data: np.ndarray, affine: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """The same image stored differently (``RAS``, ``LPS``, ``permuted``, ``oblique``): the world
    position of every voxel is kept."""
    if kind == "RAS":
        return data, affine
    if kind == "LPS":  # flip i and j: new index n-1-i
        n0, n1 = data.shape[:2]
        f = np.array([[-1, 0, 0, n0 - 1], [0, -1, 0, n1 - 1], [0, 0, 1, 0], [0, 0, 0, 1]], float)
        return data[::-1, ::-1, :].copy(), affine @ f
    if kind == "permuted":  # slice axis first: new (a, b, c) = old (b, c, a)
        p = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)
        return np.ascontiguousarray(data.transpose(2, 0, 1)), affine @ p
    if kind == "oblique":  # rotate the scanner frame by 10 and 7 degrees
        return data, rotation(0, 10.0) @ rotation(2, 7.0) @ affine
    raise AssertionError(kind)


def assert_same_grid(written, source) -> None:
    """A written NIfTI image lies on the grid of ``source``: shape, affine, sform/qform and codes, axes."""
    import nibabel as nib

    assert written.shape == source.shape
    np.testing.assert_array_equal(written.affine, source.affine)
    np.testing.assert_array_equal(written.header.get_sform(), source.header.get_sform())
    np.testing.assert_array_equal(written.header.get_qform(), source.header.get_qform())
    assert int(written.header["sform_code"]) == int(source.header["sform_code"])
    assert int(written.header["qform_code"]) == int(source.header["qform_code"])
    assert nib.aff2axcodes(written.affine) == nib.aff2axcodes(source.affine)


# ----------------------------------------------------------------------------- notebooks
def write_notebook(path: Path, *sources: str) -> Path:
    """A python3 notebook of code cells at ``path`` (its folder made), the first cell tagged ``parameters``."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    cells = [new_code_cell(src) for src in sources]
    cells[0].metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = dict(PYTHON3_KERNEL)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return Path(path)
