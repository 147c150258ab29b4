"""A user's own ordering, support selector and memory policy through the three doors of the
library: ``run_experiment`` (registered in this process, as in a notebook cell), ``fsm2kit run
--plugins`` (another process) and a sweep (``plugins:`` in the sweep file, a papermill worker).

The strategies come from ``tests/plugins/fsm2kit_demo_strategies.py``: ordering ``bottom`` (the
query range from its last slice to its first), support selector ``first`` (the first organ slice
of each chunk) and memory policy ``cond_only`` (support memories only, no predictions).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest


REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "tests" / "plugins" / "fsm2kit_demo_strategies.py"
SMALL = ["--checkpoint", "random", "--image-size", "256", "--device", "cpu", "--no-progress"]


def _config(folder, **strategies):
    from fsm2kit.run import ExperimentConfig

    return ExperimentConfig(episodes=str(folder), dataset="CHAOST2", folds=[0], classes=["liver"],
                            settings=["S1SFQ"], checkpoint="random", image_size=256, device="cpu",
                            **strategies)


@pytest.mark.slow
def test_registered_in_this_process_run_through_run_experiment(alp_folder, tiny256):
    from fsm2kit.strategies import load_plugins
    from fsm2kit.run import load_config_episodes, run_experiment

    load_plugins([str(DEMO)])  # what a notebook cell defining the strategies does
    mine = _config(alp_folder, orders=["bottom"], support_selector="first", memory_policy="cond_only")
    assert mine.to_dict()["orders"] == ["bottom"] and mine.to_dict()["memory_policy"] == "cond_only"
    res = run_experiment(mine, models={"sam2-tiny": tiny256}, progress=False)
    s = res.slices
    assert set(s["order"]) == {"bottom"} and set(s["memory_policy"]) == {"cond_only"}
    assert set(s["support_selector"]) == {"first"}
    assert (s["n_memories"] == 1).all() and (s["n_pointers"] <= 1).all()  # the support's memory only
    rec = res.provenance().to_dict()
    assert rec["memory_policy"] == ["cond_only"] and rec["support_selector"] == "first"
    assert "bottom" in rec["orders"]
    # the selector chose the supports: the first liver slice of each chunk of the support scan
    from fsm2kit.protocol import fold_split

    (ep, *_) = load_config_episodes(mine, progress=False)
    support_id = fold_split("CHAOST2", 0).support_id
    lab = np.asarray(nib.load(alp_folder / f"label_{support_id}.nii.gz").dataobj)
    present = np.flatnonzero(lab.any(axis=(0, 1)))
    assert [s.z for s in ep.supports] == [int(present[(p * present.size) // 3]) for p in range(3)]
    # and SAM2's own strategies on the same episodes attend to more memories
    ref = run_experiment(_config(alp_folder), models={"sam2-tiny": tiny256}, progress=False).slices
    assert set(ref["memory_policy"]) == {"sam2"} and ref["n_memories"].max() > 1


def test_unknown_names_fail_in_one_line_before_a_model(alp_folder, tmp_path, capsys):
    from fsm2kit.cli import main

    base = ["run", "--episodes", str(alp_folder), "--dataset", "CHAOST2", "--fold", "0", "--label", "liver",
            "--setting", "S1SFQ", *SMALL, "--out", str(tmp_path / "o")]
    for flag, value, family in (("--memory-policy", "nope", "memory policy"), ("--order", "sideways", "ordering"),
                                ("--support-select", "best", "support selector")):
        assert main(base + [flag, value]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and family in err[0] and "registered" in err[0], err
    assert main(base + ["--plugins", "no_such_plugin_module"]) == 2
    assert "no_such_plugin_module" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cli_loads_them_with_plugins(alp_folder, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "fsm2kit.cli", "run", "--episodes", str(alp_folder), "--dataset", "CHAOST2",
           "--fold", "0", "--label", "liver", "--setting", "S1SFQ", "--order", "bottom", "--support-select", "first",
           "--memory-policy", "cond_only", "--plugins", str(DEMO), *SMALL, "--threads", "2", "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(REPO), TQDM_DISABLE="1")
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads((out / "provenance.json").read_text())
    assert rec["memory_policy"] == ["cond_only"] and rec["support_selector"] == "first"
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["order"]) == {"bottom"} and (slices["n_memories"] == 1).all()


@pytest.mark.slow
def test_a_sweep_worker_loads_them_from_the_sweep_file(alp_folder, tmp_path):
    from fsm2kit.batch.sweep_spec import DONE_MARKER
    from fsm2kit.batch.sweep_runs import execute_run
    from fsm2kit.batch import load_sweep

    sweep = tmp_path / "user.yaml"
    sweep.write_text(
        f"name: user_strategies\nnotebook: {REPO / 'notebooks' / '00_quickstart.ipynb'}\n"
        f"plugins: [{DEMO}]\ngrid:\n  memory_policy: [cond_only]\n"
        f"parameters:\n  episodes: {alp_folder}\n  dataset: CHAOST2\n  folds: [0]\n  classes: [liver]\n"
        "  order: bottom\n  support_selector: first\n  checkpoint: random\n  image_size: 256\n  device: cpu\n"
        "  max_slices: 3\n  n_panels: 1\nexport_html: false\n"
    )
    (spec,) = load_sweep(sweep).runs(tmp_path / "reports")
    out = execute_run(spec)
    assert out.status == "done", out.error
    slices = pd.read_csv(spec.folder / "slices.csv")
    assert set(slices["order"]) == {"bottom"} and set(slices["memory_policy"]) == {"cond_only"}
    assert set(slices["support_selector"]) == {"first"} and (slices["n_memories"] == 1).all()
    assert json.loads((spec.folder / DONE_MARKER).read_text())["plugins"] == [str(DEMO)]


def test_segment_takes_every_selector_through_the_registry():
    """fsm2kit segment keeps no list of its own: a user's selector serves it (one chunk), similar is
    chosen with the model, similar:query is refused with the reason."""
    from fsm2kit.segment.organs import parse_labels
    from fsm2kit.segment.own_scan import check_request
    from fsm2kit.strategies import load_plugins

    load_plugins([str(DEMO)])
    lab = np.zeros((10, 4, 4), np.uint8)
    lab[2:8, 1, 1] = 1
    organs = parse_labels("x=1")
    assert check_request(organs, lab, support_select="first") == {"x": [2, 4, 6]}  # its npart (3) slices
    assert check_request(organs, lab, support_select="first", npart=1) == {"x": [2]}
    assert check_request(organs, lab, support_select="middle") == {"x": [5]}
    assert check_request(organs, lab, support_select="similar") == {"x": None}  # chosen with the model
    with pytest.raises(ValueError, match="'similar:query' chooses a support per query slice.*use 'similar'"):
        check_request(organs, lab, support_select="similar:query")
