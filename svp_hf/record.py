"""The record of a run: the typed contract between the jobs (and the Python API), which write it as
``metrics.json``, and what reads it back (:mod:`svp_hf.publish.report`, :mod:`svp_hf.publish.card`, :mod:`svp_hf.publish.output`).

A :class:`RunRecord` is a ``TypedDict``: at run time the plain JSON object ``metrics.json`` holds (so a run's record
reads back from disk unchanged, and ``json.load`` gives one), to a type checker the keys and their types. Every key is
optional (``total=False``): a core-set run, a streamed one and an active-learning run each fill their own.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Optional, TypedDict, Union

ACTIVE_JOB = "active"
CORESET_JOB = "coreset"
# The keys of the JSON a table's ``info.description`` holds: where a score table's scores came from
# (``DynamicsRecorder.scores`` writes it), and how a subset returned by ``svp_hf.select``/``prune`` was selected.
SCORES_METADATA_KEY = "svp_hf_scores"
SELECTION_METADATA_KEY = "svp_hf_selection"


class RunRecord(TypedDict, total=False):
    # What made the run, and the data it read (svp_hf.jobs.pipeline.run_provenance).
    svp_hf_version: str
    command: Optional[str]
    job: str
    recipe_file: str
    recipe: Dict[str, Any]
    source: Dict[str, Any]
    dataset_name: Optional[str]
    train_split: str
    eval_split: Optional[str]
    streaming: bool
    # Selection (svp_hf.stages.orchestrator.PruneResult.to_metrics).
    n_total: int
    n_selected: int
    method: str
    scored_methods: List[str]
    fraction: float
    strategy: str
    selected_strategy: str
    coverage_beta: Optional[float]
    auto: Optional[Dict[str, Any]]
    selection_budget: Optional[float]
    class_balanced: bool
    seed: int
    scores_source: Optional[Dict[str, Any]]
    score_statistics: Dict[str, Dict[str, float]]
    selected_per_class: Dict[str, int]
    total_per_class: Dict[str, int]
    # The proxy and its quality.
    proxy: str
    proxy_epochs: Optional[int]
    proxy_checkpoint: Optional[str]
    proxy_training: Dict[str, Any]
    proxy_accuracy: Optional[float]
    proxy_history: List[Dict[str, float]]
    chance_accuracy: Optional[float]
    accuracy_judged: Optional[float]
    barely_beats_chance: Optional[bool]
    forgetting_infinite: int
    num_classes: int
    # The target (per selector role in an active-learning run).
    target: Optional[str]
    target_epochs: Optional[int]
    target_training: Optional[Dict[str, Any]]
    target_accuracy: Union[None, float, Dict[str, Optional[float]]]
    target_history: Union[None, List[Dict[str, float]], Dict[str, Any]]
    rank_agreement: Optional[Dict[str, float]]
    # Cost: stage seconds and the end-to-end account (svp_hf.account).
    timings: Dict[str, float]
    end_to_end: Optional[Dict[str, Any]]
    num_processes: int
    device: Optional[Dict[str, Any]]
    skipped_undecodable: Dict[str, List[int]]
    # Active learning (svp_hf.active).
    n_pool: int
    initial_size: int
    budgets: List[int]
    selector: str
    warm_start: bool
    initial_class_balanced: bool
    selection_seconds: Dict[str, float]
    target_training_seconds: Dict[str, Optional[float]]
    speedup: Optional[float]
    labelled_per_class: Dict[str, Dict[str, int]]
    selector_models: Dict[str, str]
    rounds: Dict[str, List[Dict[str, Any]]]
    labelling: Dict[str, Any]
    # Written with the result (svp_hf.publish.output, svp_hf.jobs.pipeline).
    splits: Dict[str, int]
    report_figures: List[Dict[str, Any]]
    hub_url: Optional[str]


def is_active(record: RunRecord) -> bool:
    """Whether `record` is an active-learning run's (:mod:`svp_hf.active`) rather than a core-set one's."""
    return record.get("job") == ACTIVE_JOB


def _described(table: Any, key: str) -> Optional[Dict[str, Any]]:
    try:
        meta = json.loads(table.info.description or "")
    except (ValueError, TypeError, AttributeError):
        return None
    found = meta.get(key) if isinstance(meta, dict) else None
    return found if isinstance(found, dict) else None


def scores_source(scores: Any) -> Optional[Dict[str, Any]]:
    """What a score table says of where its scores came from: the metadata :meth:`svp_hf.DynamicsRecorder.scores`
    writes (``{"source": "own_training_run", "methods": [...], "presentations": {...}, ...}``), or ``None`` for a table
    without it (svp_hf's own proxy, or a table read back from parquet, which keeps no dataset description)."""
    return _described(scores, SCORES_METADATA_KEY)


# ``scores_source["source"]`` of a run whose proxy was never trained (``auto``'s pre-check found that selection could
# not pay for itself): its score table holds the row identity and the label only, and nothing ranked the kept rows.
NOT_SCORED = "not_scored"


def not_scored(reason: str) -> Dict[str, Any]:
    """The ``scores_source`` of a run that computed no score, saying why (`reason`)."""
    return {"source": NOT_SCORED, "methods": [], "reason": reason}


def is_unscored(record: Any) -> bool:
    """Whether `record` (a run's metrics, or a subset's :func:`selection_record`) says that no score was computed."""
    source = (record or {}).get("scores_source") if isinstance(record, dict) else None
    return isinstance(source, dict) and source.get("source") == NOT_SCORED


def selection_record(dataset: Any) -> Optional[Dict[str, Any]]:
    """How a subset returned by ``svp_hf.select`` or ``prune`` was selected (``method``, ``fraction``, ``n_total``,
    ``strategy``, ``selected_strategy``, ``scores_source``...), or ``None``: what a card of the subset shows."""
    return _described(dataset, SELECTION_METADATA_KEY)


def describe_selection(dataset: Any, record: Dict[str, Any]) -> Any:
    """`dataset` (a subset just selected) with `record` as its :func:`selection_record`, kept in its
    ``info.description`` when that holds nothing else (a source's own description is never replaced)."""
    description = dataset.info.description or ""
    try:
        meta = json.loads(description) if description else {}
    except ValueError:
        return dataset
    if not isinstance(meta, dict):
        return dataset
    dataset.info.description = json.dumps({**meta, SELECTION_METADATA_KEY: record}, default=str)
    return dataset


__all__ = [
    "RunRecord",
    "is_active",
    "ACTIVE_JOB",
    "CORESET_JOB",
    "SCORES_METADATA_KEY",
    "SELECTION_METADATA_KEY",
    "scores_source",
    "NOT_SCORED",
    "not_scored",
    "is_unscored",
    "selection_record",
    "describe_selection",
]
