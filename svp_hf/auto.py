"""``strategy: auto``: choose how scores become a subset with a cheap, honest check, falling back on random.

A class-stratified slice of the training split is held out. Every candidate (``random``, ``top``, ``bottom`` and
``coverage`` at a few hard-pruning shares) selects the kept fraction from the remaining rows with the method's scores;
a fresh proxy is trained on each candidate subset with the same step budget (same rows, same epochs) under several
seeds and evaluated on the slice. The candidate with the best mean slice accuracy is chosen only if it beats random
by more than the spread: the larger of the two candidates' standard deviations between seeds and the slice's own
sampling error (the standard error of the difference of two accuracies on that many rows), and never less than one
slice row; otherwise random is chosen. The decision and every candidate's accuracies are returned for ``metrics.json``, the
report and the dataset card.

The check costs ``len(candidates) * seeds`` proxy trainings on ``fraction * (1 - holdout)`` of the rows, each for
``auto_epochs`` epochs (the recipes default it to the target's epochs when a target is trained, else the proxy's: a
check that trains for fewer epochs than the target favours easy subsets): with the defaults (5 candidates, 2 seeds,
10% held out) about ``9 * fraction`` trainings of the proxy for that many epochs on the whole split.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from accelerate.utils import set_seed

from .config import check_coverage_beta
from .data import INDEX_COLUMN, add_index
from .errors import SVPConfigError
from .models import create_model
from .selection import class_quotas, n_to_keep
from .strategies import apply_strategy, default_coverage_beta
from .training import evaluate_accuracy, train_model

logger = logging.getLogger(__name__)

AUTO_MIN_SLICE = 20
DEFAULT_AUTO_HOLDOUT = 0.1
DEFAULT_AUTO_SEEDS = 2


@dataclass(frozen=True)
class Candidate:
    """One way to select: a strategy, with its hard-pruning share for ``coverage``."""

    strategy: str
    coverage_beta: Optional[float] = None

    @property
    def name(self) -> str:
        return self.strategy if self.coverage_beta is None else f"{self.strategy} (beta {self.coverage_beta:g})"


@dataclass
class AutoDecision:
    """What ``auto`` chose and why."""

    strategy: str
    coverage_beta: Optional[float]
    candidates: List[Dict[str, Any]] = field(default_factory=list)
    spread: float = 0.0
    margin_over_random: float = 0.0
    slice_rows: int = 0
    fit_rows: int = 0
    subset_rows: int = 0
    seeds: List[int] = field(default_factory=list)
    epochs: int = 0
    seconds: float = 0.0

    @property
    def chosen(self) -> str:
        return Candidate(self.strategy, self.coverage_beta).name

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "chosen": self.chosen}


def candidates_for(fraction: float, coverage_beta: Optional[float] = None) -> List[Candidate]:
    """random first (it wins ties), then top, bottom and coverage at the share that follows the prune rate and at 0.1
    (or only at `coverage_beta` when set); shares that leave too few rows for `fraction` are skipped."""
    betas = [coverage_beta] if coverage_beta is not None else sorted({default_coverage_beta(fraction), 0.1})
    out = [Candidate("random"), Candidate("top"), Candidate("bottom")]
    out += [Candidate("coverage", float(b)) for b in betas if float(fraction) <= 1.0 - b + 1e-12]
    return out


def holdout_slice(labels: np.ndarray, share: float, seed: int) -> np.ndarray:
    """A class-stratified, seeded slice of ``round(share * n_c)`` rows of each class (at least one); sorted indices."""
    labels = np.asarray(labels)
    n_slice = max(1, int(round(share * len(labels))))
    quotas = class_quotas(labels, n_slice)
    rng = np.random.default_rng([seed, 1729])
    picked = []
    for c, quota in quotas.items():
        rows = np.flatnonzero(labels == c)
        picked.append(rng.choice(rows, size=max(1, quota) if len(rows) > 1 else 0, replace=False))
    return np.sort(np.concatenate(picked))


def check_auto(n_rows: int, labels: Optional[np.ndarray], fraction: float, holdout: float) -> None:
    """A clear error, before any training, when `n_rows` (with `labels`, when known) are too few to hold a slice out
    and still train on candidate subsets."""
    holdout = float(holdout)
    if not 0.0 < holdout <= 0.5:
        raise SVPConfigError(f"auto_holdout must be in (0, 0.5], got {holdout}")
    classes = 1 if labels is None else len(np.unique(labels))
    n_slice = int(round(holdout * n_rows))
    need = max(AUTO_MIN_SLICE, 2 * classes)
    if n_slice < need:
        raise SVPConfigError(
            f"strategy 'auto' holds out auto_holdout={holdout:g} of the {n_rows} training rows ({n_slice} rows) to "
            f"compare strategies, but needs at least {need}; use more rows, a larger auto_holdout, or a strategy "
            "such as coverage"
        )
    kept = int(round(float(fraction) * (n_rows - n_slice)))
    if kept < classes:
        raise SVPConfigError(
            f"strategy 'auto' would train on candidate subsets of {kept} rows, fewer than the {classes} classes; "
            "use more rows, a larger fraction, or a strategy such as coverage"
        )


def decide(accuracies: Dict[Candidate, Sequence[float]], slice_rows: int) -> AutoDecision:
    """Pick from per-candidate accuracies (one per seed) on a slice of `slice_rows`: the best mean, unless it does not
    beat random by more than the spread (between seeds, or the slice's sampling error), in which case random. A pure
    function, so the rule is tested on fixed figures."""
    table = []
    for candidate, values in accuracies.items():
        values = np.asarray(values, dtype=np.float64)
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        table.append((candidate, float(values.mean()), std, values))
    random = next(row for row in table if row[0].strategy == "random")
    best = max(table, key=lambda row: row[1])  # max keeps the first of equals: random is listed first
    n = max(slice_rows, 1)
    # The seeds' spread misses the slice's own sampling error: two accuracies on n rows differ by chance by about
    # this much (the standard error of a difference of two proportions, taken as independent: an upper bound).
    sampling = float(np.sqrt((best[1] * (1 - best[1]) + random[1] * (1 - random[1])) / n))
    spread = max(best[2], random[2], sampling, 1.0 / n)
    margin = best[1] - random[1]
    chosen = best if best is not random and margin > spread else random
    return AutoDecision(
        strategy=chosen[0].strategy,
        coverage_beta=chosen[0].coverage_beta,
        candidates=[
            {"name": c.name, "strategy": c.strategy, "coverage_beta": c.coverage_beta, "accuracies": v.tolist(), "mean": m, "std": s}
            for c, m, s, v in table
        ],
        spread=spread,
        margin_over_random=margin,
        slice_rows=slice_rows,
    )


def choose_strategy(
    dataset,
    scores: np.ndarray,
    labels: np.ndarray,
    *,
    descending: bool,
    fraction: float,
    train_candidate,
    seed: int = 0,
    class_balanced: bool = False,
    holdout: float = DEFAULT_AUTO_HOLDOUT,
    seeds: int = DEFAULT_AUTO_SEEDS,
    coverage_beta: Optional[float] = None,
) -> AutoDecision:
    """Run the check on `dataset` (a ``datasets.Dataset``) with the method's `scores` and `labels`.

    ``train_candidate(train_rows, slice_rows, seed) -> slice accuracy`` trains a fresh proxy on the given rows of
    `dataset` and evaluates it on the slice (the caller owns the model and training settings)."""
    start = time.perf_counter()
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    check_auto(len(scores), labels, fraction, holdout)
    coverage_beta = check_coverage_beta(coverage_beta)
    held = holdout_slice(labels, holdout, seed)
    fit = np.setdiff1d(np.arange(len(scores)), held)
    n_keep = n_to_keep(fraction, len(fit))
    accuracies: Dict[Candidate, List[float]] = {}
    run_seeds = [int(seed) + k for k in range(int(seeds))]
    for candidate in candidates_for(fraction, coverage_beta):
        accuracies[candidate] = []
        for s in run_seeds:
            keep = apply_strategy(
                candidate.strategy, scores[fit], n_keep, descending=descending, labels=labels[fit],
                class_balanced=class_balanced, seed=s, coverage_beta=candidate.coverage_beta,
            )
            accuracies[candidate].append(float(train_candidate(fit[keep], held, s)))
        logger.info(f"auto: {candidate.name}: slice accuracy {np.mean(accuracies[candidate]):.4f}")
    decision = decide(accuracies, len(held))
    decision.fit_rows, decision.subset_rows, decision.seeds = len(fit), n_keep, run_seeds
    decision.seconds = time.perf_counter() - start
    logger.info(
        f"auto chose {decision.chosen} (margin over random {decision.margin_over_random:+.4f}, spread {decision.spread:.4f})"
    )
    return decision


def proxy_trainer(dataset, *, model_name: str, family, info, config, accelerator, pretrained=False, trust_remote_code=False,
                  eval_batch_size: int = 256):
    """The usual ``train_candidate`` for :func:`choose_strategy`: a fresh `model_name` trained with `config` (its epochs
    and seed overridden per candidate seed) on the candidate rows, evaluated on the slice."""
    base = dataset.remove_columns(INDEX_COLUMN) if INDEX_COLUMN in dataset.column_names else dataset

    def train_candidate(rows: np.ndarray, slice_rows: np.ndarray, seed: int) -> float:
        set_seed(int(seed))
        model = create_model(model_name, info, pretrained=pretrained, trust_remote_code=trust_remote_code)
        result = train_model(
            model, family, add_index(base.select(rows)), info, dataclasses.replace(config, seed=int(seed)), accelerator,
            desc=f"auto candidate ({len(rows)} rows)",
        )
        return evaluate_accuracy(
            result.model, family, base.select(slice_rows), info, accelerator, batch_size=eval_batch_size,
            desc="auto slice", num_workers=config.num_workers,
        )

    return train_candidate


__all__ = [
    "Candidate",
    "AutoDecision",
    "candidates_for",
    "holdout_slice",
    "check_auto",
    "decide",
    "choose_strategy",
    "proxy_trainer",
    "DEFAULT_AUTO_HOLDOUT",
    "DEFAULT_AUTO_SEEDS",
]
