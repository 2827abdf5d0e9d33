"""svp_hf.stages.preflight: names that refer to plug-in registries, checked before any data is loaded or model trained."""

import pytest

import svp_hf
from svp_hf.config import RunArguments, SelectionArguments
from svp_hf.errors import SVPConfigError
from svp_hf.stages.preflight import check_optimizer, check_recipe


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="best"), "Unknown selection method 'best'"),
        (dict(score_methods=["entropy", "nope"]), "'nope'"),
        (dict(lr_schedule="warp"), "lr_schedule 'warp'"),
        (dict(optimizer="lion"), "optimizer 'lion'"),
        (dict(strategy="best"), "unknown strategy 'best'"),
        (dict(proxy="no-such-model-family:x"), "no-such-model-family"),
    ],
)
def test_unknown_names_are_refused(kwargs, match):
    args = SelectionArguments(**kwargs)  # values of the right type: the recipe layer lets them through
    with pytest.raises(SVPConfigError, match=match):
        check_recipe(args)


def test_target_settings_are_checked_for_the_target():
    args = SelectionArguments(proxy="fasttext")
    with pytest.raises(SVPConfigError, match="unknown target_lr_schedule 'warp'"):
        check_recipe(args, RunArguments(target="fasttext", target_lr_schedule="warp"))
    with pytest.raises(SVPConfigError, match="cannot train 'fasttext'"):
        check_recipe(args, RunArguments(target="fasttext", target_optimizer="adamw"))
    check_recipe(args, RunArguments(target="resnet20", target_optimizer="adamw"))  # a dense model takes adamw


def test_optimizer_must_fit_the_model():
    with pytest.raises(SVPConfigError, match="sparse gradients"):
        check_optimizer("adamw", "fasttext")
    check_optimizer("sgd", "fasttext")


def test_optimizer_is_checked_against_the_model_before_training(tiny_reviews):
    train, _ = tiny_reviews
    with pytest.raises(SVPConfigError, match="optimizer 'adamw' cannot train 'fasttext'"):
        svp_hf.score(train, "fasttext", ["entropy"], optimizer="adamw")
    with pytest.raises(SVPConfigError, match="unknown optimizer 'adam'; available: adamw, sgd"):
        svp_hf.score(train, "fasttext", ["entropy"], optimizer="adam")
    from svp_hf.config import RunArguments, SelectionArguments
    from svp_hf.stages.preflight import check_recipe

    with pytest.raises(SVPConfigError, match="unknown target_optimizer 'lion'"):
        check_recipe(SelectionArguments(proxy="fasttext"), RunArguments(target="fasttext", target_optimizer="lion"))
    with pytest.raises(SVPConfigError, match="unknown target_lr_schedule 'warmup'"):
        check_recipe(SelectionArguments(proxy="fasttext"), RunArguments(target="fasttext", target_lr_schedule="warmup"))
