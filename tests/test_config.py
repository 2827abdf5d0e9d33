import json
from dataclasses import fields

import pytest

from svp_hf.config import (
    ACTIVE_DATACLASSES,
    ActiveArguments,
    DataArguments,
    RunArguments,
    SelectionArguments,
    parse_args,
    read_recipe,
)
from svp_hf.errors import SVPConfigError

from .conftest import REPO

RECIPE = str(REPO / "recipes" / "active_quickstart.yaml")


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
    assert (sel.strategy, sel.coverage_beta, sel.auto_holdout, sel.auto_seeds, sel.auto_epochs) == (
        "auto",
        None,
        0.1,
        2,
        None,
    )
    with pytest.raises(SVPConfigError, match="auto_seeds must be at least 1"):
        parse_args(["--auto_seeds", "0"])


# --- every value's type is checked, wherever it comes from ------------------------------------------------------------


@pytest.mark.parametrize(
    "line, match",
    [
        ("batch_size: [64, 32]", "batch_size must be an integer, got \\[64, 32\\]"),
        ("batch_size: 64.9", "batch_size must be an integer, got 64.9"),
        ("score_methods: 5", "score_methods must be a list, got 5"),
        ("fraction: true", "fraction must be a number, got True"),
        ("augment: 3", "augment must be true or false, got 3"),
        ("proxy: [resnet20]", "proxy must be a string"),
        ("budgets: {a: 1}", "budgets must be a list"),
        ("target_batch_size: many", "--target_batch_size.*invalid int value"),
    ],
)
def test_recipe_values_of_the_wrong_type_are_refused(tmp_path, line, match):
    path = write(tmp_path, "dataset_name: builtin:digits\nbudgets: [20, 40]\ninitial_size: 10\n" + line + "\n")
    with pytest.raises(SVPConfigError, match=match):
        parse_args([path], dataclass_types=ACTIVE_DATACLASSES)


def test_recipe_values_are_converted_once_to_their_type(tmp_path):
    path = write(
        tmp_path, "weight_decay: 5e-4\nbatch_size: 64.0\naugment: 'no'\ntrain_split: 2020\ntext_column: title content\n"
    )
    data, sel, _ = parse_args([path])
    assert sel.weight_decay == 5e-4 and sel.batch_size == 64 and isinstance(sel.batch_size, int)
    assert sel.augment is False and data.train_split == "2020" and data.text_column == ["title", "content"]
    with pytest.raises(SVPConfigError, match="learning_rate must be a number"):
        SelectionArguments(learning_rate="fast")  # Python keyword arguments go through the same checks


def test_split_names_must_be_plain_names():
    for bad in ("/any/dir/pwned", "../up", "a/b", ".."):
        with pytest.raises(SVPConfigError, match="plain split name"):
            DataArguments(eval_split=bad)
    assert DataArguments(train_split="train_2020.v1").train_split == "train_2020.v1"


# --- training settings: one definition, one reader, per role -----------------------------------------------------------


def test_every_training_setting_exists_for_the_proxy_and_the_target():
    from svp_hf.config import TRAINING_KEYS

    run_keys = {f.name for f in fields(RunArguments)}
    sel_keys = {f.name for f in fields(SelectionArguments)}
    for key in TRAINING_KEYS:
        assert key in sel_keys and f"target_{key}" in run_keys


def test_role_settings_fall_back_to_the_plain_keys():
    from svp_hf.config import role_settings

    sel = SelectionArguments(batch_size=32, learning_rate=0.2, augment=False, proxy_epochs=3)
    run = RunArguments(target="resnet56", target_epochs=7, target_batch_size=16, target_weight_decay=0.0)
    proxy, target = role_settings("proxy", sel, run), role_settings("target", sel, run)
    assert proxy["batch_size"] == 32 and proxy["epochs"] == 3 and proxy["model"] == "resnet20"
    assert target["batch_size"] == 16 and target["weight_decay"] == 0.0 and target["epochs"] == 7
    assert target["learning_rate"] == 0.2 and target["augment"] is False and target["model"] == "resnet56"
    with pytest.raises(SVPConfigError, match="no target"):
        role_settings("target", sel, RunArguments())


# --- active-learning recipes and arguments ----------------------------------------------------------------------------


def test_active_recipes_parse():
    recipes = sorted((REPO / "recipes").glob("active_*.yaml"))
    assert {r.name for r in recipes} >= {"active_cifar10.yaml", "active_quickstart.yaml", "active_amazon_polarity.yaml"}
    for recipe in recipes:
        *_, run_args, act = parse_args([str(recipe)], dataclass_types=ACTIVE_DATACLASSES)
        assert act.budgets and act.budgets[0] > act.initial_size
    data, sel, run, act = parse_args(
        [str(REPO / "recipes" / "active_cifar10.yaml")], dataclass_types=ACTIVE_DATACLASSES
    )
    assert (act.initial_size, act.budgets) == (1000, [5000, 10000, 15000, 20000, 25000])  # the paper's schedule
    assert (sel.proxy, run.target, sel.method, act.selector) == ("resnet20", "resnet164", "least_confidence", "both")


def test_command_line_budgets_override_the_recipe():
    *_, act = parse_args([RECIPE, "--budgets", "150", "250", "--selector", "proxy"], dataclass_types=ACTIVE_DATACLASSES)
    assert act.budgets == [150, 250] and act.selector == "proxy"
    assert ActiveArguments(initial_size=5, budgets="10, 20").budgets == [10, 20]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(budgets=[50, 40], initial_size=10), "strictly increasing"),
        (dict(budgets=[10], initial_size=10), "larger than initial_size"),
        (dict(budgets=None), "budgets must list"),
        (dict(budgets=["many"], initial_size=10), "list of labelled-set sizes"),
        (dict(budgets=[50], initial_size=0), "initial_size must be at least 1"),
        (dict(budgets=[50], initial_size=10, selector="oracle"), "unknown selector 'oracle'"),
    ],
)
def test_bad_active_arguments(kwargs, match):
    with pytest.raises(SVPConfigError, match=match):
        ActiveArguments(**kwargs)


