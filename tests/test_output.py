"""The output folder (svp_hf.output): the dataset folder, load_scores, shards, embedded images, atomic writes."""

import json
import os

import datasets
import numpy as np
import pytest

import svp_hf
from svp_hf import SVPConfigError, pipeline
from svp_hf.config import parse_args
from svp_hf.output import write_dataset_folder, write_run


# --- writes are atomic ------------------------------------------------------------------------------------------------


def test_failed_write_leaves_no_half_written_dataset(tmp_path, tiny_digits, monkeypatch):
    train, test = tiny_digits
    out = tmp_path / "out"

    class Boom(RuntimeError):
        pass

    def broken_to_parquet(self, *a, **k):
        raise Boom("disk full")

    scores = datasets.Dataset.from_dict({"svp_index": [0]})
    monkeypatch.setattr(datasets.Dataset, "to_parquet", broken_to_parquet)
    with pytest.raises(Boom):
        write_run(str(out), splits={"train": train, "test": test}, scores=scores, metrics={})
    assert os.listdir(out) == []


def test_an_overwrite_killed_while_moving_files_into_place_leaves_no_stale_metrics(tmp_path, tiny_digits, monkeypatch):
    train, test = tiny_digits
    out = tmp_path / "out"
    scores = datasets.Dataset.from_dict({"svp_index": list(range(len(train)))})
    write_run(str(out), splits={"train": train, "test": test}, scores=scores, metrics={"run": "old"})
    moved, real_replace = [], os.replace

    def dying_replace(src, dst):
        if len(moved) == 1:  # the first new file is in place, the rest are not
            raise KeyboardInterrupt
        moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        write_run(str(out), splits={"train": train}, scores=scores, metrics={"run": "new"}, overwrite=True)
    assert not (out / "metrics.json").exists()  # not the old run's, which no longer describes what is there
    monkeypatch.setattr(os, "replace", real_replace)
    write_run(str(out), splits={"train": train}, scores=scores, metrics={"run": "new"}, overwrite=True)
    assert json.loads((out / "metrics.json").read_text())["run"] == "new"


# --- the published run: dataset folder, scores, shards, embedded images -----------------------------------------------


def test_dataset_folder_loads_back_and_scores_reproduce_the_selection(run):
    out, metrics, argv = run
    loaded = datasets.load_dataset(str(out / "dataset"))
    assert {k: len(v) for k, v in loaded.items()} == {"train": 30, "test": 60} == metrics["splits"]
    # the rows and features are what selecting again from the published scores gives
    data_args, sel_args, _ = parse_args(argv)
    train, evaluation = pipeline.load_splits(data_args, sel_args.seed)
    scores = svp_hf.load_scores(out / "dataset")
    again = svp_hf.select(train, scores, "entropy", 0.25)
    assert loaded["train"].features == again.features
    assert loaded["train"]["svp_index"] == again["svp_index"]
    np.testing.assert_allclose(loaded["train"]["svp_score"], again["svp_score"])
    assert loaded["train"]["label"] == again["label"]
    assert loaded["test"]["label"] == evaluation["label"] and loaded["test"]["svp_score"] == [None] * 60


def test_load_scores_from_every_place(run):
    out, _, _ = run
    a = svp_hf.load_scores(out)
    b = svp_hf.load_scores(str(out / "dataset"))
    assert a.column_names == ["svp_index", "label", "entropy", "forgetting", "random"]
    assert isinstance(a.features["label"], datasets.ClassLabel)
    assert a.to_dict() == b.to_dict() and len(a) == 120 and a.features == b.features
    target = svp_hf.load_scores(out, which="target")
    assert target.column_names == a.column_names and list(target["entropy"]) != list(a["entropy"])
    with pytest.raises(SVPConfigError, match="which must be one of"):
        svp_hf.load_scores(out, which="oracle")
    with pytest.raises(SVPConfigError, match="could not read proxy scores from 'someone/not-pushed'"):
        svp_hf.load_scores("someone/not-pushed")  # a Hub id: goes through datasets.load_dataset (offline here)


