"""Active learning via proxy: the selection loop and :func:`active_learn` (the CLI is :mod:`svp_hf.active`).

A seeded random initial set is labelled (round 0). Each round trains the *selector* on the labelled set (from scratch,
or warm-started), scores the unlabelled pool with `method` and labels the top of the ranking, until the labelled set
reaches each size in `budgets`; the dataset's own label column is the oracle. The selector is the cheap proxy
(``selector: proxy``), the target itself (``selector: target``, the baseline SVP is measured against) or both loops
side by side from the same initial set (``selector: both``), which reports the data-selection speedup. At the end the
target is trained on each final labelled set and evaluated.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import Dataset

from ..config.arguments import SELECTORS, ActiveArguments, RunArguments, SelectionArguments, role_settings
from ..config.checks import check_schedule
from ..data.columns import DataInfo, inspect_dataset
from ..engine.checkpoint import RESUME_FIX, load_model_weights, load_round, restore_rng_state, save_round, save_weights
from ..engine.scoring import compute_scores, stream_outputs
from ..engine.training import TrainingConfig, evaluate_accuracy, train_model
from ..errors import SVPConfigError
from ..models import ModelFamily, create_model, resolve_family
from ..selection.methods import SelectionMethod, get_method
from ..selection.ranking import select_indices
from ..stages.preflight import check_recipe
from ..stages.proxy import fit_model, labels_of
from ..stages.settings import ActiveSettings, ModelSettings
from ..utils.device import unwrap
from ..utils.log import get_logger
from .labelling import (
    ROUND_COLUMN,
    LabellingState,
    batch_paths,
    batch_rows,
    check_session_dataset,
    check_session_settings,
    checkpoint_path,
    filled_dataset,
    labelled_dataset,
    labelling_dataset,
    pool_dataset,
    start_session,
    warm_start_weights,
    write_batch,
)
from .pool import LabelPool, initial_indices

logger = get_logger(__name__)


@dataclass(frozen=True)
class Selector:
    """The model that selects in one loop (or the target, trained on the labelled sets), and how it is trained.

    Args:
        role: ``"proxy"`` or ``"target"``.
        settings: Its model and training (see :func:`svp_hf.stages.roles.selector_models`).
        family: The family of its model (how its inputs are prepared and its outputs read).
    """

    role: str
    settings: ModelSettings
    family: ModelFamily

    @classmethod
    def of(cls, role: str, settings: ModelSettings) -> "Selector":
        """`role`'s selector, its family resolved from the model's name."""
        return cls(role, settings, resolve_family(settings.name))

    @property
    def model(self) -> str:
        """The model's name."""
        return self.settings.name

    @property
    def config(self) -> TrainingConfig:
        """How it is trained each round."""
        return self.settings.training

    @property
    def pretrained(self) -> bool:
        return self.settings.pretrained

    @property
    def trust_remote_code(self) -> bool:
        return self.settings.trust_remote_code

    def create(self, info: DataInfo, *, pretrained: Optional[bool] = None):
        """A new model (from pretrained weights when the settings say so, unless `pretrained` says otherwise)."""
        pretrained = self.pretrained if pretrained is None else pretrained
        return create_model(self.model, info, pretrained=pretrained, trust_remote_code=self.trust_remote_code)


@dataclass(frozen=True)
class Loop:
    """What every round of one selection loop shares: who selects, the settings, the pool's data and where it runs.

    Args:
        selector: The model that selects.
        settings: What the rounds read.
        dataset: The pool (:func:`svp_hf.active.labelling.pool_dataset`): row ``i`` is pool index ``i``.
        info: The pool's columns and classes.
        accelerator: Where the selector trains and scores.
        eval_dataset: Rows to evaluate the selector on each round (with ``eval_each_round``).
    """

    selector: Selector
    settings: ActiveSettings
    dataset: Dataset
    info: DataInfo
    accelerator: Accelerator
    eval_dataset: Optional[Dataset] = None

    @property
    def method(self) -> SelectionMethod:
        return active_method(self.settings.method)


