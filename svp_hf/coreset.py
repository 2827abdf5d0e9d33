"""Core-set selection via proxy, from a recipe.

    python -m svp_hf.coreset recipes/quickstart.yaml [--key value ...]
    accelerate launch --config_file accelerate_config.yaml -m svp_hf.coreset recipes/cifar10.yaml

Trains the proxy on the training split, scores every example, keeps `fraction` of them by `method`, optionally
trains `target` on the kept rows and evaluates it, and writes dataset/ (with its card, scores and plots),
scores.parquet, report.md and metrics.json to `output_dir`; with `push_to_hub`, uploads dataset/ to the Hub.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import shutil
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
from accelerate.logging import get_logger
from accelerate.utils import set_seed

from . import __version__, image_cache
from .api import (
    checkpoint_signals,
    check_optimizers,
    labels_of,
    run_auto,
    run_scoring,
    selected_indices,
    subset_with_scores,
    target_args,
    target_training_config,
    training_metrics,
)
from .auto import AutoDecision, check_auto
from .card import source_metadata
from .checkpoint import CHECKPOINTS_DIR, check_run_settings, discard, on_main
from .config import RECIPE_DATACLASSES, DataArguments, RunArguments, SelectionArguments, parse_args
from .correlation import compare_scores
from .data import INDEX_COLUMN, SCORE_COLUMN, check_images, check_same_columns, get_split, hold_out, inspect_dataset, load_data, small_images
from .device import DeviceSettings
from .errors import SVPConfigError
from .hub import check_hub_target, push_to_hub
from .methods import resolve_methods, training_signals
from .models import check_model, create_model, resolve_family
from .output import check_output_dir, parse_size, write_json, write_run
from .report import score_statistics
from .selection import n_to_keep
from .strategies import AUTO
from .training import evaluate_accuracy, make_accelerator, train_model

logger = get_logger(__name__)


def _subsample(ds, n: Optional[int], seed: int):
    return ds if n is None or n >= len(ds) else ds.shuffle(seed=seed).select(range(n)).flatten_indices()


def load_splits(data_args: DataArguments, seed: int):
    """The training and evaluation splits; with `validation_split_percentage`, a dataset without `eval_split` (or
    whose `eval_split` is the training split) gets one held out of the training split."""
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files)
    train = get_split(data, data_args.train_split, "training")
    evaluation = None
    eval_split = data_args.eval_split
    if eval_split and data_args.validation_split_percentage and (eval_split not in data or eval_split == data_args.train_split):
        logger.info(
            f"holding out {data_args.validation_split_percentage}% of split {data_args.train_split!r} as the "
            f"evaluation split {eval_split!r}",
            main_process_only=True,
        )
        train, evaluation = hold_out(train, float(data_args.validation_split_percentage), seed, data_args.label_column)
    elif eval_split:
        evaluation = get_split(data, eval_split, "evaluation")
    train = _subsample(train, data_args.max_train_samples, seed)
    if evaluation is not None:
        evaluation = _subsample(evaluation, data_args.max_eval_samples, seed)
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


# Settings that change where and how a result is written or published, never what is computed: a resumed run may
# change them, and none of them (the Hub token least of all) is written into the checkpoints.
UNRECORDED_SETTINGS = (
    "output_dir", "overwrite_output_dir", "resume", "report_to", "keep_checkpoints", "max_shard_size",
    "push_to_hub", "hub_dataset_id", "hub_private", "hub_overwrite", "hub_token",
    "pin_memory", "image_cache_max_memory",
)


def run_settings(data_args, sel_args, run_args, num_processes: int) -> Dict[str, Any]:
    """What a resumed run must share with the run whose checkpoints it continues."""
    settings = {**vars(data_args), **vars(sel_args), **vars(run_args), "num_processes": num_processes}
    return {k: v for k, v in settings.items() if k not in UNRECORDED_SETTINGS}


def run_provenance(job: str, command: Optional[str], data_args: DataArguments, train, evaluation, modality: str) -> Dict[str, Any]:
    """The head of a run's metrics: what made it (svp_hf version, command, job) and the data it read."""
    return {
        "svp_hf_version": __version__,
        "command": command,
        "job": job,
        "source": source_metadata(
            train,
            dataset_name=data_args.dataset_name,
            split=data_args.train_split,
            modality=modality,
            config_name=data_args.dataset_config_name,
            max_train_samples=data_args.max_train_samples,
            eval_dataset=evaluation,
            eval_split=data_args.eval_split,
        ),
        "dataset_name": data_args.dataset_name,
        "train_split": data_args.train_split,
        "eval_split": data_args.eval_split,
    }


