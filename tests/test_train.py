"""Properties of the trainer: resume equals an uninterrupted run, divergence stops cleanly,
checkpoints are atomic, and a small GAN learns a 2-D mixture."""

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import gankit.distributed
import gankit.losses
import gankit.train
from gankit import data as datasets
from gankit.config import Config
from gankit.errors import GankitError
from gankit.metrics import mode_coverage
from gankit.recipes import RECIPES
from gankit.run import RunDir, load_checkpoint
from gankit.sample import load_generator
from gankit.monitor import TrainingDiverged
from gankit.cli import main
from gankit.train import resume, train

from conftest import fake_images, lock_held
from test_recipes import small_config


def same_state(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_state(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def uninterrupted_and_resumed(name, tmp_path, steps, **over):
    """-> the checkpoints of a run of `steps` steps, and of one stopped half-way and resumed."""
    full = small_config(name, tmp_path / "full", steps=steps, **over)
    train(full, progress=False)
    part = small_config(name, tmp_path / "part", steps=steps // 2, **over)
    train(part, progress=False)
    resume(part.out, steps=steps, progress=False)
    return load_checkpoint(full.out), load_checkpoint(part.out)


@pytest.mark.parametrize("name", ["mlp-gan", "tlx-mlp", "cs231n-dcgan", "wgan", "wgan-gp"])
def test_resume_equals_uninterrupted(name, tmp_path, tiny_data):
    # 256 fake images / batch 16 = 16 D batches per epoch: 6 steps cross an epoch boundary at n_critic 5
    a, b = uninterrupted_and_resumed(name, tmp_path, 6)
    assert b["step"] == 6
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert same_state(a["rng"]["torch"], b["rng"]["torch"])
    # stats were not duplicated by the resume
    steps = [[r["step"] for r in RunDir(tmp_path / run / name).read_stats()] for run in ("part", "full")]
    assert steps[0] == steps[1]


def test_resume_equals_uninterrupted_when_the_stopping_step_was_evaluated(tmp_path, tiny_data, monkeypatch):
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))  # the fake test images' statistics go here
    # step 3 is evaluated and checkpointed: the checkpoint must hold the state after the evaluation,
    # or the resumed run parts from the uninterrupted one wherever an evaluation moves any state
    a, b = uninterrupted_and_resumed("wgan-gp", tmp_path, 6, eval_every=3, eval_samples=20, eval_metrics=["fid"])
    full = RunDir(tmp_path / "full" / "wgan-gp")
    assert len(full.read_stats(full.metrics)) == 2
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert same_state(a["rng"]["torch"], b["rng"]["torch"])


def test_evaluating_during_training_leaves_the_run_as_it_was(tmp_path, tiny_data, monkeypatch):
    # --eval-every measures the run; it must not steer it: the same weights and random state after
    # 6 steps with evaluations at steps 3 and 6 as without any
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))  # the fake test images' statistics go here
    plain = small_config("wgan-gp", tmp_path / "plain", steps=6)
    train(plain, progress=False)
    watched = small_config("wgan-gp", tmp_path / "watched", steps=6, eval_every=3, eval_samples=20, eval_metrics=["fid"])
    train(watched, progress=False)
    watched_run = RunDir(watched.out)
    assert len(watched_run.read_stats(watched_run.metrics)) == 2
    a, b = load_checkpoint(plain.out), load_checkpoint(watched.out)
    for key in ("G", "D", "opt_g", "opt_d"):
        assert same_state(a[key], b[key]), key
    assert same_state(a["rng"], b["rng"])


def test_a_resume_keeps_the_best_checkpoint_among_fids_of_its_own_sample_count(tmp_path, tiny_data, monkeypatch):
    """FIDs of 20 and of 30 samples do not compare (FID's bias depends on the count): after a resume
    with another eval_samples, the best is chosen among the new count's."""
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))
    cfg = small_config("wgan-gp", tmp_path, steps=4, eval_every=2, eval_samples=20, eval_metrics=["fid"])
    train(cfg, progress=False)
    run = RunDir(cfg.out)
    rows = run.read_stats(run.metrics)
    run.metrics.write_text("".join(json.dumps({**r, "fid": 0.0}) + "\n" for r in rows))  # unbeatable at 20 samples
    resume(cfg.out, steps=6, eval_samples=30, progress=False)
    assert [(r["step"], r["num_samples"]) for r in run.read_stats(run.metrics)] == [(2, 20), (4, 20), (6, 30)]
    assert load_checkpoint(run.best)["step"] == 6


