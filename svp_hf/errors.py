"""Errors svp_hf raises for bad input, always before any expensive work starts."""


class SVPConfigError(ValueError):
    """A recipe, argument, dataset or model that svp_hf cannot use, with a message that names the problem."""


__all__ = ["SVPConfigError"]
