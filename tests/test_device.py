"""svp_hf.utils.device: the device defaults (mixed precision, loader workers, channels-last, pinned memory, compiled models)
and what a run records of them."""

import os

import pytest
import torch
from accelerate import Accelerator

from svp_hf.utils.device import (
    MAX_AUTO_WORKERS,
    DeviceSettings,
    auto_num_workers,
    available_cpus,
    resolve_channels_last,
    resolve_num_workers,
    resolve_pin_memory,
    unwrap,
)


class Arrays:  # a model-ready dataset held in arrays: batched by its own gather
    def collate(self, rows):
        return rows


class Rows:  # one decoded row by row
    pass


def test_loader_workers_go_to_data_decoded_row_by_row_sized_to_the_machine(monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr("svp_hf.utils.device.available_cpus", lambda: 16)
    assert resolve_num_workers(Arrays(), None) == 0  # a batch is one gather: a worker's hand-over costs more
    assert resolve_num_workers(Rows(), None) == auto_num_workers() == MAX_AUTO_WORKERS
    assert auto_num_workers(num_processes=4) == 3  # 16 CPUs shared by 4 processes, one each for its own loop
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # what a launcher says of the processes on this machine wins
    assert auto_num_workers(num_processes=8) == 7
    monkeypatch.setattr("svp_hf.utils.device.available_cpus", lambda: 1)
    assert auto_num_workers() == 0
    assert resolve_num_workers(Arrays(), 3) == resolve_num_workers(Rows(), 3) == 3  # a recipe's setting is kept
    assert 1 <= available_cpus() <= (os.cpu_count() or 1)


def test_cpu_defaults_and_overrides():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3))
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not resolve_channels_last(conv, cpu, None) and resolve_channels_last(conv, cuda, None)
    assert not resolve_channels_last(torch.nn.Linear(2, 2), cuda, None)
    assert resolve_channels_last(conv, cpu, True) and not resolve_channels_last(conv, cuda, False)
    assert not resolve_pin_memory(cpu, None) and resolve_pin_memory(cuda, None) and resolve_pin_memory(cpu, True)


def test_the_record_names_every_setting_used():
    from svp_hf.utils.precision import cpu_features, cpu_supports_bf16

    accelerator = Accelerator(cpu=True)  # the process's precision: whichever an earlier test's Accelerator set
    record = DeviceSettings(torch_compile=True).record(accelerator, torch.nn.Conv2d(3, 4, 3), num_workers=None)
    assert record["device"] == "cpu" and record["torch_compile"] is True
    assert record["mixed_precision"] == record["effective_mixed_precision"] == str(accelerator.mixed_precision)
    assert record["cpu"] == {**cpu_features(), "bf16_native": cpu_supports_bf16()}  # what the CPU default follows
    assert record["channels_last"] is False and record["pin_memory"] is False
    assert record["loader_workers"] == {"arrays": 0, "decoded_rows": auto_num_workers()}
    assert DeviceSettings().record(Accelerator(cpu=True), num_workers=2)["loader_workers"] == {
        "arrays": 2,
        "decoded_rows": 2,
    }
    assert record["prefetch_thread"] == (torch.get_num_threads() < available_cpus())
    assert DeviceSettings().record(Accelerator(cpu=True), num_workers=0)["prefetch_thread"] is False


def test_unwrap_hands_back_the_trained_module_not_its_compiled_wrapper():
    model = torch.nn.Linear(3, 2)
    accelerator = Accelerator(cpu=True)
    compiled = torch.compile(model)  # not compiled until called: cheap
    assert unwrap(accelerator, compiled) is model
    assert unwrap(accelerator, accelerator.prepare(model)) is model
    assert list(unwrap(accelerator, compiled).state_dict()) == ["weight", "bias"]  # no "_orig_mod." prefix


@pytest.mark.slow
def test_a_compiled_proxy_trains_scores_and_saves_plain_weights(tmp_path):
    """``torch_compile: true`` end to end on the CPU (inductor): the proxy trains compiled, is scored, and its saved
    weights load into a plain model."""
    from safetensors.torch import load_file

    from .conftest import cli, run_command

    out = tmp_path / "compiled"
    run_command(
        cli(
            out,
            "--max_train_samples",
            "64",
            "--max_eval_samples",
            "32",
            "--proxy_epochs",
            "1",
            "--target",
            "",
            "--torch_compile",
            "true",
            "--keep_checkpoints",
            "true",
        )
    )
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"]["torch_compile"] is True and metrics["proxy_accuracy"] is not None
    (saved,) = (out / "checkpoints" / "proxy").glob("epoch_*/model.safetensors")
    weights = load_file(str(saved))
    assert weights and not any(k.startswith("_orig_mod.") for k in weights)


