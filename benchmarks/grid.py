"""The 4-setting grid of one model: one engine (encode once) vs four separate runs.

S1SFQ-top, S1SFQ-middle, 1S1Q and 3S1Q on the bundled CHAOS case. "Separate" starts each
setting with a fresh engine (as four separate scripts would); "grid" runs all four on one
engine, so every slice is encoded once.

    python benchmarks/grid.py [--image-size 1024] [--model sam2-tiny]
"""

from __future__ import annotations

import argparse

import torch

from _common import Timer, header, random_model
from fsm2kit.io.examples import example_episodes
from fsm2kit.engine import Engine

GRID = [("S1SFQ", "top"), ("S1SFQ", "middle"), ("1S1Q", "middle"), ("3S1Q", "middle")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = random_model(args.model, args.image_size)
    (ep,) = example_episodes()
    rows = []
    separate_passes = 0
    with Timer() as t_sep:
        for setting, order in GRID:
            eng = Engine(model, progress=False)
            with Timer() as t:
                eng.segment(ep, setting, order=order)
            separate_passes += eng.stats.encoder_passes
            rows.append((f"separate {setting}-{order}", eng.stats.encoder_passes, t.seconds))
    grid = Engine(model, progress=False)
    with Timer() as t_grid:
        for setting, order in GRID:
            grid.segment(ep, setting, order=order)
    print(header(f"4-setting grid, {args.model}, image_size {args.image_size}, bundled case", args.threads))
    print(f"{'run':<32} {'encoder passes':>15} {'wall s':>9}")
    for name, n, s in rows:
        print(f"{name:<32} {n:>15} {s:>9.1f}")
    print(f"{'four separate runs (total)':<32} {separate_passes:>15} {t_sep.seconds:>9.1f}")
    print(f"{'one engine, all four':<32} {grid.stats.encoder_passes:>15} {t_grid.seconds:>9.1f}")
    print(f"speed-up: {t_sep.seconds / t_grid.seconds:.2f}x")


if __name__ == "__main__":
    main()
