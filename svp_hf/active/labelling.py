"""The labelling session of active learning with real labellers: its state in `output_dir`, and returned labels.

The training split's label column holds the labels known so far and nulls for the rows still to label. Each round
asks for a batch (written under ``output_dir/to_label/``, see :func:`write_batch`); labellers return labels, which
:func:`tell` checks and merges. The whole session lives in ``output_dir/labelling/``::

    state.json              # pool size, classes, every batch asked (round, svp_index, scores), every label known,
                            # every merged return (source, content hash)
    checkpoints/round_<k>/  # the selector trained in round k (model.safetensors) and the RNG states after it
                            # (rng_state.safetensors), for warm_start

Every file is written under a temporary name and moved into place (``os.replace``) when complete, and state.json is
written last, so a session killed at any moment continues from its last complete step, on this or another machine.

Nothing here trains: the rounds themselves are :func:`svp_hf.active.loop.selection_round`, shared with the
simulated loop.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from ..data.columns import INDEX_COLUMN, SCORE_COLUMN
from ..data.loading import _BUILDER_BY_EXTENSION
from ..engine.checkpoint import CHECKPOINTS_DIR as RUN_CHECKPOINTS_DIR
from ..engine.checkpoint import MODEL_WEIGHTS, check_not_pickled, read_json
from ..errors import SVPConfigError
from ..files import atomic_write_json as write_json_file
from ..publish.output import write_dataset_folder
from ..utils.progress import quiet_datasets
from .pool import LabelPool

STATE_DIR = "labelling"
STATE_FILE = "state.json"
CHECKPOINTS_DIR = "checkpoints"
TO_LABEL_DIR = "to_label"
ROUND_COLUMN = "svp_round"
STATE_VERSION = 1

LabelsSource = Union[str, os.PathLike, Dataset, Mapping[int, Any]]


# --- atomic files ---------------------------------------------------------------------------------------------------


def atomic_write_json(path: str, obj: Any) -> None:
    """Write `obj` as JSON to `path` (its folder made if need be) through a temporary file of this process in the
    same folder, synced to disk, and ``os.replace`` (:func:`svp_hf.files.atomic_write_json`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    write_json_file(path, obj, indent=1, fsync=True)


def replace_path(tmp: str, dest: str) -> None:
    """Move the finished file or folder `tmp` to `dest`, replacing what was there."""
    if os.path.isdir(dest) and not os.path.islink(dest):
        old = dest + f".old-{os.getpid()}"
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)


# --- the dataset: which rows are labelled -----------------------------------------------------------------------------


def has_missing_labels(
    dataset: Dataset, label_column: Optional[str], class_names: Optional[Sequence[str]] = None
) -> bool:
    """Whether `dataset`'s label column (named, else the first ClassLabel, else ``label``/``labels``) holds nulls, or
    is absent while `class_names` are given: the rows the labelling mode asks labels for."""
    column = _label_column_name(dataset, label_column)
    if column is None or column not in dataset.column_names:
        return bool(class_names)
    return bool(dataset.with_format("arrow")[column].null_count)


def _label_column_name(dataset: Dataset, label_column: Optional[str]) -> Optional[str]:
    if label_column:
        return label_column
    classes = [c for c, f in dataset.features.items() if isinstance(f, ClassLabel)]
    named = [c for c in ("label", "labels") if c in dataset.column_names]
    return (classes + named + [None])[0]


@quiet_datasets()
def labelling_dataset(
    dataset: Dataset,
    label_column: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    *,
    labelled: Optional[Dataset] = None,
) -> Tuple[Dataset, str]:
    """`dataset` with a ``ClassLabel`` label column that is null for the rows still to label, and the column's name.

    The classes are the column's ``ClassLabel`` names, else `class_names` (class names in a string column become
    ids; an absent or all-null column is added or replaced). `labelled`, a small labelled dataset with the same
    columns, is put before `dataset`'s rows (so its rows are ``svp_index`` 0 to ``len(labelled) - 1``)."""
    column = (
        _label_column_name(dataset, label_column)
        or (_label_column_name(labelled, label_column) if labelled is not None else None)
        or "label"
    )
    names = list(class_names) if class_names else None
    feature = dataset.features.get(column)
    if names is None and isinstance(feature, ClassLabel):
        names = list(feature.names)
    if names is None and labelled is not None and isinstance(labelled.features.get(column), ClassLabel):
        names = list(labelled.features[column].names)
    if names is None:
        raise SVPConfigError(
            f"the labelling mode needs the class names: make label column {column!r} a datasets.ClassLabel, or list "
            "them with class_names"
        )
    if len(set(names)) != len(names) or len(names) < 2:
        raise SVPConfigError(f"class_names must be at least 2 distinct names, got {names}")
    dataset = _as_class_label(dataset, column, names)
    if labelled is not None:
        from datasets import concatenate_datasets

        labelled = _as_class_label(labelled, column, names)
        if labelled.with_format("arrow")[column].null_count:
            raise SVPConfigError(f"the labelled dataset has missing labels in column {column!r}")
        missing = [c for c in dataset.column_names if c not in labelled.column_names]
        if missing:
            raise SVPConfigError(f"the labelled dataset lacks column(s) {missing} of the unlabelled one")
        labelled = labelled.select_columns(dataset.column_names).cast(dataset.features)
        dataset = concatenate_datasets([labelled, dataset])
    return dataset, column


