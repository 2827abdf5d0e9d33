"""Value checks on recipe settings: pure functions that the recipe dataclasses and the other layers reuse
(fractions, schedules, seeds, split names, sizes)."""

from __future__ import annotations

import re
from typing import List, Optional, Sequence

from datasets.utils.py_utils import convert_file_size_to_int

from ..errors import SVPConfigError
from .coercion import _to_float

# Parquet shards of a split are at most this large, as in ``datasets.Dataset.push_to_hub``.
DEFAULT_MAX_SHARD_SIZE = "500MB"


def parse_size(value, name: str = "max_shard_size") -> int:
    """Bytes in a size such as ``"500MB"`` or ``2**20``; a clear error naming the setting otherwise."""
    given = value
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # a number of bytes, given as text (the recipe types every size as a string)
    if isinstance(value, float):
        value = int(value) if value.is_integer() else None  # a whole number of bytes (inf and nan are not)
    try:
        size = convert_file_size_to_int(value) if value is not None and not isinstance(value, bool) else None
    except (TypeError, ValueError, AttributeError):
        size = None
    if not isinstance(size, int) or size <= 0:
        raise SVPConfigError(f"{name} must be a positive size such as '500MB', got {given!r}")
    return size


def check_fraction(fraction: float) -> float:
    fraction = _to_float("fraction", fraction)
    if not (0.0 < fraction <= 1.0):
        raise SVPConfigError(f"fraction must be in (0, 1], got {fraction}")
    return fraction


def check_schedule(pool_size: Optional[int], initial_size: int, budgets: Sequence[int]) -> List[int]:
    """Check an active-learning schedule (against a pool of `pool_size`, when known); returns the budgets as ints.

    `budgets` are the labelled-set sizes after each round: strictly increasing, above `initial_size` and at most
    `pool_size`.
    """
    initial_size = int(initial_size)
    if initial_size < 1:
        raise SVPConfigError(f"initial_size must be at least 1, got {initial_size}")
    budgets = [int(b) for b in budgets or []]
    if not budgets:
        raise SVPConfigError("budgets must list the labelled-set size after each round, e.g. [5000, 10000]")
    if budgets[0] <= initial_size:
        raise SVPConfigError(
            f"budgets must be larger than initial_size ({initial_size}): the first budget, {budgets[0]}, adds no example"
        )
    for before, after in zip(budgets, budgets[1:]):
        if after <= before:
            raise SVPConfigError(f"budgets must be strictly increasing, got {before} then {after} in {budgets}")
    if pool_size is not None and budgets[-1] > pool_size:
        raise SVPConfigError(f"the last budget, {budgets[-1]}, is larger than the pool ({pool_size} examples)")
    return budgets


def check_coverage_beta(beta: Optional[float], fraction: Optional[float] = None) -> Optional[float]:
    """`beta` as a float in [0, 1) (``None`` stays ``None``: it follows the fraction); with `fraction`, also checks that
    the rows left after dropping the hardest `beta` share can hold the kept fraction."""
    if beta is None:
        return None
    beta = _to_float("coverage_beta", beta)
    if not 0.0 <= beta < 1.0:
        raise SVPConfigError(f"coverage_beta must be in [0, 1), got {beta}")
    if fraction is not None and float(fraction) > 1.0 - beta + 1e-12:
        raise SVPConfigError(
            f"coverage_beta={beta} drops the hardest {beta:.0%} of rows, which leaves too few to keep fraction={fraction}; "
            f"use a coverage_beta of at most {1.0 - float(fraction):.3g} or a smaller fraction"
        )
    return beta


# Seeds numpy and torch both take.
MAX_SEED = 2**32 - 1


def held_out_split_name(train_split: str) -> str:
    """The name of the evaluation split held out of `train_split` when the evaluation split named is the training
    split itself: a name of its own, so that the pruned split and the held-out one are never written as one."""
    return f"{train_split}_heldout"


def evaluation_split_name(train_split: str, eval_split: Optional[str], percentage: Optional[float]) -> Optional[str]:
    """The evaluation split's name: `eval_split`, or, when it is the training split and `percentage` holds part of
    it out, :func:`held_out_split_name`; a clear error when it is the training split with nothing held out (the
    evaluation would read the training rows, and both splits would be written under one name)."""
    if eval_split is None or eval_split != train_split:
        return eval_split
    if not percentage:
        raise SVPConfigError(
            f"eval_split {eval_split!r} is the training split: set validation_split_percentage to hold part of it out "
            f"for evaluation (written as split {held_out_split_name(train_split)!r}), name another eval_split, or set "
            "eval_split to '' for none"
        )
    return held_out_split_name(train_split)


# The split names ``datasets`` accepts; anything else (a path, "..", a separator) is refused before any work.
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def check_split_name(name: str, role: str = "split") -> str:
    """`name` if it is a plain split name (letters, digits, underscores, dots between them); a clear error otherwise,
    so that no split name can make a file land outside ``output_dir`` (split names become file names there)."""
    if not isinstance(name, str) or not SPLIT_NAME.match(name):
        raise SVPConfigError(
            f"{role} name {name!r} is not a plain split name: use letters, digits and underscores (dots between "
            "them), e.g. 'train', 'validation' or 'test'; a split name cannot be a path"
        )
    return name


def check_seed(seed: int, auto_seeds: int = 1) -> int:
    """`seed` if it is one numpy and torch take, also for `auto`'s candidates (seeded ``seed`` to
    ``seed + auto_seeds - 1``); a clear error otherwise."""
    if auto_seeds > MAX_SEED:
        raise SVPConfigError(f"auto_seeds is too large: {auto_seeds} (each seed trains every candidate again)")
    top = MAX_SEED - (auto_seeds - 1)
    if not 0 <= seed <= top:
        why = (
            f"; auto's {auto_seeds} seeds per candidate run from seed to seed+{auto_seeds - 1}"
            if auto_seeds > 1
            else ""
        )
        raise SVPConfigError(f"seed must be in [0, {top}] (numpy takes seeds up to 2**32-1{why}), got {seed}")
    return seed
