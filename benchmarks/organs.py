"""Four organs in one engine vs one by one (fresh engine per organ), on the bundled CT.

The CT (122x101x30, TotalSegmentator masks) is its own support scan here (speed only).
S1SFQ-middle per organ: spleen, right kidney, left kidney, liver. Three ways: fresh engine per
organ (every run encodes its slices), one engine with the organs one after another (shared
encoder cache), one engine with ``segment_many`` (shared cache, organs' steps batched in one SAM2
forward).

    python benchmarks/organs.py [--image-size 1024]
"""

from __future__ import annotations

import argparse

import torch

from _common import Timer, header, random_model
from fsm2kit.io.examples import example_dir
from fsm2kit.io.nifti import load_nifti
from fsm2kit.engine import Engine
from fsm2kit.protocol import build_episode

ORGANS = {"spleen": 1, "right kidney": 2, "left kidney": 3, "liver": 5}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--setting", default="S1SFQ")
    ap.add_argument("--batch", type=int, default=4, help="object_batch_size of the batched run")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = example_dir() / "totalseg_ct_small"
    ct = load_nifti(d / "example_ct_sm.nii.gz", label_path=d / "example_seg.nii.gz", modality="CT")
    eps = [build_episode(ct.array, ct.labels.array, ct.array, ct.labels.array, lab, case_id="ct",
                         support_case_id="ct", label_name=name) for name, lab in ORGANS.items()]
    model = random_model(args.model, args.image_size)
    with Timer() as t_one:
        passes_one = 0
        for ep in eps:
            eng = Engine(model, progress=False, object_batch_size=1)
            eng.segment(ep, args.setting)
            passes_one += eng.stats.encoder_passes
    seq = Engine(model, progress=False, object_batch_size=1)
    with Timer() as t_seq:
        for ep in eps:
            seq.segment(ep, args.setting)
    bat = Engine(model, progress=False, object_batch_size=args.batch)
    with Timer() as t_bat:
        bat.segment_many(eps, args.setting)
    order = "-middle" if args.setting.upper().endswith("FQ") else ""
    print(header(f"{len(eps)} organs, {args.setting}{order}, {args.model}, image_size {args.image_size}, bundled CT",
                 args.threads))
    print(f"slices per organ: {[e.n_slices for e in eps]}")
    print(f"{'mode':<40} {'encoder passes':>15} {'SAM2 forwards':>14} {'wall s':>9} {'speed-up':>9}")
    rows = [("one by one (fresh engines)", passes_one, sum(e.n_slices for e in eps), t_one.seconds),
            ("one engine, organs one after another", seq.stats.encoder_passes, seq.stats.tracking_forwards,
             t_seq.seconds),
            (f"one engine, organs batched (<= {args.batch})", bat.stats.encoder_passes, bat.stats.tracking_forwards,
             t_bat.seconds)]
    for name, passes, fwd, sec in rows:
        print(f"{name:<40} {passes:>15} {fwd:>14} {sec:>9.1f} {t_one.seconds / sec:>8.2f}x")

if __name__ == "__main__":
    main()
