"""Benchmark 1: core-set selection on CIFAR-10, proxy against target, side by side in one run.

Per seed: the proxy (ResNet-20, a few epochs) is trained once and scores every method; the target (a deeper CIFAR
ResNet) is trained once on all the data, which is both the *full data* arm and the *target as selector* baseline
(its own scores); then the target is trained from scratch on each 50% subset. Reports target test accuracy per arm
(mean and spread over seeds), selection and end-to-end seconds, the timing ratios measured in the same run, and the
Spearman rank correlation and top-k overlap between proxy and target scores per method.

    python -m benchmarks.coreset_cifar10 --dataset ../shared/data/cifar10          # the full run
    python -m benchmarks.coreset_cifar10 --quick                                    # minutes, for the tests
"""

from __future__ import annotations

import argparse
import time
from typing import Dict, List

import numpy as np

from benchmarks.common import DEFAULT_SHARED_DATA, mean_spread, offline_env, run_over_seeds

PROXY_METHODS = ["least_confidence", "entropy", "forgetting", "el2n", "kcenter"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset",
        default=str(DEFAULT_SHARED_DATA / "cifar10"),
        help="dataset_name: local folder, Hub id or builtin:digits",
    )
    p.add_argument("--train-size", type=int, default=4000, help="seeded subset of the training split")
    p.add_argument("--test-size", type=int, default=2000, help="seeded subset of the test split")
    p.add_argument("--proxy", default="resnet20")
    p.add_argument("--proxy-epochs", type=int, default=5)
    p.add_argument("--target", default="resnet56")
    p.add_argument("--target-epochs", type=int, default=8)
    p.add_argument("--target-method", default="forgetting", help="the target-as-selector baseline's method")
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--name", default="coreset_cifar10")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny budgets: runs end to end in about a minute")
    args = p.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size = min(args.train_size, 300), min(args.test_size, 200)
        args.proxy_epochs, args.target_epochs, args.target, args.seeds = 1, 1, "resnet20", args.seeds[:1]
        args.batch_size = 64
    return args


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return len(np.intersect1d(a, b)) / max(len(a), 1)


