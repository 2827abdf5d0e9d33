"""The Python API, a thin front end over the stages: ``score`` (train the proxy once, score every method),
``select`` (a pure selection from scores), ``prune`` (the two in one call), ``choose`` (``auto``'s check),
``active_learn`` (simulated active learning) and ``ask`` / ``tell`` / ``labelled_set`` (active learning with real
labellers). Nothing inside the package imports this module."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
from accelerate import Accelerator
from datasets import Dataset, IterableDataset

from .account import run_account
from .active.labelling import (
    LabellingState,
    batch_rows,
    check_session_dataset,
    check_session_dir,
    labelled_rows,
    labelling_dataset,
    tell,
)
from .active.loop import (
    ActiveResult,
    build_selectors,
    check_active_arguments,
    check_new_session,
    labelling_round,
    labelling_selector,
    open_session,
    pending_rows,
    run_active_learning,
    session_settings,
)
from .config.arguments import ActiveArguments, DataArguments, RunArguments, SelectionArguments
from .config.checks import check_schedule, check_seed
from .data.columns import check_same_columns, find_label_column, inspect_dataset
from .engine.training import make_accelerator
from .errors import SVPConfigError
from .publish.output import check_output_dir
from .record import describe_selection, scores_source
from .selection.methods import resolve_methods
from .selection.strategies import AUTO, DEFAULT_STRATEGY, check_strategy
from .stages.auto import AutoDecision
from .stages.orchestrator import Pruner
from .stages.preflight import check_models_against_data, check_recipe
from .stages.proxy import score_positions, selected_indices, subset_with_scores
from .stages.roles import active_settings, selector_models, stage_settings
from .utils.log import get_logger

logger = get_logger(__name__)

COLUMN_KEYS = tuple(f.name for f in fields(DataArguments) if f.name.endswith("_column"))


SELECTION_KEYS = tuple(f.name for f in fields(SelectionArguments))
ACTIVE_KEYS = tuple(f.name for f in fields(ActiveArguments))
LABELLING_KEYS = ("labels_from", "class_names", "allow_pending", "finish")
TARGET_KEYS = tuple(f.name for f in fields(RunArguments) if f.name.startswith("target_"))


def _check_seed(seed: Any) -> int:
    """`seed` as an int, or an :class:`SVPConfigError` when it is not an integer numpy and torch can seed with (the
    range is :func:`svp_hf.config.checks.check_seed`'s, as for a recipe)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise SVPConfigError(f"seed must be an integer, got {seed!r}")
    return check_seed(int(seed))


def _selection_arguments(**kwargs) -> SelectionArguments:
    """The recipe's selection keys, checked (the seed's range included)."""
    args = SelectionArguments(**kwargs)
    _check_seed(args.seed)
    return args


def _map_style(dataset: Any, what: str) -> None:
    """A clear error when `dataset` is not a ``datasets.Dataset`` (`what` says which call needs one, and why)."""
    if isinstance(dataset, IterableDataset):
        raise SVPConfigError(
            f"{what} needs a datasets.Dataset, not a streaming IterableDataset: score a stream with "
            "svp_hf.score(..., proxy_checkpoint=<a trained proxy>), or load the dataset without streaming"
        )
    if not isinstance(dataset, Dataset):
        raise SVPConfigError(f"{what} needs a datasets.Dataset, got {type(dataset).__name__}")


def _as_scores(scores: Any) -> Dataset:
    """A score table as a ``datasets.Dataset``: one from :func:`score` or :func:`svp_hf.publish.output.load_scores`, or
    the same columns in a pandas DataFrame (e.g. ``pd.read_parquet("scores.parquet")``)."""
    if isinstance(scores, Dataset):
        return scores
    if isinstance(scores, pd.DataFrame):
        try:
            return Dataset.from_pandas(scores, preserve_index=False)
        except Exception as err:  # columns arrow cannot type
            raise SVPConfigError(
                f"scores: the DataFrame cannot be read as a score table ({type(err).__name__}: {err})"
            ) from None
    raise SVPConfigError(
        f"scores must be the table svp_hf.score (or load_scores) returns, a datasets.Dataset or a pandas DataFrame "
        f"with its columns, got {type(scores).__name__}"
    )


def _check_scores_labels(dataset: Dataset, scores: Dataset, label_column: Optional[str]) -> None:
    """A clear error when `scores` were computed on another dataset than `dataset`: their ``label`` column (by
    ``svp_index``) must be the dataset's labels, row for row."""
    if "label" not in scores.column_names:
        raise SVPConfigError("scores have no 'label' column: pass the table svp_hf.score (or load_scores) returned")
    column, _, _ = find_label_column(dataset, label_column)
    ours = np.asarray(dataset.with_format("arrow")[column].to_numpy(zero_copy_only=False), dtype=np.int64)
    theirs = np.empty(len(scores), dtype=np.int64)
    theirs[score_positions(scores)] = np.asarray(
        scores.with_format("arrow")["label"].to_numpy(zero_copy_only=False), dtype=np.int64
    )
    differ = np.flatnonzero(ours != theirs)
    if len(differ):
        i = int(differ[0])
        raise SVPConfigError(
            f"scores do not belong to this dataset: their labels differ from its label column {column!r} at "
            f"{len(differ)} of {len(ours)} rows (e.g. row {i}: {theirs[i]} in the scores, {ours[i]} in the dataset); "
            "pass the scores computed for this dataset (svp_hf.score), or name its label_column"
        )


def _split_kwargs(kwargs: Dict[str, Any]):
    unknown = sorted(set(kwargs) - set(COLUMN_KEYS) - set(SELECTION_KEYS))
    if unknown:
        raise SVPConfigError(f"unknown argument(s) {unknown}; known: {sorted(COLUMN_KEYS + SELECTION_KEYS)}")
    columns = {k: v for k, v in kwargs.items() if k in COLUMN_KEYS}
    selection = {k: v for k, v in kwargs.items() if k in SELECTION_KEYS}
    return columns, selection


def _pruner(
    kwargs: Dict[str, Any], accelerator: Optional[Accelerator], target: Optional[str] = None, **selection
) -> Tuple[Pruner, Dict[str, Any]]:
    """The API's keywords as a :class:`~svp_hf.stages.orchestrator.Pruner` (the recipe's selection keys, checked; with
    `target`, its ``target_*`` keys too) and the dataset's column keywords."""
    run_args = None
    if target is not None:
        target_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in TARGET_KEYS}
        run_args = RunArguments(target=target, **target_kwargs)
    columns, extra = _split_kwargs(kwargs)
    args = _selection_arguments(**selection, **extra)
    check_recipe(args, run_args)
    proxy, target_settings, scoring, selection_settings = stage_settings(args, run_args)
    return Pruner(proxy, scoring, selection_settings, target=target_settings, accelerator=accelerator), columns


