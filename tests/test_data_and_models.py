import datasets
import pytest
import timm
import torch
from datasets import Dataset, Features, Value

import svp_hf
from svp_hf.data import find_label_column, inspect_dataset, load_data
from svp_hf.errors import SVPConfigError
from svp_hf.models import create_model, resolve_family


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
    with pytest.raises(SVPConfigError, match="negative"):
        find_label_column(Dataset.from_dict({"label": [0, -1]}))
    with pytest.raises(SVPConfigError, match="no label column"):
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


def test_load_parquet_data_files(tmp_path, tiny_digits):
    train, test = tiny_digits
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    data = load_data(None, data_files={"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")})
    assert len(data["train"]) == 200 and data["train"].features == train.features
    by_folder = load_data(str(tmp_path))
    assert set(by_folder) == {"train", "test"}


@pytest.mark.parametrize("name, blocks, width", [("resnet20", 3, 64), ("resnet56", 9, 64), ("resnet110", 18, 64), ("resnet164", 18, 256)])
def test_cifar_resnets_in_timm_registry(name, blocks, width):
    assert timm.is_model(name)
    model = timm.create_model(name, num_classes=10)
    assert len(model.stages[0]) == blocks and model.num_features == width
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10)
    feats = model.forward_features(x)
    assert model.forward_head(feats, pre_logits=True).shape == (2, width)


def test_resnet20_has_the_papers_size():
    n = sum(p.numel() for p in timm.create_model("resnet20", num_classes=10).parameters())
    assert 0.26e6 < n < 0.28e6  # ~0.27M parameters


def test_create_model_for_a_dataset(tiny_digits):
    info = inspect_dataset(tiny_digits[0], "image")
    model = create_model("resnet18", info)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    family = resolve_family("resnet18")
    logits, emb = family.logits_and_embeddings(model, {"pixel_values": torch.randn(3, 1, 8, 8)})
    assert logits.shape == (3, 10) and emb.shape == (3, model.num_features)


def test_unknown_model_is_a_clear_error():
    with pytest.raises(SVPConfigError, match="unknown model 'resnet_9000'"):
        resolve_family("resnet_9000")
    with pytest.raises(SVPConfigError, match="non-empty"):
        resolve_family("")


def test_larger_images_go_through_timms_transforms(tiny_digits):
    """Images above CIFAR size use timm's data config (resize/crop to the model's input size, RGB)."""
    from PIL import Image as PILImage

    train, _ = tiny_digits
    big = train.select(range(24)).map(
        lambda row: {"image": row["image"].convert("RGB").resize((80, 80), PILImage.NEAREST)},
        features=train.features,
    )
    info = inspect_dataset(big, "image")
    assert info.extra["in_chans"] == 3 and info.extra["image_size"] == (80, 80)
    pruned = svp_hf.prune(big, proxy="resnet18", fraction=0.5, method="entropy", proxy_epochs=1, batch_size=12, strategy="top")
    assert len(pruned) == 12
    from svp_hf.data import image_transform

    model = create_model("resnet18", info)
    x = image_transform(model, info, train=False)(big[0]["image"])
    assert tuple(x.shape) == timm.data.resolve_data_config({}, model=model)["input_size"]
