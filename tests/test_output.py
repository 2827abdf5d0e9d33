"""svp_hf.output: where a result is written, and that it is written whole."""

import os

import datasets
import numpy as np
import pytest

from svp_hf import SVPConfigError, coreset
from svp_hf import output as output_mod
from svp_hf.output import check_complete, check_output_dir, write_run

from .conftest import REPO

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")


def tiny_result():
    train = datasets.Dataset.from_dict({"x": list(range(8)), "label": [0, 1] * 4})
    scores = datasets.Dataset.from_dict({"svp_index": list(range(8)), "label": [0, 1] * 4, "entropy": np.linspace(0, 1, 8)})
    metrics = {"method": "entropy", "fraction": 0.5, "total_per_class": {"0": 4, "1": 4}, "selected_per_class": {"0": 2, "1": 2}}
    return {"train": train.select(range(4))}, scores, metrics


# --- split names stay inside output_dir ---------------------------------------------------------------------------


def test_a_split_name_cannot_escape_output_dir(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    argv = [QUICKSTART, "--output_dir", str(out), "--eval_split", str(outside / "pwned"), "--validation_split_percentage", "10",
            "--proxy_epochs", "1", "--max_train_samples", "100", "--strategy", "top"]
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
