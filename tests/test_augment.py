"""Batch augmentation on the device: the same images torchvision's per-row CIFAR transforms can produce."""

import numpy as np
import torch
from torchvision import transforms as T
from torchvision.transforms import functional as TF

from svp_hf.data.augment import BatchAugment, epoch_generator, random_crop

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def _batch(n=64, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, size=(n, 8, 8, 3), dtype=np.uint8))


def test_without_training_it_is_totensor_and_normalize():
    pixels = _batch()
    out = BatchAugment(MEAN, STD, padding=1, flip=True, train=False)(pixels)
    reference = T.Compose([T.ToTensor(), T.Normalize(MEAN, STD)])
    expected = torch.stack([reference(p.numpy()) for p in pixels])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_training_gives_padded_crops_and_flips_of_every_image():
    pixels = _batch()
    augment = BatchAugment((0.0,) * 3, (1 / 255,) * 3, padding=2, flip=True, train=True)
    out = augment(pixels, torch.Generator().manual_seed(1))  # mean 0, std 1/255: the raw pixel values
    offsets, flips = set(), 0
    for image, source in zip(out, pixels.permute(0, 3, 1, 2).float()):
        padded = TF.pad(source, [2])
        matches = [
            (dy, dx, flip)
            for dy in range(5)
            for dx in range(5)
            for flip in (False, True)
            if torch.equal((TF.hflip if flip else (lambda x: x))(padded[:, dy : dy + 8, dx : dx + 8]), image)
        ]
        assert matches, "an output that is no padded crop (or its mirror) of its input"
        offsets.add(matches[0][:2])
        flips += matches[0][2]
    assert len(offsets) > 10 and 10 < flips < 54  # the offsets and flips really vary


def test_the_stream_is_a_function_of_seed_epoch_and_process():
    pixels = _batch()
    augment = BatchAugment(MEAN, STD, padding=1, flip=True, train=True)
    a = augment(pixels, epoch_generator(torch.device("cpu"), 0, 3))
    b = augment(pixels, epoch_generator(torch.device("cpu"), 0, 3))
    c = augment(pixels, epoch_generator(torch.device("cpu"), 0, 4))
    d = augment(pixels, epoch_generator(torch.device("cpu"), 0, 3, process_index=1))
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, d)


def test_random_crop_zero_pads():
    x = torch.ones(32, 1, 3, 3)
    out = random_crop(x, 1, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and (out == 0).any() and (out == 1).any()


def test_channels_last_layout():
    out = BatchAugment(MEAN, STD, channels_last=True)(_batch(4))
    assert out.is_contiguous(memory_format=torch.channels_last)
