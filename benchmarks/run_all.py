"""Run every benchmark, then regenerate RESULTS.md from their JSON.

    python -m benchmarks.run_all --quick --out-dir /tmp/svp-bench     # every benchmark end to end in a few minutes
    python -m benchmarks.run_all                                       # the full runs (hours on a 2-core CPU)

``--quick`` uses tiny budgets and the built-in datasets (scikit-learn digits, synthetic reviews), so it needs no
shared data; its results are not comparable with the full runs and are written to `--out-dir`, not to
benchmarks/results/ unless asked.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import (
    active_amazon,
    budget_check,
    coreset_cifar10,
    precision,
    prune_sweep,
    report,
    scale_check,
    sst2_end_to_end,
    throughput,
)
from benchmarks.common import RESULTS_DIR

BENCHMARKS = {
    "coreset_cifar10": coreset_cifar10.main,
    "active_amazon": active_amazon.main,
    "throughput": throughput.main,
    "scale": scale_check.main,
    "prune_sweep": prune_sweep.main,
    "sst2_end_to_end": sst2_end_to_end.main,
    "precision": precision.main,
    "budget_check": budget_check.main,  # after prune_sweep: it checks the sweep in the same --out-dir
}
QUICK_DATA = {
    "coreset_cifar10": ["--dataset", "builtin:digits"],
    "throughput": ["--dataset", "builtin:digits", "--text-dataset", "builtin:reviews"],
    "active_amazon": [],  # --quick switches to builtin:reviews itself
    "scale": [],  # --quick switches to builtin:digits itself
    "prune_sweep": [],  # --quick switches to builtin:digits and builtin:reviews itself
    "sst2_end_to_end": [],  # --quick switches to builtin:reviews itself
    "precision": [],  # --quick switches to builtin:digits itself
    "budget_check": [],  # checks the quick sweep just written (--quick runs one first when there is none)
}


def fresh_accelerate_state() -> None:
    """Forget the mixed precision an earlier benchmark's Accelerator fixed for this process (Accelerate allows one per
    process), so that each benchmark runs as it does on its own: ``precision`` asks for fp32 explicitly, where the
    others take the default (bf16 on a CPU that runs it natively)."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    p.add_argument("--out-dir", default=None, help="where the JSON and RESULTS.md go (default: benchmarks/results)")
    args = p.parse_args(argv)
    out_dir = Path(args.out_dir) if args.out_dir else RESULTS_DIR
    payloads = {}
    for name in args.only:
        extra = ["--quick", *QUICK_DATA[name]] if args.quick else []
        fresh_accelerate_state()
        payloads[name] = BENCHMARKS[name]([*extra, "--out-dir", str(out_dir)])
    results_md = out_dir / "RESULTS.md" if args.out_dir else Path(report.__file__).with_name("RESULTS.md")
    report.main(["--results-dir", str(out_dir), "--output", str(results_md)])
    return payloads


if __name__ == "__main__":
    main()
