"""Semi-supervised classification with a GAN: D learns the K classes from a small labelled subset
and tells real from fake on everything else (Salimans et al. 2016; Odena 2016).

A run is semi-supervised when its config names a labelled subset (labels_per_class or
label_rate). D then returns K+1 logits (gankit.nets.ssl) and each step is

  (1) Update D: ssl_supervised on a labelled batch + unsup_weight · ssl_unsupervised on an
      unlabelled batch and a generated one;
  (2) Update G: fm_weight · feature_matching of D's features on a second unlabelled batch and a
      generated one (+ g_gan_weight · ssl_generator).

The labelled subset is a function of data_seed alone; the unlabelled pool is the whole training
split (labelled images included, as in improved-gan); the test split is only ever used to
measure. With baseline=true only the supervised term is trained: the same classifier on the
same labels, without G and without unlabelled data, so the gain from the GAN can be seen.
"""

from __future__ import annotations

import copy
import math

import torch

from gankit import distributed
from gankit.config import Config
from gankit.data import BatchIndices, load_split, to_float
from gankit.errors import GankitError
from gankit.metrics.accuracy import classifier_accuracy


def labelled_subset(y: torch.Tensor, per_class: int = 0, rate: float = 0.0, seed: int = 0) -> torch.Tensor:
    """Sorted indices of the labelled images: `per_class` of each class (balanced), or a `rate`
    fraction of all images; drawn with `seed` alone, so a data seed fixes the subset."""
    if (y < 0).any():
        raise GankitError("labels_per_class/label_rate: this dataset has no labels")
    g = torch.Generator().manual_seed(seed)
    if per_class:
        picked = []
        for c in torch.unique(y).tolist():
            members = torch.nonzero(y == c).flatten()
            if len(members) < per_class:
                raise GankitError(f"labels_per_class={per_class}: class {c} has only {len(members)} training images")
            picked.append(members[torch.randperm(len(members), generator=g)[:per_class]])
        return torch.cat(picked).sort().values
    n = max(1, round(rate * len(y)))
    return torch.randperm(len(y), generator=g)[:n].sort().values


class SemiSupervised:
    """The labelled side of a semi-supervised run: the labelled subset and its batches, the batches
    of G's step, the moving average of D, and test accuracy. The steps are gankit.steps.ssl_step."""

    def __init__(self, cfg: Config, y: torch.Tensor, n: int, device: torch.device, world: distributed.World,
                 D: torch.nn.Module):
        self.cfg, self.world = cfg, world
        self.y_all = y.to(device)
        self.labelled = labelled_subset(y, cfg.labels_per_class, cfg.label_rate, cfg.data_seed)
        # A small labelled set is tiled to at least one global batch (improved-gan tiles it to the epoch).
        pool = self.labelled.repeat(math.ceil(cfg.batch_size * world.size / len(self.labelled)))
        self.pool = pool.to(device)
        self.lab_batches = BatchIndices(len(pool), cfg.batch_size, cfg.seed + 1, device, world)
        self.unl_batches = BatchIndices(n, cfg.batch_size, cfg.seed + 2, device, world)  # for G's step
        self.D_ema = copy.deepcopy(D).requires_grad_(False) if cfg.ema else None
        self._test = None

    def init_weights(self, D: torch.nn.Module, x_all: torch.Tensor) -> None:
        """Data-dependent initialisation of a weight-normalised D on init_batch training images (fresh runs)."""
        if self.cfg.init_batch and hasattr(D, "init_from"):
            g = torch.Generator().manual_seed(self.cfg.seed)
            idx = torch.randperm(len(x_all), generator=g)[:self.cfg.init_batch].to(x_all.device)
            D.init_from(to_float(x_all[idx]))
            distributed.broadcast_state(D, self.world)
            if self.D_ema is not None:
                self.D_ema.load_state_dict(D.state_dict())

    def state_dict(self) -> dict:
        return {"D_ema": self.D_ema.state_dict()} if self.D_ema is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.D_ema is not None:
            self.D_ema.load_state_dict(state["D_ema"])

    def classifier(self, D: torch.nn.Module) -> torch.nn.Module:
        """The network that is tested: the moving average of D if the run keeps one."""
        return self.D_ema if self.D_ema is not None else D

    def test(self, D: torch.nn.Module) -> dict:
        """Accuracy and error count of the classifier on the whole test split, in float32 (as
        `gankit eval` computes it, so the two agree)."""
        if self._test is None:
            self._test = load_split(self.cfg, "test")
        return classifier_accuracy(self.classifier(D), self._test.x, self._test.y)
