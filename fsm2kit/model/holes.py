"""SAM2's small-hole filling on any device (sam2 does it only with its CUDA extension).

Giving sam2 itself this labeller (a patch of ``sam2._C``) is
:func:`fsm2kit.model.sam2_adapter.install_cpu_connected_components`.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["connected_components", "fill_holes"]


def connected_components(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """8-connected components of binary masks, like sam2's CUDA ``get_connected_componnets``.

    Parameters
    ----------
    mask : Tensor, (N, 1, H, W)
        Binary masks (nonzero = in a component).

    Returns
    -------
    labels, areas : Tensor, (N, 1, H, W) int32
        Component label (0 outside the mask) and the area of each pixel's component
        (0 outside the mask), on the input's device.
    """
    from scipy import ndimage

    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"connected_components expects (N, 1, H, W) masks, got {tuple(mask.shape)}.")
    m = mask.detach().to("cpu").numpy().astype(bool)
    labels = np.zeros(m.shape, dtype=np.int32)
    areas = np.zeros(m.shape, dtype=np.int32)
    structure = np.ones((3, 3), dtype=bool)
    for i in range(m.shape[0]):
        lab, n = ndimage.label(m[i, 0], structure=structure)
        if n:
            counts = np.bincount(lab.ravel())
            counts[0] = 0
            labels[i, 0] = lab
            areas[i, 0] = counts[lab]
    return torch.from_numpy(labels).to(mask.device), torch.from_numpy(areas).to(mask.device)


def fill_holes(logits: torch.Tensor, max_area: int = 8) -> torch.Tensor:
    """SAM2's hole filling, on any device.

    Background connected components (score <= 0, 8-connectivity) with an area of at most
    ``max_area`` pixels are set to +0.1 (foreground), exactly as sam2's
    ``fill_holes_in_mask_scores`` does with its CUDA extension.

    Parameters
    ----------
    logits : Tensor, (N, 1, H, W)
        Low-resolution mask logits (H = W = image_size / 4 in SAM2).
    max_area : int
        Largest hole area to fill; 0 disables filling.
    """
    if max_area <= 0:
        return logits
    labels, areas = connected_components(logits <= 0)
    is_hole = (labels > 0) & (areas <= max_area)
    return torch.where(is_hole, torch.tensor(0.1, dtype=logits.dtype, device=logits.device), logits)
