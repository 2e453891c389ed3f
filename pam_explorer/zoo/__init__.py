"""Stage 1, model zoo: a registry of single-task architectures (LeNet-5, VGG-16 slim, ResNet-18/34),
safe checkpoints (safetensors + JSON sidecar) and the committed pre-trained networks.

Every registered model is a :class:`~pam_explorer.zoo.chain.ChainNet` (kind "chain") or a
:class:`~pam_explorer.zoo.resnet.ResidualNet` (kind "residual", torchvision's ResNet), so the
layer map, activation capture and merging can read its structure (:func:`model_kind`).
"""
from pam_explorer.zoo import lenet as _lenet  # noqa: F401  (registers "lenet5")
from pam_explorer.zoo import resnet as _resnet  # noqa: F401  (registers "resnet18", "resnet34")
from pam_explorer.zoo import vgg as _vgg  # noqa: F401  (registers "vgg16")
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    nets_from_uploads,
    save_checkpoint,
)
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained, pretrained_meta
from pam_explorer.zoo.registry import (
    ModelSpec,
    build_model,
    get_model,
    list_models,
    model_kind,
    register_model,
)
from pam_explorer.zoo.resnet import ResidualNet, load_resnet

__all__ = [
    "ModelSpec", "ChainNet", "ResidualNet", "get_model", "list_models", "register_model", "build_model",
    "model_kind", "load_resnet",
    "CheckpointMismatch", "load_checkpoint", "save_checkpoint", "nets_from_uploads",
    "has_pretrained", "load_pretrained", "pretrained_meta",
]
