"""The training loop: no host synchronisation inside the step; signals and history as per-step updates give."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from svp_hf.api import prepare_inputs
from svp_hf.models import create_model
from svp_hf.training import TrainingConfig, train_model

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
