"""The recipe's dataclasses (``DataArguments``, ``SelectionArguments``, ``RunArguments``, ``ActiveArguments``).

Training settings are defined once (:data:`TRAINING_SETTINGS`) and expanded per role: the plain key is the proxy's
(``learning_rate``), and the target's own key (``target_learning_rate``) defaults to it; :func:`role_settings` is the
one place that reads them. Names that refer to plug-in registries (methods, strategies, optimizers, schedules) are
checked by :mod:`svp_hf.stages.preflight`, before any data is loaded or model trained."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, make_dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..account import DEFAULT_SELECTION_BUDGET, check_selection_budget
from ..errors import SVPConfigError
from .checks import (
    DEFAULT_MAX_SHARD_SIZE,
    check_coverage_beta,
    check_fraction,
    check_schedule,
    check_seed,
    check_split_name,
    evaluation_split_name,
    parse_size,
)
from .coercion import MAX_WORKERS, _at_least_one, _kind, _none_if_empty, coerce_fields

# Which selection loops each active-learning `selector` runs; a loop is named by the role of the model selecting in it.
SELECTORS: Dict[str, tuple] = {"proxy": ("proxy",), "target": ("target",), "both": ("proxy", "target")}


MIXED_PRECISION = ("no", "fp16", "bf16", "fp8")


ROLES = ("proxy", "target")


# The setting whose value must never be written anywhere (metrics, reports, cards, checkpoints, saved recipes).
SECRET_KEYS = ("hub_token",)


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


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
        "config, else bf16 on a GPU that supports it and on a CPU that runs bf16 natively (AVX512-BF16 or AMX), else "
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
        "Keep output_dir/checkpoints once the run has finished (its proxy/ folder can be given as proxy_checkpoint); "
        "false also saves a model's final epoch only where that costs at most about a tenth of its training.",
        default=False,
    )
    # --- speed: the data path and device defaults (svp_hf.utils.device, svp_hf.data.image_cache); one block, kept together ---
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
