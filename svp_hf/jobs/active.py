"""Active learning via proxy, from a recipe.

    python -m svp_hf.active recipes/active_quickstart.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.active recipes/active_cifar10.yaml

Runs the loops `selector` asks for (see :mod:`svp_hf.active.loop`) on the training split, trains the target on
each final labelled set and evaluates it on the evaluation split, and writes to `output_dir`: ``dataset/`` (the
labelled set with ``svp_index``, ``svp_round`` and ``svp_score``, plus the untouched evaluation split),
``scores.parquet`` (every pool row's round and score per loop), ``rounds.json``, ``metrics.json`` and ``report.md``
(the card and report, rendered from the metrics by :mod:`svp_hf.publish.card` and :mod:`svp_hf.publish.report`).
"""

from __future__ import annotations

import shlex
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np
from datasets import Dataset, Value

from ..active.labelling import LabellingState, batch_paths, check_session_dir, filled_dataset, has_missing_labels, tell
from ..active.loop import (
    ROUND_COLUMN,
    ActiveResult,
    SelectorRun,
    build_selectors,
    check_active_arguments,
    check_new_session,
    labelled_dataset,
    labelling_round,
    labelling_selector,
    open_session,
    pool_dataset,
    run_active_learning,
    session_settings,
    train_target,
)
from ..active.pool import UNLABELLED
from ..config.arguments import ActiveArguments, DataArguments, RunArguments, SelectionArguments, check_simulation_keys
from ..config.checks import check_schedule
from ..config.parser import ACTIVE_DATACLASSES
from ..data.columns import INDEX_COLUMN, SCORE_COLUMN, DataInfo
from ..engine.checkpoint import on_main
from ..errors import SVPConfigError
from ..publish.hub import push_to_hub
from ..stages.preflight import check_models_against_data, check_recipe
from ..stages.proxy import labels_of, scores_dataset
from ..stages.roles import active_settings, selector_models, training_metrics
from ..utils.log import get_logger
from .pipeline import (
    Job,
    JobRun,
    check_batches,
    inspect_splits,
    job_keys,
    load_splits,
    per_class_counts,
    recipe_record,
    run_provenance,
    run_settings,
    with_null_scores,
)
from .pipeline import main as job_main

logger = get_logger(__name__)

# Core-set keys an active-learning run has no use for: it keeps `budgets` rows (not a fraction) chosen by the selector
# each round (no strategy, no auto check, no class balance over unknown labels), scores one method, retrains the proxy
# every round (no proxy_checkpoint), scores the pool in memory (no shards, no k-centers candidate set or memory
# bound) and has no single proxy ranking to compare with the target's.
UNREAD_KEYS = (
    "score_methods",
    "fraction",
    "strategy",
    "coverage_beta",
    "auto_holdout",
    "auto_seeds",
    "auto_epochs",
    "class_balanced",
    "proxy_checkpoint",
    "scoring_shard_size",
    "kcenter_pool_size",
    "kcenter_max_memory",
    "score_with_target",
)
KEYS = job_keys(ACTIVE_DATACLASSES, without=UNREAD_KEYS)


def pool_record(result: ActiveResult, dataset: Dataset, labels: Optional[np.ndarray] = None) -> Dataset:
    """One row per pool example: `svp_index`, label (`labels` when given, -1 for unknown), and for each loop the round
    it labelled the row in and the score (null when that loop never labelled it)."""
    record = scores_dataset(dataset, result.info, {}, labels=labels)
    for role, run in result.runs.items():
        rounds, scores = run.pool.rounds(), run.pool.scores()
        record = record.add_column(
            f"{role}_round", [None if r == UNLABELLED else int(r) for r in rounds], feature=Value("int64")
        )
        record = record.add_column(
            f"{role}_score", [None if np.isnan(s) else float(s) for s in scores], feature=Value("float64")
        )
    return record


