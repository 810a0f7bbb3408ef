"""One training step of each kind of GAN, every one with the signature ``step(s, i) -> scalars``
(`s` the run's gankit.train.State, `i` the step number, scalars still on the device):

  gan_step   (1) n_critic D updates on real batches, (2) one G update (Goodfellow et al. 2014;
             the shape of the PyTorch DCGAN example); every objective of gankit.losses
  ssl_step   (1) D learns the K classes from labelled images and real vs fake from the rest,
             (2) G matches D's features (Salimans et al. 2016; see gankit.semi)

make_step picks a run's step once, before the loop; a plain step on one GPU is captured in a
CUDA graph (gankit.graphs).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Callable

import torch

from gankit import distributed, graphs
from gankit.data import to_float
from gankit.hardware import autocast
from gankit.losses import G_READS_REAL, LOGS, LOSSES, auxiliary_classes, clip_weights, feature_matching, gradient_norm, gradient_penalty, \
    real_logit, ssl_entropy, ssl_generator, ssl_supervised, ssl_unsupervised
from gankit.sample import sample_noise

if TYPE_CHECKING:
    from gankit.train import State


def make_step(s: State) -> Callable[[int], dict]:
    """The run's step(i), chosen once: semi-supervised, or plain (in a CUDA graph where it can be)."""
    if s.ssl:
        return lambda i: ssl_step(s, i)
    if not s.graphable:
        return lambda i: gan_step(s, i)
    static = dataclasses.replace(s, amp=autocast(s.cfg.precision, s.device, cache=False))

    def body(idx: list[torch.Tensor]) -> dict:  # the same step, on batch indices held in static buffers
        return gan_update(static, [(to_float(s.x_all[j], s.cfg.real_range), s.labels_of(j)) for j in idx])

    step, s.step_kind = graphs.try_static_step(lambda i: gan_step(s, i), body, s.batches, s.cfg.n_critic,
                                               s.cfg.batch_size, s.device, (s.G, s.D), (s.opt_g, s.opt_d))
    return step


# ---------------------------------------------------------------- the plain GAN

def gan_step(s: State, i: int) -> dict:
    ids = [s.batches(i * s.cfg.n_critic + k) for k in range(s.cfg.n_critic)]
    return gan_update(s, [(to_float(s.x_all[j], s.cfg.real_range), s.labels_of(j)) for j in ids])


def gan_update(s: State, reals: list[tuple[torch.Tensor, tuple]]) -> dict:
    """A D update per real batch (n_critic of them), then one G update; D's scalars are averaged
    over its updates. Each batch is (x, labels): labels is () for an unconditional GAN, (y,) for a
    conditional one, whose G and D take the class as a second argument (gankit.nets.conditional)."""
    cfg, stats = s.cfg, {}
    for k, (x_real, yr) in enumerate(reals):
        z, yf = sample_noise(cfg, x_real.shape[0], x_real.device), s.draw_labels(x_real.shape[0])
        x_fake, d_real, d_stats = d_update(s, x_real, yr, z, yf, s.step * cfg.n_critic + k)
        for key, v in d_stats.items():
            stats[key] = stats.get(key, 0) + v.detach() / len(reals)
    if not cfg.share_z:
        z, yf = sample_noise(cfg, cfg.batch_size, x_real.device), s.draw_labels(cfg.batch_size)
        with s.amp:
            x_fake = s.G_run(z, *yf)
    return stats | g_update(s, x_fake, yf, x_real, yr, d_real)


