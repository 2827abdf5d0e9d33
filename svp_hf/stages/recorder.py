"""Record training dynamics from your own training loop, and score your data with them.

svp_hf's proxy training records, on every presentation of every example, what the training-dynamics methods read
(:mod:`svp_hf.selection.signals`: correctness for forgetting events, the margin for AUM, the true-class probability for dataset
cartography). :class:`DynamicsRecorder` records the same signals from a training loop you already have: an
Accelerate loop calls :meth:`DynamicsRecorder.update` once per step, a ``transformers.Trainer`` is wired with
:meth:`DynamicsRecorder.attach`. :meth:`DynamicsRecorder.scores` then returns the table :func:`svp_hf.score` returns,
so :func:`svp_hf.select` (``coverage`` included) and :func:`svp_hf.push_to_hub` work on it unchanged.

An Accelerate loop (``batch["idx"]`` holds each row's position in ``train``, e.g. from
``train.add_column("idx", range(len(train)))``)::

    recorder = svp_hf.DynamicsRecorder(train, accelerator=accelerator)
    for epoch in range(epochs):
        for batch in loader:
            logits = model(batch["pixel_values"])
            loss = F.cross_entropy(logits, batch["labels"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            recorder.update(batch["idx"], logits, batch["labels"])  # added
    scores = recorder.scores(["forgetting", "aum", "confidence", "variability"])
    subset = svp_hf.select(train, scores, "forgetting", 0.5, strategy="coverage", coverage_beta=0.1)

A ``Trainer``::

    trainer = Trainer(model=model, args=args, train_dataset=tokenized, data_collator=collator)
    recorder = svp_hf.DynamicsRecorder(train)  # added: `train` holds the same rows as `tokenized`, in order
    recorder.attach(trainer)                   # added
    trainer.train()
    scores = recorder.scores()

Nothing is copied to the host inside a step: each step's per-example values are computed on the device (several
steps at a time on one process) and, with several processes, gathered there right away, as svp_hf's own training
loop does (:func:`svp_hf.engine.training.train_model`); they reach the host once the recorded presentations add up to the
dataset's length (about once per epoch), or when scores are asked for. No epoch bookkeeping is needed: every signal
is a per-presentation accumulator, so only the order of the updates matters.

Methods that score the trained model's predictions (``el2n``, ``least_confidence``, ``entropy``, ``margin``) read a
pass of the trained model over the training rows, as svp_hf scores its own proxy after training: feed it with
:meth:`DynamicsRecorder.update_final` (in eval mode, without gradients), or, with an attached ``Trainer``, call
``trainer.predict(trainer.train_dataset)`` after training.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from datasets import Dataset, IterableDataset

from .._compat import keep_trainer_column
from ..data.columns import DataInfo, find_label_column
from ..engine.scoring import probabilities
from ..engine.training import STEPS_PER_RECORD
from ..errors import SVPConfigError
from ..record import SCORES_METADATA_KEY, scores_source
from ..selection.methods import METHODS, SelectionMethod, resolve_methods
from ..selection.signals import SIGNALS, TrainingSignal, make_signals, observe_steps, update_all
from ..version import __version__
from .proxy import check_finite_scores, labels_of, scores_dataset

# The methods DynamicsRecorder.scores returns when none are named: every built-in training-dynamics method.
TRAINING_METHODS = ("forgetting", "aum", "confidence", "variability")
# What the score table's metadata says the scores came from (see scores_source).
SOURCE = "own_training_run"
# The key of the score table's metadata (``Dataset.info.description``, JSON) that scores_source reads.
METADATA_KEY = SCORES_METADATA_KEY
# The column attach() adds to a Trainer's training rows: each row's position, carried through the batches.
TRAINER_INDEX_COLUMN = "svp_recorder_index"


class DynamicsRecorder:
    """Records the training dynamics of your own training loop for svp_hf's selection methods.

    Args:
        dataset (`datasets.Dataset`):
            The training rows, in the order the indices given to :meth:`update` refer to (row ``i`` is index ``i``):
            the dataset you train on or the one it was tokenized or transformed from, row for row. Its label column
            gives the score table's ``label`` column, and every recorded label is checked against it.
        label_column (`str`, *optional*):
            The label column; found as svp_hf finds it elsewhere when not given (the first ``ClassLabel``, else an
            integer ``label``/``labels`` column).
        accelerator (`accelerate.Accelerator`, *optional*):
            The accelerator of a loop that runs in several processes: each step's values are gathered across them
            with ``accelerator.gather_for_metrics`` (which drops the samples Accelerate repeats to even out the last
            batch), so every process holds the same records: every process calls :meth:`update` at every step,
            with batches of one size (Accelerate's default ``even_batches``). Not needed in one process;
            :meth:`attach` takes the ``Trainer``'s own.

    Every registered training signal (:data:`svp_hf.selection.signals.SIGNALS`) is recorded, so every training-dynamics method
    can be scored. Register the recorder with ``accelerator.register_for_checkpointing(recorder)`` to save and
    restore what it recorded with ``accelerator.save_state`` / ``load_state``.
    """

    def __init__(self, dataset: Dataset, *, label_column: Optional[str] = None, accelerator=None):
        if isinstance(dataset, IterableDataset) or not isinstance(dataset, Dataset):
            raise SVPConfigError(
                f"DynamicsRecorder needs a datasets.Dataset (rows identified by position), got {type(dataset).__name__}"
            )
        if len(dataset) == 0:
            raise SVPConfigError("DynamicsRecorder got an empty dataset: there is nothing to record")
        label_column, num_classes, class_names = find_label_column(dataset, label_column)
        self.dataset = dataset
        self.info = DataInfo(
            modality="recorded",
            input_columns=[],
            label_column=label_column,
            num_classes=num_classes,
            class_names=class_names,
        )
        self._labels = labels_of(dataset, self.info)
        self._max_label = int(self._labels.max())
        self.accelerator = accelerator
        self._group = STEPS_PER_RECORD if self._num_processes == 1 else 1  # as svp_hf's training loop groups its steps
        n = len(dataset)
        self._signals: Dict[str, TrainingSignal] = make_signals(SIGNALS.names(), n)
        # The trained model's pass (update_final): every logit-based method's score per row, NaN until seen.
        self._final_methods: List[SelectionMethod] = [m for _, m in METHODS.items() if m.needs == "logits"]
        self._final = np.full((len(self._final_methods), n), np.nan, dtype=np.float64)
        self._final_seen = np.zeros(n, dtype=bool)
        self._steps: List[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # one process: steps not observed yet
        self._pending: List[Tuple[torch.Tensor, ...]] = []  # observed (and gathered) steps on the device
        self._pending_rows = 0
        self._final_pending: List[Tuple[torch.Tensor, ...]] = []
        self._num_classes: Optional[int] = None
        self.steps = 0  # update() calls
        self.final_steps = 0  # update_final() calls

    def __len__(self) -> int:
        return len(self._labels)

    def __repr__(self) -> str:
        return (
            f"DynamicsRecorder(rows={len(self)}, steps={self.steps}, final_steps={self.final_steps}, "
            f"processes={self._num_processes})"
        )

    @property
    def _num_processes(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    # --- recording ------------------------------------------------------------------------------------------------

    def update(self, indices, logits: torch.Tensor, labels) -> None:
        """Record one training step: the logits the model produced for the step's examples, before the update.

        Call it once per step (per micro-batch under gradient accumulation), with the tensors of the step, on the
        device: nothing is copied to the host here.

        Args:
            indices (`torch.Tensor` of shape `(batch,)`):
                Each example's row in the recorder's dataset (its position, ``0 .. len(dataset) - 1``).
            logits (`torch.Tensor` of shape `(batch, num_classes)`):
                The model's output for the batch (detached here; autocast dtypes are fine).
            labels (`torch.Tensor` of shape `(batch,)`):
                The examples' class ids, which must be the dataset's labels of those rows.

        Raises:
            SVPConfigError: on tensors of the wrong shape or kind; indices out of range and labels that differ from
                the dataset's are reported when the records reach the host (at most about one epoch later, and at
                the latest by :meth:`scores`).
        """
        self._update(indices, logits, labels, last=None)

    def _update(self, indices, logits, labels, *, last: Optional[bool]) -> None:
        if not self.steps:
            self._check_processes()
        index, logits, labels = self._checked(indices, logits, labels, "update")
        self._steps.append((logits.detach(), labels, index))
        self.steps += 1
        if len(self._steps) >= self._group:
            self._observe_steps(last)
            if self._pending_rows >= len(self):  # about an epoch's worth: the one copy to the host
                self.flush()

    def update_final(self, indices, logits: torch.Tensor, labels) -> None:
        """Record a batch of the trained model's pass over the training rows (in eval mode, without gradients), for
        the methods that score the trained model's predictions: ``el2n``, ``least_confidence``, ``entropy``,
        ``margin``. svp_hf scores its own proxy this way once it is trained.

        Every row must be seen once; a row seen again keeps its latest values. Arguments as :meth:`update`.
        """
        self._update_final(indices, logits, labels, last=None)

    @torch.no_grad()
    def _update_final(self, indices, logits, labels, *, last: Optional[bool]) -> None:
        if not self.final_steps:
            self._check_processes()
        index, logits, labels = self._checked(indices, logits, labels, "update_final")
        probs = probabilities(logits.detach())  # as svp_hf's scoring: float32 softmax, then each scorer
        scored = [m.scorer(probs, labels) for m in self._final_methods]
        values = torch.stack(scored, dim=1) if scored else probs.new_zeros((len(probs), 0))
        self._final_pending.append(self._gather((index, labels, values), last))
        self.final_steps += 1

    def _check_processes(self) -> None:
        """A clear error when this process is one of several but the recorder cannot gather from the others."""
        if self.accelerator is None and torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                raise SVPConfigError(
                    "this process is one of several (torch.distributed is initialized): make the recorder with "
                    "accelerator= (your Accelerator) so that each step's records are gathered from every process"
                )

    def _checked(self, indices, logits, labels, what: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step's tensors, checked for shape and kind (no value is read: that would wait for the device)."""
        if not isinstance(logits, torch.Tensor):
            raise SVPConfigError(
                f"{what}: logits must be a torch.Tensor of shape (batch, num_classes), got {type(logits).__name__}"
            )
        if logits.ndim != 2 or not logits.is_floating_point():
            raise SVPConfigError(
                f"{what}: logits must be a floating-point tensor of shape (batch, num_classes), got {logits.dtype} of "
                f"shape {tuple(logits.shape)}"
            )
        batch, classes = logits.shape
        tensors = []
        for name, value in (("indices", indices), ("labels", labels)):
            value = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
            if value.ndim != 1 or value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                hint = " (class ids, not one-hot or soft labels)" if name == "labels" else " (row positions)"
                raise SVPConfigError(
                    f"{what}: {name} must be a 1-d integer tensor{hint}, got {value.dtype} of shape {tuple(value.shape)}"
                )
            if len(value) != batch:
                raise SVPConfigError(f"{what}: {len(value)} {name} for {batch} rows of logits")
            tensors.append(value.to(logits.device, non_blocking=True).long())
        if classes <= self._max_label:
            raise SVPConfigError(
                f"{what}: logits have {classes} classes, but the dataset's labels go up to {self._max_label}"
            )
        if self._num_classes is None:
            self._num_classes = classes
        elif classes != self._num_classes:
            raise SVPConfigError(f"{what}: logits have {classes} classes, but earlier ones had {self._num_classes}")
        return tensors[0], logits, tensors[1]

    def _observe_steps(self, last: Optional[bool]) -> None:
        """The signals' per-example values of the steps held, on the device (gathered with several processes)."""
        _, labels, index, values = observe_steps(self._signals, self._steps)  # as svp_hf's own training loop
        self._steps.clear()
        payload = self._gather((index, labels, values), last)
        self._pending.append(payload)
        self._pending_rows += len(payload[0])

    def _gather(self, payload: Tuple[torch.Tensor, ...], last: Optional[bool]) -> Tuple[torch.Tensor, ...]:
        """`payload` from every process, without the samples Accelerate repeats to even out the last batch.

        `last` None: ``accelerator.gather_for_metrics`` (the step is the loader's last when Accelerate's gradient
        state says so, as in a plain loop). True or False: the caller knows whether it is (a ``Trainer`` fetches
        its batches ahead of the step that trains them)."""
        if self._num_processes == 1:
            return payload
        if last is None:
            return tuple(self.accelerator.gather_for_metrics(payload))
        gathered = tuple(self.accelerator.gather(payload))
        remainder = self.accelerator.gradient_state.remainder
        return tuple(t[:remainder] for t in gathered) if last and remainder > 0 else gathered

    def flush(self) -> None:
        """Copy what is recorded on the device to the host and fold it into the signals (one synchronisation).

        Called by itself about once per epoch and by :meth:`scores`; call it to check the records earlier.

        Raises:
            SVPConfigError: recorded indices outside the dataset's rows, or labels that differ from its labels (the
                faulty records are dropped).
        """
        if self._steps:  # one process only (several observe every step at once): nothing to gather
            self._observe_steps(last=None)
        if self._pending:
            index, labels, values = (torch.cat(p).cpu().numpy() for p in zip(*self._pending))
            self._pending.clear()
            self._pending_rows = 0
            self._check_rows(index, labels, "update")
            update_all(self._signals, index, values)
        if self._final_pending:
            index, labels, values = (torch.cat(p).cpu().numpy() for p in zip(*self._final_pending))
            self._final_pending.clear()
            self._check_rows(index, labels, "update_final")
            self._final[:, index] = values.T.astype(np.float64)
            self._final_seen[index] = True

    def _check_rows(self, index: np.ndarray, labels: np.ndarray, what: str) -> None:
        n = len(self)
        outside = (index < 0) | (index >= n)
        if outside.any():
            raise SVPConfigError(
                f"{what} was given {int(outside.sum())} row indices outside 0..{n - 1} (e.g. {index[outside][:5].tolist()}): "
                f"indices are the rows' positions in the recorder's dataset ({n} rows)"
            )
        wrong = labels != self._labels[index]
        if wrong.any():
            first = int(np.flatnonzero(wrong)[0])
            raise SVPConfigError(
                f"{int(wrong.sum())} of {len(labels)} labels given to {what} differ from the dataset's "
                f"{self.info.label_column!r} column (row {int(index[first])}: given {int(labels[first])}, dataset "
                f"{int(self._labels[index[first]])}): pass each batch's labels with the rows' positions in the dataset "
                "the recorder was made with"
            )

    # --- results --------------------------------------------------------------------------------------------------

    @property
    def presentations(self) -> np.ndarray:
        """How many times each row was recorded in training so far (host copy; flushes the device records)."""
        self.flush()
        return next(iter(self._signals.values())).presentations.copy()

    def scores(self, methods: Sequence[str] | str = TRAINING_METHODS, *, seed: int = 0) -> Dataset:
        """The recorded run's per-example scores, as :func:`svp_hf.score` returns them.

        Args:
            methods (`str` or sequence of `str`, defaults to every built-in training-dynamics method):
                Selection methods (:func:`svp_hf.list_methods`): training-dynamics methods (``forgetting``,
                ``aum``, ``confidence``, ``variability``) read what :meth:`update` recorded; methods scoring the
                trained model's predictions (``el2n``, ``least_confidence``, ``entropy``, ``margin``) read
                :meth:`update_final`'s pass; ``random`` needs neither. ``kcenter`` needs the model's embeddings:
                use :func:`svp_hf.score`.
            seed (`int`, defaults to 0):
                The seed of ``random``'s scores.

        Returns:
            `datasets.Dataset`: ``svp_index`` (the row's position), ``label`` (the dataset's label feature) and one
            float64 column per method, with each method's convention (``forgetting``: events, ``inf`` for rows never
            learned; ``aum``/``confidence``: kept lowest; ...). Its ``info.description`` records that the scores came
            from your own training run (read it with :func:`scores_source`).

        Raises:
            SVPConfigError: unknown methods, nothing recorded for a method, or rows never presented (every row must
                be recorded in training, and seen in the final pass for its methods).
            SVPRuntimeError: NaN scores (the run diverged).
        """
        chosen = resolve_methods(methods)
        self.flush()
        training = [m for m in chosen if m.needs == "training"]
        final = [m for m in chosen if m.needs == "logits"]
        for m in chosen:
            if m.needs == "embeddings":
                raise SVPConfigError(
                    f"method {m.name!r} needs the model's embeddings, which the recorder does not take; score it with "
                    "svp_hf.score"
                )
        if training:
            self._check_training(training)
        if final:
            self._check_final(final)
        values: Dict[str, np.ndarray] = {}
        for m in chosen:
            if m.needs == "training":
                values[m.name] = np.asarray(m.scorer(self._signals[m.signal]), dtype=np.float64)
            elif m.needs == "logits":
                values[m.name] = self._final[self._final_methods.index(m)].copy()
            else:
                values[m.name] = np.asarray(m.scorer(len(self), seed=seed), dtype=np.float64)
        check_finite_scores(values, "the recorded training run")
        table = scores_dataset(self.dataset, self.info, values, labels=self._labels)
        table.info.description = json.dumps({METADATA_KEY: self._metadata(chosen, training, final)})
        return table

    def _check_training(self, methods: List[SelectionMethod]) -> None:
        if self.steps == 0:
            raise SVPConfigError(
                f"no training step was recorded, so {[m.name for m in methods]} cannot be scored: call "
                "recorder.update(indices, logits, labels) in every training step (or recorder.attach(trainer) before "
                "trainer.train())"
            )
        missing = [m.name for m in methods if m.signal not in self._signals]
        if missing:
            raise SVPConfigError(f"method(s) {missing} read training signals registered after this recorder was made")
        unseen = np.flatnonzero(self.presentations == 0)
        if len(unseen):
            raise SVPConfigError(
                f"{len(unseen)} of {len(self)} rows were never recorded in training (e.g. rows {unseen[:5].tolist()}): "
                "their training dynamics are unknown. Record every step of every epoch over the whole dataset "
                "(drop_last drops rows of each epoch), or make the recorder with the rows you train on"
            )

    def _check_final(self, methods: List[SelectionMethod]) -> None:
        names = [m.name for m in methods]
        if self.final_steps == 0:
            raise SVPConfigError(
                f"{names} score the trained model's predictions: after training, run it over the training rows (eval "
                "mode, no gradients) and feed each batch to recorder.update_final(indices, logits, labels); with an "
                "attached Trainer, call trainer.predict(trainer.train_dataset)"
            )
        late = [m.name for m in methods if m not in self._final_methods]
        if late:
            raise SVPConfigError(f"method(s) {late} were registered after this recorder was made")
        unseen = np.flatnonzero(~self._final_seen)
        if len(unseen):
            raise SVPConfigError(
                f"{len(unseen)} of {len(self)} rows were not in the final pass that {names} read (e.g. rows "
                f"{unseen[:5].tolist()}): feed update_final every row of the dataset"
            )

    def _metadata(self, chosen, training, final) -> Dict[str, Any]:
        meta: Dict[str, Any] = {
            "source": SOURCE,
            "recorder": type(self).__name__,
            "methods": [m.name for m in chosen],
            "rows": len(self),
            "num_processes": self._num_processes,
            "svp_hf_version": __version__,
        }
        if training:
            shown = self.presentations
            meta.update(
                steps=self.steps,
                presentations={"min": int(shown.min()), "max": int(shown.max()), "total": int(shown.sum())},
            )
        if final:
            meta["final_pass_steps"] = self.final_steps
        return meta

    # --- checkpointing --------------------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Everything recorded (host arrays), for ``accelerator.register_for_checkpointing`` or ``torch.save``."""
        self.flush()
        return {
            "rows": len(self),
            "signals": {name: s.state_dict() for name, s in self._signals.items()},
            "final_methods": [m.name for m in self._final_methods],
            "final": self._final.copy(),
            "final_seen": self._final_seen.copy(),
            "num_classes": self._num_classes,
            "steps": self.steps,
            "final_steps": self.final_steps,
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (for a recorder made with the same dataset)."""
        if int(state["rows"]) != len(self):
            raise SVPConfigError(f"the recorder's state is for {state['rows']} rows, but its dataset has {len(self)}")
        self._steps.clear()
        self._pending.clear()
        self._final_pending.clear()
        self._pending_rows = 0
        for name, arrays in state["signals"].items():
            if name in self._signals:
                self._signals[name].load_state_dict(arrays)
        order = {name: i for i, name in enumerate(state["final_methods"])}
        self._final[:] = np.nan
        for i, m in enumerate(self._final_methods):
            if m.name in order:
                self._final[i] = np.asarray(state["final"])[order[m.name]]
        self._final_seen = np.asarray(state["final_seen"], dtype=bool).copy()
        self._num_classes = state["num_classes"]
        self.steps, self.final_steps = int(state["steps"]), int(state["final_steps"])

    # --- transformers.Trainer ---------------------------------------------------------------------------------------

    def attach(self, trainer):
        """Record `trainer`'s training: call it once the ``transformers.Trainer`` is made, before ``trainer.train()``.

        How rows are identified: the trainer's ``train_dataset`` gets a column of each row's position
        (:data:`TRAINER_INDEX_COLUMN`), which the ``Trainer`` keeps among the model's inputs and batches like any
        other column (through its shuffled, distributed sampler and any number of loader workers); the trainer's
        ``compute_loss`` takes it out of the inputs before the model sees them, calls the trainer's own
        ``compute_loss`` (a subclass's override included), and records the outputs' ``logits`` with the batch's
        labels. ``trainer.predict(trainer.train_dataset)`` after training records the trained model's pass
        (:meth:`update_final`); other evaluations are not recorded.

        Limits: the model must return ``logits`` (a ``ModelOutput`` or a dict) for one label column of class ids;
        the data collator must pass an extra integer column through (``DataCollatorWithPadding`` and
        ``default_data_collator`` do; a collator that builds batches from named columns only is refused at the first
        step); a ``Trainer`` resumed from a checkpoint records only the steps it runs (save :meth:`state_dict`
        alongside to resume the records too); ``DataParallel`` (several GPUs in one process) is not supported.

        Args:
            trainer (`transformers.Trainer`):
                A trainer whose ``train_dataset`` holds the recorder's rows in the same order (e.g. the tokenized
                version of the recorder's dataset).

        Returns:
            The same trainer, to allow ``trainer = recorder.attach(Trainer(...))``.

        Raises:
            SVPConfigError: not a ``Trainer``, a training set of another length, a streaming or unindexable one, or
                a trainer already attached.
        """
        from transformers import Trainer  # only when a Trainer is used: transformers is slow to import

        if not isinstance(trainer, Trainer):
            raise SVPConfigError(f"attach takes a transformers.Trainer, got {type(trainer).__name__}")
        if "compute_loss" in vars(trainer) and getattr(trainer.compute_loss, "_svp_recorder", None) is not None:
            raise SVPConfigError("this Trainer already has a DynamicsRecorder attached")
        label_names = list(trainer.label_names or [])
        if len(label_names) != 1:
            raise SVPConfigError(
                f"the recorder reads one label column of class ids, but the Trainer's label_names are {label_names}"
            )
        trainer.train_dataset = self._indexed(trainer.train_dataset)
        # Keep the index column among the columns the Trainer passes to the model (it drops any other).
        keep_trainer_column(trainer, TRAINER_INDEX_COLUMN)
        if self.accelerator is None:
            self.accelerator = trainer.accelerator
        elif self._num_processes != trainer.accelerator.num_processes:
            raise SVPConfigError("the recorder's accelerator and the Trainer's run in different numbers of processes")
        self._group = STEPS_PER_RECORD if self._num_processes == 1 else 1
        trainer.compute_loss = _RecordingComputeLoss(self, trainer.compute_loss, label_names[0])
        return trainer

    def _indexed(self, train_dataset):
        """`train_dataset` with each row's position in :data:`TRAINER_INDEX_COLUMN`."""
        if train_dataset is None or isinstance(train_dataset, (IterableDataset, torch.utils.data.IterableDataset)):
            raise SVPConfigError(
                "the Trainer's train_dataset must be a map-style dataset (rows identified by position), got "
                f"{type(train_dataset).__name__}"
            )
        if len(train_dataset) != len(self):
            raise SVPConfigError(
                f"the Trainer's train_dataset has {len(train_dataset)} rows but the recorder's dataset has {len(self)}: "
                "make the recorder with the rows the Trainer trains on, in the same order"
            )
        if isinstance(train_dataset, Dataset):
            if TRAINER_INDEX_COLUMN in train_dataset.column_names:
                raise SVPConfigError(
                    f"the Trainer's train_dataset already has a {TRAINER_INDEX_COLUMN!r} column (a recorder was attached)"
                )
            return train_dataset.add_column(TRAINER_INDEX_COLUMN, np.arange(len(train_dataset), dtype=np.int64))
        if not isinstance(train_dataset[0], Mapping):
            raise SVPConfigError(
                f"the Trainer's train_dataset rows must be dicts for the recorder to add their index, got "
                f"{type(train_dataset[0]).__name__}"
            )
        return IndexedRows(train_dataset)


class IndexedRows(torch.utils.data.Dataset):
    """A map-style dataset of dict rows, each with its position added under :data:`TRAINER_INDEX_COLUMN`."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return {**self.rows[i], TRAINER_INDEX_COLUMN: i}


class _RecordingComputeLoss:
    """A Trainer's ``compute_loss`` that records each training batch's logits (and the trained model's pass over the
    indexed training rows in ``predict``) in a :class:`DynamicsRecorder`."""

    def __init__(self, recorder: DynamicsRecorder, compute_loss, label_name: str):
        self._svp_recorder = recorder
        self.compute_loss = compute_loss
        self.label_name = label_name

    def __call__(self, model, inputs, return_outputs=False, num_items_in_batch=None, **kwargs):
        index = (
            inputs.pop(TRAINER_INDEX_COLUMN, None) if isinstance(inputs, MutableMapping) else None
        )  # a BatchEncoding too
        if index is None:
            if model.training:
                raise SVPConfigError(
                    f"the training batch has no {TRAINER_INDEX_COLUMN!r} column: the data collator dropped it (it must "
                    "pass integer columns through, as DataCollatorWithPadding does)"
                )
            return self.compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch, **kwargs
            )
        labels = inputs.get(
            self.label_name
        )  # before compute_loss, which may pop it (label smoothing, compute_loss_func)
        loss, outputs = self.compute_loss(
            model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch, **kwargs
        )
        if labels is None:
            raise SVPConfigError(f"the batch has no {self.label_name!r} labels for the recorder")
        if not isinstance(outputs, Mapping) or "logits" not in outputs:
            raise SVPConfigError(
                f"the model returned {type(outputs).__name__} without 'logits'; the recorder needs a ModelOutput or dict "
                "with the classification logits"
            )
        recorder, state = self._svp_recorder, self._svp_recorder.accelerator.gradient_state
        if model.training:
            # The Trainer fetches a whole gradient-accumulation group before training it: the loader's last batch is
            # the group's last, the one that syncs gradients.
            recorder._update(index, outputs["logits"], labels, last=state.end_of_dataloader and state.sync_gradients)
        else:
            recorder._update_final(index, outputs["logits"], labels, last=state.end_of_dataloader)
        return (loss, outputs) if return_outputs else loss


__all__ = ["DynamicsRecorder", "IndexedRows", "TRAINING_METHODS", "TRAINER_INDEX_COLUMN", "SOURCE", "scores_source"]
