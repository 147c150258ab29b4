"""fsm2kit batch: sweep files, papermill runs on a 2-worker local Dask cluster, failures, resume after kill -9."""

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from fsm2kit.cli.batch import register_cli
from fsm2kit.batch.sweep_spec import DONE_MARKER, FAILED_MARKER
from fsm2kit.batch import collect_index, load_sweep, run_sweep

from helpers import write_notebook

REPO = Path(__file__).resolve().parents[1]
SMOKE_SWEEP = REPO / "sweeps" / "smoke_2x2.yaml"


@pytest.fixture()
def light(tmp_path):
    """A light notebook (no SAM2): sleeps, fails for x == fail_x while the file ``flag + ".on"`` exists
    (the parameter itself names no file, so it is not one of the run's hashed file inputs), writes a summary."""
    return write_notebook(
        tmp_path / "nb" / "light.ipynb",
        'x = 1\nfail_x = 0\nflag = ""\nsleep = 0.0\noutput_dir = "."',
        "import os\nimport time\nfrom pathlib import Path\n\nimport pandas as pd\n\ntime.sleep(sleep)",
        'if x == fail_x and os.path.exists(flag + ".on"):\n    raise ValueError(f"boom x={x}")',
        'pd.DataFrame({"metric": ["pooled", "mean_per_volume"], "dice": [x / 10, x / 20],\n'
        '              "weights": "random weights (seed 0)"}).to_csv(Path(output_dir) / "summary.csv", index=False)\n'
        '(Path(output_dir) / "chart.svg").write_text("<svg/>")',
    )


def _sweep(tmp_path, text, name="s.yaml"):
    p = tmp_path / "nb" / name
    p.write_text(text)
    return p


# ----------------------------------------------------------------------------- sweep files
def test_sweep_expands_the_grid_names_runs_and_expands_env(tmp_path, light, monkeypatch):
    monkeypatch.setenv("FSM2KIT_TEST_DATA", "/data/x")
    p = _sweep(tmp_path, "notebook: light.ipynb\ngrid:\n  x: [1, 2]\n  sleep: [0, 0.5]\n"
                         "parameters:\n  flag: $FSM2KIT_TEST_DATA/flag\n")
    sw = load_sweep(p)
    assert sw.name == "s" and sw.notebook == light.resolve() and "x[2] x sleep[2] = 4 runs" in repr(sw)
    runs = sw.runs(tmp_path / "reports")
    assert [r.name for r in runs] == ["x=1_sleep=0", "x=1_sleep=0.5", "x=2_sleep=0", "x=2_sleep=0.5"]
    assert runs[1].parameters == {"flag": "/data/x/flag", "x": 1, "sleep": 0.5, "output_dir": "."}
    assert runs[0].folder == (tmp_path / "reports" / "s" / "x=1_sleep=0").resolve()
    templ = load_sweep(_sweep(tmp_path, "name: t\nnotebook: light.ipynb\nrun_name: 'x{x}'\ngrid: {x: [1, 2]}\n", "t.yaml"))
    assert [r.name for r in templ.runs(tmp_path)] == ["x1", "x2"]
    index = collect_index(templ, tmp_path)
    assert list(index["status"]) == ["pending", "pending"] and list(index["x"]) == ["1", "2"]


@pytest.mark.parametrize(
    "text, error, message",
    [
        ("notebook: light.ipynb\ngrids: {x: [1]}\n", ValueError, "unknown keys \\['grids'\\]"),
        ("grid: {x: [1]}\n", ValueError, "has no 'notebook:'"),
        ("notebook: missing.ipynb\n", FileNotFoundError, "relative to the sweep file"),
        ("notebook: light.ipynb\ngrid: {y: [1]}\n", ValueError, "not in the parameters cell.*declares"),
        ("notebook: light.ipynb\ngrid: {x: [1]}\nparameters: {x: 2}\n", ValueError, "in both"),
        ("notebook: light.ipynb\ngrid: {x: []}\n", ValueError, "has no values"),
        ("- a\n- b\n", ValueError, "must hold a mapping"),
        ("notebook: [unclosed\n", ValueError, "not valid YAML"),
    ],
)
def test_sweep_file_errors(tmp_path, light, text, error, message):
    with pytest.raises(error, match=message):
        load_sweep(_sweep(tmp_path, text))


