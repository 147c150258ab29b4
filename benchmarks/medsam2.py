"""MedSAM2 at 512 px against SAM 2.1 tiny at 1024 px: seconds per slice of S1SFQ-middle, as a ratio
measured in one run.

MedSAM2 is SAM 2.1 tiny's architecture at 512 px (4x fewer image and memory tokens). Both models are
random weights (speed does not depend on the weights), built by name through ``load_sam2`` (medsam2
at its own 512 px, sam2.1-tiny at its own 1024 px), on the same synthetic volume; each repeat runs
the two models one after the other (a fresh engine each: encoding and tracking both counted), so
load on the machine affects both alike. Prints one table (median over repeats).

    python benchmarks/medsam2.py --slices 8 --repeats 2 --threads 2
"""

from __future__ import annotations

import argparse
import statistics

import torch

from _common import Timer, header, random_model, synthetic_volume


def main() -> None:
    from fsm2kit.engine import Engine

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=8, help="query slices of the synthetic volume")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default=None, choices=["fp32", "bf16"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vol = synthetic_volume(args.slices)
    runs = {"medsam2": [], "sam2.1-tiny": []}
    models = {name: random_model(name, None, device=args.device) for name in runs}
    if args.precision:
        import dataclasses

        models = {k: dataclasses.replace(m, precision=args.precision) for k, m in models.items()}
    print(header(f"S1SFQ-middle, {args.slices} slices (+1 support), medsam2 vs sam2.1-tiny, "
                 f"{args.device}, precision {models['medsam2'].provenance()['precision']}", args.threads))
    for r in range(args.repeats):
        for name, model in models.items():
            engine = Engine(model, progress=False)
            with Timer() as t:
                engine.segment(vol, "S1SFQ", order="middle")
            runs[name].append(t.seconds / args.slices)
            print(f"# repeat {r + 1}: {name} at {model.image_size} px: {t.seconds:.1f} s", flush=True)
    base = statistics.median(runs["sam2.1-tiny"])
    print("| model | image size | image tokens | s/slice (median) | vs sam2.1-tiny at 1024 |")
    print("|---|---|---|---|---|")
    for name, model in models.items():
        s = statistics.median(runs[name])
        tokens = (model.image_size // 16) ** 2
        print(f"| {name} | {model.image_size} | {tokens} | {s:.2f} | {base / s:.2f}x faster |"
              if name == "medsam2" else f"| {name} | {model.image_size} | {tokens} | {s:.2f} | 1.00x |")


if __name__ == "__main__":
    main()
