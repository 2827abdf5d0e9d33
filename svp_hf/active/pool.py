"""Pool bookkeeping for active learning: which examples of the pool are labelled, in which round, with which score.

Pure numpy: nothing here trains, loads or reads files. One array holds the round every example was labelled in
(``UNLABELLED`` for the rest), so the labelled and unlabelled sets are disjoint and cover the pool by construction;
:meth:`LabelPool.label` refuses anything that would label an example twice, go back in rounds or leave the pool.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import SVPConfigError

UNLABELLED = -1


def _balanced_quotas(counts: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """As equal as possible per-class counts adding up to `size`, capped by each class's size; the classes that get
    one more than the others are drawn from `rng`."""
    quotas = np.zeros(len(counts), dtype=np.int64)
    remaining = size
    while remaining > 0:
        open_classes = np.flatnonzero(quotas < counts)
        share, extra = divmod(remaining, len(open_classes))
        add = np.full(len(open_classes), share, dtype=np.int64)
        add[rng.permutation(len(open_classes))[:extra]] += 1
        add = np.minimum(add, counts[open_classes] - quotas[open_classes])
        quotas[open_classes] += add
        remaining -= int(add.sum())
    return quotas


def initial_indices(
    pool_size: int, size: int, *, seed: int = 0, labels: Optional[Sequence[int]] = None, class_balanced: bool = False
) -> np.ndarray:
    """A seeded random initial labelled set of `size` pool indices, sorted.

    With `class_balanced`, every class present in `labels` gets the same number of examples (as far as the class
    sizes allow), so `size` must be at least the number of classes.
    """
    if not 1 <= size <= pool_size:
        raise SVPConfigError(f"initial_size must be between 1 and the pool size ({pool_size}), got {size}")
    rng = np.random.default_rng(seed)
    if not class_balanced:
        return np.sort(rng.choice(pool_size, size=size, replace=False))
    if labels is None:
        raise SVPConfigError("a class-balanced initial set needs the pool's labels")
    labels = np.asarray(labels)
    if len(labels) != pool_size:
        raise SVPConfigError(f"got {len(labels)} labels for a pool of {pool_size} examples")
    classes, counts = np.unique(labels, return_counts=True)
    if size < len(classes):
        raise SVPConfigError(
            f"a class-balanced initial set needs at least one example per class: initial_size={size} is smaller "
            f"than the number of classes ({len(classes)})"
        )
    quotas = _balanced_quotas(counts, size, rng)
    picked = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quotas)]
    return np.sort(np.concatenate(picked))


class LabelPool:
    """The labelled/unlabelled split of a pool of `size` examples, with the round and score of every labelling."""

    def __init__(self, size: int):
        if size < 1:
            raise SVPConfigError("the pool is empty: there is nothing to label")
        self._round = np.full(int(size), UNLABELLED, dtype=np.int64)
        self._score = np.full(int(size), np.nan, dtype=np.float64)
        self.last_round = UNLABELLED

    @classmethod
    def from_initial(
        cls,
        size: int,
        initial_size: int,
        *,
        seed: int = 0,
        labels: Optional[Sequence[int]] = None,
        class_balanced: bool = False,
    ) -> "LabelPool":
        """A pool whose round-0 labelled set is drawn by :func:`initial_indices`."""
        pool = cls(size)
        pool.label(initial_indices(size, initial_size, seed=seed, labels=labels, class_balanced=class_balanced), 0)
        return pool

    def __len__(self) -> int:
        return len(self._round)

    @property
    def labelled(self) -> np.ndarray:
        """Indices of the labelled examples, in pool order."""
        return np.flatnonzero(self._round != UNLABELLED)

    @property
    def unlabelled(self) -> np.ndarray:
        """Indices of the unlabelled examples, in pool order."""
        return np.flatnonzero(self._round == UNLABELLED)

    @property
    def n_labelled(self) -> int:
        return int((self._round != UNLABELLED).sum())

    def rounds(self, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """The round each example was labelled in (``UNLABELLED`` if it is not); all of them by default."""
        return self._round.copy() if indices is None else self._round[np.asarray(indices, dtype=np.int64)]

    def scores(self, indices: Optional[Sequence[int]] = None) -> np.ndarray:
        """The score each example was selected with (NaN for the initial set and the unlabelled)."""
        return self._score.copy() if indices is None else self._score[np.asarray(indices, dtype=np.int64)]

    def label(self, indices: Sequence[int], round: int, scores: Optional[Sequence[float]] = None) -> None:
        """Move `indices` into the labelled set as round `round`'s selection, with their selection `scores`.

        Raises if an index is outside the pool, repeated, already labelled, or if `round` does not come after every
        earlier round; nothing changes when it raises.
        """
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        round = int(round)
        if round <= self.last_round:
            raise ValueError(f"round {round} does not come after round {self.last_round}")
        if len(indices) == 0:
            raise ValueError("no examples to label")
        if indices.min() < 0 or indices.max() >= len(self):
            raise ValueError(f"indices must be in [0, {len(self)}), got {indices.min()}..{indices.max()}")
        if len(np.unique(indices)) != len(indices):
            raise ValueError("the same example is selected twice in one round")
        already = indices[self._round[indices] != UNLABELLED]
        if len(already):
            raise ValueError(f"{len(already)} example(s) are labelled already (e.g. {already[:5].tolist()})")
        values = np.full(len(indices), np.nan) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(values) != len(indices):
            raise ValueError(f"{len(values)} scores for {len(indices)} examples")
        self._round[indices] = round
        self._score[indices] = values
        self.last_round = round

    def restore(self, rounds: np.ndarray, scores: np.ndarray) -> None:
        """Set every example's round and score to these (as :meth:`rounds` and :meth:`scores` gave them for a
        checkpoint of a pool of the same size)."""
        if len(rounds) != len(self) or len(scores) != len(self):
            raise ValueError(f"{len(rounds)} rounds and {len(scores)} scores for a pool of {len(self)}")
        self._round = np.asarray(rounds, dtype=np.int64).copy()
        self._score = np.asarray(scores, dtype=np.float64).copy()
        self.last_round = int(self._round.max())

    def copy(self) -> "LabelPool":
        other = LabelPool(len(self))
        other._round, other._score, other.last_round = self._round.copy(), self._score.copy(), self.last_round
        return other


__all__ = ["UNLABELLED", "LabelPool", "initial_indices"]
