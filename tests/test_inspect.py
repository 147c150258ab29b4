"""Memory bank inspector: capture proof, attribution layout, masses, views and widget.

All SAM2 runs use random weights (tiny, 256 px): the attention content is meaningless; what is
tested is that the capture reproduces the model's computation and that the bookkeeping is right.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fsm2kit.engine import Engine
from fsm2kit.inspector.inspection import MASS_COLUMNS
from fsm2kit.inspector.layout import KeyLayout, key_layout, query_token, token_weights
from fsm2kit.inspector import MemoryInspector, inspect_episode
from fsm2kit.inspector.attention import attention_weights
from fsm2kit.engine.memory import MemoryBank, MemorySettings, select_memories
from fsm2kit.run.sources import subset_episode

from helpers import memory_entry


# ----------------------------------------------------------------------------- pure, no SAM2


def test_key_layout_by_hand():
    # frames: 0 = support #2 (z=40), 1..4 = queries at positions 0..3 (z=10..13); segment frame 4
    bank = MemoryBank(5)
    bank.add(0, memory_entry(True, 2, z=40, score=0.0, size=(2, 3)))
    for f in (1, 2, 3):
        bank.add(f, memory_entry(False, f - 1, z=9 + f, score=0.0, size=(2, 3)))
    sel = select_memories(4, cond_frames=[0], non_cond_frames=[1, 2, 3], num_frames=5, settings=MemorySettings())
    lay = key_layout(sel, bank, tokens_per_pointer=4, num_maskmem=7)
    # spatial (SAM2's order: by temporal slot): support (t0), frame 1 (t4), frame 2 (t5), frame 3 (t6)
    assert [(e.kind, e.frame_idx, e.t_pos) for e in lay.spatial] == [
        ("support", 0, 0), ("query", 1, 4), ("query", 2, 5), ("query", 3, 6)]
    assert [(e.start, e.stop) for e in lay.spatial] == [(0, 6), (6, 12), (12, 18), (18, 24)]
    # pointers: the support's (d=4), then frames 3, 2, 1 (d=1, 2, 3); 4 tokens each
    assert [(e.source, e.frame_idx, e.t_pos) for e in lay.pointers] == [
        ("support", 0, 4), ("query", 3, 1), ("query", 2, 2), ("query", 1, 3)]
    assert [(e.start, e.stop) for e in lay.pointers] == [(24, 28), (28, 32), (32, 36), (36, 40)]
    assert lay.n_tokens == 40 and lay.n_pointer_tokens == 16
    # one naming scheme: support #k (z=..), query z=.. (SAM2 d=k), pointers
    assert [e.role for e in lay] == ["support #2 (z=40)", "query (SAM2 d=3)", "query (SAM2 d=2)", "query (SAM2 d=1)",
                                     "pointers", "pointers", "pointers", "pointers"]
    assert lay[0].label == "support #2 (z=40)" and lay[1].label == "query z=10 (SAM2 d=3)"
    assert lay[4].label == "pointers: support #2 (z=40)" and lay[5].label == "pointers: query z=12 (SAM2 d=1)"
    assert [e.z for e in lay.spatial] == [40, 10, 11, 12]
    ids = lay.entry_ids()
    assert np.array_equal(np.bincount(ids), [6, 6, 6, 6, 4, 4, 4, 4])
    a = lay.assignment()
    assert a.shape == (40, 8) and torch.equal(a.sum(1), torch.ones(40))
    df = lay.to_frame()
    assert list(df["n_tokens"]) == [6, 6, 6, 6, 4, 4, 4, 4]
    assert "4 spatial memories" in repr(lay)


def test_key_layout_rejects_gaps_and_foreign_banks():
    bank = MemoryBank(3)
    bank.add(0, memory_entry(True, 0, score=0.0, size=(2, 3)))
    sel = select_memories(2, cond_frames=[0], non_cond_frames=[], num_frames=3)
    lay = key_layout(sel, bank)
    bad = dataclasses.replace(lay.entries[1], start=lay.entries[1].start + 1)
    with pytest.raises(ValueError, match="contiguous"):
        KeyLayout((lay.entries[0], bad), lay.n_tokens, 4)
    with pytest.raises(ValueError, match="cover"):
        KeyLayout(lay.entries, lay.n_tokens + 1, 4)
    with pytest.raises(KeyError, match="keep_banks"):
        key_layout(sel, MemoryBank(3))


def test_query_token_and_token_weights_by_hand():
    # a 4x4 image on a 2x2 token grid: pixel (y, x) -> (y // 2, x // 2)
    assert query_token((0, 0), (4, 4), (2, 2)) == (0, 0)
    assert query_token((1, 2), (4, 4), (2, 2)) == (0, 1)
    assert query_token((3, 3), (4, 4), (2, 2)) == (1, 1)
    assert query_token((255, 0), (256, 256), (16, 16)) == (15, 0)
    with pytest.raises(ValueError, match="outside the 4x4"):
        query_token((4, 0), (4, 4), (2, 2))
    mask = np.zeros((4, 4), bool)
    mask[0, 0] = mask[0, 1] = mask[1, 0] = True  # 3 of token (0,0)'s 4 pixels
    mask[3, 3] = True  # 1 of token (1,1)'s
    assert np.allclose(token_weights(mask, (2, 2)), [0.75, 0.0, 0.0, 0.25])
    # foreground mean of per-token values m: sum(w m) / sum(w) = (0.75*1 + 0.25*5) / 1 = 2
    m = np.array([1.0, 2.0, 3.0, 5.0])
    w = token_weights(mask, (2, 2))
    assert (w * m).sum() / w.sum() == pytest.approx(2.0)


def test_attention_recompute_matches_rope_attention():
    """softmax(q k^T / sqrt(d)) v through out_proj reproduces sam2's RoPEAttention (small, random)."""
    from sam2.modeling.sam.transformer import RoPEAttention

    torch.manual_seed(0)
    attn = RoPEAttention(embedding_dim=32, num_heads=2, kv_in_dim=16, rope_k_repeat=True, feat_sizes=(4, 4)).eval()
    q = torch.randn(1, 16, 32)  # 4x4 query tokens
    k = torch.randn(1, 3 * 16 + 8, 16)  # 3 memories of 4x4 + 8 pointer tokens
    v = torch.randn_like(k)
    with torch.no_grad():
        out = attn(q, k, v, num_k_exclude_rope=8)
        qh, kh = attention_weights(attn, q, k, 8)
        a = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(qh.shape[-1]), dim=-1)
        vh = attn._separate_heads(attn.v_proj(v), attn.num_heads)
        re = attn.out_proj(attn._recombine_heads(a @ vh))
    assert torch.allclose(a.sum(-1), torch.ones(1, 2, 16), atol=1e-6)
    assert float((re - out).norm() / out.norm()) < 1e-5


