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


# ============================================================================ items 1, 2 and 4: batch
@pytest.fixture()
def light(tmp_path):
    """A light notebook (no SAM2) that takes a checkpoint file and plugins."""
    from helpers import write_notebook

    return write_notebook(tmp_path / "nb" / "light.ipynb",
                          'x = "a"\nn = 1\ncheckpoint = ""\nplugins = []\noutput_dir = "."',
                          'open("summary.csv", "w").write(f"metric,dice\\npooled,{n / 10}\\n")')


def _sweep(light: Path, text: str) -> Path:
    p = light.parent / "s.yaml"
    p.write_text(f"name: s\nnotebook: light.ipynb\nexport_html: false\n{text}")
    return p


def _batch(args, capsys) -> tuple[int, str]:
    import argparse

    from fsm2kit.cli.batch import register_cli

    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command"))
    a = parser.parse_args(["batch", *map(str, args)])
    rc = a.func(a)
    return rc, capsys.readouterr().out


def test_overwrite_batch_never_deletes_foreign_folder(tmp_path, light, capsys):
    from fsm2kit.batch import load_sweep
    from fsm2kit.batch.sweep_runs import execute_run

    reports = tmp_path / "reports"
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 1}\n")
    (spec,) = load_sweep(p).runs(reports)
    # a folder the batch did not write sits where the run goes
    spec.folder.mkdir(parents=True)
    (spec.folder / "my_notes.md").write_text("mine")
    assert spec.state()[0] == "pending" and "not a finished run" in spec.in_the_way()
    rc, out = _batch([p, "--reports", reports, "--dry-run"], capsys)
    assert rc == 0 and "would move" in out and "never deleted" in out
    res = execute_run(spec)
    assert res.status == "done" and res.kept
    kept = Path(res.kept.split(" (")[0])
    assert (kept / "my_notes.md").read_text() == "mine" and ".fsm2kit-work/kept" in str(kept)
    # a finished run the user added a file to, whose parameters then change: kept too
    (spec.folder / "added.txt").write_text("mine too")
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 2}\n")
    (spec,) = load_sweep(p).runs(reports)
    assert spec.state()[0] == "changed" and "added.txt" in spec.in_the_way()
    res = execute_run(spec)
    assert res.status == "done" and (Path(res.kept.split(" (")[0]) / "added.txt").read_text() == "mine too"
    # an unchanged finished run of the batch is simply replaced when it changes
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 3}\n")
    (spec,) = load_sweep(p).runs(reports)
    assert spec.in_the_way() == "" and execute_run(spec).kept == ""


def test_fingerprint_sees_plugin_source_and_file_contents(tmp_path, light):
    from fsm2kit.batch import load_sweep
    from fsm2kit.batch.sweep_spec import DONE_MARKER

    ck = tmp_path / "model.pt"
    ck.write_bytes(b"weights v1")
    plug = light.parent / "my_plugin.py"
    plug.write_text("X = 1\n")
    data = tmp_path / "data"
    data.mkdir()
    (data / "image_1.nii.gz").write_bytes(b"1234")
    p = _sweep(light, f"grid: {{x: ['{data}']}}\nparameters: {{checkpoint: '{ck}'}}\nplugins: [my_plugin.py]\n")
    (spec,) = load_sweep(p).runs(tmp_path / "reports")
    spec.folder.mkdir(parents=True)
    (spec.folder / DONE_MARKER).write_text(json.dumps({"sweep": spec.sweep, "run": spec.name,
                                                       "fingerprint": spec.fingerprint(), "parameters": {}}))
    assert spec.state() == ("done", "")
    plug.write_text("X = 2\n")  # the plugin's code changed
    assert spec.state() == ("changed", "plugin source changed")
    plug.write_text("X = 1\n")
    ck.write_bytes(b"weights v2")  # same path, new checkpoint
    os.utime(ck, ns=(1, 1))
    assert spec.state()[0] == "changed" and "file parameters" in spec.state()[1]
    ck.write_bytes(b"weights v1")
    assert spec.state() == ("done", "")
    (data / "image_2.nii.gz").write_bytes(b"5")  # a data folder gained a scan
    assert spec.state()[0] == "changed"


