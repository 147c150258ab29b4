"""Correct and re-propagate in the notebook (issue 13 item 4): click mapping, inspect_corrections,
the correction widget's logic without a browser (tests/test_browser.py drives it in JupyterLab).

Random weights (sam2-tiny, 128 px, object-score head shifted so that masks are non-trivial, as in
tests/test_corrections.py): what is tested is the bookkeeping, never a segmentation quality.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fsm2kit.engine import Correction, Engine, segment_with_corrections
from fsm2kit.viz.display import display_orientation
from fsm2kit.inspector import clicked_pixel


# ----------------------------------------------------------------------------- click mapping, no SAM2
@pytest.mark.parametrize("codes, shown", [
    (None, (1, 4)),  # unknown orientation: shown as stored
    (("P", "L"), (1, 4)),  # already radiological
    (("A", "L"), (2, 4)),  # CHAOST2: flipped up-down, row 1 of 4 -> 4 - 1 - 1
    (("A", "R"), (2, 1)),  # both flips: column 4 of 6 -> 6 - 1 - 4
    (("L", "P"), (4, 1)),  # transposed (display 6 x 4)
    (("R", "A"), (1, 2)),  # transposed, then both flips: (6 - 1 - 4, 4 - 1 - 1)
    (("I", "R"), (1, 1)),  # coronal, superior up, right on the left: columns flipped
    (("A", "S"), (1, 2)),  # sagittal, superior up, anterior on the left: transposed, both flips
])
def test_click_on_the_display_maps_to_the_stored_pixel(codes, shown):
    shape = (4, 6)  # stored (H, W); stored pixel y=1 (row), x=4 (column)
    o = display_orientation(codes)
    dshape = (6, 4) if o is not None and o.transpose else (4, 6)
    if o is not None:
        assert tuple(int(v) for v in o.point(1, 4, shape)) == shown  # the hand-computed display position
    for fy, fx in ((0.5, 0.5), (0.05, 0.05), (0.95, 0.95)):  # anywhere inside the displayed pixel
        rel = ((shown[0] + fy) / dshape[0], (shown[1] + fx) / dshape[1])
        assert clicked_pixel(rel, shape, o) == (1, 4)
    assert clicked_pixel((1.0, 1.0), shape, o) in {(0, 0), (3, 5), (0, 5), (3, 0)}  # clamped to a corner


# ----------------------------------------------------------------------------- SAM2 (random weights)

@pytest.fixture(scope="module")
def engine128(present128):
    return Engine(present128, progress=False)


@pytest.fixture(scope="module")
def small(example_episode):
    """5 query slices at 128 x 128 (every 3rd slice of the example from 6), supports downsampled."""
    ep = example_episode

    def down(a):
        return np.asarray(a)[::2, ::2]

    keep = np.arange(6, ep.n_slices, 3)[:5]
    sups = tuple(dataclasses.replace(s, image=down(s.image), mask=down(s.mask)) for s in ep.supports)
    return dataclasses.replace(ep, z=ep.z[keep], images=np.stack([down(i) for i in ep.images[keep]]),
                               labels=np.stack([down(x) for x in ep.labels[keep]]), chunks=ep.chunks[keep],
                               supports=sups)


def _logits(result):
    return [torch.as_tensor(s.logits) for s in sorted(result.slices, key=lambda s: s.position)]


def _key(c):
    return c.z, c.points, c.box


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(_logits(a), _logits(b)))


@pytest.mark.slow
def test_inspect_corrections_without_rounds_is_inspect_episode(engine128, small):
    from fsm2kit.inspector import inspect_corrections, inspect_episode

    a = inspect_episode(engine128, small, "S1SFQ", layers=[0, 3])
    b = inspect_corrections(engine128, small, "S1SFQ", [], layers=[0, 3])
    assert _same(a.result, b.result)
    assert [s.z for s in a.steps] == [s.z for s in b.steps]
    assert np.allclose(a.masses["mass"], b.masses["mass"], atol=1e-6)
    assert len(b.options["run"].stages) == 1 and b.options["corrected_z"] == []


@pytest.mark.slow
def test_inspect_corrections_final_stage_bookkeeping(engine128, small):
    from fsm2kit.inspector import inspect_corrections

    z = int(small.z[1])
    rounds = [[Correction(z, points=((64, 60, 1), (20, 20, 0)))]]
    insp = inspect_corrections(engine128, small, "S1SFQ", rounds, layers=[3], pixels=[(60, 64)])
    run = insp.options["run"]
    ref = segment_with_corrections(engine128, small, "S1SFQ", rounds)
    assert _same(insp.result, ref.final) and len(run.stages) == 2
    assert len(insp.steps) == small.n_slices and sorted(s.z for s in insp.steps) == sorted(int(v) for v in small.z)
    assert [k for k, s in enumerate(insp.steps)] == [s.call for s in insp.steps]
    k = insp.step_of_z(z)
    final = {s.z: s for s in insp.result.slices}
    for s in insp.steps:  # every step matches the final stage's slice
        assert s.selection == final[s.z].selection
        assert np.array_equal(s.prediction, np.asarray(final[s.z].logits) > 0)
    # every step segmented after the corrected slice attends to its conditioning memory
    later = [s for s in insp.steps[k + 1:] if any(e.source == "query" and e.is_cond and e.z == z for e in s.layout)]
    assert later, [s.layout for s in insp.steps]
    m = insp.masses
    cond = m[(m["entry_z"] == z) & m["is_cond"] & (m["region"] == "all") & (m["entry_kind"] == "query")]
    assert (cond["mass"] > 0).all() and set(cond["role"]) == {"query (SAM2 d=0)"}
    # on-demand pixel maps use each step's own bank (re-propagation replaces memories as it goes)
    for j in (0, len(insp.steps) - 1):
        captured = [p for p in insp.steps[j].pixels if p.pixel == (60, 64)][0]
        again = dataclasses.replace(insp, steps=[dataclasses.replace(s, pixels=[]) for s in insp.steps],
                                    _pixel_cache={})
        rec = again.pixel_attention(j, (60, 64), layer=3)
        assert np.allclose(rec.weights, captured.weights, atol=1e-5), j


def test_one_image_component_for_both_widgets():
    """Both widgets' slice is the one anywidget image of fsm2kit.widgets.image: clicks, and drags for prompts."""
    pytest.importorskip("anywidget")
    from fsm2kit.widgets.image import ClickImage, PromptImage, image_esm, legend_html, show_png, slice_image

    seen = []
    click = slice_image(64, on_click=lambda ch: seen.append(("click", ch["new"])))
    prompt = slice_image(96, on_click=lambda ch: seen.append(("click", ch["new"])),
                         on_drag=lambda ch: seen.append(("drag", ch["new"])))
    assert isinstance(click, ClickImage) and not isinstance(click, PromptImage) and isinstance(prompt, PromptImage)
    assert (click.width, prompt.width) == (64, 96)
    assert "drag" in prompt.keys and "drag" not in click.keys
    assert click._esm == image_esm(drags=False) and prompt._esm == image_esm(drags=True)
    assert "const DRAGS = false;" in click._esm and "const DRAGS = true;" in prompt._esm
    click.click = [0.5, 0.25, 1]
    prompt.drag = [0.1, 0.2, 0.3, 0.4, 2]
    assert seen == [("click", [0.5, 0.25, 1]), ("drag", [0.1, 0.2, 0.3, 0.4, 2])]
    show_png(click, b"\x89PNG")
    assert click.png_b64 == "iVBORw=="
    html = legend_html([("prediction", "#E69F00", "fill"), ("ground <truth>", "#009E73", "line")], "note")
    assert html.startswith("<div class='fsm2-legend'>") and "ground &lt;truth&gt;" in html and html.endswith(
        "<span style='margin-left:10px'>note</span></div>")


