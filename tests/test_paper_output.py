"""Paper-ready output: tables that compile with pdflatex, PDFs without Type 3 fonts, editable SVG
text, one figure style and one palette (notebook theme = saved files)."""

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fsm2kit.tables.dice_table import dice_table, results_table, save_table

RANDOM = "random weights (seed 0)"
SHA = "sha256:" + "0123456789ab" + "cd" * 26

needs_pdflatex = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed "
                                    "(scripts/install_latex.sh)")
needs_pdffonts = pytest.mark.skipif(shutil.which("pdffonts") is None, reason="pdffonts not installed (poppler-utils)")



def _have(sty: str) -> bool:
    """multirow is in Debian's texlive-latex-extra, not in the base/recommended CI installs."""
    return shutil.which("kpsewhich") is not None and bool(
        subprocess.run(["kpsewhich", sty], capture_output=True, text=True).stdout.strip())


#: The plain article of the issue: only these packages (multirow where installed), landscape, 1 cm margins.
PREAMBLE = r"""\documentclass{article}
\usepackage[T1]{fontenc}
\usepackage{booktabs}
\usepackage{graphicx}
""" + (r"\usepackage{multirow}" if _have("multirow.sty") else "") + r"""
\usepackage{amsmath}
\usepackage{amssymb}
\usepackage[landscape,margin=1cm]{geometry}
\begin{document}
"""


def _summary(datasets=("CHAOST2",), organs=("LIVER",), weights=RANDOM, n=3):
    rows = []
    runs = (("S1SFQ", "middle", 0.70, 0.10), ("1S1Q", "n/a", 0.50, 0.20), ("3SFQ", "middle", 0.60, 0.05))
    for ds in datasets:
        for setting, order, d, sd in runs:
            for k, organ in enumerate(organs):
                for metric in ("mean_per_volume", "pooled"):
                    rows.append(dict(dataset=ds, model="sam2-tiny", image_size=256, setting=setting, order=order,
                                     label=k, label_name=organ, metric=metric, dice=d + k / 100,
                                     std_per_volume=(sd if n > 1 else 0.0) if metric == "mean_per_volume" else np.nan,
                                     n_volumes=n, n_slices=12, weights=weights, protocol_variant="ALP"))
    return pd.DataFrame(rows)


def _all_tables(tmp_path: Path) -> list[Path]:
    four = ("LK", "RK", "SPLEEN", "LIVER")
    tables = {
        "one": dice_table(_summary()),
        "table1_both": dice_table(_summary(datasets=("SABS", "CHAOST2"), organs=four), paper_table=1),
        "table1_sha": dice_table(_summary(organs=four, weights=SHA), paper_table=1, metric="pooled"),
        "n1": dice_table(_summary(n=1)),
        "strategies": (results_table(_summary(datasets=("SABS", "CHAOST2"), organs=four), metric="pooled") * 100),
    }
    out = []
    for name, t in tables.items():
        note = f"pooled Dice (%); weights: {SHA}; \"quoted\" − Δ" if name == "strategies" else None
        out.append(save_table(t, tmp_path / name, note=note)["tex"] if note else save_table(t, tmp_path / name)["tex"])
    return out


def _compile(tmp_path: Path, body: str, name: str = "doc") -> tuple[Path, str]:
    tex = tmp_path / f"{name}.tex"
    tex.write_text(PREAMBLE + body + "\n\\end{document}\n", encoding="utf-8")
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / f"{name}.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return tmp_path / f"{name}.pdf", log


