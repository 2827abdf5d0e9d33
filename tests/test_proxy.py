"""Inputs of the proxy (svp_hf.stages.proxy)."""


def test_labels_follow_an_indices_mapping(digits):
    """A split from train_test_split is an indices mapping over a larger table: labels must follow the mapping."""
    from svp_hf.stages.proxy import labels_of, prepare_inputs

    train = digits["train"]
    _, info = prepare_inputs(train, "resnet20", {})
    assert len(labels_of(train, info)) == len(train) < len(train.data)
    assert labels_of(train, info).tolist() == train["label"]


def _scores_for(dataset, seed=0):
    import numpy as np

    from svp_hf.stages.proxy import prepare_inputs, scores_dataset

    _, info = prepare_inputs(dataset, "resnet20", {})
    values = np.random.default_rng(seed).random(len(dataset))
    return scores_dataset(dataset, info, {"el2n": values}), values


def test_the_kept_rows_carry_their_score_and_position_whether_or_not_the_dataset_has_an_indices_mapping(digits):
    """subset_with_scores adds the columns to every row of a flat dataset and selects (no copy), or copies the kept
    rows of a mapped one: the same rows, scores and positions either way, in the order kept."""
    import numpy as np
    from datasets import Dataset

    from svp_hf._compat import has_indices_mapping
    from svp_hf.stages.proxy import subset_with_scores

    mapped = digits["train"]  # a train_test_split: an indices mapping over a larger table
    flat = Dataset.from_dict(mapped.to_dict(), features=mapped.features)
    assert has_indices_mapping(mapped) and not has_indices_mapping(flat)
    scores, values = _scores_for(mapped)
    keep = np.random.default_rng(1).permutation(len(mapped))[: len(mapped) // 3]
    a, b = subset_with_scores(mapped, scores, "el2n", keep), subset_with_scores(flat, scores, "el2n", keep)
    for pruned in (a, b):
        assert pruned.column_names == mapped.column_names + ["svp_score", "svp_index"]
        assert pruned["svp_index"][:] == keep.tolist()
        assert np.allclose(pruned["svp_score"][:], values[keep])
        assert pruned["label"][:] == [mapped[int(i)]["label"] for i in keep]
    assert a.to_dict() == b.to_dict()
    unscored = subset_with_scores(flat, scores, None, keep)
    assert "svp_score" not in unscored.column_names and unscored["svp_index"][:] == keep.tolist()


def test_score_tables_are_read_by_column_in_any_row_order(digits):
    """Scores attach to rows by svp_index even when the table's rows are in another order (read from Arrow)."""
    import numpy as np

    from svp_hf.data.columns import column_values
    from svp_hf.stages.proxy import score_positions, selected_indices

    scores, values = _scores_for(digits["train"])
    assert scores.features["label"] == digits["train"].features["label"]  # the dataset's ClassLabel, cast to
    shuffled = scores.shuffle(seed=3)
    assert score_positions(shuffled).tolist() == shuffled["svp_index"][:]
    assert column_values(shuffled, "el2n", np.float64).tolist() == shuffled["el2n"][:]
    top = selected_indices(shuffled, "el2n", 0.25, strategy="top")
    assert sorted(top.tolist()) == sorted(np.argsort(-values, kind="stable")[: len(top)].tolist())
