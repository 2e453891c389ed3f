"""`bench latency` on a small experiment-like folder: every (scheme, subset, execution, batch)
cell is measured, FLOPs come from the analytic counts (checked against FlopCounterMode in
tests/merge/test_fuse.py), and the target check compares exactly the cells it names."""
from __future__ import annotations

import json

import torch

from pam_explorer import export
from pam_explorer.cli import main
from pam_explorer.cost.analytic import fused_costs, separate_costs, subset_costs
from pam_explorer.merge.build import from_single, fully_shared, merge_networks
from pam_explorer.runs.bench_latency import bench_latency, latency_table
from pam_explorer.zoo import build_model
from tests.helpers import random_grouping, tiny_resnets


def test_bench_latency_grid_and_target(tmp_path, capsys):
    nets = [build_model("lenet5", 5, 1, 32, width=0.5).eval() for _ in range(2)]
    pam = merge_networks(nets, ["A", "B"], random_grouping(nets, ["A", "B"], 0)).eval()
    export.save(pam, tmp_path / "model.zip", {"preset": "digits-2task"})
    export.save(fully_shared(nets, ["A", "B"]), tmp_path / "stages" / "B2.zip")
    singles = {t: from_single(n, t) for t, n in zip("AB", nets)}
    for t, n in singles.items():
        export.save(n, tmp_path / "stages" / f"B1_{t}.zip")
    assert main(["bench", "latency", "--run", str(tmp_path), "--batches", "1,3", "--threads", "1,all",
                 "--min-run-time", "0.001", "--repeats", "1", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = result["rows"]
    assert len(rows) == 3 * 3 * 2 * 2  # schemes x subsets x grouped/fused x batches ("all" is 1 thread here)
    assert all(r["ms"] > 0 and r["device"] == "cpu" and r["threads"] == 1 for r in rows)
    flops = {(r["scheme"], r["subset"], r["execution"]): r["flops"] for r in rows}
    dense = fused_costs(pam.geometry, pam.group_widths())
    for s in ("A", "B", "A+B"):
        assert flops[("PAM", s, "grouped")] == subset_costs(pam)[s]["flops"]
        assert flops[("PAM", s, "fused")] == dense[s]["flops"]
        assert flops[("B1", s, "grouped")] == flops[("B1", s, "fused")] == separate_costs(singles)[s]["flops"]
    ms = {(r["batch"], r["scheme"], r["subset"], r["execution"]): r["ms"] for r in rows}
    for t in result["target"]:
        assert flops[("PAM", t["subset"], "grouped")] <= 0.8 * flops[(t["baseline"], t["subset"], "grouped")]
        assert t["pam_fused_ms"] == ms[(t["batch"], "PAM", t["subset"], "fused")]
        assert t["met"] == (t["pam_fused_ms"] < t["baseline_fused_ms"])
    table = latency_table(result)
    assert table.count("\n| cpu |") == 3 * 3 * 2 and "FLOPs fused" in table


def test_bench_latency_on_a_residual_run_without_b2(tmp_path):
    """A residual run without B2 (as with --schemes B1,PAM): PAM and B1 are measured, fused and
    grouped, with FLOPs from the analytic counts (FlopCounterMode: tests/merge/test_fuse_residual.py)."""
    nets = tiny_resnets(2, size=8)
    pam = merge_networks(nets, ["A", "B"], random_grouping(nets, ["A", "B"], 1)).eval()
    export.save(pam, tmp_path / "model.zip")
    singles = {t: from_single(n, t) for t, n in zip("AB", nets)}
    for t, n in singles.items():
        export.save(n, tmp_path / "stages" / f"B1_{t}.zip")
    result = bench_latency(tmp_path, batches=(2,), threads=(1,), devices=["cpu"], min_run_time=0.001,
                           repeats=1)
    rows = result["rows"]
    assert len(rows) == 2 * 3 * 2 and {r["scheme"] for r in rows} == {"PAM", "B1"}
    assert all(r["ms"] > 0 for r in rows)
    flops = {(r["scheme"], r["subset"], r["execution"]): r["flops"] for r in rows}
    dense = fused_costs(pam.geometry, pam.group_widths())
    for s in ("A", "B", "A+B"):
        assert flops[("PAM", s, "fused")] == dense[s]["flops"] > flops[("PAM", s, "grouped")]
        assert flops[("B1", s, "fused")] == separate_costs(singles)[s]["flops"]
    assert all(t["baseline"] == "B1" for t in result["target"])


def test_interleaved_latency_times_every_schemes_fused_models_against_their_flops(monkeypatch):
    """What the experiment's report gets (issue 26, point 1): every scheme's fused subset model,
    checked against the fused models' analytic FLOPs, one interleaved measurement; the models
    compute what the schemes compute."""
    import torch

    from pam_explorer.cost.latency_compare import LatencySettings
    from pam_explorer.runs import bench_latency as B

    torch.manual_seed(0)
    nets = [build_model("lenet5", 5, 1, 32, width=0.5).eval() for _ in range(2)]
    pam = merge_networks(nets, ["A", "B"], random_grouping(nets, ["A", "B"], 0)).eval()
    singles = {t: from_single(n, t).eval() for t, n in zip("AB", nets)}
    schemes = {"PAM": pam, "B2": fully_shared(nets, ["A", "B"]).eval(), "B1": singles}
    seen = {}
    real = B.compare_latency
    monkeypatch.setattr(B, "compare_latency", lambda m, f, x, s, c: seen.update(models=m, flops=f, x=x)
                        or real(m, f, x, s, c))
    out = B.interleaved_latency(schemes, LatencySettings(rounds=3, min_sample_s=1e-4))
    dense = fused_costs(pam.geometry, pam.group_widths())
    assert seen["flops"]["PAM"] == {s: dense[s]["flops"] for s in ("A", "B", "A+B")}
    assert seen["flops"]["B1"] == {s: c["flops"] for s, c in separate_costs(singles).items()}
    x = torch.rand(2, 1, 32, 32)
    with torch.no_grad():
        fused = seen["models"]["PAM"]["A+B"](x)
        want = pam(x, ["A", "B"])
        torch.testing.assert_close(fused[0], want["A"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(seen["models"]["B1"]["B"](x)[0], singles["B"](x, ["B"])["B"])
    assert tuple(seen["x"].shape) == (1, 1, 32, 32)
    figs = out["latency_measurement"]["schemes"]
    assert {s: set(per) for s, per in figs.items()} == {s: {"A", "B", "A+B"} for s in ("PAM", "B2", "B1")}
    assert out["latency_ms"]["PAM"]["A"] == round(figs["PAM"]["A"]["median_ms"], 4) > 0
    json.dumps(out, allow_nan=False)


def test_load_schemes_finds_the_first_seeds_stage_models(tmp_path):
    """Experiments with seeds name their stage models <scheme>[_<task>]_s<seed>.zip; model.zip is
    PAM of the first seed, so B1 and B2 are taken from that seed (older folders: no suffix)."""
    nets = [build_model("lenet5", 5, 1, 32, width=0.5).eval() for _ in range(2)]
    pam = merge_networks(nets, ["A", "B"], random_grouping(nets, ["A", "B"], 0))
    export.save(pam, tmp_path / "model.zip")
    (tmp_path / "config.json").write_text(json.dumps({"seeds": [3, 1]}))
    export.save(fully_shared(nets, ["A", "B"]), tmp_path / "stages" / "B2_s3.zip")
    export.save(fully_shared(nets[::-1], ["A", "B"]), tmp_path / "stages" / "B2_s1.zip")
    for t, n in zip("AB", nets):
        export.save(from_single(n, t), tmp_path / "stages" / f"B1_{t}_s3.zip")
    from pam_explorer.runs.bench_latency import load_schemes
    got = load_schemes(tmp_path)
    assert set(got) == {"PAM", "B2", "B1"} and set(got["B1"]) == {"A", "B"}
    want = fully_shared(nets, ["A", "B"]).state_dict()
    assert all(torch.equal(v, want[k]) for k, v in got["B2"].state_dict().items())
