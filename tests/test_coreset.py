"""The core-set job (python -m svp_hf.coreset): how it treats rows whose image cannot be decoded."""

import json
import os

import pytest

from svp_hf import coreset
from svp_hf.config import parse_args
from svp_hf.errors import SVPRuntimeError

from .conftest import REPO

BAD_ROWS = (3, 17)


@pytest.fixture
def digits_with_broken_images(digits, tmp_path):
    """The digits as parquet files, two training rows of which hold bytes that are not an image."""
    import datasets

    train = digits["train"].select(range(120)).cast_column("image", datasets.Image(decode=False))

    def corrupt(row, i):
        if i in BAD_ROWS:
            row["image"] = {"bytes": b"this is not an image", "path": None}
        return row

    train = train.map(corrupt, with_indices=True).cast_column("image", datasets.Image())
    train.to_parquet(str(tmp_path / "train.parquet"))
    digits["test"].select(range(40)).to_parquet(str(tmp_path / "test.parquet"))
    return {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}


def run(files, out, *extra):
    return coreset.run_coreset(*parse_args([
        str(REPO / "recipes" / "quickstart.yaml"), "--dataset_name", "parquet", "--data_files", json.dumps(files),
        "--output_dir", str(out), "--strategy", "top", "--proxy_epochs", "1", "--target_epochs", "1",
        "--score_methods", "forgetting", *extra,
    ]))


def test_an_undecodable_image_stops_the_run_before_training_naming_its_rows(digits_with_broken_images, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SVPRuntimeError) as err:
        run(digits_with_broken_images, out)
    message = str(err.value)
    assert "'image'" in message and "rows 3, 17" in message.replace("row(s)", "rows")
    assert "skip_undecodable" in message
    assert not os.path.exists(out / "checkpoints")  # nothing half-written
    assert not os.path.exists(out) or os.listdir(out) == []


def test_skip_undecodable_drops_those_rows_and_reports_them(digits_with_broken_images, tmp_path):
    out = tmp_path / "out"
    metrics = run(digits_with_broken_images, out, "--skip_undecodable", "true", "--target", "")
    assert metrics["skipped_undecodable"] == {"train": list(BAD_ROWS)}
    assert metrics["n_total"] == 120 - len(BAD_ROWS)
    written = json.loads((out / "metrics.json").read_text())
    assert written["skipped_undecodable"] == {"train": list(BAD_ROWS)}
    assert written["device"]["device"] == "cpu" and written["device"]["torch_compile"] is False


def test_streaming_scores_a_stream_with_a_trained_proxy_like_the_in_memory_data(digits, tmp_path):
    import datasets
    import numpy as np
    import pandas as pd

    import svp_hf

    train = digits["train"].select(range(150))
    train.to_parquet(str(tmp_path / "train.parquet"))
    files = json.dumps({"train": str(tmp_path / "train.parquet")})
    base = [str(REPO / "recipes" / "quickstart.yaml"), "--dataset_name", "parquet", "--data_files", files,
            "--eval_split", "", "--strategy", "top", "--proxy_epochs", "1", "--target", ""]
    coreset.run_coreset(*parse_args(base + ["--output_dir", str(tmp_path / "trained"), "--keep_checkpoints", "true"]))
    proxy = str(tmp_path / "trained" / "checkpoints" / "proxy")
    with pytest.raises(Exception, match="streaming: true needs a trained proxy_checkpoint"):
        coreset.run_coreset(*parse_args(base + ["--output_dir", str(tmp_path / "s0"), "--streaming", "true"]))
    metrics = coreset.run_coreset(*parse_args(base + [
        "--output_dir", str(tmp_path / "streamed"), "--streaming", "true", "--proxy_checkpoint", proxy,
        "--score_methods", "entropy", "--scoring_shard_size", "64", "--fraction", "0.2",
    ]))
    assert metrics["streaming"] and metrics["n_total"] == 150 and metrics["n_selected"] == 30
    streamed = pd.read_parquet(tmp_path / "streamed" / "scores.parquet")
    in_memory = svp_hf.score(
        datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train"),
        proxy="resnet20", methods=["least_confidence", "entropy"], proxy_checkpoint=proxy,
    ).to_pandas()
    np.testing.assert_allclose(streamed["least_confidence"], in_memory["least_confidence"], rtol=1e-5, atol=1e-6)
    selected = pd.read_parquet(tmp_path / "streamed" / "selected.parquet")
    top = np.argsort(-in_memory["least_confidence"].to_numpy(), kind="stable")[:30]
    assert sorted(selected["svp_index"]) == sorted(top.tolist())
    assert sorted(os.listdir(tmp_path / "streamed")) == ["metrics.json", "scores.parquet", "selected.parquet"]
