"""auto's pre-check (svp_hf.stages.orchestrator.Pruner.precheck): a proxy whose training and scoring alone would exceed
the selection budget is never trained; what the job, the Python API, resume and push_to_hub then write."""

import json
import logging

import datasets
import numpy as np
import pandas as pd
import pytest

import svp_hf
import svp_hf.publish.hub
import svp_hf.stages.orchestrator as orchestrator
from svp_hf.jobs import coreset
from svp_hf.record import selection_record
from svp_hf.stages.auto import TrainingRate

from .conftest import REPO, TINY_RUN, FakeHub

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
# The default strategy (auto) and budget (0.1), a target, tiny data.
TINY = [*TINY_RUN, "--score_methods", "random", "--strategy", "auto"]
# 300 rows x 1 epoch: 30 s, a budget of 3 s at 0.1: more than the target's (fake) probe, so the proxy is probed.
CHEAP_TARGET = TrainingRate(train=0.1, evaluate=1e-6, source="fake probe of the target")
DEAR_PROXY = TrainingRate(train=1.0, evaluate=0.1, source="fake probe of the proxy")
# 300 rows x 1 epoch: 3 ms, a budget of 0.3 ms: less than any probe of it.
TINY_TARGET = TrainingRate(train=1e-5, evaluate=1e-6, source="fake probe of a fast target")


@pytest.fixture
def probes(monkeypatch):
    """Fake probes (the target's first, then the proxy's: the pre-check's order), recorded; and a proxy that must
    never be trained."""
    calls = []

    def probe(make_model, family, dataset, info, config, accelerator, **kwargs):
        calls.append(config.epochs)
        return (CHEAP_TARGET if len(calls) % 2 else DEAR_PROXY), 0.25

    def never(*args, **kwargs):
        raise AssertionError("the proxy was trained although the pre-check found that it cannot pay")

    monkeypatch.setattr(orchestrator, "probe_training_rate", probe)
    monkeypatch.setattr(orchestrator, "train_and_score", never)
    return calls


def test_a_proxy_that_cannot_pay_is_never_trained_and_the_run_says_so(tmp_path, probes, caplog, capsys):
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        coreset.main([QUICKSTART, "--output_dir", str(out), *TINY, "--score_with_target", "true"])
    assert len(probes) == 2  # the target and the proxy, once each: plan() reuses the target's
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "svp_hf" in r.name]
    assert len(warned) == 1 and "selection cannot pay for itself" in warned[0] and "kept random" in warned[0]
    written = json.loads((out / "metrics.json").read_text())
    auto = written["auto"]
    check = auto["budget"]["precheck"]
    assert written["selected_strategy"] == "random" and auto["candidates"] == [] and not check["fits"]
    assert check["proxy_estimate_seconds"] > check["budget_seconds"] and check["budget"] == 0.1
    assert set(check) >= {"proxy_estimate_seconds", "reference_seconds", "budget", "fits", "probe_seconds"}
    assert "selection cannot pay for itself" in auto["fallback"]
    assert written["scores_source"]["source"] == "not_scored" and written["proxy_accuracy"] is None
    assert written["proxy_epochs"] is None and written["proxy_history"] == [] and written["score_statistics"] == {}
    assert written["rank_agreement"] is None and "barely_beats_chance" not in written
    # The target trained from the model the pre-check built and probed: building it is the target's, not selection's.
    timings = written["timings"]
    assert timings["target_build"] == check["target_build_seconds"] > 0 and "proxy_training" not in timings
    assert timings["precheck"] == pytest.approx(0.5, abs=0.05)  # the two (fake) probes and the weights' checks
    account = written["end_to_end"]
    assert account["relative_to"] == "target" and account["stages"]["precheck"] == timings["precheck"]
    assert "target_build" not in account["stages"]
    assert account["selection_seconds"] >= 0.5
    # random, exactly as random selects with scores
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == ["svp_index", "label"] and len(scores) == 300
    assert list(svp_hf.load_scores(out).column_names) == ["svp_index", "label"]
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert "svp_score" not in loaded["train"].column_names and "svp_score" not in loaded["test"].column_names
    table = datasets.Dataset.from_pandas(scores)
    keep = svp_hf.selected_indices(table, "least_confidence", 0.5, strategy="random", seed=0)
    assert sorted(loaded["train"]["svp_index"]) == sorted(keep.tolist())
    report = (out / "report.md").read_text()
    assert "No row was scored and the proxy was never trained" in report
    assert "so selection could not pay for itself: the proxy was not trained" in report
    card = (out / "dataset" / "README.md").read_text()
    assert "without training the `resnet20` proxy" in card and "no row was scored, so there is no `svp_score`" in card
    assert "the proxy was not trained" in capsys.readouterr().out  # the end-of-run summary