def output_splits(result: ActiveResult, train_split: str, evaluation: Optional[Dataset], eval_split: Optional[str]):
    """The labelled set of the first loop as `train_split` (the target-selected one as `<train_split>_target_selected`
    when both ran), and the untouched evaluation split with the same columns (null round and score)."""
    roles = list(result.runs)
    splits = {train_split: result.runs[roles[0]].labelled}
    for role in roles[1:]:
        splits[f"{train_split}_{role}_selected"] = result.runs[role].labelled
    if evaluation is not None:
        evaluation = with_null_scores(
            evaluation.remove_columns(
                [c for c in (ROUND_COLUMN, INDEX_COLUMN, SCORE_COLUMN) if c in evaluation.column_names]
            )
        )  # as pool_dataset
        splits[eval_split] = evaluation.add_column(ROUND_COLUMN, [None] * len(evaluation), feature=Value("int64"))
    return splits


def active_metrics(
    result: ActiveResult,
    train: Dataset,
    evaluation: Optional[Dataset],
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    *,
    command: Optional[str],
    modality: str,
    num_processes: int,
    start: float,
    total_labels: Optional[np.ndarray] = None,
    device: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """The metrics of an active-learning run (simulated, or a labelling session's labelled set so far); `device`: what
    :meth:`svp_hf.utils.device.DeviceSettings.record` says the run used."""
    names = result.info.class_names
    return {
        **run_provenance("active", command, data_args, train, evaluation, modality),
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
        "labelled_per_class": {
            role: per_class_counts(labels_of(run.labelled, result.info), names) for role, run in result.runs.items()
        },
        "total_per_class": per_class_counts(
            labels_of(train, result.info) if total_labels is None else total_labels, names
        ),
        "selector_models": {role: run.model for role, run in result.runs.items()},
        "rounds": {role: run.rounds for role, run in result.runs.items()},
        "target_history": {role: run.target_history for role, run in result.runs.items()},
        "timings": {"active_learning": result.timings["total"], "total": time.perf_counter() - start},
        "num_processes": num_processes,
        "device": device,
    }


def check_simulation(job, data_args, sel_args, run_args, active, train, evaluation, modality: str) -> DataInfo:
    """The simulation's checks before any training: its keys, a fresh output folder, the splits' columns against the
    models, batch sizes and the budgets against the pool. Returns the training split's columns."""
    check_simulation_keys(active)
    check_session_dir(run_args.output_dir, labelling=False)
    job.check_output((data_args.train_split, data_args.eval_split))
    info = inspect_splits(
        train,
        evaluation,
        data_args,
        modality,
        (sel_args.proxy, run_args.target),
        trust_remote_code=bool(sel_args.trust_remote_code),
    )
    check_batches(info, sel_args, run_args, job.accelerator.device)
    check_schedule(len(train), active.initial_size, active.budgets)
    return info


def simulation_headline(result, n_rows: int, sel_args, run_args, active, accuracies: Dict[str, float]) -> str:
    """The end-of-run line of a simulated run: what was labelled, the selection speedup, the targets' accuracies."""
    return (
        f"labelled {active.budgets[-1]} of {n_rows} rows by {sel_args.method} ({active.selector} selecting)"
        + (f"; selection speedup {result.speedup:.2f}x" if result.speedup else "")
        + "".join(
            f"; target {run_args.target} on the {role}-selected set: accuracy {a:.4f}" for role, a in accuracies.items()
        )
    )


def run_active(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole active-learning job from parsed recipe arguments; returns the metrics it wrote.

    When the training split's label column holds nulls (or is absent, with `class_names`), or `labels_from` is set,
    this is the labelling mode (:func:`run_labelling`): one round of a session with real labellers."""
    with JobRun("active", run_args, command=command) as job:
        check_active_arguments(sel_args, run_args, active)
        check_recipe(sel_args, run_args, active)
        selectors = build_selectors(selector_models(sel_args, run_args, active))
        family = next(iter(selectors.values())).family
        train, evaluation = load_splits(data_args, int(sel_args.seed))
        if active.labels_from or has_missing_labels(train, data_args.label_column, active.class_names):
            return run_labelling(data_args, sel_args, run_args, active, train, evaluation, job=job)
        info = check_simulation(job, data_args, sel_args, run_args, active, train, evaluation, family.modality)
        job.begin(
            run_settings(data_args, sel_args, run_args, active, num_processes=job.accelerator.num_processes),
            tracker_config={**vars(data_args), **vars(sel_args), **vars(run_args), **vars(active)},
        )
        result = run_active_learning(
            train,
            active_settings(sel_args, active),
            selectors,
            info=info,
            accelerator=job.accelerator,
            eval_dataset=evaluation,
            checkpoint_dir=job.checkpoints,
        )
        metrics = active_metrics(
            result,
            train,
            evaluation,
            data_args,
            sel_args,
            run_args,
            active,
            command=job.command,
            modality=family.modality,
            num_processes=job.accelerator.num_processes,
            start=job.start,
            device=job.device.record(job.accelerator, num_workers=sel_args.dataloader_num_workers),
        )
        accuracies = {role: a for role, a in metrics["target_accuracy"].items() if a is not None}
        headline = simulation_headline(result, len(train), sel_args, run_args, active, accuracies)
        return job.finish(
            splits=output_splits(result, data_args.train_split, evaluation, data_args.eval_split),
            scores=pool_record(result, train),
            metrics=metrics,
            extra_files={"rounds.json": metrics["rounds"]},
            headline=headline,
            recipe=recipe_record(data_args, sel_args, run_args, active, keys=KEYS),
            log={f"target/{role}/eval_accuracy": a for role, a in accuracies.items()},
        )


# --- the labelling mode ------------------------------------------------------------------------------------------------


def continue_command(command: Optional[str], output_dir: str, labels_path: str) -> str:
    """The command that merges `labels_path` and runs the next round: this run's, with ``--labels_from`` (and no
    ``--finish``)."""
    if not command:
        return f"python -m svp_hf.active RECIPE.yaml --output_dir {shlex.quote(output_dir)} --labels_from {shlex.quote(labels_path)}"
    tokens, out, skip = shlex.split(command), [], False
    for token in tokens:
        if token.startswith("--"):
            skip = token.split("=", 1)[0] in ("--labels_from", "--finish", "--allow_pending")
            if skip:
                continue
        elif skip:
            continue
        out.append(token)
    return " ".join(shlex.quote(t) for t in out + ["--labels_from", labels_path])


def say(accelerator, text: str) -> None:
    """Tell the person running the session what happened and what to do next (stdout, main process)."""
    if accelerator.is_main_process:
        print(text, flush=True)


def run_labelling(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    active: ActiveArguments,
    train: Dataset,
    evaluation: Optional[Dataset],
    *,
    job: JobRun,
) -> Dict[str, Any]:
    """One step of a labelling session in `output_dir`: merge `labels_from`, then ask for the next batch (written to
    ``output_dir/to_label/``), or wait for labels still out, or finish (train and evaluate the target on the labelled
    set and write ``dataset/``) with `finish` or once every budget is asked for and labelled."""
    accelerator, command, output_dir = job.accelerator, job.command, run_args.output_dir
    settings = active_settings(sel_args, active)
    selector = labelling_selector(build_selectors(selector_models(sel_args, run_args, active)), settings)
    train, info, state = _open_labelling(data_args, sel_args, run_args, active, train, evaluation, selector, job=job)
    report: Dict[str, Any] = {"job": "active", "mode": "labelling", "output_dir": output_dir}
    if active.labels_from:
        summary = on_main(accelerator, lambda: tell(output_dir, active.labels_from, token=run_args.hub_token))
        state = LabellingState.load(output_dir)
        report["merged"] = summary["merged"]
        say(
            accelerator,
            f"merged {summary['merged']} label(s) into {output_dir}"
            + (f" (already merged before: {', '.join(summary['already_merged'])})" if summary["already_merged"] else "")
            + f"; {state.n_labelled} of {state.pool_size} rows are labelled.",
        )
    budgets = list(active.budgets)
    pending = state.pending
    all_asked = bool(state.batches) and state.next_round > len(budgets)
    if active.finish or (all_asked and not len(pending)):
        if len(pending):
            say(accelerator, f"finishing with {len(pending)} asked row(s) still unlabelled (they are left out).")
        return {
            **report,
            **finish_labelling(
                data_args, sel_args, run_args, active, train, evaluation, info, state, selector, job=job
            ),
        }
    if len(pending) and (all_asked or not active.allow_pending):
        rounds = state.summary()["pending_rounds"]
        paths = batch_paths(output_dir, rounds[-1])
        say(
            accelerator,
            f"waiting for labels: {len(pending)} row(s) asked for in round(s) {rounds} are not labelled yet. Return "
            f"them with:\n  {continue_command(command, output_dir, paths['csv'])}\n"
            + (
                "(set --allow_pending true to ask for the next batch anyway, or --finish true to stop here)"
                if not all_asked
                else "(or --finish true to train the target on the labelled rows so far)"
            ),
        )
        return {**report, "pending": int(len(pending)), "round": None}
    resolve_initial_size_cli(active, state)
    round_, rows, paths = labelling_round(train, info, state, output_dir, selector, settings, accelerator, evaluation)
    if job.repo_id is not None and accelerator.is_main_process:
        batch_repo = f"{job.repo_id}-to-label-round-{round_}"
        paths["hub"] = push_to_hub(rows, batch_repo, private=True, token=run_args.hub_token, overwrite=True)
    _say_to_label(accelerator, round_, rows, paths, state, info, continue_command(command, output_dir, paths["csv"]))
    return {**report, "round": round_, "n_to_label": len(rows), "to_label": paths}


def _open_labelling(data_args, sel_args, run_args, active, train, evaluation, selector, *, job: JobRun):
    """A labelling session's pre-flight and state: the output (a started session's own folder is its to replace),
    the splits' labels and columns, the models against them, and the state, created on first use."""
    output_dir = run_args.output_dir
    started = LabellingState.exists(output_dir)
    # A session's own output_dir holds its state (and, once finished, its result): only a new session must find it free.
    job.check_output((data_args.train_split, data_args.eval_split), overwrite=True if started else None)
    if evaluation is not None and has_missing_labels(evaluation, data_args.label_column, None):
        raise SVPConfigError(
            f"the evaluation split {data_args.eval_split!r} has missing labels: it must be fully labelled"
        )
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    train, info, state = open_session(
        train,
        output_dir,
        selector.family.modality,
        columns=columns,
        class_names=active.class_names,
        settings=session_settings(sel_args, run_args, active),
    )
    check_models_against_data(
        info,
        (sel_args.proxy, run_args.target),
        trust_remote_code=bool(sel_args.trust_remote_code),
        evaluation=evaluation,
    )
    if not started:
        check_session_dir(output_dir, labelling=True)
        resolve_initial_size_cli(active, state)
        start_checks(state, sel_args, active)
        if job.accelerator.is_main_process:
            state.save(output_dir)
    job.accelerator.wait_for_everyone()
    return train, info, state


