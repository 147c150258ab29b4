"""The paper's numbers, paper-grade tables (CSV, Markdown, LaTeX), Dice charts and the sweep index."""

import json
import re
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsm2kit.tables.paper import PAPER_CSV, PAPER_DICE_VARIANT, paper_numbers, published_dice
from fsm2kit.viz.dice_charts import (dice_bars, relative_position_chart, relative_position_dice,
                                           runs_dice_chart, slice_dice_curves)
from fsm2kit.tables.dice_table import dice_table, results_table, save_table
from fsm2kit.batch.sweep_index import collect_index, write_index
from fsm2kit.batch.sweep_spec import DONE_MARKER, load_sweep
from fsm2kit.viz.style import CATEGORY_COLORS

from helpers import write_notebook

REPO = Path(__file__).resolve().parents[1]
RANDOM = "random weights (seed 0)"


# ----------------------------------------------------------------------------- the paper's numbers
def test_paper_csv_is_package_data_and_a_copy_of_the_shared_file():
    bundled = REPO / "fsm2kit" / PAPER_CSV
    shared = REPO.parent / "shared" / "paper" / "fs_medsam2_tables.csv"
    if shared.is_file():
        assert bundled.read_bytes() == shared.read_bytes()
    conf = tomllib.loads((REPO / "pyproject.toml").read_text())
    globs = conf["tool"]["setuptools"]["package-data"]["fsm2kit"]
    assert any(bundled.relative_to(REPO / "fsm2kit").match(g) for g in globs)  # installed with the package
    assert "arXiv:2409.04298" in (bundled.parent / "README.md").read_text()
    df = paper_numbers()
    assert len(df) == 290 and set(df["table"]) == {1, 2, 3, 4}
    assert set(df["dataset_key"]) == {"SABS", "CHAOST2"} and df["organ_key"].notna().all()


def test_published_dice_equals_the_csv_cells():
    raw = pd.read_csv(REPO / "fsm2kit" / PAPER_CSV)
    cell = raw[(raw["table"] == 3) & (raw["dataset"] == "CHAOS-MRI") & (raw["model"] == "sam2-large")
               & (raw["order"] == "top") & (raw["organ"] == "liver")]["dice_percent"].item()
    got = published_dice(dataset="CHAOST2", model="sam2-large", setting="S1SFQ", order="top", table=3)
    assert got["LIVER"] == cell and set(got) == {"LK", "RK", "SPLEEN", "LIVER", "Mean"}
    assert published_dice(dataset="CHAOS-MRI", model="sam2-large", setting="S1SFQ", order="top") == got
    assert published_dice(dataset="CHAOST2", model="sam2.1-tiny", setting="S1SFQ", order="top") == {}


# ----------------------------------------------------------------------------- tables
def _summary(organs=("LIVER",), weights=RANDOM):
    rows = []
    runs = (("S1SFQ", "middle", 0.70, 0.10), ("1S1Q", "n/a", 0.50, 0.20), ("3SFQ", "middle", 0.60, 0.05))
    for setting, order, d, sd in runs:
        for k, organ in enumerate(organs):
            for metric in ("mean_per_volume", "pooled"):
                rows.append(dict(dataset="CHAOST2", model="sam2-tiny", image_size=256, setting=setting, order=order,
                                 label=k, label_name=organ, metric=metric, dice=d + k / 100,
                                 std_per_volume=sd if metric == "mean_per_volume" else np.nan, n_volumes=3,
                                 n_slices=12, weights=weights, protocol_variant="ALP"))
    return pd.DataFrame(rows)


def _paper(method, organ, table=1, setting=None, order=None):
    p = paper_numbers()
    sel = p[(p["table"] == table) & (p["dataset_key"] == "CHAOST2") & (p["organ_key"] == organ)
            & p["method"].str.startswith(method)]
    if setting:
        sel = sel[(sel["setting"] == setting) & (sel["order_key"] == (order or "n/a"))]
    return float(sel["dice_percent"].iloc[0])


