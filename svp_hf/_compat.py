"""Every use svp_hf makes of another library's internals, each behind one small function.

A private attribute can change in any release, so none is read anywhere else in svp_hf: each function here says
which versions it was checked on and what it falls back to when the internal is gone (a public equivalent where one
exists, else a clear :class:`~svp_hf.errors.SVPRuntimeError` naming the library, the attribute and the installed
version). ``tests/test_compat.py`` exercises every function against the installed libraries, on real objects, and
fails naming the library and attribute when an upgrade removes one.

Checked on torch 2.14.1, datasets 5.2.0, accelerate 1.16.0 and transformers 5.24.0 (:data:`CHECKED`: the versions
installed when this module was written, and the only ones it was run against; ``pyproject.toml`` allows older ones,
which ``tests/test_compat.py`` checks wherever they are installed). Libraries are imported only inside the
functions, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import Any, Callable, FrozenSet, List, Optional

from .errors import SVPRuntimeError

# What each function below was checked on.
CHECKED = {"torch": "2.14.1", "datasets": "5.2.0", "accelerate": "1.16.0", "transformers": "5.24.0"}


def installed_version(library: str) -> str:
    """The installed version of `library` (``"unknown"`` when its metadata cannot be read)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(library)
    except PackageNotFoundError:
        return "unknown"


def _gone(library: str, attribute: str, what: str) -> SVPRuntimeError:
    """The error for an internal this version of `library` no longer has."""
    return SVPRuntimeError(
        f"svp_hf reads the internal {attribute} of {library} ({what}), which {library} {installed_version(library)} "
        f"does not have (checked on {library} {CHECKED[library]}): install that {library} version, or an svp_hf release "
        f"that supports {library} {installed_version(library)}"
    )


# --- accelerate ------------------------------------------------------------------------------------------------------

PREPARED_KINDS = ("models", "optimizers", "schedulers", "dataloaders")


def prepared(accelerator, kind: str) -> List[Any]:
    """What `accelerator` prepared of one `kind` (``"models"``, ``"optimizers"``, ``"schedulers"``,
    ``"dataloaders"``), in the order prepared: ``Accelerator._models`` and its siblings, the lists
    ``Accelerator.save_state`` saves from. The list itself, not a copy.

    Checked on accelerate 1.16.0. No public fallback: accelerate has no public
    way to list what it prepared (``save_state`` writes them with pickle, which svp_hf's checkpoints avoid)."""
    if kind not in PREPARED_KINDS:
        raise ValueError(f"kind must be one of {PREPARED_KINDS}, got {kind!r}")
    found = getattr(accelerator, f"_{kind}", None)
    if not isinstance(found, list):
        raise _gone("accelerate", f"Accelerator._{kind}", "the objects it prepared, saved in svp_hf's checkpoints")
    return found


def forget_prepared(accelerator) -> None:
    """Make `accelerator` forget everything it prepared and reset its step counter, as
    ``Accelerator.free_memory()`` does but without its garbage collection (half a second and more with a large heap):
    clears ``Accelerator._models``, ``_optimizers``, ``_schedulers`` and ``_dataloaders``.

    Checked on accelerate 1.16.0. Public fallback when the lists are gone: ``accelerator.free_memory()``."""
    lists = [getattr(accelerator, f"_{kind}", None) for kind in PREPARED_KINDS]
    if not all(isinstance(found, list) for found in lists):
        accelerator.free_memory()
        return
    for found in lists:
        found.clear()
    accelerator.step = 0


# --- torch -----------------------------------------------------------------------------------------------------------


def random_sampler_draws_one_permutation(sampler) -> bool:
    """Whether a ``torch.utils.data.RandomSampler`` draws exactly one permutation of its rows per pass, from its own
    generator: sampling without replacement, no ``num_samples`` given (``RandomSampler._num_samples is None``) and a
    generator set. svp_hf then cuts the batches out of that one permutation itself.

    Checked on torch 2.14.1. Public fallback when it is gone: ``False``
    (the sampler is iterated as torch does: the same batches, merely assembled one index at a time); the public
    ``num_samples`` cannot stand in, as it equals the dataset's length whether or not ``num_samples`` was given."""
    if sampler.replacement or sampler.generator is None:
        return False
    if not hasattr(sampler, "_num_samples"):
        return False
    return sampler._num_samples is None


BF16_CPU_HELPERS = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")


def torch_cpu_feature(name: str) -> Optional[bool]:
    """What ``torch.cpu.<name>()`` reports for one of :data:`BF16_CPU_HELPERS`: ``_is_avx512_bf16_supported``
    (AVX512-BF16) or ``_is_amx_tile_supported`` (AMX tiles), the CPUID bits ATen's cpuinfo reads.

    Checked on torch 2.14.1. Fallback when this torch lacks the helper: ``None``
    (unknown, counted as not supported); there is no public equivalent (``torch.backends.cpu.get_cpu_capability()``
    names only the vector width, not bf16)."""
    import torch

    if name not in BF16_CPU_HELPERS:
        raise ValueError(f"name must be one of {BF16_CPU_HELPERS}, got {name!r}")
    helper = getattr(getattr(torch, "cpu", None), name, None)
    return bool(helper()) if callable(helper) else None


# --- datasets --------------------------------------------------------------------------------------------------------


def _indices_table(dataset):
    if not hasattr(dataset, "_indices"):
        raise _gone("datasets", "Dataset._indices", "the row mapping select/shuffle/... leave on a dataset")
    return dataset._indices


