"""Core-set selection via proxy, from a recipe.

    python -m svp_hf.coreset recipes/quickstart.yaml [--key value ...]
    svp-hf launch --config_file accelerate_config.yaml coreset recipes/cifar10.yaml

Trains the proxy on the training split, scores every example, keeps `fraction` of them by `method`, optionally
trains `target` on the kept rows and evaluates it, and writes dataset/ (with its card, scores and plots),
scores.parquet, report.md, metrics.json and recipe.yaml to `output_dir`; with `push_to_hub`, uploads dataset/ to the
Hub. The steps every job shares (pre-flight, checkpoints, output, publishing) are :mod:`svp_hf.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
from accelerate.utils import set_seed

from .account import run_account
from .auto import AutoDecision, check_auto
from .config import RECIPE_DATACLASSES, DataArguments, RunArguments, SelectionArguments
from .correlation import compare_scores
from .data import get_split, load_data
from .errors import SVPConfigError
from .methods import resolve_methods, training_signals
from .models import create_model, resolve_family
from .output import SCORES_FILE
from .pipeline import (
    Job,
    JobRun,
    check_batches,
    check_columns,
    checked_images,
    job_keys,
    load_inspected_splits,
    per_class_counts,
    recipe_record,
    run_provenance,
    run_settings,
    with_null_scores,
)
from .pipeline import main as job_main
from .preflight import check_recipe
from .proxy import (
    check_proxy_checkpoint,
    labels_of,
    prepare_inputs,
    run_auto,
    run_scoring,
    selected_indices,
    subset_with_scores,
)
from .report import score_statistics
from .roles import pretrained, target_args, training_config, training_metrics
from .selection import n_to_keep
from .strategies import AUTO
from .training import evaluate_accuracy, train_model
from .version import __version__


KEYS = job_keys(RECIPE_DATACLASSES)


def run_coreset(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole core-set job; returns the metrics it wrote."""
    with JobRun("coreset", run_args, command=command) as job:
        if run_args.streaming:
            return _run_streaming(job, data_args, sel_args, run_args)
        return _run(job, data_args, sel_args, run_args)


