"""Active learning with real labellers: ask for a batch, take the labels back, continue (the labelling mode)."""

import json
import os
import shutil

import datasets
import numpy as np
import pandas as pd
import pytest

import svp_hf
from svp_hf.active import labelling
from svp_hf.active.labelling import LabellingState, state_path
from svp_hf.errors import SVPConfigError
from svp_hf.jobs import active

TINY = dict(proxy_epochs=1, batch_size=64, seed=0)


def without_labels(dataset, keep=()):
    """`dataset` with its labels nulled except for the rows in `keep`."""
    keep = set(keep)
    labels = [v if i in keep else None for i, v in enumerate(dataset["label"])]
    return dataset.remove_columns("label").add_column("label", labels, feature=dataset.features["label"])


@pytest.fixture(scope="module")
def pool(digits):
    """120 digits whose labels are all hidden, and the true labels (the labellers' answers)."""
    train = digits["train"].select(range(120))
    return without_labels(train), np.array(train["label"])


def answer(rows, truth, as_names=False):
    """The true labels of a batch, as a return: svp_index and label (ids, or class names)."""
    ids = list(rows["svp_index"])
    labels = [str(truth[i]) if as_names else int(truth[i]) for i in ids]
    return datasets.Dataset.from_dict({"svp_index": ids, "label": labels})


def state_bytes(out):
    with open(state_path(str(out)), "rb") as f:
        return f.read()


@pytest.fixture
def asked(pool, tmp_path):
    """A session whose round 0 (20 random rows, no training) was asked for."""
    unlabelled, truth = pool
    out = tmp_path / "session"
    rows = svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40, 60], **TINY)
    return out, rows, truth


# --- the shared round: the labelling mode picks what the simulation picks ------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [{}, pytest.param(dict(method="kcenter", warm_start=True), marks=pytest.mark.slow, id="kcenter-warm-start")],
    ids=lambda s: "least-confidence" if not s else None,
)
def test_labelling_mode_picks_exactly_the_rows_the_simulation_picks(digits, pool, tmp_path, settings):
    """The labellers answer each batch with the labels the dataset holds: every round asks for exactly the rows the
    simulated loop labels (warm starts go through the session's checkpoints)."""
    unlabelled, truth = pool
    kwargs = dict(initial_size=20, budgets=[40, 60], **TINY, **settings)
    train = digits["train"].select(range(120))
    simulated = svp_hf.active_learn(train, **kwargs).runs["proxy"].pool
    out = tmp_path / "session"
    picked = []
    for round_ in range(3):
        rows = svp_hf.ask(unlabelled, out, **kwargs)
        assert set(rows["svp_round"]) == {round_}
        picked.append(sorted(rows["svp_index"]))
        svp_hf.tell(out, answer(rows, truth))
    for round_, ids in enumerate(picked):
        assert ids == np.flatnonzero(simulated.rounds() == round_).tolist(), f"round {round_}"
    # the scores too: the same model trained on the same rows ranked the same pool
    sim_scores = {int(i): s for i, s in enumerate(simulated.scores())}
    state = LabellingState.load(str(out))
    for batch in state.batches[1:]:
        np.testing.assert_allclose(batch["scores"], [sim_scores[i] for i in batch["ids"]], rtol=1e-5)
    if settings.get("warm_start"):
        assert (out / "labelling" / "checkpoints" / "round_1" / "model.safetensors").is_file()
    assert len(svp_hf.ask(unlabelled, out, **kwargs)) == 0  # every budget is done
    labelled = svp_hf.labelled_set(unlabelled, out)
    assert len(labelled) == 60 and labelled["label"] == truth[labelled["svp_index"]].tolist()
    assert np.bincount(labelled["svp_round"]).tolist() == [20, 20, 20]


# --- returned labels: checks, partial returns, idempotent merges -------------------------------------------------------


