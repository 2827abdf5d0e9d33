"""No file svp_hf reads can run code: a pickle payload planted wherever a file is read back (a proxy_checkpoint, a
resumed run's training and random states, active-learning rounds, score shards, a labelling session's state and
warm-start checkpoints, the image cache) is refused with a clear error, or ignored, and never runs."""

import io
import os
import pickle
import shutil

import datasets
import numpy as np
import pytest
import torch
from accelerate import Accelerator

import svp_hf
from svp_hf.data import add_index, image_cache
from svp_hf.engine import checkpoint
from svp_hf.errors import SVPConfigError


class Payload:
    """Unpickling this creates the file `marker` (``builtins.open``): the proof that code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def torch_payload(path, marker):
    """torch.save's archive: what ``torch.load(weights_only=False)`` runs."""
    torch.save({"state": Payload(marker)}, str(path))


def raw_payload(path, marker):
    """A bare pickle stream: what ``pickle.load`` and ``np.load(allow_pickle=True)`` run."""
    with open(path, "wb") as f:
        pickle.dump(Payload(marker), f)


def npz_payload(path, marker):
    """An .npz archive holding an object array: what ``np.load(allow_pickle=True)[key]`` runs."""
    with open(path, "wb") as f:
        np.savez(f, rounds=np.array([Payload(marker)], dtype=object), scores=np.zeros(1))


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "code-ran"
    yield path
    assert not path.exists(), "a planted pickle ran"


def test_the_payloads_run_code_when_unpickled(tmp_path):
    """The payloads are live: each runs its code when loaded the unsafe way (so the tests below can fail)."""
    for name, plant, load in [
        ("a.pt", torch_payload, lambda p: torch.load(p, weights_only=False)),
        ("b.pkl", raw_payload, lambda p: np.load(p, allow_pickle=True)),
        ("c.npz", npz_payload, lambda p: np.load(p, allow_pickle=True)["rounds"]),
    ]:
        marker = tmp_path / f"ran-{name}"
        plant(tmp_path / name, marker)
        load(str(tmp_path / name))
        assert marker.exists(), name


# --- a trained proxy's checkpoint: resumed, or given as proxy_checkpoint --------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_digits, tmp_path_factory):
    """A one-epoch training checkpoint of resnet20 on 64 digits (the epoch folder of a run's checkpoints)."""
    from svp_hf.engine.training import TrainingConfig, train_model
    from svp_hf.models import create_model
    from svp_hf.stages.proxy import prepare_inputs

    train = add_index(tiny_digits[0].select(range(64)))
    family, info = prepare_inputs(train, "resnet20", {})
    folder = tmp_path_factory.mktemp("trained") / "proxy"
    config = TrainingConfig(epochs=1, batch_size=32, learning_rate=0.05, lr_schedule="constant", seed=0)
    torch.manual_seed(0)
    train_model(
        create_model("resnet20", info),
        family,
        train,
        info,
        config,
        Accelerator(),
        signals=["correctness"],
        checkpoint_dir=str(folder),
    )
    return train, family, info, folder


def copy_checkpoint(trained, tmp_path):
    folder = tmp_path / "proxy"
    shutil.copytree(trained[3], folder)
    return folder, folder / "epoch_0001"


@pytest.mark.parametrize(
    "name",
    [
        "model.safetensors",
        "training_state.safetensors",
        "optimizer_state.safetensors",
        "random_states_0.safetensors",
        "training_state.pt",
    ],
)
def test_a_resumed_training_refuses_a_pickle_in_its_checkpoint(trained, tmp_path, marker, name):
    from svp_hf.engine.training import TrainingConfig, train_model
    from svp_hf.models import create_model

    train, family, info, _ = trained
    folder, epoch = copy_checkpoint(trained, tmp_path)
    torch_payload(epoch / name, marker)  # training_state.pt: where an earlier version kept its (pickled) state
    config = TrainingConfig(epochs=2, batch_size=32, learning_rate=0.05, lr_schedule="constant", seed=0)
    with pytest.raises(SVPConfigError, match=rf"{name}.*--resume false"):
        train_model(
            create_model("resnet20", info), family, train, info, config, Accelerator(), checkpoint_dir=str(folder)
        )


