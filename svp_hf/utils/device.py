"""Device defaults: what the accelerator's device should run with unless a recipe says otherwise.

- mixed precision: ``bf16`` autocast on a GPU that supports it and on a CPU that runs bf16 natively (AVX512-BF16 or
  AMX: :mod:`svp_hf.utils.precision`), full precision elsewhere (``mixed_precision``);
- ``channels_last`` memory layout for convolutional models on a GPU (``channels_last``);
- pinned host memory for the data loaders when batches go to a GPU (``pin_memory``);
- loader worker processes sized to the machine for data decoded row by row (``dataloader_num_workers``); data held in
  arrays (decode-once images, packed text) is batched in the main process, where a batch is one gather, its training
  batches one step ahead in a thread where a CPU is free for it (:func:`prefetches`);
- ``torch.compile`` of the trained models, only when asked (``torch_compile``; through Accelerate's dynamo backend).

Each is overridable (``None`` means "the default for this device") and what was used is recorded in metrics.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import psutil
import torch
from accelerate.state import AcceleratorState, is_initialized
from accelerate.utils import is_fp8_available, send_to_device

from ..config.arguments import MIXED_PRECISION
from ..errors import SVPConfigError
from .precision import BF16_CPU_FEATURES, cpu_features, cpu_mixed_precision


def has_accelerator() -> bool:
    accel_api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    return accel_api.is_available() if accel_api is not None else torch.cuda.is_available()


def default_mixed_precision() -> str:
    """``bf16`` on a CUDA GPU with bf16 support, or, on a machine without an accelerator, on a CPU that runs bf16
    natively (:func:`svp_hf.utils.precision.cpu_mixed_precision`: AVX512-BF16 or AMX; elsewhere oneDNN emulates bf16
    and autocast is slower than fp32); else ``no``. Accelerate's own config (``accelerate config`` or
    ``ACCELERATE_MIXED_PRECISION``) wins when set, and so does a recipe's or a call's ``mixed_precision`` (``no`` for
    full precision). Accelerate fixes the precision once per process: where an Accelerator already set it (the
    caller's own, or an earlier run's), the default is that one, which a second Accelerator must match.

    On a 2-core AVX512-BF16/AMX CPU (``benchmarks/precision.py``) bf16 autocast trains a ResNet-20 proxy 2.0x faster
    than fp32, its forward 1.9x, and its ranking is closer to the fp32 proxy's of the same seed than a second fp32
    seed's is (``tests/test_precision.py`` checks the kept sets on a small fixed dataset). Strided convolutions whose
    kernel reaches past a small map run in fp32 there (:func:`guard_bf16_convolutions`: oneDNN's bf16 weight gradient
    of such a convolution is uninitialised memory, sometimes NaN)."""
    if is_initialized():
        return str(AcceleratorState().mixed_precision)
    env = os.environ.get("ACCELERATE_MIXED_PRECISION")
    if env:
        return env
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if has_accelerator():  # MPS, XPU, ...: full precision
        return "no"
    return cpu_mixed_precision()


def effective_mixed_precision(accelerator) -> str:
    """The precision `accelerator` computes in: its ``mixed_precision``, or ``no`` where Accelerate does not autocast
    with it (``fp16`` on a CPU trains in fp32)."""
    precision = str(accelerator.mixed_precision)
    if precision != "no" and not getattr(accelerator, "native_amp", True):
        return "no"
    return precision


def cpu_record() -> Dict[str, Any]:
    """What this machine's CPU reports about bf16 (:func:`svp_hf.utils.precision.cpu_features`) and whether it runs it
    natively, for metrics.json."""
    features = cpu_features()
    return {**features, "bf16_native": any(features[name.strip("_")] for name in BF16_CPU_FEATURES)}


# fp8 matmuls need an NVIDIA GPU of compute capability 8.9 (Ada, Hopper) or newer.
FP8_CAPABILITY = (8, 9)


def check_mixed_precision(precision: str) -> str:
    """`precision` (the recipe's, or Accelerate's config's) if this machine can train with it; a clear error naming
    ``mixed_precision`` and the fix otherwise (before the Accelerator is made, which would fail with a traceback)."""
    if precision not in MIXED_PRECISION:
        raise SVPConfigError(
            f"mixed_precision {precision!r} (from Accelerate's config or ACCELERATE_MIXED_PRECISION) is not one of "
            f"{', '.join(MIXED_PRECISION)}"
        )
    if precision != "fp8":
        return precision
    if not is_fp8_available():
        raise SVPConfigError(
            "mixed_precision 'fp8' needs transformer_engine or torchao (>= 0.6.1) installed (pip install torchao); "
            "or use bf16"
        )
    if not torch.cuda.is_available() or torch.cuda.get_device_capability() < FP8_CAPABILITY:
        raise SVPConfigError(
            "mixed_precision 'fp8' needs an NVIDIA GPU of compute capability 8.9 or newer (Ada, Hopper); use bf16 or no"
        )
    return precision


# --- a batch's memory against the machine's --------------------------------------------------------------------------


def available_memory(device: torch.device) -> int:
    """Bytes one process may use for a batch: the host's available RAM shared by the launch's processes on this
    machine, or, on a CUDA device, the smaller of that and the device's free memory."""
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    free = psutil.virtual_memory().available // processes
    if device.type == "cuda":
        free = min(free, torch.cuda.mem_get_info(device)[0])
    return int(free)


def _size(n: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} bytes"


def check_batch_memory(per_row: int, batch_sizes: Dict[str, Optional[int]], device: torch.device) -> None:
    """A clear error, before anything is trained, when one batch of a `batch_sizes` key (``batch_size``,
    ``target_batch_size``; ``None`` entries skipped) of rows taking at least `per_row` bytes cannot fit in this
    process's memory on `device` (scoring pads every batch to the full size, so a batch is never smaller than its
    key). `per_row` is a lower bound: a batch let through may still be too large for the model's activations."""
    free = available_memory(device)
    for key, size in batch_sizes.items():
        if size is not None and size * per_row > free:
            raise SVPConfigError(
                f"{key} {size} needs at least {_size(size * per_row)} for one batch ({per_row} bytes per row before the "
                f"model's activations), more than the {_size(free)} of memory available to a process here: use a "
                f"{key} of at most {max(1, free // per_row)}, far less in practice"
            )


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


# --- bf16 convolutions that oneDNN differentiates wrongly on the CPU --------------------------------------------------
#
# oneDNN's bf16 backward-weights convolution (v3.12 in torch 2.14: the AMX brgconv_bwd_w and the AVX512 jit_bf16
# kernels alike) fills the gradient of a kernel tap that reads only padding, at every output position, of a strided
# convolution with uninitialised memory instead of 0: e.g. a 3x3 stride-2 convolution on a 1x1 map (timm's resnet18
# on 8x8 images: layer3.0.conv1, layer4.0.conv1). The garbage is usually finite, sometimes NaN or inf, and a NaN
# there turns the weights (and, through 0 * NaN on the padding, every output) NaN. Such a convolution runs in fp32.


def _dead_tap(size: int, kernel: int, stride: int, padding: int, dilation: int) -> bool:
    """Whether some tap of a convolution along one axis of `size` reads only padding at every output position."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        return True
    for tap in range(kernel):
        offset = tap * dilation - padding  # input position the tap reads at output 0
        first = max(0, -(offset // stride))  # first output at which it reads position >= 0
        if first >= out or first * stride + offset >= size:
            return True
    return False


def reads_only_padding(conv: torch.nn.modules.conv._ConvNd, spatial) -> bool:
    """Whether `conv` on an input of spatial size `spatial` has a kernel tap that sees nothing but padding."""
    padding = conv.padding
    if isinstance(padding, str):  # 'valid': none; 'same': about half the kernel's extent on each side
        padding = [0 if padding == "valid" else (d * (k - 1) + 1) // 2 for k, d in zip(conv.kernel_size, conv.dilation)]
    return any(
        _dead_tap(int(n), k, s, p, d)
        for n, k, s, p, d in zip(spatial, conv.kernel_size, conv.stride, padding, conv.dilation)
        if k > 1
    )


def _cpu_autocast_bf16() -> bool:
    if hasattr(torch, "get_autocast_dtype"):  # torch >= 2.4
        return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


def _bf16_safe_conv_forward(conv: torch.nn.modules.conv._ConvNd, input: torch.Tensor, *args, **kwargs):
    forward = type(conv).forward
    if input.device.type != "cpu" or not _cpu_autocast_bf16():
        return forward(conv, input, *args, **kwargs)
    spatial = tuple(input.shape[2:])
    cache = conv.__dict__.setdefault("_svp_dead_tap", {})
    if spatial not in cache:
        cache[spatial] = reads_only_padding(conv, spatial)
    if not cache[spatial]:
        return forward(conv, input, *args, **kwargs)
    with torch.autocast("cpu", enabled=False):
        return forward(conv, input.float(), *args, **kwargs)


def guard_bf16_convolutions(model: torch.nn.Module) -> torch.nn.Module:
    """`model` with every strided convolution computed in fp32 under CPU bf16 autocast whenever a kernel tap would
    read only padding (its map smaller than the kernel's reach), where oneDNN's bf16 weight gradient is garbage; every
    other call, and every call outside CPU bf16 autocast, runs as before. The forward is replaced on the instance
    (a ``functools.partial``, which pickles and deep-copies), so parameters and the state dict are untouched."""
    import functools

    for module in model.modules():
        if (
            isinstance(module, torch.nn.modules.conv._ConvNd)
            and not module.transposed
            and any(s > 1 for s in module.stride)
            and any(k > 1 for k in module.kernel_size)
            and "forward" not in module.__dict__
        ):
            module.forward = functools.partial(_bf16_safe_conv_forward, module)
    return model


def resolve_pin_memory(device: torch.device, setting: Optional[bool]) -> bool:
    """`setting`, or by default: pinned memory when batches are copied to a CUDA device."""
    if setting is not None:
        return bool(setting)
    return torch.device(device).type == "cuda"


# Loader workers chosen by default at most: decoding beyond this rarely keeps up with more, and each worker holds a
# copy of the transforms and its prefetched batches.
MAX_AUTO_WORKERS = 8


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the platform has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def auto_num_workers(num_processes: int = 1) -> int:
    """Loader workers per process for data decoded row by row: this machine's CPUs shared among the job's processes
    on it, less one for the process's own loop, at most :data:`MAX_AUTO_WORKERS`."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", num_processes) or 1)
    return max(0, min(MAX_AUTO_WORKERS, available_cpus() // max(1, local) - 1))


def holds_arrays(dataset) -> bool:
    """Whether a model-ready dataset is held in arrays and batched by one gather (its own ``collate``)."""
    return getattr(dataset, "collate", None) is not None


def resolve_num_workers(dataset, setting: Optional[int], num_processes: int = 1) -> int:
    """`setting`, or by default: none for a dataset held in arrays (a worker's hand-over of a batch costs more than
    the gather itself), :func:`auto_num_workers` for one decoded row by row."""
    if setting is not None:
        return int(setting)
    return 0 if holds_arrays(dataset) else auto_num_workers(num_processes)


def to_device(batch, device: torch.device, non_blocking: bool = False):
    """`batch` on `device` (Accelerate's ``send_to_device``); on the CPU it is already there, and the call is skipped:
    for a model as cheap as fastText, walking the batch costs a noticeable share of a step."""
    if torch.device(device).type == "cpu":
        return batch
    return send_to_device(batch, device, non_blocking=non_blocking)


def prefetches(num_workers: Optional[int], device: torch.device, num_processes: int = 1) -> bool:
    """Whether training batches of data held in arrays are built one step ahead in a background thread
    (:mod:`svp_hf.data.prefetch`): only when svp_hf sizes the loader itself (`num_workers`, the ``dataloader_num_workers``
    setting, unset: an explicit ``0`` keeps everything in the main thread), in a single process (Accelerate's loader
    of several processes looks one batch ahead itself to gather the last uneven batch, which a thread ahead of it
    would confuse), on an accelerator (whose host threads are idle while it computes) or on a CPU with a core left over
    by torch's own threads."""
    if num_workers is not None or num_processes > 1:
        return False
    return torch.device(device).type != "cpu" or torch.get_num_threads() < available_cpus()


def unwrap(accelerator, model: torch.nn.Module) -> torch.nn.Module:
    """The trained module itself: without Accelerate's wrappers (DDP, mixed precision) nor ``torch.compile``'s
    (recent Accelerate keeps the latter; its weights are the module's, so nothing is copied)."""
    model = accelerator.unwrap_model(model)
    return getattr(model, "_orig_mod", model)


@dataclass
class DeviceSettings:
    """The device keys of a recipe (``None``: the device's default)."""

    channels_last: Optional[bool] = None
    pin_memory: Optional[bool] = None
    torch_compile: bool = False

    def record(
        self, accelerator, model: Optional[torch.nn.Module] = None, num_workers: Optional[int] = None
    ) -> Dict[str, Any]:
        """What a run used, for metrics.json (`num_workers`: the recipe's ``dataloader_num_workers``)."""
        device = accelerator.device
        out: Dict[str, Any] = {  # the same for every process count (num_processes is recorded next to it)
            "device": device.type,
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "mixed_precision": str(accelerator.mixed_precision),  # the setting (the recipe's, or the default)
            "effective_mixed_precision": effective_mixed_precision(accelerator),  # what autocast computed in
            "cpu": cpu_record(),  # the CPU's bf16 features (AVX512-BF16, AMX), which the CPU default follows
            "pin_memory": resolve_pin_memory(device, self.pin_memory),
            "torch_compile": bool(self.torch_compile),
            "channels_last": self.channels_last,
            # workers of a loader over data held in arrays, and over data decoded row by row
            "loader_workers": {
                "arrays": 0 if num_workers is None else int(num_workers),
                "decoded_rows": auto_num_workers(accelerator.num_processes)
                if num_workers is None
                else int(num_workers),
            },
            # training batches of data held in arrays built one step ahead in a thread (svp_hf.data.prefetch)
            "prefetch_thread": prefetches(num_workers, device, accelerator.num_processes),
        }
        if model is not None:
            out["channels_last"] = resolve_channels_last(model, device, self.channels_last)
        return out


__all__ = [
    "DeviceSettings",
    "default_mixed_precision",
    "effective_mixed_precision",
    "cpu_record",
    "check_mixed_precision",
    "check_batch_memory",
    "available_memory",
    "has_accelerator",
    "apply_memory_format",
    "guard_bf16_convolutions",
    "reads_only_padding",
    "resolve_channels_last",
    "resolve_pin_memory",
    "resolve_num_workers",
    "unwrap",
    "to_device",
    "prefetches",
    "auto_num_workers",
    "available_cpus",
    "is_convolutional",
]