def test_round_zero_is_the_simulation_initial_set_and_is_written_for_labellers(asked):
    out, rows, _ = asked
    from svp_hf.active.pool import initial_indices

    assert rows["svp_index"] == initial_indices(120, 20, seed=0).tolist()
    assert rows.column_names == ["image", "label", "svp_index", "svp_round", "svp_score"]
    assert rows["label"] == [None] * 20 and rows["svp_score"] == [None] * 20
    folder = datasets.load_dataset(str(out / "to_label" / "round_0"), split="train")
    assert folder["svp_index"] == rows["svp_index"] and isinstance(folder.features["image"], datasets.Image)
    csv = pd.read_csv(out / "to_label" / "round_0.csv")
    assert list(csv.columns) == ["image", "label", "svp_index", "svp_round", "svp_score"]
    assert csv["svp_index"].tolist() == rows["svp_index"] and csv["label"].isna().all()
    assert all((out / "to_label" / p).is_file() for p in csv["image"])  # image files next to the CSV


def test_partial_returns_wait_for_the_rest_and_the_same_return_merges_once(asked, pool):
    out, rows, truth = asked
    unlabelled, _ = pool
    csv = pd.read_csv(out / "to_label" / "round_0.csv")
    csv["label"] = [str(truth[i]) for i in csv["svp_index"]]  # class names
    csv.loc[csv.index[12:], "label"] = None  # the labellers did 12 of 20 so far
    csv.to_csv(out / "part1.csv", index=False)
    summary = svp_hf.tell(out, str(out / "part1.csv"))
    assert (summary["merged"], summary["labelled"], summary["pending"]) == (12, 12, 8)
    again = svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40, 60], **TINY)  # no round while labels are out
    assert sorted(again["svp_index"]) == sorted(rows["svp_index"][12:])
    before = state_bytes(out)
    assert svp_hf.tell(out, str(out / "part1.csv"))["already_merged"] == [str(out / "part1.csv")]  # a rerun: no-op
    assert state_bytes(out) == before
    rest = {int(i): int(truth[i]) for i in rows["svp_index"][12:]}  # ids this time, as a mapping
    assert svp_hf.tell(out, rest)["pending"] == 0
    state = LabellingState.load(str(out))
    assert state.labels == {int(i): int(truth[i]) for i in rows["svp_index"]}
    assert [m["n_labels"] for m in state.merged] == [12, 8]


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda ids, t: {"svp_index": [ids[0], 3_000], "label": [t[ids[0]], 1]}, r"never asked for \(e.g. 3000\)"),
        (lambda ids, t: {"svp_index": [ids[0], 119 if 119 not in ids else 118], "label": [1, 1]}, "never asked for"),
        (lambda ids, t: {"svp_index": ids[:2], "label": [10, 1]}, r"out of range \(e.g. \[10\]\)"),
        (lambda ids, t: {"svp_index": ids[:2], "label": [-2, 1]}, "out of range"),
        (lambda ids, t: {"svp_index": ids[:2], "label": ["seven", "1"]}, r"not class names \(e.g. \['seven'\]\)"),
        (lambda ids, t: {"svp_index": ids[:2], "label": [1.5, 1.0]}, "must be class ids or names"),
        (lambda ids, t: {"svp_index": [ids[0], ids[0]], "label": [1, 1]}, "returned more than once"),
        (lambda ids, t: {"svp_index": [ids[0], ids[0]], "label": [1, 2]}, "with conflicting labels"),
        (lambda ids, t: {"svp_index": ids[:2]}, "no column 'label'"),
        (lambda ids, t: {"id": ids[:2], "label": [1, 2]}, "no column 'svp_index'"),
    ],
)
def test_bad_returns_are_refused_and_nothing_is_merged(asked, make, match):
    out, rows, truth = asked
    ids = list(rows["svp_index"])
    good = answer(rows.select(range(5, 10)), truth)
    before = state_bytes(out)
    with pytest.raises(SVPConfigError, match=match):
        svp_hf.tell(out, [good, datasets.Dataset.from_dict(make(ids, truth))])  # one bad return spoils the lot
    assert state_bytes(out) == before


