"""Weights of a merged network's groups and heads, copied from the single-task networks.

A connection that existed in an original network keeps its weight (out neuron and in neuron
from the same origin network t: W_t[local_out, local_in]; each input neuron of an fc layer
reading a conv layer is H*W consecutive features, channel-major); a new connection (neurons of
different origins) starts at zero. Biases and per-neuron ops (BatchNorm parameters and running
statistics) follow their neuron. A neuron's provenance is (origin task index, index in its
origin network's layer). Used for chain nets (:mod:`.build`) and residual nets (:mod:`.residual`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pam_explorer.core.geometry import LayerGeometry, NetGeometry
from pam_explorer.merge.group_modules import make_core, make_group

Prov = Sequence[tuple[int, int]]


def copy_existing(dst: torch.Tensor, srcs: Sequence[torch.Tensor | None], out_prov: Prov,
                   in_prov: Prov | None, factor: int) -> None:
    """dst[r, cols of input neuron c] = W_t[j, cols of k] where out neuron r = (t, j) and input
    neuron c = (t, k) have the same origin t; other entries keep their value (zero).

    dst/srcs: (out, in * factor[, kh, kw]). in_prov None means the shared image input: every
    origin reads every input channel with its own weights. srcs[t] is None where network t does
    not have the layer (then no out neuron has origin t).
    """
    for t, src in enumerate(srcs):
        rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
        if not rows or src is None:
            continue
        j = torch.tensor([out_prov[r][1] for r in rows])
        if in_prov is None:
            cols = k = torch.arange(src.shape[1] // factor)
        else:
            pos = [c for c, (o, _) in enumerate(in_prov) if o == t]
            cols = torch.tensor(pos, dtype=torch.long)
            k = torch.tensor([in_prov[c][1] for c in pos], dtype=torch.long)
        if not cols.numel():
            continue
        step = torch.arange(factor)
        cols_x, k_x = (cols[:, None] * factor + step).flatten(), (k[:, None] * factor + step).flatten()
        dst[torch.tensor(rows)[:, None], cols_x[None, :]] = src[j[:, None], k_x[None, :]]


def copy_per_neuron(dst: dict[str, torch.Tensor],
                     srcs: Sequence[Mapping[str, torch.Tensor] | None], out_prov: Prov) -> None:
    """Per-neuron tensors (bias, BN weight/bias/running stats) follow their origin neuron;
    scalar buffers (BN num_batches_tracked) take the max over the origins present (an empty
    group: the first network that has the layer; srcs[t] is None where t does not)."""
    present = [t for t, s in enumerate(srcs) if s is not None]
    origins = sorted({t for t, _ in out_prov}) or present[:1]
    for key, value in dst.items():
        if value.dim() == 0:
            value.copy_(max(srcs[t][key] for t in origins))
            continue
        for t in origins:
            rows = [r for r, (o, _) in enumerate(out_prov) if o == t]
            if rows:
                value[torch.tensor(rows)] = srcs[t][key][torch.tensor([out_prov[r][1] for r in rows])]


def build_group(lg: LayerGeometry, blocks: Sequence[Sequence[nn.Module] | None], out_prov: Prov,
                 in_prov: Prov | None, n_in: int) -> nn.Sequential:
    """The group module of neurons ``out_prov`` reading inputs ``in_prov`` (None: the image);
    blocks[t] is network t's (core, per-neuron ops...) of this layer (an nn.Sequential block of a
    chain net), None if network t is shallower."""
    group = make_group(lg, n_in, len(out_prov))
    with torch.no_grad():
        core = group[0]
        weights = [b[0].weight.detach().cpu() if b is not None else None for b in blocks]
        copy_existing(core.weight, weights, out_prov, in_prov, lg.in_factor)
        if core.bias is not None:
            copy_per_neuron({"bias": core.bias}, [{"bias": b[0].bias.detach().cpu()} if b is not None
                                                   else None for b in blocks], out_prov)
        for f_idx, follower in enumerate(list(group)[1:], start=1):
            state = follower.state_dict(keep_vars=True)
            if state:
                src = [{k: v.detach().cpu() for k, v in b[f_idx].state_dict().items()} if b is not None
                       else None for b in blocks]
                copy_per_neuron({k: v.data for k, v in state.items()}, src, out_prov)
    return group


def build_head(geo: NetGeometry, t: int, head: nn.Linear, in_prov: Prov) -> nn.Linear:
    """Head of task t reading the neurons ``in_prov`` of its head layer: only task t's neurons
    get weights (its original head's)."""
    factor = geo.head_factor(geo.tasks[t])
    new = make_core("fc", len(in_prov) * factor, geo.head_outputs[t], bias=geo.head_bias)
    out_prov = [(t, j) for j in range(geo.head_outputs[t])]
    # every output row has origin t, so only srcs[t] is ever read
    srcs = [head.weight.detach().cpu()] * len(geo.tasks)
    with torch.no_grad():
        copy_existing(new.weight, srcs, out_prov, in_prov, factor)
        if new.bias is not None:
            new.bias.copy_(head.bias.detach().cpu())
    return new


__all__ = ["Prov", "copy_existing", "copy_per_neuron", "build_group", "build_head"]