@quiet_datasets()
def _as_class_label(dataset: Dataset, column: str, names: List[str]) -> Dataset:
    """`dataset` with `column` a ClassLabel of `names` (added all-null when absent), in the same column order."""
    target = ClassLabel(names=names)
    feature = dataset.features.get(column)
    if isinstance(feature, ClassLabel):
        if list(feature.names) != names:
            raise SVPConfigError(
                f"label column {column!r} has classes {list(feature.names)}, but class_names says {names}"
            )
        return dataset
    order = list(dataset.column_names) + ([column] if feature is None else [])
    if feature is None:
        values = [None] * len(dataset)
    else:
        values = _label_ids(dataset.with_format("arrow")[column], names, f"label column {column!r}")
        values = [None if v < 0 else int(v) for v in values]
        dataset = dataset.remove_columns(column)
    return dataset.add_column(column, values, feature=target).select_columns(order)


def _label_ids(values, names: Sequence[str], what: str) -> np.ndarray:
    """Class ids of an Arrow array of labels given as ids or names; -1 for null (unanswered). Raises on a value that
    is neither (a name not in `names`, a fractional number); ids are range-checked by the caller."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    kind = values.type
    if pa.types.is_null(kind):
        return np.full(len(values), -1, dtype=np.int64)
    if pa.types.is_dictionary(kind):
        values, kind = values.cast(kind.value_type), kind.value_type
    valid = ~np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    out = np.full(len(values), -1, dtype=np.int64)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        text = pc.utf8_trim_whitespace(values).to_pylist()
        lookup = {n: i for i, n in enumerate(names)}
        unknown = []
        for i, t in enumerate(text):
            if t is None or t == "":
                valid[i] = False
            elif t in lookup:
                out[i] = lookup[t]
            else:
                unknown.append(t)
        if unknown:
            raise SVPConfigError(
                f"{what}: {len(unknown)} label(s) are not class names (e.g. {sorted(set(unknown))[:5]}); the classes "
                f"are {list(names)}, or give class ids 0 to {len(names) - 1}"
            )
        return out
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        numbers = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)
        valid &= ~np.isnan(numbers)
        fractional = valid & (numbers != np.round(numbers))
        if fractional.any():
            raise SVPConfigError(f"{what}: labels must be class ids or names, got {numbers[fractional][:5].tolist()}")
        out[valid] = numbers[valid].astype(np.int64)
        out[valid & (out < 0)] = np.iinfo(np.int64).min  # negative ids stay out of range, not unanswered
        return out
    raise SVPConfigError(f"{what}: labels must be class ids or names, but the column holds {kind}")


# --- the session's state ------------------------------------------------------------------------------------------------


def state_path(output_dir: str) -> str:
    return os.path.join(os.fspath(output_dir), STATE_DIR, STATE_FILE)


def checkpoint_path(output_dir: str, round_: int) -> str:
    return os.path.join(os.fspath(output_dir), STATE_DIR, CHECKPOINTS_DIR, f"round_{round_}", MODEL_WEIGHTS)


def warm_start_weights(output_dir: str, round_: int) -> Optional[str]:
    """The weights of the selector trained in round `round_` (saved for warm_start), if any. A checkpoint of an
    earlier svp_hf, whose random generators' states are pickled, is refused (never read)."""
    path = checkpoint_path(output_dir, round_)
    folder = os.path.dirname(path)
    if os.path.isdir(folder):
        check_not_pickled(folder, f"remove {folder!r} to train round {round_ + 1}'s selector from scratch")
    return path if os.path.isfile(path) else None