def test_mean_shares_count_an_absent_group_as_zero_and_sum_to_one():
    """Issue 25: groups appear (query memory from the second slice) and disappear (a memory policy
    that drops the pointers): the mean over slices counts an absent group as 0 and sums to 1."""
    from fsm2kit.inspector.inspection import MEAN_SHARE_NOTE, mean_shares

    rows = []
    per_slice = [  # proc_index -> {group: mass} (each layer and head: the groups sum to 1)
        {"support memory": 0.9, "pointers": 0.1},                              # no query memory yet
        {"support memory": 0.3, "query memory": 0.6, "pointers": 0.1},
        {"support memory": 0.2, "query memory": 0.8},                          # no pointers
    ]
    for k, groups in enumerate(per_slice):
        for layer in (0, 1):
            for head in (0, 1):
                for g, v in groups.items():
                    rows.append(dict(proc_index=k, layer=layer, head=head, group=g, mass=v))
    sh = mean_shares(pd.DataFrame(rows))
    assert sh.sum() == pytest.approx(1.0)
    assert sh["query memory"] == pytest.approx((0 + 0.6 + 0.8) / 3)
    assert sh["pointers"] == pytest.approx(0.2 / 3) and sh["support memory"] == pytest.approx(1.4 / 3)
    # the conditional mean (the old print) would give query memory 0.7 and a sum above 1
    old = pd.DataFrame(rows).groupby("group")["mass"].mean()
    assert old.sum() > 1.05
    assert sh.attrs["n_slices"] == 3 and "counts as 0" in MEAN_SHARE_NOTE.format(n=3)


