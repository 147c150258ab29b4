"""The memory-inspector notebook in a real browser: JupyterLab + Debian's Chromium via Playwright.

Starts JupyterLab on 127.0.0.1 (random free port, a token, news and autosave off) serving a
parameterised copy of ``notebooks/05_memory_inspector.ipynb`` (random weights with the object-score
head shifted so masks are not empty, saved as a checkpoint; 256 px, a few slices), runs all cells (``runmenu:run-all``), moves the slice slider and checks that the
displayed query slice, the attention panel and the status line change; clicks on the query
slice and checks that the pixel changes; then, in the correction widget, moves to another slice,
clicks a positive point, re-propagates and checks that the slice's mask (its predicted pixels),
the slice image and the attention-mass chart change; while the round runs the widget is busy (a
spinner and a count of slices, the buttons disabled) and a click made meanwhile is pending after
it (status, list and drawing agree). The 3D / three-plane NiiVue view (WebGL through SwiftShader)
is checked by a screenshot: its canvas shows the coloured label overlay over the grey scan.
Screenshots go to ``tests/artifacts/``.

Skipped where ``/usr/bin/chromium`` or playwright is missing (``scripts/install_browser.sh``
installs Chromium; never ``playwright install``). CI installs Chromium, so it runs there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "05_memory_inspector.ipynb"
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [  # WebGL (NiiVue) through software rendering: SwiftShader, no GPU
    "--no-sandbox", "--use-angle=swiftshader", "--use-gl=angle", "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def _skip_reason() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"no browser at {CHROMIUM} (install it with: bash scripts/install_browser.sh)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; never `playwright install`)"
    try:
        import jupyterlab  # noqa: F401
        import papermill  # noqa: F401
    except ImportError:
        return "jupyterlab / papermill not installed (pip install -e .[notebooks])"
    return None


pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.skipif(_skip_reason() is not None, reason=str(_skip_reason()))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _present_checkpoint(path: Path) -> Path:
    """Random sam2-tiny weights (seed 0) with the object-score head shifted by +4, saved in the released
    format: random weights alone call every object absent (empty masks), so a correction could not
    change a mask. Loaded by the notebook through the real checkpoint path."""
    import warnings

    import torch

    from fsm2kit.model import load_sam2
    from fsm2kit.model.loading import save_checkpoint

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        model = load_sam2("sam2-tiny", "random", seed=0, image_size=256, device="cpu", progress=False)
    head = model.module.sam_mask_decoder.pred_obj_score_head
    lin = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        lin.bias += 4.0
    return save_checkpoint(model, path)


def _prepare(tmp: Path) -> Path:
    """A parameterised copy of the notebook (papermill prepare_only: parameters injected, not run)."""
    import papermill as pm

    out = tmp / "work" / NOTEBOOK.name
    out.parent.mkdir(parents=True)
    ckpt = _present_checkpoint(tmp / "sam2_tiny_random_present.pt")
    pm.execute_notebook(
        str(NOTEBOOK), str(out), kernel_name="python3", prepare_only=True, progress_bar=False,
        parameters={"checkpoint": str(ckpt), "image_size": 256, "max_slices": 5, "setting": "S1SFQ",
                    "order": "middle", "output_dir": str(tmp / "out")},
    )
    return out


def _settings(tmp: Path) -> Path:
    """User settings: no news, no update checks, no autosave, and every cell kept in the page
    (``windowingMode: none``; JupyterLab 4 otherwise detaches cells outside the viewport, so a widget
    below the fold would never be found, whatever the outputs above it add up to on a machine)."""
    d = tmp / "settings"
    (d / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (d / "@jupyterlab" / "docmanager-extension").mkdir(parents=True)
    (d / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (d / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    (d / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    (d / "@jupyterlab" / "docmanager-extension" / "plugin.jupyterlab-settings").write_text(
        json.dumps({"autosave": False}))
    return d


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer {url} within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def lab(tmp_path):
    nb = _prepare(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ)
    env.update(
        JUPYTERLAB_SETTINGS_DIR=str(_settings(tmp_path)),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        TQDM_DISABLE="1",
    )
    log = tmp_path / "lab.log"
    cmd = [
        sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        "--allow-root", f"--IdentityProvider.token={token}", "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
        f"--ServerApp.root_dir={nb.parent}", "--ServerApp.open_browser=False",
    ]
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=nb.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{base}/api/status?token={token}", proc, log)
        yield base, token, nb
    finally:
        try:  # clean shutdown: the server stops its kernels
            req = urllib.request.Request(f"{base}/api/shutdown?token={token}", method="POST", data=b"")
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=20)
        except Exception:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _diagnose(page, errors: list[str]) -> str:
    """What the page shows when a wait fails: kernel status, each cell's prompt, the last error and
    stderr outputs, page errors; a full-page screenshot goes to tests/artifacts/inspector_failure.png."""
    try:
        page.screenshot(path=str(ARTIFACTS / "inspector_failure.png"), full_page=True)
    except Exception:
        pass
    try:
        state = page.evaluate("""() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            const cells = w && w.content ? w.content.widgets.map(c => c.model.type === 'code'
                ? String(c.model.executionCount ?? '-') : 'md') : [];
            return {kernel: k ? k.status : 'none', cells: cells.join(' ')}; }""")
    except Exception as exc:
        state = {"kernel": f"? ({exc})", "cells": "?"}
    try:
        outs = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    except Exception:
        outs = []
    return (f"kernel {state['kernel']}; execution counts by cell: {state['cells']}; "
            f"last stderr/error outputs: {[o[-600:] for o in outs[-2:]]}; page errors: {errors[-3:]}")


def _src(page, selector: str) -> str:
    return page.locator(selector).first.get_attribute("src") or ""


def _status_changed(page, selector: str, text: str, timeout: float = 240_000) -> None:
    page.wait_for_function(
        "([sel, t]) => { const s = document.querySelector(sel); return s && s.innerText !== t; }",
        arg=[selector, text], timeout=timeout)


def _correct_and_repropagate(page) -> dict:
    """Move to the next slice, click a positive point, re-propagate: the slice and the mass chart change."""
    status = page.locator(".fsm2-corr-status").first
    page.wait_for_function(
        "() => { const s = document.querySelector('.fsm2-corr-status'); return s && s.innerText.includes('1 round(s) done'); }",
        timeout=240_000)
    page.wait_for_function(
        "() => { const i = document.querySelector('img.fsm2-corr-chart'); return i && i.naturalWidth > 0; }",
        timeout=60_000)
    widget = page.locator(".fsm2-corrector").first
    widget.scroll_into_view_if_needed()
    text = status.inner_text()
    handle = page.locator(".fsm2-corr-slider .noUi-handle").first
    handle.focus()
    handle.press("ArrowRight")  # another slice than the example round's (the left one if it is the last)
    try:
        _status_changed(page, ".fsm2-corr-status", text, timeout=5_000)
    except Exception:
        handle.press("ArrowLeft")
        _status_changed(page, ".fsm2-corr-status", text)
    page.wait_for_timeout(500)
    before = dict(text=status.inner_text(), query=_src(page, ".fsm2-corr-query img"),
                  chart=_src(page, "img.fsm2-corr-chart"), areas=_src(page, "img.fsm2-corr-areas"))
    shots = {"corrector_before": ARTIFACTS / "corrector_before.png"}
    widget.screenshot(path=str(shots["corrector_before"]))
    img = page.locator(".fsm2-corr-query img").first
    box = img.bounding_box()
    img.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.5})
    page.wait_for_function(
        "() => { const s = document.querySelector('.fsm2-corr-status'); return s && s.innerText.includes('1 pending'); }",
        timeout=60_000)
    pending = page.locator(".fsm2-corr-pending").first.inner_text()
    assert "z=" in pending and "+(" in pending, pending
    page.locator("button.fsm2-corr-repropagate").first.click()
    # busy: a spinner with a count of slices, the buttons disabled; a click now waits for the next round
    page.wait_for_selector(".fsm2-corr-busy .fsm2-corr-count", timeout=60_000)
    assert page.locator("button.fsm2-corr-undo").first.is_disabled()
    shots["corrector_busy"] = ARTIFACTS / "corrector_busy.png"
    widget.screenshot(path=str(shots["corrector_busy"]))
    img.click(position={"x": box["width"] * 0.4, "y": box["height"] * 0.4})
    page.wait_for_function(
        "() => { const s = document.querySelector('.fsm2-corr-status'); return s && s.innerText.includes('2 round(s) done'); }",
        timeout=240_000)
    page.wait_for_function(  # the click made during the round: pending now, listed and counted
        "() => { const s = document.querySelector('.fsm2-corr-status'); return s && s.innerText.includes('1 pending'); }",
        timeout=60_000)
    assert page.locator(".fsm2-corr-busy").count() == 0 and not page.locator("button.fsm2-corr-undo").first.is_disabled()
    assert "+(" in page.locator(".fsm2-corr-pending").first.inner_text()
    text = status.inner_text()
    page.locator("button.fsm2-corr-clear").first.click()
    _status_changed(page, ".fsm2-corr-status", text, timeout=60_000)
    page.wait_for_timeout(1000)
    after = dict(text=status.inner_text(), query=_src(page, ".fsm2-corr-query img"),
                 chart=_src(page, "img.fsm2-corr-chart"), areas=_src(page, "img.fsm2-corr-areas"))
    shots["corrector_after"] = ARTIFACTS / "corrector_after.png"
    widget.screenshot(path=str(shots["corrector_after"]))
    assert "0 pending" in after["text"] and after["text"].count(",") > before["text"].count(","), (before, after)
    assert before["query"] != after["query"], "the corrected slice did not change"
    px = [re.search(r"predicted (\d+) px", t["text"]) for t in (before, after)]
    assert px[0] and px[1] and px[0].group(1) != px[1].group(1), ("the corrected slice's mask did not change",
                                                                  before["text"], after["text"])
    assert before["chart"] != after["chart"], "the attention-mass chart did not change"
    assert before["areas"] != after["areas"], "the masks-along-z chart did not change"
    # box mode: a drag on the slice becomes a pending box
    page.locator(".fsm2-corr-mode button", has_text="box").first.click()
    box = img.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "() => { const s = document.querySelector('.fsm2-corr-pending'); return s && s.innerText.includes('box ('); }",
        timeout=60_000)
    return shots


def _volume_view(page) -> Path:
    """The NiiVue view (notebook 05's 3D / three-plane cell): its canvas draws the label overlay."""
    import io

    import numpy as np
    from PIL import Image

    view = page.locator(".fsm2-volume-view").first
    view.scroll_into_view_if_needed()
    canvas = view.locator("canvas").first
    canvas.wait_for(state="visible", timeout=120_000)
    shot = ARTIFACTS / "volume_view.png"
    coloured = 0
    for _ in range(30):  # NiiVue draws once the volumes are loaded
        page.wait_for_timeout(1000)
        canvas.screenshot(path=str(shot))
        rgb = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")).astype(int)
        spread = rgb.max(axis=2) - rgb.min(axis=2)
        orange = (rgb[..., 0] > rgb[..., 2] + 60) & (rgb[..., 1] > rgb[..., 2] + 20)  # the prediction's hue
        grey = (spread < 12) & (rgb.max(axis=2) > 30)  # the scan
        coloured = int(orange.sum())
        if coloured > 30 and grey.sum() > 1000:
            return shot
    raise AssertionError(f"the NiiVue view shows no label overlay ({coloured} orange pixels); see {shot}")


def test_inspector_in_jupyterlab(lab):
    from playwright.sync_api import sync_playwright

    base, token, nb = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/lab/tree/{nb.name}?token={token}", wait_until="domcontentloaded")
            n_cells = len(json.loads(nb.read_text())["cells"])
            # the notebook fully loaded and its kernel idle (through the app, exposed for tests)
            page.wait_for_function(
                """(n) => { const app = window.jupyterapp; if (!app) return false;
                    const w = app.shell.currentWidget;
                    if (!w || !w.context || !w.sessionContext || !w.content) return false;
                    const s = w.sessionContext.session; const k = s && s.kernel;
                    return w.context.isReady && k && k.status === 'idle' && w.content.widgets.length === n; }""",
                arg=n_cells, timeout=120_000)
            # Run All (not awaited: the command resolves only when every cell has run)
            page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); return true; }")
            # the widget appears in the last cell once everything above has run
            status = page.locator(".fsm2-status").first
            try:
                status.wait_for(state="visible", timeout=240_000)
                page.wait_for_function(
                    "() => { const s = document.querySelector('.fsm2-status'); return s && s.innerText.includes('z='); }",
                    timeout=60_000)
                page.wait_for_function(
                    "() => { const i = document.querySelector('.fsm2-memories'); return i && i.naturalWidth > 0; }",
                    timeout=60_000)
            except Exception as exc:
                # a short message without the traceback: CI shows only the tail of the log
                pytest.fail(f"the inspector widget did not render ({type(exc).__name__}); "
                            + _diagnose(page, errors), pytrace=False)
            widget = page.locator(".fsm2-inspector").first
            widget.scroll_into_view_if_needed()
            before = dict(text=status.inner_text(), query=_src(page, ".fsm2-query img"),
                          memories=_src(page, "img.fsm2-memories"), chart=_src(page, "img.fsm2-chart"))
            shots["before"] = ARTIFACTS / "inspector_before.png"
            widget.screenshot(path=str(shots["before"]))
            mem_before = page.locator("img.fsm2-memories").first.screenshot()

            # move the slider one slice to the right (keyboard on the noUiSlider handle)
            handle = page.locator(".fsm2-slider .noUi-handle").first
            handle.focus()
            handle.press("ArrowRight")
            page.wait_for_function(
                "(t) => { const s = document.querySelector('.fsm2-status'); return s && s.innerText !== t; }",
                arg=before["text"], timeout=60_000)
            page.wait_for_function(
                "(src) => { const i = document.querySelector('img.fsm2-memories'); return i && i.src !== src && i.naturalWidth > 0; }",
                arg=before["memories"], timeout=60_000)
            page.wait_for_timeout(300)
            after = dict(text=status.inner_text(), query=_src(page, ".fsm2-query img"),
                         memories=_src(page, "img.fsm2-memories"), chart=_src(page, "img.fsm2-chart"))
            shots["after"] = ARTIFACTS / "inspector_after.png"
            widget.screenshot(path=str(shots["after"]))
            mem_after = page.locator("img.fsm2-memories").first.screenshot()
            assert "slice #0" in before["text"] and "slice #1" in after["text"], (before["text"], after["text"])
            assert before["query"] != after["query"], "the displayed query slice did not change"
            assert before["memories"] != after["memories"], "the attention panel did not change"
            assert mem_before != mem_after, "the attention panel looks the same after moving the slider"

            # click on the query slice: the pixel follows the click
            img = page.locator(".fsm2-query img").first
            box = img.bounding_box()
            img.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.75})
            page.wait_for_function(
                "(t) => { const s = document.querySelector('.fsm2-status'); return s && s.innerText !== t; }",
                arg=after["text"], timeout=60_000)
            clicked = status.inner_text()
            m = re.search(r"pixel y=(\d+) x=(\d+)", clicked)
            assert m, clicked
            # clicked at (0.75, 0.25) of the displayed 256 px slice: display (192, 64); the CHAOST2 slice is
            # shown flipped up-down (radiological: anterior up), so the stored pixel is about (255 - 192, 64)
            assert abs(int(m.group(1)) - 63) <= 2 and abs(int(m.group(2)) - 64) <= 2, clicked
            shots["page"] = ARTIFACTS / "inspector_page.png"
            page.screenshot(path=str(shots["page"]), full_page=False)

            # correct and re-propagate: the corrector starts with the notebook's example round
            try:
                shots.update(_correct_and_repropagate(page))
            except AssertionError:
                raise
            except Exception as exc:
                pytest.fail(f"the correction widget did not answer ({type(exc).__name__}: {str(exc)[:200]}); "
                            + _diagnose(page, errors), pytrace=False)
            shots["volume_view"] = _volume_view(page)
            assert not [e for e in errors if "fsm2" in e.lower()], errors
        finally:
            browser.close()
    for path in shots.values():
        assert path.stat().st_size > 10_000, path
    print("screenshots:", ", ".join(str(p.relative_to(REPO)) for p in shots.values()))
