"""Train the evaluator CNN of a dataset: the feature extractor of gankit's FID, IS, precision/recall
and class coverage (gankit.metrics.evaluator).

    python benchmarks/train_evaluator.py --dataset mnist           # -> src/gankit/evaluators/mnist.pt + mnist.json
    python benchmarks/train_evaluator.py --dataset fashion-mnist   # -> src/gankit/evaluators/fashion-mnist.pt + .json
    python benchmarks/train_evaluator.py --dataset mnist --limit 2000 --test_limit 1000 --epochs 1 \\
        --out /tmp/ev --min_accuracy 0                             # a seconds-long smoke test

The whole split sits in memory as uint8 and batches are drawn by index, as in gankit's trainer.
Training: AdamW with a one-cycle learning rate, random shifts of up to 2 px (and horizontal flips
for Fashion-MNIST), no label smoothing (it would cap the confidences that the Inception Score
reads). Everything random comes from --seed, so a run repeats exactly on the same machine and
thread count. Weights are written only if the test accuracy reaches --min_accuracy (the targets:
99.3% MNIST, 92% Fashion-MNIST), next to a JSON provenance file: sha256, the exact command, data
checksums, epochs, seed, test accuracy per epoch, torch version, date.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import platform
import shlex
import sys
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from gankit import data as datasets
from gankit.metrics.evaluator import EvaluatorNet, save_weights

# Epochs: ~20 s each on an idle 2-core CPU (about 2 min for MNIST, 5 for Fashion-MNIST). Targets: the
# test accuracies the weights must reach to be written.
DEFAULTS = {"mnist": {"epochs": 6, "flip": False, "target": 0.993},
            "fashion-mnist": {"epochs": 15, "flip": True, "target": 0.92}}


def augment(x: torch.Tensor, g: torch.Generator, max_shift: int = 2, flip: bool = False) -> torch.Tensor:
    """uint8 (B, 1, H, W) -> float [-1, 1], each image shifted by up to max_shift px (zero fill) and,
    with flip, mirrored left-right with probability 1/2."""
    b, _, h, w = x.shape
    s = max_shift
    x_pad = F.pad(x[:, 0], (s, s, s, s))  # (B, H + 2s, W + 2s)
    dy = torch.randint(0, 2 * s + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * s + 1, (b,), generator=g)
    rows = (dy[:, None] + torch.arange(h))[:, :, None]  # (B, H, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, :]  # (B, 1, W)
    out = x_pad[torch.arange(b)[:, None, None], rows, cols]  # (B, H, W)
    if flip:
        mirror = torch.rand(b, generator=g) < 0.5
        out[mirror] = out[mirror].flip(-1)
    return out[:, None].float().div_(127.5).sub_(1.0)


@torch.no_grad()
def accuracy(net: EvaluatorNet, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].float().div_(127.5).sub_(1.0).contiguous(memory_format=torch.channels_last)
        correct += int((net(xb)[1].argmax(1) == y[i:i + batch_size]).sum())
    net.train()
    return correct / len(x)


def subset(d: datasets.Dataset, limit: int | None, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    if not limit or limit >= len(d.x):
        return d.x, d.y
    idx = torch.randperm(len(d.x), generator=g)[:limit]
    return d.x[idx], d.y[idx]


def tensor_sha256(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()


def train(dataset: str, epochs: int, seed: int, batch_size: int, lr: float, limit: int | None,
          test_limit: int | None, progress: bool) -> tuple[EvaluatorNet, dict]:
    g = torch.Generator().manual_seed(seed)
    train_set, test_set = datasets.load(dataset, "train"), datasets.load(dataset, "test")
    x_train, y_train = subset(train_set, limit, g)
    x_test, y_test = subset(test_set, test_limit, g)
    flip = DEFAULTS[dataset]["flip"]
    torch.manual_seed(seed)
    net = EvaluatorNet().to(memory_format=torch.channels_last)
    steps_per_epoch = len(x_train) // batch_size
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.25)
    print(f"train_evaluator: {dataset}, {len(x_train)} train / {len(x_test)} test images, {epochs} epochs x "
          f"{steps_per_epoch} steps, {sum(p.numel() for p in net.parameters())} params, "
          f"{torch.get_num_threads()} threads", file=sys.stderr)
    history, t0 = [], time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(x_train), generator=g)
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{epochs}", unit="step", disable=not progress,
                   dynamic_ncols=True, mininterval=1.0)
        loss_sum = torch.zeros(())
        for i in bar:
            idx = perm[i * batch_size:(i + 1) * batch_size]
            xb = augment(x_train[idx], g, flip=flip).contiguous(memory_format=torch.channels_last)
            loss = F.cross_entropy(net(xb)[1], y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach()
            if i % 50 == 0:
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        acc = accuracy(net, x_test, y_test)
        history.append(round(acc, 5))
        print(f"epoch {epoch + 1}/{epochs}: train loss {loss_sum.item() / steps_per_epoch:.4f}, test accuracy "
              f"{100 * acc:.2f}% ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    net.eval()
    info = {"data": {"source": f"gankit.data.load({dataset!r}, split)", "train_images": len(x_train),
                     "test_images": len(x_test), "train_sha256": tensor_sha256(x_train, y_train),
                     "test_sha256": tensor_sha256(x_test, y_test)},
            "epochs": epochs, "seed": seed, "batch_size": batch_size, "max_lr": lr,
            "optimizer": "AdamW(weight_decay=0.01), OneCycleLR(pct_start=0.25)",
            "augmentation": "random shifts up to 2 px" + (", horizontal flips" if flip else ""),
            "test_accuracy": history[-1], "test_accuracy_per_epoch": history,
            "train_seconds": round(time.perf_counter() - t0, 1)}
    return net, info


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=list(DEFAULTS))
    p.add_argument("--epochs", type=int, default=None, help="passes over the training split (default: mnist 6, fashion-mnist 15)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch_size", "--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--limit", type=int, default=None, help="train on a seeded subset of this many images (smoke tests)")
    p.add_argument("--test_limit", "--test-limit", type=int, default=None, help="test on a seeded subset of this many images")
    p.add_argument("--min_accuracy", "--min-accuracy", type=float, default=None,
                   help="write the weights only at this test accuracy or above (default: 0.993 mnist, 0.92 fashion-mnist)")
    p.add_argument("--out", default=None, help="folder for DATASET.pt and DATASET.json (default: src/gankit/evaluators)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    defaults = DEFAULTS[args.dataset]
    epochs = args.epochs or defaults["epochs"]
    min_accuracy = defaults["target"] if args.min_accuracy is None else args.min_accuracy

    net, info = train(args.dataset, epochs, args.seed, args.batch_size, args.lr, args.limit, args.test_limit,
                      progress=not args.quiet)
    if info["test_accuracy"] < min_accuracy:
        print(f"train_evaluator: test accuracy {100 * info['test_accuracy']:.2f}% is below {100 * min_accuracy:.2f}%; "
              f"weights NOT written. Train longer (--epochs) or lower --min_accuracy.", file=sys.stderr)
        return 1
    provenance = {"command": "python benchmarks/train_evaluator.py " + shlex.join(argv), **info,
                  "architecture": {"class": "gankit.metrics.evaluator.EvaluatorNet", **net.hparams,
                                   "params": sum(p.numel() for p in net.parameters())},
                  "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    path, info_path = save_weights(net, args.dataset, args.out, provenance)
    print(f"train_evaluator: test accuracy {100 * info['test_accuracy']:.2f}% -> {path} ({path.stat().st_size} bytes) "
          f"and {info_path.name}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
