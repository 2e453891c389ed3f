"""The merged multitask network: one module per (layer, task-subset group).

A group keyed ``tau`` (task names joined by "+" in task order, e.g. "A+B") at layer i reads the
concatenated outputs of the groups ``tau1 ⊇ tau`` of layer i-1 (layer 0 reads the image), in
the canonical subset order of :func:`pam_explorer.core.subsets.all_subsets` (by size, then task order).
The head of task t reads every group of its head layer (``geometry.head_layer(t)``: the last
layer, or for a merge of networks of different depth the task's own last layer) containing t;
later layers never contain t. Running a task subset executes only the groups whose key meets the
subset and stops after the deepest head layer it needs, so skipped groups cost nothing (real
skipped computation, not masking).

Residual nets (PAM Sec. 5.3, docs/residual.md) use the same class: the geometry's module layers
may read any earlier value and add one (an identity or downsample shortcut), and module layers
tied by an addition share one *neuron layer* (coupled layers): one set of groups, widths and
provenance, removed together. The public "layer" of the widths, provenance and surgery API
(``layer_names``, ``group_widths``, ``width``, ``remove_neurons``, ``reader_columns``) is the neuron
layer; ``groups`` holds one module per (module layer, key), and ``reads`` takes a module layer.
For a chain net the two notions coincide.

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
from pam_explorer.core.geometry import NetGeometry, check_widths
from pam_explorer.core.subsets import check_tasks, connected, parse_key, subset_masks
from pam_explorer.graph.followers import make_post_op
from pam_explorer.merge.fuse import FusedNet, fuse
from pam_explorer.merge.group_modules import group_width, make_core, make_group, slice_group_out, slice_inputs

Provenance = tuple[tuple[int, int], ...]


class MergedNet(nn.Module):
    """groups: module layer -> key -> Sequential(core, per-neuron ops); heads: task -> Linear.

    forward(x (N, C, H, W), tasks) -> {task: (N, L_t) logits} for the requested tasks only.
    """

    def __init__(self, geometry: NetGeometry, groups: Mapping[str, Mapping[str, nn.Sequential]],
                 heads: Mapping[str, nn.Linear],
                 provenance: Mapping[str, Mapping[str, Sequence[tuple[int, int]]]] | None = None) -> None:
        """Assemble a merged net from its modules, checking that they fit ``geometry``.

        groups: module layer -> group key ("A+B") -> Sequential(core Conv2d/Linear, per-neuron
        ops), a core's input columns being the groups it reads (:meth:`reads`) side by side in
        canonical key order; layers or keys left out have no group. heads: task -> Linear over
        the groups of its head layer that contain the task. provenance: neuron layer -> key ->
        per neuron (origin task index, index in that network's layer); None: (-1, position).
        StructureError (nothing built) when a key, width, path or input size does not fit.
        """
        super().__init__()
        self.geometry = geometry
        self.tasks: tuple[str, ...] = check_tasks(geometry.tasks)
        self._mask = subset_masks(self.tasks)  # key -> task bit mask, in canonical key order
        self.groups = _group_dict(geometry, groups, self._mask)
        self.heads = nn.ModuleDict({t: heads[t] for t in self.tasks})
        self._check_coupled()
        self._provenance = self._initial_provenance(provenance)
        self._wire()
        # the structure first: a group naming a task after its head layer gets the clear error
        check_widths(geometry, self.group_widths())
        self._check_shapes()

    def _initial_provenance(self, given: Mapping[str, Mapping[str, Sequence[tuple[int, int]]]] | None
                            ) -> dict[str, dict[str, Provenance]]:
        """Per neuron layer and key, the given provenance as int pairs, or (-1, position)."""
        out: dict[str, dict[str, Provenance]] = {}
        for layer, widths in self.group_widths().items():
            out[layer] = {key: tuple((-1, i) for i in range(w)) if given is None else
                          tuple((int(a), int(b)) for a, b in given.get(layer, {}).get(key, ()))
                          for key, w in widths.items()}
        return out

    def _wire(self) -> None:
        """What every group and head reads, the ops after additions and when values are freed;
        the keys never change (surgery only narrows groups), so this is computed once."""
        geo = self.geometry
        self._reads = {m: {k: [] if geo.input_of(m) is None else
                           self._supersets(geo.input_of(m), self._mask[k]) for k in self.groups[m]}
                       for m in geo.layer_names}
        self._head_reads = {t: [k for k in self._keys(geo.head_layer(t)) if self._mask[k] >> j & 1]
                            for j, t in enumerate(self.tasks)}
        # parameter-free ops after a shortcut's addition; not inplace, the summands may be kept
        self._post = {lg.name: nn.Sequential(*(make_post_op(spec) for spec in lg.post))
                      for lg in geo.layers if lg.post}
        self._last_use = _last_use(geo)

    # ----------------------------------------------------------------- queries
    @property
    def layer_names(self) -> list[str]:
        """Neuron layers (regrouped, pruned, given widths) in forward order; for a chain net its
        layers."""
        return self.geometry.neuron_layers

    @property
    def module_layers(self) -> list[str]:
        """Module layers (keys of ``groups``) in forward order; for a chain net its layers."""
        return self.geometry.layer_names

    @property
    def layer_kinds(self) -> dict[str, str]:
        return {lg.name: lg.kind for lg in self.geometry.layers}

    def members(self, layer: str) -> list[str]:
        """Module layers of a neuron layer (a module layer: those of its neuron layer); several
        for coupled layers (a residual stage stream), else one."""
        return self.geometry.members(self.geometry.grouping_of(layer))

    def _keys(self, layer: str) -> list[str]:
        """Group keys of a neuron layer (or of a module layer's neuron layer), canonical order."""
        return list(self.groups[self.members(layer)[0]])

    def width(self, layer: str, key: str) -> int:
        """Neurons of group ``key`` of a neuron layer (or of a module layer's neuron layer)."""
        return group_width(self.groups[self.members(layer)[0]][key])

    def group_widths(self) -> dict[str, dict[str, int]]:
        """{neuron layer: {key: number of neurons}} (empty groups included with 0)."""
        return {layer: {k: group_width(g) for k, g in self.groups[self.members(layer)[0]].items()}
                for layer in self.layer_names}

    def reads(self, layer: str, key: str) -> list[str]:
        """Keys of the groups that module layer ``layer``'s group ``key`` reads (of the neuron
        layer of the module layer it reads), in column order.

        Every present superset group is listed, empty ones too (they contribute no columns).
        A layer reading the image: [].
        """
        if layer not in self._reads:
            known = self.members(layer) if layer in self.layer_names else self.module_layers
            raise StructureError(f"{layer!r} is not a module layer; ask one of {known}")
        return list(self._reads[layer][key])

    def _supersets(self, layer: str, mask: int) -> list[str]:
        return [k for k in self._keys(layer) if connected(self._mask[k], mask)]

    @property
    def head_layers(self) -> dict[str, str]:
        """{task: name of the module layer its head reads} (the last unless depths differ)."""
        return dict(zip(self.tasks, self.geometry.head_layers))

    def head_reads(self, task: str) -> list[str]:
        """Keys of the groups of ``task``'s head layer read by its head, in column order."""
        return list(self._head_reads[task])

    def active_keys(self, tasks: Sequence[str] | None = None) -> dict[str, list[str]]:
        """{neuron layer: non-empty group keys executed when running ``tasks``} (in every module
        layer of the neuron layer)."""
        req = self._request_mask(tasks)
        return {layer: [k for k, w in ws.items() if self._mask[k] & req and w > 0]
                for layer, ws in self.group_widths().items()}

    def provenance(self, layer: str, key: str) -> Provenance:
        """Per neuron of the group: (origin task index, index in the origin network's layer)."""
        return self._provenance[self.geometry.grouping_of(layer)][key]

    def provenance_map(self) -> dict[str, dict[str, Provenance]]:
        return {layer: dict(d) for layer, d in self._provenance.items()}

    def task_counts(self) -> dict[str, int]:
        """{parameter name (as ``named_parameters()``): number of tasks whose subgraph uses it}:
        |tau| for the parameters of a group keyed tau, 1 for a head's; read off the module tree."""
        out: dict[str, int] = {}
        for layer, keyed in self.groups.items():
            for key, group in keyed.items():
                tasks = self._mask[key].bit_count()
                out.update((name, tasks) for name, _ in group.named_parameters(f"groups.{layer}.{key}"))
        for task, head in self.heads.items():
            out.update((name, 1) for name, _ in head.named_parameters(f"heads.{task}"))
        return out

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
        geo = self.geometry
        names = geo.layer_names
        wanted = [(j, t, names.index(geo.head_layers[j])) for j, t in enumerate(self.tasks) if req >> j & 1]
        feats: dict[str, torch.Tensor] = {}  # task -> (N, F_t) input of its head
        values: dict[str, dict[str, torch.Tensor]] = {}  # module layer -> key -> (N, C_k[, H, W])
        # no requested task has a layer after its deepest head layer: stop there
        for i, lg in enumerate(geo.layers[:max(h for _, _, h in wanted) + 1]):
            src = geo.source_of(lg.name)
            cur: dict[str, torch.Tensor] = {}
            for key, group in self.groups[lg.name].items():
                if not self._mask[key] & req or group_width(group) == 0:
                    continue  # not needed by the request, or nothing to compute
                # every superset of an active key is active, so all inputs are in ``values``
                if src is None:
                    inp = x.flatten(1) if lg.kind == "fc" else x
                else:
                    inp = self._gather(values[src], self._reads[lg.name][key], lg.kind == "fc")
                cur[key] = group(inp)
            if lg.add:  # the shortcut: group tau of one neuron layer plus group tau, channel-wise
                cur = {k: v + values[lg.add][k] for k, v in cur.items()}
            if lg.name in self._post:
                cur = {k: self._post[lg.name](v) for k, v in cur.items()}
            values[lg.name] = cur
            for _, t, h in wanted:
                if h == i:  # every group containing t is active, so all of them are in ``cur``
                    feats[t] = self._gather(cur, self._head_reads[t], True)
            for name in self._last_use[i]:  # a value nobody reads any more
                del values[name]
        return {t: self.heads[t](feats[t]) for _, t, _ in wanted}

    def subset_model(self, tasks: str | Sequence[str], layout: str = "dense") -> FusedNet:
        """The fused dense model of one task subset (:func:`pam_explorer.merge.fuse.fuse`):
        forward(x (N, C, H, W)) -> tuple of (N, L_t) logits in task order, no task argument."""
        return fuse(self, tasks, layout)

    # ----------------------------------------------------------------- surgery
    def remove_neurons(self, layer: str, key: str, keep: Sequence[int] | torch.Tensor,
                       check: bool = True) -> None:
        """Keep only the neurons ``keep`` (positions within the group, or a bool mask of its
        width) of group ``key`` of a neuron layer (a module layer names its neuron layer): shrinks
        the core, bias and per-neuron ops in every module layer of the neuron layer (coupled
        channels go together), and the input columns of every group and head reading one of them.
        Raises StructureError, leaving the net unchanged, if some group or task would lose its
        path to the input; ``check=False`` skips that check, for a batch of removals whose final
        widths the caller has checked (an intermediate state may be cut off).
        Modules are replaced, so optimisers and hooks on them must be re-created.
        """
        layer = self.geometry.grouping_of(layer) if layer in self.module_layers else layer
        if layer not in self.layer_names or key not in self._keys(layer):
            raise StructureError(f"no group {key!r} in layer {layer!r}")
        idx = self._keep_index(layer, key, keep)
        widths = self.group_widths()
        widths[layer][key] = int(idx.numel())
        if check:  # raises before any change
            check_widths(self.geometry, widths)
        readers = self._readers_with_offsets(layer, key)  # uses the old widths
        old = self.width(layer, key)
        for member in self.members(layer):
            self.groups[member][key] = slice_group_out(self.groups[member][key], idx)
        for container, name, offset, factor in readers:
            container[name] = slice_inputs(container[name], offset, factor, old, idx)
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
        reading group ``key`` of neuron layer ``layer``: the groups of every module layer reading
        one of its module layers (for a chain net: the next layer), and the heads of the tasks
        whose head layer is one of them (with different depths, a layer can have both)."""
        geo = self.geometry
        members = set(self.members(layer))
        pairs: list[tuple[nn.ModuleDict, str, list[str], int]] = []
        for lg in geo.layers:
            if geo.source_of(lg.name) in members:
                pairs += [(self.groups[lg.name], k, self._reads[lg.name][k], lg.in_factor)
                          for k in self.groups[lg.name] if key in self._reads[lg.name][k]]
        pairs += [(self.heads, t, self.head_reads(t), geo.head_factor(t)) for t in self.tasks
                  if geo.head_layer(t) in members and key in self.head_reads(t)]
        widths = self.group_widths()[layer]
        return [(c, n, sum(widths[k] for k in reads[:reads.index(key)]), f) for c, n, reads, f in pairs]

    def reader_columns(self, layer: str, key: str) -> list[tuple[nn.Module, int, int]]:
        """(core Conv2d/Linear, first input column, columns per neuron) of every module reading
        group (layer, key): next-layer groups and the heads whose head layer is ``layer``."""
        return [((c[n][0] if isinstance(c[n], nn.Sequential) else c[n]), offset * f, f)
                for c, n, offset, f in self._readers_with_offsets(layer, key)]

    # ----------------------------------------------------------------- checks
    def _check_coupled(self) -> None:
        """The module layers of one neuron layer have the same group keys and widths."""
        for layer in self.layer_names:
            first, *others = self.members(layer)
            want = {k: group_width(g) for k, g in self.groups[first].items()}
            for m in others:
                got = {k: group_width(g) for k, g in self.groups[m].items()}
                if got != want:
                    raise StructureError(f"coupled layers {first!r} and {m!r} (neuron layer {layer!r}) must "
                                         f"have the same groups; got {want} and {got}")

    def _check_shapes(self) -> None:
        """Every core's input size matches what it reads; heads and provenance agree."""
        geo = self.geometry
        for lg in geo.layers:
            inp = geo.input_of(lg.name)
            for key, group in self.groups[lg.name].items():
                core = group[0]
                want_kind = nn.Conv2d if lg.kind == "conv" else nn.Linear
                if not isinstance(core, want_kind):
                    raise StructureError(f"layer {lg.name!r} group {key!r}: core must be "
                                         f"{want_kind.__name__}")
                n_in = lg.in_factor * (geo.in_channels if inp is None else sum(
                    self.width(inp, k) for k in self.reads(lg.name, key)))
                got = core.in_channels if lg.kind == "conv" else core.in_features
                if got != n_in:
                    raise StructureError(f"layer {lg.name!r} group {key!r}: core reads {got} inputs, "
                                         f"its input groups provide {n_in}")
        for layer, ws in self.group_widths().items():
            for key, w in ws.items():
                if len(self._provenance[layer][key]) != w:
                    raise StructureError(f"layer {layer!r} group {key!r}: provenance length differs from "
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
        """An all-zero net of the given group widths ({neuron layer: {key: n}}), e.g. to
        ``load_state_dict`` into."""
        tasks = geometry.tasks
        check_widths(geometry, widths)
        masks = subset_masks(tasks)
        groups: dict[str, dict[str, nn.Sequential]] = {}
        for lg in geometry.layers:
            inp = geometry.input_of(lg.name)
            groups[lg.name] = {}
            for key, n in widths[geometry.grouping_of(lg.name)].items():
                parse_key(key, tasks, where=f"layer {lg.name!r}")
                n_in = lg.in_factor * (geometry.in_channels if inp is None else sum(
                    w for k, w in widths[inp].items() if connected(masks[k], masks[key])))
                groups[lg.name][key] = make_group(lg, n_in, n)
        heads = {t: make_core("fc", geometry.head_factor(t) * sum(
                     w for k, w in widths[geometry.grouping_of(geometry.head_layer(t))].items()
                     if masks[k] >> j & 1), n_out, bias=geometry.head_bias)
                 for j, (t, n_out) in enumerate(zip(tasks, geometry.head_outputs))}
        return cls(geometry, groups, heads, provenance)


def _group_dict(geometry: NetGeometry, groups: Mapping[str, Mapping[str, nn.Sequential]],
                masks: Mapping[str, int]) -> nn.ModuleDict:
    """groups as nested ModuleDicts, every module layer present, keys in canonical order;
    StructureError naming an unknown layer or a malformed key."""
    extra = sorted(set(groups) - set(geometry.layer_names))
    if extra:
        raise StructureError(f"groups given for unknown layer(s) {extra}; layers are {geometry.layer_names}")
    out = nn.ModuleDict()
    for lg in geometry.layers:
        given = groups.get(lg.name, {})
        for key in given:
            if not isinstance(key, str) or key not in masks:
                parse_key(key, geometry.tasks, where=f"layer {lg.name!r}")
                raise StructureError(f"layer {lg.name!r}: group key {key!r} must be a '+'-joined string")
        out[lg.name] = nn.ModuleDict({k: given[k] for k in masks if k in given})
    return out


def _last_use(geometry: NetGeometry) -> list[list[str]]:
    """Per module layer index i: the values no layer after i reads or adds (forward frees them)."""
    last = {lg.name: i for i, lg in enumerate(geometry.layers)}
    for i, lg in enumerate(geometry.layers):
        for ref in (geometry.source_of(lg.name), lg.add or None):
            if ref is not None:
                last[ref] = max(last[ref], i)
    out: list[list[str]] = [[] for _ in geometry.layers]
    for name, i in last.items():
        out[i].append(name)
    return out
