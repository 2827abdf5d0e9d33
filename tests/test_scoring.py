"""svp_hf.scoring: k-centers' memory bound."""

import pytest

import svp_hf
from svp_hf import SVPConfigError
from svp_hf import training as training_mod
from svp_hf.scoring import KCENTER_MIN_POOL, kcenter_pool_rows


def test_a_kcenter_memory_bound_too_small_for_a_pool_is_refused_before_training(tiny_digits, monkeypatch):
    train, _ = tiny_digits
    trained = []
    monkeypatch.setattr(training_mod, "train_model", lambda *a, **k: trained.append(1))
    with pytest.raises(SVPConfigError, match=rf"useful k-centers pool of {KCENTER_MIN_POOL} candidates: that needs at least 33000 bytes"):
        svp_hf.score(train, proxy="resnet20", methods=["entropy", "kcenter"], kcenter_max_memory="1KB", proxy_epochs=1)
    with pytest.raises(SVPConfigError, match="useful k-centers pool"):
        svp_hf.prune(train, proxy="resnet20", method="kcenter", kcenter_max_memory=1024, proxy_epochs=1)
    assert trained == []
    svp_hf.score(train, proxy="resnet20", methods=["entropy"], kcenter_max_memory="1KB", proxy_epochs=1)  # no k-centers


def test_a_pool_capped_below_the_minimum_warns_with_the_memory_it_needs():
    dim = 64
    with pytest.warns(UserWarning, match=rf"holds only 30 k-centers candidate\(s\).*close to random.*>= {1000 * (4 * dim + 29)} bytes"):
        assert kcenter_pool_rows(dim, None, 30 * (4 * dim + 29), n_rows=5000) == 30
    with pytest.warns(UserWarning, match=rf">= {200 * (4 * dim + 29)} bytes"):  # a small dataset needs all its rows
        kcenter_pool_rows(dim, None, 30 * (4 * dim + 29), n_rows=200)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kcenter_pool_rows(dim, None, "1GB", n_rows=5000) > KCENTER_MIN_POOL


def test_a_stream_with_its_own_svp_index_is_read_by_position(tiny_digits):
    from svp_hf.scoring import iter_shards

    train, _ = tiny_digits
    stream = train.add_column("svp_index", list(range(len(train)))[::-1]).to_iterable_dataset()
    shards = list(iter_shards(stream, 64))
    assert [len(s) for _, s in shards] == [64, 64, 64, 8]
    assert shards[1][1]["svp_index"] == list(range(64, 128))
    assert shards[1][1]["svp_index_previous"] == list(range(len(train)))[::-1][64:128]
