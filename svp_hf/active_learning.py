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
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from datasets import Dataset, Value

from .api import _split_kwargs, check_optimizers, labels_of, target_training_config, training_config
from .config import ActiveArguments, RunArguments, SelectionArguments
from .data import INDEX_COLUMN, SCORE_COLUMN, DataInfo, check_same_columns, inspect_dataset
from .checkpoint import load_model_weights
from .errors import SVPConfigError
from .labelling import (
    ROUND_COLUMN,
    LabellingState,
    labelled_rows,
    tell,
    batch_paths,
    batch_rows,
    check_session_dataset,
    checkpoint_path,
    filled_dataset,
    labelling_dataset,
    start_session,
    write_batch,
)
from .methods import SelectionMethod, get_method
from .models import ModelFamily, check_model, create_model, resolve_family
from .output import check_output_dir
from .pool import LabelPool, check_schedule, initial_indices
from .scoring import compute_scores, stream_outputs
from .selection import select_indices
from .training import TrainingConfig, evaluate_accuracy, make_accelerator, train_model

logger = get_logger(__name__)


# Which selection loops each `selector` runs; a loop is named by the role of the model that selects in it.
SELECTORS: Dict[str, tuple] = {"proxy": ("proxy",), "target": ("target",), "both": ("proxy", "target")}

ACTIVE_KEYS = tuple(f.name for f in fields(ActiveArguments))
LABELLING_KEYS = ("labels_from", "class_names", "allow_pending", "finish")
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


