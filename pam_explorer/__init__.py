"""PAM Explorer: pruning-aware merging of single-task networks, made explorable.

Public API in pipeline order: data, presets and projects -> model zoo -> layer map and
activations -> MI and regrouping (via the Explorer) -> merged network -> finetuning -> pruning
-> cost -> export. The package is layered by pipeline stage (core, data/zoo/cost, graph, regroup,
merge, train, prune/baselines, export, runs, cli); docs/architecture.md gives the stages and the
import rule.

Every name loads on first use (PEP 562): ``import pam_explorer`` costs milliseconds, so that
``python -m pam_explorer --help`` starts without torch; ``pe.Explorer`` imports what it needs.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module that defines it, in pipeline order (the public API)
_EXPORTS = {
    "DataConfig": "core.config", "FinetuneConfig": "core.config", "MIConfig": "core.config",
    "RegroupConfig": "core.config", "TrainConfig": "core.config",
    "get_preset": "data.presets", "list_presets": "data.presets", "load_preset_data": "data.presets",
    "task_targets": "data.presets", "read_project": "data.project",
    "build_model": "zoo.registry", "list_models": "zoo.registry", "load_checkpoint": "zoo.checkpoint",
    "save_checkpoint": "zoo.checkpoint", "load_pretrained": "zoo.pretrained",
    "layer_map": "graph.layer_map", "capture_activations": "graph.activations",
    "greedy_trajectory": "regroup.greedy", "mi_reference": "regroup.mutual_info",
    "LayerGroups": "regroup.algorithms", "cut": "regroup.algorithms", "groups_at": "regroup.algorithms",
    "Explorer": "regroup.explorer", "Project": "regroup.project",
    "merge_networks": "merge.build", "MergedNet": "merge.merged_net",
    "evaluate": "train.finetune", "finetune": "train.finetune",
    "PruneConfig": "prune", "TaskData": "prune", "get_pruner": "prune", "list_pruners": "prune",
    "average_gain": "cost.analytic", "peak_gain": "cost.analytic", "predicted_costs": "cost.analytic",
    "subset_costs": "cost.analytic", "progress_printer": "core.progress",
}
_MODULES = ("export",)  # sub-packages offered as attributes (pe.export.save, ...)
__all__ = [*_EXPORTS, *_MODULES]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
