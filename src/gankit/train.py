"""The training loop: n_critic discriminator steps, then one generator step, for every recipe.

It follows the shape of the PyTorch DCGAN example (Radford et al. 2016): (1) update D, (2) update G.
The whole dataset sits on the training device as uint8 and batches are drawn by index; matmuls
and convolutions run in bfloat16 autocast by default; statistics stay on the device and are read
once every `log_every` steps, so the loop never waits on the host. Under torchrun each process
trains on its own shard of every global batch (see gankit.distributed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import torch

from gankit import data as datasets
from gankit import distributed
from gankit.config import Config, is_semi_supervised, validate
from gankit.errors import GankitError
from gankit.images import make_grid, save_grid, save_points
from gankit.losses import LOSSES, PROBABILITY_LOSSES, clip_weights, gradient_penalty
from gankit.monitor import Monitor, TrainingDiverged, tensorboard_writer  # noqa: F401  (TrainingDiverged is part of the API)
from gankit.recipes import get as get_recipe
from gankit.run import RunDir, load_checkpoint
from gankit.semi import SemiSupervised


def pick_device(name: str, world: distributed.World = distributed.World()) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    if name == "cuda" and world.size > 1:
        name = f"cuda:{world.local_rank}"  # one GPU per process
    return torch.device(name)


def autocast(cfg: Config, device: torch.device):
    """bfloat16 autocast for matmuls and convolutions (weights and optimiser stay float32)."""
    if cfg.precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sample_noise(cfg: Config, n: int, device: torch.device | str = "cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """z of shape (n, noise_dim) from the recipe's prior."""
    shape = (n, cfg.noise_dim)
    if cfg.noise == "normal":
        z = torch.randn(shape, generator=generator, device="cpu" if generator else device)
    else:
        z = torch.rand(shape, generator=generator, device="cpu" if generator else device)
        if cfg.noise == "uniform_signed":
            z = 2 * z - 1
    return z.to(device)


def make_optimizer(cfg: Config, net: torch.nn.Module, lr: float, betas: list[float]) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=lr, foreach=True)
    return torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas), fused=True)


def _is_conv(net: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in net.modules())


def mixes_samples(net: torch.nn.Module) -> bool:
    """True if a sample's output depends on the rest of its batch (BatchNorm in training mode)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def build(cfg: Config, device: torch.device):
    """Networks and optimisers for a resolved config (data_shape must be set)."""
    G, D = get_recipe(cfg.recipe).nets(cfg)
    if is_semi_supervised(cfg) and not hasattr(D, "head"):
        raise GankitError(f"labels_per_class/label_rate: recipe {cfg.recipe} has no class logits in its "
                          f"discriminator; semi-supervised training needs recipe ssgan or improved-gan")
    if hasattr(D, "head") and not is_semi_supervised(cfg):
        raise GankitError(f"recipe {cfg.recipe} trains a classifier: set labels_per_class or label_rate")
    G, D = G.to(device), D.to(device)
    if cfg.channels_last:
        G, D = (net.to(memory_format=torch.channels_last) if _is_conv(net) else net for net in (G, D))
    return G, D, make_optimizer(cfg, G, cfg.lr_g, cfg.betas_g), make_optimizer(cfg, D, cfg.lr_d, cfg.betas_d)


class BatchIndices:
    """Global batch b of the run is slice b % per_epoch of a permutation seeded by (seed, epoch),
    and rank r takes the r-th shard of it: a pure function of the position, so a resumed run sees
    exactly the batches it would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device, world=distributed.World()):
        self.n, self.batch_size, self.seed, self.device, self.world = n, batch_size, seed, device, world
        self.per_epoch = n // (batch_size * world.size)
        self._epoch, self._perm = -1, None

    def __call__(self, b: int) -> torch.Tensor:
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        start = (i * self.world.size + self.world.rank) * self.batch_size
        return self._perm[start:start + self.batch_size]