def test_fingerprint_hashes_a_checkpoint_once(tmp_path, monkeypatch):
    ck = tmp_path / "big.pt"
    ck.write_bytes(os.urandom(1 << 16))
    calls = []
    real = F.file_sha256
    monkeypatch.setattr(F, "file_sha256", lambda p, *a: calls.append(p) or real(p, *a))
    F._HASHES.clear()
    digests = {F.file_sha256_cached(ck) for _ in range(5)}
    assert len(digests) == 1 and len(calls) == 1
    ck.write_bytes(os.urandom(1 << 15))  # size changed: hashed again
    assert F.file_sha256_cached(ck) not in digests and len(calls) == 2


# ============================================================================ item 5: Dask over TLS only
@pytest.mark.parametrize("addr", ["10.0.0.5:8786", "tcp://10.0.0.5:8786", "ws://host:8786", "inproc://x"])
def test_dask_refuses_insecure_scheduler(tmp_path, light, capsys, addr):
    from fsm2kit.batch.sweeps import check_scheduler, run_sweep

    p = _sweep(light, "grid: {x: [a]}\n")
    with pytest.raises(ValueError, match="not encrypted.*--insecure"):
        _batch([p, "--reports", tmp_path / "r", "--scheduler", addr], capsys)
    with pytest.raises(ValueError, match="not encrypted"):
        run_sweep(p, reports=tmp_path / "r", scheduler=addr)
    check_scheduler(addr, insecure=True)
    check_scheduler("tls://10.0.0.5:8786")
    check_scheduler("WSS://10.0.0.5:8786")
    assert not (tmp_path / "r").exists()


def test_dask_readme_shows_tls_scheduler_and_workers():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "dask scheduler --protocol tls" in readme and "dask worker tls://" in readme
    assert "--tls-ca-file" in readme and "--dashboard-address" in readme and "all interfaces" in readme


# ============================================================================ item 3: a sidecar per output
@pytest.fixture(scope="module")
def seg_result():
    from test_segment import ScriptedEngine

    from fsm2kit.io.examples import example_ct
    from fsm2kit.segment.own_scan import segment_volume

    ct = example_ct()
    lab = ct.labels.array
    return segment_volume(ct, ct, lab, engine=ScriptedEngine([1.0] * ct.n_slices), labels="liver=5",
                          patience=None, ground_truth=lab)


def test_sidecar_per_output_file(tmp_path, seg_result):
    from fsm2kit.segment.segment_result import read_sidecar

    gz, nii = tmp_path / "pred.nii.gz", tmp_path / "pred.nii"
    seg_result.save(gz)
    gz_files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(gz_files) == ["pred.nii.gz", "pred.nii.gz.dice.csv", "pred.nii.gz.json"]
    seg_result.save(nii, overwrite=True)  # another suffix: its own sidecar and Dice table; nothing of pred.nii.gz touched
    for p, side in ((gz, "pred.nii.gz.json"), (nii, "pred.nii.json")):
        meta = json.loads((tmp_path / side).read_text())
        assert meta["output_name"] == p.name and meta["output_sha256"] == F.file_sha256(p)
        assert read_sidecar(p)["output_sha256"] == meta["output_sha256"]
    assert {n: (tmp_path / n).read_bytes() for n in gz_files} == gz_files