def test_a_batch_answered_twice_is_refused(asked):
    out, rows, truth = asked
    svp_hf.tell(out, answer(rows, truth))
    before = state_bytes(out)
    other = answer(rows.select(range(3)), (truth + 1) % 10)  # a second answer to rows labelled already
    with pytest.raises(
        SVPConfigError, match=r"3 row\(s\) are labelled already .*round\(s\) \[0\]\): a batch answered twice"
    ):
        svp_hf.tell(out, other)
    assert state_bytes(out) == before


def test_returns_from_files_folders_and_hub_ids(asked, tmp_path, monkeypatch):
    out, rows, truth = asked
    parts = [answer(rows.select(range(i, i + 5)), truth, as_names=bool(i % 10)) for i in range(0, 20, 5)]
    parts[0].to_parquet(str(tmp_path / "a.parquet"))
    parts[1].to_json(str(tmp_path / "b.jsonl"))
    parts[2].save_to_disk(str(tmp_path / "c"))
    real = datasets.load_dataset

    def load_dataset(path, *args, **kwargs):  # the Hub, offline: one dataset id answers
        return datasets.DatasetDict({"train": parts[3]}) if path == "alice/labels" else real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    summary = svp_hf.tell(
        out, [str(tmp_path / "a.parquet"), str(tmp_path / "b.jsonl"), str(tmp_path / "c"), "alice/labels"]
    )
    assert summary["merged"] == 20 and summary["pending"] == 0
    assert LabellingState.load(str(out)).labels == {int(i): int(truth[i]) for i in rows["svp_index"]}


def test_unreadable_returns_and_missing_sessions_say_so(asked, tmp_path, monkeypatch):
    out, _, _ = asked
    with pytest.raises(SVPConfigError, match="could not read labels from 'nobody/no-such-labels'"):
        svp_hf.tell(out, "nobody/no-such-labels")
    (tmp_path / "labels.txt").write_text("1,2\n")
    with pytest.raises(SVPConfigError, match="use a .csv, .json"):
        svp_hf.tell(out, str(tmp_path / "labels.txt"))
    with pytest.raises(SVPConfigError, match="no labelling session in"):
        svp_hf.tell(tmp_path / "elsewhere", {0: 1})


# --- the pool: labels with nulls, class names, a labelled set next to an unlabelled one ---------------------------------


def test_pools_from_class_names_or_a_small_labelled_dataset(digits):
    from svp_hf.active.labelling import has_missing_labels, labelling_dataset

    text = datasets.Dataset.from_dict({"text": ["good", "bad", "fine"], "label": ["pos", None, None]})
    assert has_missing_labels(text, None)
    pool, column = labelling_dataset(text, None, ["neg", "pos"])
    assert column == "label" and pool["label"] == [1, None, None] and pool.features["label"].names == ["neg", "pos"]
    bare = text.remove_columns("label")
    assert not has_missing_labels(bare, None) and has_missing_labels(bare, None, ["neg", "pos"])
    assert labelling_dataset(bare, None, ["neg", "pos"])[0]["label"] == [None] * 3
    with pytest.raises(SVPConfigError, match="needs the class names"):
        labelling_dataset(bare, None, None)
    with pytest.raises(SVPConfigError, match=r"not class names \(e.g. \['great'\]\)"):
        labelling_dataset(datasets.Dataset.from_dict({"text": ["x"], "label": ["great"]}), None, ["neg", "pos"])

    small = digits["train"].select(range(10))
    rest = digits["train"].select(range(10, 60)).remove_columns("label")
    pool, _ = labelling_dataset(rest, None, None, labelled=small)
    assert len(pool) == 60 and pool["label"][:10] == small["label"] and pool["label"][10:] == [None] * 50
    state = labelling.start_session(pool, "label", pool.features["label"].names, {})
    assert state.next_round == 1 and state.n_labelled == 10 and state.batches[0]["given"]