def test_a_resume_removes_a_best_checkpoint_of_steps_it_redoes(tmp_path, tiny_data, capsys):
    """Killed after a best checkpoint at step 4 but before the checkpoint there: the steps past 2 are
    redone, so the best one from them goes (its metrics are cut back too)."""
    cfg = small_config("cs231n-gan", tmp_path, steps=2)
    train(cfg, progress=False)
    run = RunDir(cfg.out)
    shutil.copy(run.checkpoint, tmp_path / "at-2.pt")
    resume(cfg.out, steps=4, progress=False)
    shutil.copy(run.checkpoint, run.best)  # of step 4
    shutil.copy(tmp_path / "at-2.pt", run.checkpoint)  # the last checkpoint the killed run wrote
    capsys.readouterr()
    resume(cfg.out, steps=3, progress=False)
    assert not run.best.exists()
    assert "checkpoint-best.pt: removed; it was of step 4, past the checkpoint's 2" in capsys.readouterr().err
    shutil.copy(run.checkpoint, run.best)  # of step 3: an earlier step's best stays
    resume(cfg.out, steps=5, progress=False)
    assert load_checkpoint(run.best)["step"] == 3


def test_a_resume_that_moves_an_lr_decay_schedule_says_so(tmp_path, tiny_data, capsys):
    """lr_decay falls over the budget's last part: extending a run whose decay has begun raises the
    rates again; extending one whose decay lies ahead under both budgets changes nothing."""
    from gankit.build import lr_scale
    from gankit.train import lr_budget_note

    cfg = small_config("cs231n-gan", tmp_path, steps=4, lr_decay=0.5)
    train(cfg, progress=False)
    capsys.readouterr()
    resume(cfg.out, steps=8, progress=False)
    err = capsys.readouterr().err
    assert "at step 4 the learning rates were 0x the recipe's (of 4 steps) and are 1x now (of 8), so they jump up" in err
    assert lr_scale(4, 4, 0.5) == 0 and lr_scale(4, 8, 0.5) == 1
    early = Config(steps=100, lr_decay=0.25)
    assert lr_budget_note(early, dataclasses.replace(early, steps=200), 50, 200, 10) is None


def test_resume_refuses_to_change_the_recipe(tmp_path, tiny_data, monkeypatch):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    with pytest.raises(GankitError, match="cannot change lr_g"):
        resume(cfg.out, lr_g=1.0, progress=False)
    with pytest.raises(GankitError, match="already at step 2"):
        resume(cfg.out, steps=2, progress=False)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun job of two resuming a run of one: refused before joining
    monkeypatch.setattr(gankit.distributed, "init", lambda *a: pytest.fail("joined the job"))
    with pytest.raises(GankitError, match="the run used 1 process\\(es\\), this job has 2; resume with the same number"):
        resume(cfg.out, steps=4, progress=False)


