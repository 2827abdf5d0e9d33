"""The recorder of a user's own training loop (svp_hf.stages.recorder): the same scores as svp_hf's own training loop for
the same run, a Trainer integration that finds each row under its shuffled sampler, clear errors for misuse, the
examples, and (slow tier) the same records from two processes as from one.

Run as a script (``python tests/test_recorder.py {accelerate,trainer} OUT.json``), this file is the loop the slow
tests launch in one and two processes."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from datasets import ClassLabel, Dataset, Features, Value

REPO = Path(__file__).resolve().parents[1]
METHODS = ["forgetting", "aum", "confidence", "variability", "el2n", "least_confidence", "entropy", "margin"]
TRAINING = ["forgetting", "aum", "confidence", "variability"]
N_ROWS, N_CLASSES = 37, 5  # neither a batch of 8 nor 2 processes x 8 divides the rows


def toy(n=N_ROWS, classes=N_CLASSES):
    """Rows with a scalar feature `x` (what the toy logits are computed from), a label and an unused column."""
    rng = np.random.default_rng(0)
    return Dataset.from_dict(
        {
            "x": rng.normal(size=n).astype(np.float32).tolist(),
            "label": rng.integers(classes, size=n).tolist(),
            "note": ["r"] * n,
        },
        features=Features({"x": Value("float32"), "label": ClassLabel(num_classes=classes), "note": Value("string")}),
    )


def toy_logits(x: torch.Tensor, epoch: int = 0, classes: int = N_CLASSES) -> torch.Tensor:
    """Logits fixed by a row's `x` and the epoch, element by element (so the same whatever batch a row is in): rows
    move in and out of being classified right from epoch to epoch, which makes forgetting events."""
    return torch.sin(x[:, None] * 3.7 + torch.arange(classes, device=x.device) * 1.3 + epoch * 2.1) * 3.0


# --- the recorder's accounting: svp_hf's signals, fed in presentation order ---------------------------------------


def test_recorder_accumulates_exactly_what_svp_hf_signals_accumulate():
    from svp_hf import DynamicsRecorder
    from svp_hf.selection.methods import get_method
    from svp_hf.selection.signals import SIGNALS, make_signals, observe_all, update_all

    ds = toy()
    labels = torch.tensor(ds["label"])
    x = torch.tensor(ds["x"])
    recorder = DynamicsRecorder(ds)
    signals = make_signals(SIGNALS.names(), len(ds))
    generator = torch.Generator().manual_seed(0)
    for epoch in range(4):
        for rows in torch.randperm(len(ds), generator=generator).split(8):
            logits = toy_logits(x[rows], epoch)
            recorder.update(rows, logits, labels[rows])
            update_all(signals, rows.numpy(), observe_all(signals, logits, labels[rows]).numpy())
    scores = recorder.scores(TRAINING)
    for method in TRAINING:
        spec = get_method(method)
        np.testing.assert_array_equal(scores[method], spec.scorer(signals[spec.signal]), err_msg=method)
    assert np.isfinite(scores["forgetting"]).any() and np.asarray(scores["forgetting"]).max() > 0  # events happened
    np.testing.assert_array_equal(recorder.presentations, np.full(len(ds), 4))


def test_the_scores_table_is_svp_hf_scores_table_and_select_takes_it():
    import svp_hf
    from svp_hf.stages.recorder import SOURCE, scores_source

    ds = toy()
    recorder = svp_hf.DynamicsRecorder(ds)
    x, labels = torch.tensor(ds["x"]), torch.tensor(ds["label"])
    for epoch in range(3):
        recorder.update(torch.arange(len(ds)), toy_logits(x, epoch), labels)
    recorder.update_final(torch.arange(len(ds)), toy_logits(x, 3), labels)
    scores = recorder.scores(["aum", "el2n", "random"], seed=3)
    assert scores.column_names == ["svp_index", "label", "aum", "el2n", "random"]
    assert scores.features["label"] == ds.features["label"]  # the dataset's ClassLabel, as svp_hf.score keeps it
    assert all(scores.features[m] == Value("float64") for m in ("aum", "el2n", "random"))
    assert scores["svp_index"] == list(range(len(ds))) and scores["label"] == ds["label"]
    np.testing.assert_array_equal(scores["random"], svp_hf.get_method("random").scorer(len(ds), seed=3))
    meta = scores_source(scores)
    assert meta["source"] == SOURCE and meta["methods"] == ["aum", "el2n", "random"]
    assert meta["presentations"] == {"min": 3, "max": 3, "total": 3 * len(ds)} and meta["final_pass_steps"] == 1
    kept = svp_hf.select(ds, scores, "aum", 0.5, strategy="coverage", coverage_beta=0.1)
    assert len(kept) == 18 and set(kept.column_names) == {"x", "label", "note", "svp_score", "svp_index"}
    lowest = svp_hf.select(ds, scores, "aum", 0.25, strategy="top")  # aum keeps its lowest scores
    assert sorted(lowest["svp_score"]) == sorted(np.sort(scores["aum"])[: len(lowest)].tolist())
    assert scores_source(svp_hf.select(ds, scores, "el2n", 0.5)) is None  # a subset is not a score table


# --- the key guarantee: the same run gives the same scores as svp_hf's own training loop ---------------------------


def test_a_user_loop_records_the_scores_svp_hf_score_records_for_the_same_run(tiny_digits):
    """svp_hf.score trains ResNet-20 and scores the rows; a hand-written Accelerate loop trains the same model from
    the same seed on the same batches (svp_hf's image pipeline for the inputs, layout included: CPU convolutions pick
    their kernels by memory layout) and feeds the recorder. Every training-dynamics score is equal bit for bit."""
    import timm
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    import svp_hf
    from svp_hf.stages.proxy import prepare_inputs

    train = tiny_digits[0].select(range(120))  # 3 batches of 32 and one of 24 per epoch
    epochs, batch_size, lr = 2, 32, 0.05
    reference = svp_hf.score(
        train,
        "resnet20",
        METHODS,
        proxy_epochs=epochs,
        batch_size=batch_size,
        learning_rate=lr,
        lr_schedule="constant",
        augment=False,
        seed=0,
        momentum=0.9,
        weight_decay=5e-4,
    )

    # The user's loop: their optimizer, loader, forward, loss and steps.
    family, info = prepare_inputs(train, "resnet20", {})
    set_seed(0)  # as svp_hf.score seeds before it builds the proxy
    model = timm.create_model("resnet20", num_classes=info.num_classes, in_chans=info.extra["in_chans"])
    inputs = family.dataset(train, model, info, train=True, augment=False)
    order = torch.Generator()
    loader = torch.utils.data.DataLoader(
        inputs, batch_size=batch_size, shuffle=True, generator=order, collate_fn=inputs.collate
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    accelerator = Accelerator()
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    recorder = svp_hf.DynamicsRecorder(train, accelerator=accelerator)
    for epoch in range(epochs):
        order.manual_seed(epoch)  # svp_hf's data order: a function of (seed, epoch)
        model.train()
        for batch in loader:
            batch = inputs.device_transform(batch)
            logits = model(batch["pixel_values"])
            accelerator.backward(F.cross_entropy(logits, batch["labels"]))
            optimizer.step()
            optimizer.zero_grad()
            recorder.update(batch["svp_index"], logits, batch["labels"])
    model.eval()
    with torch.no_grad():
        for start in range(0, len(train), batch_size):
            batch = inputs.device_transform(inputs.collate(range(start, min(start + batch_size, len(train)))))
            recorder.update_final(batch["svp_index"], model(batch["pixel_values"]), batch["labels"])
    recorded = recorder.scores(METHODS)

    assert recorded.features == reference.features and recorded.column_names == reference.column_names
    assert recorded["svp_index"] == reference["svp_index"] and recorded["label"] == reference["label"]
    for method in TRAINING:
        np.testing.assert_array_equal(recorded[method], reference[method], err_msg=method)
    assert np.isfinite(recorded["forgetting"]).sum() > 0
    # The trained model's pass: svp_hf pads its last batch to a full one and takes the softmax of many batches at
    # once, vectorised across rows, so a few rows may differ in the last float32 bit.
    for method in METHODS[len(TRAINING) :]:
        np.testing.assert_allclose(recorded[method], reference[method], rtol=1e-6, atol=1e-6, err_msg=method)


# --- misuse --------------------------------------------------------------------------------------------------------


def test_wrong_inputs_are_refused_with_clear_errors():
    from datasets import IterableDataset

    from svp_hf import DynamicsRecorder, SVPConfigError

    ds = toy()
    with pytest.raises(SVPConfigError, match="needs a datasets.Dataset"):
        DynamicsRecorder([1, 2, 3])
    with pytest.raises(SVPConfigError, match="needs a datasets.Dataset"):
        DynamicsRecorder(IterableDataset.from_generator(lambda: iter([{"label": 0}])))
    with pytest.raises(SVPConfigError, match="empty"):
        DynamicsRecorder(ds.select([]))
    with pytest.raises(SVPConfigError, match="label column 'y' not found"):
        DynamicsRecorder(ds, label_column="y")

    recorder = DynamicsRecorder(ds)
    rows, labels = torch.arange(4), torch.tensor(ds["label"][:4])
    good = torch.zeros(4, N_CLASSES)
    for args, message in [
        ((rows, good[0], labels), r"shape \(batch, num_classes\), got torch.float32 of shape \(5,\)"),
        ((rows, good.long(), labels), "floating-point"),
        ((rows, good.numpy(), labels), "must be a torch.Tensor"),
        ((rows.float(), good, labels), "indices must be a 1-d integer tensor"),
        ((rows, good, F.one_hot(labels, N_CLASSES)), "labels must be a 1-d integer tensor .class ids, not one-hot"),
        ((rows[:3], good, labels), "3 indices for 4 rows"),
        ((rows, good[:, :2], labels), "logits have 2 classes, but the dataset's labels go up to 4"),
    ]:
        with pytest.raises(SVPConfigError, match=message):
            recorder.update(*args)
    recorder.update(rows, good, labels)
    with pytest.raises(SVPConfigError, match="logits have 6 classes, but earlier ones had 5"):
        recorder.update(rows, torch.zeros(4, 6), labels)


def test_indices_out_of_range_and_labels_unlike_the_datasets_are_caught_on_the_host():
    from svp_hf import DynamicsRecorder, SVPConfigError

    ds = toy()
    labels = torch.tensor(ds["label"])
    recorder = DynamicsRecorder(ds)
    recorder.update(torch.tensor([0, len(ds)]), torch.zeros(2, N_CLASSES), labels[:2])
    with pytest.raises(SVPConfigError, match=rf"1 row indices outside 0..{len(ds) - 1} \(e.g. \[{len(ds)}\]\)"):
        recorder.flush()
    wrong = (labels[:4] + 1) % N_CLASSES
    recorder.update(torch.arange(4), torch.zeros(4, N_CLASSES), wrong)
    with pytest.raises(
        SVPConfigError, match=r"4 of 4 labels given to update differ from the dataset's 'label' column \(row 0"
    ):
        recorder.scores()
    assert recorder.presentations.sum() == 0  # faulty records are dropped, not folded in
    recorder.update_final(torch.arange(4), torch.zeros(4, N_CLASSES), wrong)
    with pytest.raises(SVPConfigError, match="labels given to update_final differ"):
        recorder.flush()


def test_scores_say_what_is_missing():
    from svp_hf import DynamicsRecorder, SVPConfigError

    ds = toy()
    labels, x = torch.tensor(ds["label"]), torch.tensor(ds["x"])
    recorder = DynamicsRecorder(ds)
    with pytest.raises(SVPConfigError, match="no training step was recorded"):
        recorder.scores()
    with pytest.raises(SVPConfigError, match="Unknown selection method 'nope'"):
        recorder.scores(["nope"])
    recorder.update(torch.arange(10), toy_logits(x[:10]), labels[:10])
    with pytest.raises(SVPConfigError, match=r"27 of 37 rows were never recorded in training \(e.g. rows \[10, 11"):
        recorder.scores("aum")
    recorder.update(torch.arange(10, len(ds)), toy_logits(x[10:]), labels[10:])
    assert recorder.scores("aum").num_rows == len(ds)
    with pytest.raises(SVPConfigError, match="score the trained model's predictions.*update_final"):
        recorder.scores(["aum", "el2n"])
    recorder.update_final(torch.arange(5), toy_logits(x[:5]), labels[:5])
    with pytest.raises(SVPConfigError, match="32 of 37 rows were not in the final pass"):
        recorder.scores("el2n")
    with pytest.raises(SVPConfigError, match="needs the model's embeddings"):
        recorder.scores("kcenter")


def test_nan_logits_are_a_runtime_error_naming_the_run():
    from svp_hf import DynamicsRecorder, SVPRuntimeError

    ds = toy()
    recorder = DynamicsRecorder(ds)
    logits = torch.zeros(len(ds), N_CLASSES)
    logits[3] = float("nan")
    recorder.update(torch.arange(len(ds)), logits, torch.tensor(ds["label"]))
    with pytest.raises(
        SVPRuntimeError, match="the recorded training run produced NaN scores \\('aum' for 1 of 37 rows"
    ):
        recorder.scores("aum")


def test_records_reach_the_host_about_once_an_epoch_and_not_per_step(monkeypatch):
    from svp_hf import DynamicsRecorder

    ds = toy()
    recorder = DynamicsRecorder(ds)
    folds = []
    real = recorder.flush
    monkeypatch.setattr(recorder, "flush", lambda: folds.append(recorder.steps) or real())
    labels, x = torch.tensor(ds["label"]), torch.tensor(ds["x"])
    for epoch in range(5):
        for rows in torch.arange(len(ds)).split(4):  # 10 steps an epoch
            recorder.update(rows, toy_logits(x[rows], epoch), labels[rows])
    # Observed 16 steps at a time on the device (as svp_hf's loop), copied once they add up to the dataset's rows.
    assert folds == [16, 32, 48]
    assert recorder.presentations.tolist() == [5] * len(ds)
    assert folds == [16, 32, 48, 50]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_updates_never_wait_for_the_gpu():
    from svp_hf import DynamicsRecorder
    from svp_hf.selection.signals import MarginSignal

    ds = toy(n=200)
    device = torch.device("cuda")
    labels, x = torch.tensor(ds["label"], device=device), torch.tensor(ds["x"], device=device)
    batches = torch.randperm(len(ds), device=device).split(4)
    recorder = DynamicsRecorder(ds)
    mode = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")  # any operation that waits for the GPU raises
    try:
        for rows in batches[:48]:  # observed on the device 16 steps at a time; not yet a dataset's worth of rows
            recorder.update(rows, toy_logits(x[rows]), labels[rows])
    finally:
        torch.cuda.set_sync_debug_mode(mode)
    for rows in batches[48:]:
        recorder.update(rows, toy_logits(x[rows]), labels[rows])
    np.testing.assert_array_equal(recorder.presentations, np.ones(len(ds)))
    expected = MarginSignal.observe(toy_logits(x), labels).double().cpu().numpy()  # margins are exact, row by row
    np.testing.assert_array_equal(recorder.scores("aum")["aum"], expected)


def test_the_records_survive_accelerate_checkpoints(tmp_path):
    from accelerate import Accelerator

    from svp_hf import DynamicsRecorder

    ds = toy()
    labels, x = torch.tensor(ds["label"]), torch.tensor(ds["x"])

    def feed(recorder, epochs):
        for epoch in epochs:
            for rows in torch.randperm(len(ds), generator=torch.Generator().manual_seed(epoch)).split(8):
                recorder.update(rows, toy_logits(x[rows], epoch), labels[rows])

    straight = DynamicsRecorder(ds)
    feed(straight, range(4))
    accelerator = Accelerator()
    first = DynamicsRecorder(ds)
    accelerator.register_for_checkpointing(first)
    feed(first, range(2))
    accelerator.save_state(str(tmp_path / "state"))
    resumed = DynamicsRecorder(ds)  # a new run
    again = Accelerator()
    again.register_for_checkpointing(resumed)
    again.load_state(str(tmp_path / "state"))
    assert resumed.steps == first.steps
    feed(resumed, range(2, 4))
    for method in TRAINING:
        np.testing.assert_array_equal(resumed.scores(method)[method], straight.scores(method)[method])


# --- transformers.Trainer -----------------------------------------------------------------------------------------


class RowModel(torch.nn.Module):
    """Logits fixed by each row's `x` (:func:`toy_logits`), whatever batch the row is in; trained at learning rate 0
    so that every presentation of a row has the same logits: a record under the wrong row shows."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, labels=None):
        logits = toy_logits(x) * self.scale
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


