"""push_to_hub (svp_hf.publish.hub) against a stubbed HfApi, and the publishing keys of the command line."""

import os
import re

import datasets
import huggingface_hub
import numpy as np
import pytest

import svp_hf
import svp_hf.publish.hub
from svp_hf import SVPConfigError
from svp_hf.data import load_data
from svp_hf.jobs import coreset
from svp_hf.publish.hub import check_hub_target
from svp_hf.publish.output import write_run

from .conftest import PUBLISH_TINY as TINY
from .conftest import REPO, FakeHub

QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")


# --- the stubbed Hub --------------------------------------------------------------------------------------------


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(svp_hf.publish.hub, "HfApi", fake.api)
    monkeypatch.setenv("HF_TOKEN", fake.token)
    return fake


@pytest.fixture
def no_saved_token(monkeypatch, tmp_path):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))


def local_files(folder):
    return {
        os.path.relpath(os.path.join(root, n), folder).replace(os.sep, "/"): open(os.path.join(root, n), "rb").read()
        for root, _, names in os.walk(folder)
        for n in names
    }


# --- push_to_hub --------------------------------------------------------------------------------------------------


def test_push_uploads_the_output_folder(run, hub):
    out, _, _ = run
    url = svp_hf.push_to_hub(out, "cifar-pruned", private=True)
    assert url == "https://huggingface.co/datasets/alice/cifar-pruned"
    repo = hub.repos["alice/cifar-pruned"]
    assert repo["private"] is True
    uploaded = repo["files"]
    assert uploaded == local_files(out / "dataset")  # the upload is exactly the local folder
    assert {
        "README.md",
        "data/train-00000-of-00001.parquet",
        "data/test-00000-of-00001.parquet",
        "scores/proxy.parquet",
        "scores/target.parquet",
        "plots/score_histogram.png",
    } <= set(uploaded)
    assert b'load_dataset("alice/cifar-pruned")' in uploaded["README.md"]
    assert [c[0] for c in hub.calls] == ["whoami", "repo_exists", "create_repo", "upload_folder"]


def test_push_refuses_an_existing_repo_unless_asked_and_overwrite_replaces_it(run, hub):
    out, _, _ = run
    hub.repos["svp-lab/pruned"] = {
        "private": False,
        "files": {"data/train-00000-of-00002.parquet": b"old", "notes.txt": b"x"},
    }
    with pytest.raises(SVPConfigError, match="'svp-lab/pruned' already exists; set hub_overwrite"):
        svp_hf.push_to_hub(out, "svp-lab/pruned")
    assert "create_repo" not in [c[0] for c in hub.calls] and "upload_folder" not in [c[0] for c in hub.calls]
    svp_hf.push_to_hub(out, "svp-lab/pruned", overwrite=True)
    assert set(hub.repos["svp-lab/pruned"]["files"]) == set(local_files(out / "dataset"))


@pytest.mark.parametrize(
    "repo_id, token, message",
    [
        (
            "bob/pruned",
            "hf_valid",
            "namespace 'bob' is neither yours ('alice') nor one of your organizations ('svp-lab')",
        ),
        ("alice/pruned", "hf_revoked", "could not check the Hugging Face token"),
        ("alice/bad..name", "hf_valid", "invalid Hub dataset id"),
    ],
)
def test_push_fails_cleanly_where_the_hub_would_refuse(run, hub, repo_id, token, message):
    out, _, _ = run
    before = local_files(out / "dataset")
    with pytest.raises(SVPConfigError, match=re.escape(message)):
        svp_hf.push_to_hub(out, repo_id, token=token)
    assert hub.repos == {} and not {"create_repo", "upload_folder"} & {c[0] for c in hub.calls}
    assert local_files(out / "dataset") == before


def test_push_without_a_token(run, hub, no_saved_token):
    out, _, _ = run
    with pytest.raises(SVPConfigError, match="no Hugging Face token"):
        svp_hf.push_to_hub(out, "alice/pruned")
    assert hub.calls == []


def test_push_a_pruned_dataset_and_a_bad_path(hub, tiny_digits, tmp_path):
    train, _ = tiny_digits
    pruned = train.select(range(20))
    svp_hf.push_to_hub(pruned, "alice/twenty")
    files = hub.repos["alice/twenty"]["files"]
    assert set(files) == {"README.md", "data/train-00000-of-00001.parquet"}
    assert b"svp-hf" in files["README.md"]
    with pytest.raises(SVPConfigError, match="neither an svp_hf output_dir"):
        svp_hf.push_to_hub(tmp_path, "alice/nothing")
    assert [c[0] for c in hub.calls] == ["whoami", "repo_exists", "create_repo", "upload_folder"]


