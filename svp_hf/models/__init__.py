"""Models stage: build proxies and targets by name, and run them on batches.

A *model family* knows which names it can build, which data modality it reads, how to turn a dataset into batches
for its models, and how to get logits (and penultimate embeddings, for k-centers) from a batch. Families are
registered in :data:`FAMILIES` and tried in order, so ``create_model("resnet20", ...)`` and any other name resolve the
same way. Importing this package also registers SVP's CIFAR ResNets in timm's registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..data import DataInfo, collate_image_batch, image_dataset
from ..errors import SVPConfigError
from ..registry import Registry
from . import cifar_resnet  # noqa: F401  (registers resnet20/56/110/164 with timm)


@dataclass(frozen=True)
class ModelFamily:
    """How svp_hf builds and runs one kind of model."""

    name: str
    modality: str
    handles: Callable[[str], bool]
    create: Callable[..., torch.nn.Module]
    dataset: Callable[..., object]  # (dataset, model, info, train, augment) -> torch-ready dataset
    collate: Callable
    logits: Callable[[torch.nn.Module, Dict[str, torch.Tensor]], torch.Tensor]
    logits_and_embeddings: Callable[[torch.nn.Module, Dict[str, torch.Tensor]], Tuple[torch.Tensor, torch.Tensor]]
    priority: int = 100  # lower is tried first


FAMILIES: Registry[ModelFamily] = Registry("model family")


def register_family(family: ModelFamily) -> ModelFamily:
    return FAMILIES.register(family.name, family)


def resolve_family(name: str) -> ModelFamily:
    """The family that builds model `name`; a clear error listing the families when none does."""
    if not name or not isinstance(name, str):
        raise SVPConfigError(f"model name must be a non-empty string, got {name!r}")
    for family in sorted((f for _, f in FAMILIES.items()), key=lambda f: f.priority):
        if family.handles(name):
            return family
    raise SVPConfigError(
        f"unknown model {name!r}: not a timm model name (see timm.list_models()) nor any of the families "
        f"{FAMILIES.names()}"
    )


def create_model(name: str, info: DataInfo, *, pretrained: bool = False, **kwargs) -> torch.nn.Module:
    """Build model `name` for a dataset described by `info` (its classes, channels, ...)."""
    return resolve_family(name).create(name, info, pretrained=pretrained, **kwargs)


# --- timm: every timm model name, plus SVP's CIFAR ResNets registered above ------------------------------------------


def _timm_handles(name: str) -> bool:
    import timm

    return name.startswith("hf-hub:") or timm.is_model(name)


def _timm_create(name: str, info: DataInfo, *, pretrained: bool = False, **kwargs) -> torch.nn.Module:
    import timm

    in_chans = info.extra.get("in_chans", 3)
    try:
        return timm.create_model(name, pretrained=pretrained, num_classes=info.num_classes, in_chans=in_chans, **kwargs)
    except Exception as err:
        raise SVPConfigError(f"could not build timm model {name!r}: {type(err).__name__}: {err}") from err


def _timm_logits(model: torch.nn.Module, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    return model(batch["pixel_values"])


def _timm_logits_and_embeddings(model: torch.nn.Module, batch: Dict[str, torch.Tensor]):
    features = model.forward_features(batch["pixel_values"])
    embeddings = model.forward_head(features, pre_logits=True)
    return model.forward_head(features), embeddings.flatten(1)


register_family(
    ModelFamily(
        name="timm",
        modality="image",
        handles=_timm_handles,
        create=_timm_create,
        dataset=image_dataset,
        collate=collate_image_batch,
        logits=_timm_logits,
        logits_and_embeddings=_timm_logits_and_embeddings,
        priority=100,
    )
)


def list_families() -> List[str]:
    return FAMILIES.names()


__all__ = ["ModelFamily", "FAMILIES", "register_family", "resolve_family", "create_model", "list_families"]
