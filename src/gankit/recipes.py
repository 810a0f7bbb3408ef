"""Named, documented GAN configurations, each reproducing a published tutorial or paper.

A recipe is a small record: which networks, and the config values (objective, optimiser, noise,
batch size, budget) its source used. The training loop never branches on a recipe's name; it
reads only the resolved :class:`~gankit.config.Config`. See docs/recipes.md for the math.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from torch import nn

from gankit.config import Config
from gankit.errors import GankitError
from gankit.nets import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator,
                         cs231n_dc_discriminator, cs231n_dc_generator)


@dataclass(frozen=True)
class Recipe:
    name: str
    source: str  # one line: the tutorial or paper it reproduces
    doc: str  # what it is, and every deliberate deviation from the source
    nets: Callable[[Config], tuple[nn.Module, nn.Module]]  # cfg -> (G, D)
    settings: dict[str, Any] = field(default_factory=dict)  # Config fields the source fixes

    def config(self, **overrides: Any) -> Config:
        """The recipe's config with `overrides` (flags, --set) applied on top."""
        return Config.from_dict({**Config().to_dict(), **self.settings, "recipe": self.name, **overrides},
                                origin=f"recipe {self.name}")


def _is_points(cfg: Config) -> bool:
    return len(cfg.data_shape) == 1


def _mlp(g_hidden, d_hidden, g_act, d_act, dropout=0.0):
    """Nets for any data shape: tanh output for images in [-1, 1], linear for 2-D points."""
    def build(cfg: Config):
        G = MLPGenerator(cfg.noise_dim, g_hidden, cfg.data_shape, g_act, None if _is_points(cfg) else nn.Tanh())
        D = MLPDiscriminator(cfg.data_shape, d_hidden, d_act, dropout)
        return G, D
    return build


def _need_shape(cfg: Config, recipe: str, ok: bool, want: str) -> None:
    if not ok:
        raise GankitError(f"recipe {recipe} needs {want} images; dataset {cfg.dataset} gives shape "
                          f"{cfg.data_shape} (set --set image_size=... or pick another recipe)")


def _cs231n_dc(cfg: Config):
    _need_shape(cfg, "cs231n-dcgan", cfg.data_shape == [1, 28, 28], "1x28x28")
    return cs231n_dc_generator(cfg.noise_dim), cs231n_dc_discriminator()


def _dcgan(norm: str):
    def build(cfg: Config):
        ok = len(cfg.data_shape) == 3 and cfg.data_shape[1] == cfg.data_shape[2] and cfg.data_shape[1] >= 16 \
            and cfg.data_shape[1] & (cfg.data_shape[1] - 1) == 0
        _need_shape(cfg, cfg.recipe, ok, "square, power-of-two (>=16 px)")
        c, s = cfg.data_shape[0], cfg.data_shape[1]
        return DCGANGenerator(cfg.noise_dim, c, s), DCGANDiscriminator(c, s, norm=norm)
    return build


_CS231N = dict(optimizer="adam", lr_g=1e-3, lr_d=1e-3, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
               batch_size=128, noise="uniform_signed", noise_dim=96)
