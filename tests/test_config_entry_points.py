"""One config object for every entry point: ``ExperimentConfig`` (plus overrides) reaches
``run_study``, ``run_strategy_study``, ``inspect_run`` and ``segment_volume``, and gives what the
same strategies given as keywords give (bit-equal: the same operations in the same order)."""

from __future__ import annotations

import numpy as np
import pytest

from fsm2kit.engine import Engine
from fsm2kit.run import ExperimentConfig
from fsm2kit.segment import segment_volume
from fsm2kit.strategies import MEMORY_POLICIES
from fsm2kit.studies import inspect_run


# ----------------------------------------------------------------------------- the config itself
def test_replace_and_from_parameters():
    c = ExperimentConfig()
    r = c.replace(setting="3SFQ", order="top", model="sam2-small", fold=1, label="liver")
    assert (r.settings, r.models, r.folds, r.classes) == (("3SFQ",), ("sam2-small",), (1,), ("liver",))
    assert [o.strategy_name if hasattr(o, "strategy_name") else o for o in r.orders] == ["top"]
    assert c.settings == ("S1SFQ",)  # a copy: the original is unchanged (frozen)
    with pytest.raises(TypeError, match="no field 'nosuch'.*settings"):
        c.replace(nosuch=1)
    with pytest.raises(TypeError, match="given twice"):
        c.replace(setting="1S1Q", settings=["3S1Q"])
    # a notebook's globals: fields and their singular spellings are taken, the rest ignored
    params = {"setting": "S1SFQ", "order": "middle", "model": "sam2-tiny", "checkpoint": "random",
              "image_size": 128, "n_panels": 4, "output_dir": "x", "In": [], "get_ipython": print}
    f = ExperimentConfig.from_parameters(params, max_slices=3)
    assert (f.checkpoint, f.image_size, f.max_slices, f.models) == ("random", 128, 3, ("sam2-tiny",))
    with pytest.raises(TypeError, match="no field 'n_panel'"):
        ExperimentConfig.from_parameters(params, n_panel=1)
    with pytest.raises(ValueError, match="Unknown setting .9S9Q."):
        ExperimentConfig.from_parameters({"setting": "9S9Q"})


def test_entry_points_refuse_what_does_not_apply(tmp_path):
    with pytest.raises(ValueError, match="orders has 2 values"):
        inspect_run(ExperimentConfig(orders=["top", "middle"]), engine=lambda: pytest.fail("loaded"))
    with pytest.raises(TypeError, match="config is an ExperimentConfig"):
        inspect_run({"setting": "S1SFQ"})
    from fsm2kit.studies import run_strategy_study

    with pytest.raises(ValueError, match="one model per study"):
        run_strategy_study("x", ExperimentConfig(models=["sam2-tiny", "sam2-small"]), output_dir=tmp_path)
    vol = np.zeros((4, 8, 8), np.float32)
    with pytest.raises(ValueError, match="one propagation has one start"):
        segment_volume(vol, vol, vol.astype(np.uint8), engine=None, config=ExperimentConfig(orders=["top", "middle"]))


# ----------------------------------------------------------------------------- same result either way
@pytest.mark.slow
def test_segment_volume_config_equals_keywords(tiny128):
    from fsm2kit.io.examples import example_ct

    ct = example_ct()
    lab = ct.labels.array
    z = np.nonzero((lab == 5).any(axis=(1, 2)))[0]
    sub = ct.array[z.min():z.min() + 6]
    lab6 = lab[z.min():z.min() + 6]
    kw = dict(labels="liver=5", patience=None, progress=False)
    config = ExperimentConfig(support_selector="largest", orders=["top"], memory_policy="recent:2")
    a = segment_volume(sub, sub, lab6, engine=Engine(tiny128, progress=False), config=config, **kw)
    b = segment_volume(sub, sub, lab6, engine=Engine(tiny128, progress=False), support_select="largest",
                       order="top", memory_policy=MEMORY_POLICIES.get("recent:2"), **kw)
    pa, pb = a.organs[0].propagation, b.organs[0].propagation
    assert a.organs[0].support_z == b.organs[0].support_z and pa.start == pb.start == 0
    np.testing.assert_array_equal(pa.logits, pb.logits)
    assert a.options["support_select"] == "largest" and a.options["order"] == "top"
    assert a.options["memory_policy"] == b.options["memory_policy"] == "recent:2"
    # a keyword overrides the config
    c = segment_volume(sub, sub, lab6, engine=Engine(tiny128, progress=False), config=config, order="middle", **kw)
    assert c.options["order"] == "middle" and c.organs[0].propagation.start != 0


@pytest.mark.slow
def test_inspect_run_config_equals_keywords(tiny128):
    config = ExperimentConfig(orders=["top"], memory_policy="recent:2", max_slices=4)
    a = inspect_run(config, engine=Engine(tiny128, progress=False))
    b = inspect_run(setting="S1SFQ", order="top", memory_policy="recent:2", max_slices=4,
                    engine=Engine(tiny128, progress=False))
    assert a.result.order == b.result.order == "top"
    for sa, sb in zip(a.result.slices, b.result.slices):
        np.testing.assert_array_equal(sa.logits, sb.logits)
    assert a.masses.equals(b.masses)


def test_engine_takes_strategy_objects_and_says_how_to_get_them(tiny128, example_episode):
    """The engine sits below the registries: a name is refused with the registry call that resolves it."""
    eng = Engine(tiny128, progress=False)
    with pytest.raises(TypeError, match=r"MEMORY_POLICIES.get\('recent:3'\)"):
        eng.segment(example_episode, "S1SFQ", memory_policy="recent:3")
    with pytest.raises(ValueError, match=r"ORDERINGS.get\('from:0.3'\)"):
        eng.segment(example_episode, "S1SFQ", order="from:0.3")
