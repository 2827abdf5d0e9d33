"""Resumable runs: epoch training checkpoints, per-shard score files and active-learning rounds.

Layout under a run's ``output_dir/checkpoints/``::

    run.json                  # the settings of the run these checkpoints belong to
    proxy/epoch_0003/         # model.safetensors (the weights), training_state.safetensors (epoch, history,
                              # training signals), optimizer_state.safetensors (optimizers, schedulers, gradient
                              # scaler, step counter) and random_states_<process>.safetensors
    target/epoch_0010/
    scores/shard_00000.npz    # svp_index, label, one array per scored method (+ embeddings for k-centers)
    active/proxy/round_0002/  # pool.npz, rounds.json and, for warm starts, model.safetensors + rng_state.safetensors

Nothing is pickled, so no checkpoint (resumed, or handed over as ``proxy_checkpoint``) can run code when read:
tensors are stored with safetensors, every other value as JSON in the safetensors header (:func:`save_state_file`),
arrays as ``.npz`` read with ``allow_pickle=False``. Checkpoints of earlier versions, which pickled their training
state, are refused and never read.

Every folder and file is written under a temporary name and renamed when complete, so a run killed at any moment
leaves only complete checkpoints behind; only the newest epoch of each model is kept. A training saves whenever the
epochs since its last save took at least 10 times that save (:func:`checkpoint_due`; before its first save, the save
is estimated from the bytes it writes), and after its last epoch unless told that its final weights are not kept:
after every epoch for most models, once or never for a model whose save outlasts its whole training.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from .._compat import prepared
from ..errors import SVPConfigError
from ..files import atomic_path, atomic_write, atomic_write_json
from ..utils.device import unwrap

CHECKPOINTS_DIR = "checkpoints"
MODEL_WEIGHTS = "model.safetensors"
TRAINING_STATE = "training_state.safetensors"
OPTIMIZER_STATE = "optimizer_state.safetensors"
RANDOM_STATES = "random_states_{}.safetensors"
RUN_SETTINGS = "run.json"
# What earlier versions pickled (torch.save): never unpickled, a checkpoint holding one is refused.
PICKLED_STATE_FILES = ("training_state.pt", "rng_state.pt")
RESUME_FIX = "rerun with --resume false to start over (or choose another output_dir)"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
_SHARD_FILE = re.compile(r"^shard_(\d+)\.npz$")


def on_main(accelerator: Accelerator, fn, *args):
    """Run `fn` on the main process only, then let every process continue with its result."""
    result = [fn(*args) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(result)
    return result[0]


# --- when to save: checkpoints cost at most about CHECKPOINT_SHARE of the training they protect ----------------------

# Saving a checkpoint may cost at most about this share of the training time it protects: the next checkpoint is saved
# once the training since the last one took at least that save's seconds / CHECKPOINT_SHARE. Before a training's first
# save its seconds are estimated from the bytes it writes at SAVE_BYTES_PER_SECOND (a fast disk's rate: an estimate on
# the low side only saves sooner). After the last epoch a training saves in any case when its final weights are kept
# (a kept checkpoint folder holds the trained model, and a finished training is never trained again); when they are
# not (the run's checkpoints are deleted once it ends), the last epoch follows the same rule. Models whose epochs are
# long against a save (most) save after every epoch; a large table trained in fractions of a second per epoch
# (fastText's 2M-row embedding, 0.5 GB, 0.5-1.5 s to save) saves once at the end, or not at all.
CHECKPOINT_SHARE = 0.1
SAVE_BYTES_PER_SECOND = 1e9


def checkpoint_due(
    trained_seconds: float,
    save_seconds: Optional[float],
    last_epoch: bool = False,
    share: float = CHECKPOINT_SHARE,
    keep_last: bool = True,
) -> bool:
    """Whether a training saves a checkpoint after this epoch: after its `last_epoch` when `keep_last`, when the save
    is unknown (`save_seconds` ``None``), else when the `trained_seconds` since the last save are at least
    ``save_seconds / share`` (`save_seconds`: the last save's, or before the first an estimate,
    :func:`estimated_save_seconds`)."""
    if last_epoch and keep_last:
        return True
    return save_seconds is None or trained_seconds * share >= save_seconds


def planned_saves(
    epochs: int, epoch_seconds: float, save_seconds: float, share: float = CHECKPOINT_SHARE, keep_last: bool = True
) -> int:
    """How many checkpoints :func:`checkpoint_due` saves in a training of `epochs` epochs of `epoch_seconds` each when
    a save takes `save_seconds` (estimated as that before the first): what pricing a training counts."""
    epochs = max(int(epochs), 0)
    saves, since, last = 0, 0.0, max(float(save_seconds), 0.0)
    for epoch in range(epochs):
        since += max(float(epoch_seconds), 0.0)
        if checkpoint_due(since, last, epoch + 1 == epochs, share, keep_last):
            saves, since = saves + 1, 0.0
    return saves


def state_bytes(*objects: Any) -> int:
    """The bytes of every tensor in the states of `objects` (modules: their ``state_dict``; optimizers: their
    ``state``): about what a checkpoint of them writes."""

    def tensors(value: Any) -> Iterable[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, dict):
            for v in value.values():
                yield from tensors(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                yield from tensors(v)

    total = 0
    for obj in objects:
        state = obj.state_dict() if isinstance(obj, torch.nn.Module) else getattr(obj, "state", {})
        total += sum(t.numel() * t.element_size() for t in tensors(state))
    return total


def estimated_save_seconds(nbytes: int, rate: float = SAVE_BYTES_PER_SECOND) -> float:
    """Seconds to save `nbytes` at `rate` bytes per second: a training's save before it timed one."""
    return max(int(nbytes), 0) / float(rate)