def test_sidecar_overwrite_only_own_unchanged_file(tmp_path, seg_result):
    gz = tmp_path / "pred.nii.gz"
    gz.write_bytes(b"someone's mask")  # no sidecar: not fsm2kit's
    with pytest.raises(FileExistsError, match="no fsm2kit sidecar"):
        seg_result.save(gz, overwrite=True)
    assert gz.read_bytes() == b"someone's mask"
    gz.unlink()
    seg_result.save(gz)
    with gz.open("ab") as f:  # edited by hand since (e.g. in ITK-SNAP)
        f.write(b"\0")
    with pytest.raises(FileExistsError, match="changed since fsm2kit wrote it"):
        seg_result.save(gz, overwrite=True)


def test_sidecar_legacy_name_still_read_and_replaced(tmp_path, seg_result):
    from fsm2kit.segment.segment_result import read_sidecar

    gz = tmp_path / "pred.nii.gz"
    seg_result.save(gz)
    os.replace(tmp_path / "pred.nii.gz.json", tmp_path / "pred.json")  # as an older fsm2kit named it
    assert read_sidecar(gz)["_sidecar"].endswith("pred.json")
    assert read_sidecar(tmp_path / "pred.nii") is None  # it names pred.nii.gz, not pred.nii
    seg_result.save(gz, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pred.nii.gz", "pred.nii.gz.dice.csv", "pred.nii.gz.json"]


def test_out_checked_before_model_segment_lock(tmp_path, no_model, capsys):
    from test_errors import _seg

    out = tmp_path / "pred.nii.gz"
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    ready = ctx.Event()

    def hold():
        with F.output_lock(out):
            ready.set()
            threading.Event().wait(10)

    p = ctx.Process(target=hold)
    p.start()
    try:
        assert ready.wait(10)
        assert main(_seg(out, "--labels", "liver=5")) == 2
        assert "being written by another fsm2kit process" in _one_line(_err(capsys), "segment")
    finally:
        p.terminate()
        p.join()


# ============================================================================ item 6: the feature cache
def _bare_cache(tmp_path):
    """A FeatureCache's disk half, without a model (only what load/save read)."""
    import torch

    from fsm2kit.engine.features import FeatureCache
    from fsm2kit.engine.results import EngineStats

    c = object.__new__(FeatureCache)
    c.feature_key = "fk"
    c.cache_root = tmp_path / "cache"
    c.cache_dir = c.cache_root / "fk"
    c.stats = EngineStats()
    c.storage_device = torch.device("cpu")
    c.image_size = 128
    c.module = type("M", (), {"num_feature_levels": 3})()
    c._level_channels = None
    return c


def _feats(value=0.5):
    import torch

    from fsm2kit.engine.features import SliceFeatures

    sizes = ((32, 32), (16, 16), (8, 8))
    fpn = tuple(torch.full((1, 4, h, w), value) for h, w in sizes)
    return SliceFeatures("ab" + "0" * 30, fpn, sizes, (64, 64))


def test_cache_hmac_keyed_per_folder(tmp_path):
    import stat

    import torch

    from fsm2kit.engine.features import CACHE_KEY_FILE, _checksum

    c = _bare_cache(tmp_path)
    f = _feats()
    c.save_disk(f)
    assert c.load_disk(f.key, (64, 64)) is not None
    key = c.cache_root / CACHE_KEY_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    # forged: right format, an unkeyed checksum (what a file held before) or another folder's key
    path = c.disk_path(f.key)
    obj = torch.load(path, weights_only=True)
    obj["backbone_fpn"] = [x + 1 for x in obj["backbone_fpn"]]
    for forged in (_checksum(obj["backbone_fpn"]), _checksum(obj["backbone_fpn"], b"k" * 32)):
        obj["checksum"] = forged
        torch.save(obj, path)
        with pytest.warns(UserWarning, match="key"):
            assert c.load_disk(f.key, (64, 64)) is None


def test_cache_nan_features_refused_on_load(tmp_path):
    c = _bare_cache(tmp_path)
    f = _feats(float("nan"))
    c.save_disk(f)
    with pytest.warns(UserWarning, match="NaN or inf"):
        assert c.load_disk(f.key, (64, 64)) is None


def test_cache_modes_without_group_or_world_write(tmp_path):
    import stat

    old = os.umask(0)
    try:
        c = _bare_cache(tmp_path)
        c.save_disk(_feats())
    finally:
        os.umask(old)
    for p in [c.cache_root, *c.cache_root.rglob("*")]:
        assert not stat.S_IMODE(p.stat().st_mode) & 0o022, p


# ============================================================================ item 7: bounded inputs
def _nifti_declaring(tmp_path, name, dims=(1024, 1024, 1024)):
    """A tiny NIfTI whose header declares a huge int16 volume (the file holds 8 voxels)."""
    import gzip

    import nibabel as nib

    small = tmp_path / "small.nii"
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.int16), np.eye(4)), small)
    raw = bytearray(small.read_bytes())
    raw[40:56] = np.array([3, *dims, 1, 1, 1, 1], "<i2").tobytes()
    out = tmp_path / name
    out.write_bytes(gzip.compress(bytes(raw)) if name.endswith(".gz") else bytes(raw))
    return out


