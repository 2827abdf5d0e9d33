"""Regenerate benchmarks/RESULTS.md from the JSON files the benchmarks wrote (never edited by hand).

python -m benchmarks.report [--results-dir benchmarks/results] [--output benchmarks/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Dict, List

from benchmarks.common import RESULTS_DIR, fmt_ms, table
from svp_hf.registry import Registry

RENDERERS: Registry[Callable[[Dict], List[str]]] = Registry("benchmark renderer")


def _machine(payload: Dict) -> str:
    m = payload["machine"]
    gpu = f"{m['gpus']} GPU(s)" if m.get("cuda") else "no GPU"
    text = (
        f"Measured {m['date']} on {m['platform']} ({m['processor']}, {m['cpu_count']} cores, {gpu}), "
        f"Python {m['python']}, torch {m['torch']} with {m['torch_threads']} threads"
    )
    load = m.get("load_average")
    if load:
        text += f"; load average when written {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min)"
    return text + "."


@RENDERERS.register("coreset_cifar10")
def render_coreset(p: Dict) -> List[str]:
    c, s = p["config"], p["summary"]
    seeds = ", ".join(str(r["seed"]) for r in p["runs"])
    out = [
        f"Proxy {c['proxy']} ({c['proxy_epochs']} epochs) against target {c['target']} ({c['target_epochs']} epochs); "
        f"{c['train_size']} training and {c['test_size']} test rows of `{Path(c['dataset']).name}`, "
        f"fraction {c['fraction']}, seeds {seeds}. Proxy test accuracy {fmt_ms(s['proxy_accuracy'])}.",
        "",
        table(
            ["arm", "target test accuracy (mean ± std)", "selection s", "end-to-end s", "vs full data"],
            [
                [
                    name,
                    fmt_ms(a["accuracy"]),
                    fmt_ms(a["selection_seconds"], 1),
                    fmt_ms(a["end_to_end_seconds"], 1),
                    _verdict(a, s["arms"]["full data"], s["arms"]["random"], name),
                ]
                for name, a in s["arms"].items()
            ],
        ),
        "",
        "Ratios measured in the same run: selection time target / proxy "
        f"**{fmt_ms(s['ratios']['selection_target_over_proxy'], 2)}x**; end-to-end time full data / proxy subset: "
        + ", ".join(
            f"{k[len('proxy ') :]} {fmt_ms(v, 2)}x" for k, v in s["ratios"]["end_to_end_full_over_proxy_subset"].items()
        )
        + ".",
        "",
        "Proxy against target scores (the target trained on all the data):",
        "",
        table(
            ["method", "Spearman rank correlation", f"top-{int(c['fraction'] * 100)}% overlap"],
            [[m, fmt_ms(a["spearman"]), fmt_ms(a["top_overlap"])] for m, a in s["agreement"].items()],
        ),
    ]
    return out


def _verdict(arm: Dict, full: Dict, random: Dict, name: str) -> str:
    """Plain words for how an arm compares, from the numbers (one standard deviation as the noise band)."""
    if name in ("full data", "random") or arm["accuracy"]["mean"] is None:
        return "–"
    acc, sd = arm["accuracy"]["mean"], max(arm["accuracy"]["std"] or 0.0, random["accuracy"]["std"] or 0.0)
    vs_random = (
        "beats random"
        if acc > random["accuracy"]["mean"] + sd
        else ("loses to random" if acc < random["accuracy"]["mean"] - sd else "ties random")
    )
    gap = full["accuracy"]["mean"] - acc
    return f"{vs_random}; {gap * 100:.1f} pts below full data" if gap > sd else f"{vs_random}; matches full data"


def _meets(value, target: float) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} (target {target:g}: {'met' if value >= target else 'missed'})"


def _paired_cell(v: Dict, raw_key: str, svp_key: str, paired_key: str, target: float) -> str:
    """The median of the passes' paired ratios (svp_hf's rate over the raw rate measured just before it), with their
    interquartile range when there are enough passes, judged against `target`."""
    import statistics

    if paired_key not in v:
        return "–"
    raws, svps = v.get(raw_key) or [], v.get(svp_key) or []
    ratios = [b / a for a, b in zip(raws, svps)]
    spread = ""
    if len(ratios) >= 4:
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        spread = f" [{q1:.3f}-{q3:.3f}]"
    return f"{v[paired_key]:.3f}{spread} (target {target:g}: {'met' if v[paired_key] >= target else 'missed'})"


@RENDERERS.register("throughput")
def render_throughput(p: Dict) -> List[str]:
    c = p["config"]
    cases = {k: v for k, v in p["throughput"].items() if "skipped" not in v}
    skipped = [f"{k} (skipped: {v['skipped']})" for k, v in p["throughput"].items() if "skipped" in v]
    efficiency = [
        [
            k,
            v["description"],
            v.get("train_examples", "–"),
            v.get("train_epochs", "–"),
            f"{v['raw_train_per_s']:.0f}" if "raw_train_per_s" in v else "–",
            f"{v['loop_train_per_s']:.0f}" if "loop_train_per_s" in v else "–",
            f"{v['training_over_raw']:.3f}" if "training_over_raw" in v else "–",
            _paired_cell(v, "raw_train_passes", "loop_train_passes", "training_over_raw_paired", 0.95),
            f"{v['batching_share']:.3f}" if "batching_share" in v else "–",
            v["examples"],
            f"{v['raw_forward_per_s']:.0f}",
            f"{v['scoring_per_s']:.0f}",
            f"{v['scoring_over_raw']:.3f}",
            _paired_cell(v, "raw_forward_passes", "scoring_passes", "scoring_over_raw_paired", 0.95),
            f"{v.get('train_repeats', c.get('train_repeats', '–'))} / {v.get('repeats', c['repeats'])}",
        ]
        for k, v in cases.items()
    ]
    out = [
        f"Batch size {c['batch_size']}; raw and svp_hf passes alternate (the last column: training / scoring passes). "
        "Rates are each side's best pass; a target is judged on the median over the passes of svp_hf's rate over the "
        'raw rate measured just before it ("median of pairs", with the interquartile range of those ratios): on a '
        "shared virtual machine whose passes of the same work differ by 10-40%, one lucky raw pass moves the "
        "best-of-each ratio by several points, while each pair shares the machine's state of the moment. The "
        f"best-of-each ratio is shown beside it. Torch threads: {c.get('threads') or p['machine']['torch_threads']}. "
        "**Training**: svp_hf's `train_model` epochs (shuffling, batching, pad-and-crop and flip on the device, the "
        "step, the scheduler, loss, accuracy and the forgetting signal; with one torch thread on more cores, the next "
        "batch is gathered in a background thread while the step runs) against the model's bare forward, backward and "
        "SGD step on the same batches already in memory. **Scoring**: `compute_scores` (batching, forward, softmax, the "
        "scorer, gathering by index) against the bare forward pass on the same batches already in memory. Both exclude "
        "the one-time decode / tokenisation, which a run pays once per dataset (the decode-once cache). A cheap model "
        "is measured on more rows (fastText: the Amazon rows repeated) so that a pass lasts long enough to time; "
        "fastText trains one epoch over 65,536 rows, since batches replayed over several epochs of a few thousand rows "
        "stay in the CPU's cache and make the raw step ~10% faster than on data that does not fit there. "
        "**Batching / raw step**: the time to build a training batch alone (shuffled rows gathered from the packed or "
        "decoded arrays, augmented on the device) over the time of the raw step it feeds: work the raw loop does not "
        "do, so on a CPU that runs both in turn the loop can reach at most 1 / (1 + that share) of raw; on a GPU the "
        "batch is built while the device still runs the step before. A ratio above 1 is run-to-run noise; a case whose "
        "training rows fit in one batch (MiniLM) is timed on a single step per pass.",
        "",
        table(
            [
                "case",
                "model and data",
                "train rows",
                "epochs",
                "raw train ex/s",
                "svp_hf train ex/s",
                "training / raw (best of each)",
                "training / raw (median of pairs [IQR]; judged)",
                "batching / raw step",
                "scored rows",
                "raw forward ex/s",
                "svp_hf scoring ex/s",
                "scoring / raw (best of each)",
                "scoring / raw (median of pairs [IQR]; judged)",
                "passes",
            ],
            efficiency,
        ),
    ]
    if skipped:
        out += ["", "Not measured: " + ", ".join(skipped) + "."]
    sel = p.get("selection")
    if sel:
        proxy, target = sel["proxy"], sel["target"]
        judged = (
            sel["measured_speedup_paired"] / sel["flop_ratio"]
            if "measured_speedup_paired" in sel
            else sel["speedup_over_flop_ratio"]
        )
        verdict = "met" if judged >= 0.9 else "missed"
        out += [
            "",
            f"Core-set selection (`svp_hf.score`: train on all {sel['rows']} CIFAR-10 rows, then score them) with proxy "
            f"{proxy['model']} ({proxy['epochs']} epochs) and target {target['model']} ({target['epochs']} epochs), in "
            f"the same run, {sel.get('repeats', 1)} alternating pass(es) each; the seconds are each model's best pass. "
            "FLOPs per example are torch's count of one forward pass; a training epoch costs 3 forward passes "
            "(backward = 2 x forward) and scoring 1.",
            "",
            table(
                ["model", "role", "epochs", "forward MFLOPs / example", "selection FLOPs", "selection s"],
                [
                    [
                        proxy["model"],
                        "proxy",
                        proxy["epochs"],
                        f"{proxy['forward_flops_per_example'] / 1e6:.1f}",
                        f"{proxy['selection_flops']:.3g}",
                        f"{proxy['seconds']:.1f}",
                    ],
                    [
                        target["model"],
                        "target",
                        target["epochs"],
                        f"{target['forward_flops_per_example'] / 1e6:.1f}",
                        f"{target['selection_flops']:.3g}",
                        f"{target['seconds']:.1f}",
                    ],
                ],
            ),
            "",
            (
                f"Selection speedup target / proxy, median of the pairs' ratios, **{sel['measured_speedup_paired']:.2f}x** "
                f"against a FLOP ratio of **{sel['flop_ratio']:.2f}x**: {judged:.3f} of it (target 0.9: {verdict}); best "
                f"of each: {sel['measured_speedup']:.2f}x ({sel['speedup_over_flop_ratio']:.3f})."
                if "measured_speedup_paired" in sel
                else f"Selection speedup target / proxy measured **{sel['measured_speedup']:.2f}x** against a FLOP ratio of "
                f"**{sel['flop_ratio']:.2f}x**: {judged:.3f} of it (target 0.9: {verdict})."
            ),
        ]
    m = p["machine"]
    if not m.get("cuda"):
        out += [
            "",
            "No GPU was available for this run: the GPU figures (the same ratios on a GPU, and absolute seconds "
            "for the ResNet-20 proxy on the 20,000 CIFAR-10 rows) are not measured yet.",
        ]
    mem = [
        [
            k,
            v["n"],
            f"{v['before_mib']:.0f}",
            f"{v['peak_mib']:.0f}",
            f"{v['held_mib']:.1f}",
            v["n_4x"],
            f"{v['before_mib_4x']:.0f}",
            f"{v['peak_mib_4x']:.0f}",
            f"{v['held_mib_4x']:.1f}",
            f"{v['growth']:.3f}",
        ]
        for k, v in p.get("memory", {}).items()
    ]
    if mem:
        out += [
            "",
            "Resident memory of a fresh process that reads a dataset (memory-mapped or streamed), loads the model",
            '("ready", torch included), scores it with `svp_hf.score` ("peak": the highest while scoring, allocator',
            'high-water and mapped pages included) and the anonymous memory scoring still holds once it returned ("held",',
            "freed heap handed back to the OS), and the same as the dataset grows 4x:",
            "",
            table(
                [
                    "input / method",
                    "rows",
                    "ready MiB",
                    "peak MiB",
                    "held MiB",
                    "rows (4x)",
                    "ready MiB (4x)",
                    "peak MiB (4x)",
                    "held MiB (4x)",
                    "peak growth",
                ],
                mem,
            ),
        ]
    return out


def _model_label(name: str) -> str:
    """A model as a reader knows it: a Hub id or config spec as given, a local folder by its last two parts."""
    path = Path(name)
    return "/".join(path.parts[-2:]) if path.is_absolute() else name


@RENDERERS.register("active_amazon")
def render_active(p: Dict) -> List[str]:
    c, s = p["config"], p["summary"]
    seeds = ", ".join(str(r["seed"]) for r in p["runs"])
    rounds = []
    for i, (proxy, target) in enumerate(zip(s["per_round"]["proxy"], s["per_round"]["target"]), start=1):
        rounds.append(
            [
                i,
                proxy["labelled_size"],
                fmt_ms(proxy["selection_seconds"], 1),
                fmt_ms(target["selection_seconds"], 1),
                fmt_ms(s["round_speedup"][i - 1], 2),
            ]
        )
    acc = s["target_accuracy"]
    random = acc["random"]

    def versus(arm: str) -> str:
        a = acc[arm]
        if a["mean"] is None or random["mean"] is None:
            return "–"
        band = max(a["std"] or 0.0, random["std"] or 0.0)
        return (
            "beats random"
            if a["mean"] > random["mean"] + band
            else ("loses to random" if a["mean"] < random["mean"] - band else "ties random")
        )

    return [
        f"Pool of {c['pool_size']} `{Path(c['dataset']).name}` training reviews, {c['test_size']} test reviews; "
        f"{c['initial_size']} random initial labels, then {c['method']} rounds to {c['budgets']}. Proxy `{c['proxy']}` "
        f"({c['proxy_epochs']} epochs per round), target `{_model_label(c['target'])}` (max {c['max_length']} tokens, "
        f"{c['target_epochs']} epochs per round and at the end, {c.get('target_optimizer', 'sgd')} at "
        f"{c['target_learning_rate']:g}{', ' + c['target_lr_schedule'] + ' schedule' if c.get('target_lr_schedule') else ''}); "
        f"seeds {seeds}.",
        "",
        table(
            ["round", "labelled after", "proxy selection s", "target selection s", "speedup (target / proxy)"], rounds
        ),
        "",
        f"Total selection seconds: proxy {fmt_ms(s['selection_seconds']['proxy'], 1)}, target "
        f"{fmt_ms(s['selection_seconds']['target'], 1)}; speedup **{fmt_ms(s['speedup'], 2)}x** (measured in the same run).",
        "",
        table(
            ["labelled set chosen by", "final target test accuracy (mean ± std)", "vs random"],
            [
                ["proxy", fmt_ms(acc["proxy"]), versus("proxy")],
                ["target", fmt_ms(acc["target"]), versus("target")],
                ["random", fmt_ms(random), "–"],
            ],
        ),
    ]


@RENDERERS.register("scale")
def render_scale(p: Dict) -> List[str]:
    c, n = p["config"], str(p["config"]["processes"])
    identical = [m for m, v in p["scores"].items() if v["identical"]]
    close = {m: v["max_abs_difference"] for m, v in p["scores"].items() if not v["identical"]}
    verdict = (
        "identical for every method"
        if not close
        else (
            f"identical for {', '.join(identical)}; within "
            + ", ".join(f"{m} {d:.1e}" for m, d in close.items())
            + " (largest absolute difference)"
        )
    )
    return [
        f"{p['rows']} rows of `{Path(c['dataset']).name}`, proxy `{c['proxy']}` from one checkpoint, batch size "
        f"{c['batch_size']}: 1 process against {n} (`accelerate launch --multi_gpu --num_processes {n}`).",
        "",
        table(
            ["", "1 process", f"{n} processes", f"ratio 1 / {n}"],
            [
                [
                    "wall seconds (whole run, start-up included)",
                    f"{p['wall_seconds']['1']:.1f}",
                    f"{p['wall_seconds'][n]:.1f}",
                    f"{p['wall_ratio_1_over_n']:.2f}",
                ],
                [
                    "scoring stage seconds",
                    f"{p['scoring_seconds']['1']:.2f}",
                    f"{p['scoring_seconds'][n]:.2f}",
                    f"{p['scoring_ratio_1_over_n']:.2f}",
                ],
            ],
        ),
        "",
        f"Scores: {verdict}. Every index scored exactly once: {p['every_index_scored_once']}. Same selection: "
        f"{p['same_selection']}. Scores equal those of the run that trained the proxy: {p['matches_the_training_run']}.",
    ]


def _pts(stats: Dict) -> str:
    if stats.get("mean") is None:
        return "–"
    return f"{stats['mean'] * 100:+.1f} ± {stats['std'] * 100:.1f}"


def _sweep_verdict(row: Dict) -> str:
    """The default against random at one fraction: at or above random within the spread over seeds (the paired
    margin's mean + std >= 0) holds, below it does not."""
    margin = row["margin_over_random"]
    if margin.get("mean") is None:
        return "–"
    if margin["mean"] + (margin["std"] or 0.0) >= 0:
        return "holds"
    return f"**does not hold** ({margin['mean'] * 100:+.1f} ± {margin['std'] * 100:.1f} pts)"


def _account_cell(account: Dict) -> str:
    """One cell of the sweep's account: selection + target seconds (means over seeds), the speedup over full data and
    selection's share of it."""
    if not account:
        return "–"
    return (
        f"{account['selection_seconds']['mean']:.1f} + {account['target_seconds']['mean']:.1f} s: "
        f"{account['speedup']['mean']:.2f}x, share {account['selection_share']['mean']:.2f}"
    )


def _yes_no(flag) -> str:
    return "not measured yet" if flag is None else ("yes" if flag else "**no**")


def _per_seed(row: Dict, key: str, form: str) -> str:
    """` (per seed: a, b)` of the default's per-seed figures, when there are several."""
    values = (row.get("per_seed") or {}).get(key) or []
    return f" ({', '.join(form.format(v) for v in values)})" if len(values) > 1 else ""


def _default_choice(row: Dict, i: int) -> str:
    """What the budgeted default chose in seed `i`, and whether its check fell back (trained nothing) or stopped at
    its budget after the candidates it trained."""
    chosen = row["chosen"][i]
    if row["fell_back"][i]:
        return f"{chosen} (fallback)"
    if (row.get("check_stopped") or [False] * (i + 1))[i]:
        return f"{chosen} (check stopped after {row['candidates_trained'][i]} candidate(s))"
    return chosen


SWEEP_DEFAULT = "default (pre-checked)"
SWEEP_UNBUDGETED = "auto, unbudgeted (before)"


def _sweep_default_lines(s: Dict, fractions: List[str], all_seeds: List[int]) -> List[str]:
    """The budgeted default's account per fraction and the suite's verdicts (computed by the sweep's summary)."""
    cells = s["arms"].get(SWEEP_DEFAULT, {})
    if not cells:
        return ["", f"The budgeted default (`{SWEEP_DEFAULT}`) has not run yet on this suite."]
    budget = next(iter(cells.values()))["selection_budget"]
    rows = []
    for f in fractions:
        if f not in cells:
            rows.append([f, "not run", *["–"] * 11])
            continue
        c, a = cells[f], cells[f]["account"]
        st = c["stages"]
        rows.append(
            [
                f,
                ", ".join(str(x) for x in c["seeds"]),
                ", ".join(_default_choice(c, i) for i in range(len(c["chosen"]))),
                f"{a['selection_seconds']['mean']:.1f} ({st.get('pre-check probes', {'mean': 0.0})['mean']:.1f} + "
                f"{st['proxy training and scoring']['mean']:.1f} + "
                f"{st['probe and check']['mean']:.1f} + {st['selection']['mean']:.2f})",
                fmt_ms(a["target_seconds"], 1),
                fmt_ms(a["full_data_seconds"], 1),
                fmt_ms(c["probe_full_data_seconds"], 1),
                _x(a["speedup"]) + _per_seed(c, "speedup", "{:.2f}x"),
                fmt_ms(a["selection_share"], 2) + _per_seed(c, "selection_share", "{:.2f}"),
                f"{sum(bool(w) for w in c['within_budget'])} of {len(c['within_budget'])}",
                _pts(c["margin_over_random"]),
                _pts(c["margin_over_recorded_random"]),
                _sweep_verdict(c),
            ]
        )
    checks = s.get("checks") or {}
    n_cells = sum(v["cells"] for v in checks.get("per_fraction", {}).values())
    n_within = sum(v["within_budget"] for v in checks.get("per_fraction", {}).values())
    seeds = sorted({x for c in cells.values() for x in c["seeds"]})
    partial = [f for f in fractions if f not in cells or len(cells[f]["seeds"]) < len(all_seeds)]
    out = [
        "",
        f"The budgeted default (`{SWEEP_DEFAULT}`: strategy auto, selection_budget {budget:g}, the target's full-data "
        "training estimated by its probe) with its account: selection seconds = its proxy's training and scoring + the "
        "target's probe and the check + the selection; the target on the kept rows; the full-data target timed in the "
        "same process just before (seconds are means over seeds).",
        "",
        table(
            [
                "kept",
                "seeds",
                "chose (per seed)",
                "selection s (pre-check probes + proxy + probe and check + selection)",
                "target s (kept rows)",
                "full data s (same run)",
                "full data s (probe's estimate)",
                "speedup over full data",
                f"selection share (budget {budget:g})",
                "within budget (seeds)",
                "vs random, like for like (pts)",
                "vs the random arm as recorded (pts)",
                "at or above random",
            ],
            rows,
        ),
        "",
        f"Within its budget in every cell: {_yes_no(checks.get('within_budget_every_cell'))} ({n_within} of {n_cells} "
        f"cells); at or above random (within the spread over seeds) at every fraction: "
        f"{_yes_no(checks.get('at_or_above_random_every_fraction'))}."
        + (
            f" Seeds run for the default: {', '.join(map(str, seeds))} of {', '.join(map(str, all_seeds))}"
            + (
                f" (fewer at kept {', '.join(partial)})."
                if len(partial) < len(fractions)
                else "; the others not run yet."
            )
            if partial
            else ""
        ),
    ]
    widest = max(cells.values(), key=lambda c: len(c["seeds"]))
    seconds = (widest.get("per_seed") or {}).get("full_data_seconds") or []
    recorded = (widest.get("per_seed") or {}).get("recorded_full_data_seconds") or []
    if len(seconds) > 1 or recorded:
        every = seconds + recorded
        out += [
            "",
            f"The full-data target took {', '.join(f'{v:.1f}' for v in seconds)} s timed beside the default (seeds "
            f"{', '.join(map(str, widest['seeds']))}) and {', '.join(f'{v:.1f}' for v in recorded)} s in the first run: "
            f"the same training's wall-clock seconds on these shared cores differ up to {max(every) / min(every):.1f}x "
            "between runs, and every ratio above carries that noise (the load averages are recorded in each part).",
        ]
    out += [
        "",
        "Like for like: where the default chose random (its fallback included) it kept random's own rows, the same "
        "seeded draw, so it is compared with itself, those rows trained by the same code in the same run (0 pts); "
        "elsewhere with the random arm. The random arm was trained in an earlier run (see above), by the library as "
        "it was then: the same rows trained again now differ from it by training alone; the full-data target trained "
        f"again beside the default differs from the full-data arm by {_pts(widest['full_data_rerun_minus_recorded'])} "
        f"pts (seeds {', '.join(map(str, widest['seeds']))}).",
    ]
    return out


@RENDERERS.register("prune_sweep")
def render_prune_sweep(p: Dict) -> List[str]:
    c = p["config"]
    out = [
        "Every subset trains the target for as many epochs as the full data (SVP's end-to-end protocol: fewer steps",
        "for smaller subsets; steps per arm below). Cells: target test accuracy, mean ± std over seeds, and under it the",
        "paired difference from random in points (same seed, mean ± std). `default (pre-checked)` is the library's default",
        "as a job with a target runs it (`Pruner`: strategy auto with the default method and `selection_budget`; its",
        "pre-check prices the proxy against the budget before training it and keeps random without training it when",
        "selection cannot pay; else the check is sized from the target's probe), on its own proxy; `auto, unbudgeted",
        "(before)` is the old default, the",
        "full check on the sweep proxy's scores, shown for comparison and left out of the verdicts. Where auto chose",
        "random its subset is random's exactly.",
        "",
        "The account per cell: selection seconds + the target's seconds on the kept rows, the speedup over the",
        "full-data arm (full data / (selection + target)) and selection's share of the full-data training. `random`",
        "needs no proxy: its selection is the seeded draw alone. `top` and `coverage` count the sweep proxy's training",
        "and scoring (one proxy per seed scored every method) plus the selection, the unbudgeted auto that and its",
        "check; those arms are set against the full-data arm of their own run. The budgeted default counts its own",
        "pre-check's probes, its proxy when trained (per fraction, as a job of its own would), the check and the",
        "selection, against the full",
        "data timed beside it. Seconds are wall-clock on shared cores: compare the figures of one run (one row) rather",
        "than across runs. The arms other than the budgeted default are read from the parts of earlier runs: on the",
        "image suite the sweep's first run; on the text suite a rerun of 2026-12-03 (after fastText's table stopped",
        "being initialised twice, which changed every seeded fastText model), except `auto, unbudgeted (before)` and",
        "`default (budgeted)`, kept from the first run (their fastText models were initialised the earlier way). The",
        "date above is this summary's.",
        "",
        f"![accuracy against fraction kept]({p.get('plot', 'prune_sweep.png')})",
    ]
    verdicts = {}
    for suite, s in p["summary"].items():
        runs = p["runs"][suite]
        all_seeds = [r["seed"] for r in runs]
        seeds = ", ".join(str(x) for x in all_seeds)
        fractions = s["fractions"]
        prefix = suite + "_"
        out += [
            "",
            f"### {suite}: {s['title']}",
            "",
            f"{s['n_train']} training rows of `{Path(c[prefix + 'dataset']).name}` (proxy {c[prefix + 'proxy']}, "
            f"{c[prefix + 'proxy_epochs']} epochs; target {c[prefix + 'target']}, {c[prefix + 'target_epochs']} epochs, "
            f"step schedule, batch {c['batch_size']}), {s['n_test']} test rows; seeds {seeds}. Proxy test accuracy "
            f"{fmt_ms(s['proxy_accuracy'])}; proxy training and scoring {fmt_ms(s['proxy_seconds'], 1)} s.",
            "",
        ]
        full = s["arms"]["full data"]["1"]
        rows = []
        for arm, cells in s["arms"].items():
            if arm == "full data":
                continue
            arm_seeds = sorted({x for f in fractions if f in cells for x in cells[f].get("seeds", all_seeds)})
            label = arm if arm_seeds == sorted(all_seeds) else f"{arm} (seeds {', '.join(map(str, arm_seeds))})"
            rows.append([label, *[fmt_ms(cells[f]["accuracy"]) if f in cells else "–" for f in fractions]])
            if arm != "random":
                rows.append(
                    [
                        "  vs random (pts)",
                        *[
                            _pts(cells[f].get("margin_over_recorded_random", cells[f]["margin_over_random"]))
                            if f in cells
                            else "–"
                            for f in fractions
                        ],
                    ]
                )
        out.append(table(["arm", *[f"kept {f}" for f in fractions]], rows))
        out += [
            "",
            f"Full data: {fmt_ms(full['accuracy'])} ({full['steps']['mean']:.0f} steps, "
            f"{fmt_ms(full['train_seconds'], 1)} s).",
            "",
        ]
        steps = s["arms"]["random"]
        out.append(
            "Steps per arm (every arm at a fraction trains the same number): "
            + ", ".join(f"{f}: {steps[f]['steps']['mean']:.0f}" for f in fractions)
            + "."
        )
        out += [
            "",
            "Account per cell (means over seeds): selection + target seconds: speedup over full data, selection's share "
            "of it.",
            "",
            table(
                ["arm", *[f"kept {f}" for f in fractions]],
                [
                    [arm, *[_account_cell(cells[f].get("account")) if f in cells else "–" for f in fractions]]
                    for arm, cells in s["arms"].items()
                    if arm != "full data"
                ],
            ),
        ]
        out += _sweep_default_lines(s, fractions, all_seeds)
        verdicts[suite] = s.get("checks") or {}
        before = s["arms"].get(SWEEP_UNBUDGETED) or next(
            (v for a, v in s["arms"].items() if a.endswith("(default)")), None
        )
        if before:
            out += [
                "",
                f"`{SWEEP_UNBUDGETED}`, for comparison:",
                "",
                table(
                    ["kept", "auto chose (per seed)", "auto check s", "auto s / proxy s"],
                    [
                        [
                            f,
                            ", ".join(before[f]["auto_chosen"]),
                            fmt_ms(before[f]["auto_seconds"], 1),
                            f"{before[f]['auto_seconds']['mean'] / s['proxy_seconds']['mean']:.1f}x",
                        ]
                        for f in fractions
                        if f in before
                    ],
                ),
            ]
    if verdicts:
        within = [v.get("within_budget_every_cell") for v in verdicts.values()]
        above = [v.get("at_or_above_random_every_fraction") for v in verdicts.values()]
        out += [
            "",
            "**What must hold** (issue 23), on every suite: the default's selection share within its budget in every "
            f"cell: {_yes_no(None if None in within else all(within))}; the default at or above random (within the "
            f"spread over seeds) at every fraction: {_yes_no(None if None in above else all(above))}.",
        ]
    return out


def _x(stats: Dict) -> str:
    return "–" if stats.get("mean") is None else f"{stats['mean']:.2f}x ± {stats['std']:.2f}"


def _holds(flag) -> str:
    return "–" if flag is None else ("holds" if flag else "**does not hold**")


@RENDERERS.register("sst2_end_to_end")
def render_sst2_end_to_end(p: Dict) -> List[str]:
    """SVP's headline on SST-2 with MiniLM: accuracy per arm and fraction, the end-to-end accounts, the default's row."""
    c, s = p["config"], p["summary"]
    arms = s["arms"]
    fractions = sorted({f for arm, cells in arms.items() if arm != "full" for f in cells}, key=float)
    full = arms.get("full", {}).get("1")
    out = [
        f"A {c['proxy']} proxy ({c['proxy_epochs']} epochs) selects a seeded {c['train_size']}-row subsample of "
        f"`{Path(c['dataset']).name}` for {c['target']} (max {c['max_length']} tokens) fine-tuned {c['target_epochs']} "
        f"epochs on the kept rows (AdamW, learning rate {c['target_learning_rate']:g}, linear schedule, batch "
        f"{c['target_batch_size']}; the same epochs for every arm), evaluated on {c['test_size'] or 'all'} test rows; "
        f"`top` and `coverage` rank by {c['method']}; `default` is the library's defaults. Every arm is one run of the "
        "core-set job; its account takes its own stage times against the same seed's full-data arm, measured.",
        "",
        f"Full data: {fmt_ms(full['accuracy']) if full else '–'} test accuracy, target training "
        f"{fmt_ms(full['target_seconds'], 1) if full else '–'} s.",
        "",
    ]
    rows = []
    for arm in [a for a in arms if a != "full"]:
        cells = arms[arm]
        rows.append([arm, *[fmt_ms(cells[f]["accuracy"]) if f in cells else "–" for f in fractions]])
        if arm != "random":
            rows.append(["  vs random (pts)", *[_pts(cells[f]["vs_random"]) if f in cells else "–" for f in fractions]])
        rows.append(["  speedup over full data", *[_x(cells[f]["speedup"]) if f in cells else "–" for f in fractions]])
        rows.append(
            [
                "  selection / full data",
                *[fmt_ms(cells[f]["selection_share"]) if f in cells else "–" for f in fractions],
            ]
        )
    if "default" not in arms:  # its arms run separately (and last): say so rather than leave the row out
        rows.append(["default", *["not yet measured" for _ in fractions]])
    out.append(table(["arm", *[f"kept {f}" for f in fractions]], rows))
    head = s.get("headline")
    out.append("")
    if head is None:
        out.append("The default's arms have not run yet: no headline.")
    else:
        out.append(
            f"**Headline** (the default at {head['fraction']} kept): {_x(head['speedup'])} faster end to end than full "
            f"data (at least 1.4x: {_holds(head['fast_enough'])}); accuracy {_pts(head['vs_full'])} pts against full "
            f"data and {_pts(head['vs_random'])} pts against random (at or above random within noise: "
            f"{_holds(head['at_or_above_random'])})."
        )
        default = arms.get("default", {})
        out += [
            "",
            "The default chose (per seed): "
            + "; ".join(f"{f}: {', '.join(default[f]['chosen'])}" for f in fractions if f in default)
            + ".",
        ]
    return out


@RENDERERS.register("precision")
def render_precision(p: Dict) -> List[str]:
    """bf16 against fp32 ResNet-20 proxies: speed, rank agreement against seeds, the target on each selection."""
    c, s = p["config"], p["summary"]
    cpu = s["cpu"]
    out = [
        f"CPU: capability {cpu['capability']}, AVX512-BF16 {cpu['is_avx512_bf16_supported']}, AMX tiles "
        f"{cpu['is_amx_tile_supported']}. ResNet-20, batch {c['batch_size']}, {c['threads']} thread(s); proxies trained "
        f"{c['proxy_epochs']} epochs on a seeded {c['train_size']}-row subsample of `{Path(c['dataset']).name}`.",
        "",
        table(
            ["", "fp32 s", "bf16 s", "bf16 speedup, median of pairs [quartiles]", "best of each"],
            [
                [
                    name,
                    f"{v['fp32_seconds']:.3f}",
                    f"{v['bf16_seconds']:.3f}",
                    f"{v['speedup_median_of_pairs']:.2f}x [{v['speedup_quartiles'][0]:.2f}-{v['speedup_quartiles'][2]:.2f}]",
                    f"{v['speedup_best_of']:.2f}x",
                ]
                for name, v in s["speed"].items()
            ],
        ),
        "",
        table(
            ["pair", *[f"{m} Spearman / Kendall / top-half overlap" for m in next(iter(s["rank_agreement"].values()))]],
            [
                [
                    pair,
                    *[f"{a['spearman']:.3f} / {a['kendall']:.3f} / {a['top_k_overlap']:.3f}" for a in methods.values()],
                ]
                for pair, methods in s["rank_agreement"].items()
            ],
        ),
        "",
        table(
            [
                "target on the half kept by",
                *next(iter(s["target_accuracy"].values())),
                "bf16 - fp32 (pts)",
                "fp32 seed - seed (pts)",
            ],
            [
                [
                    f"{st} least_confidence",
                    *[f"{v:.3f}" for v in acc.values()],
                    ", ".join(f"{v * 100:+.1f}" for k, v in s["target_difference"][st].items() if k.startswith("bf16")),
                    ", ".join(f"{v * 100:+.1f}" for k, v in s["target_difference"][st].items() if k.startswith("fp32")),
                ]
                for st, acc in s["target_accuracy"].items()
            ],
        ),
    ]
    return out


@RENDERERS.register("budget_check")
def render_budget_check(p: Dict) -> List[str]:
    """The budgeted ``auto`` against the unbudgeted one on the prune sweep's suites."""
    s = p["summary"]
    d, m = s["default_budget"], s["smallest_check"]
    supported = ", ".join(f"{f}: {', '.join(v) or 'none'}" for f, v in s["supported_strategies"].items())
    return [
        f"On the sweep `{p['sweep_command']}`:",
        "",
        f"- Strategies beating random by more than their spread over seeds on every suite, per kept fraction: {supported}.",
        f"- The default budget on the {d['cells']} recorded cells: the proxy alone cost {fmt_ms(d['proxy_share'], 2)} of "
        f"the full-data target (the unbudgeted check {fmt_ms(d['check_share_unbudgeted'], 2)}); the check fell back in "
        f"{d['fell_back']} and chose as the unbudgeted check did in {d['same_choice']}; its margin over random minus "
        f"the unbudgeted one's: {_pts(d['budgeted_minus_unbudgeted']['difference'])} pts.",
        f"- The smallest honest check, run in {m['cells']} cells: the same choice in {m['same_choice']}; its margin over "
        f"random minus the unbudgeted one's {_pts(m['smallest_minus_unbudgeted']['difference'])} pts; "
        f"{fmt_ms(m['seconds_smallest'], 1)} s against {fmt_ms(m['seconds_unbudgeted'], 1)} s; it took "
        f"{fmt_ms(m['spent_over_planned'], 2)} times its planned seconds (each candidate's fixed costs are not in the "
        "plan; a budgeted run stops when the next candidate would pass its budget).",
    ]


TITLES = {
    "coreset_cifar10": "1. Core-set selection on CIFAR-10",
    "active_amazon": "2. Active learning on Amazon Review Polarity",
    "throughput": "3. Training and scoring throughput against the model's own limit, selection speedup, memory",
    "scale": "4. Scale check: 1 process against 2",
    "prune_sweep": "5. Prune-rate sweep: every strategy against random",
    "sst2_end_to_end": "6. End to end on SST-2: a fastText proxy selects for MiniLM, against fine-tuning on all the data",
    "precision": "7. bf16 autocast against fp32 for the proxy on a CPU: speed and what it selects",
    "budget_check": "8. auto's budgeted check against the unbudgeted one",
}


def render(results_dir: Path) -> str:
    parts = [
        "# Benchmark results",
        "",
        "Generated by `python -m benchmarks.report` from the JSON in `benchmarks/results/`; every figure is what the",
        "scripts measured. Timings are ratios within one run on one machine; accuracies are mean ± standard deviation",
        "over the seeds listed. Where SVP's claim does not hold at this small scale, the table says so.",
    ]
    found = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("*.json"))}
    for key, title in TITLES.items():
        payload = found.get(key)
        parts += ["", f"## {title}", ""]
        if payload is None or key not in RENDERERS:
            parts.append("Not run yet.")
            continue
        parts += [f"`{payload['command']}`", "", _machine(payload), ""] + RENDERERS.get(key)(payload)
    return "\n".join(parts) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--results-dir", default=str(RESULTS_DIR))
    p.add_argument("--output", default=str(Path(__file__).with_name("RESULTS.md")))
    args = p.parse_args(argv)
    text = render(Path(args.results_dir))
    Path(args.output).write_text(text)
    print(f"wrote {args.output}")
    return text


if __name__ == "__main__":
    main()
