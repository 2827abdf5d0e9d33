"""Benchmark 4: scoring with 1 process against 2, on the same data and the same proxy checkpoint.

Trains a ResNet-20 proxy once (one process, checkpoint kept), then runs the core-set CLI with that
``proxy_checkpoint`` under ``python -m svp_hf.coreset`` (1 process) and under
``accelerate launch --multi_gpu --num_processes 2 -m svp_hf.coreset`` (2 gloo processes on a machine without GPUs,
N GPUs elsewhere). Reports whether every method's scores and the selection are identical, the wall time of each run
(process start-up included) and of its scoring stage, and their ratios.

    python -m benchmarks.scale_check --dataset ../shared/data/cifar10
    python -m benchmarks.scale_check --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

from benchmarks.common import DEFAULT_SHARED_DATA, REPO, offline_env, save_benchmark

METHODS = ["least_confidence", "entropy", "margin", "el2n", "forgetting", "kcenter", "random"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset",
        default=str(DEFAULT_SHARED_DATA / "cifar10"),
        help="dataset_name: local folder, Hub id or builtin:digits",
    )
    p.add_argument(
        "--train-size", type=int, default=10001, help="rows scored (odd, so batches and processes never divide it)"
    )
    p.add_argument("--proxy", default="resnet20")
    p.add_argument("--proxy-epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=29533)
    p.add_argument(
        "--mixed-precision",
        default="no",
        choices=["no", "bf16"],
        help="pinned for every run (accelerate launch would otherwise give its own 'no' to the launched one)",
    )
    p.add_argument("--name", default="scale")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny data (builtin:digits): about a minute")
    args = p.parse_args(argv)
    if args.quick:
        if args.dataset == str(DEFAULT_SHARED_DATA / "cifar10"):
            args.dataset = "builtin:digits"
        args.train_size, args.batch_size = min(args.train_size, 301), 32
    return args


def cli_args(args, output_dir: Path, *extra: str) -> List[str]:
    return [
        str(REPO / "recipes" / "quickstart.yaml"),
        "--dataset_name",
        args.dataset,
        "--eval_split",
        "",
        "--max_train_samples",
        str(args.train_size),
        "--proxy",
        args.proxy,
        "--proxy_epochs",
        str(args.proxy_epochs),
        "--batch_size",
        str(args.batch_size),
        "--seed",
        str(args.seed),
        "--method",
        METHODS[0],
        "--score_methods",
        *METHODS[1:],
        "--target",
        "",
        "--mixed_precision",
        args.mixed_precision,
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def timed_run(cmd: List[str]) -> float:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONPATH=str(REPO))
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return seconds


def read_run(output_dir: Path):
    import pandas as pd

    metrics = json.loads((output_dir / "metrics.json").read_text())
    return metrics, pd.read_parquet(output_dir / "scores.parquet")


def compare(one, many) -> Dict[str, object]:
    (m1, s1), (m2, s2) = one, many
    per_method = {}
    for method in METHODS:
        a, b = s1[method].to_numpy(), s2[method].to_numpy()
        finite = np.isfinite(a) & np.isfinite(b)
        per_method[method] = {
            "identical": bool(np.array_equal(a, b, equal_nan=True)),
            "max_abs_difference": float(np.max(np.abs(a[finite] - b[finite]))) if finite.any() else 0.0,
        }
    return {
        "rows": int(len(s1)),
        "every_index_scored_once": bool(s2["svp_index"].tolist() == list(range(len(s1)))),
        "scores": per_method,
        "same_selection": bool(m1["n_selected"] == m2["n_selected"] and _selected(m1) == _selected(m2)),
    }


def _selected(metrics) -> Dict[str, int]:
    return metrics["selected_per_class"]


def main(argv=None):
    offline_env()
    args = parse(argv)
    work = Path(tempfile.mkdtemp(prefix="svp-scale-"))
    try:
        python = [sys.executable, "-m", "svp_hf.coreset"]
        accelerate = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(args.processes),
            "--num_machines",
            "1",
            "--mixed_precision",
            args.mixed_precision,
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(args.port),
            "-m",
            "svp_hf.coreset",
        ]
        trained = work / "trained"
        train_seconds = timed_run(python + cli_args(args, trained, "--keep_checkpoints", "true"))
        given = ["--proxy_checkpoint", str(trained / "checkpoints" / "proxy")]
        wall = {
            "1": timed_run(python + cli_args(args, work / "one", *given)),
            str(args.processes): timed_run(accelerate + cli_args(args, work / "many", *given)),
        }
        one, many = read_run(work / "one"), read_run(work / "many")
        scoring = {"1": one[0]["timings"]["scoring"], str(args.processes): many[0]["timings"]["scoring"]}
        result = compare(one, many)
        # The selection the proxy-training run made itself, for reference: same checkpoint, same scores.
        result["matches_the_training_run"] = bool(read_run(trained)[1].equals(one[1]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    n = str(args.processes)
    payload = save_benchmark(
        "scale",
        "scale_check",
        args,
        argv,
        exclude=("port",),
        proxy_training_seconds=train_seconds,
        wall_seconds=wall,
        scoring_seconds=scoring,
        wall_ratio_1_over_n=wall["1"] / wall[n],
        scoring_ratio_1_over_n=scoring["1"] / scoring[n],
        **result,
    )
    print(
        f"identical scores: {all(v['identical'] for v in result['scores'].values())}; wall 1: {wall['1']:.1f}s, {n}: {wall[n]:.1f}s"
    )
    return payload


if __name__ == "__main__":
    main()
