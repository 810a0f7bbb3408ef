"""Named, documented GAN configurations, each reproducing a published tutorial or paper.

A recipe is a small record: which networks, and the config values (objective, optimiser, noise,
batch size, budget) its source used. The training loop never branches on a recipe's name; it
reads only the resolved :class:`~gankit.config.Config`. See docs/recipes.md for the math.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from torch import nn

from gankit.config import GAN_ONLY, Config, is_semi_supervised, validate
from gankit.errors import GankitError
from gankit.nets import (DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator,
                         cs231n_dc_discriminator, cs231n_dc_generator, spectral_normalise)
from gankit.nets.conditional import ConditionalDiscriminator, ConditionalGenerator
from gankit.nets.ssl import ImprovedGANDiscriminator, ImprovedGANGenerator, SSGANDiscriminator, SSGANGenerator


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


def _tlx(cfg: Config):
    """The TensorLayerX tutorial's nets with tensorlayerx's defaults on its torch backend: LeakyReLU
    slope 0.01, Linear weights truncated_normal(stddev 0.02) (cut at 2 sigma), zero biases."""
    G, D = _mlp([256, 256], [256, 256], nn.ReLU, partial(nn.LeakyReLU, 0.01))(cfg)
    for m in [*G.modules(), *D.modules()]:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02, a=-0.04, b=0.04)
            nn.init.zeros_(m.bias)
    return G, D


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


def _ssgan(cfg: Config):
    _need_shape(cfg, "ssgan", len(cfg.data_shape) == 3 and cfg.data_shape[1:] == [64, 64], "64x64")
    c = cfg.data_shape[0]
    return SSGANGenerator(cfg.noise_dim, c), SSGANDiscriminator(c, cfg.num_classes or 10)


def _improved_gan(cfg: Config):
    _need_shape(cfg, "improved-gan", len(cfg.data_shape) == 3, "")
    return ImprovedGANGenerator(cfg.noise_dim, cfg.data_shape), ImprovedGANDiscriminator(cfg.data_shape,
                                                                                         cfg.num_classes or 10)


_CS231N_MLP = _mlp([1024, 1024], [256, 256], nn.ReLU, partial(nn.LeakyReLU, 0.01))  # the assignment's G and D
_CS231N = dict(optimizer="adam", lr_g=1e-3, lr_d=1e-3, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
               batch_size=128, noise="uniform_signed", noise_dim=96)
_DCGAN64 = dict(image_size=64, noise="normal", noise_dim=100, epochs=25)

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    Recipe(
        "tlx-mlp", "TensorLayerX MNIST GAN tutorial (MLP, MSE objective)",
        "G 100-256-256-784 (ReLU, Tanh), D 784-256-256-1 (LeakyReLU 0.01, tensorlayerx's default on torch). "
        "Linear weights truncated_normal(stddev 0.02), zero biases (tensorlayerx's Linear defaults). Objective: "
        "mean squared error between sigmoid(D) and the 1/0 labels. Adam 3e-4, betas (0.5, 0.999) for both nets; "
        "batch 128; z ~ U[-1,1)^100 with one z batch shared by the D and G step; 50 epochs of 50,000 training "
        "images. As in the tutorial, D sees real images in [0, 1) (x / 256, real_range=unit) and G's raw tanh "
        "output; grids and metrics map G's output back to [-1, 1]. Two deliberate changes make it draw digits "
        "(docs/recipes.md): D's Adam beta1 0.5 where the tutorial leaves torch's default 0.9, and centred noise "
        "U[-1,1) where the tutorial draws U[0,1); the tutorial exactly is --set betas_d=0.9,0.999 --set "
        "noise=uniform, which draws one blob. Deviation: the 50,000 images are drawn with data_seed (limit), "
        "not the first 50,000.",
        _tlx,
        dict(loss="mse_sigmoid", lr_g=3e-4, lr_d=3e-4, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
             batch_size=128, noise="uniform_signed", noise_dim=100, share_z=True, epochs=50, real_range="unit",
             limit=50_000)),
    Recipe(
        "cs231n-gan", "Stanford cs231n GAN assignment: vanilla GAN",
        "D 784-256-256-1 (LeakyReLU 0.01), G 96-1024-1024-784 (ReLU, Tanh). Objective: the assignment's "
        "discriminator_loss / generator_loss, i.e. the non-saturating GAN with BCE on logits. Adam 1e-3, "
        "betas (0.5, 0.999); batch 128; z ~ U[-1,1)^96; 10 epochs. Deviation: the assignment trains on the "
        "first 50,000 training images; gankit uses all 60,000.",
        _CS231N_MLP,
        dict(loss="nonsaturating", epochs=10, **_CS231N)),
    Recipe(
        "cs231n-lsgan", "Stanford cs231n GAN assignment: least-squares GAN (Mao et al. 2017)",
        "The cs231n-gan networks and optimiser with the assignment's ls_discriminator_loss / "
        "ls_generator_loss: 0.5 mean((D(x)-1)^2) + 0.5 mean(D(G(z))^2) and 0.5 mean((D(G(z))-1)^2). 10 epochs.",
        _CS231N_MLP,
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
        "default); as in that example, the G step reuses the D step's G(z). Runs on folder:PATH (your images, RGB) "
        "and on MNIST / Fashion-MNIST resized to 64. "
        "Deviation: on fewer than 10,000 images DiffAugment is on (diffaugment=auto): on 3,786 emoji the "
        "tutorials' setting collapsed on one seed of three, with DiffAugment on none (docs/recipes.md); "
        "--set diffaugment=none trains as they do. On MNIST, Fashion-MNIST or CelebA it is off, as in the tutorials.",
        _dcgan("batch"),
        dict(loss="nonsaturating", lr_g=2e-4, lr_d=2e-4, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
             batch_size=128, share_z=True, diffaugment="auto", **_DCGAN64)),
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
        "ssgan", "Semi-supervised GAN tutorial (Odena 2016 K+1 classes), MNIST at 64 px, 20% of the labels",
        "D: conv 128 4x4 s2, conv 256 4x4 s2 + BN, conv 512 4x4 s4 + BN, conv 1024 3x3 valid, global average "
        "pool (the feature G matches), 11 logits (10 digits + an explicit fake logit); LeakyReLU 0.2, dropout "
        "keep 0.7. G: z ~ N(0,1)^100, ConvT 512 (4x4), ConvT 256 s4 (16x16), ConvT 128 s2 (32x32), ConvT 1 s2 "
        "(64x64), tanh, ReLU + BN. D: cross-entropy on the labelled images + real/fake on the rest and on G(z); "
        "G: feature matching + the non-saturating term, as in the tutorial. Adam 2e-4 beta1 0.5, batch 128, "
        "MNIST resized to 64x64. Test accuracy every epoch. Deviations (fixes): the tutorial marks a random 20% "
        "of every batch as labelled, so over an epoch every label is used; gankit fixes one 20% subset by "
        "data_seed and draws a labelled batch from it beside each unlabelled batch. The tutorial's real/fake "
        "terms read the fake logit alone through a sigmoid; gankit uses P(fake) of the 11-way softmax, which "
        "is what the K+1 model means (gankit.losses.real_logit).",
        _ssgan,
        dict(label_rate=0.2, image_size=64, lr_g=2e-4, lr_d=2e-4, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999],
             batch_size=128, noise="normal", noise_dim=100, unsup_weight=1.0, fm_weight=1.0, g_gan_weight=1.0,
             epochs=5, eval_every=468, eval_metrics=["accuracy"])),
    Recipe(
        "improved-gan", "Improved GAN (Salimans et al. 2016), semi-supervised MNIST with 100 labels",
        "D: MLP 784-1000-500-250-250-250-10 with weight normalisation (data-dependent init on 500 images), "
        "ReLU, Gaussian noise sigma 0.3 on the input and 0.5 after each hidden layer, implicit fake logit "
        "(D(x) = Z/(Z+1)). G: z ~ U[0,1)^100, 500 softplus + BN, 500 softplus + BN, 784 sigmoid with weight "
        "norm. D: cross-entropy on a labelled batch + 0.5 x real/fake on an unlabelled batch and G(z); G: "
        "feature matching on D's last hidden layer. Adam 3e-3 beta1 0.5 eps 1e-4 (the paper's code adds 1e-8 "
        "under the square root of the second moment), batch 100, 10 labels per class "
        "chosen by data_seed, 300 epochs (600 steps each); tested with a moving average of D's weights "
        "(decay 0.999) every epoch. Deviation: images are fed to D in [-1, 1] and mapped to the paper's "
        "[0, 1] inside it; G's sigmoid output is mapped to [-1, 1].",
        _improved_gan,
        dict(labels_per_class=10, lr_g=3e-3, lr_d=3e-3, betas_g=[0.5, 0.999], betas_d=[0.5, 0.999], adam_eps=1e-4,
             batch_size=100, noise="uniform", noise_dim=100, unsup_weight=0.5, fm_weight=1.0, g_gan_weight=0.0,
             init_batch=500, ema=0.999, epochs=300, eval_every=600, eval_metrics=["accuracy"])),
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
    Recipe(
        "cgan", "Conditional GAN (Mirza & Osindero 2014) with a projection discriminator (Miyato & Koyama 2018)",
        "The cs231n-gan networks made class-conditional: G gets a learnt 10-d label embedding beside z "
        "(96+10-1024-1024-784), D adds <e_y, h(x)> on its last hidden layer h to its logit. cs231n's "
        "non-saturating loss, Adam 1e-3 betas (0.5, 0.999), batch 128, z ~ U[-1,1)^96, 10 epochs; MNIST or "
        "Fashion-MNIST (--dataset). Deviation: Mirza & Osindero feed y to D by concatenation and train with "
        "SGD and maxout; the projection D is the one later work uses.",
        _CS231N_MLP, dict(loss="nonsaturating", epochs=10, conditional="projection",
                          eval_metrics=["fid", "is", "modes", "class_acc"], **_CS231N)),
    Recipe(
        "acgan", "Auxiliary classifier GAN (Odena et al. 2017) on the cs231n DCGAN networks",
        "The cs231n-dcgan networks made class-conditional: G gets a 10-d label embedding beside z, D a "
        "second head of 10 class logits on its last hidden layer; both losses add the class cross-entropy "
        "(real images with their labels, generated ones with the labels they were drawn for) to the "
        "non-saturating loss. Adam 1e-3 betas (0.5, 0.999), batch 128, z ~ U[-1,1)^96, 5 epochs, 28x28 "
        "grayscale. Deviation: Odena et al. use their own DCGAN-style nets and Adam 2e-4.",
        _cs231n_dc, dict(loss="nonsaturating", epochs=5, conditional="acgan",
                                     eval_metrics=["fid", "is", "modes", "class_acc"], **_CS231N)),
    Recipe(
        "cdcgan", "Conditional DCGAN: the cs231n DCGAN networks with a projection discriminator (Miyato & Koyama 2018)",
        "The cs231n-dcgan networks made class-conditional: G gets a learnt 10-d label embedding beside z, D adds "
        "<e_y, h(x)> on its last hidden layer h (1024-d) to its logit. cs231n's non-saturating loss, Adam 1e-3 "
        "betas (0.5, 0.999), batch 128, z ~ U[-1,1)^96, a moving average of G (0.999), 6 epochs, 28x28 grayscale "
        "(MNIST or Fashion-MNIST). The budget is where class_acc and FID were best in a 20-epoch run at this "
        "learning rate; past it both oscillate (docs/results-gpu.md; measured: docs/techniques.md).",
        _cs231n_dc, dict(loss="nonsaturating", epochs=6, conditional="projection", g_ema=0.999,
                         eval_metrics=["fid", "is", "modes", "class_acc"], **_CS231N)),
    Recipe(
        "r3gan-mnist", "R3GAN's objective (Huang et al. 2024): relativistic pairing loss with R1 + R2",
        "The cs231n-dcgan networks (D has no normalisation, as R3GAN requires) trained with RpGAN, "
        "softplus(-(D(x) - D(G(z)))), plus gamma/2 (R1 + R2) with gamma 0.1, Adam betas (0, 0.99) at 2e-4 for both, "
        "a moving average of G (0.999), batch 128, z ~ N(0,1)^96, 20 epochs (FID still fell at 20 on the H100: "
        "Inception FID 5.66, docs/results-gpu.md). Deviations: R3GAN's own "
        "ResNet-style nets, its learning-rate, gamma and EMA schedules and its StackedMNIST data are not used; "
        "the constants are its reported end values where they apply. Best measured: --epochs 32 --set reg_every=4 "
        "--set lr_decay=0.25 (lazy R1/R2, the learning rates falling to 0 over the last quarter), Inception FID "
        "4.85 +- 0.08 over three seeds, 39-42 minutes a run on a 2-core CPU (docs/results.md).",
        _cs231n_dc, dict(loss="relativistic", r1_gamma=0.1, r2_gamma=0.1, g_ema=0.999, optimizer="adam",
                         lr_g=2e-4, lr_d=2e-4, betas_g=[0.0, 0.99], betas_d=[0.0, 0.99], batch_size=128,
                         noise="normal", noise_dim=96, epochs=20)),
]}


def networks(cfg: Config) -> tuple[nn.Module, nn.Module]:
    """The run's G and D: its recipe's networks, made class-conditional (cfg.conditional) and D
    spectrally normalised (cfg.spectral_norm) where the config asks; for training and loading alike."""
    recipe = get(cfg.recipe)
    if not cfg.conditional:
        G, D = recipe.nets(cfg)
    else:
        k = cfg.num_classes or 10
        G, D = recipe.nets(dataclasses.replace(cfg, noise_dim=cfg.noise_dim + k))  # z and a k-d label embedding
        if hasattr(D, "head"):
            raise GankitError(f"conditional={cfg.conditional}: recipe {cfg.recipe}'s discriminator is a classifier "
                              f"(semi-supervised); pick a plain GAN recipe to condition")
        G, D = ConditionalGenerator(G, k, k), ConditionalDiscriminator(D, k, cfg.conditional)
    if cfg.spectral_norm:
        spectral_normalise(D)
    return G, D


def get(name: str) -> Recipe:
    if name not in RECIPES:
        raise GankitError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    return RECIPES[name]


def describe(name: str, **overrides: Any) -> dict[str, Any]:
    """A recipe's source, doc, parameter counts and resolved config (`gankit info`), for the sample
    shape its dataset will have, without loading the data."""
    from gankit.nets import count_params

    recipe = get(name)
    cfg = recipe.config(**overrides)
    validate(cfg)  # what `gankit train` would refuse, `gankit info` refuses too
    if cfg.dataset.startswith("toy:"):
        shape = [2]
    elif cfg.dataset.startswith("folder:"):
        shape = [cfg.channels or 3, cfg.image_size or 64, cfg.image_size or 64]
    else:
        shape = [cfg.channels or 1, cfg.image_size or 28, cfg.image_size or 28]
    cfg = dataclasses.replace(cfg, data_shape=shape, num_classes=10 if cfg.conditional else None)
    G, D = networks(cfg)
    return {"recipe": recipe.name, "source": recipe.source, "doc": recipe.doc, "g_params": count_params(G),
            "d_params": count_params(D), "combines_with": combines_with(cfg, D), "config": cfg.to_dict()}


def combines_with(cfg: Config, D: nn.Module) -> list[str]:
    """Which objectives, penalties and options make sense with this recipe's networks, in words."""
    from gankit.losses import LOSSES

    if is_semi_supervised(cfg):  # validate refuses the GAN objective's settings here
        return [f"{', '.join(GAN_ONLY)}, diffaugment: no (the semi-supervised objective, gankit.semi, is its own)",
                "spectral_norm: no (refused for a semi-supervised D)",
                "g_ema: yes (sampling and eval then use the average); ema: the moving average of D, for testing",
                "conditional: no (D is a classifier already)"]
    batch_stats = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    images = len(cfg.data_shape) == 3
    notes = [f"loss: any of {', '.join(LOSSES)} (relativistic is meant with r1_gamma and r2_gamma, as in R3GAN; "
             f"wasserstein needs clip, gp_weight or spectral_norm to bound D)",
             "gp_weight, r1_gamma, r2_gamma: " + ("D has BatchNorm, so a sample's gradient depends on its batch and "
                                                  "the penalties are not per-sample; prefer a D without it"
                                                  if batch_stats else "yes (D has no batch statistics)"),
             "spectral_norm: yes, instead of clip (both bound D)" if not hasattr(D, "head") else
             "spectral_norm: no (this D is weight-normalised)",
             "g_ema: yes (sampling and eval then use the average)",
             "diffaugment: " + ("yes (color, translation, cutout)" if images else "no (2-D points)"),
             "conditional: " + ("projection or acgan, with mnist or fashion-mnist" if images and not hasattr(D, "head")
                                else "no")]
    return notes
