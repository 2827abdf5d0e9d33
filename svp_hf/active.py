"""Active learning via proxy, from Python or a recipe.

    python -m svp_hf.active recipes/active_cifar10.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.active recipes/active_cifar10.yaml

A seeded random initial set is labelled (round 0). Each round trains the *selector* on the labelled set (from scratch,
or warm-started), scores the unlabelled pool with `method` and labels the top of the ranking, until the labelled set
reaches each size in `budgets`; the dataset's own label column is the oracle. The selector is the cheap proxy
(``selector: proxy``), the target itself (``selector: target``, the baseline SVP is measured against) or both loops
side by side from the same initial set (``selector: both``), which reports the data-selection speedup. At the end the
target is trained on each final labelled set and evaluated.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import ClassLabel, Dataset, Features, Value

from . import __version__
from .api import _split_kwargs, labels_of, training_config
from .config import ACTIVE_DATACLASSES, ActiveArguments, DataArguments, RunArguments, SelectionArguments, parse_args
from .data import INDEX_COLUMN, SCORE_COLUMN, DataInfo, check_same_columns, inspect_dataset
from .errors import SVPConfigError
from .methods import SelectionMethod, get_method
from .models import ModelFamily, create_model, resolve_family
from .output import check_output_dir, default_card, write_run
from .pool import UNLABELLED, LabelPool, check_schedule
from .scoring import compute_scores, stream_outputs
from .selection import select_indices
from .training import TrainingConfig, evaluate_accuracy, train_model

logger = get_logger(__name__)

ROUND_COLUMN = "svp_round"

# Which selection loops each `selector` runs; a loop is named by the role of the model that selects in it.
SELECTORS: Dict[str, tuple] = {"proxy": ("proxy",), "target": ("target",), "both": ("proxy", "target")}

ACTIVE_KEYS = tuple(f.name for f in fields(ActiveArguments))
TARGET_KEYS = ("target_epochs", "target_learning_rate")


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


def build_selectors(
    args: SelectionArguments, run_args: RunArguments, active: ActiveArguments
) -> Dict[str, Selector]:
    """The model of every loop `active.selector` runs, plus the target (role ``"target"``) when one is set."""
    models = {"proxy": (args.proxy, training_config(args))}
    if run_args.target:
        config = training_config(args, epochs=run_args.target_epochs, learning_rate=run_args.target_learning_rate)
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
            model = create_model(selector.model, info, pretrained=bool(args.pretrained))
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
            model = create_model(target.model, info, pretrained=bool(args.pretrained))
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
        dataset, args, run_args, active, info=info, accelerator=accelerator or Accelerator(), eval_dataset=eval_dataset
    )


# --- the CLI ---------------------------------------------------------------------------------------------------------


def pool_record(result: ActiveResult, dataset: Dataset) -> Dataset:
    """One row per pool example: `svp_index`, label, and for each loop the round it labelled the row in and the score
    (null when that loop never labelled it)."""
    info = result.info
    label_feature = dataset.features[info.label_column]
    if not isinstance(label_feature, ClassLabel):
        label_feature = Value("int64")
    data: Dict[str, Any] = {INDEX_COLUMN: np.arange(len(dataset), dtype=np.int64), "label": labels_of(dataset, info)}
    features = {INDEX_COLUMN: Value("int64"), "label": label_feature}
    for role, run in result.runs.items():
        rounds, scores = run.pool.rounds(), run.pool.scores()
        data[f"{role}_round"] = [None if r == UNLABELLED else int(r) for r in rounds]
        data[f"{role}_score"] = [None if np.isnan(s) else float(s) for s in scores]
        features.update({f"{role}_round": Value("int64"), f"{role}_score": Value("float64")})
    return Dataset.from_dict(data, features=Features(features))


def output_splits(result: ActiveResult, train_split: str, evaluation: Optional[Dataset], eval_split: Optional[str]):
    """The labelled set of the first loop as `train_split` (the target-selected one as `<train_split>_target_selected`
    when both ran), and the untouched evaluation split with the same columns (null round and score)."""
    from .coreset import with_null_scores

    roles = list(result.runs)
    splits = {train_split: result.runs[roles[0]].labelled}
    for role in roles[1:]:
        splits[f"{train_split}_{role}_selected"] = result.runs[role].labelled
    if evaluation is not None:
        evaluation = with_null_scores(evaluation.remove_columns([c for c in (ROUND_COLUMN,) if c in evaluation.column_names]))
        splits[eval_split] = evaluation.add_column(ROUND_COLUMN, [None] * len(evaluation), feature=Value("int64"))
    return splits


def run_active(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole active-learning job from parsed recipe arguments; returns the metrics it wrote."""
    from .coreset import load_splits, per_class_counts

    start = time.perf_counter()
    accelerator = Accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=run_args.report_to,
        project_dir=run_args.output_dir if run_args.report_to else None,
    )
    check_output_dir(run_args.output_dir, run_args.overwrite_output_dir)
    check_active_arguments(sel_args, run_args, active)
    family = next(iter(build_selectors(sel_args, run_args, active).values())).family
    train, evaluation = load_splits(data_args, int(sel_args.seed))
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    info = inspect_dataset(train, family.modality, **columns)
    if evaluation is not None:
        check_same_columns(evaluation, info)
    if run_args.report_to:
        accelerator.init_trackers(
            "svp_hf_active", config={**vars(data_args), **vars(sel_args), **vars(run_args), **vars(active)}
        )

    result = run_active_learning(train, sel_args, run_args, active, info=info, accelerator=accelerator, eval_dataset=evaluation)
    names = info.class_names
    metrics = {
        "svp_hf_version": __version__,
        "command": command,
        "dataset_name": data_args.dataset_name,
        "train_split": data_args.train_split,
        "eval_split": data_args.eval_split,
        "n_pool": len(train),
        "initial_size": active.initial_size,
        "budgets": active.budgets,
        "method": sel_args.method,
        "selector": active.selector,
        "warm_start": active.warm_start,
        "initial_class_balanced": active.initial_class_balanced,
        "seed": sel_args.seed,
        "proxy": sel_args.proxy,
        "proxy_epochs": sel_args.proxy_epochs,
        "target": run_args.target,
        "target_epochs": run_args.target_epochs if run_args.target else None,
        "selection_seconds": {role: run.selection_seconds for role, run in result.runs.items()},
        "target_accuracy": {role: run.target_accuracy for role, run in result.runs.items()},
        "target_training_seconds": {role: run.target_training_seconds for role, run in result.runs.items()},
        "speedup": result.speedup,
        "labelled_per_class": {role: per_class_counts(labels_of(run.labelled, info), names) for role, run in result.runs.items()},
        "target_history": {role: run.target_history for role, run in result.runs.items()},
        "timings": {"total": time.perf_counter() - start},
        "num_processes": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        splits = output_splits(result, data_args.train_split, evaluation, data_args.eval_split)
        card = default_card(
            splits,
            {k: metrics[k] for k in ("dataset_name", "method", "selector", "initial_size", "budgets", "proxy", "target", "target_accuracy", "speedup", "seed", "command")},
        )
        write_run(
            run_args.output_dir,
            splits=splits,
            scores=pool_record(result, train),
            metrics=metrics,
            card=card,
            overwrite=run_args.overwrite_output_dir,
            extra_files={"rounds.json": {role: run.rounds for role, run in result.runs.items()}},
        )
        logger.info(
            f"labelled {active.budgets[-1]} of {len(train)} rows by {sel_args.method} ({active.selector} selecting); "
            f"selection seconds {metrics['selection_seconds']}, target accuracy {metrics['target_accuracy']}, "
            f"speedup {result.speedup}; wrote {run_args.output_dir}",
            main_process_only=True,
        )
    accelerator.wait_for_everyone()
    if run_args.report_to:
        accelerator.end_training()
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m svp_hf.active " + " ".join(shlex.quote(a) for a in argv)
    try:
        data_args, sel_args, run_args, active = parse_args(argv, dataclass_types=ACTIVE_DATACLASSES)
        return run_active(data_args, sel_args, run_args, active, command=command)
    except SVPConfigError as err:
        print(f"svp_hf.active: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


__all__ = ["active_learn", "ActiveResult", "SelectorRun", "SELECTORS", "ROUND_COLUMN", "run_active_learning", "run_active", "main"]


if __name__ == "__main__":
    main()
