"""Data stage: load a dataset from a recipe, find and check its columns, and turn rows into model-ready batches.

Column detection and preprocessing are registered per modality (``"image"`` and ``"text"`` here), keyed by the
modality of the model family that will read the data, so a new modality plugs in without touching the pipeline.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import datasets
import numpy as np
import pyarrow.compute as pc
import torch
from datasets import ClassLabel, Dataset, DatasetDict, Value

from ._compat import has_indices_mapping
from .augment import BatchAugment
from .device import auto_num_workers, holds_arrays
from .errors import SVPConfigError, SVPRuntimeError
from .image_cache import DecodedImages, check_decodable, decode_images, decode_one, image_modes, is_gray
from .log import get_logger
from .progress import are_progress_bars_disabled, quiet_datasets
from .registry import Registry

logger = get_logger(__name__)

INDEX_COLUMN = "svp_index"
SCORE_COLUMN = "svp_score"
SMALL_IMAGE_MAX_SIDE = 64


@dataclass
class DataInfo:
    """What svp_hf learned about a dataset's columns: where inputs and labels are and what they look like."""

    modality: str
    input_columns: List[str]
    label_column: str
    num_classes: int
    class_names: Optional[List[str]] = None
    extra: Dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Modality:
    name: str
    inspect: Callable[..., DataInfo]


MODALITIES: Registry[Modality] = Registry("modality")


def register_modality(name: str):
    def _wrap(fn: Callable[..., DataInfo]):
        MODALITIES.register(name, Modality(name, fn))
        return fn

    return _wrap


# --- loading -------------------------------------------------------------------------------------------------------

BUILTIN_DATASETS: Registry[Callable[[], DatasetDict]] = Registry("built-in dataset")


@BUILTIN_DATASETS.register("builtin:digits")
@quiet_datasets()
def digits_dataset(seed: int = 0) -> DatasetDict:
    """scikit-learn's 1,797 8x8 handwritten digits as an image dataset (train 80% / test 20%, stratified)."""
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)
    features = datasets.Features({"image": datasets.Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
    ds = Dataset.from_dict(
        {"image": [PILImage.fromarray(p, mode="L") for p in pixels], "label": digits.target.tolist()}, features=features
    )
    return ds.train_test_split(test_size=0.2, stratify_by_column="label", seed=seed)


_REVIEW_WORDS = {
    "positive": (
        "great excellent wonderful superb lovely perfect fantastic reliable delightful brilliant sturdy comfortable",
        "love it|works perfectly|highly recommend|worth every penny|exceeded my expectations|five stars|would buy again",
    ),
    "negative": (
        "terrible awful useless broken flimsy disappointing poor cheap defective horrible noisy uncomfortable",
        "waste of money|stopped working|do not buy|fell apart|returned it|one star|never again",
    ),
}
_REVIEW_ITEMS = "blender headphones novel charger kettle jacket backpack lamp keyboard album tent camera".split()


@BUILTIN_DATASETS.register("builtin:reviews")
@quiet_datasets()
def reviews_dataset(seed: int = 0, n: int = 1200) -> DatasetDict:
    """A small synthetic product-review set in Amazon Review Polarity's schema (label, title, content), made from a
    seeded template grammar so that text pipelines run offline: train 80% / test 20%, stratified.

    Each review mixes sentiment words of its own class with a few of the other class (and neutral filler), so the
    classes overlap and a proxy has uncertain examples to find."""
    rng = np.random.default_rng(seed)
    names = ["negative", "positive"]
    words = {k: (w.split(), p.split("|")) for k, (w, p) in _REVIEW_WORDS.items()}
    filler = "the this it was is and really quite a for my after two weeks but also".split()
    rows = {"label": [], "title": [], "content": []}
    for _ in range(n):
        label = int(rng.integers(2))
        own, other = words[names[label]], words[names[1 - label]]
        item = _REVIEW_ITEMS[rng.integers(len(_REVIEW_ITEMS))]
        n_own, n_other = int(rng.integers(1, 4)), int(rng.integers(0, 2))
        picks = [own[0][i] for i in rng.integers(len(own[0]), size=n_own)]
        picks += [other[0][i] for i in rng.integers(len(other[0]), size=n_other)]
        picks += [filler[i] for i in rng.integers(len(filler), size=int(rng.integers(2, 6)))]
        rng.shuffle(picks)
        phrase = own[1][rng.integers(len(own[1]))] if rng.random() < 0.75 else other[1][rng.integers(len(other[1]))]
        rows["label"].append(label)
        rows["title"].append(f"{picks[0].capitalize()} {item}")
        rows["content"].append(f"The {item} is {' '.join(picks)}. {phrase.capitalize()}.")
    features = datasets.Features(
        {"label": ClassLabel(names=names), "title": Value("string"), "content": Value("string")}
    )
    ds = Dataset.from_dict(rows, features=features)
    return ds.train_test_split(test_size=0.2, stratify_by_column="label", seed=seed)


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


PREVIOUS_SUFFIX = "_previous"


@quiet_datasets()
def keep_previous_columns(dataset):
    """`dataset` with any incoming ``svp_index``/``svp_score`` column (e.g. a dataset svp_hf wrote before) renamed to
    ``svp_index_previous``/``svp_score_previous`` (``..._previous_2`` and so on when that name is taken): kept as
    data, never read as row ids. svp_hf's row identity is always the row's position in the dataset it is given."""
    if not isinstance(dataset, (Dataset, datasets.IterableDataset)):
        return dataset  # not a dataset: the caller's own check names the problem
    names = list(dataset.column_names or [])
    for column in (INDEX_COLUMN, SCORE_COLUMN):
        if column not in names:
            continue
        new, k = column + PREVIOUS_SUFFIX, 2
        while new in names:
            new, k = f"{column}{PREVIOUS_SUFFIX}_{k}", k + 1
        dataset = dataset.rename_column(column, new)
        names = [new if c == column else c for c in names]
    return dataset


def column_values(dataset: Dataset, column: str) -> np.ndarray:
    """A column of the rows `dataset` shows as numpy, read straight from Arrow (no formatted copy of the dataset)."""
    if not has_indices_mapping(dataset):
        values = dataset.data.column(column)
    else:
        values = dataset.with_format("arrow")[column]
    return np.asarray(values.to_numpy())


@quiet_datasets()
def add_index(dataset: Dataset) -> Dataset:
    """Add the `svp_index` column (each row's position in `dataset`) unless it is already there (inside the pipeline,
    a subset keeps its rows' indices in the dataset it came from; an incoming column was renamed away first by
    :func:`keep_previous_columns`)."""
    if INDEX_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64))


