"""svp_hf.utils.progress: svp_hf's progress bars switched off and on (by code or SVP_HF_DISABLE_PROGRESS_BARS) and per
call (``progress=False``), drawn by the main process only, and datasets' own bars silenced around svp_hf's internal
datasets operations, their state restored after."""

import io
import sys
import warnings

import pytest
import torch
from accelerate import Accelerator

import svp_hf
from svp_hf.utils import progress
from svp_hf.utils.progress import progress_bar, quiet_datasets


class Terminal(io.StringIO):
    """A stderr that says it is a terminal, so that terminal-only bars draw."""

    def isatty(self):
        return True


@pytest.fixture
def terminal(monkeypatch):
    """A function that makes stderr a terminal: called in the test itself, as pytest's own capture puts its stderr
    back between a fixture's setup and the test."""
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)

    def install() -> Terminal:
        stream = Terminal()
        monkeypatch.setattr(sys, "stderr", stream)
        return stream

    yield install
    progress.enable_progress_bars()


@pytest.fixture
def switch(monkeypatch):
    monkeypatch.delenv(progress.ENV_VAR, raising=False)
    yield
    progress.enable_progress_bars()


def drawn(stream, **kwargs) -> str:
    start = len(stream.getvalue())
    for _ in progress_bar(range(3), desc="counting", **kwargs):
        pass
    return stream.getvalue()[start:]


def test_the_switch_is_exported_from_the_package(switch):
    assert not svp_hf.are_progress_bars_disabled()
    svp_hf.disable_progress_bars()
    assert svp_hf.are_progress_bars_disabled() and progress.are_progress_bars_disabled()
    svp_hf.enable_progress_bars()
    assert not svp_hf.are_progress_bars_disabled()
    assert {"disable_progress_bars", "enable_progress_bars", "are_progress_bars_disabled"} <= set(svp_hf.__all__)


def test_bars_draw_on_the_main_process_of_a_terminal_unless_switched_off(terminal, monkeypatch):
    terminal = terminal()
    assert "counting" in drawn(terminal)
    assert drawn(terminal, enabled=False) == ""
    assert drawn(terminal, main_process=False) == ""
    monkeypatch.setenv("LOCAL_RANK", "1")  # another process of the machine
    assert drawn(terminal) == ""
    monkeypatch.delenv("LOCAL_RANK")
    svp_hf.disable_progress_bars()
    assert drawn(terminal) == "" and drawn(terminal, terminal_only=False) == ""
    svp_hf.enable_progress_bars()
    assert "counting" in drawn(terminal)


def test_terminal_only_bars_stay_out_of_logs(capsys, switch):
    assert drawn(sys.stderr) == ""  # captured: not a terminal
    assert "counting" in drawn(sys.stderr, terminal_only=False)


def test_the_environment_variable_has_precedence(monkeypatch, switch):
    monkeypatch.setenv(progress.ENV_VAR, "1")
    assert progress.are_progress_bars_disabled()
    with pytest.warns(UserWarning, match="SVP_HF_DISABLE_PROGRESS_BARS=1"):
        progress.enable_progress_bars()
    assert progress.are_progress_bars_disabled()
    monkeypatch.setenv(progress.ENV_VAR, "0")
    with pytest.warns(UserWarning, match="SVP_HF_DISABLE_PROGRESS_BARS=0"):
        progress.disable_progress_bars()
    assert not progress.are_progress_bars_disabled()


@pytest.fixture(scope="module")
def tiny_setup(tiny_digits):
    from svp_hf.data import add_index
    from svp_hf.stages.proxy import prepare_inputs

    train = add_index(tiny_digits[0].select(range(64)))
    family, info = prepare_inputs(train, "resnet20", {})
    return train, family, info


def train_and_score(train, family, info, **kwargs):
    from svp_hf.engine.scoring import score_examples
    from svp_hf.engine.training import TrainingConfig, evaluate_accuracy, train_model
    from svp_hf.models import create_model
    from svp_hf.selection.methods import resolve_methods

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True)
    config = TrainingConfig(epochs=1, batch_size=32, learning_rate=0.05, lr_schedule="constant", seed=0)
    result = train_model(
        create_model("resnet20", info), family, train, info, config, accelerator, desc="proxy", **kwargs
    )
    evaluate_accuracy(result.model, family, train, info, accelerator, desc="checking", **kwargs)
    return score_examples(
        result.model, family, train, info, resolve_methods(["el2n"]), accelerator, desc="ranking", **kwargs
    )


def test_training_evaluation_and_scoring_bars_follow_the_switch_and_progress(tiny_setup, terminal):
    terminal = terminal()
    first = train_and_score(*tiny_setup)
    shown = terminal.getvalue()
    assert "proxy epoch 1/1" in shown and "checking" in shown and "ranking shard 0" in shown
    terminal.seek(0), terminal.truncate()
    svp_hf.disable_progress_bars()
    second = train_and_score(*tiny_setup)
    assert terminal.getvalue() == ""
    svp_hf.enable_progress_bars()
    third = train_and_score(*tiny_setup, progress=False)
    assert terminal.getvalue() == ""
    for other in (second, third):  # bars or none, the same scores
        assert (first.scores["el2n"] == other.scores["el2n"]).all()


# --- datasets' own bars -------------------------------------------------------------------------------------------------


@pytest.fixture
def datasets_bars():
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    before = are_progress_bars_disabled()
    enable_progress_bars()
    yield
    (disable_progress_bars if before else enable_progress_bars)()


def test_quiet_datasets_silences_datasets_and_restores_its_state(datasets_bars):
    from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    with quiet_datasets():
        assert are_progress_bars_disabled()
        with quiet_datasets():  # nested
            assert are_progress_bars_disabled()
        assert are_progress_bars_disabled()
    assert not are_progress_bars_disabled()
    with pytest.raises(KeyError):
        with quiet_datasets():
            raise KeyError
    assert not are_progress_bars_disabled()
    disable_progress_bars()  # the user's own choice stays
    with quiet_datasets():
        pass
    assert are_progress_bars_disabled()
    enable_progress_bars()

    @quiet_datasets()
    def decorated():
        return are_progress_bars_disabled()

    assert decorated() and decorated() and not are_progress_bars_disabled()


def test_quiet_datasets_leaves_bars_a_user_forced_on(datasets_bars, monkeypatch):
    from datasets import config
    from datasets.utils import are_progress_bars_disabled

    monkeypatch.setattr(config, "HF_DATASETS_DISABLE_PROGRESS_BARS", False)  # HF_DATASETS_DISABLE_PROGRESS_BARS=0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with quiet_datasets():
            assert not are_progress_bars_disabled()


@pytest.mark.filterwarnings("ignore:the proxy")
def test_datasets_bars_do_not_show_during_a_score_call(tiny_digits, capsys, datasets_bars):
    from datasets.utils import are_progress_bars_disabled

    train = tiny_digits[0].select(range(48))  # a selection: adding svp_index flattens its indices (a datasets bar)
    train.add_column("probe", list(range(48)))
    assert "Flattening the indices" in capsys.readouterr().err  # what the test would see
    svp_hf.score(train, methods=["el2n"], proxy_epochs=1, batch_size=16, learning_rate=0.05, seed=0)
    err = capsys.readouterr().err
    assert "Flattening the indices" not in err and "examples/s" not in err, err
    assert not are_progress_bars_disabled()  # datasets' bars are on again for the user's own calls