def test_torchrun_device_is_checked_before_the_job_is_joined(tmp_path, tiny_data, monkeypatch):
    """Two processes on a machine with one GPU: refused in one line before the first collective
    (which NCCL would run on one GPU for both and fail less clearly). With a GPU each, process 1
    joins the job with its own GPU current."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for k, v in {"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(gankit.distributed, "init", lambda *a: pytest.fail("joined the job"))
    for device, says in (("cuda", "2 processes on this machine but 1 GPU"), ("cuda:0", "each process takes its own GPU")):
        out = tmp_path / device.replace(":", "-")
        with pytest.raises(GankitError, match=says):
            train(small_config("cs231n-gan", out, device=device), progress=False)
        assert not out.exists()

    class Joined(Exception):
        pass

    current = []  # the GPU made current, as a stand-in for torch.cuda.device records it

    @contextlib.contextmanager
    def make_current(d):
        current.append(d)
        try:
            yield
        finally:
            current.pop()

    def init(kind):  # the job would be joined here: record on which GPU, and stop
        raise Joined(kind, current[-1] if current else None)

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # two GPUs; this is process 1
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "device", make_current)
    monkeypatch.setattr(gankit.distributed, "init", init)
    for device in ("cuda", "auto"):
        with pytest.raises(Joined) as joined:
            train(small_config("cs231n-gan", tmp_path / "ok", device=device), progress=False)
        assert joined.value.args == ("cuda", torch.device("cuda:1")) and current == []  # current before joining, then restored
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(Joined) as joined:
        train(small_config("cs231n-gan", tmp_path / "ok", device="auto"), progress=False)
    assert joined.value.args == ("cpu", None)


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, tiny_data, monkeypatch):
    calls = {"n": 0}
    real = gankit.losses.nonsaturating

    def poisoned(d_real, d_fake):  # called by the D and the G step: NaN from step 23 on
        calls["n"] += 1
        d, g = real(d_real, d_fake)
        return (d * float("nan"), g) if calls["n"] > 44 else (d, g)

    monkeypatch.setitem(gankit.losses.LOSSES, "nonsaturating", poisoned)
    cfg = small_config("cs231n-gan", tmp_path, steps=40, log_every=5, checkpoint_every=10)
    with pytest.raises(TrainingDiverged, match=r"d_loss became nan by step 25.*step 20"):
        train(cfg, progress=False)
    state = load_checkpoint(cfg.out)
    assert state["step"] == 20
    assert all(torch.isfinite(v).all() for v in state["G"].values())
    assert max(r["step"] for r in RunDir(cfg.out).read_stats()) == 20


def test_checkpoint_write_is_atomic(tmp_path, tiny_data, monkeypatch):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    before = (tmp_path / "cs231n-gan" / "checkpoint.pt").read_bytes()

    def broken_save(obj, f, *a, **k):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(GankitError, match=r"checkpoint.pt: cannot write \(disk full\)"):
        RunDir(cfg.out).save_checkpoint({"format": 1})
    assert (tmp_path / "cs231n-gan" / "checkpoint.pt").read_bytes() == before
    assert [p.name for p in (tmp_path / "cs231n-gan").iterdir() if "tmp" in p.name] == []


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "checkpoint.pt"
    p.write_bytes(b"not a zip")
    with pytest.raises(GankitError, match="not a readable gankit checkpoint"):
        load_checkpoint(p)
    with pytest.raises(GankitError, match="no such run folder"):
        load_checkpoint(tmp_path / "nope")
    with pytest.raises(GankitError, match="no checkpoint.pt"):
        load_checkpoint(tmp_path.parent)


def test_run_folder_is_never_clobbered(tmp_path, tiny_data):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    assert (tmp_path / "cs231n-gan" / ".gankit-run.json").exists()
    with pytest.raises(GankitError, match="run folder exists"):
        train(cfg, progress=False)
    train(cfg, overwrite=True, progress=False)  # a folder gankit made, holding only what it wrote

    def untouched(folder, files):
        return all((folder / name).read_text() == text for name, text in files.items())

    # a project that happens to hold a config.json: refused, naming what gankit did not write
    project = tmp_path / "myproject"
    files = {"config.json": "{}", "main.py": "print(1)", "src/lib.py": "x = 1"}
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    cfg.out = str(project)
    with pytest.raises(GankitError, match=r"holds files gankit did not write \(main.py, src\)"):
        train(cfg, overwrite=True, progress=False)
    assert untouched(project, files)
    # a gankit run folder with a file of the user's in it
    run = tmp_path / "cs231n-gan"
    (run / "sevens.png").write_text("mine")
    cfg.out = str(run)
    with pytest.raises(GankitError, match=r"did not write \(sevens.png\)"):
        train(cfg, overwrite=True, progress=False)
    assert (run / "sevens.png").read_text() == "mine" and (run / "checkpoint.pt").exists()
    # only gankit's names, but no manifest and a config.json that is not gankit's
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"learning_rate": 3}')
    cfg.out = str(other)
    with pytest.raises(GankitError, match="not a gankit run folder"):
        train(cfg, overwrite=True, progress=False)
    assert (other / "config.json").read_text() == '{"learning_rate": 3}'
    # a file of the user's inside a folder gankit writes (samples/): refused, not deleted with the folder
    (run / "sevens.png").unlink()
    (run / "samples" / "notes.txt").write_text("mine")
    cfg.out = str(run)
    with pytest.raises(GankitError, match=r"did not write \(samples/notes.txt\)"):
        train(cfg, overwrite=True, progress=False)
    assert (run / "samples" / "notes.txt").read_text() == "mine" and (run / "samples" / "step-000002.png").exists()


def test_run_folder_from_before_the_manifest_can_be_overwritten(tmp_path, tiny_data):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    (tmp_path / "cs231n-gan" / ".gankit-run.json").unlink()  # as an older gankit left it
    train(cfg, overwrite=True, progress=False)
    assert (tmp_path / "cs231n-gan" / ".gankit-run.json").exists()


def test_toy_gan_covers_ring8_modes(tmp_path):
    # behaviour only: how long it takes is measured by benchmarks, not asserted by a test
    cfg = RECIPES["toy"].config(out=str(tmp_path / "toy"), seed=0)
    train(cfg, progress=False)
    G, cfg = load_generator(cfg.out, device="cpu")
    with torch.no_grad():
        x = G(torch.randn(2000, cfg.noise_dim))
    cov = mode_coverage(x, datasets.toy_centers("toy:ring8"), datasets.TOY_STD["toy:ring8"])
    assert cov["modes"] >= 7, cov
    assert cov["high_quality"] > 0.5, cov


def test_mode_coverage_counts():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = torch.cat([torch.zeros(50, 2), torch.full((50, 2), 5.0)])  # one mode hit, half the points off-mode
    cov = mode_coverage(pts, centers, std=0.1)
    assert cov == {"modes": 1, "of": 3, "high_quality": 0.5}


def test_precision_auto_is_resolved_and_recorded(tmp_path, tiny_data, capsys):
    from gankit.hardware import resolve_precision

    assert RECIPES["cs231n-dcgan"].config().precision == "auto"
    assert RECIPES["toy"].config().precision == "fp32"  # needs float32 for its accuracy, on any hardware
    cfg = small_config("cs231n-dcgan", tmp_path / "auto")
    cfg.precision = "auto"
    train(cfg, progress=True)
    expected = resolve_precision("auto", "cpu")[0]
    assert load_checkpoint(cfg.out)["config"].precision == expected  # so a resume keeps it
    assert "precision: cpu " in capsys.readouterr().err  # the banner says what was chosen and why


def test_a_small_image_set_without_diffaugment_gets_a_note(tmp_path, tiny_data, capsys):
    from gankit.train import SMALL_DATA, resolve_diffaugment

    plain = small_config("cs231n-dcgan", tmp_path / "plain")
    train(plain, progress=False)  # tiny_data: 256 images
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gankit: note: ")]
    assert len(notes) == 1 and "training on 256 images:" in notes[0] and "diffaugment=" in notes[0], notes
    resume(plain.out, steps=4, progress=False)
    assert "gankit: note: " not in capsys.readouterr().err  # said when the run starts, not on every resume
    train(small_config("cs231n-dcgan", tmp_path / "aug", diffaugment="translation"), progress=False)
    assert "gankit: note: " not in capsys.readouterr().err  # already augmented: nothing to say
    many = fake_images(SMALL_DATA, 1, 28)
    few = dataclasses.replace(many, x=many.x[:SMALL_DATA - 1])
    assert resolve_diffaugment(plain, many) == ("", None) and resolve_diffaugment(plain, few)[1] is not None
    _, limited = resolve_diffaugment(dataclasses.replace(plain, limit=2000), dataclasses.replace(many, x=many.x[:2000]))
    assert limited.startswith("training on 2000 images (--limit 2000):"), limited  # not all of the dataset
    assert resolve_diffaugment(RECIPES["improved-gan"].config(), few) == ("", None)  # trains a classifier on its labels
    assert resolve_diffaugment(RECIPES["toy"].config(), dataclasses.replace(few, kind="points")) == ("", None)
    assert resolve_diffaugment(dataclasses.replace(plain, diffaugment="none"), few) == ("", None)  # asked for none
    for name in ("wgan", "wgan-gp"):  # the Wasserstein loss, clipped or penalised: not suggested
        _, note = resolve_diffaugment(RECIPES[name].config(), few)
        assert "did not help wgan or wgan-gp" in note and "diffaugment=color" not in note, note
        assert "--set diffaugment=none" in note
    assert "diffaugment=color" in resolve_diffaugment(dataclasses.replace(plain, clip=0.01), few)[1]  # not measured
    unmeasured = dataclasses.replace(RECIPES["wgan"].config(), clip=0.0)  # Wasserstein, neither clipped nor penalised
    assert "diffaugment=color" in resolve_diffaugment(unmeasured, few)[1]


def test_diffaugment_auto_is_on_below_ten_thousand_images_and_recorded(tmp_path, tiny_data, capsys):
    from gankit.train import AUTO_AUGMENT, SMALL_DATA, resolve_diffaugment

    assert RECIPES["dcgan64"].config().diffaugment == "auto"
    auto = small_config("cs231n-dcgan", tmp_path / "auto", diffaugment="auto")
    train(auto, progress=False)  # tiny_data: 256 images
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gankit: note: ")]
    assert len(notes) == 1 and "DiffAugment is on" in notes[0] and "diffaugment=none" in notes[0], notes
    assert load_checkpoint(auto.out)["config"].diffaugment == AUTO_AUGMENT  # so a resume keeps it
    assert f'"diffaugment": "{AUTO_AUGMENT}"' in (tmp_path / "auto" / "cs231n-dcgan" / "config.json").read_text()
    explicit = small_config("cs231n-dcgan", tmp_path / "explicit", diffaugment=AUTO_AUGMENT)
    train(explicit, progress=False)
    a, b = (load_checkpoint(c.out)["G"] for c in (auto, explicit))
    assert all(torch.equal(a[k], b[k]) for k in a)  # auto is the explicit policy, draw for draw
    off = small_config("cs231n-dcgan", tmp_path / "off", diffaugment="none")
    train(off, progress=False)
    assert "gankit: note: " not in capsys.readouterr().err and load_checkpoint(off.out)["config"].diffaugment == ""
    assert not all(torch.equal(a[k], v) for k, v in load_checkpoint(off.out)["G"].items())
    resume(auto.out, steps=4, progress=False)
    assert "gankit: note: " not in capsys.readouterr().err  # said once, as the run started
    assert load_checkpoint(auto.out)["config"].diffaugment == AUTO_AUGMENT
    many = fake_images(SMALL_DATA, 1, 28)
    assert resolve_diffaugment(auto, many) == ("", None)  # MNIST-sized sets train as the tutorials do
    few = dataclasses.replace(many, x=many.x[:100])
    assert resolve_diffaugment(dataclasses.replace(auto, labels_per_class=10), few) == ("", None)  # a classifier


def test_bf16_and_fp32_by_flag_differ_only_in_arithmetic(tmp_path, tiny_data):
    runs = {}
    for precision in ("bf16", "fp32"):
        cfg = small_config("cs231n-dcgan", tmp_path / precision, precision=precision)
        train(cfg, progress=False)
        runs[precision] = load_checkpoint(cfg.out)["G"]
        assert load_checkpoint(cfg.out)["config"].precision == precision
    assert all(torch.isfinite(v.float()).all() for v in runs["bf16"].values())
    # same seed, data and noise: only the arithmetic differs, so the weights do (slightly)
    diff = max((runs["bf16"][k].float() - runs["fp32"][k].float()).abs().max().item() for k in runs["fp32"])
    assert 0 < diff < 0.1


def test_batch_shards_partition_each_global_batch():
    from gankit.distributed import World
    from gankit.data import BatchIndices

    n, bs, world = 1000, 16, 3
    shards = [BatchIndices(n, bs, seed=5, device=torch.device("cpu"), world=World(r, world)) for r in range(world)]
    single = BatchIndices(n, bs * world, seed=5, device=torch.device("cpu"))
    for b in (0, 1, 20, 21, 22):  # 20 global batches per epoch: 21 and 22 are in epoch 1
        parts = [s(b) for s in shards]
        assert all(len(p) == bs for p in parts)
        assert torch.equal(torch.cat(parts), single(b))  # disjoint shards of the same global batch


def test_tensorboard_logs_scalars_and_grids(tmp_path, tiny_data):
    pytest.importorskip("tensorboard", reason="tensorboard is an optional extra (pip install tensorboard)")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = small_config("cs231n-gan", tmp_path, tensorboard=True, steps=4, log_every=2, sample_every=2,
                       checkpoint_every=4)
    train(cfg, progress=False)
    events = EventAccumulator(str(tmp_path / "cs231n-gan" / "tensorboard")).Reload()
    assert [e.step for e in events.Scalars("train/d_loss")] == [2, 4]
    assert [e.step for e in events.Images("samples")] == [0, 2, 4]


def test_tensorboard_missing_is_a_clear_error(tmp_path, tiny_data, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(GankitError, match="pip install tensorboard"):
        train(small_config("cs231n-gan", tmp_path, tensorboard=True), progress=False)
    assert not (tmp_path / "cs231n-gan").exists()  # refused before the run folder was made


def test_a_second_process_on_a_run_folder_is_refused(tmp_path, tiny_data):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    run = RunDir(cfg.out)
    with lock_held(run.path / ".gankit-lock"):
        stats = run.stats.read_text()
        with pytest.raises(GankitError, match="another gankit process .* is training in this run folder"):
            resume(cfg.out, steps=4, progress=False)
        with pytest.raises(GankitError, match="another gankit process"):
            train(cfg, overwrite=True, progress=False)
        assert run.stats.read_text() == stats  # nothing written
    resume(cfg.out, steps=4, progress=False)  # the lock died with its process
    assert RunDir(cfg.out).read_stats()[-1]["step"] == 4


def test_resume_refuses_a_foreign_checkpoint_and_names_edits(tmp_path, tiny_data, capsys):
    import json
    import shutil

    a = small_config("cs231n-gan", tmp_path / "a")
    b = small_config("cs231n-lsgan", tmp_path / "b")
    train(a, progress=False)
    train(b, progress=False)
    stats = RunDir(a.out).stats.read_text()
    shutil.copy(RunDir(b.out).checkpoint, RunDir(a.out).checkpoint)  # another run's checkpoint dropped in
    with pytest.raises(GankitError, match=r"checkpoint is a cs231n-lsgan run on mnist but .*config.json says "
                                          r"cs231n-gan on mnist"):
        resume(a.out, steps=4, progress=False)
    assert RunDir(a.out).stats.read_text() == stats  # nothing rewritten
    # an edit of config.json: named, and the checkpoint's config wins
    config = json.loads(RunDir(b.out).config.read_text())
    RunDir(b.out).config.write_text(json.dumps({**config, "lr_g": 0.5}))
    capsys.readouterr()
    resume(b.out, steps=4, progress=False)
    err = capsys.readouterr().err
    assert "differs from the checkpoint's config in lr_g (0.5 in config.json" in err and "checkpoint's config wins" in err
    assert json.loads(RunDir(b.out).config.read_text())["lr_g"] == config["lr_g"]
    RunDir(b.out).config.write_text("[1, 2]")  # a config.json holding a list
    with pytest.raises(GankitError, match="not a readable config"):
        resume(b.out, steps=5, progress=False)


def test_checkpoints_whose_weights_do_not_fit_are_one_line(tmp_path, tiny_data):
    from gankit.sample import sample

    a = small_config("cs231n-gan", tmp_path / "a")
    b = small_config("mlp-gan", tmp_path / "b")
    train(a, progress=False)
    train(b, progress=False)
    state = torch.load(RunDir(a.out).checkpoint, weights_only=True)
    state["G"] = torch.load(RunDir(b.out).checkpoint, weights_only=True)["G"]  # another recipe's G
    torch.save(state, tmp_path / "mixed.pt")
    with pytest.raises(GankitError, match=r"mixed.pt: its G does not fit the networks of recipe cs231n-gan "
                                          r"\((size mismatch|Missing|Unexpected)"):
        sample(tmp_path / "mixed.pt", n=4, out=tmp_path / "x.png")
    del state["G"]
    torch.save(state, tmp_path / "no-g.pt")
    with pytest.raises(GankitError, match="no-g.pt: the checkpoint has no G"):
        sample(tmp_path / "no-g.pt", n=4, out=tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path, tiny_data, monkeypatch):
    cfg = small_config("cs231n-gan", tmp_path, steps=4, checkpoint_every=2)
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the checkpoint of step 4
            real_save(obj, f, *args, **kwargs)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 1 vs 0")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(GankitError, match=r"checkpoint.pt: cannot write \(.*no space left on device.*\); the previous"):
        train(cfg, progress=False)
    assert load_checkpoint(cfg.out)["step"] == 2  # the last good one, intact
    assert not [p.name for p in (tmp_path / "cs231n-gan").iterdir() if ".tmp" in p.name]


def test_a_folder_whose_run_never_checkpointed_says_overwrite_and_resume_takes_no_file(tmp_path, tiny_data):
    cfg = small_config("cs231n-gan", tmp_path)
    RunDir(cfg.out).create(cfg)  # what a run that failed before its first checkpoint leaves
    with pytest.raises(GankitError, match=r"stopped before saving a checkpoint, so it cannot be resumed; --overwrite"):
        train(cfg, progress=False)
    train(cfg, overwrite=True, progress=False)
    with pytest.raises(GankitError, match=r"--resume .*checkpoint.pt: a file; --resume takes a run folder"):
        resume(tmp_path / "cs231n-gan" / "checkpoint.pt", steps=4)
    assert load_checkpoint(cfg.out)["step"] == 2  # nothing trained on


def test_eval_samples_beyond_the_test_split_are_refused_before_any_run_folder(tmp_path, tiny_data):
    cfg = small_config("cs231n-gan", tmp_path, eval_every=1, eval_samples=300, eval_metrics=["fid"],
                       data_dir=str(tmp_path / "idx"))  # IDX files of its own (tiny_data's 256 images a split)
    with pytest.raises(GankitError, match=r"eval_samples=300: --eval-every draws that many images of the test split, and mnist's has 256"):
        train(cfg, progress=False)
    assert not (tmp_path / "cs231n-gan").exists()


def test_a_relative_data_dir_is_recorded_whole(tmp_path, tiny_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(small_config("cs231n-gan", tmp_path, data_dir="idx"), progress=False)
    assert load_checkpoint(tmp_path / "cs231n-gan")["config"].data_dir == str(tmp_path.resolve() / "idx")  # as cwd names it


def signal_at(monkeypatch, step, *signals):
    """Send this process `signals` while the loop's step `step` (1-based) runs, as a Ctrl-C or kill would."""
    make_step = gankit.train.make_step

    def patched(state):
        step_fn = make_step(state)

        def run(i):
            if i + 1 == step:
                for sig in signals:
                    os.kill(os.getpid(), sig)
            return step_fn(i)
        return run
    monkeypatch.setattr(gankit.train, "make_step", patched)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_at_a_step_with_a_checkpoint_and_the_run_goes_on(sig, tmp_path, tiny_data, monkeypatch):
    cfg = small_config("cs231n-gan", tmp_path, steps=6, checkpoint_every=100, log_every=100)
    signal_at(monkeypatch, 3, sig)
    with pytest.raises(GankitError, match=r"^interrupted at step 3; checkpoint saved. Continue with: gankit train "
                                          r"--resume .*cs231n-gan$"):
        train(cfg, progress=False)
    assert load_checkpoint(cfg.out)["step"] == 3
    monkeypatch.undo()
    assert resume(cfg.out, progress=False)["steps"] == 6