# --- column detection and checks ----------------------------------------------------------------------------------


def _check_column(dataset: Dataset, column: str, what: str) -> None:
    if column not in dataset.column_names:
        raise SVPConfigError(f"{what} column {column!r} not found; the dataset has columns {dataset.column_names}")


def find_label_column(
    dataset: Dataset, label_column: Optional[str] = None, *, missing_labels: bool = False
) -> Tuple[str, int, Optional[List[str]]]:
    """Find the label column (named, else the first ClassLabel, else an integer 'label'/'labels' column).

    Returns the column, the number of classes and the class names (when the column is a ClassLabel). Missing (null)
    labels are an error unless `missing_labels` (the rows still to label in active learning's labelling mode).
    """
    features = dataset.features
    if label_column is None:
        candidates = [c for c, f in features.items() if isinstance(f, ClassLabel)]
        candidates += [c for c in ("label", "labels") if c in features and c not in candidates]
        if not candidates:
            raise SVPConfigError(
                f"no label column found (no ClassLabel, no 'label' column) in {dataset.column_names}; name it with "
                "label_column=, or, to have unlabelled data labelled (active learning's labelling mode), give the "
                "classes with class_names="
            )
        label_column = candidates[0]
    _check_column(dataset, label_column, "label")
    feature = features[label_column]
    if isinstance(feature, ClassLabel):
        num_classes, names = feature.num_classes, list(feature.names)
    elif isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        num_classes, names = None, None
    else:
        raise SVPConfigError(f"label column {label_column!r} must hold integer class ids, but its feature is {feature}")
    column = dataset.with_format("arrow")[label_column]
    if column.null_count:
        if not missing_labels:
            raise SVPConfigError(
                f"label column {label_column!r} has missing labels ({column.null_count} of {len(column)} rows); to "
                "label them, run the labelling mode of active learning (python -m svp_hf.active, svp_hf.ask/tell)"
            )
    labels = np.asarray(pc.drop_null(column).to_numpy(zero_copy_only=False))
    if labels.dtype == object:
        raise SVPConfigError(f"label column {label_column!r} has missing labels")
    if len(labels) and labels.min() < 0:
        raise SVPConfigError(_negative_labels_message(label_column, labels))
    if num_classes is None:
        num_classes = int(labels.max()) + 1 if len(labels) else 0
    elif len(labels) and labels.max() >= num_classes:
        raise SVPConfigError(
            f"label column {label_column!r} has label {labels.max()} outside its {num_classes} classes"
        )
    return label_column, num_classes, names


