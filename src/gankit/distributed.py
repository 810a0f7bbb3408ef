"""Data-parallel training across processes started by torchrun (gloo on CPU, nccl on CUDA).

Each rank holds full copies of G and D, draws its own shard of every global batch, and averages
gradients with one all-reduce per network per update. This is what DistributedDataParallel does,
done by hand because a GAN step does not fit DDP's one-forward-one-backward contract: D is called
on real and fake batches before one backward (with BatchNorm, they must stay separate batches),
WGAN-GP differentiates through a gradient (double backward, which DDP does not support), and the
G step runs through D without updating it. Rank 0 alone writes logs, grids and checkpoints.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> World:
    """The world torchrun's environment describes, without joining it (for checks made before a job
    starts, such as --dry-run); a world of one outside torchrun."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")),
                 int(os.environ.get("LOCAL_WORLD_SIZE", str(size))))


_control = None  # a gloo group beside the job's own: any_rank agrees on the CPU, without waiting for a GPU


def init(device_type: str) -> World:
    """Join the torchrun job described by the environment, or return a world of one."""
    world = from_env()
    if world.size == 1:
        return world
    global _control
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    _control = dist.new_group(backend="gloo")  # every rank makes it, in the same order
    return dataclasses.replace(world, rank=dist.get_rank())


def shutdown(world: World, ok: bool = True) -> None:
    """Leave the job. After a run that ended well, every rank first waits for the others, so that no
    rank tears down its connections while a peer is still using them (CI once saw rank 0 of a gloo
    job die of SIGABRT, "terminate called without an active exception", with rank 1 still alive; it
    did not recur in repeated runs here, and ranks leaving at different times is the one race at the
    end of a run). After an error no barrier: a peer may never arrive."""
    global _control
    if world.size > 1 and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()  # every group, _control too
        _control = None


def average_gradients(net: torch.nn.Module, world: World) -> None:
    """Replace each gradient by its mean over ranks: one flat all-reduce."""
    if world.size == 1:
        return
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world.size
    for g, synced in zip(grads, _unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)


def broadcast_state(net: torch.nn.Module, world: World) -> None:
    """Make every rank's parameters and buffers (BatchNorm statistics) equal to rank 0's."""
    if world.size == 1:
        return
    for t in [*net.parameters(), *net.buffers()]:
        dist.broadcast(t.data, 0)


def mean(t: torch.Tensor, world: World) -> torch.Tensor:
    if world.size > 1:
        dist.all_reduce(t)
        t /= world.size
    return t


def any_rank(flag: bool, world: World) -> bool:
    """Whether `flag` is true on any rank, on every rank: a CPU all-reduce in the gloo group, so a
    CUDA job's queue of GPU work is not drained for it."""
    if world.size == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_control)
    return bool(t.item())


def gather(obj, world: World) -> list:
    """Every rank's `obj` (any picklable value), on every rank."""
    if world.size == 1:
        return [obj]
    out = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def share(obj, world: World):
    """Rank 0's `obj` (any picklable value), on every rank."""
    if world.size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, 0)
    return box[0]


def first(fn, world: World):
    """Run fn on rank 0 only and share its outcome: an exception raised there is raised on every
    rank (so no rank waits forever on a peer that has already failed)."""
    error = None
    if world.main:
        try:
            fn()
        except Exception as e:  # re-raised below, on every rank
            error = e
    if world.size > 1:
        box = [None if error is None else (type(error), str(error))]
        dist.broadcast_object_list(box, 0)
        if box[0] is not None and error is None:
            kind, msg = box[0]
            error = kind(msg)
    if error is not None:
        raise error


def fingerprint(*nets: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes: equal on all ranks iff the weights are identical."""
    h = hashlib.sha256()
    for net in nets:
        for p in net.parameters():
            h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