@pytest.mark.parametrize("name", ["huge.nii", "huge.nii.gz"])
def test_bounded_inputs_nifti_declared_shape(tmp_path, name):
    import tracemalloc

    from fsm2kit.io.nifti import read_image

    p = _nifti_declaring(tmp_path, name)
    assert p.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match="1024x1024x1024 volume \\(2.00 GiB\\), more than the"):
            read_image(p)
        assert tracemalloc.get_traced_memory()[1] < 50 << 20  # refused before allocating
    finally:
        tracemalloc.stop()


def test_bounded_inputs_nifti_cap_and_cli(tmp_path, no_model, capsys, monkeypatch):
    import fsm2kit.io.nifti as N

    from test_errors import SEG, _seg

    p = _nifti_declaring(tmp_path, "big.nii", dims=(64, 64, 64))
    monkeypatch.setattr(N, "MAX_VOLUME_BYTES", 1 << 10)
    with pytest.raises(ValueError, match="more than fsm2kit reads"):
        N.read_image(SEG)
    monkeypatch.undo()
    assert main(_seg(tmp_path / "o.nii.gz", "--labels", "liver=5", image=p)) == 2  # one line, exit 2
    assert "more than the" in _one_line(_err(capsys), "segment")


def test_bounded_inputs_fifo_and_device_named(tmp_path):
    from fsm2kit.io.nifti import read_image
    from fsm2kit.io.prompts import PromptError, read_prompts

    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="is a FIFO"):
        read_image(fifo)
    with pytest.raises(PromptError, match="is a FIFO"):
        read_prompts(fifo)
    with pytest.raises(PromptError, match="is a device"):
        read_prompts("/dev/zero")
    with pytest.raises(ValueError, match="character device"):
        read_image("/dev/zero")


def test_bounded_inputs_prompt_files(tmp_path):
    from fsm2kit.io.prompts import MAX_PROMPT_BYTES, PromptError, read_prompts

    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(MAX_PROMPT_BYTES + 1)
    with pytest.raises(PromptError, match="big.json is 4.0 MB, more than the 4 MB"):
        read_prompts(big)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PromptError, match="deep.json: JSON nested"):
        read_prompts(deep)
    deep.write_text("[" * 10 + "]" * 10)
    with pytest.raises(PromptError, match="deep.json: JSON nested 10 levels"):
        read_prompts(deep)
    dup = tmp_path / "dup.json"
    dup.write_text('[[{"z": 3, "z": 5, "points": [[1, 1, 1]]}]]')
    with pytest.raises(PromptError, match="dup.json: the key 'z' appears twice"):
        read_prompts(dup)


