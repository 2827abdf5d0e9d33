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

**The budget.** ``selection_budget`` is the share of the full-data target training that selection as a whole (the
probes, proxy training, scoring, the check) may spend; without a target, the share of the proxy's own training that
scoring and the check may spend beyond it (as :mod:`svp_hf.account` counts them). With a target, :func:`precheck`
prices the proxy before it trains, from probes of the target and the proxy taken back to back
(:func:`probe_training_rate`): when the proxy's building, training and scoring alone would exceed the budget, the
proxy is not trained and random is kept (:func:`precheck_decision`); when the target's probe alone is over it, the
proxy is not even probed (:func:`target_probe_decides`). With a target the budget's seconds are an estimate, so
selection plans to spend :data:`BUDGET_HEADROOM` less than them (:func:`spendable_seconds`). Otherwise :func:`budget_plan`, the one pricing path, sizes the
check (:func:`plan_check`) to what is left once the proxy is trained and has scored, estimating each candidate's
training from the proxy's seconds per row-epoch (:class:`TrainingRate`: measured from its training, or probed when it
was loaded). It shrinks, in this order, until the check fits: the seeds (to one: the slice's
sampling error still bounds the spread), the candidates (``bottom``, then the ``coverage`` share that does not follow
the prune rate, then ``top``: at least ``random`` against ``coverage`` at the share that follows the prune rate),
then the rows the candidates select from (a class-stratified share of them, never below
:data:`MIN_POOL_SHARE`). Epochs are never shrunk: a check that trains for fewer epochs than the target favours easy
subsets. When even that smallest check does not fit, no candidate is trained: the decision says so (logged at
WARNING) and applies :data:`FALLBACK_RULE`, which costs nothing. The plan prices each candidate's building (as the
proxy's probe measured it) and training; other fixed costs (preparing its rows, a slower machine) are not in it, so a
budgeted check trains its candidates most-kept first (``random``, then ``coverage``, ...) and stops, with a WARNING, when at the seconds they
took the next one would end past the budget (:func:`over_plan`); it decides among those it trained.

:data:`DEFAULT_SELECTION_BUDGET` (0.1): SVP's CIFAR-10 core-set spent about 0.11 of the full-data training on
selection. At kept fraction ``f`` a run that spends its whole budget ``b`` is at best ``1 / (f + b)`` times faster than
full data: 1.67x at half the data with 0.1 (issue 23 asks for at least 1.4x there, which allows at most 0.21), 1.25x at
70%. Measured: the proxies of the repository's prune sweeps already cost more than that by themselves (ResNet-20 proxy
for a ResNet-20 target: proxy training and scoring 0.72-0.84 of the full-data target; fastText dim 16 for fastText dim
64: about 0.55 in the one run whose timings were clean), so there the check falls back; a fastText proxy for a
fine-tuned MiniLM (benchmarks/sst2_end_to_end.py) costs under 0.01 of its target (its checkpoints saved after its
first and last epochs, not every epoch); with the pre-check's probes (about 0.05) the proxy trained in 8 of 9 cells and
the check of 4-5 fastText candidates under 1-2 seeds fitted in the rest of the 0.8 planned (selection 0.049-0.079 of the
full-data training, every cell within the budget; RESULTS.md section 6).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from accelerate.utils import set_seed

from ..account import DEFAULT_SELECTION_BUDGET, check_selection_budget, format_seconds
from ..config.checks import check_coverage_beta
from ..data.columns import INDEX_COLUMN, add_index, text_lengths
from ..engine.checkpoint import planned_saves
from ..engine.training import evaluate_accuracy, train_model
from ..errors import SVPConfigError
from ..models import create_model
from ..selection.ranking import class_quotas, n_to_keep
from ..selection.strategies import apply_strategy, default_coverage_beta
from ..utils.log import get_logger
from ..utils.progress import progress_bar, quiet_datasets

logger = get_logger(__name__)

AUTO_MIN_SLICE = 20
DEFAULT_AUTO_HOLDOUT = 0.1
DEFAULT_AUTO_SEEDS = 2

# The budgeted check selects from no fewer than this share of the rows it would use unbudgeted: below it, subsets are
# so much smaller than the real selection's that which strategy wins may change with the scale.
MIN_POOL_SHARE = 0.25
# What a check that cannot fit its budget chooses, and the evidence for it.
# The share of the budget's seconds that selection plans to spend when the budget is a share of the target's
# full-data training, which a probe estimates: the rest is headroom for that estimate's error. Measured (RESULTS.md
# sections 5 and 6): the probe priced a MiniLM fine-tuning at 0.80-1.23x its measured full-data training over 18 cells
# and a CIFAR ResNet-20 at 0.95-1.03x over 12; planned to the whole budget, a check that fills it ended at 0.101 of
# the measured training when the probe had priced it 1.10x. Without a target the budget's reference (the proxy's own
# training) is measured, not estimated, and planned in full.
BUDGET_HEADROOM = 0.2

FALLBACK = "random"
FALLBACK_RULE = (
    "random: in the repository's prune sweeps (benchmarks/RESULTS.md section 5; CIFAR-10 with a ResNet-20 proxy and "
    "target, SST-2 with fastText proxy and target; kept 0.1, 0.3, 0.5 and 0.7; 3 seeds) no strategy (top or coverage "
    "over el2n, forgetting or aum) beat random by more than its spread over seeds on both suites at any kept fraction, "
    "and top fell up to 39 points below it; a proxy that barely beats chance ranks by noise, which random matches"
)


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
    budget: Optional[Dict[str, Any]] = None  # the plan the check was sized to (CheckPlan.as_dict), when budgeted
    fallback: Optional[str] = None  # why no candidate was trained, and the rule applied instead

    @property
    def chosen(self) -> str:
        return Candidate(self.strategy, self.coverage_beta).name

    def as_dict(self) -> Dict[str, Any]:
        return {**asdict(self), "chosen": self.chosen}


