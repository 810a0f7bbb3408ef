"""The training loop: n_critic discriminator steps, then one generator step, for every recipe.

It follows the shape of the PyTorch DCGAN example (Radford et al. 2016): (1) update D, (2) update G.
The whole dataset sits in memory as uint8 and batches are drawn by index; statistics stay on the
device and are read once every `log_every` steps, so the loop never waits on the host.
"""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from gankit import data as datasets
from gankit.config import Config, validate
from gankit.errors import GankitError
from gankit.images import save_grid, save_points
from gankit.losses import LOSSES, PROBABILITY_LOSSES, clip_weights, gradient_penalty
from gankit.recipes import get as get_recipe
from gankit.run import RunDir, load_checkpoint


class TrainingDiverged(GankitError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"--device {name}: CUDA is not available on this machine (use --device cpu)")
    return torch.device(name)


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
        return torch.optim.RMSprop(net.parameters(), lr=lr)
    return torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas))


def build(cfg: Config, device: torch.device):
    """Networks and optimisers for a resolved config (data_shape must be set)."""
    G, D = get_recipe(cfg.recipe).nets(cfg)
    G, D = G.to(device), D.to(device)
    return G, D, make_optimizer(cfg, G, cfg.lr_g, cfg.betas_g), make_optimizer(cfg, D, cfg.lr_d, cfg.betas_d)


class BatchIndices:
    """Batch b of the run is slice b % per_epoch of a permutation seeded by (seed, epoch): a pure
    function of the position, so a resumed run sees exactly the batches it would have seen."""

    def __init__(self, n: int, batch_size: int, seed: int, device: torch.device):
        self.n, self.batch_size, self.seed, self.device = n, batch_size, seed, device
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def __call__(self, b: int) -> torch.Tensor:
        epoch, i = divmod(b, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g).to(self.device)
        return self._perm[i * self.batch_size:(i + 1) * self.batch_size]


def d_step(G, D, opt_d, cfg: Config, x_real, z, keep_graph: bool) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """(1) Update D: minimise the objective's d_loss on D(x) and D(G(z)), plus λ·GP if set."""
    with torch.set_grad_enabled(keep_graph):  # G(z) needs no graph unless the G step reuses it
        x_fake = G(z)
    d_real, d_fake = D(x_real), D(x_fake.detach())
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
    opt_d.step()
    if cfg.clip:
        clip_weights(D, cfg.clip)
    return x_fake, d_real, stats


def g_step(D, opt_g, cfg: Config, x_fake, d_real) -> dict:
    """(2) Update G: minimise the objective's g_loss on D(G(z)). D is frozen meanwhile, so no
    gradients are computed for its weights. Every g_loss reads d_fake alone; d_real is a placeholder."""
    D.requires_grad_(False)
    _, g_loss = LOSSES[cfg.loss](d_real.detach(), D(x_fake))
    opt_g.zero_grad(set_to_none=True)
    g_loss.backward()
    opt_g.step()
    D.requires_grad_(True)
    return {"g_loss": g_loss}


def load_data(cfg: Config) -> datasets.Dataset:
    """Load the training split into memory and record the sample shape in cfg.data_shape."""
    data = datasets.load(cfg.dataset, "train", data_dir=cfg.data_dir, image_size=cfg.image_size,
                         channels=cfg.channels, download=cfg.download, seed=cfg.seed)
    cfg.data_shape = list(data.x.shape[1:])
    return data


