"""Convolutional GANs: the DCGAN of Radford et al. 2016 (64 px, any power-of-two size from 16) and
the small 28 px DC networks of the Stanford cs231n GAN assignment."""

from __future__ import annotations

import math

import torch
from torch import nn


def _dcgan_init(m: nn.Module) -> None:
    # Radford et al.: all weights from N(0, 0.02); BatchNorm scale from N(1, 0.02).
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _num_levels(image_size: int) -> int:
    levels = math.log2(image_size) - 2
    if not levels.is_integer() or levels < 2:
        raise ValueError(f"DCGAN nets need image_size a power of two >= 16, got {image_size}")
    return int(levels)


class DCGANGenerator(nn.Module):
    """z (B, noise_dim) -> x (B, channels, S, S): a 4x4 projection, then stride-2 ConvT + BN + ReLU
    doubling the size and halving the width, Tanh at the end. S=64 gives 512-256-128-64 channels."""

    def __init__(self, noise_dim: int = 100, channels: int = 1, image_size: int = 64, width: int = 64):
        super().__init__()
        self.noise_dim = noise_dim
        n = _num_levels(image_size)
        c = width * 2 ** (n - 1)
        layers: list[nn.Module] = [nn.ConvTranspose2d(noise_dim, c, 4, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(n - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU(True)]
            c //= 2
        layers += [nn.ConvTranspose2d(c, channels, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.noise_dim, 1, 1))


class DCGANDiscriminator(nn.Module):
    """x (B, channels, S, S) -> raw logit (B, 1): stride-2 convs with LeakyReLU(0.2), normalised
    after the first layer by `norm` ("batch" as in DCGAN; "layer" or "none" for WGAN-GP, whose
    per-sample gradient penalty is not defined under batch statistics), a 4x4 valid conv to 1."""

    def __init__(self, channels: int = 1, image_size: int = 64, width: int = 64, norm: str = "batch"):
        super().__init__()
        if norm not in ("batch", "layer", "none"):
            raise ValueError(f"norm must be batch, layer or none, got {norm!r}")
        n = _num_levels(image_size)
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
        c = width
        for _ in range(n - 1):
            layers.append(nn.Conv2d(c, c * 2, 4, 2, 1, bias=norm == "none"))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(c * 2))
            elif norm == "layer":
                layers.append(nn.GroupNorm(1, c * 2))  # LayerNorm over (C, H, W)
            layers.append(nn.LeakyReLU(0.2, True))
            c *= 2
        layers += [nn.Conv2d(c, 1, 4, 1, 0, bias=False), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        self.apply(_dcgan_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _xavier(m: nn.Module) -> None:
    # cs231n's initialize_weights: Xavier-uniform on Linear and ConvTranspose2d weights.
    if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
        nn.init.xavier_uniform_(m.weight)


def cs231n_dc_discriminator() -> nn.Module:
    """cs231n DC discriminator for 28x28x1: (B,1,28,28) -> (B,1). 1,102,721 parameters."""
    net = nn.Sequential(
        nn.Conv2d(1, 32, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2),  # (B, 32, 12, 12)
        nn.Conv2d(32, 64, 5), nn.LeakyReLU(0.01), nn.MaxPool2d(2),  # (B, 64, 4, 4)
        nn.Flatten(),
        nn.Linear(4 * 4 * 64, 4 * 4 * 64), nn.LeakyReLU(0.01),
        nn.Linear(4 * 4 * 64, 1),
    )
    return net.apply(_xavier)


def cs231n_dc_generator(noise_dim: int = 96) -> nn.Module:
    """cs231n DC generator: (B, noise_dim) -> (B,1,28,28). 6,580,801 parameters at noise_dim 4."""
    net = nn.Sequential(
        nn.Linear(noise_dim, 1024), nn.ReLU(), nn.BatchNorm1d(1024),
        nn.Linear(1024, 7 * 7 * 128), nn.ReLU(), nn.BatchNorm1d(7 * 7 * 128),
        nn.Unflatten(1, (128, 7, 7)),
        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(), nn.BatchNorm2d(64),  # (B, 64, 14, 14)
        nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh(),  # (B, 1, 28, 28)
    )
    return net.apply(_xavier)