@pytest.fixture
def fresh_default(monkeypatch):
    """default_mixed_precision as in a new process on a machine without an accelerator."""
    monkeypatch.setattr("svp_hf.utils.device.is_initialized", lambda: False)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("svp_hf.utils.device.has_accelerator", lambda: False)
    return monkeypatch


def test_the_cpu_default_is_bf16_only_where_the_cpu_runs_it_natively(fresh_default):
    from svp_hf.utils.device import default_mixed_precision

    fresh_default.setattr("svp_hf.utils.precision.cpu_supports_bf16", lambda: True)  # AVX512-BF16 or AMX
    assert default_mixed_precision() == "bf16"
    fresh_default.setattr("svp_hf.utils.precision.cpu_supports_bf16", lambda: False)  # oneDNN would emulate it: slower
    assert default_mixed_precision() == "no"
    fresh_default.setattr("svp_hf.utils.precision.cpu_supports_bf16", lambda: True)
    fresh_default.setenv("ACCELERATE_MIXED_PRECISION", "no")  # Accelerate's own config wins
    assert default_mixed_precision() == "no"


def test_the_default_on_accelerators_is_unchanged(fresh_default):
    from svp_hf.utils.device import default_mixed_precision

    fresh_default.setattr(
        "svp_hf.utils.precision.cpu_supports_bf16", lambda: True
    )  # the host CPU does not decide there
    fresh_default.setattr("svp_hf.utils.device.has_accelerator", lambda: True)
    assert default_mixed_precision() == "no"  # MPS, XPU, ...
    fresh_default.setattr(torch.cuda, "is_available", lambda: True)
    fresh_default.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert default_mixed_precision() == "bf16"
    fresh_default.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert default_mixed_precision() == "no"


def test_the_default_follows_a_precision_this_process_already_set(fresh_default):
    """Accelerate fixes the precision once per process: a default that differed would make the next Accelerator fail."""
    from svp_hf.utils.device import default_mixed_precision

    fresh_default.setattr("svp_hf.utils.precision.cpu_supports_bf16", lambda: True)
    fresh_default.setattr("svp_hf.utils.device.is_initialized", lambda: True)
    fresh_default.setattr(
        "svp_hf.utils.device.AcceleratorState", lambda: type("State", (), {"mixed_precision": "no"})()
    )
    assert default_mixed_precision() == "no"


def test_an_explicit_precision_is_kept_and_what_autocast_ran_in_is_recorded(monkeypatch):
    from types import SimpleNamespace

    from svp_hf.engine.training import make_accelerator
    from svp_hf.utils.device import effective_mixed_precision

    monkeypatch.setattr("svp_hf.engine.training.default_mixed_precision", lambda: "bf16")  # imported by name
    made = []
    monkeypatch.setattr("svp_hf.engine.training.Accelerator", lambda **kwargs: made.append(kwargs) or kwargs)
    make_accelerator(mixed_precision="no")
    make_accelerator()
    assert [k["mixed_precision"] for k in made] == ["no", "bf16"]
    assert effective_mixed_precision(SimpleNamespace(mixed_precision="bf16", native_amp=True)) == "bf16"
    assert effective_mixed_precision(SimpleNamespace(mixed_precision="fp16", native_amp=False)) == "no"  # fp16 on a CPU
    assert effective_mixed_precision(SimpleNamespace(mixed_precision="no", native_amp=False)) == "no"


def test_mixed_precision_the_machine_cannot_run_is_refused(monkeypatch):
    from accelerate.utils import is_fp8_available

    from svp_hf.errors import SVPConfigError
    from svp_hf.utils.device import check_mixed_precision

    assert check_mixed_precision("no") == "no" and check_mixed_precision("bf16") == "bf16"
    with pytest.raises(SVPConfigError, match="mixed_precision 'fp64' .* is not one of no, fp16, bf16, fp8"):
        check_mixed_precision("fp64")  # e.g. from ACCELERATE_MIXED_PRECISION
    if not is_fp8_available():
        with pytest.raises(SVPConfigError, match="'fp8' needs transformer_engine or torchao"):
            check_mixed_precision("fp8")
    monkeypatch.setattr("svp_hf.utils.device.is_fp8_available", lambda: True)
    if not torch.cuda.is_available():
        with pytest.raises(SVPConfigError, match="'fp8' needs an NVIDIA GPU of compute capability 8.9"):
            check_mixed_precision("fp8")


