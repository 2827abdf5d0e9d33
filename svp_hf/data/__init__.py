"""Data: loading a dataset (``loading``, ``builtin``), finding and checking its columns (``columns``), and turning rows
into model-ready batches (``images`` with the decode-once ``image_cache`` and GPU-side ``augment``, ``text`` with
``packed`` token runs, and ``prefetch``).

The names below are the data layer's API, importable from ``svp_hf.data`` as before the split into modules.
"""

from .builtin import BUILTIN_DATASETS, digits_dataset, reviews_dataset
from .columns import (
    INDEX_COLUMN,
    MODALITIES,
    PREVIOUS_SUFFIX,
    SCORE_COLUMN,
    DataInfo,
    Modality,
    add_index,
    check_same_columns,
    check_several_classes,
    column_values,
    find_label_column,
    inspect_dataset,
    keep_previous_columns,
    register_modality,
)
from .images import (
    MODE_SAMPLE,
    SMALL_IMAGE_MAX_SIDE,
    CachedImages,
    batch_collate,
    check_images,
    collate_image_batch,
    decoded_images,
    image_dataset,
    image_transform,
    inspect_image_dataset,
    on_device,
    row_slicer,
    small_images,
    undecodable_rows,
    uses_channels_last,
)
from .loading import BUILTIN_PREFIX, get_split, hold_out, load_data
from .text import PARALLEL_MAP_MIN_ROWS, inspect_text_dataset, join_text, map_processes, text_dataset

__all__ = [
    "DataInfo",
    "INDEX_COLUMN",
    "MODALITIES",
    "Modality",
    "PREVIOUS_SUFFIX",
    "SCORE_COLUMN",
    "add_index",
    "check_same_columns",
    "check_several_classes",
    "column_values",
    "find_label_column",
    "inspect_dataset",
    "keep_previous_columns",
    "register_modality",
    "BUILTIN_DATASETS",
    "digits_dataset",
    "reviews_dataset",
    "BUILTIN_PREFIX",
    "get_split",
    "hold_out",
    "load_data",
    "PARALLEL_MAP_MIN_ROWS",
    "inspect_text_dataset",
    "join_text",
    "map_processes",
    "text_dataset",
    "CachedImages",
    "MODE_SAMPLE",
    "SMALL_IMAGE_MAX_SIDE",
    "batch_collate",
    "check_images",
    "collate_image_batch",
    "decoded_images",
    "image_dataset",
    "image_transform",
    "inspect_image_dataset",
    "on_device",
    "row_slicer",
    "small_images",
    "undecodable_rows",
    "uses_channels_last",
]
