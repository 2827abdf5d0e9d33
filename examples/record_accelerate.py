"""Score a dataset with the training dynamics of your own Accelerate loop, then keep half of it.

A timm model (SVP's ResNet-20, which ``import svp_hf`` puts in timm's registry) trains on scikit-learn's digits in a
plain Accelerate loop; three lines feed svp_hf's recorder (marked ``# svp_hf``), which returns the scores table
``svp_hf.score`` returns, so ``svp_hf.select`` (here with coverage-centric selection) works on it.

    python examples/record_accelerate.py --epochs 5
    accelerate launch --multi_gpu --num_processes 2 examples/record_accelerate.py --epochs 5  # add --cpu without GPUs
"""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

import numpy as np
import timm
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from torchvision.transforms.functional import normalize, pil_to_tensor

import svp_hf


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="resnet20", help="any timm model name (default: SVP's CIFAR ResNet-20)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--max-rows", type=int, default=None, help="train on the first rows only (quick runs)")
    parser.add_argument("--method", default="forgetting", help="the method the subset is kept by")
    parser.add_argument("--fraction", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (several CPU processes need it)")
    parser.add_argument("--output", default=None, help="write the scores table here (parquet), from the main process")
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None):
    """Train, record, score and select; returns ``(scores, subset, recorder)``."""
    args = parse_args(argv)
    accelerator = Accelerator(cpu=args.cpu)
    set_seed(args.seed)
    train = svp_hf.load_data("builtin:digits")["train"]
    if args.max_rows:
        train = train.select(range(min(args.max_rows, len(train))))

    # The loop's own data pipeline: each row's position travels with the batch as "idx".
    def transform(batch):
        pixels = [normalize(pil_to_tensor(image).float() / 255.0, [0.5], [0.5]) for image in batch["image"]]
        return {"pixel_values": pixels, "labels": batch["label"], "idx": batch["idx"]}

    rows = train.add_column("idx", np.arange(len(train))).with_transform(transform)
    loader = torch.utils.data.DataLoader(rows, batch_size=args.batch_size, shuffle=True)
    model = timm.create_model(args.model, num_classes=train.features["label"].num_classes, in_chans=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.learning_rate, momentum=0.9, weight_decay=5e-4)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)

    recorder = svp_hf.DynamicsRecorder(train, accelerator=accelerator)  # svp_hf
    for _ in range(args.epochs):
        model.train()
        for batch in loader:
            logits = model(batch["pixel_values"])
            loss = F.cross_entropy(logits, batch["labels"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            recorder.update(batch["idx"], logits, batch["labels"])  # svp_hf

    # EL2N and the other methods that score the trained model's predictions read one more pass over the rows.
    model.eval()
    ordered = accelerator.prepare(torch.utils.data.DataLoader(rows, batch_size=args.batch_size))
    with torch.no_grad():
        for batch in ordered:
            recorder.update_final(batch["idx"], model(batch["pixel_values"]), batch["labels"])

    scores = recorder.scores(["forgetting", "aum", "el2n", "confidence", "variability"])  # svp_hf
    subset = svp_hf.select(train, scores, args.method, args.fraction, strategy="coverage", coverage_beta=0.1)
    if accelerator.is_main_process:
        print(f"recorded {recorder.steps} steps; kept {len(subset)} of {len(train)} rows by {args.method!r} (coverage)")
        if args.output:
            scores.to_parquet(args.output)
    return scores, subset, recorder


if __name__ == "__main__":
    main()
