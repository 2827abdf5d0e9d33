"""Loading and inspecting datasets (svp_hf.data): builtins, columns, labels, text columns, evaluation splits."""

import io

import datasets
import numpy as np
import pytest
import torch
from datasets import Dataset, Features, Value
from PIL import Image as PILImage

import svp_hf
from svp_hf import SVPConfigError
from svp_hf.config import DataArguments
from svp_hf.data import (
    CachedImages,
    batch_collate,
    check_images,
    find_label_column,
    get_split,
    inspect_dataset,
    load_data,
    on_device,
    row_slicer,
)
from svp_hf.errors import SVPRuntimeError
from svp_hf.jobs import pipeline
from svp_hf.models import create_model
from svp_hf.stages.proxy import prepare_inputs


def test_digits_builtin(digits):
    assert set(digits) == {"train", "test"}
    assert len(digits["train"]) + len(digits["test"]) == 1797
    assert isinstance(digits["train"].features["image"], datasets.Image)
    info = inspect_dataset(digits["train"], "image")
    assert (info.input_columns, info.label_column, info.num_classes) == (["image"], "label", 10)
    assert info.extra == {"in_chans": 1, "image_size": (8, 8)}


def test_columns_named_explicitly_and_int_labels(tiny_digits):
    train, _ = tiny_digits
    renamed = train.rename_columns({"image": "img", "label": "y"}).cast_column("y", Value("int64"))
    info = inspect_dataset(renamed, "image", image_column="img", label_column="y")
    assert (info.input_columns, info.label_column, info.num_classes, info.class_names) == (["img"], "y", 10, None)


def test_missing_and_wrong_columns(tiny_digits):
    train, _ = tiny_digits
    with pytest.raises(SVPConfigError, match="image column 'pixels' not found.*'image', 'label'"):
        inspect_dataset(train, "image", image_column="pixels")
    with pytest.raises(SVPConfigError, match="column 'label' is not an image column"):
        inspect_dataset(train, "image", image_column="label")
    with pytest.raises(SVPConfigError, match="no image column found"):
        inspect_dataset(train.remove_columns("image").add_column("x", [0] * len(train)), "image")
    with pytest.raises(SVPConfigError, match="label column 'nope' not found"):
        inspect_dataset(train, "image", label_column="nope")


def test_label_column_must_be_integer_like():
    ds = Dataset.from_dict({"label": ["cat", "dog"]})
    with pytest.raises(SVPConfigError, match="integer class ids"):
        find_label_column(ds, "label")
    with pytest.raises(SVPConfigError, match="missing labels"):
        find_label_column(Dataset.from_dict({"label": [0, None, 1]}, features=Features({"label": Value("int64")})))
    with pytest.raises(SVPConfigError, match=r"holds -1 in 1 of 3 rows: -1 is how datasets marks a missing label"):
        find_label_column(Dataset.from_dict({"label": [0, -1, 1]}))
    with pytest.raises(SVPConfigError, match=r"labels below -1 in 1 row\(s\) \(e.g. -5\), which are no class ids"):
        find_label_column(Dataset.from_dict({"label": [0, -1, -5]}))
    with pytest.raises(SVPConfigError, match="no label column.*label_column=.*class_names="):
        find_label_column(Dataset.from_dict({"y": [0.5]}))
    assert find_label_column(Dataset.from_dict({"labels": [0, 3]})) == ("labels", 4, None)


def test_empty_dataset(tiny_digits):
    with pytest.raises(SVPConfigError, match="empty"):
        inspect_dataset(tiny_digits[0].select([]), "image")


def test_load_data_errors(tmp_path):
    with pytest.raises(SVPConfigError, match="no data"):
        load_data(None)
    with pytest.raises(SVPConfigError, match="could not load dataset 'no-such-user/no-such-dataset'"):
        load_data("no-such-user/no-such-dataset")
    with pytest.raises(SVPConfigError, match="cannot tell the format"):
        load_data(None, data_files={"train": str(tmp_path / "x.weird")})