def test_a_given_labelled_set_is_round_zero_and_budgets_size_the_rounds(digits, tmp_path):
    train = digits["train"].select(range(100))
    given = list(range(0, 100, 5))  # 20 rows labelled in the dataset itself
    rows = svp_hf.ask(without_labels(train, given), tmp_path / "s", budgets=[45, 90], **TINY)
    assert set(rows["svp_round"]) == {1} and len(rows) == 25 and not set(rows["svp_index"]) & set(given)
    assert all(s is not None for s in rows["svp_score"])
    # the training split may not gain labels behind the session's back
    with pytest.raises(SVPConfigError, match="return labels with labels_from"):
        svp_hf.ask(without_labels(train, given + [1]), tmp_path / "s", budgets=[45, 90], **TINY)
    with pytest.raises(SVPConfigError, match="over a pool of 100 rows, but the training split has 99"):
        svp_hf.ask(without_labels(train.select(range(99)), given), tmp_path / "s", budgets=[45, 90], **TINY)


def test_simulated_loop_still_refuses_missing_labels(digits):
    train = without_labels(digits["train"].select(range(50)), range(40))
    with pytest.raises(SVPConfigError, match=r"missing labels \(10 of 50 rows\).*labelling mode"):
        svp_hf.active_learn(train, initial_size=10, budgets=[20], **TINY)
    with pytest.raises(SVPConfigError, match="labels_from: keys of the labelling mode"):
        svp_hf.active_learn(
            digits["train"].select(range(50)), initial_size=10, budgets=[20], labels_from=["x.csv"], **TINY
        )


# --- the CLI: a session end to end, a kill between rounds, another machine -----------------------------------------------


@pytest.fixture(scope="module")
def parquet_data(digits, tmp_path_factory):
    """A dataset folder whose training split has 20 labelled and 100 null labels, and a labelled test split."""
    root = tmp_path_factory.mktemp("data")
    train = digits["train"].select(range(120))
    without_labels(train, range(20)).to_parquet(str(root / "train.parquet"))
    digits["test"].select(range(40)).to_parquet(str(root / "test.parquet"))
    return root, np.array(train["label"])


def cli_args(data, out, *extra):
    return [
        "--dataset_name",
        str(data),
        "--output_dir",
        str(out),
        "--proxy_epochs",
        "1",
        "--batch_size",
        "64",
        "--initial_size",
        "10",
        "--budgets",
        "40",
        "60",
        "--target",
        "resnet20",
        "--target_epochs",
        "1",
        *extra,
    ]


def fill(csv_path, truth, dest, rows=None):
    """The labellers' work: the CSV with its label column filled in (only `rows` of it, when given)."""
    frame = pd.read_csv(csv_path)
    frame["label"] = [int(truth[i]) for i in frame["svp_index"]]
    if rows is not None:
        frame = frame.iloc[rows]
    frame.to_csv(dest, index=False)
    return str(dest)


