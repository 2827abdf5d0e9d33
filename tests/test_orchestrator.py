"""svp_hf.stages.orchestrator: the one selection pipeline every front end drives (Pruner's stages, the typed result, auto's
budget and the end-to-end account)."""

import logging

import numpy as np
import pytest

import svp_hf
from svp_hf.engine.training import TrainingConfig
from svp_hf.errors import SVPConfigError
from svp_hf.stages.orchestrator import Pruner, train_target
from svp_hf.stages.settings import AutoSettings, ModelSettings, ScoringSettings, SelectionSettings

from .conftest import separable

FAST = dict(proxy_epochs=2, batch_size=32, learning_rate=1.0, seed=0)


def fasttext(epochs=2, name="fasttext"):
    return ModelSettings(
        name, TrainingConfig(epochs=epochs, batch_size=32, learning_rate=1.0, lr_schedule="halving", weight_decay=0.0)
    )


@pytest.fixture(scope="module")
def texts():
    return separable(300, 0), separable(80, 1)


def test_the_stages_one_by_one_equal_prune(texts):
    train, test = texts
    pruned, metrics = svp_hf.prune(
        train,
        proxy="fasttext",
        fraction=0.4,
        method="entropy",
        strategy="top",
        eval_dataset=test,
        return_metrics=True,
        **FAST,
    )
    settings = svp_hf.stages.roles.stage_settings(
        svp_hf.config.arguments.SelectionArguments(
            proxy="fasttext", method="entropy", fraction=0.4, strategy="top", **FAST
        )
    )
    proxy, target, scoring, selection = settings
    assert target is None and isinstance(scoring, ScoringSettings) and selection.auto.budget == 0.1
    pruner = Pruner(proxy, scoring, selection).prepare(train, test)
    run = pruner.score()
    assert pruner.choose_strategy() is None  # top needs no check
    result = pruner.select()
    assert result.selected["svp_index"] == pruned["svp_index"]
    np.testing.assert_array_equal(
        result.scores["entropy"], svp_hf.score(train, proxy="fasttext", methods="entropy", **FAST)["entropy"]
    )
    assert run.proxy_accuracy == metrics["proxy_accuracy"]
    record = result.to_metrics()
    assert record["n_selected"] == len(pruned) == 120 and record["selected_strategy"] == "top"
    assert sum(record["selected_per_class"].values()) == 120 and sum(record["total_per_class"].values()) == 300
    assert record["end_to_end"]["relative_to"] == "proxy" and record["selection_budget"] == 0.1
    assert set(metrics) >= {"end_to_end", "auto", "timings", "proxy_history", "barely_beats_chance", "n_total"}


def test_stages_out_of_order_say_which_comes_first(texts):
    pruner = Pruner(fasttext(), ScoringSettings(("entropy",)), SelectionSettings("entropy", strategy="top"))
    with pytest.raises(RuntimeError, match=r"prepare\(\) first"):
        pruner.score()
    pruner.prepare(texts[0])
    with pytest.raises(RuntimeError, match=r"score\(\) first"):
        pruner.select()


def test_default_auto_without_target_falls_back_within_budget_trains_no_candidate_and_warns(texts, monkeypatch, caplog):
    import svp_hf.stages.auto

    def no_candidate(*args, **kwargs):
        raise AssertionError("a candidate was trained although the check cannot fit its budget")

    monkeypatch.setattr(svp_hf.stages.auto, "proxy_trainer", lambda *a, **k: no_candidate)
    train, _ = texts
    with caplog.at_level(logging.WARNING):
        pruned, metrics = svp_hf.prune(
            train, proxy="fasttext", fraction=0.5, method="entropy", return_metrics=True, **FAST
        )
    auto = metrics["auto"]
    assert metrics["strategy"] == "auto" and metrics["selected_strategy"] == "random" and auto["candidates"] == []
    assert "does not fit" in auto["fallback"] and auto["budget"]["reference"] == "proxy" and not auto["budget"]["fits"]
    warned = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "svp_hf.stages.orchestrator"
    ]
    assert len(warned) == 1 and "kept a random subset, not one ranked by entropy" in warned[0]
    account = metrics["end_to_end"]
    assert account["selection_budget"] == 0.1 and account["relative_to"] == "proxy"
    assert metrics["timings"]["auto"] == auto["seconds"] and len(pruned) == 150


