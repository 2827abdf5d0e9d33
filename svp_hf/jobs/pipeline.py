"""The job pipeline that every job (:mod:`svp_hf.coreset`, :mod:`svp_hf.active`) runs through.

A job declares the recipe keys it reads (:class:`Job`); :func:`main` parses ``[RECIPE.yaml] [--key value ...]``
against them, refusing any other key by name, and maps failures to exit codes (:mod:`svp_hf.errors`). Inside the job,
a :class:`JobRun` does what is the same for every job, in this order:

1. pre-flight: the output folder is writable, free (or ``overwrite_output_dir``) and holds no run of another job,
   and this run takes its lock (``output_dir/.svp-lock``, held until the run ends: a second run on the same
   output_dir is refused); the Hub target is valid, the device settings make sense (a warning for fp16 on a CPU);
   the job then loads and inspects its data (:func:`load_inspected_splits`) and checks everything else that needs
   no training. A run refused here leaves nothing behind (the lock file goes, and the folder if the run made it);
2. :meth:`JobRun.begin`: trackers, and the checkpoints under ``output_dir/checkpoints`` (resumed when they belong to
   a run with the same settings, discarded when stale); a run that fails before making progress leaves no checkpoint
   behind to block the corrected rerun;
3. the job's own work;
4. :meth:`JobRun.finish`: the result written atomically (``dataset/`` with card, scores and plots, ``scores.parquet``,
   ``report.md``, ``metrics.json``, ``recipe.yaml``), a summary naming those files, the Hub push, the checkpoints
   discarded (unless ``keep_checkpoints``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import datasets
import yaml

from ..active.labelling import LabellingState
from ..config.arguments import SECRET_KEYS, DataArguments, RunArguments, SelectionArguments
from ..config.checks import parse_size
from ..config.parser import parse_args, redact, redact_values, resolved_recipe
from ..data import image_cache
from ..data.columns import INDEX_COLUMN, SCORE_COLUMN, inspect_dataset, keep_previous_columns
from ..data.images import check_images, small_images
from ..data.loading import get_split, hold_out, load_data
from ..engine.checkpoint import (
    CHECKPOINTS_DIR,
    RUN_SETTINGS,
    changed_run_settings,
    check_run_settings,
    discard,
    has_progress,
    on_main,
)
from ..engine.training import make_accelerator
from ..errors import EXIT_CONFIG, EXIT_RUNTIME, SVPConfigError, SVPRuntimeError
from ..publish.card import source_metadata
from ..publish.hub import check_hub_target, known_tokens, offline_if_unreachable, push_to_hub
from ..publish.output import METRICS_FILE, OutputLock, check_output_dir, write_files, write_json, write_run
from ..stages.orchestrator import per_class_counts
from ..stages.preflight import check_models_against_data
from ..stages.roles import device_settings
from ..utils.device import available_cpus, check_batch_memory
from ..utils.log import get_logger
from ..version import __version__

logger = get_logger(__name__)

RECIPE_FILE = "recipe.yaml"
# Settings that change where and how a result is written or published, never what is computed: a resumed run may
# change them, and none of them (the Hub token least of all) is written into the checkpoints.
UNRECORDED_SETTINGS = (
    "output_dir",
    "overwrite_output_dir",
    "resume",
    "report_to",
    "keep_checkpoints",
    "max_shard_size",
    "push_to_hub",
    "hub_dataset_id",
    "hub_private",
    "hub_overwrite",
    "pin_memory",
    "image_cache_max_memory",
    *SECRET_KEYS,
)


@dataclass(frozen=True)
class Job:
    """A job the CLI runs: its name, the dataclasses its recipe fills, the recipe keys it reads, and its body
    (``run(*instances, command=...) -> metrics``)."""

    name: str
    dataclass_types: Tuple[type, ...]
    keys: Tuple[str, ...]
    run: Callable[..., Dict[str, Any]]
    description: str = ""

    @property
    def prog(self) -> str:
        return f"svp_hf.{self.name}"


def job_keys(dataclass_types: Sequence[type], *, without: Sequence[str] = ()) -> Tuple[str, ...]:
    """Every field of `dataclass_types` except those in `without` (the keys a job does not read)."""
    keys = [f.name for dc in dataclass_types for f in dataclasses.fields(dc)]
    unknown = sorted(set(without) - set(keys))
    if unknown:
        raise ValueError(f"not recipe keys: {unknown}")
    return tuple(k for k in keys if k not in set(without))


# --- the command line --------------------------------------------------------------------------------------------------


def command_line(job: Job, argv: Sequence[str], secrets: Sequence[Optional[str]] = ()) -> str:
    """The command that ran `job`, as recorded in metrics.json and the card: every secret's value replaced by ``***``,
    whatever flag spelling carried it."""
    return redact(f"python -m {job.prog} " + " ".join(shlex.quote(a) for a in argv), secrets)


def _secrets(instances) -> List[str]:
    return [getattr(i, k) for i in instances for k in SECRET_KEYS if getattr(i, k, None)]


def main(job: Job, argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """``python -m svp_hf.JOB [RECIPE.yaml] [--key value ...]``: parse the recipe and flags into the job's
    dataclasses (only the keys it declares), run it, and exit 2 for bad input or 3 for a run that failed while
    working, with one line naming the problem."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # one line per checkpoint file is too many
    datasets.disable_progress_bars()  # one bar per map/filter/cast would interleave with the training bars
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        instances = parse_args(argv, job.dataclass_types, keys=job.keys, prog=f"python -m {job.prog}", job=job.prog)
        check_output_apart(*instances)
        return job.run(*instances, command=command_line(job, argv, known_tokens(*_secrets(instances))))
    except SVPConfigError as err:
        fail(f"{job.prog}: error: {err}", EXIT_CONFIG)
    except SVPRuntimeError as err:
        fail(f"{job.prog}: run failed: {err}", EXIT_RUNTIME)