def test_a_run_refuses_checkpoints_of_an_earlier_version_before_reading_them(trained, tmp_path, marker):
    folder, epoch = copy_checkpoint(trained, tmp_path)
    settings = {"proxy": "resnet20"}
    checkpoint.check_run_settings(Accelerator(), str(folder), settings)  # the run.json of this run
    (epoch / "training_state.safetensors").unlink()
    torch_payload(epoch / "training_state.pt", marker)
    with pytest.raises(SVPConfigError, match=r"earlier svp_hf: its training_state.pt is pickle.*--resume false"):
        checkpoint.check_run_settings(Accelerator(), str(folder), settings)
    raw_payload(folder / "run.json", marker)
    with pytest.raises(SVPConfigError, match=r"run.json.*cannot be read.*--resume false"):
        checkpoint.check_run_settings(Accelerator(), str(folder), settings)


@pytest.mark.parametrize("name", ["model.safetensors", "training_state.safetensors", "training_state.pt"])
def test_a_proxy_checkpoint_with_a_pickle_is_refused_unread(trained, tmp_path, marker, name):
    train, _, _, _ = trained
    folder, epoch = copy_checkpoint(trained, tmp_path)
    torch_payload(epoch / name, marker)
    with pytest.raises(SVPConfigError, match=name):
        svp_hf.score(train, methods=["forgetting"], proxy_checkpoint=str(folder), batch_size=32)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt", "model.pth"])
def test_a_pickled_weights_file_is_read_with_weights_only(trained, tmp_path, marker, name):
    train, _, _, _ = trained
    torch_payload(tmp_path / name, marker)
    for given in (tmp_path / name, tmp_path):  # the file, or a folder holding it
        with pytest.raises(SVPConfigError, match=rf"proxy_checkpoint '.*{name}' cannot be read as model weights"):
            svp_hf.score(train, methods=["entropy"], proxy_checkpoint=str(given), batch_size=32)


def test_weights_in_torch_format_are_refused_where_weights_only_is_not_safe(trained, tmp_path, monkeypatch):
    train, _, _, _ = trained
    torch.save({"w": torch.zeros(1)}, str(tmp_path / "model.pt"))
    monkeypatch.setattr(checkpoint, "SAFE_TORCH_LOAD", False)  # torch before 2.6
    with pytest.raises(
        SVPConfigError, match=r"model.pt' is in torch's pickle-based format.*convert it to .safetensors"
    ):
        svp_hf.score(train, methods=["entropy"], proxy_checkpoint=str(tmp_path / "model.pt"), batch_size=32)


def test_garbage_or_text_as_proxy_checkpoint_is_a_clear_error_and_the_real_one_works(trained, tmp_path):
    train, _, _, _ = trained
    (tmp_path / "model.safetensors").write_bytes(os.urandom(256))
    (tmp_path / "notes.txt").write_text("my proxy\n")
    with pytest.raises(SVPConfigError, match=r"proxy_checkpoint '.*model.safetensors' cannot be read as model weights"):
        svp_hf.score(train, methods=["entropy"], proxy_checkpoint=str(tmp_path), batch_size=32)
    with pytest.raises(SVPConfigError, match=r"proxy_checkpoint '.*notes.txt' is not a weights file"):
        svp_hf.score(train, methods=["entropy"], proxy_checkpoint=str(tmp_path / "notes.txt"), batch_size=32)
    scores = svp_hf.score(train, methods=["entropy", "forgetting"], proxy_checkpoint=str(trained[3]), batch_size=32)
    assert len(scores) == len(train) and np.isfinite(scores["entropy"]).all()


# --- files a run writes and reads back: score shards, active-learning rounds --------------------------------------


