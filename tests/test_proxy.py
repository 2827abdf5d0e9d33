"""Inputs of the proxy (svp_hf.stages.proxy)."""


def test_labels_follow_an_indices_mapping(digits):
    """A split from train_test_split is an indices mapping over a larger table: labels must follow the mapping."""
    from svp_hf.stages.proxy import labels_of, prepare_inputs

    train = digits["train"]
    _, info = prepare_inputs(train, "resnet20", {})
    assert len(labels_of(train, info)) == len(train) < len(train.data)
    assert labels_of(train, info).tolist() == train["label"]
