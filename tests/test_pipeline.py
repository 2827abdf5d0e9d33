"""svp_hf.jobs.pipeline: the steps every job shares (CLI parsing against the job's keys, exit codes, secrets, pre-flight
state, checkpoints and resume, the recipe saved with the output, the summary)."""

import json
import os

import datasets
import pytest
import yaml

from svp_hf.errors import SVPConfigError, SVPRuntimeError
from svp_hf.jobs import active, coreset, pipeline
from svp_hf.stages import orchestrator

from .conftest import REPO

RECIPE = str(REPO / "recipes" / "quickstart.yaml")
ACTIVE_RECIPE = str(REPO / "recipes" / "active_quickstart.yaml")
FAST = [
    "--strategy",
    "top",
    "--proxy_epochs",
    "1",
    "--target",
    "",
    "--max_train_samples",
    "200",
    "--max_eval_samples",
    "60",
    "--score_methods",
    "entropy",
]
ACTIVE_FAST = [
    "--proxy_epochs",
    "1",
    "--target_epochs",
    "1",
    "--max_train_samples",
    "200",
    "--max_eval_samples",
    "60",
    "--initial_size",
    "20",
    "--budgets",
    "50",
    "90",
    "--target",
    "resnet20",
    "--selector",
    "proxy",
]
SECRET = "hf_SeCrEtToKeN1234567890"


def files_containing(root, needle: str):
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                if needle.encode() in f.read():
                    found.append(path)
    return found


# --- the command line ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling", [["--hub_token", SECRET], ["--hub-token", SECRET], [f"--hub_token={SECRET}"], [f"--hub-token={SECRET}"]]
)
def test_the_hub_token_is_never_written_in_any_spelling(tmp_path, spelling):
    out = tmp_path / "out"
    metrics = coreset.main([RECIPE, "--output_dir", str(out), *FAST, *spelling])
    assert SECRET not in json.dumps(metrics)
    assert "***" in metrics["command"]
    assert files_containing(out, SECRET) == []
    assert set(os.listdir(out)) >= {"dataset", "metrics.json", "report.md", "recipe.yaml"}


@pytest.mark.parametrize(
    "spelling, says",
    [
        (
            ["--hub_token=", SECRET],
            "1 value(s) without a key on the command line of svp_hf.coreset, the first right after "
            "'--hub_token=' (no space after '=')",
        ),
        (["-hub_token", SECRET], "unknown argument '-hub_token': keys take two dashes; write --hub_token"),
        ([f"-hub_token={SECRET}"], "unknown argument '-hub_token': keys take two dashes; write --hub_token"),
        ([f"-hub-token={SECRET}"], "unknown argument '-hub_token': keys take two dashes; write --hub_token"),
        (
            ["--seed", "1", SECRET],
            "1 value(s) without a key on the command line of svp_hf.coreset, the first after another value",
        ),
        (["--hub_token", SECRET, SECRET], "1 value(s) without a key"),
    ],
)
def test_a_token_in_a_misspelt_flag_is_refused_and_never_written(tmp_path, capsys, spelling, says):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(out), *FAST, *spelling])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert says in message and SECRET not in message and len(message.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("second", [SECRET, "other.yaml"])
def test_a_second_positional_argument_is_refused(tmp_path, capsys, second):
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, second, "--output_dir", str(tmp_path / "out"), *FAST])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "1 value(s) without a key on the command line of svp_hf.coreset, the first right after the recipe" in message
    assert second not in message and not (tmp_path / "out").exists()


def test_a_token_from_the_environment_is_redacted_by_value_from_everything_written(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    out = tmp_path / f"out-{SECRET}"  # the token's value where the command line, and so metrics.json, holds it
    metrics = coreset.main([RECIPE, "--output_dir", str(out), *FAST, "--hub_dataset_id", f"me/{SECRET}"])
    assert SECRET not in json.dumps(metrics) and "out-*** " in metrics["command"]
    assert metrics["recipe"]["hub_dataset_id"] == "me/***"
    assert files_containing(out, SECRET) == []


def test_abbreviated_flags_are_refused_without_echoing_their_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(tmp_path / "out"), "--hub_tok", SECRET])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "--hub_tok" in message and SECRET not in message
    assert not (tmp_path / "out").exists()


