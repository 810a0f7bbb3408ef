"""GAN objectives as small pure functions, and the penalties that go beside them.

Every objective has one signature, ``d_loss, g_loss = loss(d_real, d_fake)``, where ``d_real``
and ``d_fake`` are the discriminator's raw outputs (logits, or critic values) on a batch of real
and generated images. Both returned values are batch means; the training loop calls
``.backward()``. Discriminators never end in a sigmoid, so the same network serves every
objective and the log-sigmoid terms are computed stably.

References: Goodfellow et al. 2014 (minimax, non-saturating), Mao et al. 2017 (least squares),
Arjovsky et al. 2017 (Wasserstein, weight clipping), Gulrajani et al. 2017 (gradient penalty),
Lim & Ye 2017 / Miyato et al. 2018 (hinge), Jolicoeur-Martineau 2019 / Huang et al. 2024
(relativistic pairing), Mescheder et al. 2018 (R1, R2), Salimans et al. 2016 (semi-supervised K+1 classes,
feature matching).

Semi-supervised discriminators return K+1 logits per image, the last one for "fake"
(gankit.nets.ssl); their terms are the functions under "Semi-supervised" below.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def minimax(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """The original two-player game; G's loss saturates when D rejects its samples."""
    d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # -log σ(d_real) - log(1 - σ(d_fake))
    g_loss = -F.softplus(d_fake).mean()  # log(1 - σ(d_fake)), minimised by G
    return d_loss, g_loss


