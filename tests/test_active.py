import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest

import svp_hf
from svp_hf import active
from svp_hf import active_learning as al
from svp_hf.config import ACTIVE_DATACLASSES, ActiveArguments, parse_args
from svp_hf.errors import SVPConfigError
from svp_hf.methods import METHODS, kcenter_acquire, register_method

from .conftest import REPO, shared_data

RECIPE = str(REPO / "recipes" / "active_quickstart.yaml")
FAST = [
    "--proxy_epochs", "1", "--target_epochs", "1", "--max_train_samples", "200", "--max_eval_samples", "60",
    "--initial_size", "20", "--budgets", "50", "90", "--target", "resnet20",
]
TINY = dict(proxy_epochs=1, target_epochs=1, batch_size=64, seed=0)


# --- recipes and arguments --------------------------------------------------------------------------------------------


def test_active_recipes_parse():
    recipes = sorted((REPO / "recipes").glob("active_*.yaml"))
    assert {r.name for r in recipes} >= {"active_cifar10.yaml", "active_quickstart.yaml", "active_amazon_polarity.yaml"}
    for recipe in recipes:
        *_, run_args, act = parse_args([str(recipe)], dataclass_types=ACTIVE_DATACLASSES)
        assert act.budgets and act.budgets[0] > act.initial_size
    data, sel, run, act = parse_args([str(REPO / "recipes" / "active_cifar10.yaml")], dataclass_types=ACTIVE_DATACLASSES)
    assert (act.initial_size, act.budgets) == (1000, [5000, 10000, 15000, 20000, 25000])  # the paper's schedule
    assert (sel.proxy, run.target, sel.method, act.selector) == ("resnet20", "resnet164", "least_confidence", "both")


def test_command_line_budgets_override_the_recipe():
    *_, act = parse_args([RECIPE, "--budgets", "150", "250", "--selector", "proxy"], dataclass_types=ACTIVE_DATACLASSES)
    assert act.budgets == [150, 250] and act.selector == "proxy"
    assert ActiveArguments(initial_size=5, budgets="10, 20").budgets == [10, 20]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budgets=[50, 40], initial_size=10), "strictly increasing"),
        (dict(budgets=[10], initial_size=10), "larger than initial_size"),
        (dict(budgets=None), "budgets must list"),
        (dict(budgets=["many"], initial_size=10), "list of labelled-set sizes"),
        (dict(budgets=[50], initial_size=0), "initial_size must be at least 1"),
        (dict(budgets=[50], initial_size=10, selector="oracle"), "unknown selector 'oracle'"),
    ],
)
def test_bad_active_arguments(kwargs, match):
    with pytest.raises(SVPConfigError, match=match):
        ActiveArguments(**kwargs)


# --- bad input is refused before any training ---------------------------------------------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    def trained(*args, **kwargs):
        raise AssertionError("trained before checking the input")

    monkeypatch.setattr(al, "train_model", trained)


def with_missing_label(train):
    labels = [None if i == 3 else v for i, v in enumerate(train["label"])]
    return train.remove_columns("label").add_column("label", labels, feature=train.features["label"])


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(budgets=[50, 500]), r"the last budget, 500, is larger than the pool \(200 examples\)"),
        (dict(budgets=[50, 40]), "strictly increasing"),
        (dict(initial_size=60), "larger than initial_size"),
        (dict(method="forgetting"), "needs the training history"),
        (dict(method="el2n"), "reads the labels"),
        (dict(selector="target"), "needs a target model"),
        (dict(initial_size=8, initial_class_balanced=True), r"smaller than the number of classes \(10\)"),
        (dict(class_balanced=True), "initial_class_balanced"),
        (dict(eval_each_round=True), "needs an evaluation split"),
        (dict(score_methods=["entropy"]), "score_methods"),
        (dict(label_column="missing"), "label column 'missing' not found"),
        (dict(proxy="fasttext", optimizer="adamw"), "optimizer 'adamw' cannot train 'fasttext'"),
    ],
)
def test_bad_input_fails_before_training(tiny_digits, no_training, change, match):
    train, _ = tiny_digits
    kwargs = dict(initial_size=20, budgets=[50, 90], **TINY)
    kwargs.update(change)
    with pytest.raises(SVPConfigError, match=match):
        svp_hf.active_learn(train, **kwargs)