# How long the first report of an error by a process of a launch keeps the others from printing it again.
REPORTED_SECONDS = 600


def first_report(line: str) -> bool:
    """Whether this process is the first of its launch to report `line` (always, outside a launch of several
    processes). The processes of one torchrun launch share its agent (their parent process) and run id; the first to
    fail with a line creates a marker file named after them and the line, and the others find it."""
    if int(os.environ.get("WORLD_SIZE", "1") or 1) < 2 or "TORCHELASTIC_RUN_ID" not in os.environ:
        return True
    key = f"{os.getppid()}\0{os.environ['TORCHELASTIC_RUN_ID']}\0{line}".encode()
    marker = os.path.join(tempfile.gettempdir(), f"svp-hf-reported-{hashlib.sha256(key).hexdigest()[:24]}")
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        try:
            return time.time() - os.path.getmtime(marker) > REPORTED_SECONDS  # a launch long gone, same parent pid
        except OSError:
            return True
    except OSError:
        return True


def fail(line: str, code: int) -> None:
    """Print `line` (once per launch: see :func:`first_report`) and exit with `code` (:mod:`svp_hf.errors`)."""
    if first_report(line):
        print(line, file=sys.stderr, flush=True)
    raise SystemExit(code) from None


# --- data -------------------------------------------------------------------------------------------------------------


def subsample(ds, n: Optional[int], seed: int):
    """A seeded random subset of `n` rows of `ds` (all of them when `n` is None or at least its length)."""
    return ds if n is None or n >= len(ds) else ds.shuffle(seed=seed).select(range(n)).flatten_indices()


def data_sources(data_args: DataArguments) -> List[str]:
    """What the recipe reads its data from: `dataset_name` and every path (or pattern) in `data_files`."""
    files = data_args.data_files
    if isinstance(files, dict):
        files = list(files.values())
    paths = []
    for entry in files if isinstance(files, list) else [files]:
        paths.extend(entry if isinstance(entry, list) else [entry])
    return [str(p) for p in [data_args.dataset_name, *paths] if p]


