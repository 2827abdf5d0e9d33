"""Selection methods: each is a named scorer plus the order in which its scores are kept.

A method is registered once with :func:`register_method`. Its scorer turns what the proxy produced into one float per
example; the generic, pure ranking in :mod:`svp_hf.selection.ranking` then keeps the top of it. What a scorer
needs decides when it runs:

- ``"logits"``: called on every scoring batch with the softmax probabilities and labels (streamed, never the whole
  dataset's logits at once);
- ``"embeddings"``: called once with the penultimate-layer embeddings of every example;
- ``"training"``: called once with the training signal it declares (``signal=``), which the training loop fills on
  every presentation of every example during proxy training (:mod:`svp_hf.selection.signals`): ``forgetting`` reads
  ``correctness``, ``aum`` reads ``margin``, ``confidence`` and ``variability`` read ``true_probability``;
- ``"none"``: called once with the number of examples (the random baseline).

Two optional properties matter for active learning (:mod:`svp_hf.active`), where the examples being ranked are not
labelled yet: ``uses_labels`` marks scorers that read the labels (they cannot rank an unlabelled pool), and
``acquire`` is a batch-mode acquisition that picks from the whole pool given the labelled set (k-centers starts from
the labelled examples) instead of taking the top of the unlabelled examples' scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from ..errors import SVPConfigError
from ..registry import Registry
from .ranking import greedy_k_center
from .signals import SIGNALS

NEEDS = ("logits", "embeddings", "training", "none")


@dataclass(frozen=True)
class SelectionMethod:
    name: str
    scorer: Callable
    needs: str
    descending: bool = True
    description: str = ""
    uses_labels: bool = False
    # Active learning: (pool embeddings, labelled indices, budget, seed=, chunk_size=) -> (picked indices, scores).
    acquire: Optional[Callable] = None
    # needs="training": the training signal (svp_hf.selection.signals) the scorer reads.
    signal: Optional[str] = None

    @property
    def keeps(self) -> str:
        return "highest" if self.descending else "lowest"


METHODS: Registry[SelectionMethod] = Registry("selection method")


def register_method(
    name: str,
    *,
    needs: str,
    descending: bool = True,
    uses_labels: bool = False,
    acquire: Optional[Callable] = None,
    signal: Optional[str] = None,
):
    """Decorator registering a scorer as selection method `name`.

    `descending=True` keeps the examples with the highest scores; `False` keeps the lowest (e.g. margin).
    `uses_labels=True` marks a scorer that reads the labels; `acquire` is an optional active-learning batch
    acquisition over the whole pool's embeddings (see the module docstring). A ``needs="training"`` method names the
    training `signal` it reads (a name in :data:`svp_hf.selection.signals.SIGNALS`).
    """
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {NEEDS}, got {needs!r}")
    if (needs == "training") != (signal is not None):
        raise ValueError("a method with needs='training' names the training signal it reads (signal=...), and only it")
    if signal is not None and signal not in SIGNALS:
        raise ValueError(f"unknown training signal {signal!r}; available: {', '.join(SIGNALS.names())}")
    if acquire is not None and needs != "embeddings":
        raise ValueError("acquire works on the pool's embeddings: it needs needs='embeddings'")

    def _wrap(fn: Callable) -> Callable:
        doc = (fn.__doc__ or "").strip().splitlines()
        METHODS.register(
            name, SelectionMethod(name, fn, needs, descending, doc[0] if doc else "", uses_labels, acquire, signal)
        )
        return fn

    return _wrap


def get_method(name: str) -> SelectionMethod:
    try:
        return METHODS.get(name)
    except KeyError as err:
        raise SVPConfigError(err.args[0]) from None


def list_methods() -> List[str]:
    return METHODS.names()


def training_signals(methods: Sequence[SelectionMethod]) -> List[str]:
    """The training signals `methods` read, in order and without repeats."""
    return list(dict.fromkeys(m.signal for m in methods if m.signal))


def resolve_methods(names: Sequence[str] | str) -> List[SelectionMethod]:
    if isinstance(names, str):
        names = [names]
    if not names:
        raise SVPConfigError("at least one selection method is needed")
    return [get_method(n) for n in dict.fromkeys(names)]


# --- uncertainty scorers: per batch, from softmax probabilities -------------------------------------------------


@register_method("least_confidence", needs="logits")
def least_confidence(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 - max softmax probability; keeps the least confident examples."""
    return 1.0 - probs.amax(dim=-1)  # amax: the values alone (max also finds the indices)


@register_method("entropy", needs="logits")
def entropy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Predictive entropy -sum p log p; keeps the most uncertain examples."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=-1)


@register_method("margin", needs="logits", descending=False)
def margin(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Top-1 minus top-2 probability; keeps the smallest margins (most uncertain)."""
    if probs.shape[-1] < 2:
        return torch.zeros(probs.shape[0], dtype=probs.dtype, device=probs.device)
    top2 = probs.topk(2, dim=-1).values
    return top2[:, 0] - top2[:, 1]


@register_method("el2n", needs="logits", uses_labels=True)
def el2n(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """EL2N: L2 norm of softmax minus one-hot label (Paul et al. 2021); keeps the highest."""
    one_hot = torch.nn.functional.one_hot(labels.long(), probs.shape[-1]).to(probs.dtype)
    return torch.linalg.vector_norm(probs - one_hot, dim=-1)


# --- dataset-level scorers ----------------------------------------------------------------------------------------


@register_method("forgetting", needs="training", signal="correctness")
def forgetting(correctness) -> np.ndarray:
    """Forgetting events over proxy training (never-learned examples count as infinite); keeps the most forgotten."""
    return correctness.scores()


@register_method("aum", needs="training", signal="margin", descending=False, uses_labels=True)
def aum(margin) -> np.ndarray:
    """Area under the margin (Pleiss et al. 2020): mean assigned-class logit minus largest other; keeps the lowest."""
    return margin.average()


@register_method("confidence", needs="training", signal="true_probability", descending=False, uses_labels=True)
def confidence(true_probability) -> np.ndarray:
    """Dataset cartography's confidence: mean true-class probability over training; keeps the lowest (hardest)."""
    return true_probability.average()


@register_method("variability", needs="training", signal="true_probability", uses_labels=True)
def variability(true_probability) -> np.ndarray:
    """Dataset cartography's variability: std of the true-class probability over training; keeps the most ambiguous."""
    return true_probability.std()


def kcenter_acquire(
    embeddings: np.ndarray, labelled: Sequence[int], budget: int, *, seed: int, chunk_size: int = 16384
):
    """Active learning's k-centers: greedily add `budget` centers to the labelled ones, over the whole pool."""
    return greedy_k_center(embeddings, initial=labelled, budget=budget, seed=seed, chunk_size=chunk_size)


@register_method("kcenter", needs="embeddings", acquire=kcenter_acquire)
def kcenter(embeddings: np.ndarray, seed: int, chunk_size: int = 16384) -> np.ndarray:
    """Greedy k-centers on penultimate embeddings: distance to the nearest center when picked; keeps the highest."""
    order, dists = greedy_k_center(embeddings, seed=seed, chunk_size=chunk_size)
    scores = np.empty(len(order), dtype=np.float64)
    scores[order] = dists
    return scores


@register_method("random", needs="none")
def random(n: int, seed: int) -> np.ndarray:
    """Uniform random scores from the seed: the baseline every method is compared with."""
    return np.random.default_rng(seed).random(n)


__all__ = [
    "SelectionMethod",
    "METHODS",
    "register_method",
    "get_method",
    "list_methods",
    "resolve_methods",
    "training_signals",
]