def test_missing_labels_fail_before_training(tiny_digits, no_training):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="missing labels"):
        svp_hf.active_learn(with_missing_label(train), initial_size=20, budgets=[50], **TINY)


# --- the loop -----------------------------------------------------------------------------------------------------------


@pytest.fixture
def last_index_method():
    """A method scoring the i-th unlabelled example i: the loop must label the highest pool indices each round."""

    @register_method("_highest_position", needs="none")
    def _highest_position(n, seed):
        return np.arange(n, dtype=np.float64)

    yield "_highest_position"
    METHODS._items.pop("_highest_position")


def test_loop_labels_the_top_of_the_unlabelled_ranking(tiny_digits, last_index_method):
    train, _ = tiny_digits
    result = svp_hf.active_learn(train, initial_size=20, budgets=[50, 90], method=last_index_method, **TINY)
    run = result.runs["proxy"]
    initial = set(np.flatnonzero(run.pool.rounds() == 0).tolist())
    unlabelled = [i for i in range(200) if i not in initial]
    np.testing.assert_array_equal(np.flatnonzero(run.pool.rounds() == 1), sorted(unlabelled[-30:]))
    np.testing.assert_array_equal(np.flatnonzero(run.pool.rounds() == 2), sorted(unlabelled[-70:-30]))
    labelled = result.labelled
    assert len(labelled) == 90 and labelled["svp_index"] == sorted(labelled["svp_index"])
    assert labelled["label"] == [train[i]["label"] for i in labelled["svp_index"]]  # the dataset is the oracle
    # The scores are the unlabelled positions at the time: the top 30 of 180 in round 1, the next 40 of 150 in round 2.
    scores = dict(zip(labelled["svp_index"], labelled["svp_score"]))
    assert sorted(scores[i] for i in unlabelled[-30:]) == list(range(150, 180))
    assert all(scores[i] is None for i in initial)
    assert [r["train_size"] for r in run.rounds] == [20, 50]
    assert [r["n_selected"] for r in run.rounds] == [30, 40]
    assert all(r["accuracy"] is None for r in run.rounds)
    assert result.speedup is None and run.target_accuracy is None


def test_warm_start_keeps_the_model_and_kcenter_starts_from_the_labelled_set(tiny_digits, monkeypatch):
    train, test = tiny_digits
    created = []
    real_create = al.create_model

    def counting_create(name, *args, **kwargs):
        created.append(name)
        return real_create(name, *args, **kwargs)

    monkeypatch.setattr(al, "create_model", counting_create)
    result = svp_hf.active_learn(
        train, initial_size=20, budgets=[40, 60, 80], method="kcenter", warm_start=True, eval_dataset=test,
        eval_each_round=True, **TINY,
    )
    assert created == ["resnet20"]  # one model, trained on in every round
    run = result.runs["proxy"]
    assert np.bincount(run.pool.rounds()[run.pool.rounds() >= 0]).tolist() == [20, 20, 20, 20]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in run.rounds)
    scores = np.asarray(result.labelled["svp_score"], dtype=float)
    assert np.isfinite(scores[~np.isnan(scores)]).all()  # every pick is a finite distance: centers started labelled

    created.clear()
    svp_hf.active_learn(train, initial_size=20, budgets=[40, 60], method="random", **TINY)
    assert created == ["resnet20", "resnet20"]  # from scratch every round


def test_kcenter_acquisition_starts_from_the_labelled_set():
    # Labelled points sit at 0 and 10; the farthest unlabelled point from both is at 5 only if centers start labelled.
    x = np.array([[0.0], [10.0], [1.0], [5.0], [9.0], [-3.0]])
    picked, dists = kcenter_acquire(x, [0, 1], 2, seed=0)
    assert picked.tolist() == [3, 5] and dists.tolist() == [5.0, 3.0]
    assert not set(picked.tolist()) & {0, 1}


def test_scores_of_a_selected_subset_follow_its_rows(tiny_digits):
    """Scoring a pool subset keeps the pool's svp_index (no rewrite of the data) and returns scores in row order."""
    from accelerate import Accelerator

    from svp_hf.proxy import prepare_inputs
    from svp_hf.methods import get_method
    from svp_hf.scoring import compute_scores

    train, _ = tiny_digits
    family, info = prepare_inputs(train, "resnet20", {})
    pool = al.pool_dataset(train)
    model = svp_hf.create_model("resnet20", info)
    method = [get_method("entropy")]
    full = compute_scores(model, family, pool, info, method, Accelerator(), batch_size=64)["entropy"]
    rows = np.array([150, 3, 77, 42, 199, 0])
    subset = compute_scores(model, family, pool.select(rows), info, method, Accelerator(), batch_size=4)["entropy"]
    np.testing.assert_allclose(subset, full[rows], rtol=1e-5)


