"""Issue 25, item 3 (and the messages of item 4): everything checkable is checked before the model
loads, with exit 2, one line and the option's name. Loading a model fails these tests (``no_model``).

=====================================================================  ==========================================================================
Item                                                                   Test
=====================================================================  ==========================================================================
``run``/``inspect --order at:Z`` outside the query's z range           test_order_at_z_outside_the_query_is_refused_first
``inspect --pixel Y X`` outside the slices                             test_inspect_pixel_and_layers_are_checked_first
``inspect --layers`` beyond the model's memory-attention layers        test_inspect_pixel_and_layers_are_checked_first
``--device cuda`` / ``mps`` where there is none                        test_device_seed_and_image_size_are_checked_first
``--seed`` out of range                                                test_device_seed_and_image_size_are_checked_first
``--image-size`` above 2048 / not a multiple of 64                     test_device_seed_and_image_size_are_checked_first
``run/inspect --setting 1S1Q --order top``: refused, never dropped     test_order_with_a_1q_setting_is_refused
=====================================================================  ==========================================================================
"""

from __future__ import annotations

import os

import pytest
import torch

from fsm2kit.cli import main

from conftest import EXAMPLE_NPZ


def _run(out, *extra):
    return ["run", "--episodes", str(EXAMPLE_NPZ), "--setting", "S1SFQ", "--checkpoint", "random",
            "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def _inspect(out, *extra):
    return ["inspect", "--setting", "S1SFQ", "--checkpoint", "random", "--image-size", "128", "--device", "cpu",
            "--no-progress", "--out", str(out), *extra]


def _line(capsys, command: str) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert err and err[-1].startswith(f"fsm2kit {command}: error: "), err
    assert sum(ln.startswith("fsm2kit ") for ln in err) == 1 and not any("Traceback" in ln for ln in err), err
    return err[-1]


def _refused(argv, capsys, tmp_path, *words):
    cmd = argv[0]
    assert main(argv) == 2, argv
    line = _line(capsys, cmd)
    for w in words:
        assert w in line, (w, line)
    assert os.listdir(tmp_path) == [], "nothing written"
    return line


def test_order_at_z_outside_the_query_is_refused_first(tmp_path, no_model, capsys):
    for argv in (_run(tmp_path / "o", "--order", "at:999"), _inspect(tmp_path / "o", "--order", "at:999")):
        _refused(argv, capsys, tmp_path, "--order at:999", "z 12..35")


def test_inspect_pixel_and_layers_are_checked_first(tmp_path, no_model, capsys):
    _refused(_inspect(tmp_path / "o", "--pixel", "999", "999"), capsys, tmp_path, "--pixel 999 999", "256 x 256")
    _refused(_inspect(tmp_path / "o", "--pixel", "-1", "3"), capsys, tmp_path, "--pixel -1 3")
    _refused(_inspect(tmp_path / "o", "--layers", "9"), capsys, tmp_path, "--layers 9", "4 layers")


def test_order_with_a_1q_setting_is_refused(tmp_path, no_model, capsys):
    for argv in (_run(tmp_path / "o", "--order", "top"), _inspect(tmp_path / "o", "--order", "top")):
        argv[argv.index("S1SFQ")] = "1S1Q"
        _refused(argv, capsys, tmp_path, "--order top does not apply to 1S1Q")


@pytest.mark.parametrize("extra, words", [
    (("--seed", "99999999999999999999"), ("--seed 99999999999999999999", "2**63")),
    (("--seed", "-1"), ("--seed -1",)),
    (("--image-size", "99999936"), ("--image-size 99999936", "to 2048")),
    (("--image-size", "1000"), ("--image-size 1000", "multiples of 64")),
    (("--device", "cuda"), ("--device cuda", "--device cpu")),
    (("--device", "mps"), ("--device mps", "--device cpu")),
])
def test_device_seed_and_image_size_are_checked_first(tmp_path, no_model, capsys, extra, words):
    if extra == ("--device", "cuda") and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    mps = getattr(torch.backends, "mps", None)
    if extra == ("--device", "mps") and mps is not None and mps.is_available():
        pytest.skip("this machine has MPS")
    for argv in (_run(tmp_path / "o", *extra), _inspect(tmp_path / "o", *extra)):
        _refused(argv, capsys, tmp_path, *words)


def test_python_api_checks_speak_python(no_model):
    """The same checks from Python name the keyword, not the option."""
    from fsm2kit.model.specs import check_image_size, check_seed, memory_attention_layers

    with pytest.raises(ValueError, match=r"seed must be an integer from 0 to 2\*\*63 - 1"):
        check_seed(2 ** 64)
    with pytest.raises(ValueError, match="image_size must be a multiple of 64 from 128 to 2048"):
        check_image_size(4096)
    assert memory_attention_layers("sam2-tiny") == 4 and memory_attention_layers("sam2.1-large") == 4
    from fsm2kit.studies.run_inspection import inspect_run

    with pytest.raises(ValueError, match=r"pixel=\(y, x\) 999 999"):
        inspect_run(setting="S1SFQ", checkpoint="random", image_size=128, pixel=(999, 999))
    with pytest.raises(ValueError, match="layers= 7"):
        inspect_run(setting="S1SFQ", checkpoint="random", image_size=128, layers=[7])