def test_cli_session_two_rounds_end_to_end(parquet_data, tmp_path, capsys):
    data, truth = parquet_data
    out = tmp_path / "out"
    first = active.main(cli_args(data, out))
    printed = capsys.readouterr().out
    assert first["round"] == 1 and first["n_to_label"] == 20
    assert "round 1: 20 row(s) to label" in printed and "--labels_from" in printed
    assert printed.strip().endswith(f"--labels_from {out}/to_label/round_1.csv")
    assert sorted(os.listdir(out)) == ["labelling", "to_label"]

    csv = out / "to_label" / "round_1.csv"
    part = active.main(cli_args(data, out, "--labels_from", fill(csv, truth, tmp_path / "r1a.csv", rows=slice(0, 10))))
    assert part == {**part, "merged": 10, "pending": 10, "round": None}
    assert "waiting for labels: 10 row(s) asked for in round(s) [1]" in capsys.readouterr().out
    second = active.main(
        cli_args(data, out, "--labels_from", fill(csv, truth, tmp_path / "r1b.csv", rows=slice(10, 20)))
    )
    assert second["round"] == 2 and second["n_to_label"] == 20

    done = active.main(
        cli_args(data, out, "--labels_from", fill(out / "to_label" / "round_2.csv", truth, tmp_path / "r2.csv"))
    )
    assert "finished: 60 labelled row(s)" in capsys.readouterr().out
    assert done["mode"] == "labelling" and done["budgets"] == [40, 60] and done["initial_size"] == 20
    assert 0.0 <= done["target_accuracy"]["proxy"] <= 1.0
    assert sorted(os.listdir(out)) == [
        "dataset",
        "labelling",
        "metrics.json",
        "recipe.yaml",
        "report.md",
        "rounds.json",
        "scores.parquet",
        "to_label",
    ]
    loaded = datasets.load_dataset(str(out / "dataset"))
    labelled = loaded["train"]
    assert len(labelled) == 60 and labelled["label"] == truth[labelled["svp_index"]].tolist()
    assert np.bincount(labelled["svp_round"]).tolist() == [20, 20, 20]
    assert [r["labelled_size"] for r in json.loads((out / "rounds.json").read_text())["proxy"]] == [40, 60]
    pool = pd.read_parquet(out / "scores.parquet")
    assert len(pool) == 120 and (pool["label"] == -1).sum() == 60 and pool["proxy_round"].notna().sum() == 60
    assert "Labelled 60 of the 120 rows" in (out / "dataset" / "README.md").read_text()


def test_cli_kill_between_rounds_and_another_machine(parquet_data, tmp_path, monkeypatch, capsys):
    """A run killed after merging leaves a state the next run continues from (the same return merged once); a copy
    of output_dir continues the same way elsewhere."""
    data, truth = parquet_data
    out = tmp_path / "out"
    active.main(cli_args(data, out))
    ret = fill(out / "to_label" / "round_1.csv", truth, tmp_path / "r1.csv")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(active, "labelling_round", killed)  # killed after the merge, before the round
    with pytest.raises(KeyboardInterrupt):
        active.main(cli_args(data, out, "--labels_from", ret))
    monkeypatch.undo()
    assert LabellingState.load(str(out)).n_labelled == 40

    elsewhere = tmp_path / "machine2"
    shutil.copytree(out, elsewhere)
    capsys.readouterr()
    here = active.main(cli_args(data, out, "--labels_from", ret))  # the same return again: merged once, no error
    assert "already merged before" in capsys.readouterr().out and here["round"] == 2
    there = active.main(cli_args(data, elsewhere, "--labels_from", ret))
    assert here["n_to_label"] == there["n_to_label"] == 20
    a = datasets.load_dataset(str(out / "to_label" / "round_2"), split="train")
    b = datasets.load_dataset(str(elsewhere / "to_label" / "round_2"), split="train")
    assert a["svp_index"] == b["svp_index"]
    assert not [n for n in os.listdir(out / "labelling") if n.startswith(".tmp")]


def test_a_round_killed_before_its_state_is_written_runs_again(pool, tmp_path, monkeypatch):
    unlabelled, _ = pool
    out = tmp_path / "session"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    real_save = LabellingState.save
    calls = []

    def save_then_die(self, output_dir):  # the empty session is saved; the round's batch is written, its state is not
        calls.append(1)
        if len(calls) > 1:
            killed()
        real_save(self, output_dir)

    monkeypatch.setattr(LabellingState, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40], **TINY)
    monkeypatch.undo()
    assert (out / "to_label" / "round_0.csv").is_file() and LabellingState.load(str(out)).batches == []
    rows = svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40], **TINY)  # round 0 again, the same rows
    assert rows["svp_index"] == pd.read_csv(out / "to_label" / "round_0.csv")["svp_index"].tolist()
    assert LabellingState.load(str(out)).next_round == 1


def test_state_is_written_atomically(asked, monkeypatch):
    out, rows, truth = asked
    before = state_bytes(out)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(labelling.os, "replace", crash)
    with pytest.raises(OSError):
        svp_hf.tell(out, answer(rows, truth))
    monkeypatch.undo()
    assert state_bytes(out) == before and not [n for n in os.listdir(out / "labelling") if n.startswith(".tmp")]


