"""Semi-supervised discriminators (K class logits + "fake") and the generators trained with them.

A semi-supervised D is a classifier: ``D.features(x)`` is the hidden representation that feature
matching compares, ``D.head(h)`` maps it to K+1 logits whose last column is the fake class, and
``D(x) = D.head(D.features(x))``. The fake logit is either learnt (the explicit (K+1)-th output of
the 64 px tutorial) or fixed at 0 (the implicit form of Salimans et al. 2016: a K-way classifier
whose softmax normaliser Z(x) = Σ exp(l_k) also gives D(x) = Z / (Z + 1)). Both return K+1
columns, so one set of losses (gankit.losses) serves both.

References: Salimans et al. 2016, "Improved Techniques for Training GANs" (improved-gan, MNIST
feature-matching model); Salimans & Kingma 2016, "Weight Normalization" (with its data-dependent
initialisation); Odena 2016, "Semi-Supervised Learning with GANs" (K+1 classes).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class WeightNormLinear(nn.Module):
    """y = g · (v x) / ‖v‖ + b, one g per output unit (Salimans & Kingma 2016).

    ``init_from(x)`` is the paper's data-dependent initialisation: g and b are set so that the
    pre-activations on the batch x have zero mean and unit variance per unit. With
    train_scale=False, g stays where that initialisation put it (a buffer, not a parameter), as
    in the hidden layers of improved-gan's MNIST discriminator."""

    def __init__(self, n_in: int, n_out: int, train_scale: bool = True, init_std: float = 0.1):
        super().__init__()
        self.v = nn.Parameter(torch.randn(n_out, n_in) * init_std)
        if train_scale:
            self.g = nn.Parameter(torch.ones(n_out))
        else:
            self.register_buffer("g", torch.ones(n_out))
        self.b = nn.Parameter(torch.zeros(n_out))

    def weight(self) -> torch.Tensor:
        return self.v * (self.g / self.v.norm(dim=1)).unsqueeze(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.b)

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> torch.Tensor:
        t = F.linear(x, self.v / self.v.norm(dim=1, keepdim=True))  # (B, n_out), unit-norm rows
        mean, std = t.mean(0), t.std(0) + 1e-8
        self.g.copy_(1 / std)
        self.b.copy_(-mean / std)
        return self(x)


class GaussianNoise(nn.Module):
    """Add N(0, σ²) noise to every unit while training; the identity in eval mode."""

    def __init__(self, sigma: float):
        super().__init__()
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sigma * torch.randn_like(x) if self.training and self.sigma else x

    def extra_repr(self) -> str:
        return f"sigma={self.sigma}"


class ImprovedGANDiscriminator(nn.Module):
    """Salimans et al. 2016 MNIST D: 784-1000-500-250-250-250-K, weight-normalised (the scale g is
    learnt in the output layer only), ReLU, Gaussian noise σ=0.3 on the input and σ=0.5 after every
    hidden layer, implicit fake logit.

    Images arrive in [-1, 1] like every gankit D sees them and are mapped to the paper's [0, 1]
    first, so the noise levels mean what they meant there. features(x) is the last hidden layer."""

    def __init__(self, in_shape: list[int], num_classes: int = 10, hidden: tuple[int, ...] = (1000, 500, 250, 250, 250),
                 noise_in: float = 0.3, noise_hidden: float = 0.5):
        super().__init__()
        sizes = [math.prod(in_shape), *hidden]
        self.noise_in = GaussianNoise(noise_in)
        self.layers = nn.ModuleList(WeightNormLinear(a, b, train_scale=False) for a, b in zip(sizes[:-1], sizes[1:]))
        self.noises = nn.ModuleList(GaussianNoise(noise_hidden) for _ in hidden)
        self.out = WeightNormLinear(hidden[-1], num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = self.noise_in((x.flatten(1) + 1) / 2)  # (B, 784) in [0, 1], noised
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(h))
            if i < len(self.layers) - 1:
                h = self.noises[i](h)
        return h  # (B, 250): the last hidden layer, before its noise

    def head(self, h: torch.Tensor) -> torch.Tensor:
        logits = self.out(self.noises[-1](h))  # (B, K)
        return torch.cat([logits, logits.new_zeros(logits.shape[0], 1)], dim=1)  # (B, K+1), fake logit fixed at 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @torch.no_grad()
    def init_from(self, x: torch.Tensor) -> None:
        """Data-dependent initialisation of every layer on one batch of real images (before training)."""
        h = (x.flatten(1) + 1) / 2
        for layer in self.layers:
            h = F.relu(layer.init_from(h))
        self.out.init_from(h)