def test_bounded_inputs_rounds_cap(tmp_path, example_episode, no_model, capsys):
    from fsm2kit.io.prompts import PromptError, read_prompts

    z = int(example_episode.z[len(example_episode.z) // 2])
    rounds = tmp_path / "rounds.json"
    rounds.write_text(json.dumps([[{"z": z, "points": [[10, 10, 1]]}]] * 101))
    with pytest.raises(PromptError, match="101 correction rounds, more than the cap of 100.*--max-rounds 101"):
        read_prompts(rounds)
    assert len(read_prompts(rounds, max_rounds=101).rounds) == 101
    assert main(_run(tmp_path / "o", "--prompts", str(rounds))) == 2
    assert "--max-rounds 101" in _one_line(_err(capsys), "run")
    # raised: the checks pass and the job says what it costs before the model (refused here) loads
    assert main(_run(tmp_path / "o", "--prompts", str(rounds), "--max-rounds", "200")) == 1
    err = _err(capsys)
    assert "estimate: 101 correction round(s) re-propagate" in err and "a model was loaded" in err


# ============================================================================ item 8: corrections on the support slice
def test_out_checked_before_model_support_slice_correction(tmp_path, no_model, capsys):
    from fsm2kit.io.nifti import load_label_nifti, load_nifti
    from fsm2kit.segment.organs import parse_labels
    from fsm2kit.segment.own_scan import check_request
    from test_errors import CT, SEG, _seg

    mask = load_label_nifti(SEG, like=load_nifti(CT))
    (z,) = check_request(parse_labels("liver=5", present=np.unique(mask.array).tolist()), mask.array)["liver"]
    prompts = tmp_path / "p.json"
    prompts.write_text(json.dumps([[{"z": z, "points": [[30, 30, 1]]}]]))
    assert main(_seg(tmp_path / "o.nii.gz", "--labels", "liver=5", "--prompts", str(prompts))) == 2
    assert f"corrections on z=[{z}] (liver): that slice is the annotated support itself" in _one_line(
        _err(capsys), "segment")


# ============================================================================ item 9: honest messages, hashes, links
def test_nan_npz_episode_message(tmp_path, no_model, capsys):
    from conftest import EXAMPLE_NPZ

    eps = tmp_path / "eps"
    eps.mkdir()
    for p in Path(EXAMPLE_NPZ).glob("*.npz"):
        arrs = dict(np.load(p))
        arrs["query_images"] = arrs["query_images"].astype(np.float32)
        arrs["query_images"][0, :, 3, 4] = np.nan
        np.savez(eps / p.name, **arrs)
    assert main(_run(tmp_path / "o", episodes=eps)) == 2
    line = _one_line(_err(capsys), "run")
    assert "NaN or inf" in line and "channels" not in line


def test_dicom_content_hash_and_links_in_sidecar(tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "b.dcm").write_bytes(b"slice b")
    series = tmp_path / "series"
    series.mkdir()
    (series / "a.dcm").write_bytes(b"slice a")
    (series / "b.dcm").symlink_to(other / "b.dcm")
    h1 = F.folder_sha256(series)
    assert F.links_outside(series) == [{"name": "b.dcm", "target": str((other / "b.dcm").resolve())}]
    (other / "b.dcm").write_bytes(b"slice B")  # content changed, names and count the same
    assert F.folder_sha256(series) != h1
    # what segment's sidecar records of a DICOM input
    rec = F.input_record(series)
    assert rec["content_sha256"] == F.folder_sha256(series) and rec["dicom_files"] == 2
    assert rec["links_outside"][0]["name"] == "b.dcm" and rec["sha256"] is None


def test_links_out_of_episodes_recorded(tmp_path, fake_run, capsys):
    from conftest import EXAMPLE_NPZ

    store = tmp_path / "store"
    store.mkdir()
    eps = tmp_path / "eps"
    eps.mkdir()
    for p in Path(EXAMPLE_NPZ).glob("*.npz"):
        (store / p.name).write_bytes(p.read_bytes())
        (eps / p.name).symlink_to(store / p.name)
    assert main(_run(tmp_path / "o", episodes=eps)) == 0
    assert "is a link to" in _err(capsys)
    rec = json.loads((tmp_path / "o" / "provenance.json").read_text())
    assert {x["name"] for x in rec["input_links_outside"]} == {p.name for p in eps.iterdir()}


def test_atomic_save_batch_kill_between_renames_restores_old_run(tmp_path, light, monkeypatch):
    import fsm2kit.batch.sweep_runs as R
    from fsm2kit.batch import load_sweep, run_sweep
    from fsm2kit.batch.sweep_spec import DONE_MARKER

    reports = tmp_path / "reports"
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 1}\n")
    (spec,) = load_sweep(p).runs(reports)
    assert R.execute_run(spec).status == "done"
    before = (spec.folder / DONE_MARKER).read_bytes()
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 2}\n")
    (spec,) = load_sweep(p).runs(reports)

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "_publish", killed)
    with pytest.raises(KeyboardInterrupt):
        R.execute_run(spec)
    assert not spec.folder.exists()  # the old run sits in .fsm2kit-work/stale/
    monkeypatch.undo()
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 1}\n")  # the next batch (nothing to run)
    res = run_sweep(p, reports=reports, workers=1, progress=False)
    assert (spec.folder / DONE_MARKER).read_bytes() == before and res.skipped == ["x=a"]