def _reason(err: BaseException) -> str:
    """The first line of an exception, for a one-line message."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


# --- state files: tensors in safetensors, everything else as JSON in its header -------------------------------------

_STATE_KEY = "svp_hf_state"


def _encode(value: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    """`value` as JSON, its tensors and numpy arrays moved to `tensors` and referred to by name; tuples and dicts
    (whose keys may be ints, as an optimizer's) are tagged so that they come back as they were."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise TypeError("a checkpoint holds no object arrays")
        key = str(len(tensors))
        tensors[key] = torch.from_numpy(np.array(value, dtype=value.dtype.newbyteorder("="), order="C", copy=True))
        return {"ndarray": key}
    if isinstance(value, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = value.detach().to("cpu", copy=True).contiguous()
        return {"tensor": key}
    if isinstance(value, list):
        return [_encode(v, tensors) for v in value]
    if isinstance(value, tuple):
        return {"tuple": [_encode(v, tensors) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[_encode(k, tensors), _encode(v, tensors)] for k, v in value.items()]}
    raise TypeError(f"a checkpoint cannot hold a {type(value).__name__}")


def _decode(tree: Any, tensors: Dict[str, torch.Tensor]) -> Any:
    """The value :func:`_encode` turned into `tree`; a ValueError for anything it cannot have written."""
    if tree is None or isinstance(tree, (bool, int, float, str)):
        return tree
    if isinstance(tree, list):
        return [_decode(t, tensors) for t in tree]
    if isinstance(tree, dict) and len(tree) == 1:
        ((kind, body),) = tree.items()
        if kind == "tuple" and isinstance(body, list):
            return tuple(_decode(t, tensors) for t in body)
        if (
            kind == "dict"
            and isinstance(body, list)
            and all(isinstance(p, list) and len(p) == 2 and isinstance(p[0], (str, int)) for p in body)
        ):
            return {k: _decode(v, tensors) for k, v in body}
        if kind in ("tensor", "ndarray") and isinstance(body, str) and body in tensors:
            return tensors[body].numpy() if kind == "ndarray" else tensors[body]
    raise ValueError(f"unexpected entry {json.dumps(tree)[:80]}")


def save_state_file(path: str, state: Any) -> None:
    """Write `state` (dicts, lists and tuples of numbers, strings, tensors and numpy arrays: optimizer and scheduler
    state dicts, random generators' states, training histories) to `path` as one safetensors file, through a
    temporary file. Read it back with :func:`load_state_file`; no pickle is involved either way."""
    tensors: Dict[str, torch.Tensor] = {}
    tree = _encode(state, tensors)
    _save_safetensors(path, tensors, {_STATE_KEY: json.dumps(tree)})


def _save_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str]) -> None:
    """`tensors` and `metadata` as a safetensors file at `path`, written under a temporary name of this process and
    moved into place when complete (:func:`svp_hf.files.atomic_write`)."""
    from safetensors.torch import save_file

    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def load_state_file(path: str, fix: str) -> Any:
    """The state :func:`save_state_file` wrote to `path`; an :class:`SVPConfigError` naming the file and `fix` when it
    is missing or anything else (a file that is not safetensors, or safetensors that svp_hf did not write)."""
    from safetensors import SafetensorError, safe_open

    if not os.path.isfile(path):
        raise SVPConfigError(f"{path!r} is missing: the checkpoint is incomplete; {fix}")
    try:
        with safe_open(path, framework="pt") as f:
            header = (f.metadata() or {}).get(_STATE_KEY)
            if header is None:
                raise ValueError("no svp_hf state in its header")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return _decode(json.loads(header), tensors)
    except (OSError, SafetensorError, ValueError, RecursionError) as err:
        raise SVPConfigError(f"{path!r} is not a state file written by svp_hf ({_reason(err)}); {fix}") from None


