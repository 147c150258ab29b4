"""fsm2kit.segment.own_scan (labels, propagation, segment_results): own scans end to end.

Pure pieces by hand (labels, start, stopping rule, layout, overlaps), the propagation loop with a
scripted stand-in engine (exact control of object scores), the error catalogue, and SAM2 runs
(random weights) for the acceptance criteria: the output grid equals the input's for RAS, LPS
and oblique files, the support slice equals the support mask, multi-organ runs encode each
slice once and give the single-organ logits.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from fsm2kit.io.examples import example_ct, example_dir
from fsm2kit.io.nifti import load_label_nifti, load_nifti
from fsm2kit.io.volumes import Volume
from fsm2kit.protocol.labels import LabelMap
from fsm2kit.engine import Engine, TrackOutput
from fsm2kit.engine.results import EngineStats
from fsm2kit.engine.engine import SupportMemory
from fsm2kit.protocol.episodes import Support
from fsm2kit.engine.memory import MemorySettings
from fsm2kit.engine.plans import fq_plan
from fsm2kit.testing import assert_labels_agree, assert_masks_agree
from fsm2kit.cli.segment import cmd_segment, register_cli
from fsm2kit.segment.organs import OrganSpec, parse_labels
from fsm2kit.segment.propagation import (
    ECHO_LOGIT,
    NOT_RUN_LOGIT,
    propagate_volume,
    propagation_plan,
    relative_start,
)
from fsm2kit.strategies import STOPPING_RULES, register_stopping_rule
from fsm2kit.strategies.stopping import Patience
from fsm2kit.segment.own_scan import resolve_overlaps, segment_volume
from fsm2kit.segment.segment_result import load_scan, sidecar_path

from helpers import assert_same_grid, memory_entry, stored_as

LIVER = 5  # TotalSegmentator id in the bundled CT's mask


# ----------------------------------------------------------------------------- pure pieces
def test_parse_labels():
    assert parse_labels("liver=6,spleen=1") == (OrganSpec("liver", 6), OrganSpec("spleen", 1))
    assert parse_labels(" 6 ") == (OrganSpec("6", 6),)
    assert parse_labels(6, label_map="SABS") == (OrganSpec("LIVER", 6),)
    assert parse_labels(["liver", "rk"], label_map=LabelMap.from_dataset("SABS")) == (
        OrganSpec("liver", 6), OrganSpec("rk", 2))
    assert parse_labels({"liver": 6}) == (OrganSpec("liver", 6),)
    assert parse_labels(None, present=[0, 5, 2, 5]) == (OrganSpec("2", 2), OrganSpec("5", 5))
    for bad, msg in [("livr", "Unknown label name 'livr'.*livr=<id>"), ("liver=x", "not an integer"),
                     ("liver=0", "background"), ("a=1,b=1", "repeat"), ("=3", "no name"),
                     ("x=70000", "1..65535"), ("liver=5,", "Empty label")]:
        with pytest.raises(ValueError, match=msg):
            parse_labels(bad)
    with pytest.raises(ValueError, match="Unknown label name 'aorta'.*CHAOST2"):
        parse_labels("aorta", label_map="CHAOST2")
    with pytest.raises(ValueError, match="empty"):
        parse_labels(None, present=[0])


def test_relative_start():
    assert relative_start(15, 30, 30) == 15  # same volume: its own slice
    assert relative_start(0, 30, 12) == 0 and relative_start(29, 30, 12) == 11
    assert relative_start(15, 30, 12) == 6  # 15/29*11 = 5.69
    assert relative_start(1, 3, 4) == 2  # 1.5 rounds up
    assert relative_start(0, 1, 9) == 4
    with pytest.raises(ValueError, match="outside"):
        relative_start(30, 30, 10)


def test_stopping_rule_by_hand():
    """The rule propagation asks (the registry's patience:N; 0 and NaN count as absent, SAM2: > 0)."""
    s = [2.0, 1.0, -1.0, 0.0, -3.0, 4.0, -1.0]
    two = STOPPING_RULES.get("patience:2")
    assert not two(s[:3]) and two(s[:4])
    assert two.absent_from(s) == 2 and Patience(3).absent_from(s) == 2 and Patience(4).absent_from(s) is None
    assert Patience(1).absent_from(s) == 2
    assert two.absent_from([-1.0, 1.0, -1.0, -1.0]) == 2
    none = STOPPING_RULES.get("none")
    assert not none(s) and none.absent_from(s) is None
    with pytest.raises(ValueError):
        STOPPING_RULES.get("patience:-1")


def test_propagation_plan_is_the_middle_order():
    assert propagation_plan(range(10), 5, 1) == fq_plan(10, [0], "middle")
    assert propagation_plan(range(7), 3, 3) == fq_plan(7, [0, 1, 2], "middle")
    p = propagation_plan([0, 1, 2, 4, 5], 3, 1)  # slice 3 is the support itself (echo)
    assert [f.kind for f in p.frames] == ["query"] * 3 + ["support"] + ["query"] * 2
    assert [(s.frame_idx, s.reverse) for s in p.steps] == [(4, False), (5, False), (2, True), (1, True), (0, True)]
    assert propagation_plan(range(4), 0, 1).steps[0].frame_idx == 1  # start at the bottom: forward only
    with pytest.raises(ValueError, match="ascending"):
        propagation_plan([2, 1], 1)


def test_resolve_overlaps_by_hand():
    a = np.array([[3.0, -1.0, 2.0, 0.5, -2.0]])
    b = np.array([[1.0, 4.0, 2.0, -0.5, -1.0]])
    out = resolve_overlaps([a, b], [6, 1])
    np.testing.assert_array_equal(out, [[6, 1, 6, 6, 0]])  # tie 2.0/2.0: the first listed wins
    assert out.dtype == np.uint8
    assert resolve_overlaps([a], [300]).dtype == np.uint16
    with pytest.raises(ValueError, match="one logit volume per label"):
        resolve_overlaps([a], [1, 2])


def test_sidecar_path():
    assert sidecar_path("a/pred.nii.gz") == Path("a/pred.nii.gz.json")
    assert sidecar_path("pred.nii") == Path("pred.nii.json")
    with pytest.raises(ValueError, match=".nii.gz"):
        sidecar_path("pred.png")


# ----------------------------------------------------------------------------- scripted engine
class ScriptedEngine:
    """Stands in for Engine: object score of slice z is scores[z]; logits +5 / NO_OBJ accordingly."""

    image_size = 256
    object_batch_size = 1
    drive = Engine.drive  # the real scheduler, one step per forward (through track_batch below)
    plan_job = Engine.plan_job  # the real plan machinery (support memories, memory policy, bank)

    def __init__(self, scores):
        self.scores = scores
        self.settings = MemorySettings()
        self.progress = False
        self.calls: list[tuple[int, bool, tuple[int, ...]]] = []
        self.stats = EngineStats()
        self.model = SimpleNamespace(provenance=lambda: {"model": "scripted", "weights": "random weights (seed 0)",
                                                         "random_weights": True})

    def _entry(self, kind, cond, index, score, z):
        return memory_entry(cond, index, kind=kind, score=score, z=z, size=(1, 1), channels=1, ptr_dim=4,
                            dtype=torch.float32)

    def encode(self, image):  # the 'embedding' is the slice itself
        return SimpleNamespace(backbone_fpn=(torch.from_numpy(np.array(image, np.float32))[None, None],))

    def support_memory(self, s, *, index=0):
        return SupportMemory(self._entry("support", True, index, 10.0, s.z),
                             np.where(s.mask, 10.0, -10.0).astype(np.float32))

    def track(self, image, sel, bank, *, store, index, z):
        self.calls.append((z, sel.reverse, sel.frames))
        sc = float(self.scores[z])
        logits = np.full(np.shape(image), 5.0 if sc > 0 else -1024.0, np.float32)
        return TrackOutput(torch.zeros(1), logits, sc, 1.0, torch.zeros(1, 4),
                           self._entry("query", False, index, sc, z) if store else None)

    def track_batch(self, requests):
        return [self.track(r.image, r.selection, r.bank, store=r.store, index=r.index, z=r.z) for r in requests]


def _images(n=10, shape=(4, 5)):
    return np.stack([np.full(shape, float(z)) for z in range(n)]).astype(np.float32)


def _support(image, z=None):
    m = np.zeros(image.shape, bool)
    m[1:3, 1:3] = True
    return Support(image=image, mask=m, chunk=0, z=z)


def test_propagation_stops_where_the_organ_ends():
    scores = [1, -1, -1, -1, 2, 3, 2, -1, -1, 5]
    eng = ScriptedEngine(scores)
    imgs = _images()
    p = propagate_volume(eng, imgs, [_support(np.full((4, 5), 99.0), z=50)], start=5, patience=2)
    # forward 5, 6, 7, 8: two absent scores (7, 8) end it, 9 is never run; backward 4, 3, 2
    assert p.order == (5, 6, 7, 8, 4, 3, 2)
    assert [r for _, r, _ in eng.calls] == [False] * 4 + [True] * 3
    assert p.stop_forward == 8 and p.stop_backward == 2
    assert p.processed.tolist() == [False, False, True, True, True, True, True, True, True, False]
    assert np.isnan(p.object_scores[[0, 1, 9]]).all() and p.object_scores[5] == 3
    assert (p.logits[[0, 1, 9]] == NOT_RUN_LOGIT).all() and (p.logits[5] == 5).all()
    assert p.extent() == (4, 6) and p.echo_z == ()
    # the stopping rule as a pure function gives the same places
    fwd = [scores[z] for z in (5, 6, 7, 8, 9)]
    assert Patience(2).absent_from(fwd) == 2  # z = 7, and the run ends at z = 8
    assert p.stop == "patience:2" and "stop=patience:2" in repr(p)
    # the first forward step attends to the support only; later ones to previous predictions too
    assert eng.calls[0][2] == (5,) and 5 in eng.calls[1][2] and 6 in eng.calls[1][2]
    assert "start=5" in repr(p)

    whole = propagate_volume(ScriptedEngine(scores), imgs, [_support(np.full((4, 5), 99.0))], start=5, patience=None)
    assert whole.processed.all() and whole.stop_forward is None and len(whole.order) == 10 and whole.stop == "none"
    same = propagate_volume(ScriptedEngine(scores), imgs, [_support(np.full((4, 5), 99.0))], start=5, stop="none")
    np.testing.assert_array_equal(same.logits, whole.logits)
    # the default rule is patience:3
    default = propagate_volume(ScriptedEngine(scores), imgs, [_support(np.full((4, 5), 99.0))], start=5)
    assert default.stop == "patience:3" and default.order == (5, 6, 7, 8, 9, 4, 3, 2, 1)
    with pytest.raises(ValueError, match="not both"):
        propagate_volume(ScriptedEngine(scores), imgs, [_support(np.full((4, 5), 99.0))], start=5, stop="none",
                         patience=2)


def test_propagation_stops_only_through_the_rule():
    """Any rule of the scores decides: a registered user rule, a rule object; it sees the scores of
    its own direction so far, in processing order."""
    seen = []

    def after_one(scores):
        seen.append(tuple(scores))
        return len(scores) >= 1

    imgs = _images()
    p = propagate_volume(ScriptedEngine([1.0] * 10), imgs, [_support(np.full((4, 5), 99.0))], start=5, stop=after_one)
    assert p.order == (5, 4) and p.stop_forward == 5 and p.stop_backward == 4 and p.stop == "after_one"
    assert seen == [(1.0,), (1.0,)]
    register_stopping_rule("two_steps_xyz", lambda scores: len(scores) >= 2, summary="two steps a direction")
    try:
        ct = example_ct()
        res = segment_volume(ct, ct, ct.labels.array, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                             stop="two_steps_xyz")
        prop = res.organs[0].propagation
        assert prop.stop == "two_steps_xyz" and int(prop.processed.sum()) == 5  # 2 forward + 2 backward + the echo
        assert res.options["stop"] == "two_steps_xyz"
        assert res.sidecar()["labels"][0]["stop"] == "two_steps_xyz"
        ref = segment_volume(ct, ct, ct.labels.array, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                             patience=None)
        assert ref.options["stop"] == "none" and ref.organs[0].propagation.processed.all()
        with pytest.raises(ValueError, match="not both"):
            segment_volume(ct, ct, ct.labels.array, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                           stop="none", patience=3)
    finally:
        STOPPING_RULES.unregister("two_steps_xyz")


def test_propagation_passes_the_memory_policy_through():
    """The propagation is the engine's plan job: a memory policy reaches every step and is recorded."""
    import dataclasses

    def support_only(bank, frame_idx, *, reverse, settings):
        sel = bank.select(frame_idx, reverse=reverse, settings=settings)
        return dataclasses.replace(sel, spatial=tuple(r for r in sel.spatial if r.is_cond),
                                   pointers=tuple(r for r in sel.pointers if r.is_cond))

    support_only.strategy_name = "support_only"
    eng = ScriptedEngine([1, 1, 1, -1, -1, 1, 1, -1, -1, 1])
    p = propagate_volume(eng, _images(), [_support(np.full((4, 5), 99.0))], start=5, patience=2,
                         memory_policy=support_only)
    assert p.memory_policy == "support_only" and {frames for _, _, frames in eng.calls} == {(5,)}
    assert p.order == (5, 6, 7, 8, 4, 3) and p.stop_forward == 8 and p.stop_backward == 3
    default = propagate_volume(ScriptedEngine([1.0] * 10), _images(), [_support(np.full((4, 5), 99.0))], start=5)
    assert default.memory_policy == "sam2"


def test_echo_slice_and_oracle_range():
    eng = ScriptedEngine([1.0] * 10)
    imgs = _images()
    sup = _support(imgs[4].copy(), z=4)  # the support image is query slice 4
    p = propagate_volume(eng, imgs, [sup], start=4, patience=None)
    assert p.echo_z == (4,) and 4 not in p.order and p.order[0] == 5 and p.processed.all()
    np.testing.assert_array_equal(p.logits[4] > 0, sup.mask)
    assert set(np.unique(p.logits[4])) == {ECHO_LOGIT, -ECHO_LOGIT} and p.object_scores[4] == 10
    assert p.echo_exact == (True,)
    r = propagate_volume(ScriptedEngine([1.0] * 10), imgs, [sup], start=6, patience=None, z_range=(3, 7))
    assert r.processed.tolist() == [False] * 3 + [True] * 5 + [False] * 2 and r.z_range == (3, 7)
    assert r.order == (6, 7, 5, 3)  # 4 is the echo
    with pytest.raises(ValueError, match="outside the range"):
        propagate_volume(eng, imgs, [sup], start=9, z_range=(3, 7))


def test_segment_volume_with_scripted_engine_and_save(tmp_path):
    """Two labels, overlap resolution, pinning of the annotated slice, save into the file grid."""
    ct = example_ct()
    lab = ct.labels.array
    eng = ScriptedEngine([1.0] * ct.n_slices)
    res = segment_volume(ct, ct, lab, engine=eng, labels="liver=5,spleen=1", patience=None)
    liver, spleen = res.organs
    assert liver.support_z == (15,)
    # everywhere else both organs predict +5 everywhere: the tie goes to the first label (liver) ...
    assert (res.labels[0] == LIVER).all()
    # ... except on the annotated slice (15 for both), which reproduces the annotations exactly
    assert spleen.support_z == (15,)
    np.testing.assert_array_equal(res.labels[15], np.where(np.isin(lab[15], (1, LIVER)), lab[15], 0))
    assert res.labels.dtype == np.uint8 and res.oracle is None and res.dice is None
    out, side = res.save(tmp_path / "out" / "pred.nii.gz")
    img, src = nib.load(out), nib.load(example_dir() / "totalseg_ct_small" / "example_ct_sm.nii.gz")
    assert img.shape == src.shape and np.array_equal(img.affine, src.affine)
    assert b"RANDOM WEIGHTS" in img.header["descrip"].tobytes()  # the random-weights marker in the header too
    np.testing.assert_array_equal(load_nifti(out).array, res.labels)
    meta = json.loads(side.read_text())
    assert meta["random_weights"] is True and "RANDOM WEIGHTS" in meta["note"]
    assert [d["name"] for d in meta["labels"]] == ["liver", "spleen"]
    assert len(meta["labels"][0]["object_scores"]) == ct.n_slices and meta["labels"][0]["echo_z"] == [15]
    assert meta["z_axis"]["file_axis"] == 2 and meta["output_sha256"]
    assert sorted(os.listdir(tmp_path / "out")) == ["pred.nii.gz", "pred.nii.gz.json"]
    df = res.to_frame()
    assert len(df) == 2 * ct.n_slices and set(df["weights"]) == {"random weights (seed 0)"}


def test_similar_support_selection_with_scripted_engine():
    rng = np.random.default_rng(0)
    sup = rng.normal(size=(10, 6, 7)).astype(np.float32)
    lab = np.zeros(sup.shape, np.uint8)
    lab[3:8, 2:5, 2:5] = 1
    query = rng.normal(size=(8, 6, 7)).astype(np.float32)
    query[2] = sup[6]  # query slice 2 looks exactly like support slice 6
    eng = ScriptedEngine([1.0] * 8)
    res = segment_volume(query, sup, lab, engine=eng, labels="organ=1", support_select="similar", start=2,
                         patience=None)
    assert res.organs[0].support_z == (6,) and res.organs[0].support_method == "similar"
    assert res.organs[0].similarity.support_z == (6,)
    # without a start: each organ slice c is compared with the query slice at its relative position
    query2 = rng.normal(size=(10, 6, 7)).astype(np.float32)
    query2[4] = sup[4]
    res2 = segment_volume(query2, sup, lab, engine=ScriptedEngine([1.0] * 10), labels="organ=1",
                          support_select="similar", patience=None)
    assert res2.organs[0].support_z == (4,) and res2.organs[0].propagation.start == 4
    assert res2.organs[0].propagation.echo_z == (4,)


def test_segment_order_at_is_start_slice_and_views_add_support_frames():
    """``order="at:Z"`` (``--order at:Z``) is ``start=Z`` (``--start-slice Z``); support views and
    registry selectors (random:SEED, given:Z) reach whole-volume segmentation."""
    rng = np.random.default_rng(0)
    sup = rng.normal(size=(10, 6, 7)).astype(np.float32)
    lab = np.zeros(sup.shape, np.uint8)
    lab[3:8, 1:5, 1:5] = 1
    query = rng.normal(size=(9, 6, 7)).astype(np.float32)
    a = segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", start=6, patience=None)
    b = segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", order="at:6",
                       patience=None)
    pa, pb = a.organs[0].propagation, b.organs[0].propagation
    assert pa.start == pb.start == 6 and pa.order == pb.order and pa.plan == pb.plan
    np.testing.assert_array_equal(pa.logits, pb.logits)
    assert b.options["order"] == "at:6"
    with pytest.raises(ValueError, match="not both"):
        segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", start=6, order="at:6")
    v = segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", support_views=2,
                       order="from:0.5", patience=None)
    pv = v.organs[0].propagation
    assert pv.start == 4 and len(pv.plan.support_frames) == 3 and v.options["support_views"] == 2
    r = segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", support_select="random:4",
                       patience=None)
    assert r.organs[0].support_z[0] in range(3, 8) and r.organs[0].support_method == "random:4"
    g = segment_volume(query, sup, lab, engine=ScriptedEngine([1.0] * 9), labels="organ=1", support_select="given:5",
                       patience=None)
    assert g.organs[0].support_z == (5,)


