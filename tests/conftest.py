import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SVP_SHARED_DIR", REPO.parent / "shared"))
SHARED_DATA = SHARED / "data"


def shared_data(name: str) -> Path:
    """Path of a dataset folder in ../shared/data, skipping the test cleanly when it is absent."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"needs the shared dataset folder {path} (absent on this machine)")
    return path


@pytest.fixture(scope="session")
def digits():
    from svp_hf.data import digits_dataset

    return digits_dataset()


@pytest.fixture(scope="session")
def tiny_digits(digits):
    """200 training and 100 test rows of scikit-learn's digits: enough for end-to-end runs in seconds."""
    return digits["train"].select(range(200)), digits["test"].select(range(100))


@pytest.fixture
def tiny_kwargs():
    return dict(proxy_epochs=1, batch_size=64, learning_rate=0.05, seed=0, strategy="top")
