"""fsm2kit.strategies: registries, the four families' built-ins, plugins, entry points, `fsm2kit strategies`."""

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fsm2kit.cli import main
from fsm2kit.cli.common import Strategies, add_strategy_args, strategies_from_args
from fsm2kit.protocol.episodes import Episode, Support
from fsm2kit.engine.plans import SETTINGS, build_plans
from fsm2kit.strategies import (
    MEMORY_POLICIES,
    ORDERINGS,
    STOPPING_RULES,
    SUPPORT_SELECTORS,
    PlanOrder,
    Registry,
    SupportSelector,
    engine_arguments,
    load_plugins,
    registries,
)
from fsm2kit.strategies.registry import NamedStrategy, parse_spec
from fsm2kit.strategies.stopping import NoStop, Patience, from_patience, stop_index
from fsm2kit.strategies.plugins import PluginError, load_entry_points

from helpers import memory_entry, write_notebook

REPO = Path(__file__).resolve().parents[1]
PLUGINS = REPO / "tests" / "plugins"
DEMO = "fsm2kit_demo_strategies"


@pytest.fixture()
def demo(monkeypatch):
    """The demo plugin module, loaded (it registers bottom, first and cond_only once per process)."""
    monkeypatch.syspath_prepend(str(PLUGINS))
    assert load_plugins([DEMO]) == [DEMO]
    return sys.modules[DEMO]


def _env(**extra):
    env = {**os.environ, "TQDM_DISABLE": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env.update(extra)
    return env


# ============================================================================ the registry
def test_parse_spec():
    assert parse_spec("sam2") == ("sam2", None)
    assert parse_spec(" Patience:3 ") == ("patience", "3")
    assert parse_spec("given: 4, 9") == ("given", "4, 9")
    assert parse_spec("patience:") == ("patience", "")
    with pytest.raises(TypeError):
        parse_spec(3)


def _scratch() -> Registry:
    reg = Registry("widget", description="what a widget does", default="plain", listed=False)

    def plain(x):
        """Return x unchanged."""
        return x

    reg.register("plain", plain)
    reg.register("scale", lambda k: (lambda x: k * x), arg="K", default=2, parse=int, summary="multiply by K")
    reg.register("needs", lambda t: t.upper(), arg="TEXT", summary="an argument is required")
    return reg


def test_registry_get_names_and_arguments():
    reg = _scratch()
    assert reg.names() == ("plain", "scale", "needs") and list(reg) == ["plain", "scale", "needs"]
    assert reg.usages() == ("plain", "scale[:K]", "needs:TEXT") and len(reg) == 3
    plain = reg.get("plain")
    assert isinstance(plain, NamedStrategy) and plain.strategy_name == "plain" and plain(5) == 5
    assert reg.get("PLAIN") is plain and reg.get(None) is plain  # cached; default
    three = reg.get("scale:3")
    assert three.strategy_name == "scale:3" and three(2) == 6
    assert reg.get("scale").strategy_name == "scale:2" and reg.get("scale:")(5) == 10  # the default, recorded
    assert reg.get("needs:abc").strategy == "ABC" and reg.get("needs:abc").strategy_name == "needs:abc"
    obj = object()
    assert reg.get(obj) is obj  # a strategy object given directly passes through unchanged
    assert "scale:7" in reg and "nope" not in reg and 3 not in reg


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown widget 'nope'; registered: plain, scale[:K], needs:TEXT (fsm2kit strategies lists them"),
    ("plain:1", "widget 'plain' takes no argument, got 'plain:1'; usage: plain"),
    ("scale:x", "widget 'scale:x': bad argument 'x' (invalid literal for int() with base 10: 'x'); usage: scale[:K] "
                "(multiply by K)"),
    ("needs", "widget 'needs' needs an argument: needs:TEXT (an argument is required)"),
])
def test_registry_errors_are_one_line_and_list_names(spec, message):
    with pytest.raises(ValueError) as e:
        _scratch().get(spec)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_registry_register_rules_overwrite_and_decorator():
    reg = _scratch()
    with pytest.raises(ValueError, match="widget 'plain' is already registered .*pass overwrite=True"):
        reg.register("plain", len, summary="other")
    old = reg.get("plain")
    reg.register("plain", abs, summary="absolute value", overwrite=True)
    assert reg.get("plain") is not old and reg.get("plain")(-3) == 3  # the cache was dropped
    for bad in ("with:colon", "Has space", "1abc", ""):
        with pytest.raises(ValueError, match="is not valid"):
            reg.register(bad, abs, summary="x")
    with pytest.raises(ValueError, match="give summary"):
        reg.register("nodoc", lambda x: x)
    with pytest.raises(ValueError, match="one line"):
        reg.register("twolines", abs, summary="a\nb")
    with pytest.raises(ValueError, match="need arg="):
        reg.register("noarg", abs, summary="x", default=3)

    @reg.register("deco", summary="registered by decorator")
    def deco(x):
        return -x

    assert deco(1) == -1 and reg.get("deco")(1) == -1
    assert reg.entry("deco").origin == __name__ and reg.entry("deco:zzz").name == "deco"
    assert reg.entry("plain").summary == "absolute value"
    reg.unregister("deco")
    assert "deco" not in reg


