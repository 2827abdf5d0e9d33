import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest

from svp_hf.jobs import active

from .conftest import REPO, accelerate_launch, shared_data

RECIPE = str(REPO / "recipes" / "active_quickstart.yaml")
FAST = [
    "--proxy_epochs",
    "1",
    "--target_epochs",
    "1",
    "--max_train_samples",
    "200",
    "--max_eval_samples",
    "60",
    "--initial_size",
    "20",
    "--budgets",
    "50",
    "90",
    "--target",
    "resnet20",
]


# --- the CLI, end to end -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("active") / "out"
    metrics = active.main([RECIPE, "--output_dir", str(out), *FAST, "--selector", "both", "--eval_each_round", "true"])
    return out, metrics


def test_both_selectors_write_everything(both_run):
    out, metrics = both_run
    assert sorted(os.listdir(out)) == [
        "dataset",
        "metrics.json",
        "recipe.yaml",
        "report.md",
        "rounds.json",
        "scores.parquet",
    ]
    written = json.loads((out / "metrics.json").read_text())
    assert written["selector"] == "both" and written["n_pool"] == 200 and written["budgets"] == [50, 90]
    seconds = written["selection_seconds"]
    assert set(seconds) == {"proxy", "target"} and min(seconds.values()) > 0
    assert written["speedup"] == pytest.approx(seconds["target"] / seconds["proxy"])
    assert all(0.0 <= a <= 1.0 for a in written["target_accuracy"].values())
    assert all(sum(c.values()) == 90 for c in written["labelled_per_class"].values())
    assert written["device"]["device"] == "cpu" and written["device"]["loader_workers"]["arrays"] == 0

    rounds = json.loads((out / "rounds.json").read_text())
    for role in ("proxy", "target"):
        assert [r["labelled_size"] for r in rounds[role]] == [50, 90]
        assert [r["train_size"] for r in rounds[role]] == [20, 50]
        assert all(0.0 <= r["accuracy"] <= 1.0 for r in rounds[role])
        assert sum(r["selection_seconds"] for r in rounds[role]) == pytest.approx(seconds[role])
        for r in rounds[role]:
            assert r["selection_seconds"] == pytest.approx(r["training_seconds"] + r["scoring_seconds"])


def test_both_selectors_dataset_and_pool_record(both_run):
    out, _ = both_run
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert set(loaded) == {"train", "train_target_selected", "test"}
    proxy_set, target_set, test = loaded["train"], loaded["train_target_selected"], loaded["test"]
    assert len(proxy_set) == len(target_set) == 90 and len(test) == 60
    assert isinstance(proxy_set.features["image"], datasets.Image)
    assert isinstance(proxy_set.features["label"], datasets.ClassLabel)
    assert proxy_set.column_names == test.column_names == ["image", "label", "svp_index", "svp_round", "svp_score"]
    assert test["svp_round"] == [None] * 60 and test["svp_index"] == list(range(60))
    for labelled in (proxy_set, target_set):
        assert np.bincount(labelled["svp_round"]).tolist() == [20, 30, 40]
        assert len(set(labelled["svp_index"])) == 90
        scores = np.array(labelled["svp_score"], dtype=float)
        rounds = np.array(labelled["svp_round"])
        assert np.isnan(scores[rounds == 0]).all() and (scores[rounds > 0] <= 0.9 + 1e-6).all()  # least confidence
    initial = lambda ds: sorted(i for i, r in zip(ds["svp_index"], ds["svp_round"]) if r == 0)  # noqa: E731
    assert initial(proxy_set) == initial(target_set)  # both loops start from the same initial set

    pool = pd.read_parquet(out / "scores.parquet")
    assert list(pool.columns) == ["svp_index", "label", "proxy_round", "proxy_score", "target_round", "target_score"]
    assert len(pool) == 200 and pool["proxy_round"].notna().sum() == 90
    by_index = pool.set_index("svp_index")
    np.testing.assert_array_equal(by_index.loc[proxy_set["svp_index"], "proxy_round"], proxy_set["svp_round"])
    np.testing.assert_array_equal(by_index.loc[proxy_set["svp_index"], "label"], proxy_set["label"])


