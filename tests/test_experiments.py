"""The experiment runner: config checks, episode subsets, tidy tables, paper tables, provenance."""

import inspect
import json
import math

import numpy as np
import pandas as pd
import pytest

from fsm2kit.engine.engine import Engine
from fsm2kit.tables.paper import PUBLISHED_BASELINES, baseline_table, paper_numbers
from fsm2kit.run.config import ExperimentConfig
from fsm2kit.run.sources import load_config_episodes, subset_episode
from fsm2kit.run.runner import run_experiment
from fsm2kit.protocol.metrics import slice_dice
from fsm2kit.run.experiment_result import GROUP_KEYS, PROVENANCE_COLUMNS, format_dice, logits_key, read_results
from fsm2kit.tables.dice_table import results_table
from fsm2kit.tables.paper import ORGAN_ORDER

SMOKE = dict(checkpoint="random", image_size=256, device="cpu")


# ----------------------------------------------------------------------------- config
def test_config_normalizes_lists_and_names():
    c = ExperimentConfig(settings="s1sfq", orders=["TOP", "middle", "top"], models="sam2-hiera-tiny",
                         classes="liver", folds=0, **SMOKE)
    assert c.settings == ("S1SFQ",) and c.orders == ("top", "middle") and c.models == ("sam2-tiny",)
    assert c.classes == ("liver",) and c.folds == (0,) and c.random_weights
    d = c.to_dict()
    assert json.loads(json.dumps(d)) == d and ExperimentConfig(**d) == c
    assert "S1SFQ" in repr(c) and "checkpoint=random" in repr(c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(settings=["2S1Q"]), "Unknown setting"),
        (dict(settings=[]), "settings is empty"),
        (dict(orders=["bottom"]), "orders: unknown"),
        (dict(orders=[], settings=["S1SFQ"]), "needs an order"),
        (dict(metric="dice"), "metric"),
        (dict(variant="XYZ"), "variant"),
        (dict(dataset="BTCV"), "dataset"),
        (dict(models=["sam3"]), "Unknown model name"),
        (dict(max_slices=0), "max_slices"),
        (dict(z_range=(5, 1)), "z_range"),
        (dict(object_batch_size=0), "object_batch_size"),
        (dict(models=["sam2-tiny", "sam2-small"], checkpoint="/nonexistent/sam2_hiera_tiny.pt"), "one file"),
        (dict(models=["sam2-tiny", "sam2-small"], checkpoint={"sam2-tiny": "a.pt"}), "not ['sam2-small']"),
    ],
)
def test_config_errors_say_what_was_expected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExperimentConfig(**kwargs)


def test_checkpoint_for_folder_mapping_and_random(tmp_path):
    (tmp_path / "sam2_hiera_tiny.pt").write_bytes(b"x")
    c = ExperimentConfig(models=["sam2-tiny", "sam2-small"], checkpoint=str(tmp_path))
    assert c.checkpoint_for("sam2-tiny") == str(tmp_path / "sam2_hiera_tiny.pt")
    with pytest.raises(FileNotFoundError, match="sam2_hiera_small.pt"):
        c.checkpoint_for("sam2-small")
    m = ExperimentConfig(models=["sam2-tiny", "sam2-small"], checkpoint={"sam2-small": "s.pt", "sam2-tiny": "t.pt"})
    assert m.checkpoint_for("sam2-small") == "s.pt" and m.to_dict()["checkpoint"] == {"sam2-small": "s.pt", "sam2-tiny": "t.pt"}
    assert ExperimentConfig(checkpoint="random").checkpoint_for("sam2-tiny") == "random"
    assert ExperimentConfig().checkpoint_for("sam2-tiny") is None  # download by name


# ----------------------------------------------------------------------------- formulas
def test_slice_dice_hand_computed():
    assert slice_dice(3, 1, 2) == pytest.approx(6 / 9)
    assert slice_dice(0, 4, 0) == 0.0
    assert math.isnan(slice_dice(0, 0, 0))  # both empty: undefined, not 1
    out = slice_dice(pd.Series([1, 0, 5]), pd.Series([1, 0, 0]), pd.Series([0, 0, 5]))
    np.testing.assert_allclose(out, [2 / 3, np.nan, 10 / 15])