def test_a_rerun_reads_the_precheck_and_probes_nothing(tmp_path, probes, monkeypatch):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    saved = orchestrator.precheck(
        budget=0.1,
        n_rows=300,
        proxy_rate=DEAR_PROXY,
        proxy_epochs=1,
        target_rate=CHEAP_TARGET,
        target_epochs=1,
        probe_seconds=0.5,
    ).as_dict()  # as an interrupted run saved it
    (out / "checkpoints" / "precheck.json").write_text(json.dumps(saved))
    metrics = coreset.main([QUICKSTART, "--output_dir", str(out), *TINY])
    assert probes == [] and metrics["auto"]["budget"]["precheck"] == saved
    assert metrics["timings"]["precheck"] == 0.5 and not (out / "checkpoints").exists()


def test_push_to_hub_publishes_a_run_that_scored_nothing(tmp_path, probes, monkeypatch):
    hub = FakeHub()
    monkeypatch.setattr(svp_hf.publish.hub, "HfApi", hub.api)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    out = tmp_path / "out"
    coreset.main([QUICKSTART, "--output_dir", str(out), *TINY])
    svp_hf.push_to_hub(out, "alice/digits-random")
    files = hub.repos["alice/digits-random"]["files"]
    assert "scores/proxy.parquet" in files and b"svp_score" not in files["README.md"].split(b"no `svp_score`")[0]


def test_prune_with_a_target_keeps_random_without_training_the_proxy(tiny_digits, probes):
    train, test = tiny_digits
    kwargs = dict(proxy_epochs=1, batch_size=64, target_epochs=2, seed=0)
    pruned = svp_hf.prune(train, "resnet20", 0.5, target="resnet20", eval_dataset=test, **kwargs)
    assert "svp_score" not in pruned.column_names and len(pruned) == 100
    assert selection_record(pruned)["scores_source"]["source"] == "not_scored"
    pruned_again, metrics = svp_hf.prune(train, "resnet20", 0.5, target="resnet20", return_metrics=True, **kwargs)
    assert pruned_again["svp_index"] == pruned["svp_index"] and metrics["selected_strategy"] == "random"
    assert metrics["auto"]["budget"]["precheck"]["fits"] is False and metrics["proxy_accuracy"] is None
    assert metrics["end_to_end"] is None  # nothing was trained: no measured reference
    assert probes == [2, 2]  # the proxy is the target's own model: one probe of the target per call prices both


def test_a_target_probe_over_the_budget_by_itself_keeps_random_without_probing_the_proxy(
    tmp_path, probes, monkeypatch, capsys
):
    """The target's probe alone (0.25 s here) is more than the budget (0.1 x a 3 ms full-data training): the pre-check
    cannot fit whatever the proxy costs, so the proxy is neither built nor probed (a large one's building can be the
    whole budget); the run, its report, card and summary say so."""
    built = []
    real_create = orchestrator.create_model
    monkeypatch.setattr(orchestrator, "create_model", lambda *a, **k: built.append(a[0]) or real_create(*a, **k))
    monkeypatch.setattr(orchestrator, "probe_training_rate", lambda *a, **k: probes.append(1) or (TINY_TARGET, 0.25))
    out = tmp_path / "out"
    metrics = coreset.main([QUICKSTART, "--output_dir", str(out), *TINY])
    check = metrics["auto"]["budget"]["precheck"]
    assert probes == [1] and built == []  # the target's probe only; no proxy built (the target's is build_model's)
    assert not check["fits"] and check["proxy_probed"] is False and check["proxy_estimate_seconds"] is None
    assert check["probe_seconds"] > check["budget_seconds"] == pytest.approx(0.1 * 300 * TINY_TARGET.train)
    assert metrics["selected_strategy"] == "random" and "target's probe alone" in metrics["auto"]["fallback"]
    assert "without probing or training the proxy" in metrics["auto"]["fallback"]
    # The target trained from the model its probe built: only the probe itself is selection's.
    assert metrics["timings"]["precheck"] == pytest.approx(0.25, abs=0.05)
    assert "the proxy was not even probed" in (out / "report.md").read_text()
    assert "the target's probe alone" in (out / "dataset" / "README.md").read_text()
    assert "so the proxy was not even probed" in capsys.readouterr().out