@pytest.mark.parametrize("plant", [raw_payload, npz_payload, torch_payload])
def test_a_score_shard_with_a_pickle_is_refused(tmp_path, marker, plant):
    store = checkpoint.ShardStore(str(tmp_path / "scores"))
    store.write(0, {"svp_index": np.arange(3), "entropy": np.zeros(3)})
    path = store.finished()[0]
    plant(path, marker)
    with pytest.raises(SVPConfigError, match=r"score shard '.*shard_00000.npz' cannot be read.*--resume false"):
        store.read(path)


def saved_round(tmp_path, model=None):
    """An active-learning round as a run saves it (with a warm start's weights and generators when `model`)."""
    arrays = {"rounds": np.array([0, 1, -1]), "scores": np.array([np.nan, 0.5, np.nan])}
    checkpoint.save_round(Accelerator(), str(tmp_path / "rounds"), 1, arrays, [{"round": 1}], model=model)
    return tmp_path / "rounds" / "round_0001"


@pytest.mark.parametrize(
    "name, plant",
    [
        ("pool.npz", raw_payload),
        ("pool.npz", npz_payload),
        ("rounds.json", raw_payload),
        ("rng_state.pt", torch_payload),
    ],
)
def test_an_active_learning_round_with_a_pickle_is_refused(tmp_path, marker, name, plant):
    folder = saved_round(tmp_path)
    plant(folder / name, marker)  # rng_state.pt: where an earlier version kept a warm start's generators
    with pytest.raises(SVPConfigError, match=rf"{name}.*--resume false"):
        checkpoint.load_round(str(tmp_path / "rounds"))


@pytest.mark.parametrize("name", ["model.safetensors", "rng_state.safetensors"])
def test_an_active_learning_warm_start_with_a_pickle_is_refused(trained, tmp_path, marker, name):
    from svp_hf.models import create_model

    info = trained[2]
    folder = saved_round(tmp_path, create_model("resnet20", info))
    torch_payload(folder / name, marker)
    _, _, _, weights = checkpoint.load_round(str(tmp_path / "rounds"))
    with pytest.raises(SVPConfigError, match=rf"{name}.*--resume false"):
        checkpoint.load_model_weights(create_model("resnet20", info), weights, fix=checkpoint.RESUME_FIX)
        checkpoint.restore_rng_state(weights)


def test_state_files_round_trip_exactly_and_refuse_anything_else(tmp_path):
    import random

    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "optimizer": {
            "state": {0: {"momentum_buffer": torch.randn(3, 2)}},
            "param_groups": [{"betas": (0.9, 0.999), "lr": 0.1, "params": [0]}],
        },
        "history": [{"epoch": 1, "loss": float("nan")}],
        "signals": {"margin": {"total": np.arange(4.0), "seen": np.ones(4, dtype=bool)}},
    }
    path = str(tmp_path / "state.safetensors")
    checkpoint.save_state_file(path, state)
    back = checkpoint.load_state_file(path, "fix it")
    assert back["python"] == state["python"] and isinstance(back["python"], tuple)
    assert (
        back["numpy"][0] == "MT19937"
        and np.array_equal(back["numpy"][1], state["numpy"][1])
        and back["numpy"][2:] == state["numpy"][2:]
    )
    assert torch.equal(back["torch"], state["torch"])
    assert torch.equal(
        back["optimizer"]["state"][0]["momentum_buffer"], state["optimizer"]["state"][0]["momentum_buffer"]
    )
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999) and np.isnan(back["history"][0]["loss"])
    assert back["signals"]["margin"]["seen"].dtype == bool
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(1)}, path)  # safetensors, but no svp_hf state
    with pytest.raises(SVPConfigError, match="not a state file written by svp_hf .*no svp_hf state.*; fix it"):
        checkpoint.load_state_file(path, "fix it")


# --- a labelling session: its state and its warm-start checkpoints -------------------------------------------------