def test_episode_subset(example_episode):
    sub = subset_episode(example_episode, positions=slice(8, 12))
    assert list(sub.z) == list(example_episode.z[8:12]) and sub.images.shape[0] == 4
    assert sub.supports is example_episode.supports and list(sub.chunks) == list(example_episode.chunks[8:12])
    with pytest.raises(ValueError, match="ascending"):
        subset_episode(example_episode, positions=[3, 1])
    with pytest.raises(ValueError, match="no query positions"):
        subset_episode(example_episode, positions=[])


# ----------------------------------------------------------------------------- SAM2 (random weights)
@pytest.fixture(scope="module")
def engine(tiny256):
    return Engine(tiny256, progress=False)


@pytest.fixture(scope="module")
def s1sfq(engine, example_episode):
    """S1SFQ-middle on the whole bundled case, captured with verification, plus a plain run."""
    plain = engine.segment(example_episode, "S1SFQ", order="middle")
    insp = inspect_episode(engine, example_episode, "S1SFQ", order="middle", verify=True, pixels=[(120, 90)])
    return plain, insp


def _hooks(engine):
    return [len(l.cross_attn_image._forward_hooks) for l in engine.module.memory_attention.layers]


@pytest.mark.slow
def test_capture_is_proven_and_changes_nothing(engine, s1sfq):
    plain, insp = s1sfq
    # the recomputed attention reproduces every layer's output (out_proj(A v) vs the real output)
    assert len(insp) == 24 and insp.layers == (0, 1, 2, 3)
    assert all(s.rel_error is not None and s.rel_error.shape == (4,) for s in insp.steps)
    assert insp.max_rel_error < 1e-4, insp.max_rel_error
    # inspection does not change results: identical logits with and without it
    assert np.array_equal(plain.logits(), insp.result.logits())
    # and leaves nothing behind: no hooks, the class's track method again
    assert _hooks(engine) == [0, 0, 0, 0] and "track" not in engine.__dict__
    # masses per query token sum to 1 (checked for every token inside the hook) ...
    assert insp.max_token_sum_error < 1e-5
    # ... so the token-averaged masses of each step, layer and head sum to 1 as well
    sums = insp.masses.groupby(["proc_index", "layer", "head", "region"])["mass"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5)
    # processing order and the plan's steps (middle: forward from the supports, then backward)
    assert [s.step for s in insp.steps] == list(range(24))
    assert [s.z for s in insp.steps] == list(range(24, 36)) + list(range(23, 11, -1))
    assert all(s.reverse for s in insp.steps[12:]) and not any(s.reverse for s in insp.steps[:12])
    # provenance: weights named everywhere
    assert insp.provenance["weights"] == "random weights (seed 0)" and insp.provenance["setting"] == "S1SFQ"
    assert set(insp.masses["weights"]) == {"random weights (seed 0)"}
    assert "random weights" in repr(insp)


@pytest.mark.slow
def test_mass_table_is_tidy(s1sfq):
    _, insp = s1sfq
    m = insp.masses
    assert tuple(m.columns) == MASS_COLUMNS
    assert set(m["entry_kind"]) == {"support", "query", "pointer"}
    assert set(m["region"]) <= {"all", "foreground"}
    # random weights predict nothing here: foreground rows exist exactly for non-empty predictions
    fg_steps = {k for k, s in enumerate(insp.steps) if s.fg_pixels > 0}
    assert set(m.loc[m["region"] == "foreground", "proc_index"]) == fg_steps
    # one row per step x layer x head x entry x region
    n = sum(len(s.layout) * 4 * (1 + (s.mass_fg is not None)) for s in insp.steps)
    assert len(m) == n
    first = m[(m["proc_index"] == 0) & (m["region"] == "all")]
    assert set(first["entry_kind"]) == {"support", "pointer"}  # the first step sees the support only
    sh = insp.shares()
    assert np.allclose(sh.groupby(["proc_index", "layer", "head"])["mass"].sum(), 1.0, atol=1e-5)
    # the printed mean over slices (query memory absent from the first): sums to 1
    assert insp.mean_shares().sum() == pytest.approx(1.0, abs=1e-5)
    assert insp.mean_shares().attrs["n_slices"] == len(insp.steps)
    lay = insp.layouts()
    assert (lay.groupby("proc_index")["n_tokens"].sum().values
            == np.array([s.layout.n_tokens for s in insp.steps])).all()