class DictRows(torch.utils.data.Dataset):
    """A torch dataset of dict rows (not a ``datasets.Dataset``): the Trainer removes unused keys in its collator."""

    def __init__(self, ds):
        self.rows = ds.to_list()

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]


def trainer_run(output_dir, epochs=2, rows=None, **arguments):
    """A Trainer with a recorder attached: shuffled batches of 5 accumulated in pairs (in two processes, the last pair
    is fetched before its first batch trains, and the very last batch is padded), an unused column dropped by the
    Trainer, the trained model's pass by ``predict``; returns the recorder and the dataset."""
    from transformers import Trainer, TrainingArguments

    from svp_hf import DynamicsRecorder

    ds = toy()
    args = TrainingArguments(
        output_dir=str(output_dir),
        num_train_epochs=epochs,
        per_device_train_batch_size=5,
        per_device_eval_batch_size=5,
        gradient_accumulation_steps=2,
        learning_rate=0.0,
        save_strategy="no",
        report_to="none",
        logging_strategy="no",
        disable_tqdm=True,
        **arguments,
    )
    trainer = Trainer(model=RowModel(), args=args, train_dataset=ds if rows is None else rows(ds))
    recorder = DynamicsRecorder(ds)
    assert recorder.attach(trainer) is trainer
    trainer.train()
    trainer.predict(trainer.train_dataset)
    return recorder, ds


