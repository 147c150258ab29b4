"""Issue 25, item 5: a light first run.

The runtime install (``pip install fsm2kit`` / ``scripts/install.sh``'s default, what ``make demo``
installs) carries what ``run``, ``segment``, ``inspect`` and ``prepare`` need; notebooks, sweeps,
browser tests and DICOM SEG are extras; sam2 goes in last with ``--no-deps`` (no red pip conflict
line); ``run``, ``segment`` and ``inspect`` show a progress bar in slices with slices/s.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None

from conftest import EXAMPLE_NPZ

ROOT = Path(__file__).resolve().parents[1]
#: What only the extras bring: the runtime commands must not import any of it.
EXTRA_MODULES = ("papermill", "nbformat", "nbconvert", "ipykernel", "jupyterlab", "ipywidgets", "anywidget",
                 "dask", "distributed", "playwright", "highdicom", "pytest_playwright")


def _project() -> dict:
    if tomllib is None:
        pytest.skip("tomllib needs Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _names(reqs) -> set[str]:
    return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}


def test_runtime_and_extras_split():
    p = _project()
    runtime, extras = _names(p["dependencies"]), p["optional-dependencies"]
    assert {"torch", "altair", "vl-convert-python", "matplotlib", "pydicom", "nibabel", "pandas"} <= runtime
    assert not runtime & {"jupyterlab", "papermill", "dask", "playwright", "highdicom", "pytest"}
    assert {"notebooks", "sweeps", "dicom", "browser", "dev"} <= set(extras)
    assert "jupyterlab" in _names(extras["notebooks"]) and "dask" in _names(extras["sweeps"])
    assert "highdicom" in _names(extras["dicom"]) and "playwright" in _names(extras["browser"])
    assert "fsm2kit[notebooks,sweeps,dicom,browser]" in extras["dev"]


def test_install_script_defaults_to_the_runtime_and_installs_sam2_last():
    text = (ROOT / "scripts" / "install.sh").read_text()
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    code = "\n".join(lines)
    assert 'extras="${2:-}"' in code  # default: no extras, the runtime
    i_fsm, i_sam = code.index('-e "$here${extras:+[$extras]}"'), code.index('--no-deps "sam2==1.1.0"')
    assert i_fsm < i_sam, "sam2 (no deps, so no conflict check) goes in after fsm2kit's dependencies"
    assert "--no-warn-conflicts" in code and "torch==2.13.0" in code
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: install$", make, re.M) and re.search(r"^test: install-dev$", make, re.M)
    assert "bash scripts/install.sh $(VENV) dev" in make
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _blocked_cli(args: list[str], tmp_path: Path, *, progress: bool) -> subprocess.CompletedProcess:
    """``fsm2kit ARGS`` in a fresh interpreter where the extras' modules cannot be imported."""
    code = (
        "import sys\n"
        f"BLOCK = {EXTRA_MODULES!r}\n"
        "class Hide:  # the module is not installed, as far as imports and find_spec can tell\n"
        "    def __init__(self, finder):\n"
        "        self.finder = finder\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCK:\n"
        "            return None\n"
        "        return self.finder.find_spec(name, path, target)\n"
        "    def __getattr__(self, a):\n"
        "        return getattr(self.finder, a)\n"
        "sys.meta_path[:] = [Hide(f) for f in sys.meta_path]\n"
        "from fsm2kit.cli import main\n"
        f"sys.exit(main({args!r}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    if not progress:
        env["TQDM_DISABLE"] = "1"
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_run_and_inspect_need_no_extra_and_show_slices_per_second(tmp_path):
    common = ["--checkpoint", "random", "--image-size", "128", "--device", "cpu"]
    r = _blocked_cli(["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--out", str(tmp_path / "run"),
                      *common], tmp_path, progress=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert re.search(r"run: 100%.*24/24.*slice/s", r.stderr), r.stderr[-2000:]  # one bar, in query slices
    r = _blocked_cli(["inspect", "--setting", "S1SFQ", "--max-slices", "2", "--panels", "1",
                      "--out", str(tmp_path / "insp"), *common], tmp_path, progress=True)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "slice/s" in r.stderr and (tmp_path / "insp" / "layers.png").is_file()
    r = _blocked_cli(["prepare", "--help"], tmp_path, progress=False)
    assert r.returncode == 0, r.stderr[-3000:]
