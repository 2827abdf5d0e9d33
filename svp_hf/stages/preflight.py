"""Pre-flight checks: every recipe name that refers to a plug-in registry (selection methods, strategies, optimizers,
learning-rate schedules, model families), checked before any data is loaded or model trained.

:mod:`svp_hf.config` checks each value's type and range without importing torch; the names checked here need the
registries, which live with the code they name.
"""

from __future__ import annotations

from typing import Iterable, Optional

from ..config.arguments import ActiveArguments, RunArguments, SelectionArguments, role_settings
from ..data.columns import DataInfo, check_same_columns
from ..engine.scoring import check_kcenter_memory
from ..engine.training import LR_SCHEDULES, OPTIMIZERS
from ..errors import SVPConfigError
from ..models import check_model, resolve_family
from ..selection.methods import resolve_methods
from ..selection.strategies import check_strategy


def check_optimizer(optimizer: str, model_name: str) -> None:
    """A clear error, before any training, when `optimizer` is unknown or cannot train model `model_name`."""
    if optimizer not in OPTIMIZERS:
        raise SVPConfigError(f"unknown optimizer {optimizer!r}; available: {', '.join(OPTIMIZERS.names())}")
    if resolve_family(model_name).sparse_gradients and not OPTIMIZERS.get(optimizer).sparse_gradients:
        raise SVPConfigError(
            f"optimizer {optimizer!r} cannot train {model_name!r}: its embeddings take sparse gradients; use 'sgd'"
        )


def check_training(role: str, args: SelectionArguments, run_args: Optional[RunArguments] = None) -> None:
    """`role`'s schedule and optimizer exist, and the optimizer can train its model (a ``proxy_checkpoint`` is not
    trained, so its optimizer is not checked against it)."""
    settings = role_settings(role, args, run_args)
    prefix = "" if role == "proxy" else "target_"
    if settings["lr_schedule"] not in LR_SCHEDULES:
        raise SVPConfigError(
            f"unknown {prefix}lr_schedule {settings['lr_schedule']!r}; available: {', '.join(LR_SCHEDULES.names())}"
        )
    if settings["optimizer"] not in OPTIMIZERS:
        raise SVPConfigError(
            f"unknown {prefix}optimizer {settings['optimizer']!r}; available: {', '.join(OPTIMIZERS.names())}"
        )
    if role == "target" or not args.proxy_checkpoint:
        check_optimizer(settings["optimizer"], settings["model"])


def check_optimizers(args: SelectionArguments, run_args: Optional[RunArguments] = None) -> None:
    """Every role's training settings (see :func:`check_training`)."""
    check_training("proxy", args)
    if run_args is not None and run_args.target:
        check_training("target", args, run_args)


def check_recipe(
    args: SelectionArguments, run_args: Optional[RunArguments] = None, active: Optional[ActiveArguments] = None
) -> None:
    """Every registry name of a recipe: methods, strategy, models, schedules and optimizers of each role; and a
    ``kcenter_max_memory`` too small for a useful k-centers candidate set."""
    if any(method.needs == "embeddings" for method in resolve_methods(args.methods)):
        check_kcenter_memory(args.kcenter_max_memory)
    check_strategy(args.strategy)
    resolve_family(args.proxy)
    if run_args is not None and run_args.target:
        resolve_family(run_args.target)
    check_optimizers(args, run_args)


def check_models_against_data(
    info: DataInfo, models: Iterable[Optional[str]], *, trust_remote_code: bool = False, evaluation=None
) -> None:
    """Every one of `models` (``None`` skipped) against the data `info` describes: its weights, tokenizer and label
    range are reachable and fit; and the evaluation split, when given, has the training split's columns. The one
    model-against-data check every front end runs before anything is trained."""
    for name in dict.fromkeys(filter(None, models)):
        check_model(name, info, trust_remote_code=trust_remote_code)
    if evaluation is not None:
        check_same_columns(evaluation, info)


__all__ = ["check_models_against_data", "check_optimizer", "check_training", "check_optimizers", "check_recipe"]
