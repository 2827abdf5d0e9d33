"""Report stage: plots (PNG, matplotlib's object-oriented API on the Agg canvas, no display needed) and the Markdown
report a person reads, written into ``output_dir/report.md`` and into the dataset card.

Each plot is one function registered with :func:`register_plot`; it draws what it can from a :class:`ReportInputs`
and returns ``None`` when its inputs are absent (no target scores, no learning curve), so a new plot is one
decorated function.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from .data import INDEX_COLUMN
from .registry import Registry

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@dataclass
class ReportInputs:
    """What a report is drawn from: the run's metrics and, when available, the score tables."""

    metrics: Dict[str, Any]
    scores: Optional[Any] = None  # a score Dataset: svp_index, label, one column per method
    target_scores: Optional[Any] = None  # the same, scored by the target trained on the full split

    def methods(self) -> List[str]:
        if self.scores is None:
            return []
        return [c for c in self.scores.column_names if c not in (INDEX_COLUMN, "label")]


@dataclass(frozen=True)
class ReportFigure:
    name: str
    filename: str
    title: str
    caption: str


PlotFn = Callable[[ReportInputs, str], Optional[str]]
PLOTS: Registry[PlotFn] = Registry("report plot")


def register_plot(name: str):
    """Register ``fn(inputs, path) -> caption or None``: draw into the PNG at `path`, or return None to skip."""
    return PLOTS.register(name)


def _figure(n_panels: int = 1, width: float = 4.0, height: float = 3.2):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def _grid(n: int, cols: int = 3, width: float = 3.6, height: float = 2.8):
    from matplotlib.figure import Figure

    rows = int(np.ceil(n / cols))
    cols = min(cols, n)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, list(axes[:n])


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