@dataclass(frozen=True)
class TrainingRate:
    """A model's measured training cost: seconds per row and epoch of training, per row of preparing its data
    (tokenising, decoding; once per training), per row evaluated, seconds per epoch whatever its rows (starting
    the epoch's loader, the schedule: what a probe of few batches separates from the per-row rate), and seconds per
    checkpoint saved, where the training checkpoints (as many as :func:`svp_hf.engine.checkpoint.planned_saves`
    counts: after the last epoch when the final weights are kept, and between epochs at most about a tenth of the
    training's time)."""

    train: float
    prepare: float = 0.0
    evaluate: float = 0.0
    source: str = ""
    per_epoch: float = 0.0
    save: float = 0.0
    # Seconds to build the model, once per training (a probe that built its model measures it; not part of
    # training_seconds: a proxy's estimate adds it, the target's building is left out on both sides of the account).
    build: float = 0.0

    @classmethod
    def measured(
        cls,
        seconds: float,
        rows: int,
        epochs: int,
        *,
        prepare_seconds: float = 0.0,
        evaluate_seconds: float = 0.0,
        evaluated_rows: int = 0,
        source: str = "",
        build_seconds: float = 0.0,
    ) -> "TrainingRate":
        """From a training of `rows` rows for `epochs` epochs that took `seconds` (of which `prepare_seconds` preparing
        the data, and `build_seconds` building the model: the rate's ``build``, not spread over the rows) and,
        optionally, `evaluate_seconds` to evaluate (or score) `evaluated_rows` rows."""
        rows, epochs = int(rows), int(epochs)
        if rows < 1 or epochs < 1 or not seconds >= 0 or not prepare_seconds >= 0 or not evaluate_seconds >= 0:
            raise ValueError(f"need rows >= 1, epochs >= 1 and non-negative seconds, got {rows}, {epochs}, {seconds}")
        build_seconds = min(max(float(build_seconds), 0.0), float(seconds))
        trained = float(seconds) - build_seconds
        prepare_seconds = min(float(prepare_seconds), trained)
        return cls(
            train=(trained - prepare_seconds) / (rows * epochs),
            prepare=prepare_seconds / rows,
            evaluate=float(evaluate_seconds) / evaluated_rows if evaluated_rows else 0.0,
            source=source or f"{format_seconds(seconds)} for {rows} rows x {epochs} epochs",
            build=build_seconds,
        )

    def training_seconds(self, rows: int, epochs: int) -> float:
        """Seconds to train on `rows` rows for `epochs` epochs at this rate, its checkpoints' saves included."""
        epoch = self.train * rows + self.per_epoch
        saves = planned_saves(epochs, epoch, self.save) if self.save > 0 else 0
        return epoch * epochs + self.prepare * rows + self.save * saves

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def budget_reference(
    *,
    n_rows: int,
    target_rate: Optional[TrainingRate] = None,
    target_epochs: Optional[int] = None,
    proxy_seconds: Optional[float] = None,
) -> Tuple[float, str, str]:
    """``(seconds, kind, how)``: what the budget is a share of. With a target, its training on all `n_rows` rows for
    `target_epochs` at its measured `target_rate` (kind ``target``); without one, the proxy's own training,
    `proxy_seconds` (kind ``proxy``). Neither: a :class:`SVPConfigError` (a run without a target whose proxy was not
    trained here, e.g. loaded from a checkpoint, has no training to take a share of)."""
    if target_rate is not None:
        if not target_epochs or target_epochs < 1:
            raise SVPConfigError(f"the target's epochs are needed to budget auto's check, got {target_epochs!r}")
        seconds = target_rate.training_seconds(int(n_rows), int(target_epochs))
        how = f"the target on all {int(n_rows)} rows x {int(target_epochs)} epochs at its measured rate ({target_rate.source})"
        return seconds, "target", how
    if proxy_seconds is not None and proxy_seconds > 0:
        return float(proxy_seconds), "proxy", "the proxy's own training on every row (no target is trained)"
    raise SVPConfigError(
        "selection_budget cannot be checked: the run trains no target and its proxy was not trained here (no training "
        "time to take a share of); train the proxy in this run, add a target, or choose a strategy other than auto"
    )


def spendable_seconds(budget: float, reference_seconds: float, reference: str = "target") -> float:
    """What selection plans to spend of `budget` x `reference_seconds`: all of it when the reference is measured (the
    proxy's own training), :data:`BUDGET_HEADROOM` less when it is the target's full-data training as a probe priced it
    (the headroom holds the budget when the probe prices high)."""
    headroom = BUDGET_HEADROOM if reference == "target" else 0.0
    return check_selection_budget(budget) * float(reference_seconds) * (1.0 - headroom)


@dataclass
class CheckPlan:
    """The check sized to its budget (:func:`plan_check`): what it runs and what it was expected to cost."""

    budget: float
    reference: str  # "target" or "proxy": whose full-data training the budget is a share of
    reference_seconds: float
    spent_seconds: float  # spent by selection before the check (proxy training, scoring, estimating the target)
    available_seconds: float
    seconds_per_row_epoch: float
    candidates: List[Candidate]
    seeds: int
    pool_rows: int  # rows the candidates select from
    fit_rows: int  # rows they would select from unbudgeted
    subset_rows: int
    slice_rows: int
    epochs: int
    planned_seconds: float
    shrunk: List[str] = field(default_factory=list)
    fits: bool = True
    reason: str = ""
    build_seconds: float = 0.0  # building each candidate's model, priced once per candidate and seed
    headroom: float = 0.0  # the share of the budget kept out of available_seconds (BUDGET_HEADROOM with a target)

    def as_dict(self) -> Dict[str, Any]:
        out = asdict(self)
        out["candidates"] = [c.name for c in self.candidates]
        return out