def test_building_the_proxy_is_part_of_its_training_time(tiny_digits, monkeypatch):
    """Selection pays for building its proxy: timings["proxy_training"] counts it (a 2M-row fastText table takes a
    tenth of a second or more to build)."""
    import time

    import svp_hf.stages.proxy as proxy_stage

    real = proxy_stage.create_model

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    trained = []
    real_train = proxy_stage.train_model
    monkeypatch.setattr(proxy_stage, "create_model", slow)
    monkeypatch.setattr(proxy_stage, "train_model", lambda *a, **k: trained.append(real_train(*a, **k)) or trained[-1])
    train, _ = tiny_digits
    _, metrics = svp_hf.prune(
        train, "resnet20", 0.5, "entropy", strategy="top", proxy_epochs=1, batch_size=64, return_metrics=True
    )
    assert metrics["timings"]["proxy_training"] >= trained[0].seconds + 0.3


def test_without_a_target_or_when_only_scoring_there_is_no_precheck(tiny_digits, monkeypatch):
    calls = []
    real = orchestrator.probe_training_rate
    monkeypatch.setattr(orchestrator, "probe_training_rate", lambda *a, **k: calls.append(1) or real(*a, **k))
    train, _ = tiny_digits
    svp_hf.score(train, "resnet20", "entropy", proxy_epochs=1, batch_size=64)
    assert calls == []
    _, metrics = svp_hf.prune(
        train, "resnet20", 0.5, "entropy", proxy_epochs=1, batch_size=64, selection_budget=0.5, return_metrics=True
    )
    assert calls == [] and "precheck" not in metrics["timings"] and "precheck" not in (metrics["auto"]["budget"] or {})


def test_a_proxy_that_fits_trains_and_the_plan_reuses_the_targets_probe(tiny_digits, monkeypatch):
    calls = []

    def probe(make_model, family, dataset, info, config, accelerator, **kwargs):
        calls.append(config.epochs)  # a target dear per row (600 s on all rows), a cheap proxy: it fits
        if len(calls) == 1:
            return TrainingRate(train=1.0, evaluate=1e-7), 0.01
        return TrainingRate(train=1e-6, evaluate=1e-7, build=0.004), 0.01  # the proxy's probe built it in 4 ms

    monkeypatch.setattr(orchestrator, "probe_training_rate", probe)
    train, _ = tiny_digits
    _, metrics = svp_hf.prune(
        train,
        "resnet20",
        0.5,
        target="resnet20",
        proxy_epochs=1,
        batch_size=64,
        target_batch_size=32,  # another cost per row: the proxy is probed too
        target_epochs=3,
        return_metrics=True,
    )
    assert calls == [3, 1]  # the target (3 epochs) then the proxy, once each
    budget = metrics["auto"]["budget"]
    assert budget["precheck"]["fits"] and "probe_seconds" not in budget  # no second probe of the target
    assert budget["spent_seconds"] >= metrics["timings"]["proxy_training"] + 0.02
    assert budget["build_seconds"] == 0.004  # every candidate priced with building its model, as the probe's was
    assert budget["precheck"]["proxy_build_seconds"] == 0.004
    assert metrics["proxy_accuracy"] is None and "entropy" not in metrics["scored_methods"]
    # No target trains here (prune): building the target probed stays selection's.
    built = budget["precheck"]["target_build_seconds"]
    assert metrics["scores_source"] is None and "target_build" not in metrics["timings"]
    assert metrics["timings"]["precheck"] == pytest.approx(0.02 + built, abs=0.05)


