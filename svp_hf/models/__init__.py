"""Models stage: build proxies and targets by name, and run them on batches.

A *model family* knows which names it can build, which data modality it reads, how to turn a dataset into batches
for its models, and how to get logits (and penultimate embeddings, for k-centers) from a batch. Families are
registered in :data:`FAMILIES` and tried by `priority` (lowest first), so ``create_model("resnet20", ...)``,
``create_model("fasttext", ...)`` and any other name resolve the same way: ``fasttext`` (priority 10), then timm names
(100), then transformers sequence classifiers (200). Importing this package also registers SVP's CIFAR ResNets in
timm's registry.

Model names may carry options after commas, ``NAME,key=value,...`` (e.g. ``fasttext,dim=32``); see
:func:`parse_model_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import yaml

from ..data.columns import DataInfo
from ..data.images import collate_image_batch, image_dataset
from ..errors import SVPConfigError
from ..registry import Registry
from . import cifar_resnet  # noqa: F401  (registers resnet20/56/110/164 with timm)


@dataclass(frozen=True)
class ModelFamily:
    """How svp_hf builds and runs one kind of model."""

    name: str
    modality: str
    handles: Callable[[str], bool]
    create: Callable[..., torch.nn.Module]  # (name, info, *, pretrained, trust_remote_code) -> model
    dataset: Callable[..., object]  # (dataset, model, info, train, augment) -> torch-ready dataset
    collate: Optional[Callable]  # rows -> batch, when batching is the same for every model of the family
    logits: Callable[[torch.nn.Module, Dict[str, torch.Tensor]], torch.Tensor]
    logits_and_embeddings: Callable[[torch.nn.Module, Dict[str, torch.Tensor]], Tuple[torch.Tensor, torch.Tensor]]
    priority: int = 100  # lower is tried first
    collate_for: Optional[Callable[[torch.nn.Module], Callable]] = (
        None  # model -> collate (e.g. its tokenizer's padding)
    )
    check: Optional[Callable[..., None]] = None  # (name, info, *, trust_remote_code): cheap checks before any training
    sparse_gradients: bool = False  # its models train sparse embeddings: only optimizers that take them can train it

    def make_collate(self, model: torch.nn.Module) -> Callable:
        """The collate function for batches of `model`'s inputs."""
        return self.collate_for(model) if self.collate_for is not None else self.collate


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
        f"unknown model {name!r}: not 'fasttext', a timm model name (see timm.list_models()), a transformers "
        f"model folder or Hub id ('owner/name'), nor 'config:MODEL_TYPE' (families: {FAMILIES.names()})"
    )


def create_model(
    name: str, info: DataInfo, *, pretrained: bool = False, trust_remote_code: bool = False, **kwargs
) -> torch.nn.Module:
    """Build model `name` for a dataset described by `info` (its classes, channels, ...).

    `trust_remote_code` lets a transformers model run code from its repository; it is off unless asked for.
    """
    family = resolve_family(name)
    return family.create(name, info, pretrained=pretrained, trust_remote_code=trust_remote_code, **kwargs)


def check_model(name: str, info: DataInfo, *, trust_remote_code: bool = False) -> ModelFamily:
    """Resolve `name` and run its family's cheap checks against the data (model and tokenizer reachable, labels in
    the classifier's range, modality), so that a bad target fails before the proxy is trained."""
    family = resolve_family(name)
    if family.modality != info.modality:
        raise SVPConfigError(
            f"model {name!r} reads {family.modality} data, but the dataset was inspected as {info.modality}"
        )
    if family.check is not None:
        family.check(name, info, trust_remote_code=trust_remote_code)
    return family


def parse_model_spec(name: str) -> Tuple[str, Dict[str, Any]]:
    """Split ``NAME,key=value,...`` into the name and its options (values parsed as YAML scalars: ints, floats,
    booleans, else strings)."""
    base, *parts = [p.strip() for p in name.split(",")]
    options: Dict[str, Any] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise SVPConfigError(f"model option {part!r} in {name!r} is not key=value")
        try:
            options[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            options[key.strip()] = value.strip()
    return base, options


# --- timm: every timm model name, plus SVP's CIFAR ResNets registered above ------------------------------------------


def _timm_handles(name: str) -> bool:
    import timm

    return name.startswith("hf-hub:") or timm.is_model(name)


def _timm_create(
    name: str, info: DataInfo, *, pretrained: bool = False, trust_remote_code: bool = False, **kwargs
) -> torch.nn.Module:
    import timm  # timm models run no repository code: `trust_remote_code` is a permission they never need

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


from . import fasttext, transformers_text  # noqa: E402,F401  (register the text families)

__all__ = [
    "ModelFamily",
    "FAMILIES",
    "register_family",
    "resolve_family",
    "create_model",
    "check_model",
    "parse_model_spec",
    "list_families",
]
