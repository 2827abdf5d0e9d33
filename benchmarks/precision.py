"""Benchmark 7: bf16 autocast against fp32 for a ResNet-20 proxy on a CPU: is it faster, and does it select the same?

1. **Speed**: a ResNet-20 training step (SGD with momentum, cross-entropy) and a forward pass on a batch of 128
   CIFAR-sized images, one torch thread, fp32 against ``torch.autocast("cpu", dtype=torch.bfloat16)``. The two run
   in alternation, pass after pass, and each pass's bf16 / fp32 ratio is kept: the median of those paired ratios is
   the figure (other work on the cores slows both of a pair alike).
2. **Scores**: ResNet-20 proxies trained with ``svp_hf.score`` on a seeded CIFAR-10 subset, under fp32 and bf16
   (``make_accelerator(mixed_precision=...)``) for seeds 0 and 1, each in its own process (Accelerate's precision is
   process-wide). Rank agreement (Spearman, Kendall, top-half overlap) of bf16 against fp32 at the same seed, set
   against that of the two fp32 seeds (and the two bf16 seeds): the spread that seeds alone make.
3. **Selection**: each proxy keeps half the rows by least confidence with each of ``--strategies`` (``top``, whose
   hardest half leaves a short-trained target near chance, and ``coverage``), and the same fp32 ResNet-20 target
   (seed 0) trains on each half; the target's test accuracy after a bf16 proxy against after the fp32 proxy of the
   same seed, set against the difference between the two fp32 seeds' selections.

Every proxy run and target run is written to ``--parts-dir`` when it finishes and skipped on a rerun.

    python -m benchmarks.precision                          # about 15-20 minutes on 2 shared cores
    python -m benchmarks.precision --quick --out-dir /tmp/p # built-in digits, tiny: about a minute
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

from benchmarks.common import DEFAULT_SHARED_DATA, REPO, RESULTS_DIR, offline_env, save_benchmark

PRECISIONS = ("no", "bf16")
METHODS = ("least_confidence", "el2n", "forgetting")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=str(DEFAULT_SHARED_DATA / "cifar10"))
    p.add_argument("--train-size", type=int, default=1500)
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--data-seed", type=int, default=0, help="the subsample's seed (the same rows for every proxy)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--proxy-epochs", type=int, default=4)
    p.add_argument("--target-epochs", type=int, default=4)
    p.add_argument("--fraction", type=float, default=0.5)
    p.add_argument("--strategies", nargs="+", default=["top", "coverage"], help="how each proxy's scores select")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--speed-passes", type=int, default=8, help="alternating fp32/bf16 passes of the speed test")
    p.add_argument("--speed-steps", type=int, default=2, help="steps timed per pass")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--name", default="precision")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--parts-dir", default=None, help="finished runs (default: OUT_DIR/precision_parts)")
    p.add_argument("--quick", action="store_true", help="built-in digits, tiny budgets: about a minute")
    p.add_argument("--worker", nargs=3, metavar=("PRECISION", "SEED", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.dataset, args.train_size, args.test_size = "builtin:digits", 300, 100
        args.proxy_epochs, args.target_epochs, args.speed_passes, args.speed_steps, args.batch_size = 2, 2, 2, 1, 32
    return args


def settings(args) -> Dict[str, object]:
    skip = {"name", "out_dir", "parts_dir", "worker", "speed_passes", "speed_steps", "seeds", "strategies"}
    return {k: v for k, v in sorted(vars(args).items()) if k not in skip}


# --- 1. speed --------------------------------------------------------------------------------------------------------


def speed(args) -> Dict[str, object]:
    """Seconds per training step and per forward pass, fp32 and bf16 in alternation; the median paired ratios."""
    import timm
    import torch
    import torch.nn.functional as F

    import svp_hf.models.cifar_resnet  # noqa: F401  (registers resnet20 with timm)

    torch.manual_seed(0)
    x = torch.randn(args.batch_size, 3, 32, 32)
    y = torch.randint(0, 10, (args.batch_size,))
    models = {p: timm.create_model("resnet20", num_classes=10) for p in PRECISIONS}
    optimizers = {
        p: torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4) for p, m in models.items()
    }

    def autocast(precision):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def train_step(precision):
        model, opt = models[precision], optimizers[precision]
        model.train()
        with autocast(precision):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def forward(precision):
        models[precision].eval()
        with autocast(precision):
            models[precision](x)

    out: Dict[str, object] = {}
    for name, fn in (("train_step", train_step), ("forward", forward)):
        for p in PRECISIONS:  # warm-up: allocations, oneDNN primitive caches
            fn(p)
        times: Dict[str, List[float]] = {p: [] for p in PRECISIONS}
        for _ in range(args.speed_passes):
            for p in PRECISIONS:
                start = time.perf_counter()
                for _ in range(args.speed_steps):
                    fn(p)
                times[p].append((time.perf_counter() - start) / args.speed_steps)
        ratios = [f / b for f, b in zip(times["no"], times["bf16"])]
        out[name] = {
            "fp32_seconds": statistics.median(times["no"]),
            "bf16_seconds": statistics.median(times["bf16"]),
            "speedup_median_of_pairs": statistics.median(ratios),
            "speedup_quartiles": statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3,
            "speedup_best_of": min(times["no"]) / min(times["bf16"]),
        }
    return out


# --- 2. proxies, one process per precision and seed ------------------------------------------------------------------


def load(args):
    from svp_hf.data import get_split, load_data
    from svp_hf.jobs.pipeline import subsample

    data = load_data(args.dataset)
    train = subsample(get_split(data, "train", "training"), args.train_size, args.data_seed)
    test = subsample(get_split(data, "test", "evaluation"), args.test_size, args.data_seed)
    return train, test


def image_column(train) -> str:
    return next(c for c in train.column_names if c != "label")


def worker(args) -> None:
    """One proxy (``--worker PRECISION SEED OUT``): train, score, write the scores and what it measured."""
    import torch

    import svp_hf
    from svp_hf.engine.training import make_accelerator

    precision, seed, out = args.worker[0], int(args.worker[1]), Path(args.worker[2])
    torch.set_num_threads(args.threads)
    train, test = load(args)
    accelerator = make_accelerator(mixed_precision=precision)
    scores, metrics = svp_hf.score(
        train,
        proxy="resnet20",
        methods=list(METHODS),
        eval_dataset=test,
        accelerator=accelerator,
        return_metrics=True,
        proxy_epochs=args.proxy_epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=seed,
        image_column=image_column(train),
    )
    scores.to_parquet(str(out.with_suffix(".parquet")))
    record = {
        "precision": str(accelerator.mixed_precision),
        "seed": seed,
        "proxy_accuracy": metrics["proxy_accuracy"],
        "timings": metrics["timings"],
    }
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)


def run_proxy(args, parts: Path, precision: str, seed: int) -> Dict[str, object]:
    out = parts / f"proxy-{precision}-seed{seed}.json"
    if not out.is_file():
        argv = [
            sys.executable,
            "-m",
            "benchmarks.precision",
            "--worker",
            precision,
            str(seed),
            str(out),
            "--dataset",
            args.dataset,
            "--train-size",
            str(args.train_size),
            "--test-size",
            str(args.test_size),
            "--data-seed",
            str(args.data_seed),
            "--proxy-epochs",
            str(args.proxy_epochs),
            "--batch-size",
            str(args.batch_size),
            "--learning-rate",
            str(args.learning_rate),
            "--threads",
            str(args.threads),
        ]
        print(f"precision: proxy {precision} seed {seed}", flush=True)
        subprocess.run(argv, cwd=REPO, check=True)
    return json.loads(out.read_text())


def agreement(parts: Path, a: str, b: str) -> Dict[str, Dict[str, float]]:
    from datasets import Dataset

    from svp_hf.selection.correlation import compare_scores

    one, two = (Dataset.from_parquet(str(parts / f"proxy-{name}.parquet")) for name in (a, b))
    return compare_scores(one, two, list(METHODS))


# --- 3. the target on each proxy's selection -------------------------------------------------------------------------


def run_target(args, parts: Path, strategy: str, name: str, train, test, info, accelerator) -> Dict[str, object]:
    """The fp32 target (seed 0) on the half that proxy `name`'s least-confidence scores keep by `strategy`."""
    from accelerate.utils import set_seed
    from datasets import Dataset

    import svp_hf
    from svp_hf.config import SelectionArguments
    from svp_hf.engine.training import evaluate_accuracy, train_model
    from svp_hf.models import create_model
    from svp_hf.stages.roles import training_config

    out = parts / f"target-{strategy}-{name}.json"
    if out.is_file():
        return json.loads(out.read_text())
    print(f"precision: target on proxy {name}'s {strategy} selection", flush=True)
    scores = Dataset.from_parquet(str(parts / f"proxy-{name}.parquet"))
    keep = svp_hf.selected_indices(scores, "least_confidence", args.fraction, strategy=strategy)
    config = training_config(
        "proxy",
        SelectionArguments(
            proxy="resnet20",
            proxy_epochs=args.target_epochs,
            batch_size=args.batch_size,
            learning_rate=args.learning_rate,
            seed=0,
            lr_schedule="step",
        ),
    )
    set_seed(0)
    family = svp_hf.resolve_family("resnet20")
    result = train_model(
        create_model("resnet20", info), family, train.select(keep), info, config, accelerator, desc="target"
    )
    record = {
        "proxy": name,
        "strategy": strategy,
        "n_train": int(len(keep)),
        "kept": sorted(int(i) for i in keep),
        "accuracy": evaluate_accuracy(result.model, family, test, info, accelerator, batch_size=256, desc="evaluate"),
        "train_seconds": result.seconds,
    }
    out.write_text(json.dumps(record) + "\n")
    return record