_GLOB = re.compile(r"[*?\[]")


def local_data_paths(data_args: DataArguments) -> List[str]:
    """The files and folders on this machine the recipe reads data from (a pattern's folder: ``data/*.parquet`` reads
    from ``data``); Hub ids, builder names and URLs are none."""
    paths = []
    for source in data_sources(data_args):
        if "://" in source:
            continue
        if _GLOB.search(source):
            source = os.path.dirname(_GLOB.split(source, 1)[0]) or "."
        if os.path.exists(source):
            paths.append(os.path.realpath(source))
    return paths


def check_output_apart(*instances) -> None:
    """A clear error, before anything is read or written, when `output_dir` is a folder the data is read from, lies
    inside one, or holds one: a run would read its own (or an earlier run's) outputs as data, or write among it."""
    data_args = next((i for i in instances if isinstance(i, DataArguments)), None)
    run_args = next((i for i in instances if isinstance(i, RunArguments)), None)
    if data_args is None or run_args is None:
        return
    output = os.path.realpath(run_args.output_dir)
    for path in local_data_paths(data_args):
        if output == path or os.path.commonpath([output, path]) in (output, path):
            how = "is" if output == path else "lies inside" if os.path.commonpath([output, path]) == path else "holds"
            raise SVPConfigError(
                f"output_dir {run_args.output_dir!r} {how} the data read from {path!r}: a run would read its outputs "
                "as data or write among it; choose an output_dir apart from the data"
            )


def use_hub_or_cache(names: Sequence[Optional[str]]) -> None:
    """Before `names` are fetched: when some would come from the Hub and it cannot be reached, read the local cache
    only (:func:`svp_hf.publish.hub.offline_if_unreachable`), so that the run fails fast instead of retrying every request."""
    reason = offline_if_unreachable(names)
    if reason is not None:
        logger.warning(
            f"the Hugging Face Hub cannot be reached ({reason}): reading Hub datasets and models from the local cache "
            "only, as with HF_HUB_OFFLINE=1"
        )


def load_splits(data_args: DataArguments, seed: int):
    """The training and evaluation splits; with `validation_split_percentage`, a dataset without `eval_split` (or
    whose `eval_split` is the training split) gets one held out of the training split."""
    use_hub_or_cache(data_sources(data_args))
    data = load_data(data_args.dataset_name, data_args.dataset_config_name, data_args.data_files)
    train = get_split(data, data_args.train_split, "training")
    evaluation = None
    eval_split = data_args.eval_split
    if (
        eval_split
        and data_args.validation_split_percentage
        and (eval_split not in data or eval_split == data_args.train_split)
    ):
        logger.info(
            f"holding out {data_args.validation_split_percentage}% of split {data_args.train_split!r} as the "
            f"evaluation split {eval_split!r}"
        )
        train, evaluation = hold_out(train, float(data_args.validation_split_percentage), seed, data_args.label_column)
    elif eval_split:
        evaluation = get_split(data, eval_split, "evaluation")
    train = subsample(train, data_args.max_train_samples, seed)
    if evaluation is not None:
        evaluation = subsample(evaluation, data_args.max_eval_samples, seed)
    return train, evaluation


# The column keys a modality's models read; the other modality's keys would be ignored, so they are refused.
MODALITY_COLUMNS = {"image": "image_column", "text": "text_column"}


def check_columns(data_args: DataArguments, modality: str) -> None:
    """A clear error when the recipe names the input column of the other modality than `modality` (the one its models
    read): ``image_column`` for a text proxy, ``text_column`` for an image one would be ignored."""
    for other, key in MODALITY_COLUMNS.items():
        if other != modality and getattr(data_args, key):
            raise SVPConfigError(
                f"{key} is set, but the models read {modality} ({MODALITY_COLUMNS.get(modality, 'their inputs')} "
                f"names their column): remove {key}, or choose a {other} proxy and target"
            )


