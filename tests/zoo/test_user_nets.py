"""A user's network files (pam_explorer.zoo.user_nets) and a project's networks
(pam_explorer.graph.networks): plain state_dicts and safetensors load with their options read
off the shapes, and every bad network is one line naming the file and the tensor or key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save, save_file

from pam_explorer.core.errors import CheckpointMismatch, ConfigError, DataError, DataMissing, StructureError
from pam_explorer.data import read_project
from pam_explorer.graph.networks import project_networks
from pam_explorer.zoo import build_model, save_checkpoint
from pam_explorer.zoo.user_nets import infer_options, network_from_state, networks_from_uploads
from tests.project_fixture import TOML, make_project, write_toml

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def outputs_equal(a: torch.nn.Module, b: torch.nn.Module, channels: int, size: int) -> bool:
    x = torch.rand(3, channels, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        # computed floats: equal to rounding (a wrong weight moves them by far more than 1e-5)
        return torch.allclose(a.eval()(x), b.eval()(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch,options,channels,size", [
    ("resnet18", {"width": 0.125, "small_input": True}, 1, 56),
    ("resnet18", {"width": 0.0625, "small_input": False}, 3, 64),
    ("lenet5", {"width": 0.3}, 1, 32),
    ("lenet5", {"width": 0.5, "extra_fc": 1}, 3, 32),
    ("vgg16", {"width": 0.0625, "fc_width": 24}, 3, 32),
])
def test_options_are_read_off_the_shapes(arch, options, channels, size):
    torch.manual_seed(0)
    net = build_model(arch, 4, channels, size, **options)
    state = net.state_dict()
    inferred = infer_options(arch, state, {}, 4, channels, size)
    assert build_model(arch, 4, channels, size, **inferred).hparams == net.hparams
    loaded = network_from_state(state, None, arch=arch, options={}, num_outputs=4, in_channels=channels,
                                image_size=size, where="w")
    assert outputs_equal(net, loaded, channels, size)


def test_committed_resnet18_uploads_as_resnet18_with_its_width_and_stem():
    """Issue 26 item 2: assets/mnist-2task/resnet18 (width 1/8, small-input stem) as an upload."""
    d = ASSETS / "mnist-2task" / "resnet18"
    files = {t: (f"{t}.safetensors", (d / f"{t}.safetensors").read_bytes()) for t in "AB"}
    nets = networks_from_uploads("resnet18", files, {"A": 5, "B": 5}, 1, 56)
    side = json.loads((d / "A.json").read_text())
    assert nets[0].hparams == side["hparams"] == {"width": 0.125, "small_input": True}
    from pam_explorer.zoo.checkpoint import load_checkpoint
    assert outputs_equal(nets[1], load_checkpoint(d / "B.safetensors"), 1, 56)


def test_plain_pth_state_dict_in_a_project(tmp_path):
    f = make_project(tmp_path / "p", nets=True)
    torch.manual_seed(5)
    resnets = {t: build_model("resnet18", 5, 1, 56, width=0.0625, small_input=True) for t in "AB"}
    for t, net in resnets.items():
        torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
                   f.parent / f"{t}.pth")  # a DataParallel checkpoint
    toml = TOML.replace('arch = "lenet5"\nwidth = 0.1', 'arch = "resnet18"')
    write_toml(f.parent, toml.replace("[tasks.A]", '[tasks.A]\nnet = "A.pth"')
               .replace("[tasks.B]", '[tasks.B]\nnet = "B.pth"'))
    nets = project_networks(read_project(f))
    assert [n.hparams for n in nets] == [{"width": 0.0625, "small_input": True}] * 2
    assert all(outputs_equal(resnets[t], n, 1, 56) for t, n in zip("AB", nets))


def raises(exc_type, fn, *needles):
    with pytest.raises(exc_type) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message, message
    for n in needles:
        assert n in message, (n, message)


def project_with(tmp_path, edit_toml=None):
    f = make_project(tmp_path / "p", nets=True)
    if edit_toml:
        write_toml(f.parent, edit_toml(TOML))
    return f


def test_head_that_does_not_match_the_labels(tmp_path):
    f = project_with(tmp_path)
    save_checkpoint(build_model("lenet5", 4, 1, 56, width=0.1), f.parent / "nets" / "B.safetensors")
    raises(CheckpointMismatch, lambda: project_networks(read_project(f)),
           "pam.toml: tasks.B.net (nets/B.safetensors)", "head (head.weight) has 4 outputs", "5 label(s)")


def test_layer_shapes_that_do_not_fit_the_arch(tmp_path):
    f = project_with(tmp_path)
    state = build_model("lenet5", 5, 1, 56, width=0.1).state_dict()
    state["blocks.conv2.0.weight"] = torch.zeros(2, 1, 3, 3)
    save_file(state, f.parent / "plain.safetensors")
    f = project_with(tmp_path, lambda t: t.replace("[tasks.A]", '[tasks.A]\nnet = "plain.safetensors"')
                     .replace("width = 0.1", "", 1))
    raises(CheckpointMismatch, lambda: project_networks(read_project(f)),
           "tasks.A.net (plain.safetensors)", "'blocks.conv2.0.weight'", "(2, 1, 3, 3)")


def test_nan_weights(tmp_path):
    f = project_with(tmp_path)
    net = build_model("lenet5", 5, 1, 56, width=0.1)
    with torch.no_grad():
        net.head.bias[2] = float("nan")
    save_checkpoint(net, f.parent / "nets" / "A.safetensors")
    raises(DataError, lambda: project_networks(read_project(f)), "tasks.A.net (nets/A.safetensors)",
           "'head.bias'", "1 NaN")


def test_missing_network_says_how_to_create_it(tmp_path):
    f = make_project(tmp_path / "p")  # no networks
    raises(DataMissing, lambda: project_networks(read_project(f)), "task A has no network",
           f"python -m pam_explorer train --project {f}")
    write_toml(f.parent, TOML.replace("[tasks.A]", '[tasks.A]\nnet = "mine.pth"'))
    raises(DataMissing, lambda: project_networks(read_project(f)), "tasks.A.net = 'mine.pth'",
           "does not exist")


def test_arch_clash_unknown_option_and_mixed_architectures(tmp_path):
    f = project_with(tmp_path, lambda t: t.replace('arch = "lenet5"', 'arch = "vgg16"', 1))
    raises(CheckpointMismatch, lambda: project_networks(read_project(f)), "tasks.A.net",
           "arch is 'vgg16', but the file's sidecar describes a lenet5 network")
    f = project_with(tmp_path, lambda t: t.replace("width = 0.1", "width = 0.1\ndepth = 3", 1))
    raises(ConfigError, lambda: project_networks(read_project(f)), "tasks.A.net",
           "lenet5 has no option 'depth'")
    f = project_with(tmp_path, lambda t: t.rsplit('arch = "lenet5"', 1)[0])  # B: arch from its sidecar
    save_checkpoint(build_model("resnet18", 5, 1, 56, width=0.0625, small_input=True),
                    f.parent / "nets" / "B.safetensors")
    raises(StructureError, lambda: project_networks(read_project(f)), "different architectures",
           "A: lenet5, B: resnet18")


def test_safetensors_header_metadata_names_the_arch():
    net = build_model("lenet5", 5, 1, 32, width=0.5)
    raw = save(net.state_dict(), metadata={"arch": "lenet5", "hparams": json.dumps({"width": 0.5})})
    (loaded,) = networks_from_uploads("lenet5", {"A": ("A.safetensors", raw)}, {"A": 5}, 1, 32)
    assert outputs_equal(net, loaded, 1, 32)
    upload = {"A": ("A.safetensors", raw)}
    raises(CheckpointMismatch, lambda: networks_from_uploads("vgg16", upload, {"A": 5}, 1, 32),
           "task A (A.safetensors)", "sidecar describes a lenet5 network")
