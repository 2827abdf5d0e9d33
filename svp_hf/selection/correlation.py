"""Rank agreement between two scorings of the same examples: Spearman's rho, Kendall's tau-b and top-k overlap.

SVP's claim is that a cheap proxy *ranks* examples like the target does, so these compare rankings, not values:
infinite scores (e.g. never-learned examples under forgetting events) rank first like any other large value, ties
get average ranks. Everything is numpy and O(n log^2 n) at worst, so a million examples are fine. The same numbers
are available as the ``evaluate`` module ``rank_agreement`` shipped in :mod:`svp_hf.publish.metrics`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

from ..data.columns import INDEX_COLUMN, column_values
from ..errors import SVPConfigError
from .methods import METHODS, get_method
from .ranking import n_to_keep, select_indices


def _pair(a, b):
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise SVPConfigError(f"cannot compare {a.size} scores with {b.size}: both must score the same examples")
    if a.size < 2:
        raise SVPConfigError("rank correlation needs at least 2 examples")
    if np.isnan(a).any() or np.isnan(b).any():
        raise SVPConfigError("scores contain NaN; cannot rank them")
    return a, b


def _dense_ranks(x: np.ndarray) -> np.ndarray:
    """0-based ranks where equal values share a rank and ranks are consecutive."""
    return np.unique(x, return_inverse=True)[1].ravel().astype(np.int64)


def average_ranks(x) -> np.ndarray:
    """1-based ranks, ties getting the mean of the ranks they span (``scipy.stats.rankdata(method="average")``)."""
    x = np.asarray(x, dtype=np.float64).ravel()
    dense = _dense_ranks(x)
    counts = np.bincount(dense)
    ends = np.cumsum(counts)  # the last 1-based rank of each group of equal values
    return (ends - (counts - 1) / 2.0)[dense]


def spearman(a, b) -> float:
    """Spearman's rank correlation: Pearson's correlation of the average ranks; NaN when either side is constant."""
    a, b = _pair(a, b)
    ra, rb = average_ranks(a), average_ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else float("nan")


def _tied_pairs(ranks: np.ndarray) -> int:
    counts = np.bincount(ranks)
    return int((counts * (counts - 1) // 2).sum())


def _count_inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j], by a bottom-up merge sort done a whole level at a time in numpy."""
    a = _dense_ranks(values)
    n = a.size
    span = int(a.max()) + 1 if n else 1
    position = np.arange(n)
    inversions, width = 0, 1
    while width < n:
        block = position // width
        pair = block // 2
        keys = pair * span + a  # within every block `a` is sorted, so the left blocks' keys are globally sorted
        right = (block % 2) == 1
        left_keys = keys[~right]
        pair_end = np.searchsorted(left_keys, (pair[right] + 1) * span, side="left")
        not_greater = np.searchsorted(left_keys, keys[right], side="right")
        inversions += int((pair_end - not_greater).sum())
        a = np.sort(keys) - pair * span  # merge every pair of blocks (each pair keeps its positions)
        width *= 2
    return inversions


def kendall(a, b) -> float:
    """Kendall's tau-b (ties in either ranking accounted for, as ``scipy.stats.kendalltau``); NaN if a side is constant."""
    a, b = _pair(a, b)
    n = a.size
    ra, rb = _dense_ranks(a), _dense_ranks(b)
    order = np.lexsort((rb, ra))  # by a, then b: pairs tied in a are never counted as discordant
    discordant = _count_inversions(rb[order])
    total = n * (n - 1) // 2
    tied_a, tied_b = _tied_pairs(ra), _tied_pairs(rb)
    tied_both = _tied_pairs(_dense_ranks(ra * (int(rb.max()) + 1) + rb))
    concordant_minus_discordant = total - tied_a - tied_b + tied_both - 2 * discordant
    denom = np.sqrt(float(total - tied_a) * float(total - tied_b))
    return float(concordant_minus_discordant / denom) if denom > 0 else float("nan")


def top_k_overlap(
    a, b, *, k: Optional[int] = None, fraction: Optional[float] = None, descending: bool = True, seed: int = 0
) -> float:
    """Share of the `k` examples ranked first by `a` that are also among the `k` ranked first by `b`.

    Give `k` or `fraction` (of the examples). The top k are exactly what :func:`svp_hf.select` would keep, ties
    broken by `seed` the same way, so this is the overlap of the two selections.
    """
    a, b = _pair(a, b)
    if (k is None) == (fraction is None):
        raise SVPConfigError("give exactly one of k and fraction for top-k overlap")
    if k is None:
        k = n_to_keep(fraction, a.size)
    if not 1 <= int(k) <= a.size:
        raise SVPConfigError(f"k must be between 1 and the number of examples ({a.size}), got {k}")
    k = int(k)
    top_a = select_indices(a, k, descending=descending, seed=seed)
    top_b = select_indices(b, k, descending=descending, seed=seed)
    return float(np.intersect1d(top_a, top_b).size / k)


def rank_agreement(a, b, *, fraction: float = 0.5, descending: bool = True, seed: int = 0) -> Dict[str, float]:
    """Spearman, Kendall and the top-`fraction` overlap of two scorings, in one dict."""
    a, b = _pair(a, b)
    k = n_to_keep(fraction, a.size)
    return {
        "spearman": spearman(a, b),
        "kendall": kendall(a, b),
        "top_k_overlap": top_k_overlap(a, b, k=k, descending=descending, seed=seed),
        "k": k,
    }


def compare_scores(
    scores, other_scores, methods: Optional[Sequence[str]] = None, *, fraction: float = 0.5, seed: int = 0
) -> Dict[str, Dict[str, float]]:
    """Rank agreement per method between two score tables of the same examples (e.g. proxy and target).

    Both are score datasets as returned by :func:`svp_hf.score` or :func:`svp_hf.load_scores` (``svp_index`` plus
    one column per method); rows are matched by ``svp_index``. `methods` defaults to every method scored in both,
    leaving out those that do not depend on the model (``random``: its scores come from the seed alone).
    """
    shared = [c for c in scores.column_names if c in other_scores.column_names and c not in (INDEX_COLUMN, "label")]
    if methods is None:
        methods = [m for m in shared if m in _method_names() and get_method(m).needs != "none"]
    missing = [m for m in methods if m not in shared]
    if missing:
        raise SVPConfigError(f"method(s) {missing} are not scored in both score tables (both have: {shared})")
    ia = column_values(scores, INDEX_COLUMN, np.int64)
    ib = column_values(other_scores, INDEX_COLUMN, np.int64)
    if ia.size != ib.size or not np.array_equal(np.sort(ia), np.sort(ib)):
        raise SVPConfigError("the two score tables do not score the same examples (their svp_index values differ)")
    order_a, order_b = np.argsort(ia), np.argsort(ib)
    result = {}
    for method in methods:
        a = column_values(scores, method, np.float64)[order_a]
        b = column_values(other_scores, method, np.float64)[order_b]
        result[method] = rank_agreement(a, b, fraction=fraction, descending=get_method(method).descending, seed=seed)
    return result


def _method_names():
    return set(METHODS.names())


__all__ = ["average_ranks", "spearman", "kendall", "top_k_overlap", "rank_agreement", "compare_scores"]