def batch_paths(output_dir: str, round_: int) -> Dict[str, str]:
    """Where round `round_`'s batch to label is written: a dataset folder, a CSV file and (for images) image files."""
    root = os.path.join(os.fspath(output_dir), TO_LABEL_DIR)
    return {
        "folder": os.path.join(root, f"round_{round_}"),
        "csv": os.path.join(root, f"round_{round_}.csv"),
        "images": os.path.join(root, f"round_{round_}_images"),
    }


@dataclass
class LabellingState:
    """Everything a labelling session knows; saved as ``output_dir/labelling/state.json``.

    `batches` lists every round in order: ``round``, ``ids`` (pool indices), ``scores`` (null for random or given
    rows), ``given`` (rows labelled in the dataset when the session started) and the round's ``record``.
    `labels` maps every labelled pool index to its class id; `merged` lists the returns merged so far.
    """

    pool_size: int
    label_column: str
    class_names: List[str]
    settings: Dict[str, Any] = field(default_factory=dict)
    batches: List[Dict[str, Any]] = field(default_factory=list)
    labels: Dict[int, int] = field(default_factory=dict)
    merged: List[Dict[str, Any]] = field(default_factory=list)

    # --- files

    @staticmethod
    def exists(output_dir: str) -> bool:
        return os.path.isfile(state_path(output_dir))

    @classmethod
    def load(cls, output_dir: str) -> "LabellingState":
        path = state_path(output_dir)
        if not os.path.isfile(path):
            raise SVPConfigError(
                f"no labelling session in {os.fspath(output_dir)!r} (no {STATE_DIR}/{STATE_FILE}); start one with a "
                "training split whose label column is null for the rows to label (python -m svp_hf.active, svp_hf.ask)"
            )
        fix = "it is svp_hf's record of the session (never edited by hand): restore it, or start a new session in another output_dir"
        data = read_json(path, "the labelling session's state", fix)
        version = data.get("version") if isinstance(data, dict) else None
        if version != STATE_VERSION:
            raise SVPConfigError(f"{path} was not written by this version of svp_hf (state version {version}); {fix}")
        try:
            return cls(
                pool_size=int(data["pool_size"]),
                label_column=str(data["label_column"]),
                class_names=[str(n) for n in data["class_names"]],
                settings=dict(data.get("settings") or {}),
                batches=list(data.get("batches") or []),
                labels={int(k): int(v) for k, v in (data.get("labels") or {}).items()},
                merged=list(data.get("merged") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise SVPConfigError(
                f"{path} is not a labelling session's state ({type(err).__name__}: {err}); {fix}"
            ) from None

    def save(self, output_dir: str) -> None:
        atomic_write_json(
            state_path(output_dir),
            {
                "version": STATE_VERSION,
                "pool_size": self.pool_size,
                "label_column": self.label_column,
                "class_names": self.class_names,
                "settings": self.settings,
                "batches": self.batches,
                "labels": {str(k): int(v) for k, v in sorted(self.labels.items())},
                "merged": self.merged,
            },
        )

    # --- views

    @property
    def next_round(self) -> int:
        return self.batches[-1]["round"] + 1 if self.batches else 0

    @property
    def asked(self) -> Dict[int, int]:
        """The round every row of an asked (or given) batch belongs to, by pool index."""
        return {int(i): b["round"] for b in self.batches for i in b["ids"]}

    @property
    def pending(self) -> np.ndarray:
        """Pool indices asked for and not labelled yet, sorted."""
        return np.array(sorted(i for i in self.asked if i not in self.labels), dtype=np.int64)

    @property
    def n_labelled(self) -> int:
        return len(self.labels)

    def pool(self, *, with_pending: bool = False) -> LabelPool:
        """The labelled rows as a :class:`LabelPool` (each with its round and score); `with_pending` also counts the
        rows asked for and not answered yet, so that no round asks for them again."""
        pool = LabelPool(self.pool_size)
        for batch in self.batches:
            ids = np.asarray(batch["ids"], dtype=np.int64)
            scores = np.array(
                [np.nan if s is None else s for s in batch.get("scores") or [None] * len(ids)], dtype=np.float64
            )
            keep = np.ones(len(ids), dtype=bool) if with_pending else np.isin(ids, list(self.labels))
            if keep.any():
                pool.label(ids[keep], batch["round"], scores[keep])
        return pool

    def label_array(self) -> np.ndarray:
        """Every pool row's class id, -1 where unknown."""
        labels = np.full(self.pool_size, -1, dtype=np.int64)
        if self.labels:
            ids = np.fromiter(self.labels.keys(), dtype=np.int64)
            labels[ids] = np.fromiter(self.labels.values(), dtype=np.int64)
        return labels

    def rounds(self) -> List[Dict[str, Any]]:
        """The records of the rounds a selector ran (round 1 on)."""
        return [b["record"] for b in self.batches if b.get("record")]

    def summary(self) -> Dict[str, Any]:
        pending = self.pending
        asked = self.asked
        return {
            "pool_size": self.pool_size,
            "labelled": self.n_labelled,
            "pending": int(len(pending)),
            "pending_rounds": sorted({asked[int(i)] for i in pending}),
            "rounds_asked": [b["round"] for b in self.batches if not b.get("given")],
            "next_round": self.next_round,
        }


def check_session_dir(output_dir: str, *, labelling: bool) -> None:
    """One kind of run per output_dir: a new labelling session (`labelling`) does not start beside another run's
    checkpoints, and a simulated run does not write beside a labelling session."""
    output_dir = os.fspath(output_dir)
    if labelling and os.path.isdir(os.path.join(output_dir, RUN_CHECKPOINTS_DIR)):
        raise SVPConfigError(
            f"output_dir {output_dir!r} holds the checkpoints of another, unfinished run ({RUN_CHECKPOINTS_DIR}/): "
            "start the labelling session in another output_dir"
        )
    if not labelling and LabellingState.exists(output_dir):
        raise SVPConfigError(
            f"output_dir {output_dir!r} holds a labelling session ({STATE_DIR}/{STATE_FILE}), but the training split "
            "has no missing labels and labels_from is not set, so this run would simulate active learning beside it: "
            "choose another output_dir to simulate, or continue the session with its pool (its unlabelled rows null)"
        )


def start_session(
    dataset: Dataset, label_column: str, class_names: Sequence[str], settings: Dict[str, Any]
) -> LabellingState:
    """A new session over `dataset` (a :func:`labelling_dataset`): its non-null labels are the given round 0."""
    labels = _label_ids(dataset.with_format("arrow")[label_column], class_names, f"label column {label_column!r}")
    given = np.flatnonzero(labels >= 0)
    state = LabellingState(len(dataset), label_column, list(class_names), dict(settings))
    if len(given):
        state.batches.append({"round": 0, "ids": given.tolist(), "scores": None, "given": True, "record": None})
        state.labels = {int(i): int(labels[i]) for i in given}
    return state


def check_session_dataset(
    state: LabellingState, dataset: Dataset, label_column: str, class_names: Sequence[str]
) -> None:
    """A clear error when `dataset` is not the pool the session in `state` started on."""
    if len(dataset) != state.pool_size:
        raise SVPConfigError(
            f"the labelling session in output_dir is over a pool of {state.pool_size} rows, but the training split has "
            f"{len(dataset)}: continue with the same data (and max_train_samples), or choose another output_dir"
        )
    if list(class_names) != state.class_names:
        raise SVPConfigError(
            f"the session's classes are {state.class_names}, but the training split's are {list(class_names)}"
        )
    if label_column != state.label_column:
        raise SVPConfigError(f"the session's label column is {state.label_column!r}, not {label_column!r}")
    labels = _label_ids(dataset.with_format("arrow")[label_column], class_names, f"label column {label_column!r}")
    known = state.label_array()
    changed = np.flatnonzero((labels >= 0) & (labels != known))
    if len(changed):
        raise SVPConfigError(
            f"the training split has {len(changed)} label(s) the session does not (e.g. svp_index {changed[:5].tolist()}): "
            "return labels with labels_from (svp_hf.tell) rather than by editing the dataset"
        )


# Settings a session may change between steps: `budgets` (sizes of rounds not asked yet: checked below) and
# `initial_size` (read only while nothing is labelled).
SESSION_FREE_SETTINGS = ("budgets", "initial_size")


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def check_session_settings(state: LabellingState, settings: Dict[str, Any], output_dir: str) -> None:
    """A clear error when `settings` (see :func:`svp_hf.active.loop.session_settings`) differ from those the
    session in `state` runs with, where they must not: every key but `budgets` and `initial_size`, and the budgets of
    the rounds asked already. The other changes (a budget added, a key the state does not record yet) are recorded
    in `state`, written with it when the next round is asked."""
    where = f"the labelling session in {os.fspath(output_dir)!r} ({STATE_DIR}/{STATE_FILE})"
    settings = _plain(settings)
    for key, value in settings.items():
        old = state.settings.get(key)
        if key not in SESSION_FREE_SETTINGS and key in state.settings and old != value:
            raise SVPConfigError(
                f"{key} is {value!r}, but {where} runs with {key} {old!r}: set {key} back to {old!r} to continue "
                "the session, or start a new session in another output_dir"
            )
    asked = [int(b["round"]) for b in state.batches if not b.get("given") and int(b["round"]) >= 1]
    old_budgets, budgets = state.settings.get("budgets"), settings.get("budgets")
    if asked and isinstance(old_budgets, list) and budgets is not None:
        n = max(asked)
        if list(budgets[:n]) != list(old_budgets[:n]):
            raise SVPConfigError(
                f"budgets is {budgets}, but {where} has asked for round(s) 1 to {n} with budgets {old_budgets[:n]}: "
                f"keep {old_budgets[:n]} first and add larger sizes after them to ask for more, or start a new "
                "session in another output_dir"
            )
    state.settings.update(settings)


@quiet_datasets()
def filled_dataset(dataset: Dataset, state: LabellingState) -> Dataset:
    """`dataset` with the session's labels in its label column: what the selector trains on. Rows not labelled yet
    get class 0 as a placeholder: they are only scored, and active-learning methods never read their labels."""
    column = state.label_column
    labels = np.maximum(state.label_array(), 0)
    order = list(dataset.column_names)
    feature = ClassLabel(names=state.class_names)
    return dataset.remove_columns(column).add_column(column, labels, feature=feature).select_columns(order)


@quiet_datasets()
def pool_dataset(dataset: Dataset) -> Dataset:
    """`dataset` with `svp_index` set to each row's pool index (replacing any earlier one)."""
    dataset = dataset.remove_columns(
        [c for c in (INDEX_COLUMN, SCORE_COLUMN, ROUND_COLUMN) if c in dataset.column_names]
    )
    return dataset.add_column(INDEX_COLUMN, np.arange(len(dataset), dtype=np.int64))


@quiet_datasets()
def labelled_dataset(dataset: Dataset, pool: LabelPool) -> Dataset:
    """The labelled rows in pool order, with `svp_index`, the round each was labelled in and its selection score."""
    indices = pool.labelled
    scores = [None if np.isnan(s) else float(s) for s in pool.scores(indices)]
    labelled = dataset.select(indices)
    labelled = labelled.add_column(ROUND_COLUMN, pool.rounds(indices), feature=Value("int64"))
    return labelled.add_column(SCORE_COLUMN, scores, feature=Value("float64"))


def labelled_rows(dataset: Dataset, state: LabellingState) -> Dataset:
    """The labelled rows of `dataset` with the session's labels, in pool order, with `svp_index`, `svp_round` (0 =
    initial or given) and `svp_score`: the labelled set a target trains on."""
    return labelled_dataset(pool_dataset(filled_dataset(dataset, state)), state.pool())


# --- returned labels ------------------------------------------------------------------------------------------------


@quiet_datasets()
def _read_source(source: LabelsSource, token: Optional[str] = None) -> Tuple[str, Dataset]:
    """A return of labels as a Dataset, and a name for it (messages and the merge record)."""
    import datasets

    if isinstance(source, Dataset):
        return "a Dataset", source
    if isinstance(source, DatasetDict):
        return "a DatasetDict", datasets.concatenate_datasets(list(source.values()))
    if isinstance(source, Mapping):
        return "a mapping", _mapping_labels(source)
    if not isinstance(source, (str, os.PathLike)):
        raise SVPConfigError(
            f"labels must be a Dataset, a mapping, a file, a folder or a Hub dataset id, got {type(source).__name__}"
        )
    path = os.fspath(source)
    try:
        if os.path.isfile(path):
            ext = os.path.splitext(path)[1].lower()
            builder = _BUILDER_BY_EXTENSION.get(ext)
            if builder is None:
                raise SVPConfigError(
                    f"cannot read labels from {path!r}: use a .csv, .json, .jsonl, .parquet or .arrow file"
                )
            return path, datasets.load_dataset(builder, data_files=path, split="train")
        if os.path.isdir(path):
            if os.path.isfile(os.path.join(path, "dataset_info.json")) or os.path.isfile(
                os.path.join(path, "dataset_dict.json")
            ):
                loaded = datasets.load_from_disk(path)
            else:
                loaded = datasets.load_dataset(path)
        else:
            loaded = datasets.load_dataset(path, token=token)
    except SVPConfigError:
        raise
    except Exception as err:  # not found, offline, private, unreadable: one clear error naming the source
        where = "a local file or folder" if os.path.exists(path) else "not a local file or folder; as a Hub dataset id"
        raise SVPConfigError(f"could not read labels from {path!r} ({where}: {type(err).__name__}: {err})") from err
    if isinstance(loaded, DatasetDict):
        loaded = datasets.concatenate_datasets(list(loaded.values()))
    return path, loaded


@quiet_datasets()
def _mapping_labels(source: Mapping) -> Dataset:
    """A return given as ``{svp_index: label}`` as a Dataset: integer keys (or their decimal strings, as JSON writes
    them), labels all class names or all class ids (``None`` for not answered yet)."""
    ids = []
    for key in source:
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
            ids.append(int(key))
        elif isinstance(key, str) and key.strip().isdigit():
            ids.append(int(key))
        else:
            raise SVPConfigError(
                f"labels from a mapping: its keys must be svp_index values (integer row ids of an asked batch), got "
                f"{key!r}; give {{svp_index: label}}"
            )
    values = [None if v is None else v.item() if isinstance(v, np.generic) else v for v in source.values()]
    kinds = {type(v) for v in values if v is not None}
    if kinds and not (kinds <= {str} or kinds <= {int, float}):
        raise SVPConfigError(
            f"labels from a mapping: labels must be all class names or all class ids, got {sorted(k.__name__ for k in kinds)}"
        )
    label = Value("string") if kinds <= {str} else Value("float64")
    return Dataset.from_dict(
        {INDEX_COLUMN: ids, "label": values}, features=Features({INDEX_COLUMN: Value("int64"), "label": label})
    )


def read_labels(
    source: LabelsSource, state: LabellingState, token: Optional[str] = None
) -> Tuple[str, np.ndarray, np.ndarray]:
    """The `svp_index` and class id (-1: not answered) of every row of a return of labels."""
    name, data = _read_source(source, token)
    column = state.label_column if state.label_column in data.column_names else "label"
    missing = [c for c in (INDEX_COLUMN, column) if c not in data.column_names]
    if missing:
        raise SVPConfigError(
            f"labels from {name}: no column {' or '.join(repr(c) for c in missing)} (found {data.column_names}); a "
            f"return needs {INDEX_COLUMN!r} and {column!r} (a class name or id)"
        )
    table = data.with_format("arrow")
    index = table[INDEX_COLUMN]
    if index.null_count:
        raise SVPConfigError(f"labels from {name}: {index.null_count} row(s) have no {INDEX_COLUMN}")
    ids = np.asarray(index.to_numpy(zero_copy_only=False))
    if ids.dtype.kind not in "iuf" or (ids.dtype.kind == "f" and (ids != np.round(ids)).any()):
        raise SVPConfigError(f"labels from {name}: {INDEX_COLUMN} must hold integer row ids")
    feature = data.features[column]
    if isinstance(feature, ClassLabel):  # map through the return's own class names
        codes = np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=np.float64)
        values = pa.array([None if np.isnan(c) or c < 0 else feature.names[int(c)] for c in codes], type=pa.string())
    else:
        values = table[column]
    labels = _label_ids(values, state.class_names, f"labels from {name}")
    return name, ids.astype(np.int64), labels


def _content_hash(ids: np.ndarray, labels: np.ndarray) -> str:
    answered = labels >= 0
    pairs = np.stack([ids[answered], labels[answered]], axis=1)
    pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))] if len(pairs) else pairs
    return hashlib.sha256(np.ascontiguousarray(pairs, dtype=np.int64).tobytes()).hexdigest()


