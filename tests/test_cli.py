import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest

from svp_hf import coreset
from svp_hf.output import write_run

from .conftest import REPO, shared_data

FAST = ["--strategy", "top", "--proxy_epochs", "1", "--target_epochs", "1", "--max_train_samples", "300", "--max_eval_samples", "100"]


def run_cli(tmp_path, *extra, name="out"):
    out = tmp_path / name
    metrics = coreset.main([str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), *FAST, *extra])
    return out, metrics


def test_quickstart_cli_writes_everything(tmp_path):
    out, metrics = run_cli(tmp_path, "--target", "resnet20")
    assert sorted(os.listdir(out)) == ["dataset", "metrics.json", "recipe.yaml", "report.md", "scores.parquet"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["n_total"] == 300 and written["n_selected"] == 150
    assert written["method"] == "least_confidence" and written["fraction"] == 0.5
    assert set(written["timings"]) == {"proxy_training", "scoring", "selection", "target_training", "total"}
    assert 0.0 <= written["target_accuracy"] <= 1.0 and 0.0 <= written["proxy_accuracy"] <= 1.0
    assert sum(written["selected_per_class"].values()) == 150

    loaded = datasets.load_dataset(str(out / "dataset"))
    assert set(loaded) == {"train", "test"}
    assert len(loaded["train"]) == 150 and len(loaded["test"]) == 100
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    assert isinstance(loaded["train"].features["label"], datasets.ClassLabel)
    assert loaded["train"]["svp_index"] == sorted(loaded["train"]["svp_index"])
    assert loaded["train"][0]["image"].size == (8, 8)

    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == ["svp_index", "label", "least_confidence", "entropy", "margin", "forgetting", "el2n", "kcenter", "random"]
    assert len(scores) == 300
    kept = scores.set_index("svp_index").loc[loaded["train"]["svp_index"], "least_confidence"].to_numpy()
    np.testing.assert_allclose(kept, loaded["train"]["svp_score"])


def test_cli_is_deterministic_and_overrides_win(tmp_path):
    _, a = run_cli(tmp_path, "--method", "entropy", "--fraction", "0.2", "--target", "", name="a")
    _, b = run_cli(tmp_path, "--method", "entropy", "--fraction", "0.2", "--target", "", name="b")
    assert a["n_selected"] == 60 and a["target_accuracy"] is None and "target_training" not in a["timings"]
    ia = datasets.load_dataset(str(tmp_path / "a" / "dataset"))["train"]["svp_index"]
    ib = datasets.load_dataset(str(tmp_path / "b" / "dataset"))["train"]["svp_index"]
    assert ia == ib


def test_score_with_target_trains_the_target_even_with_a_given_proxy_checkpoint(tmp_path):
    first, _ = run_cli(tmp_path, "--target", "", "--keep_checkpoints", "true", name="first")
    proxy = str(first / "checkpoints" / "proxy")
    out, metrics = run_cli(
        tmp_path, "--proxy_checkpoint", proxy, "--target", "resnet20", "--target_epochs", "2", "--score_with_target", "true", name="given"
    )
    # The proxy is the one given (its scores as the run that trained it wrote them); the target is trained anew.
    given, trained = pd.read_parquet(out / "scores.parquet"), pd.read_parquet(first / "scores.parquet")
    np.testing.assert_array_equal(given["least_confidence"], trained["least_confidence"])
    target = pd.read_parquet(out / "target_scores.parquet")
    assert not np.array_equal(target["least_confidence"], given["least_confidence"])
    assert metrics["rank_agreement"]["least_confidence"]["spearman"] < 1.0
    assert target["forgetting"].nunique() > 1  # forgetting events from the target's own training


def test_max_shard_size_writes_each_split_in_shards_that_load_back(tmp_path):
    out, _ = run_cli(tmp_path, "--target", "", "--max_shard_size", "4KB")
    files = sorted(os.listdir(out / "dataset" / "data"))
    train = [f for f in files if f.startswith("train-")]
    assert len(train) > 1 and train[-1].endswith(f"-of-{len(train):05d}.parquet")
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert len(loaded["train"]) == 150 and loaded["train"]["svp_index"] == sorted(loaded["train"]["svp_index"])
    assert len(loaded["test"]) == 100


def test_existing_result_is_not_overwritten(tmp_path, capsys):
    out, _ = run_cli(tmp_path, "--target", "")
    before = (out / "metrics.json").read_text()
    with pytest.raises(SystemExit) as err:
        coreset.main([str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), "--overwrite_output_dir", "false"])
    assert err.value.code == 2
    assert "already holds a result" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--method", "best"], "Unknown selection method 'best'"),
        (["--proxy", "nonexistent_net"], "unknown model 'nonexistent_net'"),
        (["--fraction", "1.5"], "fraction must be in (0, 1]"),
        (["--image_column", "pixels"], "image column 'pixels' not found"),
        (["--train_split", "validation"], "training split 'validation' not found"),
        (["--fraction", "0.0001"], "keeps no rows"),
        (["--strategy", "best"], "unknown strategy 'best'; available: auto, bottom, coverage, random, top"),
        (["--strategy", "coverage", "--coverage_beta", "1.0"], "coverage_beta must be in [0, 1), got 1.0"),
        (["--strategy", "coverage", "--coverage_beta", "0.6"], "leaves too few to keep fraction=0.5"),
        (["--strategy", "auto", "--max_train_samples", "60"], "strategy 'auto' holds out auto_holdout=0.1 of the 60"),
        (["--auto_holdout", "0.8"], "auto_holdout must be in (0, 0.5]"),
    ],
)
def test_bad_input_exits_with_a_clear_error_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        coreset.main([str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), *args])
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not (out / "dataset").exists()


