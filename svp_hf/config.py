"""Recipes: flat YAML files parsed into dataclasses with transformers' ``HfArgumentParser``.

``python -m svp_hf.coreset RECIPE.yaml --key value ...``: the recipe's keys become defaults, command-line flags win.

This is the bottom layer of the package: it imports neither torch nor any other svp_hf module but :mod:`svp_hf.errors`,
so parsing a recipe is cheap. Every value's *type* and range is checked here, for recipe files, command-line flags
and Python keyword arguments alike (a YAML ``batch_size: [64, 32]`` or ``fraction: true`` is refused, never coerced);
names that refer to plug-in registries (methods, strategies, optimizers, schedules) are checked by
:mod:`svp_hf.preflight`, before any data is loaded or model trained.

Training settings are defined once (:data:`TRAINING_SETTINGS`) and expanded per role: the plain key is the proxy's
(``learning_rate``), and the target's own key (``target_learning_rate``) defaults to it; :func:`role_settings` is the
one place that reads them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import typing
from dataclasses import dataclass, field, fields, make_dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml
from datasets.utils.py_utils import convert_file_size_to_int
from transformers import HfArgumentParser

from .account import DEFAULT_SELECTION_BUDGET, check_selection_budget
from .errors import SVPConfigError
from .recipe_files import bundled_recipes, resolve_recipe

# Parquet shards of a split are at most this large, as in ``datasets.Dataset.push_to_hub``.
DEFAULT_MAX_SHARD_SIZE = "500MB"
# Which selection loops each active-learning `selector` runs; a loop is named by the role of the model selecting in it.
SELECTORS: Dict[str, tuple] = {"proxy": ("proxy",), "target": ("target",), "both": ("proxy", "target")}
MIXED_PRECISION = ("no", "fp16", "bf16", "fp8")
ROLES = ("proxy", "target")
# The setting whose value must never be written anywhere (metrics, reports, cards, checkpoints, saved recipes).
SECRET_KEYS = ("hub_token",)


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


# --- value checks: pure functions the other layers reuse ------------------------------------------------------------


def parse_size(value, name: str = "max_shard_size") -> int:
    """Bytes in a size such as ``"500MB"`` or ``2**20``; a clear error naming the setting otherwise."""
    given = value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # a number of bytes, given as text (the recipe types every size as a string)
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None  # a whole number of bytes (inf and nan are not)
    try:
        size = convert_file_size_to_int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, AttributeError):
        size = None
    if not isinstance(size, int) or size <= 0:
        raise SVPConfigError(f"{name} must be a positive size such as '500MB', got {given!r}")
    return size


def check_fraction(fraction: float) -> float:
    fraction = _to_float("fraction", fraction)
    if not (0.0 < fraction <= 1.0):
        raise SVPConfigError(f"fraction must be in (0, 1], got {fraction}")
    return fraction


def check_schedule(pool_size: Optional[int], initial_size: int, budgets: Sequence[int]) -> List[int]:
    """Check an active-learning schedule (against a pool of `pool_size`, when known); returns the budgets as ints.

    `budgets` are the labelled-set sizes after each round: strictly increasing, above `initial_size` and at most
    `pool_size`.
    """
    initial_size = int(initial_size)
    if initial_size < 1:
        raise SVPConfigError(f"initial_size must be at least 1, got {initial_size}")
    budgets = [int(b) for b in budgets or []]
    if not budgets:
        raise SVPConfigError("budgets must list the labelled-set size after each round, e.g. [5000, 10000]")
    if budgets[0] <= initial_size:
        raise SVPConfigError(
            f"budgets must be larger than initial_size ({initial_size}): the first budget, {budgets[0]}, adds no example"
        )
    for before, after in zip(budgets, budgets[1:]):
        if after <= before:
            raise SVPConfigError(f"budgets must be strictly increasing, got {before} then {after} in {budgets}")
    if pool_size is not None and budgets[-1] > pool_size:
        raise SVPConfigError(f"the last budget, {budgets[-1]}, is larger than the pool ({pool_size} examples)")
    return budgets


def check_coverage_beta(beta: Optional[float], fraction: Optional[float] = None) -> Optional[float]:
    """`beta` as a float in [0, 1) (``None`` stays ``None``: it follows the fraction); with `fraction`, also checks that
    the rows left after dropping the hardest `beta` share can hold the kept fraction."""
    if beta is None:
        return None
    beta = _to_float("coverage_beta", beta)
    if not 0.0 <= beta < 1.0:
        raise SVPConfigError(f"coverage_beta must be in [0, 1), got {beta}")
    if fraction is not None and float(fraction) > 1.0 - beta + 1e-12:
        raise SVPConfigError(
            f"coverage_beta={beta} drops the hardest {beta:.0%} of rows, which leaves too few to keep fraction={fraction}; "
            f"use a coverage_beta of at most {1.0 - float(fraction):.3g} or a smaller fraction"
        )
    return beta


# --- types: every value is checked against its field's annotation ---------------------------------------------------

_TRUE, _FALSE = ("true", "yes", "y", "t", "1", "on"), ("false", "no", "n", "f", "0", "off")


def _kind(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


# Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1
# More data-loader worker processes than this per process is a typo, not a setting (each is a process of its own).
MAX_WORKERS = 256
# The largest integer any setting may take: every count, size and seed ends up in a 64-bit integer somewhere.
MAX_INT = 2**63 - 1


def _whole(value: Any) -> Optional[int]:
    """`value` as a whole number (an int, a float or text with no fractional part), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)  # exactly, however many digits
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            return None
        return int(number) if number.is_integer() else None
    return None


