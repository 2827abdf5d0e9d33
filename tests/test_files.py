"""svp_hf.files: files written under a temporary name of their own process and moved into place when complete; the
temporary file is removed when writing fails, and what was there before stays."""

import json
import os

import numpy as np
import pytest

from svp_hf import files


def test_a_temporary_name_belongs_to_one_process_and_one_call(tmp_path):
    path = str(tmp_path / "shard.npz")
    first, second = files.temporary_name(path, ".npz"), files.temporary_name(path, ".npz")
    assert first != second
    assert os.path.dirname(first) == str(tmp_path)  # same folder: os.replace is a rename
    assert first.startswith(f"{path}.{os.getpid()}-") and first.endswith(".tmp.npz")


def test_atomic_write_publishes_the_complete_file(tmp_path):
    path = tmp_path / "arrays.npz"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert not path.exists()  # nothing under the final name while writing
        np.savez(tmp, x=np.arange(3))

    files.atomic_write(str(path), write, suffix=".npz")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["x"], np.arange(3))
    assert os.listdir(tmp_path) == ["arrays.npz"] and not os.path.exists(seen[0])


@pytest.mark.parametrize("error", [ValueError, KeyboardInterrupt])
def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, error):
    path = tmp_path / "state.json"
    path.write_text("old")

    def failing(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise error("killed")

    with pytest.raises(error):
        files.atomic_write(str(path), failing)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["state.json"]


def test_nested_blocks_publish_innermost_first_and_fail_together(tmp_path):
    order = []
    real = os.replace

    def recording(src, dst):
        order.append(os.path.basename(dst))
        real(src, dst)

    os.replace = recording
    try:
        with files.atomic_path(str(tmp_path / "done.npy"), suffix=".npy") as last:
            with files.atomic_path(str(tmp_path / "data.npy"), suffix=".npy") as first:
                np.save(first, np.zeros(2))
                np.save(last, np.ones(1))
    finally:
        os.replace = real
    assert order == ["data.npy", "done.npy"]
    with pytest.raises(RuntimeError):
        with files.atomic_path(str(tmp_path / "b.npy"), suffix=".npy") as last:
            with files.atomic_path(str(tmp_path / "a.npy"), suffix=".npy") as first:
                np.save(first, np.zeros(2))
                np.save(last, np.ones(1))
                raise RuntimeError
    assert sorted(os.listdir(tmp_path)) == ["data.npy", "done.npy"]


def test_text_and_json_with_fsync(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd)))
    files.atomic_write_json(str(tmp_path / "a.json"), {"b": [1, 2]}, indent=1, fsync=True)
    assert json.loads((tmp_path / "a.json").read_text()) == {"b": [1, 2]}
    assert (tmp_path / "a.json").read_text().endswith("\n") and len(synced) == 1
    files.atomic_write_text(str(tmp_path / "a.md"), "# report\n")
    assert (tmp_path / "a.md").read_text() == "# report\n" and len(synced) == 1
