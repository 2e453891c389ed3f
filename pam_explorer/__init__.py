"""PAM Explorer: pruning-aware merging of single-task networks, made explorable.

Public API in pipeline order: data and presets -> model zoo -> layer map and activations -> MI
and regrouping (via the Explorer) -> merged network -> finetuning -> pruning -> cost -> export.
"""
from pam_explorer.config import DataConfig, FinetuneConfig, MIConfig, RegroupConfig, TrainConfig
from pam_explorer.data import get_preset, list_presets, load_preset_data, task_targets
from pam_explorer.zoo import build_model, list_models, load_checkpoint, save_checkpoint
from pam_explorer.pretrained import load_pretrained
from pam_explorer.layers import layer_map
from pam_explorer.activations import capture_activations
from pam_explorer.mutual_info import greedy_trajectory, mi_reference
from pam_explorer.regroup import LayerGroups, cut, groups_at
from pam_explorer.explore import Explorer
from pam_explorer.merge import merge_networks
from pam_explorer.merged_net import MergedNet
from pam_explorer.finetune import evaluate, finetune
from pam_explorer.prune import PruneConfig, TaskData, get_pruner, list_pruners
from pam_explorer.cost import average_gain, peak_gain, predicted_costs, subset_costs
from pam_explorer import export

__all__ = [
    "DataConfig", "FinetuneConfig", "MIConfig", "RegroupConfig", "TrainConfig",
    "get_preset", "list_presets", "load_preset_data", "task_targets",
    "build_model", "list_models", "load_checkpoint", "save_checkpoint", "load_pretrained",
    "layer_map", "capture_activations", "greedy_trajectory", "mi_reference",
    "LayerGroups", "cut", "groups_at", "Explorer", "merge_networks", "MergedNet",
    "evaluate", "finetune", "PruneConfig", "TaskData", "get_pruner", "list_pruners",
    "average_gain", "peak_gain", "predicted_costs", "subset_costs", "export",
]
