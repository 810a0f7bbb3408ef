"""The training step captured in a CUDA graph computes what the eager step computes.

On a CPU everything but the capture itself is checked: batch indices in static buffers, and the
warm-up iterations that capture needs undone in place (weights, BatchNorm statistics, optimiser
state, RNG streams), so a run with them equals an eager run bit for bit. On a GPU the captured
step is compared with the eager one directly."""

import pytest
import torch

from gankit import graphs
from gankit.run import load_checkpoint
from gankit.train import resume, train

from test_recipes import small_config
from test_train import same_state

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_restore_puts_everything_back_in_place():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = torch.optim.Adam(net.parameters(), lr=0.1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    addresses = [v.data_ptr() for v in net.state_dict().values()]
    saved = graphs.snapshot([net], [opt])
    rng = torch.rand(3)
    for _ in range(2):  # what a warm-up does: changes weights, statistics, creates optimiser state
        opt.zero_grad()
        net(torch.randn(8, 4)).pow(2).mean().backward()
        opt.step()
    assert not same_state(before, net.state_dict())
    graphs.restore(saved, [net], [opt])
    assert same_state(before, net.state_dict())
    assert [v.data_ptr() for v in net.state_dict().values()] == addresses  # in place: a graph keeps its pointers
    for st in opt.state.values():  # state made after the snapshot is what Adam starts from: zeros
        assert all(not torch.is_tensor(v) or not v.any() for v in st.values())
    torch.set_rng_state(saved["cpu_rng"])
    assert torch.equal(torch.rand(3), rng)


# the techniques beside the seed recipes, in one step: conditioning, R1/R2, DiffAugment, spectral norm, EMA of G,
# a decaying learning rate (a tensor the loop sets in place between captured steps)
TECHNIQUES = {"cgan": dict(g_ema=0.9, lr_decay=0.5), "acgan": dict(diffaugment="color,translation,cutout"),
              "cs231n-gan": dict(loss="relativistic", r1_gamma=1.0, r2_gamma=0.5, spectral_norm=True, g_ema=0.9)}


@pytest.mark.parametrize("name", ["cs231n-dcgan", "wgan", "mlp-gan", *TECHNIQUES])  # BatchNorm+Adam,
def test_static_step_with_undone_warmup_equals_eager(name, tmp_path, tiny_data, monkeypatch):  # RMSprop+clip, dropout
    over = TECHNIQUES.get(name, {})
    eager = small_config(name, tmp_path / "eager", steps=4, precision="fp32", device="cpu", **over)
    train(eager, progress=False)
    monkeypatch.setattr(graphs, "graphable", lambda cfg, device, world_size: True)
    static = small_config(name, tmp_path / "static", steps=4, precision="fp32", device="cpu", **over)
    summary = train(static, progress=False)
    assert summary["step_kind"] == "static buffers"
    a, b = load_checkpoint(eager.out), load_checkpoint(static.out)
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert same_state(a["rng"], b["rng"])


@cuda
@pytest.mark.parametrize("name", ["cs231n-gan", "cs231n-dcgan", "wgan", "wgan-gp", "mlp-gan", *TECHNIQUES])
def test_cuda_graph_step_equals_eager(name, tmp_path, tiny_data, monkeypatch):
    # the same cuDNN algorithms in both runs (left to itself, cuDNN may pick different ones, whose
    # results differ in the last bits, and Adam turns that into visible differences within steps)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    runs = {}
    for graph in (False, True):
        cfg = small_config(name, tmp_path / str(graph), steps=6, device="cuda", cuda_graph=graph, precision="fp32",
                           **TECHNIQUES.get(name, {}))
        runs[graph] = train(cfg, progress=False), load_checkpoint(cfg.out)
    assert runs[True][0]["step_kind"] == "cuda graph" and runs[False][0]["step_kind"] == "eager"
    a, b = runs[False][1], runs[True][1]
    for key in ("G", "D"):
        for k in a[key]:
            assert torch.allclose(a[key][k].float(), b[key][k].float(), rtol=1e-4, atol=1e-5), (key, k)
    assert torch.equal(a["rng"]["cuda"][0], b["rng"]["cuda"][0])  # the noise stream advanced identically


@cuda
def test_cuda_graph_run_resumes_exactly(tmp_path, tiny_data):
    full = small_config("cs231n-dcgan", tmp_path / "full", steps=6, device="cuda")
    train(full, progress=False)
    part = small_config("cs231n-dcgan", tmp_path / "part", steps=3, device="cuda")
    train(part, progress=False)
    resume(part.out, steps=6, progress=False)
    a, b = load_checkpoint(full.out), load_checkpoint(part.out)
    for key in ("G", "D"):
        for k in a[key]:
            assert torch.allclose(a[key][k].float(), b[key][k].float(), rtol=1e-4, atol=1e-5), (key, k)


def test_reg_every_without_a_penalty_keeps_the_graph(tmp_path):
    """reg_every spaces out R1/R2; without either it changes nothing, so the step is still captured."""
    cuda = torch.device("cuda")
    assert graphs.graphable(small_config("cs231n-gan", tmp_path, reg_every=4), cuda, 1)
    assert not graphs.graphable(small_config("cs231n-gan", tmp_path, reg_every=4, r1_gamma=1.0), cuda, 1)
    assert graphs.graphable(small_config("cs231n-gan", tmp_path, reg_every=1, r1_gamma=1.0), cuda, 1)