def _run(job: JobRun, data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments) -> Dict[str, Any]:
    accelerator = job.accelerator
    set_seed(int(sel_args.seed))
    # Every check that needs no training, first.
    job.check_output((data_args.train_split, data_args.eval_split))
    check_recipe(sel_args, run_args)
    family = resolve_family(sel_args.proxy)
    target_family = resolve_family(run_args.target) if run_args.target else None
    if target_family is not None and target_family.modality != family.modality:
        raise SVPConfigError(
            f"proxy {sel_args.proxy!r} reads {family.modality} data but target {run_args.target!r} reads {target_family.modality}"
        )
    trust_remote_code = bool(sel_args.trust_remote_code)
    train, evaluation, info = load_inspected_splits(
        data_args, family.modality, int(sel_args.seed), (sel_args.proxy, run_args.target), trust_remote_code=trust_remote_code
    )
    check_batches(info, sel_args, run_args, accelerator.device)
    train, evaluation, skipped = checked_images(train, evaluation, info, data_args, run_args.skip_undecodable)
    n_keep = n_to_keep(sel_args.fraction, len(train))
    if sel_args.strategy == AUTO:
        check_auto(len(train), labels_of(train, info), sel_args.fraction, sel_args.auto_holdout)
    proxy_epochs = sel_args.proxy_epochs
    if sel_args.proxy_checkpoint:
        state = check_proxy_checkpoint(sel_args, info, training_signals(resolve_methods(sel_args.methods)), len(train))
        proxy_epochs = len(state.get("history", [])) or None  # what the checkpoint trained, not the recipe's key
    job.begin(run_settings(data_args, sel_args, run_args, num_processes=accelerator.num_processes),
              tracker_config={**vars(data_args), **vars(sel_args), **vars(run_args)})
    checkpoints = job.checkpoints

    run = run_scoring(
        train, sel_args, family=family, info=info, accelerator=accelerator, eval_dataset=evaluation, checkpoint_dir=checkpoints,
        device=job.device,
    )
    timings = dict(run.timings)
    strategy, coverage_beta, decision = sel_args.strategy, sel_args.coverage_beta, None
    if strategy == AUTO:
        auto_args = sel_args
        if sel_args.auto_epochs is None and run_args.target:  # check with the schedule length the target will train for
            auto_args = dataclasses.replace(sel_args, auto_epochs=int(run_args.target_epochs))
        saved = job.resumable(
            "auto", lambda: run_auto(train, run.scores, auto_args, family=family, info=info, accelerator=accelerator).as_dict()
        )
        saved.pop("chosen", None)
        decision = AutoDecision(**saved)
        strategy, coverage_beta = decision.strategy, decision.coverage_beta
        timings["auto"] = decision.seconds
    t0 = time.perf_counter()
    keep = selected_indices(
        run.scores, sel_args.method, sel_args.fraction, strategy=strategy, class_balanced=sel_args.class_balanced,
        seed=sel_args.seed, coverage_beta=coverage_beta,
    )
    pruned = subset_with_scores(train, run.scores, sel_args.method, keep)
    timings["selection"] = time.perf_counter() - t0
    assert len(pruned) == n_keep

    target_scores, rank_agreement = None, None
    if run_args.score_with_target:
        # The target trained on the whole split and scored like the proxy: SVP's measure of proxy quality.
        target_run = run_scoring(train, target_args(sel_args, run_args), family=target_family, info=info, accelerator=accelerator)
        target_scores = target_run.scores
        timings["target_scoring"] = target_run.timings["proxy_training"] + target_run.timings["scoring"]
        rank_agreement = compare_scores(run.scores, target_scores, fraction=sel_args.fraction, seed=int(sel_args.seed))

    target_accuracy, target_history = None, None
    if run_args.target:
        set_seed(int(sel_args.seed))  # the target starts the same whatever scoring did (or skipped, when resumed)
        target = create_model(
            run_args.target, info, pretrained=pretrained("target", sel_args, run_args), trust_remote_code=trust_remote_code
        )
        config = training_config("target", sel_args, run_args)
        result = train_model(
            target, target_family, pruned, info, config, accelerator,
            desc=f"target {run_args.target}", checkpoint_dir=os.path.join(checkpoints, "target"),
        )
        timings["target_training"] = result.seconds
        target_history = result.history
        if evaluation is not None:
            target_accuracy = evaluate_accuracy(
                result.model, target_family, evaluation, info, accelerator, batch_size=config.batch_size,
                desc="evaluate target", num_workers=config.num_workers,
            )

    account = run_account(
        timings, n_total=len(train), n_kept=len(pruned), target_epochs=run_args.target_epochs if run_args.target else None
    )
    names = info.class_names
    metrics = {
        **run_provenance("coreset", job.command, data_args, train, evaluation, family.modality),
        "n_total": len(train),
        "n_selected": len(pruned),
        "method": sel_args.method,
        "scored_methods": sel_args.methods,
        "fraction": sel_args.fraction,
        "strategy": sel_args.strategy,
        "selected_strategy": strategy,
        "coverage_beta": coverage_beta,
        "auto": decision.as_dict() if decision is not None else None,
        "class_balanced": sel_args.class_balanced,
        "seed": sel_args.seed,
        "proxy": sel_args.proxy,
        "proxy_epochs": proxy_epochs,
        "proxy_checkpoint": sel_args.proxy_checkpoint,
        **training_metrics(sel_args, run_args),
        "proxy_accuracy": run.proxy_accuracy,
        "proxy_history": run.history,
        "target": run_args.target,
        "target_epochs": run_args.target_epochs if run_args.target else None,
        "target_accuracy": target_accuracy,
        "target_history": target_history,
        "score_statistics": score_statistics(run.scores),
        "rank_agreement": rank_agreement,
        "selected_per_class": per_class_counts(labels_of(pruned, info), names),
        "total_per_class": per_class_counts(labels_of(train, info), names),
        "timings": timings,
        "end_to_end": account,
        "num_processes": accelerator.num_processes,
        "device": job.device.record(accelerator, run.proxy, sel_args.dataloader_num_workers),
        "skipped_undecodable": skipped,
    }
    splits = {data_args.train_split: pruned}
    if evaluation is not None:
        splits[data_args.eval_split] = with_null_scores(evaluation)
    log = {"proxy/eval_accuracy": run.proxy_accuracy, "target/eval_accuracy": target_accuracy, "n_selected": len(pruned)}
    log.update({f"seconds/{k}": v for k, v in timings.items()})
    headline = f"kept {len(pruned)} of {len(train)} rows by {sel_args.method}, strategy {sel_args.strategy}" + (
        f" (chose {strategy})" if sel_args.strategy == AUTO else ""
    ) + _accuracies(run.proxy_accuracy, target_accuracy, run_args.target) + (f"; {account['summary']}" if account else "")
    return job.finish(
        splits=splits, scores=run.scores, target_scores=target_scores, metrics=metrics, log=log, headline=headline,
        recipe=recipe_record(data_args, sel_args, run_args, keys=KEYS),
    )


