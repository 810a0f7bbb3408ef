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
from gankit.build import BatchIndices, sample_noise
from gankit.config import Config
from gankit.data import Dataset
from gankit.errors import GankitError
from gankit.losses import feature_matching, real_logit, ssl_generator, ssl_supervised, ssl_unsupervised


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
    """The semi-supervised side of a run: labelled batches, the (1)/(2) steps, the moving average
    of D and test accuracy. `x_all` is the training split on the device (uint8 images) and
    `to_float` maps a uint8 batch to D's input range."""

    def __init__(self, cfg: Config, data: Dataset, x_all: torch.Tensor, to_float, device: torch.device,
                 world: distributed.World, D: torch.nn.Module, joint: bool):
        self.cfg, self.world, self.to_float, self.joint = cfg, world, to_float, joint
        self.x_all, self.y_all = x_all, data.y.to(device)
        self.labelled = labelled_subset(data.y, cfg.labels_per_class, cfg.label_rate, cfg.data_seed)
        # A small labelled set is tiled to at least one global batch (improved-gan tiles it to the epoch).
        pool = self.labelled.repeat(math.ceil(cfg.global_batch_size / len(self.labelled)))
        self.pool = pool.to(device)
        self.lab_batches = BatchIndices(len(pool), cfg.batch_size, cfg.seed + 1, device, world)
        self.unl_batches = BatchIndices(len(x_all), cfg.batch_size, cfg.seed + 2, device, world)  # for G's step
        self.D_ema = copy.deepcopy(D).requires_grad_(False) if cfg.ema else None
        self._test = None

    # ---------------------------------------------------------------- state

    def init_weights(self, D: torch.nn.Module) -> None:
        """Data-dependent initialisation of a weight-normalised D on init_batch training images (fresh runs)."""
        if self.cfg.init_batch and hasattr(D, "init_from"):
            g = torch.Generator().manual_seed(self.cfg.seed)
            idx = torch.randperm(len(self.x_all), generator=g)[:self.cfg.init_batch].to(self.x_all.device)
            D.init_from(self.to_float(self.x_all[idx]))
            distributed.broadcast_state(D, self.world)
            if self.D_ema is not None:
                self.D_ema.load_state_dict(D.state_dict())

    def state_dict(self) -> dict:
        return {"D_ema": self.D_ema.state_dict()} if self.D_ema is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.D_ema is not None:
            self.D_ema.load_state_dict(state["D_ema"])

    # ---------------------------------------------------------------- training

    def train_step(self, G, D, G_params, opt_g, opt_d, step: int, unl_batch, amp) -> dict:
        """n_critic D updates on labelled + unlabelled batches, then one G update (none for the baseline)."""
        cfg, stats = self.cfg, {}
        for i in range(cfg.n_critic):
            b = step * cfg.n_critic + i
            ids = self.pool[self.lab_batches(b)]
            x_lab, y_lab = self.to_float(self.x_all[ids]), self.y_all[ids]
            x_unl = None if cfg.baseline else unl_batch(b)
            z = None if cfg.baseline else sample_noise(cfg, x_unl.shape[0], x_unl.device)
            s = self.d_step(G, D, opt_d, x_lab, y_lab, x_unl, z, amp, b)
            for k, v in s.items():
                stats[k] = stats.get(k, 0) + v.detach() / cfg.n_critic
        if not cfg.baseline:
            x_unl2 = self.to_float(self.x_all[self.unl_batches(step)])
            z = sample_noise(cfg, x_unl2.shape[0], x_unl2.device)
            stats.update(self.g_step(G, D, G_params, opt_g, x_unl2, z, amp))
        return stats

    def d_step(self, G, D, opt_d, x_lab, y_lab, x_unl, z, amp, update: int = 0) -> dict:
        """(1) Update D: -log p(y | x, real) on labelled images + unsup_weight · (-log P(real | x) on
        unlabelled images - log P(fake | G(z)) on generated ones)."""
        cfg = self.cfg
        with amp:
            if cfg.baseline:
                l_lab = D(x_lab).float()
                d_sup = ssl_supervised(l_lab, y_lab)
                d_loss, extra = d_sup, {}
            else:
                with torch.no_grad():
                    x_fake = G(z)
                sizes = [len(x_lab), len(x_unl), len(x_fake)]
                if self.joint:  # one pass: the same result when D mixes no samples (no BatchNorm)
                    l_lab, l_unl, l_fake = D(torch.cat([x_lab, x_unl, x_fake.to(x_lab.dtype)])).float().split(sizes)
                else:  # real images together, generated ones apart, as BatchNorm GANs do
                    l_lab, l_unl = D(torch.cat([x_lab, x_unl])).float().split(sizes[:2])
                    l_fake = D(x_fake).float()
                d_sup = ssl_supervised(l_lab, y_lab)
                d_unsup = ssl_unsupervised(l_unl, l_fake)
                d_loss = d_sup + cfg.unsup_weight * d_unsup
                extra = {"d_unsup": d_unsup, "d_x": torch.sigmoid(real_logit(l_unl)).mean(),
                         "d_g_z": torch.sigmoid(real_logit(l_fake)).mean()}
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        distributed.average_gradients(D, self.world)
        opt_d.step()
        if self.D_ema is not None:
            update_ema(self.D_ema, D, min(cfg.ema, (1 + update) / (10 + update)))
        train_acc = (l_lab[:, :-1].argmax(1) == y_lab).float().mean()
        return {"d_loss": d_loss, "d_sup": d_sup, **extra, "train_acc": train_acc}

    def g_step(self, G, D, G_params, opt_g, x_real, z, amp) -> dict:
        """(2) Update G: fm_weight · ‖E f(x) - E f(G(z))‖² over D's feature f (+ g_gan_weight ·
        -log P(real | G(z))). D is frozen meanwhile."""
        cfg = self.cfg
        D.requires_grad_(False)
        with amp:
            with torch.no_grad():
                h_real = D.features(x_real).float()
            h_fake = D.features(G(z)).float()
            g_fm = feature_matching(h_real, h_fake)
            g_loss = cfg.fm_weight * g_fm
            if cfg.g_gan_weight:
                g_loss = g_loss + cfg.g_gan_weight * ssl_generator(D.head(h_fake).float())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        distributed.average_gradients(G_params, self.world)
        opt_g.step()
        D.requires_grad_(True)
        return {"g_loss": g_loss, "g_fm": g_fm}

    # ---------------------------------------------------------------- measuring

    def classifier(self, D: torch.nn.Module) -> torch.nn.Module:
        """The network that is tested: the moving average of D if the run keeps one."""
        return self.D_ema if self.D_ema is not None else D

    def test(self, D: torch.nn.Module) -> dict:
        """Accuracy and error count of the classifier on the whole test split, in float32 (as
        `gankit eval` computes it, so the two agree)."""
        from gankit.metrics.accuracy import classifier_accuracy

        if self._test is None:
            self._test = load_test_split(self.cfg)
        return classifier_accuracy(self.classifier(D), *self._test)


@torch.no_grad()
def update_ema(D_ema: torch.nn.Module, D: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay · θ_ema + (1 - decay) · θ; buffers (BatchNorm statistics) are copied. The
    caller warms the decay up, min(ema, (1 + t) / (10 + t)) at update t, so that the average does
    not linger on the initial weights."""
    torch._foreach_lerp_(list(D_ema.parameters()), list(D.parameters()), 1 - decay)
    for b_ema, b in zip(D_ema.buffers(), D.buffers()):
        b_ema.copy_(b)


def load_classifier(run_or_checkpoint, device: str = "auto") -> torch.nn.Module:
    """The tested classifier of a semi-supervised run (its moving average of D if it kept one), in eval mode."""
    from gankit.sample import load_networks

    return load_networks(run_or_checkpoint, device)[1]


def load_test_split(cfg: Config) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images (uint8, shaped as in training) and labels of a run's dataset."""
    from gankit import data as datasets

    test = datasets.load(cfg.dataset, "test", data_dir=cfg.data_dir, image_size=cfg.image_size,
                         channels=cfg.channels, download=cfg.download)
    return test.x, test.y