def job_accelerator(run_args: RunArguments):
    """The job's Accelerator: the recipe's mixed precision, its trackers logging under `output_dir`, and gloo
    data-parallel processes when launched on a machine without GPUs."""
    kwargs = {"dynamo_backend": "inductor"} if run_args.torch_compile else {}
    return make_accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=run_args.report_to,
        project_dir=run_args.output_dir if run_args.report_to else None,
        **kwargs,
    )


def device_settings(run_args: RunArguments) -> DeviceSettings:
    """The recipe's device keys; also bounds the decoded image cache held in memory."""
    image_cache.configure(max_memory=parse_size(run_args.image_cache_max_memory, "image_cache_max_memory"))
    return DeviceSettings(channels_last=run_args.channels_last, pin_memory=run_args.pin_memory, torch_compile=run_args.torch_compile)


def checked_images(train, evaluation, info, data_args: DataArguments, skip: bool):
    """The splits with every image checked to decode (the decode-once pass), before anything is trained or written:
    an ``SVPRuntimeError`` naming the rows and column that cannot be decoded, or, with `skip`, the splits without
    them and the skipped row numbers per split."""
    skipped = {}
    if info.modality != "image" or not (skip or small_images(info)):  # larger images: checked up front only to skip
        return train, evaluation, skipped
    train, bad = check_images(train, info, skip=skip, what=f"split {data_args.train_split!r}")
    if bad:
        skipped[data_args.train_split] = [int(r) for r in bad]
    if evaluation is not None:
        evaluation, bad = check_images(evaluation, info, skip=skip, what=f"split {data_args.eval_split!r}")
        if bad:
            skipped[data_args.eval_split] = [int(r) for r in bad]
    if skipped:
        logger.warning(f"skipped rows whose image cannot be decoded: {skipped}", main_process_only=True)
    return train, evaluation, skipped


def load_inspected_splits(data_args: DataArguments, modality: str, seed: int, models=(), *, trust_remote_code=False):
    """The training and evaluation splits, and the training split's columns inspected for `modality` (checked to be
    in the evaluation split too); each of `models` is checked against them before anything is trained."""
    train, evaluation = load_splits(data_args, seed)
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    info = inspect_dataset(train, modality, **columns)
    for name in filter(None, models):
        check_model(name, info, trust_remote_code=trust_remote_code)
    if evaluation is not None:
        check_same_columns(evaluation, info)
    return train, evaluation, info


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


