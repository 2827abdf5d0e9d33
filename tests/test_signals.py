"""Training signals and the methods that read them (svp_hf.selection.signals): AUM and dataset cartography from a known
logit history, forgetting through the same mechanism, and signals saved and restored with checkpoints."""

import numpy as np
import pytest
import torch

from svp_hf.selection.methods import get_method, register_method, training_signals
from svp_hf.selection.signals import (
    SIGNALS,
    CorrectnessSignal,
    make_signals,
    observe_all,
    restore_signals,
    signals_state,
    update_all,
)

# Three presentations of two examples (labels 0 and 2) over three classes.
HISTORY = [
    torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 0.5]]),
    torch.tensor([[0.5, 1.5, 0.0], [0.0, 0.0, 3.0]]),
    torch.tensor([[3.0, 0.0, 1.0], [1.0, 2.0, 0.0]]),
]
LABELS = torch.tensor([0, 2])


def feed(names):
    signals = make_signals(names, 2)
    for logits in HISTORY:
        update_all(signals, np.arange(2), observe_all(signals, logits, LABELS).numpy())
    return signals


def test_aum_is_the_mean_margin_of_the_assigned_class():
    signals = feed(["margin"])
    # example 0: 2-1, 0.5-1.5, 3-1 -> (1 - 1 + 2) / 3; example 1: 0.5-1, 3-0, 0-2 -> (-0.5 + 3 - 2) / 3
    expected = [2 / 3, 0.5 / 3]
    np.testing.assert_allclose(get_method("aum").scorer(signals["margin"]), expected, atol=1e-6)
    assert get_method("aum").descending is False  # low margins are the hard (or mislabelled) examples


def test_cartography_confidence_and_variability():
    signals = feed(["true_probability"])
    p = np.array([torch.softmax(logits, 1)[torch.arange(2), LABELS].numpy() for logits in HISTORY])
    np.testing.assert_allclose(get_method("confidence").scorer(signals["true_probability"]), p.mean(0), atol=1e-6)
    np.testing.assert_allclose(get_method("variability").scorer(signals["true_probability"]), p.std(0), atol=1e-6)
    assert get_method("confidence").descending is False and get_method("variability").descending is True


def test_forgetting_is_one_more_signal():
    signals = feed(["correctness"])
    # example 0: right, wrong, right -> one forgetting event; example 1: wrong, right, wrong -> one
    np.testing.assert_array_equal(get_method("forgetting").scorer(signals["correctness"]), [1.0, 1.0])
    assert training_signals([get_method(m) for m in ("forgetting", "aum", "confidence", "variability", "el2n")]) == [
        "correctness",
        "margin",
        "true_probability",
    ]


def test_signals_survive_a_state_round_trip_and_old_checkpoints_load():
    signals = feed(["correctness", "margin", "true_probability"])
    restored = restore_signals({"signals": signals_state(signals)}, ["margin", "true_probability", "correctness"])
    for name in signals:
        for key, value in signals[name].state_dict().items():
            np.testing.assert_array_equal(getattr(restored[name], key), value)
    old = restore_signals({"forgetting": signals["correctness"].state_dict()}, ["correctness", "margin"])
    assert set(old) == {"correctness"}  # what a checkpoint of an earlier version holds, and nothing invented


def test_a_training_method_must_name_a_known_signal():
    with pytest.raises(ValueError, match="names the training signal"):
        register_method("needs_history", needs="training")(lambda s: s)
    with pytest.raises(ValueError, match="unknown training signal"):
        register_method("needs_history", needs="training", signal="gradient_norm")(lambda s: s)
    assert set(SIGNALS.names()) >= {"correctness", "margin", "true_probability"}


def test_train_model_records_every_signal_and_resumes_them(tiny_digits, tmp_path):
    from accelerate import Accelerator

    from svp_hf.data import add_index
    from svp_hf.engine.training import TrainingConfig, train_model
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    train = add_index(tiny_digits[0].select(range(96)))
    family, info = prepare_inputs(train, "resnet20", {})
    names = ["correctness", "margin", "true_probability"]

    def run(epochs, folder):
        torch.manual_seed(0)
        cfg = TrainingConfig(epochs=epochs, batch_size=32, learning_rate=0.05, lr_schedule="constant", seed=0)
        return train_model(
            create_model("resnet20", info),
            family,
            train,
            info,
            cfg,
            Accelerator(),
            signals=names,
            checkpoint_dir=str(folder),
        )

    straight = run(2, tmp_path / "straight")
    run(1, tmp_path / "resumed")
    resumed = run(2, tmp_path / "resumed")  # continues after the first epoch's checkpoint
    assert set(straight.signals) == set(names)
    for name in names:
        np.testing.assert_array_equal(straight.signals[name].presentations, np.full(96, 2))
        for key, value in straight.signals[name].state_dict().items():
            np.testing.assert_allclose(getattr(resumed.signals[name], key), value, rtol=1e-6)


def test_a_proxy_checkpoint_without_the_signal_is_refused_before_training(tiny_digits, tmp_path, capsys):
    from safetensors.torch import save_file

    from svp_hf.jobs import coreset
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    from .conftest import REPO

    train, _ = tiny_digits
    _, info = prepare_inputs(train, "resnet20", {})
    save_file(create_model("resnet20", info).state_dict(), str(tmp_path / "model.safetensors"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        coreset.main(
            [
                str(REPO / "recipes" / "quickstart.yaml"),
                "--output_dir",
                str(out),
                "--proxy_checkpoint",
                str(tmp_path),
                "--method",
                "aum",
                "--score_methods",
                "entropy",
                "--max_train_samples",
                "200",
            ]
        )
    assert err.value.code == 2
    captured = capsys.readouterr().err
    assert "did not record the training signal(s) ['margin']" in captured and "aum" in captured
    assert "epoch 1" not in captured and not (out / "dataset").exists()


# --- forgetting events counted by the correctness signal -------------------------------------------------------------


def test_forgetting_counts_from_known_history():
    tracker = CorrectnessSignal(4)
    history = [  # rows: presentations; columns: examples
        [1, 0, 1, 0],
        [0, 0, 1, 1],
        [1, 0, 1, 0],
        [0, 0, 1, 1],
    ]
    for correct in history:
        tracker.update(np.arange(4), np.array(correct, dtype=bool))
    np.testing.assert_array_equal(tracker.scores(), [2.0, np.inf, 0.0, 1.0])


def test_forgetting_repeated_index_in_one_update_counts_twice():
    tracker = CorrectnessSignal(2)
    tracker.update(np.array([0, 0, 1]), np.array([True, False, True]))
    assert tracker.events.tolist() == [1, 0]
    assert tracker.presentations.tolist() == [2, 1]
    state = tracker.state_dict()
    other = CorrectnessSignal(2)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.scores(), tracker.scores())
