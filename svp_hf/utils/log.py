"""svp_hf's loggers: standard ``logging`` loggers that, in a multi-process run, log on the main process only by
default and name the process (``[RANK 1]``) only when there is more than one, unlike ``accelerate.logging``, which
prefixes every message, single-process runs included."""

from __future__ import annotations

import logging

from accelerate.state import PartialState


class ProcessAdapter(logging.LoggerAdapter):
    """``logger.info(msg, main_process_only=True)`` as in ``accelerate.logging``."""

    def log(self, level, msg, *args, main_process_only: bool = True, **kwargs):
        if not self.isEnabledFor(level):
            return
        state = PartialState()
        if main_process_only and not state.is_main_process:
            return
        if state.num_processes > 1:
            msg = f"[RANK {state.process_index}] {msg}"
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str) -> ProcessAdapter:
    return ProcessAdapter(logging.getLogger(name), {})


__all__ = ["get_logger", "ProcessAdapter"]
