"""The end-to-end account of a selection run: what selection cost against the training it saved.

Selection via Proxy pays off when selecting a subset and training the target on it takes less time than training the
target on all the data (SVP's CIFAR-10 core-set: 2h23m instead of 3h49m, selection about 11% of the full-data
training). A run's account holds, from the stage times it measured:

- ``selection_seconds``: ``auto``'s pre-check (its probes of the target and the proxy, when it ran), proxy training
  (building the proxy included), scoring, ``auto``'s check and the selection itself;
- ``target_seconds``: the target's training on the kept rows;
- ``full_data_seconds``: the target's training on every row, measured when it was trained, else estimated from the
  target's measured seconds per row-epoch times every row and the same epochs (``full_data_estimated``, and
  ``full_data_method`` says how);
- ``speedup``: full data / (selection + target on the subset); below 1, pruning made the run slower;
- ``selection_share``: selection / full data, against ``selection_budget`` (``within_budget``).

Without a target (``svp_hf.prune`` or ``score`` alone) nothing is saved yet: the account is relative to the proxy's own
training (``relative_to: "proxy"``): ``selection_seconds`` is what selection spent beyond training the proxy (scoring
and the check) and ``selection_share`` its share of the proxy's training; ``speedup`` is ``None``.

Everything here is arithmetic on seconds the caller measured: no clock is read, so every figure is reproducible from
``metrics.json``'s ``timings``. :func:`end_to_end` takes those timings as the jobs record them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Mapping, Optional

from .errors import SVPConfigError

# The ``timings`` keys (as svp_hf.coreset records them) that make up selection, and the target's.
SELECTION_STAGES = ("precheck", "proxy_training", "scoring", "auto", "selection")
TARGET_STAGE = "target_training"

# The share of the full-data training that selection may spend by default (SVP's CIFAR-10 core-set spent about 0.11;
# see benchmarks/results/budget_check.json for the check's cost at this budget).
DEFAULT_SELECTION_BUDGET = 0.1

RELATIVE_TO_TARGET = "target"
RELATIVE_TO_PROXY = "proxy"


def check_selection_budget(budget) -> float:
    """`budget` as a float in (0, 1], else a clear :class:`SVPConfigError`."""
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise SVPConfigError(f"selection_budget must be a number in (0, 1], got {budget!r}")
    budget = float(budget)
    if not 0.0 < budget <= 1.0:
        raise SVPConfigError(
            f"selection_budget must be in (0, 1] (the share of the full-data training that selection may spend), got {budget:g}"
        )
    return budget


@dataclass(frozen=True)
class EndToEnd:
    """What selection cost against what it saved (see the module docstring); ``to_dict()`` is ``metrics.json``'s
    ``end_to_end``."""

    relative_to: str
    selection_seconds: float
    target_seconds: Optional[float]
    full_data_seconds: float
    full_data_estimated: bool
    full_data_method: str
    speedup: Optional[float]
    selection_share: float
    selection_budget: Optional[float]
    within_budget: Optional[bool]
    stages: Dict[str, float] = field(default_factory=dict)
    verdict: Optional[str] = None
    note: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def summary_line(self) -> str:
        """One line for the end of a run: the speedup and the selection's share, and the verdict when there is one
        (a verdict on the budget stands in for the share's "over it")."""
        over = self.verdict is None or (self.speedup is not None and self.speedup < 1.0)
        if self.relative_to == RELATIVE_TO_PROXY:
            line = (
                f"selection spent {format_seconds(self.selection_seconds)} beyond the proxy's "
                f"{format_seconds(self.full_data_seconds)} of "
                f"training ({self.selection_share:.2f} of it{_budget_words(self, over)}); no target was trained"
            )
        else:
            line = (
                f"end to end {format_seconds(self.selection_seconds + (self.target_seconds or 0.0))} against "
                f"{format_seconds(self.full_data_seconds)} "
                f"on full data{' (estimated)' if self.full_data_estimated else ''}: {self.speedup:.2f}x; selection "
                f"{self.selection_share:.2f} of full data{_budget_words(self, over)}"
            )
        return line if self.verdict is None else f"{line}. {self.verdict}"


def format_seconds(seconds: float) -> str:
    """Seconds for a message: one decimal from a second up (``"12.3 s"``), two significant digits under it
    (``"0.027 s"``), so that a small budget never reads as ``"0.0 s"``."""
    seconds = float(seconds)
    if seconds == 0.0 or abs(seconds) >= 0.95 or seconds != seconds:
        return f"{seconds:.1f} s"
    return f"{seconds:.2g} s"


def _budget_words(account: EndToEnd, over: bool = True) -> str:
    if account.selection_budget is None:
        return ""
    return f", budget {account.selection_budget:g}{'' if account.within_budget or not over else ', over it'}"


def _seconds(name: str, value: float) -> float:
    value = float(value)
    if not value >= 0.0:  # also refuses NaN
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value}")
    return value


