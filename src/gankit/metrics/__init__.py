"""Metrics of what a generator learned. One small file per metric, in three layers (as StyleGAN3's
metrics/): a feature extractor (evaluator.py: a CNN per dataset; fid_inception.py: TF-Inception),
running statistics (stats.py), and the formulas (fid.py, inception_score.py, precision_recall.py,
modes.py; toy.py for 2-D mixtures). gankit.evaluate puts them together against a test split.

METRICS below is the one list of metrics: validation, the CLI's help, gankit.evaluate and the
trainer's set-up check read it. A metric in the evaluator's embedding is a formula file plus one row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from gankit.errors import GankitError
from gankit.metrics.conditional import conditional_accuracy
from gankit.metrics.evaluator import Evaluator, EvaluatorNet
from gankit.metrics.fid import frechet_distance
from gankit.metrics.inception_score import inception_score, is_splits
from gankit.metrics.modes import class_coverage
from gankit.metrics.precision_recall import knn_radii, precision_recall
from gankit.metrics.stats import RunningStats, mean_cov
from gankit.metrics.toy import mode_coverage

K_NEAREST = 3  # precision/recall neighbourhood size, as in Kynkäänniemi et al.


@dataclass
class Embedded:
    """An image set in the evaluator's embedding, and the test split's reference to score it against."""

    stats: RunningStats  # running mean/covariance of the features
    features: torch.Tensor  # (N, D)
    probs: torch.Tensor  # (N, K) class probabilities
    ref: dict  # the test split's mu, sigma, features, radii (gankit.evaluate caches it)
    labels: torch.Tensor | None = None  # the class each image should show (a conditional G's); None if none


@dataclass(frozen=True)
class Metric:
    name: str
    needs: str  # "evaluator": the dataset's CNN | "inception": TF-Inception | "classifier": a semi-supervised run's D
    keys: tuple[str, ...]  # what it writes; each also as KEY_floor, the score of real images (but accuracy's)
    doc: str
    score: Callable[[Embedded], dict[str, float]] | None = None  # the evaluator metrics' formula


def _fid(e: Embedded) -> dict[str, float]:  # sqrtm(sigma_fake sigma_real), StyleGAN3's order
    return {"fid": frechet_distance(*e.stats.compute(), e.ref["mu"], e.ref["sigma"])}


def _is(e: Embedded) -> dict[str, float]:
    score, std = inception_score(e.probs, num_splits=is_splits(len(e.probs)))
    return {"is": score, "is_std": std}


def _pr(e: Embedded) -> dict[str, float]:
    p, r = precision_recall(e.ref["features"], e.features, K_NEAREST, real_radii=e.ref["radii"])
    return {"precision": p, "recall": r}


def _modes(e: Embedded) -> dict[str, float]:
    c = class_coverage(e.probs)
    return {"modes": c["modes"], "modes_kl": c["modes_kl"]}


def _class_acc(e: Embedded) -> dict:
    if e.labels is None:
        raise GankitError("class_acc: needs a conditional generator (recipes cgan, acgan, cdcgan), whose samples have classes")
    c = conditional_accuracy(e.probs, e.labels)
    return {"class_acc": c["overall"], "class_acc_min": min(c["by_class"]), "class_acc_by_class": c["by_class"]}


METRICS = {m.name: m for m in [
    Metric("fid", "evaluator", ("fid",), "FID in the evaluator CNN's embedding (Heusel et al. 2017)", _fid),
    Metric("is", "evaluator", ("is", "is_std"), "Inception Score of the evaluator's p(y|x) (Salimans et al. 2016)", _is),
    Metric("pr", "evaluator", ("precision", "recall"), "improved precision and recall, k = 3 (Kynkäänniemi et al. "
           "2019)", _pr),
    Metric("modes", "evaluator", ("modes", "modes_kl"), "classes holding >= 1% of the samples, KL(histogram || "
           "uniform)", _modes),
    Metric("class_acc", "evaluator", ("class_acc", "class_acc_min", "class_acc_by_class"), "a conditional G: the "
           "share of its class-k samples that the evaluator classifies as k (overall, worst class, per class)",
           _class_acc),
    Metric("fid_inception", "inception", ("fid_inception",), "the standard FID with TF-Inception features (~0.1 s "
           "per image on a 2-core AVX2 CPU, seconds per 10k on a GPU)"),
    Metric("accuracy", "classifier", ("test_acc", "test_errors"), "a semi-supervised run's classifier on the whole "
           "test split"),
]}
DEFAULT_METRICS = ("fid", "is", "pr", "modes")


def check_metrics(names, dataset: str) -> None:
    """Load what the metrics `names` need for `dataset` (the evaluator CNN, the Inception file), so
    a missing file is one line before a run starts rather than at its first evaluation."""
    needs = {METRICS[n].needs for n in names}
    if "evaluator" in needs:
        Evaluator.load(dataset, "cpu")
    if "inception" in needs:
        from gankit.metrics.fid_inception import model_path

        model_path()

__all__ = ["DEFAULT_METRICS", "METRICS", "Embedded", "Evaluator", "EvaluatorNet", "Metric", "RunningStats",
           "class_coverage", "frechet_distance", "inception_score", "is_splits", "knn_radii", "mean_cov",
           "mode_coverage", "precision_recall"]
