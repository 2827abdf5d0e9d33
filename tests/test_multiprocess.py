"""Several processes on images read from files (svp_hf.data.image_cache, svp_hf.data): ``accelerate launch`` with two
processes on datasets loaded from parquet files, from an ``imagefolder`` and streamed, for the core-set and the active
job, on a cold and a warm ``datasets`` cache, and two runs at once on one cache (two users on one machine); and
``strategy: auto``'s pre-check with a target, declining a budget (and resumed) or fitting it.

Every core-set run but the pre-check's scores with the same ``proxy_checkpoint``, so each must give exactly the
scores of one process. The parquet rows are sorted by class and the image files named in row order, so that the
``imagefolder`` copy (read class folder by class folder) holds the same rows in the same order and scores the same
too. Every run is pinned to full precision: ``accelerate launch`` gives its own ``no`` to the launched runs, where a
plain run would take the default."""

import io
import json
import os
import shutil
import socket
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest
from PIL import Image as PILImage

from .conftest import REPO, accelerate_launch, outputs
from .conftest import run_command as run

pytestmark = pytest.mark.slow

TRAIN_ROWS, TEST_ROWS, CLASSES, SIDE = 301, 60, 4, 16
RECIPE = """\
image_column: image
train_split: train
eval_split: test
proxy: resnet20
proxy_epochs: 1
batch_size: 32
learning_rate: 0.05
method: least_confidence
seed: 0
mixed_precision: "no"
"""
JOBS = {
    "svp_hf.coreset": 'score_methods: [entropy, margin, el2n, kcenter]\nfraction: 0.5\nstrategy: top\ntarget: ""\n',
    "svp_hf.active": "target: resnet20\ntarget_epochs: 1\ninitial_size: 100\nbudgets: [150, 200]\n",
}


def _png(array) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def _split(folder, name: str, n: int, seed: int) -> None:
    """`n` random RGB images sorted by class: ``<name>.parquet`` and the same rows as ``images/<name>/c<k>/<row>.png``."""
    rng = np.random.default_rng(seed)
    labels = np.sort(rng.integers(CLASSES, size=n))
    pixels = rng.integers(0, 256, size=(n, SIDE, SIDE, 3), dtype=np.uint8)
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=[f"c{k}" for k in range(CLASSES)])}
    )
    rows = {"image": [{"bytes": _png(p), "path": None} for p in pixels], "label": labels.tolist()}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{name}.parquet"))
    for row, (p, label) in enumerate(zip(pixels, labels)):
        path = folder / "images" / name / f"c{label}" / f"{row:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_png(p))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The data folder (parquet files and an imagefolder of the same rows) and the recipes: (source, job) -> path."""
    folder = tmp_path_factory.mktemp("multiprocess")
    _split(folder, "train", TRAIN_ROWS, 0)
    _split(folder, "test", TEST_ROWS, 1)
    parquet = {"train": str(folder / "train.parquet"), "test": str(folder / "test.parquet")}
    sources = {
        "parquet": f"dataset_name: parquet\ndata_files: {parquet}\n",
        "imagefolder": f"dataset_name: {folder / 'images'}\n",
    }
    recipes = {}
    for source, lines in sources.items():
        for job, keys in JOBS.items():
            recipes[source, job] = folder / f"{source}-{job}.yaml"
            recipes[source, job].write_text(lines + RECIPE + keys)
    return folder, recipes


def _free_ports(n: int):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def command(recipes, source, out, cache, *extra, job="svp_hf.coreset", port=None):
    """A run of `job` on the data of `source` with its ``datasets`` cache in `cache`: one process, or two when `port` is given."""
    launcher = [sys.executable, "-m"] if port is None else accelerate_launch(processes=2, port=port)
    return [
        "env",
        f"HF_DATASETS_CACHE={cache}",
        *launcher,
        job,
        str(recipes[source, job]),
        "--output_dir",
        str(out),
        *extra,
    ]


