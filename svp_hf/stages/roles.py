"""The translation of a recipe's dataclasses into the stages' typed settings (:mod:`svp_hf.stages.settings`), done by the front
ends: how each role's model is trained (the proxy's and the target's :class:`~svp_hf.engine.training.TrainingConfig`, both
read through :func:`svp_hf.config.arguments.role_settings`: the plain keys for the proxy, ``target_*`` keys for the target with
the plain keys as their defaults), the core-set stages' settings and active learning's."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence

from ..config.arguments import SELECTORS, ActiveArguments, RunArguments, SelectionArguments, role_settings
from ..engine.training import TrainingConfig
from ..utils.device import DeviceSettings
from .settings import ActiveSettings, AutoSettings, ModelSettings, ScoringSettings, SelectionSettings


def device_settings(run_args: Optional[RunArguments]) -> DeviceSettings:
    """The recipe's device keys (``None``: the device's default)."""
    if run_args is None:
        return DeviceSettings()
    return DeviceSettings(
        channels_last=run_args.channels_last, pin_memory=run_args.pin_memory, torch_compile=run_args.torch_compile
    )


def training_config(
    role: str,
    args: SelectionArguments,
    run_args: Optional[RunArguments] = None,
    *,
    epochs: Optional[int] = None,
    device: Optional[DeviceSettings] = None,
) -> TrainingConfig:
    """The training settings of `role` ("proxy" or "target"); `epochs` overrides the role's epochs (auto's check);
    `device` (default: the recipe's device keys, from `run_args`) sets channels_last and pinned memory."""
    settings = role_settings(role, args, run_args)
    device = device or device_settings(run_args)
    return TrainingConfig(
        epochs=int(epochs if epochs is not None else settings["epochs"]),
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        momentum=settings["momentum"],
        weight_decay=settings["weight_decay"],
        lr_schedule=settings["lr_schedule"],
        optimizer=settings["optimizer"],
        seed=args.seed,
        num_workers=args.dataloader_num_workers,
        augment=settings["augment"],
        channels_last=device.channels_last,
        pin_memory=device.pin_memory,
    )


def pretrained(role: str, args: SelectionArguments, run_args: Optional[RunArguments] = None) -> bool:
    """Whether `role`'s model starts from pretrained weights."""
    return bool(role_settings(role, args, run_args)["pretrained"])


def model_settings(
    role: str,
    args: SelectionArguments,
    run_args: Optional[RunArguments] = None,
    *,
    device: Optional[DeviceSettings] = None,
) -> ModelSettings:
    """`role`'s :class:`~svp_hf.stages.settings.ModelSettings` from the recipe (the proxy's ``proxy_checkpoint`` included)."""
    settings = role_settings(role, args, run_args)
    return ModelSettings(
        name=settings["model"],
        training=training_config(role, args, run_args, device=device),
        pretrained=bool(settings["pretrained"]),
        trust_remote_code=bool(args.trust_remote_code),
        checkpoint=args.proxy_checkpoint if role == "proxy" else None,
    )


def scoring_settings(args: SelectionArguments, methods: Optional[Sequence[str]] = None) -> ScoringSettings:
    """The recipe's :class:`~svp_hf.stages.settings.ScoringSettings` (`methods` default to the recipe's)."""
    return ScoringSettings(
        methods=tuple(methods or args.methods),
        batch_size=int(args.batch_size),
        seed=int(args.seed),
        kcenter_chunk_size=int(args.kcenter_chunk_size),
        kcenter_pool_size=args.kcenter_pool_size,
        kcenter_max_memory=args.kcenter_max_memory,
        shard_size=int(args.scoring_shard_size),
        num_workers=args.dataloader_num_workers,
    )


def selection_settings(args: SelectionArguments) -> SelectionSettings:
    """The recipe's :class:`~svp_hf.stages.settings.SelectionSettings`."""
    return SelectionSettings(
        method=args.method,
        fraction=float(args.fraction),
        strategy=args.strategy,
        class_balanced=bool(args.class_balanced),
        seed=int(args.seed),
        coverage_beta=args.coverage_beta,
        auto=AutoSettings(
            holdout=float(args.auto_holdout),
            seeds=int(args.auto_seeds),
            epochs=args.auto_epochs,
            budget=args.selection_budget,
        ),
    )


def stage_settings(
    args: SelectionArguments, run_args: Optional[RunArguments] = None, *, device: Optional[DeviceSettings] = None
):
    """Everything the stages read from a recipe: ``(proxy, target, scoring, selection)`` (``target`` is ``None``
    when the recipe trains none)."""
    target = (
        model_settings("target", args, run_args, device=device) if run_args is not None and run_args.target else None
    )
    return (
        model_settings("proxy", args, run_args, device=device),
        target,
        scoring_settings(args),
        selection_settings(args),
    )


def active_settings(args: SelectionArguments, active: ActiveArguments) -> ActiveSettings:
    """The recipe's :class:`~svp_hf.stages.settings.ActiveSettings`: what active learning's rounds and loops read."""
    return ActiveSettings(
        method=args.method,
        budgets=tuple(int(b) for b in active.budgets or ()),
        initial_size=int(active.initial_size),
        selector=active.selector,
        seed=int(args.seed),
        warm_start=bool(active.warm_start),
        eval_each_round=bool(active.eval_each_round),
        initial_class_balanced=bool(active.initial_class_balanced),
        kcenter_chunk_size=int(args.kcenter_chunk_size),
    )


def selector_models(
    args: SelectionArguments, run_args: RunArguments, active: ActiveArguments
) -> Dict[str, ModelSettings]:
    """The :class:`~svp_hf.stages.settings.ModelSettings` of every role that selects in a loop `active.selector` runs, plus
    the target's (role ``"target"``) when one is set, to be trained on the labelled sets. Active learning trains its
    selectors every round: none loads a ``proxy_checkpoint``."""
    roles = dict.fromkeys(SELECTORS[active.selector] + (("target",) if run_args.target else ()))
    return {role: dataclasses.replace(model_settings(role, args, run_args), checkpoint=None) for role in roles}


def training_record(config: TrainingConfig, *, pretrained: bool = False) -> Dict[str, Any]:
    """What a report records of how a model was trained."""
    record = {
        k: getattr(config, k) for k in ("optimizer", "learning_rate", "lr_schedule", "weight_decay", "batch_size")
    }
    if config.optimizer == "sgd":
        record["momentum"] = config.momentum
    if pretrained:
        record["pretrained"] = True
    return record


def training_metrics(args: SelectionArguments, run_args: Optional[RunArguments]) -> Dict[str, Any]:
    """A run's record of how its proxy and (when set) its target were trained."""
    has_target = run_args is not None and bool(run_args.target)
    return {
        "proxy_training": training_record(training_config("proxy", args), pretrained=pretrained("proxy", args)),
        "target_training": training_record(
            training_config("target", args, run_args), pretrained=pretrained("target", args, run_args)
        )
        if has_target
        else None,
    }


__all__ = [
    "model_settings",
    "scoring_settings",
    "selection_settings",
    "stage_settings",
    "active_settings",
    "selector_models",
    "device_settings",
    "training_config",
    "pretrained",
    "training_record",
    "training_metrics",
]
