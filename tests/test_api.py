import numpy as np
import pandas as pd
import pytest

import svp_hf
from svp_hf.errors import SVPConfigError


@pytest.fixture(scope="module")
def scored(tiny_digits):
    train, test = tiny_digits
    methods = ["least_confidence", "entropy", "margin", "forgetting", "el2n", "kcenter", "random"]
    return svp_hf.score(train, proxy="resnet20", methods=methods, proxy_epochs=2, batch_size=64, seed=0)


def test_score_returns_every_method_keyed_by_index(scored, tiny_digits):
    train, _ = tiny_digits
    assert scored.column_names == [
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
    assert scored["svp_index"] == list(range(len(train)))
    assert scored["label"] == train["label"]
    assert scored.features["label"] == train.features["label"]
    for m in ("least_confidence", "entropy", "margin", "el2n", "random"):
        values = np.asarray(scored[m])
        assert np.isfinite(values).all() and values.min() >= 0
    assert np.asarray(scored["least_confidence"]).max() <= 0.9 + 1e-6
    forgetting = np.asarray(scored["forgetting"])
    finite = forgetting[np.isfinite(forgetting)]
    assert len(finite) > 0 and (finite >= 0).all() and np.array_equal(finite, np.round(finite))  # event counts
    assert np.isinf(np.asarray(scored["kcenter"])).sum() == 1  # the random first center


def test_select_many_without_training(scored, tiny_digits):
    train, _ = tiny_digits
    for method in ("least_confidence", "margin", "kcenter", "random"):
        for fraction in (0.1, 0.5, 1.0):
            pruned = svp_hf.select(train, scored, method=method, fraction=fraction)
            assert len(pruned) == round(fraction * len(train))
            idx = pruned["svp_index"]
            assert idx == sorted(idx)  # original order
            assert pruned.column_names == train.column_names + ["svp_score", "svp_index"]
            assert pruned.features["label"] == train.features["label"]
            assert pruned["label"] == [train[i]["label"] for i in idx]
            np.testing.assert_allclose(pruned["svp_score"], np.asarray(scored[method])[idx])


def test_select_keeps_the_most_uncertain(scored, tiny_digits):
    train, _ = tiny_digits
    pruned = svp_hf.select(train, scored, method="least_confidence", fraction=0.25)
    kept = np.asarray(pruned["svp_score"])
    dropped = np.delete(np.asarray(scored["least_confidence"]), pruned["svp_index"])
    assert kept.min() >= dropped.max()
    by_margin = svp_hf.select(train, scored, method="margin", fraction=0.25)
    dropped = np.delete(np.asarray(scored["margin"]), by_margin["svp_index"])
    assert np.max(by_margin["svp_score"]) <= dropped.min()


def test_class_balanced_select(scored, tiny_digits):
    train, _ = tiny_digits
    pruned = svp_hf.select(train, scored, method="entropy", fraction=0.5, class_balanced=True)
    full = np.bincount(train["label"], minlength=10)
    kept = np.bincount(pruned["label"], minlength=10)
    assert np.all(np.abs(kept - full / 2) <= 1)


def test_select_errors(scored, tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="no column for method 'entropy'"):
        svp_hf.select(train, scored.remove_columns("entropy"), method="entropy")
    with pytest.raises(SVPConfigError, match="rows but the dataset has"):
        svp_hf.select(train.select(range(10)), scored)
    with pytest.raises(SVPConfigError, match="fraction"):
        svp_hf.select(train, scored, fraction=2)


def test_prune_end_to_end_is_deterministic(tiny_digits, tiny_kwargs):
    train, _ = tiny_digits
    a = svp_hf.prune(train, proxy="resnet20", fraction=0.3, method="least_confidence", **tiny_kwargs)
    b = svp_hf.prune(train, proxy="resnet20", fraction=0.3, method="least_confidence", **tiny_kwargs)
    assert len(a) == 60
    assert a["svp_index"] == b["svp_index"]
    np.testing.assert_allclose(a["svp_score"], b["svp_score"], rtol=1e-5)
    assert a.features["image"] == train.features["image"]
    rnd = svp_hf.prune(train, proxy="resnet20", fraction=0.3, method="random", **tiny_kwargs)
    assert rnd["svp_index"] != a["svp_index"]


def test_prune_with_a_stock_timm_model_and_named_columns(tiny_digits, tiny_kwargs):
    train, _ = tiny_digits
    renamed = train.rename_columns({"image": "pixels", "label": "digit"})
    pruned = svp_hf.prune(
        renamed,
        proxy="resnet18",
        fraction=0.5,
        method="el2n",
        image_column="pixels",
        label_column="digit",
        class_balanced=True,
        **tiny_kwargs,
    )
    assert len(pruned) == 100 and "pixels" in pruned.column_names


def test_prune_bad_input_fails_before_training(tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="unknown model"):
        svp_hf.prune(train, proxy="not-a-model")
    with pytest.raises(SVPConfigError, match="Unknown selection method"):
        svp_hf.prune(train, method="best")
    with pytest.raises(SVPConfigError, match="fraction"):
        svp_hf.prune(train, fraction=0)
    with pytest.raises(SVPConfigError, match="empty"):
        svp_hf.prune(train.select([]))
    with pytest.raises(SVPConfigError, match="unknown argument"):
        svp_hf.prune(train, epochs=3)
    with pytest.raises(SVPConfigError, match="datasets.Dataset"):
        svp_hf.score({"image": []})


def test_unknown_names_fail_before_training(tiny_digits, monkeypatch):
    import svp_hf.stages.proxy

    monkeypatch.setattr(svp_hf.stages.proxy, "train_model", lambda *a, **k: pytest.fail("trained before checking"))
    train, _ = tiny_digits
    for kwargs, match in [
        (dict(strategy="best"), "unknown strategy 'best'"),
        (dict(lr_schedule="warp"), "lr_schedule 'warp'"),
    ]:
        with pytest.raises(SVPConfigError, match=match):
            svp_hf.prune(train, proxy="resnet20", fraction=0.5, **kwargs)


# --- text, end to end -------------------------------------------------------------------------------------------------


def check_pruned(pruned, train, scores_column_values=None, n=None):
    assert len(pruned) == n
    idx = pruned["svp_index"]
    assert idx == sorted(idx) and len(set(idx)) == n
    assert pruned.column_names == train.column_names + ["svp_score", "svp_index"]
    assert pruned.features["label"] == train.features["label"]
    assert pruned["content"] == [train[i]["content"] for i in idx]
    assert not np.isnan(np.asarray(pruned["svp_score"])).any()


def test_prune_with_fasttext_end_to_end(tiny_reviews):
    train, test = tiny_reviews
    kwargs = dict(proxy_epochs=3, batch_size=32, learning_rate=1.0, seed=0, strategy="top")
    a = svp_hf.prune(train, proxy="fasttext", fraction=0.3, method="entropy", **kwargs)
    b = svp_hf.prune(train, proxy="fasttext", fraction=0.3, method="entropy", **kwargs)
    check_pruned(a, train, n=60)
    assert a["svp_index"] == b["svp_index"]
    np.testing.assert_allclose(a["svp_score"], b["svp_score"], rtol=1e-5)
    scores = svp_hf.score(
        train,
        proxy="fasttext",
        methods=["least_confidence", "kcenter", "forgetting", "random"],
        eval_dataset=test,
        **kwargs,
    )
    assert scores.column_names == ["svp_index", "label", "least_confidence", "kcenter", "forgetting", "random"]
    assert np.isinf(np.asarray(scores["kcenter"])).sum() == 1
    lc = np.asarray(scores["least_confidence"])
    assert 0 <= lc.min() and lc.max() <= 0.5 + 1e-6 and lc.std() > 0
    kept = svp_hf.select(train, scores, method="least_confidence", fraction=0.25)
    assert np.min(kept["svp_score"]) >= np.max(np.delete(lc, kept["svp_index"]))
    content_only = svp_hf.prune(train, proxy="fasttext", fraction=0.5, method="margin", text_column="content", **kwargs)
    check_pruned(content_only, train, n=100)


def test_prune_with_a_tiny_transformer_end_to_end(tiny_reviews):
    train, _ = tiny_reviews
    small = train.select(range(64))
    name = "config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64,max_length=48"
    kwargs = dict(proxy_epochs=1, batch_size=16, learning_rate=0.05, seed=0, strategy="top")
    scores = svp_hf.score(small, proxy=name, methods=["least_confidence", "kcenter", "el2n"], **kwargs)
    again = svp_hf.score(small, proxy=name, methods=["least_confidence", "kcenter", "el2n"], **kwargs)
    pd.testing.assert_frame_equal(scores.to_pandas(), again.to_pandas(), rtol=1e-4)
    assert np.isinf(np.asarray(scores["kcenter"])).sum() == 1
    pruned = svp_hf.select(small, scores, method="kcenter", fraction=0.25)
    check_pruned(pruned, small, n=16)
    pruned = svp_hf.prune(small, proxy=name, fraction=0.5, method="least_confidence", **kwargs)
    check_pruned(pruned, small, n=32)


# --- row identity is positional: an incoming svp_index is data, never row ids ---------------------------------------


def test_incoming_svp_index_permutation_is_not_trusted(tiny_digits, tiny_kwargs):
    train, _ = tiny_digits
    permutation = np.random.default_rng(0).permutation(len(train))
    shuffled = train.add_column("svp_index", permutation.tolist())  # e.g. a shuffled svp_hf output
    plain = svp_hf.score(train, proxy="resnet20", methods=["least_confidence"], **tiny_kwargs)
    again = svp_hf.score(shuffled, proxy="resnet20", methods=["least_confidence"], **tiny_kwargs)
    assert again["svp_index"] == list(range(len(train)))
    assert again["label"] == train["label"]  # each score belongs to the row at its position
    np.testing.assert_allclose(again["least_confidence"], plain["least_confidence"], rtol=1e-5, atol=1e-6)
    kept = svp_hf.select(shuffled, again, method="least_confidence", fraction=0.5)
    assert "svp_index_previous" in kept.column_names
    assert kept["svp_index_previous"] == permutation[kept["svp_index"]].tolist()
    np.testing.assert_allclose(kept["svp_score"], np.asarray(again["least_confidence"])[kept["svp_index"]])


def test_pruning_an_svp_output_again(tiny_digits, tiny_kwargs):
    train, _ = tiny_digits
    first = svp_hf.prune(train, proxy="resnet20", fraction=0.5, method="forgetting", **tiny_kwargs)
    assert max(first["svp_index"]) >= len(first)  # ids into the original split, not into this one
    second = svp_hf.prune(first, proxy="resnet20", fraction=0.5, method="forgetting", **tiny_kwargs)
    assert len(second) == len(first) // 2
    assert second["svp_index"] == sorted(second["svp_index"]) and max(second["svp_index"]) < len(first)
    assert second["svp_index_previous"] == [first["svp_index"][i] for i in second["svp_index"]]
    assert second["svp_score_previous"] == [first["svp_score"][i] for i in second["svp_index"]]
    third = svp_hf.select(
        second, svp_hf.score(second, proxy="resnet20", methods=["random"], **tiny_kwargs), "random", 0.5
    )
    assert {"svp_index_previous", "svp_index_previous_2"} <= set(third.column_names)


def test_select_refuses_scores_whose_index_is_not_positions(scored, tiny_digits):
    train, _ = tiny_digits
    bad = scored.remove_columns("svp_index").add_column("svp_index", [i + 5 for i in range(len(scored))])
    with pytest.raises(SVPConfigError, match="not a permutation"):
        svp_hf.select(train, bad, method="entropy", fraction=0.5)


def test_a_diverged_proxy_is_a_runtime_failure_naming_method_and_rows(tiny_digits):
    train, _ = tiny_digits
    kwargs = dict(proxy_epochs=1, batch_size=64, learning_rate=1e30, seed=0, strategy="top")
    with pytest.raises(svp_hf.SVPRuntimeError, match=r"'entropy' for 200 of 200 rows"):
        svp_hf.score(
            train, proxy="resnet20", methods=["entropy"], **{k: v for k, v in kwargs.items() if k != "strategy"}
        )
    with pytest.raises(svp_hf.SVPRuntimeError, match="diverged"):
        svp_hf.prune(train, proxy="resnet20", fraction=0.5, method="least_confidence", **kwargs)


# --- the proxy's quality reaches Python -----------------------------------------------------------------------------


def test_score_returns_the_proxy_accuracy_and_warns_near_chance(tiny_digits):
    train, test = tiny_digits
    kwargs = dict(proxy_epochs=1, batch_size=64, learning_rate=1e-9, seed=0)  # an untrained proxy: chance level
    with pytest.warns(
        UserWarning, match=r"the proxy 'resnet20' barely beats chance: accuracy [0-9.]+ on 100 evaluation rows"
    ) as caught:
        scores, metrics = svp_hf.score(
            train, proxy="resnet20", methods=["entropy", "forgetting"], eval_dataset=test, return_metrics=True, **kwargs
        )
    assert any("forgetting scores are infinite" in str(w.message) for w in caught)
    assert scores.column_names == ["svp_index", "label", "entropy", "forgetting"]
    assert 0.0 <= metrics["proxy_accuracy"] <= 1.0 and metrics["barely_beats_chance"] is True
    majority = np.bincount(test["label"]).max() / len(test)
    assert metrics["chance_accuracy"] == pytest.approx(max(0.1, majority))
    assert metrics["num_classes"] == 10 and len(metrics["proxy_history"]) == 1 and metrics["forgetting_infinite"] > 100
    with pytest.warns(UserWarning, match="barely beats chance"):
        pruned, prune_metrics = svp_hf.prune(
            train,
            proxy="resnet20",
            fraction=0.5,
            method="entropy",
            strategy="top",
            eval_dataset=test,
            return_metrics=True,
            **kwargs,
        )
    assert len(pruned) == 100 and prune_metrics["n_selected"] == 100 and prune_metrics["selected_strategy"] == "top"
    assert prune_metrics["proxy_accuracy"] == pytest.approx(metrics["proxy_accuracy"])
    for m in (metrics, prune_metrics):  # no target: the account is relative to the proxy's own training
        assert m["end_to_end"]["relative_to"] == "proxy" and m["end_to_end"]["target_seconds"] is None
        assert m["end_to_end"]["full_data_seconds"] == pytest.approx(m["timings"]["proxy_training"])
        assert m["end_to_end"]["selection_seconds"] == pytest.approx(
            sum(v for k, v in m["timings"].items() if k != "proxy_training")
        )
    assert isinstance(
        svp_hf.score(train, proxy="resnet20", methods=["random"], **kwargs), type(scores)
    )  # default: scores only


def test_barely_beats_chance():
    from svp_hf.stages.proxy import barely_beats_chance, chance_accuracy

    assert chance_accuracy(np.array([0, 0, 0, 1]), 2) == 0.75 and chance_accuracy(
        np.array([0, 1, 2]), 10
    ) == pytest.approx(1 / 3)
    assert barely_beats_chance(0.575, 0.5, 10_000)  # the README's near-chance text proxy
    assert barely_beats_chance(0.14, 0.1, 50)  # within the binomial noise of 50 rows
    assert not barely_beats_chance(0.85, 0.5, 1000) and not barely_beats_chance(0.45, 0.1, 10_000)


# --- bad inputs: clear errors before anything is trained, and the corrected call works ------------------------------


def test_select_checks_the_scores_belong_to_the_dataset(scored, tiny_digits, digits):
    train, _ = tiny_digits
    other = digits["train"].select(range(200, 400))  # as many rows, other labels
    with pytest.raises(
        SVPConfigError,
        match=r"scores do not belong to this dataset: their labels differ from its label column 'label' at \d+ of 200 rows",
    ):
        svp_hf.select(other, scored, method="entropy", fraction=0.5)
    assert len(svp_hf.select(train, scored, method="entropy", fraction=0.5)) == 100


def test_select_takes_scores_as_a_dataframe_and_refuses_other_types(scored, tiny_digits):
    train, _ = tiny_digits
    expected = svp_hf.select(train, scored, method="margin", fraction=0.3)
    from_frame = svp_hf.select(train, scored.to_pandas(), method="margin", fraction=0.3)
    assert from_frame["svp_index"] == expected["svp_index"] and from_frame["svp_score"] == expected["svp_score"]
    with pytest.raises(SVPConfigError, match="scores must be the table svp_hf.score .* got list"):
        svp_hf.select(train, list(scored["margin"]), method="margin")
    with pytest.raises(SVPConfigError, match="scores have no 'svp_index' column"):
        svp_hf.select(train, scored.to_pandas().drop(columns="svp_index"), method="margin")


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True])
def test_seeds_out_of_range_are_refused_before_training(tiny_digits, scored, monkeypatch, seed):
    import svp_hf.stages.proxy

    monkeypatch.setattr(svp_hf.stages.proxy, "train_model", lambda *a, **k: pytest.fail("trained before checking"))
    train, _ = tiny_digits
    for call in (
        lambda: svp_hf.select(train, scored, method="random", seed=seed),
        lambda: svp_hf.prune(train, proxy="resnet20", seed=seed),
        lambda: svp_hf.score(train, proxy="resnet20", seed=seed),
    ):
        with pytest.raises(SVPConfigError, match="seed must be"):
            call()
    assert len(svp_hf.select(train, scored, method="random", fraction=0.5, seed=2**32 - 1)) == 100


def test_prune_refuses_a_stream_as_clearly_as_score(tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="prune .* needs a datasets.Dataset, not a streaming IterableDataset"):
        svp_hf.prune(train.to_iterable_dataset(), proxy="resnet20", fraction=0.5)
    with pytest.raises(SVPConfigError, match="select needs a datasets.Dataset, not a streaming IterableDataset"):
        svp_hf.select(train.to_iterable_dataset(), train)
