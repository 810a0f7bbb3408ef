"""Training, for every recipe: set a run up, then loop — step, log, sample, checkpoint, evaluate.

    train(cfg)              a fresh run into the folder cfg.out
    resume("runs/dcgan")    go on from the run's checkpoint

setup() builds the run's State (device, data, networks, run folder) in one flat pass; the step
(gankit.steps: the plain GAN or the semi-supervised one) is chosen once, and the loop never
branches on the recipe. The whole dataset sits on the device as uint8 and batches are drawn by
index; the step's scalars stay on the device and are read once every `log_every` steps
(gankit.monitor), so the loop never waits on the host. Under torchrun each process trains on its
own shard of every global batch (gankit.distributed); rank 0 alone writes the run folder.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import signal
import sys
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable

import torch

from gankit import data as datasets
from gankit import distributed, graphs
from gankit.augment import diff_augment
from gankit.build import build, build_settings, compile_or_eager, lr_scale, mixes_samples, put_back, set_lr
from gankit.config import AUGMENTATIONS, Config, is_semi_supervised, validate, with_data
from gankit.errors import DataError, GankitError, Interrupted
from gankit.files import write_text_atomic
from gankit.hardware import autocast, pick_device, resolve_precision
from gankit.images import make_grid, save_grid, save_points
from gankit.metrics import METRICS, check_metrics
from gankit.monitor import Monitor, tensorboard_writer
from gankit.run import RunDir, check_folder_config, load_checkpoint, load_into
from gankit.sample import grid_inputs
from gankit.semi import SemiSupervised
from gankit.steps import ema_decay, make_step, update_ema

SMALL_DATA = 10_000  # fewer training images than this: diffaugment=auto turns DiffAugment on, else a note says so
AUTO_AUGMENT = ",".join(AUGMENTATIONS)  # what diffaugment=auto turns on: all of them


def train(cfg: Config, *, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a fresh run into the folder cfg.out (under torchrun: one process of a data-parallel job)."""
    return _fit(cfg, None, overwrite, progress)


