"""svp_hf.hub: what push_to_hub refuses before it asks the Hub anything (the Hub itself is stubbed)."""

import os

import datasets
import numpy as np
import pytest

import svp_hf
import svp_hf.hub
from svp_hf import SVPConfigError
from svp_hf.hub import check_hub_target
from svp_hf.output import write_run

from .test_publish import FakeHub


@pytest.fixture
def hub(monkeypatch):
    """The Hub, stubbed: what was asked of it is in ``hub.calls``."""
    fake = FakeHub()
    monkeypatch.setattr(svp_hf.hub, "HfApi", fake.api)
    monkeypatch.setenv("HF_TOKEN", fake.token)
    return fake


@pytest.fixture
def result(tmp_path):
    out = tmp_path / "out"
    train = datasets.Dataset.from_dict({"x": list(range(8)), "label": [0, 1] * 4})
    scores = datasets.Dataset.from_dict({"svp_index": list(range(8)), "label": [0, 1] * 4, "entropy": np.linspace(0, 1, 8)})
    write_run(str(out), splits={"train": train.select(range(4))}, scores=scores, metrics={"method": "entropy", "fraction": 0.5})
    return out


def test_push_refuses_an_output_dir_left_incomplete(result, hub):
    os.remove(result / "metrics.json")  # as a run killed during the final moves of an overwrite leaves it
    (result / "report.md").write_text("# the new run's report, beside the old dataset/\n")
    for source in (result, result / "dataset"):
        with pytest.raises(SVPConfigError, match="no complete svp_hf result"):
            svp_hf.push_to_hub(source, "alice/pruned")
    assert hub.calls == [] and hub.repos == {}


def test_push_refuses_a_mixed_output_dir(result, hub):
    (result / "dataset" / "data" / "test-00000-of-00001.parquet").write_bytes(b"another run's split")
    with pytest.raises(SVPConfigError, match="incomplete or mixed"):
        svp_hf.push_to_hub(result, "alice/pruned")
    assert hub.calls == []


def test_push_uploads_a_complete_output_dir(result, hub):
    svp_hf.push_to_hub(result, "alice/pruned")
    assert "data/train-00000-of-00001.parquet" in hub.repos["alice/pruned"]["files"]


@pytest.mark.parametrize("repo_id", ["alice/bad..name", "bad name", "a/b/c", "", "-x-/ok", "alice/" + "x" * 100])
def test_a_malformed_dataset_id_is_refused_before_any_network_call(hub, repo_id):
    with pytest.raises(SVPConfigError, match="Hub dataset id"):
        check_hub_target(repo_id)
    assert hub.calls == []