def _examples(ids) -> str:
    ids = sorted(int(i) for i in ids)
    return ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")


def check_returns(
    state: LabellingState, returns: List[Tuple[str, np.ndarray, np.ndarray]]
) -> Tuple[np.ndarray, np.ndarray]:
    """Check returns of labels against the session; the answered ids and labels to merge. Raises
    :class:`SVPConfigError` naming the first problem found: ids never asked for, an id returned twice (or with
    conflicting labels), labels out of range, rows labelled already (a batch answered twice)."""
    asked = state.asked
    given = {int(i) for b in state.batches if b.get("given") for i in b["ids"]}
    all_ids = np.concatenate([r[1] for r in returns]) if returns else np.zeros(0, dtype=np.int64)
    all_labels = np.concatenate([r[2] for r in returns]) if returns else np.zeros(0, dtype=np.int64)
    names = ", ".join(r[0] for r in returns)
    unknown = [int(i) for i in np.unique(all_ids) if int(i) not in asked or int(i) in given]
    if unknown:
        raise SVPConfigError(
            f"labels from {names}: {len(unknown)} svp_index value(s) were never asked for (e.g. {_examples(unknown)}); "
            f"a return answers rows of the batches in {TO_LABEL_DIR}/ (pool of {state.pool_size} rows, rounds asked: "
            f"{state.summary()['rounds_asked']}). Nothing was merged."
        )
    answered = all_labels >= 0
    ids, labels = all_ids[answered], all_labels[answered]
    bad = (labels >= len(state.class_names)) | (labels < 0)
    negative = all_labels < -1
    if bad.any() or negative.any():
        shown = sorted({int(v) for v in np.concatenate([labels[bad], all_labels[negative]])})
        shown = ["negative" if v < -1 else v for v in shown]
        raise SVPConfigError(
            f"labels from {names}: {int(bad.sum() + negative.sum())} label(s) out of range (e.g. {shown[:5]}); class "
            f"ids are 0 to {len(state.class_names) - 1} ({state.class_names}). Nothing was merged."
        )
    values, counts = np.unique(ids, return_counts=True)
    repeated = values[counts > 1]
    if len(repeated):
        conflicting = [int(i) for i in repeated if len(set(labels[ids == i].tolist())) > 1]
        what = (
            f"with conflicting labels ({len(conflicting)} of them, e.g. {_examples(conflicting)})"
            if conflicting
            else "more than once"
        )
        raise SVPConfigError(
            f"labels from {names}: {len(repeated)} svp_index value(s) are returned {what} (e.g. {_examples(repeated)}); "
            "return each row once. Nothing was merged."
        )
    already = [int(i) for i in ids if int(i) in state.labels]
    if already:
        rounds = sorted({asked[i] for i in already})
        raise SVPConfigError(
            f"labels from {names}: {len(already)} row(s) are labelled already (e.g. svp_index {_examples(already)}, "
            f"round(s) {rounds}): a batch answered twice? Labels once merged are not replaced. Nothing was merged."
        )
    return ids, labels


