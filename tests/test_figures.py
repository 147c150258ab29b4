"""Figures: overlay panels on a synthetic episode, altair charts from hand-made tables, offline saving."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from fsm2kit.protocol.episodes import Episode, Support
from fsm2kit.viz.display import COLORS
from fsm2kit.viz.drawing import gray01, hex_rgb, outline, render_slice
from fsm2kit.viz.export import save_figure
from fsm2kit.viz.dice_charts import dice_bars, slice_dice_curves
from fsm2kit.viz.figures import (
    class_panels,
    slice_overlays,
    weights_label,
)

PNG = b"\x89PNG\r\n\x1a\n"


def _episode(label_name="LIVER", case="s1"):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(5, 32, 32)).astype(np.float32)
    labels = np.zeros((5, 32, 32), bool)
    labels[:, 8:20, 10:22] = True
    sups = tuple(Support(rng.normal(size=(32, 32)).astype(np.float32), labels[0].copy(), c) for c in range(3))
    return Episode(case, 1, label_name, np.arange(10, 15), images, labels, np.array([0, 0, 1, 2, 2]), sups)


def _result(ep, setting="S1SFQ", order="middle", shift=0):
    """An EpisodeResult stand-in: slice i predicts the ground truth shifted by ``shift`` columns."""
    slices = [SimpleNamespace(prediction=np.roll(ep.labels[i], shift, axis=1)) for i in range(ep.n_slices)]
    return SimpleNamespace(slices=slices, setting=setting, order=order, case_id=ep.case_id,
                           label_name=ep.label_name,
                           provenance={"model": "sam2-tiny", "weights": "random weights (seed 0)"})


def _titles(fig):
    return [ax.get_title() for ax in fig.axes]


def test_weights_label():
    assert weights_label("random weights (seed 3)") == "RANDOM WEIGHTS (numbers mean nothing) (seed 3)"
    assert weights_label("sha256:" + "ab" * 32) == "sha256:abababababab…"
    assert weights_label(pd.Series(["x", "x", "y"])) == "x; y"
    assert weights_label(None) == ""


def _texts(ax):
    return [t.get_text() for t in ax.texts]


def test_slice_overlays_layout_and_dice(tmp_path):
    ep = _episode()
    fig = slice_overlays(ep, _result(ep), n=3)
    assert len(fig.axes) == 4  # the one support S1SFQ uses, then 3 slices (prediction + ground-truth contour)
    t = _titles(fig)
    assert t[0] == "support #1"  # S1SFQ: the middle chunk's support, shown once
    assert t[1] == "query z=10\nDice 1.000" and t[2] == "query z=12\nDice 1.000"  # positions 0, 2, 4
    assert "RANDOM WEIGHTS" in fig.get_suptitle()
    labels = [tx.get_text() for tx in fig.legends[0].get_texts()]
    assert labels == ["support mask", "prediction", "ground truth (contour)"]
    # no dataset / axcodes: shown as stored, no letters
    assert not {"A", "P", "R", "L"} & set(_texts(fig.axes[1]))
    # 1S1Q shows each slice's own chunk support; a shift of 6 of 12 columns: Dice = 2*72/(144+144) = 0.5
    fig2 = slice_overlays(ep, _result(ep, "1S1Q", None, shift=6), positions=[3])
    assert _titles(fig2) == ["support #2", "query z=13\nDice 0.500"]
    out = save_figure(fig2, tmp_path / "o")
    assert out["png"].name == "o.png" and out["png"].read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="outside the episode"):
        slice_overlays(ep, _result(ep), positions=[7])
    with pytest.raises(ValueError, match="pass the episode the result was computed on"):
        slice_overlays(_episode(), SimpleNamespace(slices=[1, 2]))


def test_overlays_orientation_letters_and_empty_prediction():
    ep = _episode()
    ep.meta["axcodes"] = ("A", "L")  # rows posterior -> anterior (CHAOST2): shown flipped, A on top
    res = _result(ep)
    res.slices[0].prediction = np.zeros_like(ep.labels[0])
    fig = slice_overlays(ep, res, positions=[0, 1])
    assert set(_texts(fig.axes[1])) >= {"A", "P", "R", "L", "no prediction"}
    assert "no prediction" not in _texts(fig.axes[2])
    # the one renderer's RGB at native resolution, flipped up-down: grey (the ground truth is no
    # longer painted into the raster), its outline a vector contour in the ground-truth colour
    img = np.asarray(fig.axes[1].images[0].get_array())
    assert img.shape == (32, 32, 3)
    np.testing.assert_allclose(img[..., 0], gray01(ep.images[0], (0.5, 99.5))[::-1])
    from matplotlib.colors import to_hex

    edges = {to_hex(c) for coll in fig.axes[1].collections for c in coll.get_edgecolor()}
    assert COLORS["ground_truth"].lower() in edges


def test_one_renderer_for_panels_and_figures():
    """render_slice: grey window, fill then outlines in the one colour scheme, then the display orientation."""
    image = np.arange(20, dtype=np.float32).reshape(4, 5)
    fill = np.zeros((4, 5), bool)
    fill[0, 0] = True
    v = render_slice(image, ("A", "L"), fill=fill, outlines=[(None, COLORS["ground_truth"])])
    assert v.array.shape == (4, 5, 3) and v.letters == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
    g = image / 19
    # stored row 0 is shown at the bottom; the filled pixel is its own outline, drawn in the fill colour
    assert np.allclose(v.array[3, 0], hex_rgb(COLORS["prediction"])) and np.allclose(v.array[0, 4], g[3, 4])
    t = render_slice(image, ("L", "P"))  # rows run right -> left: transposed to A/P rows
    assert t.array.shape == (5, 4, 3) and t.letters["top"] == "A"
    assert render_slice(image).letters is None and np.allclose(render_slice(image).array[..., 1], g)
    heat = render_slice(image, heat=np.ones((4, 5)))
    assert not np.allclose(heat.array[..., 0], g)
    w = gray01(np.r_[np.zeros(98), 1.0, 100.0], (1, 99))  # an outlier does not wash out the window
    assert w.max() == 1.0 and w.min() == 0.0


def test_class_panels_one_row_per_class():
    ep1, ep2 = _episode("LIVER"), _episode("SPLEEN", case="s2")
    ep2.labels[:] = False
    ep2.labels[3, 0:4, 0:4] = True  # the largest ground truth is at position 3 (z=13)
    fig = class_panels([(ep1, _result(ep1)), SimpleNamespace(episode=ep2, result=_result(ep2))])
    t = _titles(fig)
    assert len(fig.axes) == 6
    assert t[0] == "LIVER: support #1" and t[3].startswith("SPLEEN: support #1")
    assert t[4] == "query s2 z=13" and t[5] == "sam2-tiny, S1SFQ-middle\nDice 1.000"
    # the same class twice (two runs): its support is shown once
    fig2 = class_panels([(ep1, _result(ep1)), (ep1, _result(ep1, order="top"))])
    assert _titles(fig2)[3] == "" and "LIVER: same support as above" in _texts(fig2.axes[3])
    # more than 4 panels: supports in the first row, slices in rows of up to 4 below
    fig3 = slice_overlays(ep1, _result(ep1, "1S1Q", None), n=5)
    assert _titles(fig3)[:3] == ["support #0", "support #1", "support #2"]
    assert _titles(fig3)[4] == "query z=10 (support #0)\nDice 1.000"
    fig_mid = class_panels([(ep1, _result(ep1))], position="middle")
    assert _titles(fig_mid)[1].startswith("query s1 z=12")
    with pytest.raises(ValueError, match="at least one prediction"):
        class_panels([])


def _summary():
    rows = []
    for setting, order, d in (("1S1Q", "n/a", 0.5), ("S1SFQ", "top", 0.6), ("S1SFQ", "middle", 0.7)):
        for metric in ("mean_per_volume", "pooled"):
            rows.append(dict(dataset="CHAOST2", model="sam2-tiny", setting=setting, order=order, label=1,
                             label_name="LIVER", metric=metric, dice=d, n_volumes=1,
                             weights="random weights (seed 0)"))
    return pd.DataFrame(rows)


def test_dice_bars_groups_runs_and_marks_random_weights():
    s = _summary()
    s.loc[s["order"] == "n/a", "order"] = np.nan  # as pd.read_csv returns it
    spec = dice_bars(s, metric="pooled").to_dict()
    assert spec["title"]["subtitle"] == "RANDOM WEIGHTS (numbers mean nothing) (seed 0)"
    enc = spec["spec"]["layer"][0]["encoding"]
    assert enc["x"]["field"] == "label_name" and enc["xOffset"]["field"] == "run" and enc["y"]["field"] == "dice_pct"
    assert spec["facet"]["column"]["field"] == "model"
    data = next(iter(spec["datasets"].values()))
    assert sorted(r["run"] for r in data) == ["1S1Q", "S1SFQ-middle", "S1SFQ-top"]
    assert enc["xOffset"]["sort"] == ["1S1Q", "S1SFQ-top", "S1SFQ-middle"]  # the paper's order
    assert len(data) == 3  # only the pooled rows
    with pytest.raises(ValueError, match="No 'x' rows"):
        dice_bars(s, metric="x")
    with pytest.raises(ValueError, match="missing \\['dice'\\]"):
        dice_bars(s.drop(columns="dice"))


def test_slice_curves_one_series_per_case_class_order():
    rows = [dict(case_id=1, label_name="LIVER", setting="S1SFQ", order=o, model="sam2-tiny", z=z, dice=d,
                 weights="sha256:" + "0" * 64)
            for o in ("top", "middle") for z, d in ((10, 0.9), (11, 0.8))]
    spec = slice_dice_curves(pd.DataFrame(rows)).to_dict()
    assert spec["facet"]["row"]["field"] == "setting" and spec["facet"]["column"]["field"] == "model"
    assert spec["spec"]["encoding"]["color"]["field"] == "order"
    data = next(iter(spec["datasets"].values()))
    assert sorted({r["series"] for r in data}) == ["1/LIVER/middle", "1/LIVER/top"]
    assert "weights" not in data[0]  # only the needed columns travel into the chart
    with pytest.raises(ValueError, match="missing \\['z'\\]"):
        slice_dice_curves(pd.DataFrame(rows).drop(columns="z"))


def test_save_figure_of_a_chart_offline_png_svg_inline_html(tmp_path):
    written = save_figure(dice_bars(_summary()), tmp_path / "bars.png")
    assert sorted(written) == ["html", "png", "svg"]
    assert written["png"].name == "bars.png" and written["png"].read_bytes()[:8] == PNG
    assert written["svg"].read_text().lstrip().startswith("<svg")
    page = written["html"].read_text()
    assert "vega-embed" in page.lower() and "cdn.jsdelivr.net" not in page  # Vega inlined: opens offline
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="unknown"):
        save_figure(dice_bars(_summary()), tmp_path / "x", formats=["gif"])
    with pytest.raises(TypeError, match="altair chart, a matplotlib figure or a PIL image"):
        save_figure(object(), tmp_path / "x")
