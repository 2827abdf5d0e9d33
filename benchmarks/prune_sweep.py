"""Benchmark 5: a prune-rate sweep, every strategy against random, side by side in one run, with the account.

Two suites, each per seed: the proxy is trained once on the training rows, recording the training signals, and
scores every method (el2n, forgetting, aum, the library's default method and random). The target is trained on all
rows (the *full data* arm) and then, for every kept fraction, from scratch on each arm's subset for the same number
of epochs as the full data (SVP's end-to-end protocol: a smaller subset takes fewer steps; the steps are recorded).
Arms: ``random``; ``top`` and ``coverage`` over each of el2n, forgetting and aum; ``auto, unbudgeted (before)``, the
old default (``strategy: auto`` with its full, unbudgeted check on the sweep proxy's scores); and ``default
(budgeted)``, the library's default as a job with a target runs it.

``default (pre-checked)`` goes through the library's one pipeline exactly as a job with a target does
(:class:`svp_hf.stages.orchestrator.Pruner` with the recipe's defaults, ``strategy: auto``, the default method and
``selection_budget``, ``DEFAULT_SELECTION_BUDGET``, and the target as the pruner's target; ``Pruner.prune``): its
pre-check probes the target and the proxy back to back and, when the proxy's estimated training and scoring exceed the
budget's share of the target's estimated full-data training, keeps random without training the proxy; otherwise the
proxy trains and scores (the default method only) and ``Pruner.plan`` sizes the check to what is left. Each fraction
is a job of its own (its proxy, when trained, trained in its cell). In the same process, just before its cells, the
target is trained on all rows again, so that its account (``svp_hf.account.target_account``: selection seconds = the
pre-check's probes + proxy training + scoring + the check + the selection, against the target on the kept rows and on
all rows) sets seconds measured under the same load side by side. Its part files are ``seedN-fF-default_precheck.json``
(and ``seedN-default_precheck-full.json``); the earlier ``default_budgeted`` parts are left as they were.

Every cell's account is in the summary: selection seconds and the target's seconds on the kept rows against the
full-data arm's (speedup and selection share). ``random`` needs no proxy (its selection is a seeded draw), ``top`` and
``coverage`` the sweep proxy's training and scoring (shared by every method, as recorded per seed) and the selection,
the unbudgeted ``auto`` that and its check; those arms set against the full-data arm of their own run.

- ``image``: CIFAR-10 from ``../shared/data/cifar10``, ResNet-20 proxy, a CIFAR ResNet target with a fixed schedule;
- ``text``: SST-2 from ``../shared/data/sst2``, a small fastText proxy for few epochs, a larger fastText target.

Every finished arm is written to ``--parts-dir`` as it completes (and the proxy's scores once per seed), so a rerun
with the same settings skips what is done and a sweep can span sessions; the summary JSON is rewritten at the end.
``--finished-only`` summarises what is on disk (an arm missing from some seeds is averaged over the seeds it has).

    python -m benchmarks.prune_sweep                                # both suites, the settings recorded in RESULTS.md
    python -m benchmarks.prune_sweep --only text                    # one suite
    python -m benchmarks.prune_sweep --quick --out-dir /tmp/sweep   # built-in data, tiny budgets: about a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.common import (
    BENCHMARK_PRECISION,
    DEFAULT_SHARED_DATA,
    RESULTS_DIR,
    mean_spread,
    offline_env,
    save_benchmark,
    train_proxy,
)

SWEEP_METHODS = ["el2n", "forgetting", "aum"]
SUITES = ("image", "text")
# The library's default, budgeted (a Pruner with a target), and the old unbudgeted auto it replaces in the headline.
# Its part key: "default_precheck" since the default prices its proxy before training it (the parts of the earlier
# "default_budgeted" arm, whose proxy always trained, stay on disk untouched).
DEFAULT_LABEL = "default (pre-checked)"
DEFAULT_PART = "default_precheck"
UNBUDGETED_LABEL = "auto, unbudgeted (before)"
NOT_STRATEGY_ARMS = ("full data", DEFAULT_LABEL, UNBUDGETED_LABEL)


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=SUITES, default=list(SUITES))
    p.add_argument("--fractions", type=float, nargs="+", default=None, help="kept fractions (default: 0.1 0.3 0.5 0.7)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--methods", nargs="+", default=SWEEP_METHODS, help="methods swept with top and coverage")
    p.add_argument("--batch-size", type=int, default=128)
    # image suite
    p.add_argument("--image-dataset", default=str(DEFAULT_SHARED_DATA / "cifar10"))
    p.add_argument("--image-train-size", type=int, default=20000, help="seeded subset of the training split")
    p.add_argument("--image-test-size", type=int, default=2000, help="seeded subset of the test split")
    p.add_argument("--image-proxy", default="resnet20")
    p.add_argument("--image-proxy-epochs", type=int, default=5)
    p.add_argument("--image-target", default="resnet20")
    p.add_argument("--image-target-epochs", type=int, default=10)
    p.add_argument("--image-learning-rate", type=float, default=0.1)
    # text suite
    p.add_argument("--text-dataset", default=str(DEFAULT_SHARED_DATA / "sst2"))
    p.add_argument("--text-train-size", type=int, default=None, help="default: the whole training split")
    p.add_argument("--text-test-split", default="test")
    p.add_argument("--text-test-size", type=int, default=None)
    p.add_argument("--text-proxy", default="fasttext,dim=16")
    p.add_argument("--text-proxy-epochs", type=int, default=3)
    p.add_argument("--text-target", default="fasttext,dim=64")
    p.add_argument("--text-target-epochs", type=int, default=8)
    p.add_argument("--text-learning-rate", type=float, default=2.0)
    p.add_argument("--name", default="prune_sweep")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--parts-dir", default=None, help="finished arms (default: OUT_DIR/prune_sweep_parts)")
    p.add_argument("--quick", action="store_true", help="built-in data and tiny budgets: about a minute")
    p.add_argument(
        "--finished-only", action="store_true", help="summarise the seeds whose every arm is on disk; train nothing"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.image_dataset, args.text_dataset = "builtin:digits", "builtin:reviews"
        args.image_train_size, args.image_test_size = 600, 200
        args.text_train_size, args.text_test_size = 600, 200
        args.image_proxy_epochs, args.image_target_epochs = 1, 1
        args.text_proxy_epochs, args.text_target_epochs = 1, 1
        args.fractions, args.seeds, args.batch_size = args.fractions or [0.3, 0.7], args.seeds[:1], 64
    args.fractions = args.fractions or [0.1, 0.3, 0.5, 0.7]
    return args


def suite_settings(args, suite: str) -> Dict[str, object]:
    """What a suite's figures depend on (not which fractions, seeds or methods run): the key of its finished parts."""
    keys = [k for k in vars(args) if k.startswith(f"{suite}_")] + ["batch_size", "quick"]
    return {k: getattr(args, k) for k in sorted(keys)}