def test_a_signal_during_the_last_step_still_finishes_the_run(tmp_path, tiny_data, monkeypatch):
    """The stop is asked for in the last step: the run is complete, not 'interrupted' (a resume would be refused)."""
    cfg = small_config("cs231n-gan", tmp_path, steps=3)
    signal_at(monkeypatch, 3, signal.SIGTERM)
    assert train(cfg, progress=False)["steps"] == 3


def test_a_second_ctrl_c_interrupts_at_once_and_a_second_sigterm_does_not(tmp_path, tiny_data, monkeypatch):
    # Slurm and timeout may send SIGTERM twice at once: that must not cut the checkpoint short
    cfg = small_config("cs231n-gan", tmp_path, steps=6, checkpoint_every=100)
    signal_at(monkeypatch, 2, signal.SIGTERM, signal.SIGTERM)
    with pytest.raises(GankitError, match="interrupted at step 2; checkpoint saved"):
        train(cfg, progress=False)
    cfg = small_config("cs231n-gan", tmp_path / "twice", steps=6, checkpoint_every=100)
    signal_at(monkeypatch, 2, signal.SIGINT, signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, progress=False)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handlers are put back


def test_resume_may_change_precision_and_data_dir_but_not_overwrite(tmp_path, tiny_data, capsys):
    cfg = small_config("cs231n-gan", tmp_path, steps=2, precision="bf16")
    train(cfg, progress=False)
    cfg2, _ = gankit.train.resumed_config(cfg.out, steps=3, precision="fp32", data_dir=str(tmp_path))
    assert (cfg2.precision, cfg2.data_dir) == ("fp32", str(tmp_path))
    with pytest.raises(GankitError, match="cannot change loss"):
        gankit.train.resumed_config(cfg.out, steps=3, loss="hinge")
    assert main(["train", "--resume", cfg.out, "--steps", "3", "--overwrite"]) == 2
    assert "--overwrite with --resume" in capsys.readouterr().err
    assert load_checkpoint(cfg.out)["step"] == 2


