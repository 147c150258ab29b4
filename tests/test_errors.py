"""Bad input: each case gives a clear error that says what was expected and what arrived.

Model and checkpoint errors (unknown name, missing/unexpected keys, offline download) are in
test_models.py; CLI exit codes in test_cli.py and below.

Catalogue of issue 15 ("Nothing lost, nothing trusted blindly"): item -> the test that shows it.

The commands run / segment / inspect and their outputs (this file):

=====================================================================  ==========================================================================
Item                                                                   Test
=====================================================================  ==========================================================================
Data loss: ``segment --out`` == ``--image`` / ``--support-mask`` /     test_segment_out_equal_to_image_is_refused
support image / ground truth (or its sidecar == an input) refused
Data loss: ``run --out`` equal to, inside or containing the inputs     test_run_out_equal_to_or_inside_inputs_is_refused
Data loss: an existing output needs ``--overwrite`` (segment)          test_segment_existing_output_needs_overwrite
Data loss: an existing output needs ``--overwrite`` (run, inspect)     test_run_existing_output_needs_overwrite_checked_before_computing
Data loss: a run's folder appears whole or not at all (built beside,   test_run_outputs_appear_together_or_not_at_all
then one rename; a failed rerun keeps the old run)
Data loss: the NIfTI and its sidecar (and Dice table) appear together  test_segment_nifti_and_sidecar_appear_together
Every argument and the output checked before any model loads          test_every_argument_and_output_checked_before_the_model_loads
Labels: ``run`` refuses ``--dataset/--fold/--label`` contradicting     test_run_refuses_dataset_fold_label_contradicting_npz_episodes
npz episodes (the issue's SABS/3/spleen command)
Labels: run.json (provenance) and slices.csv agree on fold and label   test_run_json_and_slices_csv_agree_on_fold_and_label
Labels: help texts and label errors use the bundled CT's ids (liver 5) test_help_texts_and_label_errors_use_the_right_ids
Labels: a name never resolves to another organ                         test_label_name_never_resolves_to_another_organ
(``--labels liver --label-map SABS`` on the bundled CT is refused)
Labels: a multi-label mask without ``--labels`` is refused, listing    test_multi_label_mask_without_labels_is_refused
the labels found
Support from the query scan: left out of the Dice; the table says how  test_support_from_query_is_left_out_of_the_dice
many slices and why
Bad messages: one line, exit 2 (usage) / 1 (failure); ``--debug``      test_cli_errors_are_one_line_with_exit_codes
shows the traceback
Bad messages: Ctrl-C -> exit 130, "interrupted; nothing written"       test_ctrl_c_exits_130_nothing_written
Bad messages: a corrupt ``.npz`` in an episodes folder -> one line     test_corrupt_npz_in_episodes_folder_is_one_line
naming the file
Bad messages: ``segment --image-size 0`` -> one line with valid sizes  test_segment_image_size_0_is_one_line
Bad messages: a garbage ``--checkpoint`` -> one line (fsm2kit's own    test_garbage_checkpoint_is_one_line
message: test_safety.py)
Bad messages: ``--checkpoint DIR`` named as a folder (CLI check)       test_every_argument_and_output_checked_before_the_model_loads
Bad messages: ``--support-slice -1`` refused, not "the last slice"     test_support_slice_minus_one_is_refused
Bad messages: ``--ct-window -125,275`` says ``--ct-window=-125,275``   test_ct_window_negative_value_says_use_equals
Bad messages: offline ``make demo`` names ``WEIGHTS=FILE``             test_offline_make_demo_names_weights
=====================================================================  ==========================================================================

Batch / Dask / cache / checkpoint / grid items (``fsm2kit batch`` temporary and failed folders,
fingerprints, strict sweep validation, Dask TLS, the feature cache, ``prepare --overwrite``,
NaN/inf and not-a-checkpoint checkpoints, grid reorientation): see tests/test_safety.py.
"""

import numpy as np
import pytest

from fsm2kit.engine import Engine
from fsm2kit.engine.features import preprocess_slice
from fsm2kit.protocol.episodes import Episode, Support
from fsm2kit.protocol import build_episode


def _vol(z=6, h=16, w=16, organ=(2, 4)):
    img = np.random.default_rng(0).normal(size=(z, h, w)).astype(np.float32)
    lab = np.zeros((z, h, w), np.int16)
    lab[organ[0]:organ[1] + 1, 4:10, 4:10] = 1
    return img, lab