def _to_int(name: str, value: Any) -> int:
    number = _whole(value)
    if number is None:
        raise SVPConfigError(f"{name} must be an integer, got {_kind(value)}")
    if abs(number) > MAX_INT:
        raise SVPConfigError(f"{name} is too large: {number} (at most {MAX_INT})")
    return number


def _to_float(name: str, value: Any) -> float:
    number = None
    if not isinstance(value, bool):
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())  # YAML 1.1 reads 5e-4 as a string
            except ValueError:
                pass
    if number is None:
        raise SVPConfigError(f"{name} must be a number, got {_kind(value)}")
    if not math.isfinite(number):
        raise SVPConfigError(f"{name} must be a finite number, got {value!r}")
    return number


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise SVPConfigError(f"{name} must be true or false, got {_kind(value)}")


def _to_str(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # YAML reads `train_split: 2020` as a number
    raise SVPConfigError(f"{name} must be a string, got {_kind(value)}")


_SCALARS = {int: _to_int, float: _to_float, bool: _to_bool, str: _to_str}


def _split_items(value: str, separators: str) -> List[str]:
    """`value` split on any of the characters in `separators`, items stripped, empty ones dropped."""
    for sep in separators[1:]:
        value = value.replace(sep, separators[0])
    return [item.strip() for item in value.split(separators[0]) if item.strip()]


def coerce(name: str, value: Any, annotation: Any, *, split: str = ", ") -> Any:
    """`value` checked against (and converted to) the type `annotation`; a clear error naming `name` otherwise.

    ``Optional[X]`` takes None; ``List[X]`` takes a list, or one string split on the characters in `split`."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Union:
        if value is None:
            return None
        (annotation,) = [a for a in args if a is not type(None)]
        origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (list, List):
        item = args[0] if args else str
        if isinstance(value, str):
            value = _split_items(value, split) if split else [value]
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and item is int:
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise SVPConfigError(f"{name} must be a list, got {_kind(value)}")
        return [coerce(f"{name}[{i}]", v, item) for i, v in enumerate(value)]
    if annotation is Any:
        return value
    return _SCALARS[annotation](name, value)


# Fields whose value is checked by their dataclass, not by their annotation (a path, a list of paths or a mapping).
_UNTYPED = ("data_files",)
# How a single string is split into a list field's items (default: on commas and spaces); "" keeps it whole.
_SPLIT = {"labels_from": "", "class_names": ","}


def coerce_fields(instance) -> None:
    """Check (and convert) every field of a dataclass instance against its annotation."""
    hints = typing.get_type_hints(type(instance))
    for f in fields(instance):
        if f.name in _UNTYPED:
            continue
        value = getattr(instance, f.name)
        setattr(instance, f.name, coerce(f.name, value, hints[f.name], split=_SPLIT.get(f.name, ", ")))


def _none_if_empty(value):
    return None if value in ("", "none", "None") else value


def _at_least_one(instance, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(instance, name)
        if value is not None and value < 1:
            raise SVPConfigError(f"{name} must be at least 1, got {value}")


# --- training settings: one definition, expanded for the proxy and the target ----------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    type: type
    default: Any
    help: str


TRAINING_SETTINGS: Tuple[Setting, ...] = (
    Setting("batch_size", int, 128, "Batch size per process for training and scoring."),
    Setting("learning_rate", float, 0.1, "Peak learning rate."),
    Setting("momentum", float, 0.9, "SGD momentum."),
    Setting("weight_decay", float, 5e-4, "Weight decay."),
    Setting(
        "lr_schedule",
        str,
        "step",
        "Learning-rate schedule: step (SVP's CIFAR one, scaled to the epochs), halving (SVP's Amazon one), imagenet "
        "(SVP's ImageNet one, with warm-up), linear (10 percent warm-up, then linear decay: transformers fine-tuning), "
        "cosine or constant.",
    ),
    Setting(
        "optimizer", str, "sgd", "Optimizer: sgd (with momentum, as in SVP) or adamw (for fine-tuning transformers)."
    ),
    Setting("augment", bool, True, "Augment training images (pad-and-crop plus flip, or timm's transforms)."),
    Setting("pretrained", bool, False, "Load pretrained weights for timm models (needs them locally or the Hub)."),
)
TRAINING_KEYS = tuple(s.name for s in TRAINING_SETTINGS)


def _role_fields(prefix: str) -> list:
    """The dataclass fields of every training setting for one role: the plain keys (the proxy's, and the target's
    default), or the ``target_`` keys (None: the plain key's value)."""
    if not prefix:
        return [(s.name, s.type, _help(s.help, default=s.default)) for s in TRAINING_SETTINGS]
    return [
        (f"{prefix}{s.name}", Optional[s.type], _help(f"The target's {s.name} (default: {s.name}).", default=None))
        for s in TRAINING_SETTINGS
    ]


# The settings are dataclass bases so that HfArgumentParser, `fields` and the dataclass constructors see plain fields.
ProxyTrainingArguments = make_dataclass("ProxyTrainingArguments", _role_fields(""))
TargetTrainingArguments = make_dataclass("TargetTrainingArguments", _role_fields("target_"))


def _check_training_values(instance, prefix: str = "") -> None:
    _at_least_one(instance, [f"{prefix}batch_size"])
    lr, momentum = getattr(instance, f"{prefix}learning_rate"), getattr(instance, f"{prefix}momentum")
    if lr is not None and not lr > 0:
        raise SVPConfigError(f"{prefix}learning_rate must be positive, got {lr}")
    if momentum is not None and not 0 <= momentum < 1:
        raise SVPConfigError(f"{prefix}momentum must be in [0, 1), got {momentum}")
    decay = getattr(instance, f"{prefix}weight_decay")
    if decay is not None and decay < 0:
        raise SVPConfigError(f"{prefix}weight_decay must not be negative, got {decay}")


# --- the recipe's dataclasses ----------------------------------------------------------------------------------------


@dataclass
class DataArguments:
    dataset_name: Optional[str] = _help(
        "A Hub dataset id, a builder ('parquet', 'imagefolder', ...) used with data_files, a local folder, or "
        "'builtin:digits'.",
        default=None,
    )
    dataset_config_name: Optional[str] = _help("The dataset's configuration name.", default=None)
    data_files: Optional[str] = _help(
        "Mapping split -> path(s) (a YAML mapping, or JSON on the command line).", default=None
    )
    train_split: str = _help("The split to score and prune.", default="train")
    eval_split: Optional[str] = _help(
        "The split to evaluate proxy and target on (left unpruned); empty for none. When it is the training split, "
        "validation_split_percentage must hold part of it out, written as the split <train_split>_heldout.",
        default="test",
    )
    validation_split_percentage: Optional[float] = _help(
        "When the dataset has no eval_split (or it is the training split), hold out this percentage of the training "
        "split, seeded and stratified, as the evaluation split (default: none; a missing eval_split is an error).",
        default=None,
    )
    image_column: Optional[str] = _help("The image column (default: the first datasets.Image column).", default=None)
    text_column: Optional[List[str]] = _help(
        "The text column(s); several are joined with a space, e.g. title content (default: every string column).",
        default=None,
    )
    label_column: Optional[str] = _help("The label column (default: the first ClassLabel column).", default=None)
    max_train_samples: Optional[int] = _help("Use a seeded random subset of this many training rows.", default=None)
    max_eval_samples: Optional[int] = _help("Use a seeded random subset of this many evaluation rows.", default=None)

    def __post_init__(self):
        if isinstance(self.data_files, str) and self.data_files.lstrip().startswith("{"):
            try:
                self.data_files = json.loads(self.data_files)
            except json.JSONDecodeError as err:
                raise SVPConfigError(f"data_files is not valid JSON: {err}") from None
        if self.data_files is not None and not isinstance(self.data_files, (str, list, dict)):
            raise SVPConfigError(
                f"data_files must be a path, a list of paths or a mapping split -> path(s), got {_kind(self.data_files)}"
            )
        self.eval_split = _none_if_empty(self.eval_split)
        coerce_fields(self)
        if self.validation_split_percentage is not None and not 0 < self.validation_split_percentage < 100:
            raise SVPConfigError(
                f"validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}"
            )
        _at_least_one(self, ("max_train_samples", "max_eval_samples"))
        for key in ("train_split", "eval_split"):
            if getattr(self, key) is not None:
                check_split_name(getattr(self, key), key)
        self.eval_split = evaluation_split_name(self.train_split, self.eval_split, self.validation_split_percentage)


def held_out_split_name(train_split: str) -> str:
    """The name of the evaluation split held out of `train_split` when the evaluation split named is the training
    split itself: a name of its own, so that the pruned split and the held-out one are never written as one."""
    return f"{train_split}_heldout"


def evaluation_split_name(train_split: str, eval_split: Optional[str], percentage: Optional[float]) -> Optional[str]:
    """The evaluation split's name: `eval_split`, or, when it is the training split and `percentage` holds part of
    it out, :func:`held_out_split_name`; a clear error when it is the training split with nothing held out (the
    evaluation would read the training rows, and both splits would be written under one name)."""
    if eval_split is None or eval_split != train_split:
        return eval_split
    if not percentage:
        raise SVPConfigError(
            f"eval_split {eval_split!r} is the training split: set validation_split_percentage to hold part of it out "
            f"for evaluation (written as split {held_out_split_name(train_split)!r}), name another eval_split, or set "
            "eval_split to '' for none"
        )
    return held_out_split_name(train_split)


# The split names ``datasets`` accepts; anything else (a path, "..", a separator) is refused before any work.
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def check_split_name(name: str, role: str = "split") -> str:
    """`name` if it is a plain split name (letters, digits, underscores, dots between them); a clear error otherwise,
    so that no split name can make a file land outside ``output_dir`` (split names become file names there)."""
    if not isinstance(name, str) or not SPLIT_NAME.match(name):
        raise SVPConfigError(
            f"{role} name {name!r} is not a plain split name: use letters, digits and underscores (dots between "
            "them), e.g. 'train', 'validation' or 'test'; a split name cannot be a path"
        )
    return name


def check_seed(seed: int, auto_seeds: int = 1) -> int:
    """`seed` if it is one numpy and torch take, also for `auto`'s candidates (seeded ``seed`` to
    ``seed + auto_seeds - 1``); a clear error otherwise."""
    if auto_seeds > MAX_SEED:
        raise SVPConfigError(f"auto_seeds is too large: {auto_seeds} (each seed trains every candidate again)")
    top = MAX_SEED - (auto_seeds - 1)
    if not 0 <= seed <= top:
        why = (
            f"; auto's {auto_seeds} seeds per candidate run from seed to seed+{auto_seeds - 1}"
            if auto_seeds > 1
            else ""
        )
        raise SVPConfigError(f"seed must be in [0, {top}] (numpy takes seeds up to 2**32-1{why}), got {seed}")
    return seed


@dataclass
class SelectionArguments(ProxyTrainingArguments):
    proxy: str = _help(
        "The proxy model: a timm name (resnet20, resnet18, ...), fasttext, a transformers folder or Hub id, "
        "config:MODEL_TYPE, or another registered family.",
        default="resnet20",
    )
    proxy_epochs: int = _help("Epochs of proxy training ('fewer epochs' makes a cheaper proxy).", default=10)
    method: str = _help("The selection method (see svp_hf.list_methods()).", default="least_confidence")
    score_methods: Optional[List[str]] = _help(
        "More methods to score alongside `method` (one column each in scores.parquet).", default=None
    )
    fraction: float = _help("Share of training rows kept, in (0, 1].", default=0.5)
    strategy: str = _help(
        "How scores become the kept subset: auto (default: retrain the proxy on each candidate subset, check a held-out "
        "slice, and keep random unless a candidate beats it by more than the spread between seeds or the slice "
        "sampling error), coverage (coverage-centric: drop the hardest coverage_beta share, then sample evenly across "
        "score strata per class), top (the method's best-ranked rows: SVP's setting), bottom (the easiest rows) or random.",
        default="auto",
    )
    coverage_beta: Optional[float] = _help(
        "Share of hardest rows coverage drops first, in [0, 1) (default: follows the prune rate: 0 up to 50 percent "
        "pruned, 0.1 at 70-80, 0.3 at 90).",
        default=None,
    )
    auto_holdout: float = _help(
        "Share of training rows auto holds out (class-stratified) to compare strategies.", default=0.1
    )
    auto_seeds: int = _help("Seeds per candidate in auto's check (their spread decides what beats random).", default=2)
    auto_epochs: Optional[int] = _help(
        "Epochs of each auto candidate's proxy (default: target_epochs when a target is trained, else proxy_epochs): "
        "the check should train as long as the model the subset is for, or it favours easy subsets.",
        default=None,
    )
    selection_budget: Optional[float] = _help(
        "Share of the full-data target training (without a target: of the proxy's own training) that selection may "
        "spend, in (0, 1]: auto sizes its check to what is left of it after the proxy and scoring (fewer seeds, "
        "candidates, then rows) and, when even its smallest honest check cannot fit, chooses random without training "
        "a candidate. null: no budget (the full check).",
        default=DEFAULT_SELECTION_BUDGET,
    )
    class_balanced: bool = _help("Keep the same share of every class.", default=False)
    seed: int = _help("Seed for data order, initialisation, random selection and tie-breaking.", default=0)
    trust_remote_code: bool = _help(
        "Let transformers models and tokenizers run code from their repositories.", default=False
    )
    dataloader_num_workers: Optional[int] = _help(
        "DataLoader worker processes (default: sized to the machine for data decoded row by row, i.e. images larger "
        "than CIFAR's: its CPUs per process less one, at most 8; none for decode-once images and packed text, "
        "whose batches are one gather, built one step ahead in a thread when a CPU is free for it; 0: everything in "
        "the main thread).",
        default=None,
    )
    kcenter_chunk_size: int = _help("Rows per distance block in k-centers (bounds its memory).", default=16384)
    kcenter_pool_size: Optional[int] = _help(
        "Run k-centers on a seeded random candidate set of this many rows (the rest score -inf); default: all rows.",
        default=None,
    )
    kcenter_max_memory: Optional[str] = _help(
        "Memory bound for k-centers' embeddings and distances, e.g. '4GB'; the candidate set shrinks to fit.",
        default=None,
    )
    proxy_checkpoint: Optional[str] = _help(
        "Score with this trained proxy instead of training one: a weights file, a folder holding model.safetensors, "
        "or a run's output_dir/checkpoints/proxy (whose training state also gives forgetting events).",
        default=None,
    )
    scoring_shard_size: int = _help(
        "Rows scored per shard; a killed run resumes after the last finished shard.", default=10000
    )

    def __post_init__(self):
        self.proxy_checkpoint = _none_if_empty(self.proxy_checkpoint)
        coerce_fields(self)
        self.fraction = check_fraction(self.fraction)
        self.coverage_beta = check_coverage_beta(
            self.coverage_beta, self.fraction if self.strategy == "coverage" else None
        )
        if self.selection_budget is not None:
            self.selection_budget = check_selection_budget(self.selection_budget)
        if not 0.0 < self.auto_holdout <= 0.5:
            raise SVPConfigError(f"auto_holdout must be in (0, 0.5], got {self.auto_holdout}")
        _check_training_values(self)
        _at_least_one(
            self,
            (
                "proxy_epochs",
                "kcenter_chunk_size",
                "scoring_shard_size",
                "kcenter_pool_size",
                "auto_seeds",
                "auto_epochs",
            ),
        )
        if self.dataloader_num_workers is not None and not 0 <= self.dataloader_num_workers <= MAX_WORKERS:
            raise SVPConfigError(
                f"dataloader_num_workers must be in [0, {MAX_WORKERS}] (worker processes per process), got "
                f"{self.dataloader_num_workers}"
            )
        check_seed(self.seed, self.auto_seeds)
        if not self.proxy:
            raise SVPConfigError("proxy must name a model")
        if self.kcenter_max_memory is not None:
            parse_size(self.kcenter_max_memory, "kcenter_max_memory")
        if self.proxy_checkpoint is not None and not os.path.exists(self.proxy_checkpoint):
            raise SVPConfigError(f"proxy_checkpoint {self.proxy_checkpoint!r} not found")

    @property
    def methods(self) -> List[str]:
        return list(dict.fromkeys([self.method] + list(self.score_methods or [])))


@dataclass
class RunArguments(TargetTrainingArguments):
    target: Optional[str] = _help(
        "The target model trained on the selected subset (empty: no target training).", default=None
    )
    target_epochs: int = _help("Epochs of target training.", default=10)
    output_dir: str = _help("Where dataset/, scores.parquet and metrics.json are written.", default="outputs/svp")
    overwrite_output_dir: bool = _help(
        "Replace a result already in output_dir (and discard checkpoints of an unfinished run with other settings).",
        default=False,
    )
    max_shard_size: str = _help(
        "Largest parquet file written per split (e.g. '500MB'); larger splits are written in numbered shards.",
        default=DEFAULT_MAX_SHARD_SIZE,
    )
    mixed_precision: Optional[str] = _help(
        "no, fp16, bf16 or fp8 (fp8 needs transformer_engine or torchao and a GPU that has it; default: Accelerate's "
        "config, else bf16 on a GPU that supports it, else no (a CPU that runs bf16 natively, AVX512-BF16 or AMX, "
        "trains faster with bf16, asked for; "
        'no; quote "no" in YAML).',
        default=None,
    )
    report_to: Optional[str] = _help("Accelerate trackers to log to (tensorboard, wandb, all).", default=None)
    score_with_target: bool = _help(
        "Also train the target on the whole training split and score it with the same methods, to report how the "
        "proxy's ranking agrees with the target's (Spearman, Kendall, top-k overlap). Costs one full target training.",
        default=False,
    )
    push_to_hub: bool = _help(
        "Upload output_dir/dataset (card, splits, scores, plots) to the Hub as hub_dataset_id.", default=False
    )
    hub_dataset_id: Optional[str] = _help(
        "The Hub dataset to push to: 'user/name' (or 'name' in your namespace).", default=None
    )
    hub_private: bool = _help("Create the Hub dataset as private.", default=False)
    hub_overwrite: bool = _help("Replace the Hub dataset's contents if it already exists.", default=False)
    hub_token: Optional[str] = _help(
        "Hub token (default: HF_TOKEN or the token saved by `hf auth login`); never written into any output.",
        default=None,
    )
    resume: bool = _help(
        "Continue the unfinished run found in output_dir/checkpoints (proxy and target epochs, scored shards, "
        "active-learning rounds); false starts over.",
        default=True,
    )
    keep_checkpoints: bool = _help(
        "Keep output_dir/checkpoints once the run has finished (its proxy/ folder can be given as proxy_checkpoint).",
        default=False,
    )
    # --- speed: the data path and device defaults (svp_hf.device, svp_hf.image_cache); one block, kept together ---
    channels_last: Optional[bool] = _help(
        "Run convolutional models in channels-last memory layout (default: on a CUDA GPU, not on CPU).", default=None
    )
    pin_memory: Optional[bool] = _help(
        "Pin the data loaders' host memory (default: when batches go to a CUDA GPU).", default=None
    )
    torch_compile: bool = _help(
        "Compile the trained models with torch.compile (Accelerate's inductor backend).", default=False
    )
    image_cache_max_memory: str = _help(
        "Largest decoded image cache held in memory (e.g. '4GB'); a larger one is memory-mapped from disk.",
        default="4GB",
    )
    skip_undecodable: bool = _help(
        "Skip rows whose image cannot be decoded (listed in metrics.json) instead of stopping with an error naming them.",
        default=False,
    )
    streaming: bool = _help(
        "Read the dataset with streaming=True and score it with a trained proxy_checkpoint, one shard at a time "
        "(writes scores.parquet and the selected svp_index values; no training, no dataset/ copy).",
        default=False,
    )
    # --- end of the speed block ---

    def __post_init__(self):
        self.target = _none_if_empty(self.target)
        self.hub_dataset_id = _none_if_empty(self.hub_dataset_id)
        coerce_fields(self)
        parse_size(self.image_cache_max_memory, "image_cache_max_memory")
        if self.push_to_hub and not self.hub_dataset_id:
            raise SVPConfigError("push_to_hub needs hub_dataset_id (e.g. user/cifar10-svp-forgetting-50)")
        if self.score_with_target and not self.target:
            raise SVPConfigError("score_with_target needs a target model (set target)")
        _at_least_one(self, ("target_epochs",))
        _check_training_values(self, "target_")
        if self.mixed_precision not in (None,) + MIXED_PRECISION:
            raise SVPConfigError(
                f"mixed_precision must be one of {', '.join(MIXED_PRECISION)}, got {self.mixed_precision!r}"
            )
        if not self.output_dir:
            raise SVPConfigError("output_dir must be set")
        parse_size(self.max_shard_size, "max_shard_size")


@dataclass
class ActiveArguments:
    """The active-learning loop's keys (``python -m svp_hf.active``); the rest of an active recipe is the core-set's."""

    initial_size: int = _help("Size of the seeded random initial labelled set (round 0).", default=1000)
    budgets: Optional[List[int]] = _help("Labelled-set sizes after each round, strictly increasing.", default=None)
    selector: str = _help(
        "Who selects: proxy, target (the baseline SVP compares against), or both side by side.", default="proxy"
    )
    warm_start: bool = _help(
        "Continue training the previous round's selector instead of training it from scratch.", default=False
    )
    eval_each_round: bool = _help(
        "Evaluate the selector on the evaluation split every round (not counted as selection time).", default=False
    )
    initial_class_balanced: bool = _help("Draw the same number of initial examples from every class.", default=False)
    labels_from: Optional[List[str]] = _help(
        "Labelling mode: returned labels to merge before the next round, from files datasets reads (CSV, JSON Lines, "
        "Parquet), dataset folders or Hub dataset ids, each with svp_index and label (a class name or id).",
        default=None,
    )
    class_names: Optional[List[str]] = _help(
        "Labelling mode: the class names, when the label column is not a datasets.ClassLabel (or is absent).",
        default=None,
    )
    allow_pending: bool = _help(
        "Labelling mode: ask for the next batch even though rows asked for earlier are not labelled yet (they are not "
        "asked again); by default the next round waits for every asked row.",
        default=False,
    )
    finish: bool = _help(
        "Labelling mode: ask for no more rows; train the target on the labelled set, evaluate it and write dataset/ "
        "with its card (and push it with push_to_hub). Done by itself once every budget is asked for and labelled.",
        default=False,
    )

    def __post_init__(self):
        try:
            coerce_fields(self)
        except SVPConfigError as err:
            if "budgets" in str(err):
                raise SVPConfigError(f"budgets must be a list of labelled-set sizes, got {self.budgets!r}") from None
            raise
        self.budgets = check_schedule(None, self.initial_size, self.budgets)
        if self.selector not in SELECTORS:
            raise SVPConfigError(f"unknown selector {self.selector!r}; choose one of {', '.join(SELECTORS)}")


# Keys only a labelling session reads (the label column has missing labels, or labels_from is set).
LABELLING_KEYS = ("class_names", "allow_pending", "finish")


def check_simulation_keys(active: ActiveArguments) -> None:
    """A clear error when an active-learning run over a fully labelled training split (a simulation, which reads its
    labels from the data) is given keys only a labelling session reads: they would be ignored."""
    given = [k for k in LABELLING_KEYS if getattr(active, k)]
    if given:
        raise SVPConfigError(
            f"{', '.join(given)}: labelling-session key(s), but the training split is fully labelled, so this run "
            "simulates labelling from its labels and would ignore them; remove them (a session starts when the label "
            "column has missing labels, or with labels_from)"
        )


def role_settings(role: str, args: SelectionArguments, run_args: Optional[RunArguments] = None) -> Dict[str, Any]:
    """How the model of `role` ("proxy" or "target") is trained: its model name, epochs and every training setting,
    the target's own ``target_*`` keys where set and the plain (proxy's) keys otherwise. The one reader of the
    per-role settings."""
    if role not in ROLES:
        raise SVPConfigError(f"role must be one of {ROLES}, got {role!r}")
    settings = {s.name: getattr(args, s.name) for s in TRAINING_SETTINGS}
    if role == "proxy":
        return {"model": args.proxy, "epochs": args.proxy_epochs, **settings}
    if run_args is None or not run_args.target:
        raise SVPConfigError("no target model is set")
    for s in TRAINING_SETTINGS:
        own = getattr(run_args, f"target_{s.name}")
        if own is not None:
            settings[s.name] = own
    return {"model": run_args.target, "epochs": run_args.target_epochs, **settings}


RECIPE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments)
ACTIVE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments, ActiveArguments)