def selection_round(
    selector: Selector,
    method: SelectionMethod,
    dataset: Dataset,
    info: DataInfo,
    pool: LabelPool,
    round_: int,
    n: int,
    args: SelectionArguments,
    active: ActiveArguments,
    accelerator: Accelerator,
    *,
    model=None,
    candidates: Optional[LabelPool] = None,
    eval_dataset: Optional[Dataset] = None,
    name: Optional[str] = None,
):
    """One round, shared by the simulated loop and the labelling mode: train the selector on `pool`'s labelled rows
    (a fresh model unless `model` is given and ``warm_start``), then pick the `n` rows to label next among the rows
    `candidates` (default `pool`) leaves unlabelled. Nothing is labelled here.

    Returns ``(model, picked, scores, record)``: the trained selector, the picked pool indices, their scores and the
    round's record (sizes, seconds, selector accuracy when ``eval_each_round``).
    """
    labelled = pool.labelled
    if model is None or not active.warm_start:
        set_seed(int(args.seed))
        model = create_model(selector.model, info, pretrained=bool(args.pretrained), trust_remote_code=bool(args.trust_remote_code))
    name = name or f"{selector.role} {selector.model} round {round_}"
    trained = train_model(model, selector.family, dataset.select(labelled), info, selector.config, accelerator, desc=name)
    model = trained.model
    start = time.perf_counter()
    picked, scores = acquire(
        method, model, selector, dataset, candidates if candidates is not None else pool, n, info, accelerator,
        batch_size=int(args.batch_size), seed=int(args.seed) + round_, chunk_size=int(args.kcenter_chunk_size),
        desc=f"{name}: scoring",
    )
    scoring_seconds = time.perf_counter() - start
    accuracy = None
    if active.eval_each_round and eval_dataset is not None:
        accuracy = evaluate_accuracy(
            model, selector.family, eval_dataset, info, accelerator, batch_size=int(args.batch_size), desc=f"{name}: evaluate"
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
    """Grow `pool`'s labelled set to each size in `budgets`, `selector` choosing and the dataset's labels answering;
    returns one record per round."""
    rounds, model = [], None
    for round_, budget in enumerate(budgets, start=1):
        name = f"{selector.role} {selector.model} round {round_}/{len(budgets)}"
        model, picked, scores, record = selection_round(
            selector, method, dataset, info, pool, round_, budget - pool.n_labelled, args, active, accelerator,
            model=model, eval_dataset=eval_dataset, name=name,
        )
        pool.label(picked, round_, scores)
        rounds.append(record)
        logger.info(
            f"{name}: labelled {pool.n_labelled} (+{len(picked)}), selector accuracy {record['accuracy']}",
            main_process_only=True,
        )
    return rounds


def labelled_dataset(dataset: Dataset, pool: LabelPool) -> Dataset:
    """The labelled rows in pool order, with `svp_index`, the round each was labelled in and its selection score."""
    indices = pool.labelled
    scores = [None if np.isnan(s) else float(s) for s in pool.scores(indices)]
    labelled = dataset.select(indices)
    labelled = labelled.add_column(ROUND_COLUMN, pool.rounds(indices), feature=Value("int64"))
    return labelled.add_column(SCORE_COLUMN, scores, feature=Value("float64"))


def train_target(
    target: Selector,
    runs,
    info: DataInfo,
    args: SelectionArguments,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
) -> None:
    """Train `target` from scratch on each run's labelled set and evaluate it on `eval_dataset` (when given); the
    accuracy, seconds and history go into each :class:`SelectorRun`."""
    for run in runs:
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
        train_target(selectors["target"], runs.values(), info, args, accelerator, eval_dataset)
    return ActiveResult(runs, info, {"total": time.perf_counter() - start})


# --- the labelling mode: one round of a session with real labellers -----------------------------------------------------


def labelling_selector(args: SelectionArguments, run_args: RunArguments, active: ActiveArguments) -> Selector:
    """The model that selects in a labelling session: the proxy (also with ``selector: both``, which compares two
    loops and needs an oracle), or the target with ``selector: target``."""
    return build_selectors(args, run_args, active)[SELECTORS[active.selector][0]]


def labelling_round(
    dataset: Dataset,
    info: DataInfo,
    state: LabellingState,
    output_dir: str,
    args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
) -> Tuple[int, Dataset, Dict[str, str]]:
    """Ask for the session's next batch: the `initial_size` seeded random rows when nothing is labelled yet (the
    simulated loop's initial set), else one :func:`selection_round` trained on the labelled rows, of the size
    `budgets` gives (as in the simulation; rows asked earlier and not answered count as asked and are not asked
    again). Writes the batch under ``output_dir/to_label/`` and then the state; returns the round, its rows and paths.
    """
    round_, budgets = state.next_round, list(active.budgets)
    record, scores = None, None
    if round_ == 0:
        if active.initial_class_balanced:
            raise SVPConfigError("initial_class_balanced needs the labels of the pool; no row is labelled yet")
        if active.initial_size >= state.pool_size:
            raise SVPConfigError(f"initial_size ({active.initial_size}) must be smaller than the pool ({state.pool_size} rows)")
        picked = initial_indices(state.pool_size, active.initial_size, seed=int(args.seed))
    else:
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
        pool = state.pool()
        if pool.n_labelled == 0:
            raise SVPConfigError("no row is labelled yet, so no selector can be trained: return labels first (labels_from)")
        candidates = state.pool(with_pending=True) if len(pending) else None
        left = len((candidates or pool).unlabelled)
        if n > left:
            raise SVPConfigError(f"round {round_} would ask for {n} rows but only {left} are left to ask for")
        selector = labelling_selector(args, run_args, active)
        method = active_method(args.method)
        model = None
        previous = checkpoint_path(output_dir, round_ - 1)
        if active.warm_start and os.path.isfile(previous):
            set_seed(int(args.seed))
            model = create_model(selector.model, info, pretrained=False, trust_remote_code=bool(args.trust_remote_code))
            model = load_model_weights(model, previous)
            restore_rng_state(previous)  # as if the previous round had just ended in this process
        pool_ds = pool_dataset(filled_dataset(dataset, state))
        name = f"{selector.role} {selector.model} round {round_}/{len(budgets)}"
        model, picked, scores, record = selection_round(
            selector, method, pool_ds, info, pool, round_, n, args, active, accelerator,
            model=model, candidates=candidates, eval_dataset=eval_dataset, name=name,
        )
        record["selector"], record["method"] = selector.model, args.method
        if active.warm_start and accelerator.is_main_process:
            save_weights(accelerator.unwrap_model(model), checkpoint_path(output_dir, round_))
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


RNG_FILE = "rng_state.pt"


def save_weights(model, path: str) -> None:
    """Save `model`'s weights to `path` and, next to them, the random number generators' states (so that a warm
    start in a later process trains exactly as the simulated loop does), each through a temporary file."""
    import random

    import torch

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    for obj, dest in ((rng, os.path.join(os.path.dirname(path), RNG_FILE)), (model.state_dict(), path)):
        tmp = dest + f".tmp-{os.getpid()}"
        torch.save(obj, tmp)
        os.replace(tmp, dest)


def restore_rng_state(weights_path: str) -> None:
    """Restore the generators' states saved next to `weights_path` by :func:`save_weights`, when there."""
    import random

    import torch

    path = os.path.join(os.path.dirname(weights_path), RNG_FILE)
    if not os.path.isfile(path):
        return
    rng = torch.load(path, weights_only=False)  # written by this session: python and numpy states are tuples
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])


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
    """The pool of a labelling session (see :func:`svp_hf.labelling.labelling_dataset`), its columns inspected, and
    the session's state: read back from `output_dir` (checked to be over the same pool) or started anew."""
    dataset, label_column = labelling_dataset(dataset, columns.get("label_column"), class_names, labelled=labelled)
    info = inspect_dataset(dataset, modality, **{**columns, "label_column": label_column}, missing_labels=True)
    names = list(info.class_names)
    if LabellingState.exists(output_dir):
        state = LabellingState.load(output_dir)
        check_session_dataset(state, dataset, label_column, names)
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
            parts.append(batch_rows(dataset, [batch["ids"][j] for j in keep], batch["round"], None if scores is None else [scores[j] if scores[j] is not None else np.nan for j in keep]))
    return concatenate_datasets(parts) if parts else batch_rows(dataset, [], state.next_round, None)




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
    labelling_keys = sorted(k for k in active_kwargs if k in LABELLING_KEYS and active_kwargs[k])
    if labelling_keys:
        raise SVPConfigError(
            f"{', '.join(labelling_keys)}: keys of the labelling mode, where labellers answer; active_learn's oracle is "
            "the label column (use svp_hf.ask and svp_hf.tell)"
        )
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


