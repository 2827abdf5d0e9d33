"""The report and its plots (svp_hf.report)."""

import os

from huggingface_hub import DatasetCard

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_rounds_plot_skips_runs_without_rounds(tmp_path):
    from svp_hf.report import ReportInputs, plot_rounds

    assert plot_rounds(ReportInputs({"job": "coreset", "method": "entropy"}), str(tmp_path / "r.png")) is None
    rounds = {"proxy": [{"round": 1, "train_size": 10, "labelled_size": 20, "selection_seconds": 1.0, "accuracy": None}]}
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