def resume(run: str | Path, *, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Continue the run in folder `run` from its checkpoint; `overrides` may change the budget
    (steps, epochs), where its data is (data_dir: the run's files moved) and where and how fast it
    runs (a bf16 run resumed on a CPU without native bf16 can go on in fp32), nothing that would
    change what is trained."""
    cfg, state = resumed_config(run, **overrides)
    return _fit(cfg, state, False, progress)


def resumed_config(run: str | Path, **overrides: Any) -> tuple[Config, dict]:
    """-> (the config a resume of `run` continues with, the checkpoint's state); see resume()."""
    allowed = {"steps", "epochs", "device", "precision", "data_dir", "log_every", "sample_every", "checkpoint_every",
               "threads", "compile", "cuda_graph", "eval_every", "eval_samples", "tensorboard"}
    bad = sorted(set(overrides) - allowed - {"dataset"})
    if bad:
        raise GankitError(f"--resume: cannot change {', '.join(bad)} of an existing run (only {', '.join(sorted(allowed))}, "
                          f"and --dataset folder:PATH where a folder run's images moved)")
    if Path(run).is_file():  # a run goes on in its own folder, from its last checkpoint
        raise GankitError(f"--resume {run}: a file; --resume takes a run folder ({Path(run).parent})")
    state = load_checkpoint(run)
    check_folder_config(Path(run), state["config"])
    old = state["config"].dataset
    if "dataset" in overrides and overrides["dataset"] != old and \
            not (old.startswith("folder:") and str(overrides["dataset"]).startswith("folder:")):
        raise GankitError(f"--resume: cannot change dataset of an existing run ({old}); --dataset folder:PATH only "
                          f"points a folder run at the place its images moved to")
    cfg = Config.from_dict({**state["config"].to_dict(), **overrides, "out": str(run)})
    if "epochs" in overrides and "steps" not in overrides:
        cfg.steps = None
    validate(cfg, fresh=False)
    if cfg.steps:  # a budget in epochs is checked once the data says how many steps an epoch is
        check_left(cfg.out, state["step"], cfg.steps)
    size = distributed.from_env().size
    if state["world_size"] != size:
        raise GankitError(f"--resume {run}: the run used {state['world_size']} process(es), this job has {size}; "
                          "resume with the same number")
    return cfg, state


def check_eval_samples(cfg: Config) -> None:
    """--eval-every scores eval_samples samples against as many test images, and the floor as many
    training images: a split of --data-dir's own IDX files that is too short fails before training,
    not at the first evaluation (the standard splits hold 10,000 and 60,000, and validate caps
    eval_samples at 10,000)."""
    for split in ("test", "train"):
        n = len(datasets.load(cfg.dataset, split, data_dir=cfg.data_dir, download=cfg.download).x)
        if cfg.eval_samples > n:
            raise GankitError(f"eval_samples={cfg.eval_samples}: --eval-every draws that many images of the "
                              f"{split} split, and {cfg.dataset}'s has {n}")


def check_left(out: str, step: int, num_steps: int) -> None:
    """A resume needs steps left to train."""
    if step >= num_steps:
        raise GankitError(f"--resume {out}: already at step {step} of {num_steps}; pass a larger --steps or --epochs")


def _fit(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool) -> dict[str, Any]:
    validate(cfg, fresh=resume_from is None)
    if not cfg.out:
        raise GankitError("--out: a run folder is required")
    device = this_device(cfg)
    # the run's GPU is the current one (restored after) from before the job is joined: NCCL's first
    # collective and CUDA graphs run on the current GPU
    with torch.cuda.device(device) if device.type == "cuda" and device.index is not None else contextlib.nullcontext():
        world = distributed.init(device.type)
        ok = False
        try:
            with contextlib.ExitStack() as held:  # the main process holds the run folder for the whole run;
                # a refusal there (another process holds it) is raised on every rank
                distributed.first(lambda: held.enter_context(RunDir(cfg.out).hold()), world)
                summary = loop(setup(cfg, resume_from, overwrite, progress, world, device))
                ok = True  # from here every rank meets the others in shutdown's barrier
            return summary
        finally:
            distributed.shutdown(world, ok)


# ---------------------------------------------------------------- the loop

def loop(s: State) -> dict[str, Any]:
    cfg, log, start = s.cfg, s.log, s.step
    if s.step == 0:
        with log.paused():
            save_samples(s, 0)
    step_fn = make_step(s)
    with stop_on_interrupt() as stop:
        while s.step < s.num_steps and not stop.agreed(s.world):
            if cfg.lr_decay:
                f = lr_scale(s.step, s.num_steps, cfg.lr_decay)
                set_lr(s.opt_g, cfg.lr_g * f)
                set_lr(s.opt_d, cfg.lr_d * f)
            log.add(step_fn(s.step))
            if s.G_ema is not None:
                update_ema(s.G_ema, s.G, ema_decay(cfg.g_ema, s.step))
            s.step += 1
            step, last = s.step, s.step == s.num_steps
            if step % cfg.log_every == 0 or step % cfg.checkpoint_every == 0 or last:
                log.flush(step)
            grid, scored = step % cfg.sample_every == 0 or last, cfg.eval_every and (step % cfg.eval_every == 0 or last)
            saved = step % cfg.checkpoint_every == 0 or last
            if grid or scored or saved:
                with log.paused():  # images/s counts the steps alone (a pause waits for a GPU: only when due)
                    if grid:
                        save_samples(s, step)
                    if scored:
                        evaluate(s, step)  # before the checkpoint, which then holds the RNG state the next step sees
                    if saved:
                        checkpoint(s, step)
        interrupted = s.step < s.num_steps  # a stop was agreed: a run whose last step is done is finished
        if interrupted:  # Ctrl-C or SIGTERM: finish the step in hand, keep it, and say how to go on
            log.flush(s.step)
            checkpoint(s, s.step)
    log.close()
    if interrupted:
        w = s.world
        job = "" if w.size == 1 else "torchrun " + (f"--nnodes {w.size // w.local_size} " if w.size > w.local_size
                                                    else "") + f"--nproc_per_node {w.local_size} -m "
        raise Interrupted(f"interrupted at step {s.step}; checkpoint saved. Continue with: "
                          f"{job}gankit train --resume {s.run.path}")
    return summary(s, start)


# ---------------------------------------------------------------- set-up

@dataclass
class State:
    """Everything a run's loop and its step touch, built once by setup()."""

    cfg: Config  # as chosen, with precision, data_shape and num_classes resolved
    world: distributed.World
    device: torch.device
    run: RunDir
    G: torch.nn.Module
    D: torch.nn.Module
    G_run: Any  # what the step calls: G itself, or torch.compile'd
    D_run: Any
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    x_all: torch.Tensor  # the training split on the device: uint8 images or float points
    y_all: torch.Tensor | None  # its labels on the device, for a conditional GAN
    batches: datasets.BatchIndices  # global batch b -> this rank's rows of x_all
    amp: Any  # bf16 autocast, or nothing
    joint: bool  # D may see real and fake in one batch (no BatchNorm)
    graphable: bool  # the step may be captured in a CUDA graph (gankit.graphs)
    ssl: SemiSupervised | None  # the labelled side of a semi-supervised run
    G_ema: torch.nn.Module | None  # the moving average of G's weights (g_ema), which grids and metrics use
    augment: Callable[[torch.Tensor], torch.Tensor]  # DiffAugment before D, or the identity
    fixed_inputs: tuple  # G's input for every sample grid: (z,), or (z, y) with a row per class
    real_points: torch.Tensor | None  # real points under a toy run's scatter plots
    num_steps: int
    log: Monitor
    tb: Any  # a TensorBoard writer, or None
    step: int = 0
    best_fid: float = float("inf")
    step_kind: str = "eager"  # or "cuda graph", once gankit.steps.make_step has captured the step

    @property
    def sampler(self) -> torch.nn.Module:
        """The G that grids and metrics use: the moving average where the run keeps one."""
        return self.G_ema if self.G_ema is not None else self.G

    def real_batch(self, b: int) -> torch.Tensor:
        return datasets.to_float(self.x_all[self.batches(b)])

    def labels_of(self, idx: torch.Tensor) -> tuple:
        """G's and D's extra arguments for the real images idx: () unconditional, (y,) conditional."""
        return () if self.y_all is None else (self.y_all[idx],)

    def draw_labels(self, n: int) -> tuple:
        """The same for n generated images: classes drawn uniformly."""
        return () if self.y_all is None else (torch.randint(self.cfg.num_classes, (n,), device=self.device),)


def setup(cfg: Config, resume_from: dict | None, overwrite: bool, progress: bool, world: distributed.World,
          device: torch.device) -> State:
    """The run's State: fresh, or restored from the checkpoint `resume_from`."""
    # ---- threads, precision ("auto" resolved here; config.json records the outcome, so a resume keeps it)
    torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world.local_size))
    precision, precision_why, warning = resolve_precision(cfg.precision, device)
    if warning and world.main:
        print(f"gankit: warning: {warning}", file=sys.stderr)

    # ---- data: the whole training split, and the budget in steps
    try:
        data = datasets.load_split(cfg)
    except DataError as e:  # a folder run whose images moved: say how to point it at their new place
        if resume_from is None or not cfg.dataset.startswith("folder:") or Path(cfg.dataset[7:]).is_dir():
            raise
        raise DataError(f"{e}; if the run's images moved: gankit train --resume {cfg.out} --dataset folder:NEWPATH") \
            from None
    trained_on = resume_from.get("num_train", len(data.x)) if resume_from is not None else len(data.x)
    if trained_on != len(data.x) and world.main:  # a folder whose images were added or removed since
        print(f"gankit: note: {cfg.dataset} holds {len(data.x)} training images now, the run trained on {trained_on}: "
              f"it goes on, but not with the batches an uninterrupted run would have drawn", file=sys.stderr)
    augment, augment_note = resolve_diffaugment(cfg, data)  # "auto" resolved here too, recorded the same way
    cfg = with_data(dataclasses.replace(cfg, precision=precision, diffaugment=augment), data)
    images_per_step = cfg.batch_size * world.size * cfg.n_critic
    per_epoch = data.x.shape[0] // images_per_step
    if per_epoch < 1:
        raise GankitError(f"dataset {cfg.dataset} has {data.x.shape[0]} samples, fewer than batch_size x processes x "
                          f"n_critic = {images_per_step}")
    num_steps = budget_steps(cfg, per_epoch)
    if cfg.eval_every:  # fail now, not at the first evaluation, if a metric's network is missing
        distributed.first(lambda: check_metrics(cfg.eval_metrics, cfg.dataset), world)
    if cfg.eval_every and cfg.data_dir and any(METRICS[m].needs != "classifier" for m in cfg.eval_metrics):
        distributed.first(lambda: check_eval_samples(cfg), world)
    SummaryWriter = tensorboard_writer() if cfg.tensorboard and world.main else None  # checked before any write

    # ---- networks and optimisers: the same initial weights on every rank, then a noise stream per rank
    torch.manual_seed(cfg.seed)
    graphable = graphs.graphable(cfg, device, world.size)
    G, D, opt_g, opt_d = build(cfg, device, capturable=graphable and device.type == "cuda")
    if world.rank:
        torch.manual_seed(cfg.seed + 7919 * world.rank)
    ssl = SemiSupervised(cfg, data.y, len(data.x), device, world, D) if is_semi_supervised(cfg) else None
    G_ema = copy.deepcopy(G).requires_grad_(False) if cfg.g_ema else None

    # ---- run folder: a fresh one, or weights, optimisers, RNG and logs back as of the checkpoint
    run, step, elapsed = RunDir(cfg.out), 0, 0.0
    x_all = data.x.to(device)
    if data.kind == "image" and cfg.channels_last:
        x_all = x_all.contiguous(memory_format=torch.channels_last)
    if resume_from is None:
        distributed.first(lambda: run.create(cfg, overwrite), world)
        if ssl:
            ssl.init_weights(D, x_all)
    else:
        step, elapsed = restore(resume_from, cfg, run, world, device, (G, D, opt_g, opt_d, ssl, G_ema), num_steps,
                                per_epoch)

    # ---- what the loop logs
    if progress and world.main:
        print(f"gankit: {cfg.recipe} on {cfg.dataset} ({data.x.shape[0]} x {cfg.data_shape}"
              f"{f', {len(ssl.labelled)} labelled' if ssl else ''}), steps {step}->{num_steps} "
              f"({num_steps / per_epoch:.3g} epochs), {device}, {cfg.precision}"
              f"{f', {world.size} processes' if world.size > 1 else ''} -> {run.path}\n"
              f"gankit: precision: {precision_why}", file=sys.stderr)
    if augment_note and world.main and resume_from is None:  # once, as a fresh run starts (the folder is written)
        print(f"gankit: note: {augment_note}", file=sys.stderr)
    # a resume drops TensorBoard's points past the checkpoint's step (>= purge_step), as it cuts back stats.jsonl
    tb = SummaryWriter(str(run.path / "tensorboard"), purge_step=step + 1 if resume_from else None) if SummaryWriter else None
    log = Monitor(run, world, step, num_steps, images_per_step, elapsed, progress, tb)
    log.last_checkpoint = step if resume_from else None
    best_fid = min((r["fid"] for r in run.read_stats(run.metrics)  # FIDs of one sample count compare; another's do not
                    if "fid" in r and r.get("num_samples") == cfg.eval_samples), default=float("inf")) \
        if resume_from else float("inf")
    return State(cfg=cfg, world=world, device=device, run=run, G=G, D=D,
                 G_run=compile_or_eager(G, "G") if cfg.compile else G,
                 D_run=compile_or_eager(D, "D") if cfg.compile else D, opt_g=opt_g, opt_d=opt_d, x_all=x_all,
                 batches=datasets.BatchIndices(len(x_all), cfg.batch_size, cfg.seed, device, world),
                 amp=autocast(cfg.precision, device), joint=not mixes_samples(D), graphable=graphable, ssl=ssl,
                 G_ema=G_ema, augment=partial(diff_augment, policy=cfg.diffaugment) if cfg.diffaugment else _identity,
                 fixed_inputs=grid_inputs(cfg, cfg.grid_size, device, torch.Generator().manual_seed(cfg.seed)),
                 y_all=data.y.to(device) if cfg.conditional else None,
                 real_points=None if data.kind == "image" else data.x[:cfg.grid_size], num_steps=num_steps,
                 log=log, tb=tb, step=step, best_fid=best_fid)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def resolve_diffaugment(cfg: Config, data: datasets.Dataset) -> tuple[str, str | None]:
    """-> (the DiffAugment policy the run trains with, "" for none; a note for a fresh run's start or None).
    `auto` is all three transforms on fewer than SMALL_DATA images, none on more: with a few thousand,
    D may learn them by heart and G collapse (dcgan64 on the 3,786 emoji of docs/results.md collapsed
    on one seed of three without it, on none with it). `none` and "" are off; a run left without it on
    a small image set gets a note naming the setting, or, with the Wasserstein loss and weight clipping
    or a gradient penalty (wgan, wgan-gp), saying that DiffAugment did not help there. Semi-supervised
    runs, which train a classifier on their labels, and 2-D points: auto is off and nothing is
    suggested. config.json records the policy, so a resume keeps it."""
    asked, n = cfg.diffaugment, data.x.shape[0]
    if asked not in ("auto", "none", ""):
        return asked, None
    if data.kind != "image" or n >= SMALL_DATA or is_semi_supervised(cfg) or asked == "none":
        return "", None
    images = f"training on {n} images{f' (--limit {cfg.limit})' if cfg.limit else ''}"
    if asked == "auto":
        return AUTO_AUGMENT, (f"{images}: fewer than {SMALL_DATA:,}, so DiffAugment is on (diffaugment=auto: "
                              f"{AUTO_AUGMENT}) to keep D from learning them by heart; --set diffaugment=none "
                              "trains without it (docs/recipes.md, DiffAugment)")
    advice = ("DiffAugment did not help wgan or wgan-gp (the Wasserstein loss) in 45 epochs on 3,786 emoji: "
              "with it, every sample was one shape;"  # measured: one shape on every sample, 2 seeds each
              if cfg.loss == "wasserstein" and (cfg.clip or cfg.gp_weight)
              else f"--set diffaugment={AUTO_AUGMENT} (or auto) augments what D sees,")
    return "", (f"{images}: with a few thousand, D may learn them by heart and G collapse; {advice} "
                "--set diffaugment=none silences this note (docs/recipes.md, DiffAugment)")


def this_device(cfg: Config) -> torch.device:
    """The device this process trains on; under torchrun one GPU per process, chosen (and refused
    where a machine has fewer GPUs than processes) before the job is joined."""
    return pick_device(cfg.device, distributed.from_env())


def dry_run_notes(cfg: Config) -> list[str]:
    """What setup() would make of cfg's precision and `auto` settings here, without loading data or
    building anything: the precision for this machine's device (auto: bf16 where it is native; bf16
    asked for where it is emulated: a warning) and the rule that decides diffaugment=auto once the
    data is loaded. A --device this machine lacks is an error; under torchrun, this process's own
    device, with the same processes-per-GPU check as the job's start."""
    _, why, warning = resolve_precision(cfg.precision, this_device(cfg))
    notes = [f"precision {cfg.precision}: {why}"] + ([f"warning: {warning}"] if warning else [])
    if cfg.diffaugment == "auto":
        notes.append("diffaugment auto: off (a semi-supervised run)" if is_semi_supervised(cfg) else
                     "diffaugment auto: off (2-D points)" if cfg.dataset.startswith("toy:") else
                     f"diffaugment auto: {AUTO_AUGMENT} on fewer than {SMALL_DATA:,} training images, off on "
                     f"{SMALL_DATA:,} or more; decided when the data is loaded")
    return notes


def restore(state: dict, cfg: Config, run: RunDir, world: distributed.World, device: torch.device, trained,
            num_steps: int, per_epoch: int) -> tuple[int, float]:
    """Weights, optimisers and RNG streams from a checkpoint; the run folder's logs cut back to its
    step. -> (step, training seconds so far)."""
    G, D, opt_g, opt_d, ssl, G_ema = trained
    built = [build_settings(opt) for opt in (opt_g, opt_d)]  # a device lr, capturable: this run's, not the saver's
    for name, obj in (("G", G), ("D", D), ("opt_g", opt_g), ("opt_d", opt_d)) + ((("G_ema", G_ema),) if G_ema else ()):
        load_into(obj, state, name, run.checkpoint)
    for opt, settings in zip((opt_g, opt_d), built):
        put_back(opt, settings)
    if ssl:
        ssl.load_state_dict(state)
    step, rng = state["step"], state["rng"]
    torch.set_rng_state(rng["ranks"][world.rank] if world.size > 1 else rng["torch"])
    if device.type == "cuda" and rng.get("cuda"):
        torch.cuda.set_rng_state(rng["cuda"][world.rank], device)
    check_left(cfg.out, step, num_steps)

    def tidy() -> None:  # the folder as of the checkpoint: logs and grids cut back, temp files of a killed run gone
        stale = run.remove_stale_temps()
        run.remove_samples_after(step)
        best_at = run.remove_best_after(step)
        notes = run.truncate_stats(step) + ([f"{run.path}: removed {len(stale)} temp file(s) left by a process "
                                             f"killed mid-write ({', '.join(stale[:3])})"] if stale else [])
        if best_at is not None:
            notes.append(f"{run.best}: removed; it was of step {best_at}, past the checkpoint's {step}, and those "
                         f"steps are redone (the next evaluation better than those kept writes it again)")
        if cfg.lr_decay and (jump := lr_budget_note(state["config"], cfg, step, num_steps, per_epoch)):
            notes.append(jump)
        write_text_atomic(run.config, cfg.to_json() + "\n")
        for note in notes:
            print(f"gankit: note: {note}", file=sys.stderr)

    distributed.first(tidy, world)
    return step, state.get("elapsed_s", 0.0)


def budget_steps(cfg: Config, per_epoch: int) -> int:
    """A run's budget in steps: cfg.steps, else cfg.epochs of per_epoch steps (at least one)."""
    return cfg.steps or max(1, round(cfg.epochs * per_epoch))


def lr_budget_note(old: Config, cfg: Config, step: int, num_steps: int, per_epoch: int) -> str | None:
    """lr_decay follows the budget: a resume that changes it where either budget's decay has begun
    moves the learning rates at once; -> a note saying so, or None where they go on unchanged."""
    before = budget_steps(old, per_epoch)
    was, now = lr_scale(step, before, cfg.lr_decay), lr_scale(step, num_steps, cfg.lr_decay)
    if was == now:
        return None
    return (f"lr_decay={cfg.lr_decay} falls over the last part of the budget: at step {step} the learning rates "
            f"were {was:.3g}x the recipe's (of {before} steps) and are {now:.3g}x now (of {num_steps}), so they "
            f"jump {'up' if now > was else 'down'} here, and the run will not be the one that --steps {num_steps} "
            f"from the start would have trained")


# ---------------------------------------------------------------- what hangs off the loop

def save_samples(s: State, at: int) -> None:
    """The fixed-noise grid of step `at` (none for a supervised baseline, which trains no G)."""
    if s.world.main and not s.cfg.baseline:
        G = s.sampler
        G.eval()
        with torch.no_grad(), s.amp:
            x = datasets.to_signed(G(*s.fixed_inputs).float(), s.cfg.real_range)
        s.G.train()
        path = s.run.sample_path(at)
        if s.real_points is not None:
            save_points(x, path, s.real_points)
        else:
            save_grid(x, path, nrow=len(x) // s.cfg.num_classes if s.cfg.conditional else None)
        if s.tb and s.real_points is None:
            s.tb.add_image("samples", make_grid(x), at, dataformats="HWC")


def checkpoint(s: State, at: int, best: bool = False) -> None:
    """Weights, optimisers, step, RNG streams of every rank and the config, in one file (rank 0)."""
    world, device = s.world, s.device
    for net in (s.G, s.D):
        distributed.broadcast_state(net, world)  # BatchNorm running statistics differ per rank
    rng = {"torch": torch.get_rng_state(),
           "cuda": distributed.gather(torch.cuda.get_rng_state(device), world) if device.type == "cuda" else []}
    if world.size > 1:
        rng["ranks"] = distributed.gather(torch.get_rng_state(), world)
    if world.main:
        nets = {"G": s.G.state_dict(), "D": s.D.state_dict(), "opt_g": s.opt_g.state_dict(),
                "opt_d": s.opt_d.state_dict(), **(s.ssl.state_dict() if s.ssl else {}),
                **({"G_ema": s.G_ema.state_dict()} if s.G_ema is not None else {})}
        s.run.save_checkpoint({"format": 1, "step": at, "elapsed_s": s.log.seconds(), "world_size": world.size,
                               "num_train": len(s.x_all), **nets, "rng": rng, "config": s.cfg.to_dict()}, best=best)
    if not best:
        s.log.last_checkpoint = at


def evaluate(s: State, at: int) -> None:
    """Metrics of the current G (and test accuracy of a classifier) into metrics.jsonl; keep the
    checkpoint with the best fid."""
    cfg, row = s.cfg, None
    if s.world.main:
        from gankit.evaluate import evaluate as evaluate_images

        row = {"step": at}
        gan_metrics = [m for m in cfg.eval_metrics if METRICS[m].needs != "classifier"]
        if gan_metrics:
            G = s.sampler
            G.eval()
            m = evaluate_images((G, cfg), cfg.dataset, gan_metrics, cfg.eval_samples, device=str(s.device),
                                seed=cfg.seed, progress=False, data_dir=cfg.data_dir, download=cfg.download)
            s.G.train()
            row.update({k: v for k, v in m.items() if isinstance(v, (int, float))})
        if s.ssl and any(METRICS[m].needs == "classifier" for m in cfg.eval_metrics):
            row.update(s.ssl.test(s.D))
        s.run.append_metrics(row)
        for k, v in row.items():
            if s.tb and k not in ("step", "num_samples"):
                s.tb.add_scalar(f"eval/{k}", v, at)
    row = distributed.share(row, s.world)
    if row.get("fid", s.best_fid) < s.best_fid:
        s.best_fid = row["fid"]
        checkpoint(s, at, best=True)


def summary(s: State, start: int) -> dict:
    run, world = s.run, s.world
    session_s = s.log.seconds() - s.log.elapsed
    out = {"run": str(run.path), "steps": s.step, "step_kind": s.step_kind, "wall_s": round(s.log.seconds(), 1),
           "images_per_s": round((s.step - start) * s.log.images_per_step / session_s, 1),
           "final": run.read_stats()[-1] if world.main and run.stats.exists() else {}}
    evaluations = run.read_stats(run.metrics) if world.main else []
    if evaluations:
        out["metrics"] = evaluations[-1]
    if s.ssl:
        out["labelled"] = len(s.ssl.labelled)
    if world.size > 1:
        out["world_size"] = world.size
        out["rank_fingerprints"] = distributed.gather(distributed.fingerprint(s.G, s.D), world)
    return out


class stop_on_interrupt:
    """The first Ctrl-C (SIGINT) or SIGTERM (kill, timeout, a scheduler) asks the loop to stop after
    the current step, so the checkpoint it then writes is a clean step boundary; a second Ctrl-C
    interrupts at once. A repeated SIGTERM does not (Slurm and timeout may send two at once; who
    sends SIGTERM follows it with SIGKILL). Under torchrun the ranks agree on the step to stop
    after (agreed), or those still training would wait forever for those that stopped."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.requested, self.sigint_seen = False, False
        self._old = {}
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if signum == signal.SIGINT:
            if self.sigint_seen:
                raise KeyboardInterrupt
            self.sigint_seen = True
        self.requested = True

    def agreed(self, world: distributed.World) -> bool:
        """Whether any rank was asked to stop (one small all-reduce a step under torchrun)."""
        return distributed.any_rank(self.requested, world)

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)  # None: a handler set outside Python
        return False