def d_step(G, D, opt_d, cfg: Config, x_real, z, keep_graph: bool, amp, world,
           joint: bool = False) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(1) Update D: minimise the objective's d_loss on D(x) and D(G(z)), plus λ·GP if set."""
    with amp:
        with torch.set_grad_enabled(keep_graph):  # G(z) needs no graph unless the G step reuses it
            x_fake = G(z)
        if joint:  # one pass over real and fake: same result when D mixes no samples (no BatchNorm)
            d_real, d_fake = D(torch.cat([x_real, x_fake.detach()])).float().chunk(2)
        else:
            d_real, d_fake = D(x_real).float(), D(x_fake.detach()).float()
        d_loss, _ = LOSSES[cfg.loss](d_real, d_fake)
        stats = {"d_loss": d_loss}
        if cfg.loss in PROBABILITY_LOSSES:
            stats.update(d_x=torch.sigmoid(d_real).mean(), d_g_z=torch.sigmoid(d_fake).mean())
        elif cfg.loss == "wasserstein":
            stats["w_dist"] = d_real.mean() - d_fake.mean()  # the critic's estimate of W1
        else:
            stats.update(d_real=d_real.mean(), d_fake=d_fake.mean())
        if cfg.gp_weight:
            stats["gp"] = gradient_penalty(D, x_real, x_fake)
            d_loss = d_loss + cfg.gp_weight * stats["gp"]
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    distributed.average_gradients(D, world)
    opt_d.step()
    if cfg.clip:
        clip_weights(D, cfg.clip)
    return x_fake, d_real, stats


def g_step(G, D, opt_g, cfg: Config, x_fake, d_real, amp, world) -> dict:
    """(2) Update G: minimise the objective's g_loss on D(G(z)). D is frozen meanwhile, so no
    gradients are computed for its weights. Every g_loss reads d_fake alone; d_real is a placeholder."""
    D.requires_grad_(False)
    with amp:
        _, g_loss = LOSSES[cfg.loss](d_real.detach(), D(x_fake).float())
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    distributed.average_gradients(G, world)
    opt_g.step()
    D.requires_grad_(True)
    return {"g_loss": g_loss}


def train_step(G, D, G_params, opt_g, opt_d, cfg: Config, x_reals: list[torch.Tensor], amp, world,
               joint: bool) -> dict:
    """One step: a D update per real batch in x_reals (n_critic of them), then one G update.
    G and D may be torch.compile'd; G_params is the plain G whose gradients are averaged.
    Returns the step's scalars (D's averaged over its updates), still on the device."""
    stats = {}
    for x_real in x_reals:
        z = sample_noise(cfg, x_real.shape[0], x_real.device)
        x_fake, d_real, s = d_step(G, D, opt_d, cfg, x_real, z, cfg.share_z, amp, world, joint)
        for k, v in s.items():
            stats[k] = stats.get(k, 0) + v.detach() / len(x_reals)
    if not cfg.share_z:
        with amp:
            x_fake = G(sample_noise(cfg, cfg.batch_size, x_real.device))
    stats.update(g_step(G_params, D, opt_g, cfg, x_fake, d_real, amp, world))
    return stats


def load_data(cfg: Config) -> datasets.Dataset:
    """Load the training split into memory and record the sample shape in cfg.data_shape."""
    data = datasets.load(cfg.dataset, "train", data_dir=cfg.data_dir, image_size=cfg.image_size,
                         channels=cfg.channels, download=cfg.download, seed=cfg.seed)
    cfg.data_shape, cfg.num_classes = list(data.x.shape[1:]), len(data.classes)
    return data