def check_cost(
    rate: TrainingRate, n_candidates: int, seeds: int, subset_rows: int, epochs: int, slice_rows: int
) -> float:
    """Seconds of a check: every candidate under every seed is built (the rate's ``build``), trains on `subset_rows`
    for `epochs` and is evaluated on the slice."""
    one = rate.build + rate.training_seconds(subset_rows, epochs) + rate.evaluate * slice_rows
    return n_candidates * seeds * one


def shrink_order(candidates: Sequence[Candidate], fraction: float, coverage_beta: Optional[float]) -> List[Candidate]:
    """The candidates a budget drops, first to last: ``bottom``, ``coverage`` at a share other than the one that
    follows the prune rate (or the recipe's), then ``top``; random and that ``coverage`` always stay."""
    keep_beta = coverage_beta if coverage_beta is not None else default_coverage_beta(fraction)
    order = [c for c in candidates if c.strategy == "bottom"]
    order += [c for c in candidates if c.strategy == "coverage" and not np.isclose(c.coverage_beta, keep_beta)]
    order += [c for c in candidates if c.strategy == "top"]
    return order


def keep_order(candidates: Sequence[Candidate], fraction: float, coverage_beta: Optional[float]) -> List[Candidate]:
    """The candidates in the order a budgeted check trains them: those a budget never drops (random first), then the
    others in the reverse of :func:`shrink_order` (the last dropped first)."""
    drops = shrink_order(candidates, fraction, coverage_beta)
    return [c for c in candidates if c not in drops] + drops[::-1]


def over_plan(plan: CheckPlan, elapsed: float, trained: int, planned: int) -> Optional[str]:
    """Why a budgeted check stops after `trained` of its `planned` candidates (None to go on): when, at the seconds
    each has taken so far, the next would end past the budget (the plan's estimate can miss fixed costs, such as
    building each model when the proxy's building was not measured, or the machine can slow down)."""
    each = elapsed / trained
    if elapsed + each <= plan.available_seconds:
        return None
    return (
        f"stopped after {trained} of {planned} candidates: they took {format_seconds(each)} each against "
        f"{format_seconds(plan.planned_seconds / max(planned, 1))} planned, and the next would end past "
        f"the {format_seconds(plan.available_seconds)} left of the budget"
    )


def plan_check(
    *,
    budget: float,
    reference_seconds: float,
    reference: str,
    spent_seconds: float,
    rate: TrainingRate,
    n_rows: int,
    fraction: float,
    epochs: int,
    holdout: float = DEFAULT_AUTO_HOLDOUT,
    seeds: int = DEFAULT_AUTO_SEEDS,
    coverage_beta: Optional[float] = None,
    num_classes: int = 1,
) -> CheckPlan:
    """Size the check to what is left of `budget` x `reference_seconds` (less :data:`BUDGET_HEADROOM` when that is the
    target's estimated training: :func:`spendable_seconds`) once `spent_seconds` are spent, each candidate's building
    and training estimated from `rate` (the proxy's, measured). See the module docstring for the order in
    which seeds, candidates and rows shrink; ``fits`` is False (and ``reason`` says why) when even the smallest
    honest check does not fit."""
    budget = check_selection_budget(budget)
    available = spendable_seconds(budget, reference_seconds, reference) - float(spent_seconds)
    slice_rows = int(round(float(holdout) * n_rows))
    fit_rows = int(n_rows) - slice_rows
    candidates = candidates_for(fraction, coverage_beta)
    plan = CheckPlan(
        budget=budget,
        reference=reference,
        reference_seconds=float(reference_seconds),
        spent_seconds=float(spent_seconds),
        available_seconds=available,
        seconds_per_row_epoch=rate.train,
        candidates=list(candidates),
        seeds=int(seeds),
        pool_rows=fit_rows,
        fit_rows=fit_rows,
        subset_rows=n_to_keep(fraction, fit_rows),
        slice_rows=slice_rows,
        epochs=int(epochs),
        planned_seconds=0.0,
        build_seconds=float(rate.build),
        headroom=BUDGET_HEADROOM if reference == "target" else 0.0,
    )

    def cost() -> float:
        plan.subset_rows = n_to_keep(fraction, plan.pool_rows)
        plan.planned_seconds = check_cost(
            rate, len(plan.candidates), plan.seeds, plan.subset_rows, plan.epochs, slice_rows
        )
        return plan.planned_seconds

    if cost() <= available:
        return plan
    if plan.seeds > 1:
        plan.shrunk.append(f"seeds {plan.seeds} -> 1")
        plan.seeds = 1
        if cost() <= available:
            return plan
    for candidate in shrink_order(candidates, fraction, coverage_beta):
        plan.candidates.remove(candidate)
        plan.shrunk.append(f"candidate {candidate.name} dropped")
        if cost() <= available:
            return plan
    smallest = max(int(np.ceil(MIN_POOL_SHARE * fit_rows)), int(np.ceil(num_classes / float(fraction))))
    per_candidate = available / (len(plan.candidates) * plan.seeds) - rate.evaluate * slice_rows
    per_row = rate.train * plan.epochs + rate.prepare
    # Start above the estimate (n_to_keep rounds the kept rows, floats round both ways) and step down until it fits.
    pool = int((per_candidate / per_row + 1) / float(fraction)) + 1 if per_row > 0 and per_candidate > 0 else 0
    pool = min(pool, fit_rows)
    while pool >= smallest:
        plan.pool_rows = pool
        if cost() <= available:
            plan.shrunk.append(f"rows {fit_rows} -> {pool} (a class-stratified {pool / fit_rows:.0%})")
            return plan
        pool -= 1
    plan.pool_rows = max(smallest, 1)
    cost()
    plan.fits = False
    plan.reason = (
        f"the smallest honest check ({' and '.join(c.name for c in plan.candidates)}, one seed, {plan.pool_rows} of "
        f"{fit_rows} rows, {plan.epochs} epochs: about {format_seconds(plan.planned_seconds)}) does not fit the "
        f"{format_seconds(max(available, 0.0))} left of the budget ({budget:g} x "
        f"{format_seconds(float(reference_seconds))} of the "
        f"{reference}'s full-data training"
        + (f", of which {1.0 - plan.headroom:g} is planned (headroom for the probe's error)" if plan.headroom else "")
        + f", less {format_seconds(float(spent_seconds))} already spent on selection)"
    )
    return plan


