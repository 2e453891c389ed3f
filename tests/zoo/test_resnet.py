"""ResNet-18/34 in the zoo: torchvision's own networks (reference: torchvision.models), options,
registry kind, and users' torchvision checkpoints (safetensors, .pth with weights_only)."""
import argparse

import pytest
import torch
import torchvision
from safetensors.torch import save_file
from torch import nn
from torch.testing import assert_close

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, StructureError
from pam_explorer.zoo import (
    build_model,
    get_model,
    list_models,
    load_checkpoint,
    load_resnet,
    model_kind,
    save_checkpoint,
)
from tests.helpers import tiny_resnets


def test_registered_as_residual_kind():
    assert list_models(kind="residual") == ["resnet18", "resnet34"]
    assert {"lenet5", "vgg16"} <= set(list_models(kind="chain"))
    assert get_model("resnet34").kind == "residual"
    assert model_kind(build_model("resnet18", 2, 1, 16, width=1 / 16)) == "residual"
    assert model_kind(build_model("lenet5", 2)) == "chain"
    with pytest.raises(StructureError, match="neither a chain"):
        model_kind(nn.Linear(2, 2))


@pytest.mark.parametrize("arch", ["resnet18", "resnet34"])
def test_width_one_is_torchvision(arch):
    """Same state-dict keys and shapes as torchvision's; the same weights give the same logits."""
    ours = build_model(arch, 5, 3, 64).eval()
    theirs = getattr(torchvision.models, arch)(num_classes=5).eval()
    a, b = ours.state_dict(), theirs.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    if arch == "resnet18":  # one forward comparison suffices: the blocks are torchvision's classes
        theirs.load_state_dict(a)
        x = torch.randn(2, 3, 64, 64)
        assert_close(ours(x), theirs(x))


def test_small_stem_and_width_multiplier():
    net = build_model("resnet18", 3, 1, 28, width=1 / 16, small_input=True)
    assert (net.conv1.kernel_size, net.conv1.stride) == ((3, 3), (1, 1))
    assert isinstance(net.maxpool, nn.Identity)
    assert [s[0].conv1.out_channels for s in net.stages()] == [4, 8, 16, 32]
    assert net(torch.zeros(2, 1, 28, 28)).shape == (2, 3)
    assert net.head is net.fc and net.num_outputs == 3
    with pytest.raises(ConfigError, match="width"):
        build_model("resnet18", 3, width=0)
    with pytest.raises(ConfigError, match="small_input"):
        build_model("resnet18", 3, small_input="yes")


def test_checkpoint_round_trip_rebuilds_options(tmp_path):
    net = tiny_resnets(1, arch="resnet34")[0]
    path = save_checkpoint(net, tmp_path / "A.safetensors")
    back = load_checkpoint(path).eval()
    assert back.hparams == {"width": 1 / 16, "small_input": True} and back.arch == "resnet34"
    x = torch.randn(2, 1, 16, 16)
    assert_close(back(x), net(x))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_user_torchvision_state_loads_as_single_task_net(tmp_path, suffix):
    """Architecture, width, stem, channels and outputs are read from the tensors alone."""
    net = tiny_resnets(1, arch="resnet34")[0]
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    path = tmp_path / f"user{suffix}"
    if suffix == ".pth":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)  # a DataParallel checkpoint
    else:
        save_file(state, str(path))
    loaded = load_resnet(path, image_size=16)
    assert (loaded.arch, loaded.num_outputs, loaded.in_channels) == ("resnet34", 2, 1)
    x = torch.randn(2, 1, 16, 16)
    assert_close(loaded(x), net(x))


def test_unsafe_or_foreign_checkpoints_are_refused(tmp_path):
    bad = tmp_path / "bad.pth"  # a pickled object of a class weights_only=True refuses to rebuild
    torch.save({"conv1.weight": argparse.Namespace(code="anything")}, bad)
    with pytest.raises(CheckpointMismatch, match="weights_only"):
        load_resnet(bad)
    state = tiny_resnets(1)[0].state_dict()
    partial = {k: v for k, v in state.items() if not k.startswith("layer4.1.")}
    save_file({k: v.contiguous() for k, v in partial.items()}, str(tmp_path / "p.safetensors"))
    with pytest.raises(CheckpointMismatch, match="blocks per stage"):
        load_resnet(tmp_path / "p.safetensors")
    with pytest.raises(CheckpointMismatch, match="not a torchvision ResNet"):
        save_file({"x": torch.zeros(1)}, str(tmp_path / "x.safetensors"))
        load_resnet(tmp_path / "x.safetensors")
