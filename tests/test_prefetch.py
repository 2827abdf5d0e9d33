"""Batches built one step ahead in a background thread (svp_hf.data.prefetch) and the sliced batch sampler: same batches,
same order, same trained model."""

import threading

import pytest
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader

from svp_hf.data import reviews_dataset
from svp_hf.data.prefetch import prefetch, use_prefetch
from svp_hf.engine.training import SlicedBatchSampler, TrainingConfig, make_loader, train_model
from svp_hf.models import create_model
from svp_hf.stages.proxy import prepare_inputs


def test_prefetch_yields_every_item_in_order_and_raises_where_the_loader_did():
    assert list(prefetch(range(7))) == list(range(7))
    assert list(prefetch([])) == []

    def broken():
        yield 1
        raise ValueError("row 2 is bad")

    items = prefetch(broken())
    assert next(items) == 1
    with pytest.raises(ValueError, match="row 2 is bad"):
        next(items)


def test_leaving_a_prefetched_loop_early_stops_its_thread():
    fetched = []

    def source():
        for i in range(100):
            fetched.append(i)
            yield i

    before = threading.active_count()
    for item in prefetch(source()):
        if item == 3:
            break
    import gc

    gc.collect()
    assert len(fetched) <= 5  # at most one item beyond the one in use
    assert threading.active_count() == before


def test_prefetch_is_used_only_where_a_cpu_is_free_for_it(monkeypatch):
    import svp_hf.utils.device as module

    class Arrays:
        def collate(self, rows):
            return rows

    arrays, rows = Arrays(), object()
    monkeypatch.setattr(module, "available_cpus", lambda: 4)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert use_prefetch(arrays, None, torch.device("cpu"))
    assert not use_prefetch(arrays, 0, torch.device("cpu"))  # loader sized explicitly: main thread only
    assert not use_prefetch(arrays, None, torch.device("cpu"), num_processes=2)
    assert not use_prefetch(rows, None, torch.device("cpu"))  # decoded row by row: loader workers do it
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert not use_prefetch(arrays, None, torch.device("cpu"))  # torch's threads take every core
    assert use_prefetch(arrays, None, torch.device("cuda"))


@pytest.mark.parametrize("n,batch_size,drop_last", [(37, 8, False), (37, 8, True), (32, 8, False), (5, 8, False)])
def test_sliced_batch_sampler_draws_the_batches_of_a_shuffled_dataloader(n, batch_size, drop_last):
    data = list(range(n))
    expected = DataLoader(
        data, batch_size=batch_size, shuffle=True, drop_last=drop_last, generator=torch.Generator(), collate_fn=list
    )
    sampler = torch.utils.data.RandomSampler(data, generator=torch.Generator())
    sliced = DataLoader(
        data,
        batch_sampler=SlicedBatchSampler(sampler, batch_size, drop_last),
        generator=sampler.generator,
        collate_fn=list,
    )
    for epoch in range(3):
        expected.generator.manual_seed(epoch)
        sliced.generator.manual_seed(epoch)
        assert list(sliced) == list(expected)
    ordered = SlicedBatchSampler(torch.utils.data.SequentialSampler(data), batch_size, drop_last)
    assert list(ordered) == list(
        torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(data), batch_size, drop_last)
    )


def test_make_loader_shuffles_as_before():
    data = list(range(50))
    loader = make_loader(data, list, 16, shuffle=True, seed=3)
    reference = DataLoader(
        data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(3), collate_fn=list
    )
    assert list(loader) == list(reference)


def test_training_with_the_next_batch_built_ahead_trains_the_same_model(monkeypatch):
    import svp_hf.engine.training as training

    dataset = reviews_dataset(n=300)["train"]
    family, info = prepare_inputs(dataset, "fasttext", {})
    results = []
    for ahead in (False, True):
        monkeypatch.setattr(training, "use_prefetch", lambda *args, _ahead=ahead, **kwargs: _ahead)
        torch.manual_seed(0)
        model = create_model("fasttext,buckets=4096", info)
        config = TrainingConfig(epochs=2, batch_size=32, learning_rate=0.1, lr_schedule="step")
        results.append(
            train_model(model, family, dataset, info, config, Accelerator(cpu=True), signals=["correctness", "margin"])
        )
    plain, ahead = results
    assert plain.history == ahead.history
    assert all(torch.equal(a, b) for a, b in zip(plain.model.state_dict().values(), ahead.model.state_dict().values()))
    assert (plain.signals["correctness"].scores() == ahead.signals["correctness"].scores()).all()
    assert (plain.signals["margin"].average() == ahead.signals["margin"].average()).all()
