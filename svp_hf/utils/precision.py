"""Which reduced precision this machine's CPU runs natively, for choosing ``mixed_precision`` on CPUs.

bf16 autocast pays on a CPU only where the instructions exist: AVX512-BF16 (Cooper Lake, Zen 4 and later) or AMX
(Sapphire Rapids and later, whose tiles multiply bf16). Elsewhere oneDNN emulates bf16 and autocast is slower than
fp32. torch (2.14) reports both through private helpers, ``torch.cpu._is_avx512_bf16_supported()`` and
``torch.cpu._is_amx_tile_supported()`` (the CPUID bits, read by ATen's cpuinfo); ``torch.backends.cpu.get_cpu_capability()``
names only the vector width ATen dispatches to (``"AVX512"``), not bf16, and ``torch.ops.mkldnn._is_mkldnn_bf16_supported()``
is also true where oneDNN merely emulates bf16 on AVX512. Helpers that a torch build lacks count as "not supported"
(both are read through :func:`svp_hf._compat.torch_cpu_feature`).

Measured on a 2-core AVX512-BF16/AMX CPU (``benchmarks/precision.py``): a bf16-autocast ResNet-20 training step is
2.0x faster than fp32 at batch 128 on one thread (median of paired passes, quartiles 1.96-2.05), its forward 1.9x; bf16
proxies rank CIFAR-10 rows closer to the fp32 proxy of the same seed (Spearman 0.87-0.94 for least confidence and
el2n) than two fp32 seeds do to each other (0.73-0.77), and the target trained on their selections is within noise.
"""

from __future__ import annotations

from typing import Any, Dict

import torch

from .._compat import BF16_CPU_HELPERS, torch_cpu_feature

# The torch.cpu helpers that report native bf16 (each: CPUID bits read by ATen's cpuinfo).
BF16_CPU_FEATURES = BF16_CPU_HELPERS


def cpu_features() -> Dict[str, Any]:
    """What this CPU and torch build report: the dispatch capability and each bf16 feature (None when this torch
    has no helper for it)."""
    out: Dict[str, Any] = {"capability": torch.backends.cpu.get_cpu_capability()}
    for name in BF16_CPU_FEATURES:
        out[name.strip("_")] = torch_cpu_feature(name)
    return out


def cpu_supports_bf16() -> bool:
    """Whether this CPU runs bf16 natively (AVX512-BF16 or AMX tiles)."""
    features = cpu_features()
    return any(features[name.strip("_")] for name in BF16_CPU_FEATURES)


def cpu_mixed_precision() -> str:
    """The ``mixed_precision`` a CPU run defaults to: ``bf16`` where it is native, else ``no``."""
    return "bf16" if cpu_supports_bf16() else "no"


__all__ = ["BF16_CPU_FEATURES", "cpu_features", "cpu_supports_bf16", "cpu_mixed_precision"]