def test_empty_support_mask():
    with pytest.raises(ValueError, match="Support mask .* is empty"):
        Support(np.ones((8, 8), np.float32), np.zeros((8, 8), bool), chunk=0)


def test_empty_support_mask_in_engine(tiny256):
    with pytest.raises(ValueError, match="support mask is empty"):
        Engine(tiny256, progress=False).support_memory((np.ones((8, 8)), np.zeros((8, 8))))


def test_class_absent_from_support_scan():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="class 2 .*absent from the support scan"):
        ql2 = np.where(ql > 0, 2, 0)
        build_episode(qi, ql2, si, sl, 2, case_id="q", support_case_id="s")


def test_class_absent_from_query_scan():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="absent"):
        build_episode(qi, ql * 0, si, sl, 1, case_id="q", support_case_id="s")


def test_image_label_shape_mismatch():
    qi, ql = _vol()
    si, sl = _vol()
    with pytest.raises(ValueError, match="shape"):
        build_episode(qi, ql[:, :8], si, sl, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="differ in shape"):
        Support(np.ones((8, 8), np.float32), np.ones((8, 9), bool), chunk=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_in_images(bad):
    qi, ql = _vol()
    si, sl = _vol()
    qi[3, 5, 5] = bad
    with pytest.raises(ValueError, match="NaN|inf"):
        build_episode(qi, ql, si, sl, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="NaN or inf"):
        preprocess_slice(qi[3], 256)


def test_2d_where_3d_is_needed():
    qi, ql = _vol()
    with pytest.raises(ValueError, match="3D|\\(Z, H, W\\)"):
        build_episode(qi[0], ql[0], qi, ql, 1, case_id="q", support_case_id="s")
    with pytest.raises(ValueError, match="\\(M, H, W\\)"):
        s = Support(np.ones((8, 8), np.float32), np.ones((8, 8), bool), chunk=0)
        Episode("q", 1, "LIVER", np.array([0]), np.ones((8, 8), np.float32), None, np.array([0]), (s,))


def test_3d_where_a_slice_is_needed(tiny256):
    with pytest.raises(ValueError, match="expected a 2D"):
        Engine(tiny256, progress=False).encode(np.ones((4, 8, 8)))


def test_unknown_setting_and_order(tiny256, example_episode):
    eng = Engine(tiny256, progress=False)
    with pytest.raises(ValueError, match="Unknown setting '2S2Q'"):
        eng.segment(example_episode, "2S2Q")
    with pytest.raises(ValueError, match="Unknown order 'bottom'"):
        eng.segment(example_episode, "S1SFQ", order="bottom")


def test_episode_folder_errors(tmp_path):
    from fsm2kit.run.sources import load_episodes

    with pytest.raises(FileNotFoundError):
        load_episodes(tmp_path / "missing")
    with pytest.raises(ValueError, match="neither"):
        load_episodes(tmp_path)


# ============================================================================= issue 15: the CLI commands
# Fast: in-process `fsm2kit.cli.main([...])`; the model is never loaded where a check must come first
# (load_sam2 patched to fail), a scripted engine stands in for SAM2 in `segment`, and `run` reuses
# one real 3-slice run at 128 px.
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib

from fsm2kit.cli import main
from fsm2kit.io.examples import example_dir

from conftest import EXAMPLE_NPZ

CT_DIR = example_dir() / "totalseg_ct_small"
CT, SEG = CT_DIR / "example_ct_sm.nii.gz", CT_DIR / "example_seg.nii.gz"


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    return err


def _one_line(err: str, command: str) -> str:
    """The error: one line, the last on stderr (above it only the command's progress notes)."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[-1].startswith(f"fsm2kit {command}: "), err
    assert "Traceback" not in err and sum(ln.startswith("fsm2kit ") for ln in lines) == 1, err
    return lines[-1]


def _seg(out, *extra, image=CT, support=CT, mask=SEG):
    return ["segment", "--image", str(image), "--support-image", str(support), "--support-mask", str(mask),
            "--out", str(out), "--checkpoint", "random", "--image-size", "128", "--device", "cpu",
            "--no-progress", *extra]


def _run(out, *extra, episodes=EXAMPLE_NPZ):
    return ["run", "--episodes", str(episodes), "--setting", "S1SFQ", "--checkpoint", "random",
            "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def _siblings(path: Path) -> list[str]:
    """Hidden temporary files/folders left next to an output."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


# ----------------------------------------------------------------------------- never over an input
def test_segment_out_equal_to_image_is_refused(tmp_path, no_model, capsys):
    img, mask = tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz"
    shutil.copy(CT, img)
    shutil.copy(SEG, mask)
    before = {p: p.read_bytes() for p in (img, mask)}
    for out, flag in ((img, "--image"), (mask, "--support-mask")):
        for extra in ((), ("--overwrite",)):
            assert main(_seg(out, "--labels", "liver=5", *extra, image=img, support=img, mask=mask)) == 2
            assert f"is the input {flag}" in _one_line(_err(capsys), "segment")
    other = tmp_path / "atlas.nii.gz"
    shutil.copy(CT, other)
    assert main(_seg(other, "--labels", "liver=5", "--overwrite", image=img, support=other, mask=mask)) == 2
    assert "is the input --support-image" in _one_line(_err(capsys), "segment")
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--ground-truth", str(tmp_path / "p.nii.gz"),
                     image=img, support=img, mask=mask)) == 2
    assert "--ground-truth" in _one_line(_err(capsys), "segment")
    # the sidecar of the output would be an input: labels.nii.gz.json next to labels.nii.gz
    (tmp_path / "labels.nii.gz.json").write_text("{}")
    assert main(_seg(tmp_path / "labels.nii.gz", "--labels", "liver=5", "--overwrite", "--checkpoint",
                     str(tmp_path / "labels.nii.gz.json"), image=img, support=img, mask=mask)) == 2
    assert "its sidecar" in _one_line(_err(capsys), "segment")
    assert {p: p.read_bytes() for p in (img, mask)} == before


