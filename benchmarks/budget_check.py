"""Benchmark 8: is ``auto``'s budgeted check still honest? Three pieces of evidence on the prune sweep's two suites (benchmark 5).

1. **The fallback rule** (``svp_hf.stages.auto.FALLBACK_RULE``), derived from the sweep's summary: at each kept fraction, the
   strategies whose paired margin over random exceeds its spread over seeds on every suite (none: random).
2. **The default budget on the sweep's own runs** (no training): for every recorded cell, the check ``plan_check``
   sizes for ``DEFAULT_SELECTION_BUDGET`` from the proxy's measured seconds against the full-data target's, and what
   the budgeted default would have chosen (the fallback when it cannot fit), against what the unbudgeted check chose
   and the target accuracy each choice reached (both recorded by the sweep).
3. **The smallest honest check, run**: with the sweep's settings and seeds, the proxy is trained again, and the
   smallest check a budget allows (one seed, ``random`` against ``coverage`` at the share that follows the prune rate,
   a quarter of the rows) chooses at every kept fraction (its stop rule off: the question is its choice). Its margin over random (the target trained on its choice and
   on random's subset here, when it chose other than random) is set against the unbudgeted check's recorded margin.

Every cell of 3 is written to ``--parts-dir`` when it finishes, and a rerun skips it.

    python -m benchmarks.budget_check                          # against benchmarks/results/prune_sweep.json
    python -m benchmarks.budget_check --quick --out-dir /tmp/b # runs a quick sweep first: a few minutes
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from benchmarks import prune_sweep
from benchmarks.common import BENCHMARK_PRECISION, RESULTS_DIR, mean_spread, offline_env, save_benchmark, train_proxy

DEFAULT_ARM = "auto_least_confidence"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default=None, help="the prune sweep's JSON (default: OUT_DIR/prune_sweep.json)")
    p.add_argument("--sweep-parts", default=None, help="its parts (default: next to the sweep JSON)")
    p.add_argument("--only", nargs="+", choices=prune_sweep.SUITES, default=list(prune_sweep.SUITES))
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the sweep's")
    p.add_argument("--fractions", type=float, nargs="+", default=None, help="default: the sweep's")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-run", action="store_true", help="evidence 1 and 2 only (no training)")
    p.add_argument("--name", default="budget_check")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--parts-dir", default=None, help="finished cells of 3 (default: OUT_DIR/budget_check_parts)")
    p.add_argument("--quick", action="store_true", help="run a quick prune sweep first and check it")
    return p.parse_args(argv)


# --- 1. the fallback rule --------------------------------------------------------------------------------------------


def supported_strategies(summary: Dict[str, Dict]) -> Dict[str, List[str]]:
    """Per kept fraction, the sweep arms (other than random and the defaults, budgeted or not) whose paired margin
    over random is above its spread over at least two seeds (mean - std > 0) on every suite."""
    suites = list(summary.values())
    fractions = suites[0]["fractions"]
    arms = [
        a
        for a in suites[0]["arms"]
        if a not in ("random", *prune_sweep.NOT_STRATEGY_ARMS)
        and not a.endswith("(default)")  # "(default)": older sweeps
    ]
    out = {}
    for f in fractions:
        out[f] = [
            arm
            for arm in arms
            if all(
                arm in s["arms"]
                and f in s["arms"][arm]
                and s["arms"][arm][f]["margin_over_random"]["n"] >= 2
                and s["arms"][arm][f]["margin_over_random"]["mean"] - s["arms"][arm][f]["margin_over_random"]["std"] > 0
                for s in suites
            )
        ]
    return out


# --- 2. the default budget on the recorded cells ---------------------------------------------------------------------


def sweep_args(sweep: Dict):
    """The sweep's own arguments, parsed again from the command it recorded."""
    argv = shlex.split(sweep["command"])[3:]  # after "python -m benchmarks.prune_sweep"
    return prune_sweep.parse(argv)


def proxy_rate(seconds: float, n_rows: int, epochs: int):
    from svp_hf.stages.auto import TrainingRate

    return TrainingRate.measured(seconds, n_rows, epochs, source=f"proxy training and scoring {seconds:.1f} s")


