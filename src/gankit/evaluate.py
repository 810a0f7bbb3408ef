"""Evaluate a generator against its dataset's test split with the metrics of gankit.metrics.

    evaluate((G, cfg), "mnist")          # a generator and its Config (gankit.sample.load_generator)
    evaluate(x, "fashion-mnist")         # a tensor of images in [-1, 1], (N, 1 or 3, H, W)
    evaluate_run("runs/dcgan")           # a run folder or checkpoint

Metrics are named as in gankit.metrics.METRICS (fid, is, pr, modes, fid_inception, accuracy),
which also says which keys each adds to the result. accuracy scores a semi-supervised run's
classifier rather than images, so only evaluate_run takes it.

Every metric compares num_samples generated images with num_samples images of the test split (a
fixed seeded subset, resized as gankit.data resizes a run's training images when the generated
ones are not 28 px, so both sides meet every extractor's own resize alike), and every key also
comes as KEY_floor: the same metric with num_samples training images in place of the generated
ones, i.e. the score of a perfect generator at this sample count (FID does not reach 0 with finite samples). The real side (test features, their
float64 mean/covariance and k-NN radii, the floors) is computed once and cached on disk in
cache_dir (default $GANKIT_DATA/stats, else ~/.cache/gankit/stats), keyed by dataset, num_samples
and a sha1 of the real images' bytes (and labels), and by the evaluator's sha256, or for
fid_inception the Inception network's sha1 and the precision of its features.

A folder of images ("folder:PATH") has no evaluator and no held-out split: it takes fid_inception
alone, against the folder's own images (all of them, or a seeded subset of num_samples where it
holds more), loaded at the generated images' size and channels, as StyleGAN and most GAN papers
score a dataset without a test split. It has no floor (no second set of real images to make one);
num_real says how many real images the statistics came from.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from tqdm.auto import tqdm

from gankit import assets
from gankit import data as datasets
from gankit.config import is_semi_supervised
from gankit.errors import GankitError
from gankit.files import save_atomic, write_text_atomic
from gankit.hardware import pick_device
from gankit.metrics import DEFAULT_METRICS, K_NEAREST, METRICS, Embedded, knn_radii, mode_coverage
from gankit.metrics.accuracy import classifier_accuracy
from gankit.metrics.evaluator import DATASETS, Evaluator
from gankit.metrics.fid import frechet_distance
from gankit.metrics.fid_inception import BATCH_SIZE, MODEL_SHA1, inception_features, inception_precision
from gankit.metrics.stats import RunningStats
from gankit.progress import bar_intervals
from gankit.run import find_checkpoint, load_checkpoint_sha256
from gankit.sample import generator_weights, has_generator, networks_of, sample_noise

MIN_SAMPLES = 10  # the Inception Score's 10 splits
SUBSET_SEED = {"test": 0, "train": 1}  # which real images stand for each split; fixed, so caches stay valid
CACHE_FORMAT = 2  # 2: floors include class_acc


def evaluate(samples_or_generator, dataset: str = "mnist", metrics: Iterable[str] | str = DEFAULT_METRICS,
             num_samples: int = 10_000, device: str = "cpu", seed: int = 0, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, *, evaluator: Evaluator | None = None, data_dir: str | None = None,
             batch_size: int = 500, download: bool = True) -> dict[str, Any]:
    """Score num_samples images of a generator (or a tensor of images in [-1, 1]) on `dataset`.

    samples_or_generator: a (G, Config) pair, sampled with noise seeded by `seed`, or a float
    tensor (N, C, H, W) in [-1, 1] of which the first num_samples are used. metrics: names from
    METRICS, a list or a comma-separated string. evaluator: use this Evaluator instead of the
    packaged one of `dataset`. data_dir: where gankit.data finds the dataset's files; download:
    whether it may fetch them when no local copy is found (a run's download setting).
    Returns a flat dict: dataset, num_samples, evaluator (sha256 prefix), then each metric's keys
    and their _floor twins (see the module docstring). dataset "folder:PATH" takes fid_inception
    alone, against the folder's images, and gives num_real in place of a floor.
    """
    names = _parse_metrics(metrics)
    if any(METRICS[n].needs == "classifier" for n in names):
        raise GankitError("evaluate: accuracy scores a semi-supervised run's classifier, not images; "
                          "use evaluate_run (gankit eval RUN)")
    folder = isinstance(dataset, str) and dataset.startswith("folder:")
    if dataset not in DATASETS and not folder:
        raise GankitError(f"evaluate: no evaluator for dataset {dataset!r}: supported are {', '.join(DATASETS)}, "
                          f"and folder:PATH for fid_inception (a 2-D toy run: gankit eval RUN scores its mode coverage)")
    evaluator_metrics = [n for n in names if METRICS[n].needs == "evaluator"]
    if folder and evaluator_metrics:
        raise GankitError(f"evaluate: {', '.join(evaluator_metrics)} need{'s' * (len(evaluator_metrics) == 1)} "
                          f"gankit's evaluator, which knows only {' and '.join(DATASETS)}; a folder of images "
                          f"({dataset}) is scored with fid_inception alone (metrics fid_inception; in the CLI "
                          f"gankit eval RUN --metrics fid_inception)")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < MIN_SAMPLES:
        raise GankitError(f"num_samples must be an integer >= {MIN_SAMPLES}, got {num_samples!r}")
    dev = pick_device(device)
    batches = _sample_batches(samples_or_generator, num_samples, seed, BATCH_SIZE if "fid_inception" in names else batch_size)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    result: dict[str, Any] = {"dataset": dataset, "num_samples": num_samples}

    ev, ref = None, None
    if evaluator_metrics:  # before any data is read: a missing or wrong evaluator is said at once
        ev = evaluator or Evaluator.load(dataset, dev)
        if ev.dataset != dataset:
            raise GankitError(f"evaluate: the evaluator given was trained on {ev.dataset}, not {dataset}")
        result["evaluator"] = ev.sha256[:12]
    # The real side is loaded at the generated images' shape (a 32 px MNIST run is scored against
    # MNIST resized to 32 px, as it trained on), so both go through every resize alike: look at the first batch.
    first = next(batches)
    batches = itertools.chain([first], batches)
    if first.dim() != 4 or first.shape[1] not in (1, 3) or first.shape[-2] != first.shape[-1]:
        raise GankitError(f"evaluate: expected square images (N, 1 or 3, H, H), got samples of shape {tuple(first.shape[1:])}")
    size = first.shape[-1]
    if folder:
        real = {"folder": folder_images(dataset, num_samples, first.shape[1], size)}
    else:  # the fixed subsets, loaded once for every reference; grey, which every extractor reads as a
        # grey RGB image, so 3-channel samples of MNIST meet the same statistics in a third of the memory
        real = {"test": real_images(dataset, "test", num_samples, data_dir, download=download, image_size=size)}
        real["train"], train_labels = real_images(dataset, "train", num_samples, data_dir, labels=True,
                                                  download=download, image_size=size)
    real_sha1 = _sha1(*real.values())  # the real images' bytes: the Inception cache's key, and in the result
    result["real_images"] = real_sha1[:12]  # what the samples were compared with (same_evaluation)
    if ev is not None:
        ref = _evaluator_reference(ev, dataset, real["test"], real["train"], train_labels, cache, progress)
    inc_ref = None
    if "fid_inception" in names:
        inc_ref = _inception_reference(dataset, real, real_sha1, num_samples, dev, cache, progress)

    # One pass over the generated images feeds every feature extractor: nothing is stored but features.
    stats, inc_stats, feats, logits = RunningStats(), RunningStats(), [], []
    with tqdm(total=num_samples, desc="evaluate", unit="img", disable=not progress, dynamic_ncols=True,
              **bar_intervals()) as bar:
        for x in batches:
            if ev is not None:
                f, y = ev.features_and_logits(x)
                stats.update(f)
                feats.append(f)
                logits.append(y)
            if inc_ref is not None:
                inc_stats.update(inception_features(x, dev, progress=False))
            bar.update(len(x))

    if ev is not None:
        scores = _scores(stats, torch.cat(feats), torch.cat(logits), ref, evaluator_metrics,
                         drawn_labels(samples_or_generator, num_samples))
        for key, value in scores.items():
            result[key], result[key + "_floor"] = value, ref["floor"][key]
    if inc_ref is not None:
        result["fid_inception"] = frechet_distance(*inc_stats.compute(), inc_ref["mu"], inc_ref["sigma"])
        if folder:
            result["num_real"] = inc_ref["num_real"]
        else:
            result["fid_inception_floor"] = inc_ref["floor"]["fid_inception"]
    return result


def evaluate_run(run_or_checkpoint: str | os.PathLike, metrics: Iterable[str] | str | None = None,
                 num_samples: int = 10_000, device: str = "cpu", seed: int = 0,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True, *, dataset: str | None = None,
                 evaluator: Evaluator | None = None, batch_size: int = 500, write: bool = False,
                 ema: bool = True) -> dict[str, Any]:
    """evaluate() the generator of a run folder or checkpoint on its own dataset (or `dataset`);
    "accuracy" tests a semi-supervised run's classifier on the test split. metrics=None: the
    default metrics, plus accuracy for a semi-supervised run (accuracy alone for its baseline).
    The result ends with what was scored: the checkpoint (a sha256 prefix of its file) and its step,
    and where images were scored, their seed and whether G was the moving average (ema).

    write: also write the result to metrics.json beside the checkpoint (a read-only folder is
    refused before anything is computed), added to the metrics already there when those scored the
    same checkpoint the same way (same_evaluation), else in their place. ema: G's moving average
    where the run kept one (g_ema)."""
    path = find_checkpoint(run_or_checkpoint)
    out = path.parent / "metrics.json" if write else None
    if write and not os.access(out.parent, os.W_OK):
        raise GankitError(f"{out}: cannot write (the folder is read-only); nothing was evaluated")
    dev = pick_device(device)
    state, sha256 = load_checkpoint_sha256(path, map_location=dev)
    G, D, cfg = networks_of(state, path, dev, ema)  # D: the tested weights (a moving average if kept)
    scored, ds = {"checkpoint": sha256[:12], "step": state["step"]}, dataset or cfg.dataset
    if metrics is None:
        metrics = ["modes"] if ds.startswith("toy:") \
            else (["accuracy"] if cfg.baseline else [*DEFAULT_METRICS, "accuracy"]) if is_semi_supervised(cfg) \
            else ["fid_inception"] if ds.startswith("folder:") \
            else [*DEFAULT_METRICS, "class_acc"] if cfg.conditional else DEFAULT_METRICS
    names = _parse_metrics(metrics)
    result: dict[str, Any] = {}
    if ds.startswith("toy:") and names != ["modes"]:
        raise GankitError(f"{run_or_checkpoint}: a run on 2-D points ({ds}) is scored by mode coverage alone "
                          f"(--metrics modes); {', '.join(n for n in names if n != 'modes')} score images")
    if names != ["accuracy"]:  # every other metric scores G's images
        has_generator(cfg, run_or_checkpoint, f"score with {', '.join(n for n in names if n != 'accuracy')}")
    if "class_acc" in names and not cfg.conditional:  # before any sampling
        raise GankitError(f"{run_or_checkpoint}: class_acc needs a conditional run (recipes cgan, acgan, cdcgan); "
                          f"this one trained {cfg.recipe} without classes")
    if "accuracy" in names:
        if not is_semi_supervised(cfg):
            raise GankitError(f"{run_or_checkpoint}: accuracy needs a semi-supervised run (recipes ssgan, improved-gan); "
                              f"this one trained {cfg.recipe} without labels")
        test = datasets.load_split(cfg, "test")
        result.update({"dataset": cfg.dataset, **classifier_accuracy(D, test.x, test.y)})
        names.remove("accuracy")
    if names:
        result = {**(toy_modes(G, cfg, ds, num_samples, seed) if ds.startswith("toy:") else
                     evaluate((G, cfg), ds, names, num_samples, device, seed, cache_dir, progress, evaluator=evaluator,
                              data_dir=cfg.data_dir, batch_size=batch_size, download=cfg.download)), **result}
        scored.update(seed=seed, ema=generator_weights(state, ema) == "G_ema")
    result.update(scored)
    if write:
        try:
            earlier = read_metrics(out)
            kept = earlier if same_evaluation(earlier, result) else {}
            write_text_atomic(out, json.dumps({**kept, **result}, indent=2) + "\n")
        except GankitError as e:  # minutes of evaluation are not lost: the numbers go into the one line
            raise GankitError(f"{e}; the metrics were: {json.dumps(result)}") from None
    return result


@torch.no_grad()
def toy_modes(G: torch.nn.Module, cfg, dataset: str, num_samples: int, seed: int) -> dict[str, Any]:
    """Mode coverage (gankit.metrics.mode_coverage) of num_samples points of a 2-D toy run's G, on
    the CPU or the device G is on: `modes`, for points the mixture's modes covered (holding >= 1% of
    the points; for images the key counts classes) of modes_of, and the share of high-quality points
    (within 3 standard deviations of a mode); the floors are those of as many test points (at most
    the 10,000 of the split)."""
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or not 100 <= num_samples <= 1_000_000:
        raise GankitError(f"num_samples must be an integer in 100..1000000 for mode coverage, got {num_samples!r}")
    device = next(G.parameters()).device
    noise = sample_noise(cfg, num_samples, "cpu", torch.Generator().manual_seed(seed))
    points = torch.cat([G(noise[i:i + 10_000].to(device)).float().cpu() for i in range(0, num_samples, 10_000)])
    if points.dim() != 2 or points.shape[1] != 2:
        raise GankitError(f"evaluate: the generator makes {tuple(points.shape[1:])} samples, not 2-D points")
    centers, std = datasets.toy_centers(dataset), datasets.TOY_STD[dataset]
    real = datasets.load(dataset, "test", seed=cfg.seed).x  # the run's own test points
    real = real[subset(len(real), num_samples, "test")]
    got, floor = mode_coverage(points, centers, std), mode_coverage(real, centers, std)
    return {"dataset": dataset, "num_samples": num_samples, "modes": got["modes"], "modes_of": got["of"],
            "modes_floor": floor["modes"], "high_quality": got["high_quality"], "high_quality_floor": floor["high_quality"]}


SCORED_THE_SAME = ("dataset", "checkpoint", "evaluator", "num_samples", "seed", "ema", "real_images")


def same_evaluation(earlier: Any, result: dict) -> bool:
    """Whether `earlier` (a metrics.json's contents) scored the checkpoint that `result` scored, the
    same way: equal SCORED_THE_SAME where both say (a test accuracy has no samples). Then `gankit eval
    RUN --metrics fid_inception` after `gankit eval RUN` adds its number beside the others; a
    resumed run, another checkpoint, evaluator, sample count, seed, G or real images, or a
    metrics.json from before it named its checkpoint, or (for images) its real images, is replaced."""
    older = "num_samples" in earlier and "real_images" not in earlier if isinstance(earlier, dict) else True
    return isinstance(earlier, dict) and "checkpoint" in earlier and not (older and "real_images" in result) and \
        all(earlier[k] == result[k] for k in SCORED_THE_SAME if k in earlier and k in result)


def read_metrics(path: Path) -> Any:
    """The contents of a metrics.json, or None where it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def default_cache_dir() -> Path:
    """$GANKIT_DATA/stats, else ~/.cache/gankit/stats (beside the datasets of gankit.data)."""
    return assets.cache_root() / "stats"


def real_images(dataset: str, split: str, num_samples: int, data_dir: str | None = None,
                labels: bool = False, download: bool = True,
                image_size: int | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The fixed seeded subset of `split` that stands for the real data: uint8 (num_samples, 1, 28, 28),
    or resized to image_size as gankit.data.load resizes a run's training images (and its labels,
    with labels=True)."""
    data = datasets.load(dataset, split, data_dir=data_dir, download=download, image_size=image_size)
    if num_samples > len(data.x):
        raise GankitError(f"num_samples {num_samples} exceeds the {len(data.x)} images of the {dataset} {split} split")
    pick = subset(len(data.x), num_samples, split)
    return (data.x[pick], data.y[pick]) if labels else data.x[pick]


def subset(n: int, num_samples: int, split: str) -> torch.Tensor:
    """Which num_samples of n real images (or points) stand for `split`: a fixed seeded pick, so
    cached statistics stay valid."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(SUBSET_SEED[split]))[:num_samples]


def folder_images(dataset: str, num_samples: int, channels: int, size: int) -> torch.Tensor:
    """The images of "folder:PATH" that stand for the real data: uint8 (N, channels, size, size), all
    of them, or a fixed seeded subset of num_samples where the folder holds more."""
    x = datasets.load(dataset, image_size=size, channels=channels).x
    if len(x) < MIN_SAMPLES:
        raise GankitError(f"{dataset}: {len(x)} image{'s' * (len(x) != 1)}; fid_inception needs at least "
                          f"{MIN_SAMPLES} real images to estimate their statistics")
    if len(x) > num_samples:
        x = x[subset(len(x), num_samples, "test")]
    return x


# ---------------------------------------------------------------- the generated side

def _parse_metrics(metrics: Iterable[str] | str) -> list[str]:
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = list(dict.fromkeys(n.strip() for n in names if n.strip()))
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        problem = f"unknown metric {bad[0]!r}" if bad else "no metrics asked for"
        raise GankitError(f"{problem}; valid metrics are {', '.join(METRICS)}")
    return names


def _sample_batches(source, num_samples: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    """Check the source now, then yield its images in batches (a generator is sampled lazily)."""
    if isinstance(source, torch.Tensor):
        if source.dim() != 4 or not source.is_floating_point():
            raise GankitError(f"evaluate: expected float images (N, C, H, W) in [-1, 1], got {source.dtype}{tuple(source.shape)}")
        if len(source) < num_samples:
            raise GankitError(f"evaluate: {len(source)} images given but num_samples is {num_samples}")
        lo, hi = source[:num_samples].aminmax()
        if lo < -1.001 or hi > 1.001:
            raise GankitError(f"evaluate: expected images in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]")
        return (source[i:i + batch_size] for i in range(0, num_samples, batch_size))
    if not (isinstance(source, (tuple, list)) and len(source) == 2 and isinstance(source[0], torch.nn.Module)):
        raise GankitError("evaluate: expected a tensor of images in [-1, 1] or a (G, config) pair as returned by "
                          "gankit.sample.load_generator")
    shape = getattr(source[1], "data_shape", None)
    if shape is not None and len(shape) != 3:
        raise GankitError(f"evaluate: the generator makes {list(shape)} samples, not images; "
                          f"a 2-D toy run: gankit eval RUN scores its mode coverage")
    return _generate(*source, num_samples, seed, batch_size)


def drawn_labels(source, num_samples: int) -> torch.Tensor | None:
    """The classes a conditional generator is asked for: every class in turn (image i is class
    i mod K), so each is drawn equally often; None for anything else."""
    cfg = source[1] if isinstance(source, (tuple, list)) and len(source) == 2 else None
    return torch.arange(num_samples) % cfg.num_classes if getattr(cfg, "conditional", "") else None


@torch.no_grad()
def _generate(G: torch.nn.Module, cfg, num_samples: int, seed: int, batch_size: int) -> Iterator[torch.Tensor]:
    device = next(G.parameters()).device
    # z drawn in one call: the images of a seed do not depend on the batch size, which the metrics asked
    # for choose (torch's draws in chunks can differ from one draw, e.g. randn with noise_dim 62)
    noise = sample_noise(cfg, num_samples, "cpu", torch.Generator().manual_seed(seed))
    labels = drawn_labels((G, cfg), num_samples)
    for i in range(0, num_samples, batch_size):
        z = noise[i:i + batch_size].to(device)
        x = datasets.to_signed(G(z, labels[i:i + len(z)].to(device)) if labels is not None else G(z), cfg.real_range)
        if x.dim() != 4:
            raise GankitError(f"evaluate: the generator makes {tuple(x.shape[1:])} samples, not images; "
                              f"a 2-D toy run: gankit eval RUN scores its mode coverage")
        yield x


def _scores(stats: RunningStats, feats: torch.Tensor, logits: torch.Tensor, ref: dict,
            names: Iterable[str] = DEFAULT_METRICS, labels: torch.Tensor | None = None) -> dict[str, float]:
    """The evaluator metrics `names` of one image set against the test-split reference; `labels`:
    the class each image should show (a conditional G's, or real images' own)."""
    embedded, out = Embedded(stats, feats, logits.softmax(dim=1), ref, labels), {}
    for name in names:
        out.update(METRICS[name].score(embedded))
    return out


# ---------------------------------------------------------------- the real side, cached

def _evaluator_reference(ev: Evaluator, dataset: str, x_test: torch.Tensor, x_train: torch.Tensor,
                         y_train: torch.Tensor, cache: Path, progress: bool) -> dict:
    """Features, mean/cov and k-NN radii of the real test images, plus every floor (the train images
    and their labels scored against them), from the cache or computed. The cache file is keyed, like
    the Inception one, by the exact images and labels (a sha1 of their bytes): another copy of the
    dataset under the same name (--data-dir) gets its own statistics."""
    n = len(x_test)
    h = _sha1(x_test, x_train, y_train)
    path = cache / f"{dataset}-evaluator-{ev.sha256[:16]}-n{n}-{h[:12]}.pt"
    key = {"format": CACHE_FORMAT, "dataset": dataset, "evaluator_sha256": ev.sha256, "num_samples": n, "k": K_NEAREST,
           "images_sha1": h}
    ref = _read_cache(path, key, ("features", "mu", "sigma", "radii", "floor"))
    if ref is not None:
        return ref
    if progress:
        print(f"evaluate: real statistics of {dataset} ({n} test + {n} train images) -> {path}", file=sys.stderr)
    f_test, _ = ev.features_and_logits(datasets.to_float(x_test))
    f_train, logits_train = ev.features_and_logits(datasets.to_float(x_train))
    mu, sigma = RunningStats().update(f_test).compute()
    ref = {**key, "features": f_test, "mu": mu, "sigma": sigma, "radii": knn_radii(f_test, K_NEAREST)}
    ref["floor"] = _scores(RunningStats().update(f_train), f_train, logits_train, ref,
                           [n for n, m in METRICS.items() if m.needs == "evaluator"], labels=y_train)
    _write_cache(ref, path)
    return ref


def _inception_reference(dataset: str, x: dict[str, torch.Tensor], h: str, n: int, device: torch.device,
                         cache: Path, progress: bool) -> dict:
    """Inception mean/cov of the real images x["test"] and the train-vs-test FID floor (x["train"]),
    or of a folder's images x["folder"] (no floor), from the cache or computed.

    The cache file is keyed by the exact images (h, the sha1 of their bytes: _sha1(*x.values())), so a changed dataset file,
    folder or subset is recomputed, and by the precision of the features (bf16 where it is native);
    a folder's by those alone, so the same images named by another path share it."""
    precision = inception_precision(device)
    folder = "folder" in x
    n_real = len(x["folder"]) if folder else n
    name = "folder" if folder else dataset
    path = cache / f"{name}-inception-{MODEL_SHA1[:12]}-{precision}-n{n_real}-{h[:12]}.pt"
    key = {"format": CACHE_FORMAT, "dataset": name, "inception_sha1": MODEL_SHA1, "precision": precision,
           **({"num_real": n_real} if folder else {"num_samples": n}), "images_sha1": h}
    what = f"{n_real} images" if folder else f"{n} test + {n} train images"
    ref = _read_cache(path, key, ("mu", "sigma", "floor"))
    if ref is not None:
        if progress:
            print(f"evaluate: Inception statistics of {dataset} ({what}) from {path}", file=sys.stderr)
        return ref
    if progress:
        print(f"evaluate: Inception statistics of {dataset} ({what}) -> {path}", file=sys.stderr)
    stats = {}
    for split in x:
        f = inception_features(datasets.to_float(x[split]), device, progress=progress, desc=f"inception {split}")
        stats[split] = RunningStats().update(f).compute()
    mu, sigma = stats["folder" if folder else "test"]
    floor = {} if folder else {"fid_inception": frechet_distance(*stats["train"], mu, sigma)}
    ref = {**key, "mu": mu, "sigma": sigma, "floor": floor}
    _write_cache(ref, path)
    return ref


def _sha1(*tensors: torch.Tensor) -> str:
    """A sha1 of the tensors' bytes, in order: what a cache of statistics of real images is keyed by."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.contiguous().numpy())
    return h.hexdigest()


def _read_cache(path: Path, key: dict, fields: tuple[str, ...]) -> dict | None:
    """The cached dict if it is readable and made for `key`; None (with a note if it was unusable) otherwise."""
    if not path.exists():
        return None
    try:
        ref = torch.load(path, map_location="cpu", weights_only=True)
        problem = None if isinstance(ref, dict) else "not a dict"
        problem = problem or next((f"{k} is {ref.get(k)!r}, not {v!r}" for k, v in key.items() if ref.get(k) != v), None)
        problem = problem or next((f"no {f}" for f in fields if f not in ref), None)
    except Exception as e:  # truncated zip, foreign pickle, ...
        problem = f"{type(e).__name__}: {str(e)[:100]}"
    if problem is None:
        return ref
    print(f"evaluate: ignoring the unusable cache file {path} ({problem}); recomputing it", file=sys.stderr)
    return None


def _write_cache(ref: dict, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_atomic(ref, path)  # temp file + rename: a crash never leaves half a cache file
    except (OSError, GankitError) as e:  # save_atomic names the file and the reason as a GankitError
        why = str(e).split(";")[0] if isinstance(e, GankitError) else f"{path}: cannot write ({e})"
        print(f"evaluate: could not write the cache file {why}; continuing without it", file=sys.stderr)