def test_subset_episode_keeps_supports_and_chunks(example_episode):
    ep = example_episode  # z 12..35, chunks 8 x 0, 8 x 1, 8 x 2
    sub = subset_episode(ep, max_slices=4)
    assert sub.z.tolist() == [12, 20, 27, 35]  # positions round(linspace(0, 23, 4)) = 0, 8, 15, 23
    assert sub.chunks.tolist() == [0, 1, 1, 2]
    assert sub.supports is ep.supports and sub.images.shape == (4, *ep.images.shape[1:])
    np.testing.assert_array_equal(sub.labels[1], ep.labels[8])
    assert sub.meta["subset"] == {"z": [12, 20, 27, 35], "of": 24}
    rng = subset_episode(ep, z_range=(30, 40), max_slices=3)
    assert rng.z.tolist() == [30, 32, 35]  # 6 slices 30..35 -> positions 0, 2(.5 -> 2), 5
    assert subset_episode(ep, max_slices=100) is ep
    with pytest.raises(ValueError, match="leaves no query slice"):
        subset_episode(ep, z_range=(100, 200))
    with pytest.raises(ValueError, match="max_slices must be >= 1"):
        subset_episode(ep, max_slices=0)
    # explicit positions first, then max_slices over what they keep (one meaning everywhere)
    pos = subset_episode(ep, positions=slice(8, 14), max_slices=3)
    assert pos.z.tolist() == [20, 22, 25] and pos.meta["subset"] == {"z": [20, 22, 25], "of": 24}


def test_load_config_episodes_npz_filters_and_warns():
    eps = load_config_episodes(ExperimentConfig(classes=["liver"], max_slices=3), progress=False)
    assert len(eps) == 1 and eps[0].label_name == "LIVER" and eps[0].n_slices == 3
    with pytest.raises(ValueError, match=r"hold class\(es\) 1 LIVER .*not 2 RK"):
        load_config_episodes(ExperimentConfig(classes=["RK"]), progress=False)
    with pytest.raises(ValueError, match="not query scans of CHAOST2 fold 1"):  # checked, never ignored
        load_config_episodes(ExperimentConfig(folds=[1]), progress=False)
    assert {e.fold for e in load_config_episodes(ExperimentConfig(folds=[0]), progress=False)} == {0}
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_config_episodes(ExperimentConfig(episodes="/nonexistent/folder"), progress=False)


def test_load_config_episodes_from_a_preprocessed_folder(tmp_path):
    """A synthetic SSL-ALPNet CHAOST2 folder: folds x classes through the protocol."""
    import nibabel as nib

    from fsm2kit.protocol import SCAN_IDS

    rng = np.random.default_rng(0)
    for sid in SCAN_IDS["CHAOST2"]:
        img = rng.normal(size=(16, 16, 6)).astype(np.float32)  # nibabel (x, y, z)
        lab = np.zeros((16, 16, 6), np.float32)
        lab[4:10, 4:10, 1:5] = 1  # liver on 4 slices
        lab[11:14, 2:5, 2:4] = 2  # right kidney on 2 slices
        nib.save(nib.Nifti1Image(img, np.eye(4)), tmp_path / f"image_{sid}.nii.gz")
        nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / f"label_{sid}.nii.gz")
    cfg = ExperimentConfig(episodes=str(tmp_path), dataset="chaost2", folds=[0, 1], classes=["liver", "RK"],
                           max_slices=3)
    eps = load_config_episodes(cfg, progress=False)
    assert len(eps) == 2 * 2 * 4  # folds x classes x 4 query scans per ALP fold
    assert [(e.fold, e.label_name, e.case_id) for e in eps[:5]] == [
        (0, "LIVER", "1"), (0, "LIVER", "2"), (0, "LIVER", "3"), (0, "LIVER", "5"), (0, "RK", "1")]
    assert {e.n_slices for e in eps if e.label_name == "LIVER"} == {3} and {e.variant for e in eps} == {"ALP"}
    with pytest.raises(ValueError, match="also give dataset="):
        load_config_episodes(ExperimentConfig(episodes=str(tmp_path)), progress=False)


