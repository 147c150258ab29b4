"""Second passes, per-slice supports and ensembles: cost as a ratio to one plain propagation, in one run.

For each image size this times, on one random-weights model (speed only; its object-score head is
shifted by +4 so that masks are non-empty and refinement has slices to score and promote), S1SFQ
over a synthetic volume of distinct slices built from the bundled case:

* ``plain``: one propagation (middle order);
* ``revsam2:top=3``: pass 1, scoring (support consistency: one extra tracking step per slice with a
  non-empty mask), pass 2;
* ``swap:3``: the 3 most similar of the support's 5 views join each step (views encoded once);
* a 5-member ensemble (orders middle, top, from:0.25, from:0.75, from:0.1) fused by mean probability.

Each method runs twice: **cold** (a fresh engine: image encoding included, what a user pays for one
run; an ensemble's members share the encoder features, so its ratio stays well below 5) and
**warm** (every slice already encoded: tracking only). Methods are interleaved per round; the table
keeps each method's fastest round and gives its ratio to ``plain`` of the same round type.

    python benchmarks/second_passes.py [--sizes 256] [--slices 24] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import Timer, header, per_size, random_model, synthetic_volume

ORDERS = ["middle", "top", "from:0.25", "from:0.75", "from:0.1"]


def _shifted(model):
    head = model.module.sam_mask_decoder.pred_obj_score_head
    lin = head.layers[-1] if hasattr(head, "layers") else head
    with torch.no_grad():
        lin.bias += 4.0
    return model


def methods(ep):
    from fsm2kit.run.ensemble_runs import fuse_results
    from fsm2kit.run.support_plans import swap_supports
    from fsm2kit.strategies import ORDERINGS, REFINEMENTS
    from fsm2kit.strategies.orderings import engine_arguments

    def plain(engine):
        return engine.segment(ep, "S1SFQ", order="middle")

    def revsam2(engine):
        r = engine.segment(ep, "S1SFQ", order="middle", refinement=REFINEMENTS.get("revsam2:top=3"))
        return r, sum(s.promoted for s in r.slices)

    def swap(engine):
        return engine.segment(ep, "S1SFQ", order="middle", step_supports=swap_supports(engine, ep, 3))

    def ensemble(engine):
        members = []
        for o in ORDERS:
            args = engine_arguments(ORDERINGS.get(o), "S1SFQ", ep)
            members.append(engine.segment(ep, "S1SFQ", **({"order": args["order"]} if "order" in args
                                                           else {"plans": args["plans"]})))
        return fuse_results(members)

    return {"plain": plain, "revsam2:top=3": revsam2, "swap:3": swap, "ensemble x5 (orders)": ensemble}


def bench_size(model_name: str, size: int, n_slices: int, rounds: int) -> list[dict]:
    from fsm2kit.engine import Engine

    model = _shifted(random_model(model_name, size))
    ep = synthetic_volume(n_slices)
    runs = methods(ep)
    warm = Engine(model, progress=False, object_batch_size=1)
    for fn in runs.values():  # warm-up: every slice, support and view the methods use is encoded
        fn(warm)
    best: dict[tuple[str, str], float] = {}
    extra: dict[str, object] = {}
    for r in range(rounds):
        for name, fn in runs.items():
            for kind in ("cold", "warm"):
                engine = Engine(model, progress=False, object_batch_size=1) if kind == "cold" else warm
                passes0, steps0 = engine.stats.encoder_passes, engine.stats.tracking_steps
                with Timer() as t:
                    out = fn(engine)
                key = (name, kind)
                best[key] = min(best.get(key, float("inf")), t.seconds)
                if kind == "cold":
                    extra[name] = (engine.stats.encoder_passes - passes0, engine.stats.tracking_steps - steps0,
                                   out[1] if isinstance(out, tuple) and isinstance(out[1], int) else None)
                print(f"#   {size} px round {r + 1}: {name:<22} {kind}: {t.seconds:.2f} s", flush=True)
    rows = []
    for name in runs:
        enc, steps, promoted = extra[name]
        rows.append({"size": size, "slices": n_slices, "method": name, "cold_s": best[(name, "cold")],
                     "warm_s": best[(name, "warm")], "encoder_passes": enc, "tracking_steps": steps,
                     "promoted": promoted,
                     "cold_ratio": best[(name, "cold")] / best[("plain", "cold")],
                     "warm_ratio": best[(name, "warm")] / best[("plain", "warm")]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2-tiny")
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--slices", type=int, nargs="+", default=[24])
    ap.add_argument("--rounds", type=int, nargs="+", default=[2])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    slices = per_size(ap, args.slices, args.sizes, "--slices")
    rounds = per_size(ap, args.rounds, args.sizes, "--rounds")
    torch.set_num_threads(args.threads)
    print(header(f"second passes, per-slice supports, ensembles: S1SFQ-middle, {args.model}", args.threads))
    t0 = time.perf_counter()
    rows = [r for size, n, k in zip(args.sizes, slices, rounds) for r in bench_size(args.model, size, n, k)]
    print()
    print("| image size | slices | method | cold s (encoding included) | x plain | warm s (tracking only) | x plain "
          "| encoder passes (cold) | tracking steps | promoted |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['slices']} | {r['method']} | {r['cold_s']:.2f} | {r['cold_ratio']:.2f} "
              f"| {r['warm_s']:.2f} | {r['warm_ratio']:.2f} | {r['encoder_passes']} | {r['tracking_steps']} "
              f"| {'' if r['promoted'] is None else r['promoted']} |")
    print(f"\n# total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