def default_budget_cell(parts: prune_sweep.Parts, args, suite: str, seed: int, fraction: float) -> Optional[Dict]:
    """What the budgeted default would have done in one recorded cell (None when the cell is not on disk)."""
    from svp_hf.stages.auto import DEFAULT_SELECTION_BUDGET, plan_check

    proxy, full = parts.load(f"seed{seed}-proxy.json"), parts.load(f"seed{seed}-full.json")
    auto = parts.load(prune_sweep.part_name(seed, fraction, DEFAULT_ARM))
    random = parts.load(prune_sweep.part_name(seed, fraction, "random"))
    if None in (proxy, full, auto, random):
        return None
    n, epochs = full["n_train"], getattr(args, f"{suite}_target_epochs")
    plan = plan_check(
        budget=DEFAULT_SELECTION_BUDGET,
        reference_seconds=full["train_seconds"],
        reference="target",
        spent_seconds=proxy["seconds"],
        rate=proxy_rate(proxy["seconds"], n, getattr(args, f"{suite}_proxy_epochs")),
        n_rows=n,
        fraction=fraction,
        epochs=epochs,
    )
    unbudgeted = auto["auto"]["chosen"]
    return {
        "suite": suite,
        "seed": seed,
        "fraction": fraction,
        "proxy_share": proxy["seconds"] / full["train_seconds"],
        "check_share_unbudgeted": auto["auto_seconds"] / full["train_seconds"],
        "fits": plan.fits,
        "planned_seconds": plan.planned_seconds,
        "shrunk": plan.shrunk,
        "budgeted_choice": "random" if not plan.fits else None,  # a plan that fits must be run (evidence 3)
        "unbudgeted_choice": unbudgeted,
        "budgeted_accuracy": random["accuracy"] if not plan.fits else None,
        "unbudgeted_accuracy": auto["accuracy"],
        "random_accuracy": random["accuracy"],
    }


# --- 3. the smallest honest check, run -------------------------------------------------------------------------------


def smallest_plan(n_rows: int, fraction: float, epochs: int, rate, num_classes: int):
    """plan_check given exactly the seconds of its smallest check (one seed, random and coverage, a quarter of the
    rows) to spend, the headroom kept for the probe's error included: the plan it returns is that check."""
    from svp_hf.selection.ranking import n_to_keep
    from svp_hf.stages.auto import (
        BUDGET_HEADROOM,
        DEFAULT_AUTO_HOLDOUT,
        MIN_POOL_SHARE,
        candidates_for,
        check_cost,
        plan_check,
        shrink_order,
    )

    fit = n_rows - int(round(DEFAULT_AUTO_HOLDOUT * n_rows))
    pool = max(int(math.ceil(MIN_POOL_SHARE * fit)), int(math.ceil(num_classes / fraction)))
    kept = len(candidates_for(fraction)) - len(shrink_order(candidates_for(fraction), fraction, None))
    seconds = check_cost(rate, kept, 1, n_to_keep(fraction, pool), epochs, n_rows - fit)
    plan = plan_check(
        budget=1.0,
        reference_seconds=seconds / (1.0 - BUDGET_HEADROOM) * (1 + 1e-9),
        reference="target",
        spent_seconds=0.0,
        rate=rate,
        n_rows=n_rows,
        fraction=fraction,
        epochs=epochs,
        num_classes=num_classes,
    )
    assert (
        plan.fits and plan.seeds == 1 and len(plan.candidates) == kept and plan.subset_rows == n_to_keep(fraction, pool)
    ), plan
    return plan