class Parts:
    """Finished pieces of a sweep on disk: one JSON per arm, one scores file per seed; written atomically."""

    def __init__(self, root: Path, suite: str, settings: Dict[str, object]):
        digest = hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:10]
        self.dir = root / f"{suite}-{digest}"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "settings.json").write_text(json.dumps(settings, indent=2, default=str) + "\n")

    def path(self, name: str) -> Path:
        return self.dir / name

    def load(self, name: str):
        path = self.path(name)
        return json.loads(path.read_text()) if path.is_file() else None

    def save(self, name: str, payload) -> None:
        tmp = self.path(name + ".tmp")
        tmp.write_text(json.dumps(payload, indent=2, default=float) + "\n")
        os.replace(tmp, self.path(name))


def load_suite(args, suite: str, seed: int):
    from svp_hf.data import get_split, load_data
    from svp_hf.jobs.pipeline import subsample

    data = load_data(getattr(args, f"{suite}_dataset"))
    test_split = "test" if suite == "image" else args.text_test_split
    train = subsample(get_split(data, "train", "training"), getattr(args, f"{suite}_train_size"), seed)
    test = subsample(get_split(data, test_split, "evaluation"), getattr(args, f"{suite}_test_size"), seed)
    return train, test


def arm_plan(args, default_method: str):
    """(label, strategy, method, part key) of every arm at each fraction; the budgeted default (strategy ``default``)
    last."""
    plan = [("random", "random", "random", "random")]
    for method in args.methods:
        plan += [
            (f"top {method}", "top", method, f"top_{method}"),
            (f"coverage {method}", "coverage", method, f"coverage_{method}"),
        ]
    plan.append((UNBUDGETED_LABEL, "auto", default_method, f"auto_{default_method}"))
    return plan + [(DEFAULT_LABEL, "default", default_method, DEFAULT_PART)]


