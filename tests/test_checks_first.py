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
Item 4: ``prepare`` refuses OUT_DIR inside RAW_DIR                     test_prepare_refuses_an_output_inside_its_input
Item 4: disk full / permission denied name the path and the fix        test_disk_full_and_permission_errors_name_the_path_and_the_fix
Item 4: CLI words to the CLI, Python words to Python                   test_messages_speak_cli_words_to_the_cli
Item 4: a checkpoint without a ``model`` entry                         test_checkpoint_without_a_model_entry_says_so
Item 4: a 2D NIfTI; a constant query volume (warning)                  test_2d_nifti_and_constant_query_say_what_is_wrong
Item 2: ``segment --support-select similar:query`` refused, with why   test_segment_refuses_similar_query_with_its_reason
Item 2: ``segment --order from:0.25``: the sidecar's order and start   test_segment_sidecar_records_the_order_and_start_that_ran
=====================================================================  ==========================================================================

Elsewhere: the inspector's means (test_inspect.py: test_mean_shares_count_an_absent_group_as_zero_and_sum_to_one),
the ``corrected`` column and the ``weights`` entry of logits.npz (test_prompts.py, test_cli.py, test_runner.py),
``start_z`` (test_strategies_axes.py), IPC kernels (test_batch.py), the light install and slices/s bars
(test_install.py).
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


# ----------------------------------------------------------------------------- item 4: messages
def test_prepare_refuses_an_output_inside_its_input(tmp_path, capsys):
    raw = tmp_path / "RAW"
    (raw / "img").mkdir(parents=True)
    for out, word in ((raw, "is the raw download"), (raw / "prepared", "lies inside the raw download")):
        assert main(["prepare", "synapse", str(raw), str(out)]) == 2
        line = _line(capsys, "prepare")
        assert word in line and "RAW_DIR" in line and "OUT_DIR" in line
    assert sorted(p.name for p in raw.iterdir()) == ["img"]  # nothing written into the download
    from fsm2kit.io.preparation import prepare_synapse

    with pytest.raises(ValueError, match="out_dir .* lies inside the raw download raw_dir"):
        prepare_synapse(raw, raw / "prepared")


def test_disk_full_and_permission_errors_name_the_path_and_the_fix(tmp_path):
    import errno

    from fsm2kit.records.fileio import atomic_folder, atomic_write

    def full(tmp):
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on the disk of .*out.csv.*Free space") as e:
        atomic_write(tmp_path / "out.csv", full)
    assert e.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())

    def denied(tmp):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp))

    with pytest.raises(PermissionError, match=r"Cannot write .*run: Permission denied.*fix the permissions"):
        atomic_folder(tmp_path / "run", lambda d: denied(d))
    assert not list(tmp_path.iterdir())


def test_messages_speak_cli_words_to_the_cli(tmp_path, no_model, capsys):
    import json

    from conftest import EXAMPLE_NPZ as eps

    p = tmp_path / "p.json"
    p.write_text(json.dumps([[{"z": 15, "points": [[3, 3, 1]]}]]))
    cases = [
        (["run", "--episodes", str(eps), "--setting", "1S1Q", "--prompts", str(p)], "--prompts", "--setting S1SFQ"),
        (["run", "--episodes", str(eps), "--setting", "S1SFQ", "--support-select", "similar:query"],
         "--support-select similar:query", "--support-select similar"),
        (["inspect", "--setting", "S1SFQ", "--support-select", "similar:query"], "--support-select similar", ""),
        (["run", "--episodes", str(eps), "--setting", "S1SFQ", "--support-views", "9"], "--support-views 9", ""),
    ]
    for argv, *words in cases:
        argv = [*argv, "--checkpoint", "random", "--image-size", "128", "--out", str(tmp_path / "o")]
        assert main(argv) == 2, argv
        line = _line(capsys, argv[0])
        assert all(w in line for w in words) and "ExperimentConfig" not in line and "=True" not in line, line
    from fsm2kit.segment.segment_result import check_output

    (tmp_path / "pred.nii.gz").write_bytes(b"x")
    with pytest.raises(FileExistsError, match=r"pass overwrite=True"):
        check_output(tmp_path / "pred.nii.gz")
    with pytest.raises(FileExistsError, match=r"pass --overwrite to"):
        check_output(tmp_path / "pred.nii.gz", cli=True)