def inspect_splits(
    train, evaluation, data_args: DataArguments, modality: str, models=(), *, trust_remote_code=False, **extra
):
    """The training split's columns inspected for `modality` (checked to be in the evaluation split too); each of
    `models` is checked against them before anything is trained."""
    check_columns(data_args, modality)
    columns = {k: getattr(data_args, k) for k in vars(data_args) if k.endswith("_column")}
    info = inspect_dataset(train, modality, **columns, **extra)
    use_hub_or_cache(models)
    check_models_against_data(info, models, trust_remote_code=trust_remote_code, evaluation=evaluation)
    return info


def load_inspected_splits(data_args: DataArguments, modality: str, seed: int, models=(), *, trust_remote_code=False):
    """:func:`load_splits`, then :func:`inspect_splits`: the splits and the training split's :class:`DataInfo`."""
    train, evaluation = load_splits(data_args, seed)
    info = inspect_splits(train, evaluation, data_args, modality, models, trust_remote_code=trust_remote_code)
    return train, evaluation, info


# A lower bound of the memory one row of a batch takes, before any model is made: every row's place in the batch
# plan, label and id; an image's uint8 pixels gathered and the float32 tensor the model reads (its activations come on
# top); a text row's one token id and offset at least.
ROW_OVERHEAD_BYTES = 32
IMAGE_BYTES_PER_VALUE = 1 + 4
TEXT_ROW_BYTES = 16
# The side of the smallest input a model is fed: images larger than the decode-once size are resized to the model's
# input, not known here.
SMALLEST_IMAGE_SIDE = 32


def row_bytes(info) -> int:
    """At least how many bytes one row of a batch of `info`'s data takes (see :data:`ROW_OVERHEAD_BYTES`)."""
    if info.modality == "image":
        height, width = info.extra["image_size"] if small_images(info) else (SMALLEST_IMAGE_SIDE, SMALLEST_IMAGE_SIDE)
        return ROW_OVERHEAD_BYTES + IMAGE_BYTES_PER_VALUE * int(info.extra["in_chans"]) * int(height) * int(width)
    return ROW_OVERHEAD_BYTES + TEXT_ROW_BYTES


def check_batches(info, sel_args: SelectionArguments, run_args: RunArguments, device) -> None:
    """Every batch size of the recipe (the proxy's, and the target's when one is trained) against the memory of this
    process on `device`, before anything is trained (:func:`svp_hf.utils.device.check_batch_memory`)."""
    sizes = {"batch_size": sel_args.batch_size}
    if run_args.target:
        sizes["target_batch_size"] = run_args.target_batch_size or sel_args.batch_size
    check_batch_memory(row_bytes(info), sizes, device)


def checked_images(train, evaluation, info, data_args: DataArguments, skip: bool):
    """The splits with every image checked to decode (the decode-once pass), before anything is trained or written:
    an ``SVPRuntimeError`` naming the rows and column that cannot be decoded, or, with `skip`, the splits without
    them and the skipped row numbers per split."""
    skipped = {}
    if info.modality != "image" or not (skip or small_images(info)):  # larger images: checked up front only to skip
        return train, evaluation, skipped
    train, bad = check_images(train, info, skip=skip, what=f"split {data_args.train_split!r}")
    if bad:
        skipped[data_args.train_split] = [int(r) for r in bad]
    if evaluation is not None:
        evaluation, bad = check_images(evaluation, info, skip=skip, what=f"split {data_args.eval_split!r}")
        if bad:
            skipped[data_args.eval_split] = [int(r) for r in bad]
    if skipped:
        logger.warning(f"skipped rows whose image cannot be decoded: {skipped}")
    return train, evaluation, skipped


