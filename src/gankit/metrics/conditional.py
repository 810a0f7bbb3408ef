"""Whether conditioning works: of the samples a conditional G drew for class k, the share that a
classifier trained on the real data (the dataset's evaluator) assigns to class k. On real images
with their own labels the same number is the evaluator's accuracy; its floor in gankit.evaluate is
taken on training images, which the evaluator was trained on, so it runs a little above its
accuracy on unseen images."""

from __future__ import annotations

import torch


def conditional_accuracy(probs: torch.Tensor, labels: torch.Tensor) -> dict:
    """probs (N, K) class probabilities (or logits: only the argmax is used), labels (N,) the class
    each sample was drawn for -> {"overall": share correct, "by_class": [share correct of class k]}."""
    hit = (probs.argmax(dim=1) == labels.to(probs.device)).float()
    k = probs.shape[1]
    by_class = [hit[labels == c].mean().item() if (labels == c).any() else float("nan") for c in range(k)]
    return {"overall": hit.mean().item(), "by_class": by_class}
