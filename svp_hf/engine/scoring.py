"""Scoring stage: run a trained proxy over a dataset once and compute every requested method's per-example score.

The dataset is scored shard by shard (`shard_size` consecutive rows): a map-style or memory-mapped ``Dataset`` is
sliced, a streaming ``IterableDataset`` is read one shard at a time, so neither the whole dataset nor all its logits
are ever in memory. Within a shard, the batches are split across processes and every example's scores are gathered
by `svp_index` (``gather_for_metrics`` drops the padding of the last uneven batch), so each example is scored exactly
once whatever the process count. Logit-based scorers keep one float per example and method; embeddings are kept only
for k-centers, and only for its candidate set. With a `shard_dir`, every finished shard is saved there and a rerun
skips it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from itertools import islice
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from accelerate import Accelerator
from datasets import Dataset, Image, IterableDataset

from ..config.checks import parse_size
from ..data.columns import INDEX_COLUMN, DataInfo, add_index, column_values, keep_previous_columns
from ..data.images import batch_collate, on_device, row_slicer
from ..errors import SVPConfigError
from ..selection.methods import SelectionMethod
from ..selection.signals import TrainingSignal
from ..utils.device import resolve_num_workers, resolve_pin_memory, to_device
from ..utils.log import get_logger
from ..utils.progress import progress_bar, quiet_datasets
from .checkpoint import ShardStore, on_main

logger = get_logger(__name__)

DEFAULT_STREAM_SHARD_SIZE = 10000
# Bytes per candidate row that k-centers needs besides the embedding itself: running distance, flags and its result.
_KCENTER_ROW_OVERHEAD = 4 + 1 + 8 + 8 + 8


@dataclass
class ScoreResult:
    """Scores in `svp_index` order (``0..n-1``), with each example's label."""

    scores: Dict[str, np.ndarray]
    labels: np.ndarray


# k-centers on fewer candidates than this (or than the dataset's rows, when fewer) is mostly random selection.
KCENTER_MIN_CANDIDATES = 1000


def kcenter_row_bytes(dim: int) -> int:
    """Bytes k-centers holds per candidate row of a `dim`-d embedding."""
    return 4 * int(dim) + _KCENTER_ROW_OVERHEAD


def check_kcenter_memory(max_memory: Union[int, str, None]) -> None:
    """A clear error, before any training, for a `kcenter_max_memory` too small to hold :data:`KCENTER_MIN_CANDIDATES`
    candidates even of 1-d embeddings: k-centers would be random selection in disguise."""
    if max_memory is None:
        return
    minimum = KCENTER_MIN_CANDIDATES * kcenter_row_bytes(1)
    if parse_size(max_memory, "kcenter_max_memory") < minimum:
        raise SVPConfigError(
            f"kcenter_max_memory={max_memory!r} cannot hold a useful k-centers candidate set of {KCENTER_MIN_CANDIDATES} rows: "
            f"that needs at least {minimum} bytes even for 1-d embeddings (a D-d embedding takes 4*D+"
            f"{_KCENTER_ROW_OVERHEAD} bytes per candidate); raise it (e.g. '1GB') or leave it unset"
        )


def kcenter_candidate_rows(
    dim: int, candidates: Optional[int], max_memory: Union[int, str, None], n_rows: Optional[int] = None
) -> Optional[int]:
    """How many candidates k-centers may hold: `candidates`, capped by what fits in `max_memory` (``"2GB"``, bytes).

    When `max_memory` caps the candidate set below :data:`KCENTER_MIN_CANDIDATES` rows (or below `n_rows`, the dataset's rows, when
    fewer), a warning says that k-centers is then close to random and names the memory a useful candidate set needs."""
    limits = [] if candidates is None else [int(candidates)]
    if max_memory is not None:
        rows = parse_size(max_memory, "kcenter_max_memory") // kcenter_row_bytes(dim)
        if rows < 1:
            raise SVPConfigError(f"kcenter_max_memory={max_memory!r} cannot hold a single {dim}-d embedding")
        wanted = KCENTER_MIN_CANDIDATES if n_rows is None else min(KCENTER_MIN_CANDIDATES, int(n_rows))
        if rows < wanted:
            warnings.warn(
                f"kcenter_max_memory={max_memory!r} holds only {rows} k-centers candidate(s) of {dim}-d embeddings "
                f"({kcenter_row_bytes(dim)} bytes each); every other row scores -inf and is kept in random order, so "
                f"k-centers is close to random selection. A candidate set of {wanted} rows needs kcenter_max_memory >= "
                f"{wanted * kcenter_row_bytes(dim)} bytes",
                UserWarning,
                stacklevel=2,
            )
        limits.append(int(rows))
    return min(limits) if limits else None


