"""LeNet-5 (the paper's single-task network for the Fashion-MNIST tasks)."""
from __future__ import annotations

from collections import OrderedDict

from torch import nn

from pam_explorer.core.errors import ConfigError
from pam_explorer.zoo.chain import ChainNet, flat_features
from pam_explorer.zoo.registry import register_model


@register_model("lenet5", "LeNet-5: conv 6-16 (5x5, max-pool), FC 120-84, linear head")
def lenet5(num_outputs: int, in_channels: int = 1, image_size: int = 32, width: float = 1.0,
           extra_fc: int = 0) -> ChainNet:
    """LeNet-5; ``width`` scales every hidden layer (1.0 = the classic 6/16/120/84).

    ``extra_fc`` appends that many more FC layers fc3, fc4, ... (84 * width units, ReLU): the
    same family one layer deeper each, for merging networks of different depth (PAM step 3).
    """
    if not isinstance(extra_fc, int) or isinstance(extra_fc, bool) or extra_fc < 0:
        raise ConfigError(f"extra_fc must be an integer >= 0, got {extra_fc!r}")
    c1, c2, f1, f2 = (max(1, round(w * width)) for w in (6, 16, 120, 84))
    convs: OrderedDict[str, nn.Sequential] = OrderedDict(
        conv1=nn.Sequential(nn.Conv2d(in_channels, c1, 5), nn.ReLU(), nn.MaxPool2d(2)),
        conv2=nn.Sequential(nn.Conv2d(c1, c2, 5), nn.ReLU(), nn.MaxPool2d(2)),
    )
    n_flat = flat_features(convs, in_channels, image_size)
    blocks = OrderedDict(convs)
    blocks["fc1"] = nn.Sequential(nn.Linear(n_flat, f1), nn.ReLU())
    blocks["fc2"] = nn.Sequential(nn.Linear(f1, f2), nn.ReLU())
    for i in range(extra_fc):
        blocks[f"fc{3 + i}"] = nn.Sequential(nn.Linear(f2, f2), nn.ReLU())
    # extra_fc only when used, so sidecars of the classic net stay as they were
    hparams = {"width": width, **({"extra_fc": extra_fc} if extra_fc else {})}
    return ChainNet(blocks, nn.Linear(f2, num_outputs), "lenet5", in_channels, image_size, hparams)
