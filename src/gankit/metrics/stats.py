"""Running float64 mean and covariance of feature vectors, the statistics behind FID.

Batches are merged with the pairwise update of Chan, Golub & LeVeque (1979), so streaming a million
features in small batches gives the same result as one pass over all of them. The covariance is
the unbiased one (divided by n - 1), as ``np.cov(x, rowvar=False)`` in the TTUR and StyleGAN3 FID code.
"""

from __future__ import annotations

import numpy as np
import torch

from gankit.errors import GankitError


def _as_features(x) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.dim() != 2:
        raise GankitError(f"features must be a 2-D (N, D) array, got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


class RunningStats:
    """Streaming mean and covariance: ``update(features)`` any number of times, then ``compute()``."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.mean: torch.Tensor | None = None  # (D,) float64
        self.m2: torch.Tensor | None = None  # (D, D) float64 sum of centred outer products

    def update(self, features) -> "RunningStats":
        """Add a batch of feature vectors (N, D), a tensor or an array; returns self."""
        x = _as_features(features)
        n_b = x.shape[0]
        if n_b == 0:
            return self
        mean_b = x.mean(dim=0)
        x_c = x - mean_b
        m2_b = x_c.T @ x_c
        if self.n == 0:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
            return self
        if x.shape[1] != self.mean.shape[0]:
            raise GankitError(f"features of dimension {x.shape[1]} added to statistics of dimension {self.mean.shape[0]}")
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + torch.outer(delta, delta) * (self.n * n_b / n)
        self.n = n
        return self

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (mu (D,), sigma (D, D)), both float64 on the CPU."""
        if self.n < 2:
            raise GankitError(f"a covariance needs at least 2 feature vectors, got {self.n}")
        return self.mean.clone(), self.m2 / (self.n - 1)


def mean_cov(features) -> tuple[torch.Tensor, torch.Tensor]:
    """One-shot (mu, sigma) of all features (N, D) at once, float64; equal to a RunningStats over any batching."""
    x = _as_features(features)
    if x.shape[0] < 2:
        raise GankitError(f"a covariance needs at least 2 feature vectors, got {x.shape[0]}")
    return x.mean(dim=0), torch.cov(x.T)