def test_sources_that_hold_no_data_are_named_with_the_fix(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"text": pa.array([], pa.string()), "label": pa.array([], pa.int64())}), tmp_path / "empty.parquet"
    )
    (tmp_path / "header.csv").write_text("text,label\n")
    with pytest.raises(SVPConfigError, match=r"1 data file\(s\) hold no rows \(.*empty.parquet': it holds 0 rows\)"):
        load_data(None, data_files={"train": str(tmp_path / "empty.parquet")})
    with pytest.raises(SVPConfigError, match=r"header.csv': it holds a header only"):
        load_data("csv", data_files=str(tmp_path / "header.csv"))
    for empty in ("", [], {}, {"train": ""}):
        with pytest.raises(SVPConfigError, match="data_files names no file"):
            load_data("parquet", data_files=empty)
    with pytest.raises(
        SVPConfigError, match="unknown built-in dataset 'builtin:nosuch'; the built-in datasets are builtin:digits"
    ):
        load_data("builtin:nosuch")
    with pytest.raises(SVPConfigError, match="the built-in dataset 'builtin:digits' reads no data_files"):
        load_data("builtin:digits", data_files=str(tmp_path / "empty.parquet"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(SVPConfigError, match="the folder .*nothing' holds no data files datasets can read"):
        load_data(str(tmp_path / "nothing"))


def test_a_folder_whose_files_name_no_split_says_what_datasets_read_and_the_fixes(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("buy milk\n")
    data = load_data(str(tmp_path / "notes"))
    with pytest.raises(
        SVPConfigError,
        match=r"evaluation split 'test' not found; the dataset has splits \['train'\] "
        r"\(datasets read it as 'text' data, found no file or folder named by a split.*validation_split_percentage",
    ):
        get_split(data, "test", "evaluation")


def test_load_parquet_data_files(tmp_path, tiny_digits):
    train, test = tiny_digits
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    data = load_data(
        None, data_files={"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    )
    assert len(data["train"]) == 200 and data["train"].features == train.features
    by_folder = load_data(str(tmp_path))
    assert set(by_folder) == {"train", "test"}


# --- text columns and checks ------------------------------------------------------------------------------------------


def test_text_columns_found_or_named(tiny_reviews):
    train, _ = tiny_reviews
    info = inspect_dataset(train, "text")
    assert (info.input_columns, info.label_column, info.num_classes, info.class_names) == (
        ["title", "content"],
        "label",
        2,
        ["negative", "positive"],
    )
    assert inspect_dataset(train, "text", text_column="content").input_columns == ["content"]
    assert inspect_dataset(train, "text", text_column=["content", "title"]).input_columns == ["content", "title"]
    assert inspect_dataset(train, "text", text_column="title,content").input_columns == ["title", "content"]
    assert DataArguments(text_column="title content").text_column == ["title", "content"]


def test_text_bad_input(tiny_reviews):
    train, _ = tiny_reviews
    with pytest.raises(SVPConfigError, match="no text column found"):
        inspect_dataset(train.remove_columns(["title", "content"]).add_column("n", [1] * len(train)), "text")
    with pytest.raises(SVPConfigError, match="text column 'body' not found"):
        inspect_dataset(train, "text", text_column="body")
    with pytest.raises(SVPConfigError, match="column 'label' is not a text column"):
        inspect_dataset(train, "text", text_column="label")
    blank = train.map(
        lambda row, i: {"content": " \n\t" if i == 7 else row["content"], "title": "" if i == 7 else row["title"]},
        with_indices=True,
    )
    with pytest.raises(
        SVPConfigError,
        match=r"text column 'title' \+ 'content' is empty or only whitespace in 1 row\(s\) \(e.g. row 7\)",
    ):
        inspect_dataset(blank, "text")
    assert inspect_dataset(blank.select(range(7)), "text").input_columns == ["title", "content"]  # a view without it
    with pytest.raises(SVPConfigError, match="empty"):
        inspect_dataset(train.select([]), "text")


def test_evaluation_labels_must_be_in_range(tiny_reviews):
    train, test = tiny_reviews
    relabelled = test.cast_column("label", Value("int64")).map(lambda r: {"label": 4})
    with pytest.raises(SVPConfigError, match="evaluation split's label column 'label' has label 4"):
        svp_hf.score(train, proxy="fasttext", eval_dataset=relabelled)


def test_held_out_evaluation_split(reviews):
    args = DataArguments(
        dataset_name="builtin:reviews", train_split="test", eval_split="test", validation_split_percentage=25
    )
    train, evaluation = pipeline.load_splits(args, seed=0)
    assert (len(train), len(evaluation)) == (180, 60)
    assert np.bincount(evaluation["label"]).min() >= 29  # stratified
    missing = DataArguments(dataset_name="builtin:reviews", eval_split="validation", validation_split_percentage=10)
    assert [len(s) for s in pipeline.load_splits(missing, seed=0)] == [864, 96]
    with pytest.raises(SVPConfigError, match="evaluation split 'validation' not found"):
        pipeline.load_splits(DataArguments(dataset_name="builtin:reviews", eval_split="validation"), seed=0)
    with pytest.raises(SVPConfigError, match="validation_split_percentage"):
        DataArguments(validation_split_percentage=100)


def test_a_single_class_dataset_is_refused_before_training(tiny_digits):
    train, _ = tiny_digits
    threes = train.filter(lambda r: r["label"] == 3)
    with pytest.raises(SVPConfigError, match=rf"single class \('3'\) in all {len(threes)} rows"):
        svp_hf.prune(threes, proxy="resnet20", fraction=0.5, proxy_epochs=1, strategy="top")
    with pytest.raises(SVPConfigError, match="single class"):
        svp_hf.score(threes.cast_column("label", datasets.Value("int64")), proxy="resnet20", proxy_epochs=1)
    two = train.filter(lambda r: r["label"] in (1, 2))
    svp_hf.score(two, proxy="resnet20", methods=["random"], proxy_epochs=1)  # two classes present: fine


def _images(n, side, bad=(), modes=()):
    """`n` random `side` x `side` PNG images (RGB, or row i in PIL mode ``modes[i]``); rows in `bad` are no image."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        if i in bad:
            rows.append({"bytes": b"not an image", "path": None})
            continue
        buffer = io.BytesIO()
        image = PILImage.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8))
        image.convert(modes[i] if modes else "RGB").save(buffer, format="PNG")
        rows.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"img": rows, "label": [i % 2 for i in range(n)]}, features=features)


def test_small_images_batch_from_the_decoded_cache_as_the_per_row_transform_does():
    ds = _images(20, 16)
    family, info = prepare_inputs(ds, "resnet20", {})
    model = create_model("resnet20", info)
    cached = family.dataset(ds, model, info, train=False)
    assert isinstance(cached, CachedImages)
    batch = on_device(cached, batch_collate(cached, None)([3, 0, 7]))
    from svp_hf.data import image_transform

    transform = image_transform(model, info, train=False)
    expected = torch.stack([transform(ds[i]["img"].convert("RGB")) for i in (3, 0, 7)])
    torch.testing.assert_close(batch["pixel_values"], expected, rtol=1e-5, atol=1e-5)
    assert batch["labels"].tolist() == [1, 0, 1] and batch["svp_index"].tolist() == [3, 0, 7]
    # consecutive rows cut into batches of 2 (the last of 1): no gather
    sliced = row_slicer(cached)(4, 9, 2)
    assert [b["svp_index"].tolist() for b in sliced] == [[4, 5], [6, 7], [8]]
    for batch, start in zip(sliced, (4, 6, 8)):
        gathered = cached.collate(list(range(start, min(9, start + 2))))
        assert sorted(batch) == sorted(gathered) and all(torch.equal(batch[k], gathered[k]) for k in gathered)


def test_a_colour_set_whose_first_image_is_grayscale_is_read_in_colour():
    mixed = _images(10, 8, modes=["L"] + ["RGB"] * 9)
    info = inspect_dataset(mixed, "image")
    assert info.extra["in_chans"] == 3
    family, info = prepare_inputs(mixed, "resnet20", {})
    decoded = family.dataset(mixed, create_model("resnet20", info), info, train=False)
    assert decoded.pixels.shape == (10, 8, 8, 3)
    gray = np.asarray(mixed[0]["img"])
    np.testing.assert_array_equal(decoded.pixels[0], np.repeat(gray[..., None], 3, axis=-1))  # three equal channels
    np.testing.assert_array_equal(decoded.pixels[5], np.asarray(mixed[5]["img"]))  # colour kept
    assert (
        inspect_dataset(_images(4, 8, modes=["L", "LA", "L", "1"]), "image").extra["in_chans"] == 1
    )  # all gray: one channel


def test_a_large_undecodable_image_is_named_by_row_and_skipped_on_request():
    ds = _images(6, 80, bad=(4,))
    family, info = prepare_inputs(ds, "resnet18", {})
    model = create_model("resnet18", info)
    rows = family.dataset(ds, model, info, train=False)
    rows[3]  # a good row decodes
    with pytest.raises(SVPRuntimeError, match=r"column 'img' of row 4 cannot be decoded"):
        rows[4]
    kept, skipped = check_images(ds, info, skip=True)
    assert skipped == [4] and len(kept) == 5
    with pytest.raises(SVPRuntimeError, match=r"row\(s\) 4"):
        check_images(ds, info)


def test_large_text_is_tokenised_by_several_processes_into_the_same_ids(monkeypatch):
    import svp_hf.data.text as data
    from svp_hf.data import map_processes, reviews_dataset, text_dataset

    monkeypatch.setattr(data, "auto_num_workers", lambda *a: 7)
    assert map_processes(data.PARALLEL_MAP_MIN_ROWS - 1) is None  # starting processes costs more than they save
    assert map_processes(data.PARALLEL_MAP_MIN_ROWS) == 2 and map_processes(10**7) == 8
    monkeypatch.setattr(data, "auto_num_workers", lambda *a: 0)
    assert map_processes(10**7) is None  # a machine with one CPU for this process
    reviews = reviews_dataset(n=300)["train"]
    family, info = prepare_inputs(reviews, "fasttext", {})
    hasher = create_model("fasttext", info).hasher()
    alone = text_dataset(reviews, info, hasher, "hashing")
    monkeypatch.setattr(data, "PARALLEL_MAP_MIN_ROWS", 100)
    monkeypatch.setattr(data, "auto_num_workers", lambda *a: 1)
    assert map_processes(len(reviews)) == 2
    shared = text_dataset(reviews, info, hasher, "hashing")
    assert shared["input_ids"] == alone["input_ids"] and shared["svp_index"] == alone["svp_index"]
