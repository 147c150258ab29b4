"""Memory bank inspector: which memories SAM2 attends to when it segments a query slice.

SAM2's memory attention fuses a query slice's image tokens with the memory bank: each layer's
``cross_attn_image`` (a ``RoPEAttention``) attends from the slice's tokens (queries) to the
memory tokens (keys): the spatial tokens of every selected memory frame, in
``selection.spatial`` order, then the object-pointer tokens (each pointer split into
``hidden_dim // mem_dim`` tokens), in ``selection.pointers`` order. SAM2 computes it with
``F.scaled_dot_product_attention`` and never returns the weights.

This module captures them, scoped and read-only:

* :meth:`MemoryInspector.capture` is a context manager that registers forward hooks (with
  ``with_kwargs=True``) on the chosen layers' ``cross_attn_image`` and observes the engine
  through its hook (:meth:`Engine.observe`: each forward's steps and their memory-token
  layouts); both are removed on exit, so with inspection off nothing runs. Batched forwards
  (several steps along SAM2's batch axis) are split step by step.
  The hook recomputes the projections, RoPE and ``softmax(q k^T / sqrt(d))`` from the layer's
  inputs (in chunks of query tokens) and reduces them on the fly: attention mass per memory
  entry for every query token (kept until the step's prediction is known, then averaged over
  all tokens and over the predicted foreground), full attention rows only for chosen pixels.
  With ``verify=True`` it also recomputes ``out_proj(softmax(q k^T / sqrt(d)) v)`` and records
  its relative error against the layer's real output: the capture is checked, not assumed.
* :func:`key_layout` names the spans of the engine's token layout
  (:func:`fsm2kit.engine.memory.token_layout`) as :class:`KeyEntry` s (support memories,
  previous-query memories, object pointers).
* :class:`Inspection` holds the typed per-step results (:class:`StepAttention`) and gives tidy
  tables (:attr:`Inspection.masses`, :meth:`Inspection.pixel_frame`) and per-pixel attention
  maps over each memory frame (:class:`PixelAttention`, recomputed on demand for any pixel).

Inspection never changes results: the hooks return nothing and only read their inputs.

Examples
--------
>>> insp = inspect_episode(engine, episode, "S1SFQ", order="middle")      # doctest: +SKIP
>>> insp.mean_shares()        # mean share per memory group over the slices   # doctest: +SKIP
>>> pa = insp.pixel_attention(step=3, pixel=(128, 120), layer=0)           # doctest: +SKIP
>>> pa.upsampled(0, (256, 256))          # attention over memory entry 0, on its image
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import torch

from ..engine.engine import Engine
from ..engine.results import EpisodeResult
from ..engine.tracking import TrackOutput
from ..protocol.episodes import Episode
from ..engine.memory import MemoryBank, MemorySelection, TokenLayout
from ..model.sam2_adapter import recombine_heads, separate_heads
from .attention import PixelAttention, StepAttention, attention_inputs, attention_weights
from .layout import KeyLayout, layout_entries, query_token, token_weights

if TYPE_CHECKING:
    from .inspection import Inspection

__all__ = ["MemoryInspector"]


# ----------------------------------------------------------------------------- capture
@dataclass(eq=False)
class _StepContext:
    call: int
    position: int
    z: int | None
    selection: MemorySelection
    bank: MemoryBank
    layout: KeyLayout
    image: np.ndarray
    image_shape: tuple[int, int]
    pixels: tuple[tuple[int, int], ...]
    token_mass: dict[int, torch.Tensor] = field(default_factory=dict)  # layer -> (Hd, Nq, E)
    rows: dict[tuple[int, int, int], np.ndarray] = field(default_factory=dict)  # (pixel i, layer, head)
    rel_error: dict[int, float] = field(default_factory=dict)
    sum_error: float = 0.0
    grid: tuple[int, int] | None = None
    tokens: tuple[tuple[int, int], ...] = ()


class MemoryInspector:
    """Captures SAM2's memory attention while an :class:`~fsm2kit.engine.Engine` tracks slices.

    Each :meth:`capture` appends one :class:`StepAttention` per tracking step to
    :attr:`records`, in processing order; :meth:`inspection` attaches them to an
    :class:`~fsm2kit.engine.EpisodeResult`.

    Examples
    --------
    >>> inspector = MemoryInspector()                                          # doctest: +SKIP
    >>> with inspector.capture(engine, layers=[0, 3], verify=True):            # doctest: +SKIP
    ...     result = engine.segment(episode, "S1SFQ", keep_banks=True)
    >>> insp = inspector.inspection(result, episode)                           # doctest: +SKIP
    """

    def __init__(self) -> None:
        self.records: list[StepAttention] = []
        self.unattributed_calls = 0
        self._ctx: list[_StepContext] | None = None
        self._active = False
        self._options: dict = {}

    def __repr__(self) -> str:
        state = "capturing" if self._active else "idle"
        return f"MemoryInspector({len(self.records)} steps captured, {state})"

    @property
    def options(self) -> dict:
        """The options of the latest :meth:`capture` (layers, heads, pixels, verify, ...), a copy."""
        return dict(self._options)

    def clear(self) -> None:
        self.records.clear()
        self.unattributed_calls = 0

    # ------------------------------------------------------------------ the context manager
    @contextlib.contextmanager
    def capture(
        self,
        engine: Engine,
        *,
        layers: Sequence[int] | None = None,
        heads: Sequence[int] | None = None,
        pixels: Sequence[tuple[int, int]] | None = None,
        verify: bool = False,
        max_elements: int = 1 << 24,
    ) -> Iterator["MemoryInspector"]:
        """Record memory attention for every tracking step run inside the ``with`` block.

        Parameters
        ----------
        engine : Engine
            The engine whose steps to capture (through :meth:`Engine.observe`; batched forwards
            are captured step by step).
        layers : sequence of int, optional
            Memory-attention layers (default: all; negative indices count from the end).
        heads : sequence of int, optional
            Attention heads (default: all; SAM2's memory attention has 1).
        pixels : sequence of (y, x), optional
            Query-slice pixels whose full attention rows to keep (every step, layer, head).
        verify : bool
            Recompute ``out_proj(softmax(q k^T / sqrt(d)) v)`` and record its relative error
            against the layer's output (:attr:`StepAttention.rel_error`).
        max_elements : int
            Attention weights are computed in chunks of query tokens of at most this many
            elements (default 2**24: 64 MiB in float32).
        """
        if not isinstance(engine, Engine):
            raise TypeError(f"capture(engine): expected an fsm2kit Engine, got {type(engine).__name__}.")
        if self._active:
            raise RuntimeError("this MemoryInspector is already capturing; leave the first `with` block first.")
        if any(isinstance(ob, MemoryInspector) for ob in engine.observers):
            raise RuntimeError("this engine is already being inspected by another MemoryInspector.")
        mods = list(engine.module.memory_attention.layers)
        n_layers = len(mods)
        layer_ids = tuple(range(n_layers)) if layers is None else tuple(int(l) for l in layers)
        bad = [l for l in layer_ids if not -n_layers <= l < n_layers]
        if bad or not layer_ids:
            raise ValueError(f"layers {list(layer_ids)}: the memory attention has {n_layers} layers; "
                             f"pass indices in 0..{n_layers - 1} (or None for all).")
        layer_ids = tuple(sorted({l % n_layers for l in layer_ids}))
        n_heads = int(mods[0].cross_attn_image.num_heads)
        head_ids = tuple(range(n_heads)) if heads is None else tuple(sorted({int(h) for h in heads}))
        if not head_ids or any(not 0 <= h < n_heads for h in head_ids):
            raise ValueError(f"heads {list(heads or [])}: the memory attention has {n_heads} head(s); "
                             f"pass indices in 0..{n_heads - 1} (or None for all).")
        pix = tuple((int(y), int(x)) for y, x in (pixels or ()))
        if max_elements < 1:
            raise ValueError(f"max_elements must be >= 1, got {max_elements}.")
        self._options = dict(layers=layer_ids, heads=head_ids, pixels=pix, verify=bool(verify),
                             max_elements=int(max_elements), tokens_per_pointer=engine.tokens_per_pointer,
                             num_maskmem=int(engine.settings.num_maskmem))
        handles = []
        self._active = True
        try:
            for l in layer_ids:
                attn = mods[l].cross_attn_image
                handles.append(attn.register_forward_hook(functools.partial(self._hook, l), with_kwargs=True))
            with engine.observe(self):
                yield self
        finally:
            for h in handles:
                h.remove()
            self._active = False
            self._ctx = None

    # ------------------------------------------------------------------ the engine's observer hook
    def before_forward(self, requests, layouts) -> None:
        """Engine hook: a tracking forward of ``len(requests)`` steps is about to run."""
        self._ctx = [self._begin(r, lay) for r, lay in zip(requests, layouts)]

    def after_forward(self, requests, outputs) -> None:
        """Engine hook: the forward ran; one record per step, in batch order."""
        ctxs, self._ctx = self._ctx, None
        for ctx, out, req in zip(ctxs or (), outputs, requests):
            if getattr(req, "role", "query") == "query":  # not a refinement pass's consistency step
                self.records.append(self._finish(ctx, out))

    # ------------------------------------------------------------------ per step
    def _begin(self, request, token_layout_: TokenLayout) -> _StepContext:
        o = self._options
        layout = layout_entries(token_layout_, request.bank, num_maskmem=o["num_maskmem"])
        image = request.image
        shape = tuple(int(s) for s in np.shape(image)[-2:])
        for y, x in o["pixels"]:
            if not (0 <= y < shape[0] and 0 <= x < shape[1]):
                raise ValueError(f"pixel (y={y}, x={x}) is outside the {shape[0]}x{shape[1]} query slice.")
        z = request.z
        return _StepContext(
            call=len(self.records), position=int(request.index), z=None if z is None else int(z),
            selection=request.selection, bank=request.bank, layout=layout, image=image, image_shape=shape,
            pixels=o["pixels"],
        )

    @torch.no_grad()
    def _hook(self, layer: int, module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor):
        ctxs = self._ctx
        if ctxs is None:  # the layer ran outside a tracking forward (e.g. a direct module call)
            self.unattributed_calls += 1
            return None
        q, k, v, n_excl = attention_inputs(args, kwargs)
        if q.shape[0] != len(ctxs):
            raise RuntimeError(f"memory-attention hook: a batch of {q.shape[0]} query slices, but the engine "
                               f"announced {len(ctxs)} tracking steps for this forward.")
        for ctx in ctxs:
            lay = ctx.layout
            if k.shape[-2] != lay.n_tokens or n_excl != lay.n_pointer_tokens:
                raise RuntimeError(
                    f"memory attention layer {layer} got {k.shape[-2]} key tokens ({n_excl} without RoPE), "
                    f"but the memory selection lays out {lay.n_tokens} ({lay.n_pointer_tokens} pointer "
                    f"tokens): {lay!r}. The engine's memory layout changed; update fsm2kit.engine.memory.token_layout."
                )
        qh, kh = attention_weights(module, q, k, n_excl)
        qh, kh = qh.float(), kh.float()
        vh = separate_heads(module, module.v_proj(v)).float() if self._options["verify"] else None
        for b, ctx in enumerate(ctxs):
            self._reduce(b, ctx, layer, module, qh, kh, vh, output)
        return None

    def _reduce(self, b: int, ctx: _StepContext, layer: int, module: torch.nn.Module, qh: torch.Tensor,
                kh: torch.Tensor, vh: torch.Tensor | None, output: torch.Tensor) -> None:
        """Attention of batch element ``b`` (one step), reduced to masses per memory entry."""
        o = self._options
        lay = ctx.layout
        nq, nk, d = qh.shape[-2], kh.shape[-2], qh.shape[-1]
        side = int(round(math.sqrt(nq)))
        ctx.grid = (side, side)
        if not ctx.tokens:
            ctx.tokens = tuple(query_token(p, ctx.image_shape, ctx.grid) for p in ctx.pixels)
        scale = 1.0 / math.sqrt(d)
        assign = lay.assignment(qh.device)
        heads = list(o["heads"])
        chunk = max(1, o["max_elements"] // max(1, nk * qh.shape[1]))
        masses, outs = [], []
        flat_tokens = [r * side + c for r, c in ctx.tokens]
        for c0 in range(0, nq, chunk):
            a = torch.softmax((qh[b, :, c0:c0 + chunk] @ kh[b].transpose(-1, -2)) * scale, dim=-1)  # (Hd, c, Nk)
            m = a[heads] @ assign  # (Hd_sel, c, E)
            ctx.sum_error = max(ctx.sum_error, float((m.sum(-1) - 1).abs().max()))
            masses.append(m)
            for i, t in enumerate(flat_tokens):
                if c0 <= t < c0 + a.shape[1]:
                    for h in heads:
                        ctx.rows[(i, layer, h)] = a[h, t - c0].cpu().numpy().astype(np.float32)
            if vh is not None:
                outs.append(a @ vh[b])  # (Hd, c, dv)
        ctx.token_mass[layer] = torch.cat(masses, dim=1)
        if vh is not None:
            attn = torch.cat(outs, dim=1)[None]  # (1, Hd, Nq, dv)
            re = module.out_proj(recombine_heads(module, attn).to(module.out_proj.weight.dtype)).float()
            ref = output[b:b + 1].float()
            ctx.rel_error[layer] = float((re - ref).norm() / ref.norm().clamp_min(1e-30))

    def _finish(self, ctx: _StepContext, out: TrackOutput) -> StepAttention:
        o = self._options
        layers, heads = o["layers"], o["heads"]
        missing = [l for l in layers if l not in ctx.token_mass]
        if missing:
            raise RuntimeError(f"memory-attention layers {missing} did not run during the tracking step "
                               f"of query slice {ctx.position}; is the engine's track calling memory_attention?")
        pred = np.asarray(out.logits) > 0
        grid = ctx.grid
        w = token_weights(pred, grid)
        tm = torch.stack([ctx.token_mass[l] for l in layers]).cpu().double().numpy()  # (L, Hd, Nq, E)
        mass_all = tm.mean(axis=2)
        fg = int(pred.sum())
        mass_fg = np.einsum("lhqe,q->lhe", tm, w) / w.sum() if w.sum() > 0 else None
        pix = []
        for i, p in enumerate(ctx.pixels):
            for l in layers:
                for h in heads:
                    pix.append(PixelAttention(p, ctx.tokens[i], l, h, ctx.rows[(i, l, h)], ctx.layout, ctx.z))
        rel = np.array([ctx.rel_error[l] for l in layers]) if o["verify"] else None
        sel = ctx.selection
        return StepAttention(
            call=ctx.call, position=ctx.position, z=ctx.z, frame_idx=sel.frame_idx, reverse=sel.reverse,
            selection=sel, layout=ctx.layout, layers=layers, heads=heads, mass_all=mass_all, mass_fg=mass_fg,
            fg_pixels=fg, token_sum_error=ctx.sum_error, rel_error=rel, pixels=pix, grid=grid,
            image_shape=ctx.image_shape, prediction=pred, image=ctx.image, bank=ctx.bank,
        )

    # ------------------------------------------------------------------ attach to a result
    def inspection(self, result: EpisodeResult, episode: Episode | None = None, *, engine: Engine | None = None,
                   records: Sequence[StepAttention] | None = None) -> "Inspection":
        """Attach captured steps to the :class:`EpisodeResult` of the same run.

        Steps are matched in processing order (plans in order, steps in order) and checked
        against each slice's ``selection``.
        """
        recs = list(self.records if records is None else records)
        slices = sorted(result.slices, key=lambda s: (s.plan_index, s.step))
        if getattr(result, "refinement", "none") != "none" and len(recs) != len(slices):
            # refinement passes: each slice's output comes from the last step that tracked it
            last = {(r.position, r.selection): r for r in recs}
            recs = [last.get((s.position, s.selection), recs[0]) for s in slices]
        if len(recs) != len(slices):
            raise ValueError(
                f"{len(recs)} captured tracking steps but the result has {len(slices)} query slices; "
                "capture exactly one engine.segment(...) call (or pass records=...), and clear() in between."
            )
        steps = []
        for k, (r, s) in enumerate(zip(recs, slices)):
            if r.selection != s.selection or r.position != s.position:
                raise ValueError(
                    f"captured step {k} (query {r.position}, frame {r.frame_idx}) does not match the result's "
                    f"slice (query {s.position}, plan {s.plan_index}, step {s.step}): the capture and the "
                    "result come from different runs."
                )
            pixels = [replace(p, step=k) for p in r.pixels]
            steps.append(replace(r, plan_index=s.plan_index, step=s.step, call=k, pixels=pixels))
        from .inspection import Inspection  # (inspection.py builds on this module)

        return Inspection(steps=steps, result=result, episode=episode, engine=engine, options=self.options)


