"""Benchmark 5: a prune-rate sweep, every strategy against random, side by side in one run.

Two suites, each per seed: the proxy is trained once on the training rows, recording the training signals, and
scores every method (el2n, forgetting, aum, the library's default method and random). The target is trained on all
rows (the *full data* arm) and then, for every kept fraction, from scratch on each arm's subset for the same number
of epochs as the full data (SVP's end-to-end protocol: a smaller subset takes fewer steps; the steps are recorded).
Arms: ``random``; ``top`` and ``coverage`` over each of el2n, forgetting and aum; and ``auto`` with the library's
default method, which is the library's default (``svp_hf.prune``'s and the recipes' defaults), with its decision,
its held-out evidence and its extra seconds.

- ``image``: CIFAR-10 from ``../shared/data/cifar10``, ResNet-20 proxy, a CIFAR ResNet target with a fixed schedule;
- ``text``: SST-2 from ``../shared/data/sst2``, a small fastText proxy for few epochs, a larger fastText target.

Every finished arm is written to ``--parts-dir`` as it completes (and the proxy's scores once per seed), so a rerun
with the same settings skips what is done and a sweep can span sessions; the summary JSON is rewritten at the end.

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
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.common import BENCHMARK_PRECISION, DEFAULT_SHARED_DATA, RESULTS_DIR, mean_spread, offline_env, save_benchmark

SWEEP_METHODS = ["el2n", "forgetting", "aum"]
SUITES = ("image", "text")


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
    p.add_argument("--finished-only", action="store_true", help="summarise the seeds whose every arm is on disk; train nothing")
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
    from svp_hf.pipeline import subsample
    from svp_hf.data import get_split, load_data

    data = load_data(getattr(args, f"{suite}_dataset"))
    test_split = "test" if suite == "image" else args.text_test_split
    train = subsample(get_split(data, "train", "training"), getattr(args, f"{suite}_train_size"), seed)
    test = subsample(get_split(data, test_split, "evaluation"), getattr(args, f"{suite}_test_size"), seed)
    return train, test


def arm_plan(args, default_method: str):
    """(label, strategy, method) of every arm at each fraction."""
    from svp_hf.strategies import DEFAULT_STRATEGY

    plan = [("random", "random", "random")]
    for method in args.methods:
        plan += [(f"top {method}", "top", method), (f"coverage {method}", "coverage", method)]
    return plan + [(f"{DEFAULT_STRATEGY} {default_method} (default)", DEFAULT_STRATEGY, default_method)]


def part_name(seed: int, fraction: float, label: str) -> str:
    return f"seed{seed}-f{fraction:g}-{label.split(' (')[0].replace(' ', '_')}.json"


def seed_finished(args, parts: Parts, seed: int, default_method: str) -> bool:
    names = [f"seed{seed}-proxy.json", f"seed{seed}-full.json"]
    names += [part_name(seed, f, label) for f in args.fractions for label, _, _ in arm_plan(args, default_method)]
    return all(parts.path(n).is_file() for n in names)


def run_seed(args, suite: str, seed: int, accelerator, parts: Parts) -> Dict[str, object]:
    import svp_hf
    from svp_hf.proxy import prepare_inputs, run_auto, run_scoring
    from svp_hf.roles import training_config
    from svp_hf.config import SelectionArguments
    from svp_hf.models import create_model
    from svp_hf.training import evaluate_accuracy, train_model
    from accelerate.utils import set_seed
    from datasets import Dataset

    default_method = SelectionArguments.__dataclass_fields__["method"].default
    if args.finished_only and not seed_finished(args, parts, seed, default_method):
        return None
    train, test = load_suite(args, suite, seed)
    proxy_name, target_name = getattr(args, f"{suite}_proxy"), getattr(args, f"{suite}_target")
    family, info = prepare_inputs(train, proxy_name, {})
    methods = list(dict.fromkeys([*args.methods, default_method, "random"]))
    common = dict(batch_size=args.batch_size, learning_rate=getattr(args, f"{suite}_learning_rate"), seed=seed, lr_schedule="step")
    proxy_args = SelectionArguments(
        proxy=proxy_name, proxy_epochs=getattr(args, f"{suite}_proxy_epochs"), method=methods[0], score_methods=methods[1:], **common
    )
    target_args = SelectionArguments(proxy=target_name, proxy_epochs=getattr(args, f"{suite}_target_epochs"), **common)
    target_family = svp_hf.resolve_family(target_name)

    # The proxy: trained once per seed, its scores kept on disk.
    proxy_record = parts.load(f"seed{seed}-proxy.json")
    scores_path = parts.path(f"seed{seed}-scores.parquet")
    if proxy_record is None or not scores_path.is_file():
        run = run_scoring(train, proxy_args, family=family, info=info, accelerator=accelerator, eval_dataset=test)
        run.scores.to_parquet(str(scores_path))
        proxy_record = {"accuracy": run.proxy_accuracy, "seconds": run.timings["proxy_training"] + run.timings["scoring"]}
        parts.save(f"seed{seed}-proxy.json", proxy_record)
    scores = Dataset.from_parquet(str(scores_path))

    def train_target(indices: np.ndarray) -> Dict[str, float]:
        set_seed(seed)
        model = create_model(target_name, info)
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

    for fraction in args.fractions:
        for label, strategy, method in arm_plan(args, default_method):
            key = part_name(seed, fraction, label)
            record = parts.load(key)
            if record is None:
                t0 = time.perf_counter()
                extra: Dict[str, object] = {}
                chosen, beta = strategy, None
                if strategy == "auto":
                    # As svp_hf.coreset does with a target: the check trains for the target's number of epochs.
                    auto_args = SelectionArguments(
                        proxy=proxy_name, proxy_epochs=proxy_args.proxy_epochs, auto_epochs=target_args.proxy_epochs,
                        method=method, fraction=fraction, **common
                    )
                    decision = run_auto(train, scores, auto_args, family=family, info=info, accelerator=accelerator)
                    chosen, beta = decision.strategy, decision.coverage_beta
                    extra = {"auto": decision.as_dict(), "auto_seconds": decision.seconds}
                keep = svp_hf.selected_indices(scores, method, fraction, strategy=chosen, seed=seed, coverage_beta=beta)
                selection_seconds = time.perf_counter() - t0
                record = {**train_target(keep), "selection_seconds": selection_seconds, **extra}
                parts.save(key, record)
            arms.setdefault(label, {})[f"{fraction:g}"] = record
    return {"seed": seed, "n_test": len(test), "proxy_accuracy": proxy_record["accuracy"], "proxy_seconds": proxy_record["seconds"], "arms": arms}


def aggregate(runs: List[Dict[str, object]], fractions: List[float]) -> Dict[str, object]:
    """Per arm and fraction: accuracy mean and spread over seeds, steps, and the paired margin over random."""
    out: Dict[str, Dict[str, object]] = {}
    for arm in runs[0]["arms"]:
        out[arm] = {}
        for key in runs[0]["arms"][arm]:
            cells = [r["arms"][arm][key] for r in runs]
            row = {
                "accuracy": mean_spread([c["accuracy"] for c in cells]),
                "steps": mean_spread([c["steps"] for c in cells]),
                "n_train": cells[0]["n_train"],
                "train_seconds": mean_spread([c["train_seconds"] for c in cells]),
            }
            if arm != "full data":
                randoms = [r["arms"]["random"][key]["accuracy"] for r in runs]
                row["margin_over_random"] = mean_spread([c["accuracy"] - a for c, a in zip(cells, randoms)])
            if "auto" in cells[0]:
                row["auto_chosen"] = [c["auto"]["chosen"] for c in cells]
                row["auto_seconds"] = mean_spread([c["auto_seconds"] for c in cells])
            out[arm][key] = row
    return {
        "arms": out,
        "fractions": [f"{f:g}" for f in fractions],
        "proxy_accuracy": mean_spread([r["proxy_accuracy"] for r in runs]),
        "proxy_seconds": mean_spread([r["proxy_seconds"] for r in runs]),
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
            style = dict(lw=2.4, color="black") if arm == "random" else dict(lw=2.0, color="magenta", ls="--") if "default" in arm else dict(lw=1.2, alpha=0.8)
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
    from svp_hf.training import make_accelerator

    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    parts_root = Path(args.parts_dir) if args.parts_dir else out_dir / "prune_sweep_parts"
    accelerator = make_accelerator(mixed_precision=BENCHMARK_PRECISION)
    suites, summary = {}, {}
    for suite in args.only:
        parts = Parts(parts_root, suite, suite_settings(args, suite))
        runs = [r for r in (run_seed(args, suite, seed, accelerator, parts) for seed in args.seeds) if r is not None]
        if not runs:
            print(f"{suite}: no seed has finished every arm yet")
            continue
        suites[suite] = runs
        summary[suite] = aggregate(runs, args.fractions)
        dataset = Path(getattr(args, f"{suite}_dataset")).name
        summary[suite]["title"] = f"{dataset}: {getattr(args, f'{suite}_proxy')} proxy, {getattr(args, f'{suite}_target')} target"
        summary[suite]["n_train"] = runs[0]["arms"]["full data"]["1"]["n_train"]
        summary[suite]["n_test"] = runs[0]["n_test"]
    plot_path = out_dir / "prune_sweep.png"
    if summary:
        plot(summary, plot_path)
    argv = [a for a in (argv if argv is not None else __import__("sys").argv[1:]) if a != "--finished-only"]
    return save_benchmark(
        "prune_sweep", "prune_sweep", args, argv, exclude=("parts_dir", "finished_only"), runs=suites, summary=summary,
        plot=plot_path.name,
    )


if __name__ == "__main__":
    main()