# ----------------------------------------------------------------------------- error catalogue
def test_error_catalogue_arrays():
    ct = example_ct()
    lab = ct.labels.array
    eng = ScriptedEngine([1.0] * ct.n_slices)
    cases = [
        (dict(labels="aorta=200"), "support mask is empty for label 'aorta'"),
        (dict(labels="liver"), "Unknown label name 'liver'"),
        (dict(labels="liver=5", support_slices=99), "outside the support volume"),
        (dict(labels="gallbladder=4", support_slices=0), "empty for the organ on slice 0"),
        (dict(labels="liver=5", start=40), "start slice 40 is outside"),
        (dict(labels="liver=5", support_select="best"), "unknown support selector .best.; registered"),
        (dict(labels="liver=5", support_select="similar:query"), "'similar:query' chooses a support per query slice"),
        (dict(labels="liver=5", stop="sometimes"), "unknown stopping rule .sometimes.; registered"),
        (dict(labels="liver=5", ct_window=(300, -100)), "lo < hi"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            segment_volume(ct, ct, lab, engine=eng, **kw)
    with pytest.raises(ValueError, match="not binary / a label map"):
        segment_volume(ct, ct, lab * 0.5, engine=eng, labels="a=1")
    with pytest.raises(ValueError, match="support image's voxel grid"):
        segment_volume(ct, ct, lab[:, :-1], engine=eng, labels="liver=5")
    with pytest.raises(ValueError, match="3D"):
        segment_volume(ct.array[0], ct, lab, engine=eng, labels="liver=5")
    bad = ct.array.copy()
    bad[3, 3, 3] = np.nan
    with pytest.raises(ValueError, match="not finite"):
        segment_volume(bad, ct, lab, engine=eng, labels="liver=5")
    tiny = np.zeros_like(lab)
    tiny[10, 50, 60] = 5  # one pixel of a 101 x 122 slice vanishes when resized to 64 px
    small_engine = ScriptedEngine([1.0] * ct.n_slices)
    small_engine.image_size = 64
    with pytest.raises(ValueError, match="vanishes"):
        segment_volume(ct, ct, tiny, engine=small_engine, labels="x=5")


def _parser():
    p = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(p.add_subparsers(dest="command", required=True))
    return p


def _argv(image, mask, out, *extra, support=None):
    return ["segment", "--image", str(image), "--support-image", str(support or image), "--support-mask",
            str(mask), "--out", str(out), "--model", "sam2-tiny", "--checkpoint", "random",
            "--image-size", "256", "--device", "cpu", "--no-progress", *extra]


@pytest.fixture
def ct_files(tmp_path):
    d = example_dir() / "totalseg_ct_small"
    return d / "example_ct_sm.nii.gz", d / "example_seg.nii.gz"


def test_error_catalogue_files(tmp_path, ct_files, no_model):
    """Bad files fail with a clear message before any model is loaded."""
    ct, seg = ct_files
    img = nib.load(ct)
    p = _parser()

    def run(argv):
        args = p.parse_args(argv)
        return args.func(args)

    out = tmp_path / "o" / "pred.nii.gz"
    # output path not writable: refused first, nothing written
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="is a file"):
        run(_argv(ct, seg, blocker / "pred.nii.gz", "--labels", "liver=5"))
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        try:
            with pytest.raises(PermissionError, match="not writable"):
                run(_argv(ct, seg, ro / "pred.nii.gz", "--labels", "liver=5"))
            assert list(ro.iterdir()) == []
        finally:
            ro.chmod(0o755)
    with pytest.raises(ValueError, match=".nii.gz"):
        run(_argv(ct, seg, tmp_path / "pred.png", "--labels", "liver=5"))
    # corrupt .nii.gz
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(ct.read_bytes()[:2000])
    with pytest.raises(ValueError, match="truncated"):
        run(_argv(broken, seg, out, support=ct))
    # query not 3D
    two_d = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 0], img.affine), two_d)
    with pytest.raises(ValueError, match="expected a 3D volume"):
        run(_argv(two_d, seg, out, support=ct))
    # NaN voxels
    nan = tmp_path / "nan.nii.gz"
    d = np.asarray(img.dataobj).astype(np.float32)
    d[5, 5, 5] = np.inf
    nib.save(nib.Nifti1Image(d, img.affine), nan)
    with pytest.raises(ValueError, match="not finite"):
        run(_argv(nan, seg, out, support=ct))
    # support mask on another grid
    shifted = tmp_path / "shifted.nii.gz"
    aff = img.affine.copy()
    aff[0, 3] += 7
    nib.save(nib.Nifti1Image(np.asarray(nib.load(seg).dataobj), aff), shifted)
    with pytest.raises(ValueError, match="different voxel grids"):
        run(_argv(ct, shifted, out))
    cropped = tmp_path / "cropped.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(nib.load(seg).dataobj)[:-1], img.affine), cropped)
    with pytest.raises(ValueError, match="must share one voxel grid"):
        run(_argv(ct, cropped, out))
    # support mask not binary (a probability map)
    prob = tmp_path / "prob.nii.gz"
    nib.save(nib.Nifti1Image((np.asarray(nib.load(seg).dataobj) == LIVER) * 0.7, img.affine), prob)
    with pytest.raises(ValueError, match="not a label map.*non-integer"):
        run(_argv(ct, prob, out))
    # empty for the chosen label; unknown label name
    with pytest.raises(ValueError, match="empty for label 'aorta'"):
        run(_argv(ct, seg, out, "--labels", "aorta=200"))
    with pytest.raises(ValueError, match="Unknown label name 'liver'"):
        run(_argv(ct, seg, out, "--labels", "liver"))
    with pytest.raises(ValueError, match="--ct-window"):
        run(_argv(ct, seg, out, "--ct-window", "soft"))
    # DICOM with a missing slice as the query
    from test_dicom import write_series

    write_series(tmp_path / "dcm", np.zeros((4, 8, 8), np.uint16),
                 positions=[(0, 0, z) for z in (0.0, 2.5, 7.5, 10.0)])
    with pytest.raises(ValueError, match="missing slice"):
        run(_argv(tmp_path / "dcm", seg, out, support=ct))
    assert not (tmp_path / "o").exists()  # nothing written by any failed run


