"""The notebooks: committed clean (kernel python3, a parameters cell, no outputs, no library code),
and each one executes through papermill with smoke parameters and writes its tables and figures."""

import ast
import json
import shutil
import subprocess
import os
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
EXPECTED = ["00_quickstart", "01_table1_settings", "02_support_memory", "03_inference_order", "04_figures",
            "06_strategies", "07_uncertainty"]
PNG = b"\x89PNG\r\n\x1a\n"

#: Smoke parameters: random tiny model at 256 px on 3 slices of the bundled CHAOS case.
SMOKE = dict(checkpoint="random", image_size=256, device="cpu", max_slices=3)
EXTRA = {
    "00_quickstart": dict(n_panels=2),
    "01_table1_settings": dict(postprocess_switches=["published", "lcc:on"], click_budget=1),
    "02_support_memory": dict(models=["sam2-tiny"]),
    "03_inference_order": dict(models=["sam2-tiny"]),
    "06_strategies": dict(orders=["middle", "from:0.25"], memory_policies=["sam2", "support-only", "recent:1"],
                          support_selectors=["protocol", "largest"]),
    "07_uncertainty": dict(ensemble={"order": ["top", "middle"]}, refinement="revsam2", n_panels=1),
}
SLICE_COLUMNS = {"dataset", "case_id", "label", "label_name", "model", "setting", "order", "z", "tp", "fp", "fn",
                 "dice", "weights", "checkpoint_sha256", "sam2_version", "fsm2kit_version", "protocol_variant"}


def _code(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


ALL = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.mark.parametrize("name", ALL)
def test_every_committed_notebook_is_clean(name):
    """Every notebook in notebooks/: kernel python3, one parameters cell, no stored outputs."""
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3", "papermill runs kernel 'python3'; a custom name fails in CI"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code", "one code cell tagged 'parameters'"
    for c in _code(nb):
        assert c.outputs == [] and c.execution_count is None, "strip outputs before committing"


@pytest.mark.parametrize("name", EXPECTED)
def test_experiment_notebooks_are_thin(name):
    path = NOTEBOOKS / f"{name}.ipynb"
    assert path.is_file(), f"{path} missing"
    nb = nbformat.read(path, as_version=4)
    for c in _code(nb):
        tree = ast.parse(c.source)  # thin: calls into the library, no functions or classes of its own
        assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.Lambda))]
    assert any("from fsm2kit" in c.source for c in _code(nb))
    import papermill as pm

    params = pm.inspect_notebook(str(path))
    assert "output_dir" in params and "checkpoint" in params and "image_size" in params
    assert set(SMOKE) <= set(params) and set(EXTRA.get(name, {})) <= set(params)


def test_python3_kernel_is_this_environment():
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    exe = spec.argv[0]
    ok = exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") or (
        Path(exe).resolve() == Path(sys.executable).resolve())
    assert ok, (
        f"the 'python3' kernelspec at {spec.resource_dir} runs {exe}, not this environment's Python "
        f"({sys.executable}); install one into the venv: {sys.executable} -m ipykernel install "
        "--sys-prefix --name python3"
    )


@pytest.fixture()
def kernel_env(monkeypatch):
    # one torch thread per kernel: on a busy 2-core machine two threads are many times slower
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("TQDM_DISABLE", "1")


def _execute(name, tmp_path, **extra):
    import papermill as pm

    out = tmp_path / "out"
    params = {**SMOKE, **EXTRA.get(name, {}), **extra, "output_dir": str(out)}
    executed = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(executed), parameters=params, kernel_name="python3",
                        cwd=str(tmp_path), progress_bar=False)
    nb = nbformat.read(executed, as_version=4)
    text = json.dumps([c.get("outputs", []) for c in nb.cells])
    assert "random weights" in text.lower(), "random-weights runs must say so in their outputs"
    return out, nb


