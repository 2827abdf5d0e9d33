"""The active-learning loop (svp_hf.active.loop): bad input refused before training, the labelling rounds,
warm starts, scores of a selected subset, both selectors, text, and per-role training settings."""

import numpy as np
import pytest

import svp_hf
from svp_hf.active import loop as al
from svp_hf.errors import SVPConfigError
from svp_hf.selection.methods import METHODS, kcenter_acquire, register_method

TINY = dict(proxy_epochs=1, target_epochs=1, batch_size=64, seed=0)


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
        train,
        initial_size=20,
        budgets=[40, 60, 80],
        method="kcenter",
        warm_start=True,
        eval_dataset=test,
        eval_each_round=True,
        **TINY,
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

    from svp_hf.engine.scoring import compute_scores
    from svp_hf.selection.methods import get_method
    from svp_hf.stages.proxy import prepare_inputs

    train, _ = tiny_digits
    family, info = prepare_inputs(train, "resnet20", {})
    pool = al.pool_dataset(train)
    model = svp_hf.create_model("resnet20", info)
    method = [get_method("entropy")]
    full = compute_scores(model, family, pool, info, method, Accelerator(), batch_size=64)["entropy"]
    rows = np.array([150, 3, 77, 42, 199, 0])
    subset = compute_scores(model, family, pool.select(rows), info, method, Accelerator(), batch_size=4)["entropy"]
    np.testing.assert_allclose(subset, full[rows], rtol=1e-5)


def test_same_model_in_both_loops_selects_the_same_examples(tiny_digits):
    """Selection is deterministic: with the target equal to the proxy, both loops label the same examples."""
    train, test = tiny_digits
    result = svp_hf.active_learn(
        train,
        proxy="resnet20",
        target="resnet20",
        initial_size=20,
        budgets=[50],
        selector="both",
        eval_dataset=test,
        **TINY,
    )
    proxy, target = result.runs["proxy"], result.runs["target"]
    np.testing.assert_array_equal(proxy.pool.rounds(), target.pool.rounds())
    assert proxy.target_accuracy == pytest.approx(target.target_accuracy)
    assert result.speedup > 0


def test_text_loop_with_both_selectors():
    """Active learning on text: a fastText proxy against a transformers target built from config, same initial set."""
    data = svp_hf.load_data("builtin:reviews")
    train = data["train"].shuffle(seed=0).select(range(240))
    test = data["test"].select(range(80))
    result = svp_hf.active_learn(
        train,
        proxy="fasttext,dim=16",
        target="config:bert-tiny,max_length=48",
        initial_size=40,
        budgets=[80, 120],
        selector="both",
        eval_dataset=test,
        text_column=["title", "content"],
        proxy_epochs=2,
        target_epochs=1,
        batch_size=32,
        learning_rate=2.0,
        target_learning_rate=0.05,
        seed=0,
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


def test_target_training_keys_reach_the_target_only():
    from svp_hf.active.loop import build_selectors
    from svp_hf.config import ActiveArguments, RunArguments, SelectionArguments
    from svp_hf.stages.roles import selector_models

    args = SelectionArguments(proxy="fasttext", learning_rate=2.0, lr_schedule="halving")
    run_args = RunArguments(
        target="config:bert-tiny", target_learning_rate=5e-5, target_lr_schedule="linear", target_optimizer="adamw"
    )
    selectors = build_selectors(
        selector_models(args, run_args, ActiveArguments(initial_size=10, budgets=[20], selector="both"))
    )
    proxy, target = selectors["proxy"].config, selectors["target"].config
    assert (proxy.optimizer, proxy.lr_schedule, proxy.learning_rate) == ("sgd", "halving", 2.0)
    assert (target.optimizer, target.lr_schedule, target.learning_rate) == ("adamw", "linear", 5e-5)


def test_a_text_proxy_and_an_image_target_cannot_select_together():
    from svp_hf.active.loop import build_selectors
    from svp_hf.stages.settings import ModelSettings

    with pytest.raises(SVPConfigError, match="proxy 'fasttext' reads text data but target 'resnet20' reads image"):
        build_selectors({"proxy": ModelSettings("fasttext"), "target": ModelSettings("resnet20")})


POOL_TINY = dict(proxy_epochs=1, batch_size=64, learning_rate=0.05, seed=0)


def test_the_pool_ignores_an_incoming_svp_index(tiny_digits):
    """Row identity in the pool is positional: an incoming svp_index (e.g. a shuffled svp_hf output) is replaced, so
    the same rows are labelled as without it and every returned svp_index points at its row."""
    train, _ = tiny_digits
    permuted = train.add_column("svp_index", np.random.default_rng(1).permutation(len(train)).tolist())
    plain = svp_hf.active_learn(train, initial_size=20, budgets=[40], **POOL_TINY).labelled
    again = svp_hf.active_learn(permuted, initial_size=20, budgets=[40], **POOL_TINY).labelled
    assert again["svp_index"] == plain["svp_index"]
    assert again["label"] == [train[i]["label"] for i in again["svp_index"]]
