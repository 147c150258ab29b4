"""Shared bits of the benchmark scripts (not part of the library)."""

from __future__ import annotations

import os
import platform
import resource
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")

import torch

from fsm2kit import __version__


def header(title: str, threads: int) -> str:
    return (
        f"# {title}\n# machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only'}; "
        f"torch {torch.__version__}, fsm2kit {__version__}, {threads} threads; "
        f"{time.strftime('%Y-%m-%d %H:%M')}; random weights (speed only)"
    )


def random_model(name: str, image_size: int | None, device: str | None = None):
    from fsm2kit.model import load_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return load_sam2(name, "random", image_size=image_size, device=device, progress=False)


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Timer:
    def __enter__(self):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.seconds = time.perf_counter() - self.t


class StepTimer:
    """Engine observer: ``steps`` is a list of (seconds, request) for every tracking step, a forward's
    wall time shared equally by the requests it ran (``engine.observe(StepTimer())``)."""

    def __init__(self) -> None:
        self.steps: list[tuple[float, object]] = []
        self._t = 0.0

    def before_forward(self, requests, layouts) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self._t = time.perf_counter()

    def after_forward(self, requests, outputs) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        dt = (time.perf_counter() - self._t) / len(requests)
        self.steps.extend((dt, r) for r in requests)


def per_size(ap, values: list[int], sizes: list[int], flag: str) -> list[int]:
    """One value of a per-size option for each image size (one number: every size)."""
    if len(values) not in (1, len(sizes)):
        ap.error(f"{flag}: give one number or one per size ({len(sizes)})")
    return values * len(sizes) if len(values) == 1 else values


def encoded_engine(model_name: str, size: int, n_slices: int):
    """(engine, episode): a random-weights model's engine (one step per forward) with every slice of a
    :func:`synthetic_volume` of ``n_slices`` encoded up front, so that timings are tracking only."""
    from fsm2kit.engine import Engine

    engine = Engine(random_model(model_name, size), progress=False, object_batch_size=1)
    ep = synthetic_volume(n_slices)
    with Timer() as enc:
        engine.encode_all([s.image for s in ep.supports] + list(ep.images))
    print(f"# {size} px: {n_slices} slices encoded in {enc.seconds:.1f} s (not counted below)", flush=True)
    return engine, ep


def synthetic_volume(length: int):
    """An episode of ``length`` distinct slices: the bundled CHAOS slices repeated with small
    perturbations, its supports, and protocol-like chunks (speed benchmarks only)."""
    import numpy as np

    from fsm2kit.io.examples import example_episodes
    from fsm2kit.protocol.episodes import Episode

    (ep,) = example_episodes()
    rng = np.random.default_rng(0)
    reps = int(np.ceil(length / ep.n_slices))
    images = np.concatenate([ep.images + rng.normal(0, 1e-3, ep.images.shape).astype(np.float32)
                             for _ in range(reps)])[:length]
    labels = np.concatenate([ep.labels] * reps)[:length]
    chunks = np.minimum(3 * np.arange(length) // max(length - 1, 1), 2)
    return Episode("synthetic", ep.label, ep.label_name, np.arange(length), images, labels, chunks, ep.supports)
