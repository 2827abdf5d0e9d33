"""The dataset card (svp_hf.publish.card): metadata, round trip, license and task categories carried from the source."""

import datasets
from huggingface_hub import DatasetCard

from svp_hf.publish.card import dataset_card


def test_card_has_the_metadata_and_round_trips(run):
    out, metrics, _ = run
    path = out / "dataset" / "README.md"
    card = DatasetCard.load(path)
    data = card.data.to_dict()
    assert data["tags"][:2] == ["svp-hf", "data-pruning"] and "active-learning" not in data["tags"]
    assert metrics["job"] == "coreset"
    assert data["task_categories"] == ["image-classification"]
    assert data["size_categories"] == ["n<1K"]
    assert "configs" not in data  # see svp_hf.publish.card: splits come from the file names
    # round trip: what DatasetCard.load read renders back to the same file
    assert str(DatasetCard(str(card))) == path.read_text()
    text = card.text
    source = metrics["source"]
    for needle in [
        f"`{source['fingerprint']}`",
        "`builtin:digits`",
        "`train`: 120 rows",
        "`entropy`",
        "0.25 (30 of 120 rows)",
        "| seed | 0 |",
        f"| proxy | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1, cosine schedule, weight decay 0.0005, batch 32 | {metrics['proxy_accuracy']:.4g} |",
        f"| target (trained on the kept rows) | `resnet20` | 1 | sgd (momentum 0.9), lr 0.03, cosine schedule, weight decay 0.0005, batch 32 | {metrics['target_accuracy']:.4g} |",
        "| `forgetting` | 120 |",
        "Spearman",
        "| proxy training |",
        "svp_hf 0.1.0",
        metrics["command"],
        "![score histogram](plots/score_histogram.png)",
    ]:
        assert needle in text, needle
    kept = metrics["selected_per_class"]
    total = metrics["total_per_class"]
    assert f"| 0 | {total['0']} | {kept.get('0', 0)} |" in text


def test_license_and_task_categories_carry_over_from_the_source(tmp_path, tiny_digits):
    from svp_hf.publish.card import card_data, size_category, source_metadata
    from svp_hf.publish.output import write_dataset_folder

    train, _ = tiny_digits
    folder = tmp_path / "source"
    write_dataset_folder(
        str(folder),
        {"train": train},
        "---\nlicense: cc-by-4.0\ntask_categories:\n- image-classification\n- other\n---\n# digits\n",
    )
    loaded = datasets.load_dataset(str(folder))["train"]
    source = source_metadata(loaded, dataset_name=str(folder), split="train", modality="image")
    assert source["license"] == "cc-by-4.0" and source["task_categories"] == ["image-classification", "other"]
    assert source["fingerprint"] == loaded._fingerprint and source["num_rows"] == len(train)
    assert source["hub_id"] is None  # a local folder is no Hub dataset
    data = card_data({"source": source, "splits": {"train": 20_000, "test": 10_000}}).to_dict()
    assert (
        data["license"] == "cc-by-4.0" and data["size_categories"] == ["10K<n<100K"] and "source_datasets" not in data
    )
    hub = card_data({"source": {"hub_id": "uoft-cs/cifar10"}, "n_selected": 999}).to_dict()
    assert hub["source_datasets"] == ["uoft-cs/cifar10"] and hub["size_categories"] == ["n<1K"]
    assert [size_category(n) for n in (999, 1000, 1_280_000)] == ["n<1K", "1K<n<10K", "1M<n<10M"]
    # no card and no license anywhere: nothing is made up, the task category comes from the modality
    bare = source_metadata(train, dataset_name="builtin:digits", split="train", modality="image")
    assert bare["license"] is None and bare["task_categories"] == ["image-classification"]


def card_text(**extra):
    metrics = {
        "n_total": 600,
        "n_selected": 300,
        "method": "entropy",
        "proxy": "resnet20",
        "train_split": "train",
        "strategy": "top",
        "selected_strategy": "top",
        **extra,
    }
    return str(dataset_card(metrics, has_scores=False))


def test_the_card_states_the_rows_the_proxy_trained_on():
    sampled = card_text(source={"split": "train", "max_train_samples": 600, "num_rows": 600})
    assert "whole split" not in sampled
    assert "300 of 600 rows (a seeded random sample, `max_train_samples: 600`) of the `train` split" in sampled
    assert "proxy trained on those 600 rows" in sampled
    whole = card_text(source={"split": "train", "max_train_samples": None, "num_rows": 600})
    assert "300 of the 600 rows of the `train` split" in whole and "proxy trained on the whole split" in whole
    capped_above = card_text(
        source={"split": "train", "max_train_samples": 5000, "num_rows": 600}
    )  # the cap exceeded the split
    assert "proxy trained on the whole split" in capped_above


def test_a_subset_selected_by_user_recorded_scores_says_so_on_its_card():
    """Scores recorded from the user's own loop (DynamicsRecorder) -> svp_hf.select -> the card of the subset
    pushed to the Hub says where the scores came from; svp_hf's own proxy is named as such."""
    import torch
    from datasets import ClassLabel, Dataset, Features, Value

    import svp_hf
    from svp_hf.publish.hub import dataset_folder
    from svp_hf.record import selection_record

    ds = Dataset.from_dict(
        {"x": list(range(40)), "label": [i % 2 for i in range(40)]},
        features=Features({"x": Value("int64"), "label": ClassLabel(names=["a", "b"])}),
    )
    recorder = svp_hf.DynamicsRecorder(ds)
    labels = torch.tensor(ds["label"])
    for step in range(3):
        logits = torch.stack([torch.linspace(-1, 1, 40) * (step + 1), torch.linspace(1, -1, 40)], dim=1)
        recorder.update(torch.arange(40), logits, labels)
    kept = svp_hf.select(ds, recorder.scores(["aum"]), "aum", 0.5, strategy="coverage")
    record = selection_record(kept)
    assert record["scores_source"]["source"] == "own_training_run" and record["n_total"] == 40
    assert record["strategy"] == record["selected_strategy"] == "coverage"
    with dataset_folder(kept, "alice/kept") as folder:
        card = open(f"{folder}/README.md", encoding="utf-8").read()
    assert "20 of the 40 rows" in card
    assert (
        "kept by `aum` scores recorded from the user's own training run (`svp_hf.DynamicsRecorder`, 120 presentations of 40 rows over 3 steps)"
        in card
    )
    assert "with strategy `coverage`" in card
