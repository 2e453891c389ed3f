import pytest
import torch

from pam_explorer.zoo import (
    CheckpointMismatch,
    build_model,
    get_model,
    list_models,
    load_checkpoint,
    save_checkpoint,
)
from pam_explorer.zoo.checkpoint import load_state_into


def test_registry_lists_models_and_rejects_unknown():
    assert {"lenet5", "vgg16"} <= set(list_models())
    with pytest.raises(ValueError, match="registered models"):
        get_model("alexnet")


@pytest.mark.parametrize("name,kw,c,size", [
    ("lenet5", {}, 1, 32),
    ("lenet5", {"width": 0.5}, 1, 32),
    ("vgg16", {"width": 0.0625, "fc_width": 16}, 3, 32),
    ("vgg16", {"width": 0.0625, "fc_width": 8}, 3, 72),
])
def test_forward_shapes(name, kw, c, size):
    model = build_model(name, 7, c, size, **kw)
    assert model(torch.zeros(3, c, size, size)).shape == (3, 7)


def test_lenet_classic_widths_and_params():
    model = build_model("lenet5", 5)
    widths = [b[0].out_channels if hasattr(b[0], "out_channels") else b[0].out_features
              for b in model.blocks.values()]
    assert widths == [6, 16, 120, 84]
    # conv1 156 + conv2 2416 + fc1 48120 + fc2 10164 + head 425
    assert sum(p.numel() for p in model.parameters()) == 156 + 2416 + 48120 + 10164 + 425


def test_vgg_has_thirteen_convs_and_two_slim_fc():
    model = build_model("vgg16", 4, 3, 32, width=0.0625, fc_width=16)
    names = list(model.blocks)
    assert names == [f"conv{i}" for i in range(1, 14)] + ["fc1", "fc2"]
    assert model.blocks["fc1"][0].out_features == 16


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("lenet5", 5).eval()
    path = save_checkpoint(model, tmp_path / "a.safetensors", {"preset": "x", "accuracy": 91.0})
    again = load_checkpoint(path).eval()
    x = torch.randn(4, 1, 32, 32)
    torch.testing.assert_close(again(x), model(x), rtol=0, atol=0)


def test_checkpoint_mismatch_names_the_tensor(tmp_path):
    path = save_checkpoint(build_model("lenet5", 5), tmp_path / "a.safetensors")
    with pytest.raises(CheckpointMismatch, match=r"head\.weight.*\(5, 84\).*\(3, 84\)"):
        load_checkpoint(path, build_model("lenet5", 3))
    with pytest.raises(CheckpointMismatch, match="lacks tensor"):
        load_state_into(build_model("lenet5", 5), {"head.weight": torch.zeros(5, 84)})


def test_non_safetensors_file_is_refused_without_unpickling(tmp_path):
    bad = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, bad)  # a pickle, not safetensors
    with pytest.raises(CheckpointMismatch, match="not a safetensors checkpoint"):
        load_checkpoint(bad, build_model("lenet5", 5))
