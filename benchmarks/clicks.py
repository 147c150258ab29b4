"""What ``fsm2kit run --simulate-clicks K`` costs on the bundled CHAOS case, against the plain run.

Runs the bundled case (24 query slices, S1SFQ middle) through the one runner twice with a
random-weights model (speed only), fresh engines both times so both encode every slice once: the
plain run, then the click benchmark with K clicks and an unreachable target (so all K rounds
run). Prints the wall times, the time per round from ``clicks.csv`` (round 0: the propagation;
each click: SAM2's refinement on the clicked slice and a re-propagation) and the ratio.

    python benchmarks/clicks.py [--size 256] [--clicks 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from _common import Timer, header, random_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from fsm2kit.run.config import ExperimentConfig
    from fsm2kit.run.runner import run_experiments

    print(header(f"clicks.py: --simulate-clicks {args.clicks} at {args.size} px, bundled case, S1SFQ middle",
                 args.threads))
    model = random_model("sam2-tiny", args.size)
    base = ExperimentConfig(checkpoint="random", image_size=args.size, settings=("S1SFQ",))
    with Timer() as plain:
        run_experiments(base, models={model.name: model}, progress=False)
    with Timer() as clicked:
        res = run_experiments(base.replace(simulate_clicks=args.clicks, click_target=1.0),
                              models={model.name: model}, progress=False)
    t = res.clicks_table()
    rounds = t[t["click"] > 0]["seconds"].tolist()
    print("| image size | run | wall s | propagation s | s per click round (median) | clicks | ratio |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.size} | plain S1SFQ | {plain.seconds:.1f} | | | 0 | |")
    print(f"| {args.size} | --simulate-clicks {args.clicks} | {clicked.seconds:.1f} | {t['seconds'].iloc[0]:.1f} | "
          f"{statistics.median(rounds):.2f} | {len(rounds)} | {clicked.seconds / plain.seconds:.2f}x |")


if __name__ == "__main__":
    main()
