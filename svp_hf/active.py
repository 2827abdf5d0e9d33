"""Active learning via proxy, from a recipe.

    python -m svp_hf.active recipes/active_quickstart.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.active recipes/active_cifar10.yaml

Runs the loops `selector` asks for (see :mod:`svp_hf.active_learning`) on the training split, trains the target on
each final labelled set and evaluates it on the evaluation split, and writes to `output_dir`: ``dataset/`` (the
labelled set with ``svp_index``, ``svp_round`` and ``svp_score``, plus the untouched evaluation split),
``scores.parquet`` (every pool row's round and score per loop), ``rounds.json``, ``metrics.json`` and ``report.md``
(the card and report, rendered from the metrics by :mod:`svp_hf.card` and :mod:`svp_hf.report`).
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
from accelerate.logging import get_logger
from datasets import Dataset, Value

from .active_learning import ROUND_COLUMN, ActiveResult, build_selectors, check_active_arguments, run_active_learning
from .api import labels_of, scores_dataset, training_metrics
from .config import ACTIVE_DATACLASSES, ActiveArguments, DataArguments, RunArguments, SelectionArguments
from .coreset import (
    job_accelerator,
    load_inspected_splits,
    per_class_counts,
    recipe_main,
    run_provenance,
    with_null_scores,
)
from .output import check_output_dir, write_run
from .pool import UNLABELLED

logger = get_logger(__name__)


def pool_record(result: ActiveResult, dataset: Dataset) -> Dataset:
    """One row per pool example: `svp_index`, label, and for each loop the round it labelled the row in and the score
    (null when that loop never labelled it)."""
    record = scores_dataset(dataset, result.info, {})
    for role, run in result.runs.items():
        rounds, scores = run.pool.rounds(), run.pool.scores()
        record = record.add_column(f"{role}_round", [None if r == UNLABELLED else int(r) for r in rounds], feature=Value("int64"))
        record = record.add_column(f"{role}_score", [None if np.isnan(s) else float(s) for s in scores], feature=Value("float64"))
    return record


def output_splits(result: ActiveResult, train_split: str, evaluation: Optional[Dataset], eval_split: Optional[str]):
    """The labelled set of the first loop as `train_split` (the target-selected one as `<train_split>_target_selected`
    when both ran), and the untouched evaluation split with the same columns (null round and score)."""
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
    start = time.perf_counter()
    accelerator = job_accelerator(run_args)
    check_output_dir(run_args.output_dir, run_args.overwrite_output_dir)
    check_active_arguments(sel_args, run_args, active)
    family = next(iter(build_selectors(sel_args, run_args, active).values())).family
    train, evaluation, info = load_inspected_splits(
        data_args,
        family.modality,
        int(sel_args.seed),
        (sel_args.proxy, run_args.target),
        trust_remote_code=bool(sel_args.trust_remote_code),
    )
    if run_args.report_to:
        settings = {**vars(data_args), **vars(sel_args), **vars(run_args), **vars(active), "hub_token": None}
        # Trackers take scalars only (TensorBoard's hparams): lists, mappings and None are logged as text.
        config = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
        accelerator.init_trackers("svp_hf_active", config=config)

    result = run_active_learning(train, sel_args, run_args, active, info=info, accelerator=accelerator, eval_dataset=evaluation)
    names = info.class_names
    metrics = {
        **run_provenance("active", command, data_args, train, evaluation, family.modality),
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
        **training_metrics(sel_args, run_args),
        "selection_seconds": {role: run.selection_seconds for role, run in result.runs.items()},
        "target_accuracy": {role: run.target_accuracy for role, run in result.runs.items()},
        "target_training_seconds": {role: run.target_training_seconds for role, run in result.runs.items()},
        "speedup": result.speedup,
        "labelled_per_class": {role: per_class_counts(labels_of(run.labelled, info), names) for role, run in result.runs.items()},
        "total_per_class": per_class_counts(labels_of(train, info), names),
        "selector_models": {role: run.model for role, run in result.runs.items()},
        "rounds": {role: run.rounds for role, run in result.runs.items()},
        "target_history": {role: run.target_history for role, run in result.runs.items()},
        "timings": {"active_learning": result.timings["total"], "total": time.perf_counter() - start},
        "num_processes": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        splits = output_splits(result, data_args.train_split, evaluation, data_args.eval_split)
        metrics = write_run(
            run_args.output_dir,
            splits=splits,
            scores=pool_record(result, train),
            metrics=metrics,
            overwrite=run_args.overwrite_output_dir,
            max_shard_size=run_args.max_shard_size,
            extra_files={"rounds.json": metrics["rounds"]},
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
    return recipe_main("svp_hf.active", run_active, ACTIVE_DATACLASSES, argv)


__all__ = ["run_active", "main", "pool_record", "output_splits"]


if __name__ == "__main__":
    main()
