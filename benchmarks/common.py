"""Shared helpers for the benchmarks: the machine they ran on, JSON results, Markdown tables."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "benchmarks" / "results"
DEFAULT_SHARED_DATA = Path(os.environ.get("SVP_SHARED_DIR", REPO.parent / "shared")) / "data"
# The precision the benchmarks train in, where they do not compare precisions themselves (precision.py) or take it as
# an option (sst2_end_to_end.py, scale_check.py): full precision, in which every recorded figure was measured, so a
# recorded command still reproduces its figure with the library's bf16 default on CPUs that run bf16 natively;
# throughput.py's ratios set svp_hf's loop against a plain fp32 one, and budget_check.py sets its runs against the
# prune sweep's recorded ones.
BENCHMARK_PRECISION = "no"


def train_proxy(train, proxy_args, *, family, info, accelerator, eval_dataset=None):
    """The proxy of a benchmark's recipe (`proxy_args`, its ``SelectionArguments``) trained on `train` and scoring
    every method it names, through the stages' typed settings (:func:`svp_hf.stages.proxy.train_and_score`)."""
    from svp_hf.stages.proxy import train_and_score
    from svp_hf.stages.roles import model_settings, scoring_settings

    return train_and_score(
        train,
        model_settings("proxy", proxy_args),
        scoring_settings(proxy_args),
        family=family,
        info=info,
        accelerator=accelerator,
        eval_dataset=eval_dataset,
    )


def machine() -> Dict[str, object]:
    """What the figures were measured on."""
    import torch

    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "processor": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
        "gpus": torch.cuda.device_count(),
        # Other work on the machine while the figures were taken inflates timings: recorded so a reader can tell.
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }


@contextmanager
def timed(store: Dict[str, float], key: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - start


def mean_spread(values: Sequence[float]) -> Dict[str, Optional[float]]:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def write_result(name: str, payload: Dict[str, object], out_dir: Path = RESULTS_DIR) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, default=float) + "\n")
    return path


def save_benchmark(
    benchmark: str, module: str, args, argv, *, exclude: Sequence[str] = (), **results
) -> Dict[str, object]:
    """Write one benchmark's JSON: its name, the command that reproduces it, its settings, the machine and `results`
    (to `args.out_dir`, default ``benchmarks/results/``, as ``args.name``.json); returns the payload."""
    payload = {
        "benchmark": benchmark,
        "quick": args.quick,
        "command": f"python -m benchmarks.{module} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "config": {k: v for k, v in vars(args).items() if k not in ("out_dir", "name", *exclude)},
        "machine": machine(),
        **results,
    }
    path = write_result(args.name, payload, Path(args.out_dir) if args.out_dir else RESULTS_DIR)
    print(f"wrote {path}")
    return payload


def run_over_seeds(benchmark: str, args, argv, run_seed, aggregate) -> Dict[str, object]:
    """Run ``run_seed(args, seed, accelerator)`` for every seed in ``args.seeds``, one Accelerator for all, and save
    the runs with ``aggregate(runs)`` as their summary."""
    from svp_hf.engine.training import make_accelerator

    accelerator = make_accelerator(mixed_precision=BENCHMARK_PRECISION)
    runs = [run_seed(args, seed, accelerator) for seed in args.seeds]
    return save_benchmark(benchmark, benchmark, args, argv, runs=runs, summary=aggregate(runs))


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ms(stats: Dict[str, Optional[float]], digits: int = 3, scale: float = 1.0) -> str:
    if stats.get("mean") is None:
        return "–"
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['std'] * scale:.{digits}f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