def _negative_labels_message(label_column: str, labels: np.ndarray) -> str:
    """What labels below 0 mean: -1 is how ``datasets`` marks a missing label (e.g. a test split published without
    labels), anything lower is not a class id."""
    unlabelled = int((labels == -1).sum())
    if unlabelled == int((labels < 0).sum()):
        return (
            f"label column {label_column!r} holds -1 in {unlabelled} of {len(labels)} rows: -1 is how datasets marks "
            "a missing label (a split published without labels); use a labelled split, drop those rows, or, to have "
            "them labelled, make them null and run the labelling mode of active learning (python -m svp_hf.active)"
        )
    return (
        f"label column {label_column!r} holds labels below -1 in {int((labels < -1).sum())} row(s) (e.g. "
        f"{int(labels.min())}), which are no class ids (0 to the number of classes - 1); fix those rows or name "
        "another label_column"
    )


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
    job (:func:`svp_hf.device.auto_num_workers`) plus this process, and at least 25,000 rows each; ``None`` (this
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


def inspect_dataset(dataset: Dataset, modality: str, *, partial: bool = False, **columns) -> DataInfo:
    """The columns of `dataset` for `modality`, checked; unless `partial` (the first rows of a stream) or labels are
    still to be collected (``missing_labels``), a dataset whose labels hold a single class is refused."""
    try:
        spec = MODALITIES.get(modality)
    except KeyError as err:
        raise SVPConfigError(err.args[0]) from None
    info = spec.inspect(dataset, **columns)
    if not partial and not columns.get("missing_labels"):
        check_several_classes(dataset, info)
    return info


def check_several_classes(dataset: Dataset, info: DataInfo) -> None:
    """A clear error, before any training, when every row has the same label: a classifier cannot learn from one
    class, so its scores would mean nothing."""
    column = dataset.with_format("arrow")[info.label_column]
    present = pc.unique(pc.drop_null(column)).to_pylist()
    if len(present) == 1:
        value = present[0]
        name = info.class_names[value] if info.class_names and 0 <= value < len(info.class_names) else value
        raise SVPConfigError(
            f"label column {info.label_column!r} holds a single class ({name!r}) in all {len(dataset)} rows: a "
            "classifier cannot learn from one class, so its scores would mean nothing; check the split (or "
            "max_train_samples of a dataset sorted by label) and label_column"
        )


def check_same_columns(eval_dataset: Dataset, info: DataInfo) -> None:
    for column in info.input_columns + [info.label_column]:
        _check_column(eval_dataset, column, "evaluation split's")
    top = pc.max(eval_dataset.with_format("arrow")[info.label_column]).as_py() if len(eval_dataset) else None
    if top is not None and top >= info.num_classes:
        raise SVPConfigError(
            f"evaluation split's label column {info.label_column!r} has label {top}, outside the training split's "
            f"{info.num_classes} classes"
        )


# --- preprocessing: rows -> tensors ---------------------------------------------------------------------------------


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
    """A model whose parameters are laid out channels-last (see :func:`svp_hf.device.apply_memory_format`)."""
    return getattr(model, "svp_channels_last", False)


class CachedImages(torch.utils.data.Dataset):
    """Decoded images (the :mod:`svp_hf.image_cache` array), labels and `svp_index` of a dataset, batched by one
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
    """`dataset`'s images decoded once (:func:`svp_hf.image_cache.decode_images`), in the model's channels."""

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


__all__ = [
    "DataInfo",
    "MODALITIES",
    "register_modality",
    "BUILTIN_DATASETS",
    "load_data",
    "get_split",
    "hold_out",
    "add_index",
    "keep_previous_columns",
    "column_values",
    "find_label_column",
    "inspect_dataset",
    "check_same_columns",
    "image_transform",
    "image_dataset",
    "collate_image_batch",
    "CachedImages",
    "small_images",
    "decoded_images",
    "undecodable_rows",
    "check_images",
    "batch_collate",
    "row_slicer",
    "on_device",
    "join_text",
    "text_dataset",
    "INDEX_COLUMN",
    "SCORE_COLUMN",
]
