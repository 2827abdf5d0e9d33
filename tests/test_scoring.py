"""Scoring (svp_hf.engine.scoring): sharded and streaming scoring, the k-center pool and memory bound, finished shards
reused, and two processes scoring like one."""

import numpy as np
import pandas as pd
import pytest
from accelerate import Accelerator

import svp_hf
import svp_hf.stages.proxy
from svp_hf import SVPConfigError
from svp_hf.config import SelectionArguments
from svp_hf.engine import scoring
from svp_hf.engine.scoring import KCENTER_MIN_CANDIDATES, compute_scores, kcenter_candidate_rows, score_examples
from svp_hf.selection.methods import resolve_methods

from .conftest import accelerate_launch, cli, outputs
from .conftest import run_command as run

METHODS = ["least_confidence", "margin", "el2n", "kcenter", "random"]


def scores_of(setup, dataset=None, methods=METHODS, **kwargs):
    train, family, info, model = setup
    kwargs.setdefault("batch_size", 32)
    return compute_scores(
        model, family, train if dataset is None else dataset, info, resolve_methods(methods), Accelerator(), **kwargs
    )


def assert_same(a, b):
    assert list(a) == list(b)
    for m in a:
        np.testing.assert_allclose(a[m], b[m], rtol=1e-5, atol=1e-6, err_msg=m)


def test_uneven_shards_score_every_example_like_one_pass(setup):
    whole = scores_of(setup)
    sharded = scores_of(setup, shard_size=37)  # 200 rows: five full shards and one of 15, batches of 32
    assert_same(whole, sharded)
    assert all(len(v) == 200 for v in sharded.values())


def test_scores_do_not_depend_on_how_many_rows_are_scored_at_once(setup, monkeypatch):
    """Softmax and the scorers run on blocks of `SCORE_LOGITS` logits: one block or one per group, the same scores."""
    methods = ["least_confidence", "margin", "entropy"]
    whole = scores_of(setup, methods=methods, batch_size=8)  # 200 rows: 25 batches, 4 groups, one block
    monkeypatch.setattr(scoring, "SCORE_LOGITS", 1)  # a block after every group
    blocks = scores_of(setup, methods=methods, batch_size=8)
    for name in whole:
        np.testing.assert_array_equal(whole[name], blocks[name], err_msg=name)


def test_streaming_input_gives_the_same_scores_as_in_memory(setup, tmp_path):
    import datasets

    train = setup[0]
    train.to_parquet(str(tmp_path / "train.parquet"))
    stream = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "train.parquet")}, streaming=True)[
        "train"
    ]
    assert isinstance(stream, datasets.IterableDataset)
    in_memory = scores_of(setup)
    result = score_examples(
        setup[3], setup[1], stream, setup[2], resolve_methods(METHODS), Accelerator(), batch_size=32, shard_size=64
    )
    assert_same(in_memory, result.scores)
    assert result.labels.tolist() == train["label"]


def test_score_api_takes_a_stream_with_a_proxy_checkpoint(setup, tmp_path):
    from safetensors.torch import save_file

    train, _, _, model = setup
    save_file(model.state_dict(), str(tmp_path / "model.safetensors"))
    kwargs = dict(proxy_checkpoint=str(tmp_path), batch_size=32, scoring_shard_size=50)
    from_stream = svp_hf.score(train.to_iterable_dataset(), methods=["entropy", "random"], **kwargs)
    in_memory = svp_hf.score(train, methods=["entropy", "random"], **kwargs)
    assert from_stream["svp_index"] == list(range(len(train))) and from_stream["label"] == train["label"]
    np.testing.assert_allclose(from_stream["entropy"], in_memory["entropy"], rtol=1e-6)
    np.testing.assert_allclose(from_stream["entropy"], scores_of(setup, methods=["entropy"])["entropy"], rtol=1e-6)
    with pytest.raises(SVPConfigError, match="can be scored, not trained on"):
        svp_hf.score(train.to_iterable_dataset(), methods=["entropy"], batch_size=32)
    with pytest.raises(SVPConfigError, match="did not record the training signal"):
        svp_hf.score(train, methods=["forgetting"], **kwargs)


