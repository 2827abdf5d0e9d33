"""Training (svp_hf.engine.training): resuming from the last epoch, optimizers and schedules, tensorboard logging."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from svp_hf.data import add_index, inspect_dataset
from svp_hf.engine.training import LR_SCHEDULES, TrainingConfig, evaluate_accuracy, parameter_groups, train_model
from svp_hf.errors import SVPConfigError
from svp_hf.models import create_model, resolve_family
from svp_hf.stages.proxy import prepare_inputs

from .conftest import separable


def test_training_resumes_from_its_last_epoch_checkpoint(setup, tmp_path):
    train, family, info, _ = setup
    config = TrainingConfig(epochs=2, batch_size=64, learning_rate=0.05, lr_schedule="constant", seed=0)

    def run(epochs, folder):
        torch.manual_seed(0)
        model = create_model("resnet20", info)
        cfg = TrainingConfig(**{**vars(config), "epochs": epochs})
        return train_model(
            model, family, train, info, cfg, Accelerator(), signals=["correctness"], checkpoint_dir=str(folder)
        )

    straight = run(2, tmp_path / "straight")
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["epoch_0002"]  # only the newest epoch is kept
    run(1, tmp_path / "resumed")  # stops after epoch 1, as if killed there
    resumed = run(2, tmp_path / "resumed")
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history == straight.history
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    straight_events, resumed_events = straight.signals["correctness"], resumed.signals["correctness"]
    np.testing.assert_array_equal(straight_events.scores(), resumed_events.scores())
    np.testing.assert_array_equal(straight_events.presentations, np.full(len(train), 2))


def test_checkpoints_cost_at_most_about_a_tenth_of_the_training_they_protect():
    """A save comes once the epochs since the last took 10x a save (before the first, as estimated from its bytes);
    the last epoch saves in any case when the final weights are kept, else by the same rule."""
    from svp_hf.engine.checkpoint import (
        CHECKPOINT_SHARE,
        SAVE_BYTES_PER_SECOND,
        checkpoint_due,
        estimated_save_seconds,
        planned_saves,
    )

    assert CHECKPOINT_SHARE == 0.1
    assert checkpoint_due(0.0, None) and checkpoint_due(1.0, 0.1) and not checkpoint_due(0.99, 0.1)
    assert checkpoint_due(0.0, 5.0, last_epoch=True)  # kept: a finished training is never trained again
    assert not checkpoint_due(0.2, 5.0, last_epoch=True, keep_last=False)  # deleted at the end: not worth 5 s
    assert checkpoint_due(50.0, 5.0, last_epoch=True, keep_last=False)
    assert planned_saves(10, epoch_seconds=1.0, save_seconds=0.05) == 10  # a save well under a tenth of an epoch
    assert planned_saves(10, epoch_seconds=0.05, save_seconds=1.5) == 1  # fastText's table: after the last epoch
    assert planned_saves(10, epoch_seconds=0.05, save_seconds=1.5, keep_last=False) == 0  # or never
    # 0.1-s epochs, 0.3-s saves: every 30 epochs (3 s of training), and the last: 30, 60, 90, 100.
    assert planned_saves(100, epoch_seconds=0.1, save_seconds=0.3) == 4
    assert planned_saves(100, epoch_seconds=0.1, save_seconds=0.3, keep_last=False) == 3
    assert planned_saves(1, 0.1, 5.0) == 1 and planned_saves(0, 1.0, 1.0) == 0
    assert estimated_save_seconds(int(SAVE_BYTES_PER_SECOND)) == pytest.approx(1.0)


def test_state_bytes_counts_the_weights_and_the_optimizers_state():
    from svp_hf.engine.checkpoint import state_bytes

    layer = torch.nn.Linear(10, 5)  # 55 fp32 parameters
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    assert state_bytes(layer, optimizer) == 55 * 4  # no momentum buffers before the first step
    layer(torch.ones(2, 10)).sum().backward()
    optimizer.step()
    assert state_bytes(layer, optimizer) == 2 * 55 * 4
    assert state_bytes(layer.to(torch.bfloat16)) == 55 * 2


def test_a_rate_prices_the_saves_its_training_will_make():
    from svp_hf.stages.auto import TrainingRate

    plain = TrainingRate(train=0.001, per_epoch=0.01)
    assert plain.training_seconds(100, 10) == pytest.approx(10 * (0.1 + 0.01))
    cheap = TrainingRate(train=0.001, per_epoch=0.01, save=0.005)  # under a tenth of an epoch: saved every epoch
    assert cheap.training_seconds(100, 10) == pytest.approx(10 * (0.1 + 0.01) + 10 * 0.005)
    dear = TrainingRate(train=0.001, per_epoch=0.01, save=2.0)  # saved after the last epoch only
    assert dear.training_seconds(100, 10) == pytest.approx(10 * (0.1 + 0.01) + 1 * 2.0)


@pytest.mark.parametrize("keep_last", [True, False])
def test_a_save_its_bytes_price_over_the_training_is_made_at_the_end_or_never(setup, tmp_path, monkeypatch, keep_last):
    """Before its first save a training estimates one from the bytes it writes: a save estimated at 100 s is not
    made after 4 short epochs, except the last epoch's when the final weights are kept."""
    from svp_hf.engine import training

    train, family, info, _ = setup
    estimated = []

    def estimate(nbytes):
        estimated.append(nbytes)
        return 100.0

    monkeypatch.setattr(training, "estimated_save_seconds", estimate)
    config = TrainingConfig(epochs=4, batch_size=64, learning_rate=0.05, lr_schedule="constant", seed=0)
    model = create_model("resnet20", info)
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    folder = tmp_path / "ckpt"
    result = train_model(
        model, family, train, info, config, Accelerator(), checkpoint_dir=str(folder), keep_last=keep_last
    )
    assert estimated and estimated[0] >= weights  # the weights, and the optimizer's momentum
    assert result.checkpoints == (1 if keep_last else 0)
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    assert names == (["epoch_0004"] if keep_last else [])