SELECTED_FILE = "selected.parquet"


def check_streaming(sel_args: SelectionArguments, run_args: RunArguments) -> None:
    """What ``streaming: true`` cannot do, as clear errors before anything is read."""
    problems = []
    if not sel_args.proxy_checkpoint:
        problems.append("a trained proxy_checkpoint (a stream is scored, not trained on)")
    if sel_args.strategy == AUTO:
        problems.append("a strategy that needs no training (top, bottom, coverage or random; auto retrains the proxy)")
    if run_args.target or run_args.score_with_target:
        problems.append("no target (train it on the selected rows afterwards)")
    if run_args.push_to_hub:
        problems.append("no push_to_hub (no dataset/ copy is written)")
    if problems:
        raise SVPConfigError("streaming: true needs " + "; ".join(problems))


def _run_streaming(job: JobRun, data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments) -> Dict[str, Any]:
    """``streaming: true``: read the training split with ``streaming=True``, score it with the given proxy one shard
    at a time (split across processes; resumable by shard), select, and write ``scores.parquet``, ``selected.parquet``
    (the kept rows' ``svp_index`` and score), ``metrics.json`` and ``recipe.yaml``; the data is never prepared
    locally, and no ``dataset/`` copy is written."""
    accelerator = job.accelerator
    check_streaming(sel_args, run_args)
    set_seed(int(sel_args.seed))
    job.check_output((data_args.train_split,))
    check_recipe(sel_args, run_args)
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files, streaming=True)
    stream = get_split(data, data_args.train_split, "training")
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    check_columns(data_args, resolve_family(sel_args.proxy).modality)
    family, info = prepare_inputs(stream, sel_args.proxy, columns, trust_remote_code=bool(sel_args.trust_remote_code))
    check_batches(info, sel_args, run_args, accelerator.device)
    job.begin(run_settings(data_args, sel_args, run_args, num_processes=accelerator.num_processes))
    run = run_scoring(
        stream, sel_args, family=family, info=info, accelerator=accelerator, checkpoint_dir=job.checkpoints, device=job.device
    )
    t0 = time.perf_counter()
    keep = selected_indices(
        run.scores, sel_args.method, sel_args.fraction, strategy=sel_args.strategy,
        class_balanced=sel_args.class_balanced, seed=sel_args.seed, coverage_beta=sel_args.coverage_beta,
    )
    timings = dict(run.timings, selection=time.perf_counter() - t0)
    labels = np.asarray(run.scores["label"], dtype=np.int64)
    metrics = {
        "svp_hf_version": __version__, "command": job.command, "job": "coreset", "streaming": True,
        "dataset_name": data_args.dataset_name, "train_split": data_args.train_split,
        "n_total": len(run.scores), "n_selected": int(len(keep)), "method": sel_args.method,
        "scored_methods": sel_args.methods, "fraction": sel_args.fraction, "strategy": sel_args.strategy,
        "selected_strategy": sel_args.strategy, "class_balanced": sel_args.class_balanced, "seed": sel_args.seed,
        "proxy": sel_args.proxy, "proxy_checkpoint": sel_args.proxy_checkpoint,
        "score_statistics": score_statistics(run.scores),
        "selected_per_class": per_class_counts(labels[keep], info.class_names),
        "total_per_class": per_class_counts(labels, info.class_names),
        "timings": timings, "num_processes": accelerator.num_processes, "device": job.device.record(accelerator, num_workers=sel_args.dataloader_num_workers),
    }
    return job.finish_files(
        {SELECTED_FILE: run.scores.select(keep), SCORES_FILE: run.scores}, metrics=metrics,
        recipe=recipe_record(data_args, sel_args, run_args, keys=KEYS),
        headline=f"kept {len(keep)} of {len(run.scores)} streamed rows by {sel_args.method}, strategy {sel_args.strategy}",
    )


def _accuracies(proxy_accuracy: Optional[float], target_accuracy: Optional[float], target: Optional[str]) -> str:
    parts = []
    if proxy_accuracy is not None:
        parts.append(f"proxy accuracy {proxy_accuracy:.4f}")
    if target_accuracy is not None:
        parts.append(f"target {target} accuracy {target_accuracy:.4f}")
    return "; " + ", ".join(parts) if parts else ""


JOB = Job(
    "coreset",
    RECIPE_DATACLASSES,
    KEYS,
    run_coreset,
    description="Core-set selection via proxy: train the proxy, score every row, keep a fraction, train the target.",
)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return job_main(JOB, argv)


__all__ = ["run_coreset", "main", "JOB", "KEYS"]


if __name__ == "__main__":
    main()