def test_kcenter_candidate_pool_and_memory_bound(setup):
    full = scores_of(setup, methods=["kcenter"])["kcenter"]
    assert np.isfinite(full[~np.isinf(full)]).all() and np.isneginf(full).sum() == 0
    pooled = scores_of(setup, methods=["kcenter"], kcenter_pool_size=50, shard_size=64)["kcenter"]
    assert (pooled > -np.inf).sum() == 50  # exactly the pool is ranked; the rest score -inf
    assert np.isposinf(pooled).sum() == 1  # the pool's random first center
    again = scores_of(setup, methods=["kcenter"], kcenter_pool_size=50, shard_size=64, batch_size=16)["kcenter"]
    np.testing.assert_allclose(pooled, again, rtol=1e-5)  # the pool does not depend on batching

    dim = 64  # resnet20's penultimate width
    rows = kcenter_candidate_rows(dim, None, 30 * (4 * dim + 29))
    assert rows == 30
    bounded = scores_of(setup, methods=["kcenter"], kcenter_max_memory=30 * (4 * dim + 29))["kcenter"]
    assert (bounded > -np.inf).sum() == 30
    with pytest.raises(SVPConfigError, match="cannot hold"):
        kcenter_candidate_rows(dim, None, 10)
    with pytest.raises(SVPConfigError, match="kcenter_max_memory"):
        SelectionArguments(kcenter_max_memory="lots")