def budget_plan(
    *,
    budget: float,
    n_rows: int,
    fraction: float,
    check_epochs: int,
    proxy_rate: TrainingRate,
    proxy_epochs: int,
    proxy_trained: bool,
    scoring_seconds: float = 0.0,
    target_rate: Optional[TrainingRate] = None,
    target_epochs: Optional[int] = None,
    probe_seconds: float = 0.0,
    holdout: float = DEFAULT_AUTO_HOLDOUT,
    seeds: int = DEFAULT_AUTO_SEEDS,
    coverage_beta: Optional[float] = None,
    num_classes: int = 1,
) -> CheckPlan:
    """The check's plan, the one pricing path of a budgeted ``auto``: every candidate priced at the proxy's rate.

    Args:
        budget: ``selection_budget``, the share of the reference that selection may spend.
        n_rows: Training rows.
        fraction: Share of the rows kept.
        check_epochs: Epochs of each candidate.
        proxy_rate: The proxy's rate: measured from its training here (:meth:`TrainingRate.measured` on its seconds
            for `n_rows` x `proxy_epochs`) when `proxy_trained`, else probed (:func:`probe_training_rate`; a proxy
            loaded from a checkpoint, or scores given).
        proxy_epochs: Epochs the proxy trains (or trained) for.
        proxy_trained: Whether the proxy was trained in this run: its training is then selection's cost when a
            target is the reference, and the reference itself without one.
        scoring_seconds: Seconds scoring took (0 when the scores were given); also the candidates' evaluation rate.
        target_rate: The target's probed rate: the budget is a share of its training on all rows for
            `target_epochs` (:func:`budget_reference`); without it, of the proxy's own training at `proxy_rate`.
        target_epochs: The target's epochs.
        probe_seconds: Seconds the probes took (the target's, a probed proxy's, the pre-check's), spent by selection.
        holdout, seeds, coverage_beta, num_classes: The check's settings (see :func:`plan_check`).

    Returns:
        The :class:`CheckPlan`: what selection spent before the check is the scoring and the probes, plus the proxy's
        training when it was trained here and the reference is the target's.
    """
    n_rows, proxy_epochs = int(n_rows), int(proxy_epochs)
    proxy_seconds = proxy_rate.training_seconds(n_rows, proxy_epochs) + proxy_rate.build
    reference_seconds, reference, _ = budget_reference(
        n_rows=n_rows, target_rate=target_rate, target_epochs=target_epochs, proxy_seconds=proxy_seconds
    )
    spent = float(scoring_seconds) + float(probe_seconds)
    if proxy_trained and reference == "target":
        spent += proxy_seconds
    if scoring_seconds:
        proxy_rate = dataclasses.replace(proxy_rate, evaluate=float(scoring_seconds) / n_rows)
    return plan_check(
        budget=budget,
        reference_seconds=reference_seconds,
        reference=reference,
        spent_seconds=spent,
        rate=proxy_rate,
        n_rows=n_rows,
        fraction=fraction,
        epochs=check_epochs,
        holdout=holdout,
        seeds=seeds,
        coverage_beta=coverage_beta,
        num_classes=num_classes,
    )


@dataclass
class Precheck:
    """Whether selection can pay for itself, priced before the proxy trains (:func:`precheck`)."""

    budget: float
    # The proxy's figures, at its probed rate; None when it was not probed (``proxy_probed`` false: the target's probe
    # alone was over the budget, see :func:`target_probe_decides`).
    proxy_training_seconds: Optional[float]  # the proxy on every row for its epochs, building it included
    proxy_scoring_seconds: Optional[float]  # one forward pass of every row, at its probed evaluation rate
    proxy_estimate_seconds: Optional[float]  # the two together
    probe_seconds: float  # the probes (the target's, building it included, and the proxy's when it was probed)
    reference_seconds: float  # the target on every row for its epochs, at its probed rate
    budget_seconds: float  # budget x reference_seconds
    fits: bool  # the proxy's estimate plus the probes within spendable_seconds
    proxy_rate: Dict[str, Any] = field(default_factory=dict)
    target_rate: Dict[str, Any] = field(default_factory=dict)
    # Of probe_seconds: building the target probed; when the pre-check keeps random the target's training starts from
    # that model (svp_hf.stages.orchestrator.PruneResult.take_target_model) and the account counts it as the target's.
    target_build_seconds: float = 0.0
    proxy_probed: bool = True
    proxy_build_seconds: Optional[float] = None  # of proxy_training_seconds: building the proxy, as its probe did
    # What selection plans to spend of budget_seconds (spendable_seconds: the headroom left for the probe's error);
    # None in a pre-check saved before the headroom, which planned budget_seconds in full.
    spendable_seconds: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @property
    def reason(self) -> str:
        """Why selection cannot pay, in numbers (meaningful when it does not fit)."""
        spendable = self.budget_seconds if self.spendable_seconds is None else self.spendable_seconds
        budget = (
            f"the {format_seconds(spendable)} selection may plan to spend of the budget's "
            f"{format_seconds(self.budget_seconds)} "
            f"({self.budget:g} x {format_seconds(self.reference_seconds)} of the target's full-data training, from a "
            f"probe)"
        )
        if not self.proxy_probed:
            return (
                f"selection cannot pay for itself: the target's probe alone took {format_seconds(self.probe_seconds)} "
                f"(building "
                f"the target {format_seconds(self.target_build_seconds)}), more than {budget}; kept random without "
                f"probing or "
                "training the proxy"
            )
        return (
            f"selection cannot pay for itself: the proxy's training and scoring on all rows are estimated at "
            f"{format_seconds(self.proxy_estimate_seconds)} (training {format_seconds(self.proxy_training_seconds)}, "
            f"scoring "
            f"{format_seconds(self.proxy_scoring_seconds)}, from a probe) plus {format_seconds(self.probe_seconds)} of "
            f"probes, more than "
            f"{budget}; kept random without training the proxy"
        )


