"""One training run around its loop: the device, the data on it, the networks and optimisers
(fresh or restored from a checkpoint), the run folder, and what hangs off the loop: sample grids,
checkpoints and evaluations. gankit.train's loop drives it."""

from __future__ import annotations

import os
import sys

import torch

from gankit import data as datasets
from gankit import distributed, graphs
from gankit.build import BatchIndices, autocast, build, compile_or_eager, mixes_samples, pick_device, sample_noise
from gankit.config import Config, is_semi_supervised
from gankit.errors import GankitError
from gankit.hardware import resolve_precision
from gankit.files import write_text_atomic
from gankit.images import make_grid, save_grid, save_points
from gankit.monitor import Monitor, tensorboard_writer
from gankit.run import RunDir, load_into
from gankit.semi import SemiSupervised


def load_data(cfg: Config) -> datasets.Dataset:
    """Load the training split into memory and record the sample shape in cfg.data_shape."""
    data = datasets.load(cfg.dataset, "train", data_dir=cfg.data_dir, image_size=cfg.image_size,
                         channels=cfg.channels, download=cfg.download, seed=cfg.seed)
    cfg.data_shape, cfg.num_classes = list(data.x.shape[1:]), len(data.classes)
    return data


class Session:
    def __init__(self, cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool,
                 world: distributed.World):
        self.cfg, self.world = cfg, world
        self.device = device = pick_device(cfg.device, world)
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world.local_size))
        if resume_from and resume_from["config"].world_size != world.size:
            raise GankitError(f"--resume {cfg.out}: the run used {resume_from['config'].world_size} process(es), "
                              f"this job has {world.size}; resume with the same number")
        cfg.world_size, cfg.global_batch_size = world.size, cfg.batch_size * world.size
        # precision: "auto" becomes bf16 or fp32 here, and config.json records which, so a resume keeps it
        cfg.precision, self.precision_why, warning = resolve_precision(cfg.precision, device)
        if warning and world.main:
            print(f"gankit: warning: {warning}", file=sys.stderr)
        data = load_data(cfg)
        per_epoch = data.x.shape[0] // (cfg.global_batch_size * cfg.n_critic)
        if per_epoch < 1:
            raise GankitError(f"dataset {cfg.dataset} has {data.x.shape[0]} samples, fewer than global batch x "
                              f"n_critic = {cfg.global_batch_size * cfg.n_critic}")
        self.num_steps = cfg.steps or max(1, round(cfg.epochs * per_epoch))
        self.gan_metrics = [m for m in cfg.eval_metrics if m != "accuracy"] if cfg.eval_every else []
        if self.gan_metrics:  # fail now, not at the first evaluation, if the evaluator weights are missing
            from gankit.metrics.evaluator import Evaluator

            distributed.first(lambda: Evaluator.load(cfg.dataset, "cpu"), world)
        SummaryWriter = tensorboard_writer() if cfg.tensorboard and world.main else None  # checked before any write

        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        # a plain GAN step on one GPU is captured in a CUDA graph (gankit.graphs); its optimisers must allow it
        self.graphable = graphs.graphable(cfg, device, world.size)
        self.step_kind = "eager"  # or "cuda graph", once gankit.train.make_step has captured it
        self.G, self.D, self.opt_g, self.opt_d = G, D, opt_g, opt_d = build(
            cfg, device, capturable=self.graphable and device.type == "cuda")
        if world.rank:
            torch.manual_seed(cfg.seed + 7919 * world.rank)  # but a different noise stream per rank
        run = self.run = RunDir(cfg.out)
        self.step, elapsed = 0, 0.0
        if resume_from is None:
            distributed.first(lambda: run.create(cfg, overwrite), world)
        else:
            self._restore(resume_from)
            elapsed = resume_from.get("elapsed_s", 0.0)

        self.images = images = data.kind == "image"
        self.x_all = data.x.to(device)  # uint8 images (or float points) resident on the device
        if images and cfg.channels_last:
            self.x_all = self.x_all.contiguous(memory_format=torch.channels_last)
        self.batches = BatchIndices(self.x_all.shape[0], cfg.batch_size, cfg.seed, device, world)
        self.fixed_z = sample_noise(cfg, cfg.grid_size, device, torch.Generator().manual_seed(cfg.seed))
        self.real_points = None if images else data.x[:cfg.grid_size]
        self.amp = autocast(cfg, device)
        self.joint = not mixes_samples(D)  # D may see real and fake in one batch
        self.G_run, self.D_run = (compile_or_eager(G, "G"), compile_or_eager(D, "D")) if cfg.compile else (G, D)
        self.ssl = None
        if is_semi_supervised(cfg):
            self.ssl = SemiSupervised(cfg, data, self.x_all, self.to_float, device, world, D, self.joint)
            if resume_from:
                self.ssl.load_state_dict(resume_from)
            else:
                self.ssl.init_weights(D)
        if progress and world.main:
            print(f"gankit: {cfg.recipe} on {cfg.dataset} ({data.x.shape[0]} x {cfg.data_shape}"
                  f"{f', {len(self.ssl.labelled)} labelled' if self.ssl else ''}), steps {self.step}->{self.num_steps} "
                  f"({self.num_steps / per_epoch:.3g} epochs), {device}, {cfg.precision}"
                  f"{f', {world.size} processes' if world.size > 1 else ''} -> {run.path}\n"
                  f"gankit: precision: {self.precision_why}", file=sys.stderr)
        self.tb = SummaryWriter(str(run.path / "tensorboard")) if SummaryWriter else None
        self.best_fid = min((r["fid"] for r in run.read_stats(run.metrics) if "fid" in r),
                            default=float("inf")) if resume_from else float("inf")
        self.log = Monitor(run, world, self.step, self.num_steps, cfg.global_batch_size * cfg.n_critic, elapsed,
                           progress, self.tb)
        self.log.last_checkpoint = self.step if resume_from else None

    def _restore(self, state: dict) -> None:
        """Weights, optimisers, step and RNG streams from a checkpoint; the logs are cut back to its step."""
        cfg, world, run = self.cfg, self.world, self.run
        for name, obj in (("G", self.G), ("D", self.D), ("opt_g", self.opt_g), ("opt_d", self.opt_d)):
            load_into(obj, state, name, run.checkpoint)
        self.step = step = state["step"]
        rng = state["rng"]
        torch.set_rng_state(rng["ranks"][world.rank] if world.size > 1 else rng["torch"])
        if self.device.type == "cuda" and rng.get("cuda"):
            torch.cuda.set_rng_state(rng["cuda"][world.rank], self.device)
        if step >= self.num_steps:
            raise GankitError(f"--resume {cfg.out}: already at step {step} of {self.num_steps}; pass a larger "
                              f"--steps or --epochs")

        def tidy() -> None:  # the folder as of the checkpoint: logs cut back, temp files of a killed run gone
            stale = run.remove_stale_temps()
            notes = run.truncate_stats(step) + ([f"{run.path}: removed {len(stale)} temp file(s) left by a process "
                                                 f"killed mid-write ({', '.join(stale[:3])})"] if stale else [])
            write_text_atomic(run.config, cfg.to_json() + "\n")
            for note in notes:
                print(f"gankit: note: {note}", file=sys.stderr)

        distributed.first(tidy, world)

    # ---------------------------------------------------------------- data

    def to_float(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().div_(127.5).sub_(1.0) if self.images else x  # uint8 -> [-1, 1] on the device

    def real_batch(self, b: int) -> torch.Tensor:
        return self.to_float(self.x_all[self.batches(b)])

    # ---------------------------------------------------------------- what hangs off the loop

    def save_samples(self, at: int) -> None:
        """The fixed-noise grid of step `at` (none for a supervised baseline, which trains no G)."""
        G, run = self.G, self.run
        if self.world.main and not self.cfg.baseline:
            G.eval()
            with torch.no_grad(), self.amp:
                x = G(self.fixed_z).float()
            G.train()
            save_grid(x, run.sample_path(at)) if self.images else save_points(x, run.sample_path(at), self.real_points)
            if self.tb and self.images:
                self.tb.add_image("samples", make_grid(x), at, dataformats="HWC")

    def checkpoint(self, at: int, best: bool = False) -> None:
        world, device = self.world, self.device
        for net in (self.G, self.D):
            distributed.broadcast_state(net, world)  # BatchNorm running statistics differ per rank
        rng = {"torch": torch.get_rng_state(),
               "cuda": distributed.gather(torch.cuda.get_rng_state(device), world) if device.type == "cuda" else []}
        if world.size > 1:
            rng["ranks"] = distributed.gather(torch.get_rng_state(), world)
        if world.main:
            nets = {name: getattr(self, name).state_dict() for name in ("G", "D", "opt_g", "opt_d")}
            self.run.save_checkpoint({"format": 1, "step": at, "elapsed_s": self.log.seconds(), **nets, "rng": rng,
                                      "config": self.cfg.to_dict(), **(self.ssl.state_dict() if self.ssl else {})},
                                     best=best)
        if not best:
            self.log.last_checkpoint = at

    def evaluate(self, at: int) -> None:
        """Cheap metrics of the current G (and test accuracy of a classifier) into metrics.jsonl;
        keep the checkpoint with the best fid."""
        cfg, G, row = self.cfg, self.G, None
        if self.world.main:
            from gankit.evaluate import evaluate

            row = {"step": at}
            if self.gan_metrics:
                G.eval()
                m = evaluate((G, cfg), cfg.dataset, self.gan_metrics, cfg.eval_samples, device=str(self.device),
                             seed=cfg.seed, progress=False, data_dir=cfg.data_dir)
                G.train()
                row.update({k: v for k, v in m.items() if isinstance(v, (int, float))})
            if self.ssl and "accuracy" in cfg.eval_metrics:
                row.update(self.ssl.test(self.D))
            self.run.append_metrics(row)
            for k, v in row.items():
                if self.tb and k != "step":
                    self.tb.add_scalar(f"eval/{k}", v, at)
        row = distributed.share(row, self.world)
        if row.get("fid", self.best_fid) < self.best_fid:
            self.best_fid = row["fid"]
            self.checkpoint(at, best=True)

    def summary(self, start: int) -> dict:
        cfg, run, world, step = self.cfg, self.run, self.world, self.step
        session_s = self.log.seconds() - self.log.elapsed
        out = {"run": str(run.path), "steps": step, "step_kind": self.step_kind, "wall_s": round(self.log.seconds(), 1),
               "images_per_s": round((step - start) * cfg.global_batch_size * cfg.n_critic / session_s, 1),
               "final": run.read_stats()[-1] if world.main and run.stats.exists() else {}}
        evaluations = run.read_stats(run.metrics) if world.main else []
        if evaluations:
            out["metrics"] = evaluations[-1]
        if self.ssl:
            out["labelled"] = len(self.ssl.labelled)
        if world.size > 1:
            out["world_size"] = world.size
            out["rank_fingerprints"] = distributed.gather(distributed.fingerprint(self.G, self.D), world)
        return out