def part_name(seed: int, fraction: float, key: str) -> str:
    """An arm's part file: `key` is its part key (e.g. ``coverage_el2n``, ``auto_least_confidence``)."""
    return f"seed{seed}-f{fraction:g}-{key.split(' (')[0].replace(' ', '_')}.json"


def run_seed(args, suite: str, seed: int, accelerator, parts: Parts) -> Dict[str, object]:
    from datasets import Dataset

    import svp_hf
    from svp_hf.config import SelectionArguments
    from svp_hf.engine.training import evaluate_accuracy, train_model
    from svp_hf.stages.proxy import auto_check, prepare_inputs, seeded_model
    from svp_hf.stages.roles import model_settings, selection_settings, training_config

    default_method = SelectionArguments.__dataclass_fields__["method"].default
    plan = arm_plan(args, default_method)
    if args.finished_only and not all(
        parts.path(n).is_file() for n in (f"seed{seed}-proxy.json", f"seed{seed}-full.json")
    ):
        return None
    train, test = load_suite(args, suite, seed)
    proxy_name, target_name = getattr(args, f"{suite}_proxy"), getattr(args, f"{suite}_target")
    family, info = prepare_inputs(train, proxy_name, {})
    methods = list(dict.fromkeys([*args.methods, default_method, "random"]))
    common = dict(
        batch_size=args.batch_size, learning_rate=getattr(args, f"{suite}_learning_rate"), seed=seed, lr_schedule="step"
    )
    proxy_args = SelectionArguments(
        proxy=proxy_name,
        proxy_epochs=getattr(args, f"{suite}_proxy_epochs"),
        method=methods[0],
        score_methods=methods[1:],
        **common,
    )
    target_args = SelectionArguments(proxy=target_name, proxy_epochs=getattr(args, f"{suite}_target_epochs"), **common)
    target_family = svp_hf.resolve_family(target_name)

    # The sweep's proxy: trained once per seed, scoring every method, its scores kept on disk; trained (again) only
    # when an arm that ranks by its scores is still to run.
    proxy_record = parts.load(f"seed{seed}-proxy.json")
    scores_path = parts.path(f"seed{seed}-scores.parquet")
    todo = (
        []
        if args.finished_only
        else [
            (f, arm)
            for f in args.fractions
            for arm in plan
            if arm[1] != "default" and parts.load(part_name(seed, f, arm[3])) is None
        ]
    )
    if proxy_record is None or (todo and not scores_path.is_file()):
        run = train_proxy(train, proxy_args, family=family, info=info, accelerator=accelerator, eval_dataset=test)
        run.scores.to_parquet(str(scores_path))
        proxy_record = {
            "accuracy": run.proxy_accuracy,
            "seconds": run.timings["proxy_training"] + run.timings["scoring"],
        }
        parts.save(f"seed{seed}-proxy.json", proxy_record)

    target = model_settings("proxy", target_args)

    def train_target(indices: np.ndarray, fresh=None) -> Dict[str, float]:
        # `fresh`: the target the default's pre-check built and left as built, when it kept random (as the job does).
        model = seeded_model(target, info, seed, fresh)
        config = training_config("proxy", target_args)
        subset = train.select(indices)
        result = train_model(model, target_family, subset, info, config, accelerator, desc=f"target on {len(indices)}")
        acc = evaluate_accuracy(result.model, target_family, test, info, accelerator, batch_size=256, desc="evaluate")
        steps = config.epochs * math.ceil(len(indices) / config.batch_size)
        return {"accuracy": acc, "train_seconds": result.seconds, "steps": steps, "n_train": int(len(indices))}

    arms: Dict[str, Dict[str, object]] = {}
    full = parts.load(f"seed{seed}-full.json")
    if full is None:
        full = train_target(np.arange(len(train)))
        parts.save(f"seed{seed}-full.json", full)
    arms["full data"] = {"1": full}

    scores = Dataset.from_parquet(str(scores_path)) if todo else None
    for fraction in args.fractions:
        for label, strategy, method, key in plan:
            if strategy == "default":
                continue
            record = parts.load(part_name(seed, fraction, key))
            if record is None and not args.finished_only:
                t0 = time.perf_counter()
                extra: Dict[str, object] = {}
                chosen, beta = strategy, None
                if strategy == "auto":
                    # As svp_hf.coreset did before the budget: the check trains for the target's number of epochs.
                    auto_args = SelectionArguments(
                        proxy=proxy_name,
                        proxy_epochs=proxy_args.proxy_epochs,
                        auto_epochs=target_args.proxy_epochs,
                        method=method,
                        fraction=fraction,
                        **common,
                    )
                    selection = selection_settings(auto_args)  # unbudgeted: the check as written in stages/auto.py
                    decision = auto_check(
                        train,
                        scores,
                        replace(selection, auto=replace(selection.auto, budget=None)),
                        model_settings("proxy", auto_args),
                        family=family,
                        info=info,
                        accelerator=accelerator,
                        epochs=auto_args.auto_epochs,
                        eval_batch_size=int(auto_args.batch_size),
                    )
                    chosen, beta = decision.strategy, decision.coverage_beta
                    extra = {"auto": decision.as_dict(), "auto_seconds": decision.seconds}
                keep = svp_hf.selected_indices(scores, method, fraction, strategy=chosen, seed=seed, coverage_beta=beta)
                selection_seconds = time.perf_counter() - t0
                record = {**train_target(keep), "selection_seconds": selection_seconds, **extra}
                parts.save(part_name(seed, fraction, key), record)
            if record is not None:
                arms.setdefault(label, {})[f"{fraction:g}"] = record

    default_cells = run_default(
        args,
        suite,
        seed,
        parts,
        accelerator,
        train=train,
        test=test,
        info=info,
        train_target=train_target,
        proxy_args=dict(proxy=proxy_name, proxy_epochs=proxy_args.proxy_epochs, **common),
        target=target,
        default_method=default_method,
    )
    if default_cells:
        arms[DEFAULT_LABEL] = default_cells
    return {
        "seed": seed,
        "n_test": len(test),
        "proxy_accuracy": proxy_record["accuracy"],
        "proxy_seconds": proxy_record["seconds"],
        "arms": arms,
    }


