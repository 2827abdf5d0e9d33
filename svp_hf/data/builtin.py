"""The built-in datasets (``builtin:digits``, ``builtin:reviews``): small, offline, for the quickstarts and tests."""

from __future__ import annotations

from typing import Callable

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Value

from ..registry import Registry
from ..utils.progress import quiet_datasets

BUILTIN_DATASETS: Registry[Callable[[], DatasetDict]] = Registry("built-in dataset")


@BUILTIN_DATASETS.register("builtin:digits")
@quiet_datasets()
def digits_dataset(seed: int = 0) -> DatasetDict:
    """scikit-learn's 1,797 8x8 handwritten digits as an image dataset (train 80% / test 20%, stratified)."""
    from PIL import Image as PILImage
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.clip(digits.images * 16.0, 0, 255).astype(np.uint8)
    features = datasets.Features({"image": datasets.Image(), "label": ClassLabel(names=[str(i) for i in range(10)])})
    ds = Dataset.from_dict(
        {"image": [PILImage.fromarray(p, mode="L") for p in pixels], "label": digits.target.tolist()}, features=features
    )
    return ds.train_test_split(test_size=0.2, stratify_by_column="label", seed=seed)


_REVIEW_WORDS = {
    "positive": (
        "great excellent wonderful superb lovely perfect fantastic reliable delightful brilliant sturdy comfortable",
        "love it|works perfectly|highly recommend|worth every penny|exceeded my expectations|five stars|would buy again",
    ),
    "negative": (
        "terrible awful useless broken flimsy disappointing poor cheap defective horrible noisy uncomfortable",
        "waste of money|stopped working|do not buy|fell apart|returned it|one star|never again",
    ),
}


_REVIEW_ITEMS = "blender headphones novel charger kettle jacket backpack lamp keyboard album tent camera".split()


@BUILTIN_DATASETS.register("builtin:reviews")
@quiet_datasets()
def reviews_dataset(seed: int = 0, n: int = 1200) -> DatasetDict:
    """A small synthetic product-review set in Amazon Review Polarity's schema (label, title, content), made from a
    seeded template grammar so that text pipelines run offline: train 80% / test 20%, stratified.

    Each review mixes sentiment words of its own class with a few of the other class (and neutral filler), so the
    classes overlap and a proxy has uncertain examples to find."""
    rng = np.random.default_rng(seed)
    names = ["negative", "positive"]
    words = {k: (w.split(), p.split("|")) for k, (w, p) in _REVIEW_WORDS.items()}
    filler = "the this it was is and really quite a for my after two weeks but also".split()
    rows = {"label": [], "title": [], "content": []}
    for _ in range(n):
        label = int(rng.integers(2))
        own, other = words[names[label]], words[names[1 - label]]
        item = _REVIEW_ITEMS[rng.integers(len(_REVIEW_ITEMS))]
        n_own, n_other = int(rng.integers(1, 4)), int(rng.integers(0, 2))
        picks = [own[0][i] for i in rng.integers(len(own[0]), size=n_own)]
        picks += [other[0][i] for i in rng.integers(len(other[0]), size=n_other)]
        picks += [filler[i] for i in rng.integers(len(filler), size=int(rng.integers(2, 6)))]
        rng.shuffle(picks)
        phrase = own[1][rng.integers(len(own[1]))] if rng.random() < 0.75 else other[1][rng.integers(len(other[1]))]
        rows["label"].append(label)
        rows["title"].append(f"{picks[0].capitalize()} {item}")
        rows["content"].append(f"The {item} is {' '.join(picks)}. {phrase.capitalize()}.")
    features = datasets.Features(
        {"label": ClassLabel(names=names), "title": Value("string"), "content": Value("string")}
    )
    ds = Dataset.from_dict(rows, features=features)
    return ds.train_test_split(test_size=0.2, stratify_by_column="label", seed=seed)