def test_registry_describe_and_reprs():
    reg = _scratch()
    rows = reg.describe()
    assert [r["usage"] for r in rows] == ["plain", "scale[:K]", "needs:TEXT"]
    assert rows[0] == {"family": "widget", "name": "plain", "usage": "plain", "default_arg": None,
                       "summary": "Return x unchanged.", "details": "", "origin": __name__}
    assert rows[1]["default_arg"] == "2"
    assert repr(reg) == "Registry(widget: plain, scale[:K], needs:TEXT; default plain)"
    assert repr(reg.entry("scale")) == f"Entry(widget 'scale[:K]': multiply by K (from {__name__}))"
    assert repr(reg.get("plain")).startswith("<widget 'plain': ")
    assert repr(STOPPING_RULES) == "Registry(stopping rule: patience[:N], none; default patience:3)"
    assert repr(SUPPORT_SELECTORS.entry("similar")) == (
        "Entry(support selector 'similar[:MODE]': the support slice whose SAM2 image embedding is most similar to "
        "the query slices: per chunk (default; segment: to the query slice it starts from), or per query slice "
        "(similar:query) [needs the model; MODE chunk (experiments, segment) or query (experiments: 1S1Q/3S1Q)])")
    assert repr(STOPPING_RULES.get("patience:4")) == "Patience(4)" and repr(ORDERINGS.get("top")) == "PlanOrder('top')"


def test_registered_names_are_what_core_records():
    from fsm2kit.engine.memory import sam2_memory_policy
    from fsm2kit.records.naming import strategy_name

    assert MEMORY_POLICIES.get("sam2") is sam2_memory_policy and MEMORY_POLICIES.get(None) is sam2_memory_policy
    assert strategy_name(STOPPING_RULES.get("patience")) == "patience:3"
    assert strategy_name(SUPPORT_SELECTORS.get("given:4, 9")) == "given:4,9"
    assert strategy_name(ORDERINGS.get("top")) == "top"
    assert list(registries())[:4] == ["ordering", "support selector", "memory policy", "stopping rule"]


