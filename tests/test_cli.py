"""svp_hf.jobs.cli: the ``svp-hf`` command and ``python -m svp_hf``, running bundled recipes by name, and what the wheel
ships (recipes, LICENSE, py.typed, the command)."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

import svp_hf
from svp_hf.config.recipe_files import bundled_recipes

from .conftest import REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def run(*args, cwd=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "svp_hf", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


def test_python_m_svp_hf_help_version_and_errors(tmp_path):
    shown = run("--help", cwd=tmp_path)
    assert shown.returncode == 0 and "usage: svp-hf" in shown.stdout
    assert "coreset" in shown.stdout and "active" in shown.stdout and "quickstart" in shown.stdout
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.strip() == f"svp-hf {svp_hf.__version__}"
    assert run(cwd=tmp_path).returncode == 2  # no job: the help, as an error
    unknown = run("prune", cwd=tmp_path)
    assert unknown.returncode == 2 and "invalid choice: 'prune'" in unknown.stderr
    missing = run("coreset", "no_such_recipe.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "recipe 'no_such_recipe.yaml' not found" in missing.stderr
    assert "quickstart" in missing.stderr  # names the recipes that ship
    listed = run("recipes", cwd=tmp_path)
    assert listed.returncode == 0 and listed.stdout.split() == bundled_recipes()


def test_help_version_and_recipes_answer_without_importing_a_job(tmp_path):
    code = (
        "import sys\n"
        "from svp_hf.jobs.cli import main\n"
        "for argv in (['--version'], ['--help'], ['recipes']):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as done:\n"
        "        assert done.code == 0, argv\n"
        "heavy = sorted(m for m in ('torch', 'timm', 'svp_hf.jobs.coreset', 'svp_hf.jobs.active') if m in sys.modules)\n"
        "print('imported:', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.splitlines()[-1] == "imported: []"


def test_a_bundled_recipe_runs_by_name_away_from_the_repository(tmp_path):
    assert not (tmp_path / "recipes").exists()
    done = run(
        "coreset",
        "recipes/quickstart.yaml",
        "--output_dir",
        "out",
        "--proxy_epochs",
        "1",
        "--max_train_samples",
        "120",
        "--strategy",
        "top",
        "--target",
        "",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "metrics.json").is_file()
    shutil.rmtree(tmp_path / "out")
    done = run(
        "active",
        "active_quickstart",
        "--output_dir",
        "out",
        "--max_train_samples",
        "300",
        "--budgets",
        "60",
        "80",
        "--initial_size",
        "40",
        "--proxy_epochs",
        "1",
        "--selector",
        "proxy",
        "--target",
        "resnet20",
        "--target_epochs",
        "1",
        "--eval_each_round",
        "false",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "out" / "rounds.json").is_file()


def test_the_wheel_ships_recipes_license_typing_and_the_command(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "recipes", source / "recipes")
    shutil.copytree(REPO / "svp_hf", source / "svp_hf", symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        pytest.skip(f"the build backend cannot run offline here: {built.stderr[-500:]}")
    (wheel,) = (tmp_path / "dist").glob("svp_hf-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        recipes = {os.path.basename(n) for n in names if n.startswith("svp_hf/recipes/")}
        assert recipes == {p.name for p in (REPO / "recipes").glob("*.yaml")}
        assert (
            "svp_hf/py.typed" in names
            and "svp_hf/publish/templates/report.md" in names
            and "svp_hf/publish/metrics/rank_agreement/rank_agreement.py" in names
        )
        (license_name,) = [n for n in names if n.endswith("/LICENSE") and ".dist-info/" in n]
        assert z.read(license_name) == (REPO / "LICENSE").read_bytes()
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "svp-hf = svp_hf.jobs.cli:main" in z.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert "Apache-2.0" in z.read(metadata).decode()


def test_the_license_is_the_full_apache_2_text():
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    )
    assert len(text.splitlines()) > 190


@pytest.mark.skipif(shutil.which("svp-hf") is None, reason="the svp-hf command is not installed in this environment")
def test_the_installed_svp_hf_command():
    shown = subprocess.run(["svp-hf", "--version"], env=ENV, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and shown.stdout.startswith("svp-hf ")


# --- svp-hf launch: accelerate launch with the exit codes kept ------------------------------------------------------


def launched(*args, processes=1, port=29623):
    mode = ["--multi_gpu", "--main_process_port", str(port)] if processes > 1 else []
    options = [
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]
    return run("launch", *options, *mode, *args)


@pytest.mark.slow
def test_launch_checks_the_recipe_before_any_process_starts(tmp_path):
    done = launched("coreset", "recipes/quickstart.yaml", "--output_dir", str(tmp_path / "out"), "--fraction", "2")
    assert done.returncode == 2
    assert done.stderr.strip() == "svp-hf launch: error: fraction must be in (0, 1], got 2.0"
    assert not (tmp_path / "out").exists()
    assert run("launch", "--num_processes", "1", "prune", "recipes/quickstart.yaml").returncode == 2


@pytest.mark.slow
@pytest.mark.parametrize("processes", [1, 2])
def test_a_job_that_fails_under_launch_exits_with_its_own_code_and_line(tmp_path, processes):
    missing = tmp_path / "no_such_folder"
    done = launched(
        "coreset",
        "recipes/quickstart.yaml",
        "--output_dir",
        str(tmp_path / "out"),
        "--dataset_name",
        str(missing),
        processes=processes,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    line = f"svp_hf.coreset: error: could not load dataset {str(missing)!r}"
    assert done.stderr.count(line) == 1, done.stderr[-3000:]  # once, whatever the number of processes
    for launcher_noise in ("Traceback", "CalledProcessError", "ChildFailedError"):
        assert launcher_noise not in done.stderr


def test_a_launch_reports_the_first_failed_process():
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError, ProcessFailure

    from svp_hf.jobs.cli import failure_code, failure_line

    assert failure_code(subprocess.CalledProcessError(3, ["python"])) == 3
    killed = ProcessFailure(local_rank=1, pid=11, exitcode=-9, error_file="")
    first = ProcessFailure(local_rank=0, pid=10, exitcode=2, error_file="")
    first.timestamp, killed.timestamp = 1, 2
    assert failure_code(ChildFailedError("svp_hf.coreset", {0: first, 1: killed})) == 2
    assert failure_code(ChildFailedError("svp_hf.coreset", {1: killed})) == 137
    assert failure_line("coreset", 2) is None and failure_line("coreset", 3) is None  # the job printed its own line
    assert failure_line("coreset", 137) == "svp_hf.coreset: a process was stopped by SIGKILL (exit code 137)"
    assert "exit code 1" in failure_line("coreset", 1)
