"""Output stage: write a run's results into `output_dir` atomically.

Layout::

    output_dir/
      dataset/                # what push_to_hub uploads; datasets.load_dataset(output_dir + "/dataset") loads it
        README.md             # the dataset card (svp_hf.card) with the report
        data/<split>-00000-of-0000N.parquet   # each split in shards of at most max_shard_size (500MB by default)
        scores/proxy.parquet  # every training row's scores (and scores/target.parquet when the target scored too)
        plots/*.png           # the report's plots
      scores.parquet          # svp_index, label, one column per scored method
      target_scores.parquet   # the same from the target trained on the whole split (score_with_target)
      report.md               # the report, for reading next to the output
      metrics.json            # sizes, method, fraction, accuracies, timings, provenance

Everything is first written to a temporary folder inside `output_dir` and moved into place only when complete, so a
failed or interrupted run never leaves a half-written `dataset/`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
from datasets import Dataset

from .card import dataset_card
from .config import DEFAULT_MAX_SHARD_SIZE, parse_size
from .errors import SVPConfigError
from .report import ReportInputs, render_report, write_plots

RESULT_NAMES = ("dataset", "scores.parquet", "target_scores.parquet", "report.md", "rounds.json", "recipe.yaml", "metrics.json")
DATASET_DIR = "dataset"
SCORES_FILE = "scores.parquet"
TARGET_SCORES_FILE = "target_scores.parquet"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# Inside the dataset folder: one score table per scorer; no split pattern of `datasets` matches these names.
DATASET_SCORES = {"proxy": "scores/proxy.parquet", "target": "scores/target.parquet"}


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


def _has_files(dataset: Dataset) -> bool:
    """Whether `dataset` has image/audio columns whose files may be referenced by path."""
    return any(getattr(f, "decode", None) is not None and hasattr(f, "embed_storage") for f in dataset.features.values())


def _embed(dataset: Dataset) -> Dataset:
    """Embed image/audio bytes referenced by path, so the parquet files stand alone (in memory: call it per shard)."""
    from datasets.table import embed_table_storage

    if not _has_files(dataset):
        return dataset
    fmt = dataset.format
    embedded = dataset.with_format("arrow").map(embed_table_storage, batched=True, keep_in_memory=True, desc="embedding files")
    return embedded.with_format(**fmt)


def default_card(splits: Dict[str, Dataset], metadata: Optional[Dict[str, Any]] = None) -> str:
    """The dataset card for `splits`, from whatever run metadata is known (see :func:`svp_hf.card.dataset_card`)."""

    metrics = dict(metadata or {})
    metrics.setdefault("splits", {name: len(ds) for name, ds in splits.items()})
    return str(dataset_card(metrics, has_scores=False))


def _nbytes(dataset: Dataset, sample_size: int = 256) -> float:
    """About how large `dataset`'s rows are once written, files embedded: the Arrow size of its rows (through its
    indices mapping, if any), or, when files may be referenced by path, that of an evenly spread embedded sample."""
    if not len(dataset):
        return 0.0
    if _has_files(dataset):
        rows = np.unique(np.linspace(0, len(dataset) - 1, num=min(len(dataset), sample_size)).round().astype(np.int64))
        sample = _embed(dataset.select(rows))
        return sample.data.nbytes / len(sample) * len(dataset)
    return dataset.data.nbytes * len(dataset) / len(dataset.data)


def write_split(folder: str, split: str, dataset: Dataset, max_shard_size=DEFAULT_MAX_SHARD_SIZE) -> List[str]:
    """Write `dataset` as ``folder/<split>-0000i-of-0000n.parquet`` shards of at most about `max_shard_size`, rows in
    order, each with its files embedded (one shard in memory at a time); the names ``datasets`` maps to `split`.
    Returns the file names."""
    num_shards = max(1, min(len(dataset), math.ceil(_nbytes(dataset) / parse_size(max_shard_size))))
    names = [f"{split}-{i:05d}-of-{num_shards:05d}.parquet" for i in range(num_shards)]
    for i, name in enumerate(names):
        shard = dataset.shard(num_shards=num_shards, index=i, contiguous=True) if num_shards > 1 else dataset
        _embed(shard).to_parquet(os.path.join(folder, name))
    return names


def write_dataset_folder(
    path: str,
    splits: Dict[str, Dataset],
    card: Optional[str] = None,
    *,
    scores: Optional[Dict[str, Optional[Dataset]]] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> None:
    """Write `splits` as parquet shards of at most `max_shard_size` under `path/data/` with a README.md card;
    loadable with ``load_dataset(path)``. `scores` maps ``"proxy"``/``"target"`` to score tables written under
    `path/scores/`."""
    parse_size(max_shard_size)  # before the folder is made
    os.makedirs(os.path.join(path, "data"), exist_ok=True)
    for split, ds in splits.items():
        write_split(os.path.join(path, "data"), split, ds, max_shard_size)
    for which, table in (scores or {}).items():
        if table is not None:
            os.makedirs(os.path.dirname(os.path.join(path, DATASET_SCORES[which])), exist_ok=True)
            table.to_parquet(os.path.join(path, DATASET_SCORES[which]))
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
    target_scores: Optional[Dataset] = None,
    repo_id: Optional[str] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> Dict[str, Any]:
    """Write dataset/ (card, splits, score tables, plots), scores.parquet, report.md, metrics.json (and any
    `extra_files` as JSON) atomically into `output_dir`. Without an explicit `card`, the card and report are made
    from `metrics` (see :mod:`svp_hf.card`, :mod:`svp_hf.report`). Returns the metrics as written."""

    check_output_dir(output_dir, overwrite)
    parse_size(max_shard_size)
    os.makedirs(output_dir, exist_ok=True)
    metrics = dict(metrics, splits={name: len(ds) for name, ds in splits.items()})
    tmp = tempfile.mkdtemp(prefix=".svp-tmp-", dir=output_dir)
    try:
        dataset_dir = os.path.join(tmp, DATASET_DIR)
        figures = write_plots(os.path.join(dataset_dir, PLOTS_DIR), ReportInputs(metrics, scores, target_scores))
        metrics["report_figures"] = [vars(f) for f in figures]
        if card is None:
            card = str(dataset_card(metrics, figures, repo_id=repo_id))
        write_dataset_folder(
            dataset_dir, splits, card, scores={"proxy": scores, "target": target_scores}, max_shard_size=max_shard_size
        )
        scores.to_parquet(os.path.join(tmp, SCORES_FILE))
        if target_scores is not None:
            target_scores.to_parquet(os.path.join(tmp, TARGET_SCORES_FILE))
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            f.write("# svp_hf report\n\n" + render_report(metrics, figures, image_dir=f"{DATASET_DIR}/{PLOTS_DIR}"))
        for name, obj in (extra_files or {}).items():
            if isinstance(obj, str):  # already formatted (e.g. YAML)
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                    f.write(obj)
            else:
                write_json(os.path.join(tmp, name), obj)
        write_json(os.path.join(tmp, "metrics.json"), metrics)
        # Replace any previous result's files, then move the new ones into place. The previous metrics.json goes
        # first and the new one comes last, so a metrics.json always belongs to the files next to it: a run killed
        # in between leaves none (an incomplete result), never an old one describing new files.
        stale_metrics = os.path.join(output_dir, "metrics.json")
        if os.path.exists(stale_metrics):
            os.remove(stale_metrics)
        for name in RESULT_NAMES:
            stale = os.path.join(output_dir, name)
            if name != "metrics.json" and not os.path.exists(os.path.join(tmp, name)) and os.path.exists(stale):
                shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
        names = [n for n in os.listdir(tmp) if n != "metrics.json"] + ["metrics.json"]
        for name in names:
            dest = os.path.join(output_dir, name)
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(os.path.join(tmp, name), dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def _read_scores(path: str) -> Dataset:
    return Dataset.from_parquet(path)


def load_scores(source: str, *, which: str = "proxy", revision: Optional[str] = None, token: Optional[str] = None) -> Dataset:
    """Read a run's per-example scores back, to select again without retraining (:func:`svp_hf.select`).

    `source` is an ``output_dir``, a dataset folder written by svp_hf (``output_dir/dataset``), or the Hub id of a
    dataset pushed by svp_hf (read with ``datasets.load_dataset``; `revision` and `token` pass through).
    `which` is ``"proxy"`` (the selection's scores) or ``"target"`` (the target's, when it scored the split too).
    Returns ``svp_index``, ``label`` and one column per scored method.
    """
    import datasets

    if which not in DATASET_SCORES:
        raise SVPConfigError(f"which must be one of {sorted(DATASET_SCORES)}, got {which!r}")
    source = os.fspath(source)
    if os.path.isdir(source):
        top_level = {"proxy": SCORES_FILE, "target": TARGET_SCORES_FILE}[which]
        candidates = [
            os.path.join(source, top_level),
            os.path.join(source, DATASET_DIR, DATASET_SCORES[which]),
            os.path.join(source, DATASET_SCORES[which]),
        ]
        for path in candidates:
            if os.path.isfile(path):
                return _read_scores(path)
        raise SVPConfigError(f"no {which} scores in {source!r} (looked for {', '.join(candidates)})")
    try:
        return datasets.load_dataset(
            source, data_files={"train": DATASET_SCORES[which]}, split="train", revision=revision, token=token
        )
    except Exception as err:  # not found, offline, private: one clear error naming the source
        raise SVPConfigError(
            f"could not read {which} scores from {source!r} (not a local folder; as a Hub dataset: "
            f"{type(err).__name__}: {err})"
        ) from err


__all__ = [
    "check_output_dir",
    "write_dataset_folder",
    "write_split",
    "parse_size",
    "write_run",
    "write_json",
    "default_card",
    "load_scores",
    "RESULT_NAMES",
    "DATASET_SCORES",
]
