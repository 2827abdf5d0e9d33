"""Training signals: per-example records of how the proxy's predictions evolve while it trains.

A selection method that scores from training dynamics declares the signal it reads (``register_method(...,
needs="training", signal="margin")``); the training loop creates every signal the chosen methods need and feeds each
the same thing on every presentation of an example, with no method-specific code in the loop. A signal is registered
once in :data:`SIGNALS` and has two halves:

- ``observe(logits, labels)``: one float per example of the batch, computed on the model's device;
- ``update(indices, values)``: folds a batch's values into per-example accumulators (numpy, one row per example;
  an index seen twice in one update is two presentations).

Signals are saved in every training checkpoint and restored on resume (``state_dict`` / ``load_state_dict``), and a
proxy checkpoint written by svp_hf carries them, so methods that read them can score without retraining.

Built in: ``correctness`` (forgetting events, Toneva et al. 2019), ``margin`` (the assigned class's logit minus the
largest other logit: area under the margin, Pleiss et al. 2020) and ``true_probability`` (the softmax probability of
the assigned class: dataset cartography's confidence and variability, Swayamdipta et al. 2020).
"""

from __future__ import annotations

from typing import Dict, Iterable, Optional, Sequence, Tuple, Type

import numpy as np
import torch

from ..registry import Registry

SIGNALS: Registry[Type["TrainingSignal"]] = Registry("training signal")


class TrainingSignal:
    """Base class: per-example accumulators over every presentation during training."""

    name = ""

    def __init__(self, n: int):
        self.presentations = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.presentations)

    @staticmethod
    def observe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, np.ndarray]:
        return {k: v.copy() for k, v in vars(self).items()}

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> None:
        for k, v in state.items():
            setattr(self, k, np.asarray(v).copy())

    def mean(self, total: np.ndarray) -> np.ndarray:
        """`total` / presentations (0 for an example never presented)."""
        return np.divide(
            total, self.presentations, out=np.zeros(len(total), dtype=np.float64), where=self.presentations > 0
        )


def register_signal(cls: Type[TrainingSignal]) -> Type[TrainingSignal]:
    """Class decorator registering a :class:`TrainingSignal` under its ``name``."""
    SIGNALS.register(cls.name, cls)
    return cls


class _SummingSignal(TrainingSignal):
    """Sums of the observed value and of its square per example (order within an update does not matter)."""

    def __init__(self, n: int):
        super().__init__(n)
        self.total = np.zeros(n, dtype=np.float64)
        self.total_sq = np.zeros(n, dtype=np.float64)

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        values = np.asarray(values, dtype=np.float64)
        np.add.at(self.total, indices, values)
        np.add.at(self.total_sq, indices, values * values)
        np.add.at(self.presentations, indices, 1)

    def average(self) -> np.ndarray:
        return self.mean(self.total)

    def std(self) -> np.ndarray:
        """Population standard deviation over presentations."""
        mean = self.average()
        return np.sqrt(np.maximum(self.mean(self.total_sq) - mean * mean, 0.0))


@register_signal
class MarginSignal(_SummingSignal):
    """The assigned class's logit minus the largest other logit (negative when misclassified)."""

    name = "margin"

    @staticmethod
    def observe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        assigned = logits.gather(1, labels.long().view(-1, 1)).squeeze(1)
        if logits.shape[1] < 2:
            return torch.zeros_like(assigned)
        others = logits.scatter(1, labels.long().view(-1, 1), float("-inf"))
        return assigned - others.max(dim=1).values


@register_signal
class TrueProbabilitySignal(_SummingSignal):
    """The softmax probability of the assigned class."""

    name = "true_probability"

    @staticmethod
    def observe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float(), dim=1).gather(1, labels.long().view(-1, 1)).squeeze(1)