_DCGAN64 = dict(image_size=64, noise="normal", noise_dim=100, epochs=25)

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe(
        "tlx-mlp", "TensorLayerX MNIST GAN tutorial (MLP, MSE objective)",
        "G 100-256-256-784 (ReLU, Tanh), D 784-256-256-1 (LeakyReLU 0.2). Objective: mean squared error "
        "between sigmoid(D) and the 1/0 labels. Adam 3e-4, G betas (0.5, 0.999), D default betas; batch 128; "
        "z ~ U[0,1)^100 with one z batch shared by the D and G step; 50 epochs. Deviation: the tutorial feeds "
        "real images in [0,1] to a tanh generator; gankit scales real images to [-1,1] like every other recipe, "
        "so real and generated images share one range.",
        _mlp([256, 256], [256, 256], nn.ReLU, partial(nn.LeakyReLU, 0.2)),
        dict(loss="mse_sigmoid", lr_g=3e-4, lr_d=3e-4, betas_g=[0.5, 0.999], betas_d=[0.9, 0.999],
             batch_size=128, noise="uniform", noise_dim=100, share_z=True, epochs=50)),
    Recipe(
        "cs231n-gan", "Stanford cs231n GAN assignment: vanilla GAN",
        "D 784-256-256-1 (LeakyReLU 0.01), G 96-1024-1024-784 (ReLU, Tanh). Objective: the assignment's "
        "discriminator_loss / generator_loss, i.e. the non-saturating GAN with BCE on logits. Adam 1e-3, "
        "betas (0.5, 0.999); batch 128; z ~ U[-1,1)^96; 10 epochs. Deviation: the assignment trains on the "
        "first 50,000 training images; gankit uses all 60,000.",
        _mlp([1024, 1024], [256, 256], nn.ReLU, partial(nn.LeakyReLU, 0.01)),
        dict(loss="nonsaturating", epochs=10, **_CS231N)),
    Recipe(
        "cs231n-lsgan", "Stanford cs231n GAN assignment: least-squares GAN (Mao et al. 2017)",
        "The cs231n-gan networks and optimiser with the assignment's ls_discriminator_loss / "
        "ls_generator_loss: 0.5 mean((D(x)-1)^2) + 0.5 mean(D(G(z))^2) and 0.5 mean((D(G(z))-1)^2). 10 epochs.",
        _mlp([1024, 1024], [256, 256], nn.ReLU, partial(nn.LeakyReLU, 0.01)),
        dict(loss="least_squares", epochs=10, **_CS231N)),
    Recipe(
        "cs231n-dcgan", "Stanford cs231n GAN assignment: DCGAN on MNIST",
        "D: conv 1-32 5x5, LeakyReLU 0.01, maxpool 2; conv 32-64 5x5, LeakyReLU, maxpool 2; FC 1024-1024, "
        "LeakyReLU; FC 1. G: FC 1024, ReLU, BN; FC 7*7*128, ReLU, BN; ConvT 128-64 4x4 s2, ReLU, BN; ConvT 64-1 "
        "4x4 s2, Tanh. Xavier-uniform init on Linear/ConvT weights. Non-saturating loss, Adam 1e-3 betas "
        "(0.5, 0.999), batch 128, z ~ U[-1,1)^96, 5 epochs. 28x28 grayscale only.",
        _cs231n_dc, dict(loss="nonsaturating", epochs=5, **_CS231N)),
    Recipe(
        "mlp-gan", "PyTorch MNIST GAN tutorial (784-1024-512-256-1 discriminator, BCE)",
        "D 784-1024-512-256-1 with LeakyReLU 0.2 and Dropout 0.3; G 100-256-512-1024-784 with LeakyReLU 0.2, "
        "Tanh. BCE (non-saturating), Adam 2e-4 with PyTorch's default betas (0.9, 0.999) for both nets; "
        "batch 100; z ~ N(0,1)^100; 200 epochs. Logs D(x) and D(G(z)). Deviation: D ends in a raw logit with "
        "BCE-with-logits instead of Sigmoid + BCELoss, which is the same function, computed stably.",
        _mlp([256, 512, 1024], [1024, 512, 256], partial(nn.LeakyReLU, 0.2), partial(nn.LeakyReLU, 0.2), dropout=0.3),
        dict(loss="nonsaturating", lr_g=2e-4, lr_d=2e-4, betas_g=[0.9, 0.999], betas_d=[0.9, 0.999],
             batch_size=100, noise="normal", noise_dim=100, epochs=200)),
    Recipe(
        "dcgan64", "DCGAN (Radford et al. 2016), as in the TF2 and PyTorch DCGAN tutorials, 64 px",
        "G: z ~ N(0,1)^100, ConvT to 4x4x512 then stride-2 ConvT + BN + ReLU to 64x64, Tanh. D: stride-2 4x4 "
        "convs with LeakyReLU 0.2 and BN after the first, a 4x4 valid conv to one logit. N(0, 0.02) init. "
        "Non-saturating loss, Adam 2e-4 betas (0.5, 0.999), batch 128, 25 epochs (the PyTorch example's "
        "default); as in that example, the G step reuses the D step's G(z). Runs on folder:PATH (your images, RGB) and on MNIST / Fashion-MNIST resized to 64.",
        _dcgan("batch"),
        dict(loss="nonsaturating", lr_g=2e-4, lr_d=2e-4, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
             batch_size=128, share_z=True, **_DCGAN64)),
    Recipe(
        "wgan", "Wasserstein GAN with weight clipping (Arjovsky et al. 2017)",
        "The dcgan64 networks with D as a critic (no sigmoid, BN kept as in the paper's DCGAN critic). "
        "Wasserstein loss, RMSprop 5e-5 for both nets, weights clipped to [-0.01, 0.01] after every critic step, "
        "5 critic steps per G step, batch 64. Deviation: the paper's 100 critic steps during the first 25 G "
        "steps and every 500th are not used.",
        _dcgan("batch"),
        dict(loss="wasserstein", optimizer="rmsprop", lr_g=5e-5, lr_d=5e-5, clip=0.01, n_critic=5,
             batch_size=64, **_DCGAN64)),
    Recipe(
        "wgan-gp", "WGAN with gradient penalty (Gulrajani et al. 2017)",
        "The dcgan64 networks; the critic uses layer normalisation instead of batch normalisation, as the "
        "paper recommends, since the penalty is per sample. Wasserstein loss + 10 * gradient penalty on "
        "random interpolates, Adam 1e-4 betas (0.5, 0.9), 5 critic steps per G step, batch 64.",
        _dcgan("layer"),
        dict(loss="wasserstein", gp_weight=10.0, lr_g=1e-4, lr_d=1e-4, betas_g=[0.5, 0.9], betas_d=[0.5, 0.9],
             n_critic=5, batch_size=64, **_DCGAN64)),
    Recipe(
        "toy", "2-D mixture of Gaussians (Metz et al. 2017 unrolled-GAN setting), for seeing a GAN learn",
        "G 16-128-128-2 (ReLU, linear output), D 2-128-128-1 (LeakyReLU 0.2). Non-saturating loss, Adam 1e-3 "
        "betas (0.5, 0.999), batch 256, z ~ N(0,1)^16, 8,000 steps. Trains in seconds on a CPU; the sample "
        "'grids' are scatter plots of generated (orange) over real (blue) points. Runs in float32: bfloat16 "
        "resolves coordinates near 2 only to 0.016, about the width (0.02) of a mode.",
        _mlp([128, 128], [128, 128], nn.ReLU, partial(nn.LeakyReLU, 0.2)),
        dict(dataset="toy:ring8", loss="nonsaturating", lr_g=1e-3, lr_d=1e-3, batch_size=256, noise="normal",
             noise_dim=16, steps=8000, log_every=50, sample_every=500, checkpoint_every=1000, grid_size=2000,
             precision="fp32")),
]}


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise GankitError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]
