"""The training techniques beside the seed recipes, each against its definition: spectral norm,
R1/R2, the relativistic pairing loss, DiffAugment and the moving average of G; and resume stays
bit-exact with all of them on."""

import math

import pytest
import torch

from gankit.augment import diff_augment
from gankit.config import validate
from gankit.errors import GankitError
from gankit.losses import gradient_norm, relativistic
from gankit.nets import MLPDiscriminator, spectral_normalise
from gankit.recipes import RECIPES
from gankit.sample import load_generator
from gankit.steps import update_ema
from gankit.train import train

from test_recipes import small_config
from test_train import same_state, uninterrupted_and_resumed

TECHNIQUES = dict(g_ema=0.9, spectral_norm=True, r1_gamma=1.0, r2_gamma=0.5, reg_every=2,
                  diffaugment="color,translation,cutout", loss="relativistic")


def test_spectral_norm_makes_every_layer_1_lipschitz():
    torch.manual_seed(0)
    D = spectral_normalise(MLPDiscriminator([1, 28, 28], [256, 256], torch.nn.LeakyReLU))
    x = torch.randn(8, 1, 28, 28)
    for _ in range(200):  # one power iteration per forward pass in training mode
        D(x)
    layers = [m for m in D.modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) == 3
    for m in layers:
        assert torch.linalg.matrix_norm(m.weight.detach(), 2).item() == pytest.approx(1.0, abs=5e-3)


def test_r1_of_a_linear_discriminator_is_its_squared_weight_norm():
    torch.manual_seed(0)
    lin = torch.nn.Linear(12, 1)
    D = torch.nn.Sequential(torch.nn.Flatten(), lin)
    x = torch.randn(5, 3, 2, 2)
    r1 = gradient_norm(D, x)  # ∇ₓ(w·x + b) = w for every sample
    assert r1.item() == pytest.approx(lin.weight.pow(2).sum().item(), rel=1e-6)
    r1.backward()  # differentiable in D's weights: ∂‖w‖²/∂w = 2w
    assert torch.allclose(lin.weight.grad, 2 * lin.weight.detach())


@pytest.mark.parametrize("penalty", ["r1", "gp"])
def test_with_diffaugment_the_penalties_are_of_d_after_augmentation(penalty):
    """The loss trains D∘augment, so R1/R2 and the gradient penalty are taken of D∘augment, with
    respect to the images before augmentation (a linear D, an augmentation x -> 3x: ∇ = 3w)."""
    import contextlib
    from types import SimpleNamespace

    from gankit.distributed import World
    from gankit.steps import d_update

    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 1)
    D = torch.nn.Sequential(torch.nn.Flatten(), lin)
    cfg = RECIPES["cs231n-gan"].config(out="x", loss="wasserstein" if penalty == "gp" else "nonsaturating",
                                       gp_weight=10.0 if penalty == "gp" else 0.0, r1_gamma=float(penalty == "r1"))
    s = SimpleNamespace(cfg=cfg, D=D, D_run=lambda x: D(x), G_run=lambda z: z.view(-1, 1, 2, 2), augment=lambda x: 3 * x,
                        amp=contextlib.nullcontext(), joint=True, world=World(),
                        opt_d=torch.optim.SGD(D.parameters(), lr=0.0))
    w = lin.weight.detach().norm().item()
    _, _, stats = d_update(s, torch.randn(6, 1, 2, 2), (), torch.randn(6, 4), (), 0)
    expected = (3 * w) ** 2 if penalty == "r1" else (3 * w - 1) ** 2  # not w² or (w - 1)²: D alone
    assert stats[penalty].item() == pytest.approx(expected, rel=1e-5)


def test_relativistic_pairing_loss_by_hand():
    d_real, d_fake = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    d_loss, g_loss = relativistic(d_real, d_fake)
    assert d_loss.item() == pytest.approx((math.log1p(math.exp(-1)) + math.log1p(math.exp(1))) / 2)
    assert g_loss.item() == pytest.approx((math.log1p(math.exp(1)) + math.log1p(math.exp(-1))) / 2)
    assert relativistic(d_real, d_real)[0].item() == pytest.approx(math.log(2))  # no margin: log 2


def test_moving_average_after_k_updates_is_the_closed_form():
    """θ held at 1 from θ_ema = 0: after k warmed-up updates θ_ema = 1 - Π_t d_t, d_t = min(β, (1+t)/(10+t))."""
    net, avg = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    torch.nn.init.ones_(net.weight), torch.nn.init.zeros_(avg.weight)
    beta, decays = 0.9, []
    for t in range(30):
        decays.append(min(beta, (1 + t) / (10 + t)))
        update_ema(avg, net, decays[-1])
    expected = 1 - math.prod(decays)
    assert torch.allclose(avg.weight, torch.full((3, 3), expected), atol=1e-6)


