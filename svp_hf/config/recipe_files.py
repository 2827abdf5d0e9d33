"""The recipes shipped with svp_hf, and how a recipe argument finds its file.

The repository's ``recipes/`` folder is packaged as ``svp_hf/recipes`` in the wheel, so that the commands of the README
work from an installed package anywhere: a recipe path that exists on disk is read as it is; otherwise a bundled
recipe name (``quickstart``, ``quickstart.yaml`` or ``recipes/quickstart.yaml``) resolves to the packaged copy.
Importing this module imports neither torch nor any other heavy library.
"""

from __future__ import annotations

import os
from typing import List

RECIPES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
RECIPE_EXTENSIONS = (".yaml", ".yml")


def bundled_recipes() -> List[str]:
    """The names of the recipes shipped with svp_hf (``quickstart``, ``cifar10``, ...)."""
    if not os.path.isdir(RECIPES_DIR):
        return []
    return sorted(os.path.splitext(n)[0] for n in os.listdir(RECIPES_DIR) if n.endswith(RECIPE_EXTENSIONS))


def resolve_recipe(path: str) -> str:
    """`path` when it is a file; else the bundled recipe it names (``NAME``, ``NAME.yaml`` or ``recipes/NAME.yaml``,
    relative); else `path` unchanged (the caller reports it missing)."""
    if os.path.isfile(path):
        return path
    folder, name = os.path.split(os.path.normpath(path))
    if folder not in ("", "recipes"):
        return path
    stem, ext = os.path.splitext(name)
    if ext and ext not in RECIPE_EXTENSIONS:
        return path
    for extension in RECIPE_EXTENSIONS:
        bundled = os.path.join(RECIPES_DIR, stem + extension)
        if os.path.isfile(bundled):
            return bundled
    return path


__all__ = ["RECIPES_DIR", "bundled_recipes", "resolve_recipe"]