def target_differences(targets: Dict[str, Dict], seeds: List[int]) -> Dict[str, float]:
    """The target's accuracy after each bf16 proxy less after the fp32 proxy of its seed, and between the fp32 seeds."""
    s0, s1 = seeds[:2]
    out = {
        f"bf16 - fp32, seed {s}": targets[f"bf16-seed{s}"]["accuracy"] - targets[f"no-seed{s}"]["accuracy"]
        for s in seeds
    }
    out[f"fp32 seed {s1} - seed {s0}"] = targets[f"no-seed{s1}"]["accuracy"] - targets[f"no-seed{s0}"]["accuracy"]
    return out


def selection_overlaps(targets: Dict[str, Dict], seeds: List[int]) -> Dict[str, float]:
    """The share of kept rows two selections share: bf16 against fp32 per seed, and the two fp32 seeds."""

    def shared(a: str, b: str) -> float:
        return len(set(targets[a]["kept"]) & set(targets[b]["kept"])) / targets[a]["n_train"]

    s0, s1 = seeds[:2]
    return {
        **{f"bf16 vs fp32, seed {s}": shared(f"no-seed{s}", f"bf16-seed{s}") for s in seeds},
        f"fp32 seed {s0} vs {s1}": shared(f"no-seed{s0}", f"no-seed{s1}"),
    }


