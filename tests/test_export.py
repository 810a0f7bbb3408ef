"""gankit export: a run's G as ONNX (run by onnxruntime) and TorchScript gives the PyTorch G's images and
records its contract, for each family of networks; what cannot be exported is one line; files are whole."""

import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
import torch

import gankit.export
from gankit.cli import main
from gankit.data import to_signed
from gankit.errors import GankitError
from gankit.export import export, load_torchscript
from gankit.evaluate import evaluate_run
from gankit.sample import load_generator, sample, sample_noise

# one run per family of networks: MLP, conv with a moving average of G, conditional MLP, MLP trained on [0, 1)
FAMILIES = {"mlp": ("cs231n-gan", {}), "conv": ("cs231n-dcgan", {"g_ema": 0.999}), "conditional": ("cgan", {}),
            "unit": ("tlx-mlp", {})}
BATCH = 5  # export traces a batch of 2
IMPORTS = ("import sys, gankit.export; print(sorted(m for m in sys.modules if m in ('gankit.train', 'gankit.steps', "
           "'gankit.semi', 'gankit.build', 'gankit.graphs', 'gankit.monitor')))")


@pytest.fixture(scope="module")
def run_of(tiny_run):
    """family -> a run folder trained for 2 steps on tiny fake images (conftest's tiny_run: once a session)."""
    def get(family, **over):
        name, over = FAMILIES.get(family, (family, over))
        return tiny_run(name, **over)
    return get


@pytest.fixture(scope="module", autouse=True)
def fresh_import():
    """A fresh interpreter importing gankit.export, started with the module so that it runs beside its tests."""
    p = subprocess.Popen([sys.executable, "-c", IMPORTS], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    yield p
    if p.poll() is None:
        p.kill()
    p.communicate()


def reference(run, ema=True):
    """-> (config, G's inputs for a batch of BATCH, the images gankit sample makes of them)."""
    G, cfg = load_generator(run, device="cpu", ema=ema)
    z = sample_noise(cfg, BATCH, generator=torch.Generator().manual_seed(1))
    inputs = (z, torch.tensor([0, 3, 9, 1, 7])) if cfg.conditional else (z,)
    with torch.no_grad():
        return cfg, inputs, to_signed(G(*inputs), cfg.real_range)


def check_contract(info, cfg):
    assert info["noise"] == cfg.noise and info["noise_dim"] == cfg.noise_dim
    assert info["noise_distribution"] == {"normal": "N(0, 1)", "uniform": "U[0, 1)", "uniform_signed": "U[-1, 1)"}[cfg.noise]
    assert info["num_classes"] == (10 if cfg.conditional else 0)
    assert info["output"]["shape"] == ["batch", *cfg.data_shape] and info["output"]["range"] == [-1.0, 1.0]
    assert [i["name"] for i in info["inputs"]] == (["z", "y"] if cfg.conditional else ["z"])
    assert info["weights"] == ("G_ema" if cfg.g_ema else "G") and info["step"] == 2


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_matches_pytorch(family, run_of, tmp_path, capfd):
    run = run_of(family)
    capfd.readouterr()
    out = tmp_path / "generator.onnx"
    assert main(["export", str(run), "--format", "onnx", "-o", str(out)]) == 0
    assert capfd.readouterr() == (f"{out}\n", "")  # the path, and none of the exporter's chatter
    cfg, inputs, want = reference(run)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {i.name: t.numpy() for i, t in zip(session.get_inputs(), inputs)})[0]
    assert got.dtype == np.float32 and got.shape == (BATCH, *cfg.data_shape)
    assert np.abs(got - want.numpy()).max() <= 1e-5
    assert got.min() >= -1 and got.max() <= 1

    meta = session.get_modelmeta().custom_metadata_map
    check_contract(json.loads(meta["gankit"]), cfg)
    assert meta["noise_dim"] == str(cfg.noise_dim) and meta["noise"] == cfg.noise
    assert json.loads(meta["output_range"]) == [-1, 1] and json.loads(meta["output_shape"])[1:] == cfg.data_shape
    assert [i.shape[0] for i in session.get_inputs()] == ["batch"] * len(inputs)  # a dynamic batch


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torchscript_round_trip(family, run_of, tmp_path):
    run = run_of(family)
    out = export(run, tmp_path / "g.pt", fmt="torchscript")
    module, info = load_torchscript(out)
    cfg, inputs, want = reference(run)
    with torch.no_grad():
        got = module(*inputs)
    assert got.dtype == torch.float32 and (got - want).abs().max() <= 1e-5
    check_contract(info, cfg)
    assert not module.training


