"""A run's trainable networks: the recipe's G and D on the device with their optimisers, and
torch.compile with a fallback to eager."""

from __future__ import annotations

import sys

import torch

from gankit.config import Config, is_semi_supervised
from gankit.errors import GankitError
from gankit.recipes import networks


def make_optimizer(cfg: Config, net: torch.nn.Module, lr: float, betas: list[float],
                   capturable: bool = False) -> torch.optim.Optimizer:
    """capturable: keep step counts on the device, so the step can be captured in a CUDA graph.
    With lr_decay the learning rate is a tensor on the device, which train.set_lr changes in place
    (a captured step reads it from there)."""
    if cfg.lr_decay:
        lr = torch.tensor(lr, device=next(net.parameters()).device)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(net.parameters(), lr=lr, foreach=True, capturable=capturable)
    return torch.optim.Adam(net.parameters(), lr=lr, betas=tuple(betas), eps=cfg.adam_eps, fused=True,
                            capturable=capturable)


def lr_scale(step: int, num_steps: int, decay: float) -> float:
    """The factor on both learning rates at `step` (0 .. num_steps-1) of `num_steps`: 1, then falling
    linearly towards 0 over the last `decay` fraction of the steps, to 1/(decay·num_steps) at the
    last (the schedule of Bad GAN's and Improved GAN's CIFAR code: lr · min(1, (1 - t/T) / decay));
    1 throughout when decay is 0."""
    return 1.0 if not decay else min(1.0, (1 - step / num_steps) / decay)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate in place (a tensor learning rate keeps its storage, which a
    step captured in a CUDA graph reads)."""
    for group in opt.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


def build_settings(opt: torch.optim.Optimizer) -> list[dict]:
    """What make_optimizer chose for this run on this device (a tensor lr on the device, capturable,
    fused), which loading a checkpoint's optimiser state overwrites with the saving run's."""
    return [{k: g[k] for k in ("lr", "capturable", "fused", "foreach") if k in g} for g in opt.param_groups]


def put_back(opt: torch.optim.Optimizer, settings: list[dict]) -> None:
    """Restore build_settings() after load_state_dict, keeping the loaded learning rate's value."""
    for group, kept in zip(opt.param_groups, settings):
        for k, v in kept.items():
            if k == "lr":
                lr = float(group["lr"])
                group["lr"] = v.fill_(lr) if torch.is_tensor(v) else lr
            else:
                group[k] = v


class CompileOrEager:
    """`net` run through torch.compile while that works, and eagerly from its first failure on.

    torch.compile is lazy: it compiles a graph at the first call of each kind (input shapes,
    grad mode, autocast, which tensors need gradients), and that graph's backward at its first
    backward, inside the caller's loss.backward(), where nothing could fall back. So the first
    call of each kind that needs gradients is tried first, forward and backward, on a detached
    copy of the input, with BatchNorm statistics and the RNG streams restored afterwards and no
    .grad written; the call itself then reuses the graphs the trial compiled. A trial on the real
    input, rather than on a dummy batch at set-up, compiles exactly the graphs the run uses."""

    def __init__(self, net: torch.nn.Module, name: str):
        self.eager, self.name = net, name
        self.compiled = torch.compile(net)
        self.tried = set()

    def __getattr__(self, attr):  # D.features, D.head, requires_grad_(), ... as torch.compile's module does
        if attr == "eager":
            raise AttributeError(attr)
        return getattr(self.eager, attr)

    def __call__(self, *args):
        if self.compiled is None:
            return self.eager(*args)
        try:
            kind = self._kind(args)
            if kind not in self.tried:
                self._trial(args)
                self.tried.add(kind)
            return self.compiled(*args)
        except Exception as e:  # a compiler failure (an error of the net itself is raised again by eager)
            e = getattr(e, "inner_exception", None) or e  # torch._dynamo's BackendCompilerFailed wraps the cause
            first = (str(e).strip().splitlines() or [""])[0][:200]
            print(f"gankit: warning: torch.compile failed on {self.name} ({type(e).__name__}: {first}); "
                  f"training {self.name} eager", file=sys.stderr)
            self.compiled = None
            return self.eager(*args)

    def _kind(self, args) -> tuple:
        """What makes torch.compile trace a new graph (its guards), as far as a trial needs to know."""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        return (torch.is_grad_enabled(), self.eager.training, torch.is_autocast_enabled(device),
                torch.get_autocast_dtype(device),
                tuple((t.shape, t.dtype, t.device, t.requires_grad, t.stride()) for t in tensors),
                tuple(p.requires_grad for p in self.eager.parameters()))

    def _trial(self, args) -> None:
        params = [p for p in self.eager.parameters() if p.requires_grad]
        needs_grad = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        if not torch.is_grad_enabled() or not (params or needs_grad):
            return  # no backward: a failure shows in the call itself
        buffers = [b.detach().clone() for b in self.eager.buffers()]  # BatchNorm statistics
        cuda = sorted({t.device for t in (*params, *buffers, *needs_grad) if t.is_cuda}, key=str)
        try:
            with torch.random.fork_rng(devices=cuda):
                x = [a.detach().requires_grad_(a.requires_grad) if isinstance(a, torch.Tensor) else a for a in args]
                out = self.compiled(*x)
                outs = [o for o in (out if isinstance(out, (tuple, list)) else [out])
                        if isinstance(o, torch.Tensor) and o.requires_grad]
                wrt = params + [a for a in x if isinstance(a, torch.Tensor) and a.requires_grad]
                if outs:
                    torch.autograd.grad(sum(o.float().sum() for o in outs), wrt, allow_unused=True)
        finally:
            with torch.no_grad():
                for b, saved in zip(self.eager.buffers(), buffers):
                    b.copy_(saved)


def compile_or_eager(net: torch.nn.Module, name: str) -> CompileOrEager:
    """torch.compile(net), falling back to `net` itself, with one warning line, where compiling fails."""
    return CompileOrEager(net, name)


def _is_conv(net: torch.nn.Module) -> bool:
    return any(isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) for m in net.modules())


def mixes_samples(net: torch.nn.Module) -> bool:
    """True if a sample's output depends on the rest of its batch (BatchNorm in training mode)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


def build(cfg: Config, device: torch.device, capturable: bool = False):
    """Networks and optimisers for a resolved config (data_shape must be set); capturable
    optimisers for a step captured in a CUDA graph."""
    G, D = networks(cfg)
    if is_semi_supervised(cfg) and not hasattr(D, "head"):
        raise GankitError(f"labels_per_class/label_rate: recipe {cfg.recipe} has no class logits in its "
                          f"discriminator; semi-supervised training needs recipe ssgan or improved-gan")
    if hasattr(D, "head") and not is_semi_supervised(cfg):
        raise GankitError(f"recipe {cfg.recipe} trains a classifier: set labels_per_class or label_rate")
    if cfg.batch_size < 2 and any(isinstance(m, torch.nn.BatchNorm1d) for net in (G, D) for m in net.modules()):
        # (over feature maps, BatchNorm2d has height x width values per channel even at batch 1)
        raise GankitError(f"batch_size={cfg.batch_size}: recipe {cfg.recipe}'s networks batch-normalise flat "
                          f"features, which needs at least 2 images a batch")
    G, D = G.to(device), D.to(device)
    if cfg.channels_last:
        G, D = (net.to(memory_format=torch.channels_last) if _is_conv(net) else net for net in (G, D))
    return (G, D, make_optimizer(cfg, G, cfg.lr_g, cfg.betas_g, capturable),
            make_optimizer(cfg, D, cfg.lr_d, cfg.betas_d, capturable))