def test_checkpoint_without_a_model_entry_says_so(tmp_path):
    from fsm2kit.model.loading import load_sam2
    from fsm2kit.model.specs import CheckpointError

    ck = tmp_path / "ck.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, ck)
    with pytest.raises(CheckpointError, match=r"has no 'model' entry .*'state_dict', 'epoch'.*entry 'state_dict' "
                                              r"holds weights"):
        load_sam2("sam2-tiny", ck, image_size=128, device="cpu")


def test_2d_nifti_and_constant_query_say_what_is_wrong(tmp_path, capsys):
    import nibabel as nib
    import numpy as np

    from fsm2kit.io.nifti import squeeze_to_3d
    from fsm2kit.segment.own_scan import constant_volume_note

    with pytest.raises(ValueError, match=r"a 2D image of shape \(8, 8\), not a volume") as e:
        squeeze_to_3d(np.zeros((8, 8)), "slice.nii.gz")
    assert "4D" not in str(e.value)
    assert "is constant (every voxel 0)" in constant_volume_note(np.zeros((3, 4, 4)), "the query")
    assert constant_volume_note(np.arange(8).reshape(2, 2, 2), "the query") is None
    # the CLI: a 2D NIfTI is one line before the model; an all-zero query a warning before the model
    from fsm2kit.io.examples import example_dir

    ct = example_dir() / "totalseg_ct_small"
    img = nib.load(ct / "example_ct_sm.nii.gz")
    flat = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), flat)
    base = ["segment", "--support-image", str(ct / "example_ct_sm.nii.gz"), "--support-mask",
            str(ct / "example_seg.nii.gz"), "--labels", "liver=5", "--checkpoint", "random", "--image-size", "128",
            "--no-progress", "--out", str(tmp_path / "o.nii.gz")]
    assert main([*base, "--image", str(flat)]) == 2
    assert "2D image" in _line(capsys, "segment")
    zero = tmp_path / "zero.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(img.shape, np.float32), img.affine), zero)
    import fsm2kit.model.loading as loading

    def refuse(*a, **k):
        raise RuntimeError("model loading refused by the test")

    loading_orig = loading.load_sam2
    try:
        loading.load_sam2 = refuse
        assert main([*base, "--image", str(zero)]) == 1  # the checks passed (a warning only)
    finally:
        loading.load_sam2 = loading_orig
    err = capsys.readouterr().err
    assert "WARNING: --image" in err and "is constant (every voxel 0)" in err


# ----------------------------------------------------------------------------- item 2: what ran
def _segment_argv(out, *extra):
    from fsm2kit.io.examples import example_dir

    ct = example_dir() / "totalseg_ct_small"
    return ["segment", "--image", str(ct / "example_ct_sm.nii.gz"), "--support-image", str(ct / "example_ct_sm.nii.gz"),
            "--support-mask", str(ct / "example_seg.nii.gz"), "--labels", "liver=5", "--checkpoint", "random",
            "--image-size", "128", "--device", "cpu", "--no-progress", "--out", str(out), *extra]


def test_segment_refuses_similar_query_with_its_reason(tmp_path, no_model, capsys):
    assert main(_segment_argv(tmp_path / "p.nii.gz", "--support-select", "similar:query")) == 2
    assert "chooses a support per query slice" in _line(capsys, "segment") and not os.listdir(tmp_path)


@pytest.mark.slow
def test_segment_sidecar_records_the_order_and_start_that_ran(tmp_path, capsys):
    import json

    assert main(_segment_argv(tmp_path / "p.nii.gz", "--order", "from:0.25")) == 0
    from fsm2kit.segment.segment_result import sidecar_path

    side = json.loads(sidecar_path(tmp_path / "p.nii.gz").read_text())
    assert side["orders"] == ["from:0.25"] and side["options"]["order"] == "from:0.25"
    (label,) = side["labels"]
    assert label["start"] == side["options"]["start"] == 7  # 30 slices: floor(0.25 * 29 + 0.5)