@needs_pdflatex
def test_every_table_kind_compiles_with_pdflatex_as_input(tmp_path):
    files = _all_tables(tmp_path)
    for f in files:
        text = f.read_text(encoding="utf-8")
        assert text.isascii(), f.name  # every non-ASCII character escaped
        caption = re.search(r"\\caption\{(.*)\}", text)
        if caption:
            assert not re.search(r"[0-9a-f]{13,}", caption.group(1)), "caption carries a long sha"
            assert '"' not in caption.group(1)
    pdf, log = _compile(tmp_path, "\n".join(f"\\input{{{f.name}}}\n\\clearpage" for f in files))
    over = [float(m) for m in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]
    assert all(o < 100 for o in over), over
    assert pdf.stat().st_size > 1000
    wide = (tmp_path / "table1_both.tex").read_text()
    assert "\\begin{table*}" in wide and "\\resizebox" in wide and "$\\Delta$ ours $-$ published" in wide
    assert "sha256:0123456789ab." in (tmp_path / "table1_sha.tex").read_text() or \
        "sha256:0123456789ab" in (tmp_path / "table1_sha.tex").read_text()


def test_table_numbers_sample_std_n1_and_ties():
    t = dice_table(_summary())
    c = t.cells.set_index(["row", "kind", "organ"])
    # population std 10 % of 3 volumes -> sample std 10 * sqrt(3 / 2)
    assert c.loc[("sam2-tiny S1SFQ-middle", "ours", "LIVER"), "std_percent"] == pytest.approx(10 * np.sqrt(1.5))
    assert "sample std" in t.caption and "ddof=1" in t.caption
    one = dice_table(_summary(n=1))
    md = one.to_markdown()
    assert "± 0.00" not in md and "(n=1)" in md and "($n=1$)" in one.to_latex()
    # ties as printed (2 decimals) are marked alike
    s = _summary()
    s.loc[s["setting"] == "3SFQ", "dice"] = 0.7000001
    tie = dice_table(s[s["setting"] != "1S1Q"])
    ranks = tie.cells[tie.cells["organ"] == "LIVER"]["rank"].tolist()
    assert ranks == [1, 1]
    assert "0123456789ab" in dice_table(_summary(weights=SHA)).caption
    assert SHA not in dice_table(_summary(weights=SHA)).caption


def test_organ_and_baseline_order_as_printed():
    from fsm2kit.tables.paper import ORGAN_ORDER, PUBLISHED_BASELINES

    raw = pd.read_csv(Path(__file__).resolve().parents[1] / "fsm2kit" / "data" / "paper" / "fs_medsam2_tables.csv")
    printed = list(dict.fromkeys(raw["organ"]))
    assert printed == ["spleen", "liver", "left_kidney", "right_kidney", "mean"]
    assert ORGAN_ORDER == ("SPLEEN", "LIVER", "LK", "RK")
    assert [b.method for b in PUBLISHED_BASELINES if b.dataset == "SABS"] == list(
        dict.fromkeys(raw[(raw["table"] == 1) & (raw["dataset"] == "Synapse-CT") & (raw["method"] != "FS-MedSAM2")]["method"]))


# ----------------------------------------------------------------------------- figures: fonts, SVG text
def _pdf_font_types(pdf: Path) -> list[str]:
    out = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines()[2:] if line.strip()]


def _figure_and_chart(tmp_path):
    import altair as alt

    from fsm2kit.viz.export import save_figure
    from fsm2kit.viz.figures import image_axes, panel_figure, styled

    @styled
    def fig():
        f, axes = panel_figure(1, 2, size=1.6)
        img = np.linspace(0, 1, 64 * 64).reshape(64, 64)
        m = np.zeros((64, 64), bool)
        m[20:40, 20:40] = True
        image_axes(axes[0, 0], img, ("P", "L"), fill=m, contours=[(m[::-1], "#009E73")], markers=[(30, 30, "#CC79A7")],
                   title="query z=12")
        image_axes(axes[0, 1], img, ("P", "L"), fill=np.zeros_like(m), empty_note="no prediction", title="")
        f.suptitle("a vector figure")
        return f

    chart = alt.Chart(pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})).mark_bar().encode(x="x:N", y="y:Q", color="x:N")
    written = {**{f"fig.{k}": v for k, v in save_figure(fig(), tmp_path / "fig", preset="paper").items()},
               **{f"chart.{k}": v for k, v in save_figure(chart, tmp_path / "chart", preset="paper").items()}}
    return written


