"""Pre-tokenised text packed into flat arrays: every row's token ids end to end in one array with row offsets, so a
batch is one gather and a pad, with no per-row Python work.

Two layouts, one per kind of text model:

- ``bags``: the batch's ids end to end with each row's start (``input_ids``, ``offsets``), as ``nn.EmbeddingBag``
  reads them (fastText);
- ``padded``: one row per example, padded to the batch's longest row with each column's pad value (on the side the
  tokenizer pads), as ``DataCollatorWithPadding`` builds them (transformers).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .._compat import dataset_fingerprint
from .columns import INDEX_COLUMN


def _flat(column: pa.ChunkedArray, dtype=np.int64):
    """The values of a list column end to end (as `dtype`), and each row's start and length."""
    values, lengths = [], []
    for chunk in column.chunks:
        values.append(np.asarray(chunk.flatten().to_numpy(zero_copy_only=False), dtype=dtype))
        lengths.append(
            np.asarray(pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        )
    flat = np.concatenate(values) if values else np.zeros(0, dtype=dtype)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, starts, lengths


class PackedText(torch.utils.data.Dataset):
    """A tokenised dataset's id columns as flat arrays. A DataLoader fetches a batch's row numbers
    (``__getitems__``) and :meth:`collate` gathers them in one go; ``dataset[i]`` is still the row itself.

    `dtype` is the ids' integer type in the arrays and the batches (and the bag offsets' too): ``int32`` halves the
    memory and the bytes a batch moves, for models that read such ids (``nn.EmbeddingBag`` does)."""

    def __init__(
        self,
        dataset,
        columns: Sequence[str],
        layout: str,
        pad_values: Dict[str, int] = None,
        padding_side: str = "right",
        dtype=np.int64,
    ):
        if layout not in ("bags", "padded"):
            raise ValueError(f"unknown layout {layout!r}")
        table = dataset.with_format("arrow")[:]  # the rows this (possibly selected) view shows
        self.columns = list(columns)
        self.layout, self.padding_side = layout, padding_side
        self.pad_values = dict(pad_values or {})
        self.dtype = np.dtype(dtype)
        self.flat: Dict[str, np.ndarray] = {}
        self.starts = self.lengths = None
        for column in self.columns:
            flat, starts, lengths = _flat(table[column], self.dtype)
            self.flat[column] = flat
            if self.starts is None:
                self.starts, self.lengths = starts, lengths
        self.ends = self.starts + self.lengths
        self._steps = np.arange(0, dtype=np.int64)
        # Writable copies: batches slice these arrays without copying, and torch only wraps writable arrays.
        self.labels = np.array(pc.fill_null(table["labels"], 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        self.index = np.array(table[INDEX_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, rows: Sequence[int]) -> list:
        """What a DataLoader fetches for a batch: the row numbers themselves (:meth:`collate` gathers them)."""
        return list(rows)

    def __getitem__(self, row: int) -> dict:
        """One row as the tokenised dataset holds it (ids as lists), for code that reads rows one by one."""
        start, length = int(self.starts[row]), int(self.lengths[row])
        out = {column: self.flat[column][start : start + length].tolist() for column in self.columns}
        out.update({"labels": int(self.labels[row]), INDEX_COLUMN: int(self.index[row])})
        return out

    def _gather_positions(self, rows: np.ndarray):
        """Where the ids of `rows` sit in the flat arrays, end to end, and each row's length."""
        lengths = self.lengths[rows]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        if len(self._steps) < total:  # 0, 1, 2, ...: kept, so that a batch allocates no ramp of its own
            self._steps = np.arange(max(total, 2 * len(self._steps)), dtype=np.int64)
        positions = np.repeat(self.starts[rows] - (ends - lengths), lengths)
        positions += self._steps[:total]
        return positions, lengths

    @property
    def slices_are_views(self) -> bool:
        """Whether :meth:`slices` returns views of the arrays (bags) rather than padded copies."""
        return self.layout == "bags"

    def slices(
        self, start: int, stop: int, batch_size: int, inputs_only: bool = False
    ) -> List[Dict[str, torch.Tensor]]:
        """Rows ``start..stop-1`` in consecutive batches of `batch_size` rows (the last may be shorter), each as
        :meth:`collate` batches it (with `inputs_only`, bags carry the model's inputs alone: the rows' labels and ids
        are :attr:`labels` and :attr:`index`). Bags are cut out of the flat arrays as views (no gather, a few calls
        for all)."""
        if self.layout != "bags" or stop <= start:
            return [self.collate(np.arange(s, min(stop, s + batch_size))) for s in range(start, stop, batch_size)]
        starts = self.starts[start:stop]
        cuts = starts[::batch_size]  # where each batch's ids begin
        first, last = cuts[0], self.ends[stop - 1]
        offsets = (starts - np.repeat(cuts, batch_size)[: len(starts)]).astype(self.dtype)
        # tensor_split: one C++ call per column for all the batches (views)
        pieces = [
            torch.from_numpy(self.flat[c][first:last]).tensor_split((cuts[1:] - first).tolist()) for c in self.columns
        ]
        bounds = list(range(batch_size, len(starts), batch_size))
        per_row = {"offsets": offsets}
        if not inputs_only:
            per_row.update({"labels": self.labels[start:stop], INDEX_COLUMN: self.index[start:stop]})
        rows = [torch.from_numpy(a).tensor_split(bounds) for a in per_row.values()]
        keys = [*self.columns, *per_row]
        return [dict(zip(keys, batch)) for batch in zip(*pieces, *rows)]

    def collate(self, rows: Sequence[int]) -> Dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        positions, lengths = self._gather_positions(rows)
        batch: Dict[str, torch.Tensor] = {}
        if self.layout == "bags":
            offsets = np.zeros(len(rows), dtype=self.dtype)
            np.cumsum(lengths[:-1], out=offsets[1:])
            for column in self.columns:
                batch[column] = torch.from_numpy(np.take(self.flat[column], positions))
            batch["offsets"] = torch.from_numpy(offsets)
        else:
            width = int(lengths.max()) if len(lengths) else 0
            steps = np.arange(width)
            if self.padding_side == "left":
                mask = steps[None, :] >= (width - lengths)[:, None]
            else:
                mask = steps[None, :] < lengths[:, None]
            for column in self.columns:
                out = np.full((len(rows), width), self.pad_values.get(column, 0), dtype=self.dtype)
                out[mask] = self.flat[column][positions]
                batch[column] = torch.from_numpy(out)
        batch["labels"] = torch.from_numpy(self.labels[rows])
        batch[INDEX_COLUMN] = torch.from_numpy(self.index[rows])
        return batch


_MEMO: Dict[tuple, PackedText] = {}
_MEMO_LIMIT = 4


def packed_text(dataset, key: tuple, build) -> PackedText:
    """The packed form of `dataset` for one tokenisation (`key`: the tokenizer's settings), built with `build()` once
    per dataset fingerprint in this process: training, evaluation and repeated scoring of the same dataset reuse it
    (and ``datasets.map`` caches the tokenisation itself on disk for file-backed data)."""
    fingerprint = dataset_fingerprint(dataset)
    if fingerprint is None:
        return build()
    full_key = (fingerprint,) + tuple(key)
    if full_key not in _MEMO:
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.pop(next(iter(_MEMO)))
        _MEMO[full_key] = build()
    return _MEMO[full_key]


def clear() -> None:
    _MEMO.clear()


__all__ = ["PackedText", "packed_text", "clear"]
