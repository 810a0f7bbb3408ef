"""Test accuracy of a semi-supervised discriminator: argmax over its K real-class logits (the
fake logit is ignored), on a whole labelled split, as Salimans et al. 2016 report it (test errors
out of 10,000 MNIST test images)."""

from __future__ import annotations

import contextlib

import torch

from gankit.data import to_float


@torch.no_grad()
def classifier_accuracy(D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
                        amp=contextlib.nullcontext()) -> dict[str, float | int]:
    """x: uint8 images (N, C, H, W); y: int64 labels (N,). D is run in eval mode (no noise or
    dropout, BatchNorm running statistics) on x mapped to [-1, 1]; its mode is restored after."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"classifier_accuracy: {len(x)} images and {len(y)} labels")
    device = next(D.parameters()).device
    was_training = D.training
    D.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i:i + batch_size].to(device))
        with amp:
            logits = D(xb).float()  # (B, K+1)
        correct += (logits[:, :-1].argmax(1) == y[i:i + batch_size].to(device)).sum()
    D.train(was_training)
    n, right = len(x), int(correct)
    return {"test_acc": right / n, "test_errors": n - right}
