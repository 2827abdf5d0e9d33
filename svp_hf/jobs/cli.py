"""``svp-hf``: the command-line front end (also ``python -m svp_hf``).

    svp-hf coreset RECIPE.yaml [--key value ...]    # core-set selection via proxy (python -m svp_hf.coreset)
    svp-hf active RECIPE.yaml [--key value ...]     # active learning via proxy (python -m svp_hf.active)
    svp-hf launch [ACCELERATE LAUNCH OPTIONS] JOB RECIPE.yaml [--key value ...]   # several processes or GPUs
    svp-hf recipes                                  # the recipes shipped with svp_hf
    svp-hf --version

RECIPE.yaml is a path, or the name of a recipe shipped with svp_hf (``quickstart``, ``recipes/cifar10.yaml``).
Exit codes: 0 done, 2 bad input (recipe, arguments, data), 3 a run that failed while working.

``svp-hf launch`` is ``accelerate launch -m svp_hf.JOB`` with these exit codes kept: ``accelerate launch`` turns any
failure of its processes into its own traceback (repeating their output) and exit code 1, so that the job's one-line
error drowns. Here the recipe and flags are checked once, before any process starts, and the exit code of the first
process that failed is the launch's, with its one line and without the launcher's traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import subprocess
import sys
from types import ModuleType
from typing import Optional, Sequence

from ..config.recipe_files import bundled_recipes
from ..errors import EXIT_CONFIG, EXIT_RUNTIME, SVPConfigError
from ..version import __version__

# Each job's module, imported only when that job runs: ``svp-hf --help``, ``--version`` and ``recipes`` answer without
# importing torch, timm or transformers.
JOBS = {
    "coreset": ("svp_hf.jobs.coreset", "core-set selection via proxy: train the proxy, score, keep a fraction"),
    "active": ("svp_hf.jobs.active", "active learning via proxy: rounds of selector training, scoring and labelling"),
}
LAUNCH_USAGE = "svp-hf launch [accelerate launch options] JOB RECIPE.yaml [--key value ...]"


def job_module(name: str) -> ModuleType:
    """The module of the job `name` (one of :data:`JOBS`), imported on first use."""
    return importlib.import_module(JOBS[name][0])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svp-hf",
        description="Selection via Proxy (Coleman et al., ICLR 2020) for the Hugging Face ecosystem.",
        epilog=(
            "Run 'svp-hf JOB RECIPE.yaml [--key value ...]'; each job's recipe keys are listed by 'svp-hf JOB --help'. "
            f"Recipes shipped with svp_hf (usable by name): {', '.join(bundled_recipes()) or 'none'}. "
            "Exit codes: 2 bad input, 3 a run that failed while working."
        ),
    )
    parser.add_argument("--version", action="version", version=f"svp-hf {__version__}")
    jobs = parser.add_subparsers(dest="job", metavar="JOB")
    for name, (module, text) in JOBS.items():
        jobs.add_parser(name, help=f"{text} (python -m {module})", add_help=False)
    jobs.add_parser(
        "launch",
        add_help=False,
        help=f"run a job in several processes or on GPUs: '{LAUNCH_USAGE}' (accelerate launch -m svp_hf.JOB, exit codes kept)",
    )
    jobs.add_parser("recipes", help="list the recipes shipped with svp_hf")
    return parser


# --- svp-hf launch ----------------------------------------------------------------------------------------------------


def launched_job(name: Optional[str]) -> str:
    """The job a launch names (``coreset`` or ``svp_hf.coreset``); a clear error for anything else."""
    job = (name or "")[len("svp_hf.") :] if (name or "").startswith("svp_hf.") else name
    if job not in JOBS:
        raise SVPConfigError(f"svp-hf launch runs a job ({', '.join(JOBS)}), got {name!r}; usage: {LAUNCH_USAGE}")
    return job


def failure_code(error: BaseException) -> int:
    """The exit code of the first process of a launch that failed: from the single-process launcher's
    ``CalledProcessError``, or torchrun's ``ChildFailedError`` (a process killed by signal N counts 128 + N, as a
    shell reports it)."""
    if isinstance(error, subprocess.CalledProcessError):
        code = error.returncode
    else:
        _, failure = error.get_first_failure()
        code = failure.exitcode
    return code if code >= 0 else 128 - code


def failure_line(job: str, code: int) -> Optional[str]:
    """The line to print for a failed launch, or ``None`` when the job printed its own (it exits 2 or 3 after it)."""
    if code in (EXIT_CONFIG, EXIT_RUNTIME):
        return None
    if code > 128 and (code - 128) in {s.value for s in signal.Signals}:
        return f"svp_hf.{job}: a process was stopped by {signal.Signals(code - 128).name} (exit code {code})"
    return f"svp_hf.{job}: a process failed with exit code {code} (its error is printed above)"


def launch(argv: Sequence[str]) -> int:
    """``svp-hf launch [accelerate launch options] JOB RECIPE.yaml [--key value ...]``: check the job's recipe and
    flags here, before any process starts, then run ``accelerate launch -m svp_hf.JOB RECIPE.yaml ...``. Returns 0,
    or the exit code of the first process that failed."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    from ..config.parser import parse_args
    from .pipeline import check_output_apart

    args = launch_command_parser().parse_args(list(argv))
    try:
        job = launched_job(args.training_script)
        spec = job_module(job).JOB
        instances = parse_args(
            list(args.training_script_args),
            spec.dataclass_types,
            keys=spec.keys,
            prog=f"svp-hf launch {job}",
            job=spec.prog,
        )
        check_output_apart(*instances)
    except SVPConfigError as err:
        print(f"svp-hf launch: error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    args.module, args.training_script = True, f"svp_hf.{job}"
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its failure report is replaced below
    try:
        launch_command(args)
    except (subprocess.CalledProcessError, ChildFailedError) as error:
        code = failure_code(error)
        line = failure_line(job, code)
        if line:
            print(line, file=sys.stderr)
        return code
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv and argv[0] in JOBS:  # everything after the job is the job's own command line
        job_module(argv[0]).main(argv[1:])
        return 0
    if argv and argv[0] == "launch":
        return launch(argv[1:])
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.job == "recipes":
        print("\n".join(bundled_recipes()))
    return 0


__all__ = ["main", "launch", "JOBS", "job_module"]
