"""The publishable result: dataset card, report and plots, load_scores, and push_to_hub against a stubbed HfApi."""

import fnmatch
import json
import os
import re

import datasets
import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import DatasetCard

import svp_hf
import svp_hf.hub
from svp_hf import SVPConfigError, coreset, pipeline
from svp_hf.config import parse_args
from svp_hf.output import write_dataset_folder, write_run

from .conftest import REPO

TINY = [
    "--strategy", "top",
    "--proxy_epochs", "1", "--target", "resnet20", "--target_epochs", "1", "--target_learning_rate", "0.03",
    "--max_train_samples", "120",
    "--max_eval_samples", "60", "--batch_size", "32", "--method", "entropy",
    "--score_methods", "forgetting", "random", "--fraction", "0.25",
]
QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny run with target scoring: the card, report, plots and score tables the tests below read."""
    out = tmp_path_factory.mktemp("publish") / "out"
    argv = [QUICKSTART, "--output_dir", str(out), *TINY, "--score_with_target", "true"]
    metrics = coreset.main(argv)
    return out, metrics, argv


# --- the stubbed Hub --------------------------------------------------------------------------------------------


class FakeHub:
    """The Hub's answers for one user: who the token belongs to, which repos exist, what was uploaded."""

    def __init__(self, token="hf_valid", user="alice", orgs=("svp-lab",)):
        self.token, self.user, self.orgs = token, user, list(orgs)
        self.repos = {}  # repo id -> {"private": ..., "files": {path: bytes}}
        self.calls = []

    def api(self, token=None, **_):
        return FakeApi(self, token)


class FakeApi:
    def __init__(self, hub, token):
        self.hub, self.token = hub, token

    def whoami(self):
        self.hub.calls.append(("whoami",))
        if self.token != self.hub.token:
            raise RuntimeError("401 Client Error: Unauthorized (invalid token)")
        return {"name": self.hub.user, "orgs": [{"name": o} for o in self.hub.orgs]}

    def repo_exists(self, repo_id, repo_type=None):
        self.hub.calls.append(("repo_exists", repo_id, repo_type))
        return repo_id in self.hub.repos

    def create_repo(self, repo_id, repo_type=None, private=None, exist_ok=False):
        self.hub.calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
        assert self.token == self.hub.token and repo_id.split("/")[0] in [self.hub.user, *self.hub.orgs]
        if repo_id in self.hub.repos and not exist_ok:
            raise RuntimeError("409 Conflict: You already created this dataset repo")
        self.hub.repos.setdefault(repo_id, {"private": private, "files": {}})
        return huggingface_hub.RepoUrl(f"https://huggingface.co/datasets/{repo_id}")

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, delete_patterns=None):
        self.hub.calls.append(("upload_folder", repo_id, repo_type))
        files = self.hub.repos[repo_id]["files"]
        new = {}
        for root, _, names in os.walk(folder_path):
            for name in names:
                path = os.path.join(root, name)
                new[os.path.relpath(path, folder_path).replace(os.sep, "/")] = open(path, "rb").read()
        patterns = [delete_patterns] if isinstance(delete_patterns, str) else delete_patterns or []
        for old in list(files):
            if old not in new and any(fnmatch.fnmatch(old, p) for p in patterns):
                del files[old]
        files.update(new)


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(svp_hf.hub, "HfApi", fake.api)
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


# --- card, folder, report -----------------------------------------------------------------------------------------


def test_card_has_the_metadata_and_round_trips(run):
    out, metrics, _ = run
    path = out / "dataset" / "README.md"
    card = DatasetCard.load(path)
    data = card.data.to_dict()
    assert data["tags"][:2] == ["svp-hf", "data-pruning"] and "active-learning" not in data["tags"]
    assert metrics["job"] == "coreset"
    assert data["task_categories"] == ["image-classification"]
    assert data["size_categories"] == ["n<1K"]
    assert "configs" not in data  # see svp_hf.card: splits come from the file names
    # round trip: what DatasetCard.load read renders back to the same file
    assert str(DatasetCard(str(card))) == path.read_text()
    text = card.text
    source = metrics["source"]
    for needle in [
        f"`{source['fingerprint']}`", "`builtin:digits`", "`train`: 120 rows", "`entropy`", "0.25 (30 of 120 rows)",
        "| seed | 0 |",
        f"| proxy | `resnet20` | 1 | sgd (momentum 0.9), lr 0.1, cosine schedule, weight decay 0.0005, batch 32 | {metrics['proxy_accuracy']:.4g} |",
        f"| target (trained on the kept rows) | `resnet20` | 1 | sgd (momentum 0.9), lr 0.03, cosine schedule, weight decay 0.0005, batch 32 | {metrics['target_accuracy']:.4g} |",
        "| `forgetting` | 120 |", "Spearman", "| proxy training |", "svp_hf 0.1.0", metrics["command"],
        "![score histogram](plots/score_histogram.png)",
    ]:
        assert needle in text, needle
    kept = metrics["selected_per_class"]
    total = metrics["total_per_class"]
    assert f"| 0 | {total['0']} | {kept.get('0', 0)} |" in text


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


def test_report_and_plots_are_written(run):
    out, metrics, _ = run
    report = (out / "report.md").read_text()
    plots = sorted(os.listdir(out / "dataset" / "plots"))
    assert plots == ["class_counts.png", "learning_curves.png", "proxy_vs_target.png", "score_histogram.png"]
    from PIL import Image

    for name in plots:
        path = out / "dataset" / "plots" / name
        assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5_000
        with Image.open(path) as image:
            assert min(image.size) > 100
        assert f"(dataset/plots/{name})" in report
    # the card carries the same report
    card_text = DatasetCard.load(out / "dataset" / "README.md").text
    assert report.split("## Source", 1)[1].replace("dataset/plots/", "plots/") in card_text


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