def test_a_probe_prices_the_checkpoint_each_epoch_saves(tmp_path):
    """Where the run checkpoints, the probe's longer epoch saves one too (in a scratch folder inside the checkpoint
    folder, removed after): its seconds are the rate's price of a save, kept out of the epoch's timing and counted
    once per save a training makes."""
    from svp_hf.data import add_index, reviews_dataset
    from svp_hf.engine.training import TrainingConfig, make_accelerator
    from svp_hf.models import create_model
    from svp_hf.stages.auto import probe_training_rate
    from svp_hf.stages.proxy import prepare_inputs

    rows = add_index(reviews_dataset(n=300)["train"].select(range(200)))
    family, info = prepare_inputs(rows, "fasttext", {})
    config = TrainingConfig(epochs=3, batch_size=16)
    accelerator = make_accelerator()

    def probe(folder):
        return probe_training_rate(
            lambda: create_model("fasttext", info), family, rows, info, config, accelerator, checkpoint_dir=folder
        )[0]

    plain, priced = probe(None), probe(str(tmp_path))
    assert "to save a checkpoint" in priced.source and "save" not in plain.source
    assert priced.save > 0 and priced.train > 0 and plain.save == 0
    assert priced.training_seconds(200, 3) >= priced.save + priced.train * 200 * 3  # its final epoch saves
    assert list(tmp_path.iterdir()) == []  # the scratch checkpoint is gone


def test_a_repeated_probe_keeps_the_fastest_reading_of_each_epoch(monkeypatch):
    """Other work on the machine only slows a measurement down: with repeats, each epoch's fastest reading is kept."""
    from svp_hf.engine.training import TrainingConfig, TrainResult
    from svp_hf.stages import auto

    readings = iter([9.0, 0.5, 1.0, 0.2, 0.4])  # warm-up, then (short, long) twice: the first pair slowed down
    monkeypatch.setattr(
        auto, "train_model", lambda model, *a, **k: TrainResult(model, loop_seconds=next(readings), seconds=1.0)
    )
    rows = datasets.Dataset.from_dict({"x": list(range(100)), "label": [0, 1] * 50})
    rate, _ = auto.probe_training_rate(
        lambda: object(), None, rows, None, TrainingConfig(batch_size=10), None, evaluate=False, repeats=2
    )
    assert rate.train == pytest.approx((0.4 - 0.2) / 10) and rate.per_epoch == pytest.approx(0.0)
    assert "fastest of 2" in rate.source


def test_a_text_probes_epochs_span_the_rows_lengths():
    """The probe's short and long epochs take their rows from one sample sorted by length, three neighbours at a
    time: both see the same spread of lengths, disjoint from each other and from the warm-up."""
    from svp_hf.stages.auto import probe_rows

    lengths = np.random.default_rng(0).lognormal(3.0, 1.0, size=2000)
    for seed in range(5):
        warm, short, long = probe_rows(2000, 16, 1, seed, lambda rows: lengths[rows])
        assert (len(warm), len(short), len(long)) == (16, 16, 32)
        assert len(set(warm) | set(short) | set(long)) == 64
        # each short row comes from its own group of ranks: the two epochs' mean lengths differ by far less than
        # random batches' do, and the short epoch alone spans the lengths
        assert abs(lengths[short].mean() - lengths[long].mean()) < 0.25 * lengths.mean()
        assert lengths[short].max() > np.quantile(lengths, 0.85) and lengths[short].min() < np.quantile(lengths, 0.1)
    # without sizes (images), or on data too small for a sample: the seeded random rows, as before
    warm, short, long = probe_rows(2000, 16, 1, 3)
    again = probe_rows(2000, 16, 1, 3, lambda rows: None)
    assert all(np.array_equal(a, b) for a, b in zip((warm, short, long), again))