def test_run_out_equal_to_or_inside_inputs_is_refused(tmp_path, no_model, capsys):
    eps = tmp_path / "eps"
    shutil.copytree(EXAMPLE_NPZ, eps)
    n = len(list(eps.iterdir()))
    for out, why in ((eps, "is the input --episodes"), (eps / "out", "inside the input folder --episodes"),
                     (tmp_path, "contains the input --episodes")):
        assert main(_run(out, "--overwrite", episodes=eps)) == 2
        assert why in _one_line(_err(capsys), "run")
    assert len(list(eps.iterdir())) == n


# ----------------------------------------------------------------------------- --overwrite
def test_segment_existing_output_needs_overwrite(tmp_path, no_model, capsys):
    out = tmp_path / "pred.nii.gz"
    out.write_bytes(b"earlier result")
    assert main(_seg(out, "--labels", "liver=5")) == 2
    assert "already exists" in _one_line(_err(capsys), "segment") and out.read_bytes() == b"earlier result"
    out.unlink()
    (tmp_path / "pred.nii.gz.json").write_text("{}")  # an orphan sidecar counts too
    assert main(_seg(out, "--labels", "liver=5")) == 2
    assert "pred.nii.gz.json already exists" in _one_line(_err(capsys), "segment")


def test_run_existing_output_needs_overwrite_checked_before_computing(tmp_path, no_model, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "summary.csv").write_text("earlier run")
    assert main(_run(out)) == 2  # before any episode or model is loaded
    assert "--overwrite" in _one_line(_err(capsys), "run")
    assert main(["inspect", "--setting", "1S1Q", "--checkpoint", "random", "--image-size", "128",
                 "--out", str(out)]) == 2
    assert "--overwrite" in _one_line(_err(capsys), "inspect")
    assert (out / "summary.csv").read_text() == "earlier run"


def test_every_argument_and_output_checked_before_the_model_loads(tmp_path, no_model, capsys):
    ro = tmp_path / "blocker"
    ro.write_text("a file where a folder is needed")
    (tmp_path / "weights").mkdir()
    cases = [
        (_run(ro / "o"), "run", "is a file"),
        (_run(tmp_path / "o", "--image-size", "100"), "run", "valid sizes"),
        (_run(tmp_path / "o", "--fold", "3", "--dataset", "SABS"), "run", "not query scans of SABS fold 3"),
        (_seg(ro / "p.nii.gz", "--labels", "liver=5"), "segment", "is a file"),
        (_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--checkpoint", str(tmp_path / "weights")), "segment",
         "is a folder"),
    ]
    for argv, cmd, msg in cases:
        assert main(argv) == 2, argv
        assert msg in _one_line(_err(capsys), cmd)
    assert sorted(os.listdir(tmp_path)) == ["blocker", "weights"] and not os.listdir(tmp_path / "weights")


