"""Text columns: detection (``"text"`` modality) and tokenised, model-ready datasets."""

from __future__ import annotations

import contextlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pyarrow.compute as pc
from datasets import Dataset, Value

from ..errors import SVPConfigError
from ..utils.device import auto_num_workers
from ..utils.progress import are_progress_bars_disabled, quiet_datasets
from .columns import INDEX_COLUMN, DataInfo, _check_column, add_index, find_label_column, register_modality


def _is_string(feature) -> bool:
    return isinstance(feature, Value) and feature.dtype in ("string", "large_string")


def _text_column_list(text_column) -> Optional[List[str]]:
    if text_column is None:
        return None
    columns = [text_column] if isinstance(text_column, str) else list(text_column)
    columns = [c.strip() for name in columns for c in name.split(",") if c.strip()]
    return columns or None


@register_modality("text")
def inspect_text_dataset(
    dataset: Dataset, *, text_column=None, label_column: Optional[str] = None, missing_labels: bool = False, **_
) -> DataInfo:
    """Find the text column(s) (named, else every string column, joined in order) and the label column, and check
    that every row has some text."""
    if len(dataset) == 0:
        raise SVPConfigError("the dataset is empty: there is nothing to score or select")
    features = dataset.features
    columns = _text_column_list(text_column)
    if columns is None:
        columns = [c for c, f in features.items() if _is_string(f) and c != label_column]
        if not columns:
            raise SVPConfigError(
                f"no text column found (no string column) in {dataset.column_names}; name it with text_column="
            )
    for column in columns:
        _check_column(dataset, column, "text")
        if not _is_string(features[column]):
            raise SVPConfigError(f"column {column!r} is not a text column: its feature is {features[column]}")
    label_column, num_classes, names = find_label_column(dataset, label_column, missing_labels=missing_labels)
    if label_column in columns:
        raise SVPConfigError(f"column {label_column!r} cannot be both the label and a text column")
    if num_classes < 2:
        raise SVPConfigError(f"label column {label_column!r} has {num_classes} class(es); at least 2 are needed")
    _check_has_text(dataset, columns)
    return DataInfo("text", columns, label_column, num_classes, names)


def _check_has_text(dataset: Dataset, columns: List[str]) -> None:
    """Every row must have non-whitespace text in at least one of `columns` (checked in Arrow, without Python loops)."""
    table = dataset.with_format("arrow")  # the rows this (possibly selected) view shows, as Arrow arrays
    has_text = None
    for column in columns:
        present = pc.fill_null(pc.greater(pc.utf8_length(pc.utf8_trim_whitespace(table[column])), 0), False)
        has_text = present if has_text is None else pc.or_(has_text, present)
    empty = np.flatnonzero(~np.asarray(has_text.to_numpy(zero_copy_only=False), dtype=bool))
    if len(empty):
        where = " + ".join(repr(c) for c in columns)
        raise SVPConfigError(
            f"text column {where} is empty or only whitespace in {len(empty)} row(s) (e.g. row {int(empty[0])}); "
            "drop those rows or name other text columns with text_column="
        )


def join_text(batch: Dict[str, list], columns: Sequence[str], sep: str = " ") -> List[str]:
    """The text of each row of a batch: its non-empty `columns`, stripped and joined with `sep`."""
    parts = zip(*(batch[c] for c in columns))
    return [sep.join(p.strip() for p in row if p and p.strip()) for row in parts]


# Rows from which tokenising is spread over processes: below, starting them costs more than they save.
PARALLEL_MAP_MIN_ROWS = 50_000


def map_processes(n_rows: int) -> Optional[int]:
    """Processes for tokenising `n_rows` rows with ``datasets.map``: the loader workers this machine would give the
    job (:func:`svp_hf.utils.device.auto_num_workers`) plus this process, and at least 25,000 rows each; ``None`` (this
    process alone) for fewer than :data:`PARALLEL_MAP_MIN_ROWS` rows."""
    if n_rows < PARALLEL_MAP_MIN_ROWS:
        return None
    processes = min(auto_num_workers() + 1, n_rows // (PARALLEL_MAP_MIN_ROWS // 2))
    return processes if processes > 1 else None


def text_dataset(
    dataset: Dataset, info: DataInfo, encode: Callable[[List[str]], Dict[str, list]], desc: str
) -> Dataset:
    """`dataset` encoded once with ``datasets.map(batched=True)`` (cached for file-backed data; spread over
    :func:`map_processes` processes for large datasets): `encode` maps a list of texts to model inputs; the result has
    those inputs, ``labels`` and `svp_index`."""
    label = info.label_column
    columns = list(info.input_columns)

    def _encode(batch):
        out = dict(encode(join_text(batch, columns)))
        out["labels"] = batch[label]
        return out

    dataset = add_index(dataset)
    # Tokenising a large dataset takes a while: its bar stays, unless svp_hf's bars are off.
    large = len(dataset) >= PARALLEL_MAP_MIN_ROWS and not are_progress_bars_disabled()
    with contextlib.nullcontext() if large else quiet_datasets():
        return dataset.map(
            _encode,
            batched=True,
            remove_columns=[c for c in dataset.column_names if c != INDEX_COLUMN],
            desc=desc,
            num_proc=map_processes(len(dataset)),
        )
