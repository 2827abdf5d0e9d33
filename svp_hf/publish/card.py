"""Dataset card stage: a ``huggingface_hub.DatasetCard`` that documents how a pruned dataset was made.

The YAML metadata carries over license and task categories from the source where they are known (its
``DatasetInfo``, else its own dataset card), adds the size category, ``source_datasets`` and the tags ``svp-hf`` and
``data-pruning`` (plus ``active-learning`` for an active-learning run, ``metrics["job"] == "active"``). The body is
the run's report (:mod:`svp_hf.publish.report`): source (id, revision or ``datasets`` fingerprint, split, rows), selection
(or the active-learning schedule and its rounds), proxy and target, score statistics, rows per class, timings, plots
and the command that reproduces it.

The card has no YAML ``configs`` list on purpose: splits are found from the file names
(``data/<split>-00000-of-0000N.parquet``), and the score tables under ``scores/`` match no split pattern. With a
``configs`` list, ``datasets`` keys its cache for a local folder on the patterns alone, so a folder rewritten in place
(``overwrite_output_dir``) would load its stale previous contents.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, Optional

from huggingface_hub import DatasetCard, DatasetCardData

from .._compat import dataset_fingerprint, packaged_builder_names
from ..account import format_seconds
from ..record import RunRecord, is_active, is_unscored
from .report import ReportFigure, render_report

TEMPLATE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates", "datasetcard.md")
TAGS = ["svp-hf", "data-pruning"]
# Tags a job adds after TAGS (a core-set run adds none).
JOB_TAGS = {"active": ["active-learning"]}
# Every svp_hf modality is a classification task; the Hub's task category for each, used when the source has none.
TASK_CATEGORY_BY_MODALITY = {
    "image": "image-classification",
    "text": "text-classification",
    "audio": "audio-classification",
}
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(n_rows: int) -> str:
    """The Hub's ``size_categories`` value for a dataset of `n_rows` rows."""
    for bound, name in _SIZE_CATEGORIES:
        if n_rows < bound:
            return name
    return "n>1B"


def _hub_id(dataset_name: Optional[str]) -> Optional[str]:
    """`dataset_name` if it names a Hub dataset (not a local path, a packaged builder or a built-in dataset)."""
    if (
        not dataset_name
        or ":" in dataset_name
        or os.path.exists(dataset_name)
        or dataset_name in packaged_builder_names()
    ):
        return None
    return dataset_name


def source_card_data(dataset_name: Optional[str]) -> Optional[DatasetCardData]:
    """The source's own card metadata: a local folder's README.md, or the Hub card (from the local cache when
    offline); ``None`` when there is none to read."""
    if not dataset_name:
        return None
    readme = os.path.join(dataset_name, "README.md")
    target = readme if os.path.isfile(readme) else _hub_id(dataset_name)
    if target is None:
        return None
    try:
        return DatasetCard.load(target, repo_type="dataset").data
    except Exception:  # offline, private or absent: the card is optional provenance, never a reason to fail a run
        return None


def source_metadata(
    dataset,
    *,
    dataset_name: Optional[str],
    split: str,
    modality: Optional[str] = None,
    config_name: Optional[str] = None,
    revision: Optional[str] = None,
    max_train_samples: Optional[int] = None,
    eval_dataset=None,
    eval_split: Optional[str] = None,
    num_rows: Optional[int] = None,
) -> Dict[str, Any]:
    """Where the training split came from, for ``metrics["source"]`` and the card: id, config, revision or the
    ``datasets`` fingerprint of the split as scored, split names and rows, and license and task categories."""
    card = source_card_data(dataset_name)
    card_dict = card.to_dict() if card is not None else {}
    license_ = (dataset.info.license or None) if getattr(dataset, "info", None) is not None else None
    task_categories = card_dict.get("task_categories") or (
        [TASK_CATEGORY_BY_MODALITY[modality]] if modality in TASK_CATEGORY_BY_MODALITY else None
    )
    return {
        "dataset": dataset_name,
        "hub_id": _hub_id(dataset_name),
        "config": config_name,
        "revision": revision,
        "fingerprint": dataset_fingerprint(dataset),
        "split": split,
        "num_rows": len(dataset) if num_rows is None else int(num_rows),
        "max_train_samples": max_train_samples,
        "eval_split": eval_split,
        "eval_num_rows": len(eval_dataset) if eval_dataset is not None else None,
        "license": license_ or card_dict.get("license"),
        "task_categories": task_categories
        if isinstance(task_categories, list) or task_categories is None
        else [task_categories],
        "modality": modality,
    }


def card_data(metrics: RunRecord) -> DatasetCardData:
    source = metrics.get("source") or {}
    rows = sum((metrics.get("splits") or {}).values()) or metrics.get("n_selected") or 0
    method = metrics.get("method")
    tags = TAGS + JOB_TAGS.get(metrics.get("job"), []) + ([f"svp-{method}"] if method else [])
    return DatasetCardData(
        license=source.get("license"),
        task_categories=source.get("task_categories"),
        size_categories=[size_category(int(rows))],
        source_datasets=[source["hub_id"]] if source.get("hub_id") else None,
        tags=tags,
        pretty_name=_pretty_name(metrics),
    )


