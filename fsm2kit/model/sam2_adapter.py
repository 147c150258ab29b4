"""The one place where fsm2kit reaches into SAM2's private API (sam2 1.1.0).

fsm2kit composes SAM2's tracking step from ``SAM2Base``'s own building blocks, exactly as
sam2's video predictor calls them, so that its logits equal the predictor's bit for bit. Some
of those blocks are private methods (a leading underscore), which sam2 may rename or change
without notice. Every call of a SAM2-private method or attribute, and every patch of sam2's
internals, goes through a function of this module, each naming the sam2 1.1.0 code it wraps;
``tests/test_sam2_adapter.py`` checks that no other fsm2kit module does. When sam2 changes,
this module is what to read and update.

The functions only forward their arguments: they add no computation, so results are
unchanged. ``sam`` is a built SAM2 model (a ``SAM2Base``, e.g. ``SAM2Model.module``); ``attn``
a sam2 attention layer (``sam2.modeling.sam.transformer.Attention`` or its subclass
``RoPEAttention``). SAM2's public API (``build_sam2_video_predictor``, public attributes such as
``num_maskmem`` or ``hidden_dim``, the modules' ``forward``) is used directly elsewhere.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import TYPE_CHECKING, NamedTuple

from .holes import connected_components

if TYPE_CHECKING:
    import torch

__all__ = [
    "SAM2_VERSION",
    "HeadOutputs",
    "forward_heads",
    "use_mask_as_output",
    "use_multimask",
    "mask_decoder_stability",
    "encode_memory",
    "separate_heads",
    "recombine_heads",
    "install_cpu_connected_components",
]

#: The sam2 release whose private API this module wraps.
SAM2_VERSION = "1.1.0"


class HeadOutputs(NamedTuple):
    """What SAM2's mask heads return (``SAM2Base._forward_sam_heads``), in sam2's order.

    A tuple: it unpacks like sam2's own return value.
    """

    low_res_multimasks: "torch.Tensor"  # (B, M, S/4, S/4)
    high_res_multimasks: "torch.Tensor"  # (B, M, S, S)
    ious: "torch.Tensor"  # (B, M)
    low_res_masks: "torch.Tensor"  # (B, 1, S/4, S/4), the chosen mask
    high_res_masks: "torch.Tensor"  # (B, 1, S, S)
    obj_ptr: "torch.Tensor"  # (B, hidden_dim)
    object_score_logits: "torch.Tensor"  # (B, 1)


# ----------------------------------------------------------------------------- SAM2Base
def forward_heads(
    sam,
    *,
    backbone_features: "torch.Tensor",
    point_inputs: dict | None = None,
    mask_inputs: "torch.Tensor | None" = None,
    high_res_features: list | None = None,
    multimask_output: bool = False,
) -> HeadOutputs:
    """SAM2's prompt encoder and mask decoder on (memory-conditioned) image features.

    Wraps ``SAM2Base._forward_sam_heads`` (sam2 1.1.0, ``sam2/modeling/sam2_base.py``): masks,
    IoU predictions, the object pointer and the object score of each batch element.

    Parameters
    ----------
    sam : SAM2Base
    backbone_features : Tensor, (B, C, H, W)
        Top-level image features (after memory attention when tracking).
    point_inputs : dict, optional
        ``{"point_coords": (B, P, 2) float32 in model-input pixels, "point_labels": (B, P) int32}``.
    mask_inputs : Tensor, optional
        (B, 1, H', W') mask logits fed to the prompt encoder.
    high_res_features : list of Tensor, optional
        The two high-resolution FPN levels (already projected by the decoder's ``conv_s0/s1``).
    multimask_output : bool
        Predict three masks and keep the one of highest predicted IoU (see :func:`use_multimask`).
    """
    return HeadOutputs(*sam._forward_sam_heads(
        backbone_features=backbone_features,
        point_inputs=point_inputs,
        mask_inputs=mask_inputs,
        high_res_features=high_res_features,
        multimask_output=multimask_output,
    ))


def use_mask_as_output(sam, backbone_features: "torch.Tensor", high_res_features: list,
                       mask_inputs: "torch.Tensor") -> HeadOutputs:
    """A mask prompt taken as the frame's output (+-10 logits), with its object pointer.

    Wraps ``SAM2Base._use_mask_as_output`` (sam2 1.1.0, ``sam2/modeling/sam2_base.py``): what
    the video predictor does with a frame prompted by a mask. Same outputs as
    :func:`forward_heads`.
    """
    return HeadOutputs(*sam._use_mask_as_output(backbone_features, high_res_features, mask_inputs))


def use_multimask(sam, is_init_cond_frame: bool, point_inputs: dict | None) -> bool:
    """Whether SAM2's mask decoder predicts several masks for this step.

    Wraps ``SAM2Base._use_multimask`` (sam2 1.1.0, ``sam2/modeling/sam2_base.py``): it depends on
    the number of points and on the model's ``multimask_output_*`` settings.
    """
    return sam._use_multimask(is_init_cond_frame, point_inputs)


@contextlib.contextmanager
def mask_decoder_stability(sam, enabled: bool | None):
    """SAM2's dynamic multimask via stability set to ``enabled`` inside the ``with`` block.

    Sets ``SAM2Base.sam_mask_decoder.dynamic_multimask_via_stability`` (sam2 1.1.0,
    ``sam2/modeling/sam/mask_decoder.py``: a step without multimask output falls back to the
    best multimask output when the single mask is unstable) and restores it on exit. ``None``
    or the model's own value changes nothing.
    """
    dec = sam.sam_mask_decoder
    old = dec.dynamic_multimask_via_stability
    if enabled is None or bool(enabled) == bool(old):
        yield
        return
    dec.dynamic_multimask_via_stability = bool(enabled)
    try:
        yield
    finally:
        dec.dynamic_multimask_via_stability = old


def encode_memory(
    sam,
    current_vision_feats: list,
    feat_sizes: list,
    pred_masks_high_res: "torch.Tensor",
    object_score_logits: "torch.Tensor",
    *,
    is_mask_from_pts: bool,
) -> tuple["torch.Tensor", list]:
    """A frame's memory: its image features fused with a predicted mask by SAM2's memory encoder.

    Wraps ``SAM2Base._encode_new_memory`` (sam2 1.1.0, ``sam2/modeling/sam2_base.py``). Returns
    ``(maskmem_features (B, mem_dim, h, w), maskmem_pos_enc list)``; with
    ``is_mask_from_pts=True`` (and the published ``binarize_mask_from_pts_for_mem_enc``) the
    mask is binarised before encoding.
    """
    return sam._encode_new_memory(
        current_vision_feats, feat_sizes, pred_masks_high_res, object_score_logits, is_mask_from_pts=is_mask_from_pts,
    )


# ----------------------------------------------------------------------------- attention layers
def separate_heads(attn, x: "torch.Tensor") -> "torch.Tensor":
    """(B, N, C) projected tokens -> (B, heads, N, C / heads), as the layer's forward splits them.

    Wraps ``Attention._separate_heads(x, attn.num_heads)`` (sam2 1.1.0,
    ``sam2/modeling/sam/transformer.py``; ``RoPEAttention`` inherits it).
    """
    return attn._separate_heads(x, attn.num_heads)


def recombine_heads(attn, x: "torch.Tensor") -> "torch.Tensor":
    """(B, heads, N, C / heads) -> (B, N, C), the inverse of :func:`separate_heads`.

    Wraps ``Attention._recombine_heads`` (sam2 1.1.0, ``sam2/modeling/sam/transformer.py``).
    """
    return attn._recombine_heads(x)


# ----------------------------------------------------------------------------- patches
def install_cpu_connected_components() -> None:
    """Provide ``sam2._C.get_connected_componnets`` (sic) backed by
    :func:`~fsm2kit.model.holes.connected_components`.

    sam2 looks the function up in its CUDA extension ``sam2._C`` (``sam2/utils/misc.py``,
    ``get_connected_components``) and skips hole filling when the extension is missing (always
    on CPU). After this call sam2's own predictors post-process like fsm2kit does. Used by the
    faithfulness tests to give the oracle the same post-processing; it changes nothing if the
    real extension is importable.
    """
    try:  # the real extension wins
        import sam2._C  # noqa: F401

        return
    except ImportError:
        pass
    mod = types.ModuleType("sam2._C")
    mod.get_connected_componnets = lambda m: connected_components(m)  # type: ignore[attr-defined]
    sys.modules["sam2._C"] = mod
    import sam2

    sam2._C = mod  # type: ignore[attr-defined]