# ----------------------------------------------------------------------------- SAM2 runs
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["RAS", "LPS", "oblique"])
def test_cli_grid_and_support_echo(kind, tmp_path, ct_files, tiny256, monkeypatch, capsys):
    """`fsm2kit segment` on the bundled CT with one slice of its own liver mask as support."""
    ct, seg = ct_files
    cimg = nib.load(ct)
    cdata, aff = stored_as(np.asarray(cimg.dataobj), cimg.affine, kind)
    src_path = tmp_path / f"ct_{kind}.nii.gz"
    nib.save(nib.Nifti1Image(cdata, aff), src_path)
    src = nib.load(src_path)
    vol = load_nifti(src_path)
    sdata, _ = stored_as(np.asarray(nib.load(seg).dataobj), cimg.affine, kind)
    full = load_label_nifti(_save(tmp_path / "seg.nii.gz", sdata, aff), like=vol).array
    one = np.zeros_like(full)
    one[15] = np.where(full[15] == LIVER, LIVER, 0)  # one annotated slice of liver
    mask_path = tmp_path / f"liver_z15_{kind}.nii.gz"
    nib.save(vol.mask_to_nifti(one), mask_path)
    if kind != "RAS":  # share the session model (the RAS run loads its own, like a user)
        import fsm2kit.model.loading

        monkeypatch.setattr(fsm2kit.model.loading, "load_sam2", lambda *a, **k: tiny256)
    out = tmp_path / "seg" / "pred.nii.gz"
    args = _parser().parse_args(_argv(src_path, mask_path, out, "--labels", "liver=5"))
    assert cmd_segment(args) == 0
    printed = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in printed and "liver=5: support z [15]" in printed

    w = nib.load(out)
    assert_same_grid(w, src)
    assert w.get_data_dtype() == np.uint8
    back = load_nifti(out).array
    np.testing.assert_array_equal(back[15] == LIVER, one[15] == LIVER)  # the annotation, exactly
    assert set(np.unique(back)) <= {0, LIVER}
    # in the file's own voxel layout too: the annotated plane of the mask file is reproduced
    mfile, ofile = np.asarray(nib.load(mask_path).dataobj), np.asarray(w.dataobj)
    assert (ofile[mfile == LIVER] == LIVER).all()

    meta = json.loads((tmp_path / "seg" / "pred.nii.gz.json").read_text())
    assert meta["random_weights"] and meta["weights"].startswith("random weights")
    (lab,) = meta["labels"]
    assert lab["support_z"] == [15] and lab["echo_z"] == [15] and lab["start"] == 15
    assert len(lab["object_scores"]) == 30 and lab["object_scores"][15] == 10.0
    assert meta["grid"]["axcodes"] == list(nib.aff2axcodes(src.affine))
    assert meta["inputs"]["image"]["sha256"] and meta["options"]["stop"] == "patience:3" and lab["stop"] == "patience:3"
    assert meta["kind"] == "segment" and meta["command"].startswith("fsm2kit") and meta["memory_policy"] == ["sam2"]
    assert meta["support_selector"] == meta["options"]["support_select"] and meta["versions"]["sam2"] == "1.1.0"
    assert sorted(os.listdir(tmp_path / "seg")) == ["pred.nii.gz", "pred.nii.gz.json"]


