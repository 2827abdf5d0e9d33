"""Pre-tokenised text packed into flat arrays: every row's token ids end to end in one array with row offsets, so a
batch is one gather and a pad, with no per-row Python work.

Two layouts, one per kind of text model:

- ``bags``: the batch's ids end to end with each row's start (``input_ids``, ``offsets``), as ``nn.EmbeddingBag``
  reads them (fastText);
- ``padded``: one row per example, padded to the batch's longest row with each column's pad value (on the side the
  tokenizer pads), as ``DataCollatorWithPadding`` builds them (transformers).
"""

from __future__ import annotations

from typing import Dict, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from .data import INDEX_COLUMN


def _flat(column: pa.ChunkedArray):
    """The values of a list column end to end, and each row's start and length."""
    values, lengths = [], []
    for chunk in column.chunks:
        values.append(np.asarray(chunk.flatten().to_numpy(zero_copy_only=False), dtype=np.int64))
        lengths.append(np.asarray(pc.fill_null(pc.list_value_length(chunk), 0).to_numpy(zero_copy_only=False), dtype=np.int64))
    flat = np.concatenate(values) if values else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return flat, starts, lengths


class PackedText(torch.utils.data.Dataset):
    """A tokenised dataset's id columns as flat arrays (an item is its row number; :meth:`collate` builds a batch)."""

    def __init__(self, dataset, columns: Sequence[str], layout: str, pad_values: Dict[str, int] = None, padding_side: str = "right"):
        if layout not in ("bags", "padded"):
            raise ValueError(f"unknown layout {layout!r}")
        table = dataset.with_format("arrow")[:]  # the rows this (possibly selected) view shows
        self.columns = list(columns)
        self.layout, self.padding_side = layout, padding_side
        self.pad_values = dict(pad_values or {})
        self.flat: Dict[str, np.ndarray] = {}
        self.starts = self.lengths = None
        for column in self.columns:
            flat, starts, lengths = _flat(table[column])
            self.flat[column] = flat
            if self.starts is None:
                self.starts, self.lengths = starts, lengths
        self.labels = np.asarray(pc.fill_null(table["labels"], 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        self.index = np.asarray(table[INDEX_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, row: int) -> int:
        return row

    def _gather_positions(self, rows: np.ndarray):
        lengths = self.lengths[rows]
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        positions = np.arange(total, dtype=np.int64) + np.repeat(self.starts[rows] - (ends - lengths), lengths)
        return positions, lengths

    def collate(self, rows: Sequence[int]) -> Dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        positions, lengths = self._gather_positions(rows)
        batch: Dict[str, torch.Tensor] = {}
        if self.layout == "bags":
            offsets = np.zeros(len(rows), dtype=np.int64)
            np.cumsum(lengths[:-1], out=offsets[1:])
            for column in self.columns:
                batch[column] = torch.from_numpy(self.flat[column][positions])
            batch["offsets"] = torch.from_numpy(offsets)
        else:
            width = int(lengths.max()) if len(lengths) else 0
            steps = np.arange(width)
            if self.padding_side == "left":
                mask = steps[None, :] >= (width - lengths)[:, None]
            else:
                mask = steps[None, :] < lengths[:, None]
            for column in self.columns:
                out = np.full((len(rows), width), self.pad_values.get(column, 0), dtype=np.int64)
                out[mask] = self.flat[column][positions]
                batch[column] = torch.from_numpy(out)
        batch["labels"] = torch.from_numpy(self.labels[rows])
        batch[INDEX_COLUMN] = torch.from_numpy(self.index[rows])
        return batch


__all__ = ["PackedText"]
