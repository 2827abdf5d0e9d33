"""svp_hf._compat against the installed libraries: every internal svp_hf reads is checked on real objects (a prepared
Accelerator, a RandomSampler, a selected Dataset, a Trainer on a tiny transformers model), so an upgrade that removes
one fails here, naming the library and the attribute, instead of somewhere deep inside a run."""

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch

from svp_hf import _compat
from svp_hf.errors import SVPRuntimeError


def installed(library: str) -> str:
    return f"{library} {_compat.installed_version(library)} (svp_hf._compat was checked on {_compat.CHECKED[library]})"


def test_every_function_of_compat_is_exercised_here():
    source = Path(__file__).read_text()
    functions = [n for n in _compat.__all__ if inspect.isfunction(getattr(_compat, n))]
    missing = [n for n in functions if f"_compat.{n}(" not in source]
    assert missing == [], f"svp_hf._compat functions without a test in {Path(__file__).name}: {missing}"


def test_installed_versions_are_read():
    for library in _compat.CHECKED:
        assert _compat.installed_version(library) != "unknown", f"{library} is not installed"
    assert _compat.installed_version("no-such-package-svp-hf") == "unknown"


# --- accelerate --------------------------------------------------------------------------------------------------------


@pytest.fixture
def prepared_accelerator():
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(4, 3)), batch_size=2)
    objects = accelerator.prepare(model, optimizer, loader, scheduler)
    return accelerator, objects


def test_accelerate_keeps_what_it_prepared_in_private_lists(prepared_accelerator):
    accelerator, (model, optimizer, loader, scheduler) = prepared_accelerator
    for kind in _compat.PREPARED_KINDS:
        assert isinstance(getattr(accelerator, f"_{kind}", None), list), (
            f"{installed('accelerate')}: Accelerator._{kind} is gone (svp_hf's checkpoints save what it lists)"
        )
    assert _compat.prepared(accelerator, "models") == [model]
    assert _compat.prepared(accelerator, "optimizers") == [optimizer]
    assert _compat.prepared(accelerator, "schedulers") == [scheduler]
    assert _compat.prepared(accelerator, "dataloaders") == [loader]
    assert _compat.prepared(accelerator, "models") is accelerator._models  # the list itself
    with pytest.raises(ValueError, match="kind must be one of"):
        _compat.prepared(accelerator, "trackers")


def test_forget_prepared_clears_the_lists_and_the_step(prepared_accelerator):
    accelerator, _ = prepared_accelerator
    accelerator.step = 7
    _compat.forget_prepared(accelerator)
    assert all(_compat.prepared(accelerator, kind) == [] for kind in _compat.PREPARED_KINDS)
    assert accelerator.step == 0


def test_without_the_lists_prepared_says_so_and_forget_prepared_falls_back_to_free_memory():
    class Bare:
        step, freed = 3, False

        def free_memory(self):
            self.freed = True

    bare = Bare()
    with pytest.raises(SVPRuntimeError, match=r"internal Accelerator\._models of accelerate .*checked on accelerate"):
        _compat.prepared(bare, "models")
    _compat.forget_prepared(bare)
    assert bare.freed


# --- torch -------------------------------------------------------------------------------------------------------------


def test_a_random_sampler_keeps_num_samples_privately():
    from torch.utils.data import RandomSampler

    rows = list(range(10))
    sampler = RandomSampler(rows, generator=torch.Generator().manual_seed(0))
    assert hasattr(sampler, "_num_samples"), f"{installed('torch')}: RandomSampler._num_samples is gone"
    assert _compat.random_sampler_draws_one_permutation(sampler)
    # ... and then draws exactly one permutation from its generator, which svp_hf's batch sampler cuts itself
    assert list(sampler) == torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    given = RandomSampler(rows, num_samples=10, generator=torch.Generator())
    assert not _compat.random_sampler_draws_one_permutation(given)  # a second (empty) draw: iterated as torch does
    assert not _compat.random_sampler_draws_one_permutation(
        RandomSampler(rows, replacement=True, generator=torch.Generator())
    )
    assert not _compat.random_sampler_draws_one_permutation(RandomSampler(rows))  # no generator of its own
    del sampler._num_samples  # a torch without it: iterated as torch does
    assert not _compat.random_sampler_draws_one_permutation(sampler)


@pytest.mark.parametrize("name", _compat.BF16_CPU_HELPERS)
def test_torch_reports_cpu_bf16_features(name):
    helper = getattr(torch.cpu, name, None)
    assert callable(helper), f"{installed('torch')}: torch.cpu.{name} is gone (svp_hf.utils.precision reads it)"
    assert _compat.torch_cpu_feature(name) is bool(helper())
    with pytest.raises(ValueError):
        _compat.torch_cpu_feature("is_avx512_supported")


def test_a_torch_without_a_cpu_helper_reports_unknown(monkeypatch):
    monkeypatch.delattr(torch.cpu, _compat.BF16_CPU_HELPERS[0], raising=False)
    assert _compat.torch_cpu_feature(_compat.BF16_CPU_HELPERS[0]) is None


# --- datasets ----------------------------------------------------------------------------------------------------------


