"""Core-set selection via proxy, from a recipe.

    python -m svp_hf.coreset recipes/quickstart.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.coreset recipes/cifar10.yaml

Trains the proxy on the training split, scores every example, keeps `fraction` of them by `method`, optionally
trains `target` on the kept rows and evaluates it, and writes dataset/, scores.parquet and metrics.json to
`output_dir`.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from . import __version__
from .api import labels_of, run_scoring, select, training_config
from .checkpoint import CHECKPOINTS_DIR, check_run_settings, discard
from .config import DataArguments, RunArguments, SelectionArguments, parse_args
from .data import INDEX_COLUMN, SCORE_COLUMN, check_same_columns, get_split, inspect_dataset, load_data
from .errors import SVPConfigError
from .methods import resolve_methods
from .models import create_model, resolve_family
from .output import check_output_dir, default_card, write_run
from .selection import n_to_keep
from .training import evaluate_accuracy, make_accelerator, train_model

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


# Settings that change no result: a run may be resumed with other values of these.
UNRECORDED_SETTINGS = ("output_dir", "overwrite_output_dir", "resume", "report_to", "keep_checkpoints")


def run_settings(data_args, sel_args, run_args, num_processes: int) -> Dict[str, Any]:
    """What a resumed run must share with the run whose checkpoints it continues."""
    settings = {**vars(data_args), **vars(sel_args), **vars(run_args), "num_processes": num_processes}
    return {k: v for k, v in settings.items() if k not in UNRECORDED_SETTINGS}


def run_coreset(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole core-set job; returns the metrics it wrote."""
    start = time.perf_counter()
    accelerator = make_accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=run_args.report_to,
        project_dir=run_args.output_dir if run_args.report_to else None,
    )
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
    train, evaluation = load_splits(data_args, int(sel_args.seed))
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    info = inspect_dataset(train, family.modality, **columns)
    if evaluation is not None:
        check_same_columns(evaluation, info)
    n_keep = n_to_keep(sel_args.fraction, len(train))
    if run_args.report_to:
        settings = {**vars(data_args), **vars(sel_args), **vars(run_args)}
        # Trackers take scalars only (TensorBoard's hparams): lists, mappings and None are logged as text.
        config = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
        accelerator.init_trackers("svp_hf_coreset", config=config)

    checkpoints = os.path.join(run_args.output_dir, CHECKPOINTS_DIR)
    # Checkpoints left next to a finished result (replaced, since check_output_dir let us through) are stale.
    if not run_args.resume or os.path.exists(os.path.join(run_args.output_dir, "metrics.json")):
        discard(accelerator, [checkpoints])
    check_run_settings(accelerator, checkpoints, run_settings(data_args, sel_args, run_args, accelerator.num_processes))

    run = run_scoring(
        train, sel_args, family=family, info=info, accelerator=accelerator, eval_dataset=evaluation, checkpoint_dir=checkpoints
    )
    t0 = time.perf_counter()
    pruned = select(train, run.scores, sel_args.method, sel_args.fraction, class_balanced=sel_args.class_balanced, seed=sel_args.seed)
    timings = dict(run.timings, selection=time.perf_counter() - t0)
    assert len(pruned) == n_keep

    target_accuracy, target_history = None, None
    if run_args.target:
        set_seed(int(sel_args.seed))  # the target starts the same whatever scoring did (or skipped, when resumed)
        target = create_model(run_args.target, info, pretrained=bool(sel_args.pretrained))
        config = training_config(sel_args, epochs=run_args.target_epochs, learning_rate=run_args.target_learning_rate)
        result = train_model(
            target,
            target_family,
            pruned,
            info,
            config,
            accelerator,
            desc=f"target {run_args.target}",
            checkpoint_dir=os.path.join(checkpoints, "target"),
        )
        timings["target_training"] = result.seconds
        target_history = result.history
        if evaluation is not None:
            target_accuracy = evaluate_accuracy(
                result.model, target_family, evaluation, info, accelerator, batch_size=int(sel_args.batch_size),
                desc="evaluate target", num_workers=int(sel_args.dataloader_num_workers),
            )
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
    if accelerator.trackers:
        final = {"proxy/eval_accuracy": run.proxy_accuracy, "target/eval_accuracy": target_accuracy, "n_selected": len(pruned)}
        final.update({f"seconds/{k}": v for k, v in timings.items()})
        accelerator.log({k: v for k, v in final.items() if v is not None})
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
    if not run_args.keep_checkpoints:
        discard(accelerator, [checkpoints])
    accelerator.wait_for_everyone()
    if run_args.report_to:
        accelerator.end_training()
    return metrics


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is too many
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "python -m svp_hf.coreset " + " ".join(shlex.quote(a) for a in argv)
    try:
        data_args, sel_args, run_args = parse_args(argv)
        return run_coreset(data_args, sel_args, run_args, command=command)
    except SVPConfigError as err:
        print(f"svp_hf.coreset: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
