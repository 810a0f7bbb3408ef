"""Mode coverage on 2-D Gaussian mixtures, as used by Metz et al. 2017 (unrolled GANs) and
Srivastava et al. 2017 (VEEGAN): a sample is "high quality" if it lies within 3 standard
deviations of its nearest mode; a mode is covered if it holds at least `min_share` of the samples."""

from __future__ import annotations

import torch


def mode_coverage(samples: torch.Tensor, centers: torch.Tensor, std: float, min_share: float = 0.01) -> dict:
    """samples (N, 2), centers (M, 2) -> {"modes": covered count, "of": M, "high_quality": fraction}."""
    samples, centers = samples.detach().float().cpu(), centers.float().cpu()
    dist = torch.cdist(samples, centers)  # (N, M)
    d_min, nearest = dist.min(dim=1)
    good = d_min <= 3 * std
    counts = torch.bincount(nearest[good], minlength=centers.shape[0])
    covered = int((counts >= min_share * samples.shape[0]).sum())
    return {"modes": covered, "of": int(centers.shape[0]), "high_quality": float(good.float().mean())}