def run_suite_seed(
    args,
    sargs,
    suite: str,
    seed: int,
    fractions: List[float],
    sweep_parts: prune_sweep.Parts,
    parts: prune_sweep.Parts,
    accelerator,
) -> List[Dict]:
    """Evidence 3 for one suite and seed: the proxy trained once (least_confidence scores), then every fraction."""
    from accelerate.utils import set_seed

    import svp_hf
    from svp_hf.config import RunArguments, SelectionArguments
    from svp_hf.engine.training import evaluate_accuracy, train_model
    from svp_hf.models import create_model
    from svp_hf.selection.methods import get_method
    from svp_hf.stages.auto import choose_strategy, proxy_trainer
    from svp_hf.stages.proxy import labels_of, method_values, prepare_inputs, score_positions
    from svp_hf.stages.roles import model_settings, training_config

    names = [f"seed{seed}-f{f:g}.json" for f in fractions]
    if all(parts.load(n) is not None for n in names):
        return [parts.load(n) for n in names]
    train, test = prune_sweep.load_suite(sargs, suite, seed)
    proxy_name, target_name = getattr(sargs, f"{suite}_proxy"), getattr(sargs, f"{suite}_target")
    family, info = prepare_inputs(train, proxy_name, {})
    method = SelectionArguments.__dataclass_fields__["method"].default
    common = dict(
        batch_size=sargs.batch_size,
        learning_rate=getattr(sargs, f"{suite}_learning_rate"),
        seed=seed,
        lr_schedule="step",
    )
    proxy_epochs, target_epochs = getattr(sargs, f"{suite}_proxy_epochs"), getattr(sargs, f"{suite}_target_epochs")
    proxy_args = SelectionArguments(
        proxy=proxy_name, proxy_epochs=proxy_epochs, method=method, score_methods=[], **common
    )
    run = train_proxy(train, proxy_args, family=family, info=info, accelerator=accelerator)
    proxy_seconds = run.timings["proxy_training"] + run.timings["scoring"]
    values = np.empty(len(train))
    values[score_positions(run.scores)] = method_values(run.scores, method)
    labels = labels_of(train, info)
    check_config = training_config("proxy", proxy_args, epochs=target_epochs)
    trainer = proxy_trainer(
        train,
        model_name=proxy_name,
        family=family,
        info=info,
        config=check_config,
        accelerator=accelerator,
        eval_batch_size=sargs.batch_size,
    )
    target = model_settings("target", proxy_args, RunArguments(target=target_name, target_epochs=target_epochs))
    target_family = svp_hf.resolve_family(target_name)

    def target_accuracy(keep: np.ndarray) -> float:
        set_seed(seed)
        result = train_model(
            create_model(target_name, info),
            target_family,
            train.select(keep),
            info,
            target.training,
            accelerator,
            desc=f"target on {len(keep)}",
        )
        return evaluate_accuracy(result.model, target_family, test, info, accelerator, batch_size=256, desc="evaluate")

    out = []
    for fraction, name in zip(fractions, names):
        cell = parts.load(name)
        if cell is None:
            plan = smallest_plan(
                len(train),
                fraction,
                target_epochs,
                proxy_rate(proxy_seconds, len(train), proxy_epochs),
                info.num_classes,
            )
            # The question here is what the smallest check chooses, not whether it keeps to time: with no seconds to
            # spare, its stop rule would end it after random whenever a candidate takes longer than planned.
            plan.available_seconds = math.inf
            start = time.perf_counter()
            decision = choose_strategy(
                train,
                values,
                labels,
                descending=get_method(method).descending,
                fraction=fraction,
                train_candidate=trainer,
                seed=seed,
                plan=plan,
            )
            check_seconds = time.perf_counter() - start
            margin = 0.0
            if decision.strategy != "random":  # the same seed's target on random's subset and on the choice, here
                picks = {
                    s: svp_hf.selected_indices(run.scores, method, fraction, strategy=s, seed=seed, coverage_beta=b)
                    for s, b in (("random", None), (decision.strategy, decision.coverage_beta))
                }
                margin = target_accuracy(picks[decision.strategy]) - target_accuracy(picks["random"])
            recorded = sweep_parts.load(prune_sweep.part_name(seed, fraction, DEFAULT_ARM))
            recorded_random = sweep_parts.load(prune_sweep.part_name(seed, fraction, "random"))
            cell = {
                "suite": suite,
                "seed": seed,
                "fraction": fraction,
                "n_train": len(train),
                "smallest_choice": decision.chosen,
                "smallest_margin_over_random": margin,
                "smallest_check_seconds": check_seconds,
                "planned_seconds": plan.planned_seconds,
                "proxy_seconds": proxy_seconds,
                "shrunk": plan.shrunk,
                "decision": decision.as_dict(),
                "unbudgeted_choice": recorded["auto"]["chosen"] if recorded else None,
                "unbudgeted_margin_over_random": recorded["accuracy"] - recorded_random["accuracy"]
                if recorded
                else None,
                "unbudgeted_check_seconds": recorded["auto_seconds"] if recorded else None,
            }
            parts.save(name, cell)
        out.append(cell)
    return out


