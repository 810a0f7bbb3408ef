"""A whole training step captured once in a CUDA graph and replayed.

The networks here are small, so on a GPU an eager step is hundreds of tiny kernels launched one
by one from Python, and the GPU idles between them (a cs231n-dcgan step on an H100: 6.7 ms, of
which 1.5 ms is kernels). Every shape in a plain GAN step is static, so the whole step — the
batch gather, the noise draw, n_critic D updates, the G update and both optimiser steps — is
captured once with ``torch.cuda.graph`` and then launched as one graph per step (the "whole
network capture" of PyTorch's CUDA-graph docs).

What makes the replayed step compute the same numbers as the eager one:
- the batch indices are copied into static buffers before each replay; the images stay on the GPU;
- the noise comes from the device generator, whose Philox offset a replay advances exactly as
  the eager kernels would;
- the optimisers are built with ``capturable=True`` (step counts and learning rates on the GPU);
- the warm-up iterations that capture needs first are undone: weights, buffers, optimiser state
  and RNG streams are put back in place, so the run does not see them (and resume stays exact);
- autocast runs without its weight-cast cache (a cache across capture boundaries is unsafe).
"""

from __future__ import annotations

import sys
from typing import Callable

import torch

from gankit.config import Config, is_semi_supervised

Step = Callable[[int], dict]


def graphable(cfg: Config, device: torch.device, world_size: int) -> bool:
    """Whether a run's step is captured: a plain GAN (not semi-supervised) in one process on a GPU,
    not under torch.compile (whose reduce-overhead mode would capture it its own way)."""
    return (cfg.cuda_graph and device.type == "cuda" and world_size == 1 and not cfg.compile
            and not is_semi_supervised(cfg)
            and (cfg.reg_every == 1 or not (cfg.r1_gamma or cfg.r2_gamma)))  # lazy R1/R2 depends on the step number


def snapshot(nets, optimizers) -> dict:
    """Copies of what a training step changes: weights, buffers, optimiser state, RNG streams."""
    return {"nets": [{k: v.detach().clone() for k, v in net.state_dict().items()} for net in nets],
            "opts": [{id(p): {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()}
                      for p, st in opt.state.items()} for opt in optimizers],
            "cpu_rng": torch.get_rng_state(),
            "cuda_rng": [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())]
            if torch.cuda.is_available() and torch.cuda.is_initialized() else []}


@torch.no_grad()
def restore(saved: dict, nets, optimizers) -> None:
    """Put a snapshot back *in place*, so every tensor keeps its address (a captured graph reads
    and writes those addresses). Optimiser state created since the snapshot is zeroed, which is
    what Adam and RMSprop initialise it to."""
    for net, state in zip(nets, saved["nets"]):
        for k, v in net.state_dict().items():
            v.copy_(state[k])
    for opt, states in zip(optimizers, saved["opts"]):
        for p, st in opt.state.items():
            before = states.get(id(p), {})
            for k, v in st.items():
                if torch.is_tensor(v):
                    v.copy_(before[k]) if k in before else v.zero_()
                elif k in before:
                    st[k] = before[k]
    torch.set_rng_state(saved["cpu_rng"])
    for d, state in enumerate(saved["cuda_rng"]):
        torch.cuda.set_rng_state(state, d)


def static_step(body: Callable[[list[torch.Tensor]], dict], batches: Callable[[int], torch.Tensor],
                n_critic: int, batch_size: int, device: torch.device, nets, optimizers,
                warmup: int = 3, capture: bool = True) -> Step:
    """A step(i) that loads step i's batch indices into static buffers and runs `body` on them:
    captured in a CUDA graph and replayed when `capture` (on a GPU), else called as it is (how
    the CPU tests check everything but the capture). `body(index_buffers)` -> the step's scalars.

    Before capture, `warmup` eager iterations on a side stream let cuBLAS/cuDNN pick their
    kernels and allocate workspaces; their effect on weights, optimiser state and RNG is undone."""
    idx = [torch.zeros(batch_size, dtype=torch.long, device=device) for _ in range(n_critic)]

    def load(i: int) -> None:
        for k, buf in enumerate(idx):
            buf.copy_(batches(i * n_critic + k), non_blocking=True)

    saved = snapshot(nets, optimizers)
    load(0)
    if capture:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                body(idx)
        torch.cuda.current_stream(device).wait_stream(side)
        torch.cuda.synchronize(device)
    else:
        for _ in range(warmup):
            body(idx)
    restore(saved, nets, optimizers)
    if not capture:
        def step(i: int) -> dict:
            load(i)
            return body(idx)
        return step

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        stats = body(idx)  # static outputs: each replay overwrites them

    def replay(i: int) -> dict:
        load(i)
        graph.replay()
        return stats

    return replay


def try_static_step(eager: Step, body, batches, n_critic: int, batch_size: int, device: torch.device,
                    nets, optimizers) -> tuple[Step, str]:
    """The graphed step, or the eager one with a one-line reason when capture fails."""
    saved = snapshot(nets, optimizers)
    try:
        step = static_step(body, batches, n_critic, batch_size, device, nets, optimizers, capture=device.type == "cuda")
        return step, "cuda graph" if device.type == "cuda" else "static buffers"
    except Exception as e:  # an op that cannot be captured: train eagerly, as before
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        restore(saved, nets, optimizers)
        msg = f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
        print(f"gankit: warning: CUDA graph capture failed ({msg}); training eagerly", file=sys.stderr)
        return eager, "eager (capture failed)"
