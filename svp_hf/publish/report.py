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
import yaml

from ..data.columns import INDEX_COLUMN, column_values
from ..record import RunRecord, is_active
from ..registry import Registry
from ..selection.methods import get_method

TEMPLATES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")


@dataclass
class ReportInputs:
    """What a report is drawn from: the run's metrics and, when available, the score tables."""

    metrics: RunRecord
    scores: Optional[Any] = None  # a score Dataset: svp_index, label, one column per method
    target_scores: Optional[Any] = None  # the same, scored by the target trained on the full split

    @property
    def active(self) -> bool:
        """Whether the run is an active-learning one (its score table holds `<loop>_round`, `<loop>_score`)."""
        return is_active(self.metrics)

    def methods(self) -> List[str]:
        if self.scores is None:
            return []
        return [c for c in self.scores.column_names if c not in (INDEX_COLUMN, "label")]

    def score_columns(self) -> Dict[str, str]:
        """The score columns worth a histogram, with their titles: every method of a core-set run; each loop's
        selection scores of an active-learning run (its round columns are no scores)."""
        if not self.active:
            return {m: m for m in self.methods()}
        suffix = "_score"
        return {c: f"{c[: -len(suffix)]} loop" for c in self.methods() if c.endswith(suffix)}


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
    columns = inputs.score_columns()
    if not columns:
        return None
    fig, axes = _grid(len(columns))
    for ax, (column, title) in zip(axes, columns.items()):
        values = np.asarray(inputs.scores[column], dtype=np.float64)
        values = values[~np.isnan(values)]  # an active loop's unlabelled rows and initial set have no score
        finite = _finite(values)
        ax.hist(finite, bins=min(50, max(5, int(np.sqrt(max(finite.size, 1))))), color="tab:blue")
        n_inf = int(np.isinf(values).sum())
        ax.set_title(title + (f" ({n_inf} infinite, not shown)" if n_inf else ""), fontsize=9)
        ax.set_xlabel("score")
        ax.set_ylabel("examples")
        cut = selection_cutoff(inputs.metrics, column, values) if not inputs.active else None
        if cut is not None:
            threshold, keeps_above = cut
            ax.axvline(
                threshold,
                color="tab:red",
                linestyle="--",
                linewidth=1.2,
                label=f"cut-off {threshold:.4g}: kept rows score {'≥' if keeps_above else '≤'} it",
            )
            ax.legend(
                fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False
            )  # below the axis label
    fig.savefig(path, dpi=100)
    if inputs.active:
        return (
            f"Distribution of the `{inputs.metrics.get('method')}` scores of the rows each loop labelled, each scored by "
            "that round's selector (the random initial set has none)."
        )
    cut = (
        "; the dashed line marks the selection's cut-off between kept and dropped rows"
        if any(selection_cutoff(inputs.metrics, c, np.asarray(inputs.scores[c], dtype=np.float64)) for c in columns)
        else ""
    )
    return f"Distribution of every scored method's per-example scores over the training rows{cut}."


def selection_cutoff(metrics: RunRecord, method: str, values: np.ndarray):
    """``(threshold, keeps_above)`` between the kept and dropped rows of `method`'s scores `values`, when the selection
    was a single cut over them (the selection method, strategy ``top`` or ``bottom``, not class-balanced, some rows
    dropped); else ``None``. The threshold is the score of the last row kept."""

    strategy = metrics.get("selected_strategy") or metrics.get("strategy")
    n_keep = metrics.get("n_selected")
    if (
        method != metrics.get("method")
        or strategy not in ("top", "bottom")
        or metrics.get("class_balanced")
        or n_keep is None
    ):
        return None
    values = np.asarray(values, dtype=np.float64)
    if not 0 < int(n_keep) < len(values):
        return None
    try:
        descending = get_method(method).descending
    except Exception:  # a method no longer registered: no direction to draw
        return None
    keeps_above = descending if strategy == "top" else not descending
    ordered = np.sort(values)[::-1] if keeps_above else np.sort(values)
    threshold = float(ordered[int(n_keep) - 1])
    return (threshold, keeps_above) if np.isfinite(threshold) else None


_BAR_COLORS = ("tab:gray", "tab:blue", "tab:orange", "tab:green")


