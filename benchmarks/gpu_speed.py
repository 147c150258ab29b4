"""GPU throughput: slices/s of S1SFQ-middle on a synthetic 200-slice volume, per model size,
bfloat16 autocast (as published), with and without torch.compile of the image encoder. Each model
runs at its own image size (1024 for SAM2, 512 for medsam2) unless --image-size is given.

Meant for a lent GPU machine (see gpu.sh: under 5 minutes on an H100). Prints one table.
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import header, random_model, synthetic_volume as volume


def main() -> None:
    from fsm2kit.engine import Engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["sam2-tiny", "medsam2", "sam2-small", "sam2-base_plus",
                                                    "sam2-large"])  # medsam2 early: the 280 s limit cuts the last
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--image-size", type=int, default=None, help="default: each model's own (medsam2: 512)")
    ap.add_argument("--compile", choices=["no", "yes", "both"], default="both")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_speed.py needs a CUDA GPU")
    vol = volume(args.slices)
    modes = {"no": [False], "yes": [True], "both": [False, True]}[args.compile]
    print(header(f"S1SFQ-middle, {args.slices} slices, image_size {args.image_size or 'of each model'}, "
                 "bf16 autocast", torch.get_num_threads()))
    print(f"{'model':<16} {'px':>5} {'compile':>8} {'encode s':>9} {'track s':>9} {'slices/s':>9} {'peak GPU GB':>12}")
    for name in args.models:
        for comp in modes:
            model = random_model(name, args.image_size, device="cuda")
            if comp:
                model.compile_encoder()
            eng = Engine(model, progress=False, encode_batch_size=8)
            warm = volume(8)  # warm-up (and compilation) on other slices
            eng.segment(warm, "S1SFQ")
            eng.clear_cache()
            torch.cuda.reset_peak_memory_stats()
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            eng.encode_all(list(vol.images))
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            eng.segment(vol, "S1SFQ")
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            gb = torch.cuda.max_memory_allocated() / 2**30
            print(f"{name:<16} {model.image_size:>5} {str(comp):>8} {t1 - t0:>9.2f} {t2 - t1:>9.2f} {args.slices / (t2 - t0):>9.1f} {gb:>12.2f}",
                  flush=True)
            del eng, model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