def test_a_selected_dataset_keeps_its_indices_mapping_and_fingerprint():
    from datasets import Dataset

    ds = Dataset.from_dict({"x": list(range(10))})
    assert hasattr(ds, "_indices"), f"{installed('datasets')}: Dataset._indices is gone"
    assert isinstance(getattr(ds, "_fingerprint", None), str), f"{installed('datasets')}: Dataset._fingerprint is gone"
    assert not _compat.has_indices_mapping(ds) and _compat.indices_mapping(ds) is None
    subset = ds.select([7, 2, 5])
    assert _compat.has_indices_mapping(subset)
    np.testing.assert_array_equal(_compat.indices_mapping(subset), [7, 2, 5])
    # the mapping is over the table's rows: what svp_hf reads through it is what the dataset shows
    np.testing.assert_array_equal(subset.data.column("x").to_numpy()[_compat.indices_mapping(subset)], subset["x"])
    assert not _compat.has_indices_mapping(subset.flatten_indices())
    assert _compat.dataset_fingerprint(ds) == ds._fingerprint
    assert _compat.dataset_fingerprint(subset) not in (None, _compat.dataset_fingerprint(ds))  # new for every transform
    assert _compat.dataset_fingerprint(object()) is None


def test_without_an_indices_mapping_attribute_a_clear_error():
    with pytest.raises(SVPRuntimeError, match=r"internal Dataset\._indices of datasets"):
        _compat.has_indices_mapping(object())


def test_datasets_lists_its_packaged_builders():
    try:
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    except ImportError:  # pragma: no cover - the failure this test exists for
        pytest.fail(f"{installed('datasets')}: datasets.packaged_modules._PACKAGED_DATASETS_MODULES is gone")
    names = _compat.packaged_builder_names()
    assert names == frozenset(_PACKAGED_DATASETS_MODULES)
    assert {"csv", "json", "parquet", "arrow", "text", "imagefolder"} <= names
    assert {"csv", "json", "parquet", "arrow", "text", "imagefolder"} <= _compat.PACKAGED_BUILDERS


@pytest.fixture
def images_by_path(tmp_path):
    from datasets import Dataset, Features, Image, Value
    from PIL import Image as PILImage

    paths = []
    for i in range(3):
        path = tmp_path / f"{i}.png"
        PILImage.fromarray(np.full((4, 5, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(str(path))
    return Dataset.from_dict(
        {"image": paths, "label": [0, 1, 0]}, features=Features({"image": Image(), "label": Value("int64")})
    )


def test_datasets_embeds_files_referenced_by_path(images_by_path):
    try:
        from datasets.table import embed_table_storage
    except ImportError:  # pragma: no cover - the failure this test exists for
        pytest.fail(
            f"{installed('datasets')}: datasets.table.embed_table_storage is gone (svp_hf.publish.output embeds images with it)"
        )
    assert _compat.embed_table_storage_fn() is embed_table_storage
    table = images_by_path.data.table
    assert table.column("image").to_pylist()[0]["bytes"] is None  # a path only, before
    embedded = _compat.embed_table_storage_fn()(table)
    assert all(row["bytes"] for row in embedded.column("image").to_pylist())


def test_the_public_fallback_embeds_as_datasets_does(images_by_path):
    table = images_by_path.data.table
    assert _compat._embed_top_level_columns(table).equals(_compat.embed_table_storage_fn()(table))


# --- transformers ------------------------------------------------------------------------------------------------------


@pytest.fixture
def tiny_trainer(tmp_path):
    from datasets import Dataset
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    config = BertConfig(
        vocab_size=20,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=8,
        max_position_embeddings=8,
        num_labels=2,
    )
    torch.manual_seed(0)
    rows = Dataset.from_dict(
        {"input_ids": [[1, 2, 3, 4]] * 6, "labels": [0, 1] * 3, "text": ["a"] * 6, "svp_recorder_index": list(range(6))}
    )
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=3,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    return Trainer(model=BertForSequenceClassification(config), args=args, train_dataset=rows)


def test_a_trainer_keeps_its_model_columns_in_private_attributes(tiny_trainer):
    assert callable(getattr(tiny_trainer, "_set_signature_columns_if_needed", None)), (
        f"{installed('transformers')}: Trainer._set_signature_columns_if_needed is gone (DynamicsRecorder.attach uses it)"
    )
    assert hasattr(tiny_trainer, "_signature_columns"), (
        f"{installed('transformers')}: Trainer._signature_columns is gone (DynamicsRecorder.attach uses it)"
    )
    before = next(iter(tiny_trainer.get_train_dataloader()))
    assert "svp_recorder_index" not in before  # dropped: the model does not take it
    _compat.keep_trainer_column(tiny_trainer, "svp_recorder_index")
    _compat.keep_trainer_column(tiny_trainer, "svp_recorder_index")  # once only
    assert tiny_trainer._signature_columns.count("svp_recorder_index") == 1
    assert "input_ids" in tiny_trainer._signature_columns
    batch = next(iter(tiny_trainer.get_train_dataloader()))
    assert "svp_recorder_index" in batch and "text" not in batch, f"{installed('transformers')}: the column was dropped"


def test_without_the_trainer_internals_remove_unused_columns_false_is_the_way(tmp_path):
    class Args:
        remove_unused_columns = False

    class Bare:
        args = Args()

    _compat.keep_trainer_column(Bare(), "svp_recorder_index")  # nothing is dropped: nothing to do
    Args.remove_unused_columns = True
    with pytest.raises(SVPRuntimeError, match=r"Trainer\._signature_columns.*remove_unused_columns=False"):
        _compat.keep_trainer_column(Bare(), "svp_recorder_index")
