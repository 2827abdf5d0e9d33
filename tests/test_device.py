"""svp_hf.device: the device defaults (loader workers, channels-last, pinned memory, compiled models) and what a run
records of them."""

import os

import pytest
import torch
from accelerate import Accelerator

from svp_hf.device import (
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
    monkeypatch.setattr("svp_hf.device.available_cpus", lambda: 16)
    assert resolve_num_workers(Arrays(), None) == 0  # a batch is one gather: a worker's hand-over costs more
    assert resolve_num_workers(Rows(), None) == auto_num_workers() == MAX_AUTO_WORKERS
    assert auto_num_workers(num_processes=4) == 3  # 16 CPUs shared by 4 processes, one each for its own loop
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # what a launcher says of the processes on this machine wins
    assert auto_num_workers(num_processes=8) == 7
    monkeypatch.setattr("svp_hf.device.available_cpus", lambda: 1)
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
    record = DeviceSettings(torch_compile=True).record(Accelerator(cpu=True), torch.nn.Conv2d(3, 4, 3), num_workers=None)
    assert record["device"] == "cpu" and record["mixed_precision"] == "no" and record["torch_compile"] is True
    assert record["channels_last"] is False and record["pin_memory"] is False
    assert record["loader_workers"] == {"arrays": 0, "decoded_rows": auto_num_workers()}
    assert DeviceSettings().record(Accelerator(cpu=True), num_workers=2)["loader_workers"] == {"arrays": 2, "decoded_rows": 2}
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
    run_command(cli(out, "--max_train_samples", "64", "--max_eval_samples", "32", "--proxy_epochs", "1", "--target", "",
                    "--torch_compile", "true", "--keep_checkpoints", "true"))
    import json

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"]["torch_compile"] is True and metrics["proxy_accuracy"] is not None
    (saved,) = (out / "checkpoints" / "proxy").glob("epoch_*/model.safetensors")
    weights = load_file(str(saved))
    assert weights and not any(k.startswith("_orig_mod.") for k in weights)


def test_mixed_precision_the_machine_cannot_run_is_refused(monkeypatch):
    from accelerate.utils import is_fp8_available

    from svp_hf.device import check_mixed_precision
    from svp_hf.errors import SVPConfigError

    assert check_mixed_precision("no") == "no" and check_mixed_precision("bf16") == "bf16"
    with pytest.raises(SVPConfigError, match="mixed_precision 'fp64' .* is not one of no, fp16, bf16, fp8"):
        check_mixed_precision("fp64")  # e.g. from ACCELERATE_MIXED_PRECISION
    if not is_fp8_available():
        with pytest.raises(SVPConfigError, match="'fp8' needs transformer_engine or torchao"):
            check_mixed_precision("fp8")
    monkeypatch.setattr("svp_hf.device.is_fp8_available", lambda: True)
    if not torch.cuda.is_available():
        with pytest.raises(SVPConfigError, match="'fp8' needs an NVIDIA GPU of compute capability 8.9"):
            check_mixed_precision("fp8")


def test_a_batch_is_checked_against_the_memory_of_one_process(monkeypatch):
    from svp_hf.device import available_memory, check_batch_memory
    from svp_hf.errors import SVPConfigError

    cpu = torch.device("cpu")
    alone = available_memory(cpu)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert available_memory(cpu) <= alone // 4 * 1.1  # the machine's processes share its memory
    check_batch_memory(1000, {"batch_size": 128, "target_batch_size": None}, cpu)
    with pytest.raises(SVPConfigError, match=r"target_batch_size 1000000000 needs at least 931.3 GiB"):
        check_batch_memory(1000, {"batch_size": 128, "target_batch_size": 10**9}, cpu)