def selection_stages(timings: Mapping[str, float]) -> Dict[str, float]:
    """The selection stages found in `timings` (a job's ``timings``), in :data:`SELECTION_STAGES` order."""
    return {k: _seconds(k, timings[k]) for k in SELECTION_STAGES if timings.get(k) is not None}


def estimate_full_data_seconds(
    target_seconds: float, n_kept: int, n_total: int, epochs: int, checkpoint_seconds: float = 0.0
) -> tuple:
    """``(seconds, method)``: the target's training on all `n_total` rows, from its measured `target_seconds` on
    `n_kept` rows for `epochs` epochs, at the same seconds per row-epoch (the full data trains for the same epochs).
    `checkpoint_seconds` (of `target_seconds`) saved its checkpoints, which do not grow with the rows: they are counted
    once, as the full-data training would save at least as much (a longer training saves as often or more)."""
    target_seconds = _seconds("target_seconds", target_seconds)
    checkpoint_seconds = min(_seconds("checkpoint_seconds", checkpoint_seconds), target_seconds)
    n_kept, n_total, epochs = int(n_kept), int(n_total), int(epochs)
    if n_kept < 1 or n_total < n_kept or epochs < 1:
        raise ValueError(
            f"need 1 <= n_kept <= n_total and epochs >= 1, got n_kept={n_kept}, n_total={n_total}, epochs={epochs}"
        )
    trained = target_seconds - checkpoint_seconds
    per_row_epoch = trained / (n_kept * epochs)
    seconds = per_row_epoch * n_total * epochs + checkpoint_seconds
    method = (
        f"estimated: the target's measured {per_row_epoch:.4g} s per row-epoch ({format_seconds(trained)} for {n_kept} "
        f"rows x {epochs} epochs) x {n_total} rows x {epochs} epochs"
    )
    if checkpoint_seconds:
        method += f", plus the {format_seconds(checkpoint_seconds)} its checkpoints took"
    return seconds, method


def target_account(
    selection: Mapping[str, float],
    target_seconds: float,
    *,
    n_total: int,
    n_kept: int,
    epochs: Optional[int] = None,
    full_data_seconds: Optional[float] = None,
    selection_budget: Optional[float] = None,
    target_checkpoint_seconds: float = 0.0,
) -> EndToEnd:
    """The account of a run that trained a target on `n_kept` of `n_total` rows for `epochs` epochs in
    `target_seconds` (of which `target_checkpoint_seconds` saving its checkpoints), after the selection stages
    `selection` (stage -> seconds). `full_data_seconds`: the target measured on all rows, when it was trained; else it
    is estimated (:func:`estimate_full_data_seconds`, which needs `epochs`)."""
    stages = {k: _seconds(k, v) for k, v in selection.items()}
    target_seconds = _seconds("target_seconds", target_seconds)
    if full_data_seconds is None:
        if epochs is None:
            raise ValueError("epochs is needed to estimate the full-data training (or pass full_data_seconds)")
        full, method = estimate_full_data_seconds(target_seconds, n_kept, n_total, epochs, target_checkpoint_seconds)
        estimated = True
    else:
        full, estimated = _seconds("full_data_seconds", full_data_seconds), False
        method = f"measured: the target trained on all {int(n_total)} rows"
    spent = sum(stages.values())
    pruned = spent + target_seconds
    speedup = full / pruned if pruned > 0 else None
    share = spent / full if full > 0 else float("inf")
    within = None if selection_budget is None else share <= float(selection_budget)
    verdict = None
    if speedup is not None and speedup < 1.0:
        saved = full - target_seconds
        verdict = (
            f"Pruning did not pay: selection took {format_seconds(spent)}, more than the {format_seconds(saved)} that "
            f"training on "
            f"{int(n_kept)} of {int(n_total)} rows saved; training on all the data would have been {1 / speedup:.2f}x "
            "faster end to end."
        )
    elif within is False and selection_budget is not None:
        verdict = (
            f"Selection spent {share:.2f} of the full-data training, over its budget of {float(selection_budget):g}."
        )
    return EndToEnd(
        relative_to=RELATIVE_TO_TARGET,
        selection_seconds=spent,
        target_seconds=target_seconds,
        full_data_seconds=full,
        full_data_estimated=estimated,
        full_data_method=method,
        speedup=speedup,
        selection_share=share,
        selection_budget=selection_budget,
        within_budget=within,
        stages=stages,
        verdict=verdict,
        note="selection (auto's pre-check, proxy training, scoring, auto's check, selection) and the target on the "
        "kept rows, against the target on every row",
    )


