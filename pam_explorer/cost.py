"""Cost model: FLOPs and parameters of every task subset, computed analytically; measured latency.

The analytic model needs no built network, only a *skeleton*: the :class:`NetGeometry` (layer kinds,
kernels, conv output sizes, flatten factors, head sizes) plus the group widths
``{layer: {key: n}}``. Group connectivity follows from the keys alone (group tau2 at layer i reads
every group tau1 ⊇ tau2 of layer i-1), so costs at any alpha are a few hundred integer operations
(:func:`predicted_costs`, fast enough for a dashboard slider).

What is counted, per executed (non-empty) group and head, for one sample:

* FLOPs = 2 x MACs of the conv/linear cores, including zero-initialised new connections (they are
  physically computed). Bias adds, BatchNorm, ReLU and pooling are not counted, matching
  ``torch.utils.flop_counter.FlopCounterMode``.
* params = core weights + core biases + per-neuron op parameters (affine BatchNorm weight and bias)
  + head weights and biases of the executed tasks. Buffers (BN running stats) are not counted.

Networks of different depth: each task's head reads its own head layer (``NetGeometry.head_layers``),
and the groups of the later layers never contain it, so a subset's cost is exactly the layers its
tasks have.

The skeleton types (subset naming, geometry, structure check) live here because both the merged
network and the cost model are built on them.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch

if TYPE_CHECKING:  # pragma: no cover
    from pam_explorer.merged_net import MergedNet

# (module class name in torch.nn, ((constructor argument, value), ...)) of a per-neuron op
FollowerSpec = tuple[str, tuple[tuple[str, Any], ...]]
Widths = Mapping[str, Mapping[str, int]]


# --------------------------------------------------------------------------- subset naming
def subset_key(subset: Sequence[str]) -> str:
    """Name of a task subset: the task names joined by "+" (a CLI contract)."""
    return "+".join(subset)


def all_subsets(tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of ``tasks`` in canonical order: by size, then task order.

    (A, B) -> A, B, A+B;  (A, B, C) -> A, B, C, A+B, A+C, B+C, A+B+C.
    """
    return [c for r in range(1, len(tasks) + 1) for c in combinations(tuple(tasks), r)]


def subset_masks(tasks: Sequence[str]) -> dict[str, int]:
    """{subset name: bit mask with bit j set for tasks[j]} in canonical order."""
    return {subset_key(s): sum(1 << tasks.index(t) for t in s) for s in all_subsets(tasks)}


def parse_key(key: str | Sequence[str], tasks: Sequence[str], where: str = "") -> tuple[str, ...]:
    """A group key ("A+B" or ("A", "B")) as a tuple of task names; ValueError if malformed."""
    tasks = tuple(tasks)
    names = tuple(key.split("+")) if isinstance(key, str) else tuple(key)
    prefix = f"{where}: " if where else ""
    if not names or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"{prefix}group key {key!r} must be a non-empty subset of tasks {list(tasks)}")
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise ValueError(f"{prefix}group key {key!r} names unknown task(s) {unknown}; "
                         f"tasks are {list(tasks)}")
    order = [tasks.index(n) for n in names]
    if len(set(order)) != len(order) or order != sorted(order):
        fixed = subset_key(sorted(set(names), key=tasks.index))
        raise ValueError(f"{prefix}group key {key!r} must list distinct tasks in task order "
                         f"{list(tasks)}, e.g. {fixed!r}")
    return names


# --------------------------------------------------------------------------- geometry
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
            raise ValueError(f"head_layers must name one layer of {names} per task {list(self.tasks)}, "
                             f"got {list(heads)}")
        object.__setattr__(self, "head_layers", heads)  # frozen: normalise once, here

    @property
    def layer_names(self) -> list[str]:
        return [lg.name for lg in self.layers]

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
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> "NetGeometry":
        """Inverse of :meth:`to_dict`, also after a JSON round trip (lists become tuples); a
        description without ``head_layers`` means every head reads the last layer."""
        def tup(v: Any) -> Any:
            return tuple(tup(x) for x in v) if isinstance(v, (list, tuple)) else v
        layers = tuple(LayerGeometry(**{k: tup(v) for k, v in lg.items()}) for lg in raw["layers"])
        return cls(layers=layers, **{k: tup(v) for k, v in raw.items() if k != "layers"})


# --------------------------------------------------------------------------- structure
HeadLayers = Mapping[str, str] | Sequence[str]  # {task: layer} or one layer per task in task order


