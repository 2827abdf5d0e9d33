"""Training stage: one Accelerate loop trains proxies and targets alike, and feeds every training signal the selection
methods need (forgetting events, margins, true-class probabilities; see :mod:`svp_hf.selection.signals`) as it goes."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.optimizer import AcceleratedOptimizer
from accelerate.utils import DistributedType
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from .._compat import forget_prepared, random_sampler_draws_one_permutation
from ..data.augment import epoch_generator
from ..data.columns import INDEX_COLUMN, DataInfo
from ..data.images import batch_collate, on_device
from ..data.prefetch import prefetch, use_prefetch
from ..errors import SVPConfigError
from ..registry import Registry
from ..selection.signals import TrainingSignal, make_signals, observe_steps, restore_signals, signals_state, update_all
from ..utils.device import (
    apply_memory_format,
    check_mixed_precision,
    default_mixed_precision,
    effective_mixed_precision,
    guard_bf16_convolutions,
    resolve_num_workers,
    resolve_pin_memory,
    to_device,
    unwrap,
)
from ..utils.log import get_logger
from ..utils.progress import progress_bar
from .checkpoint import (
    CHECKPOINT_SHARE,
    checkpoint_due,
    estimated_save_seconds,
    latest_epoch,
    load_epoch,
    on_main,
    save_epoch,
    state_bytes,
)

logger = get_logger(__name__)

LR_SCHEDULES: Registry = Registry("learning-rate schedule")


@LR_SCHEDULES.register("step")
def step_schedule(progress: float) -> float:
    """SVP's CIFAR schedule scaled to any length: 1/181 warm-up at 0.1x, then 1x, 0.1x from 91/181, 0.01x from 136/181."""
    if progress < 1 / 181:
        return 0.1
    if progress < 91 / 181:
        return 1.0
    if progress < 136 / 181:
        return 0.1
    return 0.01


@LR_SCHEDULES.register("halving")
def halving_schedule(progress: float) -> float:
    """SVP's Amazon Review schedule scaled to any length: five equal segments, the rate halving at each (1x to 1/16x;
    with learning_rate 0.01 and 15 epochs: 3 epochs each at 0.01, 0.005, 0.0025, 0.00125, 0.000625)."""
    return 0.5 ** min(int(progress * 5), 4)


@LR_SCHEDULES.register("imagenet")
def imagenet_schedule(progress: float) -> float:
    """SVP's ImageNet schedule scaled to any length: linear warm-up to 1x over 5/90, 0.1x from 30/90, 0.01x from
    60/90, 0.001x from 80/90."""
    if progress < 5 / 90:
        return (progress * 90 + 1) / 6  # rises linearly, ending just below 1x
    for start, factor in ((80 / 90, 0.001), (60 / 90, 0.01), (30 / 90, 0.1)):
        if progress >= start:
            return factor
    return 1.0


@LR_SCHEDULES.register("cosine")
def cosine_schedule(progress: float) -> float:
    """Cosine decay from the base rate to zero."""
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@LR_SCHEDULES.register("linear")
def linear_schedule(progress: float) -> float:
    """The usual transformers fine-tuning schedule: linear warm-up over the first 10% of steps, then linear decay to 0."""
    if progress < 0.1:
        return (progress + 1e-3) / 0.1
    return max(0.0, (1.0 - progress) / 0.9)


@LR_SCHEDULES.register("constant")
def constant_schedule(progress: float) -> float:
    """The base rate throughout."""
    return 1.0


@dataclass
class TrainingConfig:
    epochs: int = 1
    batch_size: int = 128
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "step"
    optimizer: str = "sgd"
    seed: int = 0
    num_workers: Optional[int] = None  # None: sized to the machine for data decoded row by row (svp_hf.utils.device)
    augment: bool = True
    channels_last: Optional[bool] = None  # None: convolutional models on a CUDA device (svp_hf.utils.device)
    pin_memory: Optional[bool] = None  # None: when batches go to a CUDA device


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: List[Dict[str, float]] = field(default_factory=list)
    signals: Dict[str, TrainingSignal] = field(default_factory=dict)
    seconds: float = 0.0
    prepare_seconds: float = 0.0  # of `seconds`: turning the dataset into batches (decode-once, tokenising) and setup
    loop_seconds: float = 0.0  # of `seconds`: the epochs themselves
    checkpoint_seconds: float = 0.0  # of `loop_seconds`: saving the checkpoints
    checkpoints: int = 0  # how many were saved (svp_hf.engine.checkpoint.checkpoint_due)


