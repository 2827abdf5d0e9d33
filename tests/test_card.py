"""svp_hf.card: what the card says about the run."""

from svp_hf.card import dataset_card


def card_text(**extra):
    metrics = {"n_total": 600, "n_selected": 300, "method": "entropy", "proxy": "resnet20", "train_split": "train",
               "strategy": "top", "selected_strategy": "top", **extra}
    return str(dataset_card(metrics, has_scores=False))


def test_the_card_states_the_rows_the_proxy_trained_on():
    sampled = card_text(source={"split": "train", "max_train_samples": 600, "num_rows": 600})
    assert "whole split" not in sampled
    assert "300 of 600 rows (a seeded random sample, `max_train_samples: 600`) of the `train` split" in sampled
    assert "proxy trained on those 600 rows" in sampled
    whole = card_text(source={"split": "train", "max_train_samples": None, "num_rows": 600})
    assert "300 of the 600 rows of the `train` split" in whole and "proxy trained on the whole split" in whole
    capped_above = card_text(source={"split": "train", "max_train_samples": 5000, "num_rows": 600})  # the cap exceeded the split
    assert "proxy trained on the whole split" in capped_above