def expected_row_scores(ds):
    from svp_hf.engine.scoring import probabilities
    from svp_hf.selection.methods import get_method
    from svp_hf.selection.signals import MarginSignal, TrueProbabilitySignal

    logits, labels = toy_logits(torch.tensor(ds["x"])), torch.tensor(ds["label"])
    return {
        "aum": MarginSignal.observe(logits, labels).double().numpy(),
        "confidence": TrueProbabilitySignal.observe(logits, labels).double().numpy(),
        "el2n": get_method("el2n").scorer(probabilities(logits), labels).double().numpy(),
        "correct": (logits.argmax(1) == labels).numpy(),
    }


@pytest.mark.parametrize("rows", [None, DictRows], ids=["datasets", "torch"])
def test_a_trainer_records_every_row_under_its_own_index(rows, tmp_path):
    recorder, ds = trainer_run(tmp_path, rows=rows, use_cpu=True)
    assert recorder.steps == 2 * 8  # 8 batches of 5 (the last of 2 rows) an epoch, each recorded
    np.testing.assert_array_equal(recorder.presentations, np.full(len(ds), 2))
    scores = recorder.scores(["aum", "confidence", "variability", "forgetting", "el2n"])
    expected = expected_row_scores(ds)
    np.testing.assert_array_equal(scores["aum"], expected["aum"])  # the same logits twice: their mean is exact
    np.testing.assert_array_equal(scores["confidence"], expected["confidence"])
    np.testing.assert_array_equal(scores["variability"], np.zeros(len(ds)))
    np.testing.assert_array_equal(scores["forgetting"], np.where(expected["correct"], 0.0, np.inf))
    np.testing.assert_allclose(scores["el2n"], expected["el2n"], rtol=1e-6)


