"""svp_hf: Selection via Proxy (Coleman et al., ICLR 2020) for the Hugging Face ecosystem.

A small, cheap proxy model ranks the training examples; the selected subset trains the large target model.

The names below are loaded on first use (PEP 562, as ``transformers`` does), so ``import svp_hf.config`` (parsing a
recipe) does not import torch. The package's folders are layered; each imports only its own layer or a lower one
(docs/architecture.md says why this cut):

0. ``errors``, ``registry``, ``version``, ``files``, ``account``, ``record``, ``_compat`` and ``config/`` (recipes):
   the shared vocabulary, no torch;
1. ``utils/``: logging, progress bars, device settings, the CPU's precision features;
2. ``data/``: loading, columns, images (and their decode-once cache), text, augmentation, prefetch;
3. ``models/`` (model families) and ``selection/`` (signals, methods, ranking, strategies, correlation: pure functions
   of scores);
4. ``engine/`` (training, scoring, checkpoints) and ``publish/`` (output folder, report, card, Hub, templates,
   ``evaluate`` modules);
5. ``stages/``: typed settings, pre-flight, the proxy stage, ``auto``'s check, ``Pruner`` (the one orchestrator every
   front end drives) and ``DynamicsRecorder``;
6. ``active/``: active learning's pool, rounds and labelling session;
7. ``jobs/``: the job frame, the core-set and active-learning jobs, the ``svp-hf`` command;
8. front ends that nothing inside imports: ``api`` (the Python API), this package, and the entry points
   ``__main__``, ``coreset`` and ``active/__main__`` (``python -m svp_hf[.coreset|.active]``).

``import svp_hf`` also puts SVP's CIFAR ResNets (``resnet20``, ``resnet56``, ``resnet110``, ``resnet164``) in timm's
model registry without importing torch or timm itself: if timm is already imported they are registered at once,
otherwise as soon as timm is (see :class:`_RegisterWithTimm`), so ``import svp_hf; timm.create_model("resnet20")``
works in either order.
"""

from __future__ import annotations

import importlib
import sys
import warnings

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
    "STRATEGIES": "selection.strategies",
    "list_strategies": "selection.strategies",
    "SIGNALS": "selection.signals",
    "register_signal": "selection.signals",
    "load_data": "data.loading",
    "BUILTIN_DATASETS": "data.builtin",
    "SVPConfigError": "errors",
    "SVPRuntimeError": "errors",
    "DynamicsRecorder": "stages.recorder",
    "Pruner": "stages.orchestrator",
    "PruneResult": "stages.orchestrator",
    "ModelSettings": "stages.settings",
    "ScoringSettings": "stages.settings",
    "SelectionSettings": "stages.settings",
    "AutoSettings": "stages.settings",
    "METHODS": "selection.methods",
    "get_method": "selection.methods",
    "list_methods": "selection.methods",
    "register_method": "selection.methods",
    "FAMILIES": "models",
    "create_model": "models",
    "list_families": "models",
    "register_family": "models",
    "resolve_family": "models",
    "push_to_hub": "publish.hub",
    "load_scores": "publish.output",
    "disable_progress_bars": "utils.progress",
    "enable_progress_bars": "utils.progress",
    "are_progress_bars_disabled": "utils.progress",
    "compare_scores": "selection.correlation",
    "spearman": "selection.correlation",
    "kendall": "selection.correlation",
    "top_k_overlap": "selection.correlation",
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


# --- SVP's CIFAR ResNets in timm's registry -------------------------------------------------------------------------

_CIFAR_RESNETS = f"{__name__}.models.cifar_resnet"  # registers resnet20/56/110/164 with timm when imported


def _register_cifar_resnets() -> None:
    """Import the module that registers the CIFAR ResNets with timm; a failure is a warning, never a failed import."""
    try:
        importlib.import_module(_CIFAR_RESNETS)
    except Exception as err:  # e.g. a timm too old for the module: timm itself must still import
        warnings.warn(
            f"svp_hf could not register its CIFAR ResNets with timm ({type(err).__name__}: {err})", stacklevel=2
        )


class _RegisterWithTimm:
    """A one-shot import hook (``sys.meta_path`` finder) that registers the CIFAR ResNets right after ``timm`` is
    imported, so that importing svp_hf costs no torch or timm import.

    It finds timm's module spec with the other finders and has that spec's loader (its own instance, restored after)
    run the registration once timm's ``__init__`` has run; it then takes itself off ``sys.meta_path``. Any other
    import, and timm's own module object and loader, are left as they are."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "timm":
            return None
        spec = None
        for finder in list(sys.meta_path):
            if finder is not self and hasattr(finder, "find_spec"):
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None  # not installed, or loaded in a way this hook does not know: left to the import system
        _remove_timm_hook()
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_then_register(module):
            try:
                exec_module(module)
            finally:
                vars(loader).pop("exec_module", None)  # the loader's own method again
            _register_cifar_resnets()

        loader.exec_module = exec_then_register
        return spec


def _remove_timm_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterWithTimm)]


if "timm" in sys.modules:
    _register_cifar_resnets()
elif not any(isinstance(f, _RegisterWithTimm) for f in sys.meta_path):  # one hook, even if svp_hf is reloaded
    sys.meta_path.insert(0, _RegisterWithTimm())
