"""Reports time what is deployed: every subset's fused model (B1: the subset's fused single-task
nets one after the other), not the grouped forward."""
from __future__ import annotations

import torch

from pam_explorer.merge import fuse as fuse_mod
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.runs import scheme_records
from pam_explorer.zoo.registry import build_model
from tests.helpers import random_grouping


def _nets():
    torch.manual_seed(0)
    return [build_model("lenet5", 2, 1, 32, width=0.5), build_model("lenet5", 2, 1, 32, width=0.5)]


def test_latency_is_measured_on_fused_subset_models(monkeypatch):
    built: list[tuple[str, str]] = []
    real = fuse_mod.fuse
    monkeypatch.setattr(fuse_mod, "fuse", lambda net, subset, layout="dense":
                        built.append((type(net).__name__, subset)) or real(net, subset, layout))
    nets = _nets()
    merged = merge_networks(nets, ("A", "B"), random_grouping(nets, ("A", "B"), seed=1))
    out = scheme_records.latencies(0.01, merged)["latency_ms"]
    assert set(out) == {"A", "B", "A+B"} and all(v > 0 for v in out.values())
    assert sorted(s for _, s in built) == ["A", "A+B", "B"]
    built.clear()
    sep = scheme_records.latencies(0.01, {t: from_single(n, t) for n, t in zip(nets, "AB")})["latency_ms"]
    assert set(sep) == {"A", "B", "A+B"} and all(v > 0 for v in sep.values())
    assert sorted(s for _, s in built) == ["A", "A", "B", "B"]  # A+B runs both single-task nets
