"""What a training run is built from: the device, the precision context, the noise prior, the
networks and their optimisers, and the order in which batches are drawn. Used by the trainer,
sampling and evaluation alike."""

from __future__ import annotations

import contextlib

import torch

from gankit import distributed
from gankit.config import Config, is_semi_supervised
from gankit.errors import GankitError
from gankit.hardware import resolve_precision
from gankit.recipes import get as get_recipe


def pick_device(name: str, world: distributed.World = distributed.World()) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "cuda" and world.size > 1:
        name = f"cuda:{world.local_rank}"  # one GPU per process
    return torch.device(name)


def autocast(cfg: Config, device: torch.device):
    """bfloat16 autocast for matmuls and convolutions (weights and optimiser stay float32).
    A run resolves cfg.precision at its start (gankit.hardware.resolve_precision); "auto" is
    resolved here for callers that build a step outside a run."""
    precision = resolve_precision(cfg.precision, device)[0] if cfg.precision == "auto" else cfg.precision
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sample_noise(cfg: Config, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """z of shape (n, noise_dim) from the recipe's prior."""
    shape = (n, cfg.noise_dim)
    if cfg.noise == "normal":
        z = torch.randn(shape, generator=generator, device="cpu" if generator else device)
    else:
        z = torch.rand(shape, generator=generator, device="cpu" if generator else device)
        if cfg.noise == "uniform_signed":
            z = 2 * z - 1
    return z.to(device)


def make_optimizer(cfg: Config, net: torch.nn.Module, lr: float, betas: list[float]) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=lr, foreach=True)
    return torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas), eps=cfg.adam_eps, fused=True)


def _is_conv(net: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in net.modules())


def mixes_samples(net: torch.nn.Module) -> bool:
    """True if a sample's output depends on the rest of its batch (BatchNorm in training mode)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def build(cfg: Config, device: torch.device):
    """Networks and optimisers for a resolved config (data_shape must be set)."""
    G, D = get_recipe(cfg.recipe).nets(cfg)
    if is_semi_supervised(cfg) and not hasattr(D, "head"):
        raise GankitError(f"labels_per_class/label_rate: recipe {cfg.recipe} has no class logits in its "
                          f"discriminator; semi-supervised training needs recipe ssgan or improved-gan")
    if hasattr(D, "head") and not is_semi_supervised(cfg):
        raise GankitError(f"recipe {cfg.recipe} trains a classifier: set labels_per_class or label_rate")
    G, D = G.to(device), D.to(device)
    if cfg.channels_last:
        G, D = (net.to(memory_format=torch.channels_last) if _is_conv(net) else net for net in (G, D))
    return G, D, make_optimizer(cfg, G, cfg.lr_g, cfg.betas_g), make_optimizer(cfg, D, cfg.lr_d, cfg.betas_d)


class BatchIndices:
    """Global batch b of the run is slice b % per_epoch of a permutation seeded by (seed, epoch),
    and rank r takes the r-th shard of it: a pure function of the position, so a resumed run sees
    exactly the batches it would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, world=distributed.World()):
        self.n, self.batch_size, self.seed, self.device, self.world = n, batch_size, seed, device, world
        self.per_epoch = n // (batch_size * world.size)
        self._epoch, self._perm = -1, None

    def __call__(self, b: int) -> torch.Tensor:
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        start = (i * self.world.size + self.world.rank) * self.batch_size
        return self._perm[start:start + self.batch_size]
