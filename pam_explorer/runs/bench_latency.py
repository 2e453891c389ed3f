"""Latency study: grouped vs fused execution of every task subset, for PAM, B2 and B1 of a run.

Grouped: the merged network's own ``forward(x, tasks)`` (one module per group, Python loops over
groups). Fused: :func:`pam_explorer.merge.fuse.fuse` (one dense layer per layer, or one op per
group with ``layout="exact"``). B1 runs the subset's single-task networks one after the other
(grouped: each MergedNet in turn; fused: :func:`~pam_explorer.merge.fuse.fuse_separate`); B2 is a
fully shared MergedNet. Every figure is a median of ``torch.utils.benchmark`` runs
(:mod:`pam_explorer.cost.latency`); with ``repeats`` > 1 the grid is measured that many times,
interleaved, and each cell reports the median of its repeats. Pure computation: returns a dict.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pam_explorer import export
from pam_explorer.core.errors import DataMissing
from pam_explorer.core.subsets import subset_masks
from pam_explorer.cost.analytic import fused_costs, separate_costs, subset_costs
from pam_explorer.cost.latency import measure_models_latency
from pam_explorer.cost.latency_compare import Clock, LatencySettings, compare_latency
from pam_explorer.merge.fuse import fuse, fuse_separate
from pam_explorer.merge.merged_net import MergedNet

Scheme = MergedNet | Mapping[str, MergedNet]  # B1: task -> its one-task net


class _Calls(nn.Module):
    """Grouped execution: ``net(x, tasks)`` of each (net, tasks) in turn on one input."""

    def __init__(self, calls: Sequence[tuple[MergedNet, list[str]]]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(n for n, _ in calls)
        self.tasks = [t for _, t in calls]

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        return [net(x, tasks) for net, tasks in zip(self.nets, self.tasks)]


def load_schemes(run: str | Path) -> dict[str, Scheme]:
    """{"PAM": net, "B2": net, "B1": {task: net}} of an experiment folder (those it holds):
    DIR/model.zip (PAM of the first seed), DIR/stages/B2_s<seed>.zip and B1_<task>_s<seed>.zip of
    that seed (B2.zip, B1_<task>.zip in folders written before seeds). DataMissing without model.zip."""
    run = Path(run)
    if not (run / "model.zip").is_file():
        raise DataMissing(f"{run / 'model.zip'} not found: --run must be a finished experiment directory")
    out: dict[str, Scheme] = {"PAM": export.load(run / "model.zip")}
    tag = _first_seed_tag(run)
    if (run / "stages" / f"B2{tag}.zip").is_file():
        out["B2"] = export.load(run / "stages" / f"B2{tag}.zip")
    singles = {t: run / "stages" / f"B1_{t}{tag}.zip" for t in out["PAM"].tasks}
    if all(p.is_file() for p in singles.values()):
        out["B1"] = {t: export.load(p) for t, p in singles.items()}
    return out


def _first_seed_tag(run: Path) -> str:
    """"_s<first seed>" of the run's config.json (the seed model.zip is of), "" for older folders."""
    try:
        cfg = json.loads((run / "config.json").read_text())
        seeds = cfg.get("seeds") or [cfg["seed"]]
        tag = f"_s{int(seeds[0])}"
    except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        return ""
    return tag if any((run / "stages").glob(f"*{tag}.zip")) else ""


def scheme_models(scheme: Scheme, subset: str, layout: str = "dense") -> dict[str, nn.Module]:
    """{"grouped": module, "fused": module} running ``subset`` of one scheme; forward(x) only."""
    tasks = subset.split("+")
    if isinstance(scheme, MergedNet):
        return {"grouped": _Calls([(scheme, tasks)]), "fused": fuse(scheme, subset, layout)}
    return {"grouped": _Calls([(scheme[t], [t]) for t in tasks]),
            "fused": fuse_separate(scheme, subset, layout)}


