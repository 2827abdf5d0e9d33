"""svp_hf's progress bars, switched on and off as ``datasets`` and ``transformers`` switch theirs.

- :func:`disable_progress_bars` / :func:`enable_progress_bars` / :func:`are_progress_bars_disabled` (also
  ``svp_hf.disable_progress_bars()`` and so on): every bar svp_hf draws (training epochs, evaluation, scoring) goes
  through :func:`progress_bar`, which draws nothing while they are off. The environment variable
  ``SVP_HF_DISABLE_PROGRESS_BARS`` takes precedence, as ``HF_DATASETS_DISABLE_PROGRESS_BARS`` does for ``datasets``:
  ``1`` keeps them off, ``0`` on, whatever the code says.
- A bar is drawn only by the main process of a machine, and by default only on a terminal (a bar written into a log
  file costs more than a step of a model as cheap as fastText).
- :func:`quiet_datasets` silences ``datasets``' own bars ("Flattening the indices", "Map", "Filter", ...) around the
  ``datasets`` operations svp_hf runs internally (a single ``svp_hf.prune`` call runs dozens), and restores their
  previous state after. A user who sets ``HF_DATASETS_DISABLE_PROGRESS_BARS=0`` keeps them.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Iterable, Iterator, Optional

from tqdm.auto import tqdm

ENV_VAR = "SVP_HF_DISABLE_PROGRESS_BARS"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

_disabled = False  # the programmatic switch (the environment variable has precedence)


def _env_setting() -> Optional[bool]:
    """``True``/``False`` when :data:`ENV_VAR` says bars are off/on, ``None`` when it is unset (or unreadable)."""
    value = os.environ.get(ENV_VAR, "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    return None


def _switch(disabled: bool) -> None:
    """Set svp_hf's progress bars off (`disabled`) or on, unless ``SVP_HF_DISABLE_PROGRESS_BARS`` says otherwise (it
    has precedence, as ``HF_DATASETS_DISABLE_PROGRESS_BARS`` has in ``datasets``)."""
    global _disabled
    env = _env_setting()
    if env is not None and env != disabled:
        action = "disable" if disabled else "enable"
        warnings.warn(
            f"Cannot {action} progress bars: environment variable {ENV_VAR}={int(env)} is set and has precedence.",
            stacklevel=3,
        )
        return
    _disabled = disabled


def disable_progress_bars() -> None:
    """Turn svp_hf's progress bars off (unless ``SVP_HF_DISABLE_PROGRESS_BARS=0`` is set, which has precedence)."""
    _switch(True)


def enable_progress_bars() -> None:
    """Turn svp_hf's progress bars back on (unless ``SVP_HF_DISABLE_PROGRESS_BARS=1`` is set, which has precedence)."""
    _switch(False)


def are_progress_bars_disabled() -> bool:
    """Whether svp_hf's progress bars are off (by ``SVP_HF_DISABLE_PROGRESS_BARS``, else by
    :func:`disable_progress_bars`)."""
    env = _env_setting()
    return env if env is not None else _disabled


def _is_local_main_process() -> bool:
    """Whether this process is the first of its machine in a launch (``LOCAL_RANK``, set by ``torchrun`` and
    ``accelerate launch``), without starting Accelerate's process group."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0")) == 0
    except ValueError:
        return True


def progress_bar(
    iterable: Optional[Iterable] = None,
    *,
    desc: Optional[str] = None,
    total: Optional[float] = None,
    leave: bool = True,
    main_process: Optional[bool] = None,
    enabled: bool = True,
    terminal_only: bool = True,
    **kwargs,
) -> tqdm:
    """A ``tqdm`` bar, as ``tqdm(iterable, desc=..., total=..., leave=...)``, that draws nothing when svp_hf's bars
    are off (:func:`disable_progress_bars`), when `enabled` is false (a caller's own ``progress=False``), or on any
    process but the main one of its machine (`main_process`; by default read from ``LOCAL_RANK``). With
    `terminal_only`, it draws only on a terminal (tqdm's ``disable=None``)."""
    main = _is_local_main_process() if main_process is None else main_process
    if not enabled or not main or are_progress_bars_disabled():
        disable: Optional[bool] = True
    else:
        disable = None if terminal_only else False
    return tqdm(iterable, desc=desc, total=total, leave=leave, disable=disable, **kwargs)


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """Silence ``datasets``' progress bars inside the block, and put their previous state back after it (nested
    blocks too). Nothing changes when they are off already, or when ``HF_DATASETS_DISABLE_PROGRESS_BARS=0`` asks
    for them. Also usable as a decorator (``@quiet_datasets()``), but not around a generator's ``yield``: the
    caller's own ``datasets`` calls would be silenced too."""
    from datasets import config as datasets_config
    from datasets.utils import are_progress_bars_disabled as datasets_bars_disabled
    from datasets.utils import disable_progress_bars as disable_datasets_bars
    from datasets.utils import enable_progress_bars as enable_datasets_bars

    if datasets_bars_disabled() or datasets_config.HF_DATASETS_DISABLE_PROGRESS_BARS is False:
        yield
        return
    disable_datasets_bars()
    try:
        yield
    finally:
        enable_datasets_bars()


__all__ = [
    "ENV_VAR",
    "disable_progress_bars",
    "enable_progress_bars",
    "are_progress_bars_disabled",
    "progress_bar",
    "quiet_datasets",
]
