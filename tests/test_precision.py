"""svp_hf.precision: what the CPU reports about bf16, and (slow tier) that a bf16-autocast proxy ranks a small fixed
dataset as an fp32 one does, at least as closely as a second fp32 seed."""

import json
import subprocess
import sys

import pytest

from svp_hf import precision

from .conftest import REPO

# One proxy per process: Accelerate's mixed precision is process-wide.
SCORE = """
import json, sys, torch
import svp_hf
from svp_hf.data import digits_dataset
from svp_hf.training import make_accelerator
torch.set_num_threads(1)
train = digits_dataset()["train"].select(range(400))
scores = svp_hf.score(train, proxy="resnet20", methods=["least_confidence", "el2n"], accelerator=make_accelerator(
    mixed_precision=sys.argv[1]), proxy_epochs=4, batch_size=64, learning_rate=0.05, seed=int(sys.argv[2]))
print(json.dumps({m: list(scores[m]) for m in ("svp_index", "least_confidence", "el2n")}))
"""


def test_features_are_reported_as_booleans_or_none():
    features = precision.cpu_features()
    assert isinstance(features["capability"], str)
    assert set(features) == {"capability", "is_avx512_bf16_supported", "is_amx_tile_supported"}
    assert all(features[k] in (True, False, None) for k in features if k != "capability")
    assert precision.cpu_supports_bf16() == any(features[k] for k in features if k != "capability")
    assert precision.cpu_mixed_precision() == ("bf16" if precision.cpu_supports_bf16() else "no")


def test_a_torch_without_the_helpers_counts_as_unsupported(monkeypatch):
    import torch

    for name in precision.BF16_CPU_FEATURES:
        monkeypatch.delattr(torch.cpu, name, raising=False)
    assert precision.cpu_features()["is_avx512_bf16_supported"] is None
    assert not precision.cpu_supports_bf16() and precision.cpu_mixed_precision() == "no"


def test_native_bf16_follows_either_feature(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert precision.cpu_supports_bf16()
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert not precision.cpu_supports_bf16()


def _scores(mixed_precision: str, seed: int):
    out = subprocess.run(
        [sys.executable, "-c", SCORE, mixed_precision, str(seed)], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_bf16_and_fp32_proxies_rank_alike():
    from svp_hf.correlation import spearman

    fp32, bf16, other_seed = _scores("no", 0), _scores("bf16", 0), _scores("no", 1)
    assert fp32["svp_index"] == bf16["svp_index"] == other_seed["svp_index"]
    for method in ("least_confidence", "el2n"):
        precision_agreement = spearman(fp32[method], bf16[method])
        seed_agreement = spearman(fp32[method], other_seed[method])
        assert precision_agreement > 0.3, (method, precision_agreement)
        assert precision_agreement >= seed_agreement - 0.05, (method, precision_agreement, seed_agreement)
