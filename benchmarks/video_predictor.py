"""S1SFQ with fsm2kit vs SAM2's own video predictor on the same frames.

The video predictor is driven the published way (``fsm2kit.testing.reference``: numpy frames,
``add_new_mask`` on the support, ``propagate_in_video``; forward from the top, or forward and
backward from the middle). Both start from nothing: fsm2kit with a fresh engine (its encoding is
included), the predictor with a fresh inference state. Bundled CHAOS case, 24 query slices.

    python benchmarks/video_predictor.py [--image-size 1024] [--model sam2-tiny]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import Timer, header, random_model
from fsm2kit.io.examples import example_episodes
from fsm2kit.engine import Engine
from fsm2kit.model import install_cpu_connected_components
from fsm2kit.testing.reference import published_logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    install_cpu_connected_components()  # the predictor fills holes like fsm2kit does
    model = random_model(args.model, args.image_size)
    module = model.module
    (ep,) = example_episodes()
    calls = {"n": 0}
    forward_image = module.forward_image

    def counted(x):
        calls["n"] += x.shape[0]
        return forward_image(x)

    print(header(f"S1SFQ: fsm2kit vs SAM2VideoPredictor, {args.model}, image_size {args.image_size}, "
                 "bundled case (24 query slices)", args.threads))
    print(f"{'order':<7} {'method':<22} {'encoder passes':>15} {'wall s':>9} {'ratio':>7} {'rel. L2 diff':>13}")
    for order in ("top", "middle"):
        eng = Engine(model, progress=False)
        with Timer() as t_ours:
            ours = eng.segment(ep, "S1SFQ", order=order).logits()
        module.forward_image = counted
        calls["n"] = 0
        try:
            with Timer() as t_ref:
                ref = published_logits(module, "S1SFQ", list(ep.images), ep.chunks, [s.image for s in ep.supports],
                                       [s.mask for s in ep.supports], order=order)
        finally:
            del module.forward_image  # back to the class's method
        diff = float(np.linalg.norm(ours - ref) / max(np.linalg.norm(ref), 1e-12))
        print(f"{order:<7} {'fsm2kit Engine':<22} {eng.stats.encoder_passes:>15} {t_ours.seconds:>9.1f} "
              f"{'':>7} {diff:>13.2e}")
        print(f"{order:<7} {'SAM2VideoPredictor':<22} {calls['n']:>15} {t_ref.seconds:>9.1f} "
              f"{t_ref.seconds / t_ours.seconds:>6.2f}x {'':>13}", flush=True)


if __name__ == "__main__":
    main()