OPTIMIZERS: Registry = Registry("optimizer")


def sparse_parameters(model: torch.nn.Module) -> set:
    """ids of the weights of sparse embeddings (``sparse=True``, as fastText's)."""
    return {
        id(m.weight) for m in model.modules() if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.sparse
    }


def parameter_groups(model: torch.nn.Module, learning_rate: float, momentum: float, weight_decay: float) -> List[Dict]:
    """SGD parameter groups. Parameters of sparse embeddings (``sparse=True``, as fastText's) take plain SGD steps at
    ``learning_rate / (1 - momentum)``, the steady-state step of momentum SGD: torch cannot apply weight decay to sparse
    gradients, and a sparse momentum buffer grows dense. Every other parameter gets momentum and weight decay."""
    sparse = sparse_parameters(model)
    groups = [{"params": [p for p in model.parameters() if id(p) not in sparse], "weight_decay": weight_decay}]
    if sparse:
        groups.append(
            {
                "params": [p for p in model.parameters() if id(p) in sparse],
                "lr": learning_rate / (1.0 - momentum),
                "momentum": 0.0,
                "weight_decay": 0.0,
            }
        )
    return groups


@OPTIMIZERS.register("sgd")
def sgd_optimizer(model: torch.nn.Module, config: "TrainingConfig") -> torch.optim.Optimizer:
    """SGD with momentum and weight decay, as every SVP experiment trains (sparse embeddings included)."""
    return torch.optim.SGD(
        parameter_groups(model, config.learning_rate, config.momentum, config.weight_decay),
        lr=config.learning_rate,
        momentum=config.momentum,
    )