@pytest.mark.slow
def test_correction_widget_logic(engine128, small, tmp_path):
    from fsm2kit.widgets.correction_widget import CorrectionWidget
    from fsm2kit.io.prompts import read_prompts

    w = CorrectionWidget(engine128, small, "S1SFQ", layers=[3], size=128, chart=False)
    z = w.z
    assert "0 round(s) done" in w.status.value and "RANDOM WEIGHTS" in w.status.value
    stage0 = {s.z: s.prediction for s in w.run.final.slices}
    q0 = w.query.png_b64
    # CHAOST2 slices are shown flipped up-down: a click at 1/4 height, 1/2 width is stored row 128 - 1 - 32
    w.query.click = [0.25, 0.5, 1]
    assert w.pending_corrections()[0].points == ((64.0, 95.0, 1),) and w.query.png_b64 != q0
    w.mode.value = "negative"
    w.query.click = [0.9, 0.1, 2]
    w.mode.value = "box"
    w.query.drag = [0.2, 0.3, 0.7, 0.8, 3]  # displayed rows 25..89, columns 38..102
    (c,) = w.pending_corrections()
    assert c.z == z and c.points == ((64.0, 95.0, 1), (12.0, 12.0, 0)) and c.box == (38.0, 38.0, 103.0, 103.0)
    assert "z=%d" % z in w.pending_view.value and "1 pending" in w.status.value
    w.repropagate()
    assert [[_key(x) for x in rnd] for rnd in w.rounds] == [[_key(c)]]
    assert not w.pending and "1 round(s) done" in w.status.value and "0 pending" in w.status.value
    # the corrected slice's mask changed, and the replay is segment_with_corrections
    after = {s.z: s.prediction for s in w.run.final.slices}
    assert not np.array_equal(after[z], stage0[z])
    assert _same(w.run.final, segment_with_corrections(engine128, small, "S1SFQ", w.rounds).final)
    one = w.run.final
    # a second round on another slice, then undo: equal to a fresh run without it
    w.slider.value = int(small.z[-1])
    w.mode.value = "positive"
    w.query.click = [0.5, 0.5, 4]
    w.repropagate()
    assert len(w.rounds) == 2 and len(w.run.stages) == 3
    w.undo()
    assert len(w.rounds) == 1 and _same(w.run.final, one)
    # save prompts: the rounds read back; no overwrite unless asked
    path = tmp_path / "prompts.json"
    assert w.save(str(path)) == path
    back = read_prompts(path).rounds_for(case=small.case_id, label=small.label, label_name=small.label_name)
    assert [[_key(b) for b in rnd] for rnd in back] == [[_key(c)]]
    assert w.save(str(path)) is None and "exists" in w.message.value
    assert w.save(str(path), overwrite=True) == path
    # nothing pending: re-propagate does nothing; clear pending
    w.repropagate()
    assert "nothing pending" in w.message.value and len(w.rounds) == 1
    w.query.click = [0.5, 0.5, 5]
    w.clear_pending()
    assert not w.pending_corrections()
    assert "random weights" in repr(w)