@pytest.mark.slow
def test_pixel_rows_and_on_demand_recompute(s1sfq):
    _, insp = s1sfq
    k = 8
    s = insp.steps[k]
    (pa,) = [p for p in s.pixels if p.layer == 2]
    assert pa.pixel == (120, 90) and pa.token == (7, 5) and pa.step == k
    assert pa.weights.shape == (s.layout.n_tokens,)
    assert pa.mass().sum() == pytest.approx(1.0, abs=1e-5)
    e = s.layout.spatial[0]
    assert pa.grid(e).shape == (16, 16) and pa.grid(e).sum() == pytest.approx(pa.mass()[0], rel=1e-5)
    assert pa.upsampled(e, (256, 256)).shape == (256, 256)
    with pytest.raises(ValueError, match="pointer"):
        pa.grid(s.layout.pointers[0])
    df = pa.to_frame()
    assert df["weight"].sum() == pytest.approx(1.0, abs=1e-5) and len(df) == len(s.layout.spatial) * 256 + len(s.layout.pointers)
    assert len(insp.pixel_frame()) == sum(len(p.to_frame()) for st in insp.steps for p in st.pixels)
    # a pixel of the same token, recomputed by re-running the step, gives the same row
    again = insp.pixel_attention(k, (127, 95), layer=2)
    assert again is not pa and again.token == pa.token
    assert np.allclose(again.weights, pa.weights, atol=1e-6)
    # its own layout's masses and the captured token average agree in size
    assert again.mass().shape == s.mass(layer=2).shape
    with pytest.raises(ValueError, match="outside"):
        insp.pixel_attention(k, (300, 0), layer=2)
    with pytest.raises(ValueError, match="not captured"):
        insp.pixel_attention(k, (10, 10), layer=7)


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, n_slices, n_memories",
    [("1S1Q", 2, 1), ("3S1Q", 2, 3), ("S1SFQ-top", 8, 7)],
)
def test_layout_matches_the_memory_tensor(engine, example_episode, setting, n_slices, n_memories):
    """Every key token is attributed to exactly one memory entry, and the attributed token
    ranges hold exactly that entry's memory (as the engine concatenates the bank's tensors)."""
    ep = subset_episode(example_episode, positions=slice(8, 8 + n_slices))
    setting, _, order = setting.partition("-")
    seen = []

    def grab(module, args, kwargs):
        seen.append((kwargs["memory"].detach().clone(), int(kwargs.get("num_obj_ptr_tokens", 0))))

    h = engine.module.memory_attention.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        insp = inspect_episode(engine, ep, setting, order=order or "middle", layers=[0])
    finally:
        h.remove()
    assert len(seen) == len(insp.steps) == n_slices
    banks = insp.result.banks
    for s, (memory, n_ptr_tokens) in zip(insp.steps, seen):
        lay = s.layout
        assert lay.n_tokens == memory.shape[0] and lay.n_pointer_tokens == n_ptr_tokens
        ids = lay.entry_ids()
        assert np.array_equal(np.bincount(ids, minlength=len(lay)), [e.n_tokens for e in lay])
        bank = banks[s.plan_index]
        for e in lay.spatial:
            entry = bank[e.frame_idx]
            expect = entry.maskmem_features.flatten(2).permute(2, 0, 1).to(memory.dtype)
            assert torch.equal(memory[e.start:e.stop], expect), e
            assert (e.source, e.index, e.z, e.is_cond) == (entry.kind, entry.index, entry.z, entry.is_cond)
        for e in lay.pointers:
            ptr = bank[e.frame_idx].obj_ptr.reshape(4, 1, 64).to(memory.dtype)
            assert torch.equal(memory[e.start:e.stop], ptr), e
    last = insp.steps[-1].layout
    assert len(last.spatial) == n_memories
    if setting == "S1SFQ":  # 1 conditioning + 6 recent query memories, and 8 pointers
        assert [e.kind for e in last.spatial] == ["support"] + ["query"] * 6
        assert [e.t_pos for e in last.spatial] == [0, 1, 2, 3, 4, 5, 6]
        assert [e.z for e in last.spatial[1:]] == list(ep.z[1:7])
        assert len(last.pointers) == 8 and last.n_tokens == 7 * 256 + 8 * 4
    else:
        assert all(e.kind == "support" for e in last.spatial) and len(last.pointers) == n_memories
    sums = insp.masses.groupby(["proc_index", "layer", "head", "region"])["mass"].sum()
    assert np.allclose(sums, 1.0, atol=1e-5)