def compare(cells: List[Dict], mine: str, theirs: str) -> Dict[str, object]:
    """Paired over cells: the budgeted choice's margin over random minus the unbudgeted one's, and how often they
    chose the same."""
    pairs = [(c[mine], c[theirs]) for c in cells if c.get(mine) is not None and c.get(theirs) is not None]
    return {"difference": mean_spread([a - b for a, b in pairs]), "cells": len(pairs)}


def main(argv=None):
    offline_env()
    args = parse(argv)
    import torch

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    sweep_path = Path(args.sweep) if args.sweep else out_dir / "prune_sweep.json"
    if args.quick and not sweep_path.is_file():
        prune_sweep.main(["--quick", "--fractions", "0.5", "--out-dir", str(out_dir)])
    sweep = json.loads(sweep_path.read_text())
    sargs = sweep_args(sweep)
    sweep_root = Path(args.sweep_parts) if args.sweep_parts else sweep_path.parent / "prune_sweep_parts"
    seeds = args.seeds or sargs.seeds
    fractions = args.fractions or sargs.fractions
    parts_root = Path(args.parts_dir) if args.parts_dir else out_dir / "budget_check_parts"

    recorded, run_cells = [], []
    from svp_hf.engine.training import make_accelerator

    accelerator = None if args.skip_run else make_accelerator(mixed_precision=BENCHMARK_PRECISION)
    for suite in args.only:
        settings = prune_sweep.suite_settings(sargs, suite)
        sweep_parts = prune_sweep.Parts(sweep_root, suite, settings)
        for seed in seeds:
            recorded += [c for c in (default_budget_cell(sweep_parts, sargs, suite, seed, f) for f in fractions) if c]
        if not args.skip_run:
            parts = prune_sweep.Parts(parts_root, suite, settings)
            for seed in seeds:
                run_cells += run_suite_seed(args, sargs, suite, seed, fractions, sweep_parts, parts, accelerator)
    for c in recorded:
        c["budgeted_margin_over_random"] = (
            None if c["budgeted_accuracy"] is None else c["budgeted_accuracy"] - c["random_accuracy"]
        )
        c["unbudgeted_margin_over_random"] = c["unbudgeted_accuracy"] - c["random_accuracy"]
    summary = {
        "supported_strategies": supported_strategies(sweep["summary"]),
        "default_budget": {
            "cells": len(recorded),
            "fell_back": sum(not c["fits"] for c in recorded),
            "same_choice": sum(c["budgeted_choice"] == c["unbudgeted_choice"] for c in recorded),
            "budgeted_minus_unbudgeted": compare(
                recorded, "budgeted_margin_over_random", "unbudgeted_margin_over_random"
            ),
            "proxy_share": mean_spread([c["proxy_share"] for c in recorded]),
            "check_share_unbudgeted": mean_spread([c["check_share_unbudgeted"] for c in recorded]),
        },
        "smallest_check": {
            "cells": len(run_cells),
            "same_choice": sum(c["smallest_choice"] == c["unbudgeted_choice"] for c in run_cells),
            "smallest_minus_unbudgeted": compare(
                run_cells, "smallest_margin_over_random", "unbudgeted_margin_over_random"
            ),
            "seconds_smallest": mean_spread([c["smallest_check_seconds"] for c in run_cells]),
            "seconds_unbudgeted": mean_spread(
                [c["unbudgeted_check_seconds"] for c in run_cells if c["unbudgeted_check_seconds"]]
            ),
            "spent_over_planned": mean_spread([c["smallest_check_seconds"] / c["planned_seconds"] for c in run_cells]),
        },
    }
    return save_benchmark(
        "budget_check",
        "budget_check",
        args,
        argv,
        exclude=("parts_dir", "skip_run"),
        sweep_command=sweep["command"],
        recorded=recorded,
        runs=run_cells,
        summary=summary,
    )


if __name__ == "__main__":
    main()