def without_labels(dataset):
    return dataset.remove_columns("label").add_column("label", [None] * len(dataset), feature=dataset.features["label"])


TINY = dict(proxy_epochs=1, batch_size=64, seed=0, warm_start=True, initial_size=20, budgets=[40, 60])


@pytest.fixture(scope="module")
def session(digits, tmp_path_factory):
    """A warm-started labelling session whose round 1 was asked and answered: round 2 starts from round 1's
    checkpoint."""
    train = digits["train"].select(range(120))
    pool, truth = without_labels(train), np.array(train["label"])
    out = tmp_path_factory.mktemp("session") / "out"
    for _ in range(2):
        rows = svp_hf.ask(pool, out, **TINY)
        svp_hf.tell(out, {int(i): int(truth[i]) for i in rows["svp_index"]})
    return pool, out


def test_a_labelling_state_that_is_a_pickle_is_refused(session, tmp_path, marker):
    pool, out = session
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    raw_payload(copy / "labelling" / "state.json", marker)
    with pytest.raises(SVPConfigError, match=r"labelling session's state '.*state.json' cannot be read"):
        svp_hf.ask(pool, copy, **TINY)
    with pytest.raises(SVPConfigError, match="state.json' cannot be read"):
        svp_hf.tell(copy, {0: 1})


@pytest.mark.parametrize("name", ["model.safetensors", "rng_state.safetensors", "rng_state.pt"])
def test_a_labelling_warm_start_with_a_pickle_is_refused(session, tmp_path, marker, name):
    pool, out = session
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    folder = copy / "labelling" / "checkpoints" / "round_1"
    torch_payload(folder / name, marker)  # rng_state.pt: where an earlier version kept the generators' states
    with pytest.raises(SVPConfigError, match=rf"{name}.*remove '.*round_1' to train round 2's selector from scratch"):
        svp_hf.ask(pool, copy, **TINY)
    assert not (copy / "to_label" / "round_2.csv").exists()


# --- the image cache (decoded pixels kept beside a file-backed dataset's cache) --------------------------------------


def test_an_image_cache_that_is_a_pickle_never_runs(tmp_path, marker):
    from PIL import Image as PILImage

    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, size=(12, 6, 5, 3), dtype=np.uint8)
    pngs = []
    for a in arrays:
        buffer = io.BytesIO()
        PILImage.fromarray(a).save(buffer, format="PNG")
        pngs.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"img": datasets.Image(), "label": datasets.Value("int64")})
    datasets.Dataset.from_dict({"img": pngs, "label": list(range(12))}, features=features).to_parquet(
        str(tmp_path / "t.parquet")
    )

    def decode():
        image_cache.clear()  # a new process: nothing in memory, the disk cache read back
        loaded = datasets.load_dataset(
            "parquet", data_files=str(tmp_path / "t.parquet"), split="train", cache_dir=str(tmp_path / "cache")
        )
        return image_cache.decode_images(loaded, "img", "RGB", (6, 5))

    decode()
    cached = [p for p in (tmp_path / "cache").rglob("*.npy")]
    assert cached, "the image cache is written beside the dataset's cache files"
    for path in cached:
        raw_payload(path, marker)
    try:
        again = decode()
    except (SVPConfigError, ValueError):
        return  # refused
    finally:
        image_cache.clear()
    np.testing.assert_array_equal(np.asarray(again.pixels), arrays)  # or decoded again


def test_images_in_formats_pil_hands_to_outside_programs_are_refused():
    """EPS is rendered by Ghostscript, an outside program: the decoder only opens raster formats PIL reads itself."""
    import io

    from PIL import Image, UnidentifiedImageError

    from svp_hf.data.image_cache import decode_one

    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buffer, format="PNG")
    assert decode_one(buffer.getvalue(), None, "RGB", None).shape == (4, 4, 3)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n"
    with pytest.raises(UnidentifiedImageError):
        decode_one(eps, None, "RGB", None)