def test_command_line_redacts_secret_values_wherever_they_appear():
    line = pipeline.command_line(coreset.JOB, ["r.yaml", "--hub-token", SECRET, f"--hub_token={SECRET}"], [SECRET])
    assert SECRET not in line and line.count("***") == 2


@pytest.mark.parametrize(
    "flags, unread",
    [
        (["--fraction", "0.3"], "--fraction"),
        (["--strategy", "top"], "--strategy"),
        (["--proxy_checkpoint", "x"], "--proxy_checkpoint"),
        (["--score_with_target", "true"], "--score_with_target"),
        (["--kcenter_max_memory", "1GB"], "--kcenter_max_memory"),
    ],
)
def test_the_active_job_refuses_core_set_keys(tmp_path, capsys, flags, unread):
    with pytest.raises(SystemExit) as err:
        active.main([ACTIVE_RECIPE, "--output_dir", str(tmp_path / "out"), *flags])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert unread in message and "svp_hf.active" in message


def test_a_recipe_key_the_job_does_not_read_is_refused(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(open(ACTIVE_RECIPE).read() + "strategy: top\n")
    with pytest.raises(SystemExit) as err:
        active.main([str(recipe), "--output_dir", str(tmp_path / "out")])
    assert err.value.code == 2 and "['strategy']" in capsys.readouterr().err


def test_the_core_set_job_refuses_active_keys(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(tmp_path / "out"), "--budgets", "10", "20"])
    assert err.value.code == 2 and "--budgets" in capsys.readouterr().err


def test_help_names_the_recipe(capsys):
    for job in (coreset, active):
        with pytest.raises(SystemExit) as err:
            job.main(["--help"])
        assert err.value.code == 0
        out = capsys.readouterr().out
        assert "RECIPE.yaml" in out and "--output_dir" in out
        assert ("--fraction" in out) == (job is coreset) and ("--budgets" in out) == (job is active)  # its keys only


def test_a_runtime_failure_exits_3_and_a_bad_recipe_2(tmp_path, capsys, monkeypatch):
    def diverged(*args, **kwargs):
        raise SVPRuntimeError("the proxy's scores are NaN for 200 rows")

    monkeypatch.setattr(orchestrator, "train_and_score", diverged)
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(tmp_path / "out"), *FAST])
    assert err.value.code == 3 and "run failed: the proxy's scores are NaN" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(tmp_path / "out"), *FAST, "--fraction", "2"])
    assert err.value.code == 2


def test_an_error_is_reported_once_per_launch(tmp_path, monkeypatch, capsys):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for _ in range(2):  # the second process of the launch to fail with the same line
        with pytest.raises(SystemExit) as err:
            pipeline.fail("svp_hf.coreset: error: bad data", 2)
        assert err.value.code == 2
    assert capsys.readouterr().err == "svp_hf.coreset: error: bad data\n"
    assert pipeline.first_report("svp_hf.coreset: error: other")  # another error is reported
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "launch-2")
    assert pipeline.first_report("svp_hf.coreset: error: bad data")  # by another launch too
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert pipeline.first_report("svp_hf.coreset: error: bad data")  # and always by a single process


# --- the splits written ---------------------------------------------------------------------------------------------


def written_splits(out):
    """Every split of the dataset folder written to `out`, as `datasets.load_dataset` reads it back."""
    return datasets.load_dataset(str(out / "dataset"))