def with_null_scores(evaluation, scored: bool = True):
    """The unpruned evaluation split with the same columns as the pruned one (one config, one schema):
    `svp_index` is the row's index in the evaluation split and `svp_score` is null (an incoming pair is kept as
    `svp_index_previous`/`svp_score_previous`, as in the training split); no `svp_score` when the pruned split has
    none (`scored` false: the proxy was never trained)."""
    evaluation = keep_previous_columns(evaluation)
    if scored:
        evaluation = evaluation.add_column(SCORE_COLUMN, [None] * len(evaluation), feature=datasets.Value("float64"))
    return evaluation.add_column(INDEX_COLUMN, list(range(len(evaluation))), feature=datasets.Value("int64"))


# --- one run ----------------------------------------------------------------------------------------------------------


def run_settings(*instances, num_processes: int) -> Dict[str, Any]:
    """What a resumed run must share with the run whose checkpoints it continues."""
    settings: Dict[str, Any] = {}
    for instance in instances:
        settings.update(vars(instance))
    settings["num_processes"] = num_processes
    return {k: v for k, v in settings.items() if k not in UNRECORDED_SETTINGS}


def run_provenance(
    job: str,
    command: Optional[str],
    data_args: DataArguments,
    train,
    evaluation,
    modality: str,
    *,
    num_rows: Optional[int] = None,
) -> Dict[str, Any]:
    """The head of a run's metrics: what made it (svp_hf version, command, job) and the data it read (`num_rows`: the
    training split's rows, for a stream, which has no length)."""
    return {
        "svp_hf_version": __version__,
        "command": command,
        "job": job,
        "recipe_file": RECIPE_FILE,
        "source": source_metadata(
            train,
            dataset_name=data_args.dataset_name,
            split=data_args.train_split,
            modality=modality,
            config_name=data_args.dataset_config_name,
            max_train_samples=data_args.max_train_samples,
            eval_dataset=evaluation,
            eval_split=data_args.eval_split,
            num_rows=num_rows,
        ),
        "dataset_name": data_args.dataset_name,
        "train_split": data_args.train_split,
        "eval_split": data_args.eval_split,
    }


def job_accelerator(run_args: RunArguments):
    """The job's Accelerator: the recipe's mixed precision, its trackers logging under `output_dir`, and gloo
    data-parallel processes when launched on a machine without GPUs; a warning for settings a CPU ignores."""
    accelerator = make_accelerator(
        mixed_precision=run_args.mixed_precision,
        log_with=run_args.report_to,
        project_dir=run_args.output_dir if run_args.report_to else None,
        **({"dynamo_backend": "inductor"} if run_args.torch_compile else {}),
    )
    check_device(accelerator)
    return accelerator


def check_device(accelerator) -> None:
    """Warn (main process) when the device settings cannot do what they ask: fp16 on a CPU trains in fp32; more
    processes than CPU cores on a machine without an accelerator only slow each other down."""
    if not accelerator.is_main_process or accelerator.device.type != "cpu":
        return
    precision = str(accelerator.mixed_precision)
    if precision == "fp16":
        warnings.warn(
            "mixed_precision 'fp16' has no effect on a CPU: the run trains in fp32 (use bf16, or no, on CPUs)",
            stacklevel=2,
        )
    cores = available_cpus()
    if accelerator.num_processes > cores:
        warnings.warn(
            f"{accelerator.num_processes} processes on a CPU-only machine with {cores} cores available: they compete for the "
            "cores; launch with --num_processes at most the number of cores (accelerate_config.yaml asks for 8 GPUs)",
            stacklevel=2,
        )


def _scalar_config(settings: Dict[str, Any]) -> Dict[str, Any]:
    # Trackers take scalars only (TensorBoard's hparams): lists, mappings and None are logged as text.
    return {
        k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in settings.items() if k not in SECRET_KEYS
    }