def test_a_run_folder_that_cannot_be_written_whole_is_one_line(tmp_path):
    """A disk that fills while the folder is made (here: a 1 KiB file-size limit): no traceback, and
    config.json is whole or absent, never cut short."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))

    run = tmp_path / "r"
    p = subprocess.run([sys.executable, "-m", "gankit", "train", "toy", "--steps", "1", "--out", str(run),
                        "--no-progress"], capture_output=True, text=True, preexec_fn=limit, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "cannot write (File too large)" in p.stderr
    if (run / "config.json").exists():
        json.loads((run / "config.json").read_text())


def test_images_per_s_leaves_out_work_between_steps_which_time_s_counts(tmp_path):
    """A stats line's images/s measures the steps alone: a grid, evaluation or checkpoint (here a
    0.3 s pause) after the last line is not in it; time_s, the run's clock, includes it."""
    import time

    from gankit.monitor import Monitor

    run = RunDir(tmp_path)
    log = Monitor(run, gankit.distributed.World(), 0, 10, images_per_step=100, elapsed=0.0, progress=False)
    for _ in range(2):
        log.add({"d_loss": torch.tensor(1.0)})
    with log.paused():
        time.sleep(0.3)
    log.flush(2)
    row = run.read_stats()[-1]
    assert row["images_per_s"] > 10 * 200 / 0.3 and row["time_s"] >= 0.3, row