def recipe_keys(dataclass_types: Sequence[type] = RECIPE_DATACLASSES) -> List[str]:
    return [f.name for dc in dataclass_types for f in fields(dc)]


def read_recipe(path: str, keys: Optional[Sequence[str]] = None, *, job: str = "this job") -> Dict[str, Any]:
    """A recipe file's keys and values, checked against `keys` (default: every key of every job); a bundled recipe's
    name (``quickstart``, ``recipes/quickstart.yaml``) not found on disk reads the copy shipped with svp_hf
    (:mod:`svp_hf.recipe_files`)."""
    path = resolve_recipe(path)
    if not os.path.isfile(path):
        raise SVPConfigError(f"recipe {path!r} not found (recipes shipped with svp_hf: {', '.join(bundled_recipes())})")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SVPConfigError(
            f"recipe {path!r} is not UTF-8 text (byte {raw[err.start]:#04x} on line {line}): save it as UTF-8"
        ) from None
    try:
        recipe = yaml.safe_load(text) if not path.endswith(".json") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SVPConfigError(f"recipe {path!r} is not valid YAML: {err}") from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise SVPConfigError(f"recipe {path!r} must be a mapping of keys to values, got {type(recipe).__name__}")
    known = set(keys if keys is not None else recipe_keys(ACTIVE_DATACLASSES))
    unknown = sorted(set(map(str, recipe)) - known)
    if unknown:
        raise SVPConfigError(f"unknown recipe key(s) {unknown} in {path!r} for {job}; its keys: {sorted(known)}")
    return recipe


