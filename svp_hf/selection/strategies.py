"""Strategies: how a method's scores become the kept subset, independently of which method made them.

A strategy is a pure function of the scores, the labels, the number of rows kept and the seed: the same inputs give
the same indices. Each is registered once in :data:`STRATEGIES`:

- ``top``: the best-ranked rows in the method's order (SVP's setting: the hardest, most uncertain or most forgotten);
- ``bottom``: the other end of the same ranking (the easiest);
- ``random``: a seeded uniform sample that ignores the scores (the baseline every strategy is measured against);
- ``coverage``: coverage-centric selection (CCS, Zheng et al., ICLR 2023). The hardest ``beta`` share of every class is
  dropped (mislabelled and never-learned rows live there), the remaining score range is cut into equal-width strata,
  and the class's quota is spread over the strata: visited from the smallest to the largest, each takes an equal
  share of the budget still left (a stratum smaller than its share passes the rest on), sampled uniformly at random
  inside the stratum. Scores that are not finite (forgetting's never-learned ``inf``) form a stratum of their own.

``auto`` is not registered here: it trains proxies on candidate subsets to choose among these strategies and random,
so it needs the data (see :mod:`svp_hf.stages.auto`). Per-class quotas are proportional to the class sizes (largest
remainder) and add up to exactly the number kept.
"""

from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import numpy as np

from ..config.checks import check_coverage_beta
from ..errors import SVPConfigError
from ..registry import Registry
from .ranking import class_quotas, rank, select_indices

STRATEGIES: Registry[Callable] = Registry("selection strategy")
AUTO = "auto"
DEFAULT_STRATEGY = AUTO
DEFAULT_STRATA = 50

# CCS's hard-pruning share against the prune rate (1 - fraction) on CIFAR-10 (Zheng et al. 2023, Table 8): none up to
# 50% pruned, 0.1 at 70-80%, 0.3 at 90%; linear in between, flat outside.
_BETA_KNOTS = ((0.0, 0.0), (0.5, 0.0), (0.7, 0.1), (0.8, 0.1), (0.9, 0.3), (1.0, 0.3))


def default_coverage_beta(fraction: float) -> float:
    """The share of hardest rows ``coverage`` drops when keeping `fraction` (follows the prune rate, see above)."""
    prune_rate = 1.0 - float(fraction)
    xs, ys = zip(*_BETA_KNOTS)
    return float(np.interp(prune_rate, xs, ys))


def list_strategies() -> List[str]:
    """Every strategy name a recipe, :func:`svp_hf.select` or :func:`svp_hf.prune` accepts (``auto`` included)."""
    return sorted(STRATEGIES.names() + [AUTO])


def check_strategy(name: str) -> str:
    if not isinstance(name, str) or (name != AUTO and name not in STRATEGIES):
        raise SVPConfigError(f"unknown strategy {name!r}; available: {', '.join(list_strategies())}")
    return name


def get_strategy(name: str) -> Callable:
    """The pure strategy function registered as `name` (``auto`` is resolved by :mod:`svp_hf.stages.auto` into one of these)."""
    check_strategy(name)
    if name == AUTO:
        raise SVPConfigError(
            "strategy 'auto' trains proxies on candidate subsets to choose a strategy, so it needs the dataset: "
            "use svp_hf.select(dataset, scores, ...) or svp_hf.prune(...), or pass the strategy it chose"
        )
    return STRATEGIES.get(name)


def apply_strategy(
    name: str,
    scores: np.ndarray,
    n_keep: int,
    *,
    descending: bool = True,
    labels: Optional[Sequence[int]] = None,
    class_balanced: bool = False,
    seed: int = 0,
    coverage_beta: Optional[float] = None,
) -> np.ndarray:
    """The indices strategy `name` keeps, in ascending order (see the module docstring)."""
    scores = np.asarray(scores, dtype=np.float64)
    if not 0 < n_keep <= len(scores):
        raise SVPConfigError(f"cannot keep {n_keep} of {len(scores)} rows")
    return get_strategy(name)(
        scores,
        int(n_keep),
        descending=descending,
        labels=None if labels is None else np.asarray(labels),
        class_balanced=class_balanced,
        seed=int(seed),
        coverage_beta=coverage_beta,
    )


@STRATEGIES.register("top")
def top(scores, n_keep, *, descending=True, labels=None, class_balanced=False, seed=0, coverage_beta=None):
    """The best-ranked rows in the method's order (SVP's setting)."""
    return select_indices(
        scores, n_keep, descending=descending, labels=labels, class_balanced=class_balanced, seed=seed
    )


@STRATEGIES.register("random")
def random(scores, n_keep, *, descending=True, labels=None, class_balanced=False, seed=0, coverage_beta=None):
    """A seeded uniform sample that ignores the scores: the baseline (the same rows as the ``random`` method's top)."""
    uniform = np.random.default_rng(seed).random(len(scores))
    return select_indices(uniform, n_keep, descending=True, labels=labels, class_balanced=class_balanced, seed=seed)


@STRATEGIES.register("bottom")
def bottom(scores, n_keep, *, descending=True, labels=None, class_balanced=False, seed=0, coverage_beta=None):
    """The other end of the method's ranking (the easiest rows)."""
    return select_indices(
        scores, n_keep, descending=not descending, labels=labels, class_balanced=class_balanced, seed=seed
    )