@pytest.mark.parametrize("verb", ["sample", "eval", "export", "demo"])
def test_an_exported_file_given_as_the_run_is_named_in_one_line(verb, run_of, tmp_path, capfd):
    """After `gankit export RUN -o g.pt`, `gankit sample g.pt` is a natural slip: one line, no torch warning."""
    out = export(run_of("mlp"), tmp_path / "g.pt", fmt="torchscript")
    capfd.readouterr()
    more = {"sample": ["-o", str(tmp_path / "x.png")], "eval": [], "export": ["-o", str(tmp_path / "x.onnx")],
            "demo": ["-o", str(tmp_path / "site")]}[verb]
    assert main([verb, str(out), *more]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and "g.pt: a TorchScript file (as gankit export writes), not a checkpoint" in err, err


def test_no_ema_exports_the_raw_G(run_of, tmp_path):
    run = run_of("conv")  # kept a moving average of G
    module, info = load_torchscript(export(run, tmp_path / "raw.pt", fmt="torchscript", ema=False))
    cfg, inputs, raw = reference(run, ema=False)
    averaged = reference(run)[2]
    with torch.no_grad():
        got = module(*inputs)
    assert info["weights"] == "G" and (got - raw).abs().max() <= 1e-5 and not torch.allclose(raw, averaged)


def test_toy_points_export(run_of, tmp_path):
    run = run_of("toy", dataset="toy:ring8", batch_size=64)
    module, info = load_torchscript(export(run, tmp_path / "toy.pt", fmt="torchscript"))
    _, (z,), want = reference(run)
    assert torch.equal(module(z), want)
    assert info["output"]["shape"] == ["batch", 2] and info["output"]["range"] is None


def test_cli_refusals_are_one_line(run_of, tmp_path, capsys):
    run = run_of("mlp")
    with pytest.raises(SystemExit) as e:
        main(["export", "--help"])
    assert e.value.code == 0 and "usage: gankit export" in capsys.readouterr().out

    with pytest.raises(SystemExit) as e:
        main(["export", str(run), "--format", "tflite"])
    assert e.value.code == 2 and "tflite" in capsys.readouterr().err

    missing = tmp_path / "nope" / "g.onnx"
    assert main(["export", str(run), "-o", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(missing) in err and not missing.parent.exists()

    with pytest.raises(GankitError, match="--format tflite"):
        export(run, tmp_path / "g.x", fmt="tflite")
    assert main(["export", str(run), "-o", str(tmp_path)]) == 2 and "is a folder" in capsys.readouterr().err


def test_an_output_that_would_replace_the_runs_own_files_is_refused(run_of, tmp_path):
    """-o RUN/checkpoint.pt would put the export (or a report) where the training state was."""
    import hashlib
    import shutil

    from gankit.report import build_report

    run = run_of("mlp")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()}
    for name in ("checkpoint.pt", "config.json"):
        with pytest.raises(GankitError, match=rf"-o .*{name}: would replace the run's own {name} .*nothing written"):
            export(run, run / name, fmt="torchscript")
    with pytest.raises(GankitError, match=r"would replace the run's own checkpoint.pt"):
        build_report(run, run / "checkpoint.pt")
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.iterdir() if p.is_file()} == before
    mine = shutil.copy(run / "checkpoint.pt", tmp_path / "g.pt")  # a checkpoint file given as the source
    with pytest.raises(GankitError, match="would replace the run's own g.pt .the checkpoint read"):
        export(mine, mine)
    assert load_torchscript(export(mine, tmp_path / "h.pt"))[1]["step"] == 2  # any other name is fine


def test_onnx_on_a_torch_too_old_for_its_exporter_says_what_is_needed(run_of, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(GankitError, match=r"ONNX export needs torch >= 2.6 .*this is torch 2.5.1\+cpu: upgrade torch, "
                                          r"or export --format torchscript"):
        export(run_of("mlp"), tmp_path / "g.onnx")
    assert list(tmp_path.iterdir()) == []


def test_baseline_run_has_no_generator(run_of, tmp_path):
    run = run_of("improved-gan", baseline=True, labels_per_class=2, steps=1, checkpoint_every=1, init_batch=64)
    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "g.pt")]) == 2
    with pytest.raises(GankitError, match="baseline"):
        export(run, tmp_path / "g.pt", fmt="torchscript")
    # nor do sample and eval draw from its untrained G; its test accuracy is still scored
    with pytest.raises(GankitError, match="trains no generator; nothing to sample"):
        sample(run, out=tmp_path / "g.png")
    with pytest.raises(GankitError, match="trains no generator; nothing to score with fid"):
        evaluate_run(run, metrics="fid,accuracy", num_samples=10)
    assert list(tmp_path.iterdir()) == []
    assert 0 <= evaluate_run(run, metrics="accuracy")["test_acc"] <= 1


def test_the_format_follows_the_file_name_and_a_mismatch_is_refused(run_of, tmp_path):
    run = run_of("mlp")
    assert load_torchscript(export(run, tmp_path / "g.pt"))[1]["recipe"] == "cs231n-gan"  # .pt: TorchScript
    with pytest.raises(GankitError, match=r"-o .*g.onnx: a .onnx file is read as onnx, but --format is torchscript; "
                                          r"give a name ending in .pt"):
        export(run, tmp_path / "g.onnx", fmt="torchscript")
    with pytest.raises(GankitError, match="a .pt file is read as torchscript, but --format is onnx"):
        export(run, tmp_path / "h.pt", fmt="onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.pt"]


def test_existing_file_is_replaced_whole(run_of, tmp_path, monkeypatch):
    run = run_of("mlp")
    out = tmp_path / "g.pt"
    out.write_bytes(b"the previous export")

    def half_save(module, path, _extra_files=None):
        with open(path, "wb") as f:
            f.write(b"PK half a zip")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(gankit.export.torch.jit, "save", half_save)
    with pytest.raises(GankitError, match="previous file, if any, is kept"):
        export(run, out, fmt="torchscript")
    assert out.read_bytes() == b"the previous export" and [p.name for p in tmp_path.iterdir()] == ["g.pt"]
    monkeypatch.undo()

    export(run, out, fmt="torchscript")
    assert load_torchscript(out)[1]["recipe"] == "cs231n-gan"


def test_export_imports_no_trainer_code(fresh_import):
    out, err = fresh_import.communicate(timeout=300)
    assert fresh_import.returncode == 0, err
    assert out.strip() == "[]"