def tell(
    output_dir: Union[str, os.PathLike],
    labels: Union[LabelsSource, Sequence[LabelsSource]],
    *,
    token: Optional[str] = None,
) -> Dict[str, Any]:
    """Merge returned labels into the labelling session in `output_dir`; returns the session's summary.

    `labels` is a ``datasets.Dataset``, a mapping ``{svp_index: label}``, a file ``datasets`` reads (CSV, JSON
    Lines, Parquet, ...), a dataset folder or a Hub dataset id (`token` for a private one), or a list of them. Each
    has an ``svp_index`` column and a ``label`` column (or the session's label column name) holding class names or
    ids; rows with an empty label are not answered yet, so a batch may come back in parts. Every return is checked
    first (ids of an asked batch, each once, labels in range, not labelled already) and nothing is merged when a
    check fails (:class:`SVPConfigError`). Merging the very same return again (e.g. after a kill) changes nothing.
    """
    output_dir = os.fspath(output_dir)
    state = LabellingState.load(output_dir)
    sources = list(labels) if isinstance(labels, (list, tuple)) else [labels]
    returns, skipped = [], []
    merged_hashes = {m["sha256"] for m in state.merged}
    for source in sources:
        name, ids, values = read_labels(source, state, token)
        digest = _content_hash(ids, values)
        if digest in merged_hashes and (values >= 0).any():
            skipped.append(name)  # the same return merged before (a rerun after a kill): nothing new
            continue
        returns.append((name, ids, values, digest))
    ids, values = check_returns(state, [(n, i, v) for n, i, v, _ in returns])
    for name, _ids, r_values, digest in returns:
        n = int((r_values >= 0).sum())
        if n:
            state.merged.append({"source": name, "sha256": digest, "n_labels": n, "merged_at": time.time()})
    state.labels.update({int(i): int(v) for i, v in zip(ids, values)})
    if len(ids):
        state.save(output_dir)
    summary = state.summary()
    summary.update({"merged": int(len(ids)), "already_merged": skipped})
    return summary


