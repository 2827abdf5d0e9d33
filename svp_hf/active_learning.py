"""Active learning via proxy: the selection loop and :func:`active_learn` (the CLI is :mod:`svp_hf.active`).

A seeded random initial set is labelled (round 0). Each round trains the *selector* on the labelled set (from scratch,
or warm-started), scores the unlabelled pool with `method` and labels the top of the ranking, until the labelled set
reaches each size in `budgets`; the dataset's own label column is the oracle. The selector is the cheap proxy
(``selector: proxy``), the target itself (``selector: target``, the baseline SVP is measured against) or both loops
side by side from the same initial set (``selector: both``), which reports the data-selection speedup. At the end the
target is trained on each final labelled set and evaluated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import Dataset, Value

from .api import _split_kwargs, check_optimizers, labels_of, target_training_config, training_config
from .config import ActiveArguments, RunArguments, SelectionArguments
from .data import INDEX_COLUMN, SCORE_COLUMN, DataInfo, check_same_columns, inspect_dataset
from .errors import SVPConfigError
from .methods import SelectionMethod, get_method
from .models import ModelFamily, create_model, resolve_family
from .pool import LabelPool, check_schedule
from .scoring import compute_scores, stream_outputs
from .selection import select_indices
from .training import TrainingConfig, evaluate_accuracy, make_accelerator, train_model

logger = get_logger(__name__)

ROUND_COLUMN = "svp_round"

# Which selection loops each `selector` runs; a loop is named by the role of the model that selects in it.
SELECTORS: Dict[str, tuple] = {"proxy": ("proxy",), "target": ("target",), "both": ("proxy", "target")}

ACTIVE_KEYS = tuple(f.name for f in fields(ActiveArguments))
TARGET_KEYS = ("target_epochs", "target_learning_rate", "target_lr_schedule", "target_optimizer")


@dataclass
class Selector:
    """The model that selects in one loop, and how it is trained each round."""

    role: str
    model: str
    family: ModelFamily
    config: TrainingConfig


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


def check_active_arguments(args: SelectionArguments, run_args: RunArguments, active: ActiveArguments) -> None:
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
    check_optimizers(args, run_args)


def build_selectors(
    args: SelectionArguments, run_args: RunArguments, active: ActiveArguments
) -> Dict[str, Selector]:
    """The model of every loop `active.selector` runs, plus the target (role ``"target"``) when one is set."""
    models = {"proxy": (args.proxy, training_config(args))}
    if run_args.target:
        config = target_training_config(args, run_args)
        models["target"] = (run_args.target, config)
    roles = dict.fromkeys(SELECTORS[active.selector] + (("target",) if run_args.target else ()))
    selectors = {}
    for role in roles:
        name, config = models[role]
        selectors[role] = Selector(role, name, resolve_family(name), config)
    if len({s.family.modality for s in selectors.values()}) > 1:
        raise SVPConfigError(
            f"proxy {args.proxy!r} reads {selectors['proxy'].family.modality} data but target {run_args.target!r} "
            f"reads {selectors['target'].family.modality}"
        )
    return selectors


def pool_dataset(dataset: Dataset) -> Dataset:
    """`dataset` with `svp_index` set to each row's pool index (replacing any earlier one)."""
    dataset = dataset.remove_columns([c for c in (INDEX_COLUMN, SCORE_COLUMN, ROUND_COLUMN) if c in dataset.column_names])
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64))


# --- one selection loop ---------------------------------------------------------------------------------------------