@pytest.mark.parametrize("job", ["coreset", "active"])
def test_a_split_held_out_of_the_training_split_is_written_under_its_own_name(tmp_path, job):
    out = tmp_path / "out"
    held_out = ["--eval_split", "train", "--validation_split_percentage", "20"]
    if job == "coreset":
        metrics = coreset.main([RECIPE, "--output_dir", str(out), *FAST, *held_out])
        kept, column = metrics["n_selected"], "svp_score"
    else:
        metrics = active.main([ACTIVE_RECIPE, "--output_dir", str(out), *ACTIVE_FAST, *held_out])
        kept, column = metrics["budgets"][-1], "svp_round"  # the round that labelled the row (random rows: no score)
    loaded = written_splits(out)
    assert set(loaded) == {"train", "train_heldout"}
    assert len(loaded["train"]) == kept and None not in loaded["train"][column]
    assert len(loaded["train_heldout"]) == 60 and set(loaded["train_heldout"][column]) == {None}
    assert set(loaded["train"]["svp_index"]) <= set(range(200))  # the pruned rows, not the held-out ones
    assert metrics["splits"] == {"train": kept, "train_heldout": 60} and metrics["eval_split"] == "train_heldout"


def test_the_training_split_as_evaluation_split_needs_a_held_out_share(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(tmp_path / "out"), *FAST, "--eval_split", "train"])
    assert err.value.code == 2
    assert "eval_split 'train' is the training split: set validation_split_percentage" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --- bad input: one line, exit 2, nothing written, and the corrected rerun runs ---------------------------------------


def refused(main, argv, capsys):
    """The one line `main(argv)` exits 2 with."""
    with pytest.raises(SystemExit) as err:
        main(argv)
    assert err.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_non_finite_learning_rate_is_refused_before_training_and_the_fixed_rerun_runs(tmp_path, capsys):
    out = tmp_path / "out"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(open(RECIPE).read() + "learning_rate: .inf\n")
    line = refused(coreset.main, [str(recipe), "--output_dir", str(out), *FAST], capsys)
    assert "learning_rate must be a finite number, got inf" in line
    assert not out.exists()
    metrics = coreset.main([str(recipe), "--output_dir", str(out), *FAST, "--learning_rate", "0.05"])
    assert metrics["n_selected"] == 100


def test_fp8_without_its_packages_is_refused_before_anything_runs(tmp_path, capsys):
    from accelerate.utils import is_fp8_available

    if is_fp8_available():
        pytest.skip("fp8 is available here")
    line = refused(
        coreset.main, [RECIPE, "--output_dir", str(tmp_path / "out"), *FAST, "--mixed_precision", "fp8"], capsys
    )
    assert "mixed_precision 'fp8' needs transformer_engine or torchao" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("job", ["coreset", "active"])
def test_a_batch_larger_than_the_memory_is_refused_before_training(tmp_path, capsys, monkeypatch, job):
    from svp_hf.utils import device

    monkeypatch.setattr(device, "available_memory", lambda _: 2**20)  # 1 MiB for one process's batches
    main, argv = (coreset.main, [RECIPE, *FAST]) if job == "coreset" else (active.main, [ACTIVE_RECIPE, *ACTIVE_FAST])
    out = tmp_path / "out"
    line = refused(main, [*argv, "--output_dir", str(out), "--batch_size", "5000"], capsys)
    per_row = 32 + 5 * 8 * 8  # the digits' 8x8 grey pixels, as uint8 then float32, and the row's bookkeeping
    assert f"batch_size 5000 needs at least 1.7 MiB for one batch ({per_row} bytes per row" in line
    assert f"use a batch_size of at most {2**20 // per_row}" in line
    assert not out.exists()
    line = refused(
        main,
        [*argv, "--output_dir", str(out), "--batch_size", "32", "--target", "resnet20", "--target_batch_size", "4000"],
        capsys,
    )
    assert line.startswith(f"svp_hf.{job}: error: target_batch_size 4000 needs at least")