class ImprovedGANGenerator(nn.Module):
    """Salimans et al. 2016 MNIST G: z ~ U[0,1)^100 -> 500 -> 500 -> 784, softplus after batch
    normalisation, a weight-normalised sigmoid output; mapped to [-1, 1] (2·sigmoid - 1) so its
    images live where the real ones do."""

    def __init__(self, noise_dim: int, out_shape: list[int], hidden: tuple[int, ...] = (500, 500)):
        super().__init__()
        self.noise_dim, self.out_shape = noise_dim, list(out_shape)
        layers: list[nn.Module] = []
        for a, b in zip([noise_dim, *hidden[:-1]], hidden):
            layers += [nn.Linear(a, b, bias=False), nn.BatchNorm1d(b), nn.Softplus()]
        self.net = nn.Sequential(*layers)
        self.out = WeightNormLinear(hidden[-1], math.prod(out_shape))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.out(self.net(z))) * 2 - 1
        return x.view(z.shape[0], *self.out_shape)


class SSGANDiscriminator(nn.Module):
    """The 64 px semi-supervised GAN tutorial's D, with an explicit fake class.

    conv 128 4x4 s2 -> conv 256 4x4 s2 + BN -> conv 512 4x4 s4 + BN -> conv 1024 3x3 valid ->
    global average pool (the feature for matching) -> K+1 logits. LeakyReLU(0.2) after every conv
    (before the BN, as in the tutorial) and dropout (keep 0.7) after the first three."""

    def __init__(self, channels: int = 1, num_classes: int = 10, dropout: float = 0.3):
        super().__init__()

        def block(c_in, c_out, k, s, p, bn):
            return [nn.Conv2d(c_in, c_out, k, s, p), nn.LeakyReLU(0.2), *([nn.BatchNorm2d(c_out)] if bn else []),
                    nn.Dropout(dropout)]

        self.net = nn.Sequential(
            *block(channels, 128, 4, 2, 1, False),  # (B, 128, 32, 32)
            *block(128, 256, 4, 2, 1, True),  # (B, 256, 16, 16)
            *block(256, 512, 4, 4, 0, True),  # (B, 512, 4, 4)
            nn.Conv2d(512, 1024, 3, 1, 0), nn.LeakyReLU(0.2),  # (B, 1024, 2, 2)
        )
        self.out = nn.Linear(1024, num_classes + 1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(2, 3))  # (B, 1024): global average pool

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.out(h)  # (B, K+1): the last column is the learnt fake logit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class SSGANGenerator(nn.Module):
    """The 64 px tutorial's G: z ~ N(0,1)^100 -> ConvT 512 (4x4) -> ConvT 256 s4 (16x16) ->
    ConvT 128 s2 (32x32) -> ConvT C s2 (64x64), tanh; ReLU then BN after each hidden layer."""

    def __init__(self, noise_dim: int = 100, channels: int = 1):
        super().__init__()
        self.noise_dim = noise_dim

        def block(c_in, c_out, k, s, p):
            return [nn.ConvTranspose2d(c_in, c_out, k, s, p), nn.ReLU(), nn.BatchNorm2d(c_out)]

        self.net = nn.Sequential(
            *block(noise_dim, 512, 4, 1, 0),  # (B, 512, 4, 4)
            *block(512, 256, 4, 4, 0),  # (B, 256, 16, 16)
            *block(256, 128, 4, 2, 1),  # (B, 128, 32, 32)
            nn.ConvTranspose2d(128, channels, 4, 2, 1), nn.Tanh(),  # (B, C, 64, 64)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], -1, 1, 1))