def test_auto_with_a_target_prices_its_check_from_a_probe_of_the_target(texts, monkeypatch):
    import dataclasses

    import svp_hf.stages.orchestrator as orchestrator

    real, calls = orchestrator.probe_training_rate, []

    def probe(*args, **kwargs):  # the real probes; the target's rate as for a target 10,000 times dearer per row, so
        rate, seconds = real(*args, **kwargs)  # that the proxy and the probes fit on 300 rows
        calls.append(rate)
        return (dataclasses.replace(rate, train=rate.train * 1e4) if len(calls) == 1 else rate), seconds

    monkeypatch.setattr(orchestrator, "probe_training_rate", probe)
    train, test = texts
    selection = SelectionSettings("entropy", fraction=0.5, strategy="auto", auto=AutoSettings(seeds=1, budget=1.0))
    pruner = Pruner(
        fasttext(), ScoringSettings(("entropy",)), selection, target=fasttext(epochs=3, name="fasttext,dim=32")
    )
    pruner.prepare(train, test)
    pruner.score()
    decision = pruner.choose_strategy()
    budget = decision.budget
    # the target was probed once, by the pre-check (with the proxy), before the proxy trained; plan() reused it
    check = budget["precheck"]
    assert budget["reference"] == "target" and check["probe_seconds"] > 0 and budget["budget"] == 1.0
    assert check["fits"] and budget["reference_seconds"] == pytest.approx(check["reference_seconds"])
    assert "probe_seconds" not in budget and pruner.timings["precheck"] == check["probe_seconds"]
    assert budget["spent_seconds"] >= pruner.timings["proxy_training"] + check["probe_seconds"]
    assert pruner.check_epochs() == 3 and decision.epochs == 3 and len(calls) == 2
    assert pruner.timings["auto"] == decision.seconds
    result = pruner.select()
    target = train_target(result, pruner.target, info=pruner.info, accelerator=pruner.accelerator, evaluation=test)
    record = result.to_metrics()
    assert record["target"] == "fasttext,dim=32" and record["target_accuracy"] == target.accuracy
    assert record["timings"]["target_training"] == target.seconds
    account = record["end_to_end"]
    assert account["relative_to"] == "target" and account["full_data_estimated"]
    stages = account["stages"]
    assert stages["auto"] == pytest.approx(decision.seconds) and set(stages) >= {
        "precheck",
        "proxy_training",
        "scoring",
        "auto",
        "selection",
    }


def test_choose_runs_the_whole_check_unless_given_a_budget(texts):
    train, _ = texts
    scores = svp_hf.score(train, proxy="fasttext", methods="entropy", **FAST)
    decision = svp_hf.choose(
        train, scores, "entropy", 0.5, proxy="fasttext", auto_seeds=1, **{k: v for k, v in FAST.items() if k != "seed"}
    )
    assert decision.budget is None and decision.candidates and decision.fallback is None
    tight = svp_hf.choose(
        train, scores, "entropy", 0.5, proxy="fasttext", auto_seeds=1, selection_budget=0.01, proxy_epochs=2
    )
    assert tight.fallback and tight.strategy == "random" and tight.budget["reference"] == "proxy"


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, float("nan"), "lots"])
def test_a_bad_selection_budget_is_refused_before_training(texts, bad):
    with pytest.raises(SVPConfigError, match="selection_budget must be"):
        svp_hf.prune(texts[0], proxy="fasttext", selection_budget=bad, **FAST)