def test_a_batch_is_checked_against_the_memory_of_one_process(monkeypatch):
    from svp_hf.errors import SVPConfigError
    from svp_hf.utils.device import available_memory, check_batch_memory

    cpu = torch.device("cpu")
    alone = available_memory(cpu)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert available_memory(cpu) <= alone // 4 * 1.1  # the machine's processes share its memory
    check_batch_memory(1000, {"batch_size": 128, "target_batch_size": None}, cpu)
    with pytest.raises(SVPConfigError, match=r"target_batch_size 1000000000 needs at least 931.3 GiB"):
        check_batch_memory(1000, {"batch_size": 128, "target_batch_size": 10**9}, cpu)


# --- bf16 convolutions oneDNN differentiates wrongly on the CPU ----------------------------------------------------


@pytest.mark.parametrize(
    "size, kernel, stride, padding, dead",
    [
        (1, 3, 2, 1, True),  # timm resnet18 on 8x8 images: layer3.0.conv1, layer4.0.conv1
        (2, 3, 2, 1, True),  # one output, whose first tap reads padding
        (4, 3, 2, 1, False),  # every tap reads a real pixel at some output
        (1, 3, 1, 1, True),  # stride 1 too (the guard only patches strided convolutions: those were the wrong ones)
        (1, 7, 2, 3, True),  # a stem on a 1x1 map
        (8, 3, 2, 1, False),
        (3, 5, 2, 2, False),
        (2, 5, 2, 2, True),
    ],
)
def test_a_tap_that_reads_only_padding_is_found(size, kernel, stride, padding, dead):
    from svp_hf.utils.device import _dead_tap

    assert _dead_tap(size, kernel, stride, padding, 1) is dead


def _dead_tap_brute_force(size, kernel, stride, padding, dilation):
    """Whether some tap reads no real pixel at any output position, by enumerating them."""
    out = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    if out <= 0:
        return True
    return any(all(not 0 <= o * stride + t * dilation - padding < size for o in range(out)) for t in range(kernel))


def test_the_dead_tap_rule_matches_enumeration():
    from svp_hf.utils.device import _dead_tap

    for size in range(1, 10):
        for kernel in (1, 2, 3, 5, 7):
            for stride in (1, 2, 3):
                for padding in range(0, kernel):
                    for dilation in (1, 2):
                        expected = _dead_tap_brute_force(size, kernel, stride, padding, dilation)
                        assert _dead_tap(size, kernel, stride, padding, dilation) is expected, (
                            size,
                            kernel,
                            stride,
                            padding,
                            dilation,
                        )


def test_guarded_convolutions_give_exact_zero_gradients_to_taps_that_read_only_padding():
    """Under CPU bf16 autocast a 3x3 stride-2 convolution on a 1x1 map runs in fp32: the gradient of its eight
    padding-only taps is exactly 0 (oneDNN's bf16 kernel leaves uninitialised memory there, sometimes NaN); a
    convolution whose taps all read pixels keeps running in bf16."""
    from svp_hf.utils.device import guard_bf16_convolutions

    torch.manual_seed(0)
    small = torch.nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)
    large = torch.nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False)
    guard_bf16_convolutions(torch.nn.Sequential(small, large))
    for _ in range(3):
        small.weight.grad = None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = small(torch.randn(32, 64, 1, 1))
        assert out.dtype == torch.float32
        out.float().square().sum().backward()
        grad = small.weight.grad
        assert torch.isfinite(grad).all()
        assert (grad[:, :, [0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] == 0).all()
        assert (grad[:, :, 1, 1] != 0).any()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert large(torch.randn(2, 64, 8, 8)).dtype == torch.bfloat16
    assert set(small.state_dict()) == {"weight"}  # parameters and state dict unchanged


def test_training_in_bf16_on_a_cpu_guards_the_model_and_full_precision_does_not(monkeypatch):
    from svp_hf.engine import training

    guarded = []
    monkeypatch.setattr(training, "guard_bf16_convolutions", lambda model: guarded.append(model) or model)
    monkeypatch.setattr(training, "effective_mixed_precision", lambda accelerator: "bf16")
    model = torch.nn.Conv2d(1, 2, 3, stride=2)

    class Stop(Exception):
        pass

    monkeypatch.setattr(training, "resolve_pin_memory", lambda *a, **k: (_ for _ in ()).throw(Stop()))
    accelerator = training.make_accelerator()
    with pytest.raises(Stop):
        training.train_model(model, None, None, None, training.TrainingConfig(), accelerator)
    assert guarded == [model]
    guarded.clear()
    monkeypatch.setattr(training, "effective_mixed_precision", lambda accelerator: "no")
    with pytest.raises(Stop):
        training.train_model(model, None, None, None, training.TrainingConfig(), accelerator)
    assert guarded == []