def run_default(
    args,
    suite: str,
    seed: int,
    parts: Parts,
    accelerator,
    *,
    train,
    test,
    info,
    train_target,
    proxy_args,
    target,
    default_method: str,
) -> Dict[str, Dict[str, object]]:
    """The default's cells of one seed (those on disk, the others run unless ``--finished-only``): the target on all
    rows timed first, then at each fraction the job's own path, a :class:`~svp_hf.stages.orchestrator.Pruner` with the
    recipe's defaults and the target: its pre-check prices the proxy against the budget before training it (and keeps
    random without training it when selection cannot pay), else it trains and scores its own proxy (the default
    method only), plans and runs ``auto``'s budgeted check and selects; the target trains on the kept rows. Each
    fraction is a job of its own: the proxy, when trained, is trained in every cell."""
    from svp_hf.account import selection_stages, target_account
    from svp_hf.config import SelectionArguments
    from svp_hf.stages.orchestrator import Pruner
    from svp_hf.stages.preflight import check_recipe
    from svp_hf.stages.roles import stage_settings

    names = {f"{f:g}": part_name(seed, f, DEFAULT_PART) for f in args.fractions}
    cells = {f: parts.load(n) for f, n in names.items()}
    if args.finished_only or all(c is not None for c in cells.values()):
        return {f: c for f, c in cells.items() if c is not None}
    # The full-data target, timed in this process just before the default's cells: the account's reference. A pass of
    # a fresh target over the rows first, untimed, so that neither side pays the process's one-time costs (decoding
    # the images once, tokenising, first calls) when the other does not.
    full = parts.load(f"seed{seed}-{DEFAULT_PART}-full.json")
    if full is None:
        warm_up(target, train, info, accelerator)
        full = {
            **train_target(np.arange(len(train))),
            "load_average": list(os.getloadavg()),
            "mixed_precision": str(accelerator.mixed_precision),
        }
        parts.save(f"seed{seed}-{DEFAULT_PART}-full.json", full)
    for fraction in args.fractions:
        key = f"{fraction:g}"
        if cells[key] is not None:
            continue
        load_before = os.getloadavg()
        recipe = SelectionArguments(
            method=default_method, fraction=fraction, **proxy_args
        )  # strategy, budget: defaults
        check_recipe(recipe)
        proxy, _, scoring, selection = stage_settings(recipe)
        pruner = Pruner(proxy, scoring, selection, target=target, accelerator=accelerator).prepare(train, test)
        result = pruner.prune()
        trained = train_target(result.keep, result.take_target_model(target, info, seed))
        account = target_account(
            selection_stages(result.timings),
            trained["train_seconds"],
            n_total=len(train),
            n_kept=result.n_selected,
            full_data_seconds=full["train_seconds"],
            selection_budget=selection.auto.budget,
        )
        cells[key] = {
            **trained,
            "selection_seconds": account.selection_seconds,
            "timings": dict(result.timings),
            "strategy": selection.strategy,
            "selection_budget": selection.auto.budget,
            "chosen": result.decision.chosen,
            "auto": result.decision.as_dict(),
            "proxy_trained": result.scored,
            "proxy_accuracy": result.run.proxy_accuracy,
            "end_to_end": {**account.to_dict(), "summary": account.summary_line()},
            "full_data_accuracy": full["accuracy"],
            "load_average": [list(load_before), list(os.getloadavg())],
            "mixed_precision": str(accelerator.mixed_precision),  # the targets' precision (this device's default)
        }
        parts.save(names[key], cells[key])
    return cells


