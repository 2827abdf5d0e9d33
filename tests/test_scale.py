"""Sharded and streaming scoring, the k-center pool and memory bound, resumable training (in one process)."""

import numpy as np
import pytest
import torch
from accelerate import Accelerator

import svp_hf
from svp_hf import scoring
from svp_hf.proxy import prepare_inputs
from svp_hf.config import SelectionArguments
from svp_hf.errors import SVPConfigError
from svp_hf.methods import resolve_methods
from svp_hf.models import create_model
from svp_hf.scoring import compute_scores, kcenter_pool_rows, score_examples
from svp_hf.training import TrainingConfig, train_model

METHODS = ["least_confidence", "margin", "el2n", "kcenter", "random"]


@pytest.fixture(scope="module")
def setup(tiny_digits):
    train, _ = tiny_digits
    family, info = prepare_inputs(train, "resnet20", {})
    torch.manual_seed(0)
    model = create_model("resnet20", info).eval()
    return train, family, info, model


def scores_of(setup, dataset=None, methods=METHODS, **kwargs):
    train, family, info, model = setup
    kwargs.setdefault("batch_size", 32)
    return compute_scores(model, family, train if dataset is None else dataset, info, resolve_methods(methods), Accelerator(), **kwargs)


def assert_same(a, b):
    assert list(a) == list(b)
    for m in a:
        np.testing.assert_allclose(a[m], b[m], rtol=1e-5, atol=1e-6, err_msg=m)


def test_uneven_shards_score_every_example_like_one_pass(setup):
    whole = scores_of(setup)
    sharded = scores_of(setup, shard_size=37)  # 200 rows: five full shards and one of 15, batches of 32
    assert_same(whole, sharded)
    assert all(len(v) == 200 for v in sharded.values())


def test_streaming_input_gives_the_same_scores_as_in_memory(setup, tmp_path):
    import datasets

    train = setup[0]
    train.to_parquet(str(tmp_path / "train.parquet"))
    stream = datasets.load_dataset("parquet", data_files={"train": str(tmp_path / "train.parquet")}, streaming=True)["train"]
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
    rows = kcenter_pool_rows(dim, None, 30 * (4 * dim + 29))
    assert rows == 30
    bounded = scores_of(setup, methods=["kcenter"], kcenter_max_memory=30 * (4 * dim + 29))["kcenter"]
    assert (bounded > -np.inf).sum() == 30
    with pytest.raises(SVPConfigError, match="cannot hold"):
        kcenter_pool_rows(dim, None, 10)
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


def test_training_resumes_from_its_last_epoch_checkpoint(setup, tmp_path):
    train, family, info, _ = setup
    config = TrainingConfig(epochs=2, batch_size=64, learning_rate=0.05, lr_schedule="constant", seed=0)

    def run(epochs, folder):
        torch.manual_seed(0)
        model = create_model("resnet20", info)
        cfg = TrainingConfig(**{**vars(config), "epochs": epochs})
        return train_model(model, family, train, info, cfg, Accelerator(), track_forgetting=True, checkpoint_dir=str(folder))

    straight = run(2, tmp_path / "straight")
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["epoch_0002"]  # only the newest epoch is kept
    run(1, tmp_path / "resumed")  # stops after epoch 1, as if killed there
    resumed = run(2, tmp_path / "resumed")
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history == straight.history
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    np.testing.assert_array_equal(straight.forgetting.scores(), resumed.forgetting.scores())
    np.testing.assert_array_equal(straight.forgetting.presentations, np.full(len(train), 2))


def test_report_to_tensorboard_logs_losses_accuracy_and_timings(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from svp_hf import coreset

    from .conftest import REPO

    out = tmp_path / "out"
    coreset.main(
        [str(REPO / "recipes" / "quickstart.yaml"), "--output_dir", str(out), "--report_to", "tensorboard", "--proxy_epochs", "2",
         "--max_train_samples", "100", "--max_eval_samples", "50", "--target", "", "--score_methods", "entropy",
         "--strategy", "top"]
    )
    events = [str(p.parent) for p in out.rglob("events.out.tfevents.*")]
    assert events
    tags = set()
    for folder in events:
        acc = EventAccumulator(folder)
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert {"proxy resnet20/loss", "proxy resnet20/accuracy", "proxy/eval_accuracy", "seconds/scoring", "seconds/total"} <= tags


def test_imagenet_schedule_warms_up_then_steps_down():
    from svp_hf.training import LR_SCHEDULES

    schedule = LR_SCHEDULES.get("imagenet")
    warm = [schedule(e / 90) for e in range(5)]
    assert warm == sorted(warm) and warm[0] < 0.5 and warm[-1] < 1.0
    assert [schedule(e / 90) for e in (5, 29, 30, 59, 60, 79, 80, 89)] == [1.0, 1.0, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
