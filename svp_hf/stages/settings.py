"""The typed settings of the selection stages, what :class:`svp_hf.stages.orchestrator.Pruner` is built from.

A recipe's dataclasses (:mod:`svp_hf.config`) end at the front ends, which translate them
(:func:`svp_hf.stages.roles.stage_settings`); the stages read only these:

- :class:`ModelSettings`: one role's model (the proxy, or the target) and how it trains;
- :class:`ScoringSettings`: which methods score the rows, and how scoring is batched and sharded;
- :class:`SelectionSettings`: how the scores become the kept rows, with :class:`AutoSettings` for ``auto``'s check.

Active learning's rounds and loops (:mod:`svp_hf.active.loop`) read :class:`ActiveSettings`, and each selector's
model a :class:`ModelSettings` (:func:`svp_hf.stages.roles.active_settings`, :func:`svp_hf.stages.roles.selector_models`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

from ..account import DEFAULT_SELECTION_BUDGET
from ..config.arguments import SELECTORS
from ..engine.training import TrainingConfig


@dataclass(frozen=True)
class ModelSettings:
    """One role's model and how it is trained.

    Args:
        name: The model, as :func:`svp_hf.models.create_model` reads it (a timm name, ``fasttext``, a transformers
            folder or Hub id, ``config:MODEL_TYPE``, ...).
        training: Its training schedule, optimiser and data-loading settings.
        pretrained: Whether it starts from pretrained weights.
        trust_remote_code: Whether transformers may run code from the model's repository.
        checkpoint: A trained model to load instead of training one (the proxy's ``proxy_checkpoint``).
    """

    name: str
    training: TrainingConfig = field(default_factory=TrainingConfig)
    pretrained: bool = False
    trust_remote_code: bool = False
    checkpoint: Optional[str] = None

    @property
    def epochs(self) -> int:
        return int(self.training.epochs)


@dataclass(frozen=True)
class ScoringSettings:
    """How every row is scored.

    Args:
        methods: The methods scored, in order (one score column each).
        batch_size: Rows per scoring batch.
        seed: Seed of seeded methods (random, k-centers' pool) and of the proxy's training.
        kcenter_chunk_size: Rows per distance block in k-centers.
        kcenter_pool_size: Run k-centers on a seeded candidate set of this many rows (``None``: every row).
        kcenter_max_memory: Memory bound of k-centers' embeddings and distances (``"4GB"``).
        shard_size: Rows scored per shard (a resumed run skips finished shards).
        num_workers: DataLoader workers (``None``: sized to the machine).
    """

    methods: Tuple[str, ...]
    batch_size: int = 256
    seed: int = 0
    kcenter_chunk_size: int = 16384
    kcenter_pool_size: Optional[int] = None
    kcenter_max_memory: Optional[str] = None
    shard_size: int = 10000
    num_workers: Optional[int] = None


@dataclass(frozen=True)
class AutoSettings:
    """``auto``'s check (see :mod:`svp_hf.stages.auto`).

    Args:
        holdout: Share of the rows held out (class-stratified) to compare the candidates on.
        seeds: Seeds per candidate (their spread decides what beats random).
        epochs: Epochs of each candidate's proxy (``None``: the target's epochs when a target is trained, else the
            proxy's).
        budget: The share of the full-data training that selection may spend (``None``: unbudgeted).
    """

    holdout: float = 0.1
    seeds: int = 2
    epochs: Optional[int] = None
    budget: Optional[float] = DEFAULT_SELECTION_BUDGET


@dataclass(frozen=True)
class SelectionSettings:
    """How the scores become the kept rows.

    Args:
        method: The method whose scores rank the rows.
        fraction: Share of the rows kept, in (0, 1].
        strategy: ``auto``, ``coverage``, ``top``, ``bottom`` or ``random`` (see :mod:`svp_hf.selection.strategies`).
        class_balanced: Keep the same share of every class.
        seed: Seed of random selection, tie-breaking and ``auto``'s slices.
        coverage_beta: Share of hardest rows ``coverage`` drops first (``None``: follows the prune rate).
        auto: ``auto``'s check.
    """

    method: str
    fraction: float = 0.5
    strategy: str = "auto"
    class_balanced: bool = False
    seed: int = 0
    coverage_beta: Optional[float] = None
    auto: AutoSettings = field(default_factory=AutoSettings)


@dataclass(frozen=True)
class ActiveSettings:
    """What active learning's rounds and loops read (each selector's model and training is its own
    :class:`ModelSettings`).

    Args:
        method: The method that ranks the unlabelled rows (one that needs neither their labels nor their training
            history: see :func:`svp_hf.active.loop.active_method`).
        budgets: The labelled-set sizes after each round, strictly increasing.
        initial_size: Size of the seeded random initial labelled set (round 0).
        selector: Who selects: ``proxy``, ``target``, or ``both`` loops side by side (see :attr:`loops`).
        seed: Seed of the initial set, of each round's fresh selector, and (plus the round) of its acquisition.
        warm_start: Continue training the previous round's selector instead of training it from scratch.
        eval_each_round: Evaluate the selector on the evaluation rows every round.
        initial_class_balanced: Draw the same number of initial rows from every class.
        kcenter_chunk_size: Rows per distance block in k-centers.
    """

    method: str
    budgets: Tuple[int, ...]
    initial_size: int = 1000
    selector: str = "proxy"
    seed: int = 0
    warm_start: bool = False
    eval_each_round: bool = False
    initial_class_balanced: bool = False
    kcenter_chunk_size: int = 16384

    @property
    def loops(self) -> Tuple[str, ...]:
        """The roles that select, each in its own loop, in order (the proxy's first)."""
        return tuple(SELECTORS[self.selector])


__all__ = ["ModelSettings", "ScoringSettings", "AutoSettings", "SelectionSettings", "ActiveSettings"]