# --- every numeric key: non-finite, negative, zero and too large values ---------------------------------------------

# Numeric keys for which 0 is a valid value; for every other one it is refused (a count, size, rate or share).
ZERO_ALLOWED = {
    "momentum",
    "weight_decay",
    "coverage_beta",
    "seed",
    "dataloader_num_workers",
    "target_momentum",
    "target_weight_decay",
}
ACTIVE_BASE = ["--budgets", "2000", "3000"]


def numeric_keys():
    """(key, int or float) for every numeric key of every recipe dataclass, list items (`budgets`) included."""
    import typing

    keys = []
    for dc in ACTIVE_DATACLASSES:
        hints = typing.get_type_hints(dc)
        for f in fields(dc):
            kind = hints[f.name]
            while typing.get_args(kind) and typing.get_origin(kind) in (typing.Union, list):
                kind = next(a for a in typing.get_args(kind) if a is not type(None))
            if kind in (int, float):
                keys.append((f.name, kind))
    return keys


def test_the_sweep_finds_every_numeric_key():
    names = {name for name, _ in numeric_keys()}
    assert {
        "learning_rate",
        "target_weight_decay",
        "seed",
        "budgets",
        "validation_split_percentage",
        "fraction",
    } <= names
    assert len(names) >= 25


@pytest.mark.parametrize("key, kind", numeric_keys())
def test_every_numeric_key_refuses_nan_infinity_negative_and_too_large_values(key, kind):
    bad = ["nan", "inf", "-inf", "1e400", "-1"] + ([str(2**64)] if kind is int else [])  # rates have no upper bound
    if key not in ZERO_ALLOWED:
        bad.append("0")
    for value in bad:
        argv = [f"--{key}={value}"] + (ACTIVE_BASE if key != "budgets" else ["--initial_size", "1"])
        with pytest.raises(SVPConfigError, match=key) as err:
            parse_args(argv, dataclass_types=ACTIVE_DATACLASSES)
        assert "\n" not in str(err.value), (key, value)
    if key in ZERO_ALLOWED:  # and the valid edge is taken
        parse_args([f"--{key}=0", *ACTIVE_BASE], dataclass_types=ACTIVE_DATACLASSES)


@pytest.mark.parametrize(
    "line",
    [
        "learning_rate: .inf",
        "weight_decay: .nan",
        "target_learning_rate: -.inf",
        "fraction: .nan",
        "seed: 4294967296",
        "batch_size: 100000000000000000000",
    ],
)
def test_non_finite_and_out_of_range_values_in_a_recipe_are_refused(tmp_path, line):
    with pytest.raises(SVPConfigError, match=line.split(":")[0]):
        parse_args([write(tmp_path, line + "\n")])


def test_seeds_are_those_numpy_takes_also_for_autos_candidates():
    assert SelectionArguments(seed=2**32 - 1, auto_seeds=1).seed == 2**32 - 1
    with pytest.raises(SVPConfigError, match=r"seed must be in \[0, 4294967294\].*seed\+1\), got 4294967295"):
        SelectionArguments(seed=2**32 - 1)  # auto's second seed would be 2**32
    for seed in (-1, 2**32):
        with pytest.raises(SVPConfigError, match="seed must be in"):
            SelectionArguments(seed=seed)


def test_a_recipe_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("method: entropy\nhub_dataset_id: me/caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SVPConfigError, match=r"is not UTF-8 text \(byte 0xe9 on line 2\): save it as UTF-8"):
        parse_args([str(path)])


def test_list_values_from_the_command_line_are_split_as_in_a_recipe():
    *_, act = parse_args(["--class_names", "cat,big dog", "--budgets=2000,3000"], dataclass_types=ACTIVE_DATACLASSES)
    assert act.class_names == ["cat", "big dog"] and act.budgets == [2000, 3000]
    data, sel, *_ = parse_args(["--text_column=title,content", "--score_methods", "margin,entropy", "random"])
    assert data.text_column == ["title", "content"] and sel.score_methods == ["margin", "entropy", "random"]
    *_, act = parse_args(["--labels_from", "a,b.csv", *ACTIVE_BASE], dataclass_types=ACTIVE_DATACLASSES)
    assert act.labels_from == ["a,b.csv"]  # paths are never split


def test_labelling_keys_in_a_simulation_are_refused():
    from svp_hf.config import check_simulation_keys

    check_simulation_keys(ActiveArguments(budgets=[2000]))
    for key, value in (("finish", True), ("allow_pending", True), ("class_names", ["a", "b"])):
        with pytest.raises(SVPConfigError, match=f"{key}: labelling-session key"):
            check_simulation_keys(ActiveArguments(budgets=[2000], **{key: value}))


def test_secrets_are_redacted_by_value_at_any_depth():
    from collections import namedtuple

    from svp_hf.config import redact_values

    Pair = namedtuple("Pair", "a b")
    record = {
        "command": "run --hub_token=hf_XYZ12345",
        "hf_XYZ12345": [1, ("x hf_XYZ12345", 2.0)],
        "p": Pair("hf_XYZ12345", 3),
    }
    assert redact_values(record, ["hf_XYZ12345"]) == {
        "command": "run --hub_token=***",
        "***": [1, ("x ***", 2.0)],
        "p": Pair("***", 3),
    }
    assert redact_values(record, [None, ""]) is record
