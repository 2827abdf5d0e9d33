"""svp_hf.roles: each role's training settings, read from the recipe through config.role_settings."""

from svp_hf.config import RunArguments, SelectionArguments
from svp_hf.device import DeviceSettings
from svp_hf.roles import device_settings, pretrained, target_args, training_config, training_metrics


def test_the_target_trains_with_its_own_keys_and_the_plain_ones_elsewhere():
    sel = SelectionArguments(proxy_epochs=3, batch_size=32, learning_rate=0.2, augment=False, seed=5)
    run = RunArguments(target="resnet56", target_epochs=7, target_batch_size=16, target_optimizer="adamw", target_pretrained=True)
    proxy, target = training_config("proxy", sel), training_config("target", sel, run)
    assert (proxy.epochs, proxy.batch_size, proxy.learning_rate, proxy.augment, proxy.seed) == (3, 32, 0.2, False, 5)
    assert (target.epochs, target.batch_size, target.optimizer, target.learning_rate, target.augment) == (7, 16, "adamw", 0.2, False)
    assert training_config("proxy", sel, epochs=9).epochs == 9  # auto's check trains for another length
    assert pretrained("target", sel, run) and not pretrained("proxy", sel, run)


def test_target_args_puts_the_target_in_the_proxys_place():
    sel = SelectionArguments(proxy="resnet20", proxy_epochs=3, batch_size=32, proxy_checkpoint=None)
    run = RunArguments(target="resnet56", target_epochs=7, target_batch_size=16, target_weight_decay=0.0)
    swapped = target_args(sel, run)
    assert (swapped.proxy, swapped.proxy_epochs, swapped.batch_size, swapped.weight_decay) == ("resnet56", 7, 16, 0.0)
    assert training_config("proxy", swapped) == training_config("target", sel, run)


def test_device_keys_reach_every_role_and_the_record_has_each_role():
    run = RunArguments(target="resnet56", channels_last=True, pin_memory=False)
    assert device_settings(run) == DeviceSettings(channels_last=True, pin_memory=False, torch_compile=False)
    config = training_config("target", SelectionArguments(), run)
    assert config.channels_last is True and config.pin_memory is False
    record = training_metrics(SelectionArguments(batch_size=32), RunArguments(target="resnet56", target_batch_size=8))
    assert record["proxy_training"]["batch_size"] == 32 and record["target_training"]["batch_size"] == 8
    assert training_metrics(SelectionArguments(), RunArguments())["target_training"] is None
