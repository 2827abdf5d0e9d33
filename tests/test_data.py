"""The data stage's image path: decode-once batches for small images, named errors for images that cannot be decoded."""

import io

import datasets
import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from svp_hf.api import prepare_inputs
from svp_hf.data import CachedImages, batch_collate, check_images, on_device
from svp_hf.errors import SVPRuntimeError
from svp_hf.models import create_model


def _images(n, side, bad=()):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        if i in bad:
            rows.append({"bytes": b"not an image", "path": None})
            continue
        buffer = io.BytesIO()
        PILImage.fromarray(rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
        rows.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    return datasets.Dataset.from_dict({"img": rows, "label": [i % 2 for i in range(n)]}, features=features)


def test_small_images_batch_from_the_decoded_cache_as_the_per_row_transform_does():
    ds = _images(20, 16)
    family, info = prepare_inputs(ds, "resnet20", {})
    model = create_model("resnet20", info)
    cached = family.dataset(ds, model, info, train=False)
    assert isinstance(cached, CachedImages)
    batch = on_device(cached, batch_collate(cached, None)([3, 0, 7]))
    from svp_hf.data import image_transform

    transform = image_transform(model, info, train=False)
    expected = torch.stack([transform(ds[i]["img"].convert("RGB")) for i in (3, 0, 7)])
    torch.testing.assert_close(batch["pixel_values"], expected, rtol=1e-5, atol=1e-5)
    assert batch["labels"].tolist() == [1, 0, 1] and batch["svp_index"].tolist() == [3, 0, 7]


def test_a_large_undecodable_image_is_named_by_row_and_skipped_on_request():
    ds = _images(6, 80, bad=(4,))
    family, info = prepare_inputs(ds, "resnet18", {})
    model = create_model("resnet18", info)
    rows = family.dataset(ds, model, info, train=False)
    rows[3]  # a good row decodes
    with pytest.raises(SVPRuntimeError, match=r"column 'img' of row 4 cannot be decoded"):
        rows[4]
    kept, skipped = check_images(ds, info, skip=True)
    assert skipped == [4] and len(kept) == 5
    with pytest.raises(SVPRuntimeError, match=r"row\(s\) 4"):
        check_images(ds, info)