def scheme_flops(scheme: Scheme, layout: str = "dense") -> dict[str, dict[str, int]]:
    """{subset: {"grouped": FLOPs of the grouped execution, "fused": of the fused model}}."""
    if isinstance(scheme, MergedNet):
        grouped = subset_costs(scheme)
        fused = fused_costs(scheme.geometry, scheme.group_widths()) if layout == "dense" else grouped
        return {s: {"grouped": grouped[s]["flops"], "fused": fused[s]["flops"]} for s in grouped}
    single = {t: scheme_flops(n, layout)[t] for t, n in scheme.items()}
    return {s: {k: sum(single[t][k] for t in s.split("+")) for k in ("grouped", "fused")}
            for s in separate_costs(scheme)}


def grouped_vs_fused(net: MergedNet, device: str = "cpu", batch: int = 1, threads: int | None = None,
                     min_run_time: float = 0.1, layout: str = "dense") -> dict[str, dict[str, float]]:
    """{subset: {"grouped": seconds, "fused": seconds}} of one merged network (median forward pass
    on a (batch, C, H, W) input); what the dashboard's export page shows."""
    geo = net.geometry
    models = {f"{s}|{kind}": m for s in subset_masks(net.tasks)
              for kind, m in scheme_models(net, s, layout).items()}
    lat = measure_models_latency(models, (geo.in_channels, geo.image_size, geo.image_size), batch, threads,
                                 device, min_run_time)
    out: dict[str, dict[str, float]] = {}
    for name, sec in lat.items():
        s, kind = name.split("|")
        out.setdefault(s, {})[kind] = sec
    return out


def interleaved_latency(schemes: Mapping[str, Scheme], settings: LatencySettings = LatencySettings(),
                        device: str = "cpu", clock: Clock = time.perf_counter) -> dict[str, Any]:
    """The report's ``latency_ms`` ({scheme: {subset: median ms}}), ``latency_measurement`` and
    ``latency_gains`` of every scheme's fused subset models ({"PAM": net, "B2": net, "B1": {task:
    net}}, as :func:`load_schemes` gives or an experiment holds), timed interleaved at batch 1 and
    judged against the fused models' FLOPs (:func:`pam_explorer.cost.latency_compare.compare_latency`).
    The networks are not changed (the fused models are new modules)."""
    first = schemes.get("PAM") or next(iter(schemes.values()))
    net = first if isinstance(first, MergedNet) else next(iter(first.values()))
    tasks = first.tasks if isinstance(first, MergedNet) else list(first)
    dev = torch.device(device)
    models = {name: {s: scheme_models(sch, s)["fused"].to(dev) for s in subset_masks(tasks)}
              for name, sch in schemes.items()}
    flops = {name: {s: f["fused"] for s, f in scheme_flops(sch).items()} for name, sch in schemes.items()}
    geo = net.geometry
    x = torch.randn(1, geo.in_channels, geo.image_size, geo.image_size, device=dev)
    return compare_latency(models, flops, x, settings, clock)


