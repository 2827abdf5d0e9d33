"""Decode-once image cache: every image of a dataset decoded a single time into one compact ``uint8`` array
(rows x height x width x channels), reused by every epoch, by the proxy and target, by scoring and evaluation.

- One decode pass per dataset and process, found again through the Arrow buffers of the image column (so
  ``select``-ed subsets of a decoded dataset, e.g. ``auto``'s candidate subsets, reuse it without decoding).
- For datasets read from files (``load_dataset``), the array is saved next to the dataset's own cache files as a
  ``.npy`` named by the dataset's fingerprint and memory-mapped by later runs: a second run decodes nothing. It is
  written once, by whichever process takes its file lock first, and read by every other process and run (the
  processes of one ``accelerate launch``, or two runs sharing a ``datasets`` cache): see :func:`_write_disk_cache`.
- The array is held in memory up to :data:`MAX_MEMORY` bytes (``image_cache_max_memory``); a larger one is written to
  a memory-mapped file on disk, so datasets larger than memory are read batch by batch from the page cache.
- The decode pass is also the check that every image can be read: a row that cannot be decoded is an
  :class:`~svp_hf.errors.SVPRuntimeError` naming its row(s) and column, raised before anything is trained (or the
  row is dropped, see :func:`drop_undecodable`).

Only images whose size fits :data:`~svp_hf.data.images.SMALL_IMAGE_MAX_SIDE` (CIFAR-sized) are cached; images of another size
than the first are resized to it (bilinear). Larger images keep timm's per-row transforms, and are only checked.
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import Dataset
from filelock import FileLock

from .._compat import dataset_fingerprint, has_indices_mapping, indices_mapping
from ..errors import SVPRuntimeError
from ..files import atomic_path

MAX_MEMORY = 4 << 30  # bytes of decoded images held in memory; larger arrays are memory-mapped from disk
DECODE_BATCH = 1024
# Raster formats PIL decodes itself; EPS and other formats PIL hands to outside programs (Ghostscript) are refused.
IMAGE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA")


def configure(max_memory: Optional[int] = None) -> None:
    """Set the in-memory bound of the cache (bytes); larger decoded datasets are memory-mapped from disk."""
    global MAX_MEMORY
    if max_memory is not None:
        MAX_MEMORY = int(max_memory)


@dataclass
class DecodedImages:
    """A dataset's images as one ``uint8`` array (``pixels``: rows x height x width x channels, in memory or
    memory-mapped) and the rows that could not be decoded (their pixels are zeros)."""

    pixels: np.ndarray
    bad_rows: List[int] = field(default_factory=list)
    memory_mapped: bool = False
    from_disk_cache: bool = False

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)


# In-process memo of decoded tables: each entry maps the Arrow buffers of every chunk of the image column it was
# decoded from to the row where that chunk starts, and keeps the column alive (so its buffers are never reused).
# Any slice, shard or ``select`` of that table (which share its buffers) is then found without decoding again.
@dataclass
class _Entry:
    column: object
    chunk_starts: Dict[tuple, Tuple[int, int, int]]  # buffers -> (array row of offset 0, first, end offset held)
    mode: str
    size: Tuple[int, int]
    decoded: DecodedImages


_MEMO: List[_Entry] = []
_MEMO_LIMIT = 4  # decoded tables kept per process (the newest; e.g. train and test splits, a pruned subset)


def _buffers_key(chunk) -> tuple:
    return tuple(b.address if b is not None else 0 for b in chunk.buffers())


def _chunk_starts(column: pa.ChunkedArray) -> Dict[tuple, Tuple[int, int, int]]:
    """For each chunk's buffers: the array row its offset 0 maps to, and the range of offsets decoded (a slice of a
    chunk shares the whole chunk's buffers but holds only its own rows)."""
    starts, row = {}, 0
    for chunk in column.chunks:
        if len(chunk):
            starts[_buffers_key(chunk)] = (row - chunk.offset, chunk.offset, chunk.offset + len(chunk))
        row += len(chunk)
    return starts


