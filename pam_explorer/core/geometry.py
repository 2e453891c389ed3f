"""Geometry of a (merged) network: layers, groups, connectivity and head layers, as plain data.

The :class:`NetGeometry` (layer kinds, kernels, conv output sizes, flatten factors, head sizes)
plus the group widths ``{layer: {key: n}}`` describe a merged network completely; group
connectivity follows from the keys alone: group tau2 at layer i reads every group tau1 ⊇ tau2 of
layer i-1 (layer 0 reads the image), and the head of task t reads every group of its head layer
containing t. Cost, merge, pruning and export all read this module; it imports none of them.

Networks of different depth: each task's head reads its own head layer (``NetGeometry.head_layers``),
and the groups of the later layers never contain it.

Coupled layers (residual networks, PAM Sec. 5.3; docs/residual.md). A *module layer* (one
``LayerGeometry``: a conv/fc core and its per-neuron ops, one module per group) may read any
earlier module layer's value (``source``), add another one's value channel-wise (``add``, an
identity shortcut) and apply parameter-free ops after the addition (``post``, e.g. ReLU). Module
layers whose channels are tied by additions share one *neuron layer* (``grouping``): one set of
groups, one set of widths, regrouped and pruned together (Torch-Pruning's coupled channels).
Widths are keyed by neuron layer; group tau of a module layer reads the groups tau1 ⊇ tau of the
neuron layer of its source, and the addition joins group tau to group tau of the same neuron
layer (tau ⊆ tau), so the connectivity rule holds on every edge. A chain network is the special
case where every module layer is its own neuron layer and reads the previous one.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pam_explorer.core.errors import StructureError
from pam_explorer.core.subsets import connected, parse_key, subset_key, subset_masks

# (module class name in torch.nn, ((constructor argument, value), ...)) of a per-neuron op
FollowerSpec = tuple[str, tuple[tuple[str, Any], ...]]
Widths = Mapping[str, Mapping[str, int]]


@dataclass(frozen=True)
class LayerGeometry:
    """Everything about one neuron layer except its group widths.

    kind: "conv" | "fc". kernel/stride/dilation are (1, 1) and padding (0, 0) for fc.
    conv_out_hw: spatial size of the conv output before the per-neuron ops (None for fc).
    out_hw: spatial size after the per-neuron ops, e.g. pooling (None for fc).
    in_factor: input features per input neuron: H*W of the previous conv layer's output for an
    fc layer reading a conv layer (channel-major flatten), H*W of the image for an fc first
    layer (its input neurons are the image channels), else 1.
    follower_params: parameters per neuron in the per-neuron ops (2 for affine BatchNorm).
    Wiring (residual nets; the defaults are the chain): source, the module layer whose value this
    layer reads ("" = the previous layer, or the image for the first; None = the image); grouping,
    the neuron layer its channels belong to ("" = its own name); add, the module layer whose value
    (same grouping) is added to the group outputs ("" = none); post, parameter-free per-neuron ops
    applied after the addition. out_hw is the spatial size of the value after post.
    """

    name: str
    kind: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int] | str
    dilation: tuple[int, int]
    conv_out_hw: tuple[int, int] | None
    out_hw: tuple[int, int] | None
    in_factor: int
    bias: bool
    followers: tuple[FollowerSpec, ...]
    follower_params: int
    source: str | None = ""
    grouping: str = ""
    add: str = ""
    post: tuple[FollowerSpec, ...] = ()

    @property
    def wired(self) -> bool:
        """True when some wiring field differs from the chain default."""
        return (self.source, self.grouping, self.add, self.post) != ("", "", "", ())

    @property
    def macs_per_connection(self) -> int:
        """Multiply-accumulates per (input neuron, output neuron) pair, for one sample."""
        if self.kind == "conv":
            assert self.conv_out_hw is not None
            return self.kernel[0] * self.kernel[1] * self.conv_out_hw[0] * self.conv_out_hw[1]
        return self.in_factor

    @property
    def params_per_connection(self) -> int:
        """Weights per (input neuron, output neuron) pair."""
        return self.kernel[0] * self.kernel[1] if self.kind == "conv" else self.in_factor


@dataclass(frozen=True)
class NetGeometry:
    """Geometry of a merged network: tasks, input, layers in forward order, heads.

    head_layers: per task (task order), the layer its head reads: the task's own last layer.
    Networks of different depth (PAM Sec. 5.1 step 3) give a shallower task an earlier head
    layer; the layers after it do not exist for that task. None (the default, and what geometries
    saved before depth could differ hold) means every head reads the last layer; it is normalised
    to the explicit tuple, so equal geometries compare equal either way.
    """

    tasks: tuple[str, ...]
    in_channels: int
    image_size: int
    layers: tuple[LayerGeometry, ...]
    head_outputs: tuple[int, ...]  # per task, in task order
    head_in_factor: int  # H*W of the last layer's output if it is conv, else 1
    head_bias: bool
    head_layers: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        names = self.layer_names
        heads = tuple(self.head_layers) if self.head_layers is not None else (
            (names[-1],) * len(self.tasks) if names else ())
        if names and (len(heads) != len(self.tasks) or any(h not in names for h in heads)):
            raise StructureError(f"head_layers must name one layer of {names} per task {list(self.tasks)}, "
                                 f"got {list(heads)}")
        object.__setattr__(self, "head_layers", heads)  # frozen: normalise once, here
        object.__setattr__(self, "_wiring", _wiring(self.layers))  # not a field: derived, cached

    @property
    def layer_names(self) -> list[str]:
        """Module layers in forward order (for a chain net also its neuron layers)."""
        return [lg.name for lg in self.layers]

    @property
    def kind(self) -> str:
        """"residual" if some layer is wired other than a chain, else "chain"."""
        return "residual" if any(lg.wired for lg in self.layers) else "chain"

    @property
    def neuron_layers(self) -> list[str]:
        """Neuron layers (groupings: what is regrouped, pruned and given widths), in the order of
        their first module layer."""
        return list(self._wiring.members)

    def members(self, neuron_layer: str) -> list[str]:
        """Module layers of a neuron layer in forward order (more than one: coupled layers)."""
        return list(self._wiring.members[neuron_layer])

    def grouping_of(self, layer: str) -> str:
        """Neuron layer of a module layer (a neuron layer's name maps to itself)."""
        return layer if layer in self._wiring.members else self._wiring.grouping[layer]

    def source_of(self, layer: str) -> str | None:
        """Module layer whose value ``layer`` reads; None for the image."""
        return self._wiring.source[layer]

    def input_of(self, layer: str) -> str | None:
        """Neuron layer whose groups module layer ``layer`` reads; None for the image."""
        src = self._wiring.source[layer]
        return None if src is None else self._wiring.grouping[src]

    def readers_of(self, layer: str) -> list[str]:
        """Module layers reading the value of module layer ``layer``, in forward order."""
        return [lg.name for lg in self.layers if self._wiring.source[lg.name] == layer]

    def head_layer(self, task: str) -> str:
        """Name of the layer the head of ``task`` reads (its own last layer)."""
        return self.head_layers[self.tasks.index(task)]

    def head_factor(self, task: str) -> int:
        """Input features of ``task``'s head per neuron of its head layer (channel-major flatten)."""
        name = self.head_layer(task)
        if name == self.layers[-1].name:
            return self.head_in_factor
        lg = self.layers[self.layer_names.index(name)]
        return lg.out_hw[0] * lg.out_hw[1] if lg.kind == "conv" and lg.out_hw else 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description; ``head_layers`` only when some head reads an earlier layer,
        so same-depth geometries serialise exactly as before the field existed."""
        out = dataclasses.asdict(self)
        if all(h == self.layers[-1].name for h in self.head_layers):  # () when there are no layers
            del out["head_layers"]
        for lg, raw in zip(self.layers, out["layers"]):
            if not lg.wired:  # chain layers serialise exactly as before the wiring existed
                for name in ("source", "grouping", "add", "post"):
                    del raw[name]
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> NetGeometry:
        """Inverse of :meth:`to_dict`, also after a JSON round trip (lists become tuples); a
        description without ``head_layers`` means every head reads the last layer."""
        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
        layers = tuple(LayerGeometry(**{k: tup(v) for k, v in lg.items()}) for lg in raw["layers"])
        return cls(layers=layers, **{k: tup(v) for k, v in raw.items() if k != "layers"})



@dataclass(frozen=True)
class _Wiring:
    """Resolved wiring of a geometry's module layers (see LayerGeometry)."""

    source: dict[str, str | None]  # module layer -> module layer it reads (None: the image)
    grouping: dict[str, str]  # module layer -> neuron layer
    members: dict[str, tuple[str, ...]]  # neuron layer -> module layers, in order of first member


def _wiring(layers: Sequence[LayerGeometry]) -> _Wiring:
    """Resolve sources and groupings; StructureError for a source or addition that is not an
    earlier layer, or an addition across neuron layers (the channels would not be tied)."""
    source: dict[str, str | None] = {}
    grouping: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for i, lg in enumerate(layers):
        src = (layers[i - 1].name if i else None) if lg.source == "" else lg.source
        for what, ref in (("source", src), ("add", lg.add or None)):
            if ref is not None and ref not in source:
                raise StructureError(f"layer {lg.name!r}: {what} {ref!r} is not an earlier layer")
        source[lg.name] = src
        grouping[lg.name] = lg.grouping or lg.name
        if lg.add and grouping[lg.add] != grouping[lg.name]:
            raise StructureError(f"layer {lg.name!r} (neuron layer {grouping[lg.name]!r}) adds layer "
                                 f"{lg.add!r} of another neuron layer {grouping[lg.add]!r}; an addition "
                                 "ties channels, so both must be one neuron layer")
        members.setdefault(grouping[lg.name], []).append(lg.name)
    clash = sorted(n for n in members if n in grouping and grouping[n] != n)
    if clash:
        raise StructureError(f"neuron layer name(s) {clash} are also names of module layers of other "
                             "neuron layers")
    return _Wiring(source, grouping, {k: tuple(v) for k, v in members.items()})


class CostedNet(Protocol):
    """What the cost model reads of a network (MergedNet satisfies it)."""

    geometry: NetGeometry
    tasks: tuple[str, ...]

    def group_widths(self) -> dict[str, dict[str, int]]: ...


# --------------------------------------------------------------------------- structure
HeadLayers = Mapping[str, str] | Sequence[str]  # {task: layer} or one layer per task in task order


def _head_indices(tasks: Sequence[str], layer_names: Sequence[str], head_layers: HeadLayers | None
                  ) -> list[int]:
    """Index in ``layer_names`` of each task's head layer (None: the last layer for all)."""
    if head_layers is None:
        return [len(layer_names) - 1] * len(tasks)
    per_task = [head_layers.get(t) for t in tasks] if isinstance(head_layers, Mapping) else list(head_layers)
    if len(per_task) != len(tasks) or any(h not in layer_names for h in per_task):
        raise StructureError(f"head_layers must name one layer of {list(layer_names)} per task "
                             f"{list(tasks)}, got {head_layers!r}")
    return [list(layer_names).index(h) for h in per_task]


def check_structure(tasks: Sequence[str], layer_names: Sequence[str], widths: Widths,
                    head_layers: HeadLayers | None = None) -> None:
    """StructureError unless every non-empty group has a non-empty input group and every task's
    head reads a non-empty group of its head layer (together: every task keeps a path to the
    input), and no group of a layer after a task's head layer contains that task.

    head_layers: the layer each task's head reads ({task: layer} or one name per task, e.g.
    ``net.head_layers`` / ``geometry.head_layers``); None means the last layer for every task,
    which is wrong for a merged net of networks of different depth.
    """
    masks = subset_masks(tasks)
    heads = _head_indices(tasks, layer_names, head_layers)
    for i, layer in enumerate(layer_names):
        if layer not in widths:
            raise StructureError(f"no group widths given for layer {layer!r}")
        _check_depth(tasks, layer_names, heads, i, widths[layer])
        if i == 0:
            continue  # the first layer reads the image, which every task has
        prev = widths[layer_names[i - 1]]
        for key, n in widths[layer].items():
            m = masks[key]
            if n > 0 and not any(w > 0 for k, w in prev.items() if connected(masks[k], m)):
                raise StructureError(
                    f"layer {layer!r}, group {key!r}: has {n} neuron(s) but no non-empty input group "
                    f"(it reads only groups of layer {layer_names[i - 1]!r} whose tasks include all of "
                    f"{key!r}; non-empty there: {[k for k, w in prev.items() if w > 0]}). Move these "
                    f"neurons to a group with fewer tasks, or keep neurons in a superset group.")
    for j, t in enumerate(tasks):
        at = widths[layer_names[heads[j]]]
        if not any(w > 0 for k, w in at.items() if masks[k] >> j & 1):
            raise StructureError(f"task {t!r}: its head reads no non-empty group of layer "
                                 f"{layer_names[heads[j]]!r} (groups there: {dict(at)}); "
                                 "the task has no path")


def _check_depth(tasks: Sequence[str], layer_names: Sequence[str], heads: Sequence[int], i: int,
                 groups: Mapping[str, int]) -> None:
    """No group of layer i (empty or not) names a task whose head reads an earlier layer."""
    for key in groups:
        ended = [t for t in parse_key(key, tasks) if heads[tasks.index(t)] < i]
        if ended:
            raise StructureError(
                f"layer {layer_names[i]!r}, group {key!r}: task(s) {ended} end before this layer "
                f"(their heads read layer(s) {[layer_names[heads[tasks.index(t)]] for t in ended]}); "
                f"a group may name only tasks whose network has this layer")


def check_widths(geometry: NetGeometry, widths: Widths) -> None:
    """:func:`check_structure` for any geometry: the chain rule on a chain net; on a wired one,
    every non-empty group of every module layer needs a non-empty group tau1 ⊇ tau in the neuron
    layer it reads, and every head a non-empty group of its neuron layer containing its task."""
    if geometry.kind == "chain":
        check_structure(geometry.tasks, geometry.layer_names, widths, head_layers=geometry.head_layers)
        return
    masks = subset_masks(geometry.tasks)
    missing = [n for n in geometry.neuron_layers if n not in widths]
    if missing:
        raise StructureError(f"no group widths given for neuron layer(s) {missing}")
    for lg in geometry.layers:
        inp = geometry.input_of(lg.name)
        if inp is None:
            continue  # reads the image, which every task has
        for key, n in widths[geometry.grouping_of(lg.name)].items():
            m = masks[key]
            if n > 0 and not any(w > 0 for k, w in widths[inp].items() if connected(masks[k], m)):
                raise StructureError(
                    f"layer {lg.name!r} (neuron layer {geometry.grouping_of(lg.name)!r}), group {key!r}: "
                    f"has {n} neuron(s) but no non-empty input group (it reads only groups of neuron "
                    f"layer {inp!r} whose tasks include all of {key!r}; non-empty there: "
                    f"{[k for k, w in widths[inp].items() if w > 0]}). Move these neurons to a group with "
                    "fewer tasks, or keep neurons in a superset group.")
    for j, t in enumerate(geometry.tasks):
        at = widths[geometry.grouping_of(geometry.head_layer(t))]
        if not any(w > 0 for k, w in at.items() if masks[k] >> j & 1):
            raise StructureError(f"task {t!r}: its head reads no non-empty group of neuron layer "
                                 f"{geometry.grouping_of(geometry.head_layer(t))!r} (groups there: "
                                 f"{dict(at)}); the task has no path")


def widths_of(geometry: NetGeometry, grouping: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """{neuron layer: {key: width}} from a grouping: per neuron layer (for a chain net: per layer)
    an object with ``.groups`` or a mapping key -> neuron ids (or -> a count); keys are task-name
    tuples or "+"-joined names."""
    out: dict[str, dict[str, int]] = {}
    for name in geometry.neuron_layers:
        if name not in grouping:
            raise StructureError(f"grouping has no entry for layer {name!r}")
        entry = grouping[name]
        groups = getattr(entry, "groups", entry)
        out[name] = {subset_key(parse_key(k, geometry.tasks, where=f"layer {name!r}")):
                     (int(v) if isinstance(v, int) else len(v)) for k, v in groups.items()}
    return out



__all__ = ["FollowerSpec", "Widths", "HeadLayers", "LayerGeometry", "NetGeometry", "CostedNet",
           "check_structure", "check_widths", "widths_of"]