def test_a_text_probe_prices_a_typical_row_whatever_rows_it_draws(monkeypatch):
    """A text model's step costs what its rows' lengths add up to: the probe's price of a row stays near the mean
    row's whatever the seed (random batches of 16 priced MiniLM's SST-2 training anywhere from 50 s to 112 s)."""
    from svp_hf.data.columns import DataInfo
    from svp_hf.engine.training import TrainingConfig, TrainResult
    from svp_hf.stages import auto

    words = np.random.default_rng(1).lognormal(2.0, 0.9, size=3000).astype(int) + 1
    texts = ["w " * int(n) for n in words]
    rows = datasets.Dataset.from_dict({"text": texts, "label": [0, 1] * 1500})
    info = DataInfo("text", ["text"], "label", 2)
    per_char = 1e-4

    def train(model, family, subset, *args, **kwargs):
        return TrainResult(model, loop_seconds=0.2 + per_char * sum(map(len, subset["text"])), seconds=1.0)

    monkeypatch.setattr(auto, "train_model", train)
    typical = per_char * np.mean([len(t) for t in texts])
    prices = []
    for seed in range(8):
        rate, _ = auto.probe_training_rate(
            lambda: object(), None, rows, info, TrainingConfig(batch_size=16), None, evaluate=False, seed=seed
        )
        prices.append(rate.train)
        assert "spread over the texts' lengths" in rate.source
    # over 200 seeds of these rows: spread over the lengths, 0.99 +- 0.14 of the typical row; random rows, 0.97 +- 0.44
    assert np.max(np.abs(np.array(prices) / typical - 1.0)) < 0.35, (prices, typical)


def test_under_two_processes_the_probes_longer_epoch_has_twice_the_steps_of_each_process(monkeypatch):
    """Under N processes a step trains one batch in every process (accelerate deals the batches out, the last
    process repeating rows when they run short): the probe's epochs are sized in such steps, so that the longer does
    twice the shorter's work in each process. Sized in batches, both were one step of the same size in each, and
    the per-row rate came from the noise between two equal readings (a 2-process pre-check priced a target at a
    quarter of its training and declined a budget that fits)."""
    import math
    from types import SimpleNamespace

    from svp_hf.engine.training import TrainingConfig, TrainResult
    from svp_hf.stages import auto

    processes, batch = 2, 10

    def train(model, family, subset, *args, **kwargs):  # 0.5 s per epoch and 0.1 s per step of every process
        steps = math.ceil(math.ceil(len(subset) / batch) / processes)
        return TrainResult(model, loop_seconds=0.5 + 0.1 * steps, seconds=1.0)

    monkeypatch.setattr(auto, "train_model", train)
    rows = datasets.Dataset.from_dict({"x": list(range(200)), "label": [0, 1] * 100})
    accelerator = SimpleNamespace(num_processes=processes)
    rate, _ = auto.probe_training_rate(
        lambda: object(), None, rows, None, TrainingConfig(batch_size=batch), accelerator, evaluate=False
    )
    assert rate.train == pytest.approx(0.1 / (batch * processes)) and rate.per_epoch == pytest.approx(0.5)
    assert rate.training_seconds(200, 1) == pytest.approx(0.5 + 0.1 * 10)  # 200 rows: 10 steps of 2 x 10 rows
    assert "epochs of 20 and 40 rows" in rate.source


def test_a_proxy_that_is_the_targets_own_model_is_priced_by_one_probe_of_the_target(tmp_path, probes, monkeypatch):
    """The proxy trained as the target, for a share of its epochs at least the budget: its training alone is over the
    budget whatever the rate, so only the target is probed, once, and the proxy is priced at its rate (its scoring at
    the probe's evaluation rate: that probe evaluates)."""
    evaluates, fake = [], orchestrator.probe_training_rate
    monkeypatch.setattr(
        orchestrator, "probe_training_rate", lambda *a, **k: evaluates.append(k.get("evaluate", True)) or fake(*a, **k)
    )
    out = tmp_path / "out"
    argv = [QUICKSTART, "--output_dir", str(out), *TINY, "--target", "resnet20", "--target_epochs", "2"]
    metrics = coreset.main(argv)
    check = metrics["auto"]["budget"]["precheck"]
    assert probes == [2] and not check["fits"]  # the target's probe (its 2 epochs), no proxy probe
    # its training at the target's rate for half the epochs, and building it, as long as building the target took
    assert check["proxy_build_seconds"] == check["target_build_seconds"] > 0
    assert check["proxy_training_seconds"] == pytest.approx(
        check["reference_seconds"] / 2 + check["proxy_build_seconds"]
    )
    assert evaluates == [True] and check["proxy_scoring_seconds"] == pytest.approx(
        CHEAP_TARGET.evaluate * metrics["n_total"]
    )
    assert metrics["selected_strategy"] == "random"


