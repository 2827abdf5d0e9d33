"""The selection pipeline, written once: a :class:`Pruner` built from typed stage settings (:mod:`svp_hf.stages.settings`)
runs ``prepare`` -> ``score`` -> ``choose_strategy`` -> ``select`` on one dataset and returns a :class:`PruneResult`
(the scores, the kept rows, the strategy decision, the proxy's quality, the stage timings and the end-to-end account)
with one :meth:`PruneResult.to_metrics`.

Every front end drives it: the Python API (``svp_hf.score``, ``select``, ``prune``, ``choose``), the core-set job
(the job frame, this pipeline and :func:`train_target`) and its streaming path; nothing here reads a recipe.

    pruner = Pruner(proxy, scoring, selection, target=target).prepare(train, evaluation)
    pruner.score(); pruner.choose_strategy()
    result = pruner.select()
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from datasets import Dataset, IterableDataset

from ..account import format_seconds, run_account
from ..data.columns import INDEX_COLUMN, DataInfo, check_same_columns, column_values, keep_previous_columns
from ..engine.training import make_accelerator
from ..errors import SVPConfigError
from ..models import ModelFamily, create_model, resolve_family
from ..publish.report import score_statistics
from ..record import not_scored, scores_source
from ..selection.methods import get_method, resolve_methods, training_signals
from ..selection.ranking import n_to_keep
from ..selection.strategies import AUTO, check_strategy
from ..utils.log import get_logger
from .auto import (
    AutoDecision,
    CheckPlan,
    Precheck,
    TrainingRate,
    budget_plan,
    check_auto,
    precheck,
    precheck_decision,
    probe_training_rate,
    target_probe_decides,
)
from .proxy import (
    FreshModel,
    ScoringRun,
    auto_check,
    build_model,
    check_proxy_checkpoint,
    fit_model,
    labels_of,
    prepare_inputs,
    scores_dataset,
    selected_indices,
    subset_with_scores,
    train_and_score,
    weights_digest,
)
from .roles import training_record
from .settings import ModelSettings, ScoringSettings, SelectionSettings

logger = get_logger(__name__)

Resumable = Callable[[str, Callable[[], Dict[str, Any]]], Dict[str, Any]]


def per_class_counts(labels: np.ndarray, names: Optional[Sequence[str]]) -> Dict[str, int]:
    """Rows per class, by class name when the classes have names."""
    values, counts = np.unique(labels, return_counts=True)
    return {(names[v] if names else str(v)): int(c) for v, c in zip(values.tolist(), counts.tolist())}


@dataclass
class TargetOutcome:
    """The target trained on the kept rows: its seconds, accuracy (on the evaluation data) and history."""

    settings: ModelSettings
    seconds: float
    accuracy: Optional[float] = None
    history: List[Dict[str, float]] = field(default_factory=list)
    checkpoint_seconds: float = 0.0  # of `seconds`: saving its checkpoints


@dataclass
class PruneResult:
    """What a :class:`Pruner` produced; :meth:`to_metrics` is its record in ``metrics.json`` (and what
    ``prune(..., return_metrics=True)`` returns)."""

    run: ScoringRun
    keep: np.ndarray
    selected: Optional[Dataset]
    selection: SelectionSettings
    proxy: ModelSettings
    strategy: str
    coverage_beta: Optional[float]
    decision: Optional[AutoDecision]
    timings: Dict[str, float]
    proxy_epochs: Optional[int]
    scored_methods: List[str] = field(default_factory=list)
    target: Optional[TargetOutcome] = None
    target_model: Optional[FreshModel] = field(default=None, repr=False)  # see take_target_model()

    def take_target_model(self, settings: ModelSettings, info: DataInfo, seed: int) -> Optional[FreshModel]:
        """The untrained target that ``auto``'s pre-check built and probed, left as built, when it kept random and it
        is the model `settings`, `info` and `seed` build: the target's training starts from it
        (:func:`svp_hf.stages.proxy.seeded_model`) instead of building the same model again. Building it is then the
        target's cost, not selection's: its seconds leave ``timings["precheck"]`` for ``timings["target_build"]``,
        which the account does not count (no training counts the building of its model). ``None`` when there is
        none: taken already, a pre-check read back on resume, a proxy that trained (its memory is not held through
        the proxy's training), the probe moved a weight, or another model or seed is trained."""
        fresh = self.target_model
        if fresh is None or not fresh.builds(settings, info, seed):
            return None
        self.target_model = None
        self.timings["precheck"] = max(self.timings.get("precheck", 0.0) - fresh.seconds, 0.0)
        self.timings["target_build"] = fresh.seconds
        return fresh

    @property
    def scores(self) -> Dataset:
        return self.run.scores

    @property
    def scored(self) -> bool:
        """Whether the selection's method was scored: false when ``auto``'s pre-check kept random without training
        the proxy (the score table then holds ``svp_index`` and ``label`` only)."""
        return self.selection.method in self.run.scores.column_names

    @property
    def n_total(self) -> int:
        return len(self.run.scores)

    @property
    def n_selected(self) -> int:
        return int(len(self.keep))

    def account(self) -> Optional[Dict[str, Any]]:
        """The end-to-end account (:func:`svp_hf.account.run_account`): relative to the target when one was trained
        on the kept rows, else to the proxy's own training; ``None`` without either."""
        timings = dict(self.timings)
        if self.target is not None:
            timings["target_training"] = self.target.seconds
        return run_account(
            timings,
            n_total=self.n_total,
            n_kept=self.n_selected,
            target_epochs=self.target.settings.epochs if self.target is not None else None,
            selection_budget=self.selection.auto.budget,
            target_checkpoint_seconds=self.target.checkpoint_seconds if self.target is not None else 0.0,
        )

    def to_metrics(self) -> Dict[str, Any]:
        """The selection's record: what was scored and kept, how, the proxy's quality, timings and the account."""
        labels = column_values(self.run.scores, "label", np.int64)
        order = np.argsort(column_values(self.run.scores, INDEX_COLUMN, np.int64))
        names = self.run.info.class_names
        selection, target = self.selection, self.target
        return {
            "n_total": self.n_total,
            "n_selected": self.n_selected,
            "method": selection.method,
            "scored_methods": list(self.scored_methods),
            "fraction": selection.fraction,
            "strategy": selection.strategy,
            "selected_strategy": self.strategy,
            "coverage_beta": self.coverage_beta,
            "auto": self.decision.as_dict() if self.decision is not None else None,
            "scores_source": scores_source(self.run.scores)
            if self.scored
            else not_scored(((self.decision.budget or {}) if self.decision else {}).get("reason", "no score computed")),
            "selection_budget": selection.auto.budget,
            "class_balanced": selection.class_balanced,
            "seed": selection.seed,
            "proxy": self.proxy.name,
            "proxy_epochs": self.proxy_epochs,
            "proxy_checkpoint": self.proxy.checkpoint,
            "proxy_training": training_record(self.proxy.training, pretrained=self.proxy.pretrained),
            "proxy_accuracy": self.run.proxy_accuracy,
            "proxy_history": list(self.run.history),
            **self.run.quality,
            "num_classes": self.run.info.num_classes,
            "target": target.settings.name if target else None,
            "target_epochs": target.settings.epochs if target else None,
            "target_training": training_record(target.settings.training, pretrained=target.settings.pretrained)
            if target
            else None,
            "target_accuracy": target.accuracy if target else None,
            "target_history": target.history if target else None,
            "score_statistics": score_statistics(self.run.scores),
            "selected_per_class": per_class_counts(labels[order][self.keep], names),
            "total_per_class": per_class_counts(labels, names),
            "timings": {**self.timings, **({"target_training": target.seconds} if target else {})},
            "end_to_end": self.account(),
        }


# The target's probe sets the budget: measured twice, its faster reading kept, so that a probe slowed by other work on
# the machine does not inflate the budget (a probe 8x too slow under load once let auto's check run 0.56 of the
# full-data training).
TARGET_PROBE_REPEATS = 2


class Pruner:
    """Core-set selection via proxy on one dataset, stage by stage.

    Args:
        proxy: The proxy model and its training (or its ``checkpoint``).
        scoring: Which methods score the rows, and how.
        selection: How the scores become the kept rows (``auto``'s check and budget included).
        target: The model the kept rows are for, when it is trained after selection: ``auto``'s check then trains
            as long as it will, and its budget is a share of the target's full-data training (measured on a probe);
            a proxy trained in this run is first priced against that budget (:meth:`precheck`).
        accelerator: Where everything runs (default: a new one).
        checkpoint_dir: Checkpoint the proxy and the score shards here, so that a rerun resumes.
        keep_checkpoints: Whether they outlive the run (false: the caller deletes them once it ends, so the proxy's
            final weights are saved only when that costs at most about a tenth of the training it protects).
        resumable: ``resumable(name, compute)`` returns a saved result or computes and saves it (a job's
            :meth:`svp_hf.jobs.pipeline.JobRun.resumable`): ``auto``'s pre-check and decision are not computed again
            on resume.
    """

    def __init__(
        self,
        proxy: ModelSettings,
        scoring: ScoringSettings,
        selection: SelectionSettings,
        *,
        target: Optional[ModelSettings] = None,
        accelerator: Optional[Accelerator] = None,
        checkpoint_dir: Optional[str] = None,
        keep_checkpoints: bool = True,
        resumable: Optional[Resumable] = None,
    ):
        self.proxy, self.scoring, self.selection, self.target = proxy, scoring, selection, target
        self._accelerator = accelerator
        self.checkpoint_dir = checkpoint_dir
        self.keep_checkpoints = keep_checkpoints
        self._resumable = resumable
        self.dataset: Union[Dataset, IterableDataset, None] = None
        self.eval_dataset: Optional[Dataset] = None
        self.info: Optional[DataInfo] = None
        self.family: Optional[ModelFamily] = None
        self.proxy_epochs: Optional[int] = proxy.epochs if not proxy.checkpoint else None
        self.run: Optional[ScoringRun] = None
        self.decision: Optional[AutoDecision] = None
        self.timings: Dict[str, float] = {}
        self.selecting = True
        self.prechecked: Optional[Precheck] = None
        self._target_rate: Optional[TrainingRate] = None  # the pre-check's probe of the target, reused by plan()
        self._fresh_target: Optional[FreshModel] = None  # the target the pre-check built, for the target's training

    @property
    def accelerator(self) -> Accelerator:
        """The run's Accelerator (made on first use when none was given)."""
        if self._accelerator is None:
            self._accelerator = make_accelerator()
        return self._accelerator

    @property
    def streaming(self) -> bool:
        return isinstance(self.dataset, IterableDataset)

    def prepare(
        self,
        dataset: Union[Dataset, IterableDataset],
        eval_dataset: Optional[Dataset] = None,
        *,
        columns: Optional[Dict[str, Any]] = None,
        info: Optional[DataInfo] = None,
        selecting: bool = True,
    ) -> "Pruner":
        """Every check that needs no training, on `dataset` (and `eval_dataset`): the columns and the models against
        them (unless the caller inspected them and passes their `info`: the columns to read are `columns`), the
        fraction, method and strategy and ``auto``'s slice (unless `selecting` is false: scoring only), a
        ``proxy_checkpoint``'s weights and signals. Returns the pruner."""
        resolve_methods(self.scoring.methods)
        if selecting:
            get_method(self.selection.method)
            check_strategy(self.selection.strategy)
            if not isinstance(dataset, IterableDataset):
                n_to_keep(self.selection.fraction, len(dataset))
        dataset = keep_previous_columns(dataset)  # row identity is positional: an incoming svp_index is data
        if info is None:
            self.family, info = prepare_inputs(
                dataset, self.proxy.name, columns or {}, trust_remote_code=self.proxy.trust_remote_code
            )
            if eval_dataset is not None:
                check_same_columns(eval_dataset, info)
        else:
            self.family = resolve_family(self.proxy.name)
        self.dataset, self.eval_dataset, self.info = dataset, eval_dataset, info
        self.selecting = selecting
        check_modalities(self.proxy, self.target)
        if selecting:
            self._check_auto()
        if self.proxy.checkpoint:
            signals = training_signals(resolve_methods(self.scoring.methods))
            state = check_proxy_checkpoint(self.proxy, info, signals, None if self.streaming else len(dataset))
            self.proxy_epochs = len(state.get("history", [])) or None  # what the checkpoint trained
        return self

    def _check_auto(self) -> None:
        """``auto``'s own pre-flight: a map-style dataset large enough for its slice."""
        selection = self.selection
        if selection.strategy != AUTO:
            return
        if self.streaming:
            raise SVPConfigError(
                "strategy 'auto' retrains the proxy on candidate subsets: it needs a map-style dataset, not a stream"
            )
        dataset, info, _ = self._data("prepare")
        check_auto(len(dataset), labels_of(dataset, info), selection.fraction, selection.auto.holdout)

    def _data(self, stage: str) -> Tuple[Dataset, DataInfo, ModelFamily]:
        """The prepared dataset (map-style, for the stages that retrain), its info and the proxy's family."""
        if self.dataset is None or self.info is None or self.family is None:
            raise RuntimeError(f"{stage}() needs prepare() first")
        if isinstance(self.dataset, IterableDataset):
            raise SVPConfigError(f"{stage}() needs a map-style dataset, not a stream")
        return self.dataset, self.info, self.family

    def _scored(self, stage: str) -> ScoringRun:
        if self.run is None:
            raise RuntimeError(f"{stage}() needs score() first")
        return self.run

    def score(self) -> ScoringRun:
        """Train the proxy (or load it) and score every row with every method; the proxy is evaluated on the
        evaluation data when given. When :meth:`precheck` finds that selection cannot pay for itself, the proxy is
        not trained: the run's score table holds ``svp_index`` and ``label`` only, and ``auto`` keeps random."""
        if self.dataset is None or self.info is None or self.family is None:
            raise RuntimeError("score() needs prepare() first")
        check = self.precheck()
        if check is not None and not check.fits:
            return self._unscored(check)
        self.run = train_and_score(
            self.dataset,
            self.proxy,
            self.scoring,
            family=self.family,
            info=self.info,
            accelerator=self.accelerator,
            eval_dataset=self.eval_dataset,
            checkpoint_dir=self.checkpoint_dir,
            keep_checkpoints=self.keep_checkpoints,
        )
        self.timings.update(self.run.timings)
        return self.run

    @property
    def unscored(self) -> bool:
        """Whether :meth:`precheck` kept random without training the proxy."""
        return self.prechecked is not None and not self.prechecked.fits

    def precheck(self) -> Optional[Precheck]:
        """Price the proxy before training it (:func:`svp_hf.stages.auto.precheck`): the target and the proxy are probed
        back to back, and the proxy's building, training and scoring on all rows, estimated from its probe, are set
        against ``selection_budget`` x the target's full-data training, estimated from its. When the target's probe
        alone is over that, the proxy is not probed at all (:func:`svp_hf.stages.auto.target_probe_decides`). Only for
        ``auto`` with a budget and a target, when the proxy trains in this run (not for scoring alone, a
        ``proxy_checkpoint`` or scores given); without a target the budget is a share of the proxy's own training, which
        the proxy cannot exceed. The figures are the main process's, saved as a resumable step: a rerun reads them,
        probing nothing.

        Returns:
            The :class:`~svp_hf.stages.auto.Precheck` (its seconds are ``timings["precheck"]``), or ``None`` when
            it does not apply.
        """
        if not self._prechecks():
            return None
        saved = self._resumable("precheck", self._measure) if self._resumable is not None else self._measure()
        check = Precheck(**saved)
        self.prechecked, self._target_rate = check, TrainingRate(**check.target_rate)
        self.timings["precheck"] = check.probe_seconds
        if check.fits:
            self._fresh_target = None  # not held in memory through the proxy's training
            estimate, reference = check.proxy_estimate_seconds or 0.0, check.reference_seconds or 0.0
            logger.info(
                f"auto: pre-check fits: the proxy's training and scoring are estimated at {format_seconds(estimate)} "
                f"(+{format_seconds(check.probe_seconds)} of probes) against the budget's "
                f"{format_seconds(check.budget_seconds)} ({check.budget:g} x {format_seconds(reference)} of the "
                f"target; it plans to spend {format_seconds(check.spendable_seconds or 0.0)} of them)"
            )
        return check

    def _prechecks(self) -> bool:
        selection = self.selection
        return (
            self.selecting
            and selection.strategy == AUTO
            and selection.auto.budget is not None
            and self.target is not None
            and not self.proxy.checkpoint
            and not self.streaming
        )

    def _measure(self) -> Dict[str, Any]:
        """The pre-check's probes and figures, as the main process has them."""
        dataset, _, _ = self._data("precheck")
        budget = self.selection.auto.budget
        assert self.target is not None and budget is not None  # _prechecks() holds
        if same_model(self.proxy, self.target) and self.proxy.epochs >= budget * self.target.epochs:
            # The proxy is the target's own model: its training alone is proxy_epochs / target_epochs of the target's,
            # over the budget whatever the rate, so one probe of the target prices both (a noisy one cannot change it);
            # it evaluates too, so that the proxy's scoring is priced (a forward pass of every row) and recorded.
            target_rate, target_seconds, built = self._probe_target(evaluate=True, repeats=1)
            proxy_rate, proxy_seconds = dataclasses.replace(target_rate, build=built), 0.0
        else:
            target_rate, target_seconds, built = self._probe_target(evaluate=False, repeats=TARGET_PROBE_REPEATS)
            decided = target_probe_decides(
                budget=budget,
                n_rows=len(dataset),
                target_rate=target_rate,
                target_epochs=self.target.epochs,
                probe_seconds=target_seconds,
            )
            # Every process probes the proxy or none does (a probe trains, with collective operations): main decides.
            if self._from_main(decided):
                proxy_rate, proxy_seconds = None, 0.0
            else:
                proxy_rate, proxy_seconds = self._probe(self.proxy)
        check = precheck(
            budget=budget,
            n_rows=len(dataset),
            proxy_rate=proxy_rate,
            proxy_epochs=self.proxy.epochs,
            target_rate=target_rate,
            target_epochs=self.target.epochs,
            probe_seconds=target_seconds + proxy_seconds,
            target_build_seconds=built,
        )
        return self._from_main(check.as_dict())

    def _unscored(self, check: Precheck) -> ScoringRun:
        """The run when the proxy is not trained: a score table of the row identity and the label, no proxy, and
        ``auto``'s decision already made (random, by the pre-check)."""
        dataset, info, family = self._data("score")
        logger.warning(f"auto: {check.reason} (set selection_budget higher or to null, or choose a strategy)")
        self.run = ScoringRun(scores_dataset(dataset, info, {}), info, None, family, model_name=self.proxy.name)
        self.proxy_epochs = None
        self.decision = precheck_decision(check, self.check_epochs())
        return self.run

    def set_scores(self, scores: Dataset) -> ScoringRun:
        """Use `scores` computed before (``svp_hf.score``'s table for this dataset) instead of :meth:`score`."""
        _, info, family = self._data("set_scores")
        self.run = ScoringRun(scores, info, None, family)
        return self.run

    def choose_strategy(self) -> Optional[AutoDecision]:
        """``auto``'s check (``None`` for any other strategy), sized to the selection budget; its seconds (the
        target's probe included) are ``timings["auto"]``."""
        if self.selection.strategy != AUTO:
            return None
        if self.unscored:  # decided by the pre-check, which trained nothing
            return self.decision

        def compute() -> Dict[str, Any]:
            return self._check().as_dict()

        saved = dict(self._resumable("auto", compute) if self._resumable is not None else compute())
        saved.pop("chosen", None)
        self.decision = AutoDecision(**saved)
        self.timings["auto"] = self.decision.seconds
        report_decision(self.decision, self.selection.method)
        return self.decision

    def check_epochs(self) -> int:
        """Epochs of each of ``auto``'s candidates: as long as the model the subset is for trains."""
        auto = self.selection.auto
        return int(auto.epochs or (self.target.epochs if self.target is not None else self.proxy.epochs))

    def _check(self) -> AutoDecision:
        dataset, info, family = self._data("choose_strategy")
        run = self._scored("choose_strategy")
        plan, probe_seconds = self._from_main(self.plan())
        barely = (run.quality or {}).get("barely_beats_chance")
        decision = auto_check(
            dataset,
            run.scores,
            self.selection,
            self.proxy,
            family=family,
            info=info,
            accelerator=self.accelerator,
            epochs=self.check_epochs(),
            eval_batch_size=self.scoring.batch_size,
            plan=plan,
            proxy_barely_beats_chance=barely,
            agree=self._from_main,
        )
        if probe_seconds:
            decision.seconds += probe_seconds
            decision.budget = {**(decision.budget or {}), "probe_seconds": probe_seconds}
        if self.prechecked is not None and decision.budget is not None:
            decision.budget["precheck"] = self.prechecked.as_dict()
        return decision

    def _from_main(self, value: Any) -> Any:
        """`value` as the main process has it: what is decided from measured seconds (the budget's plan, when to
        stop the check) must be the same in every process, or their collective operations would not match."""
        if self.accelerator.num_processes == 1:
            return value
        return broadcast_object_list([value], from_process=0)[0]

    def plan(self) -> Tuple[Optional[CheckPlan], float]:
        """``(plan, probe seconds)``: the check sized to the selection budget (``None`` without one), priced by
        :func:`svp_hf.stages.auto.budget_plan`. With a target, its full-data training is estimated from a probe of a
        few batches (the pre-check's, when it ran); a proxy trained here is priced at its measured seconds, one loaded
        from a checkpoint (or whose scores were given) by a probe. The probe seconds returned are those taken here."""
        budget = self.selection.auto.budget
        if budget is None:
            return None, 0.0
        dataset, info, _ = self._data("plan")
        n = len(dataset)
        target_rate, probe_seconds = self._target_rate, 0.0
        if self.target is not None and target_rate is None:
            target_rate, probe_seconds = self._probe(
                self.target, evaluate=False, repeats=TARGET_PROBE_REPEATS, saves=False
            )
        proxy_seconds = self.timings.get("proxy_training")
        trained = proxy_seconds is not None
        if proxy_seconds is not None:
            proxy_epochs = int(self.proxy.epochs)
            # Of its seconds, building it (as its probe measured, when the pre-check probed it): each candidate of the
            # check builds one too, whatever rows it trains on.
            checked = self.prechecked
            build = (checked.proxy_build_seconds if checked is not None else None) or 0.0
            rate = TrainingRate.measured(
                proxy_seconds,
                n,
                proxy_epochs,
                build_seconds=build,
                source=f"the proxy: {format_seconds(proxy_seconds)} for {n} rows x {proxy_epochs}"
                + (f", {build:.2f} s of it building the model (as its probe did)" if build else ""),
            )
        else:  # the proxy was not trained here (a checkpoint, or scores given): probe it
            proxy_epochs = int(self.proxy_epochs or self.proxy.epochs)
            rate, seconds = self._probe(self.proxy)
            probe_seconds += seconds
        plan = budget_plan(
            budget=budget,
            n_rows=n,
            fraction=self.selection.fraction,
            check_epochs=self.check_epochs(),
            proxy_rate=rate,
            proxy_epochs=proxy_epochs,
            proxy_trained=trained,
            scoring_seconds=self.timings.get("scoring", 0.0),
            target_rate=target_rate,
            target_epochs=self.target.epochs if self.target is not None else None,
            probe_seconds=probe_seconds + self.timings.get("precheck", 0.0),
            holdout=self.selection.auto.holdout,
            seeds=self.selection.auto.seeds,
            coverage_beta=self.selection.coverage_beta,
            num_classes=info.num_classes,
        )
        return plan, probe_seconds

    def _probe_target(self, evaluate: bool, repeats: int) -> Tuple[TrainingRate, float, float]:
        """The pre-check's probe of the target, on a target built as its training would build it and left as built
        (probed at learning rate 0, its buffers restored, its weights checked after), so that the target's training can
        start from it (:meth:`PruneResult.take_target_model`) rather than build it again. Returns the rate,
        the seconds (building and probe) and, of them, the building's."""
        assert self.target is not None
        _, info, _ = self._data("precheck")
        fresh = build_model(self.target, info, self.selection.seed)
        start = time.perf_counter()
        built = weights_digest(fresh.model)
        checking = time.perf_counter() - start
        rate, seconds = self._probe(
            self.target, evaluate=evaluate, repeats=repeats, make_model=lambda: fresh.model, frozen=True, saves=False
        )
        start = time.perf_counter()
        self._fresh_target = fresh if weights_digest(fresh.model) == built else None
        checking += time.perf_counter() - start
        return rate, fresh.seconds + seconds + checking, fresh.seconds

    def _probe(
        self,
        model: ModelSettings,
        evaluate: bool = True,
        repeats: int = 1,
        make_model: Optional[Callable[[], Any]] = None,
        frozen: bool = False,
        saves: bool = True,
    ) -> Tuple[TrainingRate, float]:
        """Probe `model`'s training rate (:func:`svp_hf.stages.auto.probe_training_rate`). With `saves`, where the job
        checkpoints and keeps its checkpoints, one save is timed and priced (the proxy's: its final weights are saved
        however long that takes, and leaving it out would price the proxy low). Where the checkpoints are deleted
        once the run ends, no save is timed: a training then saves only when that costs at most about a tenth of the
        training it protects, which is left unpriced. The target's probes leave it out (`saves` false): timing a large
        model's save can cost more than the rest of the probe (1.5 s for a 2M-row fastText table), and without it the
        target's full-data training is priced a little low, which only makes the budget smaller."""
        dataset, info, _ = self._data("plan")

        def build():
            return create_model(
                model.name, info, pretrained=model.pretrained, trust_remote_code=model.trust_remote_code
            )

        return probe_training_rate(
            make_model or build,
            resolve_family(model.name),
            dataset,
            info,
            model.training,
            self.accelerator,
            seed=self.selection.seed,
            evaluate=evaluate,
            checkpoint_dir=self.checkpoint_dir if saves and self.keep_checkpoints else None,
            repeats=repeats,
            frozen=frozen,
        )

    def select(self) -> PruneResult:
        """Keep the rows the strategy (``auto``'s choice, when it ran) picks from the scores: the result, with the
        kept rows as a dataset (``None`` for a stream, which is never held locally)."""
        run = self._scored("select")
        if self.selection.strategy == AUTO and self.decision is None:
            self.choose_strategy()
        selection, decision = self.selection, self.decision
        strategy = decision.strategy if decision is not None else selection.strategy
        coverage_beta = decision.coverage_beta if decision is not None else selection.coverage_beta
        start = time.perf_counter()
        keep = selected_indices(
            run.scores,
            selection.method,
            selection.fraction,
            strategy=strategy,
            class_balanced=selection.class_balanced,
            seed=selection.seed,
            coverage_beta=coverage_beta,
        )
        selected = None
        if isinstance(self.dataset, Dataset):  # a stream is never held locally
            method = selection.method if selection.method in run.scores.column_names else None  # None: unscored
            selected = subset_with_scores(self.dataset, run.scores, method, keep)
        self.timings["selection"] = time.perf_counter() - start
        return PruneResult(
            run=run,
            keep=keep,
            selected=selected,
            selection=selection,
            proxy=self.proxy,
            strategy=strategy,
            coverage_beta=coverage_beta,
            decision=decision,
            timings=dict(self.timings),
            proxy_epochs=self.proxy_epochs,
            scored_methods=list(self.scoring.methods),
            target_model=self._fresh_target,
        )

    def prune(self) -> PruneResult:
        """:meth:`score`, :meth:`choose_strategy` and :meth:`select`, after :meth:`prepare`."""
        self.score()
        self.choose_strategy()
        return self.select()


def same_model(a: ModelSettings, b: ModelSettings) -> bool:
    """Whether `a` and `b` are one model trained at the same cost per row and epoch (their epochs, learning rates and
    schedules may differ): the proxy is then priced at the target's rate."""
    per_row = ("batch_size", "augment", "channels_last", "num_workers", "optimizer", "torch_compile")
    return (a.name, a.pretrained) == (b.name, b.pretrained) and all(
        getattr(a.training, k, None) == getattr(b.training, k, None) for k in per_row
    )


def check_modalities(proxy: ModelSettings, target: Optional[ModelSettings]) -> None:
    """A clear error when the target reads another kind of data than the proxy."""
    if target is None:
        return
    proxy_family, target_family = resolve_family(proxy.name), resolve_family(target.name)
    if target_family.modality != proxy_family.modality:
        raise SVPConfigError(
            f"proxy {proxy.name!r} reads {proxy_family.modality} data but target {target.name!r} reads "
            f"{target_family.modality}"
        )


def report_decision(decision: AutoDecision, method: str) -> None:
    """One line at WARNING (shown by default) when ``auto`` did not select by `method`'s scores, as a user asking for
    that method would expect: what it chose and why (the margin over random against the spread, or the budget's
    fallback); INFO otherwise."""
    if decision.fallback:
        logger.warning(
            f"strategy auto kept a random subset, not one ranked by {method}: its check did not fit the selection "
            "budget (see metrics['auto']['fallback']; set selection_budget higher or to null, or choose a strategy)"
        )
        return
    random = next((c for c in decision.candidates if c["strategy"] == "random"), None)
    others = [c for c in decision.candidates if c["strategy"] != "random"]
    best = max(others, key=lambda c: c["mean"], default=None)
    if best is None or random is None:
        why = "no candidate but random was trained"
    else:
        why = (
            f"the best other candidate, {best['name']}, scored {best['mean'] - random['mean']:+.4f} against random on "
            f"the held-out slice, with a spread of {decision.spread:.4f}"
        )
    if decision.strategy == "random":
        logger.warning(
            f"strategy auto kept a random subset, not one ranked by {method}: {why} (not above the spread); "
            "choose a strategy (coverage, top) to select by the scores anyway"
        )
    else:
        logger.info(f"strategy auto chose {decision.chosen} over {method}'s scores: {why}")


def train_target(
    result: PruneResult,
    target: ModelSettings,
    *,
    info: DataInfo,
    accelerator: Accelerator,
    evaluation: Optional[Dataset] = None,
    checkpoint_dir: Optional[str] = None,
    seed: int = 0,
    keep_last: bool = True,
) -> TargetOutcome:
    """Train `target` on the kept rows of `result` (evaluated on `evaluation` when given); recorded on the result,
    whose account is then relative to the target. It starts from the target the pre-check built, when that is the
    model `target` and `seed` build (:meth:`PruneResult.take_target_model`)."""
    trained, accuracy = fit_model(
        target,
        result.selected,
        info,
        accelerator,
        seed=seed,
        evaluation=evaluation,
        checkpoint_dir=checkpoint_dir,
        fresh=result.take_target_model(target, info, seed),
        keep_last=keep_last,
    )
    result.target = TargetOutcome(target, trained.seconds, accuracy, trained.history, trained.checkpoint_seconds)
    return result.target


__all__ = [
    "check_modalities",
    "Pruner",
    "PruneResult",
    "TargetOutcome",
    "train_target",
    "report_decision",
    "per_class_counts",
]