def iter_shards(dataset, shard_size: int, skip: int = 0) -> Iterator[Tuple[int, Dataset]]:
    """``(shard number, shard)`` from shard `skip` on; a streaming dataset is read one shard at a time."""
    if isinstance(dataset, IterableDataset):
        # Keep images encoded while a shard's rows are buffered: they are decoded batch by batch, as in a Dataset.
        images = [c for c, f in (dataset.features or {}).items() if isinstance(f, Image) and f.decode]
        stream = dataset
        with quiet_datasets():
            for column in images:
                stream = stream.cast_column(column, Image(decode=False))
            rows = iter(stream.skip(skip * shard_size) if skip else stream)
        shard = skip
        while True:
            chunk = list(islice(rows, shard_size))  # the user's stream: its own bars, if any, are left alone
            if not chunk:
                return
            with quiet_datasets():  # not around the yield: the caller's own datasets calls keep their bars
                ds = Dataset.from_list(chunk, features=stream.features)
                for column in images:
                    ds = ds.cast_column(column, Image())
                start = shard * shard_size
                ds = keep_previous_columns(ds)  # a stream's own svp_index is data, never row ids
                ds = ds.add_column(INDEX_COLUMN, np.arange(start, start + len(ds), dtype=np.int64))
            yield shard, ds
            shard += 1
    else:
        dataset = add_index(dataset)
        if skip == 0 and shard_size >= len(dataset):
            yield 0, dataset  # one shard: the dataset itself (no new Arrow view to build)
            return
        for shard in range(skip, math.ceil(len(dataset) / shard_size)):
            with quiet_datasets():
                rows = dataset.select(range(shard * shard_size, min(len(dataset), (shard + 1) * shard_size)))
            yield shard, rows


def _candidate_keys(seed: int, shard: int, n: int) -> np.ndarray:
    """Uniform keys of a shard's rows: the k-centers candidate set is the rows with the smallest keys (a seeded uniform sample
    that does not depend on the process count or on knowing the dataset's length in advance)."""
    return np.random.default_rng([seed, shard]).random(n)


