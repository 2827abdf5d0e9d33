"""How svp_hf writes numbers into its messages, summaries, reports and cards."""

from __future__ import annotations


def format_seconds(seconds: float) -> str:
    """Seconds for a message: one decimal from a second up (``"12.3 s"``), two significant digits under it
    (``"0.027 s"``), so that a small budget never reads as ``"0.0 s"``."""
    seconds = float(seconds)
    if seconds == 0.0 or abs(seconds) >= 0.95 or seconds != seconds:
        return f"{seconds:.1f} s"
    return f"{seconds:.2g} s"


__all__ = ["format_seconds"]