@OPTIMIZERS.register("adamw")
def adamw_optimizer(model: torch.nn.Module, config: "TrainingConfig") -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay), the usual optimizer for fine-tuning pretrained transformers; biases and
    normalisation weights (1-d parameters) take no weight decay. Sparse embeddings cannot be trained with it."""
    if sparse_parameters(model):
        raise SVPConfigError(
            f"optimizer 'adamw' cannot update the sparse embeddings of {type(model).__name__} (e.g. fasttext); use 'sgd'"
        )
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.learning_rate)


sgd_optimizer.sparse_gradients = True
adamw_optimizer.sparse_gradients = False


def make_accelerator(**kwargs) -> Accelerator:
    """An ``Accelerator`` that also runs data-parallel on machines without GPUs.

    ``accelerate launch --multi_gpu --num_processes N`` on a CPU-only machine starts N processes, but Accelerate only
    sets up a process group (gloo) when told to use the CPU; without it every process would run the whole job alone.
    """
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    accel_api = getattr(torch, "accelerator", None)  # torch >= 2.6: CUDA, XPU, MPS, ...
    has_device = accel_api.is_available() if accel_api is not None else torch.cuda.is_available()
    if launched and not has_device:
        kwargs.setdefault("cpu", True)
    if (
        kwargs.get("mixed_precision") is None
    ):  # bf16 autocast where the GPU or CPU runs it natively (svp_hf.utils.device)
        kwargs["mixed_precision"] = default_mixed_precision()
    check_mixed_precision(kwargs["mixed_precision"])
    return Accelerator(**kwargs)


def release(accelerator: Accelerator, *, collect: bool = False) -> None:
    """Forget what `accelerator` prepared (as ``free_memory`` does), so it cannot end up in the next training's
    checkpoints. Python's garbage collection (0.5 s and more with a large heap) runs only with `collect` and a GPU,
    where freeing device memory matters; the device cache is emptied there too."""
    forget_prepared(accelerator)
    if accelerator.device.type == "cuda":
        if collect:
            import gc

            gc.collect()
        torch.cuda.empty_cache()


class SlicedBatchSampler(BatchSampler):
    """torch's ``BatchSampler``: the same batches in the same order, drawing on the same generator, but cut from one
    permutation (or range) per epoch instead of assembled index by index (for a model as cheap as fastText, building
    a batch's list of row numbers one ``next`` at a time costs a noticeable share of a step). Samplers other than a
    plain ``RandomSampler`` or ``SequentialSampler`` are iterated as torch does."""

    def __iter__(self):
        sampler, size = self.sampler, self.batch_size
        if type(sampler) is RandomSampler and random_sampler_draws_one_permutation(sampler):
            # RandomSampler's own draw: one permutation of the rows from its generator
            rows = torch.randperm(len(sampler.data_source), generator=sampler.generator).tolist()
        elif type(sampler) is SequentialSampler:
            rows = range(len(sampler.data_source))
        else:
            yield from super().__iter__()
            return
        stop = len(rows) - len(rows) % size if self.drop_last else len(rows)
        for start in range(0, stop, size):
            yield list(rows[start : start + size])


def make_loader(
    dataset,
    collate_fn,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
):
    """A DataLoader over a model-ready dataset, batched by `collate_fn` (see :func:`svp_hf.data.images.batch_collate`); its
    `num_workers` workers live as long as the loader (every epoch reuses them). Shuffled, it draws the batches
    ``DataLoader(shuffle=True, generator=...)`` draws (:class:`SlicedBatchSampler`)."""
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        dataset,
        batch_sampler=SlicedBatchSampler(sampler, batch_size, drop_last=False),
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=generator,
        pin_memory=pin_memory,
    )


def train_model(
    model: torch.nn.Module,
    family,
    dataset,
    info: DataInfo,
    config: TrainingConfig,
    accelerator: Accelerator,
    *,
    signals: Sequence[str] = (),
    desc: str = "train",
    checkpoint_dir: Optional[str] = None,
    progress: bool = True,
    keep_last: bool = True,
) -> TrainResult:
    """Train `model` on `dataset` (a ``datasets.Dataset`` with `svp_index`) with the configured optimizer (SGD with
    momentum by default) and learning-rate schedule.

    Every training signal named in `signals` (e.g. ``["correctness"]`` for forgetting events) is fed on every
    presentation of an example and returned in the result. With `checkpoint_dir`, the whole training state (model,
    optimizer, scheduler, RNG states, epoch, history and training signals) is saved there whenever the epochs since the
    last save took at least 10 times that save (before the first, as its bytes estimate it; after every epoch unless a
    save outlasts a tenth of an epoch: :func:`svp_hf.engine.checkpoint.checkpoint_due`), and after the last epoch unless
    `keep_last` is false (the caller deletes the checkpoints once its run ends; the last epoch then follows the same
    rule). Training resumes from the newest checkpoint found there: a resumed run ends with exactly the model an
    uninterrupted one trains. The data order of every epoch is a function of ``(seed, epoch)`` alone. `progress` false
    draws no progress bars (a caller running many short trainings draws one of its own; see :mod:`svp_hf.utils.progress` for
    svp_hf's switch).
    """
    start = time.perf_counter()
    release(accelerator)  # what a previous training prepared must not end up in this one's checkpoints
    model = apply_memory_format(model, accelerator.device, config.channels_last)
    if accelerator.device.type == "cpu" and effective_mixed_precision(accelerator) == "bf16":
        guard_bf16_convolutions(model)  # oneDNN's bf16 weight gradient of convolutions on maps below the kernel's reach
    pin_memory = resolve_pin_memory(accelerator.device, config.pin_memory)
    train_ds = family.dataset(dataset, model, info, train=True, augment=config.augment)
    loader = make_loader(
        train_ds,
        batch_collate(train_ds, family.make_collate(model)),
        config.batch_size,
        shuffle=True,
        seed=config.seed,
        num_workers=resolve_num_workers(train_ds, config.num_workers, accelerator.num_processes),
        pin_memory=pin_memory,
    )
    order = loader.generator
    ahead = use_prefetch(train_ds, config.num_workers, accelerator.device, accelerator.num_processes)
    total_steps = max(1, config.epochs * len(loader))  # in single-process steps: Accelerate scales for N processes
    schedule = LR_SCHEDULES.get(config.lr_schedule)
    optimizer = OPTIMIZERS.get(config.optimizer)(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step / total_steps))
    # The loader's batches are moved by the loop itself (to_device: nothing to do on the CPU).
    model, optimizer, loader, scheduler = accelerator.prepare(
        model, optimizer, loader, scheduler, device_placement=[True, True, False, True]
    )
    recorded = make_signals(signals, len(dataset))
    history: List[Dict[str, float]] = []
    done, folder = latest_epoch(checkpoint_dir)
    if folder is not None:
        state = load_epoch(accelerator, folder)
        history = list(state["history"])
        recorded.update(restore_signals(state, recorded))
        logger.info(f"{desc}: resumed from {folder} (epoch {done} of {config.epochs})", main_process_only=True)
    prepared = time.perf_counter() - start
    saving, saves, last_save, since = 0.0, 0, None, 0.0
    for epoch in range(done, config.epochs):
        order.manual_seed(config.seed + epoch)
        augment_stream = epoch_generator(accelerator.device, config.seed, epoch, accelerator.process_index)
        model.train()
        began = time.perf_counter()
        record = _train_epoch(
            model,
            family,
            train_ds,
            loader,
            optimizer,
            scheduler,
            accelerator,
            recorded,
            augment_stream,
            non_blocking=pin_memory,
            ahead=ahead,
            desc=f"{desc} epoch {epoch + 1}/{config.epochs}",
            progress=progress,
        )
        since += time.perf_counter() - began
        record = {"epoch": epoch + 1, **record}
        history.append(record)
        logger.info(f"{desc} epoch {epoch + 1}: loss {record['loss']:.4f}, train accuracy {record['accuracy']:.4f}")
        if accelerator.trackers:
            accelerator.log({f"{desc}/{k}": v for k, v in record.items() if k != "epoch"}, step=epoch + 1)
        # The main process's clock decides, so that every process saves (and waits for the others) at the same epochs.
        if checkpoint_dir and last_save is None:  # before its first save, a training prices one from its bytes
            last_save = estimated_save_seconds(state_bytes(model, optimizer, scheduler))
        last_epoch = epoch + 1 == config.epochs
        if checkpoint_dir and on_main(
            accelerator, checkpoint_due, since, last_save, last_epoch, CHECKPOINT_SHARE, keep_last
        ):
            state = {"epoch": epoch + 1, "history": history, "signals": signals_state(recorded)}
            saved = time.perf_counter()
            save_epoch(accelerator, checkpoint_dir, epoch + 1, state)
            last_save = time.perf_counter() - saved
            saving, saves, since = saving + last_save, saves + 1, 0.0
    loop_seconds = time.perf_counter() - start - prepared
    model = unwrap(accelerator, model)
    release(accelerator, collect=True)
    return TrainResult(model, history, recorded, time.perf_counter() - start, prepared, loop_seconds, saving, saves)


def optimizer_step(optimizer) -> None:
    """``optimizer.step()`` then ``optimizer.zero_grad(set_to_none=True)``, skipping Accelerate's per-step lookups
    where they cannot matter.

    Accelerate's ``AcceleratedOptimizer`` searches the import path for an optional package twice on every ``step``
    and inspects ``zero_grad``'s signature on every call (together some 0.3 ms): as long as a fastText step, or a
    small proxy's step on a GPU. The plain wrapper with nothing to do but step (no gradient scaler, no XLA) steps the
    wrapped optimizer directly when gradients are in sync, as Accelerate would; anything else (fp16 scaling,
    DeepSpeed's wrapper) goes through Accelerate's own methods."""
    if (
        type(optimizer) is AcceleratedOptimizer
        and optimizer.scaler is None
        and optimizer.accelerator_state.distributed_type != DistributedType.XLA
    ):
        if optimizer.gradient_state.sync_gradients:
            optimizer.optimizer.step()
            optimizer.optimizer.zero_grad(set_to_none=True)
        return
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def backward(accelerator: Accelerator, loss: torch.Tensor) -> None:
    """``accelerator.backward(loss)``, without its division of the loss by 1 when nothing is accumulated, scaled or
    handed to DeepSpeed or Megatron-LM (an extra operation forward and backward on every step)."""
    if (
        accelerator.gradient_accumulation_steps == 1
        and accelerator.scaler is None
        and accelerator.distributed_type not in (DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)
    ):
        loss.backward()
    else:
        accelerator.backward(loss)


# Steps whose loss, hits and training signals one process reduces together: the step itself only keeps its logits
# (detached) and labels, and every STEPS_PER_RECORD steps they are turned into the per-example values in one go (a
# dozen small operations per group instead of per step: for a model as cheap as fastText, each costs ~1% of a step).
STEPS_PER_RECORD = 16


def _train_epoch(
    model,
    family,
    train_ds,
    loader,
    optimizer,
    scheduler,
    accelerator,
    recorded,
    augment_stream,
    *,
    non_blocking=False,
    ahead=False,
    desc,
    progress=True,
):
    """One epoch with no host synchronisation inside the step: each step's loss, hits and the signals' per-example
    values stay on the device, and are reduced and copied to the host once, after the epoch; the signals are then
    updated in presentation order, exactly as per-step updates would.

    One process turns its steps' logits into those values :data:`STEPS_PER_RECORD` steps at a time; with several,
    every step's values are gathered with ``gather_for_metrics`` right after it (an asynchronous collective, which
    drops the padding of the last uneven batch)."""
    device = accelerator.device
    group = STEPS_PER_RECORD if accelerator.num_processes == 1 else 1
    gather = accelerator.gather_for_metrics if accelerator.num_processes > 1 else (lambda payload: payload)
    records: List[tuple] = []
    pending: List[tuple] = []  # (logits, labels, svp_index, loss) of the steps not recorded yet

    def record():
        losses = torch.cat([loss.expand(labels.shape[0]) for _, labels, _, loss in pending])  # one per example
        logits, labels, index, values = observe_steps(recorded, pending)
        hits = logits.argmax(dim=-1) == labels
        payload = (hits, losses)
        if recorded:
            payload += (index, values)
        records.append(gather(payload))
        pending.clear()

    batches = prefetch(loader) if ahead else loader  # the next batch gathered while this one trains
    # A bar only on a terminal (``disable=None``): writing one into a log costs more than a fastText step.
    bar = progress_bar(
        batches, total=len(loader), desc=desc, main_process=accelerator.is_local_main_process, enabled=progress
    )
    for batch in bar:
        batch = on_device(train_ds, to_device(batch, device, non_blocking), augment_stream)
        labels = batch["labels"]
        logits = family.logits(model, batch)
        loss = F.cross_entropy(logits, labels)
        backward(accelerator, loss)
        optimizer_step(optimizer)
        scheduler.step()
        pending.append((logits.detach(), labels, batch[INDEX_COLUMN], loss.detach()))
        if len(pending) == group:
            record()
    if pending:
        record()
    if not records:
        return {"loss": 0.0, "accuracy": 0.0}
    hits, losses, *observed = (torch.cat(parts) for parts in zip(*records))
    if recorded:
        update_all(recorded, observed[0].cpu().numpy(), observed[1].cpu().numpy())
    seen = hits.shape[0]
    return {
        "loss": float(losses.double().sum()) / seen,
        "accuracy": int(hits.sum()) / seen,
    }  # the epoch's only synchronisation


@torch.no_grad()
def evaluate_accuracy(
    model: torch.nn.Module,
    family,
    dataset,
    info: DataInfo,
    accelerator: Accelerator,
    *,
    batch_size: int = 256,
    desc: str = "evaluate",
    num_workers: Optional[int] = None,
    progress: bool = True,
) -> float:
    """Top-1 accuracy of `model` on `dataset`, every example counted exactly once across processes (with a progress
    bar unless `progress` is false)."""
    eval_ds = family.dataset(dataset, model, info, train=False)
    loader = accelerator.prepare(
        make_loader(
            eval_ds,
            batch_collate(eval_ds, family.make_collate(model)),
            batch_size,
            shuffle=False,
            num_workers=resolve_num_workers(eval_ds, num_workers, accelerator.num_processes),
            pin_memory=resolve_pin_memory(accelerator.device, None),
        )
    )
    model = model.to(accelerator.device).eval()
    correct = torch.zeros((), dtype=torch.int64, device=accelerator.device)
    total = 0
    bar = progress_bar(
        loader, desc=desc, main_process=accelerator.is_local_main_process, enabled=progress, terminal_only=False
    )
    for batch in bar:
        batch = on_device(eval_ds, batch)
        with accelerator.autocast():
            logits = family.logits(model, batch)
        hits = accelerator.gather_for_metrics(logits.argmax(dim=-1) == batch["labels"])
        correct += hits.sum()
        total += hits.shape[0]
    return int(correct) / max(total, 1)


__all__ = [
    "LR_SCHEDULES",
    "TrainingConfig",
    "TrainResult",
    "parameter_groups",
    "make_accelerator",
    "make_loader",
    "SlicedBatchSampler",
    "train_model",
    "evaluate_accuracy",
]
