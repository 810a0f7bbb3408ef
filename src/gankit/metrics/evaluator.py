"""The feature extractor of gankit's metrics: a small CNN classifier per dataset (MNIST, Fashion-MNIST).

ImageNet Inception features describe 28 px grey digits poorly, so, as is common practice for
MNIST-like data, each dataset gets its own classifier, trained by
`python benchmarks/train_evaluator.py --dataset NAME` into gankit/evaluators/NAME.pt, with a
provenance file NAME.json beside it (sha256, command, data, epochs, seed, test accuracy, ...).
Distances (FID, precision/recall) use the penultimate embedding; IS and class coverage use the
class probabilities.

Input: float images in [-1, 1], (N, 1, H, W). Images that are not 28 x 28 (e.g. the 64 px DCGAN
recipes) are resized to 28 x 28 with antialiased bilinear interpolation, the filter gankit.data
uses to upscale the datasets; gankit.evaluate scores them against real images taken through the
same 28 -> 64 -> 28 round trip, so neither side is favoured by it. Three-channel images are
averaged to grey (exact for the channel-repeated MNIST that `channels=3` loads).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import GankitError
from gankit.files import save_atomic, sha256, write_text_atomic

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "evaluators"
DATASETS = ("mnist", "fashion-mnist")
IMAGE_SIZE = 28
WEIGHTS_FORMAT = 1


def _conv_bn(c_in: int, c_out: int, k: int = 3) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class EvaluatorNet(nn.Module):
    """x (B, 1, 28, 28) in [-1, 1] -> (embedding (B, embed_dim), logits (B, num_classes)).

    Three conv blocks (5x5 then 3x3 convs, BatchNorm, ReLU, 2x2 max-pool: 28 -> 14 -> 7 -> 3), a
    fully connected embedding with BatchNorm and ReLU, dropout, a linear classifier. ~0.39M
    parameters at width 32 (1.6 MB of float32 weights).
    """

    def __init__(self, width: int = 32, embed_dim: int = 256, num_classes: int = 10, dropout: float = 0.25):
        super().__init__()
        c = width
        self.conv = nn.Sequential(*_conv_bn(1, c, 5), nn.MaxPool2d(2),  # (B, c, 14, 14)
                                  *_conv_bn(c, 2 * c), nn.MaxPool2d(2),  # (B, 2c, 7, 7)
                                  *_conv_bn(2 * c, 4 * c), nn.MaxPool2d(2))  # (B, 4c, 3, 3)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(4 * c * 9, embed_dim, bias=False),
                                   nn.BatchNorm1d(embed_dim), nn.ReLU(inplace=True))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(embed_dim, num_classes))
        self.hparams = {"width": width, "embed_dim": embed_dim, "num_classes": num_classes, "dropout": dropout}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(self.conv(x))
        return h, self.head(h)


def weights_paths(dataset: str, weights_dir: str | Path | None = None) -> tuple[Path, Path]:
    """-> (DATASET.pt, DATASET.json) in weights_dir (default: the package's evaluators/ folder)."""
    folder = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    return folder / f"{dataset}.pt", folder / f"{dataset}.json"


def weights_fingerprint(net: nn.Module) -> str:
    """sha256 of a network's parameters and buffers, for evaluators built in memory (no file to hash)."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save_weights(net: EvaluatorNet, dataset: str, weights_dir: str | Path | None = None,
                 provenance: dict | None = None) -> tuple[Path, Path]:
    """Write DATASET.pt (plain tensors, loadable with weights_only=True) and DATASET.json (its sha256
    and size, then `provenance`), each to a temp file renamed into place."""
    path, info_path = weights_paths(dataset, weights_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": WEIGHTS_FORMAT, "dataset": dataset, "hparams": dict(net.hparams),
             "state_dict": {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}}
    save_atomic(state, path)
    record = {"dataset": dataset, "file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size,
              **(provenance or {})}
    write_text_atomic(info_path, json.dumps(record, indent=2) + "\n")
    return path, info_path


class Evaluator:
    """A trained EvaluatorNet in eval mode: batched, no-grad features / logits / probs of images in [-1, 1]."""

    def __init__(self, net: EvaluatorNet, dataset: str, sha256: str | None = None,
                 device: str | torch.device = "cpu", batch_size: int = 500):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.dataset = dataset
        self.sha256 = sha256 or weights_fingerprint(net)  # the cache key of real statistics
        self.batch_size = batch_size

    @classmethod
    def load(cls, dataset: str = "mnist", device: str | torch.device = "cpu",
             weights_dir: str | Path | None = None) -> "Evaluator":
        """The evaluator of `dataset`, its weights checked against the sha256 in the provenance file."""
        if dataset not in DATASETS:
            raise GankitError(f"no evaluator for dataset {dataset!r}: evaluators exist for {', '.join(DATASETS)}")
        path, info_path = weights_paths(dataset, weights_dir)
        retrain = f"train them with: python benchmarks/train_evaluator.py --dataset {dataset}"
        if not path.is_file():
            raise GankitError(f"no evaluator weights for {dataset}; {retrain}")
        try:
            expected = json.loads(info_path.read_text())["sha256"]
        except FileNotFoundError:
            raise GankitError(f"{path}: its provenance file {info_path.name} is missing; {retrain}") from None
        except (ValueError, KeyError, TypeError) as e:
            raise GankitError(f"{info_path}: not a readable provenance file ({type(e).__name__}: {e}); {retrain}") from None
        actual = sha256(path)
        if actual != expected:
            raise GankitError(f"{path}: corrupt evaluator weights (sha256 {actual[:12]}... but {info_path.name} "
                              f"records {str(expected)[:12]}...); {retrain}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            with torch.device("meta"):  # no initial weights: drawing them would move the global RNG of a training run
                net = EvaluatorNet(**state["hparams"])
            net.load_state_dict(state["state_dict"], assign=True)
        except Exception as e:  # a foreign or damaged file that nevertheless matches its json
            raise GankitError(f"{path}: not gankit evaluator weights ({type(e).__name__}: {str(e)[:120]}); {retrain}") from None
        if state.get("format") != WEIGHTS_FORMAT or state.get("dataset") != dataset:
            raise GankitError(f"{path}: evaluator weights of format {state.get('format')} for {state.get('dataset')!r}, "
                              f"expected format {WEIGHTS_FORMAT} for {dataset!r}; {retrain}")
        return cls(net, dataset, actual, device)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> (B, 1, 28, 28) float32 on the evaluator's device."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise GankitError(f"evaluator: expected images (N, 1 or 3, H, W), got {shape}")
        if not x.is_floating_point():
            raise GankitError(f"evaluator: expected float images in [-1, 1], got {x.dtype} (convert uint8 with x / 127.5 - 1)")
        x = x.detach().to(self.device, torch.float32)
        lo, hi = x.aminmax()
        if lo < -1.001 or hi > 1.001:
            raise GankitError(f"evaluator: expected images in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
        if x.shape[1] == 3:
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
            x = F.interpolate(x, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
        return x

    @torch.no_grad()
    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images (N, C, H, W) in [-1, 1] -> (features (N, D), logits (N, K)), float32 on the CPU."""
        feats, logits = [], []
        for i in range(0, x.shape[0], self.batch_size):
            h, y = self.net(self.prepare(x[i:i + self.batch_size]))
            feats.append(h.float().cpu())
            logits.append(y.float().cpu())
        if not feats:
            raise GankitError("evaluator: no images given")
        return torch.cat(feats), torch.cat(logits)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate embedding (N, D): the feature space of FID and precision/recall."""
        return self.features_and_logits(x)[0]
