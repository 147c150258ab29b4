"""Issue 24, "nothing lost, round 3": --overwrite replaces only what fsm2kit wrote, one atomic save for
every path, one sidecar per output, fingerprints that see everything, Dask over TLS only, a keyed
feature cache, bounded inputs, checks before the model, honest messages.

Each test is named after the numbered item it guards; all of them are cheap (no model, or the cached
small run of test_errors)."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from fsm2kit.cli import main
from fsm2kit.records import fileio as F
from test_errors import _err, _one_line, _run, _siblings, fake_run, small_run  # noqa: F401  (fixtures)


# ============================================================================ item 1: --overwrite
def test_overwrite_refuses_foreign_folder(tmp_path, no_model, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("my own work")
    for flags in ((), ("--overwrite",)):
        assert main(_run(thesis, *flags)) == 2
        line = _one_line(_err(capsys), "run")
        assert "chapter1.tex" in line and "not an fsm2kit output" in line and "pass --overwrite" not in line
    assert (thesis / "chapter1.tex").read_text() == "my own work"


def test_overwrite_refuses_foreign_folder_inspect(tmp_path, no_model, capsys):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("x")
    assert main(["inspect", "--setting", "S1SFQ", "--checkpoint", "random", "--image-size", "128",
                 "--out", str(d), "--overwrite"]) == 2
    assert "notes.txt" in _one_line(_err(capsys), "inspect")
    # an experiment output is not an inspect output: refused too
    (d / "notes.txt").unlink()
    (d / "provenance.json").write_text(json.dumps({"tool": "fsm2kit", "kind": "experiment"}))
    assert main(["inspect", "--setting", "S1SFQ", "--checkpoint", "random", "--image-size", "128",
                 "--out", str(d), "--overwrite"]) == 2
    assert "experiment output, not a inspect output" in _one_line(_err(capsys), "inspect")


def test_overwrite_replaces_own_run(tmp_path, fake_run, capsys):
    out = tmp_path / "o"
    assert main(_run(out)) == 0
    assert main(_run(out)) == 2  # an earlier run: the flag is needed
    assert "pass --overwrite" in _one_line(_err(capsys), "run")
    (out / "extra.txt").write_text("beside a run")  # the record says it is a run: replaced whole
    assert main(_run(out, "--overwrite")) == 0
    assert "extra.txt" not in os.listdir(out) and _siblings(out) == []


def test_overwrite_empty_folder_and_file(tmp_path, no_model, capsys):
    (tmp_path / "empty").mkdir()
    F.check_replaceable(tmp_path / "empty", kind="experiment", overwrite=False)
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        F.check_replaceable(tmp_path / "f", kind="experiment", overwrite=True)


# ============================================================================ item 2: one atomic save
def test_atomic_save_python_path_replaces_whole_run(tmp_path, small_run):
    out = tmp_path / "study"
    small_run.save(out)
    assert (out / "logits.npz").is_file()
    import dataclasses

    no_logits = dataclasses.replace(small_run, predictions=[])
    assert not no_logits.logits()
    no_logits.save(out)  # a run without predictions over one with them: no old logits left beside it
    assert not (out / "logits.npz").exists() and _siblings(out) == []
    assert json.loads((out / "provenance.json").read_text())["kind"] == "experiment"


def test_atomic_save_python_path_refuses_non_run(tmp_path, small_run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "data.csv").write_text("a,b\n")
    with pytest.raises(FileExistsError, match="data.csv"):
        small_run.save(mine)
    assert os.listdir(mine) == ["data.csv"]
    from fsm2kit.studies.study import run_study

    with pytest.raises(FileExistsError, match="data.csv"):  # before any compute
        run_study("x", None, datasets={"CHAOST2": None}, output_dir=mine)


def test_atomic_save_kill_mid_save_leaves_old_run(tmp_path, small_run, monkeypatch):
    out = tmp_path / "o"
    small_run.save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def killed(tmp, path):  # dies at the rename that publishes the new folder
        raise KeyboardInterrupt

    monkeypatch.setattr(F, "_swap_in", killed)
    with pytest.raises(KeyboardInterrupt):
        small_run.save(out, command="second")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _siblings(out) == []


def test_atomic_save_restores_crash_left_old(tmp_path, small_run):
    out = tmp_path / "o"
    small_run.save(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # a kill between the two renames of a replacement: the old run only in an .old sibling
    old = tmp_path / ".o.abcd1234.old"
    os.replace(out, old)
    stale = tmp_path / ".o.zz99zz99.tmp"
    stale.mkdir()
    (stale / "summary.csv").write_text("half")
    notes = F.recover_output(out)
    assert any("restored" in n for n in notes) and any("unfinished save" in n for n in notes)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and _siblings(out) == []
    # and through a save: a foreign .tmp of another output is never touched
    other = tmp_path / ".o2.abcd1234.tmp"
    other.mkdir()
    os.replace(out, old)
    with pytest.warns(UserWarning, match="restored"):
        small_run.save(out, command="again")
    assert other.is_dir() and _siblings(out) == []


def test_atomic_save_in_working_folder_keeps_other_files(tmp_path, small_run, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("run.ipynb").write_text("{}")  # papermill's notebook in the batch's run folder
    small_run.save(".")
    assert {"run.ipynb", "provenance.json", "logits.npz"} <= set(os.listdir("."))
    Path("summary.csv").unlink()
    Path("provenance.json").unlink()
    Path("summary.csv").write_text("someone else's")
    with pytest.raises(FileExistsError, match="summary.csv"):
        small_run.save(".")
    assert Path("summary.csv").read_text() == "someone else's"


# ============================================================================ item 8: --out usable before the model
def test_out_checked_before_model_dot(tmp_path, no_model, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(_run(".")) == 2
    assert "folder you are working in" in _one_line(_err(capsys), "run")


def test_out_checked_before_model_lock(tmp_path, no_model, capsys):
    out = tmp_path / "o"
    started, release = threading.Event(), threading.Event()

    def hold():
        with F.output_lock(out):
            started.set()
            release.wait(10)

    import multiprocessing as mp

    ctx = mp.get_context("fork")
    p = ctx.Process(target=hold)
    # another process holds --out's lock: this run is refused at once, before the model
    p.start()
    try:
        for _ in range(100):
            if (tmp_path / ".o.lock").exists() and (tmp_path / ".o.lock").read_text():
                break
            threading.Event().wait(0.05)
        assert main(_run(out)) == 2
        line = _one_line(_err(capsys), "run")
        assert "being written by another fsm2kit process" in line and "pid" in line
    finally:
        p.terminate()
        p.join()
    with F.output_lock(out):  # free again; re-entrant in one process
        with F.output_lock(out):
            pass
    assert not (tmp_path / ".o.lock").exists()