@needs_pdffonts
def test_no_type3_fonts_in_pdfs_and_svg_text_is_editable(tmp_path):
    written = _figure_and_chart(tmp_path)
    for key in ("fig.pdf", "chart.pdf"):
        fonts = _pdf_font_types(written[key])
        assert fonts, key
        assert not any("Type 3" in f for f in fonts), (key, fonts)
        assert any("TrueType" in f or "CID" in f for f in fonts), (key, fonts)
    svg = written["fig.svg"].read_text()
    assert svg.count("<text") >= 3 and "DejaVu Sans" in svg
    assert written["chart.svg"].read_text().count("<text") >= 2


def test_figure_text_is_vector_and_one_font():
    import matplotlib

    from fsm2kit.viz.style import FONT_FAMILY, mpl_style

    before = dict(matplotlib.rcParams)
    with mpl_style():
        assert matplotlib.rcParams["pdf.fonttype"] == 42 and matplotlib.rcParams["svg.fonttype"] == "none"
        assert matplotlib.rcParams["font.sans-serif"][0] == FONT_FAMILY
    assert matplotlib.rcParams["pdf.fonttype"] == before["pdf.fonttype"]  # never process-wide


def test_palette_identity_notebook_theme_and_saved_files(tmp_path):
    import json

    import altair as alt

    from fsm2kit.viz.export import save_figure
    from fsm2kit.viz.style import CATEGORY_COLORS, FONT_FAMILY, THEME_NAME, chart_config, register_theme

    register_theme()
    chart = alt.Chart(pd.DataFrame({"x": ["a", "b"], "y": [1, 2]})).mark_bar().encode(x="x:N", y="y:Q", color="x:N")
    with alt.theme.enable(THEME_NAME):  # what use_style() enables in a notebook
        shown = chart.to_dict()["config"]
    saved = {}
    for preset in ("screen", "paper"):
        p = save_figure(chart, tmp_path / preset, preset=preset, formats=["json"])["json"]
        saved[preset] = json.loads(p.read_text())["config"]
    plain = save_figure(chart, tmp_path / "plain", formats=["json"])["json"]
    saved["plain"] = json.loads(plain.read_text())["config"]
    for cfg in (shown, *saved.values()):
        assert cfg["range"]["category"] == CATEGORY_COLORS
        assert cfg["font"] == FONT_FAMILY
    assert chart_config()["range"]["category"] == CATEGORY_COLORS


def test_memory_colours_by_meaning_not_position():
    from fsm2kit.inspector.panels import role_colors

    a = role_colors(["support #1 (z=17)", "query (SAM2 d=1)", "query (SAM2 d=2)", "pointers"])
    b = role_colors(["query (SAM2 d=2)", "pointers", "support #1 (z=17)"])
    assert a["query (SAM2 d=2)"] == b["query (SAM2 d=2)"] and a["pointers"] == b["pointers"]
    c = role_colors(["query (SAM2 d=2)"])
    assert c["query (SAM2 d=2)"] == a["query (SAM2 d=2)"]


# ----------------------------------------------------------------------------- vector attention figure
@pytest.fixture(scope="module")
def small_inspection(present128, example_episode):
    """S1SFQ-middle on 5 slices at 128 px (random weights), captured."""
    import dataclasses

    from fsm2kit.engine import Engine
    from fsm2kit.inspector import inspect_episode

    ep = example_episode

    def down(a):
        return np.asarray(a)[::2, ::2]

    keep = np.arange(6, ep.n_slices, 3)[:5]
    sups = tuple(dataclasses.replace(s, image=down(s.image), mask=down(s.mask)) for s in ep.supports)
    small = dataclasses.replace(ep, z=ep.z[keep], images=np.stack([down(i) for i in ep.images[keep]]),
                                labels=np.stack([down(x) for x in ep.labels[keep]]), chunks=ep.chunks[keep],
                                supports=sups)
    return inspect_episode(Engine(present128, progress=False), small, "S1SFQ", order="middle")