def train(cfg: Config, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a fresh run into the folder cfg.out (under torchrun: one process of a data-parallel job)."""
    return _fit(cfg, resume_from=None, overwrite=overwrite, progress=progress)


def resume(run: str | Path, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Continue the run in folder `run` from its checkpoint; `overrides` may change the budget
    (steps, epochs) and where and how fast it runs, nothing that would change what is trained."""
    allowed = {"steps", "epochs", "device", "log_every", "sample_every", "checkpoint_every", "threads", "compile",
               "eval_every", "eval_samples", "tensorboard"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise GankitError(f"--resume: cannot change {', '.join(bad)} of an existing run (only {', '.join(sorted(allowed))})")
    state = load_checkpoint(run)
    cfg = Config.from_dict({**state["config"].to_dict(), **overrides, "out": str(run)})
    if "epochs" in overrides and "steps" not in overrides:
        cfg.steps = None
    return _fit(cfg, resume_from=state, overwrite=False, progress=progress)


def _fit(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    validate(cfg)
    if not cfg.out:
        raise GankitError("--out: a run folder is required")
    world = distributed.init("cuda" if cfg.device.startswith("cuda") or
                             (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:
        return _loop(cfg, resume_from, overwrite, progress, world)
    finally:
        distributed.shutdown(world)


def _loop(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool, world) -> dict[str, Any]:
    device = pick_device(cfg.device, world)
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world.local_size))
    if resume_from and resume_from["config"].world_size != world.size:
        raise GankitError(f"--resume {cfg.out}: the run used {resume_from['config'].world_size} process(es), "
                          f"this job has {world.size}; resume with the same number")
    cfg.world_size, cfg.global_batch_size = world.size, cfg.batch_size * world.size
    data = load_data(cfg)
    per_epoch = data.x.shape[0] // (cfg.global_batch_size * cfg.n_critic)
    if per_epoch < 1:
        raise GankitError(f"dataset {cfg.dataset} has {data.x.shape[0]} samples, fewer than global batch x n_critic "
                          f"= {cfg.global_batch_size * cfg.n_critic}")
    num_steps = cfg.steps or max(1, round(cfg.epochs * per_epoch))
    gan_metrics = [m for m in cfg.eval_metrics if m != "accuracy"] if cfg.eval_every else []
    if gan_metrics:  # fail now, not at the first evaluation, if the evaluator weights are missing
        from gankit.metrics.evaluator import Evaluator

        distributed.first(lambda: Evaluator.load(cfg.dataset, "cpu"), world)
    SummaryWriter = tensorboard_writer() if cfg.tensorboard and world.main else None  # checked before any write

    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    G, D, opt_g, opt_d = build(cfg, device)
    if world.rank:
        torch.manual_seed(cfg.seed + 7919 * world.rank)  # but a different noise stream per rank
    run, step, elapsed = RunDir(cfg.out), 0, 0.0
    if resume_from is None:
        distributed.first(lambda: run.create(cfg, overwrite), world)
    else:
        for name, obj in (("G", G), ("D", D), ("opt_g", opt_g), ("opt_d", opt_d)):
            obj.load_state_dict(resume_from[name])
        step, elapsed = resume_from["step"], resume_from.get("elapsed_s", 0.0)
        rng = resume_from["rng"]
        torch.set_rng_state(rng["ranks"][world.rank] if world.size > 1 else rng["torch"])
        if device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"][world.rank], device)
        if step >= num_steps:
            raise GankitError(f"--resume {cfg.out}: already at step {step} of {num_steps}; pass a larger --steps or --epochs")
        distributed.first(lambda: (run.truncate_stats(step), run.config.write_text(cfg.to_json() + "\n")), world)

    images = data.kind == "image"
    x_all = data.x.to(device)  # uint8 images (or float points) resident on the device
    if images and cfg.channels_last:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    batches = BatchIndices(x_all.shape[0], cfg.batch_size, cfg.seed, device, world)
    fixed_z = sample_noise(cfg, cfg.grid_size, device, torch.Generator().manual_seed(cfg.seed))
    real_points = None if images else data.x[:cfg.grid_size]
    amp = autocast(cfg, device)
    joint = not mixes_samples(D)  # D may see real and fake in one batch
    G_run, D_run = (torch.compile(G), torch.compile(D)) if cfg.compile else (G, D)

    def to_float(x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(127.5).sub_(1.0) if images else x  # uint8 -> [-1, 1] on the device

    def real_batch(b: int) -> torch.Tensor:
        return to_float(x_all[batches(b)])

    ssl = SemiSupervised(cfg, data, x_all, to_float, device, world, D, joint) if is_semi_supervised(cfg) else None
    if ssl and resume_from:
        ssl.load_state_dict(resume_from)
    elif ssl:
        ssl.init_weights(D)
    if progress and world.main:
        print(f"gankit: {cfg.recipe} on {cfg.dataset} ({data.x.shape[0]} x {cfg.data_shape}"
              f"{f', {len(ssl.labelled)} labelled' if ssl else ''}), steps {step}->{num_steps} "
              f"({num_steps / per_epoch:.3g} epochs), {device}, {cfg.precision}"
              f"{f', {world.size} processes' if world.size > 1 else ''} -> {run.path}", file=sys.stderr)

    tb = SummaryWriter(str(run.path / "tensorboard")) if SummaryWriter else None

    def save_samples(at: int) -> None:
        if world.main and not cfg.baseline:  # the baseline trains no G
            G.eval()
            with torch.no_grad(), amp:
                x = G(fixed_z).float()
            G.train()
            save_grid(x, run.sample_path(at)) if images else save_points(x, run.sample_path(at), real_points)
            if tb and images:
                tb.add_image("samples", make_grid(x), at, dataformats="HWC")

    def checkpoint(at: int, best: bool = False) -> None:
        for net in (G, D):
            distributed.broadcast_state(net, world)  # BatchNorm running statistics differ per rank
        rng = {"torch": torch.get_rng_state(),
               "cuda": distributed.gather(torch.cuda.get_rng_state(device), world) if device.type == "cuda" else []}
        if world.size > 1:
            rng["ranks"] = distributed.gather(torch.get_rng_state(), world)
        if world.main:
            run.save_checkpoint({"format": 1, "step": at, "elapsed_s": log.seconds(), "G": G.state_dict(),
                                 "D": D.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                                 "rng": rng, "config": cfg.to_dict(), **(ssl.state_dict() if ssl else {})}, best=best)
        if not best:
            log.last_checkpoint = at

    best_fid = min((r["fid"] for r in run.read_stats(run.metrics) if "fid" in r), default=float("inf")) \
        if resume_from else float("inf")

    def evaluate_now(at: int) -> None:
        """Cheap metrics of the current G (and test accuracy of a classifier) into metrics.jsonl;
        keep the checkpoint with the best fid."""
        nonlocal best_fid
        row = None
        if world.main:
            from gankit.evaluate import evaluate

            row = {"step": at}
            if gan_metrics:
                G.eval()
                m = evaluate((G, cfg), cfg.dataset, gan_metrics, cfg.eval_samples, device=str(device),
                             seed=cfg.seed, progress=False, data_dir=cfg.data_dir)
                G.train()
                row.update({k: v for k, v in m.items() if isinstance(v, (int, float))})
            if ssl and "accuracy" in cfg.eval_metrics:
                row.update(ssl.test(D))
            run.append_metrics(row)
            for k, v in row.items():
                if tb and k != "step":
                    tb.add_scalar(f"eval/{k}", v, at)
        row = distributed.share(row, world)
        if row.get("fid", best_fid) < best_fid:
            best_fid = row["fid"]
            checkpoint(at, best=True)

    start = step
    log = Monitor(run, world, step, num_steps, cfg.global_batch_size * cfg.n_critic, elapsed, progress, tb)
    log.last_checkpoint = step if resume_from else None
    if step == 0:
        save_samples(0)
    with stop_on_interrupt() as stop:
        while step < num_steps and not stop.requested:
            if ssl:
                stats = ssl.train_step(G_run, D_run, G, opt_g, opt_d, cfg, step, real_batch, amp, world)
            else:
                stats = train_step(G_run, D_run, G, opt_g, opt_d, cfg,
                                   [real_batch(step * cfg.n_critic + i) for i in range(cfg.n_critic)], amp, world, joint)
            step += 1
            log.add(stats)
            if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == num_steps:
                log.flush(step)
            if step % cfg.sample_every == 0 or step == num_steps:
                save_samples(step)
            if step % cfg.checkpoint_every == 0 or step == num_steps:
                checkpoint(step)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == num_steps):
                evaluate_now(step)
        if stop.requested:  # Ctrl-C: finish the step in hand, keep it, and say how to go on
            log.flush(step)
            checkpoint(step)
    log.close()
    if stop.requested:
        raise GankitError(f"interrupted at step {step}; checkpoint saved. Continue with: "
                          f"gankit train --resume {run.path}")
    session_s = log.seconds() - elapsed
    summary = {"run": str(run.path), "steps": step, "wall_s": round(log.seconds(), 1),
               "images_per_s": round((step - start) * cfg.global_batch_size * cfg.n_critic / session_s, 1),
               "final": run.read_stats()[-1] if world.main and run.stats.exists() else {}}
    evaluations = run.read_stats(run.metrics) if world.main else []
    if evaluations:
        summary["metrics"] = evaluations[-1]
    if ssl:
        summary["labelled"] = len(ssl.labelled)
    if world.size > 1:
        summary["world_size"] = world.size
        summary["rank_fingerprints"] = distributed.gather(distributed.fingerprint(G, D), world)
    return summary


class stop_on_interrupt:
    """The first Ctrl-C asks the loop to stop after the current step (so the checkpoint it then
    writes is a clean step boundary); a second one interrupts at once."""

    def __enter__(self):
        self.requested = False
        self._old = None
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False