# ----------------------------------------------------------------------------- all or nothing
@pytest.fixture(scope="module")
def small_run(load_random):
    """One real `fsm2kit run` result (3 slices, 128 px) for the CLI tests below to reuse."""
    import fsm2kit.run.runner as E
    from fsm2kit.run.sources import subset_episode

    model = load_random(image_size=128)
    from fsm2kit.cli import build_parser
    from fsm2kit.cli.run import config_from_args

    args = build_parser().parse_args(_run("unused", "--dataset", "CHAOST2", "--fold", "0", "--label", "liver"))
    config = config_from_args(args)
    from fsm2kit.run.sources import load_config_episodes

    eps = [subset_episode(e, max_slices=3) for e in load_config_episodes(config, progress=False)]
    return E.run_experiments(config, models={model.name: model}, episodes=[eps], keep_predictions=True,
                             progress=False)


@pytest.fixture
def fake_run(monkeypatch, small_run):
    """`fsm2kit run` with the model and the computation replaced by the cached small run."""
    import fsm2kit.cli.run as R
    import fsm2kit.run.runner as E

    monkeypatch.setattr(R, "model_from_args", lambda args, **k: SimpleNamespace(name="sam2-tiny"))
    monkeypatch.setattr(E, "run_experiments", lambda *a, **k: small_run)
    return small_run


def test_run_outputs_appear_together_or_not_at_all(tmp_path, fake_run, monkeypatch, capsys):
    import fsm2kit.records.fileio as F

    out = tmp_path / "o"
    assert main(_run(out)) == 0
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(first) == ["logits.npz", "provenance.json", "slices.csv", "summary.csv", "volumes.csv"]

    def fail(folder):  # a rerun dies after writing its files, before they are published
        raise OSError("No space left on device")

    real_sync = F.fsync_tree
    monkeypatch.setattr(F, "fsync_tree", fail)
    assert main(_run(out, "--overwrite")) == 1
    assert "No space left on device" in _one_line(_err(capsys), "run")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first and _siblings(out) == []
    assert main(_run(tmp_path / "new")) == 1
    assert not (tmp_path / "new").exists() and _siblings(tmp_path / "new") == []
    monkeypatch.setattr(F, "fsync_tree", real_sync)
    (out / "stale.txt").write_text("from an older version")
    assert main(_run(out, "--overwrite")) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(first) and _siblings(out) == []


