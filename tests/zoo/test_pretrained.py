"""The committed networks under assets/: their recorded accuracy, the per-architecture layout
(assets/<preset>/ for LeNet-5, assets/<preset>/<arch>/ otherwise) and the error that says how to
create missing ones."""
import pytest

from pam_explorer.core.config import DataConfig
from pam_explorer.core.errors import CheckpointMismatch, DataMissing
from pam_explorer.data import get_preset, load_preset_data, task_targets
from pam_explorer.train.train import binary_accuracy
from pam_explorer.zoo import build_model, save_checkpoint
from pam_explorer.zoo.pretrained import asset_dir, has_pretrained, load_pretrained, pretrained_meta


@pytest.mark.parametrize("preset_name", ["digits-2task", "digits-5task", "mnist-2task"])
def test_committed_networks_reach_their_recorded_accuracy(preset_name):
    """The full test split (2,000 pictures), as recorded by the train command."""
    preset = get_preset(preset_name)
    nets = load_pretrained(preset.name, preset.task_names)
    test = load_preset_data(preset, DataConfig())["test"]
    for task, net in zip(preset.task_names, nets):
        meta = pretrained_meta(preset.name, task)
        acc = binary_accuracy(net, test.images, task_targets(test.labels, preset, task))
        # recorded on another machine, where a logit within rounding of 0 may have had the other
        # sign: allow two label decisions of 2,000 pictures x 2 labels (0.025 points each)
        assert acc == pytest.approx(meta["test_accuracy"], abs=0.051)
        assert acc > 94.0
        assert net.image_size == preset.image_size


def test_committed_resnets_load_and_keep_their_accuracy():
    """The ResNet-18s of mnist-2task (assets/mnist-2task/resnet18/): width 1/8, small-input stem,
    each file under 5 MB; net A re-measured on the first 500 test pictures (the full split, as
    recorded, takes half a minute on a busy 2-core CPU)."""
    preset = get_preset("mnist-2task")
    nets = load_pretrained(preset.name, preset.task_names, "resnet18")
    for task, net in zip(preset.task_names, nets):
        meta = pretrained_meta(preset.name, task, "resnet18")
        assert net.arch == "resnet18" and net.hparams == {"width": 0.125, "small_input": True}
        assert meta["command"].endswith("--width 0.125 --small-input") and meta["test_accuracy"] > 98.0
        assert (asset_dir(preset.name, "resnet18") / f"{task}.safetensors").stat().st_size <= 5_000_000
    test = load_preset_data(preset, DataConfig())["test"]
    acc = binary_accuracy(nets[0], test.images[:500], task_targets(test.labels[:500], preset, "A"))
    assert acc == pytest.approx(pretrained_meta(preset.name, "A", "resnet18")["test_accuracy"], abs=1.0)


def test_missing_assets_say_how_to_create_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pam_explorer train --preset digits-2task$"):
        load_pretrained("digits-2task", ("A", "B"), root=tmp_path)
    with pytest.raises(DataMissing, match="train --preset mnist-2task --arch vgg16") as err:
        load_pretrained("mnist-2task", ("A", "B"), arch="vgg16", root=tmp_path)
    assert str(tmp_path / "mnist-2task" / "vgg16") in str(err.value)


def test_another_architecture_lives_in_its_own_folder(tmp_path):
    lenet = build_model("lenet5", 5, 1, 32)
    vgg = build_model("vgg16", 5, 1, 32, width=0.0625, fc_width=8)
    assert asset_dir("p", root=tmp_path) == asset_dir("p", "lenet5", tmp_path) == tmp_path / "p"
    for t in ("A", "B"):
        save_checkpoint(lenet, asset_dir("p", root=tmp_path) / f"{t}.safetensors")
        save_checkpoint(vgg, asset_dir("p", "vgg16", tmp_path) / f"{t}.safetensors")
    assert has_pretrained("p", ("A", "B"), "vgg16", tmp_path)
    assert not has_pretrained("p", ("A",), "resnet18", tmp_path)
    assert [n.arch for n in load_pretrained("p", ("A", "B"), root=tmp_path)] == ["lenet5", "lenet5"]
    assert [n.arch for n in load_pretrained("p", ("A", "B"), "lenet5", tmp_path)] == ["lenet5", "lenet5"]
    nets = load_pretrained("p", ("A", "B"), "vgg16", tmp_path)
    assert [n.arch for n in nets] == ["vgg16", "vgg16"] and not nets[0].training
    # a folder whose sidecar names another architecture is refused, not silently used
    save_checkpoint(vgg, asset_dir("q", root=tmp_path) / "A.safetensors")
    with pytest.raises(CheckpointMismatch, match="vgg16 network, not lenet5"):
        load_pretrained("q", ("A",), root=tmp_path)
