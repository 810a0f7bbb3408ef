"""The typed, documented configuration of a training run, resolved from a recipe plus flags.

The resolved config is written to the run folder as ``config.json`` and into every checkpoint,
so any run can be reproduced, resumed, sampled and re-reported from its folder alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field, fields
from typing import Any

from gankit.errors import GankitError


@dataclass
class Config:
    # what to train
    recipe: str = ""  # name of the recipe these settings started from (see `gankit recipes`)
    dataset: str = "mnist"  # mnist | fashion-mnist | folder:PATH | toy:ring8 | toy:grid25
    data_dir: str | None = None  # a folder with the IDX files (or where to download them)
    download: bool = True  # allow the checksummed download when no local copy is found
    image_size: int | None = None  # resize images to this size (None: the dataset's own)
    channels: int | None = None  # 1 (grayscale) or 3 (RGB); None: the dataset's own
    data_shape: list[int] | None = None  # shape of one sample: recorded from the data when a run starts
    num_classes: int | None = None  # classes of a labelled dataset (0 if unlabelled): recorded likewise

    # objective
    loss: str = "nonsaturating"  # a key of gankit.losses.LOSSES
    gp_weight: float = 0.0  # λ of the WGAN-GP gradient penalty; 0 disables it
    clip: float = 0.0  # WGAN weight clipping to [-clip, clip] after each D step; 0 disables it
    n_critic: int = 1  # D (critic) updates per G update
    r1_gamma: float = 0.0  # γ of R1 = γ/2·E‖∇D(x)‖² on real images (Mescheder et al. 2018); 0 disables it
    r2_gamma: float = 0.0  # γ of R2, the same on generated images; 0 disables it
    reg_every: int = 1  # lazy R1/R2: every k-th D update, weighted by k (StyleGAN2); 1: every update

    # conditional generation (labelled datasets): G and D see the class
    conditional: str = ""  # "" (none) | projection (Miyato & Koyama 2018) | acgan (Odena et al. 2017)
    acgan_weight: float = 1.0  # weight of the acgan D's class cross-entropy in both losses
    acgan_on_fake: bool = True  # D's class cross-entropy also on generated images (Odena et al.); false: real only

    # training techniques
    g_ema: float = 0.0  # decay of a moving average of G's weights that sampling and evaluation use; 0: none
    spectral_norm: bool = False  # spectral normalisation of D's linear and conv layers (Miyato et al. 2018)
    diffaugment: str = ""  # DiffAugment on real and fake images before D: some of color,translation,cutout;
    # auto: all three on fewer than 10,000 training images, none on more (resolved at start); none or "": off
    real_range: str = "signed"  # real images as D sees them: signed [-1, 1] | unit [0, 1) (x / 256, TensorLayerX's)
    limit: int = 0  # train on this many images of the training split, drawn with data_seed (small-data runs); 0: all

    # semi-supervised classification: set labels_per_class or label_rate (recipes ssgan, improved-gan)
    labels_per_class: int = 0  # labelled training images per class (a balanced subset)
    label_rate: float = 0.0  # or: this fraction of the training split is labelled (e.g. 0.2)
    data_seed: int = 0  # chooses the labelled subset and the images of `limit`, independently of `seed`
    baseline: bool = False  # supervised-only: D's classifier on the labelled subset alone (no G, no unlabelled data)
    unsup_weight: float = 1.0  # weight of D's unsupervised real/fake term
    ent_weight: float = 0.0  # weight of the entropy of D's class prediction on unlabelled images (minimised)
    fm_weight: float = 1.0  # weight of feature matching in G's loss
    g_gan_weight: float = 0.0  # weight of the non-saturating term -log P(real | G(z)) in G's loss
    init_batch: int = 0  # images for the data-dependent initialisation of a weight-normalised D; 0: none
    ema: float = 0.0  # decay of an exponential moving average of D's weights, used for testing; 0: none

    # optimisation
    optimizer: str = "adam"  # adam | rmsprop (WGAN)
    lr_g: float = 2e-4  # generator learning rate
    lr_d: float = 2e-4  # discriminator learning rate
    betas_g: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas of G
    betas_d: list[float] = field(default_factory=lambda: [0.5, 0.999])  # Adam betas of D
    adam_eps: float = 1e-8  # Adam's ε (added to the root of the second moment, as in torch.optim.Adam)
    lr_decay: float = 0.0  # both learning rates fall linearly to 0 over this last fraction of the steps; 0: constant
    # (a function of the step and the total: resuming with a larger budget stretches the schedule)
    batch_size: int = 128  # real images per D step

    # noise
    noise: str = "normal"  # normal: N(0,1) | uniform: U[0,1) | uniform_signed: U[-1,1)
    noise_dim: int = 100  # dimension of z
    share_z: bool = False  # G step reuses the D step's z and G(z) instead of drawing new ones

    # budget: steps wins over epochs; one step = n_critic D updates + one G update
    epochs: float = 1.0  # passes of the D steps over the training split
    steps: int | None = None  # total G steps (overrides epochs)

    # speed (none of these changes what is trained, only how fast)
    precision: str = "auto"  # auto: bf16 where the device runs it natively, else fp32 (resolved at start) | bf16 | fp32
    channels_last: bool = True  # NHWC memory layout for convolutional nets
    compile: bool = False  # torch.compile G and D (see docs/performance.md for its measured effect)
    cuda_graph: bool = True  # on a GPU, capture the whole training step in a CUDA graph (falls back to eager)
    threads: int = 0  # CPU threads per process; 0: all cores, shared among the processes of a machine

    # run
    seed: int = 0  # seeds weights, noise, data order and the fixed grid noise
    device: str = "auto"  # auto (cuda if available) | cpu | cuda | cuda:N
    out: str = ""  # run folder
    log_every: int = 50  # steps between stats.jsonl lines (the only host syncs of the loop)
    eval_every: int = 0  # steps between evaluations (fid, is, modes) into metrics.jsonl; 0: none
    eval_samples: int = 2000  # generated images per evaluation during training
    eval_metrics: list[str] = field(default_factory=lambda: ["fid", "is", "modes"])  # any of gankit.metrics.METRICS
    tensorboard: bool = False  # also log scalars, metrics and grids to RUN/tensorboard (pip install tensorboard)
    sample_every: int = 500  # steps between sample grids
    checkpoint_every: int = 1000  # steps between checkpoints (and one at the end)
    grid_size: int = 64  # images in each sample grid

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "config", saved: bool = False) -> "Config":
        """saved: a config a run recorded (config.json, a checkpoint), where fields gankit no longer
        keeps (RETIRED) are dropped instead of refused."""
        if saved:
            d = {k: v for k, v in d.items() if k not in RETIRED}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise GankitError(f"{origin}: unknown config field(s) {', '.join(unknown)}")
        return cls(**d)


FIELD_TYPES = {f.name: f.type for f in fields(Config)}
PRECISIONS = ("auto", "bf16", "fp32")
DEVICE_FORM = r"auto|cpu|cuda(:[0-9]+)?"  # what --device accepts
AUGMENTATIONS = ("color", "translation", "cutout")  # gankit.augment
REAL_RANGES = ("signed", "unit")  # real images as D sees them: [-1, 1] | [0, 1) (gankit.data.to_float)
# what only a plain GAN's step reads, and what only a semi-supervised run's (ent_weight: validate says)
GAN_ONLY = ("loss", "gp_weight", "clip", "r1_gamma", "r2_gamma", "reg_every", "share_z")
SSL_ONLY = ("unsup_weight", "fm_weight", "g_gan_weight", "init_batch", "ema")
SEEDS = range(2 ** 63)  # what torch.Generator.manual_seed takes without overflow
RETIRED = {"world_size", "global_batch_size"}  # were recorded in configs; the checkpoint keeps world_size now


def _int(text: str) -> int:
    """An integer, also written as a whole float (steps=1e4, batch_size=64.0)."""
    try:
        return int(text)
    except ValueError:
        value = float(text)
        if not value.is_integer():
            raise
        return int(value)


def parse_value(key: str, text: str) -> Any:
    """Parse one ``--set key=value`` by the field's declared type; the error names the key."""
    if key not in FIELD_TYPES:
        raise GankitError(f"--set {key}=...: unknown config field (known: {', '.join(FIELD_TYPES)})")
    kind = FIELD_TYPES[key]
    try:
        if text.lower() in ("none", "null") and "None" in kind:
            return None
        if kind.startswith("bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind.startswith("int"):
            return _int(text)
        if kind.startswith("float"):
            return float(text)
        if kind.startswith("list["):  # a,b,c or [a, b, c]
            items = [v.strip().strip("'\"") for v in text.strip().removeprefix("[").removesuffix("]").split(",")]
            if kind.startswith("list[int]"):
                return [_int(v) for v in items]
            if kind.startswith("list[float]"):
                return [float(v) for v in items]
            return [v for v in items if v]
        return text
    except ValueError:
        raise GankitError(f"--set {key}={text}: expected {kind}") from None


# fields a run records rather than takes: --set refuses them
RECORDED = {"recipe": "the RECIPE argument's name (pick the recipe there)",
            "data_shape": "recorded from the data when a run starts (set image_size or channels)",
            "num_classes": "recorded from the data when a run starts"}


def parse_sets(items: list[str]) -> dict[str, Any]:
    """Parse repeated ``--set key=value`` items into overrides; the error names the item."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            raise GankitError(f"--set {item}: expected KEY=VALUE, e.g. --set image_size=32")
        if key in RECORDED:
            raise GankitError(f"--set {item}: {key} is {RECORDED[key]}, not a setting")
        out[key] = parse_value(key, value)
    return out


def with_data(cfg: Config, data) -> Config:
    """A copy of cfg recording the sample shape and class count of `data` (a gankit.data.Dataset):
    what the networks are built for, and what a checkpoint needs to rebuild them; and the data's
    own name and data_dir as absolute paths, so the run is evaluated and resumed from any working
    directory on the same data."""
    return dataclasses.replace(cfg, dataset=data.name, data_shape=list(data.x.shape[1:]),
                               num_classes=len(data.classes),
                               data_dir=os.path.abspath(cfg.data_dir) if cfg.data_dir else None)


def is_semi_supervised(cfg: Config) -> bool:
    """A run with a labelled subset trains D as a classifier (gankit.semi)."""
    return bool(cfg.labels_per_class or cfg.label_rate)


def unread_settings(cfg: Config, recipe: dict[str, Any]) -> str:
    """-> "" or why `cfg` is refused: it changes, from its recipe's settings (`recipe`, over Config's
    defaults), a setting this kind of run never reads (a plain GAN's step reads none of the
    semi-supervised objective's settings and the reverse; only conditional=acgan reads acgan_*),
    which config.json would otherwise record as if it took effect."""
    base = {**Config().to_dict(), **recipe}

    def changed(names):
        return [f"{n}={getattr(cfg, n)}" for n in names if getattr(cfg, n) != base[n]]
    if is_semi_supervised(cfg):
        off = changed(GAN_ONLY) + ([f"diffaugment={cfg.diffaugment}"]
                                   if cfg.diffaugment not in ("", "auto", "none") else [])
        if off:
            return f"{', '.join(off)}: a semi-supervised run trains with its own objective (gankit.semi), which reads none of this"
    elif off := changed(SSL_ONLY):
        return (f"{', '.join(off)}: only a semi-supervised run (labels_per_class or label_rate; recipes ssgan, "
                f"improved-gan) reads this" + (" (the moving average of G is g_ema)" if cfg.ema != base["ema"] else ""))
    if cfg.conditional != "acgan" and (off := changed(("acgan_weight", "acgan_on_fake"))):
        return f"{', '.join(off)}: only conditional=acgan reads them"
    if cfg.dataset.startswith("toy:") and (off := changed(("image_size", "channels"))):
        return f"{', '.join(off)}: --dataset {cfg.dataset} is a set of 2-D points, not images"
    if not cfg.eval_every and (off := changed(("eval_samples", "eval_metrics"))):
        return (f"{', '.join(off)}: only evaluations during training (--eval-every N) read this; "
                f"gankit eval RUN takes its own --metrics and --num-samples")
    return ""


def validate(cfg: Config, fresh: bool = True) -> None:
    """Reject values that cannot work, naming the field, before anything is written; and for a
    fresh run (not a resume), settings changed from the recipe's that the run would never read."""
    from gankit.data import CLASSES, TOY_STD
    from gankit.losses import LOSSES
    from gankit.metrics import METRICS
    from gankit.recipes import RECIPES

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise GankitError(msg)

    for f in fields(cfg):  # inf and nan pass every comparison below, and train into NaN later
        v = getattr(cfg, f.name)
        values = v if isinstance(v, list) else [v]
        need(all(math.isfinite(x) for x in values if isinstance(x, float)), f"{f.name}={v}: must be a finite number")
    need(cfg.seed in SEEDS, f"seed={cfg.seed}: must be in 0..2^63-1")
    need(cfg.data_seed in SEEDS, f"data_seed={cfg.data_seed}: must be in 0..2^63-1")
    need(cfg.dataset in CLASSES or cfg.dataset in TOY_STD
         or (cfg.dataset.startswith("folder:") and cfg.dataset.removeprefix("folder:").strip() != ""),
         f"--dataset {cfg.dataset}: expected mnist, fashion-mnist, folder:PATH (a PATH, not empty), toy:ring8 or toy:grid25")
    need(not cfg.recipe or cfg.recipe in RECIPES, f"recipe={cfg.recipe!r}: unknown (see gankit recipes)")
    need(cfg.loss in LOSSES, f"loss={cfg.loss!r}: unknown (known: {', '.join(LOSSES)})")
    need(cfg.optimizer in ("adam", "rmsprop"), f"optimizer={cfg.optimizer!r}: expected adam or rmsprop")
    need(cfg.noise in ("normal", "uniform", "uniform_signed"),
         f"noise={cfg.noise!r}: expected normal, uniform or uniform_signed")
    for name in ("batch_size", "noise_dim", "n_critic", "log_every", "sample_every", "checkpoint_every", "grid_size"):
        need(getattr(cfg, name) >= 1, f"{name}={getattr(cfg, name)}: must be at least 1")
    for name in ("lr_g", "lr_d", "adam_eps"):
        need(getattr(cfg, name) > 0, f"{name}={getattr(cfg, name)}: must be positive")
    for name in ("gp_weight", "clip"):
        need(getattr(cfg, name) >= 0, f"{name}={getattr(cfg, name)}: must be >= 0 (0 disables it)")
    for name in ("betas_g", "betas_d"):
        b = getattr(cfg, name)
        need(len(b) == 2 and all(0 <= v < 1 for v in b), f"{name}={b}: expected two values in [0, 1)")
    need(cfg.steps is None or cfg.steps >= 1, f"steps={cfg.steps}: must be at least 1")
    need(cfg.steps is not None or cfg.epochs > 0, f"epochs={cfg.epochs}: must be positive")
    need(cfg.image_size is None or cfg.image_size >= 8, f"image_size={cfg.image_size}: must be at least 8")
    need(cfg.channels in (None, 1, 3), f"channels={cfg.channels}: expected 1 or 3")
    need(cfg.precision in PRECISIONS, f"precision={cfg.precision!r}: expected auto, bf16 or fp32")
    need(cfg.eval_every >= 0, f"eval_every={cfg.eval_every}: must be >= 0 (0: no evaluation)")
    need(10 <= cfg.eval_samples <= 10_000, f"eval_samples={cfg.eval_samples}: must be in 10..10000")
    need(cfg.real_range in REAL_RANGES, f"real_range={cfg.real_range!r}: expected {' or '.join(REAL_RANGES)}")
    need(cfg.real_range == "signed" or not is_semi_supervised(cfg),
         f"real_range={cfg.real_range}: a semi-supervised run's classifier reads images in [-1, 1]")
    need(not fresh or cfg.real_range == "signed" or cfg.dataset not in TOY_STD,  # new rules: not on resume
         f"real_range={cfg.real_range}: 2-D points are trained as they are; real_range is for images "
         f"(--set real_range=signed)")
    need(cfg.limit >= 0, f"limit={cfg.limit}: must be >= 0 (0: the whole training split)")
    need(cfg.labels_per_class >= 0, f"labels_per_class={cfg.labels_per_class}: must be >= 0")
    need(0 <= cfg.label_rate <= 1, f"label_rate={cfg.label_rate}: must be in [0, 1]")
    need(not (cfg.labels_per_class and cfg.label_rate),
         f"labels_per_class={cfg.labels_per_class} and label_rate={cfg.label_rate}: give one or the other")
    need(not cfg.baseline or is_semi_supervised(cfg),
         "baseline=true: the supervised baseline needs a labelled subset (labels_per_class or label_rate)")
    need(not is_semi_supervised(cfg) or cfg.dataset in ("mnist", "fashion-mnist"),
         f"labels_per_class/label_rate: semi-supervised training needs a labelled dataset (mnist, fashion-mnist), "
         f"not {cfg.dataset}")
    for name in ("unsup_weight", "fm_weight", "g_gan_weight", "init_batch"):
        need(getattr(cfg, name) >= 0, f"{name}={getattr(cfg, name)}: must be >= 0")
    need(0 <= cfg.lr_decay <= 1, f"lr_decay={cfg.lr_decay}: expected a fraction of the steps in [0, 1] (0: constant)")
    need(cfg.init_batch != 1 or not is_semi_supervised(cfg), "init_batch=1: the data-dependent initialisation divides by each unit's standard "
         "deviation over the batch; give 0 (none) or at least 2")
    need(cfg.ent_weight >= 0, f"ent_weight={cfg.ent_weight}: must be >= 0 (0 disables it)")
    need(not cfg.ent_weight or (is_semi_supervised(cfg) and not cfg.baseline),
         f"ent_weight={cfg.ent_weight}: only a semi-supervised GAN run has unlabelled images to take the entropy on")
    need(0 <= cfg.ema < 1, f"ema={cfg.ema}: expected a decay in [0, 1) (0: no moving average)")
    unread = unread_settings(cfg, RECIPES[cfg.recipe].settings if cfg.recipe else {}) if fresh else ""
    need(not unread, unread)  # a recorded run resumes as it was recorded
    need(not fresh or not cfg.baseline or not cfg.eval_every or cfg.eval_metrics == ["accuracy"],
         f"eval_metrics={','.join(cfg.eval_metrics)}: a supervised baseline run (baseline=true) trains no generator; "
         f"evaluate it with accuracy alone")
    known = tuple(METRICS)
    bad = [m for m in cfg.eval_metrics if m not in known]
    need(not bad and bool(cfg.eval_metrics), f"eval_metrics={','.join(cfg.eval_metrics)}: expected some of "
         f"{', '.join(known)}")
    need(not cfg.eval_every or "accuracy" not in cfg.eval_metrics or is_semi_supervised(cfg),
         "eval_metrics=accuracy: test accuracy needs a semi-supervised run (set labels_per_class or label_rate)")
    need(not cfg.eval_every or "class_acc" not in cfg.eval_metrics or cfg.conditional,
         "eval_metrics=class_acc: per-class accuracy needs a conditional run (set conditional, pick recipe cgan, "
         "acgan or cdcgan, or leave class_acc out of eval_metrics)")
    need(not cfg.eval_every or cfg.dataset in ("mnist", "fashion-mnist"),
         f"--eval-every: the metrics need an evaluator network, which gankit has for mnist and fashion-mnist, "
         f"not {cfg.dataset}")
    need(cfg.threads >= 0, f"threads={cfg.threads}: must be >= 0 (0: all cores)")
    need(0 <= cfg.g_ema < 1, f"g_ema={cfg.g_ema}: expected a decay in [0, 1) (0: no moving average of G)")
    for name in ("r1_gamma", "r2_gamma"):
        need(getattr(cfg, name) >= 0, f"{name}={getattr(cfg, name)}: must be >= 0 (0 disables it)")
    need(not (cfg.spectral_norm and is_semi_supervised(cfg)), "spectral_norm=true: the semi-supervised "
         "discriminators are weight-normalised already; train them without it")
    need(cfg.conditional in ("", "projection", "acgan"),
         f"conditional={cfg.conditional!r}: expected projection or acgan ('' for an unconditional GAN)")
    need(not cfg.conditional or cfg.dataset in ("mnist", "fashion-mnist"),
         f"conditional={cfg.conditional}: conditioning needs a labelled dataset (mnist, fashion-mnist), not {cfg.dataset}")
    need(not (cfg.conditional and is_semi_supervised(cfg)),
         f"conditional={cfg.conditional}: a semi-supervised run's D is a classifier already; not both")
    need(cfg.acgan_weight >= 0, f"acgan_weight={cfg.acgan_weight}: must be >= 0")
    need(cfg.reg_every >= 1, f"reg_every={cfg.reg_every}: must be at least 1")
    bad_aug = [p for p in cfg.diffaugment.split(",") if p and p not in AUGMENTATIONS]
    need(cfg.diffaugment in ("auto", "none") or not bad_aug,
         f"diffaugment={cfg.diffaugment}: expected some of {', '.join(AUGMENTATIONS)}, or auto or none alone")
    need(cfg.diffaugment in ("", "auto", "none") or not cfg.dataset.startswith("toy:"),
         f"diffaugment={cfg.diffaugment}: DiffAugment transforms images; {cfg.dataset} holds 2-D points")
    need(not (cfg.compile and (cfg.r1_gamma or cfg.r2_gamma)), "compile=true: torch.compile does not support the "
         "double backward of R1/R2; train without it")
    need(not (cfg.compile and cfg.gp_weight), "compile=true: torch.compile does not support the double backward "
         "of the gradient penalty; train WGAN-GP without it")
    need(bool(re.fullmatch(DEVICE_FORM, cfg.device)),
         f"device={cfg.device!r}: expected auto, cpu, cuda or cuda:N")