@pytest.mark.slow
@needs_pdffonts
def test_attention_figure_is_vector_for_chosen_slices(small_inspection, tmp_path):
    from fsm2kit.inspector import attention_figure, write_inspection
    from fsm2kit.viz.export import save_figure

    insp = small_inspection
    last = len(insp.steps) - 1
    fig = attention_figure(insp, [0, last], title="")
    images = [im for ax in fig.axes for im in ax.images]
    # rasters at native resolution (the 128 px slices), never upscaled tiles
    native = tuple(insp.steps[0].image_shape)
    assert images and all(np.asarray(im.get_array()).shape[:2] == native for im in images)
    assert "RANDOM WEIGHTS" in fig.legends[0].get_title().get_text()  # title="" keeps the warning (a footer)
    files = save_figure(fig, tmp_path / "att", preset="paper")
    fonts = _pdf_font_types(files["pdf"])
    assert fonts and not any("Type 3" in f for f in fonts)
    if shutil.which("pdfimages"):  # the PDF embeds each slice at its native resolution
        listing = subprocess.run(["pdfimages", "-list", str(files["pdf"])], capture_output=True, text=True).stdout
        sizes = {tuple(int(v) for v in line.split()[3:5]) for line in listing.splitlines()[2:] if line.strip()}
        assert sizes == {native[::-1]}, sizes
    svg = files["svg"].read_text()
    assert svg.count("<text") >= 10 and "mass " in svg and f"z={insp.steps[last].z}" in svg
    # the CLI/notebook writer: chosen slices, the paper panels are this vector figure
    paths = write_inspection(insp, tmp_path / "out", presets=("paper",), steps=[f"z={insp.steps[last].z}"])
    paper_pdf = [p for k, p in paths.items() if k.endswith("_paper.pdf")]
    assert len(paper_pdf) == 1 and f"_z{insp.steps[last].z}_paper" in paper_pdf[0].name
    assert not any("Type 3" in f for f in _pdf_font_types(paper_pdf[0]))
    with pytest.raises(ValueError, match="no processed slice has z=999"):
        attention_figure(insp, ["z=999"])


def test_charts_say_what_tables_say_one_legend_integer_z():
    from fsm2kit.viz.dice_charts import dice_bars, relative_position_chart, slice_dice_curves

    rows = []
    for z, d in ((3, 0.5), (4, 0.6), (5, 0.7)):
        for order in ("top", "middle"):
            rows.append(dict(case_id="1", label_name="LIVER", dataset="CHAOST2", z=z, dice=d, gt_px=10,
                             setting="S1SFQ", order=order, model="sam2-tiny"))
    sl = pd.DataFrame(rows)
    curves = slice_dice_curves(sl, row=None, column="dataset").to_dict()
    assert curves["spec"]["encoding"]["x"]["axis"] == {"format": "d", "tickMinStep": 1}
    values = next(iter(curves["datasets"].values()))
    assert {v["dataset"] for v in values} == {"CHAOS-MRI"} and {v["label_name"] for v in values} == {"Liver"}
    rel = relative_position_chart(sl, bins=2, row=None, column=None).to_dict()
    band, line = rel["layer"]
    assert band["encoding"]["color"].get("legend") == line["encoding"]["color"].get("legend") == {"symbolOpacity": 1}
    summary = _summary(datasets=("CHAOST2",), organs=("LIVER", "LK"))
    bars = dice_bars(summary, column="dataset", title="").to_dict()
    # title="" removes the title; the random-weights subtitle stays
    assert bars["title"]["text"] == "" and "RANDOM WEIGHTS" in str(bars["title"]["subtitle"])
    assert bars["spec"]["layer"][0]["encoding"]["x"]["sort"] == ["Liver", "LK"]