def test_duplicate_run_names_are_refused(tmp_path, light):
    sw = load_sweep(_sweep(tmp_path, "notebook: light.ipynb\nrun_name: same\ngrid: {x: [1, 2]}\n"))
    with pytest.raises(ValueError, match="both get the folder name 'same'"):
        sw.runs(tmp_path)
    with pytest.raises(FileNotFoundError, match="Sweep file"):
        load_sweep(tmp_path / "nope.yaml")


def test_run_kernels_talk_over_ipc_not_tcp(tmp_path):
    """Issue 25: kernels of fsm2kit batch use Unix domain sockets (no "Kernel is running over TCP
    without encryption" warning; nothing on the network), absolute paths in a private folder."""
    import os

    from fsm2kit.batch.sweep_runs import kernel_manager_class

    if os.name != "posix":
        pytest.skip("IPC transport: POSIX only (Windows keeps TCP on 127.0.0.1)")
    km = kernel_manager_class({}, cwd=tmp_path)()
    assert km.transport == "ipc" and os.path.isabs(km.ip) and len(km.ip) < 80
    assert os.path.isdir(os.path.dirname(km.ip))
    import asyncio

    asyncio.run(km._async_cleanup_resources())
    assert not os.path.exists(os.path.dirname(km.ip))


# ----------------------------------------------------------------------------- failing runs
@pytest.mark.slow
def test_failed_run_is_reported_with_its_cell_and_retried(tmp_path, light):
    flag = tmp_path / "flag"
    (tmp_path / "flag.on").write_text("fail")
    p = _sweep(tmp_path, f"name: f\nnotebook: light.ipynb\ngrid: {{x: [1, 2, 3]}}\n"
                         f"parameters: {{fail_x: 2, flag: {flag}}}\n")
    reports = tmp_path / "reports"
    res = run_sweep(p, reports=reports, workers=2, progress=False)
    idx = res.index.set_index("run")
    assert list(idx["status"]) == ["done", "failed", "done"]  # the sweep went on after the failure
    assert idx.loc["x=2", "error"] == "cell 3 (In [4]): ValueError: boom x=2"  # executed notebook: papermill adds a cell
    assert idx.loc["x=3", "dice_pooled"] == pytest.approx(0.3) and idx.loc["x=3", "dice_mean_per_volume"] == pytest.approx(0.15)
    assert idx.loc["x=1", "figures"] == "x=1/chart.svg" and idx.loc["x=1", "html"] == "x=1/light.html"
    failed = reports / "f" / ".fsm2kit-work" / "failed" / "x=2"
    rec = json.loads((failed / FAILED_MARKER).read_text())
    assert (rec["cell_index"], rec["exec_count"], rec["ename"]) == (3, 4, "ValueError") and "boom" in rec["traceback"]
    assert (failed / "light.ipynb").is_file() and not (reports / "f" / "x=2").exists()
    page = (reports / "f" / "index.html").read_text()
    assert "class='failed'" in page and "boom x=2" in page and "RANDOM WEIGHTS" in page
    on_disk = pd.read_csv(reports / "f" / "index.csv")
    assert list(on_disk["status"]) == ["done", "failed", "done"]
    assert len(res.executed) == 3 and not res.ok

    done_before = {r: (reports / "f" / r / DONE_MARKER).stat().st_mtime_ns for r in ("x=1", "x=3")}
    (tmp_path / "flag.on").unlink()  # the cause is fixed: a rerun retries only the failed run
    again = run_sweep(p, reports=reports, workers=2, progress=False)
    assert [o.name for o in again.executed] == ["x=2"] and sorted(again.skipped) == ["x=1", "x=3"]
    assert again.ok and not failed.exists()
    assert {r: (reports / "f" / r / DONE_MARKER).stat().st_mtime_ns for r in done_before} == done_before