def test_provenance_record_by_hand():
    import platform

    from fsm2kit.records.provenance import RANDOM_NOTE, Provenance, command_line

    model = {"model": "sam2-tiny", "weights": "random weights (seed 0)", "random_weights": True,
             "fsm2kit_version": "x", "torch_version": "t", "sam2_version": "1.1.0"}
    rec = Provenance("experiment", [model], settings=["S1SFQ", "S1SFQ"], orders=["middle"],
                     memory_policies=["sam2", "sam2"], protocol_variants=["ALP"], command="fsm2kit run",
                     details={"rows": 3})
    d = rec.to_dict()
    assert json.loads(json.dumps(d)) == d and d["kind"] == "experiment" and d["command"] == "fsm2kit run"
    assert d["settings"] == ["S1SFQ"] and d["orders"] == ["middle"] and d["memory_policy"] == ["sam2"]
    assert d["protocol_variant"] == ["ALP"] and d["support_selector"] == "protocol" and d["rows"] == 3
    assert d["random_weights"] and d["note"] == RANDOM_NOTE and d["weights"] == "random weights (seed 0)"
    assert d["versions"] == {"fsm2kit": "x", "torch": "t", "sam2": "1.1.0", "python": platform.python_version()}
    assert "random weights (seed 0)" in repr(rec)
    real = Provenance("segment", [{**model, "weights": "sha256:ab", "random_weights": False}])
    assert not real.random_weights and real.note == "" and real.to_dict()["weights"] == "sha256:ab"
    assert rec.with_details({"seconds": 1.0}).to_dict()["seconds"] == 1.0
    with pytest.raises(ValueError, match="reuse"):
        Provenance("experiment", [model], details={"weights": "other"}).to_dict()
    with pytest.raises(ValueError, match="at least one model"):
        Provenance("experiment", [])
    assert command_line(["run", "--out", "a b"]) == "fsm2kit run --out 'a b'"


# ----------------------------------------------------------------------------- paper tables
def _summary():
    rows = []
    for ds, organ, setting, order, mpv, pooled in [
        ("CHAOST2", "LIVER", "1S1Q", "n/a", 0.8, 0.82),
        ("CHAOST2", "RK", "1S1Q", "n/a", 0.6, 0.61),
        ("CHAOST2", "LIVER", "S1SFQ", "middle", 0.9, 0.91),
        ("CHAOST2", "RK", "S1SFQ", "middle", 0.5, 0.52),
        ("SABS", "SPLEEN", "S1SFQ", "middle", 0.7, 0.71),
        ("SABS", "SPLEEN", "1S1Q", "n/a", 0.4, 0.45),
    ]:
        for metric, v in (("mean_per_volume", mpv), ("pooled", pooled)):
            rows.append(dict(dataset=ds, model="sam2-tiny", image_size=256, setting=setting, order=order,
                             label=0, label_name=organ, metric=metric, dice=v))
    return pd.DataFrame(rows)


def test_results_table_layout_and_mean_hand_computed():
    t = results_table(_summary(), metric="mean_per_volume")
    assert list(t.columns) == [("CHAOST2", "LIVER"), ("CHAOST2", "RK"), ("CHAOST2", "Mean"),
                               ("SABS", "SPLEEN"), ("SABS", "Mean")]  # ORGAN_ORDER, Mean last
    assert list(t.index) == [("sam2-tiny", "1S1Q", "n/a"), ("sam2-tiny", "S1SFQ", "middle")]
    assert t.loc[("sam2-tiny", "1S1Q", "n/a"), ("CHAOST2", "Mean")] == pytest.approx(0.7)  # (0.8 + 0.6) / 2
    assert t.loc[("sam2-tiny", "S1SFQ", "middle"), ("SABS", "Mean")] == pytest.approx(0.7)
    p = results_table(_summary(), metric="pooled", organs=["LIVER", "RK", "LK"])
    assert list(p["CHAOST2"].columns) == ["LIVER", "RK", "LK", "Mean"] and math.isnan(p.iloc[0][("CHAOST2", "LK")])
    assert p.loc[("sam2-tiny", "S1SFQ", "middle"), ("CHAOST2", "Mean")] == pytest.approx((0.91 + 0.52) / 2)
    r = results_table(_summary(), row_order={"setting": ["S1SFQ", "1S1Q"]})
    assert [k[1] for k in r.index] == ["S1SFQ", "1S1Q"]
    with pytest.raises(ValueError, match="lacks columns"):
        results_table(_summary().drop(columns="dataset"))
    with pytest.raises(ValueError, match="'mean_per_volume' or 'pooled'"):
        results_table(_summary(), metric="both")
    assert ORGAN_ORDER == ("SPLEEN", "LIVER", "LK", "RK")  # as the paper prints them


