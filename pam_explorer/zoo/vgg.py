"""VGG-16 with slim fully connected layers (the paper's modification for CelebA/LFW)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from pam_explorer.core.errors import ConfigError
from pam_explorer.zoo.chain import ChainNet, flat_features
from pam_explorer.zoo.registry import register_model

# Conv widths of VGG-16; "M" marks a 2x2 max pool after the preceding conv.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@register_model("vgg16", "VGG-16 (BN), 13 conv + 2 slim FC layers; width multiplier for tiny tests")
def vgg16(num_outputs: int, in_channels: int = 3, image_size: int = 72, width: float = 1.0,
          fc_width: int = 512, extra_fc: int = 0) -> ChainNet:
    """``width`` scales conv channels; ``fc_width`` is the slim FC width (512 CelebA, 128 LFW).

    ``extra_fc`` appends that many more FC layers fc3, fc4, ... (fc_width units, ReLU), for
    merging networks of different depth (PAM step 3).
    """
    if not isinstance(extra_fc, int) or isinstance(extra_fc, bool) or extra_fc < 0:
        raise ConfigError(f"extra_fc must be an integer >= 0, got {extra_fc!r}")
    blocks: OrderedDict[str, nn.Sequential] = OrderedDict()
    c_in, idx, size = in_channels, 0, image_size
    for item in _VGG16:
        if item == "M":
            if size >= 2:  # small inputs run out of resolution before the fifth pool
                blocks[f"conv{idx}"].append(nn.MaxPool2d(2))
                size //= 2
            continue
        idx += 1
        c_out = max(1, round(int(item) * width))
        blocks[f"conv{idx}"] = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU())
        c_in = c_out
    n_flat = flat_features(blocks, in_channels, image_size)
    blocks["fc1"] = nn.Sequential(nn.Linear(n_flat, fc_width), nn.ReLU())
    blocks["fc2"] = nn.Sequential(nn.Linear(fc_width, fc_width), nn.ReLU())
    for i in range(extra_fc):
        blocks[f"fc{3 + i}"] = nn.Sequential(nn.Linear(fc_width, fc_width), nn.ReLU())
    hparams = {"width": width, "fc_width": fc_width, **({"extra_fc": extra_fc} if extra_fc else {})}
    return ChainNet(blocks, nn.Linear(fc_width, num_outputs), "vgg16", in_channels, image_size, hparams)