def test_reproduction_table_published_ours_difference():
    t = dice_table(_summary(), paper_table=1)
    lines = t.lines()
    assert [r for r, k in lines[:3]] == ["Q-Net [IntelliSys' 23]", "RPT [MICCAI' 23]", "GMRD [TMI' 24]"]
    # runs in the paper's order (1S1Q before S1SFQ before 3SFQ); the paper has no 3SFQ in Table 1
    assert lines[3:] == [("sam2-tiny 1S1Q", "published"), ("sam2-tiny 1S1Q", "ours"), ("sam2-tiny 1S1Q", "difference"),
                         ("sam2-tiny S1SFQ-middle", "published"), ("sam2-tiny S1SFQ-middle", "ours"),
                         ("sam2-tiny S1SFQ-middle", "difference"), ("sam2-tiny 3SFQ-middle", "ours")]
    c = t.cells.set_index(["row", "kind", "organ"])
    pub = _paper("FS-MedSAM2", "LIVER", setting="S1SFQ", order="middle")
    assert c.loc[("sam2-tiny S1SFQ-middle", "published", "LIVER"), "dice_percent"] == pub
    assert c.loc[("sam2-tiny S1SFQ-middle", "ours", "LIVER"), "dice_percent"] == pytest.approx(70.0)
    assert c.loc[("sam2-tiny S1SFQ-middle", "difference", "LIVER"), "dice_percent"] == pytest.approx(70.0 - pub)
    assert c.loc[("GMRD [TMI' 24]", "published", "Mean"), "dice_percent"] == _paper("GMRD", "Mean")
    # ours covers one organ of four: no difference of the Means, and the caption says so
    assert np.isnan(c.loc[("sam2-tiny 1S1Q", "difference", "Mean"), "dice_percent"])
    assert "Mean: over the organs run here" in t.caption
    assert c.loc[("sam2-tiny 1S1Q", "published", "LIVER"), "dice_variant"] == PAPER_DICE_VARIANT
    assert c.loc[("sam2-tiny 1S1Q", "ours", "LIVER"), "dice_variant"] == "mean of per-volume 3D Dice"
    for word in ("CHAOS-MRI (CHAOST2)", "protocol variant ALP", "mean of per-volume 3D Dice", "sam2-tiny", RANDOM,
                 "as printed; the published code prints pooled Dice", "RANDOM WEIGHTS"):
        assert word in t.caption, word
    text = t.to_markdown() + t.to_latex() + t.to_csv_frame().to_csv()
    assert "fill from paper" not in text and "quoted" not in text


def test_full_organs_mean_difference_and_pooled_has_no_std():
    t = dice_table(_summary(organs=("LK", "RK", "SPLEEN", "LIVER")), paper_table=1, metric="pooled")
    c = t.cells.set_index(["row", "kind", "organ"])
    ours_mean = np.mean([50, 51, 52, 53])
    pub = _paper("FS-MedSAM2", "Mean", setting="1S1Q")
    assert c.loc[("sam2-tiny 1S1Q", "difference", "Mean"), "dice_percent"] == pytest.approx(ours_mean - pub)
    assert c["std_percent"].isna().all() and "pooled Dice" in t.caption
    assert t.organs("CHAOST2") == ["SPLEEN", "LIVER", "LK", "RK", "Mean"]  # as the paper prints them


def test_markdown_and_latex_by_hand():
    s = _summary()
    s = s[s["setting"].isin(["S1SFQ", "3SFQ"])]
    t = dice_table(s)  # ours only: 70 +- 10 (best, bold), 60 +- 5 (second, underlined); population std of 3
    # volumes -> the sample std (ddof=1): 10 * sqrt(3/2) = 12.25, 5 * sqrt(3/2) = 6.12
    md = t.to_markdown().splitlines()
    assert md[0].startswith("> **RANDOM WEIGHTS")
    assert md[2].startswith("**Dice.** Dice (%) on CHAOS-MRI (CHAOST2)")
    assert md[4:] == [
        "| method / run | source | Liver | Mean | n |",
        "| :-- | :-- | --: | --: | --: |",
        "| sam2-tiny S1SFQ-middle | ours | **70.00 ± 12.25** | **70.00** | 3 |",
        "| sam2-tiny 3SFQ-middle | ours | <u>60.00 ± 6.12</u> | <u>60.00</u> | 3 |",
    ]
    tex = t.to_latex()
    assert tex.startswith("% generated by fsm2kit") and "% RANDOM WEIGHTS" in tex
    for line in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{llrrr}",
                 "  &   & \\multicolumn{3}{c}{CHAOS-MRI (CHAOST2)} \\\\", "\\cmidrule(lr){3-5}",
                 "Method / run & Source & Liver & Mean & $n$ \\\\",
                 "sam2-tiny S1SFQ-middle & ours & \\textbf{70.00 $\\pm$ 12.25} & \\textbf{70.00} & 3 \\\\",
                 "sam2-tiny 3SFQ-middle & ours & \\underline{60.00 $\\pm$ 6.12} & \\underline{60.00} & 3 \\\\"):
        assert line in tex.splitlines(), line
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert "Dice (\\%)" in caption and "RANDOM WEIGHTS" in caption and "$\\pm$ sample std over query volumes" in caption
    html = t.to_html()
    assert "<b>70.00 ± 12.25</b>" in html and "<u>60.00 ± 6.12</u>" in html and "<caption" in html