def _save(path, data, aff):
    nib.save(nib.Nifti1Image(data, aff), path)
    return path


@pytest.mark.slow
def test_multi_organ_encodes_once_and_matches_single_runs(tiny256):
    from fsm2kit.engine import Engine

    ct = example_ct()
    q = Volume(ct.array[14:20], case_id="ct_z14_19")  # 6 slices of the CT
    gt = ct.labels.array[14:20]
    labels = "liver=5,kidney_right=2"
    engine = Engine(tiny256, progress=False)
    res = segment_volume(q, ct, ct.labels, engine=engine, labels=labels, patience=None, ground_truth=gt)
    liver, kidney = res.organs
    assert liver.support_z == (15,) and kidney.support_z == (9,)
    # 6 query slices + the kidney's support slice (CT z 9, not in the query); the liver's support
    # (CT z 15) is query slice 1: each distinct slice is encoded once for both labels and modes
    assert res.encoder_passes == 7 == engine.stats.encoder_passes
    assert liver.propagation.echo_z == (1,) and kidney.propagation.echo_z == ()
    assert liver.propagation.start == 3 and kidney.propagation.start == 2  # relative positions
    np.testing.assert_array_equal(res.labels[1] == LIVER, ct.labels.array[15] == LIVER)

    # one step per forward on both sides (same operations, same order): bit-equal
    single = Engine(tiny256, progress=False)
    for organ in (liver, kidney):
        one = segment_volume(q, ct, ct.labels, engine=single, labels=[organ.organ], patience=None)
        np.testing.assert_array_equal(one.organs[0].logits, organ.logits)
        np.testing.assert_array_equal(one.organs[0].object_scores, organ.object_scores)
    expected = resolve_overlaps([liver.logits, kidney.logits], [5, 2])
    expected[1][liver.logits[1] > 0] = 5
    np.testing.assert_array_equal(res.labels, expected)

    # the labels' propagations batched in shared SAM2 forwards: same masks, logits to rounding
    batched = Engine(tiny256, progress=False, object_batch_size=4)
    rb = segment_volume(q, ct, ct.labels, engine=batched, labels=labels, patience=None, ground_truth=gt)
    assert batched.stats.tracking_forwards < batched.stats.tracking_steps == engine.stats.tracking_steps
    # (batched steps add up in another order: the shared tolerance rule, not bit-equality)
    assert_labels_agree(rb.labels, res.labels, [o.logits for o in res.organs])
    for a, b in zip(rb.organs + rb.oracle, res.organs + res.oracle):
        np.testing.assert_allclose(a.logits, b.logits, rtol=1e-4, atol=1e-3)
        assert_masks_agree(a.logits, b.logits)

    # oracle range: kidney_right is on query slices 0..4 only
    o_liver, o_kidney = res.oracle
    assert o_liver.propagation.z_range == (0, 5) and o_kidney.propagation.z_range == (0, 4)
    assert not o_kidney.propagation.processed[5:].any() and kidney.propagation.processed.all()
    d = res.dice
    assert sorted(zip(d["label_name"], d["mode"])) == sorted(
        (n, m) for n in ("liver", "kidney_right") for m in ("whole_volume", "oracle_range"))
    assert d["dice"].between(0, 1).all() and set(d["weights"]) == {"random weights (seed 0)"}
    meta = res.sidecar()
    json.dumps(meta)
    assert meta["dice"] and meta["oracle"][1]["z_range"] == [0, 4]