def archive_latency(data: bytes, devices: Sequence[str] | None = None, min_run_time: float = 0.05
                    ) -> dict[str, dict[str, dict[str, float]]]:
    """{device: {subset: {"grouped": seconds, "fused": seconds}}} of an export zip's merged model
    at batch 1 (:func:`grouped_vs_fused`), on the CPU and, when present, CUDA: the export page's
    "measure latency" button."""
    net = export.load(data)
    devices = list(devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    return {d: grouped_vs_fused(net, device=d, batch=1, min_run_time=min_run_time) for d in devices}


def bench_latency(run: str | Path, batches: Sequence[int] = (1, 64),
                  threads: Sequence[int | None] = (1, None), devices: Sequence[str] | None = None,
                  layout: str = "dense", min_run_time: float = 0.2, repeats: int = 3) -> dict[str, Any]:
    """Grouped and fused latency (ms) of every subset and scheme of an experiment folder, per device,
    batch size and thread count (None: all of torch's threads; CUDA ignores threads), with FLOPs,
    and the issue-15 target check (:func:`target_check`). devices default: the CPU, and CUDA when
    present."""
    schemes = load_schemes(run)
    devices = list(devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    shape = (schemes["PAM"].geometry.in_channels, schemes["PAM"].geometry.image_size,
             schemes["PAM"].geometry.image_size)
    models = {(name, s, kind): m for name, sch in schemes.items() for s in subset_masks(schemes["PAM"].tasks)
              for kind, m in scheme_models(sch, s, layout).items()}
    flops = {name: scheme_flops(sch, layout) for name, sch in schemes.items()}
    rows = []
    counts = list(dict.fromkeys(th or torch.get_num_threads() for th in threads))  # "all" may be 1
    for dev in devices:
        for batch in batches:
            for n in (counts if dev == "cpu" else [torch.get_num_threads()]):
                runs = [measure_models_latency(models, shape, batch, n, dev, min_run_time)
                        for _ in range(repeats)]
                for key in models:
                    scheme, subset, kind = key
                    ms = 1e3 * statistics.median(r[key] for r in runs)
                    rows.append({"device": dev, "batch": batch, "threads": n if dev == "cpu" else None,
                                 "scheme": scheme, "subset": subset, "execution": kind, "ms": round(ms, 4),
                                 "flops": flops[scheme][subset][kind]})
    return {"run": str(run), "layout": layout, "repeats": repeats, "min_run_time": min_run_time,
            "machine": machine(), "rows": rows, "target": target_check(rows)}


def target_check(rows: Sequence[Mapping[str, Any]], margin: float = 0.2) -> list[dict[str, Any]]:
    """Per (device, batch, threads, baseline, subset) where PAM's grouped FLOPs are at least
    ``margin`` below the baseline's: both fused latencies, their ratio and whether PAM's is lower."""
    cell = _cells(rows)
    out = []
    for (dev, batch, th, scheme, subset, kind), pam in cell.items():
        if scheme != "PAM" or kind != "grouped":
            continue
        for base in ("B1", "B2"):
            b = cell.get((dev, batch, th, base, subset, "grouped"))
            if b is None or pam["flops"] > (1 - margin) * b["flops"]:
                continue
            pf = cell[(dev, batch, th, "PAM", subset, "fused")]
            bf = cell[(dev, batch, th, base, subset, "fused")]
            out.append({"device": dev, "batch": batch, "threads": th, "subset": subset, "baseline": base,
                        "flops_ratio": round(pam["flops"] / b["flops"], 4),
                        "pam_fused_ms": pf["ms"], "baseline_fused_ms": bf["ms"],
                        "latency_ratio": round(pf["ms"] / bf["ms"], 4), "met": pf["ms"] < bf["ms"]})
    return out


def latency_table(result: Mapping[str, Any]) -> str:
    """Markdown: one row per (device, batch, threads, scheme, subset), then the target check."""
    cell = _cells(result["rows"])
    lines = ["| device | batch | threads | scheme | subset | FLOPs grouped | FLOPs fused | ms grouped "
             "| ms fused | grouped / fused |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (dev, batch, th, scheme, subset, kind), g in cell.items():
        if kind != "grouped":
            continue
        f = cell[(dev, batch, th, scheme, subset, "fused")]
        lines.append(f"| {dev} | {batch} | {th or '-'} | {scheme} | {subset} | {g['flops']:,} "
                     f"| {f['flops']:,} | {g['ms']:.3f} | {f['ms']:.3f} | {g['ms'] / f['ms']:.2f} |")
    lines += ["", "PAM FLOPs >= 20 % below the baseline's -> fused latency PAM / baseline:"]
    lines += [f"- {t['device']}, batch {t['batch']}, threads {t['threads'] or '-'}, {t['subset']} vs "
              f"{t['baseline']}: FLOPs x{t['flops_ratio']:.2f}, latency {t['pam_fused_ms']:.3f} / "
              f"{t['baseline_fused_ms']:.3f} ms = x{t['latency_ratio']:.2f} "
              f"({'met' if t['met'] else 'NOT met'})"
              for t in result["target"]]
    return "\n".join(lines)


def _cells(rows: Sequence[Mapping[str, Any]]) -> dict[tuple, Mapping[str, Any]]:
    keys = ("device", "batch", "threads", "scheme", "subset", "execution")
    return {tuple(r[k] for k in keys): r for r in rows}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


__all__ = ["load_schemes", "scheme_models", "scheme_flops", "grouped_vs_fused", "interleaved_latency",
           "archive_latency", "bench_latency",
           "target_check", "latency_table", "machine"]
