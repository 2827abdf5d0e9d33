"""Run settings kept with the checkpoints (svp_hf.engine.checkpoint): no token inside, resuming with other settings refused."""

import json
import os
import shutil
import subprocess

import pytest

from .conftest import REPO, cli
from .conftest import run_command as run


@pytest.mark.slow
def test_the_hub_token_and_output_settings_stay_out_of_the_checkpoints():
    from svp_hf.config import parse_args
    from svp_hf.jobs.pipeline import run_settings

    base = [str(REPO / "recipes" / "quickstart.yaml")]
    publish = [
        "--push_to_hub",
        "true",
        "--hub_dataset_id",
        "alice/x",
        "--hub_token",
        "hf_secret",
        "--max_shard_size",
        "1MB",
    ]
    plain, published = (
        run_settings(*parse_args(base), num_processes=1),
        run_settings(*parse_args(base + publish), num_processes=1),
    )
    assert plain == published and "hf_secret" not in json.dumps(published, default=str)  # resumable either way
    assert run_settings(*parse_args(base + ["--proxy_epochs", "5"]), num_processes=1) != plain


@pytest.mark.slow
def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "out"
    run(cli(out, "--proxy_epochs", "1", "--keep_checkpoints", "true", "--target", ""))
    for name in (
        "metrics.json",
        "scores.parquet",
        "report.md",
        "recipe.yaml",
        "dataset",
    ):  # an unfinished run, as far as the next one can tell
        shutil.rmtree(out / name) if name == "dataset" else os.remove(out / name)
    again = ["--proxy_epochs", "2", "--target", "", "--overwrite_output_dir", "false"]
    done = subprocess.run(cli(out, *again), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "other settings (proxy_epochs)" in done.stderr, done.stderr[-2000:]
    run(cli(out, *again, "--resume", "false"))
    assert json.loads((out / "metrics.json").read_text())["proxy_epochs"] == 2
