"""The repository's habits, checked as .pre-commit-config.yaml checks them: ruff's lint and format over the code, and
mypy over the public API and the orchestrator (``[tool.mypy] files`` in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_ruff_finds_nothing_to_fix():
    pytest.importorskip("ruff")
    done = run_tool("ruff", "check", ".")
    assert done.returncode == 0, f"ruff check . (fix with: ruff check --fix .):\n{done.stdout}{done.stderr}"


def test_the_code_is_formatted_by_ruff():
    pytest.importorskip("ruff")
    done = run_tool("ruff", "format", "--check", ".")
    assert done.returncode == 0, f"ruff format --check . (fix with: ruff format .):\n{done.stdout}{done.stderr}"


@pytest.mark.slow
def test_the_public_api_type_checks():
    pytest.importorskip("mypy")
    done = run_tool("mypy")
    assert done.returncode == 0, f"mypy (files in pyproject.toml's [tool.mypy]):\n{done.stdout}{done.stderr}"
