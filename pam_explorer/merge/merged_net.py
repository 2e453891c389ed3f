"""The merged multitask network: one module per (layer, task-subset group).

A group keyed ``tau`` (task names joined by "+" in task order, e.g. "A+B") at layer i reads the
concatenated outputs of the groups ``tau1 ⊇ tau`` of layer i-1 (layer 0 reads the image), in
the canonical subset order of :func:`pam_explorer.core.subsets.all_subsets` (by size, then task order).
The head of task t reads every group of its head layer (``geometry.head_layer(t)``: the last
layer, or for a merge of networks of different depth the task's own last layer) containing t;
later layers never contain t. Running a task subset executes only the groups whose key meets the
subset and stops after the deepest head layer it needs, so skipped groups cost nothing (real
skipped computation, not masking).

B1 (one MergedNet per task, K = 1), B2/MTZ (only the all-task group) and PAM all use this one
class, so pruning, cost and export have one code path. The architecture is fully described by a
JSON-able :class:`NetGeometry` plus the group widths, so :meth:`MergedNet.from_widths` can rebuild
an empty net for ``load_state_dict``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from pam_explorer.core.errors import StructureError
from pam_explorer.core.geometry import NetGeometry, check_structure
from pam_explorer.core.subsets import check_tasks, parse_key, subset_masks
from pam_explorer.merge.fuse import FusedNet, fuse
from pam_explorer.merge.group_modules import group_width, make_core, make_group, slice_group_out, slice_inputs

Provenance = tuple[tuple[int, int], ...]


class MergedNet(nn.Module):
    """groups: layer -> key -> Sequential(core, per-neuron ops); heads: task -> Linear.

    forward(x (N, C, H, W), tasks) -> {task: (N, L_t) logits} for the requested tasks only.
    """

    def __init__(self, geometry: NetGeometry, groups: Mapping[str, Mapping[str, nn.Sequential]],
                 heads: Mapping[str, nn.Linear],
                 provenance: Mapping[str, Mapping[str, Sequence[tuple[int, int]]]] | None = None) -> None:
        super().__init__()
        self.geometry = geometry
        self.tasks: tuple[str, ...] = check_tasks(geometry.tasks)
        self._mask = subset_masks(self.tasks)  # canonical key order, used for modules and columns
        extra = sorted(set(groups) - set(geometry.layer_names))
        if extra:
            raise StructureError(f"groups given for unknown layer(s) {extra}; layers are "
                                 f"{geometry.layer_names}")
        self.groups = nn.ModuleDict()
        for lg in geometry.layers:
            given = groups.get(lg.name, {})
            for key in given:
                if not isinstance(key, str) or key not in self._mask:
                    parse_key(key, self.tasks, where=f"layer {lg.name!r}")
                    raise StructureError(f"layer {lg.name!r}: group key {key!r} must be a '+'-joined string")
            self.groups[lg.name] = nn.ModuleDict({k: given[k] for k in self._mask if k in given})
        self.heads = nn.ModuleDict({t: heads[t] for t in self.tasks})
        # unknown provenance (e.g. a net rebuilt by from_widths without it) is (-1, position)
        self._provenance: dict[str, dict[str, Provenance]] = {
            layer: {k: tuple((int(a), int(b)) for a, b in provenance.get(layer, {}).get(k, ()))
                    if provenance is not None else tuple((-1, i) for i in range(group_width(g)))
                    for k, g in mods.items()} for layer, mods in self.groups.items()}
        # connectivity depends on the keys only, which never change: compute it once
        names = geometry.layer_names
        self._reads = {layer: {k: [] if i == 0 else self._supersets(names[i - 1], self._mask[k])
                               for k in self.groups[layer]} for i, layer in enumerate(names)}
        self._head_reads = {t: [k for k in self.groups[geometry.head_layer(t)] if self._mask[k] >> j & 1]
                            for j, t in enumerate(self.tasks)}
        # the structure first: a group naming a task after its head layer gets the clear error
        check_structure(self.tasks, self.layer_names, self.group_widths(), head_layers=self.head_layers)
        self._check_shapes()

    # ----------------------------------------------------------------- queries
    @property
    def layer_names(self) -> list[str]:
        return [lg.name for lg in self.geometry.layers]

    @property
    def layer_kinds(self) -> dict[str, str]:
        return {lg.name: lg.kind for lg in self.geometry.layers}

    def width(self, layer: str, key: str) -> int:
        return group_width(self.groups[layer][key])

    def group_widths(self) -> dict[str, dict[str, int]]:
        """{layer: {key: number of neurons}} (empty groups included with 0)."""
        return {layer: {k: group_width(g) for k, g in mods.items()} for layer, mods in self.groups.items()}

    def reads(self, layer: str, key: str) -> list[str]:
        """Keys of the previous layer's groups that (layer, key) reads, in column order.

        Every present superset group is listed, empty ones too (they contribute no columns).
        The first layer reads the image: [].
        """
        return list(self._reads[layer][key])

    def _supersets(self, layer: str, mask: int) -> list[str]:
        return [k for k in self.groups[layer] if self._mask[k] & mask == mask]

    @property
    def head_layers(self) -> dict[str, str]:
        """{task: name of the layer its head reads} (the last layer unless depths differ)."""
        return dict(zip(self.tasks, self.geometry.head_layers))

    def head_reads(self, task: str) -> list[str]:
        """Keys of the groups of ``task``'s head layer read by its head, in column order."""
        return list(self._head_reads[task])

    def active_keys(self, tasks: Sequence[str] | None = None) -> dict[str, list[str]]:
        """{layer: non-empty group keys executed when running ``tasks``}."""
        req = self._request_mask(tasks)
        return {layer: [k for k, g in mods.items() if self._mask[k] & req and group_width(g) > 0]
                for layer, mods in self.groups.items()}

    def provenance(self, layer: str, key: str) -> Provenance:
        """Per neuron of the group: (origin task index, index in the origin network's layer)."""
        return self._provenance[layer][key]

    def provenance_map(self) -> dict[str, dict[str, Provenance]]:
        return {layer: dict(d) for layer, d in self._provenance.items()}

    def task_count(self, param_name: str) -> int:
        """Number of tasks whose subgraph uses the parameter ``param_name`` (a key of
        named_parameters()): |tau| for a group keyed tau, 1 for a head."""
        parts = param_name.split(".")
        if parts[0] == "groups":
            return len(parts[2].split("+"))
        if parts[0] == "heads":
            return 1
        raise StructureError(f"{param_name!r} is not a parameter of a group or head")

    # ----------------------------------------------------------------- forward
    def _request_mask(self, tasks: Sequence[str] | None) -> int:
        if tasks is None:
            return (1 << len(self.tasks)) - 1
        if isinstance(tasks, str):
            tasks = parse_key(tasks, self.tasks) if "+" in tasks else (tasks,)
        unknown = [t for t in tasks if t not in self.tasks]
        if unknown or not tasks:
            raise StructureError(f"requested tasks {list(tasks)} must be a non-empty subset of "
                                 f"{list(self.tasks)}")
        return sum(1 << self.tasks.index(t) for t in tasks)

    @staticmethod
    def _gather(outs: Mapping[str, torch.Tensor], keys: Sequence[str], flatten: bool) -> torch.Tensor:
        # channel-major flatten of each group then concatenation == flatten of the concatenation
        xs = [outs[k].flatten(1) if flatten else outs[k] for k in keys if k in outs]
        return xs[0] if len(xs) == 1 else torch.cat(xs, dim=1)

    def forward(self, x: torch.Tensor, tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """x: (N, C, H, W) -> {task: (N, L_t)} for ``tasks`` (default all), in task order."""
        req = self._request_mask(tasks)
        names = self.layer_names
        wanted = [(j, t, names.index(self.geometry.head_layers[j])) for j, t in enumerate(self.tasks)
                  if req >> j & 1]
        feats: dict[str, torch.Tensor] = {}  # task -> (N, F_t) input of its head
        prev: dict[str, torch.Tensor] = {}
        # no requested task has a layer after its deepest head layer: stop there
        for i, lg in enumerate(self.geometry.layers[:max(h for _, _, h in wanted) + 1]):
            cur: dict[str, torch.Tensor] = {}
            for key, group in self.groups[lg.name].items():
                if not self._mask[key] & req or group_width(group) == 0:
                    continue  # not needed by the request, or nothing to compute
                # every superset of an active key is active, so all inputs are in ``prev``
                if i == 0:
                    inp = x.flatten(1) if lg.kind == "fc" else x
                else:
                    inp = self._gather(prev, self._reads[lg.name][key], lg.kind == "fc")
                cur[key] = group(inp)
            for _, t, h in wanted:
                if h == i:  # every group containing t is active, so all of them are in ``cur``
                    feats[t] = self._gather(cur, self._head_reads[t], True)
            prev = cur
        return {t: self.heads[t](feats[t]) for _, t, _ in wanted}

    def subset_model(self, tasks: str | Sequence[str], layout: str = "dense") -> FusedNet:
        """The fused dense model of one task subset (:func:`pam_explorer.merge.fuse.fuse`):
        forward(x (N, C, H, W)) -> tuple of (N, L_t) logits in task order, no task argument."""
        return fuse(self, tasks, layout)

    # ----------------------------------------------------------------- surgery
    def remove_neurons(self, layer: str, key: str, keep: Sequence[int] | torch.Tensor) -> None:
        """Keep only the neurons ``keep`` (positions within the group, or a bool mask of its
        width) of group (layer, key): shrinks its core, bias and per-neuron ops, and the input
        columns of every next-layer group and head that reads it. Raises StructureError, leaving
        the net unchanged, if some group or task would lose its path to the input.
        Modules are replaced, so optimisers and hooks on them must be re-created.
        """
        if layer not in self.groups or key not in self.groups[layer]:
            raise StructureError(f"no group {key!r} in layer {layer!r}")
        idx = self._keep_index(layer, key, keep)
        widths = self.group_widths()
        widths[layer][key] = int(idx.numel())
        # raises before any change
        check_structure(self.tasks, self.layer_names, widths, head_layers=self.head_layers)
        readers = self._readers_with_offsets(layer, key)  # uses the old widths
        group = self.groups[layer][key]
        self.groups[layer][key] = slice_group_out(group, idx)
        for container, name, offset, factor in readers:
            container[name] = slice_inputs(container[name], offset, factor, group_width(group), idx)
        prov = self._provenance[layer][key]
        self._provenance[layer][key] = tuple(prov[j] for j in idx.tolist())

    def _keep_index(self, layer: str, key: str, keep: Sequence[int] | torch.Tensor) -> torch.Tensor:
        width = self.width(layer, key)
        keep_t = torch.as_tensor(keep)
        if keep_t.dtype == torch.bool:
            if keep_t.shape != (width,):
                raise StructureError(f"layer {layer!r} group {key!r}: keep mask has shape "
                                     f"{tuple(keep_t.shape)}, expected ({width},)")
            return keep_t.nonzero().flatten()
        idx = keep_t.long().flatten()
        if idx.numel() and (idx.min() < 0 or idx.max() >= width or idx.unique().numel() != idx.numel()):
            raise StructureError(f"layer {layer!r} group {key!r}: keep indices must be distinct and in "
                                 f"[0, {width}), got {idx.tolist()}")
        return idx.sort().values

    def _readers_with_offsets(self, layer: str, key: str) -> list[tuple[nn.ModuleDict, str, int, int]]:
        """(container, name, column offset in neurons, columns per neuron) of every module
        reading (layer, key): the next layer's groups, and the heads of the tasks whose head
        layer this is (with different depths, a layer can have both)."""
        names = self.layer_names
        i = names.index(layer)
        pairs: list[tuple[nn.ModuleDict, str, list[str], int]] = []
        if i + 1 < len(names):
            nxt, factor = names[i + 1], self.geometry.layers[i + 1].in_factor
            pairs += [(self.groups[nxt], k, self.reads(nxt, k), factor) for k in self.groups[nxt]
                      if key in self.reads(nxt, k)]
        pairs += [(self.heads, t, self.head_reads(t), self.geometry.head_factor(t)) for t in self.tasks
                  if self.geometry.head_layer(t) == layer and key in self.head_reads(t)]
        widths = self.groups[layer]
        return [(c, n, sum(group_width(widths[k]) for k in reads[:reads.index(key)]), f)
                for c, n, reads, f in pairs]

    def reader_columns(self, layer: str, key: str) -> list[tuple[nn.Module, int, int]]:
        """(core Conv2d/Linear, first input column, columns per neuron) of every module reading
        group (layer, key): next-layer groups and the heads whose head layer is ``layer``."""
        return [((c[n][0] if isinstance(c[n], nn.Sequential) else c[n]), offset * f, f)
                for c, n, offset, f in self._readers_with_offsets(layer, key)]

    # ----------------------------------------------------------------- checks
    def _check_shapes(self) -> None:
        """Every core's input size matches what it reads; heads and provenance agree."""
        geo = self.geometry
        for i, lg in enumerate(geo.layers):
            for key, group in self.groups[lg.name].items():
                core = group[0]
                want_kind = nn.Conv2d if lg.kind == "conv" else nn.Linear
                if not isinstance(core, want_kind):
                    raise StructureError(f"layer {lg.name!r} group {key!r}: core must be "
                                         f"{want_kind.__name__}")
                n_in = lg.in_factor * (geo.in_channels if i == 0 else sum(
                    self.width(self.layer_names[i - 1], k) for k in self.reads(lg.name, key)))
                got = core.in_channels if lg.kind == "conv" else core.in_features
                if got != n_in:
                    raise StructureError(f"layer {lg.name!r} group {key!r}: core reads {got} inputs, "
                                         f"its input groups provide {n_in}")
                if len(self._provenance[lg.name][key]) != group_width(group):
                    raise StructureError(f"layer {lg.name!r} group {key!r}: provenance length differs from "
                                         "width")
        for t, n_out in zip(self.tasks, geo.head_outputs):
            at = geo.head_layer(t)
            n_in = geo.head_factor(t) * sum(self.width(at, k) for k in self.head_reads(t))
            head = self.heads[t]
            if (head.in_features, head.out_features) != (n_in, n_out):
                raise StructureError(f"head {t!r} is {head.in_features}->{head.out_features}, "
                                     f"expected {n_in}->{n_out}")

    # ----------------------------------------------------------------- builders
    @classmethod
    def from_widths(cls, geometry: NetGeometry, widths: Mapping[str, Mapping[str, int]],
                    provenance: Mapping[str, Mapping[str, Sequence[tuple[int, int]]]] | None = None
                    ) -> MergedNet:
        """An all-zero net of the given group widths (e.g. to ``load_state_dict`` into)."""
        tasks = geometry.tasks
        check_structure(tasks, geometry.layer_names, widths, head_layers=geometry.head_layers)
        masks = subset_masks(tasks)
        groups: dict[str, dict[str, nn.Sequential]] = {}
        prev: Mapping[str, int] = {}
        for i, lg in enumerate(geometry.layers):
            groups[lg.name] = {}
            for key, n in widths[lg.name].items():
                parse_key(key, tasks, where=f"layer {lg.name!r}")
                n_in = lg.in_factor * (geometry.in_channels if i == 0 else sum(
                    w for k, w in prev.items() if masks[k] & masks[key] == masks[key]))
                groups[lg.name][key] = make_group(lg, n_in, n)
            prev = widths[lg.name]
        heads = {t: make_core("fc", geometry.head_factor(t) * sum(
                     w for k, w in widths[geometry.head_layer(t)].items() if masks[k] >> j & 1),
                     n_out, bias=geometry.head_bias)
                 for j, (t, n_out) in enumerate(zip(tasks, geometry.head_outputs))}
        return cls(geometry, groups, heads, provenance)