@dataclass
class SelectorRun:
    """One selection loop's outcome: the final pool, its rounds, and the target trained on its labelled set."""

    role: str
    model: str
    pool: LabelPool
    labelled: Dataset
    rounds: List[Dict[str, Any]]
    target_accuracy: Optional[float] = None
    target_training_seconds: Optional[float] = None
    target_history: Optional[List[Dict[str, float]]] = None

    @property
    def selection_seconds(self) -> float:
        """Data-selection time: every round's selector training plus scoring (evaluation not counted)."""
        return float(sum(r["selection_seconds"] for r in self.rounds))


@dataclass
class ActiveResult:
    """What :func:`active_learn` returns: one :class:`SelectorRun` per selector that ran, keyed by role."""

    runs: Dict[str, SelectorRun]
    info: DataInfo
    timings: Dict[str, float] = field(default_factory=dict)

    @property
    def labelled(self) -> Dataset:
        """The labelled set of the first loop (the proxy's when it ran)."""
        return next(iter(self.runs.values())).labelled

    @property
    def speedup(self) -> Optional[float]:
        """Target selection seconds / proxy selection seconds, when both loops ran."""
        if not {"proxy", "target"} <= set(self.runs):
            return None
        return self.runs["target"].selection_seconds / max(self.runs["proxy"].selection_seconds, 1e-9)


# --- checks: everything that needs no training ----------------------------------------------------------------------


def active_method(name: str) -> SelectionMethod:
    """The selection method `name`, if it can rank examples whose labels are not known yet."""
    method = get_method(name)
    if method.needs == "training":
        raise SVPConfigError(
            f"method {name!r} needs the training history of the examples it ranks, and the unlabelled pool is never "
            "trained on: it cannot be used for active learning"
        )
    if method.uses_labels:
        raise SVPConfigError(
            f"method {name!r} reads the labels of the examples it ranks, which the unlabelled pool does not have yet: "
            "it cannot be used for active learning"
        )
    return method


def build_selectors(models: Mapping[str, ModelSettings]) -> Dict[str, Selector]:
    """The :class:`Selector` of every role in `models` (:func:`svp_hf.stages.roles.selector_models`), checked to read one
    modality."""
    selectors = {role: Selector.of(role, settings) for role, settings in models.items()}
    if len({s.family.modality for s in selectors.values()}) > 1:
        proxy, target = selectors["proxy"], selectors["target"]
        raise SVPConfigError(
            f"proxy {proxy.model!r} reads {proxy.family.modality} data but target {target.model!r} "
            f"reads {target.family.modality}"
        )
    return selectors


# --- one selection loop ---------------------------------------------------------------------------------------------


def acquire(loop: Loop, model, pool: LabelPool, n: int, *, seed: int, desc: str):
    """The `n` pool indices the loop's method labels next, and their scores.

    Methods with a batch acquisition (k-centers) pick from the whole pool's embeddings given the labelled set; the
    others score the unlabelled examples, streamed in batches, and take the top of the ranking.
    """
    method, family, batch_size = loop.method, loop.selector.family, loop.selector.config.batch_size
    chunk_size = loop.settings.kcenter_chunk_size
    if method.acquire is not None:
        _, embeddings = stream_outputs(
            model,
            family,
            loop.dataset,
            loop.info,
            loop.accelerator,
            [],
            need_embeddings=True,
            batch_size=batch_size,
            desc=desc,
        )
        return method.acquire(embeddings, pool.labelled, n, seed=seed, chunk_size=chunk_size)
    unlabelled = pool.unlabelled
    scores = compute_scores(
        model,
        family,
        loop.dataset.select(unlabelled),
        loop.info,
        [method],
        loop.accelerator,
        batch_size=batch_size,
        seed=seed,
        kcenter_chunk_size=chunk_size,
        desc=desc,
    )[method.name]
    positions = select_indices(scores, n, descending=method.descending, seed=seed)
    return unlabelled[positions], scores[positions]


