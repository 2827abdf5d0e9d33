"""Image columns: detection (``"image"`` modality), decoding checks, timm's transforms, and the decode-once image
dataset (:class:`CachedImages`) with its batch protocol (``slices``, ``device_transform``, ``collate``)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset

from ..errors import SVPConfigError, SVPRuntimeError
from ..utils.device import holds_arrays
from ..utils.log import get_logger
from ..utils.progress import quiet_datasets
from .augment import BatchAugment
from .columns import INDEX_COLUMN, DataInfo, _check_column, add_index, find_label_column, register_modality
from .image_cache import DecodedImages, check_decodable, decode_images, decode_one, image_modes, is_gray

logger = get_logger(__name__)


SMALL_IMAGE_MAX_SIDE = 64


@register_modality("image")
def inspect_image_dataset(
    dataset: Dataset,
    *,
    image_column: Optional[str] = None,
    label_column: Optional[str] = None,
    missing_labels: bool = False,
    **_,
) -> DataInfo:
    """Find the image and label columns, and read channels and size off the first image."""
    if len(dataset) == 0:
        raise SVPConfigError("the dataset is empty: there is nothing to score or select")
    features = dataset.features
    if image_column is None:
        images = [c for c, f in features.items() if isinstance(f, datasets.Image)]
        if not images:
            raise SVPConfigError(
                f"no image column found (no datasets.Image feature) in {dataset.column_names}; "
                "name it with image_column="
            )
        image_column = images[0]
    _check_column(dataset, image_column, "image")
    if not isinstance(features[image_column], datasets.Image):
        raise SVPConfigError(f"column {image_column!r} is not an image column: its feature is {features[image_column]}")
    label_column, num_classes, names = find_label_column(dataset, label_column, missing_labels=missing_labels)
    if num_classes < 2:
        raise SVPConfigError(f"label column {label_column!r} has {num_classes} class(es); at least 2 are needed")
    first = _first_image(dataset, image_column)
    small = max(first.height, first.width) <= SMALL_IMAGE_MAX_SIDE
    # Larger images go through timm's (RGB) transforms; small ones keep one channel when they are all grayscale.
    in_chans = 1 if small and _all_gray(dataset, image_column) else 3
    return DataInfo(
        "image",
        [image_column],
        label_column,
        num_classes,
        names,
        extra={"in_chans": in_chans, "image_size": (first.height, first.width)},
    )


def _first_image(dataset: Dataset, column: str):
    """The first image that decodes (an undecodable row is reported with its row number by the decode pass)."""

    for row in range(min(len(dataset), 64)):
        try:
            image = dataset[row][column]
            image.load()
            return image
        except Exception:
            continue
    raise SVPRuntimeError(f"none of the first {min(len(dataset), 64)} image(s) in column {column!r} can be decoded")


# Images whose modes are read (from their headers) to choose the channels of CIFAR-sized images.
MODE_SAMPLE = 10_000


def _all_gray(dataset: Dataset, column: str) -> bool:
    """Whether the CIFAR-sized images of `column` are all grayscale, judged on up to :data:`MODE_SAMPLE` images spread
    evenly over `dataset` (their headers alone). When modes mix, colour wins: every image is read as RGB (a gray one
    as three equal channels, losing nothing), rather than colour images losing theirs to the first image's mode."""
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(len(dataset), MODE_SAMPLE)).astype(np.int64))
    modes = image_modes(dataset, column, rows)
    gray = sum(n for mode, n in modes.items() if is_gray(mode))
    if 0 < gray < sum(modes.values()):
        logger.info(
            f"column {column!r} mixes grayscale and colour images ({gray} of {sum(modes.values())} read are "
            f"grayscale: {dict(sorted(modes.items()))}); every image is read as RGB"
        )
    return gray == sum(modes.values())


def small_images(info: DataInfo) -> bool:
    """Whether `info`'s images are CIFAR-sized: decoded once into the uint8 cache and augmented on the device."""
    return max(info.extra["image_size"]) <= SMALL_IMAGE_MAX_SIDE


def _normalisation(model: torch.nn.Module, in_chans: int):
    import timm.data

    cfg = timm.data.resolve_data_config({}, model=model)
    mean, std = list(cfg["mean"]), list(cfg["std"])
    if len(mean) != in_chans:  # e.g. grayscale input to a model configured for RGB statistics
        mean, std = [float(np.mean(mean))] * in_chans, [float(np.mean(std))] * in_chans
    return mean, std


def uses_channels_last(model: torch.nn.Module) -> bool:
    """A model whose parameters are laid out channels-last (see :func:`svp_hf.utils.device.apply_memory_format`)."""
    return getattr(model, "svp_channels_last", False)


