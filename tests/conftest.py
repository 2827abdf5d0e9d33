import fnmatch
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import huggingface_hub  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SVP_SHARED_DIR", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


def shared_data(name: str) -> Path:
    """Path of a dataset folder in ../shared/data, skipping the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs the shared dataset folder {path} (absent on this machine)")
    return path


@pytest.fixture(scope="session")
def digits():
    from svp_hf.data import digits_dataset

    return digits_dataset()


@pytest.fixture(scope="session")
def tiny_digits(digits):
    """200 training and 100 test rows of scikit-learn's digits: enough for end-to-end runs in seconds."""
    return digits["train"].select(range(200)), digits["test"].select(range(100))


@pytest.fixture
def tiny_kwargs():
    return dict(proxy_epochs=1, batch_size=64, learning_rate=0.05, seed=0, strategy="top")


# --- text data (svp_hf.data, svp_hf.models, svp_hf.engine.training, ...) -----------------------------------------------------


@pytest.fixture(scope="module")
def reviews():
    from svp_hf.data import load_data

    return load_data("builtin:reviews")


@pytest.fixture(scope="module")
def tiny_reviews(reviews):
    return reviews["train"].select(range(200)), reviews["test"].select(range(80))


def separable(n: int, seed: int):
    """Two classes written with two disjoint vocabularies: any bag-of-words model can separate them."""
    import numpy as np
    from datasets import ClassLabel, Dataset, Features, Value

    rng = np.random.default_rng(seed)
    vocab = [[f"red{i}" for i in range(20)], [f"blue{i}" for i in range(20)]]
    labels = rng.integers(2, size=n)
    texts = [" ".join(rng.choice(vocab[y], size=int(rng.integers(3, 9)))) for y in labels]
    return Dataset.from_dict(
        {"text": texts, "label": labels.tolist()},
        features=Features({"text": Value("string"), "label": ClassLabel(names=["red", "blue"])}),
    )


# --- a model to score with (svp_hf.engine.scoring, svp_hf.engine.training) ------------------------------------------------------------


@pytest.fixture(scope="module")
def setup(tiny_digits):
    import torch

    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    train, _ = tiny_digits
    family, info = prepare_inputs(train, "resnet20", {})
    torch.manual_seed(0)
    model = create_model("resnet20", info).eval()
    return train, family, info, model


# --- one published run (svp_hf.publish.card, svp_hf.publish.output, svp_hf.publish.report, svp_hf.publish.hub) ------------------------------------------

PUBLISH_TINY = [
    "--strategy",
    "top",
    "--proxy_epochs",
    "1",
    "--target",
    "resnet20",
    "--target_epochs",
    "1",
    "--target_learning_rate",
    "0.03",
    "--max_train_samples",
    "120",
    "--max_eval_samples",
    "60",
    "--batch_size",
    "32",
    "--method",
    "entropy",
    "--score_methods",
    "forgetting",
    "random",
    "--fraction",
    "0.25",
]
QUICKSTART = str(REPO / "recipes" / "quickstart.yaml")
# One epoch for each model on a few hundred rows: the core-set job's runs in tests.
TINY_RUN = ["--proxy_epochs", "1", "--target_epochs", "1", "--max_train_samples", "300", "--max_eval_samples", "100"]


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    """One tiny run with target scoring: the card, report, plots and score tables the publishing tests read
    (test_card, test_output, test_report, test_hub); session-scoped so that they share one run, as they did in one file."""
    from svp_hf.jobs import coreset

    out = tmp_path_factory.mktemp("publish") / "out"
    argv = [QUICKSTART, "--output_dir", str(out), *PUBLISH_TINY, "--score_with_target", "true"]
    metrics = coreset.main(argv)
    return out, metrics, argv


# --- the core-set CLI in subprocesses: killed and resumed runs, several processes ----------------------------------------

SUBPROCESS_TINY = [
    "--strategy",
    "top",
    "--max_train_samples",
    "301",
    "--max_eval_samples",
    "50",
    "--batch_size",
    "32",
    "--target",
    "resnet20",
    "--target_epochs",
    "1",
]


def accelerate_launch(module=None, *, processes=1, port=None, module_flag=True):
    """``accelerate launch`` as the tests run it: `processes` processes on one machine (``--multi_gpu``, two gloo
    processes on a CPU, with its own `port`, when more than one), full precision (launch passes its own precision to
    the job), no dynamo; then ``-m module`` when given (just ``-m`` when `module_flag` and no module: the caller
    appends one)."""
    accelerate = shutil.which("accelerate", path=os.path.dirname(sys.executable)) or "accelerate"
    several = (
        ["--multi_gpu", *(["--main_process_port", str(port)] if port is not None else [])] if processes > 1 else []
    )
    options = ["--num_processes", str(processes), "--num_machines", "1", "--mixed_precision", "no"]
    options += ["--dynamo_backend", "no", *several]
    tail = ["-m", module] if module else (["-m"] if module_flag else [])
    return [accelerate, "launch", *options, *tail]


def cli(output_dir, *extra, launcher=(sys.executable, "-m")):
    return [
        *launcher,
        "svp_hf.coreset",
        str(REPO / "recipes" / "quickstart.yaml"),
        "--output_dir",
        str(output_dir),
        *SUBPROCESS_TINY,
        *extra,
    ]


def run_command(cmd):
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def kill_when(cmd, ready, sig, log):
    """Start `cmd`, send `sig` as soon as `ready()` holds; returns what the run logged."""
    with open(log, "w") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 600
        while not ready():
            assert proc.poll() is None, "the run ended before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    return open(log).read()


def outputs(output_dir):
    import datasets
    import pandas as pd

    metrics = json.loads((output_dir / "metrics.json").read_text())
    metrics.pop("timings")
    metrics.pop("end_to_end", None)  # seconds, like the timings
    metrics.pop("command")
    metrics.pop("result_file_digests")  # report.md holds the timings; the files themselves are compared below
    data = datasets.load_dataset(str(output_dir / "dataset"))
    return metrics, pd.read_parquet(output_dir / "scores.parquet"), {s: data[s].to_pandas() for s in data}


def assert_same_outputs(a, b, exact=True):
    import pandas as pd

    (ma, sa, da), (mb, sb, db) = outputs(a), outputs(b)
    assert ma == mb
    pd.testing.assert_frame_equal(sa, sb, check_exact=exact)
    assert da.keys() == db.keys()
    for split in da:
        pd.testing.assert_frame_equal(da[split], db[split])


# --- the stubbed Hub (svp_hf.publish.hub, svp_hf.active.labelling) -------------------------------------------------------------------


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
