"""Every objective and penalty against numbers computed by hand (float64 numpy, or pencil)."""

import math

import pytest
import torch

from gankit.losses import LOSSES, clip_weights, gradient_penalty, hinge, least_squares, minimax, \
    mse_sigmoid, nonsaturating, wasserstein

REAL = torch.tensor([[2.0], [-1.0]])
FAKE = torch.tensor([[0.5], [-3.0]])


def sp(x):  # softplus in float64: log(1 + e^x)
    return math.log1p(math.exp(x))


def test_every_loss_is_tested():
    assert set(LOSSES) == {"minimax", "nonsaturating", "least_squares", "wasserstein", "hinge", "mse_sigmoid",
                           "relativistic"}  # relativistic: tests/test_techniques.py


def test_relativistic_by_hand():
    from gankit.losses import relativistic

    d, g = relativistic(REAL, FAKE)  # pairs (2, 0.5) and (-1, -3)
    assert d.item() == pytest.approx((sp(-1.5) + sp(-2)) / 2, rel=1e-6)
    assert g.item() == pytest.approx((sp(1.5) + sp(2)) / 2, rel=1e-6)


def test_nonsaturating_by_hand():
    d, g = nonsaturating(REAL, FAKE)
    # -log σ(r) = softplus(-r);  -log(1-σ(f)) = softplus(f);  -log σ(f) = softplus(-f)
    assert d.item() == pytest.approx((sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2, rel=1e-6)
    assert g.item() == pytest.approx((sp(-0.5) + sp(3)) / 2, rel=1e-6)


def test_minimax_by_hand():
    d, g = minimax(REAL, FAKE)
    assert d.item() == pytest.approx((sp(-2) + sp(1)) / 2 + (sp(0.5) + sp(-3)) / 2, rel=1e-6)
    assert g.item() == pytest.approx(-(sp(0.5) + sp(-3)) / 2, rel=1e-6)  # mean log(1 - σ(f))


def test_least_squares_by_hand():
    d, g = least_squares(REAL, FAKE)
    assert d.item() == pytest.approx(0.5 * ((2 - 1) ** 2 + (-1 - 1) ** 2) / 2 + 0.5 * (0.25 + 9) / 2)
    assert g.item() == pytest.approx(0.5 * ((0.5 - 1) ** 2 + (-3 - 1) ** 2) / 2)


def test_wasserstein_by_hand():
    d, g = wasserstein(REAL, FAKE)
    assert d.item() == pytest.approx((0.5 - 3) / 2 - (2 - 1) / 2)
    assert g.item() == pytest.approx(-(0.5 - 3) / 2)


def test_hinge_by_hand():
    d, g = hinge(REAL, FAKE)
    # relu(1 - [2, -1]) = [0, 2]; relu(1 + [0.5, -3]) = [1.5, 0]
    assert d.item() == pytest.approx(1.0 + 0.75)
    assert g.item() == pytest.approx(1.25)


def test_mse_sigmoid_by_hand():
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    d, g = mse_sigmoid(REAL, FAKE)
    assert d.item() == pytest.approx(((s(2) - 1) ** 2 + (s(-1) - 1) ** 2) / 2 + (s(0.5) ** 2 + s(-3) ** 2) / 2, rel=1e-6)
    assert g.item() == pytest.approx(((s(0.5) - 1) ** 2 + (s(-3) - 1) ** 2) / 2, rel=1e-6)


# The cs231n notebook's definitions, as written there (float32 torch), and its rel_error check.
def cs231n_bce_loss(input, target):
    neg_abs = -input.abs()
    loss = input.clamp(min=0) - input * target + (1 + neg_abs.exp()).log()
    return loss.mean()


def cs231n_discriminator_loss(logits_real, logits_fake):
    return cs231n_bce_loss(logits_real, torch.ones_like(logits_real)) + \
        cs231n_bce_loss(logits_fake, torch.zeros_like(logits_fake))


def cs231n_generator_loss(logits_fake):
    return cs231n_bce_loss(logits_fake, torch.ones_like(logits_fake))


def cs231n_ls_discriminator_loss(scores_real, scores_fake):
    return 0.5 * ((scores_real - 1) ** 2).mean() + 0.5 * (scores_fake ** 2).mean()


def cs231n_ls_generator_loss(scores_fake):
    return 0.5 * ((scores_fake - 1) ** 2).mean()


def rel_error(x, y):
    return abs(x - y) / max(1e-8, abs(x) + abs(y))


@pytest.mark.parametrize("seed", range(5))
def test_matches_cs231n_definitions(seed):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(128, 1, generator=g) * 3  # float32, shape (N, 1) as in the notebook
    fake = torch.randn(128, 1, generator=g) * 3
    pairs = [(nonsaturating(real, fake)[0], cs231n_discriminator_loss(real, fake)),
             (nonsaturating(real, fake)[1], cs231n_generator_loss(fake)),
             (least_squares(real, fake)[0], cs231n_ls_discriminator_loss(real, fake)),
             (least_squares(real, fake)[1], cs231n_ls_generator_loss(fake))]
    for ours, theirs in pairs:
        assert rel_error(ours.item(), theirs.item()) < 1e-7
        # and against the exact value in float64, within float32 rounding of a mean of 128 terms
    r, f = real.double(), fake.double()
    assert nonsaturating(real, fake)[0].item() == pytest.approx(nonsaturating(r, f)[0].item(), rel=1e-6)


def test_losses_are_stable_at_extreme_logits():
    big = torch.tensor([[80.0], [-80.0]])
    for name, loss in LOSSES.items():
        d, g = loss(big, -big)
        assert torch.isfinite(d) and torch.isfinite(g), name


class Recorder(torch.nn.Module):
    """D(x) = 0.5 * sum(x^2) per sample, so dD/dx = x; records the points it was called on."""

    def forward(self, x):
        self.seen = x
        return 0.5 * x.pow(2).flatten(1).sum(1, keepdim=True)


def test_gradient_penalty_linear_critic_by_hand():
    w = torch.tensor([3.0, 4.0])
    D = lambda x: x @ w[:, None]  # noqa: E731  gradient is w everywhere, |w| = 5
    x_real, x_fake = torch.randn(16, 2), torch.randn(16, 2)
    assert gradient_penalty(D, x_real, x_fake).item() == pytest.approx((5 - 1) ** 2)


def test_gradient_penalty_interpolates_per_sample():
    torch.manual_seed(0)
    x_real = torch.randn(256, 3, 4, 4)
    x_fake = torch.randn(256, 3, 4, 4)
    D = Recorder()
    gp = gradient_penalty(D, x_real, x_fake)
    x_hat = D.seen.detach()
    # x_hat = α x_real + (1-α) x_fake with ONE α per sample: solve for α element-wise and compare.
    # Recover α = (x_hat - x_fake) / (x_real - x_fake) from one well-conditioned element per
    # sample, then check that this single α reproduces every element of that sample.
    diff = (x_real - x_fake).flatten(1)
    j = diff.abs().argmax(dim=1, keepdim=True)
    a = ((x_hat.flatten(1) - x_fake.flatten(1)).gather(1, j) / diff.gather(1, j)).squeeze(1)
    rebuilt = a.view(-1, 1, 1, 1) * x_real + (1 - a.view(-1, 1, 1, 1)) * x_fake
    assert torch.allclose(rebuilt, x_hat, atol=1e-5)
    assert a.min() >= 0 and a.max() <= 1
    assert a.std() > 0.2  # U[0,1] has std 0.289; a normal draw or a single α would fail here
    assert abs(a.mean().item() - 0.5) < 0.06
    # dD/dx at x_hat is x_hat itself, so the penalty is mean((|x_hat| - 1)^2)
    assert gp.item() == pytest.approx((x_hat.flatten(1).norm(dim=1) - 1).pow(2).mean().item(), rel=1e-5)


def test_gradient_penalty_is_differentiable_in_D_weights():
    D = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    gp = gradient_penalty(D, torch.randn(32, 2), torch.randn(32, 2))
    gp.backward()
    # The penalty involves dD/dx, which depends on every weight (the last bias drops out).
    for w in (D[0].weight, D[0].bias, D[2].weight):
        assert w.grad is not None and torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_clip_weights():
    D = torch.nn.Linear(4, 4)
    with torch.no_grad():
        D.weight.mul_(100)
    clip_weights(D, 0.01)
    assert D.weight.abs().max() <= 0.01 and D.bias.abs().max() <= 0.01
    assert (D.weight.abs() == 0.01).any()


def test_every_objective_says_what_it_logs():
    from gankit.losses import LOGS

    assert set(LOGS) == set(LOSSES)
    d_real, d_fake = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])
    for name, logs in LOGS.items():
        row = logs(d_real, d_fake)
        assert row and all(v.dim() == 0 and torch.isfinite(v) for v in row.values()), name
    assert LOGS["wasserstein"](d_real, d_fake)["w_dist"] == pytest.approx(1.0)  # E[D(x)] - E[D(G(z))]
    assert LOGS["nonsaturating"](d_real, d_fake)["d_x"] == pytest.approx((torch.sigmoid(d_real).mean()).item())