def acquire(
    method: SelectionMethod,
    model,
    selector: Selector,
    dataset: Dataset,
    pool: LabelPool,
    n: int,
    info: DataInfo,
    accelerator: Accelerator,
    *,
    batch_size: int,
    seed: int,
    chunk_size: int,
    desc: str,
):
    """The `n` pool indices `method` labels next, and their scores.

    Methods with a batch acquisition (k-centers) pick from the whole pool's embeddings given the labelled set; the
    others score the unlabelled examples, streamed in batches, and take the top of the ranking.
    """
    if method.acquire is not None:
        _, embeddings = stream_outputs(
            model, selector.family, dataset, info, accelerator, [], need_embeddings=True, batch_size=batch_size, desc=desc
        )
        return method.acquire(embeddings, pool.labelled, n, seed=seed, chunk_size=chunk_size)
    unlabelled = pool.unlabelled
    scores = compute_scores(
        model, selector.family, dataset.select(unlabelled), info, [method], accelerator,
        batch_size=batch_size, seed=seed, kcenter_chunk_size=chunk_size, desc=desc,
    )[method.name]
    positions = select_indices(scores, n, descending=method.descending, seed=seed)
    return unlabelled[positions], scores[positions]


def selection_loop(
    selector: Selector,
    method: SelectionMethod,
    dataset: Dataset,
    info: DataInfo,
    pool: LabelPool,
    budgets: Sequence[int],
    args: SelectionArguments,
    active: ActiveArguments,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
) -> List[Dict[str, Any]]:
    """Grow `pool`'s labelled set to each size in `budgets`, `selector` choosing; returns one record per round."""
    rounds, model = [], None
    for round_, budget in enumerate(budgets, start=1):
        labelled = pool.labelled
        if model is None or not active.warm_start:
            set_seed(int(args.seed))
            model = create_model(selector.model, info, pretrained=bool(args.pretrained), trust_remote_code=bool(args.trust_remote_code))
        name = f"{selector.role} {selector.model} round {round_}/{len(budgets)}"
        trained = train_model(model, selector.family, dataset.select(labelled), info, selector.config, accelerator, desc=name)
        model = trained.model
        start = time.perf_counter()
        picked, scores = acquire(
            method, model, selector, dataset, pool, budget - len(labelled), info, accelerator,
            batch_size=int(args.batch_size), seed=int(args.seed) + round_, chunk_size=int(args.kcenter_chunk_size),
            desc=f"{name}: scoring",
        )
        scoring_seconds = time.perf_counter() - start
        pool.label(picked, round_, scores)
        accuracy = None
        if active.eval_each_round and eval_dataset is not None:
            accuracy = evaluate_accuracy(
                model, selector.family, eval_dataset, info, accelerator, batch_size=int(args.batch_size), desc=f"{name}: evaluate"
            )
        rounds.append(
            {
                "round": round_,
                "train_size": len(labelled),
                "labelled_size": pool.n_labelled,
                "n_selected": len(picked),
                "training_seconds": trained.seconds,
                "scoring_seconds": scoring_seconds,
                "selection_seconds": trained.seconds + scoring_seconds,
                "accuracy": accuracy,
            }
        )
        logger.info(
            f"{name}: labelled {pool.n_labelled} (+{len(picked)}), selector accuracy {accuracy}", main_process_only=True
        )
    return rounds


def labelled_dataset(dataset: Dataset, pool: LabelPool) -> Dataset:
    """The labelled rows in pool order, with `svp_index`, the round each was labelled in and its selection score."""
    indices = pool.labelled
    scores = [None if np.isnan(s) else float(s) for s in pool.scores(indices)]
    labelled = dataset.select(indices)
    labelled = labelled.add_column(ROUND_COLUMN, pool.rounds(indices), feature=Value("int64"))
    return labelled.add_column(SCORE_COLUMN, scores, feature=Value("float64"))