def selection_round(
    loop: Loop,
    pool: LabelPool,
    round_: int,
    n: int,
    *,
    model=None,
    candidates: Optional[LabelPool] = None,
    name: Optional[str] = None,
):
    """One round, shared by the simulated loop and the labelling mode: train the loop's selector on `pool`'s labelled
    rows (a fresh model unless `model` is given and ``warm_start``), then pick the `n` rows to label next among the
    rows `candidates` (default `pool`) leaves unlabelled. Nothing is labelled here.

    Returns ``(model, picked, scores, record)``: the trained selector, the picked pool indices, their scores and the
    round's record (sizes, seconds, selector accuracy when ``eval_each_round``).
    """
    selector, settings, labelled = loop.selector, loop.settings, pool.labelled
    if model is None or not settings.warm_start:
        set_seed(settings.seed)
        model = selector.create(loop.info)
    name = name or f"{selector.role} {selector.model} round {round_}"
    trained = train_model(
        model, selector.family, loop.dataset.select(labelled), loop.info, selector.config, loop.accelerator, desc=name
    )
    model = trained.model
    start = time.perf_counter()
    picked, scores = acquire(
        loop,
        model,
        candidates if candidates is not None else pool,
        n,
        seed=settings.seed + round_,
        desc=f"{name}: scoring",
    )
    scoring_seconds = time.perf_counter() - start
    accuracy = None
    if settings.eval_each_round and loop.eval_dataset is not None:
        accuracy = evaluate_accuracy(
            model,
            selector.family,
            loop.eval_dataset,
            loop.info,
            loop.accelerator,
            batch_size=selector.config.batch_size,
            desc=f"{name}: evaluate",
        )
    record = {
        "round": round_,
        "train_size": len(labelled),
        "labelled_size": len(labelled) + len(picked),
        "n_selected": len(picked),
        "training_seconds": trained.seconds,
        "scoring_seconds": scoring_seconds,
        "selection_seconds": trained.seconds + scoring_seconds,
        "accuracy": accuracy,
    }
    return model, np.asarray(picked, dtype=np.int64), np.asarray(scores, dtype=np.float64), record


def selection_loop(
    loop: Loop, pool: LabelPool, budgets: Sequence[int], checkpoint_dir: Optional[str] = None
) -> List[Dict[str, Any]]:
    """Grow `pool`'s labelled set to each size in `budgets`, the loop's selector choosing and the dataset's labels
    answering; returns one record per round.

    With `checkpoint_dir`, every finished round is saved there (:func:`svp_hf.engine.checkpoint.save_round`) and a later call
    with the same settings continues after the last saved round, with the same result."""
    selector, warm_start = loop.selector, loop.settings.warm_start
    rounds, model = [], None
    done, arrays, saved, weights = load_round(checkpoint_dir)
    if done:
        pool.restore(arrays["rounds"], arrays["scores"])
        rounds = list(saved)
        if weights is not None:  # warm start: the selector as the saved round left it, and the generators too
            model = load_model_weights(
                selector.create(loop.info, pretrained=False),
                weights,
                what="the active-learning checkpoint",
                fix=RESUME_FIX,
            )
            restore_rng_state(weights)
        logger.info(f"{selector.role}: resuming after round {done} of {len(budgets)} ({pool.n_labelled} labelled)")
    for round_, budget in enumerate(budgets, start=1):
        if round_ <= done:
            continue
        name = f"{selector.role} {selector.model} round {round_}/{len(budgets)}"
        n = budget - pool.n_labelled
        model, picked, scores, record = selection_round(loop, pool, round_, n, model=model, name=name)
        pool.label(picked, round_, scores)
        rounds.append(record)
        if checkpoint_dir:
            save_round(
                loop.accelerator,
                checkpoint_dir,
                round_,
                {"rounds": pool.rounds(), "scores": pool.scores()},
                rounds,
                model=model if warm_start else None,
            )
        logger.info(f"{name}: labelled {pool.n_labelled} (+{len(picked)}), selector accuracy {record['accuracy']}")
    return rounds