@register_plot("score_histogram")
def plot_score_histograms(inputs: ReportInputs, path: str) -> Optional[str]:
    methods = inputs.methods()
    if not methods:
        return None
    fig, axes = _grid(len(methods))
    for ax, method in zip(axes, methods):
        values = np.asarray(inputs.scores[method], dtype=np.float64)
        finite = _finite(values)
        ax.hist(finite, bins=min(50, max(5, int(np.sqrt(max(finite.size, 1))))), color="tab:blue")
        n_inf = int(np.isinf(values).sum())
        ax.set_title(method + (f" ({n_inf} infinite, not shown)" if n_inf else ""), fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("examples")
    fig.savefig(path, dpi=100)
    return "Distribution of every scored method's per-example scores over the whole training split."


@register_plot("class_counts")
def plot_class_counts(inputs: ReportInputs, path: str) -> Optional[str]:
    total = inputs.metrics.get("total_per_class") or {}
    kept = inputs.metrics.get("selected_per_class") or {}
    if not total:
        return None
    names = list(total)
    x = np.arange(len(names))
    fig, (ax,) = _figure(width=max(4.0, 0.45 * len(names) + 2))
    ax.bar(x - 0.2, [total[n] for n in names], width=0.4, label="original", color="tab:gray")
    ax.bar(x + 0.2, [kept.get(n, 0) for n in names], width=0.4, label="kept", color="tab:blue")
    ax.set_xticks(x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center", fontsize=8)
    ax.set_ylabel("rows")
    ax.set_title("rows per class: original vs kept", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    return "Rows per class in the original training split and in the kept subset."


@register_plot("proxy_vs_target")
def plot_proxy_vs_target(inputs: ReportInputs, path: str) -> Optional[str]:
    agreement = inputs.metrics.get("rank_agreement") or {}
    if inputs.scores is None or inputs.target_scores is None or not agreement:
        return None
    proxy_by_index = _by_index(inputs.scores)
    target_by_index = _by_index(inputs.target_scores)
    methods = list(agreement)
    fig, axes = _grid(len(methods))
    for ax, method in zip(axes, methods):
        p, t = proxy_by_index[method], target_by_index[method]
        both = np.isfinite(p) & np.isfinite(t)
        ax.scatter(t[both], p[both], s=4, alpha=0.4, color="tab:blue", linewidths=0)
        stats = agreement[method]
        hidden = int((~both).sum())
        ax.set_title(
            f"{method}: Spearman {stats['spearman']:.3f}, Kendall {stats['kendall']:.3f}\n"
            f"top-{stats['k']} overlap {stats['top_k_overlap']:.3f}" + (f" ({hidden} infinite not shown)" if hidden else ""),
            fontsize=8,
        )
        ax.set_xlabel("target score")
        ax.set_ylabel("proxy score")
    fig.savefig(path, dpi=100)
    return "Each example's proxy score against the score of the target trained on the full split, with rank agreement."


def _by_index(scores) -> Dict[str, np.ndarray]:
    order = np.argsort(np.asarray(scores[INDEX_COLUMN], dtype=np.int64))
    return {c: np.asarray(scores[c], dtype=np.float64)[order] for c in scores.column_names if c not in (INDEX_COLUMN, "label")}


@register_plot("learning_curves")
def plot_learning_curves(inputs: ReportInputs, path: str) -> Optional[str]:
    curves = {
        name: inputs.metrics.get(key)
        for name, key in (("proxy", "proxy_history"), ("target (kept rows)", "target_history"))
        if inputs.metrics.get(key)
    }
    if "proxy" not in curves:
        return None
    from matplotlib.ticker import MaxNLocator

    fig, (loss_ax, acc_ax) = _figure(2)
    for name, history in curves.items():
        epochs = [h["epoch"] for h in history]
        loss_ax.plot(epochs, [h["loss"] for h in history], marker="o", label=name)
        acc_ax.plot(epochs, [h["accuracy"] for h in history], marker="o", label=name)
    for ax, what in ((loss_ax, "training loss"), (acc_ax, "training accuracy")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(what, fontsize=9)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    return "Training loss and accuracy per epoch of the proxy (and of the target, when one was trained)."


def write_plots(folder: str, inputs: ReportInputs) -> List[ReportFigure]:
    """Draw every registered plot that applies into `folder`/<name>.png; return what was drawn."""
    os.makedirs(folder, exist_ok=True)
    figures = []
    for name, plot in PLOTS.items():
        filename = f"{name}.png"
        caption = plot(inputs, os.path.join(folder, filename))
        if caption is not None:
            figures.append(ReportFigure(name, filename, name.replace("_", " "), caption))
    return figures


def score_statistics(scores) -> Dict[str, Dict[str, float]]:
    """Per method: rows, infinite rows, and min / mean / median / std / max of the finite scores."""
    stats = {}
    for method in [c for c in scores.column_names if c not in (INDEX_COLUMN, "label")]:
        values = np.asarray(scores[method], dtype=np.float64)
        finite = _finite(values)
        summary = {"count": int(values.size), "infinite": int(np.isinf(values).sum())}
        for key, fn in (("min", np.min), ("mean", np.mean), ("median", np.median), ("std", np.std), ("max", np.max)):
            summary[key] = float(fn(finite)) if finite.size else None
        stats[method] = summary
    return stats


def _fmt(value, digits: int = 4) -> str:
    import jinja2

    if value is None or isinstance(value, jinja2.Undefined):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def render_report(metrics: Dict[str, Any], figures: List[ReportFigure], image_dir: str, heading_level: int = 2) -> str:
    """The report's Markdown (provenance, selection, models, scores, classes, timings, figures, command)."""
    import jinja2

    with open(os.path.join(TEMPLATES_DIR, "report.md"), encoding="utf-8") as f:
        template = jinja2.Template(f.read(), trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    classes = [
        {"name": name, "total": total, "kept": (metrics.get("selected_per_class") or {}).get(name, 0)}
        for name, total in (metrics.get("total_per_class") or {}).items()
    ]
    return template.render(
        m=metrics,
        source=metrics.get("source") or {},
        classes=classes,
        figures=figures,
        image_dir=image_dir.rstrip("/") + "/" if image_dir else "",
        h="#" * heading_level,
        fmt=_fmt,
    )


__all__ = [
    "PLOTS",
    "register_plot",
    "ReportInputs",
    "ReportFigure",
    "write_plots",
    "score_statistics",
    "render_report",
]
