"""``evaluate`` modules shipped inside svp_hf, loaded by path (Hub metric scripts are out of reach offline).

>>> import evaluate, svp_hf.publish.metrics
>>> agreement = evaluate.load(svp_hf.publish.metrics.metric_path("rank_agreement"))
>>> agreement.compute(predictions=[0.1, 0.4, 0.3], references=[1, 3, 2], k=1)
{'spearman': 1.0, 'kendall': 1.0, 'top_k_overlap': 1.0}
"""

from __future__ import annotations

import os
from typing import List

from ...errors import SVPConfigError

METRICS_DIR = os.path.dirname(os.path.abspath(__file__))


def list_metrics() -> List[str]:
    """Names of the metric modules shipped with svp_hf."""
    return sorted(
        name for name in os.listdir(METRICS_DIR) if os.path.isfile(os.path.join(METRICS_DIR, name, f"{name}.py"))
    )


def metric_path(name: str) -> str:
    """The folder of a shipped metric module, for ``evaluate.load(path)``."""
    if name not in list_metrics():
        raise SVPConfigError(f"unknown svp_hf metric {name!r}; available: {', '.join(list_metrics())}")
    return os.path.join(METRICS_DIR, name)


def load_metric(name: str, **kwargs):
    """``evaluate.load`` of a shipped metric module (works offline)."""
    import evaluate

    return evaluate.load(metric_path(name), **kwargs)


__all__ = ["METRICS_DIR", "list_metrics", "metric_path", "load_metric"]