def class_series(metrics: RunRecord) -> Dict[str, Dict[str, int]]:
    """Rows per class to compare, by series: original and kept (core-set), or the pool and each loop's labelled set
    (active learning); empty when the per-class counts were not recorded."""
    total = metrics.get("total_per_class") or {}
    if not total:
        return {}
    if is_active(metrics):
        labelled = metrics.get("labelled_per_class") or {}
        return {"pool": total, **{f"labelled ({role} selecting)": counts for role, counts in labelled.items()}}
    return {"original": total, "kept": metrics.get("selected_per_class") or {}}


@register_plot("class_counts")
def plot_class_counts(inputs: ReportInputs, path: str) -> Optional[str]:
    series = class_series(inputs.metrics)
    if not series:
        return None
    names = list(next(iter(series.values())))
    x = np.arange(len(names))
    width = 0.8 / len(series)
    fig, (ax,) = _figure(width=max(4.0, 0.225 * len(series) * len(names) + 2))
    for i, ((label, counts), color) in enumerate(zip(series.items(), _BAR_COLORS)):
        ax.bar(
            x + (i - (len(series) - 1) / 2) * width,
            [counts.get(n, 0) for n in names],
            width=width,
            label=label,
            color=color,
        )
    ax.set_xticks(
        x, names, rotation=45 if len(names) > 6 else 0, ha="right" if len(names) > 6 else "center", fontsize=8
    )
    ax.set_xlabel("class")
    ax.set_ylabel("rows")
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0
    )  # beside the bars, never on them
    if inputs.active:
        ax.set_title("rows per class: pool vs labelled", fontsize=9)
        fig.savefig(path, dpi=100)
        return "Rows per class in the pool (the training split) and in each loop's final labelled set."
    ax.set_title("rows per class: original vs kept", fontsize=9)
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
            f"top-{stats['k']} overlap {stats['top_k_overlap']:.3f}"
            + (f" ({hidden} infinite not shown)" if hidden else ""),
            fontsize=8,
        )
        ax.set_xlabel("target score")
        ax.set_ylabel("proxy score")
    fig.savefig(path, dpi=100)
    return "Each example's proxy score against the score of the target trained on the full split, with rank agreement."


def _by_index(scores) -> Dict[str, np.ndarray]:
    order = np.argsort(column_values(scores, INDEX_COLUMN, np.int64))
    return {
        c: column_values(scores, c, np.float64)[order] for c in scores.column_names if c not in (INDEX_COLUMN, "label")
    }


def learning_curves(metrics: RunRecord) -> Dict[str, List[Dict[str, float]]]:
    """Per-epoch training histories to plot, by curve name: the proxy's (a core-set run has none without it) and
    the target's; for active learning, the target's on each loop's labelled set."""
    if is_active(metrics):
        histories = metrics.get("target_history") or {}
        return {f"target ({role}-selected rows)": h for role, h in histories.items() if h}
    curves = {
        name: metrics.get(key)
        for name, key in (("proxy", "proxy_history"), ("target (kept rows)", "target_history"))
        if metrics.get(key)
    }
    return curves if "proxy" in curves else {}


@register_plot("learning_curves")
def plot_learning_curves(inputs: ReportInputs, path: str) -> Optional[str]:
    curves = learning_curves(inputs.metrics)
    if not curves:
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
    if inputs.active:
        return "Training loss and accuracy per epoch of the target trained on each loop's final labelled set."
    return "Training loss and accuracy per epoch of the proxy (and of the target, when one was trained)."


def _loop_label(metrics: RunRecord, role: str) -> str:
    model = (metrics.get("selector_models") or {}).get(role) or metrics.get(role)
    return f"{role} selecting" + (f" ({model})" if model else "")


@register_plot("rounds")
def plot_rounds(inputs: ReportInputs, path: str) -> Optional[str]:
    """Active learning: cumulative selection seconds against labelled-set size per loop, and the selector's accuracy
    each round when it was evaluated."""
    loops = {role: records for role, records in (inputs.metrics.get("rounds") or {}).items() if records}
    if not loops:
        return None
    has_accuracy = any(r.get("accuracy") is not None for records in loops.values() for r in records)
    fig, axes = _figure(2 if has_accuracy else 1)
    for role, records in loops.items():
        label = _loop_label(inputs.metrics, role)
        # From the initial set at 0 seconds to each round's labelled size at the seconds spent selecting so far.
        sizes = [records[0]["train_size"]] + [r["labelled_size"] for r in records]
        seconds = np.cumsum([0.0] + [r["selection_seconds"] for r in records])
        axes[0].plot(sizes, seconds, marker="o", label=label)
        evaluated = [(r["train_size"], r["accuracy"]) for r in records if r.get("accuracy") is not None]
        if has_accuracy and evaluated:
            axes[1].plot(*zip(*evaluated), marker="o", label=label)
    axes[0].set_xlabel("labelled rows")
    axes[0].set_ylabel("seconds")
    axes[0].set_title("cumulative selection seconds", fontsize=9)
    if has_accuracy:
        axes[1].set_xlabel("labelled rows the selector trained on")
        axes[1].set_ylabel("accuracy")
        axes[1].set_title("selector accuracy on the evaluation split", fontsize=9)
    for ax in axes:
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=100)
    return (
        "Cumulative data-selection seconds (selector training plus scoring) against the labelled-set size after each "
        "round, per loop" + (", and each round's selector accuracy on the evaluation split." if has_accuracy else ".")
    )


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
        values = column_values(scores, method, np.float64)
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