def _flag_names(argv: Sequence[str]) -> List[str]:
    """The keys named by ``--flag`` / ``--flag=value`` tokens, dashes read as underscores (as HfArgumentParser does)."""
    return [a[2:].split("=", 1)[0].replace("-", "_") for a in argv if a.startswith("--") and len(a) > 2]


def _nullable(kind):
    """`kind` (int or float) that also reads ``none``/``null`` as ``None`` (the dataclass then checks whether the key
    may be null)."""

    def parse(text: str):
        return None if str(text).strip().lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its errors
    return parse


class RecipeParser(HfArgumentParser):
    """``HfArgumentParser`` for ``[RECIPE.yaml] [--key value ...]``: exact key names only (no abbreviations, which
    would let a mistyped ``--hub_tok SECRET`` through), and a usage line that shows the recipe."""

    def __init__(
        self,
        dataclass_types,
        prog: Optional[str] = None,
        description: Optional[str] = None,
        keys: Optional[Sequence[str]] = None,
    ):
        super().__init__(
            list(dataclass_types),
            prog=prog,
            usage=f"{prog or 'python -m svp_hf.JOB'} [RECIPE.yaml] [--key value ...]",
            description=description,
            allow_abbrev=False,
        )
        self.add_argument(
            "recipe",
            nargs="?",
            metavar="RECIPE.yaml",
            help="A YAML recipe whose keys are the flags below (recipes/*.yaml); flags given after it override it.",
        )
        for action in self._actions:  # `--key none` (or null) on the command line is YAML's null, as in a recipe
            if action.type in (int, float):
                action.type = _nullable(action.type)
        if keys is not None:  # --help lists the keys the job reads, and only those
            for action in self._actions:
                if action.dest not in keys and action.dest not in ("help", "recipe"):
                    action.help = argparse.SUPPRESS

    def error(self, message: str):
        """A bad flag or value is an :class:`SVPConfigError` like any other bad input (the jobs exit 2)."""
        raise SVPConfigError(message)


