"""Loading a dataset from a recipe (a Hub id, a builder with ``data_files``, a local folder or ``builtin:NAME``), its
splits and a held-out part, with one clear error naming what failed."""

from __future__ import annotations

import os
from typing import List, Optional

import datasets
from datasets import Dataset, DatasetDict

from ..errors import SVPConfigError
from ..utils.progress import quiet_datasets
from .builtin import BUILTIN_DATASETS
from .columns import find_label_column

_BUILDER_BY_EXTENSION = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json", ".arrow": "arrow"}


def _infer_builder(data_files) -> str:
    flat = _file_list(data_files)
    exts = {os.path.splitext(f)[1].lower() for f in flat}
    builders = {_BUILDER_BY_EXTENSION.get(e) for e in exts}
    if len(builders) != 1 or None in builders:
        raise SVPConfigError(f"cannot tell the format of data_files {flat}; set dataset_name (e.g. 'parquet')")
    return builders.pop()


def load_data(
    dataset_name: Optional[str], dataset_config_name: Optional[str] = None, data_files=None, streaming: bool = False
) -> DatasetDict:
    """Load a dataset by Hub id, builder name (with `data_files`), local folder, or ``builtin:NAME``."""
    _check_source(dataset_name, data_files)
    if dataset_name is None and not data_files:
        raise SVPConfigError("no data: set dataset_name (a Hub id, builder or folder) or data_files")
    if dataset_name in BUILTIN_DATASETS:
        return BUILTIN_DATASETS.get(dataset_name)()
    if dataset_name is None:
        dataset_name = _infer_builder(data_files)
    try:
        return datasets.load_dataset(dataset_name, dataset_config_name, data_files=data_files, streaming=streaming)
    except Exception as err:  # the datasets library raises many types; name what failed in one clear error
        raise SVPConfigError(_load_failure(dataset_name, dataset_config_name, data_files, err)) from err


BUILTIN_PREFIX = "builtin:"


def _file_list(data_files) -> List[str]:
    """Every path named by `data_files` (a path, a list of paths, or a mapping split -> path(s))."""
    parts = list(data_files.values()) if isinstance(data_files, dict) else [data_files]
    return [f for part in parts for f in ([part] if isinstance(part, str) else list(part or []))]


def _check_source(dataset_name: Optional[str], data_files) -> None:
    """Clear errors, before anything is read, for a source that cannot mean what it says."""
    files = _file_list(data_files) if data_files is not None else None
    if files is not None and (not files or not all(str(f).strip() for f in files)):
        raise SVPConfigError(
            f"data_files names no file ({data_files!r}): give the data files (a path, a list of paths, or a mapping "
            "split -> path(s), e.g. {train: train.parquet, test: test.parquet}), or leave data_files out"
        )
    if dataset_name and dataset_name.startswith(BUILTIN_PREFIX):
        if dataset_name not in BUILTIN_DATASETS:
            raise SVPConfigError(
                f"unknown built-in dataset {dataset_name!r}; the built-in datasets are "
                f"{', '.join(BUILTIN_DATASETS.names())}"
                " (for a local folder or file, give its path without 'builtin:')"
            )
        if data_files:
            raise SVPConfigError(
                f"the built-in dataset {dataset_name!r} reads no data_files; leave data_files out, or set dataset_name "
                "to the files' format (e.g. 'parquet') or leave it out to read them"
            )


def _rowless(path: str) -> Optional[str]:
    """Why the local data file `path` holds no rows ('0 bytes', 'a header only', ...), or None when it has some (or
    is of a format not checked here)."""
    import pyarrow.parquet as pq

    if os.path.getsize(path) == 0:
        return "it is empty (0 bytes)"
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".parquet":
            return "it holds 0 rows" if pq.ParquetFile(path).metadata.num_rows == 0 else None
        if ext in (".csv", ".tsv", ".json", ".jsonl"):
            with open(path, "rb") as f:
                lines = [line for line in (f.readline() for _ in range(3)) if line.strip()]
            if ext in (".csv", ".tsv") and len(lines) <= 1:
                return "it holds a header only" if lines else "it holds blank lines only"
            if not lines:
                return "it holds blank lines only"
    except Exception:  # unreadable: datasets' own error says more
        return None
    return None


