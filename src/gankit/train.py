"""The training loop: n_critic discriminator steps, then one generator step, for every recipe.

It follows the shape of the PyTorch DCGAN example (Radford et al. 2016): (1) update D, (2) update G.
The whole dataset sits on the training device as uint8 and batches are drawn by index; matmuls
and convolutions run in bfloat16 autocast by default; statistics stay on the device and are read
once every `log_every` steps, so the loop never waits on the host. Under torchrun each process
trains on its own shard of every global batch (see gankit.distributed).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import torch

from gankit import distributed, graphs
from gankit.build import (BatchIndices, autocast, build, make_optimizer, mixes_samples,  # noqa: F401  (the API)
                          pick_device, sample_noise)
from gankit.config import Config, validate
from gankit.errors import GankitError
from gankit.losses import LOSSES, PROBABILITY_LOSSES, clip_weights, gradient_penalty
from gankit.monitor import TrainingDiverged  # noqa: F401  (part of the API)
from gankit.run import RunDir, load_checkpoint
from gankit.session import Session, load_data  # noqa: F401  (load_data is part of the API)


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


def make_step(s: Session) -> Callable[[int], dict]:
    """The run's step(i) -> scalars, chosen once before the loop: semi-supervised ((1) D learns the
    classes and real vs fake, (2) G matches D's features) or plain ((1) n_critic D updates, (2) one
    G update), the plain one captured in a CUDA graph where it can be (gankit.graphs)."""
    cfg = s.cfg
    if s.ssl:
        return lambda i: s.ssl.train_step(s.G_run, s.D_run, s.G, s.opt_g, s.opt_d, i, s.real_batch, s.amp)

    def eager(i: int) -> dict:
        x_reals = [s.real_batch(i * cfg.n_critic + k) for k in range(cfg.n_critic)]
        return train_step(s.G_run, s.D_run, s.G, s.opt_g, s.opt_d, cfg, x_reals, s.amp, s.world, s.joint)

    if not s.graphable:
        return eager
    amp = autocast(cfg, s.device, cache=False)

    def body(idx: list[torch.Tensor]) -> dict:  # the same step, on batch indices held in static buffers
        x_reals = [s.to_float(s.x_all[j]) for j in idx]
        return train_step(s.G, s.D, s.G, s.opt_g, s.opt_d, cfg, x_reals, amp, s.world, s.joint)

    step, s.step_kind = graphs.try_static_step(eager, body, s.batches, cfg.n_critic, cfg.batch_size, s.device,
                                               (s.G, s.D), (s.opt_g, s.opt_d))
    return step


def train(cfg: Config, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a fresh run into the folder cfg.out (under torchrun: one process of a data-parallel job)."""
    return _fit(cfg, resume_from=None, overwrite=overwrite, progress=progress)


def resume(run: str | Path, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Continue the run in folder `run` from its checkpoint; `overrides` may change the budget
    (steps, epochs) and where and how fast it runs, nothing that would change what is trained."""
    allowed = {"steps", "epochs", "device", "log_every", "sample_every", "checkpoint_every", "threads", "compile",
               "cuda_graph",
               "eval_every", "eval_samples", "tensorboard"}
    bad = sorted(set(overrides) - allowed)
    if bad:
        raise GankitError(f"--resume: cannot change {', '.join(bad)} of an existing run (only {', '.join(sorted(allowed))})")
    state = load_checkpoint(run)
    check_folder_config(Path(run), state["config"])
    cfg = Config.from_dict({**state["config"].to_dict(), **overrides, "out": str(run)})
    if "epochs" in overrides and "steps" not in overrides:
        cfg.steps = None
    return _fit(cfg, resume_from=state, overwrite=False, progress=progress)


def check_folder_config(run: Path, saved: Config) -> None:
    """The run folder's config.json against the checkpoint's own config: a checkpoint of another
    recipe or dataset (dropped into the folder) is refused; any other difference (an edit of
    config.json) is named in one line, and the checkpoint's config wins."""
    path = run / "config.json" if run.is_dir() else run.parent / "config.json"
    if not path.exists():
        return
    try:
        folder = json.loads(path.read_text())
        if not isinstance(folder, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise GankitError(f"{path}: not a readable config ({e}); the checkpoint holds the run's config: "
                          f"restore config.json or delete it to resume from the checkpoint") from None
    ours = saved.to_dict()
    for key in ("recipe", "dataset"):
        if key in folder and folder[key] != ours[key]:
            raise GankitError(f"--resume {run}: the checkpoint is a {ours['recipe']} run on {ours['dataset']} but "
                              f"{path} says {folder.get('recipe')} on {folder.get('dataset')}; refusing to mix "
                              f"two runs (is the checkpoint from another run?)")
    changed = [f"{k} ({folder[k]!r} in config.json, {ours[k]!r} in the checkpoint)"
               for k in sorted(folder) if k in ours and k != "out" and folder[k] != ours[k]]
    if changed:
        print(f"gankit: note: {path} differs from the checkpoint's config in {', '.join(changed)}; the checkpoint's "
              f"config wins and config.json is rewritten from it (change a budget with --steps/--epochs)",
              file=sys.stderr)


def _fit(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    validate(cfg)
    if not cfg.out:
        raise GankitError("--out: a run folder is required")
    world = distributed.init("cuda" if cfg.device.startswith("cuda") or
                             (cfg.device == "auto" and torch.cuda.is_available()) else "cpu")
    try:  # the main process holds the run folder for the whole run
        with RunDir(cfg.out).hold() if world.main else contextlib.nullcontext():
            return _loop(cfg, resume_from, overwrite, progress, world)
    finally:
        distributed.shutdown(world)


def _loop(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool, world) -> dict[str, Any]:
    s = Session(cfg, resume_from, overwrite, progress, world)  # data, nets and run folder, fresh or restored
    start, log = s.step, s.log
    if s.step == 0:
        s.save_samples(0)
    step_fn = make_step(s)
    with stop_on_interrupt() as stop:
        while s.step < s.num_steps and not stop.requested:
            stats = step_fn(s.step)
            s.step += 1
            log.add(stats)
            step, last = s.step, s.step == s.num_steps
            if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
                log.flush(step)
            if step % cfg.sample_every == 0 or last:
                s.save_samples(step)
            if step % cfg.checkpoint_every == 0 or last:
                s.checkpoint(step)
            if cfg.eval_every and (step % cfg.eval_every == 0 or last):
                s.evaluate(step)
        if stop.requested:  # Ctrl-C: finish the step in hand, keep it, and say how to go on
            log.flush(s.step)
            s.checkpoint(s.step)
    log.close()
    if stop.requested:
        raise GankitError(f"interrupted at step {s.step}; checkpoint saved. Continue with: "
                          f"gankit train --resume {s.run.path}")
    return s.summary(start)


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
