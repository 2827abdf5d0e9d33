"""The errors svp_hf raises, and the exit codes its command-line jobs turn them into.

- :class:`SVPConfigError`: bad input (a recipe, argument, dataset or model svp_hf cannot use), raised before any
  expensive work starts. The jobs exit with :data:`EXIT_CONFIG` (2, as argparse does for bad arguments).
- :class:`SVPRuntimeError`: the input was valid but the run failed while working (a proxy that diverged into NaN
  scores, an image that cannot be decoded, an upload that failed). The jobs exit with :data:`EXIT_RUNTIME` (3).
"""

EXIT_CONFIG = 2
EXIT_RUNTIME = 3


class SVPConfigError(ValueError):
    """A recipe, argument, dataset or model that svp_hf cannot use, with a message that names the problem."""


class SVPRuntimeError(RuntimeError):
    """A valid run that failed while working, with a message that names what failed and what to try."""


__all__ = ["SVPConfigError", "SVPRuntimeError", "EXIT_CONFIG", "EXIT_RUNTIME"]
