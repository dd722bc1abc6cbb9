"""Generation-based task metrics: exact match, accuracy, ROUGE-L and token F1 offline, and any
`evaluate` hub metric when the hub is reachable. See `registry` for how they are loaded."""

from harness.metrics.registry import (BUILTIN_METRICS, MetricError, check_metric_names, compute_metrics,
                                      example_scores,
                                      load_metric, metric_direction)

__all__ = ["BUILTIN_METRICS", "MetricError", "check_metric_names", "compute_metrics", "example_scores", "load_metric",
           "metric_direction"]