def main(argv=None):
    offline_env()
    args = parse(argv)
    if args.worker:
        return worker(args)
    import torch

    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    root = Path(args.parts_dir) if args.parts_dir else out_dir / "precision_parts"
    digest = hashlib.sha1(json.dumps(settings(args), sort_keys=True).encode()).hexdigest()[:10]
    parts = root / digest
    parts.mkdir(parents=True, exist_ok=True)
    (parts / "settings.json").write_text(json.dumps(settings(args), indent=2) + "\n")

    from svp_hf.utils.precision import cpu_features, cpu_supports_bf16

    measured = speed(args)
    proxies = {f"{p}-seed{s}": run_proxy(args, parts, p, s) for s in args.seeds for p in PRECISIONS}
    s0, s1 = args.seeds[:2]
    pairs = {f"bf16 vs fp32, seed {s}": agreement(parts, f"no-seed{s}", f"bf16-seed{s}") for s in args.seeds}
    pairs[f"fp32 seed {s0} vs {s1}"] = agreement(parts, f"no-seed{s0}", f"no-seed{s1}")
    pairs[f"bf16 seed {s0} vs {s1}"] = agreement(parts, f"bf16-seed{s0}", f"bf16-seed{s1}")

    from svp_hf.engine.training import make_accelerator
    from svp_hf.stages.proxy import prepare_inputs

    train, test = load(args)
    _, info = prepare_inputs(train, "resnet20", {"image_column": image_column(train)})
    accelerator = make_accelerator(mixed_precision="no")
    targets = {
        strategy: {name: run_target(args, parts, strategy, name, train, test, info, accelerator) for name in proxies}
        for strategy in args.strategies
    }
    summary = {
        "cpu": {**cpu_features(), "bf16_native": cpu_supports_bf16()},
        "speed": measured,
        "proxy_accuracy": {k: v["proxy_accuracy"] for k, v in proxies.items()},
        "proxy_training_seconds": {k: v["timings"]["proxy_training"] for k, v in proxies.items()},
        "rank_agreement": pairs,
        "target_accuracy": {st: {k: v["accuracy"] for k, v in t.items()} for st, t in targets.items()},
        "target_difference": {st: target_differences(t, args.seeds) for st, t in targets.items()},
        "selection_overlap": {st: selection_overlaps(t, args.seeds) for st, t in targets.items()},
    }
    return save_benchmark("precision", "precision", args, argv, exclude=("parts_dir", "worker"), summary=summary)


if __name__ == "__main__":
    main()