def test_segment_nifti_and_sidecar_appear_together(tmp_path):
    from test_segment import ScriptedEngine

    from fsm2kit.io.examples import example_ct
    from fsm2kit.segment.own_scan import segment_volume

    ct = example_ct()
    lab = ct.labels.array
    res = segment_volume(ct, ct, lab, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                         patience=None, ground_truth=lab)
    out = tmp_path / "pred.nii.gz"
    res.save(out)
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(files) == ["pred.nii.gz", "pred.nii.gz.dice.csv", "pred.nii.gz.json"]
    with pytest.raises(FileExistsError, match="overwrite"):
        res.save(out)
    res.options["marker"] = float("nan")  # written as null; then make the sidecar fail half-way

    def boom(*a, **k):
        raise KeyboardInterrupt

    import fsm2kit.segment.segment_result as SR

    real = SR._json_default
    SR.json.dumps, saved = boom, SR.json.dumps
    try:
        with pytest.raises(KeyboardInterrupt):
            res.save(out, overwrite=True)
    finally:
        SR.json.dumps = saved
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files  # old pair intact, no temp files
    assert SR._json_default is real
    res.dice = None  # a rerun without ground truth: the old Dice table goes with the old pair
    res.save(out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.nii.gz", "pred.nii.gz.json"]
    meta = json.loads((tmp_path / "pred.nii.gz.json").read_text())
    from fsm2kit.records.fileio import file_sha256

    assert meta["output_sha256"] == file_sha256(out)


# ----------------------------------------------------------------------------- labels
def test_run_refuses_dataset_fold_label_contradicting_npz_episodes(tmp_path, fake_run, no_model, capsys):
    out = tmp_path / "o"
    # the command: CHAOS liver dumps called SABS fold 3 spleen
    assert main(_run(out, "--dataset", "SABS", "--fold", "3", "--label", "spleen")) == 2
    assert "--fold 3" in _one_line(_err(capsys), "run") and not out.exists()
    for extra, msg in ((("--label", "spleen"), "hold class(es) 1 LIVER (CHAOST2 ids), not 4 SPLEEN"),
                       (("--dataset", "SABS", "--label", "liver"), "not 6 LIVER"),
                       (("--fold", "1"), "not query scans of CHAOST2 fold 1")):
        assert main(_run(out, *extra)) == 2
        assert msg in _one_line(_err(capsys), "run")
    assert not out.exists()


def test_run_json_and_slices_csv_agree_on_fold_and_label(tmp_path, fake_run, capsys):
    out = tmp_path / "o"
    assert main(_run(out, "--dataset", "CHAOST2", "--fold", "0", "--label", "liver")) == 0
    prov = json.loads((out / "provenance.json").read_text())
    import pandas as pd

    slices = pd.read_csv(out / "slices.csv")
    assert prov["configs"][0]["folds"] == [0] and set(slices["fold"]) == {0}
    assert {e["fold"] for e in prov["episodes"]} == {0} and set(slices["label_name"]) == {"LIVER"}


def test_help_texts_and_label_errors_use_the_right_ids(capsys):
    from fsm2kit.segment.organs import parse_labels

    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    # the examples use the bundled CT's ids (liver 5); 6 appears only as SABS's own id for liver
    assert "e.g. liver=5,spleen=1" in text and text.count("liver=6") == text.count("SABS: liver=6") == 1
    for bad in ("liver=x", "=3", "livr"):
        with pytest.raises(ValueError) as e:
            parse_labels(bad)
        assert "=6" not in str(e.value) and "=5" in str(e.value) or "livr=<id>" in str(e.value)


def test_label_name_never_resolves_to_another_organ(tmp_path, no_model, capsys):
    # SABS says liver is 6; on the bundled CT (TotalSegmentator ids) 6 is the stomach: refused
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "liver", "--label-map", "SABS")) == 2
    line = _one_line(_err(capsys), "segment")
    assert "not a SABS mask" in line and "liver=5" in line
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "livr=")) == 2  # unknown, never another organ
    assert "not an integer id" in _one_line(_err(capsys), "segment")


def test_multi_label_mask_without_labels_is_refused(tmp_path, no_model, capsys):
    assert main(_seg(tmp_path / "p.nii.gz")) == 2
    line = _one_line(_err(capsys), "segment")
    assert "several labels (1, 2, 3, 4, 5, 6," in line and "(41 labels)" in line and "--labels" in line
    assert not list(tmp_path.iterdir())


# ----------------------------------------------------------------------------- support from the query
def test_support_from_query_is_left_out_of_the_dice(tmp_path, monkeypatch, capsys):
    """The support slice copied from the query scan is not scored; the table says how many and why."""
    import fsm2kit.cli.segment as S
    from test_segment import ScriptedEngine

    from fsm2kit.io.examples import example_ct
    from fsm2kit.protocol.metrics import dice_counts
    from fsm2kit.segment.own_scan import segment_volume
    from fsm2kit.segment.segment_result import SUPPORT_FROM_QUERY

    ct = example_ct()
    lab = ct.labels.array
    res = segment_volume(ct, ct, lab, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                         patience=None, ground_truth=lab)
    assert res.organs[0].propagation.echo_z == (15,)
    keep = np.arange(ct.n_slices) != 15
    for row in res.dice.itertuples():
        assert row.excluded_slices == 1 and row.excluded_z == "15" and row.excluded_why == SUPPORT_FROM_QUERY
        pred = (res.labels if row.mode == "whole_volume" else res.oracle_labels) == 5
        assert row.dice == dice_counts(pred[keep], (lab == 5)[keep]).dice()
    # a support from another scan: nothing left out
    other = segment_volume(ct.array + 1.0, ct, lab, engine=ScriptedEngine([1.0] * ct.n_slices),
                           labels="liver=5", patience=None, ground_truth=lab)
    assert set(other.dice["excluded_slices"]) == {0} and set(other.dice["excluded_why"]) == {""}
    # the command line prints it
    monkeypatch.setattr(S, "model_from_args", lambda args, **k: SimpleNamespace(name="scripted",
                                                                              weights="random weights (seed 0)"))
    monkeypatch.setattr(S, "engine_from_args", lambda m, a: ScriptedEngine([1.0] * ct.n_slices))
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--ground-truth", str(SEG))) == 0
    printed = capsys.readouterr().out
    assert "excluded_slices" in printed and "1 slice(s) left out of its Dice (z 15)" in printed
    side = json.loads((tmp_path / "p.nii.gz.json").read_text())
    assert {d["excluded_slices"] for d in side["dice"]} == {1}


