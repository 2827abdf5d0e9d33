"""The Python API: ``score`` (train the proxy once, score every method), ``select`` (a pure selection from scores)
and ``prune`` (the two in one call)."""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import ClassLabel, Dataset, Features, IterableDataset, Value

from .auto import AutoDecision, check_auto, choose_strategy, proxy_trainer
from .checkpoint import load_model_weights, load_training_state, resolve_model_checkpoint
from .config import DataArguments, SelectionArguments
from .data import INDEX_COLUMN, SCORE_COLUMN, DataInfo, add_index, check_images, check_same_columns, inspect_dataset, small_images
from .device import DeviceSettings
from .errors import SVPConfigError
from .methods import get_method, list_methods, resolve_methods, training_signals
from .models import ModelFamily, check_model, create_model, resolve_family
from .scoring import iter_shards, score_examples
from .selection import n_to_keep
from .signals import restore_signals
from .strategies import AUTO, DEFAULT_STRATEGY, apply_strategy, check_coverage_beta, check_strategy
from .training import (
    TrainingConfig,
    TrainResult,
    check_optimizer,
    evaluate_accuracy,
    make_accelerator,
    train_model,
)

COLUMN_KEYS = tuple(f.name for f in fields(DataArguments) if f.name.endswith("_column"))
SELECTION_KEYS = tuple(f.name for f in fields(SelectionArguments))


@dataclass
class ScoringRun:
    """Everything the scoring pipeline produced: the scores and what is needed to report on them."""

    scores: Dataset
    info: DataInfo
    proxy: Any
    family: ModelFamily
    history: List[Dict[str, float]] = field(default_factory=list)
    proxy_accuracy: Optional[float] = None
    timings: Dict[str, float] = field(default_factory=dict)


def _split_kwargs(kwargs: Dict[str, Any]):
    unknown = sorted(set(kwargs) - set(COLUMN_KEYS) - set(SELECTION_KEYS))
    if unknown:
        raise SVPConfigError(f"unknown argument(s) {unknown}; known: {sorted(COLUMN_KEYS + SELECTION_KEYS)}")
    columns = {k: v for k, v in kwargs.items() if k in COLUMN_KEYS}
    selection = {k: v for k, v in kwargs.items() if k in SELECTION_KEYS}
    return columns, selection


def training_config(
    args: SelectionArguments,
    *,
    epochs: Optional[int] = None,
    learning_rate: Optional[float] = None,
    lr_schedule: Optional[str] = None,
    optimizer: Optional[str] = None,
    device: Optional[DeviceSettings] = None,
) -> TrainingConfig:
    """The proxy's training settings from a recipe; each keyword overrides its recipe key (for the target); `device`
    carries the device keys (channels_last, pin_memory)."""
    device = device or DeviceSettings()
    return TrainingConfig(
        epochs=int(epochs if epochs is not None else args.proxy_epochs),
        batch_size=int(args.batch_size),
        learning_rate=float(learning_rate if learning_rate is not None else args.learning_rate),
        momentum=float(args.momentum),
        weight_decay=float(args.weight_decay),
        lr_schedule=lr_schedule or args.lr_schedule,
        optimizer=optimizer or args.optimizer,
        seed=int(args.seed),
        num_workers=int(args.dataloader_num_workers),
        augment=bool(args.augment),
        channels_last=device.channels_last,
        pin_memory=device.pin_memory,
    )


def target_args(args: SelectionArguments, run_args) -> SelectionArguments:
    """The recipe with the target in the proxy's place: its ``target_*`` keys, the proxy's for those left unset (how
    the target is trained, and scored by ``score_with_target``). The target is always trained: a
    ``proxy_checkpoint`` holds the proxy, never the target."""
    return dataclasses.replace(
        args,
        proxy=run_args.target,
        proxy_checkpoint=None,
        proxy_epochs=run_args.target_epochs,
        learning_rate=run_args.target_learning_rate or args.learning_rate,
        lr_schedule=run_args.target_lr_schedule or args.lr_schedule,
        optimizer=run_args.target_optimizer or args.optimizer,
    )


def target_training_config(args: SelectionArguments, run_args, device: Optional[DeviceSettings] = None) -> TrainingConfig:
    """The target's training settings (see :func:`target_args`)."""
    return training_config(target_args(args, run_args), device=device)


def training_settings(config: TrainingConfig) -> Dict[str, Any]:
    """What a report records of how a model was trained."""
    settings = {k: getattr(config, k) for k in ("optimizer", "learning_rate", "lr_schedule", "weight_decay", "batch_size")}
    if config.optimizer == "sgd":
        settings["momentum"] = config.momentum
    return settings


