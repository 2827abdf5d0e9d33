"""The proxy stage: train the proxy (or load a trained one), score every example with every method, and turn the
scores into the kept subset. The jobs (:mod:`svp_hf.coreset`, :mod:`svp_hf.active`) and the Python API
(:mod:`svp_hf.api`) run through these functions."""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from datasets import ClassLabel, Dataset, Features, IterableDataset, Value

from .._compat import has_indices_mapping
from ..config.checks import check_coverage_beta
from ..data.columns import (
    INDEX_COLUMN,
    SCORE_COLUMN,
    DataInfo,
    add_index,
    column_values,
    inspect_dataset,
    keep_previous_columns,
)
from ..data.images import check_images, small_images
from ..engine.checkpoint import load_model_weights, load_training_state, resolve_model_checkpoint
from ..engine.scoring import iter_shards, score_examples
from ..engine.training import TrainResult, evaluate_accuracy, train_model
from ..errors import SVPConfigError, SVPRuntimeError
from ..models import ModelFamily, create_model, resolve_family
from ..selection.methods import get_method, list_methods, resolve_methods, training_signals
from ..selection.ranking import n_to_keep
from ..selection.signals import restore_signals
from ..selection.strategies import apply_strategy, check_strategy
from ..utils.progress import quiet_datasets
from .auto import AutoDecision, CheckPlan, choose_strategy, proxy_trainer
from .preflight import check_models_against_data
from .settings import ModelSettings, ScoringSettings, SelectionSettings


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
    quality: Dict[str, Any] = field(default_factory=dict)
    model_name: Optional[str] = None

    def metrics(self) -> Dict[str, Any]:
        """What the Python API returns with ``return_metrics=True``: the proxy's accuracy on the evaluation data
        (``None`` without it), its chance level and whether it barely beats it, its training history and timings."""
        return {
            "proxy_accuracy": self.proxy_accuracy,
            **self.quality,
            "num_classes": self.info.num_classes,
            "proxy_history": list(self.history),
            "timings": dict(self.timings),
        }


# A proxy "barely beats chance" when its accuracy is within this many binomial standard errors of chance, or closes
# less than this share of the gap between chance and perfect accuracy.
CHANCE_STANDARD_ERRORS = 2.0
CHANCE_GAP_SHARE = 0.2


def chance_accuracy(labels: np.ndarray, num_classes: int) -> float:
    """The accuracy of guessing: the larger of 1/num_classes and the majority class's share of `labels`."""
    labels = np.asarray(labels, dtype=np.int64)
    majority = float(np.bincount(labels).max() / len(labels)) if len(labels) else 0.0
    return max(1.0 / max(int(num_classes), 1), majority)


def barely_beats_chance(accuracy: float, chance: float, n: int) -> bool:
    """Whether `accuracy` on `n` rows is within :data:`CHANCE_STANDARD_ERRORS` binomial standard errors of `chance`
    or closes less than :data:`CHANCE_GAP_SHARE` of the gap between chance and 1."""
    noise = CHANCE_STANDARD_ERRORS * math.sqrt(chance * (1 - chance) / max(int(n), 1))
    return accuracy <= chance + max(noise, CHANCE_GAP_SHARE * (1 - chance))


def run_name(run: "ScoringRun") -> str:
    return f"{run.model_name!r} " if run.model_name else ""


