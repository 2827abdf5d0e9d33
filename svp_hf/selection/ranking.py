"""Ranking: pure functions from scores (and labels) to the indices that are kept.

Nothing here trains, loads or reads files; the same scores, fraction and seed always give the same indices.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..config.checks import check_fraction
from ..errors import SVPConfigError


def n_to_keep(fraction: float, n: int) -> int:
    """How many of `n` rows `fraction` keeps (rounded to nearest); raises if that is none."""
    fraction = check_fraction(fraction)
    if n <= 0:
        raise SVPConfigError("the dataset is empty: there is nothing to select from")
    keep = min(n, int(round(fraction * n)))
    if keep == 0:
        raise SVPConfigError(f"fraction={fraction} of {n} rows keeps no rows; use a larger fraction")
    return keep


def rank(scores: np.ndarray, *, descending: bool = True, seed: int = 0) -> np.ndarray:
    """Indices of `scores` from most to least worth keeping; ties break by a permutation drawn from `seed`."""
    scores = np.asarray(scores, dtype=np.float64)
    if np.isnan(scores).any():
        raise SVPConfigError("scores contain NaN; cannot rank them")
    tiebreak = np.random.default_rng(seed).permutation(len(scores))
    key = -scores if descending else scores
    return np.lexsort((tiebreak, key))


def class_quotas(labels: np.ndarray, n_keep: int) -> dict:
    """Per-class counts proportional to class sizes that add up to exactly `n_keep` (largest remainder)."""
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * (n_keep / len(labels))
    quotas = np.floor(exact).astype(int)
    remainder = n_keep - quotas.sum()
    # Give the leftover rows to the classes with the largest fractional parts (ties: larger class, then class id).
    order = np.lexsort((classes, -counts, -(exact - quotas)))
    quotas[order[:remainder]] += 1
    return dict(zip(classes.tolist(), np.minimum(quotas, counts).tolist()))


def select_indices(
    scores: np.ndarray,
    n_keep: int,
    *,
    descending: bool = True,
    labels: Optional[Sequence[int]] = None,
    class_balanced: bool = False,
    seed: int = 0,
) -> np.ndarray:
    """The `n_keep` best-ranked indices, in ascending (original) order.

    With `class_balanced`, every class keeps the same share of its rows (quotas by largest remainder), each class
    taking the top of its own ranking.
    """
    scores = np.asarray(scores)
    if not 0 < n_keep <= len(scores):
        raise SVPConfigError(f"cannot keep {n_keep} of {len(scores)} rows")
    order = rank(scores, descending=descending, seed=seed)
    if not class_balanced:
        return np.sort(order[:n_keep])
    if labels is None:
        raise SVPConfigError("class_balanced selection needs labels")
    labels = np.asarray(labels)
    quotas = class_quotas(labels, n_keep)
    ranked_labels = labels[order]
    keep = [order[ranked_labels == c][:q] for c, q in quotas.items()]
    return np.sort(np.concatenate(keep))


def greedy_k_center(
    embeddings,
    *,
    budget: Optional[int] = None,
    initial: Optional[Sequence[int]] = None,
    seed: int = 0,
    chunk_size: int = 16384,
    device: Optional[torch.device] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy k-centers (Sener & Savarese 2018) with Euclidean distance.

    Starts from `initial` (or one point drawn with `seed`), then repeatedly picks the point farthest from its nearest
    center, keeping a running vector of each point's distance to its nearest center: O(n) memory beyond the
    embeddings, distances computed `chunk_size` rows at a time. Returns the picked indices in order (excluding
    `initial`) and each one's distance to its nearest center when it was picked (``inf`` for a random first pick).
    `budget` bounds how many are picked (default: all remaining points, a full greedy ordering).
    """
    x = torch.as_tensor(np.asarray(embeddings), dtype=torch.float32, device=device)
    if x.ndim != 2:
        raise SVPConfigError(f"k-center needs a 2-d embedding matrix, got shape {tuple(x.shape)}")
    n = x.shape[0]
    min_dist = torch.full((n,), float("inf"), device=x.device)
    selected = torch.zeros(n, dtype=torch.bool, device=x.device)

    def update(center_rows: torch.Tensor) -> None:
        centers = x[center_rows].reshape(-1, x.shape[1])
        for start in range(0, n, chunk_size):
            # Differences, not the matrix-product expansion: exact, several times faster for the single center of
            # each greedy step, and the same whatever the thread count (so 1 and N processes pick the same centers).
            block = torch.cdist(x[start : start + chunk_size], centers, compute_mode="donot_use_mm_for_euclid_dist")
            block = block.min(dim=1).values
            torch.minimum(min_dist[start : start + chunk_size], block, out=min_dist[start : start + chunk_size])

    order, dists = [], []
    if initial is not None and len(initial) > 0:
        init = torch.as_tensor(np.asarray(initial), dtype=torch.long, device=x.device)
        selected[init] = True
        for start in range(0, len(init), chunk_size):
            update(init[start : start + chunk_size])
    remaining = n - int(selected.sum())
    budget = remaining if budget is None else min(budget, remaining)
    if budget > 0 and not selected.any():
        first = int(np.random.default_rng(seed).integers(n))
        order.append(first)
        dists.append(float("inf"))
        selected[first] = True
        update(torch.tensor([first], device=x.device))
    while len(order) < budget:
        masked = min_dist.masked_fill(selected, -1.0)
        pick = int(torch.argmax(masked))
        order.append(pick)
        dists.append(float(masked[pick]))
        selected[pick] = True
        update(torch.tensor([pick], device=x.device))
    return np.asarray(order, dtype=np.int64), np.asarray(dists, dtype=np.float64)


__all__ = ["n_to_keep", "rank", "class_quotas", "select_indices", "greedy_k_center"]
