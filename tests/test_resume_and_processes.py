"""End to end in subprocesses: a killed run resumes to the uninterrupted run's outputs, and two gloo processes
(``accelerate launch --multi_gpu --num_processes 2`` on this GPU-less machine) score like one."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import datasets
import numpy as np
import pandas as pd
import pytest

from svp_hf.checkpoint import ShardStore

from .conftest import REPO

pytestmark = pytest.mark.slow

TINY = ["--strategy", "top", "--max_train_samples", "301", "--max_eval_samples", "50", "--batch_size", "32", "--target", "resnet20", "--target_epochs", "1"]


def cli(output_dir, *extra, launcher=(sys.executable, "-m")):
    return [*launcher, "svp_hf.coreset", str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(output_dir), *TINY, *extra]


def run(cmd):
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def kill_when(cmd, ready, sig, log):
    """Start `cmd`, send `sig` as soon as `ready()` holds; returns what the run logged."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 600
        while not ready():
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    return open(log).read()


def outputs(output_dir):
    metrics = json.loads((output_dir / "metrics.json").read_text())
    metrics.pop("timings")
    metrics.pop("command")
    data = datasets.load_dataset(str(output_dir / "dataset"))
    return metrics, pd.read_parquet(output_dir / "scores.parquet"), {s: data[s].to_pandas() for s in data}


def assert_same_outputs(a, b, exact=True):
    (ma, sa, da), (mb, sb, db) = outputs(a), outputs(b)
    assert ma == mb
    pd.testing.assert_frame_equal(sa, sb, check_exact=exact)
    assert da.keys() == db.keys()
    for split in da:
        pd.testing.assert_frame_equal(da[split], db[split])


def test_a_run_killed_in_training_then_in_scoring_resumes_to_the_same_outputs(tmp_path):
    extra = ["--proxy_epochs", "3", "--scoring_shard_size", "8"]
    run(cli(tmp_path / "straight", *extra))
    out = tmp_path / "resumed"
    checkpoints = out / "checkpoints"
    kill_when(cli(out, *extra), lambda: (checkpoints / "proxy" / "epoch_0001").is_dir(), signal.SIGKILL, tmp_path / "1.log")
    assert not (out / "metrics.json").exists() and not (checkpoints / "scores").exists()
    # Finished shards as the run itself counts them: a shard still being written (its temporary file) is not one.
    finished = ShardStore(str(checkpoints / "scores")).finished
    log = kill_when(cli(out, *extra), lambda: len(finished()) >= 2, signal.SIGTERM, tmp_path / "2.log")
    assert "proxy resnet20: resumed from" in log and ("(epoch 1 of 3)" in log or "(epoch 2 of 3)" in log), log[-2000:]
    shards = len(finished())
    assert not (out / "metrics.json").exists() and 2 <= shards < 38, shards  # 301 rows in 38 shards of 8
    log = run(cli(out, *extra))
    assert "(epoch 3 of 3)" in log and f"{shards} finished shard(s) found" in log, log[-2000:]
    assert sorted(os.listdir(out)) == ["dataset", "metrics.json", "recipe.yaml", "report.md", "scores.parquet"]  # checkpoints gone once finished
    assert_same_outputs(tmp_path / "straight", out)


def test_the_hub_token_and_output_settings_stay_out_of_the_checkpoints():
    from svp_hf.config import parse_args
    from svp_hf.pipeline import run_settings

    base = [str(REPO / "recipes" / "quickstart.yaml")]
    publish = ["--push_to_hub", "true", "--hub_dataset_id", "alice/x", "--hub_token", "hf_secret", "--max_shard_size", "1MB"]
    plain, published = run_settings(*parse_args(base), num_processes=1), run_settings(*parse_args(base + publish), num_processes=1)
    assert plain == published and "hf_secret" not in json.dumps(published, default=str)  # resumable either way
    assert run_settings(*parse_args(base + ["--proxy_epochs", "2"]), num_processes=1) != plain


def test_resuming_with_other_settings_is_refused(tmp_path):
    out = tmp_path / "out"
    run(cli(out, "--proxy_epochs", "1", "--keep_checkpoints", "true", "--target", ""))
    for name in ("metrics.json", "scores.parquet", "report.md", "dataset"):  # an unfinished run, as far as the next one can tell
        shutil.rmtree(out / name) if name == "dataset" else os.remove(out / name)
    again = ["--proxy_epochs", "2", "--target", "", "--overwrite_output_dir", "false"]
    done = subprocess.run(cli(out, *again), cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "other settings (proxy_epochs)" in done.stderr, done.stderr[-2000:]
    run(cli(out, *again, "--resume", "false"))
    assert json.loads((out / "metrics.json").read_text())["proxy_epochs"] == 2


def test_two_processes_score_a_given_proxy_exactly_like_one(tmp_path):
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    two = (accelerate, "launch", "--multi_gpu", "--num_processes", "2", "--main_process_port", "29517", "-m")
    # One process trains the proxy (recording forgetting events) and keeps its checkpoint.
    run(cli(tmp_path / "one", "--proxy_epochs", "1", "--keep_checkpoints", "true", "--target", ""))
    proxy = str(tmp_path / "one" / "checkpoints" / "proxy")
    # 301 rows: neither the batch (32) nor 2 processes x 32 divide it, and neither does a shard of 100.
    given = ["--proxy_checkpoint", proxy, "--scoring_shard_size", "100", "--kcenter_pool_size", "120"]
    run(cli(tmp_path / "single", *given))
    run(cli(tmp_path / "double", *given, launcher=two))
    single, double = outputs(tmp_path / "single"), outputs(tmp_path / "double")
    assert double[0].pop("num_processes") == 2 and single[0].pop("num_processes") == 1
    assert single[0].pop("target_accuracy") is not None and double[0].pop("target_accuracy") is not None
    single[0].pop("target_history"), double[0].pop("target_history")  # DDP trains the target on other batches
    assert single[0] == double[0]
    scores = double[1]
    assert scores["svp_index"].tolist() == list(range(301))  # every example scored exactly once
    pd.testing.assert_frame_equal(single[1], scores, check_exact=True)
    assert single[2]["train"]["svp_index"].tolist() == double[2]["train"]["svp_index"].tolist()
    # The proxy's own scores, from the run that trained it, agree too (the checkpoint round-trips exactly).
    trained = pd.read_parquet(tmp_path / "one" / "scores.parquet")
    np.testing.assert_array_equal(trained["forgetting"], scores["forgetting"])
    np.testing.assert_array_equal(trained["least_confidence"], scores["least_confidence"])
