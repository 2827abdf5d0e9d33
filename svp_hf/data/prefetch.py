"""Building the next batch while the current one trains: a loader iterated one item ahead in a background thread.

For data held in arrays (packed text, decode-once images) a batch is a gather in the main process, with no loader
workers (handing a gathered batch over from a worker process costs more than the gather). The gather's numpy and
torch calls release the GIL, and so do the step's kernels, so one thread can gather batch ``k + 1`` while the main
thread runs step ``k``: the batch's cost leaves the step's critical path. It is used only where a CPU is free for it
(see :func:`svp_hf.utils.device.prefetches`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, TypeVar

import torch

from ..utils.device import holds_arrays, prefetches

T = TypeVar("T")
_DONE = object()


def prefetch(iterable: Iterable[T]) -> Iterator[T]:
    """The items of `iterable`, in order, each fetched in a background thread while the previous one is used.
    An exception raised while fetching is raised here, at the item it replaced; leaving the loop early waits for the
    one fetch under way and stops."""
    iterator = iter(iterable)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="svp-prefetch") as pool:
        pending = pool.submit(next, iterator, _DONE)
        while True:
            item = pending.result()
            if item is _DONE:
                return
            pending = pool.submit(next, iterator, _DONE)
            yield item


def use_prefetch(dataset, num_workers, device: torch.device, num_processes: int = 1) -> bool:
    """Whether a training loop over the model-ready `dataset` batches in a background thread: for data held in arrays,
    where :func:`svp_hf.utils.device.prefetches` says a thread may run (loader sized by svp_hf, one process, a CPU free)."""
    return holds_arrays(dataset) and prefetches(num_workers, device, num_processes)


__all__ = ["prefetch", "use_prefetch"]
