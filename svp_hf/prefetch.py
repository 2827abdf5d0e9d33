"""Building the next batch while the current one trains: a loader iterated one item ahead in a background thread.

For data held in arrays (packed text, decode-once images) a batch is a gather in the main process, with no loader
workers (handing a gathered batch over from a worker process costs more than the gather). The gather's numpy and
torch calls release the GIL, and so do the step's kernels, so one thread can gather batch ``k + 1`` while the main
thread runs step ``k``: the batch's cost leaves the step's critical path. It is used only where a CPU is free for it
(see :func:`use_prefetch`).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, TypeVar

import torch

from .device import available_cpus, holds_arrays

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
    """Whether a training loop over the model-ready `dataset` batches in a background thread (:func:`prefetch`).

    Only when svp_hf sizes the loader itself (`num_workers`, the ``dataloader_num_workers`` setting, left unset: an
    explicit ``0`` keeps everything in the main thread) for data held in arrays, in a single process (Accelerate's
    loader of several processes looks one batch ahead itself to gather the last uneven batch, which a thread ahead of
    it would confuse), on an accelerator (whose host threads are idle while it computes) or on a CPU with a core left
    over by torch's own threads."""
    if num_workers is not None or num_processes > 1 or not holds_arrays(dataset):
        return False
    return torch.device(device).type != "cpu" or torch.get_num_threads() < available_cpus()


__all__ = ["prefetch", "use_prefetch"]