# --- the CLI, end to end -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def both_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("active") / "out"
    metrics = active.main([RECIPE, "--output_dir", str(out), *FAST, "--selector", "both", "--eval_each_round", "true"])
    return out, metrics


def test_both_selectors_write_everything(both_run):
    out, metrics = both_run
    assert sorted(os.listdir(out)) == ["dataset", "metrics.json", "recipe.yaml", "report.md", "rounds.json", "scores.parquet"]
    written = json.loads((out / "metrics.json").read_text())
    assert written["selector"] == "both" and written["n_pool"] == 200 and written["budgets"] == [50, 90]
    seconds = written["selection_seconds"]
    assert set(seconds) == {"proxy", "target"} and min(seconds.values()) > 0
    assert written["speedup"] == pytest.approx(seconds["target"] / seconds["proxy"])
    assert all(0.0 <= a <= 1.0 for a in written["target_accuracy"].values())
    assert all(sum(c.values()) == 90 for c in written["labelled_per_class"].values())

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
        "## Source", "`train`: 200 rows", "`test`: 60 rows", "## Active learning", "| method | `least_confidence` |",
        "| selector | `both`", "| initial labelled set | 20 random rows |",
        "| budgets (labelled rows after each round) | 50, 90 |", "| seed | 0 |", "## Models",
        "| proxy | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1,", "| target | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1,", "## Rounds", "### proxy selecting (`resnet20`)",
        "### target selecting (`resnet20`)", "| selector accuracy |", "## Results", "## Labelled rows per class",
        "| class | pool | labelled (proxy selecting) | labelled (target selecting) |", "## Timings", "## Reproduce",
        metrics["command"], f"**{metrics['speedup']:.2f}x**",
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
    assert f"| 0 | {metrics['total_per_class']['0']} | {counts['proxy'].get('0', 0)} | {counts['target'].get('0', 0)} |" in report


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
    assert "Labelled 90 of the 200 rows of the `train` split of `builtin:digits` from 20 random rows by `least_confidence`" in text
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


def test_rounds_plot_skips_runs_without_rounds(tmp_path):
    from svp_hf.report import ReportInputs, plot_rounds

    assert plot_rounds(ReportInputs({"job": "coreset", "method": "entropy"}), str(tmp_path / "r.png")) is None
    rounds = {"proxy": [{"round": 1, "train_size": 10, "labelled_size": 20, "selection_seconds": 1.0, "accuracy": None}]}
    caption = plot_rounds(ReportInputs({"job": "active", "rounds": rounds}), str(tmp_path / "r.png"))
    assert caption and "selector accuracy" not in caption and (tmp_path / "r.png").stat().st_size > 0


def test_same_model_in_both_loops_selects_the_same_examples(tiny_digits):
    """Selection is deterministic: with the target equal to the proxy, both loops label the same examples."""
    train, test = tiny_digits
    result = svp_hf.active_learn(
        train, proxy="resnet20", target="resnet20", initial_size=20, budgets=[50], selector="both",
        eval_dataset=test, **TINY,
    )
    proxy, target = result.runs["proxy"], result.runs["target"]
    np.testing.assert_array_equal(proxy.pool.rounds(), target.pool.rounds())
    assert proxy.target_accuracy == pytest.approx(target.target_accuracy)
    assert result.speedup > 0


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
    common = [*FAST, "--selector", "proxy", "--target", "", "--method", "kcenter"]
    subprocess.run([sys.executable, "-m", "svp_hf.active", RECIPE, "--output_dir", str(tmp_path / "py"), *common], check=True, env=env, cwd=tmp_path)
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "svp_hf.active"]
    subprocess.run([*launch, RECIPE, "--output_dir", str(tmp_path / "acc"), *common], check=True, env=env, cwd=tmp_path)
    a = datasets.load_dataset(str(tmp_path / "py" / "dataset"))["train"]
    b = datasets.load_dataset(str(tmp_path / "acc" / "dataset"))["train"]
    assert a["svp_index"] == b["svp_index"] and a["svp_round"] == b["svp_round"]


