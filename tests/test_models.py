"""Models (svp_hf.models): CIFAR ResNets in timm, fastText, transformers, and how a name resolves to a family."""

import os
import subprocess
import sys

import pytest
import timm
import torch
from accelerate import Accelerator
from datasets import Value

import svp_hf
from svp_hf.data import add_index, inspect_dataset
from svp_hf.engine.training import TrainingConfig, evaluate_accuracy, train_model
from svp_hf.errors import SVPConfigError
from svp_hf.models import create_model, resolve_family
from svp_hf.models.fasttext import NgramHasher

from .conftest import separable

TEXT = "The blender was GREAT, but the lid broke!"


@pytest.mark.parametrize(
    "name, blocks, width", [("resnet20", 3, 64), ("resnet56", 9, 64), ("resnet110", 18, 64), ("resnet164", 18, 256)]
)
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
        lambda row: {"image": row["image"].convert("RGB").resize((80, 80), PILImage.NEAREST)}, features=train.features
    )
    info = inspect_dataset(big, "image")
    assert info.extra["in_chans"] == 3 and info.extra["image_size"] == (80, 80)
    pruned = svp_hf.prune(
        big, proxy="resnet18", fraction=0.5, method="entropy", proxy_epochs=1, batch_size=12, strategy="top"
    )
    assert len(pruned) == 12
    from svp_hf.data import image_transform

    model = create_model("resnet18", info)
    x = image_transform(model, info, train=False)(big[0]["image"])
    assert tuple(x.shape) == timm.data.resolve_data_config({}, model=model)["input_size"]


# --- fastText ------------------------------------------------------------------------------------------------------


def test_hashing_is_deterministic_and_counts_ngrams():
    hasher = NgramHasher(ngrams=2, buckets=1000)
    words = hasher.words(TEXT)
    assert words == ["the", "blender", "was", "great", ",", "but", "the", "lid", "broke", "!"]
    ids = hasher.ids(TEXT)
    assert len(ids) == 10 + 9 and all(0 <= i < 1000 for i in ids)
    assert ids == NgramHasher(ngrams=2, buckets=1000).ids(TEXT)
    assert ids[0] == ids[6]  # the same word, the same bucket
    assert NgramHasher(ngrams=1, buckets=1000).ids(TEXT) == ids[:10]
    assert NgramHasher(ngrams=3, buckets=1000).ids(TEXT)[:19] == ids
    assert hasher.ids("   ") == [] and len(hasher.ids("one")) == 1


def test_hashing_does_not_depend_on_the_python_hash_seed():
    code = (
        "from svp_hf.models.fasttext import NgramHasher; print(NgramHasher(ngrams=2, buckets=1 << 21).ids(%r))" % TEXT
    )
    outputs = set()
    for seed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True).stdout
        outputs.add(out.strip())
    assert outputs == {str(NgramHasher(ngrams=2, buckets=1 << 21).ids(TEXT))}


def test_fasttext_learns_a_separable_task():
    train, test = separable(400, 0), separable(200, 1)
    family = resolve_family("fasttext")
    info = inspect_dataset(train, "text")
    torch.manual_seed(0)
    model = create_model("fasttext,dim=8,buckets=4096", info)
    accelerator = Accelerator()
    before = evaluate_accuracy(model, family, test, info, accelerator)
    config = TrainingConfig(epochs=5, batch_size=32, learning_rate=1.0, weight_decay=1e-4, lr_schedule="halving")
    trained = train_model(model, family, add_index(train), info, config, accelerator)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert evaluate_accuracy(trained.model, family, test, info, accelerator) >= 0.95 > before


