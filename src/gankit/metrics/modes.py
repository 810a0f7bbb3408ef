"""Class coverage of generated images: the histogram of the evaluator's predicted classes.

The count of classes covered is the image analogue of the mode count on 2-D mixtures (metrics/toy.py):
a class counts as covered if it holds at least `min_share` (default 1%, the same threshold as
`mode_coverage`) of the samples. KL(histogram || uniform) in nats measures how unbalanced the
classes are: 0 for a perfectly balanced set, log(K) = 2.30 when every sample is one class of 10.
This is the "number of modes + KL to uniform" of Srivastava et al. 2017 (VEEGAN) on stacked MNIST,
applied to a single digit.
"""

from __future__ import annotations

import numpy as np

from gankit.errors import GankitError


def class_coverage(probs, min_share: float = 0.01) -> dict:
    """probs (N, K) class probabilities (or logits: only the argmax is used) ->
    {"modes": classes covered, "of": K, "modes_kl": KL(histogram || uniform), "histogram": counts}."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] == 0:
        raise GankitError(f"class_coverage: probs must be (N, K) with N > 0, got shape {p.shape}")
    n, k = p.shape
    counts = np.bincount(p.argmax(axis=1), minlength=k)
    share = counts / n
    covered = int((share >= min_share).sum())
    nonzero = share > 0
    kl = float((share[nonzero] * np.log(share[nonzero] * k)).sum())  # sum q log(q / (1/K)), 0 log 0 = 0
    return {"modes": covered, "of": k, "modes_kl": kl, "histogram": counts.tolist()}