def allocate(budget: int, sizes: Sequence[int]) -> np.ndarray:
    """Split `budget` over strata of `sizes`: visited from the smallest, each takes an equal share of what is left
    (floor), capped by its size; the largest takes the rest. Adds up to ``min(budget, sum(sizes))`` exactly."""
    sizes = np.asarray(sizes, dtype=np.int64)
    order = np.argsort(sizes, kind="stable")
    out = np.zeros(len(sizes), dtype=np.int64)
    left = int(min(budget, sizes.sum()))
    for visited, stratum in enumerate(order):
        share = left // (len(order) - visited)
        out[stratum] = min(int(sizes[stratum]), share)
        left -= int(out[stratum])
    # Each stratum left behind is at least as large as the share, so nothing is left over (see the docstring).
    assert left == 0, "stratum allocation left rows over; this is a bug in svp_hf"
    return out


def strata_of(values: np.ndarray, strata: int) -> np.ndarray:
    """Equal-width stratum (0..strata-1) of each finite value over the values' range; ``+inf`` is stratum `strata`,
    ``-inf`` is ``-1`` (each a stratum of its own)."""
    out = np.empty(len(values), dtype=np.int64)
    finite = np.isfinite(values)
    out[values == np.inf] = strata
    out[values == -np.inf] = -1
    if finite.any():
        low, high = float(values[finite].min()), float(values[finite].max())
        width = (high - low) / strata
        inner = np.zeros(int(finite.sum()), dtype=np.int64) if width == 0 else np.floor((values[finite] - low) / width)
        out[finite] = np.clip(inner, 0, strata - 1).astype(np.int64)
    return out


def split_hardest(scores: np.ndarray, beta: float, *, descending: bool, seed: int = 0):
    """Positions of the hardest ``floor(beta * n)`` of `scores` (the top of the method's ranking, ties broken by
    `seed`) and of the rest, each in ranking order."""
    ranked = rank(scores, descending=descending, seed=seed)
    n_drop = int(np.floor(beta * len(scores) + 1e-9))
    return ranked[:n_drop], ranked[n_drop:]


def coverage_sample(
    scores: np.ndarray,
    n_keep: int,
    *,
    descending: bool,
    beta: float,
    rng: np.random.Generator,
    tiebreak_seed: int,
    strata: int = DEFAULT_STRATA,
) -> np.ndarray:
    """CCS on one group of rows: drop the hardest ``floor(beta * n)`` (the top of the method's ranking), stratify the
    rest by score and sample `n_keep` of them across the strata; returns positions into `scores`."""
    dropped, remaining = split_hardest(scores, beta, descending=descending, seed=tiebreak_seed)
    if n_keep > len(remaining):
        raise SVPConfigError(
            f"coverage cannot keep {n_keep} of the {len(remaining)} rows left after dropping {len(dropped)}"
        )
    stratum = strata_of(scores[remaining], strata)
    names, sizes = np.unique(stratum, return_counts=True)
    budgets = allocate(n_keep, sizes)
    kept = []
    for name, take in zip(names.tolist(), budgets.tolist()):
        if take:
            members = np.sort(remaining[stratum == name])
            kept.append(rng.choice(members, size=take, replace=False))
    return np.concatenate(kept) if kept else np.zeros(0, dtype=np.int64)


@STRATEGIES.register("coverage")
def coverage(scores, n_keep, *, descending=True, labels=None, class_balanced=False, seed=0, coverage_beta=None):
    """Coverage-centric selection (CCS): hardest share dropped, the rest sampled evenly across score strata, per class."""
    n = len(scores)
    beta = default_coverage_beta(n_keep / n) if coverage_beta is None else check_coverage_beta(coverage_beta)
    if np.isnan(scores).any():
        raise SVPConfigError("scores contain NaN; cannot rank them")
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    if len(labels) != n:
        raise SVPConfigError(f"got {len(labels)} labels for {n} scores")
    quotas = class_quotas(labels, n_keep)
    rng = np.random.default_rng(seed)
    kept = []
    for c, quota in quotas.items():  # classes in ascending order: the random stream is the same on every call
        rows = np.flatnonzero(labels == c)
        if quota:
            kept.append(
                rows[
                    coverage_sample(scores[rows], quota, descending=descending, beta=beta, rng=rng, tiebreak_seed=seed)
                ]
            )
    keep = np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)
    assert len(keep) == n_keep, "coverage kept the wrong number of rows; this is a bug in svp_hf"
    return keep


def hardest_dropped(
    scores: np.ndarray, labels: Optional[Sequence[int]], beta: float, *, descending: bool, seed: int = 0
) -> np.ndarray:
    """The rows ``coverage`` drops before sampling: the hardest ``floor(beta * n_c)`` of each class (sorted indices)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.zeros(len(scores), dtype=np.int64) if labels is None else np.asarray(labels)
    out = []
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        out.append(rows[split_hardest(scores[rows], beta, descending=descending, seed=seed)[0]])
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


__all__ = [
    "STRATEGIES",
    "AUTO",
    "DEFAULT_STRATEGY",
    "DEFAULT_STRATA",
    "default_coverage_beta",
    "check_strategy",
    "get_strategy",
    "apply_strategy",
    "list_strategies",
    "allocate",
    "strata_of",
    "coverage",
    "split_hardest",
    "hardest_dropped",
]
