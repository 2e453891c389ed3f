"""Fixed 0/1 gates on the neurons of a merged net: pruning by masking while training goes on.

The published schedules (Molchanov et al. 2019's Taylor gates, VIBNet's hard masks) remove a
neuron by multiplying its output by a gate g = 0 and keep training the same net with the same
optimiser; :class:`NeuronMasks` does that with forward hooks on every group output (after the
group's per-neuron ops: what its readers consume; every module layer of a coupled neuron layer).
A masked neuron then contributes exactly nothing, so removing it physically (:meth:`plan` +
``prune.base.apply_removal``) gives the same outputs with fewer FLOPs.

The hooks also give the gate gradient of every live neuron, dL/dg = sum over the batch and
spatial positions of a * dL/dy (a the group output, y = g * a; summed over the member module
layers of a coupled neuron layer), one task at a time (:meth:`take_gradients`), from which P2's
importance (g * dL/dg)^2 is computed without gate parameters.

Shapes: N samples, C neurons of a group, H x W positions.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import check_widths
from pam_explorer.merge.merged_net import MergedNet

GroupId = tuple[str, str]  # (neuron layer, key)


class NeuronMasks:
    """keep[(layer, key)]: (C,) bool for every non-empty group of ``net`` (all True at first).

    :meth:`attach` hooks ``net``; while attached, every group output is multiplied by its keep
    mask, and in recording mode the gate gradients of the current backward pass are summed into
    :attr:`grads` ((C,) per group) and the groups' activity (non-zero output) is noted.
    """

    def __init__(self, net: MergedNet) -> None:
        device = next(net.parameters()).device
        self.keep: dict[GroupId, torch.Tensor] = {
            (layer, key): torch.ones(w, dtype=torch.bool, device=device)
            for layer, ws in net.group_widths().items() for key, w in ws.items() if w > 0}
        self.recording = False
        self.grads: dict[GroupId, torch.Tensor] = {}
        self._handles: list = []

    # ----------------------------------------------------------------- hooks
    def attach(self, net: MergedNet) -> None:
        self.detach()
        for layer, key in self.keep:
            for member in net.members(layer):
                self._handles.append(net.groups[member][key].register_forward_hook(self._hook((layer, key))))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _hook(self, group: GroupId):
        def hook(_module, _inp, out: torch.Tensor) -> torch.Tensor:
            gate = self.keep[group].to(out.dtype).reshape(1, -1, *[1] * (out.dim() - 2))
            y = out * gate
            if self.recording and y.requires_grad:
                a = out.detach()
                y.register_hook(lambda grad: self._add_gradient(group, a, grad))
            return y
        return hook

    def _add_gradient(self, group: GroupId, a: torch.Tensor, grad: torch.Tensor) -> None:
        # dL/dg per neuron: sum over samples and positions of a * dL/dy; (N, C[, H, W]) -> (C,)
        c = (a * grad).sum(0)
        c = c.flatten(1).sum(1) if c.dim() > 1 else c
        self.grads[group] = self.grads[group] + c if group in self.grads else c

    def take_gradients(self) -> dict[GroupId, torch.Tensor]:
        """The gate gradients summed since the last call ((C,) per group reached by the
        backward pass), then cleared."""
        out, self.grads = self.grads, {}
        return out

    # ----------------------------------------------------------------- structure
    def widths(self, net: MergedNet) -> dict[str, dict[str, int]]:
        """Live widths {neuron layer: {key: kept neurons}} (empty groups included with 0)."""
        out = {layer: dict(ws) for layer, ws in net.group_widths().items()}
        for (layer, key), keep in self.keep.items():
            out[layer][key] = int(keep.sum())
        return out

    def live(self, group: GroupId) -> list[int]:
        return self.keep[group].nonzero().flatten().tolist()

    def mask(self, group: GroupId, positions: list[int]) -> None:
        self.keep[group][positions] = False

    def removable(self, net: MergedNet, widths: Mapping[str, dict[str, int]], group: GroupId) -> bool:
        """True when one more neuron of ``group`` can go: the group keeps one, or emptying it
        leaves every task and group a path to the input."""
        layer, key = group
        if widths[layer][key] > 1:
            return True
        if widths[layer][key] == 0:
            return False
        trial = {name: dict(ws) for name, ws in widths.items()}
        trial[layer][key] = 0
        try:
            check_widths(net.geometry, trial)
        except StructureError:
            return False
        return True

    def silent(self, net: MergedNet, group: GroupId) -> torch.Tensor:
        """(C,) bool: True for the neurons of ``group`` whose every outgoing weight to a live
        reader (a kept neuron of a next-layer group, or a head) is 0: removing them now changes no
        output. A neuron nobody live reads is silent too."""
        owners = {id(net.groups[m][k][0]): (net.geometry.grouping_of(m), k)
                  for m in net.module_layers for k in net.groups[m]}
        width = self.keep[group].numel()
        out = torch.ones(width, dtype=torch.bool, device=self.keep[group].device)
        for core, start, factor in net.reader_columns(*group):
            w = core.weight.detach()
            rows = self.keep.get(owners[id(core)]) if id(core) in owners else None
            if rows is not None:
                w = w[rows]
            if w.shape[0] == 0:  # every reader row is masked: nothing live reads through here
                continue
            cols = w[:, start:start + width * factor].reshape(w.shape[0], width, -1)
            out &= cols.abs().amax(dim=(0, 2)) == 0
        return out

    def plan(self) -> dict[GroupId, list[int]]:
        """{group: masked positions}: the physical removal that equals the masking."""
        return {g: (~k).nonzero().flatten().tolist() for g, k in self.keep.items() if not bool(k.all())}

    def state(self) -> dict[str, torch.Tensor]:
        return {f"keep/{layer}/{key}": k.cpu() for (layer, key), k in self.keep.items()}

    def load_state(self, tensors: Mapping[str, torch.Tensor]) -> None:
        for (layer, key), k in self.keep.items():
            k.copy_(tensors[f"keep/{layer}/{key}"].to(k.device))


__all__ = ["NeuronMasks", "GroupId"]