@pytest.mark.slow
def test_dicom_query_end_to_end(tmp_path, tiny256, monkeypatch, capsys):
    """A DICOM folder in, a NIfTI label volume in the series' grid out."""
    import fsm2kit.model.loading
    from test_dicom import write_series

    rng = np.random.default_rng(0)
    px = (rng.normal(size=(5, 48, 40)) * 200 + 1000).clip(0).astype(np.uint16)
    write_series(tmp_path / "dcm", px, step=-3.0)
    series_vol = load_scan(tmp_path / "dcm")
    lab = np.zeros(series_vol.shape, np.uint8)
    lab[2, 10:30, 8:25] = 1
    mask = tmp_path / "mask.nii.gz"
    nib.save(series_vol.mask_to_nifti(lab), mask)
    monkeypatch.setattr(fsm2kit.model.loading, "load_sam2", lambda *a, **k: tiny256)
    out = tmp_path / "pred.nii.gz"
    args = _parser().parse_args(_argv(tmp_path / "dcm", mask, out, "--patience", "0",
                                      "--ct-window=-100,2000", "--support-slice", "2", "--ground-truth", str(mask)))
    assert cmd_segment(args) == 0
    printed = capsys.readouterr().out
    assert "whole_volume" in printed and "oracle_range" in printed
    w, m = nib.load(out), nib.load(mask)
    assert w.shape == m.shape == (40, 48, 5)
    np.testing.assert_array_equal(w.affine, m.affine)
    got = np.asarray(w.dataobj)
    np.testing.assert_array_equal(got[:, :, 2] > 0, np.asarray(m.dataobj)[:, :, 2] > 0)
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["inputs"]["image"]["dicom_files"] == 5 and meta["options"]["ct_window"] == [-100.0, 2000.0]
    assert meta["labels"][0]["processed_z"] == [0, 1, 2, 3, 4]
    # with ground truth: the oracle range is the annotated slice alone, and the Dice table has both modes
    assert meta["oracle"][0]["z_range"] == [2, 2] and {d["mode"] for d in meta["dice"]} == {"whole_volume", "oracle_range"}
    dice = pd.read_csv(tmp_path / "pred.nii.gz.dice.csv")
    assert set(dice["mode"]) == {"whole_volume", "oracle_range"} and set(dice["weights"]) == {"random weights (seed 0)"}
    # the support slice is the query's own slice 2: its copied annotation is not scored, and the
    # oracle range (slice 2 alone) is left with nothing to score
    assert set(dice["excluded_slices"]) == {1} and set(dice["excluded_z"].astype(str)) == {"2"}
    assert np.isnan(dice.loc[dice["mode"] == "oracle_range", "dice"].item())