def run_active_learning(
    dataset: Dataset,
    args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    *,
    info: DataInfo,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
) -> ActiveResult:
    """Run every loop `active.selector` asks for from one initial set, then train the target on each labelled set.

    `dataset` must have passed :func:`inspect_dataset`; every other check happens here before any training.
    """
    start = time.perf_counter()
    check_active_arguments(args, run_args, active)
    method = active_method(args.method)
    selectors = build_selectors(args, run_args, active)
    if active.eval_each_round and eval_dataset is None:
        raise SVPConfigError("eval_each_round needs an evaluation split (eval_split / eval_dataset)")
    budgets = check_schedule(len(dataset), active.initial_size, active.budgets)
    dataset = pool_dataset(dataset)
    initial = LabelPool.from_initial(
        len(dataset), active.initial_size, seed=int(args.seed), labels=labels_of(dataset, info),
        class_balanced=bool(active.initial_class_balanced),
    )

    runs: Dict[str, SelectorRun] = {}
    for role in SELECTORS[active.selector]:
        selector = selectors[role]
        pool = initial.copy()
        rounds = selection_loop(selector, method, dataset, info, pool, budgets, args, active, accelerator, eval_dataset)
        runs[role] = SelectorRun(role, selector.model, pool, labelled_dataset(dataset, pool), rounds)

    if "target" in selectors:
        target = selectors["target"]
        for run in runs.values():
            set_seed(int(args.seed))
            model = create_model(target.model, info, pretrained=bool(args.pretrained), trust_remote_code=bool(args.trust_remote_code))
            desc = f"target {target.model} on the {run.role}-selected set"
            result = train_model(model, target.family, run.labelled, info, target.config, accelerator, desc=desc)
            run.target_training_seconds, run.target_history = result.seconds, result.history
            if eval_dataset is not None:
                run.target_accuracy = evaluate_accuracy(
                    result.model, target.family, eval_dataset, info, accelerator,
                    batch_size=int(args.batch_size), desc=f"evaluate {desc}",
                )
    return ActiveResult(runs, info, {"total": time.perf_counter() - start})


# --- Python API ------------------------------------------------------------------------------------------------------


def active_learn(
    dataset: Dataset,
    proxy: str = "resnet20",
    target: Optional[str] = None,
    initial_size: int = 1000,
    budgets: Optional[Sequence[int]] = None,
    method: str = "least_confidence",
    *,
    selector: str = "proxy",
    eval_dataset: Optional[Dataset] = None,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> ActiveResult:
    """Active learning via proxy on `dataset`, whose label column is the oracle.

    Starting from a seeded random labelled set of `initial_size`, each round trains the selector (`proxy`, the
    `target` itself, or both loops side by side with ``selector="both"``) on the labelled set and labels the
    unlabelled examples `method` ranks first, until the labelled set has each size in `budgets`. With a `target`, it
    is then trained on every final labelled set (and evaluated on `eval_dataset`).

    Returns an :class:`ActiveResult`: ``result.labelled`` is the labelled rows with ``svp_index``, ``svp_round``
    (0 = initial set) and ``svp_score``; ``result.runs[role].rounds`` the per-round records; ``result.speedup`` the
    data-selection speedup when both loops ran. Keyword arguments are the recipe's (``proxy_epochs``,
    ``target_epochs``, ``warm_start``, ``eval_each_round``, ``initial_class_balanced``, ``batch_size``, ``seed``,
    ``image_column``, ``label_column``, ...).
    """
    active_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ACTIVE_KEYS}
    target_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in TARGET_KEYS}
    columns, selection = _split_kwargs(kwargs)
    active = ActiveArguments(initial_size=initial_size, budgets=budgets, selector=selector, **active_kwargs)
    args = SelectionArguments(proxy=proxy, method=method, **selection)
    run_args = RunArguments(target=target, **target_kwargs)
    if not isinstance(dataset, Dataset):
        raise SVPConfigError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    check_active_arguments(args, run_args, active)
    family = next(iter(build_selectors(args, run_args, active).values())).family
    info = inspect_dataset(dataset, family.modality, **columns)
    if eval_dataset is not None:
        check_same_columns(eval_dataset, info)
    return run_active_learning(
        dataset, args, run_args, active, info=info, accelerator=accelerator or make_accelerator(), eval_dataset=eval_dataset
    )


__all__ = [
    "active_learn",
    "ActiveResult",
    "SelectorRun",
    "Selector",
    "SELECTORS",
    "ROUND_COLUMN",
    "active_method",
    "check_active_arguments",
    "build_selectors",
    "run_active_learning",
]
