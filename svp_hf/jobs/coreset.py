"""Core-set selection via proxy, from a recipe.

    python -m svp_hf.coreset recipes/quickstart.yaml [--key value ...]
    svp-hf launch --config_file accelerate_config.yaml coreset recipes/cifar10.yaml

Trains the proxy on the training split, scores every example, keeps `fraction` of them by `method`, optionally
trains `target` on the kept rows and evaluates it, and writes dataset/ (with its card, scores and plots),
scores.parquet, report.md, metrics.json and recipe.yaml to `output_dir`; with `push_to_hub`, uploads dataset/ to the
Hub. The steps every job shares (pre-flight, checkpoints, output, publishing) are :mod:`svp_hf.jobs.pipeline`'s.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence

from accelerate.utils import set_seed

from ..account import format_seconds
from ..config.arguments import DataArguments, RunArguments, SelectionArguments
from ..config.parser import RECIPE_DATACLASSES
from ..data.loading import get_split, load_data
from ..errors import SVPConfigError
from ..models import resolve_family
from ..publish.output import SCORES_FILE
from ..selection.correlation import compare_scores
from ..selection.ranking import n_to_keep
from ..selection.strategies import AUTO
from ..stages.orchestrator import Pruner, check_modalities, train_target
from ..stages.preflight import check_recipe
from ..stages.proxy import train_and_score
from ..stages.roles import stage_settings
from .pipeline import (
    Job,
    JobRun,
    check_batches,
    check_columns,
    checked_images,
    job_keys,
    load_inspected_splits,
    recipe_record,
    run_provenance,
    run_settings,
    with_null_scores,
)
from .pipeline import main as job_main

KEYS = job_keys(RECIPE_DATACLASSES)


def run_coreset(
    data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments, *, command: Optional[str] = None
) -> Dict[str, Any]:
    """The whole core-set job; returns the metrics it wrote."""
    with JobRun("coreset", run_args, command=command) as job:
        if run_args.streaming:
            return _run_streaming(job, data_args, sel_args, run_args)
        return _run(job, data_args, sel_args, run_args)


def _run(job: JobRun, data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments) -> Dict[str, Any]:
    set_seed(int(sel_args.seed))
    pruner, train, evaluation, skipped = _prepare(job, data_args, sel_args, run_args)
    job.begin(
        run_settings(data_args, sel_args, run_args, num_processes=job.accelerator.num_processes),
        tracker_config={**vars(data_args), **vars(sel_args), **vars(run_args)},
    )
    pruner.score()
    pruner.choose_strategy()
    result = pruner.select()
    assert result.n_selected == n_to_keep(sel_args.fraction, len(train))
    target_scores, rank_agreement = None, None
    if run_args.score_with_target and result.scored:  # unscored: no proxy ranking to set against the target's
        target_scores, rank_agreement = _score_with_target(pruner, train)
    if pruner.target is not None:
        train_target(
            result,
            pruner.target,
            info=pruner.info,
            accelerator=job.accelerator,
            evaluation=evaluation,
            checkpoint_dir=os.path.join(job.checkpoints, "target"),
            seed=int(sel_args.seed),
            keep_last=run_args.keep_checkpoints,
        )
    metrics = {
        **run_provenance("coreset", job.command, data_args, train, evaluation, pruner.info.modality),
        **result.to_metrics(),
        "rank_agreement": rank_agreement,
        "num_processes": job.accelerator.num_processes,
        "device": job.device.record(job.accelerator, result.run.proxy, sel_args.dataloader_num_workers),
        "skipped_undecodable": skipped,
    }
    if target_scores is not None:
        metrics["timings"]["target_scoring"] = pruner.timings["target_scoring"]
    splits = {data_args.train_split: result.selected}
    if evaluation is not None:
        splits[data_args.eval_split] = with_null_scores(evaluation, scored=result.scored)
    return job.finish(
        splits=splits,
        scores=result.scores,
        target_scores=target_scores,
        metrics=metrics,
        log=_log(metrics),
        headline=_headline(metrics),
        recipe=recipe_record(data_args, sel_args, run_args, keys=KEYS),
    )


def _prepare(job: JobRun, data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments):
    """Every check that needs no training: the output, the recipe, the data and models against each other, the
    batches against memory, the images; returns the prepared :class:`Pruner`, the splits and the skipped rows."""
    job.check_output((data_args.train_split, data_args.eval_split))
    check_recipe(sel_args, run_args)
    proxy, target, scoring, selection = stage_settings(sel_args, run_args, device=job.device)
    check_modalities(proxy, target)
    modality = resolve_family(proxy.name).modality
    train, evaluation, info = load_inspected_splits(
        data_args,
        modality,
        int(sel_args.seed),
        (proxy.name, run_args.target),
        trust_remote_code=proxy.trust_remote_code,
    )
    check_batches(info, sel_args, run_args, job.accelerator.device)
    train, evaluation, skipped = checked_images(train, evaluation, info, data_args, run_args.skip_undecodable)
    pruner = Pruner(
        proxy,
        scoring,
        selection,
        target=target,
        accelerator=job.accelerator,
        checkpoint_dir=job.checkpoints,
        keep_checkpoints=run_args.keep_checkpoints,
        resumable=job.resumable,
    )
    return pruner.prepare(train, evaluation, info=info), train, evaluation, skipped


def _score_with_target(pruner: Pruner, train):
    """The target trained on the whole split and scored like the proxy: SVP's measure of proxy quality (the scores
    and their rank agreement with the proxy's)."""
    target = dataclasses.replace(pruner.target, checkpoint=None)
    scoring = dataclasses.replace(pruner.scoring, batch_size=int(target.training.batch_size))
    run = train_and_score(
        train, target, scoring, family=resolve_family(target.name), info=pruner.info, accelerator=pruner.accelerator
    )
    pruner.timings["target_scoring"] = run.timings["proxy_training"] + run.timings["scoring"]
    selection = pruner.selection
    return run.scores, compare_scores(pruner.run.scores, run.scores, fraction=selection.fraction, seed=selection.seed)


