"""Trajectories shipped beside the committed networks (assets/<preset>/trajectories/<key>.json):
read on a cache miss, checked like a cache entry, current for every committed preset."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from pam_explorer.core.config import DataConfig, MIConfig
from pam_explorer.data import get_preset, list_presets
from pam_explorer.regroup import trajectories as trj
from pam_explorer.zoo import build_model, list_models
from pam_explorer.zoo.pretrained import has_pretrained, load_pretrained

DATA = DataConfig(n_train=300, n_val=50, n_test=50)
MI = MIConfig(n_samples=32, null_perms=2)


def test_every_committed_preset_ships_its_default_trajectories():
    """Fails when the networks or the estimator changed without `python scripts/ship_trajectories.py`
    (a first visit would then compute for minutes)."""
    committed = [(p, arch) for p in list_presets() for arch in list_models()
                 if has_pretrained(p, get_preset(p).task_names, arch)]
    assert ("digits-2task", "lenet5") in committed and ("mnist-2task", "resnet18") in committed
    for name, arch in committed:
        preset = get_preset(name)
        key = trj.cache_key(preset, load_pretrained(name, preset.task_names, arch))
        assert trj.shipped_path(name, key).is_file(), (
            f"{name} ({arch}): no shipped trajectories for the current key; run "
            f"python scripts/ship_trajectories.py --preset {name} --arch {arch}")


def test_a_cold_cache_reads_the_shipped_file_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))
    preset = get_preset("digits-2task")
    nets = load_pretrained(preset.name, preset.task_names)
    out = trj.compute_trajectories(preset, nets)  # the default MI settings, the cache root from the env
    assert out.cache_hit and not (tmp_path / "cache").exists()
    shipped = json.loads(trj.shipped_path(preset.name, trj.cache_key(preset, nets)).read_text())
    assert out.trajectories == trj.from_json(shipped, preset.task_names, out.widths)


def test_a_bad_shipped_file_is_recomputed_and_a_good_one_is_used(tmp_path, monkeypatch):
    """Tiny networks under a temporary assets root: a garbage file under their key is ignored
    (computed instead, with a warning), the computed trajectories written there are then read."""
    monkeypatch.setenv("PAM_ASSETS_ROOT", str(tmp_path / "assets"))
    preset = get_preset("digits-2task")
    torch.manual_seed(0)
    nets = [build_model("lenet5", 5, 1, 32, width=0.25) for _ in range(2)]
    path = trj.shipped_path(preset.name, trj.cache_key(preset, nets, DATA, MI))
    path.parent.mkdir(parents=True)
    path.write_text('{"format": "something else"}')
    computed = trj.compute_trajectories(preset, nets, DATA, MI, tmp_path / "cache")
    assert not computed.cache_hit
    path.write_text(json.dumps(trj.to_json(computed.trajectories)))
    shutil.rmtree(tmp_path / "cache")
    again = trj.compute_trajectories(preset, nets, DATA, MI, tmp_path / "cache")
    assert again.cache_hit and again.trajectories == computed.trajectories
    other = trj.compute_trajectories(preset, nets, DATA, MIConfig(n_samples=24, null_perms=2), None)
    assert not other.cache_hit  # another key: the shipped file is not read


@pytest.mark.parametrize("name", ["digits-2task"])
def test_the_ship_script_check_passes(name, capsys, monkeypatch):
    import runpy
    import sys
    from pathlib import Path
    script = Path(__file__).resolve().parents[2] / "scripts" / "ship_trajectories.py"
    monkeypatch.setattr(sys, "argv", [str(script), "--preset", name, "--check"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(script), run_name="__main__")
    assert done.value.code == 0 and "ok" in capsys.readouterr().out


def test_the_key_names_only_what_the_trajectories_depend_on():
    """A preset's default alpha, name or description does not change its trajectories' key (the
    shipped files stay valid); its label columns and the MI settings do."""
    import dataclasses
    preset = get_preset("digits-2task")
    nets = load_pretrained(preset.name, preset.task_names)
    key = trj.cache_key(preset, nets, DATA, MI)
    same = dataclasses.replace(preset, default_alpha=0.7, name="renamed", description="other words")
    assert trj.cache_key(same, nets, DATA, MI) == key
    other_labels = dataclasses.replace(preset, task_labels=(preset.task_labels[1], preset.task_labels[0]))
    assert trj.cache_key(other_labels, nets, DATA, MI) != key
    assert trj.cache_key(preset, nets, DATA, dataclasses.replace(MI, seed=1)) != key
    assert trj.cache_key(preset, nets, dataclasses.replace(DATA, n_train=301), MI) != key