def train_target(
    target: Selector,
    runs: Iterable[SelectorRun],
    info: DataInfo,
    accelerator: Accelerator,
    *,
    seed: int,
    eval_dataset: Optional[Dataset] = None,
    checkpoint_dir: Optional[str] = None,
) -> None:
    """Train `target` from scratch (seeded with `seed`) on each run's labelled set and evaluate it on `eval_dataset`
    (when given); the accuracy, seconds and history go into each :class:`SelectorRun`. With `checkpoint_dir`, each
    training is checkpointed under ``checkpoint_dir/target/<role>``."""
    for run in runs:
        folder = os.path.join(checkpoint_dir, "target", run.role) if checkpoint_dir else None
        result, run.target_accuracy = fit_model(
            target.settings,
            run.labelled,
            info,
            accelerator,
            seed=seed,
            evaluation=eval_dataset,
            checkpoint_dir=folder,
            desc=f"target {target.model} on the {run.role}-selected set",
        )
        run.target_training_seconds, run.target_history = result.seconds, result.history


def run_active_learning(
    dataset: Dataset,
    settings: ActiveSettings,
    selectors: Mapping[str, Selector],
    *,
    info: DataInfo,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
    checkpoint_dir: Optional[str] = None,
) -> ActiveResult:
    """Run every loop `settings.selector` asks for from one initial set, then train the target (the selector of role
    ``"target"``, when `selectors` has one) on each labelled set.

    `dataset` must have passed :func:`inspect_dataset` and the recipe its checks (:func:`check_active_arguments`);
    the schedule is checked against the pool here, before any training. With `checkpoint_dir`, each loop's rounds and
    the target's epochs are checkpointed there, and a call with the same settings resumes after them.
    """
    start = time.perf_counter()
    if settings.eval_each_round and eval_dataset is None:
        raise SVPConfigError("eval_each_round needs an evaluation split (eval_split / eval_dataset)")
    budgets = check_schedule(len(dataset), settings.initial_size, settings.budgets)
    dataset = pool_dataset(dataset)
    initial = LabelPool.from_initial(
        len(dataset),
        settings.initial_size,
        seed=settings.seed,
        labels=labels_of(dataset, info),
        class_balanced=settings.initial_class_balanced,
    )

    runs: Dict[str, SelectorRun] = {}
    for role in settings.loops:
        loop = Loop(selectors[role], settings, dataset, info, accelerator, eval_dataset)
        pool = initial.copy()
        folder = os.path.join(checkpoint_dir, "active", role) if checkpoint_dir else None
        rounds = selection_loop(loop, pool, budgets, checkpoint_dir=folder)
        runs[role] = SelectorRun(role, loop.selector.model, pool, labelled_dataset(dataset, pool), rounds)

    if "target" in selectors:
        train_target(
            selectors["target"],
            runs.values(),
            info,
            accelerator,
            seed=settings.seed,
            eval_dataset=eval_dataset,
            checkpoint_dir=checkpoint_dir,
        )
    return ActiveResult(runs, info, {"total": time.perf_counter() - start})


# --- the labelling mode: one round of a session with real labellers -----------------------------------------------------


def labelling_selector(selectors: Mapping[str, Selector], settings: ActiveSettings) -> Selector:
    """The model that selects in a labelling session: the proxy (also with ``selector: both``, which compares two
    loops and needs an oracle), or the target with ``selector: target``."""
    return selectors[settings.loops[0]]


def plan_round(state: LabellingState, settings: ActiveSettings) -> Tuple[int, int]:
    """The session's next round and how many rows it asks for: the `initial_size` seeded random rows when nothing is
    labelled yet (the simulated loop's initial set), else what `budgets` gives for the round (as in the simulation;
    rows asked earlier and not answered count as asked and are not asked again). Raises :class:`SVPConfigError`
    when no round can run, before anything is trained or written."""
    round_, budgets = state.next_round, list(settings.budgets)
    if round_ == 0:
        if settings.initial_class_balanced:
            raise SVPConfigError("initial_class_balanced needs the labels of the pool; no row is labelled yet")
        if settings.initial_size >= state.pool_size:
            raise SVPConfigError(
                f"initial_size ({settings.initial_size}) must be smaller than the pool ({state.pool_size} rows)"
            )
        return round_, int(settings.initial_size)
    if round_ > len(budgets):
        raise SVPConfigError(
            f"every round of budgets {budgets} has been asked for: add a larger budget to ask for more rows, or "
            "finish (train the target on the labelled set)"
        )
    pending = state.pending
    n = budgets[round_ - 1] - state.n_labelled - len(pending)
    if n < 1:
        raise SVPConfigError(
            f"round {round_}'s budget, {budgets[round_ - 1]} rows, is reached already ({state.n_labelled} labelled, "
            f"{len(pending)} asked and not answered yet): raise budgets"
        )
    if state.n_labelled == 0:
        raise SVPConfigError("no row is labelled yet, so no selector can be trained: return labels first (labels_from)")
    left = state.pool_size - state.n_labelled - len(pending)
    if n > left:
        raise SVPConfigError(f"round {round_} would ask for {n} rows but only {left} are left to ask for")
    return round_, n