def _lookup(column: pa.ChunkedArray, mode: str, size) -> Optional[Tuple[_Entry, np.ndarray]]:
    """A memo entry holding every row of `column`, and the rows of that entry's array they are."""
    for entry in reversed(_MEMO):
        if entry.mode != mode or entry.size != tuple(size):
            continue
        parts = []
        for chunk in column.chunks:
            if not len(chunk):
                continue
            held = entry.chunk_starts.get(_buffers_key(chunk))
            if held is None or not held[1] <= chunk.offset <= chunk.offset + len(chunk) <= held[2]:
                break
            parts.append(np.arange(len(chunk), dtype=np.int64) + held[0] + chunk.offset)
        else:
            return entry, (np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    return None


def _view(decoded: DecodedImages, rows: np.ndarray) -> DecodedImages:
    """The rows `rows` of a decoded array: a slice view when contiguous, an index view otherwise."""
    if len(rows) == len(decoded.pixels) and (len(rows) == 0 or (rows[0] == 0 and np.all(np.diff(rows) == 1))):
        return decoded
    if len(rows) and np.all(np.diff(rows) == 1):
        pixels = decoded.pixels[int(rows[0]) : int(rows[-1]) + 1]
    else:
        pixels = _Rows(decoded.pixels, rows)
    bad = []
    if decoded.bad_rows:
        position = {int(r): i for i, r in enumerate(rows)}
        bad = sorted(position[r] for r in decoded.bad_rows if r in position)
    return DecodedImages(pixels, bad, decoded.memory_mapped, decoded.from_disk_cache)


def _image_bytes(chunk) -> Tuple[list, list]:
    """The encoded bytes and paths of an Arrow chunk of a ``datasets.Image`` column (a struct of bytes and path)."""
    if pa.types.is_struct(chunk.type):
        return pc.struct_field(chunk, "bytes").to_pylist(), pc.struct_field(chunk, "path").to_pylist()
    if pa.types.is_binary(chunk.type) or pa.types.is_large_binary(chunk.type):
        return chunk.to_pylist(), [None] * len(chunk)
    return [None] * len(chunk), chunk.to_pylist()  # paths only


def decode_one(data: Optional[bytes], path: Optional[str], mode: str, size: Optional[Tuple[int, int]]) -> np.ndarray:
    """One image as a ``uint8`` array (height x width x channels) in PIL `mode`, resized to `size` when given."""
    from PIL import Image as PILImage

    image = PILImage.open(io.BytesIO(data) if data is not None else path, formats=IMAGE_FORMATS)
    image = image.convert(mode)
    if size is not None and (image.height, image.width) != tuple(size):
        image = image.resize((size[1], size[0]), PILImage.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def is_gray(mode: str) -> bool:
    """Whether PIL `mode` holds one channel of intensity (an alpha channel aside)."""
    return mode in ("1", "L", "LA", "I", "F") or mode.startswith("I;16")


def image_modes(dataset: Dataset, column: str, rows: np.ndarray) -> Dict[str, int]:
    """How many of the images in rows `rows` of `dataset`'s `column` have each PIL mode, read off their headers
    (nothing is decoded). An image that cannot be opened is left out: the decode pass names it."""
    from PIL import Image as PILImage

    rows = np.asarray(rows, dtype=np.int64)
    mapping = indices_mapping(dataset)
    if mapping is not None:
        rows = mapping[rows]
    data, paths = _image_bytes(dataset.data.column(column).take(pa.array(rows, type=pa.int64())).combine_chunks())
    modes: Dict[str, int] = {}
    for b, p in zip(data, paths):
        try:
            with PILImage.open(io.BytesIO(b) if b is not None else p, formats=IMAGE_FORMATS) as image:
                modes[image.mode] = modes.get(image.mode, 0) + 1
        except Exception:  # PIL raises UnidentifiedImageError, OSError, ValueError, ...; None has no image
            continue
    return modes


def _decode_column(column: pa.ChunkedArray, rows: np.ndarray, mode: str, size, channels: int, out) -> List[int]:
    """Decode the rows `rows` of `column` into `out` (in order); returns the positions (into `rows`) that failed."""
    bad: List[int] = []
    for start in range(0, len(rows), DECODE_BATCH):
        part = rows[start : start + DECODE_BATCH]
        data, paths = _image_bytes(column.take(pa.array(part, type=pa.int64())).combine_chunks())
        for j, (b, p) in enumerate(zip(data, paths)):
            try:
                if b is None and p is None:
                    raise ValueError("no image")
                out[start + j] = decode_one(b, p, mode, size)
            except Exception:  # PIL raises UnidentifiedImageError, OSError, ValueError, SyntaxError, ...
                out[start + j] = 0
                bad.append(start + j)
    return bad


def _disk_cache_path(dataset: Dataset, column: str, mode: str, size) -> Optional[str]:
    """Where a file-backed dataset's decoded images live across runs: next to its Arrow cache files, named by its
    fingerprint (None for in-memory datasets and row selections)."""
    files = getattr(dataset, "cache_files", None) or []
    fingerprint = dataset_fingerprint(dataset)
    if not files or fingerprint is None or has_indices_mapping(dataset):
        return None
    folder = os.path.dirname(files[0]["filename"])
    if not os.access(folder, os.W_OK):
        return None
    # "v2": files written before the cache took a lock (two processes could interleave their writes) are not read.
    return os.path.join(folder, f"svp_images-v2-{fingerprint}-{column}-{mode}-{size[0]}x{size[1]}")


def decode_images(dataset: Dataset, column: str, mode: str, size: Tuple[int, int]) -> DecodedImages:
    """Every image of `column` decoded once (see the module's notes); rows in the dataset's order."""
    channels = 1 if mode == "L" else 3
    size = tuple(size)
    table_column = dataset.data.column(column)
    indices = indices_mapping(dataset)
    hit = _lookup(table_column, mode, size)
    if hit is None and indices is not None and len(indices) < len(table_column) // 2:
        # A small subset of an undecoded table: decode only its rows (not remembered).
        return _decode(dataset, table_column, indices, mode, size, channels, None)
    if hit is None:
        cache = _disk_cache_path(dataset, column, mode, size)
        decoded = _decode(dataset, table_column, np.arange(len(table_column)), mode, size, channels, cache)
        if len(_MEMO) >= _MEMO_LIMIT:
            _MEMO.pop(0)
        _MEMO.append(_Entry(table_column, _chunk_starts(table_column), mode, size, decoded))
        hit = _lookup(table_column, mode, size)
    entry, rows = hit
    if indices is not None:
        rows = rows[indices]
    return _view(entry.decoded, rows)


class _Rows:
    """A row-selected view of a decoded array (no copy): indexing maps through `indices`."""

    def __init__(self, pixels: np.ndarray, indices: np.ndarray):
        self.base, self.indices = pixels, np.asarray(indices, dtype=np.int64)
        self.shape = (len(self.indices),) + tuple(pixels.shape[1:])
        self.dtype = pixels.dtype
        self.nbytes = int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, rows):
        return self.base[self.indices[rows]]


def _decode(dataset, column, rows, mode, size, channels, cache: Optional[str]) -> DecodedImages:
    shape = (len(rows), size[0], size[1], channels)
    if cache is not None:
        found = _read_disk_cache(cache, shape)
        if found is not None:
            return found
        with FileLock(cache + ".lock"):  # one writer per cache file, across processes and runs
            found = _read_disk_cache(cache, shape)
            if found is not None:  # another process wrote it while this one waited
                return found
            if not _disk_cache_present(cache):
                return _write_disk_cache(column, rows, mode, size, channels, shape, cache)
        # A file of another shape under the final name: never replaced (another process may map it); decode apart.
    if int(np.prod(shape)) > MAX_MEMORY:
        # For an in-memory dataset larger than the bound: a memory-mapped temporary file, removed at once (the
        # mapping keeps the data readable; the file disappears with the process).
        target = tempfile.NamedTemporaryFile(suffix=".npy", delete=False).name
        pixels = np.lib.format.open_memmap(target, mode="w+", dtype=np.uint8, shape=shape)
        os.unlink(target)
        bad = _decode_column(column, rows, mode, size, channels, pixels)
        return DecodedImages(pixels, bad, True, False)
    pixels = np.empty(shape, dtype=np.uint8)
    bad = _decode_column(column, rows, mode, size, channels, pixels)
    return DecodedImages(pixels, bad, False, False)


# A disk cache is two files, each published by an atomic rename of a file only its writer names: the pixels
# (``.npy``), then the undecodable rows (``.bad.npy``), whose presence marks the cache complete. A partly written
# file is never visible under a final name, and a complete cache is never written again (the writer holds the
# ``.lock`` file and checks first), so a process that memory-maps it is never cut off.


def _disk_cache_present(cache: str) -> bool:
    return os.path.isfile(cache + ".npy") and os.path.isfile(cache + ".bad.npy")


def _read_disk_cache(cache: str, shape) -> Optional[DecodedImages]:
    """The complete disk cache at `cache`, memory-mapped; None when there is none (or it holds another shape)."""
    if not _disk_cache_present(cache):
        return None
    try:
        pixels = np.load(cache + ".npy", mmap_mode="r", allow_pickle=False)
        bad = np.load(cache + ".bad.npy", allow_pickle=False)
    except (OSError, ValueError):  # unreadable: decoded apart, the file left as it is
        return None
    if pixels.shape != shape or pixels.dtype != np.uint8:
        return None
    return DecodedImages(pixels, bad.tolist(), True, True)


def _write_disk_cache(column, rows, mode, size, channels, shape, cache: str) -> DecodedImages:
    """Decode into files named for this process alone, then publish them under the cache's names (the caller holds
    the cache's lock): the pixels first, the undecodable rows last (the cache is then complete); both temporary files
    are removed if anything fails (:func:`svp_hf.files.atomic_path`). Held in memory when small enough,
    memory-mapped from the published file otherwise."""
    with atomic_path(cache + ".bad.npy", suffix=".npy") as bad_tmp:  # published last
        with atomic_path(cache + ".npy", suffix=".npy") as pixels_tmp:
            pixels = np.lib.format.open_memmap(pixels_tmp, mode="w+", dtype=np.uint8, shape=shape)
            bad = _decode_column(column, rows, mode, size, channels, pixels)
            pixels.flush()
            np.save(bad_tmp, np.asarray(bad, dtype=np.int64))
    if int(np.prod(shape)) <= MAX_MEMORY:
        return DecodedImages(np.array(pixels), bad, False, False)  # small enough: held in memory
    return DecodedImages(np.load(cache + ".npy", mmap_mode="r", allow_pickle=False), bad, True, False)


def check_decodable(decoded: DecodedImages, column: str, what: str = "the dataset") -> None:
    """An :class:`SVPRuntimeError` naming the rows of `column` that could not be decoded, if any."""
    if decoded.bad_rows:
        rows = decoded.bad_rows
        shown = ", ".join(str(r) for r in rows[:20]) + (", ..." if len(rows) > 20 else "")
        raise SVPRuntimeError(
            f"{len(rows)} image(s) in column {column!r} of {what} cannot be decoded (row(s) {shown}); fix or drop "
            "those rows, or set skip_undecodable: true to skip them (they are listed in metrics.json)"
        )


def clear() -> None:
    """Forget every decoded dataset held by this process."""
    _MEMO.clear()


__all__ = [
    "DecodedImages",
    "decode_images",
    "decode_one",
    "image_modes",
    "is_gray",
    "check_decodable",
    "configure",
    "clear",
    "MAX_MEMORY",
]