def test_rank_agreement_in_metrics_matches_the_published_scores(run):
    out, metrics, _ = run
    written = json.loads((out / "metrics.json").read_text())
    expected = svp_hf.compare_scores(svp_hf.load_scores(out), svp_hf.load_scores(out, which="target"), fraction=0.25)
    assert set(written["rank_agreement"]) == {"entropy", "forgetting"}  # random is model-free
    for method, values in expected.items():
        assert written["rank_agreement"][method] == pytest.approx(values, nan_ok=True)
    assert written["score_statistics"]["forgetting"]["count"] == 120
    assert "target_scoring" in written["timings"]


def test_without_target_scores_there_is_no_scatter_and_overwrite_replaces_everything(tmp_path, tiny_digits):
    train, test = tiny_digits
    scores = datasets.Dataset.from_dict(
        {"svp_index": list(range(len(train))), "label": train["label"], "entropy": np.linspace(0, 1, len(train))}
    )
    metrics = {"method": "entropy", "fraction": 0.5, "total_per_class": {"a": 3}, "selected_per_class": {"a": 1}}
    out = tmp_path / "out"
    write_run(str(out), splits={"train": train, "test": test}, scores=scores, target_scores=scores, metrics={**metrics, "rank_agreement": {"entropy": {"spearman": 1.0, "kendall": 1.0, "top_k_overlap": 1.0, "k": 100}}})
    assert (out / "target_scores.parquet").exists() and (out / "dataset" / "plots" / "proxy_vs_target.png").exists()
    rescored = scores.map(lambda r: {"entropy": 1 - r["entropy"]})
    write_run(str(out), splits={"train": train.select(range(10))}, scores=rescored, metrics=metrics, overwrite=True)
    assert not (out / "target_scores.parquet").exists()
    assert sorted(os.listdir(out / "dataset" / "plots")) == ["class_counts.png", "score_histogram.png"]
    assert svp_hf.load_scores(out)["entropy"] == rescored["entropy"]  # not a stale cache of the first run
    assert len(datasets.load_dataset(str(out / "dataset"))["train"]) == 10


def test_a_split_larger_than_max_shard_size_is_written_in_ordered_shards(tiny_digits, tmp_path):
    train, test = tiny_digits
    write_dataset_folder(str(tmp_path), {"train": train.select(range(0, 200, 2)), "test": test}, max_shard_size="10KB")
    train_files = sorted(os.listdir(tmp_path / "data"))
    assert len([f for f in train_files if f.startswith("train-")]) > 1
    loaded = datasets.load_dataset(str(tmp_path))
    assert loaded["train"].features == train.features and len(loaded["test"]) == len(test)
    assert loaded["train"]["label"] == train.select(range(0, 200, 2))["label"]  # rows in order across the shards
    assert [np.asarray(i).tolist() for i in loaded["train"][:5]["image"]] == [
        np.asarray(i).tolist() for i in train.select(range(0, 10, 2))["image"]
    ]


def test_images_referenced_by_path_are_embedded_and_counted_in_the_shard_size(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):  # noise compresses badly: each PNG is about 3 KB
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(paths[-1])
    images = datasets.Dataset.from_dict({"image": paths, "label": list(range(12))}).cast_column("image", datasets.Image())
    total = sum(os.path.getsize(p) for p in paths)
    folder = tmp_path / "folder"
    write_dataset_folder(str(folder), {"train": images}, max_shard_size=total // 3)
    assert len(os.listdir(folder / "data")) >= 3  # the files' bytes count, not only their paths
    for p in paths:
        os.remove(p)
    loaded = datasets.load_dataset(str(folder), split="train")  # stands alone once the files are gone
    assert loaded["label"] == list(range(12)) and loaded[11]["image"].size == (32, 32)
