"""svp_hf.config.recipe_files: the recipes shipped with svp_hf, and how a recipe argument finds its file."""

import os

from svp_hf.config.recipe_files import RECIPES_DIR, bundled_recipes, resolve_recipe

from .conftest import REPO


def test_resolve_recipe():
    assert resolve_recipe(str(REPO / "recipes" / "quickstart.yaml")) == str(REPO / "recipes" / "quickstart.yaml")
    for name in ("quickstart", "quickstart.yaml", "recipes/quickstart.yaml"):
        resolved = resolve_recipe(name) if not os.path.isfile(name) else os.path.join(RECIPES_DIR, "quickstart.yaml")
        assert os.path.samefile(resolved, REPO / "recipes" / "quickstart.yaml")
    assert resolve_recipe("elsewhere/quickstart.yaml") == "elsewhere/quickstart.yaml"  # only plain names or recipes/
    assert resolve_recipe("nothing") == "nothing"
    assert set(bundled_recipes()) == {p.stem for p in (REPO / "recipes").glob("*.yaml")}
