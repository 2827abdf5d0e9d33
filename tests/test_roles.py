"""svp_hf.stages.roles: each role's training settings, read from the recipe through config.role_settings."""

from svp_hf.config import ActiveArguments, RunArguments, SelectionArguments
from svp_hf.stages.roles import (
    active_settings,
    device_settings,
    model_settings,
    pretrained,
    selector_models,
    training_config,
    training_metrics,
)
from svp_hf.stages.settings import ActiveSettings
from svp_hf.utils.device import DeviceSettings


def test_the_target_trains_with_its_own_keys_and_the_plain_ones_elsewhere():
    sel = SelectionArguments(proxy_epochs=3, batch_size=32, learning_rate=0.2, augment=False, seed=5)
    run = RunArguments(
        target="resnet56", target_epochs=7, target_batch_size=16, target_optimizer="adamw", target_pretrained=True
    )
    proxy, target = training_config("proxy", sel), training_config("target", sel, run)
    assert (proxy.epochs, proxy.batch_size, proxy.learning_rate, proxy.augment, proxy.seed) == (3, 32, 0.2, False, 5)
    assert (target.epochs, target.batch_size, target.optimizer, target.learning_rate, target.augment) == (
        7,
        16,
        "adamw",
        0.2,
        False,
    )
    assert training_config("proxy", sel, epochs=9).epochs == 9  # auto's check trains for another length
    assert pretrained("target", sel, run) and not pretrained("proxy", sel, run)


def test_device_keys_reach_every_role_and_the_record_has_each_role():
    run = RunArguments(target="resnet56", channels_last=True, pin_memory=False)
    assert device_settings(run) == DeviceSettings(channels_last=True, pin_memory=False, torch_compile=False)
    config = training_config("target", SelectionArguments(), run)
    assert config.channels_last is True and config.pin_memory is False
    record = training_metrics(SelectionArguments(batch_size=32), RunArguments(target="resnet56", target_batch_size=8))
    assert record["proxy_training"]["batch_size"] == 32 and record["target_training"]["batch_size"] == 8
    assert training_metrics(SelectionArguments(), RunArguments())["target_training"] is None


def test_active_learning_reads_typed_settings_translated_from_the_recipe(tmp_path):
    sel = SelectionArguments(
        proxy="resnet20", method="entropy", seed=3, kcenter_chunk_size=99, proxy_checkpoint=str(tmp_path)
    )
    active = ActiveArguments(
        initial_size=10, budgets=[20, 30], selector="both", warm_start=True, initial_class_balanced=True
    )
    settings = active_settings(sel, active)
    assert settings == ActiveSettings(
        method="entropy",
        budgets=(20, 30),
        initial_size=10,
        selector="both",
        seed=3,
        warm_start=True,
        eval_each_round=False,
        initial_class_balanced=True,
        kcenter_chunk_size=99,
    )
    assert settings.loops == ("proxy", "target")
    run = RunArguments(target="resnet56", target_epochs=7, target_pretrained=True)
    models = selector_models(sel, run, active)
    assert list(models) == ["proxy", "target"]
    assert models["proxy"].checkpoint is None  # active learning trains its selectors every round
    assert models["proxy"].training == model_settings("proxy", sel, run).training
    assert (models["target"].name, models["target"].epochs, models["target"].pretrained) == ("resnet56", 7, True)
    only_proxy = ActiveArguments(initial_size=10, budgets=[20])
    assert list(selector_models(sel, RunArguments(), only_proxy)) == ["proxy"]
    assert list(selector_models(sel, run, only_proxy)) == ["proxy", "target"]  # the target trains on the labelled set
