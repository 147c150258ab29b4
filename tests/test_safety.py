"""Issue 15, nothing lost and nothing trusted blindly: batch work folders and fingerprints, strict
sweep files, the Dask cluster, the feature cache, ``prepare --overwrite``, checkpoints and grids.

=================================================================  =====================================================
item                                                               test
=================================================================  =====================================================
batch: temporary/failed folders out of reach of run names          test_batch_work_folders_are_out_of_reach_of_run_names
batch: fingerprint recorded; changed runs rerun, with the reason   test_batch_reruns_changed_runs_and_says_why
sweep validation: types, booleans, nulls, dates, sets, $VAR        test_sweep_validation_names_the_parameter
sweep validation at --dry-run time                                 test_sweep_validation_at_dry_run
Dask: TLS, loopback, no foreign client, no dashboard/HTTP port     test_dask_cluster_refuses_foreign_clients_and_has_no_dashboard
feature cache: key + checksum checked; bad file recomputed         test_feature_cache_bad_file_is_recomputed_and_replaced
feature cache: weights' hash taken when the engine is created      test_feature_cache_weights_hash_taken_at_engine_creation
feature cache: unwritable/full folder: one warning, no temp file   test_feature_cache_full_or_unwritable_folder_warns_once
prepare --overwrite leaves exactly the new data set                test_prepare_overwrite_leaves_exactly_the_new_data_set
the loader warns about files the manifest does not list            test_loader_warns_about_files_the_manifest_does_not_list
checkpoints: NaN/inf weights refused, first bad tensor named       test_checkpoint_nan_weights_are_refused
checkpoints: not a checkpoint -> fsm2kit's own message             test_not_a_checkpoint_gets_fsm2kits_message
checkpoints: a folder is named as a folder                         test_checkpoint_folder_is_named_as_a_folder
grids: same grid in another axis order reoriented losslessly       test_mask_in_another_axis_order_is_reoriented
grids: a real difference refused with both grids in world terms    test_real_grid_difference_shows_both_grids
grids: a DICOM series and a mask from another converter's NIfTI    test_dicom_image_with_a_mask_from_another_converter
=================================================================  =====================================================

Bit-identity of cached and recomputed features stays in tests/test_engine.py.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import socket
import warnings
from pathlib import Path

import nbformat
import nibabel as nib
import numpy as np
import pytest
import torch
from nbformat.v4 import new_code_cell

from helpers import write_notebook


# ============================================================================ batch
@pytest.fixture()
def light(tmp_path):
    """A light notebook (no SAM2): fails while ``x == fail_x``, writes a summary."""
    return write_notebook(tmp_path / "nb" / "light.ipynb",
                          'x = "a"\nfail_x = ""\nn = 1\nflag = False\noutput_dir = "."',
                          'if x == fail_x:\n    raise ValueError(f"boom {x}")\n'
                          'open("summary.csv", "w").write(f"metric,dice\\npooled,{n / 10}\\n")')


def _sweep(light: Path, text: str) -> Path:
    p = light.parent / "s.yaml"
    p.write_text(f"name: s\nnotebook: light.ipynb\nexport_html: false\n{text}")
    return p


def test_batch_work_folders_are_out_of_reach_of_run_names(tmp_path, light):
    from fsm2kit.batch.sweep_spec import DONE_MARKER, FAILED_MARKER
    from fsm2kit.batch.sweep_runs import execute_run
    from fsm2kit.batch import load_sweep, run_sweep

    reports = tmp_path / "reports"
    p = _sweep(light, "run_name: '{x}'\ngrid: {x: [a.tmp-1, b.failed, b]}\nparameters: {fail_x: b}\n")
    specs = {s.name: s for s in load_sweep(p).runs(reports)}
    assert execute_run(specs["a.tmp-1"]).status == "done"
    assert execute_run(specs["b.failed"]).status == "done"
    finished = (reports / "s" / "b.failed" / DONE_MARKER).read_bytes()
    out = execute_run(specs["b"])  # fails: its attempt goes into the work folder
    assert out.status == "failed" and "boom b" in out.error
    assert (reports / "s" / "b.failed" / DONE_MARKER).read_bytes() == finished  # never replaced
    assert (reports / "s" / ".fsm2kit-work" / "failed" / "b" / FAILED_MARKER).is_file()
    assert specs["b"].failed_folder == reports.resolve() / "s" / ".fsm2kit-work" / "failed" / "b"
    # a rerun cleans its temporary folders: the finished run named like one stays
    (reports / "s" / ".fsm2kit-work" / "tmp" / "x.tmp-killed").mkdir(parents=True)
    p.write_text(p.read_text().replace("grid: {x: [a.tmp-1, b.failed, b]}", "grid: {x: [a.tmp-1, b.failed]}"))
    res = run_sweep(p, reports=reports, workers=1, progress=False)  # nothing pending: no cluster
    assert sorted(res.skipped) == ["a.tmp-1", "b.failed"] and not res.executed
    assert (reports / "s" / "a.tmp-1" / DONE_MARKER).is_file()
    assert not list((reports / "s" / ".fsm2kit-work" / "tmp").iterdir())
    from fsm2kit.batch import collect_index

    sw = load_sweep(_sweep(light, "run_name: '{x}'\ngrid: {x: [b]}\nparameters: {fail_x: b}\n"))
    idx = collect_index(sw, reports)
    assert idx.loc[0, "status"] == "failed" and idx.loc[0, "folder"] == ".fsm2kit-work/failed/b/"


def test_batch_reruns_changed_runs_and_says_why(tmp_path, light, capsys):
    from fsm2kit.cli.batch import register_cli
    from fsm2kit.batch.sweep_spec import DONE_MARKER
    from fsm2kit.batch.sweep_runs import execute_run
    from fsm2kit.batch import load_sweep, plan_runs, run_sweep

    reports = tmp_path / "reports"
    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 1}\n")
    (spec,) = load_sweep(p).runs(reports)
    assert execute_run(spec).status == "done"
    rec = json.loads((spec.folder / DONE_MARKER).read_text())
    assert rec["fingerprint"] == spec.fingerprint() and set(rec["fingerprint"]) == {"parameters", "notebook", "plugins", "inputs"}
    assert spec.state() == ("done", "") and execute_run(spec).status == "skipped"

    p = _sweep(light, "grid: {x: [a]}\nparameters: {n: 2}\n")  # image_size 256 -> 512, in small
    (spec,) = load_sweep(p).runs(reports)
    assert spec.state() == ("changed", "changed parameters (n: 1 -> 2)")
    nb = nbformat.read(light, as_version=4)
    nb.cells.append(new_code_cell("y = 1"))
    nbformat.write(nb, light)
    assert spec.state() == ("changed", "changed parameters (n: 1 -> 2), notebook changed (light.ipynb)")
    skipped, pending, rerun = plan_runs([spec])
    assert not skipped and pending == [spec] and rerun == {"x=a": spec.state()[1]}

    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", str(p), "--reports", str(reports), "--dry-run"])
    assert args.func(args) == 0 and "would rerun x=a: changed parameters (n: 1 -> 2)" in capsys.readouterr().out

    res = run_sweep(p, reports=reports, workers=1, progress=False)  # on the TLS local cluster
    assert res.rerun == {"x=a": "changed parameters (n: 1 -> 2), notebook changed (light.ipynb)"}
    assert [o.status for o in res.executed] == ["done"] and "reran 1 changed" in repr(res)
    assert json.loads((spec.folder / DONE_MARKER).read_text())["parameters"]["n"] == 2
    assert spec.state() == ("done", "")


@pytest.mark.parametrize(
    "text, message",
    [
        ("grid: {x: [a]}\nparameters: {flag: 'false'}\n", "'flag' must be true or false"),
        ("export_html: 'false'\n", "export_html must be true or false"),
        ("grid:\n  x:\n", "grid parameter 'x' is null"),
        ("grid: {x: [a, null]}\n", "grid parameter 'x' has a null value"),
        ("parameters: {x: null}\n", "parameter 'x' is null"),
        ("grid: {x: [2024-01-01]}\n", "parameter 'x' is a YAML date"),
        ("parameters: {x: !!set {a, b}}\n", "parameter 'x' is a YAML set"),
        ("parameters: {x: $FSM2KIT_SURELY_UNSET/data}\n", "parameter 'x' uses \\$FSM2KIT_SURELY_UNSET, which is not set"),
        ("parameters: {n: ten}\n", "parameter 'n' must be an integer"),
        ("parameters: {n: true}\n", "parameter 'n' must be an integer"),
        ("parameters: {x: 3}\n", "parameter 'x' must be a string"),
        ("timeout: soon\n", "timeout must be a number"),
    ],
)
def test_sweep_validation_names_the_parameter(light, text, message):
    from fsm2kit.batch import load_sweep

    p = light.parent / "s.yaml"
    p.write_text(f"notebook: light.ipynb\n{text}")
    with pytest.raises(ValueError, match=message):
        load_sweep(p)


def test_sweep_validation_at_dry_run(light, tmp_path, capsys):
    from fsm2kit.cli.batch import register_cli
    from fsm2kit.batch import load_sweep

    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command"))
    p = light.parent / "s.yaml"
    p.write_text("notebook: light.ipynb\ngrid: {x: [2024-01-01, b]}\n")
    args = parser.parse_args(["batch", str(p), "--reports", str(tmp_path / "r"), "--dry-run"])
    with pytest.raises(ValueError, match="parameter 'x' is a YAML date"):
        args.func(args)
    p.write_text("notebook: light.ipynb\ngrid: {x: ['2024-01-01', b]}\nparameters: {flag: true, n: 2}\n")
    sw = load_sweep(p)  # quoted, and proper booleans and numbers: fine
    assert [r.parameters["x"] for r in sw.runs(tmp_path / "r")] == ["2024-01-01", "b"]


# ============================================================================ Dask
def test_dask_cluster_refuses_foreign_clients_and_has_no_dashboard():
    from distributed import Client

    from fsm2kit.batch.sweeps import _dask_client

    with _dask_client(1, None) as client:
        addr = client.scheduler.address
        assert addr.startswith("tls://127.0.0.1:")
        assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
        info = client.scheduler_info()
        ports = [int(p) for p in info["services"].values()]
        ports += [int(p) for w in info["workers"].values() for p in w.get("services", {}).values()]
        assert 8787 not in ports  # no dashboard; the HTTP port Dask opens anyway is closed:
        for port in ports:
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0
        with pytest.raises((OSError, TimeoutError)):  # a foreign plain-TCP client
            with Client(addr.replace("tls://", "tcp://"), timeout=2):
                pass
        from distributed import Security

        other = Security.temporary()  # TLS, but not this batch's credentials
        with pytest.raises((OSError, TimeoutError)):
            with Client(addr, security=other, timeout=2):
                pass


# ============================================================================ feature cache
def _slices(n=2, size=64):
    rng = np.random.default_rng(3)
    return [rng.random((size, size)).astype(np.float32) for _ in range(n)]


def test_feature_cache_bad_file_is_recomputed_and_replaced(tiny256, tmp_path):
    from fsm2kit.engine import Engine

    (a,) = _slices(1)
    first = Engine(tiny256, progress=False, cache_dir=tmp_path)
    ref = [x.clone() for x in first.features.encode(a).backbone_fpn]
    (path,) = list(tmp_path.rglob("*.pt"))
    obj = torch.load(path, weights_only=True)
    assert obj["key"] == path.stem and obj["feature_key"] == tiny256.feature_key and obj["checksum"]

    def tamper(change):
        o = torch.load(path, weights_only=True)
        change(o)
        torch.save(o, path)

    def other_values(o):
        o["backbone_fpn"][0] += 1.0

    def other_shape(o):
        o["backbone_fpn"][2] = o["backbone_fpn"][2][:, :, :8]
        o["shapes"][2] = list(o["backbone_fpn"][2].shape)

    def other_key(o):
        o["key"] = "0" * 32

    for change in (other_values, other_shape, other_key, None):
        if change is None:
            path.write_bytes(b"garbage")
        else:
            tamper(change)
        eng = Engine(tiny256, progress=False, cache_dir=tmp_path)
        with pytest.warns(UserWarning, match="not valid.*recomputing and replacing"):
            got = eng.features.encode(a)
        assert eng.stats.encoder_passes == 1 and eng.stats.disk_hits == 0
        for x, y in zip(got.backbone_fpn, ref):
            torch.testing.assert_close(x, y, rtol=0, atol=0)
        again = Engine(tiny256, progress=False, cache_dir=tmp_path)  # replaced by a valid file
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            again.features.encode(a)
        assert again.stats.disk_hits == 1 and again.stats.encoder_passes == 0


def test_feature_cache_weights_hash_taken_at_engine_creation(load_random, tmp_path):
    from fsm2kit.engine import Engine

    model = load_random()  # its own copy: the weights are edited below
    (a,) = _slices(1)
    before = Engine(model, progress=False, cache_dir=tmp_path)
    before.features.encode(a)
    with torch.no_grad():
        next(model.module.image_encoder.parameters()).add_(0.5)  # weights edited in memory
    after = Engine(model, progress=False, cache_dir=tmp_path)
    assert after.features.cache_dir != before.features.cache_dir
    after.features.encode(a)
    assert after.stats.encoder_passes == 1 and after.stats.disk_hits == 0  # not the old features


def test_feature_cache_full_or_unwritable_folder_warns_once(tiny256, tmp_path, monkeypatch):
    from fsm2kit.engine import Engine, features

    def full_disk(path, data):
        with open(path, "wb") as f:
            f.write(bytes(data)[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(features, "_write_bytes", full_disk)
    eng = Engine(tiny256, progress=False, cache_dir=tmp_path / "cache")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for a in _slices(3):
            eng.features.encode(a)
    msgs = [str(w.message) for w in caught if "feature cache" in str(w.message)]
    assert len(msgs) == 1 and "No space left" in msgs[0] and "without the disk cache" in msgs[0]
    assert eng.stats.encoder_passes == 3 and eng.features.cache_dir is None
    assert not [p for p in (tmp_path / "cache").rglob("*")
                if p.is_file() and p.name != features.CACHE_KEY_FILE]  # no temporary file left (the key stays)
    monkeypatch.undo()
    if os.geteuid() != 0:  # root writes anywhere
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            eng = Engine(tiny256, progress=False, cache_dir=ro)
            with pytest.warns(UserWarning, match="cannot write the feature cache folder"):
                eng.features.encode(_slices(1)[0])
        finally:
            ro.chmod(0o700)


# ============================================================================ prepare
def _synapse_raw(root: Path, numbers) -> None:
    rng = np.random.default_rng(1)
    for n in numbers:
        for kind, data in (("img", rng.integers(-1000, 1000, size=(80, 80, 2)).astype(np.int16)),
                           ("label", np.pad(np.full((10, 10, 2), 6, np.uint8), ((30, 40), (30, 40), (0, 0))))):
            p = root / kind / f"{kind}{n}.nii.gz"
            p.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(data, np.diag([-0.8, -0.8, 2.5, 1.0])), p)


def test_prepare_overwrite_leaves_exactly_the_new_data_set(tmp_path):
    from fsm2kit.io.preparation import prepare_synapse

    out = tmp_path / "sabs"
    _synapse_raw(tmp_path / "raw3", ("0001", "0002", "0003"))
    prepare_synapse(tmp_path / "raw3", out, progress=False)
    (out / "notes.txt").write_text("mine")  # not prepare's: left alone
    _synapse_raw(tmp_path / "raw1", ("0007",))
    rep = prepare_synapse(tmp_path / "raw1", out, overwrite=True, progress=False)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["SHA256SUMS", "classmap_1.json", "image_0.nii.gz", "label_0.nii.gz", "notes.txt", "prepare.json"]
    assert any("removed 4 files" in n for n in rep.notes)


def test_loader_warns_about_files_the_manifest_does_not_list(tmp_path):
    from fsm2kit.io.alp import load_alp_folder
    from fsm2kit.io.preparation import prepare_synapse

    out = tmp_path / "sabs"
    _synapse_raw(tmp_path / "raw", ("0001",))
    prepare_synapse(tmp_path / "raw", out, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_alp_folder(out, "SABS")
    for kind in ("image", "label"):
        (out / f"{kind}_5.nii.gz").write_bytes((out / f"{kind}_0.nii.gz").read_bytes())
    with pytest.warns(UserWarning, match="2 scan files that its prepare.json does not list.*image_5.nii.gz"):
        load_alp_folder(out, "SABS")


# ============================================================================ checkpoints
def _quiet_load(path):
    from fsm2kit.model import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sam2("sam2-tiny", path, image_size=256, device="cpu", progress=False)


def test_checkpoint_nan_weights_are_refused(tiny256, tmp_path):
    from fsm2kit.model import CheckpointError
    from fsm2kit.model.loading import save_checkpoint

    path = save_checkpoint(tiny256, tmp_path / "w.pt")
    sd = torch.load(path, weights_only=True)["model"]
    key = sorted(k for k, v in sd.items() if v.is_floating_point())[3]
    sd[key] = sd[key].clone()
    sd[key].view(-1)[0] = float("nan")
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=f"NaN or inf weights: {key.replace('.', '[.]')} \\(1 of") as e:
        _quiet_load(path)
    assert "\n" not in str(e.value)


def test_not_a_checkpoint_gets_fsm2kits_message(tmp_path):
    from fsm2kit.model import CheckpointError

    for content in (b"not a torch file", b"PK\x03\x04garbage"):
        (tmp_path / "junk.pt").write_bytes(content)
        with pytest.raises(CheckpointError, match="is not a SAM2 checkpoint") as e:
            _quiet_load(tmp_path / "junk.pt")
        assert "weights_only" not in str(e.value) and "\n" not in str(e.value)


def test_checkpoint_folder_is_named_as_a_folder(tmp_path):
    from fsm2kit.model import CheckpointError

    with pytest.raises(CheckpointError, match="is a folder, not a file.*sam2_hiera_tiny.pt"):
        _quiet_load(tmp_path)


# ============================================================================ grids
def _grid_files(tmp_path):
    rng = np.random.default_rng(0)
    aff = np.array([[-0.8, 0, 0, 10.0], [0, 0.9, 0, -20.0], [0, 0, 2.5, 30.0], [0, 0, 0, 1.0]])
    img = nib.Nifti1Image(rng.random((20, 16, 8)).astype(np.float32), aff)
    lab = nib.Nifti1Image((rng.random((20, 16, 8)) > 0.5).astype(np.uint8), aff)
    nib.save(img, tmp_path / "img.nii.gz")
    nib.save(lab, tmp_path / "lab.nii.gz")
    return lab, aff


def test_mask_in_another_axis_order_is_reoriented(tmp_path):
    from fsm2kit.io.nifti import load_label_nifti, load_nifti

    lab, _ = _grid_files(tmp_path)
    image = load_nifti(tmp_path / "img.nii.gz")
    ref = load_label_nifti(tmp_path / "lab.nii.gz", like=image).array
    for ornt in ([[0, -1], [1, 1], [2, -1]], [[2, 1], [0, -1], [1, 1]], [[1, 1], [0, 1], [2, 1]]):
        other = lab.as_reoriented(np.array(ornt, dtype=float))  # as another converter stores it
        assert other.shape != lab.shape or not np.allclose(other.affine, lab.affine)
        nib.save(other, tmp_path / "other.nii.gz")
        np.testing.assert_array_equal(load_label_nifti(tmp_path / "other.nii.gz", like=image).array, ref)
        both = load_nifti(tmp_path / "img.nii.gz", label_path=tmp_path / "other.nii.gz")
        np.testing.assert_array_equal(both.labels.array, ref)


def test_real_grid_difference_shows_both_grids(tmp_path):
    from fsm2kit.io.nifti import load_label_nifti, load_nifti

    lab, aff = _grid_files(tmp_path)
    image = load_nifti(tmp_path / "img.nii.gz")
    shifted = aff.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asarray(lab.dataobj), shifted), tmp_path / "shifted.nii.gz")
    with pytest.raises(ValueError) as e:
        load_label_nifti(tmp_path / "shifted.nii.gz", like=image, what="Support mask")
    msg = str(e.value)
    assert "different voxel grids" in msg and "\n" not in msg
    assert "LAS, spacing 0.8 x 0.9 x 2.5 mm, origin (15, -20, 30) mm, shape (20, 16, 8)" in msg
    assert "LAS, spacing 0.8 x 0.9 x 2.5 mm, origin (10, -20, 30) mm, shape (20, 16, 8)" in msg
    zoom = aff.copy()
    zoom[1, 1] = 1.0  # another spacing, in another axis order
    nib.save(nib.Nifti1Image(np.asarray(lab.dataobj), zoom).as_reoriented([[1, 1], [0, 1], [2, 1]]),
             tmp_path / "zoom.nii.gz")
    with pytest.raises(ValueError, match="spacing 1 x 0.8 x 2.5 mm.*spacing 0.8 x 0.9 x 2.5 mm"):
        load_label_nifti(tmp_path / "zoom.nii.gz", like=image, what="Ground truth")


def test_dicom_image_with_a_mask_from_another_converter(tmp_path):
    """A DICOM series read by fsm2kit (NIfTI voxels column, row, slice: LPS-like) and a mask drawn
    on another converter's NIfTI of the same series (RAS voxel order, flipped axes): accepted."""
    pytest.importorskip("pydicom")
    from test_dicom import write_series

    from fsm2kit.io.dicom import read_dicom_series
    from fsm2kit.io.nifti import load_label_nifti

    rng = np.random.default_rng(0)
    write_series(tmp_path / "s", rng.integers(0, 4000, size=(5, 6, 8)).astype(np.uint16))
    series = read_dicom_series(tmp_path / "s")
    image = series.to_volume()
    mask = (rng.random(series.nifti_data().shape) > 0.5).astype(np.uint8)
    ours = nib.Nifti1Image(mask, series.affine)
    nib.save(ours, tmp_path / "ours.nii.gz")
    ref = load_label_nifti(tmp_path / "ours.nii.gz", like=image).array
    ras = ours.as_reoriented(nib.orientations.io_orientation(series.affine))  # RAS+ voxel order
    assert nib.aff2axcodes(ras.affine) == ("R", "A", "S") != series.axcodes
    nib.save(ras, tmp_path / "theirs.nii.gz")
    np.testing.assert_array_equal(load_label_nifti(tmp_path / "theirs.nii.gz", like=image).array, ref)