def test_the_loop_leaves_checkpoints_out_of_images_per_s(tmp_path, tiny_data, monkeypatch):
    """Each checkpoint here takes 0.5 s more; the stats lines after them still measure the steps alone."""
    import time

    save = gankit.train.checkpoint

    def slow(s, at, best=False):
        time.sleep(0.5)
        save(s, at, best)

    monkeypatch.setattr(gankit.train, "checkpoint", slow)
    train(small_config("toy", tmp_path, steps=6, log_every=2, checkpoint_every=2, sample_every=100), progress=False)
    rows = RunDir(tmp_path / "toy").read_stats()
    assert [r["step"] for r in rows] == [2, 4, 6] and rows[-1]["time_s"] >= 1.0  # the run's clock counts them
    assert min(r["images_per_s"] for r in rows) > 3 * 2 * 16 / 0.5, rows  # 2 steps of 16 points a line


def test_the_loop_pauses_only_where_a_grid_or_checkpoint_is_due(tmp_path, tiny_data, monkeypatch):
    """On a GPU a pause waits for the queued steps (it times the work between them), so it is
    entered where a grid, evaluation or checkpoint is due, never on every step."""
    from gankit.monitor import Monitor

    entered = []
    monkeypatch.setattr(Monitor, "paused", contextlib.contextmanager(lambda self: (entered.append(1), (yield))[1]))
    train(small_config("toy", tmp_path, steps=12, log_every=1, checkpoint_every=5, sample_every=4), progress=False)
    assert len(entered) == 1 + 5  # the step-0 grid; grids at 4 and 8, checkpoints at 5 and 10, both at 12