def test_a_save_that_outlasts_the_epochs_is_made_rarely_and_resuming_from_it_is_exact(setup, tmp_path, monkeypatch):
    """A save that takes longer than the epochs (as fastText's table does) is made after the first and the last epochs
    only; a run killed before its last epoch resumes from the older checkpoint and ends with exactly the model an
    uninterrupted run trains."""
    import time

    from svp_hf.engine import training

    train, family, info, _ = setup
    real_save, real_epoch, real_counter = training.save_epoch, training._train_epoch, time.perf_counter
    saved, clock = [], {"offset": 0.0}

    def slow_save(accelerator, path, epoch, state):  # 30 s on the training's clock: far longer than 10 tiny epochs
        saved.append(epoch)
        folder = real_save(accelerator, path, epoch, state)
        clock["offset"] += 30.0
        return folder

    monkeypatch.setattr(training, "save_epoch", slow_save)
    monkeypatch.setattr(training, "estimated_save_seconds", lambda nbytes: 0.0)  # the first save looks cheap
    monkeypatch.setattr(training.time, "perf_counter", lambda: real_counter() + clock["offset"])
    config = TrainingConfig(epochs=4, batch_size=64, learning_rate=0.05, lr_schedule="constant", seed=0)

    def run(folder):
        torch.manual_seed(0)
        return train_model(
            create_model("resnet20", info), family, train, info, config, Accelerator(), checkpoint_dir=str(folder)
        )

    straight = run(tmp_path / "straight")
    assert saved == [1, 4] and straight.checkpoints == 2 and straight.checkpoint_seconds >= 60.0
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["epoch_0004"]

    class Killed(Exception):
        pass

    epochs = []

    def killed_in_epoch_4(*args, **kwargs):
        epochs.append(1)
        if len(epochs) == 4:
            raise Killed
        return real_epoch(*args, **kwargs)

    saved.clear()
    monkeypatch.setattr(training, "_train_epoch", killed_in_epoch_4)
    with pytest.raises(Killed):
        run(tmp_path / "resumed")
    assert saved == [1] and sorted(p.name for p in (tmp_path / "resumed").iterdir()) == ["epoch_0001"]
    monkeypatch.setattr(training, "_train_epoch", real_epoch)
    saved.clear()
    resumed = run(tmp_path / "resumed")  # resumes after epoch 1, the last saved: trains epochs 2-4 again
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4] and saved == [2, 4]
    assert resumed.history == straight.history
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_report_to_tensorboard_logs_losses_accuracy_and_timings(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from svp_hf.jobs import coreset

    from .conftest import REPO

    out = tmp_path / "out"
    coreset.main(
        [
            str(REPO / "recipes" / "quickstart.yaml"),
            "--output_dir",
            str(out),
            "--report_to",
            "tensorboard",
            "--proxy_epochs",
            "2",
            "--max_train_samples",
            "100",
            "--max_eval_samples",
            "50",
            "--target",
            "",
            "--score_methods",
            "entropy",
            "--strategy",
            "top",
        ]
    )
    events = [str(p.parent) for p in out.rglob("events.out.tfevents.*")]
    assert events
    tags = set()
    for folder in events:
        acc = EventAccumulator(folder)
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {
        "proxy resnet20/loss",
        "proxy resnet20/accuracy",
        "proxy/eval_accuracy",
        "seconds/scoring",
        "seconds/total",
    } <= tags


def test_imagenet_schedule_warms_up_then_steps_down():
    from svp_hf.engine.training import LR_SCHEDULES

    schedule = LR_SCHEDULES.get("imagenet")
    warm = [schedule(e / 90) for e in range(5)]
    assert warm == sorted(warm) and warm[0] < 0.5 and warm[-1] < 1.0
    assert [schedule(e / 90) for e in (5, 29, 30, 59, 60, 79, 80, 89)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]


# --- optimizers and learning-rate schedules ---------------------------------------------------------------------------


def test_sparse_embeddings_take_plain_sgd_steps():
    model = create_model("fasttext,dim=4,buckets=64", inspect_dataset(separable(10, 0), "text"))
    dense, sparse = parameter_groups(model, 0.5, 0.9, 1e-4)
    assert [p.shape for p in sparse["params"]] == [(64, 4)] and [p.shape for p in dense["params"]] == [(2, 4)]
    assert sparse["lr"] == pytest.approx(5.0) and sparse["momentum"] == 0.0 and sparse["weight_decay"] == 0.0
    assert dense["weight_decay"] == 1e-4


def test_halving_schedule_is_the_papers():
    schedule = LR_SCHEDULES.get("halving")
    lrs = [0.01 * schedule(epoch / 15) for epoch in range(15)]
    assert lrs == pytest.approx([0.01] * 3 + [0.005] * 3 + [0.0025] * 3 + [0.00125] * 3 + [0.000625] * 3)


def test_linear_schedule_warms_up_then_decays_to_zero():
    schedule = LR_SCHEDULES.get("linear")
    assert 0 < schedule(0.0) < 0.05 and schedule(0.05) == pytest.approx(0.51)
    assert schedule(0.1) == pytest.approx(1.0) and schedule(0.55) == pytest.approx(0.5) and schedule(1.0) == 0.0


def test_adamw_fine_tunes_a_transformers_model_and_refuses_sparse_embeddings():
    train, test = separable(240, 0), separable(120, 1)
    info = inspect_dataset(train, "text")
    name = "config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64,max_length=16"
    family = resolve_family(name)
    torch.manual_seed(0)
    model = create_model(name, info)
    accelerator = Accelerator()
    config = TrainingConfig(
        epochs=4,
        batch_size=16,
        learning_rate=3e-3,
        weight_decay=0.01,
        lr_schedule="linear",
        optimizer="adamw",
        augment=False,
    )
    trained = train_model(model, family, add_index(train), info, config, accelerator)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert evaluate_accuracy(trained.model, family, test, info, accelerator) >= 0.9
    with pytest.raises(SVPConfigError, match="'adamw' cannot update the sparse embeddings of FastText"):
        fasttext = create_model("fasttext,dim=4,buckets=64", info)
        train_model(fasttext, resolve_family("fasttext"), add_index(train), info, config, accelerator)


SYNCS = ("item", "cpu", "numpy", "tolist", "__float__", "__int__", "__bool__")


@pytest.fixture
def count_syncs(monkeypatch):
    """Counts the tensor methods that wait for the device (and copy to the host)."""
    counts = {"n": 0}
    for name in SYNCS:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, __original=original, **kwargs):
            counts["n"] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    return counts