def _log(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """What the trackers log at the end of a run."""
    log = {
        "proxy/eval_accuracy": metrics["proxy_accuracy"],
        "target/eval_accuracy": metrics["target_accuracy"],
        "n_selected": metrics["n_selected"],
    }
    log.update({f"seconds/{k}": v for k, v in metrics["timings"].items()})
    return log


def _headline(metrics: Dict[str, Any]) -> str:
    """The summary's first line: what was kept, how, the accuracies and the end-to-end account."""
    chose = f" (chose {metrics['selected_strategy']})" if metrics["strategy"] == AUTO else ""
    account = metrics.get("end_to_end")
    return (
        f"kept {metrics['n_selected']} of {metrics['n_total']} rows by {metrics['method']}, strategy {metrics['strategy']}"
        + chose
        + _accuracies(metrics["proxy_accuracy"], metrics.get("target_accuracy"), metrics.get("target"))
        + _precheck_words(metrics)
        + (f"; {account['summary']}" if account else "")
    )


def _spendable(check: Dict[str, Any]) -> float:
    """What the pre-check planned to spend of its budget (all of it in a pre-check saved before the headroom)."""
    spendable = check.get("spendable_seconds")
    return check["budget_seconds"] if spendable is None else spendable


def _precheck_words(metrics: Dict[str, Any]) -> str:
    """The summary's words on ``auto``'s pre-check, when it kept random without training the proxy."""
    check = ((metrics.get("auto") or {}).get("budget") or {}).get("precheck")
    if not check or check.get("fits"):
        return ""
    if check.get("proxy_probed", True):
        cost = (
            f"its training and scoring were estimated at {format_seconds(check['proxy_estimate_seconds'])} (plus "
            f"{format_seconds(check['probe_seconds'])} of probes)"
        )
    else:
        cost = (
            f"the target's probe alone took {format_seconds(check['probe_seconds'])}, so the proxy was not even probed"
        )
    return (
        f"; the proxy was not trained: {cost}, over the {format_seconds(_spendable(check))} selection plans to spend "
        f"of its "
        f"budget's {format_seconds(check['budget_seconds'])}, so no row was scored"
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


def _run_streaming(
    job: JobRun, data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments
) -> Dict[str, Any]:
    """``streaming: true``: read the training split with ``streaming=True``, score it with the given proxy one shard
    at a time (split across processes; resumable by shard), select, and write ``scores.parquet``, ``selected.parquet``
    (the kept rows' ``svp_index`` and score), ``metrics.json`` and ``recipe.yaml``; the data is never prepared
    locally, and no ``dataset/`` copy is written."""
    check_streaming(sel_args, run_args)
    set_seed(int(sel_args.seed))
    job.check_output((data_args.train_split,))
    check_recipe(sel_args, run_args)
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files, streaming=True)
    stream = get_split(data, data_args.train_split, "training")
    check_columns(data_args, resolve_family(sel_args.proxy).modality)
    proxy, _, scoring, selection = stage_settings(sel_args, run_args, device=job.device)
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    pruner = Pruner(
        proxy,
        scoring,
        selection,
        accelerator=job.accelerator,
        checkpoint_dir=job.checkpoints,
        keep_checkpoints=run_args.keep_checkpoints,
    )
    pruner.prepare(stream, columns=columns)
    check_batches(pruner.info, sel_args, run_args, job.accelerator.device)
    job.begin(run_settings(data_args, sel_args, run_args, num_processes=job.accelerator.num_processes))
    result = pruner.prune()
    metrics = {
        **run_provenance(
            "coreset", job.command, data_args, stream, None, pruner.info.modality, num_rows=result.n_total
        ),
        "streaming": True,
        **result.to_metrics(),
        "num_processes": job.accelerator.num_processes,
        "device": job.device.record(job.accelerator, num_workers=sel_args.dataloader_num_workers),
    }
    return job.finish_files(
        {SELECTED_FILE: result.scores.select(result.keep), SCORES_FILE: result.scores},
        metrics=metrics,
        recipe=recipe_record(data_args, sel_args, run_args, keys=KEYS),
        headline=f"kept {result.n_selected} of {result.n_total} streamed rows by {sel_args.method}, strategy {sel_args.strategy}",
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