def test_one_list_of_families_and_one_vocabulary_of_orders():
    """FAMILY_MODULES is the one list: each family's module defines its registry and option, and
    the command line's options come from the registries; the engine's FQ orders are registered
    from the engine's own tuple."""
    from fsm2kit.cli.common import strategy_flags
    from fsm2kit.engine.plans import ORDERS
    from fsm2kit.strategies import FAMILY_MODULES

    regs = registries()
    assert list(regs)[:len(FAMILY_MODULES)] == list(FAMILY_MODULES)
    assert strategy_flags() == {"ordering": ("--order", "order"),
                                "support selector": ("--support-select", "support_select"),
                                "memory policy": ("--memory-policy", "memory_policy"),
                                "stopping rule": ("--stop", "stop"),
                                "refinement": ("--refine", "refine"),
                                "ensemble": ("--ensemble", "ensemble")}
    assert tuple(e.name for e in ORDERINGS.entries(plugins=False) if isinstance(e.target, PlanOrder)) == ORDERS
    # a family added later (a plugin's, here) gets its option on the commands that ask for it
    extra = Registry("polish pass", description="a pass after propagation", default="off", option="--polish")
    extra.register("off", lambda x: x, summary="no polishing")
    try:
        assert strategy_flags()["polish pass"] == ("--polish", "polish")
        p = argparse.ArgumentParser()
        add_strategy_args(p, ("polish pass",))
        s = strategies_from_args(p.parse_args(["--polish", "off"]))
        assert s.get("polish pass").strategy_name == "off" and s.names() == {"polish": "off"}
        from fsm2kit.cli.strategies import format_strategies

        assert "polish pass (--polish, default off): a pass after propagation" in format_strategies()
    finally:
        from fsm2kit.strategies import registry

        registry._ALL.pop("polish pass", None)