# --- push_to_hub --------------------------------------------------------------------------------------------------


def test_push_uploads_the_output_folder(run, hub):
    out, _, _ = run
    url = svp_hf.push_to_hub(out, "cifar-pruned", private=True)
    assert url == "https://huggingface.co/datasets/alice/cifar-pruned"
    repo = hub.repos["alice/cifar-pruned"]
    assert repo["private"] is True
    uploaded = repo["files"]
    assert uploaded == local_files(out / "dataset")  # the upload is exactly the local folder
    assert {"README.md", "data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet",
            "scores/proxy.parquet", "scores/target.parquet", "plots/score_histogram.png"} <= set(uploaded)
    assert b'load_dataset("alice/cifar-pruned")' in uploaded["README.md"]
    assert [c[0] for c in hub.calls] == ["whoami", "repo_exists", "create_repo", "upload_folder"]


def test_push_refuses_an_existing_repo_unless_asked_and_overwrite_replaces_it(run, hub):
    out, _, _ = run
    hub.repos["svp-lab/pruned"] = {"private": False, "files": {"data/train-00000-of-00002.parquet": b"old", "notes.txt": b"x"}}
    with pytest.raises(SVPConfigError, match="'svp-lab/pruned' already exists; set hub_overwrite"):
        svp_hf.push_to_hub(out, "svp-lab/pruned")
    assert "create_repo" not in [c[0] for c in hub.calls] and "upload_folder" not in [c[0] for c in hub.calls]
    svp_hf.push_to_hub(out, "svp-lab/pruned", overwrite=True)
    assert set(hub.repos["svp-lab/pruned"]["files"]) == set(local_files(out / "dataset"))


@pytest.mark.parametrize(
    "repo_id, token, message",
    [
        ("bob/pruned", "hf_valid", "namespace 'bob' is neither yours ('alice') nor one of your organizations ('svp-lab')"),
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
    assert len(shards) > 1 and shards == [f"data/train-{i:05d}-of-{len(shards):05d}.parquet" for i in range(len(shards))]
    with pytest.raises(SVPConfigError, match="max_shard_size must be a positive size such as '500MB', got 'big'"):
        svp_hf.push_to_hub(pruned, "alice/other", max_shard_size="big")
    assert "alice/other" not in hub.repos


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
    monkeypatch.setattr(coreset, "run_scoring", lambda *a, **k: trained.append(1))
    with pytest.raises(SystemExit) as err:
        coreset.main([QUICKSTART, "--output_dir", str(tmp_path / "out"), "--push_to_hub", "true", "--hub_dataset_id", "alice/x"])
    assert err.value.code == 2 and "no Hugging Face token" in capsys.readouterr().err
    assert trained == [] and not (tmp_path / "out").exists()


def test_cli_pushes_after_writing_and_hides_the_token(tmp_path, hub, no_saved_token):
    out = tmp_path / "out"
    args = ["--push_to_hub", "true", "--hub_dataset_id", "svp-lab/digits-entropy-25", "--hub_private", "true",
            "--hub_token", hub.token, "--target", "", "--score_methods", "random"]
    metrics = coreset.main([QUICKSTART, "--output_dir", str(out), *TINY, *args])
    assert metrics["hub_url"] == "https://huggingface.co/datasets/svp-lab/digits-entropy-25"
    repo = hub.repos["svp-lab/digits-entropy-25"]
    assert repo["private"] is True and repo["files"] == local_files(out / "dataset")
    assert hub.token not in (out / "metrics.json").read_text() and hub.token not in (out / "report.md").read_text()
    assert "--hub_token ***" in metrics["command"]


def test_license_and_task_categories_carry_over_from_the_source(tmp_path, tiny_digits):
    from svp_hf.card import card_data, size_category, source_metadata
    from svp_hf.output import write_dataset_folder

    train, _ = tiny_digits
    folder = tmp_path / "source"
    write_dataset_folder(str(folder), {"train": train}, "---\nlicense: cc-by-4.0\ntask_categories:\n- image-classification\n- other\n---\n# digits\n")
    loaded = datasets.load_dataset(str(folder))["train"]
    source = source_metadata(loaded, dataset_name=str(folder), split="train", modality="image")
    assert source["license"] == "cc-by-4.0" and source["task_categories"] == ["image-classification", "other"]
    assert source["fingerprint"] == loaded._fingerprint and source["num_rows"] == len(train)
    assert source["hub_id"] is None  # a local folder is no Hub dataset
    data = card_data({"source": source, "splits": {"train": 20_000, "test": 10_000}}).to_dict()
    assert data["license"] == "cc-by-4.0" and data["size_categories"] == ["10K<n<100K"] and "source_datasets" not in data
    hub = card_data({"source": {"hub_id": "uoft-cs/cifar10"}, "n_selected": 999}).to_dict()
    assert hub["source_datasets"] == ["uoft-cs/cifar10"] and hub["size_categories"] == ["n<1K"]
    assert [size_category(n) for n in (999, 1000, 1_280_000)] == ["n<1K", "1K<n<10K", "1M<n<10M"]
    # no card and no license anywhere: nothing is made up, the task category comes from the modality
    bare = source_metadata(train, dataset_name="builtin:digits", split="train", modality="image")
    assert bare["license"] is None and bare["task_categories"] == ["image-classification"]