def _train(dataset, name, batch_size, signals=("correctness", "margin")):
    family, info = prepare_inputs(dataset, name, {})
    torch.manual_seed(0)
    model = create_model(name, info)
    config = TrainingConfig(epochs=1, batch_size=batch_size, learning_rate=0.05, lr_schedule="constant")
    return model, family, info, config


@pytest.mark.parametrize("name", ["resnet20", "fasttext"])
def test_host_syncs_per_epoch_do_not_grow_with_the_number_of_steps(tiny_digits, name, count_syncs):
    if name == "fasttext":
        from svp_hf.data import reviews_dataset

        dataset = reviews_dataset(n=250)["train"]
    else:
        dataset = tiny_digits[0]
    counts = []
    for batch_size in (50, 10):  # 4 and 20 steps
        model, family, info, config = _train(dataset, name, batch_size)
        count_syncs["n"] = 0
        train_model(model, family, dataset, info, config, Accelerator(), signals=["correctness", "margin"])
        counts.append(count_syncs["n"])
    assert counts[0] == counts[1], f"host syncs grew with the steps: {counts}"


def test_epoch_end_signals_equal_presentation_order_updates(tiny_digits):
    """The signals are updated once an epoch with every presentation in order: forgetting events and margins equal
    what the per-presentation definition gives from the recorded history of each example."""
    dataset = tiny_digits[0]
    model, family, info, config = _train(dataset, "resnet20", 32)
    config.epochs = 3
    result = train_model(model, family, dataset, info, config, Accelerator(), signals=["correctness", "margin"])
    correctness, margin = result.signals["correctness"], result.signals["margin"]
    assert (correctness.presentations == 3).all() and (margin.presentations == 3).all()
    assert len(result.history) == 3 and all(0.0 <= h["accuracy"] <= 1.0 for h in result.history)
    assert np.isfinite(margin.average()).all()
    assert (correctness.events <= 1).all()  # at most one correct -> incorrect transition in 3 presentations