@pytest.mark.slow
def test_correct_episode_replays_a_prompt_file(engine128, small, tmp_path):
    from fsm2kit.widgets import correct_episode, example_correction
    from fsm2kit.io.prompts import write_prompts

    c = example_correction(small)
    assert c.points[0][2] == 1 and small.labels[list(small.z).index(c.z)][int(c.points[0][1]), int(c.points[0][0])]
    path = write_prompts(tmp_path / "p.json", [[c]], case=small.case_id, label=small.label_name)
    w = correct_episode(engine128, small, "S1SFQ", prompts=path, layers=[3], size=128)
    assert len(w.rounds) == 1 and w.z == c.z and w.path.value == str(path)
    assert w.areas.value and w.chart.value  # charts drawn (PNG)
    html = w._repr_mimebundle_()["text/html"]
    assert html.count("data:image/png;base64,") == 3 and "RANDOM WEIGHTS" in html
    with pytest.raises(ValueError, match="not both"):
        correct_episode(engine128, small, "S1SFQ", prompts=path, rounds=[[c]])


@pytest.mark.slow
def test_inspect_corrections_mask_correction_has_no_step(engine128, small):
    from fsm2kit.inspector import inspect_corrections

    z = int(small.z[3])
    insp = inspect_corrections(engine128, small, "S1SFQ", [[Correction(z, mask=small.labels[3] > 0)]], layers=[3])
    assert sorted(s.z for s in insp.steps) == sorted(int(v) for v in small.z if int(v) != z)
    with pytest.raises(KeyError, match=f"z={z}"):
        insp.step_of_z(z)
    assert len(insp.result.slices) == small.n_slices


