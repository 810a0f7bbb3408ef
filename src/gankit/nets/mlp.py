"""Fully connected generators and discriminators: the MLP GANs of Goodfellow et al. 2014 and the
tutorials that follow it (TensorLayerX, cs231n, the PyTorch MNIST GAN), and the 2-D toy nets."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn


class Dropout(nn.Module):
    """nn.Dropout's function (zero each unit with probability p, scale the rest by 1/(1-p)), with
    the mask drawn by torch.rand: on a CPU that is about twice as fast as the bernoulli_ kernel
    nn.Dropout uses, and dropout is a quarter of an MLP-GAN step there."""

    def __init__(self, p: float):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand(x.shape, device=x.device) >= self.p
        return x * keep * (1 / (1 - self.p))

    def extra_repr(self) -> str:
        return f"p={self.p}"


def _stack(sizes: list[int], act: Callable[[], nn.Module], dropout: float = 0.0) -> list[nn.Module]:
    """Linear layers between consecutive sizes, each hidden one followed by act() (and dropout)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(act())
            if dropout:
                layers.append(Dropout(dropout))
    return layers


class MLPGenerator(nn.Module):
    """z (B, noise_dim) -> x (B, *out_shape), hidden layers with act(), output through `out_act`."""

    def __init__(self, noise_dim: int, hidden: list[int], out_shape: list[int], act: Callable[[], nn.Module],
                 out_act: nn.Module | None = None):
        super().__init__()
        self.noise_dim, self.out_shape = noise_dim, list(out_shape)
        layers = _stack([noise_dim, *hidden, math.prod(out_shape)], act)
        self.net = nn.Sequential(*layers, out_act or nn.Identity())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.out_shape)


class MLPDiscriminator(nn.Module):
    """x (B, *in_shape) -> raw logit (B, 1). No sigmoid: the objective decides what to do with it."""

    def __init__(self, in_shape: list[int], hidden: list[int], act: Callable[[], nn.Module], dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *_stack([math.prod(in_shape), *hidden, 1], act, dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