def run_kind(output_dir: str) -> Optional[Tuple[str, str]]:
    """The job whose run `output_dir` holds, and what says so: a result's metrics.json, the checkpoints of an
    unfinished run, or a labelling session's state (an active-learning run); ``None`` when it holds none."""
    for record in (METRICS_FILE, os.path.join(CHECKPOINTS_DIR, RUN_SETTINGS)):
        try:
            found = _read_json(os.path.join(output_dir, record))
        except (OSError, ValueError):
            continue  # unreadable: judged by the checks that read it
        if isinstance(found, dict) and isinstance(found.get("job"), str):
            return found["job"], record
    if LabellingState.exists(output_dir):
        return "active", "a labelling session (labelling/)"
    return None


def check_run_kind(output_dir: str, job: str) -> None:
    """A clear error when `output_dir` holds a run of another job than `job` (core-set or active learning): one
    output_dir holds one kind of run, whatever ``overwrite_output_dir`` says."""
    found = run_kind(output_dir)
    if found is not None and found[0] != job:
        raise SVPConfigError(
            f"output_dir {output_dir!r} holds a run of svp_hf.{found[0]} ({found[1]}); a {job} run cannot share it: "
            "choose another output_dir (or remove that run)"
        )


class JobRun:
    """One run of a job in its `output_dir` (see the module's docstring for the order of its steps).

    Use it as a context manager: a run that fails before its checkpoints hold any progress removes them, so that the
    corrected rerun is not refused as "an unfinished run with other settings"."""

    def __init__(self, job: str, run_args: RunArguments, *, command: Optional[str] = None):
        self.job = job
        self.run_args = run_args
        self.command = command
        self.start = time.perf_counter()
        self.output_dir = run_args.output_dir
        self.checkpoints = os.path.join(run_args.output_dir, CHECKPOINTS_DIR)
        self.repo_id: Optional[str] = None
        # Every token value the run may hold, redacted from all it records (metrics, card, report, recipe, settings).
        self.secrets = known_tokens(run_args.hub_token)
        self.accelerator = job_accelerator(run_args)
        self.device = device_settings(run_args)
        image_cache.configure(max_memory=parse_size(run_args.image_cache_max_memory, "image_cache_max_memory"))
        self._began = False
        self._had_checkpoints = False
        self._lock: Optional[OutputLock] = None

    def __enter__(self) -> "JobRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._began and not self._had_checkpoints and self.accelerator.is_main_process:
            if os.path.isdir(self.checkpoints) and not has_progress(self.checkpoints):
                shutil.rmtree(self.checkpoints, ignore_errors=True)
        if exc_type is not None and self._began and self.run_args.report_to:
            self.accelerator.end_training()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def check_output(self, splits: Sequence[Optional[str]] = (), *, overwrite: Optional[bool] = None) -> None:
        """Pre-flight for the output: `output_dir` holds no run of another job, is free (or replaceable) and
        writable, the `splits` plain names; the Hub target valid (before any network call)."""
        overwrite = self.run_args.overwrite_output_dir if overwrite is None else overwrite
        for locked in (False, True):  # checked before the lock is taken (nothing made for a bad one), then under it
            check_run_kind(self.output_dir, self.job)
            check_output_dir(self.output_dir, overwrite, [s for s in splits if s])
            if not locked:
                self._take_lock()
        if self.run_args.push_to_hub:
            _, self.repo_id = check_hub_target(
                self.run_args.hub_dataset_id, token=self.run_args.hub_token, overwrite=self.run_args.hub_overwrite
            )

    def _take_lock(self) -> None:
        """The main process takes `output_dir`'s lock (:class:`svp_hf.publish.output.OutputLock`) for the whole run; when
        another run holds it, every process of this one stops with the same error."""
        if self._lock is not None:
            return

        def take() -> Optional[str]:
            try:
                self._lock = OutputLock(self.output_dir)
            except SVPConfigError as err:
                return str(err)
            return None

        refused = on_main(self.accelerator, take)
        if refused is not None:
            raise SVPConfigError(refused)

    def begin(self, settings: Dict[str, Any], *, tracker_config: Optional[Dict[str, Any]] = None) -> None:
        """Pre-flight passed: start the trackers and take the checkpoints in hand. Checkpoints are discarded when
        ``resume`` is false, when they sit next to a finished result (replaced, since the pre-flight let us through)
        or, with ``overwrite_output_dir``, when they belong to a run with other settings; otherwise they must
        belong to a run with the same `settings`, which this run continues."""
        accelerator, run_args = self.accelerator, self.run_args
        settings = redact_values({"job": self.job, **settings}, self.secrets)
        if run_args.report_to:
            accelerator.init_trackers(
                f"svp_hf_{self.job}", config=redact_values(_scalar_config(tracker_config or settings), self.secrets)
            )
        finished = os.path.exists(os.path.join(self.output_dir, "metrics.json"))
        stale = not run_args.resume or finished
        if not stale and run_args.overwrite_output_dir:
            stale = bool(on_main(accelerator, changed_run_settings, self.checkpoints, settings))
        if stale:
            discard(accelerator, [self.checkpoints])
        self._had_checkpoints = on_main(accelerator, has_progress, self.checkpoints)
        check_run_settings(accelerator, self.checkpoints, settings)
        self._began = True

    def resumable(self, name: str, compute: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
        """`compute()`'s JSON-able result, saved as ``checkpoints/<name>.json`` so that a resumed run reads it
        instead of computing it again."""
        path = os.path.join(self.checkpoints, f"{name}.json")
        saved = on_main(self.accelerator, _read_json, path)
        if saved is not None:
            logger.info(f"{name}: found in {path}, not computed again")
            return saved
        result = compute()
        if self.accelerator.is_main_process:
            os.makedirs(self.checkpoints, exist_ok=True)
            write_json(path, result, atomic=True)
        self.accelerator.wait_for_everyone()
        return result

    def finish_files(
        self, files: Dict[str, Any], *, metrics: Dict[str, Any], recipe: Dict[str, Any], headline: str
    ) -> Dict[str, Any]:
        """:meth:`finish` for a job whose result is files only (no ``dataset/``, card or report: streamed scoring)."""
        accelerator, run_args = self.accelerator, self.run_args
        metrics.setdefault("timings", {})["total"] = time.perf_counter() - self.start
        recipe = redact_values(recipe, self.secrets)
        metrics = redact_values({**metrics, "recipe": recipe}, self.secrets)
        if accelerator.is_main_process:
            metrics = write_files(
                self.output_dir,
                {**files, RECIPE_FILE: format_recipe(recipe)},
                metrics,
                overwrite=run_args.overwrite_output_dir,
            )
            lines = summary(self.job, headline, self.output_dir, names=[*files, "metrics.json"])
            print(redact(lines, self.secrets), flush=True)
        self._close(run_args.keep_checkpoints)
        return metrics

    def _close(self, keep_checkpoints: bool) -> None:
        """The run is done: its checkpoints go (unless kept), every process waits, the trackers end."""
        if not keep_checkpoints:
            discard(self.accelerator, [self.checkpoints])
        self.accelerator.wait_for_everyone()
        if self.run_args.report_to:
            self.accelerator.end_training()
        self._began = False

    def finish(
        self,
        *,
        splits,
        scores,
        metrics: Dict[str, Any],
        recipe: Dict[str, Any],
        headline: str,
        target_scores=None,
        extra_files: Optional[Dict[str, Any]] = None,
        overwrite: Optional[bool] = None,
        log: Optional[Dict[str, Any]] = None,
        keep_checkpoints: Optional[bool] = None,
    ) -> Dict[str, Any]:
        """Write the result (main process), print the summary, push to the Hub, discard the checkpoints and end
        the trackers. Returns the metrics as written (with ``hub_url`` when pushed)."""
        accelerator, run_args = self.accelerator, self.run_args
        total = metrics.setdefault("timings", {})["total"] = time.perf_counter() - self.start
        recipe = redact_values(recipe, self.secrets)
        metrics = redact_values({**metrics, "recipe": recipe}, self.secrets)
        if accelerator.trackers and log is not None:
            accelerator.log({k: v for k, v in {**log, "seconds/total": total}.items() if v is not None})
        if accelerator.is_main_process:
            metrics = write_run(
                self.output_dir,
                splits=splits,
                scores=scores,
                target_scores=target_scores,
                metrics=metrics,
                overwrite=run_args.overwrite_output_dir if overwrite is None else overwrite,
                max_shard_size=run_args.max_shard_size,
                repo_id=self.repo_id,
                extra_files={**redact_values(extra_files or {}, self.secrets), RECIPE_FILE: format_recipe(recipe)},
            )
            if self.repo_id is not None:
                metrics["hub_url"] = push_to_hub(
                    self.output_dir,
                    self.repo_id,
                    private=run_args.hub_private,
                    token=run_args.hub_token,
                    overwrite=run_args.hub_overwrite,
                )
            print(
                redact(summary(self.job, headline, self.output_dir, metrics.get("hub_url")), self.secrets), flush=True
            )
        self._close(run_args.keep_checkpoints if keep_checkpoints is None else keep_checkpoints)
        return metrics


SUMMARY_LINES = (
    ("dataset", "dataset", "datasets.load_dataset reads it; card in README.md"),
    ("selected", "selected.parquet", "svp_index and score of every kept row"),
    ("scores", "scores.parquet", None),
    ("report", "report.md", None),
    ("metrics", "metrics.json", None),
)


def summary(
    job: str, headline: str, output_dir: str, hub_url: Optional[str] = None, names: Optional[Sequence[str]] = None
) -> str:
    """The end-of-run summary: what the run did, then where each part of the result (`names`) is."""
    names = ("dataset", "report.md", "metrics.json") if names is None else names
    lines = [f"svp_hf {job}: {headline}"]
    for label, name, note in SUMMARY_LINES:
        if name in names:
            lines.append(f"  {label:<9} {os.path.join(output_dir, name)}" + (f"  ({note})" if note else ""))
    lines.append(
        f"  recipe    {os.path.join(output_dir, RECIPE_FILE)}  (reproduce: python -m svp_hf.{job} "
        f"{os.path.join(output_dir, RECIPE_FILE)} --output_dir NEW_DIR)"
    )
    if hub_url:
        lines.append(f"  Hub       {hub_url}")
    return "\n".join(lines)


# Where a run writes is not part of what it computes: a reproduction names its own output_dir.
UNSAVED_KEYS = ("output_dir", "overwrite_output_dir")


def recipe_record(*instances, keys: Sequence[str]) -> Dict[str, Any]:
    """The recipe as run (see :func:`svp_hf.config.parser.resolved_recipe`) without where it wrote, as plain YAML-able
    values."""
    keys = [k for k in keys if k not in UNSAVED_KEYS]
    return json.loads(json.dumps(resolved_recipe(*instances, keys=keys), default=str))


def format_recipe(recipe: Dict[str, Any]) -> str:
    return yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True)


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


__all__ = [
    "Job",
    "JobRun",
    "job_keys",
    "main",
    "command_line",
    "load_splits",
    "subsample",
    "inspect_splits",
    "load_inspected_splits",
    "with_null_scores",
    "per_class_counts",
    "run_settings",
    "run_provenance",
    "job_accelerator",
    "check_device",
    "check_batches",
    "check_columns",
    "check_output_apart",
    "check_run_kind",
    "run_kind",
    "checked_images",
    "summary",
    "recipe_record",
    "RECIPE_FILE",
]