def test_cli_finish_early_and_bad_returns_exit_2(parquet_data, tmp_path, capsys):
    data, truth = parquet_data
    out = tmp_path / "out"
    active.main(cli_args(data, out, "--target", ""))
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"svp_index": [5_000], "label": [1]}).to_csv(bad, index=False)
    with pytest.raises(SystemExit) as err:
        active.main(cli_args(data, out, "--target", "", "--labels_from", str(bad)))
    assert err.value.code == 2 and "never asked for" in capsys.readouterr().err
    metrics = active.main(cli_args(data, out, "--target", "", "--finish", "true"))  # the 20 given rows, no target
    assert metrics["target_accuracy"] == {"proxy": None}
    assert len(datasets.load_dataset(str(out / "dataset"))["train"]) == 20


def test_cli_pushes_the_batch_to_a_private_hub_dataset(parquet_data, tmp_path, monkeypatch, capsys):
    from .conftest import FakeHub

    fake = FakeHub()
    monkeypatch.setattr(svp_hf.publish.hub, "HfApi", fake.api)
    monkeypatch.setenv("HF_TOKEN", fake.token)
    data, _ = parquet_data
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    train = datasets.load_dataset("parquet", data_files=str(data / "train.parquet"), split="train")
    without_labels(train).to_parquet(str(unlabelled / "train.parquet"))
    shutil.copy(data / "test.parquet", unlabelled / "test.parquet")
    out = tmp_path / "out"
    metrics = active.main(cli_args(unlabelled, out, "--push_to_hub", "true", "--hub_dataset_id", "alice/digits-al"))
    assert metrics["round"] == 0 and metrics["n_to_label"] == 10  # nothing labelled: initial_size random rows first
    repo = fake.repos["alice/digits-al-to-label-round-0"]
    assert repo["private"] is True and any(p.endswith(".parquet") for p in repo["files"])
    assert "huggingface.co/datasets/alice/digits-al-to-label-round-0" in capsys.readouterr().out


# --- one session, one set of settings; a session that cannot start leaves nothing --------------------------------------


def test_a_session_refuses_changed_settings_and_records_added_budgets(asked, pool):
    out, rows, truth = asked
    unlabelled, _ = pool
    svp_hf.tell(out, answer(rows, truth))
    before = state_bytes(out)
    for change, match in [
        (
            dict(proxy_epochs=2),
            r"proxy_epochs is 2, but the labelling session in '.*' \(labelling/state.json\) runs with proxy_epochs 1: set proxy_epochs back to 1",
        ),
        (dict(method="entropy"), "method is 'entropy', but .* runs with method 'least_confidence'"),
        (dict(seed=1), "seed is 1, but .* runs with seed 0"),
        (dict(learning_rate=0.5), "learning_rate is 0.5, but .* runs with learning_rate 0.1"),
    ]:
        with pytest.raises(SVPConfigError, match=match):
            svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40, 60], **{**TINY, **change})
        assert state_bytes(out) == before and not (out / "to_label" / "round_1").exists()
    first = svp_hf.ask(unlabelled, out, initial_size=20, budgets=[40, 60], **TINY)
    svp_hf.tell(out, answer(first, truth))
    with pytest.raises(
        SVPConfigError,
        match=r"budgets is \[50, 60\], but .* has asked for round\(s\) 1 to 1 with budgets \[40\]: keep \[40\] first",
    ):
        svp_hf.ask(unlabelled, out, budgets=[50, 60], **TINY)
    second = svp_hf.ask(unlabelled, out, budgets=[40, 70, 90], **TINY)  # a larger round 2, and a round 3 added
    state = LabellingState.load(str(out))
    assert len(second) == 30 and state.settings["budgets"] == [40, 70, 90]
    assert [r["budget"] for r in state.rounds()] == [40, 70]