def _labelling_arguments(proxy, method, budgets, initial_size, target, output_dir, kwargs):
    active_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ACTIVE_KEYS}
    target_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in TARGET_KEYS}
    columns, selection = _split_kwargs(kwargs)
    active = ActiveArguments(initial_size=initial_size or 1, budgets=budgets, **active_kwargs)
    args = SelectionArguments(proxy=proxy, method=method, **selection)
    run_args = RunArguments(target=target, output_dir=os.fspath(output_dir), **target_kwargs)
    check_active_arguments(args, run_args, active)
    return columns, active, args, run_args


def session_settings(args: SelectionArguments, active: ActiveArguments) -> Dict[str, Any]:
    """What a labelling session records of the settings it started with."""
    return {
        "proxy": args.proxy, "method": args.method, "seed": int(args.seed), "initial_size": active.initial_size,
        "budgets": list(active.budgets), "selector": active.selector, "warm_start": bool(active.warm_start),
    }


def resolve_initial_size(active: ActiveArguments, state: LabellingState, given: Optional[int]) -> None:
    """`initial_size` left unset: 1000 (as :func:`active_learn`) when nothing is labelled, unused otherwise."""
    if given is None:
        active.initial_size = 1 if state.batches else 1000
        check_schedule(None, active.initial_size, active.budgets)


