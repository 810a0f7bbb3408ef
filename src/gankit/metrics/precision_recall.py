"""Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
for Assessing Generative Models"), as in the reference implementations (NVlabs/precision-recall,
StyleGAN2-ADA metrics/precision_recall.py).

Each set's manifold is the union of balls around its points, the radius of a ball being the
distance to the point's k-th nearest neighbour in its own set (k = 3). Precision is the share of
generated points inside the real manifold; recall the share of real points inside the generated
one. Distances are computed in float64 in blocks of rows, so memory stays at batch_size x N
(10k x 10k sets need 80 MB per block, never the whole matrix).
"""

from __future__ import annotations

import numpy as np
import torch

from gankit.errors import GankitError


def _as_points(x, name: str) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if x.dim() != 2:
        raise GankitError(f"precision_recall: {name} must be (N, D), got shape {tuple(x.shape)}")
    return x.detach().to("cpu", torch.float64)


def _sq_dists(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(M, D), (N, D) -> (M, N) squared Euclidean distances."""
    d2 = (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2 * a @ b.T
    return d2.clamp_(min=0)


def knn_radii(x, k: int = 3, batch_size: int = 1000) -> torch.Tensor:
    """Squared distance from each point of x (N, D) to its k-th nearest other point -> (N,) float64."""
    x = _as_points(x, "features")
    if x.shape[0] <= k:
        raise GankitError(f"precision_recall: k = {k} nearest neighbours need more than {k} points, got {x.shape[0]}")
    out = []
    for i in range(0, x.shape[0], batch_size):
        d2 = _sq_dists(x[i:i + batch_size], x)
        out.append(d2.kthvalue(k + 1, dim=1).values)  # k + 1: the nearest is the point itself
    return torch.cat(out)


def manifold_share(query, ref, ref_radii: torch.Tensor, batch_size: int = 1000) -> float:
    """Share of the query points that lie inside some ball (ref point, its k-NN radius)."""
    query, ref = _as_points(query, "query"), _as_points(ref, "reference")
    inside = 0
    for i in range(0, query.shape[0], batch_size):
        d2 = _sq_dists(query[i:i + batch_size], ref)
        inside += int((d2 <= ref_radii[None, :]).any(dim=1).sum())
    return inside / query.shape[0]


def precision_recall(real, fake, k: int = 3, batch_size: int = 1000,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """real (N, D), fake (M, D) features -> (precision, recall). real_radii: knn_radii(real, k), if known."""
    real, fake = _as_points(real, "real"), _as_points(fake, "fake")
    if real.shape[1] != fake.shape[1]:
        raise GankitError(f"precision_recall: real and fake features differ in dimension ({real.shape[1]} vs {fake.shape[1]})")
    if real_radii is None:
        real_radii = knn_radii(real, k, batch_size)
    fake_radii = knn_radii(fake, k, batch_size)
    precision = manifold_share(fake, real, real_radii, batch_size)
    recall = manifold_share(real, fake, fake_radii, batch_size)
    return precision, recall