def parse_args(
    argv: Optional[Sequence[str]] = None,
    dataclass_types: Sequence[type] = RECIPE_DATACLASSES,
    *,
    keys: Optional[Sequence[str]] = None,
    prog: Optional[str] = None,
    job: str = "this job",
) -> Tuple[Any, ...]:
    """Parse ``[RECIPE.yaml] [--key value ...]`` into instances of `dataclass_types`; flags override the recipe.

    `keys` are the recipe keys the job reads (default: every field of `dataclass_types`); any other key, in the recipe
    or on the command line, is refused by name (its value is never echoed: it may be a secret)."""
    argv = list(argv or [])
    keys = list(keys if keys is not None else recipe_keys(dataclass_types))
    parser = RecipeParser(dataclass_types, prog=prog, keys=keys)
    recipe, recipe_path = {}, None
    if argv and not argv[0].startswith("-"):
        recipe_path = argv.pop(0)
        recipe = read_recipe(recipe_path, keys, job=job)
    check_single_dash(argv, keys, job)
    argv = split_list_flags(argv, list_separators(dataclass_types))
    flags = _flag_names(argv)
    unread = [f for f in flags if f not in keys and f not in ("help", "h")]
    if unread:
        raise SVPConfigError(f"unknown argument(s) {['--' + f for f in unread]} for {job}; its keys: {sorted(keys)}")
    parser.set_defaults(**recipe)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    instances = parsed[: len(dataclass_types)]
    extra = parsed[len(dataclass_types)] if len(parsed) > len(dataclass_types) else None  # the `recipe` positional
    strays = [a for a in remaining if not a.startswith("-")]
    if extra is not None and getattr(extra, "recipe", None) is not None:
        strays.insert(
            0, extra.recipe
        )  # a value without a key that argparse took for the recipe: not the first argument
    if strays:
        raise stray_values_error(argv, strays, job, first="the recipe" if recipe_path else None)
    leftover = [a.split("=", 1)[0] for a in remaining if a.startswith("-")]
    if leftover:
        raise SVPConfigError(f"unknown argument(s) {leftover} for {job}; its keys: {sorted(keys)}")
    return tuple(instances)