def target_probe_decides(
    *, budget: float, n_rows: int, target_rate: TrainingRate, target_epochs: int, probe_seconds: float
) -> bool:
    """Whether the pre-check is decided before the proxy is probed: the target's probe took `probe_seconds` (building
    it included: when the proxy trains, that target is not kept, so building it was selection's), already more than
    selection plans to spend of `budget` x the target's full-data training that the probe prices
    (:func:`spendable_seconds`). :func:`precheck` cannot then fit, whatever the
    proxy costs, so building and probing the proxy would only add to what selection spends (a 2M-row fastText proxy
    takes 0.15-0.45 s to build, about the whole budget of a fastText target's few-second training)."""
    reference_seconds, _, _ = budget_reference(n_rows=n_rows, target_rate=target_rate, target_epochs=target_epochs)
    return float(probe_seconds) > spendable_seconds(budget, reference_seconds)


def precheck(
    *,
    budget: float,
    n_rows: int,
    proxy_rate: Optional[TrainingRate],
    proxy_epochs: int,
    target_rate: TrainingRate,
    target_epochs: int,
    probe_seconds: float = 0.0,
    target_build_seconds: float = 0.0,
) -> Precheck:
    """Price the proxy before training it: building it, its training on all `n_rows` for `proxy_epochs` and its
    scoring (one forward pass of every row) at its probed `proxy_rate`, plus the probes' seconds, against `budget` x
    the target's training on all rows for `target_epochs` at its probed `target_rate`. It fits when the estimate is
    within what selection plans to spend of that (:func:`spendable_seconds`: :data:`BUDGET_HEADROOM` less).

    Only with a target: without one the budget is a share of the proxy's own training, which its training cannot
    exceed, so there is nothing to pre-check.

    Args:
        budget: ``selection_budget``.
        n_rows: Training rows.
        proxy_rate: The proxy's probed rate (its ``evaluate``, seconds per row of a forward pass, prices scoring; its
            ``build``, building it). ``None`` when it was not probed (:func:`target_probe_decides`): it cannot fit.
        proxy_epochs: The proxy's epochs.
        target_rate: The target's probed rate.
        target_epochs: The target's epochs.
        probe_seconds: What the probes took.
        target_build_seconds: Of `probe_seconds`, building the target (recorded: see :class:`Precheck`).

    Returns:
        The :class:`Precheck` (``fits``; ``as_dict()`` is ``metrics["auto"]["budget"]["precheck"]``).
    """
    budget = check_selection_budget(budget)
    reference_seconds, _, _ = budget_reference(n_rows=n_rows, target_rate=target_rate, target_epochs=target_epochs)
    allowed = spendable_seconds(budget, reference_seconds)
    common = dict(
        budget=budget,
        probe_seconds=float(probe_seconds),
        reference_seconds=reference_seconds,
        budget_seconds=budget * reference_seconds,
        spendable_seconds=allowed,
        target_rate=target_rate.as_dict(),
        target_build_seconds=float(target_build_seconds),
    )
    if proxy_rate is None:
        return Precheck(
            proxy_training_seconds=None,
            proxy_scoring_seconds=None,
            proxy_estimate_seconds=None,
            fits=False,
            proxy_probed=False,
            **common,
        )
    training = proxy_rate.training_seconds(int(n_rows), int(proxy_epochs)) + proxy_rate.build
    scoring = proxy_rate.evaluate * int(n_rows)
    return Precheck(
        proxy_training_seconds=training,
        proxy_scoring_seconds=scoring,
        proxy_estimate_seconds=training + scoring,
        fits=training + scoring + float(probe_seconds) <= allowed,
        proxy_rate=proxy_rate.as_dict(),
        proxy_build_seconds=proxy_rate.build,
        **common,
    )


def precheck_decision(check: Precheck, epochs: int) -> AutoDecision:
    """The decision when :func:`precheck` does not fit: :data:`FALLBACK`, with neither the proxy nor a candidate
    trained; its ``budget`` holds the pre-check's figures (``budget["precheck"]``)."""
    why = f"{check.reason} (the fallback rule: {FALLBACK_RULE})"
    budget = {
        "budget": check.budget,
        "reference": "target",
        "reference_seconds": check.reference_seconds,
        "spent_seconds": check.probe_seconds,
        "available_seconds": (check.budget_seconds if check.spendable_seconds is None else check.spendable_seconds)
        - check.probe_seconds,
        "fits": False,
        "reason": check.reason,
        "precheck": check.as_dict(),
    }
    return AutoDecision(strategy=FALLBACK, coverage_beta=None, epochs=int(epochs), budget=budget, fallback=why)


def fallback_decision(plan: CheckPlan, proxy_barely_beats_chance: Optional[bool] = None) -> AutoDecision:
    """The decision when the check does not fit its budget: :data:`FALLBACK`, trained nothing, says why."""
    why = f"{plan.reason}; chose {FALLBACK} without training a candidate (the fallback rule: {FALLBACK_RULE})"
    if proxy_barely_beats_chance:
        why += "; this run's proxy barely beats chance besides"
    logger.warning(f"auto: {why}")
    return AutoDecision(strategy=FALLBACK, coverage_beta=None, epochs=plan.epochs, budget=plan.as_dict(), fallback=why)


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


