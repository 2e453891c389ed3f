"""Baseline B1: no merging. Each task keeps its own single-task network, as a K = 1 MergedNet
(every neuron in the group of its one task), so pruning and cost share MergedNet's code path."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.subsets import check_tasks
from pam_explorer.merge.build import from_single
from pam_explorer.merge.merged_net import MergedNet


def separate_nets(nets: Sequence[nn.Module], tasks: Sequence[str]) -> dict[str, MergedNet]:
    """{task: from_single(net, task)}, one per network in task order.

    Each result reproduces its network exactly: net(x) == result(x)[task] for x (N, C, H, W).
    StructureError unless there is exactly one network per (distinct, valid) task name.
    """
    tasks = check_tasks(tasks)
    if len(nets) != len(tasks):
        raise StructureError(f"need one network per task; got {len(nets)} networks for tasks {list(tasks)}")
    return {task: from_single(net, task) for net, task in zip(nets, tasks)}


__all__ = ["separate_nets"]
