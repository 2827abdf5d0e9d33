"""Batch augmentation on the accelerator's device: the standard CIFAR pipeline (pad-and-crop, horizontal flip,
normalisation) applied to a whole ``uint8`` batch at once, with a ``torch.Generator`` on the same device.

The result matches torchvision's ``RandomCrop(size, padding=p)`` (zero fill) + ``RandomHorizontalFlip()`` +
``ToTensor()`` + ``Normalize(mean, std)`` row for row in distribution; the random stream differs (one generator per
epoch and process, drawing the whole batch's offsets and flips at once), so a fixed seed gives other crops than the
per-row torchvision transforms did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch


@dataclass
class BatchAugment:
    """``uint8`` batches (batch x height x width x channels) -> normalised ``float`` batches (batch x channels x
    height x width), randomly padded-and-cropped and flipped when `train`."""

    mean: Sequence[float]
    std: Sequence[float]
    padding: int = 0
    flip: bool = False
    train: bool = False
    channels_last: bool = False

    def __call__(self, pixels: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float()  # B, C, H, W (a view: no copy until the arithmetic)
        if self.train and self.padding:
            x = random_crop(x, self.padding, generator)
        if self.train and self.flip:
            flips = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
            x = torch.where(flips.view(-1, 1, 1, 1), x.flip(3), x)
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * 255.0
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1) * 255.0
        x = (x - mean) / std
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        return x.contiguous(memory_format=memory_format)


def random_crop(x: torch.Tensor, padding: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each image of `x` (B, C, H, W) zero-padded by `padding` on every side and cropped back to H x W at a uniformly
    random offset, all in one gather."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), device=x.device, generator=generator)
    rows = dy.view(b, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = dx.view(b, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    picked_rows = padded.gather(2, rows.expand(b, c, h, w + 2 * padding))
    return picked_rows.gather(3, cols.expand(b, c, h, w))


def epoch_generator(device: torch.device, seed: int, epoch: int, process_index: int = 0) -> torch.Generator:
    """The augmentation's random stream for one epoch of one process: a function of (seed, epoch, process) alone, so
    a run resumed at an epoch boundary draws what an uninterrupted one draws."""
    generator = torch.Generator(device=device)
    generator.manual_seed((int(seed) * 1_000_003 + int(epoch) * 10_007 + int(process_index)) % (2**63))
    return generator


__all__ = ["BatchAugment", "random_crop", "epoch_generator"]