@pytest.mark.slow
def test_foreground_mass_is_the_area_weighted_token_mean(engine, example_episode, monkeypatch):
    """Foreground masses = sum_t w_t m_t / sum_t w_t (w: predicted-foreground area per token).

    Random weights predict nothing, so the step's prediction is replaced by the ground truth;
    per-token masses come from the full attention rows of one pixel per token.
    """
    ep = subset_episode(example_episode, positions=[12])
    gt = ep.labels[0]
    original = MemoryInspector.after_forward

    def after_forward_gt(self, requests, outputs):  # the inspector sees the ground truth as prediction
        outs = [dataclasses.replace(o, logits=np.where(gt, 1.0, -1.0).astype(np.float32)) for o in outputs]
        return original(self, requests, outs)

    monkeypatch.setattr(MemoryInspector, "after_forward", after_forward_gt)
    pixels = [(16 * r + 8, 16 * c + 8) for r in range(16) for c in range(16)]  # one per 16x16 token
    insp = inspect_episode(engine, ep, "3S1Q", layers=[1, 3], pixels=pixels)
    (s,) = insp.steps
    assert s.fg_pixels == int(gt.sum()) > 0 and s.mass_fg is not None
    w = token_weights(gt, (16, 16))
    for li, layer in enumerate(s.layers):
        rows = [p for p in s.pixels if p.layer == layer]
        assert [p.token for p in rows] == [(r, c) for r in range(16) for c in range(16)]
        per_token = np.stack([p.mass() for p in rows])  # (256, E)
        assert np.allclose(per_token.sum(1), 1.0, atol=1e-5)
        assert np.allclose(s.mass_all[li, 0], per_token.mean(0), atol=1e-6)
        assert np.allclose(s.mass_fg[li, 0], (w[:, None] * per_token).sum(0) / w.sum(), atol=1e-6)
    fg = insp.masses[insp.masses["region"] == "foreground"]
    assert len(fg) == 2 * len(s.layout)


@pytest.mark.slow
def test_capture_options_and_errors(engine, example_episode):
    ep = subset_episode(example_episode, positions=[10, 11])
    inspector = MemoryInspector()
    with pytest.raises(ValueError, match="4 layers"):
        with inspector.capture(engine, layers=[4]):
            pass
    with pytest.raises(ValueError, match="1 head"):
        with inspector.capture(engine, heads=[1]):
            pass
    with pytest.raises(TypeError, match="Engine"):
        with inspector.capture(object()):
            pass
    with inspector.capture(engine, layers=[-1], heads=[0]):
        with pytest.raises(RuntimeError, match="already"):
            with MemoryInspector().capture(engine):
                pass
        result = engine.segment(ep, "1S1Q", keep_banks=True)
    assert _hooks(engine) == [0, 0, 0, 0] and "track" not in engine.__dict__
    insp = inspector.inspection(result, ep, engine=engine)
    assert insp.layers == (3,) and [s.mass_all.shape[:2] for s in insp.steps] == [(1, 1), (1, 1)]
    other = subset_episode(example_episode, positions=[10, 11, 12])
    with pytest.raises(ValueError, match="2 captured tracking steps"):
        inspector.inspection(engine.segment(other, "1S1Q"), other)
    # an error inside the block still removes the hooks
    with pytest.raises(ZeroDivisionError):
        with inspector.capture(engine):
            1 / 0
    assert _hooks(engine) == [0, 0, 0, 0] and "track" not in engine.__dict__
    # a pixel outside the slice is refused before the step runs
    with pytest.raises(ValueError, match="outside"):
        with MemoryInspector().capture(engine, pixels=[(256, 3)]):
            engine.segment(ep, "1S1Q")