def test_active_metrics_carry_the_job_source_and_rounds(both_run):
    out, metrics = both_run
    written = json.loads((out / "metrics.json").read_text())
    assert written["job"] == "active"
    assert written["rounds"] == json.loads((out / "rounds.json").read_text())
    source = written["source"]
    assert source["dataset"] == "builtin:digits" and source["split"] == "train" and source["num_rows"] == 200
    assert source["fingerprint"] and source["task_categories"] == ["image-classification"]
    assert source["eval_split"] == "test" and source["eval_num_rows"] == 60
    assert sum(written["total_per_class"].values()) == 200
    assert written["selector_models"] == {"proxy": "resnet20", "target": "resnet20"}


def test_active_report_has_the_schedule_rounds_results_and_speedup(both_run):
    out, metrics = both_run
    report = (out / "report.md").read_text()
    for needle in [
        "## Source",
        "`train`: 200 rows",
        "`test`: 60 rows",
        "## Active learning",
        "| method | `least_confidence` |",
        "| selector | `both`",
        "| initial labelled set | 20 random rows |",
        "| budgets (labelled rows after each round) | 50, 90 |",
        "| seed | 0 |",
        "## Models",
        "| proxy | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1,",
        "| target | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1,",
        "## Rounds",
        "### proxy selecting (`resnet20`)",
        "### target selecting (`resnet20`)",
        "| selector accuracy |",
        "## Results",
        "## Labelled rows per class",
        "| class | pool | labelled (proxy selecting) | labelled (target selecting) |",
        "## Timings",
        "## Reproduce",
        metrics["command"],
        f"**{metrics['speedup']:.2f}x**",
    ]:
        assert needle in report, needle
    for role in ("proxy", "target"):
        cumulative = 0.0
        for r in metrics["rounds"][role]:
            cumulative += r["selection_seconds"]
            row = (
                f"| {r['round']} | {r['train_size']} | {r['labelled_size']} | {r['training_seconds']:.2f} | "
                f"{r['scoring_seconds']:.2f} | {r['selection_seconds']:.2f} | {cumulative:.2f} | {r['accuracy']:.4g} |"
            )
            assert row in report, row
        result = (
            f"| {role} selecting (`resnet20`) | 90 | {metrics['selection_seconds'][role]:.2f} | "
            f"{metrics['target_accuracy'][role]:.4g} | {metrics['target_training_seconds'][role]:.2f} |"
        )
        assert result in report, result
    # no core-set rows, raw dicts or placeholders for the headline fields
    for absent in ["split pruned", "fraction kept", "{'", "| - |", ": - rows", "`-`"]:
        assert absent not in report, absent
    counts = metrics["labelled_per_class"]
    assert (
        f"| 0 | {metrics['total_per_class']['0']} | {counts['proxy'].get('0', 0)} | {counts['target'].get('0', 0)} |"
        in report
    )


def test_active_card_round_trips_with_the_active_learning_tag(both_run):
    from huggingface_hub import DatasetCard

    out, metrics = both_run
    path = out / "dataset" / "README.md"
    card = DatasetCard.load(path)
    assert str(DatasetCard(str(card))) == path.read_text()
    data = card.data.to_dict()
    assert data["tags"] == ["svp-hf", "data-pruning", "active-learning", "svp-least_confidence"]
    assert data["task_categories"] == ["image-classification"] and data["size_categories"] == ["n<1K"]
    assert "active learning" in data["pretty_name"] and "pruned" not in data["pretty_name"]
    text = card.text
    assert (
        "Labelled 90 of the 200 rows of the `train` split of `builtin:digits` from 20 random rows by `least_confidence`"
        in text
    )
    assert "`train_target_selected` those labelled with the target selecting" in text
    assert "svp_hf.select(" not in text  # the core-set reselection snippet does not apply
    report = (out / "report.md").read_text()
    assert report.split("## Source", 1)[1].replace("dataset/plots/", "plots/") in text