def ask(
    dataset: Dataset,
    output_dir,
    proxy: str = "resnet20",
    budgets: Optional[Sequence[int]] = None,
    method: str = "least_confidence",
    *,
    initial_size: Optional[int] = None,
    labelled: Optional[Dataset] = None,
    class_names: Optional[Sequence[str]] = None,
    target: Optional[str] = None,
    eval_dataset: Optional[Dataset] = None,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> Dataset:
    """The next batch of rows to label, in a labelling session kept in `output_dir` (active learning with real
    labellers; return the labels with :func:`svp_hf.tell`).

    `dataset` is the pool: its label column holds the labels known so far and nulls for the rows to label (or is
    absent: then `class_names` names the classes), or it is an unlabelled dataset and `labelled` a small labelled one
    put before it. Each call runs the session's next round: the `initial_size` seeded random rows when nothing is
    labelled yet (1000 by default), else the `proxy` trained on the labelled rows ranks the others with `method`
    and the top of the ranking is asked for, up to the next size in `budgets` (as in :func:`active_learn`, whose
    keyword arguments apply). The batch is also written to ``output_dir/to_label/round_<k>/`` and
    ``round_<k>.csv``. While asked rows are not labelled yet, no round runs and those rows are returned again
    (``allow_pending=True`` asks for a new batch anyway); once every budget is asked for and labelled, the batch is
    empty. Returns the rows with their original columns, ``svp_index``, ``svp_round`` and ``svp_score``.
    """
    if not isinstance(dataset, Dataset):
        raise SVPConfigError(f"expected a datasets.Dataset, got {type(dataset).__name__}")
    output_dir = os.fspath(output_dir)
    columns, active, args, run_args = _labelling_arguments(proxy, method, budgets, initial_size, target, output_dir, kwargs)
    selector = labelling_selector(args, run_args, active)
    pool, info, state = open_session(
        dataset, output_dir, selector.family.modality, columns=columns, class_names=class_names or active.class_names,
        labelled=labelled, settings=session_settings(args, active),
    )
    resolve_initial_size(active, state, initial_size)
    for model in filter(None, (args.proxy, run_args.target)):
        check_model(model, info, trust_remote_code=bool(args.trust_remote_code))
    if eval_dataset is not None:
        check_same_columns(eval_dataset, info)
    if not LabellingState.exists(output_dir):
        check_output_dir(output_dir, overwrite=False)
        state.save(output_dir)
    if active.labels_from:
        tell(output_dir, active.labels_from)
        state = LabellingState.load(output_dir)
    if len(state.pending) and not active.allow_pending:
        rows = pending_rows(pool, state)
        logger.info(f"{len(rows)} asked rows are not labelled yet: return them with svp_hf.tell", main_process_only=True)
        return rows
    if state.batches and state.next_round > len(active.budgets):
        logger.info(f"every budget of {active.budgets} is asked for and labelled", main_process_only=True)
        return batch_rows(pool, [], state.next_round, None)
    accelerator = accelerator or make_accelerator()
    _, rows, paths = labelling_round(pool, info, state, output_dir, args, run_args, active, accelerator, eval_dataset)
    logger.info(f"{len(rows)} rows to label in {paths['csv']}", main_process_only=True)
    return rows


def labelled_set(
    dataset: Dataset,
    output_dir,
    *,
    labelled: Optional[Dataset] = None,
    class_names: Optional[Sequence[str]] = None,
    label_column: Optional[str] = None,
) -> Dataset:
    """The labelled rows of a labelling session's pool `dataset` (as given to :func:`ask`), with the labels returned
    so far, ``svp_index``, ``svp_round`` and ``svp_score``: the set to train a target on at any time."""
    pool, column = labelling_dataset(dataset, label_column, class_names, labelled=labelled)
    state = LabellingState.load(os.fspath(output_dir))
    check_session_dataset(state, pool, column, state.class_names)
    return labelled_rows(pool, state)


__all__ = [
    "active_learn",
    "ask",
    "tell",
    "labelled_set",
    "selection_round",
    "labelling_round",
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