def test_diffaugment_is_differentiable_and_seeded():
    x = (torch.rand(6, 3, 16, 16) * 2 - 1).requires_grad_(True)
    policy = "color,translation,cutout"
    a = diff_augment(x, policy, torch.Generator().manual_seed(3))
    b = diff_augment(x, policy, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)  # the same draws transform real and fake alike
    assert not torch.equal(a, diff_augment(x, policy, torch.Generator().manual_seed(4)))
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G learns through it
    one = torch.zeros(1, 1, 8, 8)
    one[0, 0, 4, 4] = 1
    moved = diff_augment(one, "translation", torch.Generator().manual_seed(0))
    assert moved.sum() <= 1 and (moved.sum() == 0 or moved.nonzero().shape == (1, 4))  # shifted, never smeared
    assert diff_augment(x, "") is x


def test_resume_is_bit_exact_with_every_technique(tmp_path, tiny_data):
    a, b = uninterrupted_and_resumed("cs231n-gan", tmp_path, 6, **TECHNIQUES)
    full = tmp_path / "full" / "cs231n-gan"
    for key in ("G", "D", "G_ema", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert not same_state(a["G"], a["G_ema"])  # the average is its own weights
    G, _ = load_generator(full, "cpu")  # sampling takes the average by default
    assert same_state(G.state_dict(), a["G_ema"])
    G_raw, _ = load_generator(full, "cpu", ema=False)
    assert same_state(G_raw.state_dict(), a["G"])


@pytest.mark.parametrize("over, message", [
    (dict(diffaugment="rotate"), "diffaugment=rotate: expected some of color, translation, cutout"),
    (dict(diffaugment="auto,color"), "diffaugment=auto,color: expected .* or auto or none alone"),
    (dict(g_ema=1.0), "g_ema=1.0: expected a decay"),
    (dict(r1_gamma=-1.0), "r1_gamma=-1.0: must be >= 0"),
    (dict(reg_every=0), "reg_every=0"),
    (dict(r1_gamma=1.0, compile=True), "double backward of R1/R2"),
])
def test_technique_settings_are_checked(over, message):
    with pytest.raises(GankitError, match=message):
        validate(RECIPES["cs231n-gan"].config(out="x", **over))


def test_techniques_that_do_not_apply_are_refused():
    with pytest.raises(GankitError, match="holds 2-D points"):
        validate(RECIPES["toy"].config(out="x", diffaugment="color"))
    for value in ("auto", "none"):  # resolved at start: off for points
        validate(RECIPES["toy"].config(out="x", diffaugment=value))
        validate(RECIPES["cs231n-gan"].config(out="x", diffaugment=value))
    with pytest.raises(GankitError, match="weight-normalised already"):
        validate(RECIPES["improved-gan"].config(out="x", spectral_norm=True))


def test_every_objective_combines_with_the_penalties(tmp_path, tiny_data):
    from gankit.losses import LOSSES

    for loss in LOSSES:
        summary = train(small_config("cs231n-gan", tmp_path / loss, steps=2, loss=loss, r1_gamma=1.0, r2_gamma=1.0,
                                     spectral_norm=True, g_ema=0.5, diffaugment="translation"), progress=False)
        assert all(math.isfinite(v) for v in summary["final"].values()), loss


# ---------------------------------------------------------------- conditional generation

def test_projection_discriminator_adds_the_label_embedding_times_the_features():
    from gankit.nets.conditional import ConditionalDiscriminator

    torch.manual_seed(0)
    base = MLPDiscriminator([1, 4, 4], [8], torch.nn.ReLU)
    D = ConditionalDiscriminator(base, 3, "projection")
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 1, 0])
    h = D.phi(x)  # the last hidden layer
    expected = D.psi(h) + (D.embed(y) * h).sum(1, keepdim=True)  # ψ(φ(x)) + <e_y, φ(x)>
    assert torch.allclose(D(x, y), expected) and D(x, y).shape == (5, 1)


def test_acgan_discriminator_returns_the_logit_and_k_class_logits():
    from gankit.nets import cs231n_dc_discriminator
    from gankit.nets.conditional import ConditionalDiscriminator

    D = ConditionalDiscriminator(cs231n_dc_discriminator(), 10, "acgan")
    out = D(torch.randn(4, 1, 28, 28), torch.arange(4))
    assert out.shape == (4, 11)


