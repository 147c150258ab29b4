"""Memory policies: seconds per tracking step and per volume, at 256 and 1024 px, in one run.

Fewer memories mean fewer keys in SAM2's memory attention (each spatial memory is (S/16)^2
tokens: 4096 at 1024 px). For each memory policy this runs S1SFQ (middle order) on a synthetic
volume of distinct slices built from the bundled case, with a random-weights model (speed
only), on one engine per image size whose slice features are encoded once up front: the times
below are tracking only (memory attention, mask decoder, memory encoder), not image encoding.
A step's time is measured through the engine's observer hook (one step per forward, as on CPU
by default); the volume time is ``Engine.segment``'s wall time.

    python benchmarks/strategies.py [--sizes 256 1024] [--slices 24 8] [--policies sam2 recent:1 ...]

Policies run interleaved, ``--rounds`` volumes each; the table keeps each policy's least
disturbed round (smallest median step time, smallest volume time), then gives the median step
time by number of attended spatial memories (all steps of all policies pooled).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import StepTimer, Timer, encoded_engine, header, per_size

POLICIES = ["sam2", "stride:2", "support-only", "recent:1", "recent:3", "confident:0.5", "best:3"]


def bench_size(model_name: str, size: int, n_slices: int, policies: list[str], order: str,
               rounds: int) -> list[dict]:
    from fsm2kit.strategies import MEMORY_POLICIES

    engine, ep = encoded_engine(model_name, size, n_slices)
    engine.segment(ep, "S1SFQ", order=order, memory_policy=MEMORY_POLICIES.get("support-only"))  # warm-up
    runs: dict[str, list[tuple[float, list]]] = {spec: [] for spec in policies}
    for r in range(rounds):  # policies interleaved, so that a burst of other load hits them alike
        for spec in policies:
            timer = StepTimer()
            with engine.observe(timer), Timer() as vol:
                engine.segment(ep, "S1SFQ", order=order, memory_policy=MEMORY_POLICIES.get(spec))
            runs[spec].append((vol.seconds, [(dt, len(req.selection.spatial), len(req.selection.pointers))
                                             for dt, req in timer.steps]))
            print(f"#   {size} px round {r + 1}: {spec:<14} {statistics.median(s for s, _ in timer.steps):.3f} "
                  f"s/step, {vol.seconds:.2f} s/volume", flush=True)
    rows = []
    for spec, done in runs.items():
        steps = done[0][1]
        rows.append({
            "size": size, "policy": spec, "slices": n_slices, "rounds": rounds,
            "memories": statistics.mean(n for _, n, _ in steps),
            "pointers": statistics.mean(p for _, _, p in steps),
            # the least disturbed round: the smallest median step time and volume time
            "step_s": min(statistics.median(s for s, _, _ in st) for _, st in done),
            "volume_s": min(v for v, _ in done),
            "steps": [x for _, st in done for x in st],
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--slices", type=int, nargs="+", default=[24, 8],
                    help="query slices per size (one number: all sizes; default 24 at 256 px, 8 at 1024 px)")
    ap.add_argument("--policies", nargs="+", default=POLICIES)
    ap.add_argument("--order", default="middle", choices=["middle", "top"])
    ap.add_argument("--rounds", type=int, nargs="+", default=[2, 1],
                    help="volumes per policy and size, interleaved (one number: all sizes; default 2 at 256 px, 1 at 1024)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    slices = per_size(ap, args.slices, args.sizes, "--slices")
    rounds = per_size(ap, args.rounds, args.sizes, "--rounds")
    torch.set_num_threads(args.threads)
    print(header(f"memory policies, S1SFQ-{args.order}, {args.model}, tracking only (features cached)",
                 args.threads))
    t0 = time.perf_counter()
    rows = [r for size, n, k in zip(args.sizes, slices, rounds) for r in bench_size(args.model, size, n, args.policies, args.order, k)]
    print()
    print("| image size | policy | slices x rounds | spatial memories / step | pointers / step | s / step (median) "
          "| s / volume | step vs sam2 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ref = next((x["step_s"] for x in rows if x["size"] == r["size"] and x["policy"] == "sam2"), None)
        rel = f"{r['step_s'] / ref:.2f}" if ref else "n/a"
        print(f"| {r['size']} | {r['policy']} | {r['slices']} x {r['rounds']} | {r['memories']:.1f} | {r['pointers']:.1f} "
              f"| {r['step_s']:.3f} | {r['volume_s']:.2f} | {rel} |")
    print()
    print("| image size | spatial memories | steps | s / step (median) |")
    print("|---|---|---|---|")
    for size in args.sizes:
        by_n: dict[int, list[float]] = {}
        for r in rows:
            if r["size"] == size:
                for s, n, _ in r["steps"]:
                    by_n.setdefault(n, []).append(s)
        for n in sorted(by_n):
            print(f"| {size} | {n} | {len(by_n[n])} | {statistics.median(by_n[n]):.3f} |")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