@pytest.mark.slow
def test_session_rounds_cost_one_propagation_and_equal_the_replay(engine128, small):
    """CorrectionSession keeps the state after each round: a round runs its corrections and one
    propagation; undo restores the saved state without a SAM2 step; every stage is bit-equal to
    segment_with_corrections (the replay) of the same rounds."""
    from fsm2kit.engine import CorrectionSession

    z1, z2 = int(small.z[1]), int(small.z[-1])
    r1 = [Correction(z1, points=((64, 60, 1), (20, 20, 0)))]
    r2 = [Correction(z2, box=(30, 30, 90, 90)), Correction(int(small.z[2]), mask=small.labels[2] > 0)]
    r3 = [Correction(z1, points=((70, 66, 1),))]  # a second round on a corrected slice: refines its logits

    class Count:
        n = 0

        def before_forward(self, requests, layouts):
            Count.n += len(requests)

        def after_forward(self, requests, outputs):
            pass

    with engine128.observe(Count()):
        s = CorrectionSession(engine128, small, "S1SFQ")
        n0 = Count.n
        s.apply(r1)
        assert Count.n - n0 == small.n_slices - 1 + 1  # the correction, then the others re-tracked
        s.apply(r2)
        n1 = Count.n
        s.apply(r3)
        undone = s.undo()
        assert Count.n - n1 == small.n_slices - 2  # r3: 1 correction + the n - 3 uncorrected slices; undo: none
    ref = segment_with_corrections(engine128, small, "S1SFQ", [r1, r2])
    assert len(s.stages) == 3 and len(ref.stages) == 3
    for a, b in zip(s.stages, ref.stages):
        assert _same(a, b)
    assert _same(undone, ref.final)
    s.apply(r3)
    assert _same(s.final, segment_with_corrections(engine128, small, "S1SFQ", [r1, r2, r3]).final)
    with pytest.raises(ValueError, match="not a query slice"):
        s.apply([Correction(999, points=((1, 1, 1),))])
    assert len(s.rounds) == 3  # a refused round leaves the session as it was
    while s.rounds:
        s.undo()
    with pytest.raises(ValueError, match="no round to undo"):
        s.undo()


@pytest.mark.slow
def test_widget_busy_state_dice_and_a_click_during_a_round(engine128, small):
    """While a round runs the widget is busy (buttons disabled, a count of slices); a click that
    comes meanwhile is not lost and not sent: it is pending after the round, and the status, the
    pending list and the drawing agree (the '0 pending while a box is drawn' race)."""
    from fsm2kit.widgets.correction_widget import CorrectionWidget

    w = CorrectionWidget(engine128, small, "S1SFQ", layers=[3], size=128, chart=False)
    assert "Dice vs ground truth: slice" in w.status.value and w.dice() is not None
    w.query.click = [0.25, 0.5, 1]
    seen = {}

    class During:
        def before_forward(self, requests, layouts):
            if "click" not in seen:  # the user clicks (and drags a box) while the round runs
                seen["disabled"] = [b.disabled for b in w.buttons.values()] + [w.slider.disabled]
                seen["progress"] = w.progress.value
                w.mode.value = "box"
                w.query.drag = [0.1, 0.1, 0.3, 0.3, 2]
                seen["click"] = len(w.pending_corrections())

        def after_forward(self, requests, outputs):
            seen.setdefault("counts", []).append(w.progress.value)

    with engine128.observe(During()):
        w.repropagate()
    assert all(seen["disabled"]) and "re-propagating" in seen["progress"] and "fsm2-spinner" in seen["progress"]
    n = small.n_slices  # one correction step, then the n - 1 other slices re-tracked
    assert [f"/{n}</b> slices" in c for c in seen["counts"]] == [True] * n
    assert any(f"{n - 1}/{n}</b>" in c for c in seen["counts"][1:])  # counted as it goes
    assert seen["click"] == 1  # the drag did not join the round being run
    assert len(w.rounds) == 1 and w.rounds[0][0].box is None  # the round: the click only
    (c,) = w.pending_corrections()  # the drag is pending for the next round ...
    assert c.box is not None and not c.points
    assert "1 pending" in w.status.value and "box (" in w.pending_view.value  # ... and says so
    assert not any(b.disabled for b in w.buttons.values()) and not w.busy and w.progress.value == ""
    before = w.query.png_b64
    w.clear_pending()
    assert w.query.png_b64 != before and "0 pending" in w.status.value  # drawn and counted alike