def warm_up(target, train, info, accelerator) -> None:
    """An untimed forward pass of a fresh `target` over every training row."""
    from svp_hf.engine.training import evaluate_accuracy
    from svp_hf.models import create_model, resolve_family

    evaluate_accuracy(
        create_model(target.name, info),
        resolve_family(target.name),
        train,
        info,
        accelerator,
        batch_size=256,
        desc="warm-up",
    )


def cell_account(label: str, cell: Dict[str, object], run: Dict[str, object]) -> Dict[str, float]:
    """One cell's account: selection seconds, the target's on the kept rows, the full data's, speedup and share.
    The budgeted default carries its own (against the full data timed beside it); ``random`` needs no proxy (its
    selection is the seeded draw); ``top``, ``coverage`` and the unbudgeted ``auto`` count the sweep proxy's training
    and scoring, recorded once per seed, plus their selection (``auto``'s check included)."""
    if "end_to_end" in cell:
        e = cell["end_to_end"]
        selection, target, full = e["selection_seconds"], e["target_seconds"], e["full_data_seconds"]
    else:
        selection = cell["selection_seconds"] + (0.0 if label == "random" else run["proxy_seconds"])
        target, full = cell["train_seconds"], run["arms"]["full data"]["1"]["train_seconds"]
    return {
        "selection_seconds": selection,
        "target_seconds": target,
        "full_data_seconds": full,
        "speedup": full / (selection + target),
        "selection_share": selection / full,
    }


