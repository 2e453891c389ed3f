"""The README's python block runs as written (issue 14, point 15), on a cold cache (the
trajectories it promises are the shipped ones), in a temporary folder (it writes merged.zip).

For speed the data loader gives the experiment's quick sizes (600 / 300 / 300 pictures, the same
seed and composition) and a pruning step finetunes on 5 minibatches instead of 40; every line of
the block runs unchanged. References: the merged
network before pruning (pruning never adds FLOPs) and the exported archive loaded back (the same
costs, the same outputs).
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

import torch

import pam_explorer as pe
from pam_explorer.core.config import DataConfig
from pam_explorer.regroup import trajectories as trj

README = Path(__file__).resolve().parents[1] / "README.md"
QUICK = DataConfig(n_train=600, n_val=300, n_test=300)


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)


def test_the_readme_python_block_runs(tmp_path, monkeypatch, capsys):
    (block,) = python_blocks(README.read_text())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PAM_CACHE_ROOT", str(tmp_path / "cache"))  # cold: only the shipped files
    real_load = pe.load_preset_data
    monkeypatch.setattr(pe, "load_preset_data", lambda preset, config=QUICK: real_load(preset, QUICK))
    monkeypatch.setattr(pe, "PruneConfig", functools.partial(pe.PruneConfig, finetune_batches=5))
    torch.manual_seed(0)
    ns: dict = {}
    exec(compile(block, str(README), "exec"), ns)

    explorer, pruned = ns["explorer"], ns["pruned"]
    assert explorer.trajs.cache_hit and not (tmp_path / "cache").exists()  # shipped, read-only
    assert trj.shipped_path("digits-2task", trj.cache_key(explorer.preset, explorer.nets)).is_file()
    assert ns["alpha"] == explorer.preset.default_alpha
    assert ns["logits"]["A"].shape == (8, 5) and set(ns["logits"]) == {"A"}
    assert set(ns["labels"]) == {"A", "B"} and ns["images"].shape[1:] == (1, 32, 32)

    costs = pe.subset_costs(pruned)
    assert str(costs) in capsys.readouterr().out
    unpruned = pe.subset_costs(pe.merge_networks(explorer.nets, explorer.tasks, ns["groups"]))
    assert set(costs) == {"A", "B", "A+B"}
    for subset, c in costs.items():
        assert 0 < c["flops"] <= unpruned[subset]["flops"]
        assert 0 < c["params"] <= unpruned[subset]["params"]

    loaded = pe.export.load((tmp_path / "merged.zip").read_bytes())
    assert pe.subset_costs(loaded) == costs
    pruned.eval()
    loaded.eval()
    with torch.no_grad():
        x = ns["images"][:8]
        assert torch.allclose(loaded(x, tasks=["A"])["A"], pruned(x, tasks=["A"])["A"], atol=1e-6)