def test_the_direct_optimizer_step_equals_accelerates_own():
    """svp_hf's step (the loss's backward and the wrapped optimizer's step called directly) trains exactly as
    Accelerate's wrappers do, sparse
    embeddings (plain SGD) and dense weights (momentum, weight decay) alike."""
    from svp_hf.engine.training import OPTIMIZERS, backward, optimizer_step

    weights = []
    for direct in (True, False):
        torch.manual_seed(0)
        net = torch.nn.ModuleDict(
            {"bag": torch.nn.EmbeddingBag(50, 4, mode="mean", sparse=True), "head": torch.nn.Linear(4, 2)}
        )
        accelerator = Accelerator(cpu=True)
        optimizer = OPTIMIZERS.get("sgd")(net, TrainingConfig(learning_rate=0.1, momentum=0.9, weight_decay=5e-4))
        net, optimizer = accelerator.prepare(net, optimizer)
        offsets = torch.tensor([0, 5, 12])
        for step in range(3):
            logits = net["head"](net["bag"](torch.arange(20) + step, offsets))
            loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 1]))
            if direct:
                backward(accelerator, loss)
                optimizer_step(optimizer)
            else:
                accelerator.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        assert all(p.grad is None for p in net.parameters())
        weights.append([p.detach().clone() for p in net.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights))


def test_recording_steps_in_groups_equals_recording_each_step(tiny_digits, monkeypatch):
    """Loss, accuracy and training signals computed once per group of steps equal those computed step by step."""
    import svp_hf.engine.training as training

    dataset = tiny_digits[0]
    results = []
    for group in (1, 3, 16):
        monkeypatch.setattr(training, "STEPS_PER_RECORD", group)
        model, family, info, config = _train(dataset, "resnet20", 16)
        config.epochs = 2
        results.append(
            train_model(
                model,
                family,
                dataset,
                info,
                config,
                Accelerator(cpu=True),
                signals=["correctness", "margin", "true_probability"],
            )
        )
    for other in results[1:]:
        assert other.history == results[0].history
        for name in ("correctness", "margin", "true_probability"):
            for key, value in results[0].signals[name].state_dict().items():
                np.testing.assert_array_equal(other.signals[name].state_dict()[key], value)