def score(
    dataset: Union[Dataset, IterableDataset],
    proxy: str = "resnet20",
    methods: Union[str, Sequence[str]] = ("least_confidence",),
    *,
    eval_dataset: Optional[Dataset] = None,
    accelerator: Optional[Accelerator] = None,
    return_metrics: bool = False,
    **kwargs,
):
    """Train `proxy` on `dataset` once and return every method's per-example scores.

    Args:
        dataset: The rows to score (a ``datasets.Dataset``, or a streaming ``IterableDataset`` with a
            ``proxy_checkpoint``).
        proxy: The proxy model (a timm name, ``fasttext``, a transformers folder or Hub id, ``config:MODEL_TYPE``).
        methods: One method or several (see :func:`svp_hf.list_methods`); each gets a score column.
        eval_dataset: Evaluate the proxy on these rows.
        accelerator: Where to run (default: a new ``Accelerator``).
        return_metrics: Also return the proxy's quality, history, timings and end-to-end account.
        **kwargs: The recipe's keys: ``proxy_epochs``, ``batch_size``, ``learning_rate``, ``optimizer``,
            ``lr_schedule``, ``seed``, ``image_column``, ``text_column`` (one column or several, joined),
            ``label_column``, ``proxy_checkpoint`` (score with a trained proxy), ``kcenter_pool_size``, ...

    Returns:
        A ``datasets.Dataset`` with ``svp_index`` (row in `dataset`), ``label`` and one float column per method; with
        ``return_metrics=True``, ``(scores, metrics)``: ``metrics["proxy_accuracy"]`` (``None`` without
        `eval_dataset`), ``chance_accuracy``, ``barely_beats_chance``, ``proxy_history``, ``timings`` and
        ``end_to_end`` (scoring's cost against the proxy's own training; ``None`` with a ``proxy_checkpoint``). A
        proxy that barely beats chance, or whose forgetting scores are mostly infinite, is warned about.
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    resolve_methods(methods)
    pruner, columns = _pruner(kwargs, accelerator, proxy=proxy, method=methods[0], score_methods=methods[1:] or None)
    run = pruner.prepare(dataset, eval_dataset, columns=columns, selecting=False).score()
    if not return_metrics:
        return run.scores
    metrics = run.metrics()
    metrics["end_to_end"] = run_account(metrics["timings"], n_total=len(run.scores), n_kept=len(run.scores))
    return run.scores, metrics


def _given_scores(dataset: Any, scores: Any, label_column: Optional[str], what: str) -> Dataset:
    """`scores` as a table, checked to belong to `dataset` (a map-style dataset): same rows, same labels."""
    _map_style(dataset, what)
    scores = _as_scores(scores)
    if len(scores) != len(dataset):
        raise SVPConfigError(f"scores have {len(scores)} rows but the dataset has {len(dataset)}; score this dataset")
    _check_scores_labels(dataset, scores, label_column)
    return scores


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
    """Run ``strategy: auto``'s check for `dataset` and its `scores`.

    Args:
        dataset: The scored rows.
        scores: :func:`score`'s table for `dataset` (or a pandas DataFrame with its columns).
        method: The method whose scores the candidates select by.
        fraction: Share of the rows kept.
        proxy: The model each candidate trains.
        accelerator: Where to run (default: a new ``Accelerator``).
        **kwargs: The recipe's keys (``proxy_epochs``, ``auto_epochs``, ``auto_seeds``, ``auto_holdout``, ``seed``,
            ``image_column``, ...). ``selection_budget`` sizes the check to that share of the proxy's full-data
            training (estimated from a probe); without it the check runs whole, as asked.

    Returns:
        The :class:`~svp_hf.stages.auto.AutoDecision`: ``.strategy``, ``.coverage_beta`` and the evidence
        (``.candidates``: each one's held-out accuracies, ``.margin_over_random``, ``.spread``).
    """
    scores = _given_scores(dataset, scores, kwargs.get("label_column"), "choose")
    kwargs.setdefault("selection_budget", None)
    pruner, columns = _pruner(kwargs, accelerator, proxy=proxy, method=method, fraction=fraction, strategy=AUTO)
    pruner.prepare(dataset, columns=columns).set_scores(scores)
    decision = pruner.choose_strategy()
    assert decision is not None  # the strategy is auto
    return decision


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
    label_column: Optional[str] = None,
    accelerator: Optional[Accelerator] = None,
    **kwargs,
) -> Dataset:
    """Keep `fraction` of `dataset` by `method`'s scores with `strategy`, without training again (``auto``
    excepted: it retrains `proxy` on candidate subsets, with the recipe's keyword arguments; see :func:`choose`).

    Args:
        dataset: The scored rows.
        scores: :func:`score`'s table for `dataset` (or :func:`svp_hf.publish.output.load_scores`'s, or a pandas DataFrame
            with its columns); its labels are checked against the dataset's `label_column` (found as :func:`score`
            finds it when not given).
        method: The method whose scores rank the rows.
        fraction: Share of the rows kept, in (0, 1].
        strategy: ``top``, ``bottom``, ``coverage``, ``random`` or ``auto``.
        class_balanced: Keep the same share of every class.
        seed: Seed of random selection and tie-breaking.
        coverage_beta: Share of hardest rows ``coverage`` drops first (default: follows the prune rate).
        proxy: The model ``auto``'s candidates train (needed for ``auto`` only).
        label_column: The dataset's label column.
        accelerator: Where ``auto`` runs.

    Returns:
        The kept rows in their original order with all original columns, plus ``svp_score`` (the method's score) and
        ``svp_index`` (the row's index in `dataset`).
    """
    scores = _given_scores(dataset, scores, label_column, "select")
    seed = _check_seed(seed)
    check_strategy(strategy)
    requested = strategy
    if strategy == AUTO:
        if not proxy:
            raise SVPConfigError(
                "strategy 'auto' retrains the proxy on candidate subsets: pass proxy= (and its training keywords), "
                "or choose a strategy that needs no training (coverage, top, bottom, random)"
            )
        columns = {"label_column": label_column} if label_column else {}
        decision = choose(
            dataset,
            scores,
            method,
            fraction,
            proxy=proxy,
            accelerator=accelerator,
            class_balanced=class_balanced,
            seed=seed,
            coverage_beta=coverage_beta,
            **columns,
            **kwargs,
        )
        strategy, coverage_beta = decision.strategy, decision.coverage_beta
    elif kwargs:
        raise SVPConfigError(f"unknown argument(s) {sorted(kwargs)}: only strategy='auto' takes training keywords")
    keep = selected_indices(
        scores,
        method,
        fraction,
        strategy=strategy,
        class_balanced=class_balanced,
        seed=seed,
        coverage_beta=coverage_beta,
    )
    record = {
        "method": method,
        "fraction": fraction,
        "strategy": requested,
        "selected_strategy": strategy,
        "coverage_beta": coverage_beta,
        "n_total": len(dataset),
        "n_selected": len(keep),
        "scores_source": scores_source(scores),
    }
    return describe_selection(subset_with_scores(dataset, scores, method, keep), record)


def prune(
    dataset: Dataset,
    proxy: str = "resnet20",
    fraction: float = 0.5,
    method: str = "least_confidence",
    *,
    strategy: str = DEFAULT_STRATEGY,
    target: Optional[str] = None,
    eval_dataset: Optional[Dataset] = None,
    accelerator: Optional[Accelerator] = None,
    return_metrics: bool = False,
    **kwargs,
):
    """Train `proxy`, score `dataset` with `method` and keep `fraction` of it with `strategy`.

    Args:
        dataset: The rows to prune (a ``datasets.Dataset``).
        proxy: The proxy model.
        fraction: Share of the rows kept, in (0, 1].
        method: The method whose scores rank the rows.
        strategy: ``auto`` (default: random unless a strategy over the scores proves better on a held-out slice,
            with a check sized to ``selection_budget``, 0.1 of the proxy's own training here since no target is
            trained; see :mod:`svp_hf.stages.auto`), ``coverage``, ``top``, ``bottom`` or ``random``.
        target: The model the kept rows are for (not trained here; its ``target_*`` keys, e.g. ``target_epochs``, go
            in `kwargs`): with ``auto``, ``selection_budget`` is then a share of the target's full-data training,
            estimated from a probe, and the proxy is priced against it before it trains: when its training and
            scoring alone would exceed the budget, it is not trained and a seeded random subset is kept (no
            ``svp_score`` column; ``metrics["scores_source"]["source"]`` is ``"not_scored"``).
        eval_dataset: Evaluate the proxy on these rows.
        accelerator: Where to run (default: a new ``Accelerator``).
        return_metrics: Also return the run's record.
        **kwargs: The recipe's keys, as for :func:`score` (``selection_budget``, ``auto_seeds``, ... included).

    Returns:
        The kept rows with ``svp_score`` and ``svp_index``; with ``return_metrics=True``, ``(pruned, metrics)``: the
        metrics of :func:`score` plus ``selected_strategy``, ``coverage_beta``, ``auto`` (the decision),
        ``n_total``, ``n_selected`` and ``end_to_end`` (what selection cost against the proxy's own training; see
        :mod:`svp_hf.account`). When ``auto`` keeps a random subset, one WARNING line says so and why.
    """
    _map_style(dataset, "prune (which trains on the dataset and subsets it)")
    pruner, columns = _pruner(
        kwargs, accelerator, target, proxy=proxy, method=method, fraction=fraction, strategy=strategy
    )
    result = pruner.prepare(dataset, eval_dataset, columns=columns).prune()
    metrics = result.to_metrics()
    keys = (
        "method",
        "fraction",
        "strategy",
        "selected_strategy",
        "coverage_beta",
        "proxy",
        "n_total",
        "n_selected",
        "scores_source",
    )
    pruned = describe_selection(result.selected, {k: metrics[k] for k in keys})
    return (pruned, metrics) if return_metrics else pruned


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

    Args:
        dataset: The pool; its label column is the oracle.
        proxy: The cheap model that selects (``selector="proxy"`` or ``"both"``).
        target: The model trained on every final labelled set (needed for ``selector="target"`` or ``"both"``).
        initial_size: Rows of the seeded random initial labelled set (round 0).
        budgets: The labelled-set size after each round, increasing.
        method: How the selector ranks the unlabelled rows (a method that needs no labels or training history).
        selector: ``"proxy"``, ``"target"`` or ``"both"`` (both loops from the same initial set).
        eval_dataset: Evaluate the target (and, with ``eval_each_round``, the selector each round) on these rows.
        accelerator: Where to run (default: a new ``Accelerator``).
        **kwargs: The recipe's keys (``proxy_epochs``, ``target_epochs``, ``warm_start``, ``eval_each_round``,
            ``initial_class_balanced``, ``batch_size``, ``seed``, ``image_column``, ``label_column``, ...).

    Returns:
        An :class:`ActiveResult`: ``result.labelled`` is the labelled rows with ``svp_index``, ``svp_round`` (0 = initial
        set) and ``svp_score``; ``result.runs[role].rounds`` the per-round records; ``result.speedup`` the data-selection
        speedup when both loops ran.
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
    active = ActiveArguments(
        initial_size=initial_size,
        budgets=list(budgets) if budgets is not None else None,
        selector=selector,
        **active_kwargs,
    )
    args = _selection_arguments(proxy=proxy, method=method, **selection)
    run_args = RunArguments(target=target, **target_kwargs)
    _map_style(dataset, "active_learn")
    check_active_arguments(args, run_args, active)
    selectors = build_selectors(selector_models(args, run_args, active))
    info = inspect_dataset(dataset, next(iter(selectors.values())).family.modality, **columns)
    if eval_dataset is not None:
        check_same_columns(eval_dataset, info)
    return run_active_learning(
        dataset,
        active_settings(args, active),
        selectors,
        info=info,
        accelerator=accelerator or make_accelerator(),
        eval_dataset=eval_dataset,
    )


def _labelling_arguments(proxy, method, budgets, initial_size, target, output_dir, kwargs):
    active_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in ACTIVE_KEYS}
    target_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in TARGET_KEYS}
    columns, selection = _split_kwargs(kwargs)
    active = ActiveArguments(initial_size=initial_size or 1, budgets=budgets, **active_kwargs)
    args = _selection_arguments(proxy=proxy, method=method, **selection)
    run_args = RunArguments(target=target, output_dir=os.fspath(output_dir), **target_kwargs)
    check_active_arguments(args, run_args, active)
    return columns, active, args, run_args


def resolve_initial_size(active: ActiveArguments, state: LabellingState, given: Optional[int]) -> None:
    """`initial_size` left unset: 1000 (as :func:`active_learn`) when nothing is labelled, unused otherwise."""
    if given is None:
        active.initial_size = 1 if state.batches else 1000
        check_schedule(None, active.initial_size, active.budgets or [])


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
    empty.

    Args:
        dataset: The pool (labels known so far, nulls to label), or unlabelled rows with `labelled` put before them.
        output_dir: The session's folder (its state, the batches to label, and the result once finished).
        proxy: The model trained on the labelled rows to rank the others.
        budgets: The labelled-set size after each round.
        method: How the proxy ranks the rows to label.
        initial_size: Rows of round 0's seeded random batch (1000 when nothing is labelled and it is not given).
        labelled: A small labelled dataset put before an unlabelled `dataset`.
        class_names: The classes, when `dataset` has no label column.
        target: A target for the session's settings (``selector="target"``).
        eval_dataset: Evaluate the selector on these rows (``eval_each_round``).
        accelerator: Where to run (default: a new ``Accelerator``).
        **kwargs: The recipe's keys, as for :func:`active_learn` (``allow_pending``, ``labels_from``, ...).

    Returns:
        The rows to label, with their original columns, ``svp_index``, ``svp_round`` and ``svp_score``.
    """
    _map_style(dataset, "ask")
    output_dir = os.fspath(output_dir)
    columns, active, args, run_args = _labelling_arguments(
        proxy, method, budgets, initial_size, target, output_dir, kwargs
    )
    selectors = build_selectors(selector_models(args, run_args, active))
    selector = labelling_selector(selectors, active_settings(args, active))
    recorded = session_settings(args, run_args, active)
    if initial_size is None:  # resolved from the session below, and recorded then
        recorded.pop("initial_size")
    pool, info, state = open_session(
        dataset,
        output_dir,
        selector.family.modality,
        columns=columns,
        class_names=class_names or active.class_names,
        labelled=labelled,
        settings=recorded,
    )
    resolve_initial_size(active, state, initial_size)
    state.settings.setdefault("initial_size", active.initial_size)  # a session keeps the size its round 0 used
    settings = active_settings(args, active)  # initial_size resolved
    check_models_against_data(
        info, (args.proxy, run_args.target), trust_remote_code=bool(args.trust_remote_code), evaluation=eval_dataset
    )
    if not LabellingState.exists(output_dir):
        check_output_dir(output_dir, overwrite=False)
        check_session_dir(output_dir, labelling=True)
        check_new_session(state, settings, labels_from=active.labels_from, finish=active.finish)
        state.save(output_dir)
    if active.labels_from:
        tell(output_dir, active.labels_from)
        state = LabellingState.load(output_dir)
    if len(state.pending) and not active.allow_pending:
        rows = pending_rows(pool, state)
        logger.info(
            f"{len(rows)} asked rows are not labelled yet: return them with svp_hf.tell", main_process_only=True
        )
        return rows
    if state.batches and state.next_round > len(active.budgets):
        logger.info(f"every budget of {active.budgets} is asked for and labelled", main_process_only=True)
        return batch_rows(pool, [], state.next_round, None)
    accelerator = accelerator or make_accelerator()
    _, rows, paths = labelling_round(pool, info, state, output_dir, selector, settings, accelerator, eval_dataset)
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
    """The labelled rows of a labelling session: the set to train a target on at any time.

    Args:
        dataset: The session's pool, as given to :func:`ask`.
        output_dir: The session's folder.
        labelled: The labelled dataset given to :func:`ask` before an unlabelled pool, if any.
        class_names: The classes, when the pool has no label column.
        label_column: The pool's label column (found as :func:`ask` finds it when not given).

    Returns:
        The labelled rows with the labels returned so far, ``svp_index``, ``svp_round`` and ``svp_score``.
    """
    pool, column = labelling_dataset(dataset, label_column, class_names, labelled=labelled)
    state = LabellingState.load(os.fspath(output_dir))
    check_session_dataset(state, pool, column, state.class_names)
    return labelled_rows(pool, state)


__all__ = ["score", "select", "prune", "choose", "selected_indices", "active_learn", "ask", "tell", "labelled_set"]