def test_unknown_recipe_key_exits(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("dataset_name: builtin:digits\nproxy_epoch: 3\n")
    with pytest.raises(SystemExit):
        coreset.main([str(recipe)])
    assert "unknown recipe key(s) ['proxy_epoch']" in capsys.readouterr().err


def test_failed_write_leaves_no_half_written_dataset(tmp_path, tiny_digits, monkeypatch):
    train, test = tiny_digits
    out = tmp_path / "out"

    class Boom(RuntimeError):
        pass

    def broken_to_parquet(self, *a, **k):
        raise Boom("disk full")

    scores = datasets.Dataset.from_dict({"svp_index": [0]})
    monkeypatch.setattr(datasets.Dataset, "to_parquet", broken_to_parquet)
    with pytest.raises(Boom):
        write_run(str(out), splits={"train": train, "test": test}, scores=scores, metrics={})
    assert os.listdir(out) == []


def test_an_overwrite_killed_while_moving_files_into_place_leaves_no_stale_metrics(tmp_path, tiny_digits, monkeypatch):
    train, test = tiny_digits
    out = tmp_path / "out"
    scores = datasets.Dataset.from_dict({"svp_index": list(range(len(train)))})
    write_run(str(out), splits={"train": train, "test": test}, scores=scores, metrics={"run": "old"})
    moved, real_replace = [], os.replace

    def dying_replace(src, dst):
        if len(moved) == 1:  # the first new file is in place, the rest are not
            raise KeyboardInterrupt
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        write_run(str(out), splits={"train": train}, scores=scores, metrics={"run": "new"}, overwrite=True)
    assert not (out / "metrics.json").exists()  # not the old run's, which no longer describes what is there
    monkeypatch.setattr(os, "replace", real_replace)
    write_run(str(out), splits={"train": train}, scores=scores, metrics={"run": "new"}, overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["run"] == "new"


@pytest.mark.slow
def test_module_runs_under_python_and_accelerate_launch(tmp_path):
    # The same thread count in both runs, so that float reductions happen in the same order.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    common = [*FAST, "--target", "", "--method", "kcenter"]
    subprocess.run([sys.executable, "-m", "svp_hf.coreset", recipe, "--output_dir", str(tmp_path / "py"), *common], check=True, env=env, cwd=tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "svp_hf.coreset"]
    subprocess.run([*launch, recipe, "--output_dir", str(tmp_path / "acc"), *common], check=True, env=env, cwd=tmp_path)
    a = datasets.load_dataset(str(tmp_path / "py" / "dataset"))["train"]["svp_index"]
    b = datasets.load_dataset(str(tmp_path / "acc" / "dataset"))["train"]["svp_index"]
    assert a == b


@pytest.mark.slow
def test_cifar10_proxy_selection_differs_from_random_and_is_reproducible(tmp_path):
    data = shared_data("cifar10")
    args = [
        str(REPO / "recipes" / "cifar10.yaml"), "--dataset_name", str(data), "--max_train_samples", "2000",
        "--max_eval_samples", "500", "--proxy_epochs", "2", "--target", "", "--fraction", "0.5",
        "--method", "forgetting", "--score_methods", "random", "least_confidence",
    ]
    a = coreset.main([*args, "--output_dir", str(tmp_path / "a")])
    b = coreset.main([*args, "--output_dir", str(tmp_path / "b")])
    assert a["n_total"] == 2000 and a["n_selected"] == 1000
    assert a["proxy_accuracy"] > 0.15  # above chance (0.1) after two short epochs
    assert b["proxy_accuracy"] == a["proxy_accuracy"]
    sa = pd.read_parquet(tmp_path / "a" / "scores.parquet")
    sb = pd.read_parquet(tmp_path / "b" / "scores.parquet")
    pd.testing.assert_frame_equal(sa, sb)
    from svp_hf import selected_indices

    scores = datasets.Dataset.from_pandas(sa)
    proxy = set(selected_indices(scores, "least_confidence", 0.5).tolist())
    rnd = set(selected_indices(scores, "random", 0.5).tolist())
    assert len(proxy & rnd) < 0.6 * len(proxy)  # random overlap is ~50%; uncertainty selection is not random


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_key(flag, capsys):
    with pytest.raises(SystemExit) as err:
        coreset.main([flag])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "--strategy" in out and "--coverage_beta" in out and "--auto_epochs" in out