def run_seed(args, seed: int, accelerator) -> Dict[str, object]:
    import svp_hf
    from svp_hf.config import RunArguments, SelectionArguments
    from svp_hf.data import get_split, load_data
    from svp_hf.engine.training import evaluate_accuracy, train_model
    from svp_hf.jobs.pipeline import subsample
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs, train_and_score
    from svp_hf.stages.roles import model_settings, scoring_settings

    data = load_data(args.dataset)
    train = subsample(get_split(data, "train", "training"), args.train_size, seed)
    test = subsample(get_split(data, "test", "evaluation"), args.test_size, seed)
    family, info = prepare_inputs(train, args.proxy, {})
    common = dict(batch_size=args.batch_size, learning_rate=args.learning_rate, seed=seed, lr_schedule="step")
    proxy_args = SelectionArguments(
        proxy=args.proxy,
        proxy_epochs=args.proxy_epochs,
        method=PROXY_METHODS[0],
        score_methods=PROXY_METHODS[1:] + ["random"],
        **common,
    )
    proxy_model = model_settings("proxy", proxy_args)
    target_model = model_settings(
        "target", proxy_args, RunArguments(target=args.target, target_epochs=args.target_epochs)
    )
    scoring = scoring_settings(proxy_args)
    inputs = dict(family=family, info=info, accelerator=accelerator, eval_dataset=test)

    proxy = train_and_score(train, proxy_model, scoring, **inputs)
    proxy_selection = proxy.timings["proxy_training"] + proxy.timings["scoring"]
    target = train_and_score(train, target_model, scoring, **inputs)
    target_training_full = target.timings["proxy_training"]
    target_selection = target_training_full + target.timings["scoring"]

    def train_target_on(indices: np.ndarray) -> Dict[str, float]:
        model = create_model(args.target, info)
        result = train_model(
            model,
            family,
            train.select(indices),
            info,
            target_model.training,
            accelerator,
            desc=f"target on {len(indices)}",
        )
        acc = evaluate_accuracy(result.model, family, test, info, accelerator, desc="evaluate")
        return {"accuracy": acc, "train_seconds": result.seconds}

    arms: Dict[str, Dict[str, float]] = {
        "full data": {
            "accuracy": target.proxy_accuracy,
            "selection_seconds": 0.0,
            "end_to_end_seconds": target_training_full,
            "n_train": len(train),
        }
    }
    for method in ["random"] + PROXY_METHODS:
        t0 = time.perf_counter()
        keep = svp_hf.selected_indices(proxy.scores, method, args.fraction, seed=seed)
        select_s = time.perf_counter() - t0 + (0.0 if method == "random" else proxy_selection)
        res = train_target_on(keep)
        label = "random" if method == "random" else f"proxy {method}"
        arms[label] = {
            "accuracy": res["accuracy"],
            "selection_seconds": select_s,
            "end_to_end_seconds": select_s + res["train_seconds"],
            "n_train": len(keep),
        }
    keep = svp_hf.selected_indices(target.scores, args.target_method, args.fraction, seed=seed)
    res = train_target_on(keep)
    arms[f"target {args.target_method}"] = {
        "accuracy": res["accuracy"],
        "selection_seconds": target_selection,
        "end_to_end_seconds": target_selection + res["train_seconds"],
        "n_train": len(keep),
    }

    agreement = {}
    for method in PROXY_METHODS:
        p, t = np.asarray(proxy.scores[method]), np.asarray(target.scores[method])
        finite = np.isfinite(p) & np.isfinite(t)
        rho = svp_hf.spearman(p[finite], t[finite]) if finite.sum() > 2 else None
        top_overlap = overlap(
            svp_hf.selected_indices(proxy.scores, method, args.fraction, seed=seed),
            svp_hf.selected_indices(target.scores, method, args.fraction, seed=seed),
        )
        rho = None if rho is None or not np.isfinite(rho) else float(rho)  # undefined when one side is constant
        agreement[method] = {"spearman": rho, "top_overlap": top_overlap}
    return {
        "seed": seed,
        "proxy_accuracy": proxy.proxy_accuracy,
        "proxy_selection_seconds": proxy_selection,
        "target_selection_seconds": target_selection,
        "target_full_training_seconds": target_training_full,
        "selection_speedup": target_selection / proxy_selection,
        "arms": arms,
        "agreement": agreement,
    }


def aggregate(runs: List[Dict[str, object]]) -> Dict[str, object]:
    arms = {}
    for name in runs[0]["arms"]:
        rows = [r["arms"][name] for r in runs]
        arms[name] = {
            k: mean_spread([row[k] for row in rows]) for k in ("accuracy", "selection_seconds", "end_to_end_seconds")
        }
    agreement = {
        m: {k: mean_spread([r["agreement"][m][k] for r in runs]) for k in ("spearman", "top_overlap")}
        for m in runs[0]["agreement"]
    }
    full = [r["arms"]["full data"]["end_to_end_seconds"] for r in runs]
    ratios = {
        "selection_target_over_proxy": mean_spread([r["selection_speedup"] for r in runs]),
        "end_to_end_full_over_proxy_subset": {
            name: mean_spread([f / r["arms"][name]["end_to_end_seconds"] for f, r in zip(full, runs)])
            for name in runs[0]["arms"]
            if name.startswith("proxy ")
        },
    }
    return {
        "arms": arms,
        "agreement": agreement,
        "ratios": ratios,
        "proxy_accuracy": mean_spread([r["proxy_accuracy"] for r in runs]),
    }


def main(argv=None):
    offline_env()
    args = parse(argv)
    return run_over_seeds("coreset_cifar10", args, argv, run_seed, aggregate)


if __name__ == "__main__":
    main()