def test_attach_refuses_what_it_cannot_record(tmp_path):
    from transformers import Trainer, TrainingArguments

    from svp_hf import DynamicsRecorder, SVPConfigError

    ds = toy()
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(SVPConfigError, match="attach takes a transformers.Trainer"):
        DynamicsRecorder(ds).attach(object())
    with pytest.raises(SVPConfigError, match="has 20 rows but the recorder's dataset has 37"):
        DynamicsRecorder(ds).attach(Trainer(model=RowModel(), args=args, train_dataset=ds.select(range(20))))
    trainer = DynamicsRecorder(ds).attach(Trainer(model=RowModel(), args=args, train_dataset=ds))
    with pytest.raises(SVPConfigError, match="already has a DynamicsRecorder attached"):
        DynamicsRecorder(ds).attach(trainer)

    def dropping_collator(rows):  # builds the batch from the columns it knows: the index column is lost
        return {"x": torch.tensor([r["x"] for r in rows]), "labels": torch.tensor([r["label"] for r in rows])}

    trainer = Trainer(model=RowModel(), args=args, train_dataset=ds, data_collator=dropping_collator)
    DynamicsRecorder(ds).attach(trainer)
    with pytest.raises(SVPConfigError, match="the data collator dropped it"):
        trainer.train()


