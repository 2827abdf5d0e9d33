"""The output folder (svp_hf.publish.output): the dataset folder, load_scores, shards, embedded images, atomic writes."""

import hashlib
import json
import os

import datasets
import numpy as np
import pytest

import svp_hf
from svp_hf import SVPConfigError
from svp_hf.config import parse_args
from svp_hf.jobs import coreset, pipeline
from svp_hf.publish import output as output_mod
from svp_hf.publish.output import check_complete, check_output_dir, write_dataset_folder, write_run

from .conftest import REPO

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
    write_run(
        str(out),
        splits={"train": train, "test": test},
        scores=scores,
        target_scores=scores,
        metrics={
            **metrics,
            "rank_agreement": {"entropy": {"spearman": 1.0, "kendall": 1.0, "top_k_overlap": 1.0, "k": 100}},
        },
    )
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
    images = datasets.Dataset.from_dict({"image": paths, "label": list(range(12))}).cast_column(
        "image", datasets.Image()
    )
    total = sum(os.path.getsize(p) for p in paths)
    folder = tmp_path / "folder"
    write_dataset_folder(str(folder), {"train": images}, max_shard_size=total // 3)
    assert len(os.listdir(folder / "data")) >= 3  # the files' bytes count, not only their paths
    for p in paths:
        os.remove(p)
    loaded = datasets.load_dataset(str(folder), split="train")  # stands alone once the files are gone
    assert loaded["label"] == list(range(12)) and loaded[11]["image"].size == (32, 32)


QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")


def tiny_result():
    train = datasets.Dataset.from_dict({"x": list(range(8)), "label": [0, 1] * 4})
    scores = datasets.Dataset.from_dict(
        {"svp_index": list(range(8)), "label": [0, 1] * 4, "entropy": np.linspace(0, 1, 8)}
    )
    metrics = {
        "method": "entropy",
        "fraction": 0.5,
        "total_per_class": {"0": 4, "1": 4},
        "selected_per_class": {"0": 2, "1": 2},
    }
    return {"train": train.select(range(4))}, scores, metrics


# --- split names stay inside output_dir ---------------------------------------------------------------------------


def test_a_split_name_cannot_escape_output_dir(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    argv = [
        QUICKSTART,
        "--output_dir",
        str(out),
        "--eval_split",
        str(outside / "pwned"),
        "--validation_split_percentage",
        "10",
        "--proxy_epochs",
        "1",
        "--max_train_samples",
        "100",
        "--strategy",
        "top",
    ]
    with pytest.raises(SystemExit) as exit_info:
        coreset.main(argv)
    assert exit_info.value.code == 2
    assert os.listdir(outside) == [] and not out.exists()
    for bad in ("../train", "a/b", "", ".", "train/../../x", "validation split"):
        with pytest.raises(SVPConfigError, match="not a plain split name"):
            check_output_dir(str(out), False, ("train", bad))
    splits, scores, metrics = tiny_result()
    with pytest.raises(SVPConfigError, match="not a plain split name"):
        write_run(str(out), splits={"../../escaped": splits["train"]}, scores=scores, metrics=metrics)
    assert not (tmp_path / "escaped-00000-of-00001.parquet").exists() and not out.exists()
    check_output_dir(str(out), False, ("train", "validation", "test.clean", None))  # plain names pass


# --- an unwritable output_dir -------------------------------------------------------------------------------------


def test_an_unwritable_output_dir_is_refused_before_work(tmp_path):
    if os.geteuid() == 0:  # root writes through permissions: use a folder no one can write to
        if os.access("/sys", os.W_OK) and not _cannot_write("/sys"):
            pytest.skip("no unwritable folder on this machine")
        parent = "/sys"
    else:
        parent = str(tmp_path / "locked")
        os.mkdir(parent, 0o500)
    with pytest.raises(SVPConfigError, match="not writable"):
        check_output_dir(os.path.join(parent, "out"), False)
    with pytest.raises(SystemExit) as exit_info:
        coreset.main([QUICKSTART, "--output_dir", os.path.join(parent, "out"), "--proxy_epochs", "1"])
    assert exit_info.value.code == 2


def _cannot_write(folder):
    try:
        os.rmdir(__import__("tempfile").mkdtemp(dir=folder))
        return False
    except OSError:
        return True


# --- temporary folders ----------------------------------------------------------------------------------------------


def test_temporary_folders_are_removed_on_success_failure_and_next_run(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".svp-tmp-killed").mkdir()  # left by a run killed while writing
    (out / ".svp-tmp-killed" / "report.md").write_text("old")
    splits, scores, metrics = tiny_result()
    write_run(str(out), splits=splits, scores=scores, metrics=metrics)
    assert not [n for n in os.listdir(out) if n.startswith(".svp-tmp-")]

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(output_mod, "write_dataset_folder", fail)
    with pytest.raises(OSError, match="disk full"):
        write_run(str(out), splits=splits, scores=scores, metrics=metrics, overwrite=True)
    assert not [n for n in os.listdir(out) if n.startswith(".svp-tmp-")]


# --- a result is complete or marked incomplete ----------------------------------------------------------------------


def test_a_kill_during_the_final_moves_leaves_a_result_marked_incomplete(tmp_path, monkeypatch):
    out = tmp_path / "out"
    splits, scores, metrics = tiny_result()
    write_run(str(out), splits=splits, scores=scores, metrics=metrics)
    complete = check_complete(str(out))
    assert "dataset/data/train-00000-of-00001.parquet" in complete["result_files"]
    assert set(complete["result_files"]) >= {"report.md", "scores.parquet", "dataset/plots/score_histogram.png"}

    real_replace, moved = os.replace, []

    def killed_after_one_move(src, dst):
        if moved:
            raise KeyboardInterrupt  # as if killed between two moves
        moved.append(dst)
        return real_replace(src, dst)

    monkeypatch.setattr(output_mod.os, "replace", killed_after_one_move)
    bigger = {"train": datasets.Dataset.from_dict({"x": list(range(6)), "label": [0, 1] * 3})}
    with pytest.raises(KeyboardInterrupt):
        write_run(str(out), splits=bigger, scores=scores, metrics=metrics, overwrite=True)
    monkeypatch.setattr(output_mod.os, "replace", real_replace)
    assert len(moved) == 1 and not (out / "metrics.json").exists()
    with pytest.raises(SVPConfigError, match="no complete svp_hf result"):
        check_complete(str(out))
    write_run(str(out), splits=bigger, scores=scores, metrics=metrics, overwrite=True)  # the rerun repairs it
    assert check_complete(str(out))["splits"] == {"train": 6}


def test_a_result_whose_files_differ_from_its_metrics_is_mixed(tmp_path):
    out = tmp_path / "out"
    splits, scores, metrics = tiny_result()
    write_run(str(out), splits=splits, scores=scores, metrics=metrics)
    (out / "dataset" / "data" / "test-00000-of-00001.parquet").write_bytes(b"another run's split")
    with pytest.raises(SVPConfigError, match="not listed"):
        check_complete(str(out))
    write_run(str(out), splits=splits, scores=scores, metrics=metrics, overwrite=True)
    os.remove(out / "scores.parquet")
    with pytest.raises(SVPConfigError, match="missing"):
        check_complete(str(out))


def test_identical_runs_write_identical_metrics(tmp_path):
    splits, scores, metrics = tiny_result()
    first = write_run(str(tmp_path / "a"), splits=splits, scores=scores, metrics=metrics)
    second = write_run(str(tmp_path / "b"), splits=splits, scores=scores, metrics=dict(metrics, timings={"total": 1.0}))
    assert first["result_files"] == second["result_files"]


@pytest.mark.parametrize("damage", ["one byte flipped", "truncated"])
def test_a_result_with_a_damaged_file_is_not_complete(tmp_path, damage):
    out = tmp_path / "out"
    splits, scores, metrics = tiny_result()
    written = write_run(str(out), splits=splits, scores=scores, metrics=metrics)
    shard = out / "dataset" / "data" / "train-00000-of-00001.parquet"
    assert written["result_file_digests"][str(shard.relative_to(out))] == {
        "bytes": shard.stat().st_size,
        "sha256": hashlib.sha256(shard.read_bytes()).hexdigest(),
    }
    data = bytearray(shard.read_bytes())
    if damage == "truncated":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF  # same size, other content
    shard.write_bytes(bytes(data))
    with pytest.raises(
        SVPConfigError, match=r"damaged svp_hf result: the content of \['dataset/data/train-00000-of-00001"
    ):
        check_complete(str(out))
    write_run(str(out), splits=splits, scores=scores, metrics=metrics, overwrite=True)  # the rerun repairs it
    assert check_complete(str(out))["splits"] == written["splits"]


def test_a_result_without_recorded_digests_is_not_publishable(tmp_path):
    out = tmp_path / "out"
    splits, scores, metrics = tiny_result()
    write_run(str(out), splits=splits, scores=scores, metrics=metrics)
    recorded = json.loads((out / "metrics.json").read_text())
    del recorded["result_file_digests"]
    (out / "metrics.json").write_text(json.dumps(recorded))
    with pytest.raises(SVPConfigError, match="records no size and sha256"):
        check_complete(str(out))