@pytest.mark.parametrize("where", ["the data folder", "inside it", "above it"])
def test_an_output_dir_overlapping_the_data_is_refused(tmp_path, capsys, where, tiny_digits):
    data = tmp_path / "data"
    data.mkdir()
    train, test = tiny_digits
    train.to_parquet(str(data / "train.parquet"))
    test.to_parquet(str(data / "test.parquet"))
    capsys.readouterr()
    out = {"the data folder": data, "inside it": data / "out", "above it": tmp_path}[where]
    files = [
        "--dataset_name",
        "parquet",
        "--data_files",
        json.dumps({"train": str(data / "train.parquet"), "test": str(data / "*.parquet")}),
    ]
    line = refused(coreset.main, [RECIPE, *FAST, *files, "--output_dir", str(out)], capsys)
    how = {"the data folder": "holds", "inside it": "lies inside", "above it": "holds"}[where]  # (the glob's folder)
    assert f"output_dir {str(out)!r} {how} the data read from" in line
    assert sorted(os.listdir(data)) == ["test.parquet", "train.parquet"] and not (tmp_path / "data" / "out").exists()
    by_name = [RECIPE, *FAST, "--dataset_name", str(data), "--output_dir"]  # a folder given by name
    assert "lies inside the data read from" in refused(coreset.main, [*by_name, str(data / "out")], capsys)
    assert f"{str(data)!r} is the data read from" in refused(coreset.main, [*by_name, str(data)], capsys)
    metrics = coreset.main([RECIPE, *FAST, *files, "--output_dir", str(tmp_path / "apart")])
    assert metrics["n_total"] == 200


@pytest.mark.parametrize(
    "main, argv, says",
    [
        (coreset.main, [RECIPE, *FAST, "--text_column", "words"], "text_column is set, but the models read image"),
        (
            coreset.main,
            [str(REPO / "recipes" / "quickstart_text.yaml"), *FAST, "--proxy", "fasttext", "--image_column", "img"],
            "image_column is set, but the models read text",
        ),
        (
            active.main,
            [ACTIVE_RECIPE, *ACTIVE_FAST, "--finish", "true"],
            "finish: labelling-session key(s), but the training split",
        ),
        (active.main, [ACTIVE_RECIPE, *ACTIVE_FAST, "--class_names", "a,b"], "class_names: labelling-session key(s)"),
    ],
)
def test_keys_a_run_would_ignore_are_refused(tmp_path, capsys, main, argv, says):
    out = tmp_path / "out"
    assert says in refused(main, [*argv, "--output_dir", str(out)], capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "record, job",
    [
        ("metrics.json", "active"),  # a finished active run: refused even with overwrite_output_dir
        ("checkpoints/run.json", "active"),  # an unfinished one
        ("labelling", "active"),  # a labelling session
        ("metrics.json", "coreset"),
        ("checkpoints/run.json", "coreset"),
    ],
)
def test_one_output_dir_never_holds_two_kinds_of_run(tmp_path, capsys, record, job):
    from svp_hf.active.labelling import state_path

    out = tmp_path / "out"
    path = state_path(str(out)) if record == "labelling" else str(out / record)
    os.makedirs(os.path.dirname(path))
    with open(path, "w") as f:
        json.dump({"job": job}, f)
    before = sorted(p for p in out.rglob("*"))
    other = coreset if job == "active" else active
    main, argv = (coreset.main, [RECIPE, *FAST]) if other is coreset else (active.main, [ACTIVE_RECIPE, *ACTIVE_FAST])
    line = refused(main, [*argv, "--output_dir", str(out), "--overwrite_output_dir", "true"], capsys)
    assert f"holds a run of svp_hf.{job}" in line and f"a {other.JOB.name} run cannot share it" in line
    assert sorted(p for p in out.rglob("*")) == before


# --- one run at a time on an output_dir ------------------------------------------------------------------------------


