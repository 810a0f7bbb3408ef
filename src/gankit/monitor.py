"""Training statistics without host syncs: per-step scalars are summed on the device and read,
averaged over ranks and checked for NaN/inf only when a line is written to stats.jsonl."""

from __future__ import annotations

import contextlib
import math
import time

import torch
from tqdm.auto import tqdm

from gankit import distributed
from gankit.errors import GankitError
from gankit.progress import bar_intervals
from gankit.run import RunDir


class TrainingDiverged(GankitError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


def tensorboard_writer():
    """TensorBoard's SummaryWriter class; TensorBoard is an optional extra."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise GankitError("--tensorboard needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter


class Monitor:
    def __init__(self, run: RunDir, world: distributed.World, step: int, num_steps: int, images_per_step: int,
                 elapsed: float, progress: bool, tb=None):
        self.run, self.world, self.images_per_step, self.elapsed, self.tb = run, world, images_per_step, elapsed, tb
        self.acc, self.keys, self.n = None, [], 0
        self.t0 = self.t_log = time.perf_counter()
        self.step_log = step
        self.last_checkpoint: int | None = None
        self.bar = tqdm(total=num_steps, initial=step, unit="step", dynamic_ncols=True, **bar_intervals(),
                        disable=not (progress and world.main))

    def add(self, stats: dict[str, torch.Tensor]) -> None:
        """Accumulate one step's scalars on the device (no sync)."""
        vec = torch.stack([v.detach().float() for v in stats.values()])
        if self.acc is None:
            self.acc, self.keys = torch.zeros_like(vec), list(stats)
        self.acc += vec
        self.n += 1
        self.bar.update(1)

    def seconds(self) -> float:
        """Time of the run so far: its steps, grids, evaluations and checkpoints, earlier sessions
        included (not data loading or set-up)."""
        return self.elapsed + time.perf_counter() - self.t0

    @contextlib.contextmanager
    def paused(self):
        """Work between steps (grids, evaluations, checkpoints): counted in seconds(), left out of the
        images/s of the stats line whose window it falls in, which measures the steps alone."""
        if self.acc is not None and self.acc.is_cuda:  # the queued steps' time goes to their window, not this
            torch.cuda.synchronize(self.acc.device)
        t = time.perf_counter()
        try:
            yield
        finally:
            self.t_log += time.perf_counter() - t

    def flush(self, step: int) -> None:
        """Read the accumulated means (the one host sync), check them, and log one line."""
        if not self.n:
            return
        values = (distributed.mean(self.acc.clone(), self.world) / self.n).tolist()
        now = time.perf_counter()
        row = {"step": step, **{k: round(v, 6) for k, v in zip(self.keys, values)},
               "images_per_s": round((step - self.step_log) * self.images_per_step / (now - self.t_log), 1),
               "time_s": round(self.seconds(), 2)}
        bad = [(k, v) for k, v in zip(self.keys, values) if not math.isfinite(v)]
        if bad:
            self.bar.close()
            where = (f"{self.run.checkpoint} (step {self.last_checkpoint})" if self.last_checkpoint is not None
                     else "none was saved")
            raise TrainingDiverged(f"{self.run.path}: {bad[0][0]} became {bad[0][1]} by step {step}; training "
                                   f"stopped. Last good checkpoint: {where}. Try a lower learning rate.")
        if self.world.main:
            self.run.append_stats(row)
            if self.tb:
                for k in (*self.keys, "images_per_s"):
                    self.tb.add_scalar(f"train/{k}", row[k], step)
            self.bar.set_postfix({k: f"{row[k]:.3g}" for k in self.keys[:4]} | {"img/s": f"{row['images_per_s']:.0f}"},
                                 refresh=False)
        self.acc.zero_()
        self.n, self.t_log, self.step_log = 0, now, step

    def close(self) -> None:
        self.bar.close()
        if self.tb:
            self.tb.close()