def has_indices_mapping(dataset) -> bool:
    """Whether `dataset` (a ``datasets.Dataset``) shows its table's rows through an indices mapping (left by
    ``select``, ``shuffle``, ``sort``, ``train_test_split``, ...): ``Dataset._indices is not None``.

    Checked on datasets 5.2.0. No public fallback: datasets has no public
    accessor of the mapping (its length is no test: a shuffle keeps every row)."""
    return _indices_table(dataset) is not None


def indices_mapping(dataset):
    """The rows of ``dataset.data`` that `dataset` shows, in order (a numpy array of its indices mapping,
    ``Dataset._indices``), or ``None`` when it shows ``dataset.data`` as it is. See :func:`has_indices_mapping`."""
    indices = _indices_table(dataset)
    return None if indices is None else indices.column(0).to_numpy()


def dataset_fingerprint(dataset) -> Optional[str]:
    """`dataset`'s fingerprint (``Dataset._fingerprint``: the hash ``datasets`` names its cache files by, new for
    every transform), or ``None`` when it has none.

    Checked on datasets 5.2.0. Fallback when it is gone: ``None``, and
    callers skip what the fingerprint keys (the image cache on disk, the packed-text memo) rather than guess one."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    return fingerprint if isinstance(fingerprint, str) else None


def packaged_builder_names() -> FrozenSet[str]:
    """The names of ``datasets``' packaged builders (``csv``, ``json``, ``parquet``, ``imagefolder``, ...):
    the keys of ``datasets.packaged_modules._PACKAGED_DATASETS_MODULES``.

    Checked on datasets 5.2.0. Fallback when it is gone: :data:`PACKAGED_BUILDERS`, the names datasets 5.2.0 has
    (no public list exists)."""
    try:
        from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES
    except ImportError:
        return PACKAGED_BUILDERS
    return frozenset(_PACKAGED_DATASETS_MODULES)


PACKAGED_BUILDERS = frozenset(
    {
        "arrow",
        "audiofolder",
        "conll",
        "csv",
        "eval",
        "fasta",
        "fastq",
        "genbank",
        "harbor",
        "hdf5",
        "iceberg",
        "imagefolder",
        "json",
        "lance",
        "meshfolder",
        "mmcif",
        "niftifolder",
        "pandas",
        "parquet",
        "pdb",
        "pdffolder",
        "text",
        "tsfile",
        "videofolder",
        "vortex",
        "webdataset",
        "xml",
    }
)


def embed_table_storage_fn() -> Callable:
    """``datasets.table.embed_table_storage``: a function that takes an Arrow table with image/audio columns
    referencing files by path and returns it with the files' bytes embedded (as ``push_to_hub`` embeds them).

    Checked on datasets 5.2.0 (its docstring says it was added in datasets 2.4.0). Public fallback when it is gone: each
    top-level column whose feature has a public ``embed_storage`` (``Image``, ``Audio``, ...) embedded with it, the
    others kept (files nested in lists or dicts are then left as paths)."""
    try:
        from datasets.table import embed_table_storage
    except ImportError:
        return _embed_top_level_columns
    return embed_table_storage


def _embed_top_level_columns(table):
    import pyarrow as pa
    from datasets import Features

    features = Features.from_arrow_schema(table.schema)
    columns = []
    for name, feature in features.items():
        column = table[name]
        embed = getattr(feature, "embed_storage", None)
        if callable(embed) and getattr(feature, "decode", None) is not None:
            column = pa.chunked_array([embed(chunk) for chunk in column.chunks], type=column.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=features.arrow_schema)


# --- transformers ----------------------------------------------------------------------------------------------------


def keep_trainer_column(trainer, column: str) -> None:
    """Make a ``transformers.Trainer`` pass `column` through to its batches although its model's ``forward`` does
    not take it: with ``remove_unused_columns`` (the default), the Trainer keeps only the columns named in
    ``Trainer._signature_columns``, which ``Trainer._set_signature_columns_if_needed()`` fills from the model's
    signature; `column` is added to that list.

    Checked on transformers 5.24.0. Public fallback: none is needed with
    ``TrainingArguments(remove_unused_columns=False)`` (nothing is dropped); without it, when the internals are gone,
    an :class:`~svp_hf.errors.SVPRuntimeError` says to set it."""
    fill = getattr(trainer, "_set_signature_columns_if_needed", None)
    if not callable(fill) or not hasattr(trainer, "_signature_columns"):
        if not getattr(trainer.args, "remove_unused_columns", True):
            return
        err = _gone("transformers", "Trainer._signature_columns", "the columns a Trainer keeps for the model")
        raise SVPRuntimeError(f"{err}; or set TrainingArguments(remove_unused_columns=False)") from None
    fill()
    if column not in trainer._signature_columns:
        trainer._signature_columns.append(column)


__all__ = [
    "CHECKED",
    "installed_version",
    "PREPARED_KINDS",
    "prepared",
    "forget_prepared",
    "random_sampler_draws_one_permutation",
    "BF16_CPU_HELPERS",
    "torch_cpu_feature",
    "has_indices_mapping",
    "indices_mapping",
    "dataset_fingerprint",
    "packaged_builder_names",
    "PACKAGED_BUILDERS",
    "embed_table_storage_fn",
    "keep_trainer_column",
]