def aggregate(runs: List[Dict[str, object]], fractions: List[float]) -> Dict[str, object]:
    """Per arm and fraction, over the seeds that have the cell: accuracy mean and spread, steps, the paired margin over
    random, and the account (selection and target seconds, speedup over full data, selection share); for the
    budgeted default its choices, budget and whether it held; and the suite's verdicts."""
    out: Dict[str, Dict[str, object]] = {}
    labels = list(dict.fromkeys(arm for r in runs for arm in r["arms"]))
    for arm in labels:
        out[arm] = {}
        keys = list(dict.fromkeys(k for r in runs for k in r["arms"].get(arm, {})))
        for key in sorted(keys, key=float):
            have = [r for r in runs if key in r["arms"].get(arm, {})]
            cells = [r["arms"][arm][key] for r in have]
            row = {
                "accuracy": mean_spread([c["accuracy"] for c in cells]),
                "steps": mean_spread([c["steps"] for c in cells]),
                "n_train": cells[0]["n_train"],
                "train_seconds": mean_spread([c["train_seconds"] for c in cells]),
                "seeds": [r["seed"] for r in have],
            }
            if arm != "full data":
                paired = [
                    (c, r["arms"]["random"][key]) for c, r in zip(cells, have) if key in r["arms"].get("random", {})
                ]
                row["margin_over_random"] = mean_spread([c["accuracy"] - rnd["accuracy"] for c, rnd in paired])
                accounts = [cell_account(arm, c, r) for c, r in zip(cells, have)]
                row["account"] = {k: mean_spread([a[k] for a in accounts]) for k in accounts[0]}
            if "auto_seconds" in cells[0]:
                row["auto_chosen"] = [c["auto"]["chosen"] for c in cells]
                row["auto_seconds"] = mean_spread([c["auto_seconds"] for c in cells])
            if "end_to_end" in cells[0]:
                # Where it chose random, the default kept random's own rows (the same seeded draw): the like-for-like
                # comparison is then with itself, the same rows trained by the same code in the same run, whereas the
                # random arm was trained in the sweep's first run (other code: see full_data_rerun_minus_recorded).
                row["margin_over_recorded_random"] = row["margin_over_random"]
                row["margin_over_random"] = mean_spread(
                    [
                        0.0 if c["chosen"] == "random" else c["accuracy"] - r["arms"]["random"][key]["accuracy"]
                        for c, r in zip(cells, have)
                        if c["chosen"] == "random" or key in r["arms"].get("random", {})
                    ]
                )
                row["chosen"] = [c["chosen"] for c in cells]
                row["fell_back"] = [bool(c["auto"].get("fallback")) for c in cells]
                # A check that started but ended early at its budget (its stop rule), with the candidates it trained.
                row["check_stopped"] = [bool((c["auto"].get("budget") or {}).get("stopped")) for c in cells]
                row["candidates_trained"] = [len(c["auto"].get("candidates") or []) for c in cells]
                row["stages"] = {
                    "pre-check probes": mean_spread([c["timings"].get("precheck", 0.0) for c in cells]),
                    "proxy training and scoring": mean_spread(  # none when the pre-check kept random untrained
                        [c["timings"].get("proxy_training", 0.0) + c["timings"].get("scoring", 0.0) for c in cells]
                    ),
                    "probe and check": mean_spread([c["timings"].get("auto", 0.0) for c in cells]),
                    "selection": mean_spread([c["timings"].get("selection", 0.0) for c in cells]),
                }
                row["selection_budget"] = cells[0]["selection_budget"]
                row["within_budget"] = [c["end_to_end"]["within_budget"] for c in cells]
                row["full_data_accuracy_same_run"] = mean_spread([c["full_data_accuracy"] for c in cells])
                # The same rows trained again in another run: how far training alone moves an accuracy between runs.
                row["full_data_rerun_minus_recorded"] = mean_spread(
                    [c["full_data_accuracy"] - r["arms"]["full data"]["1"]["accuracy"] for c, r in zip(cells, have)]
                )
                # Per seed, as measured: on shared cores the same training's wall-clock seconds move between runs.
                row["per_seed"] = {
                    "speedup": [a["speedup"] for a in accounts],
                    "selection_share": [a["selection_share"] for a in accounts],
                    "full_data_seconds": [a["full_data_seconds"] for a in accounts],
                    "recorded_full_data_seconds": [r["arms"]["full data"]["1"]["train_seconds"] for r in have],
                }
                row["probe_full_data_seconds"] = mean_spread(
                    [(c["auto"].get("budget") or {}).get("reference_seconds") for c in cells]
                )
            out[arm][key] = row
    return {
        "arms": out,
        "fractions": [f"{f:g}" for f in fractions],
        "proxy_accuracy": mean_spread([r["proxy_accuracy"] for r in runs]),
        "proxy_seconds": mean_spread([r["proxy_seconds"] for r in runs]),
        "checks": default_checks(out, [f"{f:g}" for f in fractions]),
    }


