"""The regime map's committed networks (assets/mnist28[-wide]-overlap-K/): their width is the
headroom level the preset names, and their accuracy on the test split is the one their sidecar
records (re-measured here: 2,000 test pictures at 28 px)."""
import pytest

from pam_explorer.core.config import DataConfig
from pam_explorer.data import get_preset, load_preset_data, task_targets
from pam_explorer.data.catalogue import HEADROOM_WIDTHS, OVERLAPS, REGIME_SIZE, overlap_name
from pam_explorer.train.train import binary_accuracy
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained, pretrained_meta

PRESETS = [(overlap_name(k, infix), width) for infix, width in HEADROOM_WIDTHS.items() for k in OVERLAPS]


def test_the_headline_and_the_control_are_committed():
    committed = [name for name, _ in PRESETS if has_pretrained(name, ("A", "B"))]
    assert overlap_name(0, "-wide") in committed and overlap_name(0) in committed


@pytest.mark.parametrize("name,width", PRESETS)
def test_a_committed_regime_network_matches_its_sidecar(name, width):
    preset = get_preset(name)
    if not has_pretrained(name, preset.task_names):
        pytest.skip(f"{name}: not committed (train command in docs/regime_map.md)")
    nets = load_pretrained(name, preset.task_names)
    test = load_preset_data(preset, DataConfig(n_train=8, n_val=8))["test"]  # the test split as trained
    for task, net in zip(preset.task_names, nets):
        meta = pretrained_meta(name, task)
        assert net.hparams["width"] == width and net.image_size == REGIME_SIZE
        assert meta["data"]["n_train"] == 8000 and meta["data"]["image_size"] == REGIME_SIZE
        assert f"--width {width:g}" in meta["command"] and f"--preset {name}" in meta["command"]
        acc = binary_accuracy(net, test.images, task_targets(test.labels, preset, task))
        # two label decisions of 2,000 pictures x 5 labels are 0.02 points: another machine's
        # rounding of a logit near 0 may flip a couple
        assert acc == pytest.approx(meta["test_accuracy"], abs=0.021)
