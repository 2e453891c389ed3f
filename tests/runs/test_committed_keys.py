"""The committed results (results/regime_map, results/headroom) are what the current code computes:
every committed stage record carries the key that its folder's configuration gives today. A change
of a default that enters a stage key (a schedule, the rank, the MI settings) fails here, so the
committed map and headroom figures are never silently stale: rerun scripts/regime_map.py and
scripts/headroom_records.py, or keep the old key for the old setting."""
from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from pam_explorer.core.paths import results_root
from pam_explorer.data import get_preset
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.regroup.trajectories import weights_hash
from pam_explorer.runs.experiment_config import ExperimentConfig
from pam_explorer.runs.stage_run import RECORD_META, stage_key_of
from pam_explorer.zoo.pretrained import load_pretrained


def _folders() -> list[Path]:
    return sorted(p.parent for p in results_root().glob("*/*/config.json") if (p.parent / "stages").is_dir())


def test_there_are_committed_results():
    names = {f.parent.name for f in _folders()}
    assert {"regime_map", "headroom"} <= names, names


@pytest.mark.parametrize("folder", _folders(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_record_has_the_key_of_its_configuration_today(folder):
    cfg = ExperimentConfig.from_dict(json.loads((folder / "config.json").read_text()))
    spec = get_preset(cfg.preset)
    nets = load_pretrained(cfg.preset, tuple(spec.task_names))
    ctx = types.SimpleNamespace(preset=spec, weights=weights_hash(nets))  # what stage_key_of reads
    layers = tuple((info.name, info.kind) for info in layer_map(nets[0]))
    checked = 0
    for seed in cfg.seeds:
        for name in cfg.schemes:
            path = folder / "stages" / f"{name}_s{seed}.json"
            if not path.is_file():
                continue
            record = json.loads(path.read_text())
            # the floor's reference (the originals' validation accuracy) is the record's own
            ref = record["reference_val_accuracy"] if cfg.floor == "original" else None
            key = stage_key_of(ctx, seed, cfg.quick, name, cfg.scheme_settings(seed, ref, layers))
            assert record[RECORD_META]["key"] == key, f"{path}: computed with other settings than today's"
            checked += 1
    assert checked >= 1, folder