def test_class_accuracy_by_hand():
    from gankit.metrics.conditional import conditional_accuracy

    probs = torch.eye(3)[torch.tensor([0, 1, 1, 2, 0, 2])]  # predicted classes 0 1 1 2 0 2
    c = conditional_accuracy(probs, torch.tensor([0, 1, 2, 2, 0, 1]))  # drawn for 0 1 2 2 0 1
    assert c["overall"] == pytest.approx(4 / 6) and c["by_class"] == pytest.approx([1.0, 0.5, 0.5])


@pytest.mark.parametrize("name", ["cgan", "acgan"])
def test_a_conditional_run_resumes_exactly_and_draws_the_class_asked_for(name, tmp_path, tiny_data):
    from gankit.sample import sample

    a, b = uninterrupted_and_resumed(name, tmp_path, 4)
    full = tmp_path / "full" / name
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    G, cfg = load_generator(full, "cpu")
    z = torch.randn(3, cfg.noise_dim)
    assert not torch.equal(G(z, torch.tensor([1, 1, 1])), G(z, torch.tensor([7, 7, 7])))  # the class matters
    from PIL import Image

    grid = Image.open(sample(full, n=40, out=tmp_path / "grid.png", device="cpu"))
    assert grid.size == (4 * 30 + 2, 10 * 30 + 2)  # a row per class, 4 images each
    sample(full, n=8, out=tmp_path / "sevens.png", device="cpu", label=7)
    with pytest.raises(GankitError, match="--class 10: this run's classes are 0..9"):
        sample(full, n=8, out=tmp_path / "x.png", device="cpu", label=10)


@pytest.mark.parametrize("on_fake", [True, False])
def test_acgan_classifier_learns_from_real_images_only_when_asked(on_fake, tmp_path, tiny_data, monkeypatch):
    import gankit.steps

    seen = []
    real = gankit.steps.auxiliary_classes
    monkeypatch.setattr(gankit.steps, "auxiliary_classes", lambda logits, y: seen.append(len(y)) or real(logits, y))
    train(small_config("acgan", tmp_path, steps=1, batch_size=8, acgan_on_fake=on_fake), progress=False)
    # the D update: real images (+ generated ones, as Odena et al.); then the G update: generated ones
    assert seen == ([8, 8, 8] if on_fake else [8, 8])


def test_conditioning_needs_labels():
    with pytest.raises(GankitError, match="needs a labelled dataset"):
        validate(RECIPES["cgan"].config(out="x", dataset="toy:ring8"))
    with pytest.raises(GankitError, match="expected projection or acgan"):
        validate(RECIPES["cgan"].config(out="x", conditional="concat"))
    with pytest.raises(GankitError, match="classifier already"):
        validate(RECIPES["improved-gan"].config(out="x", conditional="projection"))


def test_limit_trains_on_n_images_drawn_with_the_data_seed(tiny_data):
    from gankit.data import load_split
    from gankit.errors import DataError

    cfg = RECIPES["cs231n-gan"].config(out="x", dataset="mnist", limit=40, data_seed=3)
    whole, a, b = load_split(RECIPES["cs231n-gan"].config(out="x", dataset="mnist")), load_split(cfg), load_split(cfg)
    assert a.x.shape[0] == 40 and torch.equal(a.x, b.x)  # a pure function of data_seed
    rows = {bytes(img.flatten().tolist()) for img in whole.x}
    assert all(bytes(img.flatten().tolist()) in rows for img in a.x)  # images of the training split
    other = load_split(RECIPES["cs231n-gan"].config(out="x", dataset="mnist", limit=40, data_seed=4))
    assert not torch.equal(a.x, other.x)
    assert load_split(cfg, "test").x.shape[0] == whole.x.shape[0]  # the test split is never cut
    with pytest.raises(DataError, match="--limit 1000: mnist has only 256 training images"):
        load_split(RECIPES["cs231n-gan"].config(out="x", dataset="mnist", limit=1000))


def test_unit_real_range_is_x_over_256_and_maps_back_to_the_8_bit_scale():
    from gankit.data import to_float, to_signed

    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    unit = to_float(x, "unit")
    assert unit.min() == 0 and unit.max() == 255 / 256  # tensorlayerx's loader: x / 256
    assert torch.allclose(to_signed(unit, "unit"), to_float(x), atol=1e-6)  # the image [-1, 1] would show
    assert torch.equal(to_signed(torch.tensor([-1.0, 0.0, 1.0]), "unit"), torch.tensor([-1.0, -1.0, 1.0]))
    assert to_signed(unit, "signed") is unit
