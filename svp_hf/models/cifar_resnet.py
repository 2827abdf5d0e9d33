"""The pre-activation ResNets of SVP's CIFAR experiments (He et al. 2016), registered in timm's model registry.

Three stages of 16/32/64 base channels; ResNet-20/56/110 use basic blocks ((depth - 2) / 6 per stage), ResNet-164
uses bottleneck blocks ((depth - 2) / 9 per stage, expansion 4). Once this module is imported,
``timm.create_model("resnet20", num_classes=10)`` builds one like any other timm model.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type, Union

import torch
import torch.nn as nn
from timm.layers import SelectAdaptivePool2d
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


class PreActBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        out_planes = planes * self.expansion
        self.shortcut = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
            if stride != 1 or in_planes != out_planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        return out + shortcut


class PreActBottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        out_planes = planes * self.expansion
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.shortcut = (
            nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)
            if stride != 1 or in_planes != out_planes
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(x))
        shortcut = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(torch.relu(self.bn2(out)))
        out = self.conv3(torch.relu(self.bn3(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    """Pre-activation ResNet for small (CIFAR-sized) images, with timm's model interface."""

    def __init__(
        self,
        block: Union[Type[PreActBasicBlock], Type[PreActBottleneck]],
        blocks_per_stage: int,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        global_pool: str = "avg",
        base_width: int = 16,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.stem = nn.Conv2d(in_chans, base_width, 3, padding=1, bias=False)
        stages, in_planes, self.feature_info = [], base_width, []
        for i, planes in enumerate((base_width, base_width * 2, base_width * 4)):
            layers = []
            for j in range(blocks_per_stage):
                layers.append(block(in_planes, planes, stride=2 if (i > 0 and j == 0) else 1))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*layers))
            self.feature_info.append(dict(num_chs=in_planes, reduction=2**i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.norm = nn.BatchNorm2d(in_planes)
        self.num_features = self.head_hidden_size = in_planes
        self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(in_planes, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: Optional[str] = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = SelectAdaptivePool2d(pool_type=global_pool, flatten=True)
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return torch.relu(self.norm(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = nn.functional.dropout(x, p=self.drop_rate, training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _cfg(**kwargs: Any) -> Dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "stem",
        "classifier": "fc",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"resnet{d}.untrained": _cfg() for d in (20, 56, 110, 164)})


def _create(variant: str, pretrained: bool, depth: int, **kwargs: Any) -> PreActResNet:
    bottleneck = depth >= 164
    per_stage, rem = divmod(depth - 2, 9 if bottleneck else 6)
    assert rem == 0, f"invalid pre-activation ResNet depth {depth}"
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    return build_model_with_cfg(PreActResNet, variant, pretrained, block=block, blocks_per_stage=per_stage, **kwargs)


@register_model
def resnet20(pretrained: bool = False, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-20 for CIFAR (SVP's proxy)."""
    return _create("resnet20", pretrained, 20, **kwargs)


@register_model
def resnet56(pretrained: bool = False, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-56 for CIFAR."""
    return _create("resnet56", pretrained, 56, **kwargs)


@register_model
def resnet110(pretrained: bool = False, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-110 for CIFAR."""
    return _create("resnet110", pretrained, 110, **kwargs)


@register_model
def resnet164(pretrained: bool = False, **kwargs: Any) -> PreActResNet:
    """Pre-activation ResNet-164 (bottleneck) for CIFAR (SVP's target)."""
    return _create("resnet164", pretrained, 164, **kwargs)