# ============================================================================ orderings
def _episode(m=7, npart=3, chunks_with_support=(0, 1, 2)):
    rng = np.random.default_rng(0)
    z = np.arange(10, 10 + m)
    chunks = np.minimum(np.arange(m) * npart // m, npart - 1)
    mask = np.zeros((8, 8), bool)
    mask[2:5, 2:5] = True
    sups = tuple(Support(rng.random((8, 8), dtype=np.float32), mask, c, z=20 + c) for c in chunks_with_support)
    return Episode("q1", 6, "LIVER", z, rng.random((m, 8, 8), dtype=np.float32), None, chunks, sups, npart=npart)


@pytest.mark.parametrize("setting", SETTINGS)
@pytest.mark.parametrize("order", ["middle", "top"])
def test_builtin_orderings_give_build_plans(setting, order):
    ep = _episode()
    plans = ORDERINGS.get(order)(setting, ep)
    assert plans == build_plans(setting, chunks=list(ep.chunks), support_chunks=[0, 1, 2], npart=3, order=order)
    assert engine_arguments(order, setting, ep) == {"order": order}
    assert ORDERINGS.get(None) == PlanOrder("middle")


def test_user_ordering_gives_custom_plans(demo):
    ep = _episode()
    bottom = ORDERINGS.get("bottom")
    assert bottom.strategy_name == "bottom" and ORDERINGS.entry("bottom").origin == DEMO
    (plan,) = bottom("3SFQ", ep)
    assert plan.query_order == (6, 5, 4, 3, 2, 1, 0) and [i for _, i in plan.support_frames] == [0, 1, 2]
    args = engine_arguments("bottom", "S1SFQ", ep)
    assert list(args) == ["plans"] and [i for _, i in args["plans"][0].support_frames] == [1]
    assert engine_arguments(bottom, "1S1Q", ep)["plans"] == build_plans("1S1Q", chunks=list(ep.chunks),
                                                                         support_chunks=[0, 1, 2])


# ============================================================================ support selectors
def _support_labels():
    """Label 2 on z 2..11 (n = 10) with a known area per slice; label 5 elsewhere."""
    lab = np.zeros((13, 6, 6), np.int32)
    areas = {2: 4, 3: 9, 4: 6, 5: 2, 6: 12, 7: 5, 8: 3, 9: 20, 10: 20, 11: 1}
    for z, a in areas.items():
        lab[z].flat[:a] = 2
    lab[0, 0, 0] = lab[12, 5, 5] = 5
    return lab


def test_builtin_selectors_by_hand():
    lab = _support_labels()
    # L = z 2..11, n = 10; protocol: L[int(pct * 10)], pct = 1/6, 1/2, 5/6 -> L[1], L[5], L[8]
    assert SUPPORT_SELECTORS.get("protocol")(lab, 2, 3) == [3, 7, 10]
    assert SUPPORT_SELECTORS.get(None).strategy_name == "protocol"
    # chunks of L: positions [0,3), [3,6), [6,10): middles L[1], L[4], L[8]
    assert SUPPORT_SELECTORS.get("middle")(lab, 2, 3) == [3, 6, 10]
    # largest area per chunk: z 2..4 -> 3 (9); z 5..7 -> 6 (12); z 8..11 -> 9 (20, the lower z of a tie)
    assert SUPPORT_SELECTORS.get("largest")(lab, 2, 3) == [3, 6, 9]
    # one chunk: what fsm2kit segment takes (the middle organ slice L[n // 2]; the largest over the organ)
    assert SUPPORT_SELECTORS.get("middle")(lab, 2, 1) == [7]
    assert SUPPORT_SELECTORS.get("largest")(lab, 2, 1) == [9]
    assert SUPPORT_SELECTORS.get("given:4")(lab, 2, 3) == [4, 4, 4]
    assert SUPPORT_SELECTORS.get("given:3,7,10")(lab, 2, 3) == [3, 7, 10]
    # an organ on 2 slices, 3 chunks: positions [0,0), [0,1), [1,2); the empty chunk 0 takes the
    # protocol's slice L[int(2/6)] = L[0]
    tiny = np.zeros((5, 4, 4), np.int32)
    tiny[1, 0, 0] = tiny[2, :2, :2] = 1
    assert SUPPORT_SELECTORS.get("middle")(tiny, 1, 3) == [1, 1, 2]
    assert SUPPORT_SELECTORS.get("largest")(tiny, 1, 3) == [1, 1, 2]
    assert SUPPORT_SELECTORS.get("protocol")(tiny, 1, 3) == [1, 2, 2]


def test_selectors_for_segment_and_their_contracts():
    lab = _support_labels()
    get = SUPPORT_SELECTORS.get
    # fsm2kit segment's slices (as before the one path): L[n // 2]; the largest area over the organ; the
    # protocol's npart slices; given slices as given
    for name, zs in (("middle", [7]), ("largest", [9]), ("protocol", [3, 7, 10])):
        assert get(name).volume_slices(lab, 2, npart=3) == zs, name
    assert get("given:4,9").volume_slices(lab, 2) == [4, 9]
    similar = get("similar")
    assert similar.needs_model and similar.serves == ("experiments", "segment")
    assert get("similar:query").serves == ("experiments",) and "a whole-volume propagation" in \
        get("similar:query").refusal("segment")
    with pytest.raises(ValueError, match="support selector 'similar:query' chooses a support per query slice"):
        get("similar:query").volume_slices(lab, 2)
    assert get("protocol").serves == ("episodes", "experiments", "segment")
    with pytest.raises(ValueError, match="it needs a model: run_experiment and fsm2kit segment choose it"):
        similar(lab, 2, 3)
    with pytest.raises(ValueError, match="needs the engine"):
        similar.volume_slices(lab, 2)
    for spec, message in [
        ("given:1", "returned slice 1, where class 2 is not drawn"),
        ("given:3,7", "names 2 slices for 3 chunks"),
        ("given:30", "outside the support's 13 slices"),
    ]:
        with pytest.raises(ValueError, match=message):
            get(spec)(lab, 2, 3)
    with pytest.raises(ValueError, match="bad argument 'a,b'"):
        get("given:a,b")
    with pytest.raises(ValueError, match="absent from the support scan"):
        get("middle")(lab, 7, 3)


def test_user_selectors_are_wrapped_and_checked(demo):
    lab = _support_labels()
    first = SUPPORT_SELECTORS.get("first")
    assert isinstance(first, SupportSelector) and first.strategy_name == "first"
    assert first(lab, 2, 3) == [2, 5, 8] and first.volume_slices(lab, 2, npart=1) == [2]
    SUPPORT_SELECTORS.register("two_xyz", lambda lab, label_id, npart: [3, 4], summary="always two slices")
    try:
        assert isinstance(SUPPORT_SELECTORS.get("two_xyz"), SupportSelector)
        with pytest.raises(ValueError, match="'two_xyz' returned 2 slices \\[3, 4\\] for 3 chunks"):
            SUPPORT_SELECTORS.get("two_xyz")(lab, 2, 3)
    finally:
        SUPPORT_SELECTORS.unregister("two_xyz")


# ============================================================================ memory policies
def _bank():
    from fsm2kit.engine.memory import MemoryBank

    bank = MemoryBank(10)
    bank.add(3, memory_entry(True, 0, size=(2, 2)))
    for f in (4, 5, 6):
        bank.add(f, memory_entry(False, f, size=(2, 2)))
    return bank


def test_memory_policies(demo):
    from fsm2kit.engine.memory import MemorySettings, check_selection, sam2_memory_policy

    bank, settings = _bank(), MemorySettings()
    sam2 = MEMORY_POLICIES.get("sam2")
    assert sam2 is sam2_memory_policy
    full = sam2(bank, 7, reverse=False, settings=settings)
    assert full.frames == (3, 4, 5, 6)
    cond_only = MEMORY_POLICIES.get("cond_only")
    assert cond_only.strategy_name == "cond_only" and MEMORY_POLICIES.entry("cond_only").origin == DEMO
    sel = check_selection(cond_only(bank, 7, reverse=False, settings=settings), bank, settings)
    assert sel.frames == (3,) and all(p.is_cond for p in sel.pointers)


# ============================================================================ stopping rules
def test_patience_rule_by_hand():
    rule = STOPPING_RULES.get("patience:3")
    assert rule == Patience(3) and STOPPING_RULES.get(None) == Patience(3)
    assert not rule([2.0, -1.0, -1.0])
    assert rule([2.0, -1.0, -1.0, -1.0])
    assert rule([-1.0, 0.0, float("nan")])  # 0 and NaN are "absent" (SAM2: present iff > 0)
    assert not rule([-1.0, -1.0, 0.5])
    assert not rule([])
    scores = [1.0, -2.0, 3.0, -1.0, -1.0, -0.5, -3.0, 2.0]
    assert stop_index(rule, scores) == 5 and rule.absent_from(scores) == 3
    assert stop_index(STOPPING_RULES.get("patience:1"), scores) == 1
    none = STOPPING_RULES.get("none")
    assert isinstance(none, NoStop) and none.patience is None and stop_index(none, scores) is None
    assert from_patience(0) is none and from_patience(None) is none and from_patience(4) == Patience(4)
    with pytest.raises(ValueError, match="patience:0.*N >= 1; 'none' runs through the whole volume"):
        STOPPING_RULES.get("patience:0")


def test_user_stopping_rule_is_any_callable_of_the_scores():
    from fsm2kit.strategies import register_stopping_rule, stopping_rule

    @register_stopping_rule("after_two_xyz", summary="stop after two steps, whatever the scores")
    def after_two(scores):
        return len(scores) >= 2

    try:
        rule = STOPPING_RULES.get("after_two_xyz")
        assert rule.strategy_name == "after_two_xyz" and stop_index(rule, [5.0, 5.0, 5.0]) == 1
        assert stopping_rule("after_two_xyz") is rule and stopping_rule(None) == Patience(3)
        assert stopping_rule(patience=0) is STOPPING_RULES.get("none") and stopping_rule(patience=2) == Patience(2)
        with pytest.raises(ValueError, match="not both"):
            stopping_rule("none", patience=3)
    finally:
        STOPPING_RULES.unregister("after_two_xyz")


# ============================================================================ plugins
def test_plugin_module_registers_once_and_by_path(demo):
    assert ("bottom" in ORDERINGS) and ("first" in SUPPORT_SELECTORS) and ("cond_only" in MEMORY_POLICIES)
    assert load_plugins([DEMO]) == [DEMO]  # already imported: nothing registered twice
    assert load_plugins([str(PLUGINS / f"{DEMO}.py")]) == [DEMO]
    assert load_plugins(None) == [] and load_plugins([]) == []


def test_plugin_errors_name_the_module(tmp_path, monkeypatch):
    with pytest.raises(PluginError, match="plugin module 'no_such_plugin_xyz' not found"):
        load_plugins(["no_such_plugin_xyz"])
    (tmp_path / "broken_plugin_xyz.py").write_text("import no_such_dependency_xyz\n")
    (tmp_path / "raising_plugin_xyz.py").write_text("raise RuntimeError('bad\\nregistration')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError, match="plugin module 'broken_plugin_xyz' failed to import: ModuleNotFoundError"):
        load_plugins(["broken_plugin_xyz"])
    with pytest.raises(PluginError) as e:
        load_plugins(["raising_plugin_xyz"])
    assert str(e.value) == "plugin module 'raising_plugin_xyz' failed to import: RuntimeError: bad registration"
    with pytest.raises(PluginError, match="plugin file 'nowhere/x.py' not found"):
        load_plugins(["nowhere/x.py"])
    with pytest.raises(PluginError, match="neither a module name"):
        load_plugins(["not a module"])
    assert isinstance(PluginError("x"), ValueError)  # the CLI prints it as one line


def _dist(tmp_path, value):
    (tmp_path / "fsm2kit_ep_demo.py").write_text(textwrap.dedent("""
        from fsm2kit.strategies import register_stopping_rule

        def register():
            register_stopping_rule("ep_never", lambda scores: False, summary="never stops (entry-point demo)")
        """))
    info = tmp_path / "fsm2kit_ep_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fsm2kit-ep-demo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[fsm2kit.strategies]\n{value}\n")


def test_entry_points_load_lazily_on_first_read(tmp_path):
    """In a fresh process: nothing loads at import; the first read loads every entry point once;
    a broken one warns, is listed by plugin_errors and named in unknown-name messages."""
    _dist(tmp_path, "ep_demo = fsm2kit_ep_demo:register\nep_broken = fsm2kit_no_such_module_xyz")
    code = textwrap.dedent("""
        import sys, warnings
        import fsm2kit.strategies.stopping as st
        from fsm2kit.strategies.plugins import load_entry_points, plugin_errors
        assert "fsm2kit_ep_demo" not in sys.modules          # importing a registry loads nothing
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = st.STOPPING_RULES.names()                # the first read loads the entry points
        print(names, st.STOPPING_RULES.entry("ep_never").origin, st.STOPPING_RULES.get("ep_never")([-1.0] * 9))
        print([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
        print(plugin_errors(), load_entry_points(reload=True))
        try:
            st.STOPPING_RULES.get("nope")
        except ValueError as e:
            print(e)
        """)
    env = _env(PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    names, warned, errors, unknown = out.stdout.strip().splitlines()
    assert names == "('patience', 'none', 'ep_never') fsm2kit_ep_demo False"
    broken = "entry point ep_broken = fsm2kit_no_such_module_xyz: ModuleNotFoundError"
    assert broken in warned and broken in errors and errors.endswith(" []")  # each entry point once
    assert unknown.startswith("unknown stopping rule 'nope'; registered: patience[:N], none, ep_never")
    assert f"plugins that failed to load: {broken}" in unknown


def test_entry_points_reload_in_this_process(tmp_path, monkeypatch):
    _dist(tmp_path, "ep_demo = fsm2kit_ep_demo:register")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert load_entry_points(reload=True) == ["ep_demo"]
        assert "ep_never" in STOPPING_RULES and STOPPING_RULES.entry("ep_never").origin == "fsm2kit_ep_demo"
        assert load_entry_points(reload=True) == []  # each one once
        assert load_entry_points() == []
    finally:
        if "ep_never" in STOPPING_RULES:
            STOPPING_RULES.unregister("ep_never")


# ============================================================================ the command line
def test_fsm2kit_strategies_lists_every_family_one_line_each(capsys, demo):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out.splitlines()
    regs = registries()
    assert len(out) == len(regs) + sum(len(r) for r in regs.values()) + 1  # + the support views line
    assert out[-1].startswith("support views (--support-views N, default 0)")
    assert out[0].startswith("ordering (--order, default middle): how the query slices are processed")
    assert any(line.startswith("stopping rule (--stop, default patience:3): ") for line in out)
    assert any(line.split()[:1] == ["patience[:N]"] for line in out)
    assert any(line.strip().startswith("given:Z1,Z2,...") and line.endswith("[episodes, segment]") for line in out)
    assert any(line.strip().startswith("cond_only") and line.endswith(f"[from {DEMO}]") for line in out)


def test_fsm2kit_strategies_with_plugins_in_a_fresh_process():
    env = _env(PYTHONPATH=os.pathsep.join([str(PLUGINS), str(REPO)]))
    out = subprocess.run([sys.executable, "-m", "fsm2kit.cli", "strategies", "--plugins", DEMO], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bottom" in out.stdout and f"[from {DEMO}]" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "fsm2kit.cli", "strategies", "--plugins", "nope_xyz"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0
    assert bad.stderr.startswith("fsm2kit strategies: error: plugin module 'nope_xyz' not found")


def test_strategy_args_resolve_after_plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    p = argparse.ArgumentParser()
    add_strategy_args(p, ("ordering", "support selector", "memory policy", "stopping rule"),
                      defaults={"support selector": "middle"})
    helps = {a.dest: a.help for a in p._actions}
    assert "middle, top" in helps["order"] and "given:Z1,Z2,..." in helps["support_select"]
    assert "(default patience:3)" in helps["stop"]
    args = p.parse_args([])
    assert (args.order, args.support_select, args.memory_policy, args.stop, args.plugins) == (
        "middle", "middle", "sam2", "patience:3", [])
    s = strategies_from_args(p.parse_args(["--order", "bottom", "--memory-policy", "cond_only", "--stop", "none",
                                           "--plugins", DEMO, "--support-select", "given:3,7,10"]))
    assert isinstance(s, Strategies) and s.plugins == (DEMO,)
    assert s.names() == {"order": "bottom", "support_select": "given:3,7,10", "memory_policy": "cond_only",
                         "stop": "none", "plugins": [DEMO]}
    with pytest.raises(ValueError, match="^unknown memory policy 'nope'; registered: sam2"):
        strategies_from_args(p.parse_args(["--memory-policy", "nope"]))
    only = argparse.ArgumentParser()
    add_strategy_args(only, ("memory policy",))
    assert strategies_from_args(only.parse_args([])).names() == {"memory_policy": "sam2"}
    # a family left to the command's own default (None) resolves to None
    unset = argparse.ArgumentParser()
    add_strategy_args(unset, ("ordering", "stopping rule"), defaults={"ordering": None, "stopping rule": None},
                      notes={"ordering": "default: the command's own"})
    helps = {a.dest: a.help for a in unset._actions}
    assert "(default: the command's own)" in helps["order"] and "(default patience:3)" in helps["stop"]
    s = strategies_from_args(unset.parse_args([]))
    assert s.ordering is None and s.stopping is None and s.names() == {}
    with pytest.raises(ValueError, match="unknown families"):
        add_strategy_args(argparse.ArgumentParser(), ("widget",))


def test_cli_unknown_strategy_fails_in_one_line_before_any_model(capsys):
    sub = argparse.ArgumentParser(prog="fsm2kit").add_subparsers(dest="command")
    p = sub.add_parser("demo")
    add_strategy_args(p)
    args = p.parse_args(["--order", "sideways"])
    with pytest.raises(ValueError) as e:
        strategies_from_args(args)
    assert str(e.value).startswith("unknown ordering 'sideways'; registered: middle, top") and "\n" not in str(e.value)


def test_cli_parser_and_strategies_import_no_torch():
    code = textwrap.dedent("""
        import sys
        import fsm2kit, fsm2kit.cli
        from fsm2kit.cli import build_parser, main
        build_parser()
        import argparse
        from fsm2kit.cli.common import add_strategy_args
        add_strategy_args(argparse.ArgumentParser(), ("ordering", "support selector", "memory policy", "stopping rule"))
        heavy = sorted(m for m in ("torch", "pandas", "nibabel", "numpy") if m in sys.modules)
        assert not heavy, heavy
        assert main(["strategies"]) == 0
        heavy = sorted(m for m in ("torch", "pandas", "nibabel") if m in sys.modules)
        assert not heavy, heavy
        """)
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


# ============================================================================ sweeps with plugins
@pytest.fixture()
def plugin_notebook(tmp_path):
    """A light notebook that loads its plugins and records what the kernel sees."""
    return write_notebook(
        tmp_path / "nb" / "plug.ipynb",
        'x = 1\nplugins = []\noutput_dir = "."',
        textwrap.dedent("""
            import json, os
            from pathlib import Path
            from fsm2kit.strategies import MEMORY_POLICIES, ORDERINGS, load_plugins
            loaded = load_plugins(plugins)
            Path(output_dir, "seen.json").write_text(json.dumps({
                "loaded": loaded, "policy": MEMORY_POLICIES.get("cond_only").strategy_name,
                "ordering": ORDERINGS.get("bottom").strategy_name,
                "tqdm": os.environ.get("TQDM_DISABLE"), "cwd": os.getcwd()}))
            """),
    )


def test_sweep_plugins_are_validated_and_passed_as_a_parameter(tmp_path, plugin_notebook):
    from fsm2kit.batch import collect_index, load_sweep

    d = plugin_notebook.parent
    (d / "local_plugin.py").write_text("")
    p = d / "s.yaml"
    p.write_text(f"notebook: plug.ipynb\ngrid: {{x: [1, 2]}}\nplugins: [{DEMO}, local_plugin.py]\n")
    sw = load_sweep(p)
    assert sw.plugins == (DEMO, str((d / "local_plugin.py").resolve()))
    assert repr(sw).endswith(f"plugins {list(sw.plugins)})")
    run = sw.runs(tmp_path / "reports")[0]
    assert run.parameters == {"x": 1, "output_dir": "."}  # the grid and fixed parameters ...
    assert run.notebook_parameters == {"x": 1, "output_dir": ".", "plugins": list(sw.plugins)}  # ... + plugins
    index = collect_index(sw, tmp_path / "reports")
    assert list(index["plugins"]) == [" ".join(sw.plugins)] * 2
    for text, message in [
        ("plugins: fsm2kit_demo_strategies\n", "must be a list of module names or .py files"),
        ("plugins: [1]\n", "must be a list"),
        ("plugins: ['not a module']\n", "neither a module name"),
        ("plugins: [missing.py]\n", "plugin file 'missing.py' not found"),
        ("parameters: {plugins: [a]}\n", "give plugins as the top-level key"),
    ]:
        p.write_text(f"notebook: plug.ipynb\n{text}")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            load_sweep(p)


def test_sweep_plugins_need_a_notebook_that_takes_them(tmp_path):
    from fsm2kit.batch import load_sweep

    write_notebook(tmp_path / "n.ipynb", "x = 1")
    (tmp_path / "s.yaml").write_text(f"notebook: n.ipynb\nplugins: [{DEMO}]\n")
    with pytest.raises(ValueError, match="has no 'plugins' parameter; add plugins = \\[\\] there"):
        load_sweep(tmp_path / "s.yaml")


@pytest.mark.slow
def test_execute_run_passes_plugins_and_leaves_the_worker_environment_alone(tmp_path, plugin_notebook, monkeypatch):
    from fsm2kit.batch.sweep_spec import DONE_MARKER
    from fsm2kit.batch.sweep_runs import execute_run
    from fsm2kit.batch import load_sweep

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    p = plugin_notebook.parent / "s.yaml"
    p.write_text(f"name: plug\nnotebook: plug.ipynb\ngrid: {{x: [1]}}\nplugins: [{PLUGINS / (DEMO + '.py')}]\n"
                 "export_html: false\n")
    (spec,) = load_sweep(p).runs(tmp_path / "reports")
    env_before, cwd_before = dict(os.environ), os.getcwd()
    out = execute_run(spec)
    assert out.status == "done", out.error
    assert dict(os.environ) == env_before and os.getcwd() == cwd_before  # no process-wide side effect
    seen = json.loads((spec.folder / "seen.json").read_text())
    assert seen == {"loaded": [DEMO], "policy": "cond_only", "ordering": "bottom", "tqdm": "1",
                    "cwd": seen["cwd"]}
    assert Path(seen["cwd"]).name.startswith("x=1.tmp-")  # the kernel ran in the run's folder
    done = json.loads((spec.folder / DONE_MARKER).read_text())
    assert done["plugins"] == [str(PLUGINS / (DEMO + ".py"))]