# ----------------------------------------------------------------------------- bad messages
def test_cli_errors_are_one_line_with_exit_codes(tmp_path, fake_run, monkeypatch, capsys):
    import fsm2kit.run.runner as E

    assert main(_run(tmp_path / "o", "--image-size", "0")) == 2  # usage: before anything runs
    _one_line(_err(capsys), "run")

    def crash(*a, **k):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(E, "run_experiments", crash)
    assert main(_run(tmp_path / "o")) == 1  # a failure after the checks
    line = _one_line(_err(capsys), "run")
    assert "CUDA out of memory. Tried to allocate 2 GiB" in line and "--debug" in line
    assert main(["--debug", *_run(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: CUDA out of memory" in err
    assert main([*_run(tmp_path / "o"), "--debug"]) == 1 and "Traceback" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and _siblings(tmp_path / "o") == []


def test_ctrl_c_exits_130_nothing_written(tmp_path, fake_run, monkeypatch, capsys):
    import fsm2kit.records.fileio as F

    def interrupted(folder):  # Ctrl-C once the files are written, before they are published
        raise KeyboardInterrupt

    monkeypatch.setattr(F, "fsync_tree", interrupted)
    assert main(_run(tmp_path / "o")) == 130
    assert _err(capsys).splitlines()[-1] == "fsm2kit run: interrupted; nothing written"
    assert list(tmp_path.iterdir()) == []


def test_corrupt_npz_in_episodes_folder_is_one_line(tmp_path, no_model, capsys):
    eps = tmp_path / "eps"
    shutil.copytree(EXAMPLE_NPZ, eps)
    bad = eps / "1_20_case_1_z19.npz"
    bad.write_bytes(bad.read_bytes()[:5000])  # truncated
    assert main(_run(tmp_path / "o", episodes=eps)) == 2
    line = _one_line(_err(capsys), "run")
    assert str(bad) in line and "not a readable npz file" in line
    bad.write_bytes(b"\x80\x04garbage")  # looks like a pickle: never numpy's "allow_pickle" advice
    assert main(_run(tmp_path / "o", episodes=eps)) == 2
    line = _one_line(_err(capsys), "run")
    assert str(bad) in line and "pickle" not in line


def test_segment_image_size_0_is_one_line(tmp_path, no_model, capsys):
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--image-size", "0")) == 2
    line = _one_line(_err(capsys), "segment")
    assert "valid sizes are multiples of 64 from 128" in line and "torch" not in line.lower()


def test_garbage_checkpoint_is_one_line(tmp_path, capsys):
    ck = tmp_path / "sam2_hiera_tiny.pt"
    ck.write_bytes(b"this is not a checkpoint" * 10)
    assert main(_run(tmp_path / "o", "--checkpoint", str(ck))) == 2  # found by the checks, before the model
    line = _one_line(_err(capsys), "run")
    assert str(ck) in line and not (tmp_path / "o").exists()


def test_support_slice_minus_one_is_refused(tmp_path, no_model, capsys):
    assert main(_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--support-slice", "-1")) == 2
    assert "not counted from the end" in _one_line(_err(capsys), "segment")


def test_ct_window_negative_value_says_use_equals(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(_seg(tmp_path / "p.nii.gz", "--labels", "liver=5", "--ct-window", "-125,275"))
    assert e.value.code == 2
    assert "--ct-window=-125,275" in capsys.readouterr().err


def test_offline_make_demo_names_weights(tmp_path):
    """`make demo` offline: the error names WEIGHTS=FILE (the Makefile's variable), not only --checkpoint."""
    import subprocess

    if shutil.which("make") is None:
        pytest.skip("no make")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake = venv / "bin" / "fsm2kit"  # stands in for the CLI failing to download the checkpoint
    fake.write_text("#!/bin/sh\necho 'fsm2kit run: error: Could not download sam2_hiera_tiny.pt' >&2\nexit 1\n")
    fake.chmod(0o755)
    (venv / ".fsm2kit-installed").touch()
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(["make", "-s", "demo", f"VENV={venv}"], cwd=root, capture_output=True, text=True)
    assert r.returncode != 0 and "make demo WEIGHTS=FILE" in r.stderr and "WEIGHTS=random" in r.stderr
