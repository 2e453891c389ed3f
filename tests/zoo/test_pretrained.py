import pytest

from pam_explorer.core.config import DataConfig
from pam_explorer.data import get_preset, load_preset_data, task_targets
from pam_explorer.train.train import binary_accuracy
from pam_explorer.zoo.pretrained import load_pretrained, pretrained_meta


@pytest.mark.parametrize("preset_name", ["digits-2task", "digits-5task"])
def test_committed_networks_reach_their_recorded_accuracy(preset_name):
    preset = get_preset(preset_name)
    nets = load_pretrained(preset.name, preset.task_names)
    test = load_preset_data(preset, DataConfig())["test"]
    for task, net in zip(preset.task_names, nets):
        meta = pretrained_meta(preset.name, task)
        acc = binary_accuracy(net, test.images, task_targets(test.labels, preset, task))
        assert acc == pytest.approx(meta["test_accuracy"], abs=0.01)
        assert acc > 94.0


def test_missing_assets_say_how_to_create_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m pam_explorer train --preset digits-2task"):
        load_pretrained("digits-2task", ("A", "B"), root=tmp_path)