def _say_to_label(accelerator, round_: int, rows, paths, state: LabellingState, info, command: str) -> None:
    """Where a round's batch to label is, and how to continue once it is labelled."""
    names = ", ".join(info.class_names[:20]) + (", ..." if len(info.class_names) > 20 else "")
    say(
        accelerator,
        f"round {round_}: {len(rows)} row(s) to label ({state.n_labelled} labelled of {state.pool_size}).\n"
        f"  {paths['csv']}  (a CSV for labelling tools"
        + (f"; images in {paths['images']}" if paths.get("images") else "")
        + ")\n"
        f"  {paths['folder']}  (datasets.load_dataset reads it)\n"
        + (f"  {paths['hub']}  (private Hub dataset)\n" if paths.get("hub") else "")
        + f"Fill in the `{state.label_column}` column (a class name or id; classes: {names}), in one go or in parts, "
        f"then continue with:\n  {command}",
    )


def start_checks(state: LabellingState, sel_args: SelectionArguments, active: ActiveArguments) -> None:
    """:func:`check_new_session`, its error saying why the run is in the labelling mode when the data alone chose it."""
    try:
        settings = active_settings(sel_args, active)
        check_new_session(state, settings, labels_from=active.labels_from, finish=active.finish)
    except SVPConfigError as err:
        missing = state.pool_size - state.n_labelled
        if active.labels_from or not state.n_labelled:
            raise
        raise SVPConfigError(
            f"{err} (this run is active learning's labelling mode because the training split's label column "
            f"{state.label_column!r} has {missing} missing label(s): to simulate active learning instead, fill or "
            "drop those rows)"
        ) from None