def test_published_baselines_are_the_papers_table1_rows():
    # read from the bundled CSV, never typed: the methods the paper compares against
    by = {(b.dataset, b.method.split(" [")[0]) for b in PUBLISHED_BASELINES}
    assert by == {("SABS", "AAS-DCL"), ("SABS", "RPT"), ("SABS", "GMRD"),
                  ("CHAOST2", "Q-Net"), ("CHAOST2", "RPT"), ("CHAOST2", "GMRD")}
    paper = paper_numbers()
    for b in PUBLISHED_BASELINES:
        rows = paper[(paper["table"] == 1) & (paper["method"] == b.method) & (paper["dataset_key"] == b.dataset)]
        assert len(rows) == 5
        for organ, v in zip(rows["organ_key"], rows["dice_percent"]):
            assert b.value(organ) == v  # equal to the CSV's cell
    bt = baseline_table(datasets=["CHAOST2"])
    assert list(bt.index) == ["Q-Net [IntelliSys' 23]", "RPT [MICCAI' 23]", "GMRD [TMI' 24]"]
    assert list(bt.columns.get_level_values(1)) == ["SPLEEN", "LIVER", "LK", "RK", "Mean"]  # as printed
    assert bt.notna().all().all()


# ----------------------------------------------------------------------------- running (SAM2)
@pytest.fixture(scope="module")
def smoke_result(tiny256):
    import torch

    cfg = ExperimentConfig(settings=["1S1Q", "S1SFQ", "3SFQ"], orders=["top", "middle"], max_slices=4,
                           name="t", **SMOKE)
    threads = torch.get_num_threads()
    result = run_experiment(cfg, models={"sam2-tiny": tiny256}, keep_predictions=True, progress=False)
    assert torch.get_num_threads() == threads  # running sets no process-wide state
    return result


@pytest.mark.slow
def test_tidy_table_one_row_per_case_class_setting_order_model_slice(smoke_result):
    s = smoke_result.slices
    assert len(s) == 4 * (1 + 2 + 2)  # 4 slices x (1S1Q, S1SFQ top/middle, 3SFQ top/middle)
    assert not s.duplicated(["case_id", "label", "setting", "order", "model", "z"]).any()
    assert set(zip(s["setting"], s["order"])) == {("1S1Q", "n/a"), ("S1SFQ", "top"), ("S1SFQ", "middle"),
                                                   ("3SFQ", "top"), ("3SFQ", "middle")}
    for col in ("tp", "fp", "fn", "gt_px", "dice", "dataset", "fold", "experiment", *PROVENANCE_COLUMNS):
        assert col in s.columns, col
    assert (s["weights"] == "random weights (seed 0)").all() and (s["checkpoint_sha256"] == "random weights").all()
    assert (s["gt_px"] == s["tp"] + s["fn"]).all()
    np.testing.assert_allclose(s["dice"], slice_dice(s["tp"], s["fp"], s["fn"]))
    assert smoke_result.random_weights and "RANDOM WEIGHTS" in smoke_result.note


@pytest.mark.slow
def test_one_encoder_pass_per_distinct_slice_per_model(smoke_result, example_episode):
    sub = subset_episode(example_episode, max_slices=4)
    distinct = {a.tobytes() for a in sub.images} | {s.image.tobytes() for s in sub.supports}
    (run,) = smoke_result.model_runs
    assert run.segment_calls == 5 and run.encoder_passes == len(distinct) == 7  # 4 queries + 3 supports


@pytest.mark.slow
def test_runner_matches_the_engine_directly(smoke_result, tiny256, example_episode):
    sub = subset_episode(example_episode, max_slices=4)
    direct = Engine(tiny256, progress=False).segment(sub, "S1SFQ", order="top").to_frame(sub.labels)
    mine = smoke_result.slices.query("setting == 'S1SFQ' and order == 'top'")
    np.testing.assert_array_equal(mine[["z", "tp", "fp", "fn"]].to_numpy(), direct[["z", "tp", "fp", "fn"]].to_numpy())
    p = smoke_result.prediction(setting="S1SFQ", order="top")
    assert p.result.setting == "S1SFQ" and p.episode.n_slices == 4
    assert len(smoke_result.select_predictions(order="middle")) == 3  # 1S1Q (no order) + 2 FQ middles
    with pytest.raises(KeyError, match="kept"):
        smoke_result.prediction(setting="3S1Q")


