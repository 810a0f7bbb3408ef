"""Metrics of what a generator learned. One small file per metric, in three layers (as StyleGAN3's
metrics/): a feature extractor (evaluator.py: a CNN per dataset; fid_inception.py: TF-Inception),
running statistics (stats.py), and the formulas (fid.py, inception_score.py, precision_recall.py,
modes.py; toy.py for 2-D mixtures). gankit.evaluate puts them together against a test split."""

from gankit.metrics.evaluator import Evaluator, EvaluatorNet
from gankit.metrics.fid import frechet_distance
from gankit.metrics.inception_score import inception_score
from gankit.metrics.modes import class_coverage
from gankit.metrics.precision_recall import knn_radii, precision_recall
from gankit.metrics.stats import RunningStats, mean_cov
from gankit.metrics.toy import mode_coverage

__all__ = ["Evaluator", "EvaluatorNet", "RunningStats", "class_coverage", "frechet_distance", "inception_score",
           "knn_radii", "mean_cov", "mode_coverage", "precision_recall"]