class _Candidates:
    """The k-center candidates seen so far: every row, or the `capacity` rows with the smallest keys.

    Shards are appended and compacted only once twice the capacity has piled up, so building it costs O(n)."""

    def __init__(self, capacity: Optional[int]):
        self.capacity = capacity
        self.parts: List[Tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.size = 0
        self.cutoff = math.inf  # no row with a larger key can join the candidate set any more

    def add(self, index: np.ndarray, keys: np.ndarray, embeddings: np.ndarray) -> None:
        self.parts.append((index, keys, embeddings.astype(np.float32, copy=False)))
        self.size += len(index)
        if self.capacity is not None and self.size >= 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        index, keys, embeddings = (np.concatenate(column) for column in zip(*self.parts))
        if self.capacity is not None and len(index) >= self.capacity:
            keep = np.sort(np.argsort(keys, kind="stable")[: self.capacity])  # in svp_index order
            index, keys, embeddings = index[keep], keys[keep], embeddings[keep]
            self.cutoff = float(keys.max())
        self.parts, self.size = [(index, keys, embeddings)], len(index)

    def final(self) -> Tuple[np.ndarray, np.ndarray]:
        """The candidate set's svp_index values and embeddings."""
        if not self.parts:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        self._compact()
        return self.parts[0][0], self.parts[0][2]


# Batches are dealt to the processes in groups of this many consecutive batches (batch_plan).
GROUP_BATCHES = 8
# Where cutting batches out of the arrays makes views (packed fastText text, decode-once images held in memory), a
# process cuts those of this many of its groups in one go, ahead of their forward passes: every numpy or torch call
# made between two forward passes costs several times what it costs in a row (the forward leaves the caches cold),
# which for a model as cheap as fastText was 5% of scoring (measured: 0.92 -> 0.95 of the raw forward).
CUT_GROUPS = 8
# A process turns its logits into scores once it holds this many of them (rows x classes: 4 MB of float32, e.g.
# 524,288 rows of 2 classes, 1,048 of 1,000), and at the end: softmax and the scorers are row-wise, so a row's scores
# do not depend on which rows share the call, but each call costs a fixed few microseconds, and more between two
# forward passes, which counts against models as cheap as fastText.
SCORE_LOGITS = 1 << 20


def batch_plan(
    n: int, batch_size: int, process_index: int = 0, num_processes: int = 1, group: int = GROUP_BATCHES
) -> List[List[Tuple[int, int]]]:
    """The groups of ``(start, stop)`` batches one process scores: consecutive rows in batches of `batch_size`,
    `group` consecutive batches to a group, the groups dealt round-robin to the processes (group ``k`` to process
    ``k % num_processes``), as Accelerate shards an ordered loader. A batch's rows and a group's batches are the same
    for every process count, and so are the scores computed on them.

    Every process scores the same number of batches (the collectives need as many rows from each): a process short
    of some gets a last group of empty ``(n, n)`` batches, which are scored as padding and dropped."""
    starts = list(range(0, n, batch_size))
    groups = [[(s, min(n, s + batch_size)) for s in starts[g : g + group]] for g in range(0, len(starts), group)]
    shares = [groups[p::num_processes] for p in range(num_processes)]
    most = max(max(sum(len(g) for g in share) for share in shares), 1)
    mine = shares[process_index]
    missing = most - sum(len(g) for g in mine)
    return mine + ([[(n, n)] * missing] if missing else [])


def _padded_rows(start: int, stop: int, batch_size: int, n: int) -> List[int]:
    """The rows of batch ``[start, stop)`` with its last row (the dataset's last row for an empty batch) repeated up
    to `batch_size` rows: every forward pass sees a full batch, as with any process count, so an example's scores
    never depend on the kernels chosen for a smaller batch."""
    rows = list(range(start, stop)) or [n - 1]
    return rows + [rows[-1]] * (batch_size - len(rows))


class ScoringGroup:
    """One group of :func:`batch_plan` as scoring reads it: iterating it gives its batches (each on the device,
    `batch_size` rows: the model's inputs, and for data batched through a loader the rows' labels and ids too);
    once they have been iterated, :meth:`rows` gives the labels and ``svp_index`` of all its rows in order,
    ``svp_index`` -1 on rows that are only padding (:func:`_padded_rows`)."""

    def __init__(self, batches: Iterable[Dict[str, torch.Tensor]], reals: Sequence[int], rows=None):
        self._batches, self._reals, self._rows = batches, reals, rows
        self._seen: List[Tuple[torch.Tensor, torch.Tensor]] = []
        self.size = len(reals)  # batches

    def __iter__(self) -> Iterator[Dict[str, torch.Tensor]]:
        if self._rows is not None:
            return iter(self._batches)
        return self._recording()

    def _recording(self):
        for batch, real in zip(self._batches, self._reals):
            self._seen.append((batch["labels"], _marked(batch[INDEX_COLUMN], real)))
            yield batch

    def rows(self) -> Tuple[torch.Tensor, torch.Tensor]:
        if self._rows is not None:
            return self._rows
        labels, index = zip(*self._seen)
        return torch.cat(labels), torch.cat(index)


def _marked(index: torch.Tensor, real: int) -> torch.Tensor:
    """A batch's `svp_index` with -1 on its rows past the first `real` (padding)."""
    if real < len(index):
        index = index.clone()
        index[real:] = -1
    return index


def _cut(eval_ds, collate, groups: List[List[Tuple[int, int]]], batch_size: int, n: int) -> List[Tuple[list, tuple]]:
    """Each of `groups` as ``(batches, (labels, svp_index))`` from a dataset held in arrays: its full batches' inputs
    cut out of the arrays with one ``slices`` call per run of consecutive rows (one call for all of a single process's
    groups, which follow each other) and their labels and ids as one slice of the arrays; the short or padding batches
    (only at the dataset's end) collated."""
    # A group's full batches are consecutive rows and come first; only the dataset's last batch, or padding, is short.
    full = [[(start, stop) for start, stop in group if stop - start == batch_size] for group in groups]
    spans: List[List[int]] = []  # [start, stop) of each run of consecutive full batches
    for start, stop in (batch for group in full for batch in group):
        if spans and spans[-1][1] == start:
            spans[-1][1] = stop
        else:
            spans.append([start, stop])
    cut = [batch for start, stop in spans for batch in eval_ds.slices(start, stop, batch_size, inputs_only=True)]
    out, taken = [], 0
    for group, mine in zip(groups, full):
        short = [
            (collate(_padded_rows(start, stop, batch_size, n)), stop - start) for start, stop in group[len(mine) :]
        ]
        labels, index = [], []
        if mine:
            first, last = mine[0][0], mine[-1][1]
            labels.append(torch.from_numpy(eval_ds.labels[first:last]))
            index.append(torch.from_numpy(eval_ds.index[first:last]))
        for batch, real in short:
            labels.append(batch["labels"])
            index.append(_marked(batch[INDEX_COLUMN], real))
        rows = (labels[0], index[0]) if len(labels) == 1 else (torch.cat(labels), torch.cat(index))
        out.append((cut[taken : taken + len(mine)] + [batch for batch, _ in short], rows))
        taken += len(mine)
    return out


def scoring_groups(
    eval_ds,
    collate,
    batch_size: int,
    groups: List[List[Tuple[int, int]]],
    accelerator,
    *,
    num_workers: Optional[int] = None,
    pin_memory: bool = False,
) -> Iterator[ScoringGroup]:
    """This process's `groups` of :func:`batch_plan`, one :class:`ScoringGroup` at a time, every batch `batch_size`
    rows (padded as :func:`_padded_rows` says).

    A dataset held in arrays (decode-once images, packed text: :func:`svp_hf.data.images.row_slicer`) is batched right here,
    the full batches of several groups cut out of its arrays in one go (:data:`CUT_GROUPS`, where the cuts are views;
    one group otherwise) and their labels and ids taken a group at a time, with no loader in between; any other goes
    through a ``DataLoader`` (with `num_workers` processes decoding and collating its rows)."""
    n = len(eval_ds)
    device, non_blocking = accelerator.device, bool(pin_memory) and accelerator.device.type == "cuda"
    if row_slicer(eval_ds) is not None:
        ahead = CUT_GROUPS if getattr(eval_ds, "slices_are_views", False) else 1
        for first in range(0, len(groups), ahead):
            chunk = groups[first : first + ahead]
            for group, (batches, rows) in zip(chunk, _cut(eval_ds, collate, chunk, batch_size, n)):
                lazily = batches if device.type == "cpu" else (to_device(b, device, non_blocking) for b in batches)
                yield ScoringGroup(
                    lazily, [stop - start for start, stop in group], rows=to_device(rows, device, non_blocking)
                )
        return
    loader = torch.utils.data.DataLoader(
        eval_ds,
        batch_sampler=[_padded_rows(start, stop, batch_size, n) for group in groups for start, stop in group],
        collate_fn=collate,
        num_workers=resolve_num_workers(eval_ds, num_workers, accelerator.num_processes),
        pin_memory=non_blocking,
    )
    batches = iter(loader)
    for group in groups:
        yield ScoringGroup(
            (to_device(next(batches), device, non_blocking) for _ in group), [stop - start for start, stop in group]
        )


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the classes of a block of logits, in float32. With few classes, the softmax runs down the columns
    of the transposed block (vectorised across rows: several times faster than along rows of 2 or 10 values).

    It is computed in float64 and rounded to float32: how many rows share a block (and how the CPU threads split
    them) changes which values take a vectorised or a scalar path of ``exp``, whose results may differ in the last
    float32 bit; the float64 results round to the same float32 value, so a row's probabilities do not depend on the
    rows scored with it."""
    logits = logits.double()
    if logits.shape[-1] < 64:
        return torch.softmax(logits.T, dim=0).T.float()
    return torch.softmax(logits, dim=-1).float()


@torch.inference_mode()
def _score_shard(
    model,
    family,
    shard: Dataset,
    info: DataInfo,
    batch_methods,
    need_embeddings,
    accelerator,
    batch_size,
    num_workers,
    desc,
    progress=True,
):
    """Scores (and embeddings) of one shard's rows, in row order, on every process.

    Nothing is copied to the host and nothing is gathered inside the loop: each process keeps its batches' results on
    the device, scores a group of batches (:func:`batch_plan`) at a time, and the shard's results are gathered across
    processes once, at the end (rows that are only padding carry ``svp_index`` -1 and are dropped there)."""
    start, n = int(column_values(shard, INDEX_COLUMN)[0]), len(shard)
    eval_ds = family.dataset(shard, model, info, train=False)
    collate = batch_collate(eval_ds, family.make_collate(model))
    pin_memory = resolve_pin_memory(accelerator.device, None)
    index_parts, label_parts, score_parts, embedding_parts = [], [], [], []
    # Autocast only under mixed precision: entering even a disabled autocast costs as much as a cheap model's batch.
    autocast = accelerator.autocast if accelerator.mixed_precision != "no" else contextlib.nullcontext
    plan = batch_plan(n, batch_size, accelerator.process_index, accelerator.num_processes)
    groups = scoring_groups(
        eval_ds, collate, batch_size, plan, accelerator, num_workers=num_workers, pin_memory=pin_memory
    )
    # A bar only on a terminal: writing one into a log costs more than scoring a fastText batch.
    bar = progress_bar(
        total=sum(len(g) for g in plan),
        desc=desc,
        leave=False,
        main_process=accelerator.is_local_main_process,
        enabled=progress,
    )
    logits_part, index_part, labels_part = [], [], []  # batches not scored yet

    def score_part():
        probs, labels = probabilities(torch.cat(logits_part)), torch.cat(labels_part)
        scored = [m.scorer(probs, labels) for m in batch_methods]
        # In the scorers' dtype: widened to float64 once, on the host, at the end (exact, so the same values).
        score_parts.append(torch.stack(scored, dim=1) if scored else probs.new_zeros((len(probs), 0)))
        index_parts.append(torch.cat(index_part))
        label_parts.append(labels)
        for part in (logits_part, index_part, labels_part):
            part.clear()

    held = 0  # logits held, not scored yet
    for group in groups:
        with autocast():
            for batch in group:
                batch = on_device(eval_ds, batch)
                if need_embeddings:
                    logits, embeddings = family.logits_and_embeddings(model, batch)
                    embedding_parts.append(embeddings.float())
                else:
                    logits = family.logits(model, batch)
                logits_part.append(logits)
                held += logits.numel()
        labels, index = group.rows()
        labels_part.append(labels)
        index_part.append(index)
        bar.update(group.size)
        if held >= SCORE_LOGITS:
            score_part()
            held = 0
    if logits_part:
        score_part()
    bar.close()
    payload = (torch.cat(index_parts), torch.cat(label_parts), torch.cat(score_parts))
    if need_embeddings:
        payload += (torch.cat(embedding_parts),)
    if accelerator.num_processes > 1:  # every process has as many rows (batch_plan): one gather per shard
        payload = accelerator.gather(payload)
    columns = [t.cpu().numpy() for t in payload]
    real_rows = columns[0] >= 0
    if not real_rows.all():
        columns = [c[real_rows] for c in columns]
    rows = columns[0] - start
    if len(rows) == n and np.array_equal(rows, np.arange(n)):  # one process: every row once, in order
        return (
            columns[1],
            np.ascontiguousarray(columns[2].T, dtype=np.float64),
            (columns[3] if need_embeddings else None),
        )
    values = np.full((len(batch_methods), n), np.nan)
    labels = np.zeros(n, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    labels[rows] = columns[1]
    values[:, rows] = columns[2].T
    seen[rows] = True
    embeddings = None
    if need_embeddings:
        embeddings = np.zeros((n, columns[3].shape[1]), dtype=np.float32)
        embeddings[rows] = columns[3]
    if not seen.all() or len(rows) != n:
        raise RuntimeError(f"{int((~seen).sum())} examples were not scored once; this is a bug in svp_hf")
    return labels, values, embeddings


def score_examples(
    model: torch.nn.Module,
    family,
    dataset: Union[Dataset, IterableDataset],
    info: DataInfo,
    methods: List[SelectionMethod],
    accelerator: Accelerator,
    *,
    batch_size: int = 256,
    seed: int = 0,
    signals: Optional[Dict[str, TrainingSignal]] = None,
    kcenter_chunk_size: int = 16384,
    kcenter_pool_size: Optional[int] = None,
    kcenter_max_memory: Union[int, str, None] = None,
    shard_size: Optional[int] = None,
    shard_dir: Optional[str] = None,
    num_workers: Optional[int] = None,
    desc: str = "scoring",
    progress: bool = True,
) -> ScoreResult:
    """Every method's scores and the labels of `dataset` (a ``Dataset`` or a streaming ``IterableDataset``).

    `shard_size` rows are scored at a time (default: the whole of a ``Dataset``, 10,000 rows of a stream); with
    `shard_dir`, finished shards are saved there and skipped when scoring again. Methods that read a training signal
    take it from `signals` (what :func:`~svp_hf.engine.training.train_model` recorded). k-centers runs on a seeded random
    candidate set of at most `kcenter_pool_size` rows, capped by `kcenter_max_memory` (``"4GB"``); rows outside the
    candidate set score ``-inf`` (kept last, in seeded random order). `progress` false draws no progress bars (see
    :mod:`svp_hf.utils.progress` for svp_hf's switch).
    """
    signals = signals or {}
    missing = [m.name for m in methods if m.needs == "training" and m.signal not in signals]
    if missing:
        raise SVPConfigError(f"method(s) {missing} need the proxy's training history, which this proxy does not have")
    streaming = isinstance(dataset, IterableDataset)
    n_known = None if streaming else len(dataset)
    if shard_size is None:
        shard_size = DEFAULT_STREAM_SHARD_SIZE if streaming else max(1, len(dataset))
    batch_methods = [m for m in methods if m.needs == "logits"]
    need_embeddings = any(m.needs == "embeddings" for m in methods)
    model = model.to(accelerator.device).eval()

    store = ShardStore(shard_dir)
    finished = on_main(accelerator, store.finished)
    skip = 0
    while skip in finished:
        skip += 1
    parts: List[Dict[str, np.ndarray]] = []
    candidates: Optional[_Candidates] = None

    def collect(part: Dict[str, np.ndarray]) -> None:
        nonlocal candidates
        if "embeddings" in part:
            if candidates is None:
                candidates = _Candidates(
                    kcenter_candidate_rows(part["embeddings"].shape[1], kcenter_pool_size, kcenter_max_memory, n_known)
                )
            candidates.add(part["pool_index"], part["pool_keys"], part["embeddings"])
        parts.append({k: v for k, v in part.items() if k not in ("embeddings", "pool_index", "pool_keys")})

    for shard in range(skip):
        collect(ShardStore.read(finished[shard]))
    if skip:
        logger.info(
            f"{desc}: {skip} finished shard(s) found in {shard_dir}, resuming after them", main_process_only=True
        )
    for shard, rows in iter_shards(dataset, shard_size, skip):
        labels, values, embeddings = _score_shard(
            model,
            family,
            rows,
            info,
            batch_methods,
            need_embeddings,
            accelerator,
            batch_size,
            num_workers,
            f"{desc} shard {shard}",
            progress,
        )
        start = shard * shard_size
        part = {INDEX_COLUMN: np.arange(start, start + len(labels), dtype=np.int64), "labels": labels}
        part.update({m.name: values[i] for i, m in enumerate(batch_methods)})
        if embeddings is not None:
            if candidates is None:
                candidates = _Candidates(
                    kcenter_candidate_rows(embeddings.shape[1], kcenter_pool_size, kcenter_max_memory, n_known)
                )
            keys = _candidate_keys(seed, shard, len(labels))
            candidate = keys < candidates.cutoff
            part.update(
                pool_index=part[INDEX_COLUMN][candidate], pool_keys=keys[candidate], embeddings=embeddings[candidate]
            )
        if accelerator.is_main_process:
            store.write(shard, part)
        collect(part)
    accelerator.wait_for_everyone()

    n = sum(len(p["labels"]) for p in parts)
    labels = np.concatenate([p["labels"] for p in parts]) if parts else np.zeros(0, dtype=np.int64)
    scores: Dict[str, np.ndarray] = {m.name: np.concatenate([p[m.name] for p in parts]) for m in batch_methods}
    for method in methods:
        if method.needs == "embeddings":
            values = np.full(n, -np.inf)
            pool_index, pool_embeddings = (
                candidates.final() if candidates is not None else (np.zeros(0, dtype=np.int64), None)
            )
            if len(pool_index):
                values[pool_index] = method.scorer(pool_embeddings, seed=seed, chunk_size=kcenter_chunk_size)
            scores[method.name] = values
        elif method.needs == "training":
            scores[method.name] = method.scorer(signals[method.signal])
        elif method.needs == "none":
            scores[method.name] = method.scorer(n, seed=seed)
    return ScoreResult({m.name: scores[m.name] for m in methods}, labels)


def _by_position(dataset: Dataset) -> Dataset:
    """`dataset` with `svp_index` set to each row's position (a subset's own ids are dropped, not rewritten)."""
    if INDEX_COLUMN in dataset.column_names:
        if np.array_equal(column_values(dataset, INDEX_COLUMN), np.arange(len(dataset))):
            return dataset  # already by position
        with quiet_datasets():
            dataset = dataset.remove_columns(INDEX_COLUMN)
    return add_index(dataset)


def compute_scores(
    model: torch.nn.Module,
    family,
    dataset: Dataset,
    info: DataInfo,
    methods: List[SelectionMethod],
    accelerator: Accelerator,
    **kwargs,
) -> Dict[str, np.ndarray]:
    """One score array per method, in the order of `dataset`'s rows (any `svp_index` ids it carries, e.g. a subset's
    pool indices, are ignored); keyword arguments as :func:`score_examples`."""
    return score_examples(model, family, _by_position(dataset), info, methods, accelerator, **kwargs).scores


def stream_outputs(
    model: torch.nn.Module,
    family,
    dataset: Dataset,
    info: DataInfo,
    accelerator: Accelerator,
    batch_methods: List[SelectionMethod],
    *,
    need_embeddings: bool = False,
    batch_size: int = 256,
    num_workers: Optional[int] = None,
    desc: str = "scoring",
    progress: bool = True,
) -> Tuple[Dict[str, np.ndarray], Optional[np.ndarray]]:
    """One pass of `model` over `dataset`: the scores of the per-batch `batch_methods` and, if asked, the penultimate
    embeddings, both in the order of `dataset`'s rows (e.g. for active learning's batch acquisitions)."""
    model = model.to(accelerator.device).eval()
    _, values, embeddings = _score_shard(
        model,
        family,
        _by_position(dataset),
        info,
        batch_methods,
        need_embeddings,
        accelerator,
        batch_size,
        num_workers,
        desc,
        progress,
    )
    return {m.name: values[i] for i, m in enumerate(batch_methods)}, embeddings


__all__ = [
    "check_kcenter_memory",
    "KCENTER_MIN_CANDIDATES",
    "compute_scores",
    "stream_outputs",
    "score_examples",
    "ScoreResult",
    "iter_shards",
    "kcenter_candidate_rows",
]