def check_new_session(
    state: LabellingState,
    settings: ActiveSettings,
    *,
    labels_from: Optional[Sequence[str]] = None,
    finish: bool = False,
) -> None:
    """Pre-flight of a new session's first step, so that a session that cannot start leaves nothing behind: there is
    no batch to return labels for yet (`labels_from` must be empty), and, unless it is to `finish`, the first round
    must be able to run (see :func:`plan_round`)."""
    if labels_from:
        raise SVPConfigError(
            "labels_from: this labelling session is new and has asked for no rows yet, so there are no labels to "
            "return; run without labels_from to ask for the first batch"
        )
    if not finish:
        plan_round(state, settings)


def warm_start_model(selector: Selector, settings: ActiveSettings, info: DataInfo, output_dir: str, round_: int):
    """`selector` as the session's previous round left it (its generators restored too), or ``None`` without
    ``warm_start`` or a previous round's checkpoint."""
    previous = warm_start_weights(output_dir, round_ - 1) if settings.warm_start else None
    if previous is None:
        return None
    set_seed(settings.seed)
    model = selector.create(info, pretrained=False)
    fix = f"remove {os.path.dirname(previous)!r} to train round {round_}'s selector from scratch"
    model = load_model_weights(model, previous, what="the session's warm-start checkpoint", fix=fix)
    restore_rng_state(previous, fix)  # as if the previous round had just ended in this process
    return model


def labelling_round(
    dataset: Dataset,
    info: DataInfo,
    state: LabellingState,
    output_dir: str,
    selector: Selector,
    settings: ActiveSettings,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
) -> Tuple[int, Dataset, Dict[str, str]]:
    """Ask for the session's next batch (see :func:`plan_round`): the seeded random initial set, or one
    :func:`selection_round` of `selector` trained on the labelled rows. Writes the batch under
    ``output_dir/to_label/`` and then the state; returns the round, its rows and paths.
    """
    round_, n = plan_round(state, settings)
    budgets = list(settings.budgets)
    record, scores = None, None
    if round_ == 0:
        picked = initial_indices(state.pool_size, n, seed=settings.seed)
    else:
        pool = state.pool()
        candidates = state.pool(with_pending=True) if len(state.pending) else None
        model = warm_start_model(selector, settings, info, output_dir, round_)
        loop = Loop(selector, settings, pool_dataset(filled_dataset(dataset, state)), info, accelerator, eval_dataset)
        name = f"{selector.role} {selector.model} round {round_}/{len(budgets)}"
        model, picked, scores, record = selection_round(
            loop, pool, round_, n, model=model, candidates=candidates, name=name
        )
        record["selector"], record["method"], record["budget"] = selector.model, settings.method, budgets[round_ - 1]
        if settings.warm_start and accelerator.is_main_process:
            save_weights(unwrap(accelerator, model), checkpoint_path(output_dir, round_))
    rows = batch_rows(dataset, picked, round_, scores)
    paths = batch_paths(output_dir, round_)
    if accelerator.is_main_process:
        paths = write_batch(output_dir, rows, round_, state)
    state.batches.append(
        {
            "round": round_,
            "ids": [int(i) for i in picked],
            "scores": None if scores is None else [None if np.isnan(s) else float(s) for s in scores],
            "given": False,
            "record": record,
            "asked_at": time.time(),
        }
    )
    if accelerator.is_main_process:
        state.save(output_dir)
    accelerator.wait_for_everyone()
    return round_, rows, paths