def run_streaming(
    data_args: DataArguments, sel_args: SelectionArguments, run_args: RunArguments, *, command: Optional[str] = None
) -> Dict[str, Any]:
    """``streaming: true``: read the training split with ``streaming=True``, score it with the given proxy one shard
    at a time (split across processes; resumable by shard), select, and write ``scores.parquet``, ``selected.parquet``
    (the kept rows' ``svp_index`` and score) and ``metrics.json``; the data is never prepared locally."""
    from .api import prepare_inputs
    from .output import RESULT_NAMES

    start = time.perf_counter()
    check_streaming(sel_args, run_args)
    accelerator = job_accelerator(run_args)
    set_seed(int(sel_args.seed))
    check_output_dir(run_args.output_dir, run_args.overwrite_output_dir)
    resolve_methods(sel_args.methods)
    device = device_settings(run_args)
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files, streaming=True)
    stream = get_split(data, data_args.train_split, "training")
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    family, info = prepare_inputs(stream, sel_args.proxy, columns, trust_remote_code=bool(sel_args.trust_remote_code))
    checkpoints = os.path.join(run_args.output_dir, CHECKPOINTS_DIR)
    if not run_args.resume:
        discard(accelerator, [checkpoints])
    check_run_settings(accelerator, checkpoints, run_settings(data_args, sel_args, run_args, accelerator.num_processes))
    run = run_scoring(stream, sel_args, family=family, info=info, accelerator=accelerator, checkpoint_dir=checkpoints, device=device)
    t0 = time.perf_counter()
    keep = selected_indices(
        run.scores, sel_args.method, sel_args.fraction, strategy=sel_args.strategy,
        class_balanced=sel_args.class_balanced, seed=sel_args.seed, coverage_beta=sel_args.coverage_beta,
    )
    timings = dict(run.timings, selection=time.perf_counter() - t0)
    timings["total"] = time.perf_counter() - start
    labels = np.asarray(run.scores["label"], dtype=np.int64)
    metrics = {
        "svp_hf_version": __version__, "command": command, "job": "coreset", "streaming": True,
        "dataset_name": data_args.dataset_name, "train_split": data_args.train_split,
        "n_total": len(run.scores), "n_selected": int(len(keep)), "method": sel_args.method,
        "scored_methods": sel_args.methods, "fraction": sel_args.fraction, "strategy": sel_args.strategy,
        "selected_strategy": sel_args.strategy, "class_balanced": sel_args.class_balanced, "seed": sel_args.seed,
        "proxy": sel_args.proxy, "proxy_checkpoint": sel_args.proxy_checkpoint,
        "score_statistics": score_statistics(run.scores),
        "selected_per_class": per_class_counts(labels[keep], info.class_names),
        "total_per_class": per_class_counts(labels, info.class_names),
        "timings": timings, "num_processes": accelerator.num_processes, "device": device.record(accelerator),
    }
    if accelerator.is_main_process:
        os.makedirs(run_args.output_dir, exist_ok=True)
        for name in RESULT_NAMES:  # an earlier result in output_dir (allowed by overwrite_output_dir) goes first
            path = os.path.join(run_args.output_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.isfile(path):
                os.remove(path)
        selected = run.scores.select(keep)
        selected.to_parquet(os.path.join(run_args.output_dir, SELECTED_FILE + ".tmp"))
        run.scores.to_parquet(os.path.join(run_args.output_dir, "scores.parquet.tmp"))
        os.replace(os.path.join(run_args.output_dir, SELECTED_FILE + ".tmp"), os.path.join(run_args.output_dir, SELECTED_FILE))
        os.replace(os.path.join(run_args.output_dir, "scores.parquet.tmp"), os.path.join(run_args.output_dir, "scores.parquet"))
        write_json(os.path.join(run_args.output_dir, "metrics.json.tmp"), metrics)
        os.replace(os.path.join(run_args.output_dir, "metrics.json.tmp"), os.path.join(run_args.output_dir, "metrics.json"))
        logger.info(f"kept {len(keep)} of {len(run.scores)} streamed rows by {sel_args.method}; wrote {run_args.output_dir}")
    if not run_args.keep_checkpoints:
        discard(accelerator, [checkpoints])
    accelerator.wait_for_everyone()
    return metrics


def run_coreset(
    data_args: DataArguments,
    sel_args: SelectionArguments,
    run_args: RunArguments,
    *,
    command: Optional[str] = None,
) -> Dict[str, Any]:
    """The whole core-set job; returns the metrics it wrote."""
    if run_args.streaming:
        return run_streaming(data_args, sel_args, run_args, command=command)
    start = time.perf_counter()
    accelerator = job_accelerator(run_args)
    set_seed(int(sel_args.seed))
    # Every check that needs no training, first.
    check_output_dir(run_args.output_dir, run_args.overwrite_output_dir)
    resolve_methods(sel_args.methods)
    repo_id = None
    if run_args.push_to_hub:
        _, repo_id = check_hub_target(run_args.hub_dataset_id, token=run_args.hub_token, overwrite=run_args.hub_overwrite)
    family = resolve_family(sel_args.proxy)
    target_family = resolve_family(run_args.target) if run_args.target else None
    check_optimizers(sel_args, run_args)
    if target_family is not None and target_family.modality != family.modality:
        raise SVPConfigError(
            f"proxy {sel_args.proxy!r} reads {family.modality} data but target {run_args.target!r} reads {target_family.modality}"
        )
    trust_remote_code = bool(sel_args.trust_remote_code)
    train, evaluation, info = load_inspected_splits(
        data_args, family.modality, int(sel_args.seed), (sel_args.proxy, run_args.target), trust_remote_code=trust_remote_code
    )
    device = device_settings(run_args)
    train, evaluation, skipped = checked_images(train, evaluation, info, data_args, run_args.skip_undecodable)
    n_keep = n_to_keep(sel_args.fraction, len(train))
    if sel_args.strategy == AUTO:
        check_auto(len(train), labels_of(train, info), sel_args.fraction, sel_args.auto_holdout)
    if sel_args.proxy_checkpoint:
        checkpoint_signals(sel_args.proxy_checkpoint, training_signals(resolve_methods(sel_args.methods)), len(train))
    if run_args.report_to:
        settings = {**vars(data_args), **vars(sel_args), **vars(run_args), "hub_token": None}
        # Trackers take scalars only (TensorBoard's hparams): lists, mappings and None are logged as text.
        config = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items()}
        accelerator.init_trackers("svp_hf_coreset", config=config)

    checkpoints = os.path.join(run_args.output_dir, CHECKPOINTS_DIR)
    # Checkpoints left next to a finished result (replaced, since check_output_dir let us through) are stale.
    if not run_args.resume or os.path.exists(os.path.join(run_args.output_dir, "metrics.json")):
        discard(accelerator, [checkpoints])
    check_run_settings(accelerator, checkpoints, run_settings(data_args, sel_args, run_args, accelerator.num_processes))

    run = run_scoring(
        train, sel_args, family=family, info=info, accelerator=accelerator, eval_dataset=evaluation, checkpoint_dir=checkpoints,
        device=device,
    )
    timings = dict(run.timings)
    strategy, coverage_beta, decision = sel_args.strategy, sel_args.coverage_beta, None
    if strategy == AUTO:
        auto_args = sel_args
        if sel_args.auto_epochs is None and run_args.target:  # check with the schedule length the target will train for
            auto_args = dataclasses.replace(sel_args, auto_epochs=int(run_args.target_epochs))
        decision = resumable_auto(train, run.scores, auto_args, family=family, info=info, accelerator=accelerator, folder=checkpoints)
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
        target = create_model(run_args.target, info, pretrained=bool(sel_args.pretrained), trust_remote_code=trust_remote_code)
        config = target_training_config(sel_args, run_args, device=device)
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
        **run_provenance("coreset", command, data_args, train, evaluation, family.modality),
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
        "proxy_epochs": sel_args.proxy_epochs,
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
        "num_processes": accelerator.num_processes,
        "device": device.record(accelerator, run.proxy),
        "skipped_undecodable": skipped,
    }
    if accelerator.trackers:
        final = {"proxy/eval_accuracy": run.proxy_accuracy, "target/eval_accuracy": target_accuracy, "n_selected": len(pruned)}
        final.update({f"seconds/{k}": v for k, v in timings.items()})
        accelerator.log({k: v for k, v in final.items() if v is not None})
    if accelerator.is_main_process:
        splits = {data_args.train_split: pruned}
        if evaluation is not None:
            splits[data_args.eval_split] = with_null_scores(evaluation)
        metrics = write_run(
            run_args.output_dir,
            splits=splits,
            scores=run.scores,
            target_scores=target_scores,
            metrics=metrics,
            overwrite=run_args.overwrite_output_dir,
            max_shard_size=run_args.max_shard_size,
            repo_id=repo_id,
        )
        logger.info(
            f"kept {len(pruned)} of {len(train)} rows by {sel_args.method}; proxy accuracy {run.proxy_accuracy}, "
            f"target accuracy {target_accuracy}; wrote {run_args.output_dir}",
            main_process_only=True,
        )
        if repo_id is not None:
            url = push_to_hub(
                run_args.output_dir,
                repo_id,
                private=run_args.hub_private,
                token=run_args.hub_token,
                overwrite=run_args.hub_overwrite,
            )
            metrics["hub_url"] = url
            logger.info(f"pushed {run_args.output_dir}/dataset to {url}", main_process_only=True)
    if not run_args.keep_checkpoints:
        discard(accelerator, [checkpoints])
    accelerator.wait_for_everyone()
    if run_args.report_to:
        accelerator.end_training()
    return metrics


