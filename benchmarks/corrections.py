"""What a correction costs: the refinement step and the re-propagation, at 256 and 1024 px, in one run.

A correction round (issue 13) runs SAM2's refinement on each corrected slice (one tracking step
with the prompts and the slice's previous logits), then re-propagates the whole volume in the
setting's order over the same memory bank (every slice but the corrected ones is tracked
again). This runs S1SFQ (middle order) on a synthetic volume of distinct slices built from the
bundled case with a random-weights model (speed only), features encoded once up front, so the
times are tracking only. For each size: the first propagation, then one and two rounds of one
point each (``segment_with_corrections``, replayed from the start as undo does). Step times
come from the engine's observer hook; a round's time is the difference of wall times.

    python benchmarks/corrections.py [--sizes 256 1024] [--slices 24 8] [--repeats 2 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import StepTimer, Timer, encoded_engine, header, per_size


def bench_size(model_name: str, size: int, n_slices: int, repeats: int) -> dict:
    from fsm2kit.engine import Correction, segment_with_corrections

    engine, ep = encoded_engine(model_name, size, n_slices)
    h, w = ep.images.shape[1:]
    z1, z2 = int(ep.z[n_slices // 4]), int(ep.z[(3 * n_slices) // 4])
    rounds = [[Correction(z1, points=[(w / 2, h / 2, 1)])], [Correction(z2, points=[(w / 3, h / 2, 0)])]]
    segment_with_corrections(engine, ep, "S1SFQ", rounds[:1], order="middle")  # warm-up
    times: dict[int, list[float]] = {0: [], 1: [], 2: []}
    steps: dict[int, list] = {0: [], 1: [], 2: []}
    for r in range(repeats):
        for k in (0, 1, 2):  # interleaved: a burst of other load hits them alike
            timer = StepTimer()
            with engine.observe(timer), Timer() as t:
                segment_with_corrections(engine, ep, "S1SFQ", rounds[:k], order="middle")
            times[k].append(t.seconds)
            steps[k].append([(dt, req.points is not None, len(req.selection.spatial)) for dt, req in timer.steps])
            print(f"#   {size} px repeat {r + 1}: {k} round(s) {t.seconds:.2f} s ({len(timer.steps)} steps)", flush=True)
    best = {k: min(v) for k, v in times.items()}
    one = steps[1][0]
    prop = [s for s, p, _ in one[:n_slices]]
    refine = [s for s, p, _ in one if p]
    reprop = [s for s, p, _ in one[n_slices:] if not p]
    return {
        "size": size, "slices": n_slices, "repeats": repeats,
        "propagation_s": best[0], "step_s": statistics.median(prop),
        "refine_s": statistics.median(refine), "reprop_step_s": statistics.median(reprop),
        "round1_s": best[1] - best[0], "round2_s": best[2] - best[1],
        "mem_before": statistics.mean(m for _, _, m in one[:n_slices]),
        "mem_after": statistics.mean(m for _, p, m in one[n_slices:] if not p),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--slices", type=int, nargs="+", default=[24, 8],
                    help="query slices per size (one number: all sizes; default 24 at 256 px, 8 at 1024 px)")
    ap.add_argument("--repeats", type=int, nargs="+", default=[2, 1],
                    help="runs per size, interleaved (one number: all sizes; default 2 at 256 px, 1 at 1024)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    slices = per_size(ap, args.slices, args.sizes, "--slices")
    repeats = per_size(ap, args.repeats, args.sizes, "--repeats")
    torch.set_num_threads(args.threads)
    print(header(f"corrections, S1SFQ-middle, {args.model}, tracking only (features cached)", args.threads))
    t0 = time.perf_counter()
    rows = [bench_size(args.model, s, n, k) for s, n, k in zip(args.sizes, slices, repeats)]
    print()
    print("| image size | slices | propagation s (s / step) | refinement step s | re-propagation s / slice "
          "| round 1 s | round 2 s | spatial memories / step before -> after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['slices']} | {r['propagation_s']:.2f} ({r['step_s']:.3f}) | {r['refine_s']:.3f} "
              f"| {r['reprop_step_s']:.3f} | {r['round1_s']:.2f} | {r['round2_s']:.2f} "
              f"| {r['mem_before']:.1f} -> {r['mem_after']:.1f} |")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
