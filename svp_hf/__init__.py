"""svp_hf: Selection via Proxy (Coleman et al., ICLR 2020) for the Hugging Face ecosystem.

A small, cheap proxy model ranks the training examples; the selected subset trains the large target model.

The names below are loaded on first use (PEP 562, as ``transformers`` does), so ``import svp_hf.config`` (parsing a
recipe) does not import torch. The package is layered; each module imports only modules of its own or a lower layer:

1. ``errors``, ``registry``, ``version``, ``recipe_files``, ``config``: names, values and recipe parsing (no torch);
2. plug-ins and building blocks: ``log``, ``device``, ``prefetch``, ``augment``, ``image_cache``, ``packed``, ``signals``,
   ``selection``, ``strategies``, ``methods``, ``pool``, ``models``,
   ``data``, ``checkpoint``, ``training``, ``scoring``, ``correlation``, ``report``, ``card``, ``output``, ``hub``;
3. stages: ``roles``, ``preflight``, ``proxy``, ``auto``, ``labelling``, ``active_learning``;
4. the job pipeline and the jobs: ``pipeline``, ``coreset``, ``active``;
5. front ends that nothing inside imports: ``api`` (the Python API), ``cli`` and this package.
"""

from __future__ import annotations

import importlib

from .version import __version__

# name -> the module that defines it
_EXPORTS = {
    "prune": "api",
    "score": "api",
    "select": "api",
    "selected_indices": "api",
    "choose": "api",
    "active_learn": "api",
    "ask": "api",
    "tell": "api",
    "labelled_set": "api",
    "STRATEGIES": "strategies",
    "list_strategies": "strategies",
    "SIGNALS": "signals",
    "register_signal": "signals",
    "load_data": "data",
    "BUILTIN_DATASETS": "data",
    "SVPConfigError": "errors",
    "SVPRuntimeError": "errors",
    "METHODS": "methods",
    "get_method": "methods",
    "list_methods": "methods",
    "register_method": "methods",
    "FAMILIES": "models",
    "create_model": "models",
    "list_families": "models",
    "register_family": "models",
    "resolve_family": "models",
    "push_to_hub": "hub",
    "load_scores": "output",
    "compare_scores": "correlation",
    "spearman": "correlation",
    "kendall": "correlation",
    "top_k_overlap": "correlation",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