AUTO_DECISION = "auto.json"


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def resumable_auto(train, scores, sel_args, *, family, info, accelerator, folder: str) -> AutoDecision:
    """``strategy: auto``'s decision, saved under the run's checkpoints so that a resumed run does not redo it."""
    path = os.path.join(folder, AUTO_DECISION)
    saved = on_main(accelerator, _read_json, path)
    if saved is not None:
        saved.pop("chosen", None)
        logger.info(f"auto: decision found in {path}, not checking again", main_process_only=True)
        return AutoDecision(**saved)
    decision = run_auto(train, scores, sel_args, family=family, info=info, accelerator=accelerator)
    if accelerator.is_main_process:
        os.makedirs(folder, exist_ok=True)
        write_json(path + ".tmp", decision.as_dict())
        os.replace(path + ".tmp", path)
    accelerator.wait_for_everyone()
    return decision


def redact_token(argv: Sequence[str]) -> list:
    """`argv` with the value of ``--hub_token`` hidden: the command is recorded in metrics.json and the card."""
    out = []
    for previous, arg in zip([None, *argv], argv):
        if previous == "--hub_token":
            arg = "***"
        elif arg.startswith("--hub_token="):
            arg = "--hub_token=***"
        out.append(arg)
    return out


def recipe_main(prog: str, job: Callable[..., Dict[str, Any]], dataclass_types, argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    """``python -m PROG RECIPE.yaml [--key value ...]``: parse into `dataclass_types`, run `job`; bad input exits 2."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is too many
    argv = list(sys.argv[1:] if argv is None else argv)
    command = f"python -m {prog} " + " ".join(shlex.quote(a) for a in redact_token(argv))
    try:
        return job(*parse_args(argv, dataclass_types=dataclass_types), command=command)
    except SVPConfigError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    return recipe_main("svp_hf.coreset", run_coreset, RECIPE_DATACLASSES, argv)


if __name__ == "__main__":
    main()