def test_a_session_that_cannot_start_leaves_nothing_behind(digits, parquet_data, tmp_path, capsys):
    """Data with a few missing labels puts the job in the labelling mode by itself: when its first round cannot run,
    the error says why the mode was chosen and no session is left behind; the fixed rerun starts it."""
    data, _ = parquet_data
    nearly = tmp_path / "nearly"
    nearly.mkdir()
    train = digits["train"].select(range(120))
    without_labels(train, range(118)).to_parquet(str(nearly / "train.parquet"))
    shutil.copy(data / "test.parquet", nearly / "test.parquet")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as err:
        active.main(cli_args(nearly, out))
    message = capsys.readouterr().err
    assert err.value.code == 2 and "round 1's budget, 40 rows, is reached already (118 labelled" in message
    assert "labelling mode because the training split's label column 'label' has 2 missing label(s)" in message
    assert not (out / "labelling").exists() and not (out / "to_label").exists()
    fixed = active.main(cli_args(nearly, out, "--budgets", "119", "120"))
    assert fixed["round"] == 1 and fixed["n_to_label"] == 1

    unlabelled = without_labels(train)
    with pytest.raises(SVPConfigError, match="this labelling session is new and has asked for no rows yet"):
        svp_hf.ask(
            unlabelled, tmp_path / "api", initial_size=20, budgets=[40], labels_from=[str(tmp_path / "x.csv")], **TINY
        )
    assert not (tmp_path / "api" / "labelling").exists()


def test_a_fully_labelled_dataset_is_not_simulated_beside_a_session(digits, parquet_data, tmp_path, capsys):
    data, _ = parquet_data
    out = tmp_path / "out"
    unlabelled = tmp_path / "unlabelled"
    labelled = tmp_path / "labelled"
    train = datasets.load_dataset("parquet", data_files=str(data / "train.parquet"), split="train")
    for folder, split in ((unlabelled, without_labels(train)), (labelled, digits["train"].select(range(120)))):
        folder.mkdir()
        split.to_parquet(str(folder / "train.parquet"))
        shutil.copy(data / "test.parquet", folder / "test.parquet")
    active.main(cli_args(unlabelled, out))  # round 0: random rows, nothing trained
    capsys.readouterr()
    with pytest.raises(SystemExit) as err:
        active.main(cli_args(labelled, out, "--overwrite_output_dir", "true"))
    assert err.value.code == 2 and "holds a labelling session (labelling/state.json)" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["labelling", "to_label"]


def test_a_return_as_a_mapping_needs_row_ids_for_keys(asked):
    out, rows, truth = asked
    before = state_bytes(out)
    with pytest.raises(SVPConfigError, match=r"keys must be svp_index values .* got 'x'"):
        svp_hf.tell(out, {"x": "y"})
    with pytest.raises(SVPConfigError, match="all class names or all class ids"):
        svp_hf.tell(out, {rows["svp_index"][0]: "1", rows["svp_index"][1]: 2})
    assert state_bytes(out) == before
    ids = rows["svp_index"][:3]
    assert svp_hf.tell(out, {str(i): str(truth[i]) for i in ids})["merged"] == 3  # JSON's keys: decimal strings


def test_a_session_records_the_initial_size_its_round_zero_used(digits, tmp_path):
    """Without initial_size, round 0 asks for 1000 random rows (as active_learn): the session records that size, and a
    later call without the key keeps it."""
    train = digits["train"].select(range(1200))
    unlabelled, truth = without_labels(train), np.array(train["label"])
    out = tmp_path / "session"
    rows = svp_hf.ask(unlabelled, out, budgets=[1050, 1100], **TINY)
    assert len(rows) == 1000 and LabellingState.load(str(out)).settings["initial_size"] == 1000
    assert sorted(svp_hf.ask(unlabelled, out, budgets=[1050, 1100], **TINY)["svp_index"]) == sorted(rows["svp_index"])
    svp_hf.tell(out, answer(rows, truth))
    assert LabellingState.load(str(out)).settings["initial_size"] == 1000