def test_a_subset_selected_by_recorded_scores_is_pushed_to_the_hub(monkeypatch):
    import svp_hf
    import svp_hf.publish.hub

    from .conftest import FakeHub

    hub = FakeHub()
    monkeypatch.setattr(svp_hf.publish.hub, "HfApi", hub.api)
    monkeypatch.setenv("HF_TOKEN", hub.token)
    ds = toy()
    recorder = svp_hf.DynamicsRecorder(ds)
    recorder.update(torch.arange(len(ds)), toy_logits(torch.tensor(ds["x"])), torch.tensor(ds["label"]))
    subset = svp_hf.select(ds, recorder.scores(), "confidence", 0.5, strategy="coverage", coverage_beta=0.1)
    url = svp_hf.push_to_hub(subset, "toy-pruned")
    assert url.endswith("datasets/alice/toy-pruned")
    files = hub.repos["alice/toy-pruned"]["files"]
    assert "README.md" in files and any(f.startswith("data/train-") and f.endswith(".parquet") for f in files)


# --- the examples -------------------------------------------------------------------------------------------------


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, argv",
    [
        ("record_accelerate", ["--epochs", "2", "--max-rows", "96", "--batch-size", "32", "--cpu"]),
        ("record_trainer", ["--epochs", "2", "--max-rows", "96", "--batch-size", "32"]),
    ],
)
def test_the_examples_run_and_their_scores_select(name, argv, tmp_path):
    import svp_hf
    from svp_hf.stages.recorder import scores_source

    scores, subset, recorder = load_example(name).main([*argv, "--output", str(tmp_path / "scores.parquet")])
    assert scores.num_rows == 96 and recorder.steps == 2 * 3
    assert set(scores.column_names) == {"svp_index", "label", "forgetting", "aum", "el2n", "confidence", "variability"}
    assert scores_source(scores)["presentations"] == {"min": 2, "max": 2, "total": 192}
    assert len(subset) == 48
    written = Dataset.from_parquet(str(tmp_path / "scores.parquet"))  # what the example wrote selects again
    again = svp_hf.select(recorder.dataset, written, "el2n", 0.25)
    assert sorted(again["svp_score"]) == sorted(np.sort(scores["el2n"])[-24:].tolist())


