"""A user's ordering, memory policy and stopping rule, from one plugin file, at every entry point.

The plugin file (written once per module, in a temporary folder) registers, through the public
``register_ordering``, ``register_memory_policy`` and ``register_stopping_rule``:

* ordering ``plug_descending``: the supports, then the query slices from the last to the first;
* memory policy ``plug_cond``: the conditioning (support) memories only;
* stopping rule ``plug_one_step``: stop a direction after its first slice.

``fsm2kit run``, ``fsm2kit segment`` and ``fsm2kit inspect`` take it with ``--plugins FILE`` and name
the strategies in what they write. Bad specs are one line, exit 2, before any model loads. The
model is the session's random sam2-tiny at 128 px (``tiny128``), handed to every command in place
of loading one.
"""

from __future__ import annotations

import json
import textwrap

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from fsm2kit.cli import main

from conftest import EXAMPLE_NPZ, REPO

CT = REPO / "data" / "examples" / "totalseg_ct_small"
SMALL = ["--checkpoint", "random", "--image-size", "128", "--device", "cpu", "--no-progress"]
PLUGIN = textwrap.dedent('''
    """Test plugin: one ordering, one memory policy, one stopping rule."""
    from fsm2kit.engine.plans import build_plans, custom_plan
    from fsm2kit.strategies import register_memory_policy, register_ordering, register_stopping_rule


    @register_ordering("plug_descending", summary="supports first, then the query slices in descending z")
    def descending(setting, episode):
        if not setting.upper().endswith("FQ"):
            return build_plans(setting, chunks=[int(c) for c in episode.chunks],
                               support_chunks=[s.chunk for s in episode.supports], npart=episode.npart)
        n = len(episode.z)
        mid = episode.npart // 2
        sup = [i for i, s in enumerate(episode.supports) if setting.upper() != "S1SFQ" or s.chunk == mid]
        return [custom_plan(range(n - 1, -1, -1), sup, n)]


    @register_memory_policy("plug_cond", summary="the conditioning (support) memories and pointers only")
    def plug_cond(bank, frame_idx, *, reverse, settings):
        from fsm2kit.engine.memory import MemorySelection

        sel = bank.select(frame_idx, reverse=reverse, settings=settings)
        return MemorySelection(sel.frame_idx, sel.reverse, tuple(r for r in sel.spatial if r.is_cond),
                               tuple(p for p in sel.pointers if p.is_cond), sel.max_obj_ptrs)


    @register_stopping_rule("plug_one_step", summary="stop a direction after its first slice")
    def one_step(scores):
        return len(scores) >= 1
    ''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin file; its strategies are unregistered afterwards (the registries are process-wide,
    and other tests list them)."""
    import sys

    from fsm2kit.strategies import MEMORY_POLICIES, ORDERINGS, STOPPING_RULES

    path = tmp_path_factory.mktemp("plugins") / "fsm2kit_test_entry_point_plugin.py"
    path.write_text(PLUGIN)
    yield str(path)
    for registry, name in ((ORDERINGS, "plug_descending"), (MEMORY_POLICIES, "plug_cond"),
                           (STOPPING_RULES, "plug_one_step")):
        if name in registry.names(plugins=False):
            registry.unregister(name)
    for module in [m for m in sys.modules if "fsm2kit_test_entry_point_plugin" in m]:
        del sys.modules[module]


@pytest.fixture
def shared_model(monkeypatch, tiny128):
    """Every command gets the session's random 128 px model instead of loading one."""
    import fsm2kit.model.loading as loading

    monkeypatch.setattr(loading, "load_sam2", lambda *a, **k: tiny128)
    return tiny128


@pytest.fixture
def no_model(monkeypatch):
    import fsm2kit.model.loading as loading

    def refuse(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(loading, "load_sam2", refuse)


@pytest.fixture(scope="module")
def query_ct(tmp_path_factory):
    """8 slices (z 11..18) of the bundled CT as a query scan of its own (same world positions)."""
    img = nib.load(CT / "example_ct_sm.nii.gz")
    shift = np.eye(4)
    shift[2, 3] = 11  # the file's third axis is z (the sidecar says so)
    path = tmp_path_factory.mktemp("query") / "ct_z11_18.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:, :, 11:19], img.affine @ shift), path)
    return path


def _run_argv(out, *extra):
    return ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "3SFQ", *SMALL, "--out", str(out), *extra]


def _segment_argv(query, out, *extra):
    return ["segment", "--image", str(query), "--support-image", str(CT / "example_ct_sm.nii.gz"),
            "--support-mask", str(CT / "example_seg.nii.gz"), "--labels", "liver=5", *SMALL, "--out", str(out),
            *extra]


def _inspect_argv(out, *extra):
    return ["inspect", "--setting", "3SFQ", "--max-slices", "3", "--layers", "0", "--panels", "1", "--no-verify",
            *SMALL, "--out", str(out), *extra]


# ----------------------------------------------------------------------------- the three commands
@pytest.mark.slow
def test_run_takes_the_users_ordering_and_memory_policy(plugin, shared_model, tmp_path):
    out = tmp_path / "run"
    assert main(_run_argv(out, "--plugins", plugin, "--order", "plug_descending", "--memory-policy", "plug_cond")) == 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["orders"] == ["plug_descending"] and prov["memory_policy"] == ["plug_cond"]
    assert prov["configs"][0]["plugins"] == [plugin]
    slices = pd.read_csv(out / "slices.csv")
    assert set(slices["order"]) == {"plug_descending"} and set(slices["memory_policy"]) == {"plug_cond"}
    assert (slices["n_memories"] == 3).all()  # the 3 supports, no prediction
    first = slices.sort_values("step").iloc[0]
    assert int(first["z"]) == int(slices["z"].max())  # descending: the last query slice first


@pytest.mark.slow
def test_segment_is_stopped_by_the_users_rule(plugin, shared_model, query_ct, tmp_path):
    def processed(name, *extra):
        assert main(_segment_argv(query_ct, tmp_path / name / "pred.nii.gz", "--plugins", plugin, *extra)) == 0
        return json.loads((tmp_path / name / "pred.nii.gz.json").read_text())

    whole = processed("none", "--stop", "none")
    mine = processed("mine", "--stop", "plug_one_step", "--memory-policy", "plug_cond")
    (w,), (m,) = whole["labels"], mine["labels"]
    assert w["stop"] == "none" and len(w["processed_z"]) == 8  # every slice of the query
    assert m["stop"] == "plug_one_step" and mine["options"]["stop"] == "plug_one_step"
    assert "plug_one_step" in mine["options"]["stopping_rule"] and mine["memory_policy"] == ["plug_cond"]
    # one slice forward, one backward, and the support's own slice (z 15 of the CT is query slice 4)
    assert len(m["processed_z"]) == 3 < len(w["processed_z"]) and m["echo_z"] == [4]
    assert m["stop_forward_z"] is not None and m["stop_backward_z"] is not None


@pytest.mark.slow
def test_inspect_takes_the_users_ordering_and_memory_policy(plugin, shared_model, tmp_path):
    out = tmp_path / "insp"
    assert main(_inspect_argv(out, "--plugins", plugin, "--order", "plug_descending",
                              "--memory-policy", "plug_cond")) == 0
    meta = json.loads((out / "inspect.json").read_text())
    assert meta["kind"] == "inspect" and meta["orders"] == ["plug_descending"]
    assert meta["memory_policy"] == ["plug_cond"] and meta["support_selector"] == "protocol"
    layouts = pd.read_csv(out / "layouts.csv")
    assert not layouts.empty


# ----------------------------------------------------------------------------- bad specs
@pytest.mark.parametrize("command, extra, words", [
    ("run", ["--order", "nosuch"], "unknown ordering 'nosuch'"),
    ("run", ["--memory-policy", "nosuch"], "unknown memory policy 'nosuch'"),
    ("segment", ["--stop", "nosuch"], "unknown stopping rule 'nosuch'"),
    ("segment", ["--order", "nosuch"], "unknown ordering 'nosuch'"),
    ("segment", ["--stop", "none", "--patience", "2"], "not both"),
    ("segment", ["--stop", "patience:0"], "N >= 1"),
    ("segment", ["--order", "plug_descending"], "not a start position"),
    ("segment", ["--support-select", "similar:query"], "chooses a support per query slice"),
    ("inspect", ["--order", "nosuch"], "unknown ordering 'nosuch'"),
    ("inspect", ["--memory-policy", "nosuch"], "unknown memory policy 'nosuch'"),
    ("inspect", ["--support-select", "middle"], "npz episode dump"),
    ("inspect", ["--support-select", "similar:query"], "chooses a support per query slice"),
])
def test_bad_specs_are_one_line_exit_2_before_any_model(command, extra, words, plugin, no_model, query_ct, tmp_path,
                                                        capsys):
    out = tmp_path / "o"
    argv = {"run": lambda: _run_argv(out, "--plugins", plugin, *extra),
            "segment": lambda: _segment_argv(query_ct, out / "pred.nii.gz", "--plugins", plugin, *extra),
            "inspect": lambda: _inspect_argv(out, "--plugins", plugin, *extra)}[command]()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and err[0].startswith(f"fsm2kit {command}: error: "), err
    assert not out.exists()


def test_the_plugins_strategies_are_listed(plugin, capsys):
    assert main(["strategies", "--plugins", plugin]) == 0
    text = capsys.readouterr().out
    for name in ("plug_descending", "plug_cond", "plug_one_step"):
        assert f"[from fsm2kit_test_entry_point_plugin]" in next(line for line in text.splitlines() if name in line)