def test_the_progress_bar_redraws_seldom_into_a_file(monkeypatch):
    from gankit.progress import bar_intervals

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    # nohup, Slurm, CI: a few hundred redraws a run, not thousands, and tqdm's monitor thread, which
    # redraws a bar idle for maxinterval, no more often
    assert bar_intervals() == {"mininterval": 30.0, "maxinterval": 30.0}
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # a notebook's widget is watched
    assert bar_intervals()["mininterval"] == 0.5
    monkeypatch.delitem(sys.modules, "ipykernel")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert bar_intervals() == {"mininterval": 0.5, "maxinterval": 10.0}
    src = Path(gankit.train.__file__).parent
    for name in ("monitor", "data", "evaluate", "metrics/fid_inception"):  # every bar of a long job takes them
        text = (src / f"{name}.py").read_text()
        assert text.count("tqdm(") == text.count("**bar_intervals()") > 0, name


def test_a_resume_drops_grids_and_tensorboard_points_past_its_checkpoint(tmp_path, tiny_data, monkeypatch):
    """Killed at step 7 with the checkpoint at 4: its grid of step 7 and TensorBoard's points past
    step 4 are of steps about to be redone (and a changed sample_every would never redraw them)."""
    writers = []

    class Writer:
        def __init__(self, folder, purge_step=None):
            writers.append(purge_step)

        def add_scalar(self, *args):
            pass

        def add_image(self, *args, **kwargs):
            pass

        def close(self):
            pass

    monkeypatch.setattr(gankit.train, "tensorboard_writer", lambda: Writer)
    cfg = small_config("cs231n-gan", tmp_path, steps=4, sample_every=2, checkpoint_every=2, tensorboard=True)
    train(cfg, progress=False)
    run = tmp_path / "cs231n-gan"
    (run / "samples" / "step-000004.png").replace(run / "samples" / "step-000007.png")  # as a killed run left it
    resume(run, steps=8, sample_every=4, progress=False)
    assert sorted(p.name for p in (run / "samples").iterdir()) == \
        ["step-000000.png", "step-000002.png", "step-000008.png"]
    assert writers == [None, 5]  # TensorBoard drops points at steps >= 5: the checkpoint's own are kept