def list_separators(dataclass_types: Sequence[type]) -> Dict[str, str]:
    """Each list-valued key of `dataclass_types` and the characters its items are split on (:data:`_SPLIT`); keys
    whose items are never split (``labels_from``: paths) are left out."""
    found = {}
    for dc in dataclass_types:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            annotation = hints[f.name]
            if typing.get_origin(annotation) is typing.Union:
                annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
            if typing.get_origin(annotation) in (list, List) and _SPLIT.get(f.name, ", "):
                found[f.name] = _SPLIT.get(f.name, ", ")
    return found


def split_list_flags(argv: Sequence[str], separators: Dict[str, str]) -> List[str]:
    """`argv` with the values of list-valued flags split as the same text is in a recipe: ``--class_names a,b`` and
    ``--class_names=a,b`` read as ``--class_names a b`` (argparse would keep ``a,b`` as one item)."""
    out: List[str] = []
    splitting = None
    for token in argv:
        if token.startswith("--"):
            name, has_value, value = token[2:].partition("=")
            splitting = separators.get(name.replace("-", "_"))
            if splitting is not None and has_value:
                out.append(f"--{name}")
                out.extend(_split_items(value, splitting) or [value])
                splitting = None  # `--key=value` takes no further values
                continue
            out.append(token)
        elif splitting is not None:
            out.extend(_split_items(token, splitting) or [token])
        else:
            out.append(token)
    return out


