"""Metrics of what a generator learned. One small file per metric."""

from gankit.metrics.toy import mode_coverage

__all__ = ["mode_coverage"]