@pytest.mark.parametrize("keep", [False, True])
def test_in_a_job_only_the_proxys_probe_times_a_checkpoint_save_and_only_when_checkpoints_are_kept(
    tmp_path, probes, monkeypatch, keep
):
    """With `keep_checkpoints` the proxy's probe times a save (the proxy's price would be low without it); without
    it the trainings save only when a save's estimated price is under a tenth of the training, so no probe times one.
    The target's probe never does (timing a large target's save can cost more than the rest of the probe, and leaving
    it out prices the full-data training low, which only makes the budget smaller)."""
    folders, fake = [], orchestrator.probe_training_rate
    monkeypatch.setattr(
        orchestrator, "probe_training_rate", lambda *a, **k: folders.append(k.get("checkpoint_dir")) or fake(*a, **k)
    )
    out = tmp_path / "out"
    coreset.main([QUICKSTART, "--output_dir", str(out), *TINY, "--keep_checkpoints", str(keep).lower()])
    assert len(folders) == 2 and folders[0] is None  # the target's probe first, then the proxy's
    if keep:
        assert folders[1] is not None and str(folders[1]).startswith(str(out))
    else:
        assert folders[1] is None


@pytest.mark.parametrize("name", ["resnet20", "fasttext,dim=8,buckets=4096"])
def test_a_frozen_probe_measures_the_target_and_leaves_it_as_built(name, digits, reviews):
    """The pre-check probes the target it built at learning rate 0 and restores its buffers: every weight and buffer
    (batch-norm statistics included) is bit for bit as built, and the rate is measured all the same."""
    import torch

    from svp_hf.engine.training import TrainingConfig, make_accelerator
    from svp_hf.models import create_model, resolve_family
    from svp_hf.stages.auto import probe_training_rate
    from svp_hf.stages.proxy import prepare_inputs

    train = (digits if name == "resnet20" else reviews)["train"].select(range(200))
    _, info = prepare_inputs(train, name, {})
    model = create_model(name, info)
    built = {k: v.clone() for k, v in model.state_dict().items()}
    rate, seconds = probe_training_rate(
        lambda: model, resolve_family(name), train, info, TrainingConfig(batch_size=16), make_accelerator(), frozen=True
    )
    assert rate.train > 0 and seconds > 0
    after = model.state_dict()
    assert after.keys() == built.keys() and all(torch.equal(after[k], built[k]) for k in built)


def test_the_target_trained_from_the_prechecks_model_is_the_target_built_again(digits):
    """seeded_model hands over the model the pre-check built (with the RNG state its building left): training it is
    training the same model built again from the seed, bit for bit."""
    import torch

    from svp_hf.engine.training import TrainingConfig, make_accelerator, train_model
    from svp_hf.stages.auto import probe_training_rate
    from svp_hf.stages.proxy import build_model, prepare_inputs, seeded_model
    from svp_hf.stages.settings import ModelSettings

    train = digits["train"].select(range(96))
    family, info = prepare_inputs(train, "resnet20", {})
    config = TrainingConfig(batch_size=16, epochs=1)
    settings, accelerator = ModelSettings("resnet20", training=config), make_accelerator()
    fresh = build_model(settings, info, seed=3)
    probe_training_rate(lambda: fresh.model, family, train, info, config, accelerator, seed=3, frozen=True)
    trained, states = [], []
    for given in (fresh, None):
        torch.manual_seed(123)  # whatever ran in between
        model = seeded_model(settings, info, 3, given)
        states.append(torch.get_rng_state())  # what follows draws the same
        trained.append(train_model(model, family, train, info, config, accelerator).model)
    assert trained[0] is fresh.model and torch.equal(*states)
    a, b = (m.state_dict() for m in trained)
    assert all(torch.equal(a[k], b[k]) for k in a)