def test_selection_budget_is_a_recipe_key_and_null_means_none():
    from svp_hf.config import parse_args

    assert parse_args([])[1].selection_budget == 0.1
    assert parse_args(["--selection_budget", "null"])[1].selection_budget is None
    assert parse_args(["--selection_budget", "0.25"])[1].selection_budget == 0.25
    with pytest.raises(SVPConfigError, match=r"selection_budget must be in \(0, 1\]"):
        parse_args(["--selection_budget", "2"])


def test_report_and_card_state_the_budget_and_the_fallback(texts):
    from svp_hf.publish.card import dataset_card
    from svp_hf.publish.report import render_report

    _, metrics = svp_hf.prune(texts[0], proxy="fasttext", fraction=0.5, method="entropy", return_metrics=True, **FAST)
    record = {**metrics, "job": "coreset", "method": "entropy", "strategy": "auto", "fraction": 0.5}
    report = render_report(record, [], "images")
    assert "The check did not fit the selection budget, so the fallback rule decided" in report
    assert "Budget: selection may spend 0.1 of the proxy's full-data training" in report
    card = str(dataset_card(record))
    assert (
        "kept `random` by its fallback rule: its check did not fit the selection budget (0.1 of the full-data training"
        in card
    )


def test_auto_says_in_one_warning_line_when_it_keeps_random_and_why(caplog):
    from svp_hf.stages.auto import AutoDecision
    from svp_hf.stages.orchestrator import report_decision

    candidates = [
        {"name": "random", "strategy": "random", "mean": 0.50},
        {"name": "top", "strategy": "top", "mean": 0.49},
        {"name": "coverage (beta 0)", "strategy": "coverage", "mean": 0.505},
    ]
    with caplog.at_level(logging.INFO, logger="svp_hf.stages.orchestrator"):
        report_decision(
            AutoDecision("random", None, candidates=candidates, spread=0.02, margin_over_random=0.005), "el2n"
        )
        report_decision(
            AutoDecision("coverage", 0.0, candidates=candidates, spread=0.001, margin_over_random=0.005), "el2n"
        )
    (warned,), (told,) = [
        [r.getMessage() for r in caplog.records if r.levelno == level] for level in (logging.WARNING, logging.INFO)
    ]
    assert (
        warned.startswith(
            "strategy auto kept a random subset, not one ranked by el2n: the best other candidate, "
            "coverage (beta 0), scored +0.0050 against random"
        )
        and "spread of 0.0200" in warned
    )
    assert told.startswith("strategy auto chose coverage (beta 0) over el2n's scores")


def test_the_precheck_target_is_handed_only_to_the_training_of_that_very_model():
    """take_target_model hands the pre-check's untrained target over once, and only to a training of the same model,
    data and seed (another seed, model or weights source builds its own); its building moves from the pre-check's
    seconds to the target's."""
    from types import SimpleNamespace

    import torch

    from svp_hf.data.columns import DataInfo
    from svp_hf.stages.orchestrator import PruneResult
    from svp_hf.stages.proxy import FreshModel

    info = DataInfo("image", ["image"], "label", 10)
    settings = ModelSettings("resnet20")
    fresh = FreshModel(settings, info, 3, torch.nn.Linear(2, 2), torch.get_rng_state(), 0.4)

    def result():
        return SimpleNamespace(target_model=fresh, timings={"precheck": 1.0})

    for other in (
        (settings, info, 4),  # another seed
        (ModelSettings("resnet56"), info, 3),  # another model
        (ModelSettings("resnet20", pretrained=True), info, 3),  # another weights source
        (settings, DataInfo("image", ["image"], "label", 100), 3),  # other classes
    ):
        held = result()
        assert PruneResult.take_target_model(held, *other) is None
        assert held.target_model is fresh and held.timings == {"precheck": 1.0}
    held = result()
    assert PruneResult.take_target_model(held, ModelSettings("resnet20"), info, 3) is fresh
    assert held.target_model is None and held.timings == {"precheck": pytest.approx(0.6), "target_build": 0.4}
    assert PruneResult.take_target_model(held, settings, info, 3) is None  # taken already
