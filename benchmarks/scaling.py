"""Slices/s and peak RSS vs volume length and image size (S1SFQ-middle, synthetic volume).

Each configuration runs in its own process so that peak RSS is its own. The volume is the
bundled CHAOS case's slices, repeated with small perturbations to the requested length (every
slice distinct). ``--max-cached-slices`` bounds the engine's feature cache.

    python benchmarks/scaling.py [--lengths 24 100 200] [--sizes 256 512 1024]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from _common import header


def one(length: int, size: int, model: str, threads: int, bound: int | None) -> dict:
    import time

    from _common import peak_rss_gb, random_model, synthetic_volume
    from fsm2kit.engine import Engine

    torch.set_num_threads(threads)
    vol = synthetic_volume(length)
    m = random_model(model, size)
    eng = Engine(m, progress=False, max_cached_slices=bound)
    t = time.perf_counter()
    res = eng.segment(vol, "S1SFQ", order="middle")
    sec = time.perf_counter() - t
    return {"length": length, "image_size": size, "seconds": sec, "slices_per_s": length / sec,
            "peak_rss_gb": peak_rss_gb(), "encoder_passes": res.encoder_passes, "cache_bound": bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--lengths", type=int, nargs="+", default=[24, 100, 200])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--max-cached-slices", type=int, default=16)
    ap.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], args.one[1], args.model, args.threads, args.max_cached_slices)))
        return
    print(header(f"S1SFQ-middle scaling, {args.model}, feature cache bound {args.max_cached_slices}", args.threads))
    print(f"{'image size':>10} {'slices':>7} {'wall s':>9} {'slices/s':>9} {'peak RSS GB':>12}")
    for size in args.sizes:
        for n in args.lengths:
            cmd = [sys.executable, __file__, "--one", str(n), str(size), "--model", args.model,
                   "--threads", str(args.threads), "--max-cached-slices", str(args.max_cached_slices)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{size:>10} {n:>7} {r['seconds']:>9.1f} {r['slices_per_s']:>9.2f} {r['peak_rss_gb']:>12.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