def _head_indices(tasks: Sequence[str], layer_names: Sequence[str], head_layers: HeadLayers | None
                  ) -> list[int]:
    """Index in ``layer_names`` of each task's head layer (None: the last layer for all)."""
    if head_layers is None:
        return [len(layer_names) - 1] * len(tasks)
    per_task = [head_layers.get(t) for t in tasks] if isinstance(head_layers, Mapping) else list(head_layers)
    if len(per_task) != len(tasks) or any(h not in layer_names for h in per_task):
        raise ValueError(f"head_layers must name one layer of {list(layer_names)} per task "
                         f"{list(tasks)}, got {head_layers!r}")
    return [list(layer_names).index(h) for h in per_task]


def check_structure(tasks: Sequence[str], layer_names: Sequence[str], widths: Widths,
                    head_layers: HeadLayers | None = None) -> None:
    """ValueError unless every non-empty group has a non-empty input group and every task's
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
            raise ValueError(f"no group widths given for layer {layer!r}")
        _check_depth(tasks, layer_names, heads, i, widths[layer])
        if i == 0:
            continue  # the first layer reads the image, which every task has
        prev = widths[layer_names[i - 1]]
        for key, n in widths[layer].items():
            m = masks[key]
            if n > 0 and not any(w > 0 for k, w in prev.items() if masks[k] & m == m):
                raise ValueError(
                    f"layer {layer!r}, group {key!r}: has {n} neuron(s) but no non-empty input group "
                    f"(it reads only groups of layer {layer_names[i - 1]!r} whose tasks include all of "
                    f"{key!r}; non-empty there: {[k for k, w in prev.items() if w > 0]}). Move these "
                    f"neurons to a group with fewer tasks, or keep neurons in a superset group.")
    for j, t in enumerate(tasks):
        at = widths[layer_names[heads[j]]]
        if not any(w > 0 for k, w in at.items() if masks[k] >> j & 1):
            raise ValueError(f"task {t!r}: its head reads no non-empty group of layer "
                             f"{layer_names[heads[j]]!r} (groups there: {dict(at)}); the task has no path")


def _check_depth(tasks: Sequence[str], layer_names: Sequence[str], heads: Sequence[int], i: int,
                 groups: Mapping[str, int]) -> None:
    """No group of layer i (empty or not) names a task whose head reads an earlier layer."""
    for key in groups:
        ended = [t for t in parse_key(key, tasks) if heads[tasks.index(t)] < i]
        if ended:
            raise ValueError(
                f"layer {layer_names[i]!r}, group {key!r}: task(s) {ended} end before this layer "
                f"(their heads read layer(s) {[layer_names[heads[tasks.index(t)]] for t in ended]}); "
                f"a group may name only tasks whose network has this layer")


def widths_of(geometry: NetGeometry, grouping: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """{layer: {key: width}} from a grouping: per layer an object with ``.groups`` or a mapping
    key -> neuron ids (or -> a count); keys are task-name tuples or "+"-joined names."""
    out: dict[str, dict[str, int]] = {}
    for lg in geometry.layers:
        if lg.name not in grouping:
            raise ValueError(f"grouping has no entry for layer {lg.name!r}")
        entry = grouping[lg.name]
        groups = getattr(entry, "groups", entry)
        out[lg.name] = {subset_key(parse_key(k, geometry.tasks, where=f"layer {lg.name!r}")):
                        (int(v) if isinstance(v, int) else len(v)) for k, v in groups.items()}
    return out


# --------------------------------------------------------------------------- costs
def _cost_items(geometry: NetGeometry, widths: Widths) -> list[tuple[int, int, int]]:
    """(task mask that executes it, MACs, params) of every non-empty group and every head."""
    masks = subset_masks(geometry.tasks)
    items: list[tuple[int, int, int]] = []
    prev: Mapping[str, int] = {}
    for i, lg in enumerate(geometry.layers):
        for key, n in widths[lg.name].items():
            if n == 0:
                continue  # empty groups are skipped at run time
            m = masks[key]
            n_in = geometry.in_channels if i == 0 else sum(
                w for k, w in prev.items() if masks[k] & m == m)
            params = n * n_in * lg.params_per_connection + n * (int(lg.bias) + lg.follower_params)
            items.append((m, n * n_in * lg.macs_per_connection, params))
        prev = widths[lg.name]
    for j, (t, n_out) in enumerate(zip(geometry.tasks, geometry.head_outputs)):
        at = widths[geometry.head_layer(t)]  # the head reads its own (possibly earlier) layer
        n_in = geometry.head_factor(t) * sum(w for k, w in at.items() if masks[k] >> j & 1)
        items.append((1 << j, n_out * n_in, n_out * n_in + n_out * int(geometry.head_bias)))
    return items


def costs_from_widths(geometry: NetGeometry, widths: Widths) -> dict[str, dict[str, int]]:
    """{subset name: {"flops": int, "params": int}} for every non-empty task subset."""
    items = _cost_items(geometry, widths)
    out = {}
    for name, mask in subset_masks(geometry.tasks).items():
        run = [(macs, params) for m, macs, params in items if m & mask]
        out[name] = {"flops": 2 * sum(r[0] for r in run), "params": sum(r[1] for r in run)}
    return out


def predicted_costs(geometry: NetGeometry, grouping: Mapping[str, Any]) -> dict[str, int]:
    """{subset name: FLOPs} of the merged network a grouping would give, from group sizes only.

    Does not check the structure (a group without input still counts its compute), so it can be
    called on any slider position; :func:`check_structure` tells whether the net can be built.
    """
    return {k: v["flops"] for k, v in costs_from_widths(geometry, widths_of(geometry, grouping)).items()}


def subset_costs(net: "MergedNet") -> dict[str, dict[str, int]]:
    """{subset: {"flops", "params"}} of a merged network (B2 = a fully shared MergedNet)."""
    return costs_from_widths(net.geometry, net.group_widths())


def separate_costs(nets: Mapping[str, "MergedNet"]) -> dict[str, dict[str, int]]:
    """B1: the cost of a subset is the sum of its tasks' own networks (task order = mapping order)."""
    single = {}
    for task, net in nets.items():
        if task not in net.tasks:
            raise ValueError(f"the network given for task {task!r} has tasks {list(net.tasks)}")
        single[task] = subset_costs(net)[task]
    return {subset_key(s): {m: sum(single[t][m] for t in s) for m in ("flops", "params")}
            for s in all_subsets(list(nets))}