def pool_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A class-stratified, seeded sample of exactly `n` positions of `labels` (sorted): the rows a budgeted check's
    candidates select from when it cannot afford all of them."""
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, 2718])
    picked = [
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in class_quotas(labels, int(n)).items()
    ]
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
            {
                "name": c.name,
                "strategy": c.strategy,
                "coverage_beta": c.coverage_beta,
                "accuracies": v.tolist(),
                "mean": m,
                "std": s,
            }
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
    plan: Optional[CheckPlan] = None,
    proxy_barely_beats_chance: Optional[bool] = None,
    agree: Optional[Callable[[Any], Any]] = None,
) -> AutoDecision:
    """Run the check on `dataset` (a ``datasets.Dataset``) with the method's `scores` and `labels`.

    ``train_candidate(train_rows, slice_rows, seed) -> slice accuracy`` trains a fresh proxy on the given rows of
    `dataset` and evaluates it on the slice (the caller owns the model and training settings).

    With a `plan` (:func:`plan_check`) the check runs its seeds and candidates on its share of the rows, and the
    decision records the plan and the seconds spent; a plan that does not fit trains nothing and returns the fallback
    (:func:`fallback_decision`). `agree(value)` returns the main process's `value` in a multi-process run: whether
    to stop early is decided from measured seconds, which differ between processes."""
    start = time.perf_counter()
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    check_auto(len(scores), labels, fraction, holdout)
    coverage_beta = check_coverage_beta(coverage_beta)
    if plan is not None and not plan.fits:
        decision = fallback_decision(plan, proxy_barely_beats_chance)
        decision.seconds = time.perf_counter() - start
        decision.budget["check_seconds"] = decision.seconds
        return decision
    held = holdout_slice(labels, holdout, seed)
    fit = np.setdiff1d(np.arange(len(scores)), held)
    candidates = candidates_for(fraction, coverage_beta)
    stopped = None
    if plan is not None:
        seeds, candidates = (
            plan.seeds,
            [c for c in keep_order(candidates, fraction, coverage_beta) if c in plan.candidates],
        )
        if plan.pool_rows < len(fit):
            fit = fit[pool_sample(labels[fit], plan.pool_rows, seed)]
    n_keep = n_to_keep(fraction, len(fit))
    accuracies: Dict[Candidate, List[float]] = {}
    run_seeds = [int(seed) + k for k in range(int(seeds))]
    bar = progress_bar(total=len(candidates) * len(run_seeds), desc="auto: checking strategies", unit="candidate")
    for i, candidate in enumerate(candidates):
        if plan is not None and i > 0:
            stopped = over_plan(plan, time.perf_counter() - start, i, len(candidates))
            stopped = agree(stopped) if agree is not None else stopped
            if stopped:
                logger.warning(f"auto: {stopped}")
                break
        accuracies[candidate] = []
        for s in run_seeds:
            keep = apply_strategy(
                candidate.strategy,
                scores[fit],
                n_keep,
                descending=descending,
                labels=labels[fit],
                class_balanced=class_balanced,
                seed=s,
                coverage_beta=candidate.coverage_beta,
            )
            accuracies[candidate].append(float(train_candidate(fit[keep], held, s)))
            bar.update(1)
        logger.info(f"auto: {candidate.name}: slice accuracy {np.mean(accuracies[candidate]):.4f}")
    bar.close()
    decision = decide(accuracies, len(held))
    decision.fit_rows, decision.subset_rows, decision.seeds = len(fit), n_keep, run_seeds
    decision.seconds = time.perf_counter() - start
    if plan is not None:
        decision.epochs = plan.epochs
        decision.budget = {**plan.as_dict(), "check_seconds": decision.seconds, "stopped": stopped}
        if len(accuracies) < 2:  # stopped after random alone: nothing was compared, so the fallback rule decided
            decision.fallback = (
                f"{stopped}; with random alone trained nothing was compared: {FALLBACK} kept by the fallback rule"
            )
        logger.info(
            f"auto: budget {plan.budget:g} of the {plan.reference}'s {format_seconds(plan.reference_seconds)}: check "
            f"planned "
            f"{format_seconds(plan.planned_seconds)}, spent {format_seconds(decision.seconds)}"
            + (f" (shrunk: {'; '.join(plan.shrunk)})" if plan.shrunk else "")
        )
    logger.info(
        f"auto chose {decision.chosen} (margin over random {decision.margin_over_random:+.4f}, spread {decision.spread:.4f})"
    )
    return decision


def proxy_trainer(
    dataset,
    *,
    model_name: str,
    family,
    info,
    config,
    accelerator,
    pretrained=False,
    trust_remote_code=False,
    eval_batch_size: int = 256,
):
    """The usual ``train_candidate`` for :func:`choose_strategy`: a fresh `model_name` trained with `config` (its epochs
    and seed overridden per candidate seed) on the candidate rows, evaluated on the slice."""
    base = dataset.remove_columns(INDEX_COLUMN) if INDEX_COLUMN in dataset.column_names else dataset

    def train_candidate(rows: np.ndarray, slice_rows: np.ndarray, seed: int) -> float:
        set_seed(int(seed))
        model = create_model(model_name, info, pretrained=pretrained, trust_remote_code=trust_remote_code)
        with quiet_datasets():
            subset, held_out = add_index(base.select(rows)), base.select(slice_rows)
        result = train_model(
            model,
            family,
            subset,
            info,
            dataclasses.replace(config, seed=int(seed)),
            accelerator,
            desc=f"auto candidate ({len(rows)} rows)",
            progress=False,
        )
        return evaluate_accuracy(
            result.model,
            family,
            held_out,
            info,
            accelerator,
            batch_size=eval_batch_size,
            desc="auto slice",
            num_workers=config.num_workers,
            progress=False,
        )

    return train_candidate


# A probe trains one batch to warm up (allocations, caches, lazy initialisation), then one epoch of this many batches
# and one of twice as many, and evaluates the same two sets of rows: the difference of the two lengths is the per-row
# rate, free of what each epoch or evaluation costs whatever its rows (starting a loader, the schedule), which a probe
# of a few batches would otherwise spread over its few rows. (Longer probes measure fast models more steadily but
# cost more than a small run's whole budget: on the quickstart, growing them to 0.1 s cost 2.4-2.9 s of probes against
# a budget of 1.9-2.4 s.)
PROBE_BATCHES = 1


def _rate_from_two(short: float, long: float, short_rows: int, long_rows: int) -> Tuple[float, float]:
    """``(seconds per row, fixed seconds)`` from two timings of the same work on `short_rows` and `long_rows` rows:
    the difference per extra row, and what is left of the shorter.

    Readings that no fixed cost can explain (the extra rows dearer per row than the shorter run's rows all
    together, i.e. a negative fixed cost, or a longer run no slower) are noise, and the cheaper whole-run reading is
    taken, all of it per row: on a model whose step is long (MiniLM on a CPU: 0.3-0.5 s per batch of 16) a few
    batches' jitter would otherwise price its training at up to twice its cost, and the budget, a share of that
    price, with it."""
    extra_rows = long_rows - short_rows
    whole = min(short / max(short_rows, 1), long / max(long_rows, 1))
    if extra_rows > 0 and long > short:
        per_row = (long - short) / extra_rows
        if per_row <= whole:
            return per_row, short - per_row * short_rows
    return whole, 0.0


def probe_rows(
    n_rows: int,
    step: int,
    batches: int,
    seed: int,
    sizes: Optional[Callable[[np.ndarray], Optional[np.ndarray]]] = None,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows of a probe (:func:`probe_training_rate`): ``(warm-up, short, long)``, seeded and disjoint; the
    warm-up is one step of rows, the short epoch `batches` steps and the long one twice as many (fewer on small data).

    With `sizes` (the sizes of the given rows, or ``None``: what a row costs grows with its size, e.g. a text's length,
    a batch being padded to its longest row), the short
    and the long rows are one spread over the rows' sizes: a seeded sample of the rows is sorted by size and cut into
    groups of three neighbours, and each group gives one row to the short epoch and two to the long one (which gets
    which drawn at random). Both epochs then see the same mix of short and long rows, and their difference is the cost
    of a typical row, not of whichever rows a few random batches happened to draw (on SST-2 with MiniLM, random
    batches of 16 priced the same training anywhere from 50 s to 112 s)."""
    rng = np.random.default_rng([int(seed), 31337])
    picked = rng.permutation(int(n_rows))
    warm_rows = min(int(step), max(len(picked) - 2, 1))
    rest = picked[warm_rows:] if len(picked) > warm_rows else picked
    n_short = max(min(int(batches) * int(step), len(rest) // 3), 1)
    n_long = max(min(2 * n_short, len(rest) - n_short), 1)
    # A sample several times the probe's rows, sorted by size (ties keep the sample's random order): its rows at
    # evenly spaced ranks (the middles of equal shares, so never the sample's extremes) stand for the whole spread,
    # three neighbours at a time.
    sample = rest[: min(len(rest), max(8 * 3 * n_short, 512))]
    measured = sizes(sample) if sizes is not None and len(rest) >= 3 * n_short else None
    if measured is None:
        return picked[:warm_rows], rest[:n_short], rest[n_short : n_short + n_long]
    ordered = sample[np.argsort(np.asarray(measured), kind="stable")]
    spaced = ordered[((np.arange(3 * n_short) + 0.5) * len(ordered) / (3 * n_short)).astype(np.int64)]
    short, long = [], []
    for group in spaced.reshape(n_short, 3):
        group = rng.permutation(group)
        short.append(group[0])
        long.extend(group[1:])
    return picked[:warm_rows], np.asarray(short), np.asarray(long[:n_long])


def _probe_folder(checkpoint_dir: Optional[str], accelerator) -> Optional[str]:
    """An empty scratch folder for one measured epoch's checkpoint inside `checkpoint_dir` (``None`` without one): the
    same path in every process, emptied first so that no earlier probe's checkpoint is resumed."""
    if not checkpoint_dir:
        return None
    folder = os.path.join(checkpoint_dir, "probe", "epoch")
    if accelerator.is_main_process:
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder, exist_ok=True)
    accelerator.wait_for_everyone()
    return folder


def _remove_probe_folder(folder: Optional[str], accelerator) -> None:
    if folder is None:
        return
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(os.path.dirname(folder), ignore_errors=True)
    accelerator.wait_for_everyone()


def probe_training_rate(
    make_model,
    family,
    dataset,
    info,
    config,
    accelerator,
    *,
    batches: int = PROBE_BATCHES,
    seed: int = 0,
    evaluate: bool = True,
    checkpoint_dir: Optional[str] = None,
    repeats: int = 1,
    frozen: bool = False,
) -> Tuple[TrainingRate, float]:
    """A model's training and evaluation rates measured on a few rows of `dataset`, so that its full-data training
    (and a forward pass of every row) can be priced before it trains: the target's, for :func:`budget_reference`; the
    proxy's, for :func:`precheck`, or when it was loaded rather than trained.

    A fresh ``make_model()`` (its building timed: the rate's ``build``) trains one epoch on one step of seeded rows (a
    warm-up, not measured), then one epoch on `batches` steps of others and one on twice as many, and evaluates those
    two sets of rows; a step is a batch in every process (N batches under N processes), so that the longer epoch does
    twice the shorter's work in each process. The per-row rates are the differences between the long and the short runs,
    and the rest of the short run is a fixed cost per epoch (:class:`TrainingRate`'s ``per_epoch``; the longer run's
    checkpoint save, when `checkpoint_dir` is given, is its ``save``). The rate's ``prepare`` is the longer training's
    data preparation per row.

    Args:
        make_model: Builds a fresh model.
        family: Its model family.
        dataset: The training rows (a ``datasets.Dataset``).
        info: The dataset's columns.
        config: The model's training config (its batch size; its epochs are not used).
        accelerator: Where it runs.
        batches: Steps (a batch in every process) of the shorter measured epoch.
        seed: Seed of the rows drawn and of the model.
        evaluate: Also measure the evaluation rate (the proxy's, which prices scoring); false leaves ``evaluate`` 0
            and saves the two evaluations (the target's probe: only its training is priced).
        checkpoint_dir: Where the run that will train the model saves its checkpoints: the longer measured
            epoch saves one too, in a scratch folder inside it (removed after), and what the save took is part of the
            rate's ``save``, priced as many times as the training will save (a large fastText table's checkpoint can
            cost more than its whole training, and is then saved after the last epoch only).
        repeats: Measure the two epochs this many times and keep the fastest of each (other work on the machine only
            slows a measurement down): the target's probe sets the budget, which a slowed probe would inflate.
        frozen: Leave the model's weights as `make_model` built them, so that it can still be trained from scratch
            after: every step runs at learning rate 0 (the same work: the optimizer's update is computed and scaled
            by 0) and the buffers (e.g. batch-norm statistics) are restored after. Callers check the weights
            (:func:`svp_hf.stages.proxy.weights_digest`): an optimizer that moves weights at learning rate 0 would
            change them.

    Returns:
        ``(rate, seconds)``: the :class:`TrainingRate` and the seconds the whole probe took (selection spends them).
    """
    start = time.perf_counter()
    base = dataset.remove_columns(INDEX_COLUMN) if INDEX_COLUMN in dataset.column_names else dataset
    batch = int(config.batch_size)
    # A step's rows: accelerate deals a batch to every process (the last repeating rows when they run short), so
    # epochs of one and two batches would both be one step in each of two processes, and differ by noise alone.
    step = batch * (accelerator.num_processes if accelerator is not None else 1)
    spread: List[bool] = []

    def lengths(rows: np.ndarray) -> Optional[np.ndarray]:
        with quiet_datasets():
            found = text_lengths(base.select(rows), info)
        spread.append(found is not None)
        return found

    warm_rows, short_rows, long_rows = probe_rows(len(base), step, batches, seed, lengths)
    one_epoch = dataclasses.replace(config, epochs=1, seed=int(seed), **({"learning_rate": 0.0} if frozen else {}))
    set_seed(int(seed))
    built = time.perf_counter()
    model = make_model()
    built = time.perf_counter() - built
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()} if frozen else {}

    def train_on(rows: np.ndarray, desc: str, folder: Optional[str] = None):
        with quiet_datasets():
            subset = add_index(base.select(np.sort(rows)))
        result = train_model(
            model, family, subset, info, one_epoch, accelerator, desc=desc, progress=False, checkpoint_dir=folder
        )
        return subset, result

    _, warm = train_on(warm_rows, "probe warm-up")
    model = warm.model
    timed: Dict[str, List[float]] = {"short": [], "long": [], "eval short": [], "eval long": []}
    saving, prepare = 0.0, 0.0
    for repeat in range(max(int(repeats), 1)):
        for rows, tag in ((short_rows, "short"), (long_rows, "long")):
            priced = tag == "long" and repeat == 0  # one checkpoint save is timed, when the run saves them
            folder = _probe_folder(checkpoint_dir if priced else None, accelerator)
            subset, result = train_on(rows, "probe", folder)
            model = result.model
            _remove_probe_folder(folder, accelerator)
            timed[tag].append(result.loop_seconds - result.checkpoint_seconds)
            saving = max(saving, result.checkpoint_seconds)  # a checkpoint's size does not depend on the rows
            prepare = result.prepare_seconds if tag == "long" else prepare
            t0 = time.perf_counter()
            if evaluate:
                evaluate_accuracy(
                    model,
                    family,
                    subset,
                    info,
                    accelerator,
                    batch_size=batch,
                    desc="probe",
                    num_workers=config.num_workers,
                    progress=False,
                )
            timed["eval " + tag].append(time.perf_counter() - t0)
    if buffers:
        with torch.no_grad():
            for name, b in model.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])
    # The fastest of the repeats: other work on the machine only ever slows a measurement down.
    n_short, n_long = len(short_rows), len(long_rows)
    short_s, long_s = min(timed["short"]), min(timed["long"])
    train, per_epoch = _rate_from_two(short_s, long_s, n_short, n_long)
    evaluated = (
        _rate_from_two(min(timed["eval short"]), min(timed["eval long"]), n_short, n_long)[0] if evaluate else 0.0
    )
    rate = TrainingRate(
        train=train,
        prepare=prepare / max(n_long, 1),
        evaluate=evaluated,
        per_epoch=per_epoch,
        save=saving,
        build=built,
        source=(
            f"probe: {short_s:.2f} s and {long_s:.2f} s for epochs of {n_short} and {n_long} rows"
            + (" spread over the texts' lengths" if any(spread) else "")
            + " after a warm-up batch"
            + (f" (fastest of {int(repeats)})" if repeats > 1 else "")
            + (f", and {saving:.2f} s to save a checkpoint" if saving else "")
        ),
    )
    return rate, time.perf_counter() - start


__all__ = [
    "Candidate",
    "AutoDecision",
    "TrainingRate",
    "CheckPlan",
    "check_selection_budget",
    "budget_reference",
    "spendable_seconds",
    "BUDGET_HEADROOM",
    "plan_check",
    "budget_plan",
    "Precheck",
    "precheck",
    "target_probe_decides",
    "precheck_decision",
    "check_cost",
    "shrink_order",
    "keep_order",
    "over_plan",
    "fallback_decision",
    "pool_sample",
    "probe_training_rate",
    "probe_rows",
    "DEFAULT_SELECTION_BUDGET",
    "MIN_POOL_SHARE",
    "FALLBACK",
    "FALLBACK_RULE",
    "candidates_for",
    "holdout_slice",
    "check_auto",
    "decide",
    "choose_strategy",
    "proxy_trainer",
    "DEFAULT_AUTO_HOLDOUT",
    "DEFAULT_AUTO_SEEDS",
]
