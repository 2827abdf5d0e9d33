"""Resumable runs: per-epoch training checkpoints (Accelerate ``save_state``) and per-shard score files.

Layout under a run's ``output_dir/checkpoints/``::

    run.json                  # the settings of the run these checkpoints belong to
    proxy/epoch_0003/         # Accelerate save_state (model, optimizer, scheduler, RNG states of every process)
                              # + training_state.pt (epoch, history, forgetting tracker)
    target/epoch_0010/
    scores/shard_00000.npz    # svp_index, label, one array per scored method (+ embeddings for k-centers)

Every folder and file is written under a temporary name and renamed when complete, so a run killed at any moment
leaves only complete checkpoints behind; only the newest epoch of each model is kept.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from typing import Any, Dict, Iterable, Optional, Tuple

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list

from .device import unwrap
from .errors import SVPConfigError

CHECKPOINTS_DIR = "checkpoints"
TRAINING_STATE = "training_state.pt"
RUN_SETTINGS = "run.json"
_EPOCH_DIR = re.compile(r"^epoch_(\d+)$")
_SHARD_FILE = re.compile(r"^shard_(\d+)\.npz$")


def on_main(accelerator: Accelerator, fn, *args):
    """Run `fn` on the main process only, then let every process continue with its result."""
    result = [fn(*args) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(result)
    return result[0]


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


def save_epoch(accelerator: Accelerator, path: str, epoch: int, training_state: Dict[str, Any]) -> str:
    """Save everything `accelerator` prepared plus `training_state` as ``path/epoch_NNNN``; drop older epochs."""
    final = os.path.join(path, f"epoch_{epoch:04d}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)  # every process writes its own RNG states; the main process the rest
    if accelerator.is_main_process:
        torch.save(training_state, os.path.join(tmp, TRAINING_STATE))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        os.replace(tmp, final)
        for name in os.listdir(path):
            if name != os.path.basename(final) and (_EPOCH_DIR.match(name) or name.endswith(".tmp")):
                shutil.rmtree(os.path.join(path, name), ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_training_state(folder: str) -> Dict[str, Any]:
    return torch.load(os.path.join(folder, TRAINING_STATE), weights_only=False)


# --- proxy checkpoints given by the user ----------------------------------------------------------------------------

_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin", "model.pt", "model.pth")


def resolve_model_checkpoint(path: str) -> Tuple[str, Optional[str]]:
    """The weights file of a checkpoint and its training-state folder (when it is one of svp_hf's checkpoints).

    `path` is a weights file (``.safetensors``, ``.bin``, ``.pt``), a folder holding one (e.g. ``save_state``'s), or a
    folder of epoch checkpoints (``output_dir/checkpoints/proxy``: its newest epoch is used).
    """
    if os.path.isfile(path):
        return path, None
    if not os.path.isdir(path):
        raise SVPConfigError(f"proxy_checkpoint {path!r} not found")
    _, newest = latest_epoch(path)
    folder = newest or path
    for name in _WEIGHT_NAMES:
        if os.path.isfile(os.path.join(folder, name)):
            state = folder if os.path.isfile(os.path.join(folder, TRAINING_STATE)) else None
            return os.path.join(folder, name), state
    raise SVPConfigError(f"proxy_checkpoint {path!r} holds no model weights (looked for {', '.join(_WEIGHT_NAMES)})")


def load_model_weights(model: torch.nn.Module, weights: str) -> torch.nn.Module:
    if weights.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise SVPConfigError(f"the weights in {weights!r} do not fit the proxy model: {err}") from None
    return model


# --- model weights with the random generators' states (active learning's warm starts) ----------------------------


RNG_FILE = "rng_state.pt"


def save_weights(model, path: str) -> None:
    """Save `model`'s weights to `path` and, next to them, the random number generators' states (so that a warm
    start in a later process trains exactly as the simulated loop does), each through a temporary file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    for obj, dest in ((rng, os.path.join(os.path.dirname(path), RNG_FILE)), (model.state_dict(), path)):
        tmp = dest + f".tmp-{os.getpid()}"
        torch.save(obj, tmp)
        os.replace(tmp, dest)


def restore_rng_state(weights_path: str) -> None:
    """Restore the generators' states saved next to `weights_path` by :func:`save_weights`, when there."""
    path = os.path.join(os.path.dirname(weights_path), RNG_FILE)
    if not os.path.isfile(path):
        return
    rng = torch.load(path, weights_only=False)  # written by this session: python and numpy states are tuples
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if "cuda" in rng and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])



# --- active-learning rounds -----------------------------------------------------------------------------------------

_ROUND_DIR = re.compile(r"^round_(\d+)$")
ROUND_ARRAYS, ROUND_RECORDS, ROUND_WEIGHTS = "pool.npz", "rounds.json", "model.pt"


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
    with np.load(os.path.join(path, ROUND_ARRAYS)) as data:
        arrays = {k: data[k] for k in data.files}
    with open(os.path.join(path, ROUND_RECORDS), encoding="utf-8") as f:
        records = json.load(f)
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
        return {int(m.group(1)): os.path.join(self.path, name) for name in os.listdir(self.path) if (m := _SHARD_FILE.match(name))}

    def write(self, shard: int, arrays: Dict[str, np.ndarray]) -> None:
        if not self.path:
            return
        os.makedirs(self.path, exist_ok=True)
        final = os.path.join(self.path, f"shard_{shard:05d}.npz")
        tmp = final + ".tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, final)

    @staticmethod
    def read(path: str) -> Dict[str, np.ndarray]:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}


# --- the run's settings ---------------------------------------------------------------------------------------------


def changed_run_settings(root: str, settings: Dict[str, Any]) -> Optional[list]:
    """The keys whose value differs between `settings` and the ones recorded in ``root/run.json``, sorted; ``None``
    when no run is recorded there."""
    path = os.path.join(root, RUN_SETTINGS)
    if not os.path.isfile(path):
        return None
    settings = json.loads(json.dumps(settings, default=str))
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))


def has_progress(root: str) -> bool:
    """Whether the checkpoints under `root` hold anything beyond the recorded settings."""
    return os.path.isdir(root) and any(name != RUN_SETTINGS for name in os.listdir(root))


def check_run_settings(accelerator: Accelerator, root: str, settings: Dict[str, Any]) -> None:
    """Record `settings` in ``root/run.json``, or check they match the ones of the unfinished run found there."""
    changed = changed_run_settings(root, settings)
    if changed is not None:
        if changed:
            raise SVPConfigError(
                f"{root!r} holds checkpoints of an unfinished run with other settings ({', '.join(changed)}); rerun "
                "with the same settings to resume it, set --resume false (or overwrite_output_dir) to start over, "
                "or choose another output_dir"
            )
        return
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        path = os.path.join(root, RUN_SETTINGS)
        os.makedirs(root, exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(json.loads(json.dumps(settings, default=str)), f, indent=2)
        os.replace(path + ".tmp", path)
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
    "save_epoch",
    "load_training_state",
    "resolve_model_checkpoint",
    "load_model_weights",
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