def _training(settings: Optional[Dict[str, Any]]) -> str:
    """How a model was trained, in a few words: optimizer, peak learning rate, schedule, weight decay, batch size."""
    if not settings:
        return "-"
    optimizer = settings.get("optimizer", "sgd")
    if optimizer == "sgd" and settings.get("momentum") is not None:
        optimizer = f"sgd (momentum {_fmt(settings['momentum'])})"
    return (
        f"{optimizer}, lr {_fmt(settings.get('learning_rate'))}, {settings.get('lr_schedule', '-')} schedule, "
        f"weight decay {_fmt(settings.get('weight_decay'))}, batch {_fmt(settings.get('batch_size'))}"
    )


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def selector_loops(metrics: RunRecord) -> List[Dict[str, Any]]:
    """An active-learning run's loops for the report, in the order they ran: role, selecting model, rounds (each with
    its cumulative selection seconds), final labelled size, and the target trained on the loop's labelled set."""
    loops = []
    for role, records in (metrics.get("rounds") or {}).items():
        cumulative = np.cumsum([r["selection_seconds"] for r in records]).tolist()
        loops.append(
            {
                "role": role,
                "model": (metrics.get("selector_models") or {}).get(role) or metrics.get(role),
                "rounds": [dict(r, cumulative_seconds=c) for r, c in zip(records, cumulative)],
                "has_accuracy": any(r.get("accuracy") is not None for r in records),
                "labelled": records[-1]["labelled_size"] if records else None,
                "selection_seconds": (metrics.get("selection_seconds") or {}).get(role),
                "target_accuracy": (metrics.get("target_accuracy") or {}).get(role),
                "target_training_seconds": (metrics.get("target_training_seconds") or {}).get(role),
            }
        )
    return loops


def _class_rows(metrics: RunRecord) -> List[Dict[str, Any]]:
    """Per class: its rows in the training split and, for a core-set run, the kept rows; for active learning, the
    rows each loop labelled (in loop order)."""
    total = metrics.get("total_per_class") or {}
    if is_active(metrics):
        labelled = (metrics.get("labelled_per_class") or {}).values()
        return [{"name": n, "total": t, "labelled": [c.get(n, 0) for c in labelled]} for n, t in total.items()]
    kept = metrics.get("selected_per_class") or {}
    return [{"name": name, "total": t, "kept": kept.get(name, 0)} for name, t in total.items()]


def render_report(metrics: RunRecord, figures: List[ReportFigure], image_dir: str, heading_level: int = 2) -> str:
    """The report's Markdown (provenance, selection or the active-learning schedule and rounds, models, results,
    scores, classes, timings, figures, command)."""
    import jinja2

    with open(os.path.join(TEMPLATES_DIR, "report.md"), encoding="utf-8") as f:
        template = jinja2.Template(f.read(), trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    return template.render(
        m=metrics,
        active=is_active(metrics),
        source=metrics.get("source") or {},
        classes=_class_rows(metrics),
        loops=selector_loops(metrics),
        figures=figures,
        image_dir=image_dir.rstrip("/") + "/" if image_dir else "",
        h="#" * heading_level,
        fmt=_fmt,
        seconds=_seconds,
        training=_training,
        recipe_yaml=yaml.safe_dump(metrics["recipe"], sort_keys=False, allow_unicode=True)
        if metrics.get("recipe")
        else None,
    )


__all__ = [
    "PLOTS",
    "register_plot",
    "ReportInputs",
    "ReportFigure",
    "write_plots",
    "is_active",
    "class_series",
    "learning_curves",
    "selector_loops",
    "score_statistics",
    "selection_cutoff",
    "render_report",
]