def _local_data_files(dataset_name: Optional[str], data_files) -> List[str]:
    """The local files a load read: those `data_files` names, else those of the folder `dataset_name`."""
    if data_files:
        return [f for f in _file_list(data_files) if os.path.isfile(f)]
    if dataset_name and os.path.isdir(dataset_name):
        return [
            os.path.join(root, name)
            for root, _, names in os.walk(dataset_name)
            for name in sorted(names)
            if os.path.splitext(name)[1].lower() in _BUILDER_BY_EXTENSION or name.endswith(".tsv")
        ]
    return []


def _load_failure(dataset_name: str, config_name: Optional[str], data_files, err: Exception) -> str:
    """The message for a failed ``datasets.load_dataset``: the files that hold no rows when there are such, a folder
    without data files, else what datasets said."""
    empty = {f: why for f in _local_data_files(dataset_name, data_files) if (why := _rowless(f))}
    if empty:
        shown = "; ".join(f"{f!r}: {why}" for f, why in list(empty.items())[:5])
        return f"{len(empty)} data file(s) hold no rows ({shown}); remove those files, or leave them out of data_files"
    if not data_files and os.path.isdir(dataset_name) and type(err).__name__ == "EmptyDatasetError":
        return (
            f"the folder {dataset_name!r} holds no data files datasets can read (parquet, csv, json, arrow, or image "
            "files in per-class folders); check dataset_name, or name the files with data_files"
        )
    return (
        f"could not load dataset {dataset_name!r}"
        + (f" (config {config_name!r})" if config_name else "")
        + (f" with data_files={data_files!r}" if data_files else "")
        + f": {type(err).__name__}: {err}"
    )


def get_split(data: DatasetDict, split: str, role: str) -> Dataset:
    if split not in data:
        hint = _split_hint(data)
        raise SVPConfigError(f"{role} split {split!r} not found; the dataset has splits {sorted(data)}{hint}")
    return data[split]


def _split_hint(data: DatasetDict) -> str:
    """For data read as one 'train' split (files named by no split: often a folder that is no dataset), what
    datasets read and the fixes."""
    if list(data) != ["train"]:
        return ""
    info = getattr(data["train"], "info", None)
    builder = getattr(info, "builder_name", None)
    read = f"datasets read it as {builder!r} data, found" if builder else "datasets found"
    return (
        f" ({read} no file or folder named by a split, and put every row in 'train'). Check that dataset_name is the "
        "dataset's folder or files (named by split: train.parquet and test.parquet, or train/ and test/ folders); "
        "to hold part of 'train' out for evaluation instead, set validation_split_percentage"
    )


@quiet_datasets()
def hold_out(dataset: Dataset, percentage: float, seed: int, label_column: Optional[str] = None):
    """Split `percentage` % of `dataset` off as an evaluation split (stratified when the label is a ClassLabel), the
    convention of the Hugging Face examples' ``validation_split_percentage`` when a dataset has no evaluation split."""
    if not 0 < percentage < 100:
        raise SVPConfigError(f"validation_split_percentage must be in (0, 100), got {percentage}")
    label, _, names = find_label_column(dataset, label_column)
    try:
        parts = dataset.train_test_split(
            test_size=percentage / 100, seed=seed, stratify_by_column=label if names is not None else None
        )
    except ValueError as err:  # too few rows to hold out, or to stratify
        raise SVPConfigError(f"cannot hold out {percentage}% of {len(dataset)} rows for evaluation: {err}") from None
    return parts["train"], parts["test"]