# ----------------------------------------------------------------------------- views and widget
@pytest.mark.slow
def test_charts_and_panels(s1sfq, tmp_path):
    from PIL import Image

    from fsm2kit.inspector import attention_panels, layer_heatmap, mass_chart, share_chart
    from fsm2kit.inspector.panels import chart_masses
    from fsm2kit.viz import save_figure

    _, insp = s1sfq
    cm = chart_masses(insp)
    assert np.allclose(cm.groupby("proc_index")["mass"].sum(), 1.0, atol=1e-5)
    roles = set(cm["role"])
    assert "pointers" in roles and "support #1" in roles  # npz supports carry no z; else "support #1 (z=..)"
    assert roles <= {r for r in roles if r == "pointers" or r.startswith(("support #", "query (SAM2 d="))}
    assert list(chart_masses(insp, layer=0)["mass"]) != list(cm["mass"])
    for chart in (mass_chart(insp, highlight=3), share_chart(insp), layer_heatmap(insp, step=5)):
        spec = chart.to_dict()
        assert "random weights" in str(spec["title"]).lower()
    heat = layer_heatmap(insp)  # issue 25: mean over slices, an absent entry counted as 0: rows sum to 1
    assert np.allclose(heat.data.groupby("layer")["mass"].sum(), 1.0, atol=1e-5)
    assert "absent from a slice counts as 0" in heat.to_dict()["title"]["text"]
    written = save_figure(mass_chart(insp), tmp_path / "mass.png")
    assert written["png"].stat().st_size > 5000
    with pytest.raises(ValueError, match="layer 9"):
        mass_chart(insp, layer=9)
    with pytest.raises(ValueError, match="region"):
        share_chart(insp, region="liver")
    spec = mass_chart(insp).to_dict()
    rng = spec["encoding"]["color"]["scale"]["range"]
    assert all(c.startswith("#") for c in rng)  # the one colour scheme, no tableau
    img = attention_panels(insp, 8, (120, 90), layer=2, size=96)
    assert isinstance(img, Image.Image) and img.size[0] > 4 * 96
    path = save_figure(img, tmp_path / "panel.png")["png"]
    assert path.name == "panel.png" and Image.open(path).size == img.size


@pytest.mark.slow
def test_widget_updates_without_a_browser(s1sfq):
    from fsm2kit.widgets.inspector_widget import MemoryInspectorWidget

    _, insp = s1sfq
    w = MemoryInspectorWidget(insp, size=128, chart=False)
    assert "slice #0 of 24" in w.status.value and "z=24" in w.status.value
    q0, m0 = w.query.png_b64, w.memories.value
    w.slider.value = 13
    assert "slice #13 of 24" in w.status.value and "z=22" in w.status.value and "reverse" in w.status.value
    assert w.query.png_b64 != q0 and w.memories.value != m0
    # no foreground predicted (random weights): the pixel follows to the slice centre
    assert w.pixel == (128, 128)
    # the slider is labelled by z; the slice is shown radiologically (CHAOST2 rows run posterior ->
    # anterior: flipped up-down), so a click at 1/4 height, 1/2 width is stored row 255 - 64
    assert w.slider.label == "z=22"
    w.query.click = [0.25, 0.5, 1]
    assert w.pixel == (191, 128) and not w.follow.value and "pixel y=191 x=128" in w.status.value
    bundle = w._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "fsm2-static" in bundle["text/html"]
    assert bundle["text/html"].count("data:image/png;base64,") == 2 and "z=22" in bundle["text/html"]
    m1 = w.memories.value
    w.layer.value = 0
    assert "layer 0" in w.status.value and w.memories.value != m1
    w.px.value = 10
    assert "pixel y=191 x=10" in w.status.value
    assert "random weights" in repr(w)