def proxy_account(
    proxy_seconds: float, beyond: Mapping[str, float], *, selection_budget: Optional[float] = None
) -> EndToEnd:
    """The account of a run without a target: the selection stages `beyond` the proxy's training (scoring, the
    check, the selection: stage -> seconds) against the proxy's own training, `proxy_seconds`."""
    proxy_seconds = _seconds("proxy_seconds", proxy_seconds)
    stages = {k: _seconds(k, v) for k, v in beyond.items()}
    spent = sum(stages.values())
    share = spent / proxy_seconds if proxy_seconds > 0 else float("inf")
    within = None if selection_budget is None else share <= float(selection_budget)
    verdict = None
    if within is False and selection_budget is not None:
        verdict = (
            f"Selection spent {share:.2f} of the proxy's own training beyond it, over its budget of "
            f"{float(selection_budget):g}."
        )
    return EndToEnd(
        relative_to=RELATIVE_TO_PROXY,
        selection_seconds=spent,
        target_seconds=None,
        full_data_seconds=proxy_seconds,
        full_data_estimated=False,
        full_data_method="measured: the proxy's own training on every row",
        speedup=None,
        selection_share=share,
        selection_budget=selection_budget,
        within_budget=within,
        stages={"proxy_training": proxy_seconds, **stages},
        verdict=verdict,
        note="no target was trained: relative to the proxy's own training; selection_seconds counts what selection "
        "spent beyond it (scoring, auto's check, selection)",
    )


def end_to_end(
    timings: Mapping[str, float],
    *,
    n_total: int,
    n_kept: int,
    target_epochs: Optional[int] = None,
    full_data_seconds: Optional[float] = None,
    selection_budget: Optional[float] = None,
    target_checkpoint_seconds: float = 0.0,
) -> EndToEnd:
    """The account from a job's ``timings`` (``proxy_training``, ``scoring``, ``auto``, ``selection`` and, when a
    target was trained, ``target_training``, of which `target_checkpoint_seconds` saved its checkpoints): relative to
    the target when it was trained (`target_epochs` needed unless `full_data_seconds` was measured), else to the
    proxy's own training. A proxy loaded from a checkpoint
    (no ``proxy_training``) with no target has nothing to be relative to: a ``ValueError``."""
    stages = selection_stages(timings)
    if timings.get(TARGET_STAGE) is not None:
        return target_account(
            stages,
            timings[TARGET_STAGE],
            n_total=n_total,
            n_kept=n_kept,
            epochs=target_epochs,
            full_data_seconds=full_data_seconds,
            selection_budget=selection_budget,
            target_checkpoint_seconds=target_checkpoint_seconds,
        )
    if stages.get("proxy_training") is None:
        raise ValueError("no target was trained and the proxy's training was not timed: the account has no reference")
    proxy_seconds = stages.pop("proxy_training")
    return proxy_account(proxy_seconds, stages, selection_budget=selection_budget)


def run_account(
    timings: Mapping[str, float],
    *,
    n_total: int,
    n_kept: int,
    target_epochs: Optional[int] = None,
    selection_budget: Optional[float] = None,
    target_checkpoint_seconds: float = 0.0,
) -> Optional[Dict[str, Any]]:
    """What a job or the Python API records as ``end_to_end``: :func:`end_to_end`'s account as a dict with its
    ``summary`` line, or ``None`` when the run has no reference to measure selection against (a proxy loaded from a
    checkpoint and no target)."""
    if timings.get(TARGET_STAGE) is None and timings.get("proxy_training") is None:
        return None
    account = end_to_end(
        timings,
        n_total=n_total,
        n_kept=n_kept,
        target_epochs=target_epochs,
        selection_budget=selection_budget,
        target_checkpoint_seconds=target_checkpoint_seconds,
    )
    return {**account.to_dict(), "summary": account.summary_line()}


__all__ = [
    "EndToEnd",
    "DEFAULT_SELECTION_BUDGET",
    "check_selection_budget",
    "run_account",
    "SELECTION_STAGES",
    "TARGET_STAGE",
    "RELATIVE_TO_TARGET",
    "RELATIVE_TO_PROXY",
    "selection_stages",
    "estimate_full_data_seconds",
    "target_account",
    "proxy_account",
    "end_to_end",
    "format_seconds",
]