@register_signal
class CorrectnessSignal(TrainingSignal):
    """Whether the prediction was right at each presentation; counts forgetting events (correct -> incorrect between
    consecutive presentations) and whether the example was ever learned."""

    name = "correctness"

    def __init__(self, n: int):
        super().__init__(n)
        self.last_correct = np.zeros(n, dtype=bool)
        self.ever_correct = np.zeros(n, dtype=bool)
        self.events = np.zeros(n, dtype=np.int64)

    @staticmethod
    def observe(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (logits.argmax(dim=-1) == labels).float()

    def update(self, indices: np.ndarray, values: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        correct = np.asarray(values) > 0.5
        # In order, so that an index seen twice in one update is two presentations.
        for chunk_idx, chunk_correct in _unique_runs(indices, correct):
            self.events[chunk_idx] += self.last_correct[chunk_idx] & ~chunk_correct
            self.last_correct[chunk_idx] = chunk_correct
            self.ever_correct[chunk_idx] |= chunk_correct
            self.presentations[chunk_idx] += 1

    def scores(self) -> np.ndarray:
        """Forgetting events per example; never-learned examples score ``inf`` so they rank first."""
        scores = self.events.astype(np.float64)
        scores[~self.ever_correct] = np.inf
        return scores


def _unique_runs(indices: np.ndarray, values: np.ndarray):
    """Split an update into runs with no repeated index, keeping order."""
    # Row ids are small non-negative integers: counting them is linear, where np.unique sorts (about 1 ms per
    # epoch of 8,192 rows, per signal: a sizeable share of a fastText epoch).
    if len(indices) == 0 or np.bincount(indices).max() == 1:
        yield indices, values
        return
    seen: set = set()
    start = 0
    for i, idx in enumerate(indices.tolist()):
        if idx in seen:
            yield indices[start:i], values[start:i]
            seen, start = set(), i
        seen.add(idx)
    yield indices[start:], values[start:]


def make_signals(names: Iterable[str], n: int) -> Dict[str, TrainingSignal]:
    """Fresh signals of `names` (in order, without repeats) for a dataset of `n` rows."""
    return {name: SIGNALS.get(name)(n) for name in dict.fromkeys(names)}


def observe_all(signals: Dict[str, TrainingSignal], logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Every signal's per-example values for a batch, one column each (on the logits' device)."""
    logits = logits.detach()
    return torch.stack([type(s).observe(logits, labels).float() for s in signals.values()], dim=1)


def observe_steps(
    signals: Dict[str, TrainingSignal], steps: Sequence[tuple]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """Several training steps at once, on the device: `steps` holds each step's ``(logits, labels, index, ...)``
    (anything after the rows' indices is left alone); returns the logits, labels and indices of all of them, each
    concatenated in step order, and every signal's per-example values for them (:func:`observe_all`, one column per
    signal; ``None`` without signals). svp_hf's training loop and :class:`~svp_hf.stages.recorder.DynamicsRecorder` both
    record their steps through it, so that they record the same values; nothing is copied to the host."""
    parts = list(zip(*steps))[:3]
    logits, labels, index = (torch.cat(p) if len(p) > 1 else p[0] for p in parts)
    values = None
    if signals:
        with torch.no_grad():
            values = observe_all(signals, logits, labels)
    return logits, labels, index, values


def update_all(signals: Dict[str, TrainingSignal], indices: np.ndarray, values: np.ndarray) -> None:
    for column, signal in enumerate(signals.values()):
        signal.update(indices, values[:, column])


def signals_state(signals: Dict[str, TrainingSignal]) -> Dict[str, Dict[str, np.ndarray]]:
    return {name: s.state_dict() for name, s in signals.items()}


def restore_signals(state: Dict, names: Iterable[str]) -> Dict[str, TrainingSignal]:
    """The signals of `names` from a training state (checkpoints written before signals were general keep forgetting
    events under ``forgetting``); a name missing from the state is left out."""
    saved = dict(state.get("signals") or {})
    if "correctness" not in saved and state.get("forgetting"):
        saved["correctness"] = state["forgetting"]
    out = {}
    for name in dict.fromkeys(names):
        if name in saved and saved[name]:
            arrays = saved[name]
            signal = SIGNALS.get(name)(len(arrays["presentations"]))
            signal.load_state_dict(arrays)
            out[name] = signal
    return out


__all__ = [
    "SIGNALS",
    "TrainingSignal",
    "register_signal",
    "MarginSignal",
    "TrueProbabilitySignal",
    "CorrectnessSignal",
    "make_signals",
    "observe_all",
    "observe_steps",
    "update_all",
    "signals_state",
    "restore_signals",
]