def _source_name(metrics: RunRecord) -> str:
    name = (metrics.get("source") or {}).get("dataset") or metrics.get("dataset_name")
    return os.path.basename(os.path.normpath(name)) if name and os.path.exists(name) else (name or "a dataset")


def _n_labelled(metrics: RunRecord) -> Optional[int]:
    """The final labelled-set size of an active-learning run (its last budget)."""
    budgets = metrics.get("budgets") or []
    return int(budgets[-1]) if budgets else None


def _pretty_name(metrics: RunRecord) -> str:
    if is_active(metrics):
        return _active_pretty_name(metrics)
    fraction, method = metrics.get("fraction"), metrics.get("method")
    if is_unscored(metrics):
        method = "random draw"  # no row was scored: the method ranked nothing
    kept = f" ({fraction:.0%} kept by {method})" if fraction is not None and method else ""
    name = _source_name(metrics)
    return f"{'Dataset' if name == 'a dataset' else name} pruned with Selection via Proxy{kept}"


def _active_pretty_name(metrics: RunRecord) -> str:
    n, method = _n_labelled(metrics), metrics.get("method")
    labelled = f" ({n} rows by {method})" if n is not None and method else ""
    name = _source_name(metrics)
    return f"{'Dataset' if name == 'a dataset' else name} labelled by active learning via proxy{labelled}"


def _selecting(metrics: RunRecord) -> str:
    """Which model selected: "a `resnet20` proxy", "the `resnet56` target", or the proxy with the target as baseline."""
    proxy, target = f"a `{metrics.get('proxy')}` proxy", f"the `{metrics.get('target')}` target"
    return {
        "proxy": f"{proxy} selecting",
        "target": f"{target} selecting",
        "both": f"{proxy} selecting (and, for comparison, {target} selecting in its own loop)",
    }.get(metrics.get("selector"), f"{proxy} selecting")


def _active_outcome(metrics: RunRecord) -> str:
    """The target's accuracy on the first loop's labelled set and the selection speedup, as a sentence tail."""
    accuracy = metrics.get("target_accuracy") or {}
    first = next(iter(accuracy), None)
    text = ""
    if metrics.get("target") and first is not None and accuracy[first] is not None:
        text += f"; a `{metrics['target']}` target trained on the {first}-selected rows reached accuracy {accuracy[first]:.4f}"
    if metrics.get("speedup") is not None:
        text += f"; data-selection speedup of the proxy over the target: {metrics['speedup']:.2f}x"
    return text + "."


def _active_summary(metrics: RunRecord) -> str:
    split = (metrics.get("source") or {}).get("split") or metrics.get("train_split")
    initial = f" from {metrics['initial_size']} random rows" if metrics.get("initial_size") is not None else ""
    return (
        f"Labelled {_n_labelled(metrics)} of the {metrics['n_pool']} rows of the `{split}` split of `{_source_name(metrics)}`"
        f"{initial} by `{metrics.get('method')}` with {_selecting(metrics)}, in rounds to "
        f"{', '.join(str(b) for b in metrics.get('budgets') or [])} labelled rows (active learning via Selection via "
        "Proxy, Coleman et al., ICLR 2020)" + _active_outcome(metrics)
    )


def _strategy_text(metrics: RunRecord) -> str:
    strategy, chosen = metrics.get("strategy"), metrics.get("selected_strategy")
    if not strategy:
        return ""
    if metrics.get("auto"):
        auto = metrics["auto"]
        check = (auto.get("budget") or {}).get("precheck")
        if check and not check.get("fits"):
            spendable = check.get("spendable_seconds")
            spendable = check["budget_seconds"] if spendable is None else spendable
            if check.get("proxy_probed", True):
                cost = (
                    f"its training and scoring, estimated at {format_seconds(check['proxy_estimate_seconds'])} (plus "
                    f"{format_seconds(check['probe_seconds'])} of probes), would exceed"
                )
            else:
                cost = f"the target's probe alone, {format_seconds(check['probe_seconds'])}, exceeded"
            return (
                f" with strategy `auto`, which kept a seeded random draw without training the `{metrics.get('proxy')}` "
                f"proxy: {cost} the {format_seconds(spendable)} selection plans to spend of its budget's "
                f"{format_seconds(check['budget_seconds'])} ({check['budget']:g} of the target's full-data training; "
                f"see report.md)"
            )
        if auto.get("fallback"):
            budget = (auto.get("budget") or {}).get("budget")
            if budget is None:
                return f" with strategy `auto`, which kept `{auto['chosen']}` by its fallback rule"
            how = "stopped at" if auto.get("candidates") else "did not fit"
            return (
                f" with strategy `auto`, which kept `{auto['chosen']}` by its fallback rule: its check {how} the "
                f"selection budget ({budget:g} of the full-data training; see report.md)"
            )
        return (
            f" with strategy `auto`, which chose `{auto['chosen']}` after retraining the proxy on every candidate subset "
            f"(best margin over random on a held-out slice: {auto['margin_over_random']:+.4f}, spread "
            f"{auto['spread']:.4f})"
        )
    return f" with strategy `{chosen or strategy}`"