# --- two processes (slow tier) ------------------------------------------------------------------------------------


def accelerate_loop(out):
    """A plain Accelerate loop over shuffled batches of 8 with toy logits (run in one process or several)."""
    from accelerate import Accelerator

    from svp_hf import DynamicsRecorder

    accelerator = Accelerator(cpu=True)
    ds = toy()
    loader = accelerator.prepare(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(len(ds))), batch_size=8, shuffle=True)
    )
    labels, x = torch.tensor(ds["label"]), torch.tensor(ds["x"])
    recorder = DynamicsRecorder(ds, accelerator=accelerator)
    for epoch in range(3):
        for (rows,) in loader:
            recorder.update(rows, toy_logits(x[rows], epoch), labels[rows])
    for (rows,) in accelerator.prepare(
        torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(len(ds))), batch_size=8)
    ):
        recorder.update_final(rows, toy_logits(x[rows], 3), labels[rows])
    write_result(accelerator.is_main_process, out, recorder, METHODS)


def trainer_loop(out):
    recorder, _ = trainer_run(Path(out).parent / "trainer_output", epochs=3, use_cpu=True)
    write_result(recorder.accelerator.is_main_process, out, recorder, TRAINING + ["el2n"])


def write_result(main_process, out, recorder, methods):
    scores = recorder.scores(methods)
    if main_process:
        result = {m: [repr(v) for v in scores[m]] for m in methods}  # repr: exact floats (and inf)
        result.update(presentations=recorder.presentations.tolist(), processes=recorder._num_processes)
        Path(out).write_text(json.dumps(result))