def training_metrics(args: SelectionArguments, run_args) -> Dict[str, Any]:
    """A run's record of how its proxy and (when set) its target were trained."""
    return {
        "proxy_training": training_settings(training_config(args)),
        "target_training": training_settings(target_training_config(args, run_args)) if run_args.target else None,
    }


def check_optimizers(args: SelectionArguments, run_args=None) -> None:
    """A clear error, before any training, when the proxy's or the target's optimizer cannot train that model."""
    if not args.proxy_checkpoint:
        check_optimizer(args.optimizer, args.proxy)
    if run_args is not None and run_args.target:
        check_optimizer(run_args.target_optimizer or args.optimizer, run_args.target)


STREAM_INSPECTION_ROWS = 1000


def prepare_inputs(
    dataset: Union[Dataset, IterableDataset], model_name: str, columns: Dict[str, Any], *, trust_remote_code: bool = False
):
    """Resolve the model family, inspect the dataset for it and check the model against it (its weights, tokenizer
    and label range are reachable and fit); every check that needs no training.

    A streaming ``IterableDataset`` is inspected on its first rows."""
    if not isinstance(dataset, (Dataset, IterableDataset)):
        raise SVPConfigError(f"expected a datasets.Dataset or IterableDataset, got {type(dataset).__name__}")
    family = resolve_family(model_name)
    if isinstance(dataset, IterableDataset):
        head = next(iter_shards(dataset, STREAM_INSPECTION_ROWS), (0, None))[1]
        if head is None:
            raise SVPConfigError("the dataset is empty: there is nothing to score or select")
        return family, inspect_dataset(head, family.modality, **columns)
    info = inspect_dataset(dataset, family.modality, **columns)
    check_model(model_name, info, trust_remote_code=trust_remote_code)
    if info.modality == "image" and small_images(info):
        check_images(dataset, info)  # the decode-once pass: an undecodable row stops here, before any training
    return family, info


def load_proxy(args: SelectionArguments, info: DataInfo, n: Optional[int], *, signals: Sequence[str] = ()) -> TrainResult:
    """The proxy saved at ``args.proxy_checkpoint``, with its training history and the training `signals` it recorded."""
    weights, _ = resolve_model_checkpoint(args.proxy_checkpoint)
    state, recorded = checkpoint_signals(args.proxy_checkpoint, signals, n)
    model = load_model_weights(create_model(args.proxy, info, pretrained=False), weights)
    return TrainResult(model, list(state.get("history", [])), recorded)


def checkpoint_signals(proxy_checkpoint: str, signals: Sequence[str], n: Optional[int] = None):
    """The training state saved with `proxy_checkpoint` and the training `signals` restored from it, checked to hold
    every one of them (for `n` rows when known): a clear error before anything is trained when a method cannot be
    scored from it."""
    _, state_folder = resolve_model_checkpoint(proxy_checkpoint)
    state = load_training_state(state_folder) if state_folder else {}
    found = restore_signals(state, signals)
    missing = [s for s in signals if s not in found]
    if missing:
        readers = [m for m in list_methods() if get_method(m).signal in missing]
        raise SVPConfigError(
            f"proxy_checkpoint {proxy_checkpoint!r} did not record the training signal(s) {missing} that "
            f"{', '.join(readers)} read (only svp_hf's own checkpoints of a proxy trained while scoring these methods "
            "do); drop these methods or train the proxy"
        )
    for name, signal in found.items():
        if n is not None and len(signal) != n:
            raise SVPConfigError(
                f"proxy_checkpoint {proxy_checkpoint!r} recorded its {name!r} signal for {len(signal)} rows but the "
                f"dataset has {n}"
            )
    return state, found


def labels_of(dataset: Dataset, info: DataInfo) -> np.ndarray:
    """The label of every row, through any indices mapping left by ``select``/``shuffle``/``train_test_split``."""
    column = dataset.with_format("arrow")[info.label_column]
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


