"""Device defaults: what the accelerator's device should run with unless a recipe says otherwise.

- mixed precision: ``bf16`` autocast on a GPU that supports it, full precision elsewhere (``mixed_precision``);
- ``channels_last`` memory layout for convolutional models on a GPU (``channels_last``);
- pinned host memory for the data loaders when batches go to a GPU (``pin_memory``);
- ``torch.compile`` of the trained models, only when asked (``torch_compile``; through Accelerate's dynamo backend).

Each is overridable (``None`` means "the default for this device") and what was used is recorded in metrics.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch


def has_accelerator() -> bool:
    accel_api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    return accel_api.is_available() if accel_api is not None else torch.cuda.is_available()


def default_mixed_precision() -> str:
    """``bf16`` on a CUDA GPU with bf16 support, else ``no``. Accelerate's own config (``accelerate config`` or
    ``ACCELERATE_MIXED_PRECISION``) wins when set."""
    env = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if env:
        return env
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def is_convolutional(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def resolve_channels_last(model: torch.nn.Module, device: torch.device, setting: Optional[bool]) -> bool:
    """`setting`, or by default: a convolutional model on a CUDA device."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type == "cuda" and is_convolutional(model)


def apply_memory_format(model: torch.nn.Module, device: torch.device, setting: Optional[bool]) -> torch.nn.Module:
    """`model` in channels-last layout when :func:`resolve_channels_last` says so (marked ``svp_channels_last``, so
    the data path lays its batches out the same way)."""
    use = resolve_channels_last(model, device, setting)
    if use:
        model = model.to(memory_format=torch.channels_last)
    model.svp_channels_last = use
    return model


def resolve_pin_memory(device: torch.device, setting: Optional[bool]) -> bool:
    """`setting`, or by default: pinned memory when batches are copied to a CUDA device."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type == "cuda"


@dataclass
class DeviceSettings:
    """The device keys of a recipe (``None``: the device's default)."""

    channels_last: Optional[bool] = None
    pin_memory: Optional[bool] = None
    torch_compile: bool = False

    def record(self, accelerator, model: Optional[torch.nn.Module] = None) -> Dict[str, Any]:
        """What a run used, for metrics.json."""
        device = accelerator.device
        out: Dict[str, Any] = {  # the same for every process count (num_processes is recorded next to it)
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "mixed_precision": str(accelerator.mixed_precision),
            "pin_memory": resolve_pin_memory(device, self.pin_memory),
            "torch_compile": bool(self.torch_compile),
            "channels_last": self.channels_last,
        }
        if model is not None:
            out["channels_last"] = resolve_channels_last(model, device, self.channels_last)
        return out


__all__ = [
    "DeviceSettings",
    "default_mixed_precision",
    "has_accelerator",
    "apply_memory_format",
    "resolve_channels_last",
    "resolve_pin_memory",
    "is_convolutional",
]
