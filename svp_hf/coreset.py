"""Core-set selection via proxy, from a recipe.

    python -m svp_hf.coreset recipes/quickstart.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.coreset recipes/cifar10.yaml

Trains the proxy on the training split, scores every example, keeps `fraction` of them by `method`, optionally
trains `target` on the kept rows and evaluates it, and writes dataset/, scores.parquet and metrics.json to
`output_dir`.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from . import __version__
from .api import labels_of, run_scoring, select, training_config
from .config import RECIPE_DATACLASSES, DataArguments, RunArguments, SelectionArguments, parse_args
from .data import INDEX_COLUMN, SCORE_COLUMN, check_same_columns, get_split, inspect_dataset, load_data
from .errors import SVPConfigError
from .methods import resolve_methods
from .models import create_model, resolve_family
from .output import check_output_dir, default_card, write_run
from .selection import n_to_keep
from .training import evaluate_accuracy, train_model

logger = get_logger(__name__)


def _subsample(ds, n: Optional[int], seed: int):
    return ds if n is None or n >= len(ds) else ds.shuffle(seed=seed).select(range(n)).flatten_indices()


def load_splits(data_args: DataArguments, seed: int):
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files)
    train = _subsample(get_split(data, data_args.train_split, "training"), data_args.max_train_samples, seed)
    evaluation = None
    if data_args.eval_split:
        evaluation = _subsample(get_split(data, data_args.eval_split, "evaluation"), data_args.max_eval_samples, seed)
    return train, evaluation


def load_inspected_splits(data_args: DataArguments, modality: str, seed: int):
    """The training and evaluation splits, and the training split's columns inspected for `modality` (checked to be
    in the evaluation split too)."""
    train, evaluation = load_splits(data_args, seed)
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    info = inspect_dataset(train, modality, **columns)
    if evaluation is not None:
        check_same_columns(evaluation, info)
    return train, evaluation, info


def with_null_scores(evaluation):
    """The unpruned evaluation split with the same columns as the pruned one (one config, one schema):
    `svp_index` is the row's index in the evaluation split and `svp_score` is null."""
    from datasets import Value

    evaluation = evaluation.remove_columns([c for c in (SCORE_COLUMN, INDEX_COLUMN) if c in evaluation.column_names])
    evaluation = evaluation.add_column(SCORE_COLUMN, [None] * len(evaluation), feature=Value("float64"))
    return evaluation.add_column(INDEX_COLUMN, list(range(len(evaluation))), feature=Value("int64"))


def per_class_counts(labels: np.ndarray, names) -> Dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {(names[v] if names else str(v)): int(c) for v, c in zip(values.tolist(), counts.tolist())}


def make_accelerator(run_args: RunArguments) -> Accelerator:
    """The job's Accelerator: the recipe's mixed precision, and its trackers logging under `output_dir`."""
    return Accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=run_args.report_to,
        project_dir=run_args.output_dir if run_args.report_to else None,
    )


def run_coreset(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole core-set job; returns the metrics it wrote."""
    start = time.perf_counter()
    accelerator = make_accelerator(run_args)
    set_seed(int(sel_args.seed))
    # Every check that needs no training, first.
    check_output_dir(run_args.output_dir, run_args.overwrite_output_dir)
    resolve_methods(sel_args.methods)
    family = resolve_family(sel_args.proxy)
    target_family = resolve_family(run_args.target) if run_args.target else None
    if target_family is not None and target_family.modality != family.modality:
        raise SVPConfigError(
            f"proxy {sel_args.proxy!r} reads {family.modality} data but target {run_args.target!r} reads {target_family.modality}"
        )
    train, evaluation, info = load_inspected_splits(data_args, family.modality, int(sel_args.seed))
    n_keep = n_to_keep(sel_args.fraction, len(train))
    if run_args.report_to:
        accelerator.init_trackers("svp_hf_coreset", config={**vars(data_args), **vars(sel_args), **vars(run_args)})

    run = run_scoring(train, sel_args, family=family, info=info, accelerator=accelerator, eval_dataset=evaluation)
    t0 = time.perf_counter()
    pruned = select(train, run.scores, sel_args.method, sel_args.fraction, class_balanced=sel_args.class_balanced, seed=sel_args.seed)
    timings = dict(run.timings, selection=time.perf_counter() - t0)
    assert len(pruned) == n_keep

    target_accuracy, target_history = None, None
    if run_args.target:
        target = create_model(run_args.target, info, pretrained=bool(sel_args.pretrained))
        config = training_config(sel_args, epochs=run_args.target_epochs, learning_rate=run_args.target_learning_rate)
        result = train_model(target, target_family, pruned, info, config, accelerator, desc=f"target {run_args.target}")
        timings["target_training"] = result.seconds
        target_history = result.history
        if evaluation is not None:
            target_accuracy = evaluate_accuracy(result.model, target_family, evaluation, info, accelerator, desc="evaluate target")
    timings["total"] = time.perf_counter() - start

    names = info.class_names
    metrics = {
        "svp_hf_version": __version__,
        "command": command,
        "dataset_name": data_args.dataset_name,
        "train_split": data_args.train_split,
        "eval_split": data_args.eval_split,
        "n_total": len(train),
        "n_selected": len(pruned),
        "method": sel_args.method,
        "scored_methods": sel_args.methods,
        "fraction": sel_args.fraction,
        "class_balanced": sel_args.class_balanced,
        "seed": sel_args.seed,
        "proxy": sel_args.proxy,
        "proxy_epochs": sel_args.proxy_epochs,
        "proxy_accuracy": run.proxy_accuracy,
        "proxy_history": run.history,
        "target": run_args.target,
        "target_epochs": run_args.target_epochs if run_args.target else None,
        "target_accuracy": target_accuracy,
        "target_history": target_history,
        "selected_per_class": per_class_counts(labels_of(pruned, info), names),
        "total_per_class": per_class_counts(labels_of(train, info), names),
        "timings": timings,
        "num_processes": accelerator.num_processes,
    }
    if accelerator.is_main_process:
        splits = {data_args.train_split: pruned}
        if evaluation is not None:
            splits[data_args.eval_split] = with_null_scores(evaluation)
        card = default_card(
            splits,
            {k: metrics[k] for k in ("dataset_name", "method", "fraction", "proxy", "proxy_accuracy", "target", "target_accuracy", "seed", "command")},
        )
        write_run(run_args.output_dir, splits=splits, scores=run.scores, metrics=metrics, card=card, overwrite=run_args.overwrite_output_dir)
        logger.info(
            f"kept {len(pruned)} of {len(train)} rows by {sel_args.method}; proxy accuracy {run.proxy_accuracy}, "
            f"target accuracy {target_accuracy}; wrote {run_args.output_dir}",
            main_process_only=True,
        )
    accelerator.wait_for_everyone()
    if run_args.report_to:
        accelerator.end_training()
    return metrics


def recipe_main(prog: str, job: Callable[..., Dict[str, Any]], dataclass_types, argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``python -m PROG RECIPE.yaml [--key value ...]``: parse into `dataclass_types`, run `job`; bad input exits 2."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    command = f"python -m {prog} " + " ".join(shlex.quote(a) for a in argv)
    try:
        return job(*parse_args(argv, dataclass_types=dataclass_types), command=command)
    except SVPConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return recipe_main("svp_hf.coreset", run_coreset, RECIPE_DATACLASSES, argv)


if __name__ == "__main__":
    main()
