import pytest
import torch

from pam_explorer.graph.activations import capture_activations, pool_channels
from pam_explorer.zoo import build_model


def test_pooling_values_on_hand_made_map():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]], [[-1.0, 0.0], [0.0, 5.0]]]])  # (1, 2, 2, 2)
    torch.testing.assert_close(pool_channels(x, "max"), torch.tensor([[6.0, 5.0]]))
    torch.testing.assert_close(pool_channels(x, "mean"), torch.tensor([[3.0, 1.0]]))
    with pytest.raises(ValueError, match="pooling"):
        pool_channels(x, "median")


def test_capture_shapes_batches_and_matches_manual_forward():
    torch.manual_seed(0)
    model = build_model("lenet5", 5)
    images = torch.randn(11, 1, 32, 32)
    acts = capture_activations(model, images, pooling="max", batch_size=4)
    assert {k: tuple(v.shape) for k, v in acts.items()} == {
        "conv1": (11, 6), "conv2": (11, 16), "fc1": (11, 120), "fc2": (11, 84)}
    with torch.no_grad():
        c1 = model.blocks["conv1"](images)
        c2 = model.blocks["conv2"](c1)
        f1 = model.blocks["fc1"](c2.flatten(1))
    torch.testing.assert_close(acts["conv1"], c1.amax(dim=(2, 3)))
    torch.testing.assert_close(acts["conv2"], c2.amax(dim=(2, 3)))
    torch.testing.assert_close(acts["fc1"], f1)
    mean = capture_activations(model, images, pooling="mean", batch_size=5)
    torch.testing.assert_close(mean["conv2"], c2.mean(dim=(2, 3)))


def test_capture_uses_eval_mode_and_restores_training():
    # In eval mode BatchNorm uses running stats, so the batch size cannot change the result.
    model = build_model("vgg16", 3, 3, 32, width=0.0625, fc_width=8)
    model.train()
    images = torch.randn(6, 3, 32, 32)
    a = capture_activations(model, images, batch_size=2)
    b = capture_activations(model, images, batch_size=6)
    assert model.training
    assert a["conv1"].shape == (6, 4) and b["fc2"].shape == (6, 8)
    for name in a:
        torch.testing.assert_close(a[name], b[name])