# --- the batch to label -----------------------------------------------------------------------------------------------


@quiet_datasets()
def batch_rows(dataset: Dataset, ids: Sequence[int], round_: int, scores: Optional[Sequence[float]]) -> Dataset:
    """Rows `ids` of the pool `dataset` with their original columns (the label null), `svp_index`, `svp_round` and
    `svp_score`: a batch to label."""
    drop = [c for c in (INDEX_COLUMN, ROUND_COLUMN, SCORE_COLUMN) if c in dataset.column_names]
    rows = dataset.remove_columns(drop).select([int(i) for i in ids])
    if not len(rows):  # built afresh: columns cannot be added to an empty slice of a horizontally joined table
        rows = Dataset.from_dict({c: [] for c in rows.column_names}, features=rows.features)
    scores = [None] * len(ids) if scores is None else [None if s is None or np.isnan(s) else float(s) for s in scores]
    rows = rows.add_column(INDEX_COLUMN, [int(i) for i in ids], feature=Value("int64"))
    rows = rows.add_column(ROUND_COLUMN, [int(round_)] * len(ids), feature=Value("int64"))
    return rows.add_column(SCORE_COLUMN, scores, feature=Value("float64"))


def _batch_card(rows: Dataset, round_: int, state: LabellingState) -> str:
    return (
        f"---\ntags:\n- svp-hf\n- active-learning\n- to-label\n---\n\n# Rows to label, round {round_}\n\n"
        f"{len(rows)} rows picked by svp_hf's active learning for labelling. Fill in `{state.label_column}` (a class name "
        f"or id; classes: {', '.join(state.class_names)}) and return `{INDEX_COLUMN}` with `{state.label_column}`.\n"
    )