def test_finished_shards_are_reused_not_rescored(setup, tmp_path, monkeypatch):
    first = scores_of(setup, shard_size=64, shard_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == [f"shard_{i:05d}.npz" for i in range(4)]
    (tmp_path / files[-1]).unlink()  # as if killed while scoring the last shard
    calls = []
    real = scoring._score_shard
    monkeypatch.setattr(scoring, "_score_shard", lambda *a, **k: calls.append(a[2][0]["svp_index"]) or real(*a, **k))
    resumed = scores_of(setup, shard_size=64, shard_dir=str(tmp_path))
    assert calls == [192]  # only the missing shard was scored again
    assert_same(first, resumed)


@pytest.mark.slow
def test_two_processes_score_a_given_proxy_exactly_like_one(tmp_path):
    two = tuple(accelerate_launch(processes=2, port=29517))
    # One precision for every run: accelerate launch gives its own ("no") to the launched one, a plain run the default.
    fp32 = ["--mixed_precision", "no"]
    # One process trains the proxy (recording forgetting events) and keeps its checkpoint.
    run(cli(tmp_path / "one", "--proxy_epochs", "1", "--keep_checkpoints", "true", "--target", "", *fp32))
    proxy = str(tmp_path / "one" / "checkpoints" / "proxy")
    # 301 rows: neither the batch (32) nor 2 processes x 32 divide it, and neither does a shard of 100.
    given = ["--proxy_checkpoint", proxy, "--scoring_shard_size", "100", "--kcenter_pool_size", "120", *fp32]
    run(cli(tmp_path / "single", *given))
    run(cli(tmp_path / "double", *given, launcher=two))
    single, double = outputs(tmp_path / "single"), outputs(tmp_path / "double")
    assert double[0].pop("num_processes") == 2 and single[0].pop("num_processes") == 1
    assert single[0].pop("target_accuracy") is not None and double[0].pop("target_accuracy") is not None
    single[0].pop("target_history"), double[0].pop("target_history")  # DDP trains the target on other batches
    for metrics in (single[0], double[0]):  # loader workers are sized per process: the machine's CPUs shared out
        assert metrics["device"].pop("loader_workers")["arrays"] == 0
    assert single[0] == double[0]
    scores = double[1]
    assert scores["svp_index"].tolist() == list(range(301))  # every example scored exactly once
    pd.testing.assert_frame_equal(single[1], scores, check_exact=True)
    assert single[2]["train"]["svp_index"].tolist() == double[2]["train"]["svp_index"].tolist()
    # The proxy's own scores, from the run that trained it, agree too (the checkpoint round-trips exactly).
    trained = pd.read_parquet(tmp_path / "one" / "scores.parquet")
    np.testing.assert_array_equal(trained["forgetting"], scores["forgetting"])
    np.testing.assert_array_equal(trained["least_confidence"], scores["least_confidence"])


def test_a_kcenter_memory_bound_too_small_for_a_pool_is_refused_before_training(tiny_digits, monkeypatch):
    train, _ = tiny_digits
    trained = []
    monkeypatch.setattr(svp_hf.stages.proxy, "train_model", lambda *a, **k: trained.append(1))
    with pytest.raises(
        SVPConfigError,
        match=rf"useful k-centers candidate set of {KCENTER_MIN_CANDIDATES} rows: that needs at least 33000 bytes",
    ):
        svp_hf.score(train, proxy="resnet20", methods=["entropy", "kcenter"], kcenter_max_memory="1KB", proxy_epochs=1)
    with pytest.raises(SVPConfigError, match="useful k-centers candidate set"):
        svp_hf.prune(train, proxy="resnet20", method="kcenter", kcenter_max_memory=1024, proxy_epochs=1)
    assert trained == []
    monkeypatch.undo()
    svp_hf.score(train, proxy="resnet20", methods=["entropy"], kcenter_max_memory="1KB", proxy_epochs=1)  # no k-centers


def test_a_pool_capped_below_the_minimum_warns_with_the_memory_it_needs():
    dim = 64
    with pytest.warns(
        UserWarning, match=rf"holds only 30 k-centers candidate\(s\).*close to random.*>= {1000 * (4 * dim + 29)} bytes"
    ):
        assert kcenter_candidate_rows(dim, None, 30 * (4 * dim + 29), n_rows=5000) == 30
    with pytest.warns(UserWarning, match=rf">= {200 * (4 * dim + 29)} bytes"):  # a small dataset needs all its rows
        kcenter_candidate_rows(dim, None, 30 * (4 * dim + 29), n_rows=200)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kcenter_candidate_rows(dim, None, "1GB", n_rows=5000) > KCENTER_MIN_CANDIDATES


def test_a_stream_with_its_own_svp_index_is_read_by_position(tiny_digits):
    from svp_hf.engine.scoring import iter_shards

    train, _ = tiny_digits
    stream = train.add_column("svp_index", list(range(len(train)))[::-1]).to_iterable_dataset()
    shards = list(iter_shards(stream, 64))
    assert [len(s) for _, s in shards] == [64, 64, 64, 8]
    assert shards[1][1]["svp_index"] == list(range(64, 128))
    assert shards[1][1]["svp_index_previous"] == list(range(len(train)))[::-1][64:128]


@pytest.mark.parametrize("n, batch_size", [(301, 32), (100, 32), (5, 32), (2048, 16), (64, 32)])
def test_the_batch_plan_scores_every_row_once_in_the_same_batches_for_any_process_count(n, batch_size):
    from svp_hf.engine.scoring import batch_plan

    one = [batch for group in batch_plan(n, batch_size) for batch in group]
    assert one == [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    for processes in (2, 3, 8):
        plans = [batch_plan(n, batch_size, p, processes) for p in range(processes)]
        assert len({sum(len(g) for g in plan) for plan in plans}) == 1  # as many batches (rows) on every process
        groups = [g for plan in plans for g in plan if g[0][0] < n]
        assert sorted(groups) == batch_plan(n, batch_size)  # the same groups of the same batches, split up
        assert all(g == [(n, n)] * len(g) for plan in plans for g in plan if g[0][0] >= n)  # the rest is padding


def test_scoring_waits_for_the_device_a_fixed_number_of_times_whatever_the_batches(setup, monkeypatch):
    import torch

    counts = {"n": 0}
    for name in ("item", "cpu", "numpy", "tolist", "__float__", "__int__", "__bool__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, __original=original, **kwargs):
            counts["n"] += 1
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    syncs = []
    for batch_size in (100, 10):  # 2 and 20 batches
        counts["n"] = 0
        scores_of(setup, methods=["least_confidence", "margin", "kcenter"], batch_size=batch_size)
        syncs.append(counts["n"])
    assert syncs[0] == syncs[1], f"host syncs grew with the batches: {syncs}"


def test_images_decoded_row_by_row_score_the_same_with_loader_workers():
    import datasets
    import torch

    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    from .test_data import _images

    ds = _images(24, 72)  # larger than CIFAR's: decoded and transformed row by row, through a DataLoader
    family, info = prepare_inputs(ds, "resnet20", {})
    torch.manual_seed(0)
    model = create_model("resnet20", info)
    assert not hasattr(family.dataset(ds, model, info, train=False), "collate")
    methods = resolve_methods(["least_confidence", "entropy"])
    inline = compute_scores(model, family, ds, info, methods, Accelerator(), batch_size=8, num_workers=0)
    workers = compute_scores(model, family, ds, info, methods, Accelerator(), batch_size=8, num_workers=2)
    for name in inline:
        np.testing.assert_array_equal(inline[name], workers[name])
    assert isinstance(ds, datasets.Dataset)


def _scoring_case(kind):
    """(model-ready dataset, collate) for one way of batching: fastText's bags (views of packed arrays), padded
    transformers batches (packed, gathered), CIFAR-sized images (decode-once cache), larger images (a DataLoader)."""
    from svp_hf.data import add_index, batch_collate, reviews_dataset
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    from .test_data import _images

    if kind in ("fasttext", "config:bert-tiny,max_length=32"):
        data, name = add_index(reviews_dataset(n=400)["train"].select(range(301))), kind
    else:
        data, name = (
            add_index(_images(301 if kind == "small images" else 45, 16 if kind == "small images" else 72)),
            "resnet20",
        )
    family, info = prepare_inputs(data, name, {})
    model = create_model(name, info)
    ready = family.dataset(data, model, info, train=False)
    return ready, batch_collate(ready, family.make_collate(model))


@pytest.mark.parametrize("processes", [1, 2, 3])
@pytest.mark.parametrize("kind", ["fasttext", "config:bert-tiny,max_length=32", "small images", "large images"])
def test_scoring_groups_give_each_process_its_plan_batch_by_batch(kind, processes):
    """Several groups cut out of the arrays in one go (fastText's bags, images held in memory: views), one at a time
    (padded transformers batches), or read through a loader (large images): every process gets exactly the batches
    of its plan, padding included, in plan order, and each group's labels and ids, -1 on padding rows."""
    import torch

    from svp_hf.data import INDEX_COLUMN, on_device
    from svp_hf.engine.scoring import _padded_rows, batch_plan, scoring_groups

    ready, collate = _scoring_case(kind)
    assert getattr(ready, "slices_are_views", False) == (kind in ("fasttext", "small images"))
    batch_size = 8  # fastText / small images: 38 batches, 5 groups of 8 (the last short), the last batch 5 rows
    for process in range(processes):
        plan = batch_plan(len(ready), batch_size, process, processes)
        groups = list(scoring_groups(ready, collate, batch_size, plan, Accelerator(cpu=True)))
        assert len(groups) == len(plan) > 0
        for group, batches in zip(groups, plan):
            got = list(group)
            labels, index = group.rows()
            assert group.size == len(got) == len(batches)
            rows = [_padded_rows(start, stop, batch_size, len(ready)) for start, stop in batches]
            wants = [collate(r) if hasattr(ready, "collate") else collate([ready[i] for i in r]) for r in rows]
            for batch, want in zip(got, wants):
                batch, want = on_device(ready, batch), on_device(ready, want)
                inputs = [key for key in want if key not in ("labels", INDEX_COLUMN)]
                assert inputs and set(inputs) <= set(batch)
                for key in inputs:
                    assert torch.equal(batch[key], want[key]), (process, key)
            assert torch.equal(labels, torch.cat([w["labels"] for w in wants]))
            marked = [w[INDEX_COLUMN].clone() for w in wants]
            for ids, (start, stop) in zip(marked, batches):
                ids[stop - start :] = -1
            assert torch.equal(index, torch.cat(marked)), (process, batches)