class CachedImages(torch.utils.data.Dataset):
    """Decoded images (the :mod:`svp_hf.data.image_cache` array), labels and `svp_index` of a dataset, batched by one
    gather: a DataLoader fetches a batch's row numbers (``__getitems__``) and :meth:`collate` turns them into ``uint8``
    pixels, labels and indices; :meth:`device_transform` augments and normalises the batch on the device it was moved to."""

    def __init__(self, pixels, labels: np.ndarray, index: np.ndarray, augment):
        self.pixels, self.labels, self.index, self.augment = pixels, labels, index, augment

    def __len__(self) -> int:
        return len(self.labels)

    def __getitems__(self, rows: Sequence[int]) -> list:
        """What a DataLoader fetches for a batch: the row numbers themselves (:meth:`collate` gathers them)."""
        return list(rows)

    def __getitem__(self, row: int) -> dict:
        """One row, transformed as the batches are (for code that reads rows one by one)."""
        batch = self.device_transform(self.collate([row]))
        return {
            "pixel_values": batch["pixel_values"][0],
            "labels": int(batch["labels"][0]),
            INDEX_COLUMN: int(batch[INDEX_COLUMN][0]),
        }

    def collate(self, rows: Sequence[int]) -> Dict[str, torch.Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        return {
            "pixels": torch.from_numpy(np.ascontiguousarray(self.pixels[rows])),
            "labels": torch.from_numpy(self.labels[rows]),
            INDEX_COLUMN: torch.from_numpy(self.index[rows]),
        }

    @property
    def slices_are_views(self) -> bool:
        """Whether :meth:`slices` returns views of the arrays (an in-memory cache) rather than copies (a read-only,
        memory-mapped one): views cost nothing to cut ahead of use."""
        return bool(self.pixels.flags.writeable)

    def slices(
        self, start: int, stop: int, batch_size: int, inputs_only: bool = False
    ) -> List[Dict[str, torch.Tensor]]:
        """Rows ``start..stop-1`` in consecutive batches of `batch_size` rows (the last may be shorter), each as
        :meth:`collate` batches it, by slicing (no gather); with `inputs_only`, the pixels alone (the rows' labels and
        ids are :attr:`labels` and :attr:`index`)."""
        batches = []
        for s in range(start, stop, batch_size):
            e = min(stop, s + batch_size)
            pixels = self.pixels[s:e]  # a view: copied only when read-only (a memory-mapped cache)
            batch = {"pixels": torch.from_numpy(pixels if pixels.flags.writeable else np.array(pixels))}
            if not inputs_only:
                batch.update(
                    {"labels": torch.from_numpy(self.labels[s:e]), INDEX_COLUMN: torch.from_numpy(self.index[s:e])}
                )
            batches.append(batch)
        return batches

    def device_transform(self, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None):
        batch = dict(batch)
        batch["pixel_values"] = self.augment(batch.pop("pixels"), generator)
        return batch


def decoded_images(dataset: Dataset, info: DataInfo):
    """`dataset`'s images decoded once (:func:`svp_hf.data.image_cache.decode_images`), in the model's channels."""

    mode = "L" if info.extra["in_chans"] == 1 else "RGB"
    return decode_images(dataset, info.input_columns[0], mode, tuple(info.extra["image_size"]))


@quiet_datasets()
def undecodable_rows(dataset: Dataset, info: DataInfo) -> List[int]:
    """Rows of `dataset` whose image cannot be decoded: the decode-once pass itself for small images (its result is
    kept for training and scoring), a decoding check of every row for larger ones."""
    if small_images(info):
        return list(decoded_images(dataset, info).bad_rows)

    bad, column = [], info.input_columns[0]
    raw = dataset.cast_column(column, datasets.Image(decode=False)).with_format("arrow")
    for start in range(0, len(dataset), 1024):
        part = raw[start : start + 1024][column]
        for j, item in enumerate(part.to_pylist()):
            try:
                if item is None:
                    raise ValueError("no image")
                decode_one(item.get("bytes"), item.get("path"), "RGB", None)
            except Exception:
                bad.append(start + j)
    return bad


@quiet_datasets()
def check_images(dataset: Dataset, info: DataInfo, *, skip: bool = False, what: str = "the dataset"):
    """`dataset` with every image checked to decode (the decode-once pass for small images, a decoding pass for
    larger ones): an ``SVPRuntimeError`` naming the rows and column that cannot be decoded, or, with `skip`,
    `dataset` without them and their row numbers. Returns ``(dataset, skipped rows)``."""

    bad = undecodable_rows(dataset, info)
    if bad and not skip:
        check_decodable(DecodedImages(np.zeros(0), bad), info.input_columns[0], what)
    if bad:
        dataset = dataset.select(np.setdiff1d(np.arange(len(dataset)), bad)).flatten_indices()
    return dataset, bad


def image_transform(model: torch.nn.Module, info: DataInfo, train: bool, augment: bool = True) -> Callable:
    """The torchvision transform for `model` and images larger than CIFAR's: timm's own transforms from the model's
    data config (CIFAR-sized images are decoded once and augmented on the device instead: :func:`image_dataset`)."""
    import timm.data
    from torchvision import transforms as T

    cfg = timm.data.resolve_data_config({}, model=model)
    height, width = info.extra["image_size"]
    if max(height, width) > SMALL_IMAGE_MAX_SIDE:
        return timm.data.create_transform(**cfg, is_training=train and augment)
    mean, std = _normalisation(model, info.extra["in_chans"])
    steps = []
    if train and augment:
        steps += [
            T.RandomCrop((height, width), padding=max(1, round(max(height, width) / 8))),
            T.RandomHorizontalFlip(),
        ]
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


@quiet_datasets()
def image_dataset(dataset: Dataset, model: torch.nn.Module, info: DataInfo, train: bool, augment: bool = True):
    """`dataset` as model inputs. CIFAR-sized images: the decode-once cache with pad-and-crop, flip and normalisation
    applied to whole batches on the device (:class:`CachedImages`); an image that cannot be decoded is an
    ``SVPRuntimeError`` naming its row. Larger images: decoded and transformed per row with timm's transforms
    (``with_transform``)."""
    column, label = info.input_columns[0], info.label_column
    dataset = add_index(dataset)
    if small_images(info):
        decoded = decoded_images(dataset, info)
        check_decodable(decoded, column)
        height, width = info.extra["image_size"]
        mean, std = _normalisation(model, info.extra["in_chans"])
        augmenter = BatchAugment(
            mean,
            std,
            padding=max(1, round(max(height, width) / 8)),
            flip=True,
            train=bool(train and augment),
            channels_last=uses_channels_last(model),
        )
        table = dataset.with_format("arrow")
        # Writable copies (null label: unlabelled): batches slice them without copying.
        labels = np.array(pc.fill_null(table[label], 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        index = np.array(table[INDEX_COLUMN].to_numpy(zero_copy_only=False), dtype=np.int64)
        return CachedImages(decoded.pixels, labels, index, augmenter)
    transform = image_transform(model, info, train, augment)
    mode = "L" if info.extra["in_chans"] == 1 else "RGB"

    raw = datasets.Image(decode=True)

    def _apply(batch):
        pixels = []
        for item, row in zip(batch[column], batch[INDEX_COLUMN]):
            try:
                pixels.append(transform(raw.decode_example(item).convert(mode)))
            except Exception as err:  # PIL's UnidentifiedImageError, OSError, ...: name the row and column
                raise SVPRuntimeError(
                    f"the image in column {column!r} of row {row} cannot be decoded ({type(err).__name__}: {err}); fix "
                    "or drop it, or set skip_undecodable: true to check every image first and skip those that fail"
                ) from None
        return {"pixel_values": pixels, "labels": batch[label], INDEX_COLUMN: batch[INDEX_COLUMN]}

    undecoded = dataset.select_columns([column, label, INDEX_COLUMN]).cast_column(column, datasets.Image(decode=False))
    return undecoded.with_transform(_apply)


def collate_image_batch(rows: Sequence[dict]) -> Dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([r["pixel_values"] for r in rows]),
        "labels": torch.tensor([r["labels"] for r in rows], dtype=torch.long),
        INDEX_COLUMN: torch.tensor([r[INDEX_COLUMN] for r in rows], dtype=torch.long),
    }


def batch_collate(dataset, default: Callable) -> Callable:
    """The collate function for a model-ready `dataset`: its own (a decode-once or packed dataset batches rows by one
    gather) or the family's `default`."""
    return dataset.collate if holds_arrays(dataset) else default


def row_slicer(dataset) -> Optional[Callable[..., List[Dict[str, torch.Tensor]]]]:
    """``slices(start, stop, batch_size, inputs_only=False)``: consecutive rows of a model-ready `dataset` held in
    arrays (decode-once images, packed text) cut into batches without a gather or a loader; ``None`` for a dataset
    batched row by row through a ``DataLoader``. Such a dataset also has its rows' ``labels`` and ``index``
    (`svp_index`) as arrays, and ``slices_are_views`` (whether the cut batches are views of its arrays)."""
    return getattr(dataset, "slices", None)


def on_device(dataset, batch: Dict[str, torch.Tensor], generator: Optional[torch.Generator] = None):
    """`batch` (already on the device) finished there: augmented and normalised for decode-once images, unchanged
    otherwise."""
    transform = getattr(dataset, "device_transform", None)
    return transform(batch, generator) if transform is not None else batch