def run_scoring(
    dataset: Union[Dataset, IterableDataset],
    args: SelectionArguments,
    *,
    family: ModelFamily,
    info: DataInfo,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
    methods: Optional[Sequence[str]] = None,
    checkpoint_dir: Optional[str] = None,
    device: Optional[DeviceSettings] = None,
) -> ScoringRun:
    """Train the proxy on `dataset` (or load ``args.proxy_checkpoint``) and score it with every method; evaluate the
    proxy on `eval_dataset` if given.

    With `checkpoint_dir`, the proxy is checkpointed every epoch under ``checkpoint_dir/proxy`` and finished score
    shards are kept under ``checkpoint_dir/scores``; calling again with the same settings resumes after them.
    """
    chosen = resolve_methods(methods or args.methods)
    signals = training_signals(chosen)
    streaming = isinstance(dataset, IterableDataset)
    if streaming and not args.proxy_checkpoint:
        raise SVPConfigError("a streaming dataset can be scored, not trained on: give a trained proxy as proxy_checkpoint")
    set_seed(int(args.seed))
    timings: Dict[str, float] = {}
    if args.proxy_checkpoint:
        proxy = load_proxy(args, info, None if streaming else len(dataset), signals=signals)
    else:
        dataset = add_index(dataset)
        proxy = train_model(
            create_model(args.proxy, info, pretrained=bool(args.pretrained), trust_remote_code=bool(args.trust_remote_code)),
            family,
            dataset,
            info,
            training_config(args, device=device),
            accelerator,
            signals=signals,
            desc=f"proxy {args.proxy}",
            checkpoint_dir=os.path.join(checkpoint_dir, "proxy") if checkpoint_dir else None,
        )
        timings["proxy_training"] = proxy.seconds
    start = time.perf_counter()
    result = score_examples(
        proxy.model,
        family,
        dataset,
        info,
        chosen,
        accelerator,
        batch_size=int(args.batch_size),
        seed=int(args.seed),
        signals=proxy.signals,
        kcenter_chunk_size=int(args.kcenter_chunk_size),
        kcenter_pool_size=args.kcenter_pool_size,
        kcenter_max_memory=args.kcenter_max_memory,
        shard_size=int(args.scoring_shard_size),
        shard_dir=os.path.join(checkpoint_dir, "scores") if checkpoint_dir else None,
        num_workers=int(args.dataloader_num_workers),
    )
    timings["scoring"] = time.perf_counter() - start
    proxy_accuracy = None
    if eval_dataset is not None:
        proxy_accuracy = evaluate_accuracy(
            proxy.model, family, eval_dataset, info, accelerator, batch_size=int(args.batch_size), desc="evaluate proxy",
            num_workers=int(args.dataloader_num_workers),
        )
    return ScoringRun(
        scores_dataset(dataset, info, result.scores, labels=result.labels),
        info,
        proxy.model,
        family,
        proxy.history,
        proxy_accuracy,
        timings,
    )


def scores_dataset(
    dataset: Union[Dataset, IterableDataset], info: DataInfo, scores: Dict[str, np.ndarray], *, labels: Optional[np.ndarray] = None
) -> Dataset:
    """`svp_index`, label and one float column per method, as a Dataset (`labels` default to the dataset's)."""
    label_feature = dataset.features[info.label_column] if dataset.features else None
    if not isinstance(label_feature, ClassLabel):
        label_feature = Value("int64")
    labels = labels_of(dataset, info) if labels is None else np.asarray(labels, dtype=np.int64)
    features = Features({INDEX_COLUMN: Value("int64"), "label": label_feature, **{m: Value("float64") for m in scores}})
    data = {INDEX_COLUMN: np.arange(len(labels), dtype=np.int64), "label": labels}
    data.update({m: np.asarray(v, dtype=np.float64) for m, v in scores.items()})
    return Dataset.from_dict(data, features=features)


