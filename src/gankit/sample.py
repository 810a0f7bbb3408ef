"""Draw samples from a generator: the noise prior, and a run folder or checkpoint -> a PNG grid."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from gankit.data import to_signed
from gankit.errors import GankitError
from gankit.hardware import pick_device
from gankit.images import save_grid, save_points
from gankit.recipes import networks
from gankit.run import load_checkpoint, load_into


BATCH = 500  # samples drawn per forward pass


def sample_noise(cfg, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """z of shape (n, noise_dim) from the recipe's prior (`cfg` a Config); with `generator`, drawn
    on the CPU from it (a fixed grid), else from the device's own stream."""
    shape = (n, cfg.noise_dim)
    where = "cpu" if generator else device
    if cfg.noise == "normal":
        z = torch.randn(shape, generator=generator, device=where)
    else:
        z = torch.rand(shape, generator=generator, device=where)
        if cfg.noise == "uniform_signed":
            z = 2 * z - 1
    return z.to(device)


def grid_inputs(cfg, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None,
                label: int | None = None) -> tuple:
    """G's inputs for n samples: (z,), or for a conditional G (z, y) with y = `label`, or, without
    one, n // K images of each of the K classes in class order (a grid row per class)."""
    if not cfg.conditional:
        return (sample_noise(cfg, n, device, generator),)
    k = cfg.num_classes
    if label is None:
        n = max(1, n // k) * k
        y = torch.arange(k).repeat_interleave(n // k)
    else:
        if not 0 <= label < k:
            raise GankitError(f"--class {label}: this run's classes are 0..{k - 1}")
        y = torch.full((n,), label)
    return sample_noise(cfg, n, device, generator), y.to(device)


def generator_weights(state: dict, ema: bool = True) -> str:
    """The checkpoint key of the G that sampling, evaluation and export use: its moving average
    (G_ema) where the run kept one, unless ema=False."""
    return "G_ema" if ema and "G_ema" in state else "G"


def has_generator(cfg, source, nothing_to: str) -> None:
    """Refuse a supervised baseline run (baseline=true), whose G was never trained: `nothing_to` says
    what could not be done (e.g. "sample")."""
    if cfg.baseline:
        raise GankitError(f"{source}: a supervised baseline run (baseline=true) trains no generator; "
                          f"nothing to {nothing_to}")


def load_networks(run_or_checkpoint: str | os.PathLike, device: str = "auto", ema: bool = True):
    """-> (G, D, Config) of a run folder or checkpoint, in eval mode on `device`. G is the moving
    average of G's weights where the run kept one (g_ema) unless ema=False; D carries the weights
    that are tested: the moving average of D's weights where the run kept one."""
    dev = pick_device(device)
    return networks_of(load_checkpoint(run_or_checkpoint, map_location=dev), run_or_checkpoint, dev, ema)


def networks_of(state: dict, source: str | os.PathLike, device: torch.device, ema: bool = True):
    """load_networks from a checkpoint already loaded (from `source`, named in errors) onto `device`."""
    cfg = state["config"]
    G, D = networks(cfg)
    load_into(G, state, generator_weights(state, ema), source)
    load_into(D, state, "D_ema" if "D_ema" in state else "D", source)
    return G.to(device).eval(), D.to(device).eval(), cfg


def load_generator(run_or_checkpoint: str | os.PathLike, device: str = "auto", ema: bool = True):
    """-> (G in eval mode on `device`, its Config); the moving average of G where the run kept one."""
    G, _, cfg = load_networks(run_or_checkpoint, device, ema)
    has_generator(cfg, run_or_checkpoint, "sample")
    return G, cfg


@torch.no_grad()
def sample(run_or_checkpoint: str | os.PathLike, n: int = 64, out: str | os.PathLike = "grid.png",
           seed: int = 0, device: str = "auto", ema: bool = True, label: int | None = None) -> Path:
    """Write `n` samples of the run's generator (its moving average, if kept, unless ema=False),
    drawn with noise seeded by `seed`, to `out`. A conditional run draws class `label`, or without
    one a grid with a row per class."""
    if Path(out).suffix.lower() != ".png" and not Path(out).is_dir():  # before loading (a folder: images.py says)
        raise GankitError(f"-o {out}: gankit writes its samples as one PNG; give a file name ending in .png")
    G, cfg = load_generator(run_or_checkpoint, device, ema)
    if label is not None and not cfg.conditional:
        raise GankitError(f"--class {label}: {run_or_checkpoint} is an unconditional {cfg.recipe} run; "
                          f"train a conditional recipe (cgan, acgan, cdcgan) to choose the class")
    dev = next(G.parameters()).device
    try:  # in batches, as gankit.evaluate draws: a large -n needs memory for its images, not G's activations
        inputs = grid_inputs(cfg, n, dev, torch.Generator().manual_seed(seed), label)
        x = torch.cat([to_signed(G(*(t[i:i + BATCH] for t in inputs)), cfg.real_range).cpu()
                       for i in range(0, len(inputs[0]), BATCH)])
    except (MemoryError, RuntimeError) as e:  # torch's CPU allocator raises a RuntimeError; CUDA's a subclass
        if not isinstance(e, (MemoryError, torch.cuda.OutOfMemoryError)) and "can't allocate memory" not in str(e):
            raise
        raise GankitError(f"-n {n}: not enough memory for {n} samples") from None
    if x.dim() == 2:
        save_points(x, out)
    else:
        save_grid(x, out, nrow=len(x) // cfg.num_classes if cfg.conditional and label is None else None)
    return Path(out)
