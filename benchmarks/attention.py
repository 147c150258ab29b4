"""Memory attention's cross-attention at SAM2's shapes: which kernel, and what else was tried.

SAM2's memory attention (4 layers) attends from the query slice's tokens ((S/16)^2: 4096 at
1024 px) to the memories' tokens (7 memories x 4096 + 64 pointer tokens), one head of width
256, keys and values projected from 64-channel memories. This prints, for one layer:

* ``F.scaled_dot_product_attention`` as SAM2 calls it, and each backend forced in turn
  (on CPU: the flash kernel vs the math kernel; on CUDA: flash / efficient / cuDNN / math);
* an exact rewrite that applies the value projection after the attention (``A (M Wv^T) =
  (A M) Wv^T``: the value product in 64 instead of 256 channels);
* a query-chunked matmul/softmax (what a hand-written kernel would do);
* the cost of the key/value projections that caching "identical support memories" could save.

    python benchmarks/attention.py [--image-size 1024] [--memories 7]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from _common import header


def timed(fn, reps: int) -> float:
    fn()
    best = float("inf")
    for _ in range(reps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--memories", type=int, default=7)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if dev == "cuda" else torch.float32
    n = (args.image_size // 16) ** 2
    m = args.memories * n + 64
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, n, 256, generator=g).to(dev, dtype)
    k = torch.randn(1, 1, m, 256, generator=g).to(dev, dtype)
    mem = torch.randn(m, 64, generator=g).to(dev, dtype)
    wv = (torch.randn(256, 64, generator=g) / 8).to(dev, dtype)
    wk = (torch.randn(256, 64, generator=g) / 8).to(dev, dtype)
    v = (mem @ wv.T)[None, None]
    print(header(f"one cross-attention layer: {n} queries x {m} keys, width 256, {dev} {str(dtype)[6:]}",
                 args.threads))
    rows = []
    with torch.inference_mode():
        ref = F.scaled_dot_product_attention(q, k, v)
        rows.append(("SDPA as SAM2 calls it (default dispatch)", timed(lambda: F.scaled_dot_product_attention(q, k, v), args.reps), 0.0))
        backends = [("flash", SDPBackend.FLASH_ATTENTION), ("math", SDPBackend.MATH)]
        if dev == "cuda":
            backends[1:1] = [("efficient", SDPBackend.EFFICIENT_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)]
        for name, be in backends:
            try:
                with sdpa_kernel([be]):
                    out = F.scaled_dot_product_attention(q, k, v)
                    sec = timed(lambda: F.scaled_dot_product_attention(q, k, v), args.reps)
                rows.append((f"SDPA, {name} kernel only", sec, float((out - ref).abs().max())))
            except RuntimeError as e:
                rows.append((f"SDPA, {name} kernel only: not available ({str(e).splitlines()[0][:40]})", float("nan"), float("nan")))

        def late_v():
            return F.scaled_dot_product_attention(q, k, mem[None, None]) @ wv.T

        rows.append(("value projection after attention (exact)", timed(late_v, args.reps), float((late_v() - ref).abs().max())))

        def chunked(c=1024):
            kt = k[0, 0].T * (256 ** -0.5)
            return torch.cat([torch.softmax(q[0, 0, i:i + c] @ kt, -1) @ v[0, 0] for i in range(0, n, c)])[None, None]

        rows.append(("query-chunked matmul + softmax", timed(chunked, args.reps), float((chunked() - ref).abs().max())))
        rows.append(("k and v projections of all memories", timed(lambda: (mem @ wk.T, mem @ wv.T), args.reps), 0.0))
    width = max(len(r[0]) for r in rows)
    print(f"{'variant':<{width}} {'s / layer':>10} {'max |diff|':>11}")
    for name, sec, diff in rows:
        print(f"{name:<{width}} {sec:>10.3f} {diff:>11.1e}")


if __name__ == "__main__":
    main()