# ----------------------------------------------------------------------------- the 2x2 smoke sweep, killed
@pytest.mark.slow
def test_smoke_2x2_killed_half_way_then_resumed(tmp_path, capsys):
    """fsm2kit batch sweeps/smoke_2x2.yaml (random weights, bundled case): kill -9 after the first
    finished run, rerun: finished runs are not recomputed, the rest completes, nothing is lost.
    The sweep runs with ``precision: bf16`` (issue 26: the GPU's bfloat16 autocast path, on the CPU,
    through a sweep), and each run's record says so."""
    reports = tmp_path / "reports"
    sweep_dir = reports / "smoke_2x2"
    sweep_file = tmp_path / SMOKE_SWEEP.name  # the smoke sweep, its notebook by absolute path, under bf16
    text = SMOKE_SWEEP.read_text().replace("../notebooks/00_quickstart.ipynb", str(REPO / "notebooks" / "00_quickstart.ipynb"))
    assert str(REPO) in text
    sweep_file.write_text(text.rstrip("\n") + "\n  precision: bf16\n")
    env = {**os.environ, "TQDM_DISABLE": "1"}
    cmd = [sys.executable, "-m", "fsm2kit.cli.batch", str(sweep_file), "--reports", str(reports), "--workers", "2",
           "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 400
        while not list(sweep_dir.glob(f"*/{DONE_MARKER}")):
            assert proc.poll() is None, f"batch exited early: {proc.stderr.read().decode()[-3000:]}"
            assert time.time() < deadline, "no run finished in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the batch, its Dask workers (kernels exit with their parent)
        proc.wait()
        proc.stderr.close()
    time.sleep(1.5)  # let orphaned kernels notice their parent is gone
    finished = {p.parent.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sweep_dir.glob(f"*/{DONE_MARKER}")}
    assert 1 <= len(finished) < 4

    parser = argparse.ArgumentParser(prog="fsm2kit")
    register_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", str(sweep_file), "--reports", str(reports), "--workers", "2", "--no-progress"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert "ERROR" not in out + captured.err, "a successful batch prints no ERROR line"
    assert f"this call ran {4 - len(finished)}, skipped {len(finished)} finished" in out
    assert "random weights" in out

    for run, (mtime, content) in finished.items():  # not recomputed, not touched
        marker = sweep_dir / run / DONE_MARKER
        assert marker.stat().st_mtime_ns == mtime and marker.read_bytes() == content
    assert not list((sweep_dir / ".fsm2kit-work").rglob("*.tmp-*")) and not list(sweep_dir.glob("*.failed"))
    index = pd.read_csv(sweep_dir / "index.csv", keep_default_na=False)
    assert list(index["run"]) == ["S1SFQ-top", "S1SFQ-middle", "3SFQ-top", "3SFQ-middle"]
    assert (index["status"] == "done").all() and (index["weights"] == "random weights (seed 0)").all()
    for run in index["run"]:
        d = sweep_dir / run
        for f in ("00_quickstart.ipynb", "00_quickstart.html", "overlays.png", "slices.csv", "summary.csv", DONE_MARKER):
            assert (d / f).is_file(), f"{run}/{f} missing"
        nb = nbformat.read(d / "00_quickstart.ipynb", as_version=4)
        assert nb.metadata["papermill"]["parameters"]["output_dir"] == "."
        slices = pd.read_csv(d / "slices.csv")
        setting, order = run.split("-")
        assert set(slices["setting"]) == {setting} and set(slices["order"]) == {order} and len(slices) == 4
        record = json.loads((d / "provenance.json").read_text())
        assert [m["precision"] for m in record["models"]] == ["bf16"], record["models"]
    page = (sweep_dir / "index.html").read_text()
    assert page.count("00_quickstart.html") == 4 and "RANDOM WEIGHTS" in page
