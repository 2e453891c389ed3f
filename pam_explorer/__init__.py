"""PAM Explorer: pruning-aware merging of single-task networks, made explorable.

Public API in pipeline order: data and presets -> model zoo -> layer map and activations -> MI
and regrouping (via the Explorer) -> merged network -> finetuning -> pruning -> cost -> export.
The package is layered by pipeline stage (core, data/zoo/cost, graph, regroup, merge, train,
prune/baselines, export, runs, cli); docs/architecture.md gives the stages and the import rule.
"""
from pam_explorer.core.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig, TrainConfig
from pam_explorer.core.progress import progress_printer
from pam_explorer.data import get_preset, list_presets, load_preset_data, task_targets
from pam_explorer.zoo import build_model, list_models, load_checkpoint, save_checkpoint
from pam_explorer.zoo.pretrained import load_pretrained
from pam_explorer.graph.layer_map import layer_map
from pam_explorer.graph.activations import capture_activations
from pam_explorer.regroup.greedy import greedy_trajectory
from pam_explorer.regroup.mutual_info import mi_reference
from pam_explorer.regroup.algorithms import LayerGroups, cut, groups_at
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.merge.build import merge_networks
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.train.finetune import evaluate, finetune
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, list_pruners
from pam_explorer.cost.analytic import average_gain, peak_gain, predicted_costs, subset_costs
from pam_explorer import export

__all__ = [
    "DataConfig", "FinetuneConfig", "MIConfig", "RegroupConfig", "TrainConfig", "progress_printer",
    "get_preset", "list_presets", "load_preset_data", "task_targets",
    "build_model", "list_models", "load_checkpoint", "save_checkpoint", "load_pretrained",
    "layer_map", "capture_activations", "greedy_trajectory", "mi_reference",
    "LayerGroups", "cut", "groups_at", "Explorer", "merge_networks", "MergedNet",
    "evaluate", "finetune", "PruneConfig", "TaskData", "get_pruner", "list_pruners",
    "average_gain", "peak_gain", "predicted_costs", "subset_costs", "export",
]