_SINGLE_DASH = re.compile(r"^-[A-Za-z_]")


def _is_number(text: str) -> bool:
    try:
        float(text)  # a value such as -inf or -1e3, not a flag
    except ValueError:
        return False
    return True


def check_single_dash(argv: Sequence[str], keys: Sequence[str], job: str) -> None:
    """A clear error for a key written with one dash (``-hub_token X``): argparse would read it as ``-h`` followed by
    text, or take its value for a value without a key. The value after ``=`` is never echoed."""
    for token in argv:
        if _SINGLE_DASH.match(token) and token != "-h" and not _is_number(token):
            name = token[1:].split("=", 1)[0].replace("-", "_")
            fix = (
                f"write --{name}" if name in keys else f"and {name!r} is not a key of {job} (its keys: {sorted(keys)})"
            )
            raise SVPConfigError(f"unknown argument '-{name}': keys take two dashes; {fix}")


def stray_values_error(
    argv: Sequence[str], strays: Sequence[str], job: str, first: Optional[str] = None
) -> SVPConfigError:
    """The error for values without a key among the flags `argv` (`first`: what came before them, if anything): it
    says how many and where, never what they are (one may be a secret, e.g. the token of ``--hub_token= hf_...``,
    with a space after ``=``)."""
    where = ""
    position = next((i for i, a in enumerate(argv) if a == strays[0]), None)
    if position == 0 and first:
        where = f", the first right after {first}"
    elif position:
        before = argv[position - 1]
        if before.startswith("--"):
            before = before.split("=", 1)[0] + ("=" if "=" in before else "")
            where = f", the first right after {before!r}" + (" (no space after '=')" if before.endswith("=") else "")
        else:
            where = ", the first after another value"
    return SVPConfigError(
        f"{len(strays)} value(s) without a key on the command line of {job}{where}, not shown (a value may be a "
        "secret): only the first argument may be a recipe; every other value follows its key, as --key value or "
        "--key=value"
    )