def launch(kind, out, processes):
    from .conftest import accelerate_launch  # here: this file also runs as a launched script, outside the package

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    script = [str(Path(__file__).resolve()), kind, str(out)]
    if processes == 1:
        cmd = [sys.executable, *script]
    else:
        cmd = [*accelerate_launch(processes=processes, port=29533, module_flag=False), *script]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(Path(out).read_text())


@pytest.mark.slow
def test_two_processes_record_exactly_what_one_records(tmp_path):
    one, two = launch("accelerate", tmp_path / "one.json", 1), launch("accelerate", tmp_path / "two.json", 2)
    assert (one.pop("processes"), two.pop("processes")) == (1, 2)
    assert one["presentations"] == [3] * N_ROWS  # the samples Accelerate repeats to even out batches are dropped
    assert one["presentations"] == two["presentations"]
    for method in TRAINING:
        assert one[method] == two[method], method
    # The trained model's pass is scored batch by batch with svp_hf's softmax, vectorised across a batch's rows: the
    # last batch (5 rows in one process, padded to 8 in two) may round a row's last float32 bit differently.
    for method in METHODS[len(TRAINING) :]:
        np.testing.assert_allclose(
            [float(v) for v in one[method]], [float(v) for v in two[method]], rtol=1e-6, err_msg=method
        )


@pytest.mark.slow
def test_a_trainer_in_two_processes_records_every_row_under_its_own_index(tmp_path):
    result = launch("trainer", tmp_path / "two.json", 2)
    assert result["processes"] == 2 and result["presentations"] == [3] * N_ROWS
    expected = expected_row_scores(toy())
    np.testing.assert_array_equal([float(v) for v in result["aum"]], expected["aum"])
    np.testing.assert_array_equal([float(v) for v in result["forgetting"]], np.where(expected["correct"], 0.0, np.inf))
    np.testing.assert_allclose([float(v) for v in result["el2n"]], expected["el2n"], rtol=1e-6)


if __name__ == "__main__":
    {"accelerate": accelerate_loop, "trainer": trainer_loop}[sys.argv[1]](sys.argv[2])
