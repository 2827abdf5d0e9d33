"""What a dataset's columns are: :class:`DataInfo`, the per-modality column detection registry, the index
column svp_hf adds, label checks, and the checks that two splits agree.

Column detection is registered per modality (``"image"`` in :mod:`svp_hf.data.images`, ``"text"`` in
:mod:`svp_hf.data.text`), keyed by the modality of the model family that will read the data, so a new modality plugs in
without touching the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import datasets
import numpy as np
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, Value

from .._compat import has_indices_mapping
from ..errors import SVPConfigError
from ..registry import Registry
from ..utils.progress import quiet_datasets

INDEX_COLUMN = "svp_index"


SCORE_COLUMN = "svp_score"


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


def column_values(dataset: Dataset, column: str, dtype=None) -> np.ndarray:
    """A column of the rows `dataset` shows as numpy (as `dtype` when given), read straight from Arrow: no formatted
    copy of the dataset, and not ``np.asarray(dataset[column])``, which datasets >= 4 reads one formatted row at a time
    (about half a second per 67k rows). Anything else indexable by column name (a dict, a DataFrame) is read as is."""
    if not isinstance(dataset, Dataset):
        return np.asarray(dataset[column], dtype=dtype)
    if not has_indices_mapping(dataset):
        values = dataset.data.column(column)
    else:
        values = dataset.with_format("arrow")[column]
    return np.asarray(values.to_numpy(), dtype=dtype)


def text_lengths(dataset: Dataset, info: Optional[DataInfo]) -> Optional[np.ndarray]:
    """Characters of each row's text (its text columns together) when `info` is text, read from Arrow; ``None`` for
    other data, whose rows are one size once transformed (images are resized). What a row costs a text model grows
    with it (a batch is padded to its longest row)."""
    if info is None or info.modality != "text" or not isinstance(dataset, Dataset):
        return None
    total = np.zeros(len(dataset), dtype=np.int64)
    for column in info.input_columns:
        values = (
            dataset.data.column(column) if not has_indices_mapping(dataset) else dataset.with_format("arrow")[column]
        )
        total += np.asarray(pc.fill_null(pc.utf8_length(values), 0).to_numpy(zero_copy_only=False), dtype=np.int64)
    return total


@quiet_datasets()
def add_index(dataset: Dataset) -> Dataset:
    """Add the `svp_index` column (each row's position in `dataset`) unless it is already there (inside the pipeline,
    a subset keeps its rows' indices in the dataset it came from; an incoming column was renamed away first by
    :func:`keep_previous_columns`)."""
    if INDEX_COLUMN in dataset.column_names:
        return dataset
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64))


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
