"""svp_hf.data: datasets svp_hf cannot learn from are refused before training."""

import datasets
import pytest

import svp_hf
from svp_hf import SVPConfigError


def test_a_single_class_dataset_is_refused_before_training(tiny_digits):
    train, _ = tiny_digits
    threes = train.filter(lambda r: r["label"] == 3)
    with pytest.raises(SVPConfigError, match=rf"single class \('3'\) in all {len(threes)} rows"):
        svp_hf.prune(threes, proxy="resnet20", fraction=0.5, proxy_epochs=1, strategy="top")
    with pytest.raises(SVPConfigError, match="single class"):
        svp_hf.score(threes.cast_column("label", datasets.Value("int64")), proxy="resnet20", proxy_epochs=1)
    two = train.filter(lambda r: r["label"] in (1, 2))
    svp_hf.score(two, proxy="resnet20", methods=["random"], proxy_epochs=1)  # two classes present: fine
