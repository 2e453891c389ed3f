"""The ``merge`` command: regroup a preset's networks at alpha, merge, finetune, save to DIR; and
:func:`merged_model_bytes`, the export of the explorer's merged model as built (what the
dashboard's Export page serves).

DIR/progress.json tells the dashboard how far it is (the Export page's "finetune, then export"
job is a merge run)."""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pam_explorer import export
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.io import write_json_atomic
from pam_explorer.core.subsets import subset_key
from pam_explorer.cost.analytic import subset_costs
from pam_explorer.cost.latency import measure_latency
from pam_explorer.data import get_preset, load_preset_data
from pam_explorer.data.project import ProjectPreset
from pam_explorer.graph.networks import task_networks
from pam_explorer.merge.build import from_single, merge_networks
from pam_explorer.prune import TaskData
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.runs.outdir import claim
from pam_explorer.train.finetune import evaluate, finetune

OUTPUTS = ("model.zip", "merge.json")


def merge_preset(preset: str, cfg: RegroupConfig, mi: MIConfig, finetune_epochs: int, device: str,
                 out: Path, progress: Callable[[str], None] | None = None, force: bool = False,
                 arch: str | None = None) -> dict:
    """Writes DIR/model.zip and DIR/merge.json {groups, flops, accuracy, ...}; returns the JSON.

    Merges the committed ``arch`` networks of ``preset`` (None: the default, LeNet-5), or a
    project's own (``preset``: its file; the folder's configuration records the project's content
    key); finetuning runs on ``device``. DIR is claimed first (:func:`pam_explorer.runs.outdir.claim`):
    a file, an unwritable folder, another command's folder, or a merge of another configuration
    (unless ``force``) is refused before anything is computed."""
    resolve_device(device)  # "cuda" without a GPU fails before any work
    config = {"preset": preset, "regroup": dataclasses.asdict(cfg), "mi": dataclasses.asdict(mi),
              "finetune_epochs": finetune_epochs, "device": device,
              **({"arch": arch} if arch else {})}  # no key for the default: older folders still match
    spec = get_preset(preset)
    if isinstance(spec, ProjectPreset):
        config.update(preset=spec.name, project_key=spec.content_key())
    with claim(out, "merge", config, OUTPUTS, force=force):
        return _merge(preset, cfg, mi, finetune_epochs, device, Path(out), progress, arch)


def _merge(preset: str, cfg: RegroupConfig, mi: MIConfig, finetune_epochs: int, device: str,
           out: Path, progress: Callable[[str], None] | None, arch: str | None) -> dict:
    def say(message: str, fraction: float) -> None:
        write_json_atomic(out / "progress.json", {"stage": "merge", "fraction": round(fraction, 4),
                                                  "message": message, "time": time.time()})
        if progress is not None:
            progress(message)

    say("MI trajectories and regrouping", 0.0)
    p = get_preset(preset)
    explorer = Explorer.open(p, mi, nets=task_networks(p, arch))
    groups = explorer.groups(cfg)
    net = merge_networks(explorer.nets, explorer.tasks, groups)
    data = TaskData.from_splits(load_preset_data(explorer.preset, DataConfig()), explorer.preset)
    before = evaluate(net, *data.test)
    history = []
    if finetune_epochs > 0:
        say(f"finetuning {finetune_epochs} epoch(s)", 0.1)
        def epoch_done(row: dict) -> None:
            say(f"epoch {row['epoch']}/{finetune_epochs}: val {row['val_accuracy']}",
                0.1 + 0.8 * row["epoch"] / finetune_epochs)
        res = finetune(net, data.train, data.val, FinetuneConfig(epochs=finetune_epochs, device=device),
                       progress=epoch_done)
        history = res.history
    say("measuring and exporting", 0.95)
    net = net.cpu().eval()
    summary = {"preset": preset, "arch": getattr(explorer.nets[0], "arch", None), "alpha": cfg.alpha,
               "overrides": dict(cfg.overrides), "algorithm": cfg.algorithm, "both_picked": cfg.both_picked,
               "mi": {**dataclasses.asdict(mi), "profile": mi.profile}, "finetune_epochs": finetune_epochs,
               "groups": {layer: {subset_key(k): len(v) for k, v in g.groups.items()}
                          for layer, g in groups.items()},
               "flops": {s: c["flops"] for s, c in subset_costs(net).items()},
               # one image per call, CPU: what an edge device running one request would see
               "latency_ms": {s: round(1e3 * v, 4) for s, v in measure_latency(net).items()},
               "accuracy_before_finetune": before, "accuracy": evaluate(net, *data.test),
               "history": history}
    out.mkdir(parents=True, exist_ok=True)
    manifest_extra = {k: v for k, v in summary.items() if k != "history"}
    summary["model"] = str(export.save(net, out / "model.zip", manifest_extra))
    write_json_atomic(out / "merge.json", summary)
    say("done", 1.0)
    return summary


def merged_model_bytes(explorer: Explorer, cfg: RegroupConfig, accuracy: bool = True) -> bytes:
    """The export zip of the explorer's networks merged at ``cfg`` (before finetuning and pruning:
    ``"stage": "merged, not finetuned"``), with alpha, preset, algorithm, overrides, the rule for
    neurons picked twice and the MI settings (with their profile) in the manifest; with
    ``accuracy``, also its test accuracy per task (%, the preset's test split) and the original
    networks' (``reference_accuracy``). Raises StructureError if the groups at cfg cannot be
    built as a network."""
    net = merge_networks(explorer.nets, explorer.tasks, explorer.groups(cfg))
    extra: dict[str, Any] = {
        "alpha": cfg.alpha, "preset": explorer.preset.name, "algorithm": cfg.algorithm,
        "alpha_overrides": dict(cfg.overrides), "both_picked": cfg.both_picked,
        "mi": {**dataclasses.asdict(explorer.mi), "profile": explorer.mi.profile},
        "stage": "merged, not finetuned"}
    if accuracy:
        test = TaskData.from_splits(load_preset_data(explorer.preset, explorer.data), explorer.preset).test
        extra["accuracy"] = evaluate(net, *test)
        extra["reference_accuracy"] = {t: evaluate(from_single(n, t), *test)[t]
                                       for n, t in zip(explorer.nets, explorer.tasks)}
    return export.to_bytes(net, extra)