@pytest.mark.slow
def test_cifar10_recipe_on_the_shared_sample(tmp_path):
    data = shared_data("cifar10")
    out = tmp_path / "out"
    metrics = active.main([
        str(REPO / "recipes" / "active_cifar10.yaml"), "--dataset_name", str(data), "--output_dir", str(out),
        "--max_train_samples", "600", "--max_eval_samples", "200", "--initial_size", "100", "--budgets", "200", "300",
        "--proxy_epochs", "1", "--target", "resnet56", "--target_epochs", "1", "--batch_size", "100",
    ])
    assert metrics["n_pool"] == 600 and metrics["selector"] == "both"
    assert set(metrics["selection_seconds"]) == {"proxy", "target"} and metrics["speedup"] > 0
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert len(loaded["train"]) == len(loaded["train_target_selected"]) == 300 and len(loaded["test"]) == 200
    assert loaded["train"].features["img"].decode and np.bincount(loaded["train"]["svp_round"]).tolist() == [100, 100, 100]


def test_text_loop_with_both_selectors():
    """Active learning on text: a fastText proxy against a transformers target built from config, same initial set."""
    data = svp_hf.load_data("builtin:reviews")
    train = data["train"].shuffle(seed=0).select(range(240))
    test = data["test"].select(range(80))
    result = svp_hf.active_learn(
        train, proxy="fasttext,dim=16", target="config:bert-tiny,max_length=48", initial_size=40, budgets=[80, 120],
        selector="both", eval_dataset=test, text_column=["title", "content"], proxy_epochs=2, target_epochs=1,
        batch_size=32, learning_rate=2.0, target_learning_rate=0.05, seed=0,
    )
    proxy, target = result.runs["proxy"], result.runs["target"]
    for run in (proxy, target):
        labelled = run.pool.labelled
        assert len(labelled) == len(set(labelled.tolist())) == 120
        assert [r["labelled_size"] for r in run.rounds] == [80, 120]
        assert 0.0 <= run.target_accuracy <= 1.0
    rounds_p, rounds_t = proxy.pool.rounds(), target.pool.rounds()
    np.testing.assert_array_equal(rounds_p == 0, rounds_t == 0)  # one initial set for both loops
    assert result.speedup == pytest.approx(target.selection_seconds / proxy.selection_seconds)


@pytest.mark.slow
def test_amazon_polarity_recipe_with_a_fasttext_proxy(tmp_path):
    data = shared_data("amazon_polarity")
    out = tmp_path / "out"
    metrics = active.main([
        str(REPO / "recipes" / "active_amazon_polarity.yaml"), "--dataset_name", str(data), "--output_dir", str(out),
        "--max_train_samples", "800", "--max_eval_samples", "200", "--initial_size", "100", "--budgets", "200", "300",
        "--proxy_epochs", "1", "--selector", "proxy", "--target", "",
    ])
    assert metrics["n_pool"] == 800
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert len(loaded["train"]) == 300 and "content" in loaded["train"].column_names
    assert np.bincount(loaded["train"]["svp_round"]).tolist() == [100, 100, 100]


def test_labels_follow_an_indices_mapping(digits):
    """A split from train_test_split is an indices mapping over a larger table: labels must follow the mapping."""
    from svp_hf.proxy import labels_of, prepare_inputs

    train = digits["train"]
    _, info = prepare_inputs(train, "resnet20", {})
    assert len(labels_of(train, info)) == len(train) < len(train.data)
    assert labels_of(train, info).tolist() == train["label"]


def test_target_training_keys_reach_the_target_only():
    from svp_hf.active_learning import build_selectors
    from svp_hf.config import ActiveArguments, RunArguments, SelectionArguments

    args = SelectionArguments(proxy="fasttext", learning_rate=2.0, lr_schedule="halving")
    run_args = RunArguments(
        target="config:bert-tiny", target_learning_rate=5e-5, target_lr_schedule="linear", target_optimizer="adamw"
    )
    selectors = build_selectors(args, run_args, ActiveArguments(initial_size=10, budgets=[20], selector="both"))
    proxy, target = selectors["proxy"].config, selectors["target"].config
    assert (proxy.optimizer, proxy.lr_schedule, proxy.learning_rate) == ("sgd", "halving", 2.0)
    assert (target.optimizer, target.lr_schedule, target.learning_rate) == ("adamw", "linear", 5e-5)