@quiet_datasets()
def write_batch(output_dir: str, rows: Dataset, round_: int, state: LabellingState) -> Dict[str, str]:
    """Write a batch to label as ``to_label/round_<k>/`` (a dataset folder: ``datasets.load_dataset`` reads it) and
    ``to_label/round_<k>.csv`` (images saved as PNG files under ``to_label/round_<k>_images/``, the CSV holding their
    relative paths), each under a temporary name first. Returns the paths."""
    paths = batch_paths(output_dir, round_)
    root = os.path.dirname(paths["folder"])
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp-", dir=root)
    try:
        write_dataset_folder(os.path.join(tmp, "folder"), {"train": rows}, _batch_card(rows, round_, state))
        table = rows.remove_columns([c for c, f in rows.features.items() if _is_file(f)])
        frame = table.to_pandas()
        image_columns = [c for c, f in rows.features.items() if _is_file(f) and type(f).__name__ == "Image"]
        if image_columns:
            images_dir = os.path.join(tmp, "images")
            os.makedirs(images_dir)
            for column in image_columns:
                files = []
                for i, image in zip(rows[INDEX_COLUMN], rows[column]):
                    name = f"{i}.png" if len(image_columns) == 1 else f"{i}_{column}.png"
                    image.save(os.path.join(images_dir, name))
                    files.append(f"{os.path.basename(paths['images'])}/{name}")
                frame.insert(list(rows.column_names).index(column), column, files)
        frame.to_csv(os.path.join(tmp, "batch.csv"), index=False)
        if image_columns:
            replace_path(os.path.join(tmp, "images"), paths["images"])
        replace_path(os.path.join(tmp, "folder"), paths["folder"])
        replace_path(os.path.join(tmp, "batch.csv"), paths["csv"])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not image_columns:
        paths.pop("images")
    return paths


def _is_file(feature) -> bool:
    return getattr(feature, "decode", None) is not None and hasattr(feature, "embed_storage")


__all__ = [
    "LabellingState",
    "tell",
    "labelling_dataset",
    "has_missing_labels",
    "start_session",
    "check_session_dataset",
    "check_session_settings",
    "check_session_dir",
    "filled_dataset",
    "labelled_rows",
    "read_labels",
    "check_returns",
    "batch_rows",
    "write_batch",
    "batch_paths",
    "state_path",
    "checkpoint_path",
]