def score(
    dataset: Union[Dataset, IterableDataset],
    proxy: str = "resnet20",
    methods: Union[str, Sequence[str]] = ("least_confidence",),
    *,
    eval_dataset: Optional[Dataset] = None,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> Dataset:
    """Train `proxy` on `dataset` once and return every method's per-example scores.

    The result is a ``datasets.Dataset`` with ``svp_index`` (row in `dataset`), ``label`` and one float column per
    method. Keyword arguments are the recipe's: ``proxy_epochs``, ``batch_size``, ``learning_rate``, ``optimizer``,
    ``lr_schedule``, ``seed``, ``image_column``, ``text_column`` (one column or several, joined), ``label_column``,
    ``proxy_checkpoint`` (score with a trained proxy; needed for a streaming ``IterableDataset``),
    ``kcenter_pool_size``, ``kcenter_max_memory``, ...
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    resolve_methods(methods)
    columns, selection = _split_kwargs(kwargs)
    args = SelectionArguments(proxy=proxy, method=methods[0], score_methods=methods[1:] or None, **selection)
    check_optimizers(args)
    family, info = prepare_inputs(dataset, proxy, columns, trust_remote_code=bool(args.trust_remote_code))
    if eval_dataset is not None:
        check_same_columns(eval_dataset, info)
    accelerator = accelerator or make_accelerator()
    return run_scoring(dataset, args, family=family, info=info, accelerator=accelerator, eval_dataset=eval_dataset).scores


def _method_values(scores: Dataset, method: str) -> np.ndarray:
    if method not in scores.column_names:
        scored = [c for c in scores.column_names if c not in (INDEX_COLUMN, "label")]
        raise SVPConfigError(f"scores have no column for method {method!r} (scored: {scored}); score it first")
    return np.asarray(scores[method], dtype=np.float64)


def selected_indices(
    scores: Dataset,
    method: str,
    fraction: float,
    *,
    strategy: str = "top",
    class_balanced: bool = False,
    seed: int = 0,
    coverage_beta: Optional[float] = None,
) -> np.ndarray:
    """The indices (into the scored dataset) that `strategy` keeps at `fraction` from `method`'s scores: a pure
    function of the scores, labels, fraction and seed (see :mod:`svp_hf.strategies`). ``auto`` needs the data: use
    :func:`select` or :func:`prune`, or pass the strategy :func:`choose_strategy` returned."""
    spec = get_method(method)
    check_strategy(strategy)
    values = _method_values(scores, method)
    n_keep = n_to_keep(fraction, len(scores))
    if strategy == "coverage":
        check_coverage_beta(coverage_beta, fraction)
    labels = np.asarray(scores["label"]) if class_balanced or strategy == "coverage" else None
    positions = apply_strategy(
        strategy, values, n_keep, descending=spec.descending, labels=labels, class_balanced=class_balanced, seed=seed,
        coverage_beta=coverage_beta,
    )
    return np.asarray(scores[INDEX_COLUMN], dtype=np.int64)[positions]


def run_auto(
    dataset: Dataset, scores: Dataset, args: SelectionArguments, *, family: ModelFamily, info: DataInfo, accelerator: Accelerator
) -> AutoDecision:
    """``strategy: auto`` for `dataset` and its `scores` with the recipe's proxy and training settings (see
    :mod:`svp_hf.auto`)."""
    spec = get_method(args.method)
    values = _method_values(scores, args.method)
    if len(values) != len(dataset):
        raise SVPConfigError(f"scores have {len(values)} rows but the dataset has {len(dataset)}; score this dataset")
    by_index = np.empty(len(values))
    by_index[np.asarray(scores[INDEX_COLUMN], dtype=np.int64)] = values
    labels = labels_of(dataset, info)
    config = training_config(args, epochs=args.auto_epochs or args.proxy_epochs)
    trainer = proxy_trainer(
        dataset, model_name=args.proxy, family=family, info=info, config=config, accelerator=accelerator,
        pretrained=bool(args.pretrained), trust_remote_code=bool(args.trust_remote_code), eval_batch_size=int(args.batch_size),
    )
    decision = choose_strategy(
        dataset, by_index, labels, descending=spec.descending, fraction=args.fraction, train_candidate=trainer,
        seed=int(args.seed), class_balanced=bool(args.class_balanced), holdout=float(args.auto_holdout),
        seeds=int(args.auto_seeds), coverage_beta=args.coverage_beta,
    )
    decision.epochs = config.epochs
    return decision


def choose(
    dataset: Dataset,
    scores: Dataset,
    method: str = "least_confidence",
    fraction: float = 0.5,
    *,
    proxy: str = "resnet20",
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> AutoDecision:
    """Run ``strategy: auto``'s check for `dataset` and its `scores`: the decision (``.strategy``,
    ``.coverage_beta``) and its evidence (``.candidates``: each one's held-out accuracies). Keyword arguments are the
    recipe's (``proxy_epochs``, ``auto_epochs``, ``auto_seeds``, ``auto_holdout``, ``seed``, ``image_column``, ...)."""
    columns, selection = _split_kwargs(kwargs)
    args = SelectionArguments(proxy=proxy, method=method, fraction=fraction, **{**selection, "strategy": AUTO})
    check_optimizers(args)
    family, info = prepare_inputs(dataset, proxy, columns, trust_remote_code=bool(args.trust_remote_code))
    check_auto(len(dataset), labels_of(dataset, info), fraction, args.auto_holdout)
    return run_auto(dataset, scores, args, family=family, info=info, accelerator=accelerator or make_accelerator())


def select(
    dataset: Dataset,
    scores: Dataset,
    method: str = "least_confidence",
    fraction: float = 0.5,
    *,
    strategy: str = "top",
    class_balanced: bool = False,
    seed: int = 0,
    coverage_beta: Optional[float] = None,
    proxy: Optional[str] = None,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> Dataset:
    """Keep `fraction` of `dataset` by `method`'s scores with `strategy`, without training again (``auto`` excepted:
    it retrains `proxy` on candidate subsets, with the recipe's keyword arguments; see :func:`choose`).

    Returns the kept rows in their original order with all original columns, plus ``svp_score`` (the method's score)
    and ``svp_index`` (the row's index in `dataset`).
    """
    if len(scores) != len(dataset):
        raise SVPConfigError(f"scores have {len(scores)} rows but the dataset has {len(dataset)}; score this dataset")
    check_strategy(strategy)
    if strategy == AUTO:
        if not proxy:
            raise SVPConfigError(
                "strategy 'auto' retrains the proxy on candidate subsets: pass proxy= (and its training keywords), "
                "or choose a strategy that needs no training (coverage, top, bottom, random)"
            )
        decision = choose(dataset, scores, method, fraction, proxy=proxy, accelerator=accelerator,
                          class_balanced=class_balanced, seed=seed, coverage_beta=coverage_beta, **kwargs)
        strategy, coverage_beta = decision.strategy, decision.coverage_beta
    elif kwargs:
        raise SVPConfigError(f"unknown argument(s) {sorted(kwargs)}: only strategy='auto' takes training keywords")
    keep = selected_indices(
        scores, method, fraction, strategy=strategy, class_balanced=class_balanced, seed=seed, coverage_beta=coverage_beta
    )
    return subset_with_scores(dataset, scores, method, keep)


def subset_with_scores(dataset: Dataset, scores: Dataset, method: str, keep: np.ndarray) -> Dataset:
    """The rows `keep` of `dataset` with ``svp_score`` (`method`'s score) and ``svp_index`` (the row's index)."""
    by_index = np.empty(len(scores), dtype=np.float64)
    by_index[np.asarray(scores[INDEX_COLUMN], dtype=np.int64)] = np.asarray(scores[method], dtype=np.float64)
    pruned = dataset.select(keep)
    pruned = pruned.remove_columns([c for c in (SCORE_COLUMN, INDEX_COLUMN) if c in pruned.column_names])
    pruned = pruned.add_column(SCORE_COLUMN, by_index[keep].tolist(), feature=Value("float64"))
    return pruned.add_column(INDEX_COLUMN, keep.tolist(), feature=Value("int64"))


def prune(
    dataset: Dataset,
    proxy: str = "resnet20",
    fraction: float = 0.5,
    method: str = "least_confidence",
    *,
    strategy: str = DEFAULT_STRATEGY,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> Dataset:
    """Train `proxy`, score `dataset` with `method` and keep `fraction` of it with `strategy` (``auto`` by default:
    random unless a strategy over the scores proves better on a held-out slice; see :mod:`svp_hf.auto`)."""
    n_to_keep(fraction, len(dataset))
    get_method(method)
    columns, selection = _split_kwargs(kwargs)
    args = SelectionArguments(proxy=proxy, method=method, fraction=fraction, strategy=strategy, **selection)
    check_optimizers(args)
    family, info = prepare_inputs(dataset, proxy, columns, trust_remote_code=bool(args.trust_remote_code))
    if strategy == AUTO:
        check_auto(len(dataset), labels_of(dataset, info), fraction, args.auto_holdout)
    accelerator = accelerator or make_accelerator()
    scores = run_scoring(dataset, args, family=family, info=info, accelerator=accelerator).scores
    coverage_beta = args.coverage_beta
    if strategy == AUTO:
        decision = run_auto(dataset, scores, args, family=family, info=info, accelerator=accelerator)
        strategy, coverage_beta = decision.strategy, decision.coverage_beta
    keep = selected_indices(
        scores, method, fraction, strategy=strategy, class_balanced=args.class_balanced, seed=args.seed,
        coverage_beta=coverage_beta,
    )
    return subset_with_scores(dataset, scores, method, keep)


__all__ = [
    "score",
    "select",
    "prune",
    "choose",
    "selected_indices",
    "run_scoring",
    "run_auto",
    "ScoringRun",
    "scores_dataset",
    "checkpoint_signals",
]
