import json

import pytest

from svp_hf.config import DataArguments, RunArguments, SelectionArguments, parse_args, read_recipe
from svp_hf.errors import SVPConfigError


def write(tmp_path, text, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_recipe_then_overrides(tmp_path):
    recipe = write(
        tmp_path,
        "dataset_name: parquet\n"
        "data_files: {train: a.parquet, test: b.parquet}\n"
        "method: entropy\nfraction: 0.3\nclass_balanced: true\nscore_methods: [margin, kcenter]\n",
    )
    data, sel, run = parse_args([recipe, "--fraction", "0.4", "--seed", "7", "--target", "resnet56"])
    assert data.data_files == {"train": "a.parquet", "test": "b.parquet"}
    assert (sel.method, sel.fraction, sel.seed, sel.class_balanced) == ("entropy", 0.4, 7, True)
    assert sel.methods == ["entropy", "margin", "kcenter"]
    assert run.target == "resnet56"


def test_data_files_as_json_on_the_command_line(tmp_path):
    files = {"train": "x.parquet"}
    data, _, _ = parse_args(["--data_files", json.dumps(files)])
    assert data.data_files == files


def test_every_recipe_in_the_repo_parses():
    from pathlib import Path

    for recipe in sorted(Path(__file__).resolve().parents[1].joinpath("recipes").glob("*.yaml")):
        if recipe.name.startswith("active_"):
            continue  # parsed by svp_hf.active's own tests
        parse_args([str(recipe)])


def test_unknown_recipe_key(tmp_path):
    with pytest.raises(SVPConfigError, match=r"unknown recipe key\(s\) \['fractoin'\]"):
        parse_args([write(tmp_path, "fractoin: 0.5\n")])


def test_unknown_command_line_flag():
    with pytest.raises(SVPConfigError, match="unknown argument"):
        parse_args(["--no_such_flag", "1"])


def test_broken_yaml(tmp_path):
    with pytest.raises(SVPConfigError, match="not valid YAML"):
        read_recipe(write(tmp_path, "method: [unclosed\n"))
    with pytest.raises(SVPConfigError, match="must be a mapping"):
        read_recipe(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SVPConfigError, match="not found"):
        read_recipe(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(fraction=0.0), "fraction"),
        (dict(fraction=1.01), "fraction"),
        (dict(proxy_epochs=0), "proxy_epochs"),
        (dict(batch_size=0), "batch_size"),
        (dict(learning_rate=0), "learning_rate"),
    ],
)
def test_bad_selection_arguments(kwargs, match):
    with pytest.raises(SVPConfigError, match=match):
        SelectionArguments(**kwargs)


def test_bad_run_and_data_arguments():
    with pytest.raises(SVPConfigError, match="target_epochs"):
        RunArguments(target_epochs=0)
    with pytest.raises(SVPConfigError, match="mixed_precision"):
        RunArguments(mixed_precision="fp64")
    with pytest.raises(SVPConfigError, match="not valid JSON"):
        DataArguments(data_files="{bad json")
    with pytest.raises(SVPConfigError, match="max_train_samples"):
        DataArguments(max_train_samples=0)
    assert DataArguments(eval_split="").eval_split is None
    assert RunArguments(target="").target is None


def test_strategy_keys_parse_and_default_to_auto(tmp_path):
    _, sel, _ = parse_args([write(tmp_path, "strategy: coverage\ncoverage_beta: 0.1\nfraction: 0.3\n")])
    assert (sel.strategy, sel.coverage_beta, sel.fraction) == ("coverage", 0.1, 0.3)
    _, sel, _ = parse_args([])
    assert (sel.strategy, sel.coverage_beta, sel.auto_holdout, sel.auto_seeds, sel.auto_epochs) == ("auto", None, 0.1, 2, None)
    with pytest.raises(SVPConfigError, match="auto_seeds must be at least 1"):
        parse_args(["--auto_seeds", "0"])