def test_active_plots_include_the_rounds(both_run):
    from PIL import Image

    out, _ = both_run
    plots = sorted(os.listdir(out / "dataset" / "plots"))
    assert plots == ["class_counts.png", "learning_curves.png", "rounds.png", "score_histogram.png"]
    report = (out / "report.md").read_text()
    for name in plots:
        path = out / "dataset" / "plots" / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000
        assert f"(dataset/plots/{name})" in report
    with Image.open(out / "dataset" / "plots" / "rounds.png") as image:
        assert image.size[0] > image.size[1] > 100  # two panels: seconds and selector accuracy


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budgets", "50", "300"], "larger than the pool"),
        (["--method", "forgetting"], "needs the training history"),
        (["--selector", "target", "--target", ""], "needs a target model"),
        (["--budgets", "90", "50"], "strictly increasing"),
    ],
)
def test_cli_bad_input_exits_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        active.main([RECIPE, "--output_dir", str(out), *FAST, *args])
    assert err.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or os.listdir(out) == []


# --- slower tier: accelerate launch, shared samples, text ------------------------------------------------------------


@pytest.mark.slow
def test_module_runs_under_python_and_accelerate_launch(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    common = [
        *FAST,
        "--selector",
        "proxy",
        "--target",
        "",
        "--method",
        "kcenter",
        "--mixed_precision",
        "no",
    ]  # launch gives its own "no"
    subprocess.run(
        [sys.executable, "-m", "svp_hf.active", RECIPE, "--output_dir", str(tmp_path / "py"), *common],
        check=True,
        env=env,
        cwd=tmp_path,
    )
    launch = accelerate_launch("svp_hf.active")
    subprocess.run([*launch, RECIPE, "--output_dir", str(tmp_path / "acc"), *common], check=True, env=env, cwd=tmp_path)
    a = datasets.load_dataset(str(tmp_path / "py" / "dataset"))["train"]
    b = datasets.load_dataset(str(tmp_path / "acc" / "dataset"))["train"]
    assert a["svp_index"] == b["svp_index"] and a["svp_round"] == b["svp_round"]


@pytest.mark.slow
def test_cifar10_recipe_on_the_shared_sample(tmp_path):
    data = shared_data("cifar10")
    out = tmp_path / "out"
    metrics = active.main(
        [
            str(REPO / "recipes" / "active_cifar10.yaml"),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "600",
            "--max_eval_samples",
            "200",
            "--initial_size",
            "100",
            "--budgets",
            "200",
            "300",
            "--proxy_epochs",
            "1",
            "--target",
            "resnet56",
            "--target_epochs",
            "1",
            "--batch_size",
            "100",
        ]
    )
    assert metrics["n_pool"] == 600 and metrics["selector"] == "both"
    assert set(metrics["selection_seconds"]) == {"proxy", "target"} and metrics["speedup"] > 0
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert len(loaded["train"]) == len(loaded["train_target_selected"]) == 300 and len(loaded["test"]) == 200
    assert loaded["train"].features["img"].decode and np.bincount(loaded["train"]["svp_round"]).tolist() == [
        100,
        100,
        100,
    ]


@pytest.mark.slow
def test_amazon_polarity_recipe_with_a_fasttext_proxy(tmp_path):
    data = shared_data("amazon_polarity")
    out = tmp_path / "out"
    metrics = active.main(
        [
            str(REPO / "recipes" / "active_amazon_polarity.yaml"),
            "--dataset_name",
            str(data),
            "--output_dir",
            str(out),
            "--max_train_samples",
            "800",
            "--max_eval_samples",
            "200",
            "--initial_size",
            "100",
            "--budgets",
            "200",
            "300",
            "--proxy_epochs",
            "1",
            "--selector",
            "proxy",
            "--target",
            "",
        ]
    )
    assert metrics["n_pool"] == 800
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert len(loaded["train"]) == 300 and "content" in loaded["train"].column_names
    assert np.bincount(loaded["train"]["svp_round"]).tolist() == [100, 100, 100]
