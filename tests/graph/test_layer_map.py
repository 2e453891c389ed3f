
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.zoo import build_model


def test_lenet_layer_map():
    info = layer_map(build_model("lenet5", 5))
    assert [(l.name, l.kind, l.width, l.out_hw) for l in info] == [
        ("conv1", "conv", 6, (14, 14)), ("conv2", "conv", 16, (5, 5)),
        ("fc1", "fc", 120, None), ("fc2", "fc", 84, None)]
    assert info[0].followers == ("ReLU", "MaxPool2d")
    assert info[2].followers == ("ReLU",)


def test_tiny_vgg_layer_map():
    model = build_model("vgg16", 4, 3, 32, width=0.0625, fc_width=16)
    info = layer_map(model)
    assert len(info) == 15
    assert [l.width for l in info[:13]] == [4, 4, 8, 8, 16, 16, 16, 32, 32, 32, 32, 32, 32]
    assert info[0].out_hw == (32, 32) and info[1].out_hw == (16, 16) and info[12].out_hw == (1, 1)
    assert info[0].followers == ("BatchNorm2d", "ReLU")
    assert info[1].followers == ("BatchNorm2d", "ReLU", "MaxPool2d")
    assert [l.index for l in info] == list(range(15))
    assert model.training  # mapping must not leave the model in eval mode