def test_atomic_save_segment_kill_between_renames_keeps_old_pair(tmp_path, seg_result, monkeypatch):
    gz = tmp_path / "pred.nii.gz"
    seg_result.save(gz)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    seg_result.options["again"] = 1
    real = F._rename_in
    calls = []

    def die_at_marker(tmp, path):
        if path == gz:
            raise KeyboardInterrupt  # the new sidecar and Dice table are in place, the label volume not yet
        calls.append(path)
        real(tmp, path)

    monkeypatch.setattr(F, "_rename_in", die_at_marker)
    with pytest.raises(KeyboardInterrupt):
        seg_result.save(gz, overwrite=True)
    assert calls and {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # the old pair, whole
    # a kill (no cleanup ran): the old files aside, the new companions in place, no label volume
    monkeypatch.setattr(F, "recover_group", lambda *a, **k: [])
    with pytest.raises(KeyboardInterrupt):
        seg_result.save(gz, overwrite=True)
    assert not gz.exists() and any(p.name.endswith(".old") for p in tmp_path.iterdir())
    monkeypatch.undo()
    from fsm2kit.segment.segment_result import output_files

    notes = F.recover_group(gz, output_files(gz)[1:])
    assert any("restored" in n for n in notes)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_atomic_save_keeps_named_user_files(tmp_path):
    out = tmp_path / "insp"

    def build(tmp):
        (tmp / "inspect.json").write_text(json.dumps({"tool": "fsm2kit", "kind": "inspect"}))

    F.atomic_folder(out, build, kind="inspect")
    (out / "prompts.json").write_text("[[]]")  # the corrections a user saved from notebook 05
    F.atomic_folder(out, build, overwrite=True, kind="inspect", keep=("prompts.json",))
    assert (out / "prompts.json").read_text() == "[[]]"


def test_atomic_save_segment_python_save_repairs_a_kill(tmp_path, seg_result, monkeypatch):
    gz = tmp_path / "pred.nii.gz"
    seg_result.save(gz)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(F, "recover_group", lambda *a, **k: [])
    monkeypatch.setattr(F, "_rename_in", lambda tmp, path: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed between the renames: the old pair aside
        seg_result.save(gz, overwrite=True)
    monkeypatch.undo()
    assert not gz.exists()
    import fsm2kit.segment.segment_result as SR

    monkeypatch.setattr(SR, "atomic_write_group", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.warns(UserWarning, match="restored"), pytest.raises(OSError, match="disk full"):
        seg_result.save(gz, overwrite=True)  # the next save repairs first, then fails: the old pair stays
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