def sampled_rows(metrics: RunRecord) -> bool:
    """Whether the run read a sample of its training split (``max_train_samples`` smaller than the split) rather than
    the whole split: the split as read has exactly ``max_train_samples`` rows then."""
    cap = (metrics.get("source") or {}).get("max_train_samples")
    return cap is not None and metrics.get("n_total") is not None and int(metrics["n_total"]) >= int(cap)


def _summary(metrics: RunRecord) -> str:
    if is_active(metrics) and metrics.get("n_pool") is not None and _n_labelled(metrics) is not None:
        return _active_summary(metrics)
    if metrics.get("n_selected") is None or metrics.get("n_total") is None:
        return "A dataset pruned with svp_hf (Selection via Proxy, Coleman et al., ICLR 2020)."
    target = metrics.get("target")
    split = (metrics.get("source") or {}).get("split") or metrics.get("train_split")
    if sampled_rows(metrics):
        rows = (
            f"{metrics['n_selected']} of {metrics['n_total']} rows (a seeded random sample, `max_train_samples: "
            f"{(metrics.get('source') or {}).get('max_train_samples')}`) of the `{split}` split"
        )
        trained_on = f"those {metrics['n_total']} rows"
    else:
        rows, trained_on = (
            f"{metrics['n_selected']} of the {metrics['n_total']} rows of the `{split}` split",
            "the whole split",
        )
    how = (
        "kept"
        if is_unscored(metrics)
        else f"kept by `{metrics.get('method')}` scores {_scored_by(metrics, trained_on)}"
    )
    return (
        f"{rows} of `{_source_name(metrics)}`, {how}"
        f"{_strategy_text(metrics)} (Selection via Proxy, Coleman et al., ICLR 2020)"
        + (
            f"; a `{target}` target trained on the kept rows reached accuracy {metrics['target_accuracy']:.4f}."
            if target and metrics.get("target_accuracy") is not None
            else "."
        )
    )


def _scored_by(metrics: RunRecord, trained_on: str) -> str:
    """Where the scores came from: svp_hf's proxy, or the user's own training run (``svp_hf.DynamicsRecorder``)."""
    source = metrics.get("scores_source")
    if source:
        shown = source.get("presentations") or {}
        seen = (
            f", {shown['total']} presentations of {source.get('rows')} rows over {source.get('steps')} steps"
            if shown
            else ""
        )
        return (
            f"recorded from the user's own training run (`svp_hf.{source.get('recorder', 'DynamicsRecorder')}`{seen})"
        )
    if metrics.get("proxy"):
        return f"of a `{metrics['proxy']}` proxy trained on {trained_on}"
    return "(computed before; svp_hf.select)"


def _labelled_text(metrics: RunRecord) -> str:
    """Which split of an active-learning run holds which loop's labelled set (the first loop's is the training
    split's name, the others ``<train_split>_<role>_selected``, as :func:`svp_hf.jobs.active.output_splits` names them)."""
    train_split = (metrics.get("source") or {}).get("split") or metrics.get("train_split") or "train"
    roles = list(metrics.get("rounds") or metrics.get("selection_seconds") or {})
    if not roles:
        return f"The `{train_split}` split holds the labelled set"
    first, *others = roles
    text = f"The `{train_split}` split holds the rows labelled with the {first} selecting"
    for role in others:
        text += f", and `{train_split}_{role}_selected` those labelled with the {role} selecting"
    return text


def dataset_card(
    metrics: RunRecord, figures: Iterable[ReportFigure] = (), *, repo_id: Optional[str] = None, has_scores: bool = True
) -> DatasetCard:
    """The dataset card for a run described by `metrics` (as written to metrics.json), with the report's plots
    under ``plots/``. `repo_id` is the Hub id the card shows in its loading snippet."""
    figures = [f if isinstance(f, ReportFigure) else ReportFigure(**f) for f in figures]
    source = metrics.get("source") or {}
    return DatasetCard.from_template(
        card_data(metrics),
        template_path=TEMPLATE_PATH,
        pretty_name=_pretty_name(metrics),
        summary=_summary(metrics),
        repo_id=repo_id or "path/to/this/folder",
        split_rows=metrics.get("splits") or {},
        eval_split=source.get("eval_split") or metrics.get("eval_split"),
        has_scores=has_scores and not is_unscored(metrics),
        scored=not is_unscored(metrics),
        method=metrics.get("method") or "least_confidence",
        strategy=metrics.get("selected_strategy") or "top",
        job=metrics.get("job"),
        labelled_text=_labelled_text(metrics),
        report=render_report(metrics, figures, image_dir="plots", heading_level=2),
    )


__all__ = ["dataset_card", "card_data", "source_metadata", "source_card_data", "size_category", "TAGS", "JOB_TAGS"]