# --------------------------------------------------------------------------- gains
def _ratios(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> list[float]:
    if set(baseline) != set(scheme) or not baseline:
        raise ValueError(f"baseline and scheme must cost the same non-empty set of subsets; got "
                         f"{sorted(baseline)} and {sorted(scheme)}")
    bad = [k for k in scheme if not scheme[k] > 0]
    if bad:
        raise ValueError(f"scheme costs must be > 0; subsets {bad} are not")
    return [baseline[k] / scheme[k] for k in baseline]


def average_gain(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> float:
    """Mean over task subsets of baseline cost / scheme cost."""
    ratios = _ratios(baseline, scheme)
    return sum(ratios) / len(ratios)


def peak_gain(baseline: Mapping[str, float], scheme: Mapping[str, float]) -> float:
    """Max over task subsets of baseline cost / scheme cost."""
    return max(_ratios(baseline, scheme))


def expected_flops(costs: Mapping[str, float], probabilities: Mapping[str, float]) -> float:
    """sum_s p(s) * cost(s) for a user-given probability of each task combination.

    Subsets missing from ``probabilities`` have probability 0. ValueError if a probability is
    negative or not a number, names an unknown subset, or they do not sum to 1 (within 1e-6).
    """
    unknown = sorted(set(probabilities) - set(costs))
    if unknown:
        raise ValueError(f"probabilities name unknown subset(s) {unknown}; known: {list(costs)}")
    bad = {k: p for k, p in probabilities.items() if not (isinstance(p, (int, float)) and p >= 0)}
    if bad:
        raise ValueError(f"probabilities must be numbers >= 0; got {bad}")
    total = float(sum(probabilities.values()))
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"probabilities must sum to 1 (within 1e-6); they sum to {total:.8g}")
    return float(sum(p * costs[k] for k, p in probabilities.items()))


# --------------------------------------------------------------------------- latency
def measure_latency(net: "MergedNet", subsets: Sequence[str | Sequence[str]] | None = None,
                    input_shape: Sequence[int] | None = None, device: str | torch.device = "cpu",
                    min_run_time: float = 0.2) -> dict[str, float]:
    """{subset name: median seconds of one forward pass} (torch.utils.benchmark, no grad, eval).

    input_shape defaults to (1, C, S, S) of the network's geometry. The net is copied when it has
    to move to ``device``, so the caller's net is never moved; its train/eval mode is restored.
    """
    from torch.utils.benchmark import Timer

    from pam_explorer.device import resolve_device

    dev = resolve_device(device)
    geo = net.geometry
    shape = tuple(input_shape or (1, geo.in_channels, geo.image_size, geo.image_size))
    param = next(net.parameters(), None)
    model = net if param is None or param.device == dev else copy.deepcopy(net).to(dev)
    names = [subset_key(parse_key(s, net.tasks)) for s in subsets] if subsets is not None else \
        list(subset_masks(net.tasks))
    x = torch.randn(shape, device=dev)
    was_training = model.training
    model.eval()
    try:
        out = {}
        for name in names:
            def run(tasks: tuple[str, ...] = tuple(name.split("+"))) -> None:
                with torch.no_grad():
                    model(x, tasks)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
            timer = Timer(stmt="run()", globals={"run": run}, num_threads=torch.get_num_threads())
            out[name] = float(timer.blocked_autorange(min_run_time=min_run_time).median)
        return out
    finally:
        model.train(was_training)
