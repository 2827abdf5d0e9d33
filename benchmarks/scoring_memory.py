"""Peak memory of scoring as the dataset grows: it should stay flat (one shard at a time, one float per example).

    PYTHONPATH=. python benchmarks/scoring_memory.py --sizes 2000 8000 32000 [--streaming] [--kcenter_max_memory 8MB]

Writes a synthetic 32x32 RGB image dataset of each size to parquet, then scores it in a fresh process (loaded
memory-mapped, or with ``streaming=True``) with an untrained ResNet-20 and reports the process's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile


def make_parquet(path: str, n: int) -> None:
    import datasets
    import numpy as np

    rng = np.random.default_rng(0)
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)})

    def rows():
        from PIL import Image

        for i in range(n):
            yield {"img": Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)), "label": int(i % 10)}

    datasets.Dataset.from_generator(rows, features=features).to_parquet(path)


def score(path: str, streaming: bool, methods: list, kcenter_max_memory: str | None) -> dict:
    import datasets

    import svp_hf
    from svp_hf.api import prepare_inputs
    from svp_hf.models import create_model

    data = datasets.load_dataset("parquet", data_files={"train": path}, streaming=streaming)["train"]
    _, info = prepare_inputs(data, "resnet20", {})
    with tempfile.TemporaryDirectory() as proxy:
        from safetensors.torch import save_file

        save_file(create_model("resnet20", info).state_dict(), os.path.join(proxy, "model.safetensors"))
        scores = svp_hf.score(
            data, proxy="resnet20", methods=methods, proxy_checkpoint=proxy, batch_size=256, scoring_shard_size=4096,
            kcenter_max_memory=kcenter_max_memory,
        )
    return {"rows": len(scores), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 8000, 32000])
    parser.add_argument("--streaming", action="store_true")
    parser.add_argument("--methods", nargs="+", default=["least_confidence", "entropy"])
    parser.add_argument("--kcenter_max_memory", default=None)
    parser.add_argument("--child", nargs=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(score(args.child[0], args.streaming, args.methods, args.kcenter_max_memory)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            path = os.path.join(tmp, f"synthetic-{n}.parquet")
            make_parquet(path, n)
            cmd = [sys.executable, __file__, "--child", path, "--methods", *args.methods]
            cmd += ["--streaming"] if args.streaming else []
            cmd += ["--kcenter_max_memory", args.kcenter_max_memory] if args.kcenter_max_memory else []
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            print(json.dumps({"size": n, "streaming": args.streaming, **json.loads(out)}), flush=True)


if __name__ == "__main__":
    main()
