"""ResNet-18/34: torchvision's own ResNet with BasicBlocks, a width multiplier and a small-input stem.

The networks are :class:`torchvision.models.ResNet` instances built by torchvision's own
``_make_layer`` and ``BasicBlock``, so the state-dict keys are torchvision's (``conv1``, ``bn1``,
``layer1.0.conv1``, ..., ``fc``) and a user's torchvision checkpoint loads unchanged
(:func:`load_resnet`: safetensors, or a ``.pth`` through ``torch.load(weights_only=True)``).
Two options torchvision does not have: ``width`` scales the stage widths 64/128/256/512 (tiny
nets for tests), and ``small_input`` replaces the 7x7/2 stem and its max pool by a 3x3/1 conv
without pooling, for 28-64 px inputs (the CIFAR-style stem).

Shapes: (N, C_in, H, W) images -> (N, num_outputs) logits, for any H, W >= 1 (adaptive pooling).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, DataMissing
from pam_explorer.zoo.checkpoint import load_state_into, read_state
from pam_explorer.zoo.registry import register_model

STAGE_WIDTHS = (64, 128, 256, 512)  # torchvision's planes per stage at width 1
DEPTHS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}  # BasicBlocks per stage


class ResidualNet(ResNet):
    """A torchvision ResNet (BasicBlock) that also records how to rebuild it.

    arch, in_channels, image_size and hparams ({"width", "small_input"}) are what checkpoints
    store (:mod:`pam_explorer.zoo.checkpoint`); ``head`` is torchvision's ``fc``.
    """

    kind = "residual"

    def __init__(self, arch: str, num_outputs: int, in_channels: int, image_size: int, width: float,
                 small_input: bool) -> None:
        # nn.Module.__init__ only: ResNet.__init__ would first build (and initialise) the full
        # 64-wide net; the attributes below are the ones torchvision's _make_layer reads
        nn.Module.__init__(self)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        planes = [max(1, round(c * width)) for c in STAGE_WIDTHS]
        self.inplanes = planes[0]
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, planes[0], kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        depths = DEPTHS[arch]
        self.layer1 = self._make_layer(BasicBlock, planes[0], depths[0])
        self.layer2 = self._make_layer(BasicBlock, planes[1], depths[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, planes[2], depths[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, planes[3], depths[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3], num_outputs)
        _init_like_torchvision(self)
        self.arch, self.in_channels, self.image_size = arch, in_channels, image_size
        self.hparams = {"width": width, "small_input": small_input}

    @property
    def head(self) -> nn.Linear:
        return self.fc

    @property
    def num_outputs(self) -> int:
        return self.fc.out_features

    def stages(self) -> list[nn.Sequential]:
        """layer1..layer4, each an nn.Sequential of BasicBlocks."""
        return [self.layer1, self.layer2, self.layer3, self.layer4]


def _init_like_torchvision(net: nn.Module) -> None:
    """torchvision's ResNet initialisation: Kaiming (fan_out) convs, BN weight 1 and bias 0."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


def _build(arch: str, num_outputs: int, in_channels: int, image_size: int, width: float,
           small_input: bool) -> ResidualNet:
    if not isinstance(width, (int, float)) or isinstance(width, bool) or not 0 < width <= 4:
        raise ConfigError(f"{arch}: width must be a number in (0, 4], got {width!r}")
    if not isinstance(small_input, bool):
        raise ConfigError(f"{arch}: small_input must be True or False, got {small_input!r}")
    return ResidualNet(arch, num_outputs, in_channels, image_size, float(width), small_input)


@register_model("resnet18", "ResNet-18 (torchvision, BasicBlock 2-2-2-2); width multiplier, "
                "small-input stem", kind="residual")
def resnet18(num_outputs: int, in_channels: int = 3, image_size: int = 64, width: float = 1.0,
             small_input: bool = False) -> ResidualNet:
    """torchvision's resnet18 with ``num_outputs`` logits; see the module docstring for options."""
    return _build("resnet18", num_outputs, in_channels, image_size, width, small_input)


@register_model("resnet34", "ResNet-34 (torchvision, BasicBlock 3-4-6-3); width multiplier, "
                "small-input stem", kind="residual")
def resnet34(num_outputs: int, in_channels: int = 3, image_size: int = 64, width: float = 1.0,
             small_input: bool = False) -> ResidualNet:
    """torchvision's resnet34 with ``num_outputs`` logits; see the module docstring for options."""
    return _build("resnet34", num_outputs, in_channels, image_size, width, small_input)


# --------------------------------------------------------------------------- user checkpoints
def read_torchvision_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or, only through torch.load(weights_only=True), ``.pth``/``.pt``."""
    path = Path(path)
    if path.suffix not in (".pth", ".pt"):
        return read_state(path)
    if not path.is_file():
        raise DataMissing(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or unsafe pickle is the user's file
        raise CheckpointMismatch(f"{path.name} could not be read with torch.load(weights_only=True) "
                                 f"({exc}); save the weights as safetensors instead") from exc
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointMismatch(f"{path.name} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel checkpoints


def resnet_from_state(state: Mapping[str, torch.Tensor], image_size: int, source: str = "checkpoint"
                      ) -> ResidualNet:
    """The single-task ResidualNet a torchvision-format state dict describes (eval mode).

    Architecture (18 or 34 blocks), width, stem, input channels and outputs are read from the
    tensor shapes; every tensor is then checked by name and shape. Raises CheckpointMismatch.
    """
    if "conv1.weight" not in state or "fc.weight" not in state:
        raise CheckpointMismatch(f"{source} is not a torchvision ResNet state dict (no conv1.weight or "
                                 "fc.weight)")
    blocks = tuple(len({k.split(".")[1] for k in state if k.startswith(f"layer{s}.")}) for s in range(1, 5))
    arch = next((a for a, d in DEPTHS.items() if d == blocks), None)
    if arch is None:
        raise CheckpointMismatch(f"{source} has {list(blocks)} blocks per stage; supported: "
                                 f"{ {a: list(d) for a, d in DEPTHS.items()} }")
    stem = state["conv1.weight"]  # (C0, C_in, k, k)
    net = _build(arch, int(state["fc.weight"].shape[0]), int(stem.shape[1]), image_size,
                 stem.shape[0] / STAGE_WIDTHS[0], stem.shape[-1] == 3)
    return load_state_into(net, dict(state), source=source).eval()


def load_resnet(path: str | Path, image_size: int = 64) -> ResidualNet:
    """A user's torchvision-format ResNet-18/34 checkpoint as a single-task network (eval mode)."""
    return resnet_from_state(read_torchvision_state(path), image_size, source=Path(path).name)


def resnet_blocks(net: ResidualNet) -> Sequence[tuple[str, BasicBlock]]:
    """("layer{s}.{b}", block) of every BasicBlock in forward order."""
    return [(f"layer{s}.{b}", blk) for s, stage in enumerate(net.stages(), 1) for b, blk in enumerate(stage)]


__all__ = ["ResidualNet", "resnet18", "resnet34", "load_resnet", "resnet_from_state",
           "read_torchvision_state", "resnet_blocks", "STAGE_WIDTHS", "DEPTHS"]
