"""Sparsity and effective FLOPs of a network with zero weights (unstructured pruning).

:func:`component_sparsity`: the fraction of zero entries of soft-thresholded weights per
component (a named list of weights) and overall; :func:`sparsity_series` thins its log.

Unstructured pruning (AdapMTL) keeps every neuron, so the analytic group-width cost model
(:func:`pam_explorer.cost.analytic.subset_costs`) does not see it. Here every Conv2d/Linear executed
for a task subset counts, for one sample,

    MACs = (weights counted) x (output positions that use each weight once)

with "weights counted" = its non-zero weights (sparse) or all of them (dense); conv: output
positions = H_out x W_out (true for any ``groups``: each kernel entry meets every output
position once), linear: the number of feature vectors per sample (1 for (N, F) inputs).
FLOPs = 2 x MACs, as in ``cost/analytic.py``. Measuring on the executed forward pass, rather than
from the layer map, keeps it right whatever reads what (e.g. a head reading an earlier layer).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pam_explorer.core.errors import DataError
from pam_explorer.core.subsets import all_subsets, subset_key

CountFn = Callable[[torch.Tensor], int]
Components = dict[str, list[str]]  # component -> names (net.named_parameters) of its weights
OVERALL = "overall"


@torch.no_grad()
def component_sparsity(net: nn.Module, comps: Components, alphas: Mapping[str, Any]
                       ) -> dict[str, float]:
    """{component: fraction of zero entries of W_sparse, ..., "overall": over all thresholded
    weights}. W_sparse is zero exactly where |W| <= alpha."""
    params = dict(net.named_parameters())
    zeros, sizes = {}, {}
    for c, names in comps.items():
        alpha = torch.as_tensor(alphas[c], dtype=torch.float32)
        zeros[c] = sum(int((params[n].abs() <= alpha.to(params[n])).sum()) for n in names)
        sizes[c] = sum(params[n].numel() for n in names)
    out = {c: zeros[c] / sizes[c] for c in comps}
    out[OVERALL] = sum(zeros.values()) / max(1, sum(sizes.values()))
    return out


def _macs_hook(total: list[int], count: CountFn) -> Callable:
    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        if isinstance(module, nn.Conv2d):
            positions = out.shape[-2] * out.shape[-1]  # out: (1, C_out, H_out, W_out)
        else:  # Linear: inputs[0] (1, ..., F) -> one use of each weight per feature vector
            positions = inputs[0].numel() // max(1, inputs[0].shape[0] * module.in_features)
        total[0] += count(module.weight) * positions
    return hook


@torch.no_grad()
def executed_flops(net: nn.Module, example: torch.Tensor, tasks: tuple[str, ...],
                   count_zeros: bool = False) -> int:
    """2 x MACs of the conv/linear modules that ``net(example, tasks)`` executes, for one
    sample. example: (1, C, H, W). count_zeros=False counts only non-zero weights (sparse
    FLOPs); True counts every weight (dense FLOPs). Eval mode, restored afterwards."""
    if example.shape[0] != 1:
        raise DataError(f"example must hold one sample (1, C, H, W), got {tuple(example.shape)}")
    count: CountFn = (lambda w: w.numel()) if count_zeros else (lambda w: int(torch.count_nonzero(w)))
    total = [0]
    handles = [m.register_forward_hook(_macs_hook(total, count)) for m in net.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    net.eval()
    try:
        net(example, tasks)
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    return 2 * total[0]


def subset_flops(net: nn.Module, example: torch.Tensor, count_zeros: bool = False) -> dict[str, int]:
    """{subset name ("A", "B", "A+B", ...): FLOPs} for every non-empty subset of ``net.tasks``
    (canonical order of :func:`pam_explorer.core.subsets.all_subsets`); see :func:`executed_flops`."""
    param = next(net.parameters())
    example = example.to(param.device, param.dtype)
    return {subset_key(s): executed_flops(net, example, s, count_zeros) for s in all_subsets(net.tasks)}


def sparsity_series(log: Sequence[Mapping], max_points: int = 200) -> list[dict]:
    """[{"step", component: sparsity, ..., "overall"}] from log rows, evenly thinned to at most
    ``max_points`` (first, last and the freezing row always kept)."""
    if not log:
        return []
    keep = {round(i * (len(log) - 1) / max(1, max_points - 2)) for i in range(max_points - 1)}
    keep |= {len(log) - 1} | {i for i, r in enumerate(log)
                              if r["frozen"] and (i == 0 or not log[i - 1]["frozen"])}
    return [{"step": log[i]["step"], **log[i]["sparsity"]} for i in sorted(keep) if i < len(log)]


__all__ = ["component_sparsity", "sparsity_series", "executed_flops", "subset_flops", "OVERALL", "Components"]
