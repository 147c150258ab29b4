"""Export presets: dpi and print size read back from the files (PNG pHYs, PDF MediaBox, SVG width),
fonts from the chart specs and figure texts."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fsm2kit.viz.export import COLUMN_WIDTHS_MM, PRESETS, paper_config, save_figure, save_presets

MM_PER_PT = 25.4 / 72


def _svg_width_mm(path: Path) -> float:
    head = re.search(r"<svg[^>]*>", path.read_text()).group(0)
    value, unit = re.search(r'\swidth="([\d.]+)(mm|pt|px|)"', head).groups()
    return float(value) * {"mm": 1.0, "pt": MM_PER_PT, "": MM_PER_PT, "px": 25.4 / 96}[unit]


def _pdf_width_mm(path: Path) -> float:
    box = re.search(rb"/MediaBox\s*\[\s*([\d.\-]+)\s+([\d.\-]+)\s+([\d.\-]+)\s+([\d.\-]+)", path.read_bytes())
    assert box, f"{path} has no MediaBox"
    return (float(box.group(3)) - float(box.group(1))) * MM_PER_PT


def check_paper_files(base: Path, width_mm: float, *, tol: float = 0.02) -> None:
    """``base.png`` at 300 dpi, ``base.pdf`` and ``base.svg``, all ``width_mm`` wide at print size."""
    png, pdf, svg = (base.with_name(f"{base.name}.{f}") for f in ("png", "pdf", "svg"))
    for f in (png, pdf, svg):
        assert f.is_file(), f"{f} not written"
    im = Image.open(png)
    dpi = im.info["dpi"]
    assert round(dpi[0]) == round(dpi[1]) == 300, dpi
    assert im.size[0] / dpi[0] * 25.4 == pytest.approx(width_mm, rel=tol)
    assert _pdf_width_mm(pdf) == pytest.approx(width_mm, rel=tol)
    assert _svg_width_mm(svg) == pytest.approx(width_mm, rel=tol)


def _font_sizes(spec) -> list[float]:
    out = []
    if isinstance(spec, dict):
        for k, v in spec.items():
            if k.lower().endswith("fontsize") and isinstance(v, (int, float)):
                out.append(float(v))
            else:
                out += _font_sizes(v)
    elif isinstance(spec, list):
        for v in spec:
            out += _font_sizes(v)
    return out


def _chart(width=260):
    import altair as alt

    df = pd.DataFrame({"cls": list("abcd") * 2, "dice": np.linspace(0.1, 0.9, 8), "run": ["x"] * 4 + ["y"] * 4,
                       "model": ["tiny"] * 4 + ["large"] * 4})
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("cls:N", axis=alt.Axis(labelFontSize=5)), xOffset="run:N", y="dice:Q", color="run:N",
    ).properties(width=width, height=120).facet(column="model:N").properties(title="Dice per class")


@pytest.mark.parametrize("width", ["single", "double"])
def test_paper_chart_dpi_size_fonts(tmp_path, width):
    written = save_figure(_chart(), tmp_path / "c.png", preset="paper", width=width)
    assert sorted(written) == ["pdf", "png", "svg"]
    check_paper_files(tmp_path / "c", COLUMN_WIDTHS_MM[width])
    # fonts: the paper config sets every font >= 7 pt (1 px = 1 pt before the final upscaling >= 1);
    # an explicit smaller size in the chart (labelFontSize=5) is raised
    spec = save_figure(_chart(), tmp_path / "s", preset="paper", width=width, formats=["json"])["json"]
    import json

    sizes = _font_sizes(json.loads(spec.read_text()))
    assert sizes and min(sizes) >= 7
    assert min(_font_sizes(paper_config())) >= 7


def test_long_titles_wrap_at_the_double_width(tmp_path):
    """A subtitle naming a checkpoint by its sha256 (wider than 183 mm at 7 pt) is wrapped into lines at
    the double width, so the chart still fits; at a single column it goes to the double width as before."""
    import json

    import altair as alt

    sha = "sha256:" + "0123456789abcdef" * 4
    df = pd.DataFrame({"x": list("abc"), "y": [1.0, 2.0, 3.0]})
    chart = alt.Chart(df).mark_bar().encode(x="x:N", y="y:Q").properties(
        width=200, height=100, title={"text": "Attention mass per memory entry",
                                      "subtitle": f"1/LIVER, S1SFQ-middle, mean of layers 0, 1, 2, 3; sam2-tiny, {sha}"})
    save_figure(chart, tmp_path / "d.png", preset="paper", width="double")
    check_paper_files(tmp_path / "d", COLUMN_WIDTHS_MM["double"])
    spec = json.loads(save_figure(chart, tmp_path / "j", preset="paper", width="double", formats=["json"])["json"].read_text())
    lines = spec["title"]["subtitle"]
    assert isinstance(lines, list) and len(lines) >= 2 and "".join(lines).replace(" ", "").endswith(sha)
    written = save_presets(chart, tmp_path / "auto", presets=("paper",))
    # a long title no longer pushes a one-chart figure to the double width: wrapped at one column
    assert _svg_width_mm(written["paper.svg"] if "paper.svg" in written else
                         next(p for p in written.values() if str(p).endswith(".svg"))) == pytest.approx(
        COLUMN_WIDTHS_MM["single"], rel=0.02)


def test_screen_preset_and_plain(tmp_path):
    w = save_figure(_chart(), tmp_path / "c", preset="screen")
    assert sorted(w) == ["html", "png", "svg"] and round(Image.open(w["png"]).info["dpi"][0]) == 144
    plain = save_figure(_chart(), tmp_path / "p", formats=["png"], scale=2)
    s1, s2 = Image.open(w["png"]).size, Image.open(plain["png"]).size
    assert abs(s1[0] - s2[0]) <= 2  # screen = 2x, as scale=2
    with pytest.raises(ValueError, match="preset 'print' unknown"):
        save_figure(_chart(), tmp_path / "x", preset="print")
    with pytest.raises(ValueError, match="width"):
        save_figure(_chart(), tmp_path / "x", preset="paper", width="triple")


def test_paper_figure_size_fonts_and_restores(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.text as mtext

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.set_title("small", fontsize=5)
    ax.plot([0, 1], [0, 1])
    before = fig.get_size_inches().copy()
    w = save_figure(fig, tmp_path / "f", preset="paper", width="single")
    check_paper_files(tmp_path / "f", 89.0)
    # the title was drawn at 7 pt: the SVG says so; the figure is restored afterwards
    assert (fig.get_size_inches() == before).all() and ax.title.get_fontsize() == 5
    out = save_presets(fig, tmp_path / "g")
    assert {"screen.png", "screen.svg", "paper.png", "paper.pdf", "paper.svg"} == set(out)
    assert out["paper.png"].name == "g_paper.png" and round(Image.open(out["screen.png"]).info["dpi"][0]) == 144
    check_paper_files(tmp_path / "g_paper", 183.0)
    assert PRESETS["paper"].min_font_pt == 7


def test_paper_figure_fonts_at_print_size(tmp_path):
    """Every text of a figure saved in the paper preset is >= 7 pt (checked while it is drawn)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.text as mtext

    from fsm2kit.viz import export as charts

    fig, ax = plt.subplots()
    ax.set_title("t", fontsize=4)
    ax.set_xlabel("x", fontsize=6)
    seen = []
    orig = fig.savefig

    def spy(*a, **k):
        seen.extend(t.get_fontsize() for t in fig.findobj(mtext.Text) if t.get_text())
        return orig(*a, **k)

    fig.savefig = spy
    charts.save_figure(fig, tmp_path / "f", preset="paper", formats=["png"])
    assert seen and min(seen) >= 7


def test_panel_presets_through_the_one_writer(tmp_path):
    img = Image.new("RGB", (600, 300), "white")
    check = save_figure(img, tmp_path / "p", preset="paper")
    assert sorted(check) == ["pdf", "png", "svg"]
    check_paper_files(tmp_path / "p", 183.0)
    with pytest.raises(ValueError, match="smaller size"):
        save_figure(Image.new("RGB", (2000, 300)), tmp_path / "q", preset="paper", width="single")
    both = save_presets(img, tmp_path / "b.png")
    assert sorted(both) == ["paper.pdf", "paper.png", "paper.svg", "screen.png"]
    assert both["screen.png"].name == "b.png" and round(Image.open(both["screen.png"]).info["dpi"][0]) == 144
    assert Image.open(both["screen.png"]).size == img.size
    plain = save_figure(img, tmp_path / "j.jpg")
    assert list(plain) == ["jpg"] and Image.open(plain["jpg"]).format == "JPEG"
    assert not list(tmp_path.glob(".*"))