def test_save_table_writes_csv_md_tex_and_a_sidecar(tmp_path):
    t = dice_table(_summary(), paper_table=1)
    written = save_table(t, tmp_path / "t1.csv", provenance={"weights": RANDOM})
    assert sorted(written) == ["csv", "json", "md", "tex"] and written["csv"].name == "t1.csv"
    back = pd.read_csv(written["csv"], keep_default_na=False, na_values=[""])
    assert {"row", "kind", "dataset", "organ", "dice_percent", "std_percent", "n_volumes", "rank", "dice_variant",
            "weights", "random_weights"} <= set(back.columns)
    assert back["random_weights"].all() and set(back.loc[back["kind"] == "ours", "weights"]) == {RANDOM}
    side = json.loads(written["json"].read_text())
    assert side["random_weights"] and side["caption"] == t.caption and side["provenance"] == {"weights": RANDOM}
    assert side["files"] == ["t1.csv", "t1.md", "t1.tex"]
    assert not list(tmp_path.glob(".*"))
    with pytest.raises(ValueError, match="unknown"):
        save_table(t, tmp_path / "x", formats=["xlsx"])
    sha = dice_table(_summary(weights="sha256:" + "ab" * 32))
    assert not sha.random_weights and "RANDOM" not in sha.to_markdown() and not sha.to_csv_frame()["random_weights"].any()


def test_one_builder_orders_both_tables_and_one_writer_saves_a_results_table(tmp_path):
    s = _summary(organs=("SPLEEN", "BLADDER", "LK"))
    wide = results_table(s, metric="pooled")
    t = dice_table(s, metric="pooled")
    # the same organ columns (ORGAN_ORDER, then others sorted, Mean last) and the paper's row order
    assert list(wide["CHAOST2"].columns) == ["SPLEEN", "LK", "BLADDER", "Mean"] == t.organs("CHAOST2")
    assert [k[1] for k in wide.index] == ["1S1Q", "S1SFQ", "3SFQ"]
    assert [r for r, kind in t.lines()] == ["sam2-tiny 1S1Q", "sam2-tiny S1SFQ-middle", "sam2-tiny 3SFQ-middle"]
    written = save_table((wide * 100).round(1), tmp_path / "strategies.csv", note="pooled Dice; weights: x")
    assert list(written) == ["csv", "md", "tex", "json"] and written["csv"].name == "strategies.csv"
    back = pd.read_csv(written["csv"])  # tidy: one header row, no comment line
    assert list(back.columns) == ["model", "setting", "order", "dataset", "column", "value"]
    cell = back[(back["setting"] == "S1SFQ") & (back["column"] == "SPLEEN")]["value"].item()
    assert cell == 70.0 and not list(tmp_path.glob(".*"))
    assert json.loads(written["json"].read_text())["caption"] == "pooled Dice; weights: x"
    assert "\\caption{pooled Dice; weights: x}" in written["tex"].read_text()
    with pytest.raises(ValueError, match="unknown"):
        save_table(wide, tmp_path / "x", formats=["xlsx"])


def test_table_errors():
    with pytest.raises(ValueError, match="paper_table: expected 1, 2, 3 or 4"):
        dice_table(_summary(), paper_table=5)
    with pytest.raises(ValueError, match="lacks columns \\['std_per_volume'\\]"):
        dice_table(_summary().drop(columns="std_per_volume"))


# ----------------------------------------------------------------------------- charts
def _walk(spec):
    """Every dict in a chart spec."""
    if isinstance(spec, dict):
        yield spec
        for v in spec.values():
            yield from _walk(v)
    elif isinstance(spec, list):
        for v in spec:
            yield from _walk(v)


def _check_titles(spec):
    raw = {"label_name", "mean_per_volume", "dice_pct", "dice_mean", "dice_lo", "n_volumes", "case_id"}
    for d in _walk(spec):
        if "field" in d and d.get("title") is not None:
            assert d["title"] not in raw and "_" not in d["title"], d["title"]
        if "field" in d and any(k in d for k in ("sort",)):
            assert d.get("title") is not None or d["field"] in ("run",), d  # xOffset has no title
    title = spec["title"]["text"]
    assert "_" not in title, title