def open_session(
    dataset: Dataset,
    output_dir: str,
    modality: str,
    *,
    columns: Dict[str, Any],
    class_names: Optional[Sequence[str]] = None,
    labelled: Optional[Dataset] = None,
    settings: Optional[Dict[str, Any]] = None,
) -> Tuple[Dataset, DataInfo, LabellingState]:
    """The pool of a labelling session (see :func:`svp_hf.active.labelling.labelling_dataset`), its columns inspected, and
    the session's state: read back from `output_dir` (checked to be over the same pool) or started anew."""
    dataset, label_column = labelling_dataset(dataset, columns.get("label_column"), class_names, labelled=labelled)
    info = inspect_dataset(dataset, modality, **{**columns, "label_column": label_column}, missing_labels=True)
    names = list(info.class_names)
    if LabellingState.exists(output_dir):
        state = LabellingState.load(output_dir)
        check_session_dataset(state, dataset, label_column, names)
        check_session_settings(state, dict(settings or {}), output_dir)
    else:
        state = start_session(dataset, label_column, names, dict(settings or {}))
    return dataset, info, state


def pending_rows(dataset: Dataset, state: LabellingState) -> Dataset:
    """The rows asked for and not answered yet, batch by batch (the rows to label, when no round is due)."""
    from datasets import concatenate_datasets

    labelled = set(state.labels)
    parts = []
    for batch in state.batches:
        keep = [j for j, i in enumerate(batch["ids"]) if int(i) not in labelled]
        if keep and not batch.get("given"):
            scores = batch.get("scores")
            parts.append(
                batch_rows(
                    dataset,
                    [batch["ids"][j] for j in keep],
                    batch["round"],
                    None if scores is None else [scores[j] if scores[j] is not None else np.nan for j in keep],
                )
            )
    return concatenate_datasets(parts) if parts else batch_rows(dataset, [], state.next_round, None)


# --- the recipe's check and record, at the front ends' boundary ---------------------------------------------------------
# The front ends (svp_hf.active, the job; svp_hf.api) both run these on the recipe's dataclasses before translating
# them (svp_hf.stages.roles.active_settings, selector_models); nothing above reads a recipe.


def check_active_arguments(args: SelectionArguments, run_args: RunArguments, active: ActiveArguments) -> None:
    """Every check of an active-learning recipe that needs no data: keys of the core-set job it cannot honour, a
    method that can rank unlabelled rows, a target for the selectors that need one, and the registry names."""
    if args.score_methods:
        raise SVPConfigError("score_methods is a core-set key: active learning scores the pool with `method` only")
    if args.class_balanced:
        raise SVPConfigError(
            "class_balanced would read the labels of the unlabelled pool; use initial_class_balanced to balance the "
            "initial labelled set"
        )
    active_method(args.method)
    if "target" in SELECTORS[active.selector] and not run_args.target:
        raise SVPConfigError(f"selector {active.selector!r} needs a target model: set target")
    check_recipe(args, run_args)


def session_settings(args: SelectionArguments, run_args: RunArguments, active: ActiveArguments) -> Dict[str, Any]:
    """What a labelling session records of its settings, by recipe key: those that decide what the session asks for
    (the selector, its model and training, `method`, `seed`, `warm_start`: fixed for the session), `budgets` (the
    sizes of the rounds asked stay; later ones may be added) and `initial_size` (round 0's, when nothing was
    labelled)."""
    role = SELECTORS[active.selector][0]
    training = role_settings(role, args, run_args)
    prefix = "" if role == "proxy" else "target_"
    keys = {"model": role, "epochs": f"{role}_epochs"}
    return {
        "selector": active.selector,
        "method": args.method,
        "seed": int(args.seed),
        "warm_start": bool(active.warm_start),
        **{keys.get(k, prefix + k): v for k, v in training.items()},
        "initial_size": active.initial_size,
        "budgets": list(active.budgets),
    }


__all__ = [
    "selection_round",
    "plan_round",
    "check_new_session",
    "labelling_round",
    "ActiveResult",
    "SelectorRun",
    "Selector",
    "SELECTORS",
    "ROUND_COLUMN",
    "active_method",
    "check_active_arguments",
    "session_settings",
    "build_selectors",
    "Loop",
    "selection_loop",
    "train_target",
    "run_active_learning",
]
