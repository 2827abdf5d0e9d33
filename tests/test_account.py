"""The end-to-end account (svp_hf.account): its arithmetic on runs with known stage times, the estimate of the
full-data training, the no-target variant and the one-line verdicts."""

import json

import pytest

from svp_hf.account import (
    EndToEnd,
    end_to_end,
    estimate_full_data_seconds,
    format_seconds,
    proxy_account,
    selection_stages,
    target_account,
)

# The quickstart as issue 23 measured it: proxy 150 s, scoring 10 s, auto's check 1,752 s, the target 452 s on the
# kept half (718 of 1,437 rows), 10 epochs.
QUICKSTART = {
    "proxy_training": 150.0,
    "scoring": 10.0,
    "auto": 1752.0,
    "selection": 0.5,
    "target_training": 452.0,
    "total": 2400.0,
}


def test_a_run_whose_check_cost_more_than_it_saved():
    account = end_to_end(QUICKSTART, n_total=1437, n_kept=718, target_epochs=10, selection_budget=0.1)
    full = 452.0 / (718 * 10) * 1437 * 10
    assert account.relative_to == "target" and account.full_data_estimated
    assert account.full_data_seconds == pytest.approx(full)
    assert account.selection_seconds == pytest.approx(150 + 10 + 1752 + 0.5)  # "total" is not a stage
    assert account.target_seconds == 452.0
    assert account.speedup == pytest.approx(full / (1912.5 + 452.0))
    assert account.speedup < 0.4  # pruning made the job about 2.6x slower
    assert account.selection_share == pytest.approx(1912.5 / full)
    assert account.within_budget is False
    assert account.verdict.startswith("Pruning did not pay: selection took 1912.5 s, more than the")
    assert (
        "0.06295 s per row-epoch" in account.full_data_method and "x 1437 rows x 10 epochs" in account.full_data_method
    )
    assert account.summary_line().endswith(account.verdict)


def test_a_run_that_pays_for_itself():
    # SVP's CIFAR-10 headline: 26 min of selection, the target 117 min on half, 229 min on all of it (measured).
    timings = {"proxy_training": 24 * 60.0, "scoring": 2 * 60.0, "target_training": 117 * 60.0}
    account = end_to_end(timings, n_total=50000, n_kept=25000, full_data_seconds=229 * 60.0, selection_budget=0.15)
    assert (
        not account.full_data_estimated and account.full_data_method == "measured: the target trained on all 50000 rows"
    )
    assert account.speedup == pytest.approx(229 / 143)
    assert account.selection_share == pytest.approx(26 / 229)
    assert account.within_budget is True and account.verdict is None
    assert account.stages == {"proxy_training": 1440.0, "scoring": 120.0}
    line = account.summary_line()
    assert "1.60x" in line and "selection 0.11 of full data, budget 0.15" in line and "estimated" not in line


def test_over_budget_but_still_faster_says_so():
    account = target_account(
        {"proxy_training": 30.0}, 50.0, n_total=100, n_kept=50, full_data_seconds=100.0, selection_budget=0.1
    )
    assert account.speedup == pytest.approx(1.25) and account.within_budget is False
    assert account.verdict == "Selection spent 0.30 of the full-data training, over its budget of 0.1."
    line = account.summary_line()
    assert line.endswith(account.verdict) and line.count("over") == 1  # said once


def test_without_a_target_the_account_is_relative_to_the_proxy():
    timings = {"proxy_training": 20.0, "scoring": 2.0, "auto": 90.0, "selection": 0.1}
    account = end_to_end(timings, n_total=1000, n_kept=500, selection_budget=0.1)
    assert account.relative_to == "proxy" and account.speedup is None and account.target_seconds is None
    assert account.full_data_seconds == 20.0 and not account.full_data_estimated
    assert account.selection_seconds == pytest.approx(92.1)
    assert account.selection_share == pytest.approx(92.1 / 20.0)
    assert account.stages == {"proxy_training": 20.0, "scoring": 2.0, "auto": 90.0, "selection": 0.1}
    assert "relative to the proxy's own training" in account.note
    assert account.verdict.startswith("Selection spent 4.60 of the proxy's own training beyond it")
    cheap = proxy_account(20.0, {"scoring": 1.0})
    assert cheap.within_budget is None and cheap.verdict is None and "no target was trained" in cheap.summary_line()