def nonsaturating(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """The practical GAN loss: D as minimax, G maximises log D(G(z)) (BCE against 1)."""
    d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()  # BCE(real, 1) + BCE(fake, 0)
    g_loss = F.softplus(-d_fake).mean()  # -log σ(d_fake)
    return d_loss, g_loss


def least_squares(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """LSGAN with targets a=0 (fake), b=1 (real), c=1 (what G wants), halved as in the paper."""
    d_loss = 0.5 * (d_real - 1).pow(2).mean() + 0.5 * d_fake.pow(2).mean()  # ½(D(x)-1)² + ½D(G(z))²
    g_loss = 0.5 * (d_fake - 1).pow(2).mean()  # ½(D(G(z))-1)²
    return d_loss, g_loss


def wasserstein(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """WGAN critic loss; -d_loss estimates the Wasserstein-1 distance when D is 1-Lipschitz."""
    d_loss = d_fake.mean() - d_real.mean()  # E[D(G(z))] - E[D(x)]
    g_loss = -d_fake.mean()  # -E[D(G(z))]
    return d_loss, g_loss


def hinge(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """Hinge loss: D is only pushed on samples inside the margin."""
    d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()  # max(0, 1-D(x)) + max(0, 1+D(G(z)))
    g_loss = -d_fake.mean()
    return d_loss, g_loss


def mse_sigmoid(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """Mean squared error between σ(D) and the 1/0 labels, as in the TensorLayerX MLP GAN."""
    p_real, p_fake = torch.sigmoid(d_real), torch.sigmoid(d_fake)
    d_loss = (p_real - 1).pow(2).mean() + p_fake.pow(2).mean()  # (σ(D(x))-1)² + σ(D(G(z)))²
    g_loss = (p_fake - 1).pow(2).mean()  # (σ(D(G(z)))-1)²
    return d_loss, g_loss


def relativistic(d_real: Tensor, d_fake: Tensor) -> tuple[Tensor, Tensor]:
    """Relativistic pairing (RpGAN; Jolicoeur-Martineau 2019), the objective of R3GAN (Huang et al.
    2024): each real image should score above its paired fake, softplus(-(D(x) - D(G(z)))), and G
    wants the reverse. Unlike the losses above, G's loss reads d_real too (see G_READS_REAL)."""
    d_loss = F.softplus(-(d_real - d_fake)).mean()
    g_loss = F.softplus(-(d_fake - d_real)).mean()
    return d_loss, g_loss


LOSSES = {
    "minimax": minimax,
    "nonsaturating": nonsaturating,
    "least_squares": least_squares,
    "wasserstein": wasserstein,
    "hinge": hinge,
    "mse_sigmoid": mse_sigmoid,
    "relativistic": relativistic,
}
G_READS_REAL = {"relativistic"}  # objectives whose g_loss needs D(x) of the current D, not a placeholder


# ---------------------------------------------------------------- what each objective logs

def probabilities(d_real: Tensor, d_fake: Tensor) -> dict[str, Tensor]:
    """D(x) and D(G(z)) as probabilities: D's output is a logit of "real"."""
    return {"d_x": torch.sigmoid(d_real).mean(), "d_g_z": torch.sigmoid(d_fake).mean()}


def critic_estimate(d_real: Tensor, d_fake: Tensor) -> dict[str, Tensor]:
    """The critic's estimate of the Wasserstein-1 distance, E[D(x)] - E[D(G(z))]."""
    return {"w_dist": d_real.mean() - d_fake.mean()}


def raw_outputs(d_real: Tensor, d_fake: Tensor) -> dict[str, Tensor]:
    """Mean D(x) and D(G(z)) as they are (least squares targets 1 and 0; hinge margins ±1)."""
    return {"d_real": d_real.mean(), "d_fake": d_fake.mean()}


# The D step logs d_loss, then LOGS[loss](d_real, d_fake): keys the report charts as it finds them.
LOGS = {
    "minimax": probabilities,
    "nonsaturating": probabilities,
    "least_squares": raw_outputs,
    "wasserstein": critic_estimate,
    "hinge": raw_outputs,
    "mse_sigmoid": probabilities,
    "relativistic": raw_outputs,
}


# ---------------------------------------------------------------- semi-supervised (K+1 classes)

def real_logit(logits: Tensor) -> Tensor:
    """The logit of P(real | x) from K+1 logits l (fake last): log Σ_k exp(l_k) - l_fake.

    With the fake logit fixed at 0 this is log Z(x), so σ(real_logit) = Z / (Z + 1) (Salimans et al.)."""
    return torch.logsumexp(logits[:, :-1], dim=1) - logits[:, -1]


def ssl_supervised(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy of the true class among the K real classes: -log p(y | x, real)."""
    return F.cross_entropy(logits[:, :-1], y)


def ssl_unsupervised(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    """D's real/fake term: -log P(real | x) on unlabelled images - log P(fake | G(z)) on generated ones,
    i.e. the GAN discriminator loss on real_logit."""
    return F.softplus(-real_logit(logits_real)).mean() + F.softplus(real_logit(logits_fake)).mean()


def ssl_entropy(logits: Tensor) -> Tensor:
    """Mean entropy of p(y | x, real) over the K real classes, -Σ_k p_k log p_k: minimised on
    unlabelled images, it pushes D's class boundaries away from the data (Grandvalet & Bengio 2005)."""
    logp = F.log_softmax(logits[:, :-1], dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def ssl_generator(logits_fake: Tensor) -> Tensor:
    """The non-saturating G term for a K+1 discriminator: -log P(real | G(z))."""
    return F.softplus(-real_logit(logits_fake)).mean()


def feature_matching(h_real: Tensor, h_fake: Tensor) -> Tensor:
    """G's feature-matching loss: mean over units of (E[f(x)] - E[f(G(z))])², batch means of a D feature."""
    return (h_real.mean(0) - h_fake.mean(0)).pow(2).mean()


def gradient_penalty(D, x_real: Tensor, x_fake: Tensor) -> Tensor:
    """WGAN-GP penalty E[(‖∇D(x̂)‖₂ - 1)²] on x̂ = αx + (1-α)x̃, one α ~ U[0,1] per sample.

    Gulrajani et al. 2017, Algorithm 1. The caller multiplies by λ. ``create_graph`` keeps the
    penalty differentiable with respect to D's weights.
    """
    alpha = torch.rand(x_real.shape[0], *([1] * (x_real.dim() - 1)), device=x_real.device)
    x_hat = (alpha * x_real.detach() + (1 - alpha) * x_fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def gradient_norm(D, x: Tensor) -> Tensor:
    """E‖∇ₓD(x)‖²: R1 on real images, R2 on generated ones (Mescheder et al. 2018), zero-centred
    gradient penalties that keep D from growing steep around the data (R1) and the samples (R2).
    The caller multiplies by γ/2; ``create_graph`` keeps it differentiable for D's weights."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x).float().sum(), x, create_graph=True)
    return grad.flatten(1).float().pow(2).sum(1).mean()


def auxiliary_classes(class_logits: Tensor, y: Tensor) -> Tensor:
    """ACGAN's auxiliary classifier term (Odena et al. 2017): -log p(y | x) from D's K class logits,
    on real images with their labels and on generated ones with the labels they were drawn for."""
    return F.cross_entropy(class_logits, y)


@torch.no_grad()
def clip_weights(D, clip: float) -> None:
    """WGAN weight clipping, a step after D's optimizer: every parameter into [-clip, clip]."""
    for p in D.parameters():
        p.clamp_(-clip, clip)