def test_fasttext_options():
    info = inspect_dataset(separable(10, 0), "text")
    model = create_model("fasttext,dim=12,ngrams=3,buckets=512", info)
    assert model.embedding.weight.shape == (512, 12) and model.hasher().ngrams == 3
    with pytest.raises(SVPConfigError, match="unknown fasttext option"):
        create_model("fasttext,size=3", info)
    with pytest.raises(SVPConfigError, match="positive integer"):
        create_model("fasttext,dim=0", info)
    with pytest.raises(
        SVPConfigError, match="buckets must be at most 2147483648"
    ):  # ids are int32: refused before allocating
        create_model(f"fasttext,buckets={2**31 + 1}", info)
    with pytest.raises(SVPConfigError, match="not key=value"):
        create_model("fasttext,dim", info)


# --- model names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, family",
    [
        ("fasttext", "fasttext"),
        ("fasttext,dim=32", "fasttext"),
        ("resnet20", "timm"),
        ("resnet18", "timm"),
        ("hf-hub:timm/resnet18.a1_in1k", "timm"),
        ("config:bert-tiny", "transformers"),
        ("config:bert,num_hidden_layers=1", "transformers"),
        ("google-bert/bert-base-uncased", "transformers"),
    ],
)
def test_family_resolution_is_unambiguous(name, family):
    assert resolve_family(name).name == family


def test_transformers_from_config(tiny_reviews):
    info = inspect_dataset(tiny_reviews[0], "text")
    model = create_model("config:bert-tiny,max_length=32", info)
    assert (model.config.num_hidden_layers, model.config.hidden_size, model.config.num_labels) == (2, 128, 2)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.svp_max_length == 32 and len(model.svp_tokenizer) == model.config.vocab_size == 261
    encoded = model.svp_tokenizer(["hé"], truncation=True, max_length=32)["input_ids"][0]
    assert len(encoded) == 2 + len("hé".encode())  # [CLS], the bytes, [SEP]
    custom = create_model(
        "config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64", info
    )
    assert (custom.config.num_hidden_layers, custom.config.hidden_size) == (1, 32)
    family = resolve_family("config:bert-tiny")
    batch = family.make_collate(model)(
        [
            {**r, "svp_index": i}
            for i, r in enumerate(family.dataset(tiny_reviews[0].select(range(3)), model, info, train=False))
        ]
    )
    assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 32
    logits, pooled = family.logits_and_embeddings(model.eval(), batch)
    assert logits.shape == (3, 2) and pooled.shape == (3, 128)


def test_transformers_bad_input(tiny_reviews, tmp_path):
    train, _ = tiny_reviews
    with pytest.raises(
        SVPConfigError, match="could not load the tokenizer 'nobody/no-such-model' for model 'nobody/no-such-model'"
    ):
        svp_hf.prune(train, proxy="nobody/no-such-model")
    with pytest.raises(SVPConfigError, match="could not load the tokenizer"):
        svp_hf.prune(train, proxy=f"config:bert-tiny,tokenizer={tmp_path}")
    with pytest.raises(SVPConfigError, match="not a transformers model type"):
        svp_hf.prune(train, proxy="config:no_such_architecture")
    with pytest.raises(SVPConfigError, match="exceeds the model's limit"):
        svp_hf.prune(train, proxy="config:bert-tiny,max_length=4096")
    # A local folder whose checkpoint has a 2-label classification head, used on 3-class data.
    two_labels = create_model("config:bert-tiny,max_length=16", inspect_dataset(train, "text"))
    two_labels.save_pretrained(tmp_path / "clf")
    two_labels.svp_tokenizer.save_pretrained(tmp_path / "clf")
    three = train.cast_column("label", Value("int64")).map(lambda r, i: {"label": i % 3}, with_indices=True)
    with pytest.raises(
        SVPConfigError, match="2 labels.*label column 'label' has labels up to 2.*outside the classifier's range"
    ):
        svp_hf.prune(three, proxy=str(tmp_path / "clf"))
    pruned = svp_hf.prune(
        train.select(range(32)),
        proxy=str(tmp_path / "clf"),
        fraction=0.5,
        proxy_epochs=1,
        batch_size=16,
        strategy="top",
    )
    assert len(pruned) == 16  # the same folder loads (weights and tokenizer) on 2-class data