def _check_result_files(out):
    slices = pd.read_csv(out / "slices.csv", keep_default_na=False, na_values=[""])
    assert SLICE_COLUMNS <= set(slices.columns)
    assert (slices["weights"] == "random weights (seed 0)").all()
    summary = pd.read_csv(out / "summary.csv")
    assert set(summary["metric"]) == {"pooled", "mean_per_volume"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["random_weights"] and prov["models"][0]["image_size"] == 256
    assert prov["kind"] == "experiment" and prov["weights"] == "random weights (seed 0)"
    assert set(prov["settings"]) == set(slices["setting"]) and set(prov["orders"]) == set(slices["order"])
    assert prov["support_selector"] == "protocol" and prov["memory_policy"] == ["sam2"]
    return slices


def _check_table(out, stem):
    """A saved paper-grade table: CSV, Markdown, LaTeX and sidecar, all saying random weights."""
    t = pd.read_csv(out / f"{stem}.csv", keep_default_na=False, na_values=[""])
    assert t["random_weights"].all() and set(t.loc[t["kind"] == "ours", "weights"]) == {"random weights (seed 0)"}
    md, tex = (out / f"{stem}.md").read_text(), (out / f"{stem}.tex").read_text()
    side = json.loads((out / f"{stem}.json").read_text())
    assert "RANDOM WEIGHTS" in md and "RANDOM WEIGHTS" in tex and side["random_weights"]
    assert "\\toprule" in tex and "as printed; the published code prints pooled Dice" in md
    for text in (md, tex, (out / f"{stem}.csv").read_text()):
        assert "fill from paper" not in text
    return t


def _png(path):
    assert path.is_file(), f"{path} not written"
    assert path.read_bytes()[:8] == PNG


def _has_image_output(nb, mime):
    return any(mime in o.get("data", {}) for c in _code(nb) for o in c.outputs)


@pytest.mark.slow
def test_00_quickstart(tmp_path, kernel_env):
    # with a correction prompt file, as a sweep replays a widget session (a round re-propagates)
    prompts = [[{"z": 12, "points": [[120, 130, 1]]}]]
    (tmp_path / "fix.json").write_text(json.dumps(prompts))
    out, nb = _execute("00_quickstart", tmp_path, prompts=str(tmp_path / "fix.json"))
    slices = _check_result_files(out)
    assert len(slices) == 3 and set(slices["setting"]) == {"S1SFQ"} and set(slices["order"]) == {"middle"}
    (kept,) = json.loads((out / "provenance.json").read_text())["prompts"]
    assert kept["rounds"] == prompts and kept["file"] == str(tmp_path / "fix.json")
    _png(out / "overlays.png")
    _check_presets(out, ["overlays"])  # screen + paper (183 mm figure)
    assert _has_image_output(nb, "image/png")
    # every cell but the parameters (and papermill's injected ones) shows something: no empty cells
    silent = [c.source[:60] for c in nb.cells if c.cell_type == "code" and not c.outputs
              and not {"parameters", "injected-parameters"} & set(c.metadata.get("tags", []))]
    assert not silent, f"code cells without output: {silent}"


@pytest.mark.slow
def test_01_table1_settings(tmp_path, kernel_env):
    out, nb = _execute("01_table1_settings", tmp_path)
    slices = _check_result_files(out)
    assert sorted(set(slices["setting"])) == ["1S1Q", "3S1Q", "3SFQ", "S1SFQ"]
    for metric in ("mean_per_volume", "pooled"):
        t = _check_table(out, f"table1_{metric}")
        assert set(t["organ"]) == {"LIVER", "Mean"}  # organs, Mean last
        lines = list(dict.fromkeys(zip(t["row"], t["kind"])))
        assert [r for r, _ in lines[:3]] == ["Q-Net [IntelliSys' 23]", "RPT [MICCAI' 23]", "GMRD [TMI' 24]"]
        assert lines[3:] == [("sam2-tiny 1S1Q", k) for k in ("published", "ours", "difference")] + [
            ("sam2-tiny 3S1Q", "ours")] + [("sam2-tiny S1SFQ-middle", k) for k in ("published", "ours", "difference")] + [
            ("sam2-tiny 3SFQ-middle", "ours")]  # the paper's order; the paper has no 3S1Q/3SFQ in Table 1
    _png(out / "dice_bars.png")
    _check_presets(out, ["dice_bars"], width_mm=None)  # screen (144 dpi) + paper (300 dpi, 89 or 183 mm)
    assert _has_image_output(nb, "image/svg+xml")  # altair's offline svg renderer
    # image size as an axis: the smoke size (256) and half of it, on S1SFQ
    sizes = pd.read_csv(out / "image_sizes.csv", comment="#")
    if "column" in sizes.columns:  # the one table writer's tidy CSV: one row per (row, column)
        keys = [c for c in sizes.columns if c not in ("column", "value")]
        sizes = sizes.fillna("").pivot_table(index=keys, columns="column", values="value", aggfunc="first",
                                             sort=False).reset_index()
        for c in sizes.columns:
            try:
                sizes[c] = pd.to_numeric(sizes[c])
            except (ValueError, TypeError):
                pass
    assert list(sizes["image_size"]) == [256, 128] and set(sizes["setting"]) == {"S1SFQ"}
    assert sizes["s_per_slice"].gt(0).all() and sizes["agreement"].iloc[0] == 1.0 and sizes["agreement"].between(0, 1).all()
    assert "RANDOM WEIGHTS" in (out / "image_sizes.csv").read_text().splitlines()[0] or \
        "random weights" in (out / "image_sizes.json").read_text().lower()  # tidy CSV: the note is in the sidecar
    pp = pd.read_csv(out / "postprocess_effects.csv", comment="#")  # tidy: one row per (row, column)
    pp = pp.pivot_table(index="row0", columns="column", values="value", aggfunc="first")
    pp["paper_percent"] = pd.to_numeric(pp["paper_percent"], errors="coerce")
    assert list(dict.fromkeys(pp["postprocess"])) == ["holes:8,stability:on,lcc:off,union:off",
                                                      "holes:8,stability:on,lcc:on,union:off"]
    assert pp["paper_percent"].notna().any()  # S1SFQ-middle liver of CHAOS-MRI is printed in Table 1
    clicks = pd.read_csv(out / "clicks" / "clicks.csv")
    assert set(clicks["setting"]) == {"S1SFQ", "3SFQ"} and clicks["click"].max() <= 1
    assert sorted(p.name for p in (out / "clicks").glob("clicks*.json")) == [  # replayable, one per run
        "clicks_sam2-tiny_3SFQ-middle.json", "clicks_sam2-tiny_S1SFQ-middle.json"]
    assert (out / "clicks.png").is_file()


@pytest.mark.slow
def test_02_support_memory(tmp_path, kernel_env):
    out, _ = _execute("02_support_memory", tmp_path)
    slices = _check_result_files(out)
    assert sorted(set(slices["setting"])) == ["1S1Q", "3S1Q"]
    t = _check_table(out, "table2_mean_per_volume")
    assert list(dict.fromkeys(zip(t["row"], t["kind"]))) == [
        (r, k) for r in ("sam2-tiny 1S1Q", "sam2-tiny 3S1Q") for k in ("published", "ours", "difference")]
    _png(out / "dice_bars.png")
    _check_presets(out, ["dice_bars"], width_mm=None)


@pytest.mark.slow
def test_03_inference_order(tmp_path, kernel_env):
    out, _ = _execute("03_inference_order", tmp_path)
    slices = _check_result_files(out)
    assert set(zip(slices["setting"], slices["order"])) == {(s, o) for s in ("S1SFQ", "3SFQ") for o in ("top", "middle")}
    for s in ("S1SFQ", "3SFQ"):
        t = _check_table(out, f"table_{s}_mean_per_volume")
        assert list(dict.fromkeys(zip(t["row"], t["kind"]))) == [
            (r, k) for r in ("sam2-tiny top", "sam2-tiny middle") for k in ("published", "ours", "difference")]
    _png(out / "slice_dice_curves.png")
    _check_presets(out, ["slice_dice_curves", "relative_position"], width_mm=None)  # screen + paper
    _png(out / "relative_position.png")
    assert (out / "slice_dice_curves.svg").read_text().lstrip().startswith("<svg")


@pytest.mark.slow
def test_04_figures(tmp_path, kernel_env):
    out, nb = _execute("04_figures", tmp_path)
    _check_result_files(out)
    _png(out / "panels.png")
    for stem in ("dice_bars", "slice_dice_curves"):
        _png(out / f"{stem}.png")
        assert (out / f"{stem}.svg").is_file()
        page = (out / f"{stem}.html").read_text()
        assert "cdn.jsdelivr.net" not in page and os.path.getsize(out / f"{stem}.html") > 100_000  # inlined
    assert _has_image_output(nb, "image/png") and _has_image_output(nb, "image/svg+xml")
    # both presets: screen (144 dpi) and paper (300 dpi PNG + PDF + SVG at 183 mm)
    _check_presets(out, ["panels", "dice_bars", "slice_dice_curves"])


def _check_presets(out, stems, width_mm=183.0):
    """Screen PNG at 144 dpi; paper PNG/PDF/SVG at 300 dpi and ``width_mm`` (None: one or two columns,
    as a chart that does not fit a single column at 7 pt is saved at the double width)."""
    from test_export import check_paper_files

    from PIL import Image

    for stem in stems:
        _png(out / f"{stem}.png")
        dpi = Image.open(out / f"{stem}.png").info["dpi"]
        assert round(dpi[0]) == 144, (stem, dpi)
        w = width_mm
        if w is None:
            paper = Image.open(out / f"{stem}_paper.png")
            w = 89.0 if paper.size[0] / paper.info["dpi"][0] * 25.4 < 120 else 183.0
        check_paper_files(out / f"{stem}_paper", w)


@pytest.mark.slow
def test_05_memory_inspector(tmp_path, kernel_env):
    """Notebook 05 through papermill: figures in both presets, the widget's static view in the HTML export."""
    from nbconvert import HTMLExporter

    out, nb = _execute("05_memory_inspector", tmp_path)
    _check_presets(out, ["mass", "share", "layers"])
    assert set(pd.read_csv(out / "masses.csv")["weights"]) == {"random weights (seed 0)"}
    assert [p for p in out.glob("panels_*.png") if not p.stem.endswith("_paper")]  # the screen panels too
    panels = sorted(out.glob("panels_*_paper.png"))
    assert len(panels) == 3  # first, middle and last slice of the processing order
    from test_export import check_paper_files

    check_paper_files(panels[0].with_suffix(""), 183.0)
    for p in panels:  # vector figures: editable text, no Type 3 fonts
        assert p.with_suffix(".svg").read_text().count("<text") >= 10
        if shutil.which("pdffonts"):
            fonts = subprocess.run(["pdffonts", str(p.with_suffix(".pdf"))], capture_output=True, text=True).stdout
            assert "Type 3" not in fonts and "TrueType" in fonts
    html, _ = HTMLExporter().from_notebook_node(nb)
    assert "fsm2-static" in html and "static rendering of the widget" in html
    assert "pointers" in html  # the one naming scheme (groups in the shares table)
    # correct and re-propagate: the example round replayed, its static view in the export
    assert "fsm2-static-areas" in html and "1 round(s) done" in html


@pytest.mark.slow
def test_06_strategies(tmp_path, kernel_env, alp_folder):
    """Memory policy x order x selector at smoke size on a synthetic SSL-ALPNet folder (the bundled npz
    case fixes its supports): the table has one row per combination and says its Dice variant; the
    memories chart and the attention comparison are written in both presets."""
    out, nb = _execute("06_strategies", tmp_path, episodes=str(alp_folder), folds=[0], classes=["liver"])
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["memory_policy"]) == {"sam2", "support-only", "recent:1"}
    assert set(slices["support_selector"]) == {"protocol", "largest"}
    assert set(slices["order"]) == {"middle", "from:0.25"}
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["random_weights"] and set(prov["memory_policy"]) == {"sam2", "support-only", "recent:1"}
    # the strategies table through the one table writer: tidy CSV, Markdown, LaTeX and a sidecar
    side = json.loads((out / "strategies_pooled.json").read_text())
    assert side["caption"].startswith("pooled Dice") and "RANDOM WEIGHTS" in side["caption"] and side["random_weights"]
    t = pd.read_csv(out / "strategies_pooled.csv")
    assert list(t.columns[:3]) == ["memory_policy", "support_selector", "order"]
    assert len(t[["memory_policy", "support_selector", "order"]].drop_duplicates()) == 3 * 2 * 2
    tex = (out / "strategies_pooled.tex").read_text()
    assert "\\toprule" in tex and "\\caption{pooled Dice" in tex and tex.isascii()
    assert "RANDOM WEIGHTS" in (out / "strategies_pooled.md").read_text()
    # support-only attends to the supports alone; sam2 to more on later slices
    n = slices.groupby("memory_policy")["n_memories"].max()
    assert n["support-only"] < n["sam2"] and n["recent:1"] <= n["support-only"] + 1
    _check_presets(out, ["dice_vs_memories", "attention_by_policy"], width_mm=None)
    assert _has_image_output(nb, "image/svg+xml")