def proxy_quality(run: "ScoringRun", train_labels: np.ndarray, eval_labels: Optional[np.ndarray]) -> Dict[str, Any]:
    """How far the proxy is from guessing, warned about (``UserWarning``, shown by default) when it barely beats
    chance or when most of its forgetting scores are infinite: its scores would then rank the data by noise.

    Judged on the evaluation data when the proxy was evaluated, else on its final training epoch's accuracy."""
    quality: Dict[str, Any] = {"chance_accuracy": None, "accuracy_judged": None, "barely_beats_chance": None}
    if run.proxy_accuracy is not None and eval_labels is not None and len(eval_labels):
        accuracy, labels, where = float(run.proxy_accuracy), eval_labels, f"on {len(eval_labels)} evaluation rows"
    elif run.history and run.history[-1].get("accuracy") is not None:
        accuracy, labels, where = float(run.history[-1]["accuracy"]), train_labels, "on its training rows (last epoch)"
    else:
        accuracy = None
    if accuracy is not None:
        chance = chance_accuracy(labels, run.info.num_classes)
        barely = barely_beats_chance(accuracy, chance, len(labels))
        quality.update(chance_accuracy=chance, accuracy_judged=accuracy, barely_beats_chance=barely)
        if barely:
            warnings.warn(
                f"the proxy {run_name(run)}barely beats chance: accuracy {accuracy:.4f} {where} against {chance:.4f} by guessing "
                f"(the majority class, or 1/{run.info.num_classes}); its scores rank the data little better than "
                "random. Train it longer (proxy_epochs), with another learning_rate, or choose another proxy",
                UserWarning,
                stacklevel=3,
            )
    if "forgetting" in run.scores.column_names:
        values = column_values(run.scores, "forgetting", np.float64)
        n_inf = int(np.isinf(values).sum())
        quality["forgetting_infinite"] = n_inf
        if values.size and n_inf > values.size / 2:
            warnings.warn(
                f"{n_inf} of {values.size} forgetting scores are infinite (examples the proxy {run_name(run)}never "
                "learned): forgetting cannot rank them; train the proxy longer (proxy_epochs) or choose another method",
                UserWarning,
                stacklevel=3,
            )
    return quality


def check_finite_scores(scores: Dict[str, np.ndarray], scorer: str) -> None:
    """A runtime error naming the method and how many rows are NaN when `scorer`'s scores hold NaN (a proxy whose
    training diverged): the recipe was valid, the run failed."""
    nan = {m: int(np.isnan(np.asarray(v, dtype=np.float64)).sum()) for m, v in scores.items()}
    nan = {m: k for m, k in nan.items() if k}
    if nan:
        n = len(next(iter(scores.values())))
        which = ", ".join(f"{m!r} for {k} of {n} rows" for m, k in nan.items())
        raise SVPRuntimeError(
            f"{scorer} produced NaN scores ({which}): its training diverged (NaN or infinite loss); lower "
            "learning_rate, or train in full precision (mixed_precision: 'no')"
        )


def score_positions(scores: Dataset) -> np.ndarray:
    """The ``svp_index`` of a score table, checked to be a permutation of ``0..len(scores)-1`` (the scored rows'
    positions): a clear error rather than scores attached to the wrong rows."""
    if INDEX_COLUMN not in scores.column_names:
        raise SVPConfigError(f"scores have no {INDEX_COLUMN!r} column: pass a table from svp_hf.score or load_scores")
    index = column_values(scores, INDEX_COLUMN, np.int64)
    n = len(index)
    if n and (index.min() < 0 or index.max() >= n or len(np.unique(index)) != n):
        raise SVPConfigError(
            f"the scores' {INDEX_COLUMN!r} is not a permutation of the row positions 0..{n - 1} of the scored dataset; "
            "pass the score table svp_hf.score (or load_scores) returned for this dataset"
        )
    return index


STREAM_INSPECTION_ROWS = 1000


