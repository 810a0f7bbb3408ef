"""Inception Score (Salimans et al. 2016, "Improved Techniques for Training GANs"):

    IS = exp(E_x KL(p(y|x) || p(y)))

from class probabilities, as the reference implementation (openai/improved-gan,
inception_score/model.py) computes it: the samples are cut into 10 consecutive splits, p(y) is the
mean of p(y|x) within a split, and the result is the mean and (population) standard deviation of
the per-split scores. It ranges from 1 (every sample the same class distribution) to the number of
classes (confident and balanced). A split needs enough samples for its p(y) (one sample is its own
marginal, and scores 1), so gankit's metric cuts fewer than 1,000 samples into as many splits of at
least 100 as they fill, one below 200 (is_splits); 1,000 or more get the reference's 10. In
gankit p(y|x) comes from the dataset's evaluator CNN, not from Inception, so the numbers compare
across gankit runs, not with published ImageNet scores.
"""

from __future__ import annotations

import numpy as np

from gankit.errors import GankitError


def is_splits(n: int) -> int:
    """How many splits the `is` metric cuts n samples into: 10, or for fewer than 1,000 one per 100 (at least one)."""
    return max(1, min(10, n // 100))


def inception_score(probs, num_splits: int = 10) -> tuple[float, float]:
    """probs (N, K) of p(y|x), rows summing to 1 -> (mean, std) of IS over `num_splits` splits."""
    p = np.asarray(probs, np.float64)
    if p.ndim != 2:
        raise GankitError(f"inception_score: probs must be (N, K), got shape {p.shape}")
    n = p.shape[0]
    if n < num_splits:
        raise GankitError(f"inception_score: {n} samples cannot be cut into {num_splits} splits")
    if p.min() < 0 or not np.allclose(p.sum(axis=1), 1, atol=1e-4):
        raise GankitError("inception_score: probs must be probabilities (non-negative rows summing to 1)")
    scores = []
    for i in range(num_splits):
        part = p[i * n // num_splits:(i + 1) * n // num_splits]  # the reference's split boundaries
        p_y = part.mean(axis=0, keepdims=True)  # (1, K) marginal of the split
        safe = part > 0  # 0 log 0 = 0
        kl = np.where(safe, part * (np.log(np.where(safe, part, 1)) - np.log(np.where(safe, p_y, 1))), 0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))
