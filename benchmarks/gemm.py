"""The float32 matrix products of gankit's MLP GANs: PyTorch's BLAS against numpy's, per thread count.

    python benchmarks/gemm.py                 # 1 and all threads, the shapes of a cs231n-gan step
    python benchmarks/gemm.py --threads 2 --reps 50

The MLP recipes spend 80-90% of a float32 step in these products (docs/performance.md), so how
fast the CPU's BLAS runs them at batch 128-256 bounds what any training loop can reach. Each
shape is timed as nn.Linear's forward issues it (x @ W^T) and as its backward does (g @ W, and
g^T @ x for the weight gradient), in PyTorch (its BLAS: MKL on x86 builds) and in numpy (its
bundled OpenBLAS), alternating, best of `--rounds`. Prints how it was run (CPU, capability,
libraries and their threads) and GFLOP/s per product.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from common import machine

# (batch, in, out) of cs231n-gan's layers: G 96-1024-1024-784, D on real+fake 784-256-256-1
SHAPES = [(128, 96, 1024), (128, 1024, 1024), (128, 1024, 784), (256, 784, 256), (256, 256, 256)]


def rate(fn, flop: float, reps: int, rounds: int) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return flop / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", default=f"1,{os.cpu_count()}")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        raise SystemExit("benchmarks/gemm.py needs threadpoolctl (pip install threadpoolctl) to set numpy's threads")
    blas = ", ".join(f"{i['internal_api']} {i.get('version') or ''}".strip() for i in threadpool_info())
    print(f"{machine()}; torch {'with' if torch.backends.mkl.is_available() else 'without'} MKL, "
          f"numpy {np.__version__} ({blas})")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        with threadpool_limits(limits=threads, user_api="blas"):
            for b, n_in, n_out in SHAPES:
                x, w, g = torch.randn(b, n_in), torch.randn(n_out, n_in), torch.randn(b, n_out)
                xn, wn, gn = x.numpy(), w.numpy(), g.numpy()
                flop = 2 * b * n_in * n_out
                row = {"fwd x@W^T": (lambda: x @ w.t(), lambda: xn @ wn.T),
                       "bwd g@W": (lambda: g @ w, lambda: gn @ wn),
                       "bwd g^T@x": (lambda: g.t() @ x, lambda: gn.T @ xn)}
                cells = [f"{k} torch {rate(t, flop, args.reps, args.rounds):4.0f} / numpy "
                         f"{rate(n, flop, args.reps, args.rounds):4.0f}" for k, (t, n) in row.items()]
                print(f"threads {threads}  {b:4d}x{n_in:4d}x{n_out:4d}  GFLOP/s  " + "   ".join(cells), flush=True)


if __name__ == "__main__":
    main()