def prepare_inputs(
    dataset: Union[Dataset, IterableDataset],
    model_name: str,
    columns: Dict[str, Any],
    *,
    trust_remote_code: bool = False,
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
        return family, inspect_dataset(head, family.modality, partial=True, **columns)
    info = inspect_dataset(dataset, family.modality, **columns)
    check_models_against_data(info, [model_name], trust_remote_code=trust_remote_code)
    if info.modality == "image" and small_images(info):
        check_images(dataset, info)  # the decode-once pass: an undecodable row stops here, before any training
    return family, info


def load_proxy(proxy: ModelSettings, info: DataInfo, n: Optional[int], *, signals: Sequence[str] = ()) -> TrainResult:
    """The proxy saved at ``proxy.checkpoint``, with its training history and the training `signals` it recorded."""
    weights, _ = resolve_model_checkpoint(proxy.checkpoint)
    state, recorded = checkpoint_signals(proxy.checkpoint, signals, n)
    model = load_model_weights(create_model(proxy.name, info, pretrained=False), weights)
    return TrainResult(model, list(state.get("history", [])), recorded)


def check_proxy_checkpoint(
    proxy: ModelSettings, info: DataInfo, signals: Sequence[str], n: Optional[int]
) -> Dict[str, Any]:
    """Pre-flight for ``proxy.checkpoint``: its weights fit the proxy's architecture and it recorded every training
    signal in `signals` (for `n` rows); returns its training state (history, signals)."""
    weights, _ = resolve_model_checkpoint(proxy.checkpoint)
    load_model_weights(
        create_model(proxy.name, info, pretrained=False, trust_remote_code=proxy.trust_remote_code), weights
    )
    state, _ = checkpoint_signals(proxy.checkpoint, signals, n)
    return state


def checkpoint_signals(proxy_checkpoint: str, signals: Sequence[str], n: Optional[int] = None):
    """The training state saved with `proxy_checkpoint` and the training `signals` restored from it, checked to hold
    every one of them (for `n` rows when known): a clear error before anything is trained when a method cannot be
    scored from it."""
    _, state_folder = resolve_model_checkpoint(proxy_checkpoint)
    fix = "give the folder of a proxy checkpoint written by svp_hf, or its weights file alone"
    state = load_training_state(state_folder, fix) if state_folder else {}
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


def train_and_score(
    dataset: Union[Dataset, IterableDataset],
    proxy: ModelSettings,
    scoring: ScoringSettings,
    *,
    family: ModelFamily,
    info: DataInfo,
    accelerator: Accelerator,
    eval_dataset: Optional[Dataset] = None,
    checkpoint_dir: Optional[str] = None,
    keep_checkpoints: bool = True,
) -> ScoringRun:
    """Train `proxy` on `dataset` (or load ``proxy.checkpoint``) and score it with every one of ``scoring.methods``;
    evaluate the proxy on `eval_dataset` if given.

    With `checkpoint_dir`, the proxy is checkpointed under ``checkpoint_dir/proxy`` (see :func:`train_model`) and finished score
    shards are kept under ``checkpoint_dir/scores``; calling again with the same settings resumes after them.
    `keep_checkpoints` false: the caller deletes them once its run ends, so the proxy's final weights are saved only
    when their save costs at most about a tenth of the training it protects.
    """
    chosen = resolve_methods(scoring.methods)
    dataset = keep_previous_columns(dataset)  # row identity is positional: an incoming svp_index is data, not ids
    streaming = isinstance(dataset, IterableDataset)
    if streaming and not proxy.checkpoint:
        raise SVPConfigError(
            "a streaming dataset can be scored, not trained on: give a trained proxy as proxy_checkpoint"
        )
    set_seed(int(scoring.seed))
    timings: Dict[str, float] = {}
    if not proxy.checkpoint:
        dataset = add_index(dataset)
    trained = obtain_proxy(
        dataset,
        proxy,
        family,
        info,
        accelerator,
        signals=training_signals(chosen),
        checkpoint_dir=checkpoint_dir,
        timings=timings,
        keep_last=keep_checkpoints,
    )
    start = time.perf_counter()
    result = score_examples(
        trained.model,
        family,
        dataset,
        info,
        chosen,
        accelerator,
        batch_size=scoring.batch_size,
        seed=scoring.seed,
        signals=trained.signals,
        kcenter_chunk_size=scoring.kcenter_chunk_size,
        kcenter_pool_size=scoring.kcenter_pool_size,
        kcenter_max_memory=scoring.kcenter_max_memory,
        shard_size=scoring.shard_size,
        shard_dir=os.path.join(checkpoint_dir, "scores") if checkpoint_dir else None,
        num_workers=scoring.num_workers,
    )
    timings["scoring"] = time.perf_counter() - start
    check_finite_scores(result.scores, f"proxy {proxy.name!r}")
    proxy_accuracy = None
    if eval_dataset is not None:
        proxy_accuracy = evaluate_accuracy(
            trained.model,
            family,
            eval_dataset,
            info,
            accelerator,
            batch_size=scoring.batch_size,
            desc="evaluate proxy",
            num_workers=scoring.num_workers,
        )
    run = ScoringRun(
        scores_dataset(dataset, info, result.scores, labels=result.labels),
        info,
        trained.model,
        family,
        trained.history,
        proxy_accuracy,
        timings,
        model_name=proxy.name,
    )
    if accelerator.is_main_process:
        eval_labels = labels_of(eval_dataset, info) if eval_dataset is not None else None
        run.quality = proxy_quality(run, result.labels, eval_labels)
    return run


def obtain_proxy(
    dataset,
    proxy: ModelSettings,
    family: ModelFamily,
    info: DataInfo,
    accelerator: Accelerator,
    *,
    signals: Sequence[str],
    checkpoint_dir: Optional[str],
    timings: Dict[str, float],
    keep_last: bool = True,
) -> TrainResult:
    """The proxy loaded from ``proxy.checkpoint``, or built and trained on `dataset` (its seconds, building it
    included, in ``timings["proxy_training"]``: selection pays for both); `keep_last`: see :func:`train_model`."""
    if proxy.checkpoint:
        n = None if isinstance(dataset, IterableDataset) else len(dataset)
        return load_proxy(proxy, info, n, signals=signals)
    start = time.perf_counter()
    model = create_model(proxy.name, info, pretrained=proxy.pretrained, trust_remote_code=proxy.trust_remote_code)
    built = time.perf_counter() - start
    trained = train_model(
        model,
        family,
        dataset,
        info,
        proxy.training,
        accelerator,
        signals=signals,
        desc=f"proxy {proxy.name}",
        checkpoint_dir=os.path.join(checkpoint_dir, "proxy") if checkpoint_dir else None,
        keep_last=keep_last,
    )
    timings["proxy_training"] = built + trained.seconds
    return trained


@dataclass
class FreshModel:
    """An untrained model as :func:`build_model` built it from a seed, with the torch RNG state its construction left:
    :func:`seeded_model` hands it over instead of building the same model again (the pre-check builds the target to
    probe it; a large hashed table or a pretrained checkpoint costs more to build than the probe's steps)."""

    settings: ModelSettings
    info: DataInfo
    seed: int
    model: torch.nn.Module
    rng_state: torch.Tensor
    seconds: float  # what building it took

    def builds(self, settings: ModelSettings, info: DataInfo, seed: int) -> bool:
        """Whether this is the model that `settings`, `info` and `seed` build."""
        built = (self.settings.name, self.settings.pretrained, self.settings.trust_remote_code)
        wanted = (settings.name, settings.pretrained, settings.trust_remote_code)
        return built == wanted and self.info == info and self.seed == int(seed)


def build_model(settings: ModelSettings, info: DataInfo, seed: int) -> FreshModel:
    """`settings`' model built from seed `seed`, as :func:`seeded_model` builds it, and timed."""
    start = time.perf_counter()
    model = seeded_model(settings, info, seed)
    return FreshModel(settings, info, int(seed), model, torch.get_rng_state(), time.perf_counter() - start)


def seeded_model(
    settings: ModelSettings, info: DataInfo, seed: int, fresh: Optional[FreshModel] = None
) -> torch.nn.Module:
    """`settings`' model as built from seed `seed`, with the global RNGs where building it leaves them: `fresh` when it
    is that model (its RNG state restored: what follows draws exactly as after building it again), else built."""
    set_seed(int(seed))  # the model starts the same whatever ran before (or was skipped, when resumed)
    if fresh is not None and fresh.builds(settings, info, seed):
        torch.set_rng_state(fresh.rng_state)
        return fresh.model
    return create_model(
        settings.name, info, pretrained=settings.pretrained, trust_remote_code=settings.trust_remote_code
    )


# Elements of each parameter read by weights_digest at most: an optimizer that moves weights moves nearly all of a
# dense parameter's (reading all of a 2M-row fastText table twice would cost a third of building it).
DIGEST_SAMPLE = 4096


def weights_digest(model: torch.nn.Module) -> Tuple[float, ...]:
    """A float64 sum of up to :data:`DIGEST_SAMPLE` evenly spaced elements of each parameter: how a probe that must
    leave the weights as built (at learning rate 0) is checked to have done so. It catches an optimizer that moves
    weights at learning rate 0 or a non-finite update; the sparse rows fastText's SGD touches are left exactly by
    SGD's own arithmetic (a step scaled by 0)."""
    digest = []
    with torch.no_grad():
        for p in model.parameters():
            flat = p.detach().reshape(-1)
            step = max(flat.numel() // DIGEST_SAMPLE, 1)
            digest.append(float(flat[::step].sum(dtype=torch.float64)))
    return tuple(digest)


def fit_model(
    model: ModelSettings,
    dataset: Dataset,
    info: DataInfo,
    accelerator: Accelerator,
    *,
    seed: int,
    evaluation: Optional[Dataset] = None,
    checkpoint_dir: Optional[str] = None,
    desc: Optional[str] = None,
    fresh: Optional[FreshModel] = None,
    keep_last: bool = True,
) -> Tuple[TrainResult, Optional[float]]:
    """A fresh `model` trained on `dataset` from seed `seed` (checkpointed under `checkpoint_dir`), and its accuracy on
    `evaluation` when given: how a target is trained on the rows selection kept. `fresh`: that model already built
    from that seed (:func:`seeded_model`); `keep_last`: see :func:`train_model`."""
    family = resolve_family(model.name)
    created = seeded_model(model, info, seed, fresh)
    desc = desc or f"target {model.name}"
    trained = train_model(
        created,
        family,
        dataset,
        info,
        model.training,
        accelerator,
        desc=desc,
        checkpoint_dir=checkpoint_dir,
        keep_last=keep_last,
    )
    accuracy = None
    if evaluation is not None:
        accuracy = evaluate_accuracy(
            trained.model,
            family,
            evaluation,
            info,
            accelerator,
            batch_size=model.training.batch_size,
            desc=f"evaluate {desc}",
            num_workers=model.training.num_workers,
        )
    return trained, accuracy


def scores_dataset(
    dataset: Union[Dataset, IterableDataset],
    info: DataInfo,
    scores: Dict[str, np.ndarray],
    *,
    labels: Optional[np.ndarray] = None,
) -> Dataset:
    """`svp_index`, label and one float column per method, as a Dataset (`labels` default to the dataset's)."""
    label_feature = dataset.features[info.label_column] if dataset.features else None
    if not isinstance(label_feature, ClassLabel):
        label_feature = Value("int64")
    labels = labels_of(dataset, info) if labels is None else np.asarray(labels, dtype=np.int64)
    features = Features({INDEX_COLUMN: Value("int64"), "label": label_feature, **{m: Value("float64") for m in scores}})
    data = {INDEX_COLUMN: np.arange(len(labels), dtype=np.int64), "label": labels}
    data.update({m: np.asarray(v, dtype=np.float64) for m, v in scores.items()})
    # Cast from Arrow's own types: from_dict(features=...) would encode the labels one row at a time.
    with quiet_datasets():
        return Dataset.from_dict(data).cast(features)


def method_values(scores: Dataset, method: str) -> np.ndarray:
    if method not in scores.column_names:
        scored = [c for c in scores.column_names if c not in (INDEX_COLUMN, "label")]
        raise SVPConfigError(f"scores have no column for method {method!r} (scored: {scored}); score it first")
    return column_values(scores, method, np.float64)


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
    function of the scores, labels, fraction and seed (see :mod:`svp_hf.selection.strategies`). ``auto`` needs the data: use
    :func:`select` or :func:`prune`, or pass the strategy :func:`choose_strategy` returned."""
    spec = get_method(method)
    check_strategy(strategy)
    if strategy == "random" and method not in scores.column_names:  # unscored (the proxy was never trained)
        values = np.zeros(len(scores), dtype=np.float64)  # random ignores the values: only their count is read
    else:
        values = method_values(scores, method)
    n_keep = n_to_keep(fraction, len(scores))
    if strategy == "coverage":
        check_coverage_beta(coverage_beta, fraction)
    labels = column_values(scores, "label") if class_balanced or strategy == "coverage" else None
    positions = apply_strategy(
        strategy,
        values,
        n_keep,
        descending=spec.descending,
        labels=labels,
        class_balanced=class_balanced,
        seed=seed,
        coverage_beta=coverage_beta,
    )
    return score_positions(scores)[positions]


def auto_check(
    dataset: Dataset,
    scores: Dataset,
    selection: SelectionSettings,
    proxy: ModelSettings,
    *,
    family: ModelFamily,
    info: DataInfo,
    accelerator: Accelerator,
    epochs: Optional[int] = None,
    eval_batch_size: int = 256,
    plan: Optional[CheckPlan] = None,
    proxy_barely_beats_chance: Optional[bool] = None,
    agree=None,
) -> AutoDecision:
    """``strategy: auto``'s check for `dataset` and its `scores`: fresh `proxy` models (trained for `epochs`, default
    ``selection.auto.epochs`` or the proxy's) on each candidate subset, sized to `plan` when budgeted (see
    :mod:`svp_hf.stages.auto`)."""
    spec = get_method(selection.method)
    dataset = keep_previous_columns(dataset)
    values = method_values(scores, selection.method)
    if len(values) != len(dataset):
        raise SVPConfigError(f"scores have {len(values)} rows but the dataset has {len(dataset)}; score this dataset")
    by_index = np.empty(len(values))
    by_index[score_positions(scores)] = values
    epochs = int(epochs or selection.auto.epochs or proxy.epochs)
    config = dataclasses.replace(proxy.training, epochs=epochs)
    trainer = proxy_trainer(
        dataset,
        model_name=proxy.name,
        family=family,
        info=info,
        config=config,
        accelerator=accelerator,
        pretrained=proxy.pretrained,
        trust_remote_code=proxy.trust_remote_code,
        eval_batch_size=int(eval_batch_size),
    )
    decision = choose_strategy(
        dataset,
        by_index,
        labels_of(dataset, info),
        descending=spec.descending,
        fraction=selection.fraction,
        train_candidate=trainer,
        seed=selection.seed,
        class_balanced=selection.class_balanced,
        holdout=selection.auto.holdout,
        seeds=selection.auto.seeds,
        coverage_beta=selection.coverage_beta,
        plan=plan,
        proxy_barely_beats_chance=proxy_barely_beats_chance,
        agree=agree,
    )
    decision.epochs = config.epochs
    return decision


def subset_with_scores(dataset: Dataset, scores: Dataset, method: Optional[str], keep: np.ndarray) -> Dataset:
    """The rows `keep` (positions) of `dataset` with ``svp_score`` (`method`'s score; no such column when `method` is
    ``None``: a run whose proxy was never trained has no score to give) and ``svp_index`` (the row's position in
    `dataset`); an incoming ``svp_index``/``svp_score`` is kept as ``svp_index_previous``/``svp_score_previous`` (see
    :func:`svp_hf.data.columns.keep_previous_columns`).

    No row is copied when `dataset` has no indices mapping: the columns are added to every row and the kept ones
    selected (an indices mapping, written out when the subset is saved). On a dataset that already has one, only the
    kept rows are copied (``add_column`` writes out a mapped dataset's rows)."""
    if len(scores) != len(dataset):
        raise SVPConfigError(f"scores have {len(scores)} rows but the dataset has {len(dataset)}; score this dataset")
    dataset = keep_previous_columns(dataset)
    keep = np.asarray(keep, dtype=np.int64)
    columns: Dict[str, Tuple[np.ndarray, Value]] = {}
    if method is not None:
        by_index = np.empty(len(scores), dtype=np.float64)
        by_index[score_positions(scores)] = column_values(scores, method, np.float64)
        columns[SCORE_COLUMN] = (by_index, Value("float64"))
    columns[INDEX_COLUMN] = (np.arange(len(dataset), dtype=np.int64), Value("int64"))
    mapped = has_indices_mapping(dataset)
    with quiet_datasets():
        pruned = dataset.select(keep) if mapped else dataset
        for name, (values, feature) in columns.items():
            pruned = pruned.add_column(name, values[keep] if mapped else values, feature=feature)
        return pruned if mapped else pruned.select(keep)


__all__ = [
    "ScoringRun",
    "prepare_inputs",
    "load_proxy",
    "checkpoint_signals",
    "check_proxy_checkpoint",
    "labels_of",
    "train_and_score",
    "fit_model",
    "FreshModel",
    "build_model",
    "seeded_model",
    "weights_digest",
    "obtain_proxy",
    "auto_check",
    "scores_dataset",
    "method_values",
    "selected_indices",
    "subset_with_scores",
    "score_positions",
    "check_finite_scores",
    "proxy_quality",
    "chance_accuracy",
    "barely_beats_chance",
]