def test_a_folder_run_resumes_from_the_folders_new_place_and_says_when_its_images_changed(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    src, rng = tmp_path / "pics", np.random.default_rng(0)
    src.mkdir()
    for i in range(20):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(src / f"{i}.png")
    train(small_config("cs231n-gan", tmp_path, dataset=f"folder:{src}", channels=1, image_size=28), progress=False)
    run, moved = tmp_path / "cs231n-gan", src.rename(tmp_path / "moved")
    with pytest.raises(GankitError, match=rf"pics: no such directory; if the run's images moved: gankit train "
                       rf"--resume {run} --dataset folder:NEWPATH"):
        resume(run, steps=3, progress=False)
    resume(run, steps=3, dataset=f"folder:{moved}", progress=False)  # the images moved: point the run there
    assert load_checkpoint(run)["config"].dataset == f"folder:{moved.resolve()}"
    assert "training images now" not in capsys.readouterr().err  # the same 20 images
    Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(moved / "extra.png")
    resume(run, steps=4, progress=False)
    assert "holds 21 training images now, the run trained on 20: it goes on" in capsys.readouterr().err
    with pytest.raises(GankitError, match="--dataset folder:PATH only points a folder run"):
        resume(run, steps=5, dataset="mnist", progress=False)
    # a resume to yet another place, killed before its first checkpoint, left config.json naming it:
    # the checkpoint's folder is still the run's, and the next resume goes on from it, saying so
    saved = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**saved, "dataset": f"folder:{tmp_path / 'elsewhere'}"}))
    capsys.readouterr()
    resume(run, steps=5, progress=False)
    assert f"a resume with --dataset folder:{tmp_path / 'elsewhere'} trains on the folder config.json names" \
        in capsys.readouterr().err
    assert load_checkpoint(run)["step"] == 5