def test_chart_specs_have_human_titles_and_paper_sort_orders():
    rows = []
    for model in ("sam2-large", "sam2-tiny", "sam2-base_plus"):
        for setting, order in (("3SFQ", "middle"), ("S1SFQ", "middle"), ("3S1Q", "n/a"), ("1S1Q", "n/a"),
                               ("S1SFQ", "top")):
            rows.append(dict(dataset="CHAOST2", model=model, setting=setting, order=order, label_name="LIVER",
                             metric="mean_per_volume", dice=0.5, std_per_volume=0.1, n_volumes=2, weights=RANDOM))
    spec = dice_bars(pd.DataFrame(rows)).to_dict()
    _check_titles(spec)
    bars = spec["spec"]["layer"][0]["encoding"]
    assert bars["color"]["sort"] == ["1S1Q", "3S1Q", "S1SFQ-top", "S1SFQ-middle", "3SFQ-middle"]
    assert bars["color"]["title"] == "Setting" and bars["x"]["title"] == "Organ"
    assert spec["facet"]["column"]["sort"] == ["sam2-tiny", "sam2-base_plus", "sam2-large"]
    assert spec["facet"]["column"]["title"] == "Model"
    errs = spec["spec"]["layer"][1]
    assert errs["mark"]["type"] == "rule" and errs["encoding"]["y"]["field"] == "lo"  # error bars
    assert "± std over volumes" in spec["title"]["text"] and "RANDOM WEIGHTS" in spec["title"]["subtitle"]

    sl = pd.DataFrame([dict(case_id="1", label_name="LIVER", setting=s, order=o, model="sam2-tiny", z=z, dice=0.5,
                            gt_px=1, weights=RANDOM)
                       for s in ("3SFQ", "S1SFQ") for o in ("middle", "top") for z in (1, 2)])
    curves = slice_dice_curves(sl).to_dict()
    _check_titles(curves)
    assert curves["spec"]["encoding"]["color"]["sort"] == ["top", "middle"]
    assert curves["facet"]["row"]["sort"] == ["S1SFQ", "3SFQ"] and curves["facet"]["row"]["title"] == "Setting"


def test_relative_position_on_a_tiny_synthetic_case():
    # two volumes of one organ: volume a spans z 10..14, volume b z 0..2; Dice rises along the organ
    rows = []
    for case, zs in (("a", range(10, 15)), ("b", range(0, 3))):
        for i, z in enumerate(zs):
            rel = i / (len(zs) - 1)
            rows.append(dict(case_id=case, label_name="LIVER", setting="S1SFQ", order="top", model="sam2-tiny", z=z,
                             dice=rel if case == "a" else rel / 2, gt_px=10, weights=RANDOM))
    rows.append(dict(rows[0], z=20, dice=np.nan, gt_px=0))  # no organ there: left out
    sl = pd.DataFrame(rows)
    d = relative_position_dice(sl, by=("order",), bins=2)
    assert list(d["position"]) == [0.25, 0.75] and list(d["n_volumes"]) == [2, 2]
    # bin 0: a (0, .25) -> 12.5 %, b (0) -> 0 %; bin 1: a (.5, .75, 1) -> 75 %, b (.25, .5) -> 37.5 %
    assert d["dice_mean"].tolist() == pytest.approx([6.25, 56.25])
    from scipy import stats

    half = stats.t.ppf(0.975, 1) * np.std([12.5, 0.0], ddof=1) / np.sqrt(2)
    assert d["dice_lo"].iloc[0] == pytest.approx(max(6.25 - half, 0)) and d["dice_hi"].iloc[0] == pytest.approx(
        min(6.25 + half, 100))
    spec = relative_position_chart(sl, bins=2).to_dict()
    _check_titles(spec)
    band, line = spec["spec"]["layer"]
    assert band["mark"]["type"] == "area" and band["encoding"]["y2"]["field"] == "dice_hi"
    assert line["encoding"]["y"]["field"] == "dice_mean"
    assert spec["spec"]["layer"][0]["encoding"]["x"]["title"].startswith("Relative position in the organ")
    assert "95 % band" in spec["title"]["text"]
    with pytest.raises(ValueError, match="missing \\['gt_px'\\]"):
        relative_position_dice(sl.drop(columns="gt_px"))


# ----------------------------------------------------------------------------- sweep index
def _fake_sweep(tmp_path):
    """A sweep of three runs, two finished with a summary.csv of LIVER and RK (hand-made numbers)."""
    write_notebook(tmp_path / "n.ipynb", 'x = 1\noutput_dir = "."')
    (tmp_path / "s.yaml").write_text("name: s\nnotebook: n.ipynb\ngrid: {x: [1, 2, 3]}\n")
    sweep = load_sweep(tmp_path / "s.yaml")
    reports = tmp_path / "reports"
    for x in (1, 2):  # two finished runs, the third pending
        run = reports / "s" / f"x={x}"
        run.mkdir(parents=True)
        _summary(organs=("LIVER", "RK")).assign(dice=lambda d: d["dice"] / x).to_csv(run / "summary.csv", index=False)
        (run / DONE_MARKER).write_text(json.dumps({"status": "done", "seconds": 1.0, "executed_notebook": "n.ipynb",
                                                   "summary": {"weights": RANDOM}, "files": ["summary.csv"]}))
    return sweep, reports