def train(cfg: Config, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a fresh run into the folder cfg.out."""
    return _fit(cfg, resume_from=None, overwrite=overwrite, progress=progress)


def resume(run: str | Path, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Continue the run in folder `run` from its checkpoint; `overrides` may change the budget
    (steps, epochs) and where it runs (device), nothing that would change what is trained."""
    allowed = {"steps", "epochs", "device", "log_every", "sample_every", "checkpoint_every"}
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
    device = pick_device(cfg.device)
    data = load_data(cfg)
    per_epoch = data.x.shape[0] // (cfg.batch_size * cfg.n_critic)
    if per_epoch < 1:
        raise GankitError(f"dataset {cfg.dataset} has {data.x.shape[0]} samples, fewer than batch_size x n_critic "
                          f"= {cfg.batch_size * cfg.n_critic}")
    num_steps = cfg.steps or max(1, round(cfg.epochs * per_epoch))

    torch.manual_seed(cfg.seed)
    G, D, opt_g, opt_d = build(cfg, device)
    run, step, elapsed = RunDir(cfg.out), 0, 0.0
    if resume_from is None:
        run.create(cfg, overwrite)
    else:
        for name, obj in (("G", G), ("D", D), ("opt_g", opt_g), ("opt_d", opt_d)):
            obj.load_state_dict(resume_from[name])
        step, elapsed = resume_from["step"], resume_from.get("elapsed_s", 0.0)
        torch.set_rng_state(resume_from["rng"]["torch"])
        if device.type == "cuda" and resume_from["rng"].get("cuda"):
            torch.cuda.set_rng_state_all(resume_from["rng"]["cuda"])
        run.truncate_stats(step)
        run.config.write_text(cfg.to_json() + "\n")
        if step >= num_steps:
            raise GankitError(f"--resume {cfg.out}: already at step {step} of {num_steps}; pass a larger --steps or --epochs")

    if progress:
        print(f"gankit: {cfg.recipe} on {cfg.dataset} ({data.x.shape[0]} x {cfg.data_shape}), steps {step}->{num_steps} "
              f"({num_steps / per_epoch:.3g} epochs), {device} -> {run.path}", file=sys.stderr)
    images = data.kind == "image"
    x_all = data.x.to(device)  # uint8 images (or float points) resident on the device
    batches = BatchIndices(x_all.shape[0], cfg.batch_size, cfg.seed, device)
    fixed_z = sample_noise(cfg, cfg.grid_size, device, torch.Generator().manual_seed(cfg.seed))
    real_points = None if images else data.x[:cfg.grid_size]

    def real_batch(b: int) -> torch.Tensor:
        x = x_all[batches(b)]
        return x.float().div_(127.5).sub_(1.0) if images else x  # uint8 -> [-1, 1] on the device

    def save_samples(at: int) -> None:
        G.eval()
        with torch.no_grad():
            x = G(fixed_z)
        G.train()
        save_grid(x, run.sample_path(at)) if images else save_points(x, run.sample_path(at), real_points)

    last_good = step if resume_from else None  # step of the newest checkpoint on disk
    acc, keys, n_acc = None, [], 0
    t0 = t_log = time.perf_counter()
    start = step_log = step

    def checkpoint(at: int) -> None:
        nonlocal last_good
        rng = {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}
        run.save_checkpoint({"format": 1, "step": at, "elapsed_s": elapsed + time.perf_counter() - t0,
                             "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
                             "opt_d": opt_d.state_dict(), "rng": rng, "config": cfg.to_dict()})
        last_good = at

    def flush(at: int) -> None:
        """Read the accumulated statistics (the one host sync), check them, log one line."""
        nonlocal acc, n_acc, t_log, step_log
        if not n_acc:
            return
        values = (acc / n_acc).tolist()
        now = time.perf_counter()
        row = {"step": at, **{k: round(v, 6) for k, v in zip(keys, values)},
               "images_per_s": round((at - step_log) * cfg.batch_size * cfg.n_critic / (now - t_log), 1),
               "time_s": round(elapsed + now - t0, 2)}
        bad = [k for k, v in zip(keys, values) if not math.isfinite(v)]
        if bad:
            where = f"{run.checkpoint} (step {last_good})" if last_good is not None else "none was saved"
            raise TrainingDiverged(f"{run.path}: {bad[0]} became {values[keys.index(bad[0])]} by step {at}; training "
                                   f"stopped. Last good checkpoint: {where}. Try a lower learning rate.")
        run.append_stats(row)
        bar.set_postfix({k: f"{row[k]:.3g}" for k in keys[:4]} | {"img/s": f"{row['images_per_s']:.0f}"}, refresh=False)
        acc.zero_()
        n_acc, t_log, step_log = 0, now, at

    if step == 0:
        save_samples(0)
    bar = tqdm(total=num_steps, initial=step, unit="step", dynamic_ncols=True, disable=not progress, mininterval=0.5)
    with stop_on_interrupt() as stop:
        while step < num_steps and not stop.requested:
            stats = {}
            for i in range(cfg.n_critic):
                x_real = real_batch(step * cfg.n_critic + i)
                z = sample_noise(cfg, x_real.shape[0], device)
                x_fake, d_real, s = d_step(G, D, opt_d, cfg, x_real, z, keep_graph=cfg.share_z)
                for k, v in s.items():
                    stats[k] = stats.get(k, 0) + v.detach() / cfg.n_critic
            if not cfg.share_z:
                x_fake = G(sample_noise(cfg, cfg.batch_size, device))
            stats.update(g_step(D, opt_g, cfg, x_fake, d_real))
            step += 1
            bar.update(1)

            vec = torch.stack([v.detach().float() for v in stats.values()])
            if acc is None:
                acc, keys = torch.zeros_like(vec), list(stats)
            acc += vec
            n_acc += 1
            if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or step == num_steps:
                flush(step)
            if step % cfg.sample_every == 0 or step == num_steps:
                save_samples(step)
            if step % cfg.checkpoint_every == 0 or step == num_steps:
                checkpoint(step)
        bar.close()
        if stop.requested:  # Ctrl-C: finish the step in hand, keep it, and say how to go on
            flush(step)
            checkpoint(step)
            raise GankitError(f"interrupted at step {step}; checkpoint saved. Continue with: "
                              f"gankit train --resume {run.path}")
    session_s = time.perf_counter() - t0
    rows = run.read_stats()
    return {"run": str(run.path), "steps": step, "wall_s": round(elapsed + session_s, 1),
            "images_per_s": round((step - start) * cfg.batch_size * cfg.n_critic / session_s, 1),
            "final": rows[-1] if rows else {}}


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