def test_a_locked_output_dir_refuses_a_second_run_until_its_holder_is_gone(tmp_path, capsys):
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # another run, working in out
        [
            sys.executable,
            "-c",
            "import sys, time, filelock; held = filelock.FileLock(sys.argv[1], timeout=0); held.acquire(); "
            "print('held', flush=True); time.sleep(600)",
            str(out / ".svp-lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        line = refused(coreset.main, [RECIPE, "--output_dir", str(out), *FAST], capsys)
        assert f"output_dir {str(out)!r} is in use by another svp_hf run (it holds .svp-lock)" in line
        assert os.listdir(out) == [".svp-lock"]  # nothing of its own written, the other run's lock untouched
    finally:
        holder.send_signal(signal.SIGKILL)  # killed: its file stays, its OS lock goes with it
        holder.wait(timeout=60)
    assert (out / ".svp-lock").exists()
    assert coreset.main([RECIPE, "--output_dir", str(out), *FAST])["n_selected"] == 100
    assert ".svp-lock" not in os.listdir(out) and (out / "metrics.json").is_file()  # its own lock went with it


@pytest.mark.slow
def test_two_runs_at_once_on_one_output_dir(tmp_path):
    import signal
    import subprocess
    import time

    from .conftest import cli

    out = tmp_path / "out"
    first = subprocess.Popen(cli(out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (out / ".svp-lock").exists():
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    # Paused while the second starts (its imports take seconds): a first run that finished in the meantime would have
    # released the lock, and the second would rightly run. A stopped process keeps its OS lock.
    first.send_signal(signal.SIGSTOP)
    try:
        second = subprocess.run(cli(out), cwd=REPO, capture_output=True, text=True, timeout=600)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2 and "is in use by another svp_hf run" in second.stderr, second.stderr[-2000:]
    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    assert json.loads((out / "metrics.json").read_text())["n_selected"] == 150
    assert ".svp-lock" not in os.listdir(out)


# --- pre-flight state, checkpoints and resume ------------------------------------------------------------------------


def test_a_failed_preflight_leaves_nothing_that_blocks_the_fixed_rerun(tmp_path):
    first = tmp_path / "first"
    coreset.main([RECIPE, "--output_dir", str(first), *FAST, "--keep_checkpoints", "true"])
    out = tmp_path / "out"
    wrong = [
        RECIPE,
        "--output_dir",
        str(out),
        *FAST,
        "--proxy",
        "resnet56",
        "--proxy_checkpoint",
        str(first / "checkpoints" / "proxy"),
    ]
    with pytest.raises(SystemExit) as err:
        coreset.main(wrong)
    assert err.value.code == 2
    assert not (out / "checkpoints").exists()
    fixed = [RECIPE, "--output_dir", str(out), *FAST, "--proxy_checkpoint", str(first / "checkpoints" / "proxy")]
    metrics = coreset.main(fixed)
    assert metrics["proxy_checkpoint"] and metrics["proxy_epochs"] == 1  # what the checkpoint trained


def test_an_error_after_the_checkpoints_are_set_up_removes_them_when_nothing_was_done(tmp_path, monkeypatch):
    def refuses(*args, **kwargs):
        raise SVPConfigError("found late")

    monkeypatch.setattr(orchestrator, "train_and_score", refuses)
    out = tmp_path / "out"
    with pytest.raises(SystemExit):
        coreset.main([RECIPE, "--output_dir", str(out), *FAST])
    assert not (out / "checkpoints").exists()


def test_overwrite_output_dir_discards_checkpoints_of_a_run_with_other_settings(tmp_path):
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "run.json").write_text(json.dumps({"seed": 12345}))
    (out / "checkpoints" / "scores").mkdir()
    with pytest.raises(SystemExit) as err:
        coreset.main([RECIPE, "--output_dir", str(out), *FAST, "--overwrite_output_dir", "false"])
    assert err.value.code == 2  # resume is the default: other settings are refused...
    metrics = coreset.main([RECIPE, "--output_dir", str(out), *FAST, "--overwrite_output_dir", "true"])
    assert metrics["n_selected"] == 100  # ...unless overwrite_output_dir says to start over


def test_the_recipe_is_saved_and_reproduces_the_run(tmp_path):
    out = tmp_path / "out"
    first = coreset.main([RECIPE, "--output_dir", str(out), *FAST, "--hub_token", SECRET])
    saved = yaml.safe_load((out / "recipe.yaml").read_text())
    assert "hub_token" not in saved and "output_dir" not in saved and saved["proxy_epochs"] == 1
    again = coreset.main([str(out / "recipe.yaml"), "--output_dir", str(tmp_path / "again")])
    a = datasets.load_dataset(str(out / "dataset"))["train"]["svp_index"]
    b = datasets.load_dataset(str(tmp_path / "again" / "dataset"))["train"]["svp_index"]
    assert a == b and first["n_selected"] == again["n_selected"]


def test_the_summary_names_every_output(tmp_path, capsys):
    out = tmp_path / "out"
    coreset.main([RECIPE, "--output_dir", str(out), *FAST])
    printed = capsys.readouterr().out
    for name in ("dataset", "report.md", "metrics.json", "recipe.yaml"):
        assert os.path.join(str(out), name) in printed
    assert "kept 100 of 200 rows" in printed


def test_active_runs_resume_after_the_last_finished_round(tmp_path, monkeypatch):
    reference = active.main([ACTIVE_RECIPE, "--output_dir", str(tmp_path / "ref"), *ACTIVE_FAST])

    from svp_hf.active import loop as active_learning

    real_round = active_learning.selection_round
    calls = []

    def killed_in_round_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_round(*args, **kwargs)

    out = tmp_path / "out"
    monkeypatch.setattr(active_learning, "selection_round", killed_in_round_2)
    with pytest.raises(KeyboardInterrupt):
        active.main([ACTIVE_RECIPE, "--output_dir", str(out), *ACTIVE_FAST])
    assert os.listdir(out / "checkpoints" / "active" / "proxy") == ["round_0001"]

    calls.clear()
    monkeypatch.setattr(active_learning, "selection_round", lambda *a, **k: (calls.append(1), real_round(*a, **k))[1])
    resumed = active.main([ACTIVE_RECIPE, "--output_dir", str(out), *ACTIVE_FAST])
    assert len(calls) == 1  # only round 2 ran again
    sizes = ("round", "train_size", "labelled_size", "n_selected")
    assert [{k: r[k] for k in sizes} for r in resumed["rounds"]["proxy"]] == [
        {k: r[k] for k in sizes} for r in reference["rounds"]["proxy"]
    ]
    a = datasets.load_dataset(str(tmp_path / "ref" / "dataset"))["train"]
    b = datasets.load_dataset(str(out / "dataset"))["train"]
    assert a["svp_index"] == b["svp_index"] and a["svp_round"] == b["svp_round"]
    assert not (out / "checkpoints").exists()


def test_active_runs_publish_through_the_same_pipeline(tmp_path, monkeypatch):
    pushed = []

    def fake_push(folder, repo_id, **kwargs):
        pushed.append((folder, repo_id, kwargs))
        return f"https://huggingface.co/datasets/{repo_id}"

    monkeypatch.setattr(pipeline, "push_to_hub", fake_push)
    monkeypatch.setattr(pipeline, "check_hub_target", lambda repo_id, **kwargs: ("me", repo_id))
    out = tmp_path / "out"
    metrics = active.main(
        [
            ACTIVE_RECIPE,
            "--output_dir",
            str(out),
            *ACTIVE_FAST,
            "--push_to_hub",
            "true",
            "--hub_dataset_id",
            "me/active-digits",
            "--hub_token",
            SECRET,
        ]
    )
    assert pushed and pushed[0][0] == str(out) and pushed[0][1] == "me/active-digits"
    assert metrics["hub_url"].endswith("me/active-digits")
    assert files_containing(out, SECRET) == []


def test_device_settings_a_cpu_cannot_honour_warn():
    from types import SimpleNamespace

    import torch

    cpu = dict(is_main_process=True, device=torch.device("cpu"), num_processes=1)
    with pytest.warns(UserWarning, match="'fp16' has no effect on a CPU"):
        pipeline.check_device(SimpleNamespace(**cpu, mixed_precision="fp16"))
    with pytest.warns(UserWarning, match="processes on a CPU-only machine"):
        pipeline.check_device(
            SimpleNamespace(**{**cpu, "num_processes": 4 * (os.cpu_count() or 1)}, mixed_precision="no")
        )


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_key(flag, capsys):
    with pytest.raises(SystemExit) as err:
        coreset.main([flag])
    assert err.value.code == 0
    out = capsys.readouterr().out
    assert "--strategy" in out and "--coverage_beta" in out and "--auto_epochs" in out