def run_at_once(*commands):
    """Start every command, then wait for all; each must succeed."""
    procs = [
        subprocess.Popen(c, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for c in commands
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    for proc, err in zip(procs, errors):
        assert proc.returncode == 0, err[-3000:]


def image_cache_files(cache):
    """The decode-once cache's files under a ``datasets`` cache folder: name -> (inode, modification time)."""
    found = {}
    for root, _, names in os.walk(cache):
        for name in names:
            if name.startswith("svp_images-"):
                stat = os.stat(os.path.join(root, name))
                found[name] = (stat.st_ino, stat.st_mtime_ns)
    return found


@pytest.fixture(scope="module")
def proxy(data, tmp_path_factory):
    """A proxy trained by one process on the parquet files, and the scores that process gave with it."""
    folder, recipes = data
    root = tmp_path_factory.mktemp("proxy")
    run(command(recipes, "parquet", root / "trained", root / "cache", "--keep_checkpoints", "true"))
    checkpoint = str(root / "trained" / "checkpoints" / "proxy")
    run(command(recipes, "parquet", root / "single", root / "cache", "--proxy_checkpoint", checkpoint))
    return checkpoint, outputs(root / "single")


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One ``datasets`` cache, cold for the first runs on it."""
    return tmp_path_factory.mktemp("shared") / "cache"


def assert_scores_like_one_process(run_dir, single, streamed=False):
    """`run_dir` scored every row exactly as the one-process run and kept the same rows."""
    scores = pd.read_parquet(run_dir / "scores.parquet")
    expected = single[1]
    assert scores["svp_index"].tolist() == list(range(TRAIN_ROWS))  # every row scored exactly once
    methods = [c for c in expected.columns if c in scores.columns and c not in ("svp_index", "label")]
    assert {"least_confidence", "entropy", "margin", "el2n", "kcenter"} <= set(methods)
    pd.testing.assert_frame_equal(scores[["svp_index", *methods]], expected[["svp_index", *methods]], check_exact=True)
    if streamed:
        kept = pd.read_parquet(run_dir / "selected.parquet")["svp_index"]
    else:
        kept = outputs(run_dir)[2]["train"]["svp_index"]
    assert sorted(kept.tolist()) == sorted(single[2]["train"]["svp_index"].tolist())


def test_two_runs_of_two_processes_at_once_on_a_cold_cache_score_like_one_process(data, proxy, shared_cache, tmp_path):
    _, recipes = data
    checkpoint, single = proxy
    ports = _free_ports(2)
    run_at_once(
        *(
            command(
                recipes, "parquet", tmp_path / f"user{k}", shared_cache, "--proxy_checkpoint", checkpoint, port=ports[k]
            )
            for k in range(2)
        )
    )
    for k in range(2):
        assert_scores_like_one_process(tmp_path / f"user{k}", single)
    written = [name for name in image_cache_files(shared_cache) if name.endswith(".npy")]
    assert len(written) == 4 and not any(".tmp" in name for name in written)  # each split's pixels and bad rows


def test_a_warm_cache_is_read_not_written_again(data, proxy, shared_cache, tmp_path):
    _, recipes = data
    checkpoint, single = proxy
    if not image_cache_files(shared_cache):  # run alone: warm the cache first
        run(command(recipes, "parquet", tmp_path / "cold", shared_cache, "--proxy_checkpoint", checkpoint))
    before = image_cache_files(shared_cache)
    run(
        command(
            recipes,
            "parquet",
            tmp_path / "warm",
            shared_cache,
            "--proxy_checkpoint",
            checkpoint,
            port=_free_ports(1)[0],
        )
    )
    assert_scores_like_one_process(tmp_path / "warm", single)
    assert image_cache_files(shared_cache) == before


def test_two_processes_score_an_imagefolder_like_one_process_on_the_parquet_files(data, proxy, tmp_path):
    _, recipes = data
    checkpoint, single = proxy
    run(
        command(
            recipes,
            "imagefolder",
            tmp_path / "out",
            tmp_path / "cache",
            "--proxy_checkpoint",
            checkpoint,
            port=_free_ports(1)[0],
        )
    )
    assert_scores_like_one_process(tmp_path / "out", single)


def test_two_processes_score_streams_of_parquet_files_and_of_an_imagefolder_like_one_process(data, proxy, tmp_path):
    _, recipes = data
    checkpoint, single = proxy
    given = ["--proxy_checkpoint", checkpoint, "--streaming", "true", "--scoring_shard_size", "100"]
    sources, ports = ("parquet", "imagefolder"), _free_ports(2)
    run_at_once(
        *(command(recipes, s, tmp_path / s, tmp_path / f"cache-{s}", *given, port=p) for s, p in zip(sources, ports))
    )
    for source in sources:
        assert_scores_like_one_process(tmp_path / source, single, streamed=True)


def test_two_processes_run_the_active_job_on_parquet_files_and_on_an_imagefolder(data, shared_cache, tmp_path):
    # parquet: on the cache the core-set runs warmed (when run with them); imagefolder: on a cold cache.
    _, recipes = data
    caches, ports = {"parquet": shared_cache, "imagefolder": tmp_path / "cache"}, _free_ports(2)
    run_at_once(
        *(command(recipes, s, tmp_path / s, c, job="svp_hf.active", port=p) for (s, c), p in zip(caches.items(), ports))
    )
    for source in caches:
        metrics, _, splits = outputs(tmp_path / source)
        assert metrics["num_processes"] == 2
        labelled = splits["train"]["svp_index"]
        assert len(labelled) == 200 and labelled.is_unique and labelled.between(0, TRAIN_ROWS - 1).all()


# auto's pre-check (svp_hf.stages.orchestrator.Pruner.precheck) with a target. Declining: the proxy is the target's own
# model for as many epochs, its training alone over any budget below 1 whatever the probes measure, so the decision
# never depends on timings. Fitting: a deeper target for 8 epochs, which the probes (some 1.5 s) and the proxy's epoch
# stay well within, and a check of 1-epoch candidates.
DECLINING = ["--strategy", "auto", "--target", "resnet20", "--target_epochs", "1", "--selection_budget", "0.01"]
FITTING = ["--strategy", "auto", "--target", "resnet56", "--target_epochs", "8", "--selection_budget", "1.0"]
FITTING += ["--auto_epochs", "1"]
KEEP = ["--keep_checkpoints", "true"]


def assert_no_probe_left(out):
    """The run kept its checkpoints (``--keep_checkpoints``): the pre-check's there, its probes' scratch folder gone."""
    checkpoints = out / "checkpoints"
    assert (checkpoints / "precheck.json").is_file() and not (checkpoints / "probe").exists()
    return json.loads((checkpoints / "precheck.json").read_text())


def test_two_processes_decline_a_budget_before_training_the_proxy_and_keep_the_rows_of_one(data, tmp_path):
    _, recipes = data
    cache = tmp_path / "cache"
    run(command(recipes, "parquet", tmp_path / "cold", cache, *DECLINING, *KEEP, port=_free_ports(1)[0]))
    saved = assert_no_probe_left(tmp_path / "cold")
    run(command(recipes, "parquet", tmp_path / "single", cache, *DECLINING))
    # A run interrupted right after its pre-check, resumed on the warm cache: the saved figures, no probe again.
    (tmp_path / "warm" / "checkpoints").mkdir(parents=True)
    for name in ("precheck.json", "run.json"):
        shutil.copy(tmp_path / "cold" / "checkpoints" / name, tmp_path / "warm" / "checkpoints" / name)
    before = image_cache_files(cache)
    assert before  # the cold run wrote it
    log = run(command(recipes, "parquet", tmp_path / "warm", cache, *DECLINING, port=_free_ports(1)[0]))
    assert "precheck: found in" in log and "probe warm-up" not in log, log[-3000:]
    assert image_cache_files(cache) == before
    single = outputs(tmp_path / "single")
    for name in ("cold", "warm"):
        metrics, scores, splits = outputs(tmp_path / name)
        check = metrics["auto"]["budget"]["precheck"]
        assert metrics["num_processes"] == 2 and metrics["selected_strategy"] == "random" and not check["fits"]
        assert metrics["auto"]["fallback"] and metrics["proxy_accuracy"] is None and check["budget"] == 0.01
        # the proxy is priced over the budget, or the target's probe alone was (the proxy then not even probed)
        assert (
            check["probe_seconds"] > 0
            and (check["proxy_estimate_seconds"] or 0.0) + check["probe_seconds"] > check["budget_seconds"]
        )
        full = json.loads((tmp_path / name / "metrics.json").read_text())
        timings = full["timings"]
        assert timings["precheck"] == full["end_to_end"]["stages"]["precheck"]
        # The cold run's target trained from the model its pre-check built: that building is the target's, not
        # selection's; the warm run read the pre-check back (no model to hand over) and counts it all.
        built = timings.get("target_build", 0.0)
        assert (built == check["target_build_seconds"] > 0) if name == "cold" else built == 0.0
        assert timings["precheck"] + built == pytest.approx(check["probe_seconds"])
        assert "proxy_training" not in full["timings"]
        pd.testing.assert_frame_equal(scores, single[1])  # svp_index and label: nothing scored
        assert splits["train"]["svp_index"].tolist() == single[2]["train"]["svp_index"].tolist()
    assert outputs(tmp_path / "warm")[0]["auto"]["budget"]["precheck"] == saved
    assert single[0]["selected_strategy"] == "random" and not single[0]["auto"]["budget"]["precheck"]["fits"]
    # Another target: its probe (a dozen steps in each process) is over 0.01 of its one-epoch training (three steps)
    # by itself, so main decides for both processes that the proxy is not probed.
    other = ["--strategy", "auto", "--target", "resnet56", "--target_epochs", "1", "--selection_budget", "0.01"]
    run(command(recipes, "parquet", tmp_path / "other", cache, *other, port=_free_ports(1)[0]))
    metrics, scores, splits = outputs(tmp_path / "other")
    check = metrics["auto"]["budget"]["precheck"]
    assert metrics["num_processes"] == 2 and metrics["selected_strategy"] == "random" and check["proxy_probed"] is False
    assert check["proxy_estimate_seconds"] is None and check["probe_seconds"] > check["budget_seconds"]
    assert splits["train"]["svp_index"].tolist() == single[2]["train"]["svp_index"].tolist()


def test_two_processes_train_the_proxy_when_the_precheck_fits_and_record_the_decision(data, tmp_path):
    _, recipes = data
    out = tmp_path / "out"
    run(command(recipes, "imagefolder", out, tmp_path / "cache", *FITTING, *KEEP, port=_free_ports(1)[0]))
    check = assert_no_probe_left(out)
    metrics, scores, splits = outputs(out)
    auto = metrics["auto"]
    assert metrics["num_processes"] == 2 and check["fits"] and auto["budget"]["precheck"] == check
    # Under two processes the probes' epochs are one and two steps of a batch in each process.
    assert "epochs of 64 and 128 rows" in check["target_rate"]["source"]
    assert metrics["proxy_accuracy"] is not None and metrics["selected_strategy"] == auto["strategy"]
    assert auto["chosen"] and (auto["candidates"] or auto["fallback"])
    assert scores["svp_index"].tolist() == list(range(TRAIN_ROWS)) and scores["least_confidence"].notna().all()
    assert len(splits["train"]) == 150 and splits["train"]["svp_index"].is_unique
    timings = json.loads((out / "metrics.json").read_text())["timings"]
    assert timings["precheck"] == check["probe_seconds"] and timings["proxy_training"] > 0 and timings["auto"] > 0
