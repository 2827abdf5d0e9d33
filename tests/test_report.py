"""The report and its plots (svp_hf.publish.report)."""

import os

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.lines import Line2D

from svp_hf.publish import report
from svp_hf.publish.report import ReportInputs, selection_cutoff, write_plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_rounds_plot_skips_runs_without_rounds(tmp_path):
    from svp_hf.publish.report import ReportInputs, plot_rounds

    assert plot_rounds(ReportInputs({"job": "coreset", "method": "entropy"}), str(tmp_path / "r.png")) is None
    rounds = {
        "proxy": [{"round": 1, "train_size": 10, "labelled_size": 20, "selection_seconds": 1.0, "accuracy": None}]
    }
    caption = plot_rounds(ReportInputs({"job": "active", "rounds": rounds}), str(tmp_path / "r.png"))
    assert caption and "selector accuracy" not in caption and (tmp_path / "r.png").stat().st_size > 0


def test_report_and_plots_are_written(run):
    out, metrics, _ = run
    report = (out / "report.md").read_text()
    plots = sorted(os.listdir(out / "dataset" / "plots"))
    assert plots == ["class_counts.png", "learning_curves.png", "proxy_vs_target.png", "score_histogram.png"]
    from PIL import Image

    for name in plots:
        path = out / "dataset" / "plots" / name
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000
        with Image.open(path) as image:
            assert min(image.size) > 100
        assert f"(dataset/plots/{name})" in report
    # the card carries the same report
    card_text = DatasetCard.load(out / "dataset" / "README.md").text
    assert report.split("## Source", 1)[1].replace("dataset/plots/", "plots/") in card_text


NAMES = [f"class_{i}" for i in range(10)]


@pytest.fixture
def figures(monkeypatch):
    """Every Figure the plots draw, kept to inspect after they are saved."""
    drawn = []
    for name in ("_figure", "_grid"):
        real = getattr(report, name)

        def keep(*args, _real=real, **kwargs):
            fig, axes = _real(*args, **kwargs)
            drawn.append((fig, axes))
            return fig, axes

        monkeypatch.setattr(report, name, keep)
    return drawn


def scores_table(n=500):
    rng = np.random.default_rng(0)
    return datasets.Dataset.from_dict(
        {
            "svp_index": list(range(n)),
            "label": rng.integers(0, 10, n).tolist(),
            "entropy": rng.random(n).tolist(),
            "margin": rng.random(n).tolist(),
        }
    )


def metrics(**extra):
    full = {n: 100 for n in NAMES}  # every bar as tall as the axes: no corner is free for a legend inside them
    return {
        "method": "entropy",
        "n_selected": 150,
        "strategy": "top",
        "selected_strategy": "top",
        "total_per_class": full,
        "selected_per_class": dict(full),
        **extra,
    }


def test_class_counts_legend_beside_the_bars_and_an_x_label(tmp_path, figures):
    write_plots(str(tmp_path), ReportInputs(metrics()))
    ((fig, (ax,)),) = figures
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    legend = ax.get_legend().get_window_extent(renderer)
    bars = [p.get_window_extent(renderer) for p in ax.patches]
    assert len(bars) == 20 and not [b for b in bars if legend.overlaps(b)]
    assert ax.get_xlabel() == "class"


def test_score_histogram_marks_the_cut_off(tmp_path, figures):
    scores = scores_table()
    write_plots(str(tmp_path), ReportInputs(metrics(), scores))
    histogram_axes = figures[-1][1]
    entropy, margin = histogram_axes
    lines = [line for line in entropy.get_lines() if isinstance(line, Line2D) and "cut-off" in line.get_label()]
    assert len(lines) == 1
    expected = np.sort(scores["entropy"])[::-1][149]  # entropy keeps the highest: the 150th highest is the last kept
    assert lines[0].get_xdata()[0] == pytest.approx(expected)
    assert "kept rows score ≥" in lines[0].get_label()
    kept = np.asarray(scores["entropy"]) >= lines[0].get_xdata()[0]
    assert kept.sum() == 150
    assert not [line for line in margin.get_lines() if "cut-off" in line.get_label()]  # not the selection's method


def test_selection_cutoff_direction_and_when_there_is_none():
    values = np.arange(10, dtype=float)
    assert selection_cutoff(metrics(n_selected=3), "entropy", values) == (7.0, True)
    assert selection_cutoff(metrics(n_selected=3, method="margin"), "margin", values) == (
        2.0,
        False,
    )  # margin keeps lowest
    assert selection_cutoff(metrics(n_selected=3, selected_strategy="bottom"), "entropy", values) == (2.0, False)
    assert selection_cutoff(metrics(n_selected=3, selected_strategy="random"), "entropy", values) is None
    assert selection_cutoff(metrics(n_selected=3, class_balanced=True), "entropy", values) is None
    assert selection_cutoff(metrics(n_selected=10), "entropy", values) is None  # nothing dropped