def at_or_above_random(margin: Dict[str, float]) -> bool:
    """The paired margin over random is not below zero by more than its spread over seeds (mean + std >= 0)."""
    return margin["mean"] + (margin["std"] or 0.0) >= 0.0


def default_checks(arms: Dict[str, Dict[str, object]], fractions: List[str]) -> Dict[str, object]:
    """What the issue asks to hold of the default, from the cells: its selection share within its budget in every
    cell (every seed at every fraction), and at or above random (within the spread over seeds) at every fraction.
    ``None`` where the default has no cell yet."""
    cells = arms.get(DEFAULT_LABEL, {})
    per_fraction = {
        f: {
            "within_budget": sum(bool(w) for w in cells[f]["within_budget"]),
            "cells": len(cells[f]["within_budget"]),
            "at_or_above_random": at_or_above_random(cells[f]["margin_over_random"]),
        }
        for f in fractions
        if f in cells
    }
    if not per_fraction:
        return {
            "per_fraction": {},
            "within_budget_every_cell": None,
            "at_or_above_random_every_fraction": None,
            "complete": False,
        }
    return {
        "per_fraction": per_fraction,
        "within_budget_every_cell": all(v["within_budget"] == v["cells"] for v in per_fraction.values()),
        "at_or_above_random_every_fraction": all(v["at_or_above_random"] for v in per_fraction.values()),
        "complete": len(per_fraction) == len(fractions),
    }


def plot(summary: Dict[str, Dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suites = list(summary)
    fig, axes = plt.subplots(1, len(suites), figsize=(6.5 * len(suites), 4.6), squeeze=False)
    for ax, suite in zip(axes[0], suites):
        s = summary[suite]
        full = s["arms"]["full data"]["1"]["accuracy"]
        for arm, cells in s["arms"].items():
            if arm == "full data":
                continue
            xs = [float(f) for f in s["fractions"] if f in cells]
            ys = [cells[f"{x:g}"]["accuracy"]["mean"] for x in xs]
            es = [cells[f"{x:g}"]["accuracy"]["std"] for x in xs]
            style = (
                dict(lw=2.4, color="black")
                if arm == "random"
                else dict(lw=2.0, color="magenta", ls="--")
                if "default" in arm
                else dict(lw=1.2, alpha=0.8)
            )
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=3, label=arm, **style)
        ax.axhline(full["mean"], color="grey", ls="--", lw=1, label="full data")
        ax.set_xlabel("fraction of training rows kept")
        ax.set_ylabel("target test accuracy")
        ax.set_title(s["title"])
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    offline_env()
    args = parse(argv)
    from svp_hf.engine.training import make_accelerator

    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    parts_root = Path(args.parts_dir) if args.parts_dir else out_dir / "prune_sweep_parts"
    accelerator = make_accelerator(mixed_precision=BENCHMARK_PRECISION)
    suites, summary = {}, {}
    for suite in args.only:
        parts = Parts(parts_root, suite, suite_settings(args, suite))
        runs = [r for r in (run_seed(args, suite, seed, accelerator, parts) for seed in args.seeds) if r is not None]
        if not runs:
            print(f"{suite}: no seed has its proxy and full data on disk yet")
            continue
        suites[suite] = runs
        summary[suite] = aggregate(runs, args.fractions)
        dataset = Path(getattr(args, f"{suite}_dataset")).name
        summary[suite]["title"] = (
            f"{dataset}: {getattr(args, f'{suite}_proxy')} proxy, {getattr(args, f'{suite}_target')} target"
        )
        summary[suite]["n_train"] = runs[0]["arms"]["full data"]["1"]["n_train"]
        summary[suite]["n_test"] = runs[0]["n_test"]
    plot_path = out_dir / "prune_sweep.png"
    if summary:
        plot(summary, plot_path)
    argv = [a for a in (argv if argv is not None else __import__("sys").argv[1:]) if a != "--finished-only"]
    return save_benchmark(
        "prune_sweep",
        "prune_sweep",
        args,
        argv,
        exclude=("parts_dir", "finished_only"),
        runs=suites,
        summary=summary,
        plot=plot_path.name,
    )


if __name__ == "__main__":
    main()
