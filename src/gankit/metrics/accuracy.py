"""Test accuracy of a semi-supervised discriminator: argmax over its K real-class logits (the
fake logit is ignored), on a whole labelled split, as Salimans et al. 2016 report it (test errors
out of 10,000 MNIST test images)."""

from __future__ import annotations

import contextlib

import torch

from gankit.data import to_float


@torch.no_grad()
def predictions(D: torch.nn.Module, x: torch.Tensor, batch_size: int = 1000,
                amp=contextlib.nullcontext()) -> torch.Tensor:
    """D's class for each of x (uint8 images, (N, C, H, W)): argmax over its K real-class logits.
    D is run in eval mode (no noise or dropout, BatchNorm running statistics) on x mapped to
    [-1, 1]; its mode is restored after."""
    device = next(D.parameters()).device
    was_training = D.training
    D.eval()
    out = []
    for i in range(0, len(x), batch_size):
        xb = to_float(x[i:i + batch_size].to(device))
        with amp:
            logits = D(xb).float()  # (B, K+1)
        out.append(logits[:, :-1].argmax(1))
    D.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.int64, device=device)


def classifier_accuracy(D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000,
                        amp=contextlib.nullcontext()) -> dict[str, float | int]:
    """Accuracy and error count of D's predictions() on x against y (int64 labels, (N,))."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"classifier_accuracy: {len(x)} images and {len(y)} labels")
    pred = predictions(D, x, batch_size, amp)
    right, n = int((pred == y.to(pred.device)).sum()), len(x)
    return {"test_acc": right / n, "test_errors": n - right}


def confusion_matrix(D: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     batch_size: int = 1000) -> torch.Tensor:
    """(K, K) int64 counts on the CPU: row = true class, column = D's class. Where a few labels
    fail, whole classes land on another one (class merging), which the error count alone hides."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"confusion_matrix: {len(x)} images and {len(y)} labels")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(f"confusion_matrix: labels run from {int(y.min())} to {int(y.max())}, "
                         f"outside the {num_classes} classes 0..{num_classes - 1}")
    pred = predictions(D, x, batch_size).cpu()
    return torch.bincount(y.cpu() * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)