def test_push_a_pruned_dataset_in_shards(hub, tiny_digits):
    train, _ = tiny_digits
    pruned = train.select(range(1, 200, 2))  # through an indices mapping, as a pruned dataset comes
    svp_hf.push_to_hub(pruned, "alice/sharded", max_shard_size="8KB")
    shards = sorted(f for f in hub.repos["alice/sharded"]["files"] if f.startswith("data/"))
    assert len(shards) > 1 and shards == [
        f"data/train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))
    ]
    with pytest.raises(SVPConfigError, match="max_shard_size must be a positive size such as '500MB', got 'big'"):
        svp_hf.push_to_hub(pruned, "alice/other", max_shard_size="big")
    assert "alice/other" not in hub.repos


# --- the recipe keys ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["--push_to_hub", "true"], "push_to_hub needs hub_dataset_id"),
        (["--score_with_target", "true", "--target", ""], "score_with_target needs a target model"),
        (["--max_shard_size", "0"], "max_shard_size must be a positive size such as '500MB', got '0'"),
    ],
)
def test_bad_publishing_keys_fail_before_training(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as err:
        coreset.main([QUICKSTART, "--output_dir", str(tmp_path / "out"), *args])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_push_checks_the_hub_before_training(tmp_path, capsys, hub, no_saved_token, monkeypatch):
    trained = []
    from svp_hf.stages import orchestrator

    monkeypatch.setattr(orchestrator, "train_and_score", lambda *a, **k: trained.append(1))
    with pytest.raises(SystemExit) as err:
        coreset.main(
            [QUICKSTART, "--output_dir", str(tmp_path / "out"), "--push_to_hub", "true", "--hub_dataset_id", "alice/x"]
        )
    assert err.value.code == 2 and "no Hugging Face token" in capsys.readouterr().err
    assert trained == [] and not (tmp_path / "out").exists()


def test_cli_pushes_after_writing_and_hides_the_token(tmp_path, hub, no_saved_token):
    out = tmp_path / "out"
    args = [
        "--push_to_hub",
        "true",
        "--hub_dataset_id",
        "svp-lab/digits-entropy-25",
        "--hub_private",
        "true",
        "--hub_token",
        hub.token,
        "--target",
        "",
        "--score_methods",
        "random",
    ]
    metrics = coreset.main([QUICKSTART, "--output_dir", str(out), *TINY, *args])
    assert metrics["hub_url"] == "https://huggingface.co/datasets/svp-lab/digits-entropy-25"
    repo = hub.repos["svp-lab/digits-entropy-25"]
    assert repo["private"] is True and repo["files"] == local_files(out / "dataset")
    assert hub.token not in (out / "metrics.json").read_text() and hub.token not in (out / "report.md").read_text()
    assert "--hub_token ***" in metrics["command"]


@pytest.fixture
def result(tmp_path):
    out = tmp_path / "out"
    train = datasets.Dataset.from_dict({"x": list(range(8)), "label": [0, 1] * 4})
    scores = datasets.Dataset.from_dict(
        {"svp_index": list(range(8)), "label": [0, 1] * 4, "entropy": np.linspace(0, 1, 8)}
    )
    write_run(
        str(out),
        splits={"train": train.select(range(4))},
        scores=scores,
        metrics={"method": "entropy", "fraction": 0.5},
    )
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


# --- an unreachable Hub: the local cache only, at once ------------------------------------------------------------


def test_names_that_would_be_fetched_from_the_hub(tmp_path):
    (tmp_path / "folder").mkdir()
    local = str(tmp_path / "folder")
    names = [
        "fancyzhx/amazon_polarity",
        "config:owner/model,max_length=64",
        "hf://datasets/a/b/x.parquet",
        local,
        "builtin:digits",
        "parquet",
        "resnet20",
        "fasttext,dim=16",
        "config:bert-tiny",
        None,
    ]
    assert svp_hf.publish.hub.names_on_hub(names) == names[:3]


@pytest.fixture
def online_but_unreachable(monkeypatch):
    """A process not set offline whose Hub probe fails as it does without a network."""

    class NoNetwork:
        def head(self, url, timeout=None):
            self.asked = (url, timeout)
            raise OSError("[Errno -2] Name or service not known")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(svp_hf.publish.hub, "get_session", NoNetwork)
    svp_hf.publish.hub.unreachable_hub_reason.cache_clear()
    yield
    svp_hf.publish.hub.unreachable_hub_reason.cache_clear()


def test_an_unreachable_hub_switches_the_run_to_the_local_cache(online_but_unreachable):
    assert (
        svp_hf.publish.hub.offline_if_unreachable(["builtin:digits", "resnet20"]) is None
    )  # nothing from the Hub: no probe
    assert not huggingface_hub.constants.HF_HUB_OFFLINE
    reason = svp_hf.publish.hub.offline_if_unreachable(["fancyzhx/amazon_polarity"])
    assert "Name or service not known" in reason
    assert huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    assert os.environ["HF_HUB_OFFLINE"] == "1"  # and the processes it starts
    with pytest.raises(SVPConfigError, match="could not load dataset 'nobody/nothing'.*OfflineModeIsEnabled"):
        load_data("nobody/nothing")  # at once, not after the retries of every request
