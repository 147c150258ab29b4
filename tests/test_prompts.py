"""Correction prompts (issue 13 item 3): the JSON file, ``run --prompts`` and ``segment --prompts``.

* the file's rules, by hand (labels 0/1, boxes, one correction per slice and target in a round,
  unknown keys, mask corrections refused), and a write/read round trip;
* each bad input is one line with exit code 2 before any model loads, nothing written: a point
  outside the slice, a z outside the query range, a label other than 0/1, an inverted or empty
  box, a setting without propagation, a missing target with several labels;
* ``run --prompts`` gives the Python API's logits (:func:`segment_with_corrections`, bit-equal:
  same operations in the same order) and the run record keeps the prompts;
* ``segment --prompts`` writes the label volume of :func:`segment_volume` with the same
  corrections, and its sidecar keeps the prompts.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fsm2kit.engine import Correction
from fsm2kit.io.prompts import PromptError, parse_prompts, read_prompts, write_prompts

from conftest import EXAMPLE_NPZ

EXAMPLE = [[{"z": 16, "points": [[38, 135, 1]]}, {"z": 30, "box": [14, 72, 174, 195]}]]
CT = EXAMPLE_NPZ.parent / "totalseg_ct_small"


# ----------------------------------------------------------------------------- the file
@pytest.mark.parametrize("data, message", [
    ([[{"z": 1, "points": [[1, 2, 2]]}]], "has label 2; expected 1 (positive) or 0 (negative)"),
    ([[{"z": 1, "points": [[1, 2, True]]}]], "has label true"),
    ([[{"z": 1, "box": [5, 5, 1, 9]}]], "is inverted or empty"),
    ([[{"z": 1, "box": [5, 5, 5, 9]}]], "is inverted or empty"),
    ([[{"z": 1, "box": [5, 5, 9]}]], "must be [x0, y0, x1, y1]"),
    ([[{"z": 1}]], "has no prompt"),
    ([[{"z": -1, "points": [[1, 2, 1]]}]], "an integer >= 0"),
    ([[{"z": 1.5, "points": [[1, 2, 1]]}]], "an integer >= 0"),
    ([[{"z": 1, "points": [[1, "a", 1]]}]], "must be a finite number"),
    ([[{"z": 1, "mask": [[1]]}]], "Python API only"),
    ([[{"z": 1, "points": [[1, 2, 1]]}, {"z": 1, "box": [0, 0, 3, 3]}]], "at most one correction per slice"),
    ([[]], "round 1 is empty"),
    ([], "holds no round"),
    ({"z": 1}, "a JSON list of rounds"),
])
def test_prompt_file_rules(data, message):
    with pytest.raises(PromptError, match="p.json: ") as e:
        parse_prompts(data, source="/somewhere/p.json")
    assert message in str(e.value) and "\n" not in str(e.value)


def test_prompt_file_targets_and_checks():
    pf = parse_prompts(EXAMPLE)
    rounds = pf.rounds_for(z_range=range(12, 36), shape=(256, 256))
    assert [[c.z for c in r] for r in rounds] == [[16, 30]]
    assert rounds[0][0].points == ((38.0, 135.0, 1),) and rounds[0][1].box == (14.0, 72.0, 174.0, 195.0)
    with pytest.raises(PromptError, match=r"z=16 is outside the query range \(z 20\.\.35\)"):
        pf.rounds_for(z_range=range(20, 36), shape=(256, 256))
    with pytest.raises(PromptError, match="outside the 128x128 slice"):
        pf.rounds_for(z_range=range(12, 36), shape=(128, 128))  # x=174 > 128
    # the same z for two labels in one round is fine; rounds without a correction for a target are left out
    two = parse_prompts([[{"z": 3, "points": [[1, 1, 1]], "label": "liver"},
                          {"z": 3, "points": [[2, 2, 0]], "label": "spleen"}],
                         [{"z": 4, "box": [0, 0, 5, 5], "label": "Spleen"}]])
    assert [[c.z for c in r] for r in two.rounds_for(label=6, label_name="liver")] == [[3]]
    assert [[c.z for c in r] for r in two.rounds_for(label=1, label_name="SPLEEN")] == [[3], [4]]
    assert Correction(3, points=[(127.9, 0, 1)]).check((128, 128)) is None
    with pytest.raises(ValueError, match="outside"):
        Correction(3, points=[(128, 0, 1)]).check((128, 128))


def test_write_and_read_back(tmp_path):
    rounds = [[Correction(16, points=[(38, 135, 1), (40.5, 100, 0)], box=(14, 72, 174, 195))],
              [Correction(30, box=(1, 2, 3, 4))]]
    p = write_prompts(tmp_path / "p.json", rounds, case="1", label="LIVER")
    back = read_prompts(p)
    assert back.n_corrections == 2 and {(q.case, q.label) for r in back.rounds for q in r} == {("1", "LIVER")}
    got = back.rounds_for(case="1", label=1, label_name="liver")
    assert [[(c.z, c.points, c.box) for c in r] for r in got] == [[(c.z, c.points, c.box) for c in r] for r in rounds]
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_prompts(p, rounds)
    with pytest.raises(PromptError, match="Python API only"):
        write_prompts(tmp_path / "m.json", [[Correction(3, mask=np.ones((4, 4), bool))]])
    (tmp_path / "bad.json").write_text("[[{")
    with pytest.raises(PromptError, match="not valid JSON"):
        read_prompts(tmp_path / "bad.json")


def test_episode_rounds_need_case_and_label_with_several_episodes(example_episode):
    import dataclasses

    from fsm2kit.run.prompting import episode_rounds

    a = example_episode
    b = dataclasses.replace(a, case_id="2")
    with pytest.raises(PromptError, match='give each correction "case" and "label" keys'):
        episode_rounds(parse_prompts(EXAMPLE), [a, b])
    pf = parse_prompts([[{"z": 16, "points": [[38, 135, 1]], "case": "2", "label": "liver"}]])
    assert [len(r) for r in episode_rounds(pf, [a, b])] == [0, 1]
    with pytest.raises(PromptError, match="names no episode of the run"):
        episode_rounds(parse_prompts([[{"z": 16, "points": [[1, 1, 1]], "case": "7", "label": "liver"}]]), [a, b])


def test_config_refuses_prompts_without_propagation(tmp_path):
    from fsm2kit.run.config import ExperimentConfig

    p = tmp_path / "p.json"
    p.write_text(json.dumps(EXAMPLE))
    with pytest.raises(ValueError, match="1S1Q segment each slice alone; use S1SFQ or 3SFQ"):
        ExperimentConfig(episodes=str(EXAMPLE_NPZ), settings=["S1SFQ", "1S1Q"], prompts=str(p))
    assert "prompts=p.json" in repr(ExperimentConfig(episodes=str(EXAMPLE_NPZ), prompts=str(p)))


# ----------------------------------------------------------------------------- bad input on the command line
def _run_argv(out, prompts, setting="S1SFQ", size="128"):
    return ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", setting, "--checkpoint", "random",
            "--image-size", size, "--device", "cpu", "--no-progress", "--out", str(out), "--prompts", str(prompts)]


def _seg_argv(out, prompts, labels="liver=5", size="128"):
    return ["segment", "--image", str(CT / "example_ct_sm.nii.gz"), "--support-image", str(CT / "example_ct_sm.nii.gz"),
            "--support-mask", str(CT / "example_seg.nii.gz"), "--labels", labels, "--support-slice", "14",
            "--checkpoint", "random", "--image-size", size, "--device", "cpu", "--no-progress",
            "--out", str(out), "--prompts", str(prompts)]


BAD_RUN = {  # the example episode: z 12..35, slices 256 x 256
    "point outside the slice": ([[{"z": 16, "points": [[300, 10, 1]]}]], "S1SFQ", "outside the 256x256 slice"),
    "z outside the query range": ([[{"z": 40, "points": [[30, 10, 1]]}]], "S1SFQ", "outside the query range (z 12..35)"),
    "label other than 0/1": ([[{"z": 16, "points": [[30, 10, -1]]}]], "S1SFQ", "expected 1 (positive) or 0"),
    "inverted box": ([[{"z": 16, "box": [50, 50, 10, 60]}]], "S1SFQ", "inverted or empty"),
    "empty box": ([[{"z": 16, "box": [50, 50, 60, 50]}]], "S1SFQ", "inverted or empty"),
    "setting without propagation": (EXAMPLE, "1S1Q", "segments each query slice on its own; use --setting S1SFQ or 3SFQ"),
    "a case the run lacks": ([[{"z": 16, "points": [[1, 1, 1]], "case": "9"}]], "S1SFQ", "names no episode"),
}


@pytest.mark.parametrize("what", list(BAD_RUN))
def test_run_bad_prompts_are_one_line_before_the_model(what, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    data, setting, message = BAD_RUN[what]
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(_run_argv(tmp_path / "out", tmp_path / "p.json", setting)) == 2
    err = [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("npz episode dumps")]
    assert len(err) == 1 and message in err[0], err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.json"]  # nothing written


BAD_SEGMENT = {  # the CT example: 30 slices of 101 x 122 (rows x columns)
    "point outside the slice": ([[{"z": 5, "points": [[10, 101, 1]]}]], "liver=5", "outside the 122x101 slice"),
    "z outside the query range": ([[{"z": 30, "points": [[10, 10, 1]]}]], "liver=5", "outside the query range (z 0..29)"),
    "label other than 0/1": ([[{"z": 5, "points": [[10, 10, 3]]}]], "liver=5", "expected 1 (positive) or 0"),
    "inverted box": ([[{"z": 5, "box": [10, 50, 40, 20]}]], "liver=5", "inverted or empty"),
    "no label with several labels": ([[{"z": 5, "points": [[10, 10, 1]]}]], "liver=5,spleen=1", 'give each correction a "label"'),
    "a label not segmented": ([[{"z": 5, "points": [[10, 10, 1]], "label": "kidney"}]], "liver=5", "is not segmented"),
}


@pytest.mark.parametrize("what", list(BAD_SEGMENT))
def test_segment_bad_prompts_are_one_line_before_the_model(what, tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    data, labels, message = BAD_SEGMENT[what]
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(_seg_argv(tmp_path / "pred.nii.gz", tmp_path / "p.json", labels)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert sorted(x.name for x in tmp_path.iterdir()) == ["p.json"]


def test_prompts_file_is_an_input(tmp_path, capsys, no_model):
    from fsm2kit.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "p.json").write_text(json.dumps(EXAMPLE))
    assert main(_run_argv(out, out / "p.json") + ["--overwrite"]) == 2
    assert "--prompts" in capsys.readouterr().err


# ----------------------------------------------------------------------------- same logits as the Python API
@pytest.mark.slow
def test_run_prompts_equal_the_python_api(tmp_path, present128, example_episode, monkeypatch):
    import fsm2kit.model.loading as models
    from fsm2kit.cli import main
    from fsm2kit.engine import Engine, segment_with_corrections
    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: present128)
    data = [[{"z": 15, "points": [[38, 135, 1], [60, 150, 0]]},
             {"z": 30, "points": [[100, 120, 1]], "box": [14, 72, 174, 195]}]]
    (tmp_path / "p.json").write_text(json.dumps(data))
    out = tmp_path / "run"
    argv = _run_argv(out, tmp_path / "p.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(argv) == 0
    rec = json.loads((out / "provenance.json").read_text())
    (kept,) = rec["prompts"]
    assert kept["rounds"] == data and kept["corrections"] == 2
    saved = np.load(out / "logits.npz")
    rounds = read_prompts(tmp_path / "p.json").rounds_for()
    run = segment_with_corrections(Engine(present128, progress=False), example_episode, "S1SFQ", rounds,
                                   order="middle")
    assert len(saved.files) == len(run.final.slices) + 1 == 25  # + the weights entry
    assert str(saved["weights"]) == "random weights (seed 0)"
    # issue 25: the corrected run says so in slices.csv and summary.csv (rounds)
    import pandas as pd
    assert set(pd.read_csv(out / "slices.csv")["corrected"]) == {1}
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["corrected"]) == {1} and set(summary["corrected_volumes"]) == {1}
    for s in run.final.slices:
        np.testing.assert_array_equal(saved[f"sam2-tiny_S1SFQ-middle_case1_label1_z{s.z}"], s.logits)
    before = {s.z: s.logits for s in run.stages[0].slices}
    for z in (15, 30):
        assert not np.array_equal(saved[f"sam2-tiny_S1SFQ-middle_case1_label1_z{z}"], before[z])


@pytest.mark.slow
def test_segment_prompts_equal_the_python_api(tmp_path, present128, monkeypatch):
    import fsm2kit.model.loading as models
    from fsm2kit.cli import main
    from fsm2kit.engine import Engine
    from fsm2kit.io.nifti import load_label_nifti, load_nifti
    from fsm2kit.segment.own_scan import segment_volume

    monkeypatch.setattr(models, "load_sam2", lambda *a, **k: present128)
    data = [[{"z": 20, "points": [[60, 50, 1], [30, 30, 0]]}, {"z": 8, "box": [20, 20, 90, 80]}]]
    (tmp_path / "p.json").write_text(json.dumps(data))
    out = tmp_path / "pred.nii.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(_seg_argv(out, tmp_path / "p.json")) == 0
    ct = load_nifti(CT / "example_ct_sm.nii.gz")
    seg = load_label_nifti(CT / "example_seg.nii.gz", like=ct)
    kw = dict(engine=Engine(present128, progress=False), labels="liver=5", support_slices=14, progress=False)
    fixed = segment_volume(ct, ct, seg, corrections=read_prompts(tmp_path / "p.json"), **kw)
    plain = segment_volume(ct, ct, seg, patience=None, **kw)
    written = load_label_nifti(out, like=ct).array
    np.testing.assert_array_equal(written, fixed.labels)
    (organ,) = fixed.organs
    assert organ.propagation.patience is None and organ.propagation.processed.all()
    for z in (20, 8):
        assert not np.array_equal(organ.propagation.logits[z], plain.organs[0].propagation.logits[z])
    side = json.loads((tmp_path / "pred.nii.gz.json").read_text())
    text = json.dumps(side)
    assert '"rounds": [[{"z": 20' in text and '"corrections"' in text


@pytest.mark.slow
def test_corrections_of_two_labels_batched_agree_with_one_at_a_time(present128):
    """Prompted steps of two labels in one round share SAM2 forwards (object_batch_size=2): the
    same results as one step per forward, up to the shared tolerance rule (another summation order)."""
    from fsm2kit.engine import Engine
    from fsm2kit.io.nifti import load_label_nifti, load_nifti
    from fsm2kit.testing import assert_logits_close, assert_masks_agree
    from fsm2kit.segment.own_scan import segment_volume

    ct = load_nifti(CT / "example_ct_sm.nii.gz")
    seg = load_label_nifti(CT / "example_seg.nii.gz", like=ct)
    q = ct.array[8:18]
    prompts = parse_prompts([[{"z": 3, "points": [[60, 50, 1]], "label": "liver"},
                              {"z": 3, "points": [[30, 40, 1]], "label": "spleen"}]])  # same signature: batched
    runs = [segment_volume(q, ct, seg, engine=Engine(present128, progress=False, object_batch_size=b),
                           labels="liver=5,spleen=1", support_slices=14, corrections=prompts, progress=False)
            for b in (1, 2)]
    for a, b in zip(runs[0].organs, runs[1].organs):
        assert a.propagation.patience is None and a.propagation.processed.all()
        assert_logits_close(b.propagation.logits, a.propagation.logits)
        assert_masks_agree(b.propagation.logits > 0, a.propagation.logits > 0, reference_logits=a.propagation.logits)