def resolve_initial_size_cli(active: ActiveArguments, state) -> None:
    if state.batches:
        return  # initial_size only sizes the random first batch of a session that starts with no labels
    check_schedule(None, active.initial_size, active.budgets)


def finish_labelling(
    data_args, sel_args, run_args, active, train, evaluation, info, state, selector, *, job: JobRun
) -> Dict[str, Any]:
    """Train the target (when set) on the session's labelled set, evaluate it, and write the result into
    `output_dir` as the simulated loop does (dataset/ with the card, scores.parquet, rounds.json, metrics.json,
    report.md); with ``push_to_hub``, push dataset/ to the Hub. The session's state and checkpoints stay."""
    accelerator, start = job.accelerator, job.start
    pool = state.pool()
    if pool.n_labelled == 0:
        raise SVPConfigError("no row is labelled yet: there is nothing to train the target on")
    pool_ds = pool_dataset(filled_dataset(train, state))
    labelled = labelled_dataset(pool_ds, pool)
    run = SelectorRun(selector.role, selector.model, pool, labelled, state.rounds())
    selectors = build_selectors(selector_models(sel_args, run_args, active))
    if "target" in selectors:
        train_target(selectors["target"], [run], info, accelerator, seed=int(sel_args.seed), eval_dataset=evaluation)
    result = ActiveResult({run.role: run}, info, {"total": time.perf_counter() - start})
    rounds = pool.rounds()
    sizes = [int((rounds >= 0).sum() - (rounds > r).sum()) for r in sorted(set(rounds[rounds > 0].tolist()))]
    known = state.label_array()
    metrics = active_metrics(
        result,
        pool_ds,
        evaluation,
        data_args,
        sel_args,
        run_args,
        active,
        command=job.command,
        modality=info.modality,
        num_processes=accelerator.num_processes,
        start=start,
        total_labels=known[known >= 0],
        device=job.device.record(accelerator, num_workers=sel_args.dataloader_num_workers),
    )
    metrics.update(
        {
            "mode": "labelling",
            "selector": selector.role,
            "initial_size": int((rounds == 0).sum()),
            "budgets": sizes or [pool.n_labelled],
            "labelling": state.summary(),
        }
    )
    accuracy = run.target_accuracy
    headline = f"finished: {pool.n_labelled} labelled row(s)" + (
        f"; target {run_args.target} accuracy {accuracy:.4f}" if accuracy is not None else ""
    )
    return job.finish(
        splits=output_splits(result, data_args.train_split, evaluation, data_args.eval_split),
        scores=pool_record(result, pool_ds, labels=known),
        metrics=metrics,
        extra_files={"rounds.json": metrics["rounds"]},
        headline=headline,
        recipe=recipe_record(data_args, sel_args, run_args, active, keys=KEYS),
        overwrite=True,  # the session's own output_dir: a later finish replaces an earlier one
        keep_checkpoints=True,  # the session's warm-start weights, should it go on
    )


JOB = Job(
    "active",
    ACTIVE_DATACLASSES,
    KEYS,
    run_active,
    description="Active learning via proxy: the proxy picks what to label next, round after round.",
)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return job_main(JOB, argv)


__all__ = ["run_active", "run_labelling", "main", "pool_record", "output_splits", "active_metrics", "JOB", "KEYS"]


if __name__ == "__main__":
    main()
