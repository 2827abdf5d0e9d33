"""``svp-hf``: the command-line front end (also ``python -m svp_hf``).

    svp-hf coreset RECIPE.yaml [--key value ...]    # core-set selection via proxy (python -m svp_hf.coreset)
    svp-hf active RECIPE.yaml [--key value ...]     # active learning via proxy (python -m svp_hf.active)
    svp-hf recipes                                  # the recipes shipped with svp_hf
    svp-hf --version

RECIPE.yaml is a path, or the name of a recipe shipped with svp_hf (``quickstart``, ``recipes/cifar10.yaml``).
Exit codes: 0 done, 2 bad input (recipe, arguments, data), 3 a run that failed while working.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from . import active, coreset
from .recipe_files import bundled_recipes
from .version import __version__

JOBS = {
    "coreset": (coreset, "core-set selection via proxy: train the proxy, score, keep a fraction"),
    "active": (active, "active learning via proxy: rounds of selector training, scoring and labelling"),
}


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
        jobs.add_parser(name, help=f"{text} (python -m {module.__name__})", add_help=False)
    jobs.add_parser("recipes", help="list the recipes shipped with svp_hf")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    if argv and argv[0] in JOBS:  # everything after the job is the job's own command line
        JOBS[argv[0]][0].main(argv[1:])
        return 0
    if not argv:
        parser.print_help(sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.job == "recipes":
        print("\n".join(bundled_recipes()))
    return 0


__all__ = ["main", "JOBS"]
