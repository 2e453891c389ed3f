"""Fused subset models: a plain network per task subset, built from a merged network, to deploy.

Dimension legend: N samples, C channels (conv) or units (fc) of a layer, H x W spatial size,
L_t labels of task t.

For a task subset S the *active* groups of a layer are its non-empty groups whose key meets S (what
``MergedNet.forward(x, S)`` executes), in the canonical subset order; the fused layer's channels are
those groups laid one after another in that order, and only the layers up to S's deepest head layer
exist. Two layouts:

* ``"dense"`` (default): per layer ONE Conv2d/Linear from all active channels of the previous layer
  to all active channels of this one. Block (tau2, tau1) of its weight holds group tau2's weights
  for its input group tau1 when tau2 reads tau1 (tau2 ⊆ tau1), else zeros; the per-neuron ops follow
  (BatchNorm parameters and statistics concatenated in the same order, ReLU, pooling). Fewest
  kernels, but it also multiplies the zero blocks of groups that do not read each other, so its FLOPs
  are :func:`pam_explorer.cost.analytic.fused_costs`, not the grouped ``subset_costs``
  (README, "Deployable subset models"; BENCHMARKS.md for what that costs in time).
* ``"exact"``: per layer one op per active group (a copy of that group's module) reading only its
  input groups; FLOPs equal ``subset_costs`` exactly, at the price of one kernel per group.

The head of task t (a copy of the merged net's) reads the columns of the groups of its head layer
that contain t. ``forward(x)`` takes no task argument and has no Python control flow on its input,
so ``torch.export``, the ONNX exporter and ``torch.compile`` trace it faithfully; it returns a
tuple of (N, L_t) logits in task order (``FusedNet.output_names``).

Residual nets (docs/residual.md): one fused layer per *module layer* (stem, each block's conv1,
downsample and conv2), its channels the active groups of its neuron layer. A layer reads the value
of its source module layer (``FusedNet.wiring``), and a block's conv2 adds its shortcut's value
(the block input or the downsample's output) and applies the block's ReLU (and the final pool)
after the addition, as ``MergedNet.forward`` does per group. The module layers of one neuron
layer run the same active groups in the same order, so the addition is channel-aligned in the
fused order. BatchNorm is kept, not folded into the convs: the fused block runs the same conv,
BN, ReLU and addition as the merged block on the same numbers (BN's statistics concatenated), so
the outputs match to rounding and the parameter count is the analytic one (BN weight and bias
count as parameters; folding would replace them by a conv bias). FLOPs do not depend on it
(FlopCounterMode counts neither BN nor bias adds); export runtimes fold BN themselves.
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from pam_explorer.core.errors import ConfigError, StructureError
from pam_explorer.core.subsets import subset_key, subset_masks
from pam_explorer.cost.latency import measure_models_latency
from pam_explorer.graph.followers import follower_spec, make_follower, make_post_op
from pam_explorer.merge.group_modules import make_core

LAYOUTS = ("dense", "exact")
Ranges = tuple[tuple[int, int], ...]  # [start, stop) column ranges, increasing
Wire = tuple[int, int]  # (layer whose value a layer reads, -1: the image; layer it adds, -1: none)


class FusedLayer(nn.Module):
    """Ops reading column ranges of one input: input (N, C_in[, H, W]) -> (N, C_out[, H', W']).

    ops[k] (a Sequential: core + per-neuron ops) reads ``reads[k]`` ((start, stop) ranges of the
    input's channels, after the flatten when ``flatten``; None: all of them); outputs are
    concatenated on the channel axis in op order. The structure is fixed at build time.
    """

    def __init__(self, ops: Sequence[nn.Module], reads: Sequence[Ranges | None], flatten: bool) -> None:
        super().__init__()
        self.ops = nn.ModuleList(ops)
        self.reads = [tuple(r) if r is not None else None for r in reads]
        self.flatten = flatten
        for k, r in enumerate(self.reads):  # several ranges: one gather by index
            if r is not None and len(r) > 1:
                idx = torch.cat([torch.arange(a, b) for a, b in r])
                self.register_buffer(f"index{k}", idx, persistent=False)

    def _select(self, x: torch.Tensor, k: int) -> torch.Tensor:
        r = self.reads[k]
        if r is None:
            return x
        if len(r) == 1:
            return x[:, r[0][0]:r[0][1]]
        return x.index_select(1, getattr(self, f"index{k}"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.flatten:
            x = x.flatten(1)  # channel-major, as the merged net flattens each group
        outs = [op(self._select(x, k)) for k, op in enumerate(self.ops)]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


class FusedNet(nn.Module):
    """The fused model of one task subset: layers in order, then one head per task of the subset.

    forward(x (N, C, H, W)) -> tuple of (N, L_t) logits, one per task of ``tasks`` in task order.
    ``head_at[j]``: index of the layer the j-th head reads. ``groups``: per layer, the active group
    keys in channel order with their widths (what the manifest of an export records).
    ``wiring[i]`` = (source, add): layer i reads the value of layer ``source`` (-1: the image)
    and adds the value of layer ``add`` (-1: nothing); then ``posts[str(i)]``, if present, runs
    on the sum. None: a chain, layer i reads layer i-1 and adds nothing.
    """

    def __init__(self, tasks: Sequence[str], layers: Sequence[FusedLayer], heads: Sequence[FusedLayer],
                 head_at: Sequence[int], groups: Sequence[Sequence[tuple[str, int]]], layout: str,
                 layer_names: Sequence[str], wiring: Sequence[Wire] | None = None,
                 posts: Mapping[int, nn.Module] | None = None) -> None:
        super().__init__()
        self.tasks = tuple(tasks)
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleList(heads)
        self.head_at = tuple(int(i) for i in head_at)
        self.groups = [list(g) for g in groups]
        self.layout = layout
        self.layer_names = list(layer_names)
        chain = [(i - 1, -1) for i in range(len(self.layers))]
        self.wiring = [(int(a), int(b)) for a, b in wiring] if wiring is not None else chain
        if len(self.wiring) != len(self.layers) or any(
                not -1 <= a < i or not -1 <= b < i for i, (a, b) in enumerate(self.wiring)):
            raise StructureError(f"fused net wiring {self.wiring} must give each of the {len(self.layers)} "
                                 "layers an earlier source (or -1, the image) and an earlier addend (or -1)")
        self.posts = nn.ModuleDict({str(i): m for i, m in (posts or {}).items()})
        self._free = _last_use(self.wiring, self.head_at)

    @property
    def subset(self) -> str:
        return subset_key(self.tasks)

    @property
    def output_names(self) -> list[str]:
        return [f"logits_{t}" for t in self.tasks]

    @property
    def wired(self) -> bool:
        """True for a residual net (some layer reads other than its predecessor, adds or posts)."""
        return bool(self.posts) or self.wiring != [(i - 1, -1) for i in range(len(self.layers))]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values: dict[int, torch.Tensor] = {}  # layer index -> (N, C_i[, H_i, W_i]) in fused order
        for i, layer in enumerate(self.layers):  # fixed modules and wiring: no control flow on x
            src, add = self.wiring[i]
            y = layer(x if src < 0 else values[src])
            if add >= 0:  # the shortcut: same active groups, same channel order
                y = y + values[add]
            if str(i) in self.posts:
                y = self.posts[str(i)](y)
            values[i] = y
            for j in self._free[i]:  # a value no later layer or head reads
                del values[j]
        return tuple(head(values[i]) for head, i in zip(self.heads, self.head_at))


def _last_use(wiring: Sequence[Wire], head_at: Sequence[int]) -> list[list[int]]:
    """Per layer i: the layer values that nothing after layer i reads, adds or feeds to a head."""
    last = {i: i for i in range(len(wiring))}
    for i, (src, add) in enumerate(wiring):
        for ref in (src, add):
            if ref >= 0:
                last[ref] = max(last[ref], i)
    for h in head_at:
        last[h] = len(wiring)  # kept to the end: the heads run last
    out: list[list[int]] = [[] for _ in wiring]
    for j, i in last.items():
        if i < len(wiring):
            out[i].append(j)
    return out


class SequentialNets(nn.Module):
    """Several fused models run one after the other on one input (B1: a subset's separate nets).

    forward(x) -> the concatenation of their output tuples (task order of ``nets``).
    """

    def __init__(self, nets: Sequence[FusedNet]) -> None:
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.tasks = tuple(t for n in nets for t in n.tasks)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(y for net in self.nets for y in net(x))


# --------------------------------------------------------------------------- building
def subset_tasks(net: Any, subset: str | Sequence[str]) -> tuple[str, ...]:
    """The tasks of ``subset`` ("A+B" or ("A", "B")) of ``net``; StructureError listing the valid
    subset names if it is not one."""
    valid = list(subset_masks(net.tasks))
    key = subset if isinstance(subset, str) else subset_key(tuple(subset))
    if key not in valid:
        raise StructureError(f"unknown task subset {key!r}; valid subsets: {', '.join(valid)}")
    return tuple(key.split("+"))


def fuse(net: Any, subset: str | Sequence[str], layout: str = "dense") -> FusedNet:
    """The fused model of ``net`` (a MergedNet, chain or residual) for ``subset``, in eval mode, on
    net's device: one fused layer per module layer up to the subset's deepest head layer.

    Its outputs equal ``net(x, subset)`` (same weights; only the summation order differs).
    Raises StructureError for an unknown subset, ConfigError for an unknown layout.
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"fuse: layout must be one of {list(LAYOUTS)}, got {layout!r}")
    tasks = subset_tasks(net, subset)
    geo, masks = net.geometry, subset_masks(net.tasks)
    req = masks[subset_key(tasks)]
    names = list(geo.layer_names)  # module layers
    head_at = [names.index(geo.head_layer(t)) for t in tasks]
    widths = net.group_widths()  # per neuron layer
    build = _dense_layer if layout == "dense" else _exact_layer
    layers, groups, wiring, posts = [], [], [], {}
    with torch.no_grad():
        for i, lg in enumerate(geo.layers[:max(head_at) + 1]):
            src = geo.source_of(lg.name)
            wiring.append((-1 if src is None else names.index(src), names.index(lg.add) if lg.add else -1))
            cur = [(k, w) for k, w in widths[geo.grouping_of(lg.name)].items() if w and masks[k] & req]
            layers.append(build(net, i, None if src is None else groups[wiring[-1][0]], cur))
            groups.append(cur)
            if lg.post:
                posts[i] = nn.Sequential(*(make_post_op(spec) for spec in lg.post))
        heads = [_head(net, t, groups[h], h) for t, h in zip(tasks, head_at)]
    device = next(net.parameters()).device  # index buffers are built on the CPU
    fused = FusedNet(tasks, layers, heads, head_at, groups, layout, names[:len(layers)], wiring, posts)
    return fused.to(device).eval()


def _offsets(active: Sequence[tuple[str, int]], factor: int = 1) -> dict[str, tuple[int, int]]:
    """{key: (first, stop) column of the group} in the fused channel order."""
    out, pos = {}, 0
    for k, w in active:
        out[k] = (pos * factor, (pos + w) * factor)
        pos += w
    return out


def _merge_ranges(ranges: Sequence[tuple[int, int]], total: int) -> Ranges | None:
    """Adjacent ranges joined; None when they cover [0, total)."""
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return None if out == [(0, total)] else tuple(out)


def _input_factor(net: Any, i: int) -> tuple[int, bool]:
    """(columns per input neuron of module layer i, whether its input is flattened first)."""
    geo = net.geometry
    lg = geo.layers[i]
    if lg.kind != "fc":
        return 1, False
    src = geo.source_of(lg.name)
    prev_conv = src is None or geo.layers[geo.layer_names.index(src)].kind == "conv"  # the image is a map
    return lg.in_factor, prev_conv


def _read_ranges(net: Any, i: int, key: str, prev: Sequence[tuple[str, int]]) -> Ranges | None:
    """Column ranges of the fused input of module layer i that its group ``key`` reads, in its own
    column order (canonical, like the fused order); None for all of them or for the image."""
    layer = net.geometry.layer_names[i]
    if net.geometry.source_of(layer) is None:
        return None
    factor, _ = _input_factor(net, i)
    pos = _offsets(prev, factor)
    total = sum(w for _, w in prev) * factor
    return _merge_ranges([pos[k] for k in net.reads(layer, key) if k in pos], total)


def _exact_layer(net: Any, i: int, prev: Sequence[tuple[str, int]] | None,
                 cur: Sequence[tuple[str, int]]) -> FusedLayer:
    """One op per active group: a copy of the group, reading only its input groups.

    prev: the active (key, width) of the value module layer i reads (None: the image); cur: its own."""
    layer = net.geometry.layer_names[i]
    ops = [copy.deepcopy(net.groups[layer][k]).eval() for k, _ in cur]
    reads = [_read_ranges(net, i, k, prev or []) for k, _ in cur]
    return FusedLayer(ops, reads, _input_factor(net, i)[1])


def _dense_layer(net: Any, i: int, prev: Sequence[tuple[str, int]] | None,
                 cur: Sequence[tuple[str, int]]) -> FusedLayer:
    """One core from every active channel of module layer i's input to every active channel of
    layer i (arguments as :func:`_exact_layer`); zeros where a group does not read a group."""
    geo = net.geometry
    lg = geo.layers[i]
    inp = geo.input_of(lg.name)  # neuron layer of the value it reads; None: the image
    factor, flatten = _input_factor(net, i)
    mods = [net.groups[lg.name][k] for k, _ in cur]
    ref = mods[0][0].weight
    n_in = geo.in_channels if prev is None else sum(w for _, w in prev)
    n_out = sum(w for _, w in cur)
    core = make_core(lg.kind, n_in * (factor if lg.kind == "fc" else 1), n_out, lg.kernel, lg.stride,
                     lg.padding, lg.dilation, lg.bias, ref.device, ref.dtype)
    rows = _offsets(cur)
    cols = _offsets(prev or [], factor)
    for (key, _), mod in zip(cur, mods):
        r0, r1 = rows[key]
        src = mod[0].weight
        if inp is None:
            core.weight[r0:r1] = src
        else:
            own = 0  # the group's own columns: its read groups in order, each width*factor wide
            for k in net.reads(lg.name, key):
                w = net.width(inp, k) * factor
                if w:
                    c0, c1 = cols[k]
                    core.weight[r0:r1, c0:c1] = src[:, own:own + w]
                    own += w
        if lg.bias:
            core.bias[r0:r1] = mod[0].bias
    followers = [_concat_follower([m[j] for m in mods], n_out) for j in range(1, len(mods[0]))]
    return FusedLayer([nn.Sequential(core, *followers).eval()], [None], flatten)


def _concat_follower(parts: Sequence[nn.Module], width: int) -> nn.Module:
    """One per-neuron op over the concatenated groups: BatchNorm state concatenated in order,
    any other op (ReLU, pooling, dropout) copied."""
    first = parts[0]
    if not type(first).__name__.startswith("BatchNorm"):
        return copy.deepcopy(first)
    new = make_follower(follower_spec(first), width).to(next(iter(first.state_dict().values())).device)
    states = [p.state_dict() for p in parts]
    new.load_state_dict({k: (torch.cat([s[k] for s in states]) if v.dim() else v)
                         for k, v in states[0].items()})
    return new


def _head(net: Any, task: str, active: Sequence[tuple[str, int]], h: int) -> FusedLayer:
    """Task's head (a copy) reading the columns of its head layer's groups that contain it."""
    factor = net.geometry.head_factor(task)
    pos = _offsets(active, factor)
    total = sum(w for _, w in active) * factor
    ranges = _merge_ranges([pos[k] for k in net.head_reads(task) if k in pos], total)
    flatten = net.geometry.layers[h].kind == "conv"
    return FusedLayer([nn.Sequential(copy.deepcopy(net.heads[task])).eval()], [ranges], flatten)


def fuse_separate(nets: Mapping[str, Any], subset: str | Sequence[str], layout: str = "dense"
                  ) -> SequentialNets:
    """B1: the fused single-task nets of the subset's tasks (``nets``: task -> its one-task
    MergedNet, task order), run one after the other on the same input."""
    tasks = list(nets)
    key = subset if isinstance(subset, str) else subset_key(tuple(subset))
    if key not in subset_masks(tasks):
        raise StructureError(f"unknown task subset {key!r}; valid subsets: {', '.join(subset_masks(tasks))}")
    return SequentialNets([fuse(nets[t], t, layout) for t in key.split("+")])


# --------------------------------------------------------------------------- latency
def measure_fused_latency(net: Any, subsets: Sequence[str] | None = None, batch: int = 1,
                          threads: int | None = None, device: str | torch.device = "cpu",
                          layout: str = "dense", min_run_time: float = 0.2) -> dict[str, float]:
    """{subset name: median seconds of one forward pass of its fused model} on a (batch, C, H, W)
    input (torch.utils.benchmark, no grad, eval; CUDA synchronised).

    net: a MergedNet (PAM, or B2 as a fully shared one); subsets: names like "A+B" (default: all,
    canonical order); threads: torch intra-op threads while timing (None: the current setting).
    Raises StructureError for an unknown subset.
    """
    names = list(subset_masks(net.tasks)) if subsets is None else list(subsets)
    models = {s: fuse(net, s, layout) for s in names}
    return measure_models_latency(models, _input_shape(net), batch, threads, device, min_run_time)


def measure_separate_fused_latency(nets: Mapping[str, Any], subsets: Sequence[str] | None = None,
                                   batch: int = 1, threads: int | None = None,
                                   device: str | torch.device = "cpu", layout: str = "dense",
                                   min_run_time: float = 0.2) -> dict[str, float]:
    """B1: {subset: median seconds of running the fused single-task nets of its tasks one after the
    other} (``nets``: task -> its one-task MergedNet, in task order); arguments as
    :func:`measure_fused_latency`. One timed call runs the whole subset."""
    names = list(subset_masks(list(nets))) if subsets is None else list(subsets)
    models = {s: fuse_separate(nets, s, layout) for s in names}
    first = next(iter(nets.values()))
    return measure_models_latency(models, _input_shape(first), batch, threads, device, min_run_time)


def _input_shape(net: Any) -> tuple[int, int, int]:
    geo = net.geometry
    return geo.in_channels, geo.image_size, geo.image_size


__all__ = ["LAYOUTS", "FusedLayer", "FusedNet", "SequentialNets", "subset_tasks", "fuse", "fuse_separate",
           "measure_fused_latency", "measure_separate_fused_latency"]
