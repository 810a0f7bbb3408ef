"""gankit.build: --compile falls back to eager where torch.compile fails; gankit.hardware.pick_device."""

import pytest
import torch
from torch import nn

from gankit.build import compile_or_eager
from gankit.config import validate
from gankit.hardware import pick_device
from gankit.distributed import World
from gankit.errors import GankitError
from gankit.run import load_checkpoint
from gankit.train import train
from test_recipes import small_config
from test_train import same_state


class FailsInBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        raise AssertionError("cannot trace convolution_backward")


class BrokenForward(nn.Module):
    """What torch.compile returns where tracing the forward fails: the error comes at the first call."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, *args):
        raise AssertionError("cannot trace the forward")


class BrokenBackward(BrokenForward):
    """Computes what `net` does, but its backward fails: the error comes inside loss.backward()."""

    def forward(self, *args):
        return FailsInBackward.apply(self.net(*args))


@pytest.mark.parametrize("broken", [BrokenForward, BrokenBackward])
def test_compile_failure_falls_back_to_eager(broken, tmp_path, tiny_data, monkeypatch, capsys):
    """D fails to compile (G compiles, here to itself): one warning line, and the run ends with
    exactly the weights, optimiser state and RNG stream of an eager run."""
    eager = small_config("cs231n-dcgan", tmp_path / "eager", steps=3, precision="fp32", device="cpu")  # deterministic
    train(eager, progress=False)
    nets = []

    def fake_compile(net):  # set-up compiles G, then D
        nets.append(net)
        return broken(net) if len(nets) == 2 else net

    monkeypatch.setattr(torch, "compile", fake_compile)
    capsys.readouterr()
    compiled = small_config("cs231n-dcgan", tmp_path / "compiled", steps=3, precision="fp32", device="cpu",
                            compile=True)
    train(compiled, progress=False)
    warnings = [line for line in capsys.readouterr().err.splitlines() if "torch.compile" in line]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("gankit: warning: torch.compile failed on D (AssertionError: cannot trace")
    assert warnings[0].endswith("; training D eager")
    a, b = load_checkpoint(eager.out), load_checkpoint(compiled.out)
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert same_state(a["rng"]["torch"], b["rng"]["torch"])


def test_compile_trial_leaves_no_trace(monkeypatch, capsys):
    """The trial forward and backward of a new kind of call changes no weight, gradient, BatchNorm
    statistic or RNG stream: the call gives what an eager call gives, and so does the next."""
    monkeypatch.setattr(torch, "compile", lambda net: net)  # compiles "successfully": the trial runs
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
    twin = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 1))
    twin.load_state_dict(net.state_dict())
    run = compile_or_eager(net, "D")
    x = torch.randn(16, 4)
    for seed in range(2):
        torch.manual_seed(seed)
        out = run(x)
        rng = torch.get_rng_state()
        torch.manual_seed(seed)
        expected = twin(x)
        assert torch.equal(out, expected) and torch.equal(torch.get_rng_state(), rng)
        assert seed or all(p.grad is None for p in net.parameters())  # the trial wrote no .grad
        assert same_state(net.state_dict(), twin.state_dict())
        out.sum().backward()
        expected.sum().backward()
        assert all(torch.equal(p.grad, q.grad) for p, q in zip(net.parameters(), twin.parameters()))
    assert run.tried and len(run.tried) == 1  # one kind of call, tried once
    run.requires_grad_(False)  # attributes are the net's own
    assert not any(p.requires_grad for p in net.parameters()) and next(run.parameters()) is net[0].weight
    assert "warning" not in capsys.readouterr().err


def test_cuda_processes_need_a_gpu_each(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(GankitError, match=r"--device cuda: 2 processes on this machine but 1 GPU; run torchrun "
                                          r"--nproc_per_node=1, or --device cpu"):
        pick_device("cuda", World(rank=1, size=2, local_rank=1, local_size=2))
    # two machines, one process and one GPU on each: fine
    assert pick_device("cuda", World(rank=1, size=2, local_rank=0, local_size=1)) == torch.device("cuda:0")
    assert pick_device("cpu", World(rank=1, size=2, local_rank=1, local_size=2)) == torch.device("cpu")
    assert pick_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(GankitError, match=r"--device cuda:0: under torchrun each process takes its own GPU"):
        pick_device("cuda:0", World(rank=0, size=2, local_rank=0, local_size=2))  # both processes on one GPU
    with pytest.raises(GankitError, match=r"--device cuda:1: this machine has 1 GPU \(cuda:0 to cuda:0\)"):
        pick_device("cuda:1")


def test_batch_norm_networks_refuse_a_batch_of_one_before_any_run_folder(tiny_data, tmp_path):
    with pytest.raises(GankitError, match=r"batch_size=1: recipe cs231n-dcgan's networks batch-normalise flat features"):
        train(small_config("cs231n-dcgan", tmp_path, batch_size=1), progress=False)
    assert not (tmp_path / "cs231n-dcgan").exists()


def test_an_unknown_device_is_named(tmp_path):
    with pytest.raises(GankitError, match=r"--device gpu: expected auto, cpu, cuda or cuda:N"):
        pick_device("gpu")
    with pytest.raises(GankitError, match=r"device='cuda:x': expected auto, cpu, cuda or cuda:N"):
        validate(small_config("cs231n-gan", tmp_path, device="cuda:x"))