def check_not_pickled(folder: str, fix: str) -> None:
    """Refuse a checkpoint folder written by an earlier svp_hf, whose state is pickled (never read: it could run
    code)."""
    old = [n for n in PICKLED_STATE_FILES if os.path.isfile(os.path.join(folder, n))]
    if old:
        raise SVPConfigError(
            f"{folder!r} is a checkpoint of an earlier svp_hf: its {old[0]} is pickle, which could run code and is "
            f"never read; {fix}"
        )


def pickled_checkpoints(root: str) -> List[str]:
    """The folders under `root` holding a pickled state file of an earlier svp_hf."""
    return sorted(folder for folder, _, names in os.walk(root) if any(n in PICKLED_STATE_FILES for n in names))


# --- random generators ----------------------------------------------------------------------------------------------


def random_states() -> Dict[str, Any]:
    """This process's random generators' states: Python's, numpy's, torch's (and every CUDA device's)."""
    states = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_random_states(states: Any, path: str, fix: str) -> None:
    """Restore the generators' states :func:`random_states` returned (read from `path`, named in errors)."""
    try:
        random.setstate(states["python"])
        np.random.set_state(states["numpy"])
        torch.set_rng_state(states["torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise SVPConfigError(
            f"{path!r} holds no random generators' states svp_hf can restore ({_reason(err)}); {fix}"
        ) from None
    cuda = states.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


# --- model weights --------------------------------------------------------------------------------------------------


def save_weights_file(model: torch.nn.Module, path: str) -> None:
    """`model`'s weights as a safetensors file at `path` (through a temporary file); a tensor shared by several names
    (tied weights) is stored once, under its first name."""
    tensors, seen = {}, set()
    for name, tensor in model.state_dict().items():
        key = (tensor.device, tensor.data_ptr(), tensor.dtype, tuple(tensor.shape))
        if tensor.numel() and key in seen:
            continue
        seen.add(key)
        tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    _save_safetensors(path, tensors, {"format": "pt"})


# ``torch.load(weights_only=True)`` cannot run code from torch 2.6 on (earlier, CVE-2025-32434 could).
SAFE_TORCH_LOAD = torch.__version__ >= "2.6"


def _read_weights(weights: str, what: str, fix: str) -> Dict[str, torch.Tensor]:
    """The tensors of a weights file: safetensors, or torch's format read with ``weights_only=True`` (tensors and
    plain containers only; anything else is refused unread)."""
    if not weights.endswith(".safetensors") and not SAFE_TORCH_LOAD:
        raise SVPConfigError(
            f"{what} {weights!r} is in torch's pickle-based format, which torch {torch.__version__} cannot read "
            "without the risk of running code: convert it to .safetensors, or upgrade torch to 2.6 or later"
        )
    try:
        if weights.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(weights)
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # SafetensorError, UnpicklingError (refused globals), a file that is no archive, ...
        raise SVPConfigError(f"{what} {weights!r} cannot be read as model weights ({_reason(err)}); {fix}") from None
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise SVPConfigError(f"{what} {weights!r} holds no model weights (a mapping of names to tensors); {fix}")
    return state


def load_model_weights(
    model: torch.nn.Module,
    weights: str,
    *,
    what: str = "proxy_checkpoint",
    fix: str = "point it at the proxy's weights",
) -> torch.nn.Module:
    """Load the weights file `weights` into `model`; an :class:`SVPConfigError` naming the file (`what` says whose
    it is, `fix` what to do) when it cannot be read or does not fit. Names missing from the file because they share
    a tensor with a name it holds (tied weights, stored once) are not missing."""
    state = _read_weights(weights, what, fix)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise SVPConfigError(f"the weights in {weights!r} do not fit the model: {_reason(err)}") from None
    pointers = {name: t.data_ptr() for name, t in model.state_dict().items() if t.numel()}
    loaded = {pointers[name] for name in state if name in pointers}
    missing = [name for name in missing if name not in pointers or pointers[name] not in loaded]
    if missing or unexpected:
        shown = "; ".join(
            f"{what_} {names[:5]}" for what_, names in (("missing", missing), ("unexpected", unexpected)) if names
        )
        raise SVPConfigError(f"the weights in {weights!r} do not fit the model ({shown})")
    return model


# --- training checkpoints -------------------------------------------------------------------------------------------


def latest_epoch(path: Optional[str]) -> Tuple[int, Optional[str]]:
    """The newest complete epoch checkpoint under `path`: ``(epoch, folder)``, or ``(0, None)``."""
    if not path or not os.path.isdir(path):
        return 0, None
    epochs = [(int(m.group(1)), name) for name in os.listdir(path) if (m := _EPOCH_DIR.match(name))]
    if not epochs:
        return 0, None
    epoch, name = max(epochs)
    return epoch, os.path.join(path, name)


def _weights_name(index: int) -> str:
    return MODEL_WEIGHTS if index == 0 else MODEL_WEIGHTS.replace(".", f"_{index}.", 1)


def save_training(accelerator: Accelerator, folder: str, training_state: Dict[str, Any]) -> None:
    """Save what `accelerator` prepared into `folder`: the main process writes the weights of every model,
    `training_state` (epoch, history, training signals: what a proxy_checkpoint is read for) and the optimizer state
    (optimizers, schedulers, gradient scaler, step counter: what resuming needs too); every process writes its
    random generators' states."""
    if accelerator.is_main_process:
        for i, model in enumerate(prepared(accelerator, "models")):
            save_weights_file(unwrap(accelerator, model), os.path.join(folder, _weights_name(i)))
        save_state_file(os.path.join(folder, TRAINING_STATE), training_state)
        optimization = {
            "optimizers": [o.state_dict() for o in prepared(accelerator, "optimizers")],
            "schedulers": [s.state_dict() for s in prepared(accelerator, "schedulers")],
            "scaler": accelerator.scaler.state_dict() if accelerator.scaler is not None else None,
            "step": int(accelerator.step),
        }
        save_state_file(os.path.join(folder, OPTIMIZER_STATE), optimization)
    save_state_file(os.path.join(folder, RANDOM_STATES.format(accelerator.process_index)), random_states())


def save_epoch(accelerator: Accelerator, path: str, epoch: int, training_state: Dict[str, Any]) -> str:
    """Save everything `accelerator` prepared plus `training_state` as ``path/epoch_NNNN``; drop older epochs."""
    final = os.path.join(path, f"epoch_{epoch:04d}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()
    save_training(accelerator, tmp, training_state)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(tmp, final)
        for name in os.listdir(path):
            if name != os.path.basename(final) and (_EPOCH_DIR.match(name) or name.endswith(".tmp")):
                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_training_state(folder: str, fix: str = RESUME_FIX, name: str = TRAINING_STATE) -> Dict[str, Any]:
    """The training state :func:`save_epoch` wrote in `folder` (epoch, history, training signals), or with `name`
    its optimizer state."""
    check_not_pickled(folder, fix)
    path = os.path.join(folder, name)
    state = load_state_file(path, fix)
    if not isinstance(state, dict):
        raise SVPConfigError(f"{path!r} holds no training state; {fix}")
    return state


def _restore(objects: list, states: Any, what: str, path: str) -> None:
    """``load_state_dict`` of every prepared object of one kind (optimizers, schedulers) from the saved `states`."""
    if not isinstance(states, list) or len(states) != len(objects):
        raise SVPConfigError(f"{path!r} holds {what} for another training; {RESUME_FIX}")
    for obj, state in zip(objects, states):
        try:
            obj.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise SVPConfigError(
                f"{path!r}: its {what} do not fit this training ({_reason(err)}); {RESUME_FIX}"
            ) from None


def load_epoch(accelerator: Accelerator, folder: str) -> Dict[str, Any]:
    """Restore everything :func:`save_training` saved in `folder` into what `accelerator` prepared (weights,
    optimizers, schedulers, gradient scaler, step counter and this process's random generators), and return the
    training state (epoch, history, training signals)."""
    state = load_training_state(folder)
    optimization = load_training_state(folder, name=OPTIMIZER_STATE)
    path = os.path.join(folder, OPTIMIZER_STATE)
    for i, model in enumerate(prepared(accelerator, "models")):
        load_model_weights(
            unwrap(accelerator, model), os.path.join(folder, _weights_name(i)), what="checkpoint", fix=RESUME_FIX
        )
    _restore(prepared(accelerator, "optimizers"), optimization.get("optimizers"), "optimizer states", path)
    _restore(prepared(accelerator, "schedulers"), optimization.get("schedulers"), "scheduler states", path)
    if accelerator.scaler is not None:
        _restore([accelerator.scaler], [optimization.get("scaler")], "gradient scaler state", path)
    step = optimization.get("step")
    if not isinstance(step, int) or isinstance(step, bool):
        raise SVPConfigError(f"{path!r} holds no step counter; {RESUME_FIX}")
    accelerator.step = step
    rng = os.path.join(folder, RANDOM_STATES.format(accelerator.process_index))
    set_random_states(load_state_file(rng, RESUME_FIX), rng, RESUME_FIX)
    return state


# --- proxy checkpoints given by the user ----------------------------------------------------------------------------

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")
_WEIGHT_EXTENSIONS = (".safetensors", ".bin", ".pt", ".pth")


def resolve_model_checkpoint(path: str) -> Tuple[str, Optional[str]]:
    """The weights file of a checkpoint and its training-state folder (when it is one of svp_hf's checkpoints).

    `path` is a weights file (``.safetensors``, or ``.bin``/``.pt``/``.pth`` read with ``weights_only=True``), a
    folder holding one (e.g. a training checkpoint's), or a folder of epoch checkpoints
    (``output_dir/checkpoints/proxy``: its newest epoch is used). A checkpoint of an earlier svp_hf, whose training
    state is pickled, is refused (its weights file alone may be given).
    """
    if os.path.isfile(path):
        if not path.endswith(_WEIGHT_EXTENSIONS):
            raise SVPConfigError(
                f"proxy_checkpoint {path!r} is not a weights file ({', '.join(_WEIGHT_EXTENSIONS)}); give the proxy's "
                "weights file or the folder of svp_hf's checkpoint"
            )
        return path, None
    if not os.path.isdir(path):
        raise SVPConfigError(f"proxy_checkpoint {path!r} not found")
    _, newest = latest_epoch(path)
    folder = newest or path
    for name in _WEIGHT_NAMES:
        weights = os.path.join(folder, name)
        if os.path.isfile(weights):
            check_not_pickled(folder, f"set proxy_checkpoint to {weights!r} to score with its weights alone")
            state = folder if os.path.isfile(os.path.join(folder, TRAINING_STATE)) else None
            return weights, state
    raise SVPConfigError(f"proxy_checkpoint {path!r} holds no model weights (looked for {', '.join(_WEIGHT_NAMES)})")


# --- model weights with the random generators' states (active learning's warm starts) ----------------------------


RNG_FILE = "rng_state.safetensors"


def save_weights(model, path: str) -> None:
    """Save `model`'s weights to `path` and, next to them, the random number generators' states (so that a warm
    start in a later process trains exactly as the simulated loop does), each through a temporary file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    save_state_file(os.path.join(os.path.dirname(path), RNG_FILE), random_states())
    save_weights_file(model, path)


def restore_rng_state(weights_path: str, fix: str = RESUME_FIX) -> None:
    """Restore the generators' states saved next to `weights_path` by :func:`save_weights`, when there; `fix` says
    what to do when they cannot be read."""
    folder = os.path.dirname(weights_path)
    check_not_pickled(folder, fix)
    path = os.path.join(folder, RNG_FILE)
    if os.path.isfile(path):
        set_random_states(load_state_file(path, fix), path, fix)


# --- active-learning rounds -----------------------------------------------------------------------------------------

_ROUND_DIR = re.compile(r"^round_(\d+)$")
ROUND_ARRAYS, ROUND_RECORDS, ROUND_WEIGHTS = "pool.npz", "rounds.json", MODEL_WEIGHTS


def save_round(
    accelerator: Accelerator, folder: str, round_: int, arrays: Dict[str, np.ndarray], records: list, model=None
) -> None:
    """Save a finished active-learning round as ``folder/round_NNNN`` (the pool's arrays, every round's record and,
    for warm starts, the selector's weights with the generators' states); drop older rounds."""
    if accelerator.is_main_process:
        final = os.path.join(folder, f"round_{round_:04d}")
        tmp = final + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        np.savez(os.path.join(tmp, ROUND_ARRAYS), **arrays)
        with open(os.path.join(tmp, ROUND_RECORDS), "w", encoding="utf-8") as f:
            json.dump(records, f)
        if model is not None:
            save_weights(unwrap(accelerator, model), os.path.join(tmp, ROUND_WEIGHTS))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for name in os.listdir(folder):
            if name != os.path.basename(final) and (_ROUND_DIR.match(name) or name.endswith(".tmp")):
                shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    accelerator.wait_for_everyone()


def read_arrays(path: str, what: str, fix: str = RESUME_FIX) -> Dict[str, np.ndarray]:
    """Every array of the ``.npz`` file at `path`, read with ``allow_pickle=False`` (an object array, or a file that
    is pickle, is refused unread): an :class:`SVPConfigError` naming `what` and `fix` for anything unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {k: data[k] for k in data.files}
        odd = [k for k, v in arrays.items() if not isinstance(v, np.ndarray)]
        if odd:
            raise ValueError(f"{odd[0]!r} is no array")
        return arrays
    except Exception as err:  # not an .npz, pickled content, a truncated or corrupted archive, ...
        raise SVPConfigError(f"{what} {path!r} cannot be read ({_reason(err)}); {fix}") from None


def read_json(path: str, what: str, fix: str = RESUME_FIX) -> Any:
    """The JSON file at `path`; an :class:`SVPConfigError` naming `what` and `fix` when it is not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError, RecursionError) as err:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise SVPConfigError(f"{what} {path!r} cannot be read ({_reason(err)}); {fix}") from None


def load_round(folder: Optional[str]):
    """The newest round saved by :func:`save_round` under `folder`: ``(round, arrays, records, weights or None)``,
    or ``(0, None, [], None)``."""
    if not folder or not os.path.isdir(folder):
        return 0, None, [], None
    rounds = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := _ROUND_DIR.match(name))]
    if not rounds:
        return 0, None, [], None
    round_, name = max(rounds)
    path = os.path.join(folder, name)
    check_not_pickled(path, RESUME_FIX)
    arrays = read_arrays(os.path.join(path, ROUND_ARRAYS), "the active-learning round")
    records = read_json(os.path.join(path, ROUND_RECORDS), "the active-learning rounds")
    if not isinstance(records, list) or not {"rounds", "scores"} <= set(arrays):
        raise SVPConfigError(f"{path!r} is not an active-learning round saved by svp_hf; {RESUME_FIX}")
    weights = os.path.join(path, ROUND_WEIGHTS)
    return round_, arrays, records, weights if os.path.isfile(weights) else None


# --- score shards ---------------------------------------------------------------------------------------------------


class ShardStore:
    """Finished scoring shards on disk, one ``.npz`` per shard, written by the main process."""

    def __init__(self, path: Optional[str]):
        self.path = path

    def finished(self) -> Dict[int, str]:
        if not self.path or not os.path.isdir(self.path):
            return {}
        return {
            int(m.group(1)): os.path.join(self.path, name)
            for name in os.listdir(self.path)
            if (m := _SHARD_FILE.match(name))
        }

    def write(self, shard: int, arrays: Dict[str, np.ndarray]) -> None:
        if not self.path:
            return
        os.makedirs(self.path, exist_ok=True)
        final = os.path.join(self.path, f"shard_{shard:05d}.npz")
        with atomic_path(final, suffix=".npz") as tmp:  # never another writer's temporary file
            np.savez(tmp, **arrays)

    @staticmethod
    def read(path: str) -> Dict[str, np.ndarray]:
        return read_arrays(path, "the score shard")


# --- the run's settings ---------------------------------------------------------------------------------------------


def changed_run_settings(root: str, settings: Dict[str, Any]) -> Optional[list]:
    """The keys whose value differs between `settings` and the ones recorded in ``root/run.json``, sorted; ``None``
    when no run is recorded there."""
    path = os.path.join(root, RUN_SETTINGS)
    if not os.path.isfile(path):
        return None
    settings = json.loads(json.dumps(settings, default=str))
    saved = read_json(path, "the checkpoints' settings")
    if not isinstance(saved, dict):
        raise SVPConfigError(f"the checkpoints' settings {path!r} are not a mapping; {RESUME_FIX}")
    return sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))


def has_progress(root: str) -> bool:
    """Whether the checkpoints under `root` hold anything beyond the recorded settings."""
    return os.path.isdir(root) and any(name != RUN_SETTINGS for name in os.listdir(root))


def check_run_settings(accelerator: Accelerator, root: str, settings: Dict[str, Any]) -> None:
    """Record `settings` in ``root/run.json``, or check they match the ones of the unfinished run found there (and
    that its checkpoints are no pickled ones of an earlier svp_hf)."""
    changed = changed_run_settings(root, settings)
    if changed is not None:
        if changed:
            raise SVPConfigError(
                f"{root!r} holds checkpoints of an unfinished run with other settings ({', '.join(changed)}); rerun "
                "with the same settings to resume it, set --resume false (or overwrite_output_dir) to start over, "
                "or choose another output_dir"
            )
        old = pickled_checkpoints(root)
        if old:
            check_not_pickled(old[0], RESUME_FIX)
        return
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        atomic_write_json(os.path.join(root, RUN_SETTINGS), json.loads(json.dumps(settings, default=str)))
    accelerator.wait_for_everyone()


def discard(accelerator: Accelerator, paths: Iterable[str]) -> None:
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
    accelerator.wait_for_everyone()


__all__ = [
    "CHECKPOINTS_DIR",
    "latest_epoch",
    "checkpoint_due",
    "planned_saves",
    "estimated_save_seconds",
    "state_bytes",
    "save_epoch",
    "save_training",
    "load_epoch",
    "load_training_state",
    "resolve_model_checkpoint",
    "load_model_weights",
    "save_weights_file",
    "save_state_file",
    "load_state_file",
    "check_not_pickled",
    "read_arrays",
    "read_json",
    "ShardStore",
    "check_run_settings",
    "changed_run_settings",
    "has_progress",
    "discard",
    "on_main",
    "save_weights",
    "save_round",
    "load_round",
    "restore_rng_state",
]