@pytest.mark.slow
def test_07_uncertainty(tmp_path, kernel_env):
    """Plain, a 2-member ensemble and a second pass at smoke size on the bundled case: each part's run
    folder (the ensemble's with uncertainty.npz and fused + member rows), the Dice table naming its
    variant, the uncertainty panels (PNG) and both charts."""
    out, nb = _execute("07_uncertainty", tmp_path)
    for part in ("plain", "ensemble", "refined"):
        assert (out / part / "provenance.json").is_file()
    assert (out / "ensemble" / "uncertainty.npz").is_file()
    s = pd.read_csv(out / "ensemble" / "slices.csv", keep_default_na=False)
    assert set(s["member"]) == {"fused", "order=top", "order=middle"}
    r = pd.read_csv(out / "refined" / "slices.csv")
    assert set(r["refinement"]) == {"revsam2:top=3"} and "promoted" in r.columns
    side = json.loads((out / "uncertainty_pooled.json").read_text())  # the one table writer's sidecar
    assert side["caption"].startswith("pooled Dice") and "RANDOM WEIGHTS" in side["caption"] and side["random_weights"]
    t = pd.read_csv(out / "uncertainty_pooled.csv")
    assert {"plain", "ensemble: fused", "refined"} <= set(t["run"])
    _png(out / "uncertainty_panels.png")
    for stem in ("error_vs_disagreement", "refinement_changes"):
        assert (out / f"{stem}.svg").is_file()
    assert _has_image_output(nb, "image/svg+xml")
