"""Output stage: write a run's results into `output_dir` atomically.

Layout::

    output_dir/
      dataset/                # what push_to_hub uploads; datasets.load_dataset(output_dir + "/dataset") loads it
        README.md             # the dataset card (svp_hf.publish.card) with the report
        data/<split>-00000-of-0000N.parquet   # each split in shards of at most max_shard_size (500MB by default)
        scores/proxy.parquet  # every training row's scores (and scores/target.parquet when the target scored too)
        plots/*.png           # the report's plots
      scores.parquet          # svp_index, label, one column per scored method
      target_scores.parquet   # the same from the target trained on the whole split (score_with_target)
      report.md               # the report, for reading next to the output
      metrics.json            # sizes, method, fraction, accuracies, timings, provenance

Everything is first written to a temporary folder inside `output_dir` (``.svp-tmp-*``, removed on success and on
failure, and any left by a killed run removed by the next one) and moved into place only when complete, so a failed or
interrupted run never leaves a half-written `dataset/`. `metrics.json` is the completion marker: it is removed before
the previous result's files are replaced and written last, listing every result file (``result_files``; names only,
so that two identical runs write identical metrics) with each file's size and sha256 (``result_file_digests``). A
result without it, whose files differ from its list (a run killed during the final moves) or whose content differs
from its digests (a damaged shard) is incomplete: :func:`check_complete` says so, and ``push_to_hub`` refuses to
upload it.

Every path written is checked to stay inside `output_dir`; split names must be plain names (``^\\w+(\\.\\w+)*$``,
as ``datasets`` requires).
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import numpy as np
from datasets import Dataset
from filelock import FileLock, Timeout

from .._compat import embed_table_storage_fn
from ..config.checks import DEFAULT_MAX_SHARD_SIZE, SPLIT_NAME, check_split_name, parse_size
from ..errors import SVPConfigError
from ..files import atomic_write
from ..utils.progress import quiet_datasets
from .card import dataset_card
from .report import ReportInputs, render_report, write_plots

RESULT_NAMES = (
    "dataset",
    "scores.parquet",
    "target_scores.parquet",
    "selected.parquet",
    "report.md",
    "rounds.json",
    "recipe.yaml",
    "metrics.json",
)
# Result files the jobs pass to write_run as `extra_files` (the active-learning rounds, the recipe as run).
EXTRA_NAMES = ("rounds.json", "recipe.yaml")
DATASET_DIR = "dataset"
SCORES_FILE = "scores.parquet"
TARGET_SCORES_FILE = "target_scores.parquet"
REPORT_FILE = "report.md"
PLOTS_DIR = "plots"
# Inside the dataset folder: one score table per scorer; no split pattern of `datasets` matches these names.
DATASET_SCORES = {"proxy": "scores/proxy.parquet", "target": "scores/target.parquet"}
METRICS_FILE = "metrics.json"
TMP_PREFIX = ".svp-tmp-"
# metrics.json's list of the result's files (paths relative to output_dir); the card (dataset/README.md) is left
# out: publishing re-renders it with the Hub id.
RESULT_FILES_KEY = "result_files"
# metrics.json's record of each of those files' content: {"bytes": size, "sha256": hex digest}.
RESULT_DIGESTS_KEY = "result_file_digests"
_DIGEST_CHUNK = 2**20


# The lock a run holds on its output_dir while it runs (an OS lock: released when its process ends, however it ends).
LOCK_FILE = ".svp-lock"


class OutputLock:
    """`output_dir`'s lock, taken at once or refused: one run at a time writes there. It is an OS file lock
    (``filelock``), so a run that was killed leaves no lock behind, only its file, which the next run takes over.
    :meth:`release` removes the file (and `output_dir`, when this run made it and left it empty)."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._made = not os.path.exists(output_dir)
        os.makedirs(output_dir, exist_ok=True)
        self._lock = FileLock(self.path, timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            raise SVPConfigError(
                f"output_dir {output_dir!r} is in use by another svp_hf run (it holds {LOCK_FILE}); wait for that run "
                "to finish, or choose another output_dir"
            ) from None

    def release(self) -> None:
        """Give the lock up: its file goes while it is still held (a run waiting on it then locks a new one), then
        the folder if this run made it and nothing else is in it."""
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        if self._made:
            try:
                os.rmdir(self.output_dir)
            except OSError:
                pass  # it holds the result (or anything else): it stays
        self._lock.release()


def check_inside(root: str, path: str) -> str:
    """`path` if it resolves inside the folder `root`; a clear error otherwise (nothing is written outside it)."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root or real == real_root:
        raise SVPConfigError(f"refusing to write {path!r}: it is not inside {root!r}")
    return path


def _nearest_existing(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def check_writable(output_dir: str) -> None:
    """A clear error, before any work, when `output_dir` (or the folder it would be made in) cannot be written: a
    temporary folder is made there and removed."""
    where = _nearest_existing(output_dir)
    if not os.path.isdir(where):
        raise SVPConfigError(f"output_dir {output_dir!r} cannot be made: {where!r} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=where))
    except OSError as err:
        raise SVPConfigError(
            f"output_dir {output_dir!r} is not writable ({'in ' + repr(where) + ': ' if where != os.path.abspath(output_dir) else ''}"
            f"{type(err).__name__}: {err.strerror or err}); choose a folder you can write to"
        ) from None


def remove_stale_tmp(output_dir: str) -> List[str]:
    """Remove the ``.svp-tmp-*`` folders a killed run left in `output_dir`; returns what was removed."""
    stale = sorted(glob.glob(os.path.join(glob.escape(output_dir), TMP_PREFIX + "*")))
    for path in stale:
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    return stale


def check_output_dir(output_dir: str, overwrite: bool, splits=()) -> None:
    """Raise before any work if `output_dir` already holds a result and `overwrite` is not set, cannot be written, or
    one of the split names `splits` to be written there is not a plain name (``None`` entries are skipped)."""
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise SVPConfigError(f"output_dir {output_dir!r} exists and is not a folder")
    for split in splits:
        if split is not None:
            check_split_name(split)
    check_writable(output_dir)
    existing = [n for n in RESULT_NAMES if os.path.exists(os.path.join(output_dir, n))]
    if existing and not overwrite:
        raise SVPConfigError(
            f"output_dir {output_dir!r} already holds a result ({', '.join(existing)}); "
            "set overwrite_output_dir to replace it, or choose another output_dir"
        )


def _has_files(dataset: Dataset) -> bool:
    """Whether `dataset` has image/audio columns whose files may be referenced by path."""
    return any(
        getattr(f, "decode", None) is not None and hasattr(f, "embed_storage") for f in dataset.features.values()
    )


def _embed(dataset: Dataset) -> Dataset:
    """Embed image/audio bytes referenced by path, so the parquet files stand alone (in memory: call it per shard)."""
    if not _has_files(dataset):
        return dataset
    fmt = dataset.format
    with quiet_datasets():
        embedded = dataset.with_format("arrow").map(
            embed_table_storage_fn(), batched=True, keep_in_memory=True, desc="embedding files"
        )
    return embedded.with_format(**fmt)


def default_card(splits: Dict[str, Dataset], metadata: Optional[Dict[str, Any]] = None) -> str:
    """The dataset card for `splits`, from whatever run metadata is known (see :func:`svp_hf.publish.card.dataset_card`)."""

    metrics = dict(metadata or {})
    metrics.setdefault("splits", {name: len(ds) for name, ds in splits.items()})
    return str(dataset_card(metrics, has_scores=False))


def _nbytes(dataset: Dataset, sample_size: int = 256) -> float:
    """About how large `dataset`'s rows are once written, files embedded: the Arrow size of its rows (through its
    indices mapping, if any), or, when files may be referenced by path, that of an evenly spread embedded sample."""
    if not len(dataset):
        return 0.0
    if _has_files(dataset):
        rows = np.unique(np.linspace(0, len(dataset) - 1, num=min(len(dataset), sample_size)).round().astype(np.int64))
        with quiet_datasets():
            sample = _embed(dataset.select(rows))
        return sample.data.nbytes / len(sample) * len(dataset)
    return dataset.data.nbytes * len(dataset) / len(dataset.data)


def write_split(folder: str, split: str, dataset: Dataset, max_shard_size=DEFAULT_MAX_SHARD_SIZE) -> List[str]:
    """Write `dataset` as ``folder/<split>-0000i-of-0000n.parquet`` shards of at most about `max_shard_size`, rows in
    order, each with its files embedded (one shard in memory at a time); the names ``datasets`` maps to `split`.
    Returns the file names."""
    check_split_name(split)
    num_shards = max(1, min(len(dataset), math.ceil(_nbytes(dataset) / parse_size(max_shard_size))))
    names = [f"{split}-{i:05d}-of-{num_shards:05d}.parquet" for i in range(num_shards)]
    for i, name in enumerate(names):
        with quiet_datasets():
            shard = dataset.shard(num_shards=num_shards, index=i, contiguous=True) if num_shards > 1 else dataset
            _embed(shard).to_parquet(check_inside(folder, os.path.join(folder, name)))
    return names


def write_dataset_folder(
    path: str,
    splits: Dict[str, Dataset],
    card: Optional[str] = None,
    *,
    scores: Optional[Dict[str, Optional[Dataset]]] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> None:
    """Write `splits` as parquet shards of at most `max_shard_size` under `path/data/` with a README.md card;
    loadable with ``load_dataset(path)``. `scores` maps ``"proxy"``/``"target"`` to score tables written under
    `path/scores/`."""
    parse_size(max_shard_size)  # before the folder is made
    for split in splits:
        check_split_name(split)
    os.makedirs(os.path.join(path, "data"), exist_ok=True)
    for split, ds in splits.items():
        write_split(os.path.join(path, "data"), split, ds, max_shard_size)
    for which, table in (scores or {}).items():
        if table is not None:
            os.makedirs(os.path.dirname(os.path.join(path, DATASET_SCORES[which])), exist_ok=True)
            with quiet_datasets():
                table.to_parquet(os.path.join(path, DATASET_SCORES[which]))
    with open(os.path.join(path, "README.md"), "w", encoding="utf-8") as f:
        f.write(card if card is not None else default_card(splits))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else ("inf" if obj > 0 else "-inf")
    return obj


def write_json(path: str, obj: Any, *, atomic: bool = False) -> None:
    """`obj` as the JSON file `path` (numpy values as Python's, non-finite floats as ``null``/``"inf"``/``"-inf"``);
    with `atomic`, under a temporary name of this process first, moved into place when complete
    (:func:`svp_hf.files.atomic_write`: for a file written outside a result's temporary folder)."""

    def write(target: str) -> None:
        with open(target, "w", encoding="utf-8") as f:
            json.dump(_jsonable(obj), f, indent=2, sort_keys=False)
            f.write("\n")

    if atomic:
        atomic_write(path, write)
    else:
        write(path)


def write_run(
    output_dir: str,
    *,
    splits: Dict[str, Dataset],
    scores: Dataset,
    metrics: Dict[str, Any],
    card: Optional[str] = None,
    overwrite: bool = False,
    extra_files: Optional[Dict[str, Any]] = None,
    target_scores: Optional[Dataset] = None,
    repo_id: Optional[str] = None,
    max_shard_size=DEFAULT_MAX_SHARD_SIZE,
) -> Dict[str, Any]:
    """Write dataset/ (card, splits, score tables, plots), scores.parquet, report.md, metrics.json (and any
    `extra_files` as JSON) atomically into `output_dir`. Without an explicit `card`, the card and report are made
    from `metrics` (see :mod:`svp_hf.publish.card`, :mod:`svp_hf.publish.report`). Returns the metrics as written."""

    check_output_dir(output_dir, overwrite, splits)
    parse_size(max_shard_size)
    for name in extra_files or {}:
        stem, ext = os.path.splitext(name)
        if (
            (name in RESULT_NAMES and name not in EXTRA_NAMES)
            or not SPLIT_NAME.match(stem)
            or ext not in (".json", ".yaml")
        ):
            raise SVPConfigError(f"extra file name {name!r} must be a plain new file name ending in .json or .yaml")
    os.makedirs(output_dir, exist_ok=True)
    remove_stale_tmp(output_dir)  # left by a run killed while writing
    metrics = dict(metrics, splits={name: len(ds) for name, ds in splits.items()})
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=output_dir)
    try:
        dataset_dir = os.path.join(tmp, DATASET_DIR)
        figures = write_plots(os.path.join(dataset_dir, PLOTS_DIR), ReportInputs(metrics, scores, target_scores))
        metrics["report_figures"] = [vars(f) for f in figures]
        if card is None:
            card = str(dataset_card(metrics, figures, repo_id=repo_id))
        write_dataset_folder(
            dataset_dir, splits, card, scores={"proxy": scores, "target": target_scores}, max_shard_size=max_shard_size
        )
        with quiet_datasets():
            scores.to_parquet(os.path.join(tmp, SCORES_FILE))
            if target_scores is not None:
                target_scores.to_parquet(os.path.join(tmp, TARGET_SCORES_FILE))
        with open(os.path.join(tmp, REPORT_FILE), "w", encoding="utf-8") as f:
            f.write("# svp_hf report\n\n" + render_report(metrics, figures, image_dir=f"{DATASET_DIR}/{PLOTS_DIR}"))
        for name, obj in (extra_files or {}).items():
            _write_file(check_inside(tmp, os.path.join(tmp, name)), obj)
        _commit(tmp, output_dir, metrics)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def _write_file(path: str, obj: Any) -> None:
    if isinstance(obj, Dataset):
        with quiet_datasets():
            obj.to_parquet(path)
    elif isinstance(obj, str):  # already formatted (e.g. YAML)
        with open(path, "w", encoding="utf-8") as f:
            f.write(obj)
    else:
        write_json(path, obj)


def write_files(
    output_dir: str, files: Dict[str, Any], metrics: Dict[str, Any], *, overwrite: bool = False
) -> Dict[str, Any]:
    """Write `files` (name -> a ``Dataset`` written as parquet, text, or a JSON-able object) and metrics.json
    atomically into `output_dir`, replacing an earlier result there: the results of jobs that write no ``dataset/``
    (streamed scoring). Returns the metrics as written."""
    check_output_dir(output_dir, overwrite)
    for name in files:
        if name not in RESULT_NAMES or name == METRICS_FILE:
            raise SVPConfigError(f"{name!r} is not a result file name ({', '.join(RESULT_NAMES)})")
    os.makedirs(output_dir, exist_ok=True)
    remove_stale_tmp(output_dir)
    metrics = dict(metrics)
    tmp = tempfile.mkdtemp(prefix=TMP_PREFIX, dir=output_dir)
    try:
        for name, obj in files.items():
            _write_file(check_inside(tmp, os.path.join(tmp, name)), obj)
        _commit(tmp, output_dir, metrics)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return metrics


def _commit(tmp: str, output_dir: str, metrics: Dict[str, Any]) -> None:
    """Write metrics.json (listing the result's files) into `tmp`, then replace the result in `output_dir` with
    `tmp`'s files. The previous metrics.json goes first and the new one comes last, so a metrics.json always belongs
    to the files next to it: a run killed in between leaves none (an incomplete result), never an old one describing
    new files."""
    metrics[RESULT_FILES_KEY] = result_files(tmp)
    metrics[RESULT_DIGESTS_KEY] = {name: file_digest(os.path.join(tmp, name)) for name in metrics[RESULT_FILES_KEY]}
    write_json(os.path.join(tmp, "metrics.json"), metrics)
    stale_metrics = os.path.join(output_dir, "metrics.json")
    if os.path.exists(stale_metrics):
        os.remove(stale_metrics)
    for name in RESULT_NAMES:
        stale = os.path.join(output_dir, name)
        if name != "metrics.json" and not os.path.exists(os.path.join(tmp, name)) and os.path.exists(stale):
            shutil.rmtree(stale) if os.path.isdir(stale) else os.remove(stale)
    names = [n for n in os.listdir(tmp) if n != "metrics.json"] + ["metrics.json"]
    for name in names:
        dest = check_inside(output_dir, os.path.join(output_dir, name))
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        os.replace(os.path.join(tmp, name), dest)


def result_files(output_dir: str) -> List[str]:
    """Every file of the result in `output_dir` (paths relative to it, with ``/``), the card excepted, sorted."""
    files: Dict[str, None] = {}
    for name in RESULT_NAMES + tuple(n for n in sorted(os.listdir(output_dir)) if n.endswith(".json")):
        path = os.path.join(output_dir, name)
        if name == METRICS_FILE or name in files or not os.path.exists(path):
            continue
        if os.path.isfile(path):
            files[name] = None
            continue
        for root, _, names in os.walk(path):
            for n in names:
                rel = os.path.relpath(os.path.join(root, n), output_dir).replace(os.sep, "/")
                if rel != f"{DATASET_DIR}/README.md":
                    files[rel] = None
    return sorted(files)


def file_digest(path: str) -> Dict[str, Any]:
    """What metrics.json records of a result file's content: its size in bytes and its sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_DIGEST_CHUNK), b""):
            digest.update(chunk)
    return {"bytes": os.path.getsize(path), "sha256": digest.hexdigest()}


def changed_files(output_dir: str, recorded: Dict[str, Any]) -> List[str]:
    """The files of `recorded` (name -> :func:`file_digest`) whose size or content in `output_dir` differs, sorted
    (sizes first: a file of another size is not read)."""
    changed = []
    for name, want in sorted(recorded.items()):
        path = os.path.join(output_dir, name)
        if not isinstance(want, dict) or os.path.getsize(path) != want.get("bytes") or file_digest(path) != want:
            changed.append(name)
    return changed


def check_complete(output_dir: str) -> Dict[str, Any]:
    """The metrics of the complete result in `output_dir`; a clear error when it is incomplete (no metrics.json: a
    run failed or was killed while moving its files into place), its files differ from those metrics.json lists
    (files of two runs mixed, or added or removed since), or a file's size or sha256 differs from what metrics.json
    records (a damaged or replaced shard)."""
    path = os.path.join(output_dir, METRICS_FILE)
    if not os.path.isfile(path):
        raise SVPConfigError(
            f"{output_dir!r} holds no complete svp_hf result: metrics.json, written last, is missing (a run failed or "
            "was killed while writing it); run the job again with overwrite_output_dir"
        )
    with open(path, encoding="utf-8") as f:
        metrics = json.load(f)
    listed = metrics.get(RESULT_FILES_KEY)
    if not isinstance(listed, list):
        raise SVPConfigError(
            f"{output_dir!r}: metrics.json lists no result files (written by an older svp_hf, or not by svp_hf); "
            "run the job again with overwrite_output_dir to publish it"
        )
    found = [k for k in result_files(output_dir) if k in listed or not k.endswith(".json") or "/" in k]
    missing = sorted(set(listed) - set(found))
    extra = sorted(set(found) - set(listed))
    if missing or extra:
        problems = [f"{what} {names[:5]}" for what, names in (("missing", missing), ("not listed", extra)) if names]
        raise SVPConfigError(
            f"{output_dir!r} holds an incomplete or mixed svp_hf result: its files differ from those metrics.json "
            f"lists ({'; '.join(problems)}); run the job again with overwrite_output_dir"
        )
    recorded = metrics.get(RESULT_DIGESTS_KEY)
    if not isinstance(recorded, dict) or set(recorded) != set(listed):
        raise SVPConfigError(
            f"{output_dir!r}: metrics.json records no size and sha256 of the result's files (written by an older "
            "svp_hf); run the job again with overwrite_output_dir to publish it"
        )
    changed = changed_files(output_dir, recorded)
    if changed:
        raise SVPConfigError(
            f"{output_dir!r} holds a damaged svp_hf result: the content of {changed[:5]} differs from the size and "
            "sha256 metrics.json records; run the job again with overwrite_output_dir"
        )
    return metrics


def _read_scores(path: str) -> Dataset:
    with quiet_datasets():
        return Dataset.from_parquet(path)


def load_scores(
    source: str, *, which: str = "proxy", revision: Optional[str] = None, token: Optional[str] = None
) -> Dataset:
    """Read a run's per-example scores back, to select again without retraining (:func:`svp_hf.select`).

    `source` is an ``output_dir``, a dataset folder written by svp_hf (``output_dir/dataset``), or the Hub id of a
    dataset pushed by svp_hf (read with ``datasets.load_dataset``; `revision` and `token` pass through).
    `which` is ``"proxy"`` (the selection's scores) or ``"target"`` (the target's, when it scored the split too).
    Returns ``svp_index``, ``label`` and one column per scored method.
    """
    import datasets

    if which not in DATASET_SCORES:
        raise SVPConfigError(f"which must be one of {sorted(DATASET_SCORES)}, got {which!r}")
    source = os.fspath(source)
    if os.path.isdir(source):
        top_level = {"proxy": SCORES_FILE, "target": TARGET_SCORES_FILE}[which]
        candidates = [
            os.path.join(source, top_level),
            os.path.join(source, DATASET_DIR, DATASET_SCORES[which]),
            os.path.join(source, DATASET_SCORES[which]),
        ]
        for path in candidates:
            if os.path.isfile(path):
                return _read_scores(path)
        raise SVPConfigError(f"no {which} scores in {source!r} (looked for {', '.join(candidates)})")
    try:
        return datasets.load_dataset(
            source, data_files={"train": DATASET_SCORES[which]}, split="train", revision=revision, token=token
        )
    except Exception as err:  # not found, offline, private: one clear error naming the source
        raise SVPConfigError(
            f"could not read {which} scores from {source!r} (not a local folder; as a Hub dataset: "
            f"{type(err).__name__}: {err})"
        ) from err


__all__ = [
    "check_output_dir",
    "OutputLock",
    "LOCK_FILE",
    "check_complete",
    "file_digest",
    "write_files",
    "check_inside",
    "result_files",
    "write_dataset_folder",
    "write_split",
    "write_run",
    "write_json",
    "default_card",
    "load_scores",
    "RESULT_NAMES",
    "DATASET_SCORES",
]