@pytest.mark.slow
def test_summaries_pooled_and_per_volume_hand_checked(smoke_result):
    s = smoke_result.slices
    summ = smoke_result.summary()
    assert set(summ["metric"]) == {"pooled", "mean_per_volume"} and "weights" in summ.columns
    for (setting, order), g in s.groupby(["setting", "order"]):
        tp, fp, fn = g["tp"].sum(), g["fp"].sum(), g["fn"].sum()
        expect = 2 * tp / (2 * tp + fp + fn)
        row = summ[(summ["setting"] == setting) & (summ["order"] == order)].set_index("metric")
        assert row.loc["pooled", "dice"] == pytest.approx(expect)
        assert row.loc["mean_per_volume", "dice"] == pytest.approx(expect)  # one volume: equal
        assert row.loc["pooled", "n_slices"] == 4
    vols = smoke_result.volumes()
    # every group key but "member", which only an ensemble's tables carry (fused and each member)
    assert len(vols) == 5 and set(GROUP_KEYS) - {"member"} <= set(vols.columns) and "torch_version" in vols.columns
    assert "member" not in vols.columns
    only = smoke_result.summary("pooled")
    assert set(only["metric"]) == {"pooled"}
    t = smoke_result.table("pooled")
    assert [k[1:] for k in t.index] == [("1S1Q", "n/a"), ("S1SFQ", "top"), ("S1SFQ", "middle"),
                                        ("3SFQ", "top"), ("3SFQ", "middle")]
    assert list(t.columns) == [("CHAOST2", "LIVER"), ("CHAOST2", "Mean")]


@pytest.mark.slow
def test_save_and_read_back_with_provenance(smoke_result, tmp_path):
    paths = smoke_result.save(tmp_path)
    assert sorted(p.name for p in paths.values()) == ["logits.npz", "provenance.json", "slices.csv", "summary.csv",
                                                      "volumes.csv"]
    back = read_results(tmp_path)
    assert (back["slices"]["order"] == "n/a").sum() == 4  # the 1Q order survives CSV
    pd.testing.assert_frame_equal(back["slices"][["z", "tp", "fp", "fn"]], smoke_result.slices[["z", "tp", "fp", "fn"]])
    prov = back["provenance"]
    assert prov["random_weights"] and prov["model_runs"][0]["encoder_passes"] == 7
    assert prov["models"][0]["weights"] == prov["weights"] == "random weights (seed 0)"
    assert prov["configs"][0]["settings"] == ["1S1Q", "S1SFQ", "3SFQ"] and prov["settings"] == ["1S1Q", "S1SFQ", "3SFQ"]
    assert prov["orders"] == ["n/a", "top", "middle"] and prov["command"] is None
    # the logits of every kept slice, under one key per (model, setting, order, case, class, z)
    assert len(back["logits"].files) == len(smoke_result.slices) + 1 == 21  # + "weights"
    assert str(back["logits"]["weights"]) == "random weights (seed 0)"
    p = smoke_result.prediction(setting="S1SFQ", order="top")
    s = p.result.slices[1]
    key = logits_key("sam2-tiny", "S1SFQ", "top", p.result.case_id, p.result.label, s.z)
    np.testing.assert_array_equal(back["logits"][key], s.logits)
    assert logits_key("sam2-tiny", "1S1Q", "n/a", "1", 1, 12) in back["logits"].files
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


@pytest.mark.slow
def test_format_dice_says_the_weights(smoke_result):
    text = format_dice(smoke_result)
    assert text.startswith("!" * 78) and "RANDOM WEIGHTS" in text and "random weights (seed 0)" in text
    assert "pooled" in text and "mean_per_volume" in text and "3SFQ" in text


@pytest.mark.slow
def test_given_model_must_match_image_size(tiny256):
    cfg = ExperimentConfig(settings=["S1SFQ"], max_slices=2, checkpoint="random", image_size=512)
    with pytest.raises(ValueError, match="image_size 256 but the config asks for 512"):
        run_experiment(cfg, models={"sam2-tiny": tiny256}, progress=False)


@pytest.mark.slow
def test_cache_dir_passes_through_to_the_engine(tiny256, tmp_path):
    cfg = ExperimentConfig(settings=["S1SFQ"], max_slices=1, cache_dir=str(tmp_path / "cache"), **SMOKE)
    if "cache_dir" not in inspect.signature(Engine.__init__).parameters:
        with pytest.warns(UserWarning, match="cache_dir ignored"):
            run_experiment(cfg, models={"sam2-tiny": tiny256}, progress=False)
        return
    first = run_experiment(cfg, models={"sam2-tiny": tiny256}, progress=False)
    again = run_experiment(cfg, models={"sam2-tiny": tiny256}, progress=False)
    assert first.model_runs[0].encoder_passes == 2 and again.model_runs[0].encoder_passes == 0  # 1 query + 1 support
    assert again.model_runs[0].disk_hits == 2
    pd.testing.assert_frame_equal(first.slices[["tp", "fp", "fn"]], again.slices[["tp", "fp", "fn"]])