def resolved_recipe(*instances, keys: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The recipe a run actually used (every key the job reads, defaults included), without secrets: saved with the
    output so that the run can be reproduced."""
    values = {}
    for instance in instances:
        values.update({f.name: getattr(instance, f.name) for f in fields(instance)})
    wanted = keys if keys is not None else list(values)
    return {k: values[k] for k in wanted if k in values and k not in SECRET_KEYS}


def redact(text: str, secrets: Sequence[Optional[str]]) -> str:
    """`text` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def redact_values(obj: Any, secrets: Sequence[Optional[str]]) -> Any:
    """`obj` with every secret's value replaced by ``***`` in each string it holds (keys and values of mappings, items
    of lists and tuples, at any depth); anything else as it is."""
    if not any(secrets):
        return obj
    if isinstance(obj, str):
        return redact(obj, secrets)
    if isinstance(obj, dict):
        return {redact_values(k, secrets): redact_values(v, secrets) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [redact_values(v, secrets) for v in obj]
        return type(obj)(*items) if hasattr(obj, "_fields") else type(obj)(items)  # a named tuple takes fields
    return obj


__all__ = [
    "DataArguments",
    "SelectionArguments",
    "RunArguments",
    "ActiveArguments",
    "TRAINING_SETTINGS",
    "TRAINING_KEYS",
    "SELECTORS",
    "role_settings",
    "read_recipe",
    "parse_args",
    "recipe_keys",
    "resolved_recipe",
    "redact",
    "redact_values",
    "coerce",
    "parse_size",
    "check_fraction",
    "check_schedule",
    "check_coverage_beta",
    "check_seed",
    "check_simulation_keys",
    "check_split_name",
    "held_out_split_name",
    "evaluation_split_name",
]
