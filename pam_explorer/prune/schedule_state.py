"""What a pruning schedule needs to resume from a checkpoint, as tensors + JSON (no pickles).

A schedule (:mod:`pam_explorer.prune.schedule`) records at every checkpoint the trajectory's
state: the net being pruned (full widths, masked neurons), the masks, the importance running
averages and the current window, the VIB gates, the Adam state, the minibatch stream and the
global torch RNG, plus counters and the curve so far. Resuming from it continues the schedule
exactly as if it had not stopped (same minibatches, same removals), on the same machine.

This module only converts; the run folder code writes ``tensors`` with safetensors, ``meta``
as JSON and ``net`` as an export zip.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from pam_explorer.merge.merged_net import MergedNet

GroupId = tuple[str, str]


@dataclass
class ScheduleState:
    """net: the trajectory net (no hooks); tensors: {name: CPU tensor}; meta: JSON-able."""

    net: MergedNet
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def group_tensors(prefix: str, values: Mapping[GroupId, torch.Tensor]) -> dict[str, torch.Tensor]:
    """{"prefix/layer/key": tensor} of per-group tensors (copied to the CPU, contiguous)."""
    return {f"{prefix}/{layer}/{key}": v.detach().cpu().contiguous() for (layer, key), v in values.items()}


def read_groups(prefix: str, tensors: Mapping[str, torch.Tensor], device: torch.device
                ) -> dict[GroupId, torch.Tensor]:
    """Inverse of :func:`group_tensors` (layer names hold no "/"; keys are task subsets)."""
    out = {}
    for name, v in tensors.items():
        if name.startswith(prefix + "/"):
            layer, key = name[len(prefix) + 1:].rsplit("/", 1)
            out[(layer, key)] = v.to(device)
    return out


def optimizer_state(optim: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """(tensors "optim/<param index>/<name>", param_groups as JSON) of an optimiser."""
    sd = optim.state_dict()
    tensors = {}
    for i, st in sd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"optim/{i}/{k}"] = t.detach().cpu().contiguous()
    return tensors, sd["param_groups"]


def load_optimizer(optim: torch.optim.Optimizer, tensors: Mapping[str, torch.Tensor],
                   groups: list[dict]) -> None:
    """Restore :func:`optimizer_state` into ``optim`` (built on the same parameter list)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        if name.startswith("optim/"):
            _, i, k = name.split("/", 2)
            state.setdefault(int(i), {})[k] = v
    optim.load_state_dict({"state": state, "param_groups": groups})


def stream_state(gen: torch.Generator, queue: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """A minibatch stream's generator and pending batches as tensors."""
    lengths = torch.tensor([q.numel() for q in queue], dtype=torch.int64)
    flat = torch.cat([q.cpu() for q in queue]) if queue else torch.zeros(0, dtype=torch.int64)
    return {"stream/gen": gen.get_state(), "stream/queue": flat, "stream/lengths": lengths}


def load_stream(gen: torch.Generator, tensors: Mapping[str, torch.Tensor]) -> list[torch.Tensor]:
    """Restore the generator in place; return the pending batches."""
    gen.set_state(tensors["stream/gen"])
    flat, lengths = tensors["stream/queue"], tensors["stream/lengths"].tolist()
    return list(flat.split(lengths)) if lengths else []


__all__ = ["ScheduleState", "group_tensors", "read_groups", "optimizer_state", "load_optimizer",
           "stream_state", "load_stream"]
