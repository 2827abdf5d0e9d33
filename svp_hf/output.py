"""Output stage: write a run's results into `output_dir` atomically.

Layout::

    output_dir/
      dataset/            # README.md (dataset card) + data/<split>-00000-of-00001.parquet
      scores.parquet      # svp_index, label, one column per scored method
      metrics.json        # sizes, method, fraction, accuracies, timings

Everything is first written to a temporary folder inside `output_dir` and moved into place only when complete, so a
failed or interrupted run never leaves a half-written `dataset/`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional

import numpy as np
from datasets import Dataset

from .errors import SVPConfigError

RESULT_NAMES = ("dataset", "scores.parquet", "metrics.json")


def check_output_dir(output_dir: str, overwrite: bool) -> None:
    """Raise before any work if `output_dir` already holds a result and `overwrite` is not set."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise SVPConfigError(f"output_dir {output_dir!r} exists and is not a folder")
    existing = [n for n in RESULT_NAMES if os.path.exists(os.path.join(output_dir, n))]
    if existing and not overwrite:
        raise SVPConfigError(
            f"output_dir {output_dir!r} already holds a result ({', '.join(existing)}); "
            "set overwrite_output_dir to replace it, or choose another output_dir"
        )


def _embed(dataset: Dataset) -> Dataset:
    """Embed image/audio bytes referenced by path, so the parquet files stand alone."""
    from datasets.table import embed_table_storage

    if not any(getattr(f, "decode", None) is not None and hasattr(f, "embed_storage") for f in dataset.features.values()):
        return dataset
    fmt = dataset.format
    embedded = dataset.with_format("arrow").map(embed_table_storage, batched=True, desc="embedding files")
    return embedded.with_format(**fmt)


def default_card(splits: Dict[str, Dataset], metadata: Optional[Dict[str, Any]] = None) -> str:
    """A minimal dataset card. The splits are found from the file names (``data/<split>-00000-of-00001.parquet``),
    not from a YAML `configs` list: `datasets` keys its cache for a local folder with `configs` on the patterns
    alone, so two output folders would share one stale cache entry."""
    from huggingface_hub import DatasetCard, DatasetCardData

    data = DatasetCardData(tags=["svp-hf", "data-pruning"])
    lines = ["# Dataset pruned with svp_hf", ""]
    for key, value in (metadata or {}).items():
        lines.append(f"- **{key}**: {value}")
    return str(DatasetCard.from_template(data, template_str="---\n{{ card_data }}\n---\n\n" + "\n".join(lines) + "\n"))


def write_dataset_folder(path: str, splits: Dict[str, Dataset], card: Optional[str] = None) -> None:
    """Write `splits` as parquet under `path/data/` with a README.md card; loadable with ``load_dataset(path)``."""
    os.makedirs(os.path.join(path, "data"), exist_ok=True)
    for split, ds in splits.items():
        _embed(ds).to_parquet(os.path.join(path, "data", f"{split}-00000-of-00001.parquet"))
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as f:
        f.write(card if card is not None else default_card(splits))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write_json(path: str, obj: Any) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(_jsonable(obj), f, indent=2, sort_keys=False)
        f.write("\n")


def write_run(
    output_dir: str,
    *,
    splits: Dict[str, Dataset],
    scores: Dataset,
    metrics: Dict[str, Any],
    card: Optional[str] = None,
    overwrite: bool = False,
    extra_files: Optional[Dict[str, Any]] = None,
) -> None:
    """Write dataset/, scores.parquet, metrics.json (and any `extra_files` as JSON) atomically into `output_dir`."""
    check_output_dir(output_dir, overwrite)
    os.makedirs(output_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".svp-tmp-", dir=output_dir)
    try:
        write_dataset_folder(os.path.join(tmp, "dataset"), splits, card)
        scores.to_parquet(os.path.join(tmp, "scores.parquet"))
        for name, obj in (extra_files or {}).items():
            write_json(os.path.join(tmp, name), obj)
        write_json(os.path.join(tmp, "metrics.json"), metrics)
        # Move into place; metrics.json last, so its presence marks a complete result.
        names = [n for n in os.listdir(tmp) if n != "metrics.json"] + ["metrics.json"]
        for name in names:
            dest = os.path.join(output_dir, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(os.path.join(tmp, name), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["check_output_dir", "write_dataset_folder", "write_run", "write_json", "default_card", "RESULT_NAMES"]