# ----------------------------------------------------------------------------- the notebook
# (its one papermill run, with the checks of its files, is test_notebooks.py::test_05_memory_inspector)
def test_notebook_05_is_thin():
    """Notebook 05: a parameters cell and one library call per section; no logic of its own."""
    import ast
    import json
    from pathlib import Path

    nb = json.loads((Path(__file__).resolve().parents[1] / "notebooks" / "05_memory_inspector.ipynb").read_text())
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    logic = (ast.FunctionDef, ast.ClassDef, ast.Lambda, ast.If, ast.For, ast.While, ast.With, ast.Try)
    for src in code:
        tree = ast.parse(src)
        assert not [n for n in ast.walk(tree) if isinstance(n, logic)], src
        assert sum(isinstance(n, ast.Call) and isinstance(n.func, ast.Name) for n in tree.body
                   if isinstance(n, (ast.Expr, ast.Assign))) <= 2 or "parameters" in src, src
    assert "inspect_run(" in "".join(code)


# ----------------------------------------------------------------------------- command line
@pytest.mark.slow
def test_cli_inspect_writes_tables_charts_and_panels(tmp_path, capsys):
    import argparse
    import json

    from fsm2kit.cli.inspect import register_cli

    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command", required=True))
    out = tmp_path / "insp"
    args = parser.parse_args([
        "inspect", "--setting", "s1sfq", "--order", "top", "--max-slices", "3", "--panels", "1",
        "--checkpoint", "random", "--image-size", "256", "--device", "cpu", "--no-progress",
        "--layers", "0", "3", "--out", str(out),
    ])
    assert args.func(args) == 0
    printed = capsys.readouterr()
    assert "RANDOM WEIGHTS" in printed.err and "random weights (seed 0)" in printed.out
    assert "capture check" in printed.out
    # issue 25: the printed mean says what it averages over and its shares sum to 1
    (line,) = [ln for ln in printed.out.splitlines() if ln.startswith("mean attention share")]
    assert "mean over 3 query slice(s)" in line and "counts as 0" in line
    import re
    assert sum(float(v) for v in re.findall(r"(?:pointers|memory) ([0-9.]+)", line)) == pytest.approx(1.0, abs=2e-3)
    for name in ("masses.csv", "shares.csv", "layouts.csv", "mass.png", "share.png", "layers.png", "inspect.json"):
        assert (out / name).stat().st_size > 0, name
    assert len(list(out.glob("panels_*.png"))) == 1
    meta = json.loads((out / "inspect.json").read_text())
    assert meta["weights"] == "random weights (seed 0)" and meta["orders"] == ["top"] and meta["layers"] == [0, 3]
    assert meta["kind"] == "inspect" and meta["settings"] == ["S1SFQ"] and meta["memory_policy"] == ["sam2"]
    assert meta["protocol_variant"] == ["ALP"] and meta["versions"]["torch"] and meta["command"].startswith("fsm2kit")
    assert meta["max_rel_error"] < 1e-4
    masses = pd.read_csv(out / "masses.csv")
    assert set(masses["layer"]) == {0, 3} and masses["z"].nunique() == 3
    bad = parser.parse_args(["inspect", "--setting", "1S1Q", "--episode-index", "5", "--checkpoint", "random",
                             "--image-size", "256", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="episode-index 5"):
        bad.func(bad)


@pytest.mark.slow
def test_capture_observes_batched_forwards(tiny256, example_episode):
    """Through the engine's observer hook, batched forwards are captured step by step.

    The engine keeps batching (nothing is patched or forced to one step per forward); the
    records equal those of a one-step-per-forward capture up to float rounding.
    """
    sub = subset_episode(example_episode, positions=slice(0, 6))
    eng = Engine(tiny256, progress=False, object_batch_size=8)
    insp = inspect_episode(eng, sub, "3S1Q", verify=True)
    assert len(insp) == 6 and eng.stats.tracking_forwards == 1 and eng.stats.tracking_steps == 6
    assert eng.object_batch_size == 8 and not eng.observers and "track" not in eng.__dict__
    assert insp.max_rel_error < 1e-4
    one = inspect_episode(Engine(tiny256, progress=False, object_batch_size=1), sub, "3S1Q")
    for a, b in zip(insp.steps, one.steps):
        assert a.position == b.position and a.selection == b.selection
        np.testing.assert_allclose(a.mass_all, b.mass_all, atol=1e-5)