def d_update(s: State, x_real, yr: tuple, z, yf: tuple, update: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(1) Update D: minimise the objective's d_loss on D(x) and D(G(z)) (both through s.augment),
    plus λ·GP and γ/2·R1, γ/2·R2 if set, plus an auxiliary classifier's cross-entropy (acgan). With
    DiffAugment the penalties, like the loss, are of D∘augment, with respect to the images before
    augmentation (as StyleGAN2-ADA takes R1), each with a draw of its own.
    Returns G(z) (with its graph when the G update reuses it, share_z), D(x) and the scalars to
    log. `update` counts D updates, for lazy R1/R2."""
    cfg, D, aug = s.cfg, s.D_run, s.augment
    with s.amp:
        with torch.set_grad_enabled(cfg.share_z):
            x_fake = s.G_run(z, *yf)
        if s.joint:  # one pass over real and fake: the same result when D mixes no samples (no BatchNorm)
            both = [torch.cat([a, b]) for a, b in zip(yr, yf)]
            out_real, out_fake = D(aug(torch.cat([x_real, x_fake.detach()])), *both).float().chunk(2)
        else:
            out_real, out_fake = D(aug(x_real), *yr).float(), D(aug(x_fake.detach()), *yf).float()
        d_real, d_fake = out_real[:, :1], out_fake[:, :1]  # the logit; an acgan D adds K class logits
        d_loss, _ = LOSSES[cfg.loss](d_real, d_fake)
        stats = {"d_loss": d_loss, **LOGS[cfg.loss](d_real, d_fake)}
        if out_real.shape[1] > 1:
            stats["d_class"] = auxiliary_classes(out_real[:, 1:], *yr)
            if cfg.acgan_on_fake:
                stats["d_class"] = stats["d_class"] + auxiliary_classes(out_fake[:, 1:], *yf)
            d_loss = d_loss + cfg.acgan_weight * stats["d_class"]
        if cfg.gp_weight:
            stats["gp"] = gradient_penalty(lambda x: D(aug(x), *yr)[:, :1], x_real, x_fake)
            d_loss = d_loss + cfg.gp_weight * stats["gp"]
        for name, gamma, x, y in (("r1", cfg.r1_gamma, x_real, yr), ("r2", cfg.r2_gamma, x_fake, yf)):
            if gamma:  # lazily: every reg_every-th update, k times as strong (logged as k·value or 0: the same mean)
                lazy = cfg.reg_every if update % cfg.reg_every == 0 else 0
                penalty = gradient_norm(lambda x: D(aug(x), *y)[:, :1], x) if lazy else torch.zeros((), device=x.device)
                stats[name] = lazy * penalty
                d_loss = d_loss + gamma / 2 * lazy * penalty
    s.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    distributed.average_gradients(s.D, s.world)
    s.opt_d.step()
    if cfg.clip:
        clip_weights(s.D, cfg.clip)
    return x_fake, d_real, stats


def g_update(s: State, x_fake, yf: tuple, x_real, yr: tuple, d_real) -> dict:
    """(2) Update G: minimise the objective's g_loss on D(G(z)) (+ the class cross-entropy of an
    acgan D). D is frozen meanwhile, so no gradients are computed for its weights. Most g_losses
    read d_fake alone and d_real (of the last D update) is a placeholder; a pairing loss
    (G_READS_REAL) gets D(x) of the current D."""
    cfg, D = s.cfg, s.D_run
    D.requires_grad_(False)
    with s.amp:
        if cfg.loss in G_READS_REAL:
            d_real = D(s.augment(x_real), *yr).float()[:, :1]
        out = D(s.augment(x_fake), *yf).float()
        _, g_loss = LOSSES[cfg.loss](d_real.detach(), out[:, :1])
        stats = {"g_loss": g_loss}
        if out.shape[1] > 1:
            stats["g_class"] = auxiliary_classes(out[:, 1:], *yf)
            g_loss = g_loss + cfg.acgan_weight * stats["g_class"]
    s.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    distributed.average_gradients(s.G, s.world)
    s.opt_g.step()
    D.requires_grad_(True)
    return stats


# ---------------------------------------------------------------- the semi-supervised GAN

def ssl_step(s: State, i: int) -> dict:
    """n_critic D updates on labelled + unlabelled batches, then one G update (none for the baseline)."""
    cfg, ssl, stats = s.cfg, s.ssl, {}
    for k in range(cfg.n_critic):
        b = i * cfg.n_critic + k
        ids = ssl.pool[ssl.lab_batches(b)]
        x_unl = None if cfg.baseline else s.real_batch(b)
        z = None if cfg.baseline else sample_noise(cfg, x_unl.shape[0], x_unl.device)
        d_stats = ssl_d_update(s, to_float(s.x_all[ids]), ssl.y_all[ids], x_unl, z, b)
        for key, v in d_stats.items():
            stats[key] = stats.get(key, 0) + v.detach() / cfg.n_critic
    if not cfg.baseline:
        x_unl = to_float(s.x_all[ssl.unl_batches(i)])
        stats |= ssl_g_update(s, x_unl, sample_noise(cfg, x_unl.shape[0], x_unl.device))
    return stats


def ssl_d_update(s: State, x_lab, y_lab, x_unl, z, update: int) -> dict:
    """(1) Update D: -log p(y | x, real) on labelled images + unsup_weight · (-log P(real | x) on
    unlabelled images - log P(fake | G(z)) on generated ones) [+ ent_weight · the entropy of
    p(y | x, real) on the unlabelled images]; then its moving average, if kept."""
    cfg, D = s.cfg, s.D_run
    with s.amp:
        if cfg.baseline:
            l_lab = D(x_lab).float()
            d_loss = d_sup = ssl_supervised(l_lab, y_lab)
            extra = {}
        else:
            with torch.no_grad():
                x_fake = s.G_run(z)
            sizes = [len(x_lab), len(x_unl), len(x_fake)]
            if s.joint:  # one pass: the same result when D mixes no samples (no BatchNorm)
                l_lab, l_unl, l_fake = D(torch.cat([x_lab, x_unl, x_fake.to(x_lab.dtype)])).float().split(sizes)
            else:  # real images together, generated ones apart, as BatchNorm GANs do
                l_lab, l_unl = D(torch.cat([x_lab, x_unl])).float().split(sizes[:2])
                with real_statistics(s.D):
                    l_fake = D(x_fake).float()
            d_sup, d_unsup = ssl_supervised(l_lab, y_lab), ssl_unsupervised(l_unl, l_fake)
            d_loss = d_sup + cfg.unsup_weight * d_unsup
            extra = {"d_unsup": d_unsup, "d_x": torch.sigmoid(real_logit(l_unl)).mean(),
                     "d_g_z": torch.sigmoid(real_logit(l_fake)).mean()}
            if cfg.ent_weight:
                extra["d_ent"] = ssl_entropy(l_unl)
                d_loss = d_loss + cfg.ent_weight * extra["d_ent"]
    s.opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    distributed.average_gradients(s.D, s.world)
    s.opt_d.step()
    if s.ssl.D_ema is not None:
        update_ema(s.ssl.D_ema, s.D, ema_decay(cfg.ema, update))
    train_acc = (l_lab[:, :-1].argmax(1) == y_lab).float().mean()
    return {"d_loss": d_loss, "d_sup": d_sup, **extra, "train_acc": train_acc}


def ssl_g_update(s: State, x_real, z) -> dict:
    """(2) Update G: fm_weight · ‖E f(x) - E f(G(z))‖² over D's feature f (+ g_gan_weight ·
    -log P(real | G(z))). D is frozen meanwhile."""
    cfg, D = s.cfg, s.D_run
    s.D.requires_grad_(False)
    with s.amp, real_statistics(s.D):
        with torch.no_grad():
            h_real = D.features(x_real).float()
        h_fake = D.features(s.G_run(z)).float()
        g_fm = feature_matching(h_real, h_fake)
        g_loss = cfg.fm_weight * g_fm
        if cfg.g_gan_weight:
            g_loss = g_loss + cfg.g_gan_weight * ssl_generator(D.head(h_fake).float())
    s.opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    distributed.average_gradients(s.G, s.world)
    s.opt_g.step()
    s.D.requires_grad_(True)
    return {"g_loss": g_loss, "g_fm": g_fm}


@contextlib.contextmanager
def real_statistics(D: torch.nn.Module):
    """D's batch norm layers normalise each batch by its own statistics, as in training, without
    moving their running statistics: those, which D uses in eval mode (a classifier D's test
    accuracy), follow the real batches of the D update alone, not generated ones or the G update's."""
    layers = [m for m in D.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for m in layers:
        m.track_running_stats = False  # in train mode: batch statistics, running buffers left alone
    try:
        yield
    finally:
        for m in layers:
            m.track_running_stats = True


@torch.no_grad()
def update_ema(net_ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    """θ_ema ← decay · θ_ema + (1 - decay) · θ; buffers (BatchNorm statistics, spectral-norm vectors)
    are copied. Callers pass ema_decay(β, t), warmed up so the average does not linger on the
    initial weights."""
    torch._foreach_lerp_(list(net_ema.parameters()), list(net.parameters()), 1 - decay)
    for b_ema, b in zip(net_ema.buffers(), net.buffers()):
        b_ema.copy_(b)


def ema_decay(beta: float, t: int) -> float:
    """The decay of a moving average at update t: min(β, (1 + t) / (10 + t)), small at first so the
    average follows the weights, β once they have settled (the rule of both averages, of D and of G)."""
    return min(beta, (1 + t) / (10 + t))