def test_the_estimate_scales_the_measured_rate_to_every_row():
    seconds, method = estimate_full_data_seconds(30.0, n_kept=300, n_total=1000, epochs=3)
    assert seconds == pytest.approx(100.0)
    assert method.startswith(
        "estimated: the target's measured 0.03333 s per row-epoch (30.0 s for 300 rows x 3 epochs)"
    )
    with pytest.raises(ValueError, match="n_kept <= n_total"):
        estimate_full_data_seconds(30.0, n_kept=300, n_total=100, epochs=3)


def test_the_estimate_counts_the_targets_checkpoints_once():
    """Saving checkpoints does not grow with the rows (a save after the first epoch, then at most about a tenth of the
    training): scaling it with them would price the full data high and flatter the account."""
    seconds, method = estimate_full_data_seconds(30.0, n_kept=300, n_total=1000, epochs=3, checkpoint_seconds=6.0)
    assert seconds == pytest.approx(24.0 / 900 * 3000 + 6.0)
    assert "(24.0 s for 300 rows x 3 epochs)" in method and method.endswith("plus the 6.0 s its checkpoints took")
    timings = {"precheck": 1.0, "selection": 0.1, "target_training": 30.0}
    plain = end_to_end(timings, n_total=1000, n_kept=300, target_epochs=3)
    saved = end_to_end(timings, n_total=1000, n_kept=300, target_epochs=3, target_checkpoint_seconds=6.0)
    assert plain.full_data_seconds == pytest.approx(100.0) and saved.full_data_seconds == pytest.approx(seconds)
    assert saved.selection_share == pytest.approx(1.1 / seconds)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="target_seconds must be a non-negative"):
        target_account({}, float("nan"), n_total=10, n_kept=5, epochs=1)
    with pytest.raises(ValueError, match="epochs is needed"):
        end_to_end({"proxy_training": 1.0, "target_training": 2.0}, n_total=10, n_kept=5)
    with pytest.raises(ValueError, match="no reference"):
        end_to_end({"scoring": 1.0}, n_total=10, n_kept=5)
    with pytest.raises(ValueError, match="auto must be a non-negative"):
        selection_stages({"auto": -1.0})


def test_to_dict_is_json_for_metrics():
    account = end_to_end(QUICKSTART, n_total=1437, n_kept=718, target_epochs=10)
    written = json.loads(json.dumps(account.to_dict()))
    assert written["speedup"] == pytest.approx(account.speedup) and written["selection_budget"] is None
    assert set(written) == {f for f in EndToEnd.__dataclass_fields__}
    assert written["within_budget"] is None and written["verdict"].startswith("Pruning did not pay")


def test_run_account_is_none_only_without_a_reference():
    from svp_hf.account import run_account

    assert run_account({"scoring": 2.0, "selection": 0.1}, n_total=10, n_kept=5) is None  # a given proxy, no target
    recorded = run_account({"proxy_training": 10.0, "scoring": 2.0}, n_total=10, n_kept=5)
    assert recorded["relative_to"] == "proxy" and recorded["summary"].startswith("selection spent 2.0 s")
    with pytest.raises(ValueError, match="scoring must be a non-negative number"):  # bad timings are not hidden
        run_account({"proxy_training": 10.0, "scoring": -1.0}, n_total=10, n_kept=5)


@pytest.mark.parametrize(
    "seconds, text",
    [(0.0, "0.0 s"), (0.027, "0.027 s"), (0.6, "0.6 s"), (0.97, "1.0 s"), (12.34, "12.3 s"), (1912.5, "1912.5 s")],
)
def test_seconds_under_one_keep_two_significant_digits(seconds, text):
    """A budget of a few hundredths of a second is written as such, never as "0.0 s"."""
    assert format_seconds(seconds) == text
