"""The simulated-click benchmark (fsm2kit.run.clicks): click placement by hand, NoC, bit-equal replay."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fsm2kit.run.clicks import Click, next_click


def test_next_click_on_the_largest_error_by_hand():
    t = np.zeros((2, 12, 12), bool)
    p = np.zeros((2, 12, 12), bool)
    t[1, 2:7, 3:8] = True  # a 5x5 organ missed on the second slice: 25 px
    p[0, 8:11, 8:11] = True  # a 3x3 false region on the first: 9 px
    c = next_click(p, t, [40, 41])
    assert c == Click(z=41, x=5, y=4, positive=True, area=25)  # the centre: farthest from the border
    p[1] = t[1]  # fixed: now the false region is the largest error
    assert next_click(p, t, [40, 41]) == Click(z=40, x=9, y=9, positive=False, area=9)
    assert next_click(t, t, [40, 41]) is None
    # ties: a missed region before a false one of the same area, then the lower z
    t2 = np.zeros((2, 6, 6), bool)
    p2 = np.zeros((2, 6, 6), bool)
    t2[1, 0:2, 0:2] = True
    p2[0, 3:5, 3:5] = True
    assert next_click(p2, t2, [0, 1]).positive and next_click(p2, t2, [0, 1]).z == 1
    # the slice border counts as boundary: a region along the edge is clicked inside it
    t3 = np.zeros((1, 5, 9), bool)
    t3[0, :, :] = True
    # row 2 is 3 px from the border from x = 2 to 6: ties go to the first in raster order
    assert next_click(np.zeros_like(t3), t3, [0]) == Click(z=0, x=2, y=2, positive=True, area=45)


def test_config_and_cli_checks(no_model, tmp_path, capsys):
    from conftest import EXAMPLE_NPZ
    from fsm2kit.cli import main
    from fsm2kit.run.config import ExperimentConfig

    with pytest.raises(ValueError, match="1S1Q segment each slice alone"):
        ExperimentConfig(settings="1S1Q", simulate_clicks=3)
    with pytest.raises(ValueError, match="click_target must be a Dice"):
        ExperimentConfig(simulate_clicks=3, click_target=1.5)
    with pytest.raises(ValueError, match="simulate_clicks must be a whole number"):
        ExperimentConfig(simulate_clicks=-1)
    argv = ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "3S1Q", "--checkpoint", "random",
            "--image-size", "128", "--out", str(tmp_path / "o"), "--simulate-clicks", "2"]
    assert main(argv) == 2
    assert "segment each slice alone" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_clicks_are_deterministic_and_replay_bit_equal(present128, example_episode, tmp_path):
    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.experiment_result import read_results
    from fsm2kit.run.runner import run_experiments
    from fsm2kit.run.sources import subset_episode

    ep = subset_episode(example_episode, max_slices=4)
    cfg = ExperimentConfig(models=("sam2-tiny",), checkpoint="random", image_size=128, simulate_clicks=2,
                           click_target=0.99)
    kw = dict(models={"sam2-tiny": present128}, episodes=[[ep]], keep_predictions=True, progress=False)
    res = run_experiments(cfg, **kw)
    (model, _, ce), = res.clicks
    assert len(ce.clicks) == len(ce.dice) - 1 == len(ce.seconds) - 1
    assert 1 <= len(ce.clicks) <= 2 and (ce.noc == 3) == (max(ce.dice) < 0.99)
    assert all(np.isfinite(ce.dice)) and all(s > 0 for s in ce.seconds)
    paths = res.save(tmp_path / "run")
    table = read_results(tmp_path / "run")["slices"]
    assert len(table) == ep.n_slices
    clicks = __import__("pandas").read_csv(paths["clicks"])
    assert clicks["click"].tolist() == list(range(len(ce.dice))) and set(clicks["noc"]) == {ce.noc}
    data = json.loads(paths["clicks.json"].read_text())
    assert len(data) == len(ce.clicks) and data[0][0]["case"] == str(ep.case_id)
    # the saved clicks replay through prompts to the same logits, bit for bit
    rep = run_experiments(ExperimentConfig(models=("sam2-tiny",), checkpoint="random", image_size=128,
                                           prompts=str(paths["clicks.json"])), **kw)
    assert np.array_equal(rep.predictions[0].result.logits(), res.predictions[0].result.logits())
    # the final stage is what the tables score: its Dice is the last of the clicks', and the replay's
    for s in (res.slices, rep.slices):
        assert 2 * s.tp.sum() / (2 * s.tp.sum() + s.fp.sum() + s.fn.sum()) == pytest.approx(ce.dice[-1])
    # deterministic: the clicks of the replayed run's masks before each round are the clicks made
    (_, _, ce2), = run_experiments(cfg.replace(simulate_clicks=1), **kw).clicks
    assert ce2.clicks == ce.clicks[:1] and ce2.dice == ce.dice[:2]