def test_sweep_index_per_organ_sortable_filterable(tmp_path):
    sweep, reports = _fake_sweep(tmp_path)
    index = write_index(sweep, reports).set_index("run")
    organ_cols = [c for c in index.columns if c.startswith("dice_mean_per_volume_")]
    assert organ_cols == ["dice_mean_per_volume_LIVER", "dice_mean_per_volume_RK"]  # the paper's organ order
    assert index.loc["x=1", "dice_mean_per_volume_LIVER"] == pytest.approx(0.6)  # mean of 0.5, 0.7, 0.6
    assert index.loc["x=2", "dice_pooled_RK"] == pytest.approx((0.51 + 0.71 + 0.61) / 3 / 2)
    assert np.isnan(index.loc["x=3", "dice_mean_per_volume_LIVER"])
    on_disk = pd.read_csv(reports / "s" / "index.csv")
    assert "dice_mean_per_volume_LIVER" in on_disk.columns
    page = (reports / "s" / "index.html").read_text()
    assert "<script>" in page and "addEventListener('click'" in page and "type='search'" in page
    assert "LIVER Dice % (mean per volume)" in page and "data-v='60'" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no CDN
    assert "id='runs-chart'" in page and "Dice per organ, by run" in page  # drawn by the page's script
    data = json.loads(re.search(r"id='runs-chart-data'>(.*?)</script>", page).group(1))
    assert data["organs"] == ["LIVER", "RK"] and data["values"]["x=1"]["LIVER"] == pytest.approx(60.0)
    assert set(data["colors"].values()) <= set(CATEGORY_COLORS)
    assert "RANDOM WEIGHTS" in page
    assert list(collect_index(sweep, reports)["run"]) == ["x=1", "x=2", "x=3"]
    spec = runs_dice_chart(pd.DataFrame({"run": ["b", "a"], "organ": ["LIVER", "LK"], "dice": [0.5, 0.6]})).to_dict()
    assert spec["encoding"]["xOffset"]["sort"] == ["b", "a"] and spec["encoding"]["x"]["sort"] == ["Liver", "LK"]  # as the tables print them


@pytest.mark.browser
def test_sweep_index_sorts_and_filters_in_a_browser(tmp_path):
    """The inline script, driven in headless Chromium (skipped where there is none)."""
    import os

    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("no browser at /usr/bin/chromium (scripts/install_browser.sh)")
    sync_api = pytest.importorskip("playwright.sync_api")
    sweep, reports = _fake_sweep(tmp_path)
    write_index(sweep, reports)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            page.goto((reports / "s" / "index.html").as_uri())
            shown = "rs => rs.filter(r => r.style.display !== 'none').map(r => r.cells[0].textContent)"
            heads = page.eval_on_selector_all("#runs thead tr:first-child th", "hs => hs.map(h => h.textContent)")
            col = heads.index("LIVER Dice % (mean per volume)")
            page.click(f"#runs thead tr:first-child th:nth-child({col + 1})")  # ascending; empty cells last
            assert page.eval_on_selector_all("#runs tbody tr", shown) == ["x=2", "x=1", "x=3"]
            page.click(f"#runs thead tr:first-child th:nth-child({col + 1})")  # descending
            assert page.eval_on_selector_all("#runs tbody tr", shown)[:2] == ["x=1", "x=2"]
            bars = "rs => rs.map(r => r.querySelector('title').textContent)"
            titles = page.eval_on_selector_all("#runs-chart rect.bar", bars)
            assert [t.split(",")[0] for t in titles[:2]] == ["x=1", "x=2"]  # the chart follows the sort
            page.fill(f"#runs thead input[data-col='{col}']", ">50")
            assert page.eval_on_selector_all("#runs tbody tr", shown) == ["x=1"]
            titles = page.eval_on_selector_all("#runs-chart rect.bar", bars)
            assert titles and {t.split(",")[0] for t in titles} == {"x=1"}  # ... and the filter
            page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
            page.fill(f"#runs thead input[data-col='{col}']", "")
            page.fill("#runs thead input[data-col='1']", "pend")
            assert page.eval_on_selector_all("#runs tbody tr", shown) == ["x=3"]
        finally:
            browser.close()
