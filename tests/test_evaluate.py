"""evaluate() plumbing: a throwaway evaluator trained by the real script on a few hundred digits,
tiny generators, the returned keys, the on-disk cache of real statistics, clear errors."""

import dataclasses
import importlib.util
import json
from pathlib import Path

import pytest
import torch

import gankit.evaluate
import gankit.sample
from gankit import data as datasets
from gankit.errors import GankitError
from gankit.evaluate import evaluate, evaluate_run, real_images, same_evaluation
from gankit.metrics import Evaluator
from gankit.recipes import RECIPES
from gankit.report import build_report
from gankit.train import resume, train

from test_recipes import small_config

ROOT = Path(__file__).resolve().parent.parent
KEYS = {"dataset", "num_samples", "real_images", "evaluator", "fid", "fid_floor", "is", "is_std", "is_floor", "is_std_floor",
        "precision", "recall", "precision_floor", "recall_floor", "modes", "modes_kl", "modes_floor", "modes_kl_floor"}


@pytest.fixture(scope="session")
def tiny_evaluator(tmp_path_factory):
    """benchmarks/train_evaluator.py, one epoch on 512 MNIST digits: the real pipeline in a few seconds."""
    spec = importlib.util.spec_from_file_location("train_evaluator", ROOT / "benchmarks" / "train_evaluator.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path_factory.mktemp("evaluators")
    argv = ["--dataset", "mnist", "--limit", "512", "--test_limit", "256", "--epochs", "1", "--batch_size", "64",
            "--out", str(out), "--min_accuracy", "0", "--quiet"]
    assert script.main(argv) == 0
    return out


def tiny_generator(name="cs231n-gan", **over):
    cfg = RECIPES[name].config(**over)
    cfg.data_shape = [1, cfg.image_size or 28, cfg.image_size or 28]
    torch.manual_seed(0)
    G, _ = RECIPES[name].nets(cfg)
    return G.eval(), cfg


def test_train_evaluator_writes_weights_and_provenance(tiny_evaluator):
    info = json.loads((tiny_evaluator / "mnist.json").read_text())
    assert info["command"].startswith("python benchmarks/train_evaluator.py --dataset mnist --limit 512")
    assert info["epochs"] == 1 and info["seed"] == 0 and info["data"]["train_images"] == 512
    assert 0 <= info["test_accuracy"] <= 1 and info["torch"] == torch.__version__ and info["date"]
    assert (tiny_evaluator / "mnist.pt").stat().st_size < 4_000_000
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    assert ev.sha256 == info["sha256"]


def test_real_images_score_as_the_test_split(tiny_evaluator, tmp_path):
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    x = real_images("mnist", "test", 300).float() / 127.5 - 1  # exactly the reference images
    out = evaluate(x, "mnist", num_samples=300, evaluator=ev, cache_dir=tmp_path, progress=False)
    assert set(out) == KEYS and out["num_samples"] == 300 and out["evaluator"] == ev.sha256[:12]
    assert out["fid"] == pytest.approx(0, abs=1e-3 * out["fid_floor"])
    assert out["precision"] == out["recall"] == 1.0
    assert 0 < out["fid_floor"] and 0 < out["precision_floor"] <= 1 and 1 <= out["is_floor"] <= 10


@pytest.mark.parametrize("channels", [1, 3])
def test_a_perfect_32px_generator_scores_at_the_floor(tiny_evaluator, tmp_path, monkeypatch, channels):
    """A run at 32 px trains on MNIST resized to 32 px; its perfect generator (those very images)
    must score like the real test images, not pay for a 32 -> 28 round trip the real side skipped."""
    pooled = lambda x, device="cpu", batch_size=50, progress=True, desc="": \
        torch.nn.functional.avg_pool2d(x.float().mean(1, keepdim=True), 4).flatten(1)  # Inception reads grey as grey RGB
    monkeypatch.setattr(gankit.evaluate, "inception_features", pooled)
    x = datasets.to_float(datasets.load("mnist", "test", image_size=32, channels=channels).x)
    pick = torch.randperm(len(x), generator=torch.Generator().manual_seed(gankit.evaluate.SUBSET_SEED["test"]))[:300]
    out = evaluate(x[pick], "mnist", "fid,pr,fid_inception", num_samples=300, cache_dir=tmp_path, progress=False,
                   evaluator=Evaluator.load("mnist", weights_dir=tiny_evaluator))
    assert out["fid"] == pytest.approx(0, abs=1e-3 * out["fid_floor"])
    assert out["precision"] == out["recall"] == 1.0
    assert out["fid_inception"] == pytest.approx(0, abs=1e-3 * out["fid_inception_floor"])
    with pytest.raises(GankitError, match=rf"square images .*got samples of shape \({channels}, 32, 16\)"):
        evaluate(x[pick, :, :, :16], "mnist", "fid", num_samples=300, cache_dir=tmp_path, progress=False)


def test_generator_evaluation_is_cached_and_reproducible(tiny_evaluator, tmp_path, monkeypatch, capsys):
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    written, real_write = [], gankit.evaluate._write_cache
    monkeypatch.setattr("gankit.evaluate._write_cache", lambda ref, path: written.append(path) or real_write(ref, path))
    loads, real_load = [], datasets.load
    monkeypatch.setattr("gankit.evaluate.datasets.load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    G = tiny_generator()
    kw = dict(num_samples=100, evaluator=ev, cache_dir=tmp_path, progress=False)

    first = evaluate(G, "mnist", **kw)
    assert set(first) == KEYS and len(written) == 1 and len(loads) == 2  # test and train splits, once each
    cached = list(tmp_path.iterdir())
    assert cached == written and cached[0].name.startswith(f"mnist-evaluator-{ev.sha256[:16]}-n100-")

    assert evaluate(G, "mnist", **kw) == first and len(written) == 1  # the second call reads the cache
    assert len(loads) == 4  # (its images are loaded again: the cache is keyed by them)
    other_seed = evaluate(G, "mnist", seed=1, **kw)
    assert other_seed["fid"] != first["fid"] and other_seed["fid_floor"] == first["fid_floor"]

    cached[0].write_bytes(b"not a torch file")  # a corrupt cache is recomputed, and said so
    assert evaluate(G, "mnist", **kw) == first and len(written) == 2
    assert "ignoring the unusable cache file" in capsys.readouterr().err

    # other images under the same name (another --data-dir, a changed file) get their own statistics
    mirror = lambda *a, **k: (lambda d: dataclasses.replace(d, x=d.x.flip(-1).contiguous()))(real_load(*a, **k))  # noqa: E731
    monkeypatch.setattr("gankit.evaluate.datasets.load", mirror)
    mirrored = evaluate(G, "mnist", **kw)
    assert len(written) == 3 and len(list(tmp_path.iterdir())) == 2 and mirrored["fid"] != first["fid"]
    assert mirrored["real_images"] != first["real_images"]  # and the result says which real images it met

    only = evaluate(G, "mnist", metrics="modes,fid", **kw)
    assert set(only) == {"dataset", "num_samples", "real_images", "evaluator", "modes", "modes_kl", "modes_floor", "modes_kl_floor",
                         "fid", "fid_floor"}


def test_64px_generator(tiny_evaluator, tmp_path):
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    G = tiny_generator("dcgan64", image_size=16)  # same code path as 64 px: the evaluator resizes to 28
    out = evaluate(G, "mnist", metrics=["fid", "pr"], num_samples=20, evaluator=ev, cache_dir=tmp_path, progress=False)
    assert out["fid"] > 0 and 0 <= out["precision"] <= 1


def test_evaluate_run(tiny_evaluator, tmp_path, tiny_data, monkeypatch):
    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)  # two steps on fake images
    monkeypatch.undo()  # evaluate against real MNIST
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    out = evaluate_run(cfg.out, metrics="is,modes", num_samples=50, evaluator=ev, cache_dir=tmp_path / "stats",
                       progress=False)
    assert out["dataset"] == "mnist" and out["num_samples"] == 50 and 1 <= out["is"] <= 10
    assert (out["step"], out["seed"], out["ema"]) == (2, 0, False)  # what was scored


def test_a_checkpoint_is_named_by_the_bytes_that_were_scored(tiny_evaluator, tmp_path, tiny_data, monkeypatch):
    """A training that replaces the checkpoint while it is evaluated (gankit eval of a live run) cannot
    make the result name the new file: the hash is of the bytes loaded."""
    import hashlib

    cfg = small_config("cs231n-gan", tmp_path)
    train(cfg, progress=False)
    monkeypatch.undo()
    path = Path(cfg.out) / "checkpoint.pt"
    assert path.exists()
    loaded = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    ev, real_load, calls = Evaluator.load("mnist", weights_dir=tiny_evaluator), torch.load, []

    def load_then_replace(*a, **k):  # the checkpoint (the first file loaded) changes just after it is read
        state = real_load(*a, **k)
        if not calls:
            path.write_bytes(path.read_bytes() + b"a later checkpoint")
        calls.append(a[0])
        return state

    monkeypatch.setattr(torch, "load", load_then_replace)
    out = evaluate_run(cfg.out, metrics="modes", num_samples=20, evaluator=ev, cache_dir=tmp_path / "stats", progress=False)
    assert out["checkpoint"] == loaded != hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def test_metrics_json_adds_only_scores_of_the_same_checkpoint(tiny_evaluator, tmp_path, tiny_data):
    """A second `gankit eval` (e.g. --metrics fid_inception after the defaults) adds to metrics.json
    what it measured of the same checkpoint, the same way; anything else replaces the file."""
    cfg = small_config("cs231n-gan", tmp_path, g_ema=0.9)
    train(cfg, progress=False)
    path = Path(cfg.out) / "metrics.json"
    kw = dict(num_samples=50, evaluator=Evaluator.load("mnist", weights_dir=tiny_evaluator),
              cache_dir=tmp_path / "stats", progress=False, write=True)

    def written(metrics, **over):
        evaluate_run(cfg.out, metrics, **{**kw, **over})
        return json.loads(path.read_text())

    first = written("is")
    assert first["ema"] is True and first["step"] == 2
    both = written("modes")  # the same checkpoint, seed, G and sample count: added
    assert both["is"] == first["is"] and both["is_floor"] == first["is_floor"] and both["modes"] >= 1
    for other in (dict(seed=1), dict(ema=False), dict(num_samples=40)):  # other samples, another G, another count
        written("is")
        assert "is" not in written("modes", **other), other
    written("is")
    resume(cfg.out, steps=4, progress=False)  # the run moved on: the scores of step 2 are not kept
    later = written("modes")
    assert later["step"] == 4 and "is" not in later


def test_same_evaluation_names_what_was_scored():
    scored = {"dataset": "mnist", "checkpoint": "0123456789ab", "step": 2, "num_samples": 50, "real_images": "r1",
              "evaluator": "e1", "seed": 0, "ema": True, "fid": 1.0}
    assert same_evaluation(scored, {**scored, "fid": 2.0})
    for key, other in [("dataset", "fashion-mnist"), ("checkpoint", "0123456789ac"), ("evaluator", "e2"),
                       ("num_samples", 40), ("seed", 1), ("ema", False), ("real_images", "r2")]:
        assert not same_evaluation(scored, {**scored, key: other}), key
    # scored before the samples were compared with real images at their own size: not kept beside new scores
    before = {k: v for k, v in scored.items() if k != "real_images"}
    assert not same_evaluation(before, scored)
    accuracy = {"dataset": "mnist", "checkpoint": "0123456789ab", "step": 2, "test_errors": 100}  # no samples
    assert same_evaluation(scored, accuracy) and same_evaluation(accuracy, scored)
    assert not same_evaluation({**accuracy, "checkpoint": "0123456789ac"}, scored)
    unnamed = {k: v for k, v in scored.items() if k != "checkpoint"}  # a metrics.json from before it said
    assert not same_evaluation(unnamed, scored) and not same_evaluation(None, scored) and not same_evaluation([], scored)


def test_fid_inception_plumbing(tmp_path, monkeypatch):
    """The cache and keys of fid_inception, with a cheap stand-in for the network (tested in test_metrics)."""
    fake_net = lambda x, device="cpu", batch_size=50, progress=True, desc="": x.float().flatten(1)[:, ::49]  # (N, 16)
    monkeypatch.setattr(gankit.evaluate, "inception_features", fake_net)
    G = tiny_generator()
    out = evaluate(G, "mnist", metrics=["fid_inception"], num_samples=40, cache_dir=tmp_path, progress=False)
    assert set(out) == {"dataset", "num_samples", "real_images", "fid_inception", "fid_inception_floor"}
    assert out["fid_inception"] > out["fid_inception_floor"] > 0
    assert [p.name.split("-")[1] for p in tmp_path.iterdir()] == ["inception"]


def test_evaluator_and_inception_metrics_load_the_real_images_once(tiny_evaluator, tmp_path, monkeypatch):
    monkeypatch.setattr(gankit.evaluate, "inception_features",
                        lambda x, device="cpu", batch_size=50, progress=True, desc="": x.float().flatten(1)[:, ::49])
    loads, real_load = [], datasets.load
    monkeypatch.setattr("gankit.evaluate.datasets.load", lambda *a, **k: loads.append(a[1]) or real_load(*a, **k))
    out = evaluate(tiny_generator(), "mnist", metrics="fid,fid_inception", num_samples=40, cache_dir=tmp_path,
                   progress=False, evaluator=Evaluator.load("mnist", weights_dir=tiny_evaluator))
    assert out["fid"] > 0 and out["fid_inception"] > 0
    assert loads == ["test", "train"]  # one subset of each split feeds both references
    assert sorted(p.name.split("-")[1] for p in tmp_path.iterdir()) == ["evaluator", "inception"]


def test_fid_inception_of_a_folder(tmp_path, monkeypatch):
    """A folder of images is scored against its own images, loaded at the generated size; the
    network is a cheap stand-in (the real one is tested in test_metrics)."""
    from PIL import Image

    calls = []
    fake_net = lambda x, device="cpu", batch_size=50, progress=True, desc="": calls.append(desc) or \
        torch.nn.functional.avg_pool2d(x.float(), 4).flatten(1)  # (N, 3 * 4 * 4)
    monkeypatch.setattr(gankit.evaluate, "inception_features", fake_net)
    folder, g = tmp_path / "pictures", torch.Generator().manual_seed(0)
    folder.mkdir()
    for i in range(24):  # 32 px files; the generated images below are 16 px, so the folder is read at 16
        Image.fromarray(torch.randint(0, 256, (32, 32, 3), generator=g, dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    spec, cache = f"folder:{folder}", tmp_path / "stats"
    own = datasets.to_float(datasets.load(spec, image_size=16).x)  # exactly the reference images
    same = evaluate(own, spec, "fid_inception", num_samples=24, cache_dir=cache, progress=False)
    assert set(same) == {"dataset", "num_samples", "real_images", "fid_inception", "num_real"} and same["num_real"] == 24
    assert abs(same["fid_inception"]) < 1e-3
    assert calls == ["inception folder", ""] and [p.name.split("-")[:2] for p in cache.iterdir()] == [["folder", "inception"]]
    grey = torch.full((20, 3, 16, 16), 0.8)  # far from the folder's noise; the real side comes from the cache
    far = evaluate(grey + 0.01 * torch.randn(20, 3, 16, 16, generator=g), spec, "fid_inception", num_samples=20,
                   cache_dir=cache, progress=False)
    assert far["fid_inception"] > 1 and far["num_real"] == 20 and len(list(cache.iterdir())) == 2  # 20 of the 24
    with pytest.raises(GankitError, match=r"fid, pr need gankit's evaluator.*--metrics fid_inception"):
        evaluate(grey, spec, "fid,pr,fid_inception", num_samples=20, cache_dir=cache, progress=False)
    calls.clear()  # the same images named by another path: the cache still serves
    evaluate(own, f"folder:{tmp_path}/./pictures", "fid_inception", num_samples=24, cache_dir=cache, progress=False)
    assert calls == [""]
    for f in sorted(folder.iterdir())[9:]:
        f.unlink()
    with pytest.raises(GankitError, match=r"pictures: 9 images; fid_inception needs at least 10"):
        evaluate(grey, spec, "fid_inception", num_samples=20, cache_dir=cache, progress=False)


def test_evaluate_run_on_a_folder_defaults_to_fid_inception(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(gankit.evaluate, "inception_features",
                        lambda x, device="cpu", batch_size=50, progress=True, desc="": x.float().mean((2, 3)))
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(12):
        Image.new("RGB", (20, 20), (20 * i, 100, 255 - 20 * i)).save(folder / f"{i}.png")
    monkeypatch.chdir(tmp_path)  # trained from a relative path, evaluated from another directory
    cfg = small_config("dcgan64", tmp_path, dataset="folder:pictures", image_size=16, batch_size=4)
    train(cfg, progress=False)
    assert json.loads((Path(cfg.out) / "config.json").read_text())["dataset"] == f"folder:{folder.resolve()}"
    monkeypatch.chdir(folder)
    out = evaluate_run(cfg.out, num_samples=12, cache_dir=tmp_path / "stats", progress=False, write=True)
    assert set(out) == {"dataset", "num_samples", "real_images", "fid_inception", "num_real", "checkpoint", "step", "seed",
                        "ema"}
    assert out["fid_inception"] > 0
    assert out["num_real"] == 12 and json.loads((Path(cfg.out) / "metrics.json").read_text()) == out
    page = Path(build_report(cfg.out)).read_text()  # the report says what the FID was measured against
    assert "against 12 images of folder:" in page and " test split.<" not in page and ">num_real<" not in page


def test_evaluate_errors(tiny_evaluator, tmp_path):
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    x = torch.zeros(20, 1, 28, 28)
    kw = dict(evaluator=ev, cache_dir=tmp_path, progress=False)
    with pytest.raises(GankitError, match="unknown metric 'kid'; valid metrics are fid, is, pr, modes, class_acc, fid_inception"):
        evaluate(x, metrics="fid,kid", num_samples=20, **kw)
    with pytest.raises(GankitError, match="20 images given but num_samples is 30"):
        evaluate(x, num_samples=30, **kw)
    with pytest.raises(GankitError, match="float images"):
        evaluate(x.to(torch.uint8), num_samples=20, **kw)
    with pytest.raises(GankitError, match=r"in \[-1, 1\]"):
        evaluate(x + 3, num_samples=20, **kw)
    with pytest.raises(GankitError, match="num_samples must be an integer >= 10"):
        evaluate(x, num_samples=5, **kw)
    with pytest.raises(GankitError, match="exceeds the 10000 images"):
        evaluate(torch.zeros(10001, 1, 28, 28), num_samples=10001, **kw)
    with pytest.raises(GankitError, match="no evaluator for dataset 'toy:ring8'"):
        evaluate(x, "toy:ring8", num_samples=20, **kw)
    with pytest.MonkeyPatch.context() as mp:  # said before any data is read (or downloaded)
        mp.setattr("gankit.evaluate.datasets.load", lambda *a, **k: pytest.fail("data read before the evaluator check"))
        with pytest.raises(GankitError, match="trained on mnist, not fashion-mnist"):
            evaluate(x, "fashion-mnist", num_samples=20, **kw)
    toy = RECIPES["mlp-gan"].config(dataset="toy:ring8")
    toy.data_shape = [2]
    with pytest.raises(GankitError, match="not images"):
        evaluate((RECIPES["mlp-gan"].nets(toy)[0], toy), num_samples=20, **kw)
    with pytest.raises(GankitError, match="a tensor of images in"):
        evaluate("runs/x", num_samples=20, **kw)


def test_evaluation_and_sampling_import_no_trainer_code():
    import subprocess
    import sys

    code = ("import sys, gankit.evaluate, gankit.sample, gankit.report; "
            "print(sorted(m for m in sys.modules if m in ('gankit.train', 'gankit.steps', 'gankit.semi', "
            "'gankit.build', 'gankit.graphs', 'gankit.monitor')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert p.stdout.strip() == "[]"


def test_class_acc_of_an_unconditional_run_is_refused_before_sampling(tiny_run, monkeypatch):
    monkeypatch.setattr(gankit.evaluate, "evaluate", lambda *a, **k: pytest.fail("sampled"))
    with pytest.raises(GankitError, match=r"class_acc needs a conditional run .*trained cs231n-gan without classes"):
        evaluate_run(tiny_run("cs231n-gan"), metrics="class_acc", num_samples=100, write=False)


def test_a_cache_that_cannot_be_written_does_not_stop_the_evaluation(tiny_evaluator, tmp_path, monkeypatch, capsys):
    def no_space(obj, path):
        raise GankitError(f"{path}: cannot write (No space left on device)")

    monkeypatch.setattr("gankit.evaluate.save_atomic", no_space)
    ev = Evaluator.load("mnist", weights_dir=tiny_evaluator)
    out = evaluate(tiny_generator(), "mnist", num_samples=100, evaluator=ev, cache_dir=tmp_path, progress=False)
    assert out["num_samples"] == 100 and "fid" in out
    assert "could not write the cache file" in capsys.readouterr().err and not list(tmp_path.iterdir())


def test_sample_draws_in_batches_with_the_same_images(tiny_run, tmp_path, monkeypatch):
    """gankit sample runs G on at most BATCH inputs at a time (a large -n needs memory for its images, not
    for G's activations on all of them at once); the grid is the one a single pass draws."""
    run = tiny_run("cs231n-dcgan")  # BatchNorm: in eval mode, so a sample does not depend on its batch
    one = gankit.sample.sample(run, n=40, out=tmp_path / "one.png")
    monkeypatch.setattr(gankit.sample, "BATCH", 7)
    seven = gankit.sample.sample(run, n=40, out=tmp_path / "seven.png")
    assert one.read_bytes() == seven.read_bytes()


def test_the_images_of_a_seed_do_not_depend_on_the_batch_size(tiny_run):
    """fid_inception scores in batches of 32, the evaluator in 500: both must see the same images of a seed
    (torch.randn in chunks of 7 x 62 numbers differs from one draw)."""
    G, cfg = gankit.sample.load_generator(tiny_run("mlp-gan", noise_dim=62), device="cpu")
    one = torch.cat(list(gankit.evaluate._generate(G, cfg, 40, 3, 40)))
    seven = torch.cat(list(gankit.evaluate._generate(G, cfg, 40, 3, 7)))
    assert (one - seven).abs().max() < 1e-5  # G's own rounding may differ with the batch; other z would not


class _AtModes(torch.nn.Module):
    """A stand-in G on 2-D points: z picks one of `centers` (all of them, or only the first)."""

    def __init__(self, centers, collapse=False):
        super().__init__()
        self.centers, self.collapse, self.w = centers, collapse, torch.nn.Parameter(torch.zeros(()))

    def forward(self, z):
        pick = torch.zeros(len(z), dtype=torch.long) if self.collapse else (z[:, 0].abs() * 1e4).long() % len(self.centers)
        return self.centers[pick] + self.w


def test_a_toy_runs_mode_coverage(tmp_path, capsys):
    """gankit eval of a 2-D toy run counts the modes its points cover; a G on every mode covers all
    8 with every point of high quality, a collapsed one covers 1, and image metrics are refused."""
    from gankit import cli
    from gankit.evaluate import toy_modes

    cfg = RECIPES["toy"].config(dataset="toy:ring8")
    centers = datasets.toy_centers("toy:ring8")
    full = toy_modes(_AtModes(centers), cfg, "toy:ring8", 4000, seed=0)
    assert (full["modes"], full["modes_of"], full["high_quality"]) == (8, 8, 1.0)
    assert full["modes_floor"] == 8 and full["high_quality_floor"] > 0.95
    one = toy_modes(_AtModes(centers, collapse=True), cfg, "toy:ring8", 4000, seed=0)
    assert (one["modes"], one["high_quality"]) == (1, 1.0)
    run = tmp_path / "toy"
    assert cli.main(["train", "toy", "--steps", "3", "--out", str(run), "--no-progress"]) == 0
    assert cli.main(["eval", str(run), "--num-samples", "500"]) == 0
    written = json.loads((run / "metrics.json").read_text())
    assert written["modes_of"] == 8 and 0 <= written["modes"] <= 8 and written["step"] == 3
    capsys.readouterr()
    assert cli.main(["eval", str(run), "--metrics", "fid,modes"]) == 2
    assert "scored by mode coverage alone (--metrics modes); fid score images" in capsys.readouterr().err


def test_evaluations_keep_the_runs_download_setting(tmp_path, tiny_data, monkeypatch):
    """A run with download=false loads its evaluations' real images with download=false too, during
    training and in gankit eval, as its training data was."""
    asked = []

    def load(spec, split="train", data_dir=None, image_size=None, channels=None, download=True, seed=0):
        asked.append(download)
        return tiny_data(spec, split, data_dir, image_size, channels, download, seed)

    monkeypatch.setattr("gankit.data.load", load)
    monkeypatch.setenv("GANKIT_DATA", str(tmp_path / "cache"))  # the real side's statistics cached there
    cfg = small_config("cs231n-gan", tmp_path, download=False, eval_every=2, eval_samples=100, eval_metrics=["fid"])
    train(cfg, progress=False)
    evaluate_run(tmp_path / "cs231n-gan", metrics="fid", num_samples=100, cache_dir=tmp_path / "stats")
    assert asked and set(asked) == {False}, asked
