"""Recipes: flat YAML files parsed into dataclasses with transformers' ``HfArgumentParser``.

``python -m svp_hf.coreset RECIPE.yaml --key value ...``: the recipe's keys become defaults, command-line flags win.
Every value is checked here, before any data is loaded or model trained.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from .errors import SVPConfigError
from .output import DEFAULT_MAX_SHARD_SIZE, parse_size
from .pool import check_schedule
from .selection import check_fraction
from .strategies import check_coverage_beta, check_strategy


def _help(text: str, **kwargs) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class DataArguments:
    dataset_name: Optional[str] = _help(
        "A Hub dataset id, a builder ('parquet', 'imagefolder', ...) used with data_files, a local folder, or "
        "'builtin:digits'.",
        default=None,
    )
    dataset_config_name: Optional[str] = _help("The dataset's configuration name.", default=None)
    data_files: Optional[str] = _help("Mapping split -> path(s) (a YAML mapping, or JSON on the command line).", default=None)
    train_split: str = _help("The split to score and prune.", default="train")
    eval_split: Optional[str] = _help("The split to evaluate proxy and target on (left unpruned); empty for none.", default="test")
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
        if self.eval_split in ("", "none", "None"):
            self.eval_split = None
        if isinstance(self.text_column, str):
            self.text_column = [c for c in self.text_column.replace(",", " ").split() if c]
        if self.validation_split_percentage is not None and not 0 < float(self.validation_split_percentage) < 100:
            raise SVPConfigError(f"validation_split_percentage must be in (0, 100), got {self.validation_split_percentage}")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise SVPConfigError(f"{name} must be at least 1, got {value}")


def check_schedule_and_optimizer(lr_schedule: Optional[str], optimizer: Optional[str], prefix: str = "") -> None:
    from .training import LR_SCHEDULES, OPTIMIZERS

    if lr_schedule is not None and lr_schedule not in LR_SCHEDULES:
        raise SVPConfigError(f"unknown {prefix}lr_schedule {lr_schedule!r}; available: {', '.join(LR_SCHEDULES.names())}")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise SVPConfigError(f"unknown {prefix}optimizer {optimizer!r}; available: {', '.join(OPTIMIZERS.names())}")


@dataclass
class SelectionArguments:
    proxy: str = _help(
        "The proxy model: a timm name (resnet20, resnet18, ...), fasttext, a transformers folder or Hub id, "
        "config:MODEL_TYPE, or another registered family.",
        default="resnet20",
    )
    proxy_epochs: int = _help("Epochs of proxy training ('fewer epochs' makes a cheaper proxy).", default=10)
    batch_size: int = _help("Batch size per process for training and scoring.", default=128)
    learning_rate: float = _help("Peak learning rate.", default=0.1)
    momentum: float = _help("SGD momentum.", default=0.9)
    weight_decay: float = _help("Weight decay.", default=5e-4)
    lr_schedule: str = _help(
        "Learning-rate schedule: step (SVP's CIFAR one, scaled to the epochs), halving (SVP's Amazon one), imagenet "
        "(SVP's ImageNet one, with warm-up), linear (10 percent warm-up, then linear decay: transformers fine-tuning), "
        "cosine or constant.",
        default="step",
    )
    optimizer: str = _help("Optimizer: sgd (with momentum, as in SVP) or adamw (for fine-tuning transformers).", default="sgd")
    method: str = _help("The selection method (see svp_hf.list_methods()).", default="least_confidence")
    score_methods: Optional[List[str]] = _help("More methods to score alongside `method` (one column each in scores.parquet).", default=None)
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
    auto_holdout: float = _help("Share of training rows auto holds out (class-stratified) to compare strategies.", default=0.1)
    auto_seeds: int = _help("Seeds per candidate in auto's check (their spread decides what beats random).", default=2)
    auto_epochs: Optional[int] = _help(
        "Epochs of each auto candidate's proxy (default: target_epochs when a target is trained, else proxy_epochs): "
        "the check should train as long as the model the subset is for, or it favours easy subsets.",
        default=None,
    )
    class_balanced: bool = _help("Keep the same share of every class.", default=False)
    seed: int = _help("Seed for data order, initialisation, random selection and tie-breaking.", default=0)
    pretrained: bool = _help("Load pretrained weights for timm proxies and targets (needs them locally or the Hub).", default=False)
    trust_remote_code: bool = _help("Let transformers models and tokenizers run code from their repositories.", default=False)
    augment: bool = _help("Augment training images (pad-and-crop plus flip, or timm's transforms).", default=True)
    dataloader_num_workers: int = _help("DataLoader worker processes.", default=0)
    kcenter_chunk_size: int = _help("Rows per distance block in k-centers (bounds its memory).", default=16384)
    kcenter_pool_size: Optional[int] = _help(
        "Run k-centers on a seeded random candidate pool of this many rows (the rest score -inf); default: all rows.",
        default=None,
    )
    kcenter_max_memory: Optional[str] = _help(
        "Memory bound for k-centers' embeddings and distances, e.g. '4GB'; the candidate pool shrinks to fit.", default=None
    )
    proxy_checkpoint: Optional[str] = _help(
        "Score with this trained proxy instead of training one: a weights file, a folder holding model.safetensors, "
        "or a run's output_dir/checkpoints/proxy (whose training state also gives forgetting events).",
        default=None,
    )
    scoring_shard_size: int = _help("Rows scored per shard; a killed run resumes after the last finished shard.", default=10000)

    def __post_init__(self):
        from .methods import get_method

        self.fraction = check_fraction(self.fraction)
        get_method(self.method)
        check_strategy(self.strategy)
        self.coverage_beta = check_coverage_beta(self.coverage_beta, self.fraction if self.strategy == "coverage" else None)
        if not 0.0 < float(self.auto_holdout) <= 0.5:
            raise SVPConfigError(f"auto_holdout must be in (0, 0.5], got {self.auto_holdout}")
        if isinstance(self.score_methods, str):
            self.score_methods = [m for m in self.score_methods.replace(",", " ").split() if m]
        for m in self.score_methods or []:
            get_method(m)
        check_schedule_and_optimizer(self.lr_schedule, self.optimizer)
        for name in ("proxy_epochs", "batch_size", "kcenter_chunk_size", "scoring_shard_size", "kcenter_pool_size", "auto_seeds", "auto_epochs"):
            if getattr(self, name) is None:
                continue
            if int(getattr(self, name)) < 1:
                raise SVPConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= float(self.momentum) < 1:
            raise SVPConfigError(f"momentum must be in [0, 1), got {self.momentum}")
        if not float(self.learning_rate) > 0:
            raise SVPConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.proxy:
            raise SVPConfigError("proxy must name a model")
        if self.kcenter_max_memory is not None:
            parse_size(self.kcenter_max_memory, "kcenter_max_memory")
        if self.proxy_checkpoint:
            from .checkpoint import resolve_model_checkpoint

            resolve_model_checkpoint(self.proxy_checkpoint)

    @property
    def methods(self) -> List[str]:
        return list(dict.fromkeys([self.method] + list(self.score_methods or [])))


@dataclass
class RunArguments:
    target: Optional[str] = _help("The target model trained on the selected subset (empty: no target training).", default=None)
    target_epochs: int = _help("Epochs of target training.", default=10)
    target_learning_rate: Optional[float] = _help("Target learning rate (default: learning_rate).", default=None)
    target_lr_schedule: Optional[str] = _help("Target learning-rate schedule (default: lr_schedule).", default=None)
    target_optimizer: Optional[str] = _help("Target optimizer, sgd or adamw (default: optimizer).", default=None)
    output_dir: str = _help("Where dataset/, scores.parquet and metrics.json are written.", default="outputs/svp")
    overwrite_output_dir: bool = _help("Replace a result already in output_dir.", default=False)
    max_shard_size: str = _help(
        "Largest parquet file written per split (e.g. '500MB'); larger splits are written in numbered shards.",
        default=DEFAULT_MAX_SHARD_SIZE,
    )
    mixed_precision: Optional[str] = _help("no, fp16 or bf16 (default: Accelerate's config).", default=None)
    report_to: Optional[str] = _help("Accelerate trackers to log to (tensorboard, wandb, all).", default=None)
    score_with_target: bool = _help(
        "Also train the target on the whole training split and score it with the same methods, to report how the "
        "proxy's ranking agrees with the target's (Spearman, Kendall, top-k overlap). Costs one full target training.",
        default=False,
    )
    push_to_hub: bool = _help("Upload output_dir/dataset (card, splits, scores, plots) to the Hub as hub_dataset_id.", default=False)
    hub_dataset_id: Optional[str] = _help("The Hub dataset to push to: 'user/name' (or 'name' in your namespace).", default=None)
    hub_private: bool = _help("Create the Hub dataset as private.", default=False)
    hub_overwrite: bool = _help("Replace the Hub dataset's contents if it already exists.", default=False)
    hub_token: Optional[str] = _help("Hub token (default: HF_TOKEN or the token saved by `hf auth login`).", default=None)
    resume: bool = _help(
        "Continue the unfinished run found in output_dir/checkpoints (proxy and target epochs, scored shards); "
        "false starts over.",
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
    pin_memory: Optional[bool] = _help("Pin the data loaders' host memory (default: when batches go to a CUDA GPU).", default=None)
    torch_compile: bool = _help("Compile the trained models with torch.compile (Accelerate's inductor backend).", default=False)
    image_cache_max_memory: str = _help(
        "Largest decoded image cache held in memory (e.g. '4GB'); a larger one is memory-mapped from disk.", default="4GB"
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
        parse_size(self.image_cache_max_memory, "image_cache_max_memory")
        if self.target in ("", "none", "None"):
            self.target = None
        if self.hub_dataset_id in ("", "none", "None"):
            self.hub_dataset_id = None
        if self.push_to_hub and not self.hub_dataset_id:
            raise SVPConfigError("push_to_hub needs hub_dataset_id (e.g. user/cifar10-svp-forgetting-50)")
        if self.score_with_target and not self.target:
            raise SVPConfigError("score_with_target needs a target model (set target)")
        if int(self.target_epochs) < 1:
            raise SVPConfigError(f"target_epochs must be at least 1, got {self.target_epochs}")
        if self.target_learning_rate is not None and not float(self.target_learning_rate) > 0:
            raise SVPConfigError(f"target_learning_rate must be positive, got {self.target_learning_rate}")
        check_schedule_and_optimizer(self.target_lr_schedule, self.target_optimizer, prefix="target_")
        if self.mixed_precision not in (None, "no", "fp16", "bf16", "fp8"):
            raise SVPConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}")
        if not self.output_dir:
            raise SVPConfigError("output_dir must be set")
        parse_size(self.max_shard_size, "max_shard_size")


@dataclass
class ActiveArguments:
    """The active-learning loop's keys (``python -m svp_hf.active``); the rest of an active recipe is the core-set's."""

    initial_size: int = _help("Size of the seeded random initial labelled set (round 0).", default=1000)
    budgets: Optional[List[int]] = _help("Labelled-set sizes after each round, strictly increasing.", default=None)
    selector: str = _help("Who selects: proxy, target (the baseline SVP compares against), or both side by side.", default="proxy")
    warm_start: bool = _help("Continue training the previous round's selector instead of training it from scratch.", default=False)
    eval_each_round: bool = _help("Evaluate the selector on the evaluation split every round (not counted as selection time).", default=False)
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
        from .active_learning import SELECTORS

        if isinstance(self.budgets, (str, int)):
            self.budgets = str(self.budgets).replace(",", " ").split()
        try:
            budgets = [int(b) for b in self.budgets or []]
        except (TypeError, ValueError):
            raise SVPConfigError(f"budgets must be a list of labelled-set sizes, got {self.budgets!r}") from None
        self.initial_size = int(self.initial_size)
        self.budgets = check_schedule(None, self.initial_size, budgets)
        if self.selector not in SELECTORS:
            raise SVPConfigError(f"unknown selector {self.selector!r}; choose one of {', '.join(SELECTORS)}")


RECIPE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments)
ACTIVE_DATACLASSES = (DataArguments, SelectionArguments, RunArguments, ActiveArguments)


def recipe_keys(dataclass_types: Sequence[type] = RECIPE_DATACLASSES) -> List[str]:
    return [f.name for dc in dataclass_types for f in fields(dc)]


def read_recipe(path: str, dataclass_types: Sequence[type] = RECIPE_DATACLASSES) -> Dict[str, Any]:
    """A recipe file's keys and values, checked against the known keys."""
    if not os.path.isfile(path):
        raise SVPConfigError(f"recipe {path!r} not found")
    try:
        with open(path, encoding="utf-8") as f:
            recipe = yaml.safe_load(f) if not path.endswith(".json") else json.load(f)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise SVPConfigError(f"recipe {path!r} is not valid YAML: {err}") from None
    if recipe is None:
        recipe = {}
    if not isinstance(recipe, dict):
        raise SVPConfigError(f"recipe {path!r} must be a mapping of keys to values, got {type(recipe).__name__}")
    known = set(recipe_keys(dataclass_types))
    unknown = sorted(set(recipe) - known)
    if unknown:
        raise SVPConfigError(f"unknown recipe key(s) {unknown} in {path!r}; known keys: {sorted(known)}")
    return recipe


def parse_args(
    argv: Optional[Sequence[str]] = None, dataclass_types: Sequence[type] = RECIPE_DATACLASSES
) -> Tuple[Any, ...]:
    """Parse ``[RECIPE.yaml] [--key value ...]`` into instances of `dataclass_types`; flags override the recipe."""
    from transformers import HfArgumentParser

    argv = list(argv or [])
    parser = HfArgumentParser(list(dataclass_types))
    if argv and not argv[0].startswith("-"):
        parser.set_defaults(**read_recipe(argv.pop(0), dataclass_types))
    parsed = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    *instances, remaining = parsed
    if remaining:
        raise SVPConfigError(f"unknown argument(s) {remaining}; known keys: {recipe_keys(dataclass_types)}")
    return tuple(instances)


__all__ = ["DataArguments", "SelectionArguments", "RunArguments", "ActiveArguments", "read_recipe", "parse_args", "recipe_keys"]
