"""What both MTZ zippers (chain nets: :mod:`.mtz`, residual nets: :mod:`.mtz_residual`) share:
the settings, the result, the zipping formulas of the MTZ paper (He, Zhou, Thiele, NeurIPS 2018)
and the short joint retraining. The formulas are derived in :mod:`.mtz`'s docstring.

Shapes: weights by neuron and kernel position (n, K, C) (:func:`neuron_weights`), Hessians (C, C)
over a layer's input channels (conv) or features (fc), float64.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from pam_explorer.core import validate as v
from pam_explorer.core.geometry import LayerGeometry
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.train.finetune import grad_scales, joint_loss, scale_gradients

Targets = Mapping[str, torch.Tensor]  # task -> (N, L_t) float {0, 1}
Split = tuple[torch.Tensor, Targets]  # images (N, C, H, W), targets
Progress = Callable[[dict], None]
HESSIAN_SOURCES = ("zipped", "original")


@dataclass(frozen=True)
class MTZConfig:
    """n_samples: training pictures for the input Hessians; eps: ridge relative to mean(diag H);
    retrain_batches: joint minibatches after each zipped layer of a chain net, once after the
    whole zip of a residual net (0 = none); batch_size, lr (Adam), seed: of that retraining;
    hessian: "zipped" | "original" (:mod:`.mtz`'s docstring; residual nets always use "original",
    :mod:`.mtz_residual`)."""

    n_samples: int = 512
    eps: float = 1e-3
    retrain_batches: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    hessian: str = "zipped"
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        for name in ("n_samples", "batch_size"):
            v.positive_int(self, name)
        v.non_negative_int(self, "retrain_batches")
        for name in ("eps", "lr"):
            v.finite_positive(self, name)
        v.choice(self, "hessian", HESSIAN_SOURCES)
        v.integer(self, "seed")
        v.device(self)


@dataclass
class MTZResult:
    """net: the zipped MergedNet (every layer only "A+B"); log: per layer {"layer", "width",
    "pairs" [(i_A, j_B)], "mean_cost", "retrain_loss", "val_accuracy" {task: %}}."""

    net: MergedNet
    log: list[dict] = field(default_factory=list)



# --------------------------------------------------------------------------- MTZ math
def conv_moment(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int] = (1, 1),
                padding: Sequence[int] = (0, 0),
                dilation: Sequence[int] = (1, 1)) -> tuple[torch.Tensor, int]:
    """x (N, C, H, W) -> (sum over im2col columns and kernel positions of v v^T (C, C), count)."""
    n, c = x.shape[:2]
    cols = F.unfold(x, tuple(kernel), dilation=tuple(dilation), padding=tuple(padding), stride=tuple(stride))
    cols = cols.view(n, c, -1).transpose(0, 1).reshape(c, -1)  # (C, N * K * L), channel-major rows
    return cols @ cols.T, cols.shape[1]


def conv_hessian(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int] = (1, 1),
                 padding: Sequence[int] = (0, 0), dilation: Sequence[int] = (1, 1)) -> torch.Tensor:
    """E[v v^T] (C, C) over every (sample, output position, kernel position) input vector v."""
    total, count = conv_moment(x, kernel, stride, padding, dilation)
    return total / count


def ridge(h: torch.Tensor, eps: float) -> torch.Tensor:
    """h + eps * mean(diag h) * I (eps * I for an all-zero h): invertible, scale-free."""
    scale = float(h.diagonal().mean())
    return h + eps * (scale if scale > 0 else 1.0) * torch.eye(h.shape[0], dtype=h.dtype, device=h.device)


def hessian_hat(h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
    """(H_A^-1 + H_B^-1)^-1 = H_A (H_A + H_B)^-1 H_B, symmetrised against rounding; (C, C)."""
    out = h_a @ torch.linalg.solve(h_a + h_b, h_b)
    return (out + out.T) / 2


def pair_costs(w_a: torch.Tensor, w_b: torch.Tensor, h_hat: torch.Tensor) -> torch.Tensor:
    """dE[i, j] = 1/2 sum_k (a_ik - b_jk)^T H^ (a_ik - b_jk); w_a (n_A, K, C), w_b (n_B, K, C)
    per-neuron weights by kernel position -> (n_A, n_B), clamped at 0 against rounding."""
    qa = torch.einsum("ikc,cd,ikd->i", w_a, h_hat, w_a)
    qb = torch.einsum("jkc,cd,jkd->j", w_b, h_hat, w_b)
    cross = torch.einsum("ikc,cd,jkd->ij", w_a, h_hat, w_b)
    return (0.5 * (qa[:, None] + qb[None, :] - 2 * cross)).clamp_min(0)


def merge_weights(w_a: torch.Tensor, w_b: torch.Tensor, h_a: torch.Tensor, h_b: torch.Tensor) -> torch.Tensor:
    """(H_A + H_B)^-1 (H_A a_k + H_B b_k) for each pair and kernel position: (n, K, C) x2 -> (n, K, C)."""
    rhs = (w_a @ h_a + w_b @ h_b).transpose(-1, -2)  # H symmetric: (H a)^T = a^T H; (n, C, K)
    return torch.linalg.solve(h_a + h_b, rhs).transpose(-1, -2)


def greedy_pairs(costs: torch.Tensor) -> list[tuple[int, int]]:
    """Cheapest pair of still unpaired neurons first, until min(n_A, n_B) pairs; sorted by i."""
    n_a, n_b = costs.shape
    used_a, used_b, pairs = set(), set(), []
    for flat in torch.argsort(costs.flatten(), stable=True).tolist():  # ties: lowest index first
        i, j = divmod(flat, n_b)
        if i in used_a or j in used_b:
            continue
        used_a.add(i), used_b.add(j), pairs.append((i, j))
        if len(pairs) == min(n_a, n_b):
            break
    return sorted(pairs)


@dataclass(frozen=True)
class Pairing:
    """One zipped neuron layer: ``ia[k]`` of A and ``jb[k]`` of B form zipped neuron k (pairs by
    A's index), then the wider net's (index ``wide``) unpaired neurons ``extra`` follow in order.
    maps[t]: (n_t,) zipped position of each of net t's neurons; prov: (origin net, index) of
    every zipped neuron (a pair names A's neuron)."""

    ia: torch.Tensor
    jb: torch.Tensor
    extra: torch.Tensor
    wide: int
    maps: tuple[torch.Tensor, torch.Tensor]
    prov: tuple[tuple[int, int], ...]
    pairs: tuple[tuple[int, int], ...]
    mean_cost: float

    @property
    def width(self) -> int:
        return len(self.prov)


def pairing(costs: torch.Tensor) -> Pairing:
    """The greedy MTZ pairing (:func:`greedy_pairs`) of an (n_A, n_B) cost matrix."""
    n_a, n_b = costs.shape
    pairs = greedy_pairs(costs)
    ia, jb = (torch.tensor([p[k] for p in pairs], dtype=torch.long) for k in (0, 1))
    wide = 0 if n_a >= n_b else 1
    taken = set((ia, jb)[wide].tolist())
    extra = torch.tensor([i for i in range(max(n_a, n_b)) if i not in taken], dtype=torch.long)
    maps = [torch.empty(n, dtype=torch.long) for n in (n_a, n_b)]
    for t, idx in enumerate((ia, jb)):
        maps[t][idx] = torch.arange(len(pairs))
    maps[wide][extra] = torch.arange(len(pairs), len(pairs) + extra.numel())
    prov = tuple([(0, i) for i in ia.tolist()] + [(wide, e) for e in extra.tolist()])
    mean_cost = float(costs[ia, jb].mean()) if pairs else 0.0
    return Pairing(ia, jb, extra, wide, (maps[0], maps[1]), prov, tuple(pairs), mean_cost)


def neuron_weights(weight: torch.Tensor) -> torch.Tensor:
    """Core weight (n, C) or (n, C, kh, kw) -> (n, K, C): each kernel position a C-vector."""
    if weight.dim() == 2:
        return weight[:, None, :]
    return weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1, weight.shape[1])


def core_weight(w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`neuron_weights` for a core shaped like ``like`` (out rows may differ)."""
    if like.dim() == 2:
        return w[:, 0, :]
    kh, kw = like.shape[2:]
    return w.reshape(w.shape[0], kh, kw, like.shape[1]).permute(0, 3, 1, 2)



def conv_padding(lg: LayerGeometry) -> tuple[int, int]:
    if lg.padding == "valid":
        return (0, 0)
    if lg.padding == "same":  # stride 1 only, as torch requires; odd kernels pad symmetrically
        return tuple(d * (k - 1) // 2 for d, k in zip(lg.dilation, lg.kernel))
    return tuple(lg.padding)



def scatter_hessian(h: torch.Tensor, merged_pos: torch.Tensor | None, width: int,
                    factor: int) -> torch.Tensor:
    """An original net's input Hessian placed at the merged columns of its input neurons."""
    if merged_pos is None:  # the image: same columns in every network
        return h
    cols = (merged_pos[:, None] * factor + torch.arange(factor, device=h.device)).flatten()
    out = h.new_zeros(width * factor, width * factor)
    out[cols[:, None], cols[None, :]] = h
    return out


def pair_or_own(ta: torch.Tensor, tb: torch.Tensor, ia: torch.Tensor, jb: torch.Tensor,
                 extra: torch.Tensor, wide: int, paired: torch.Tensor | None = None) -> torch.Tensor:
    """Rows of the zipped layer: the pairs' merged rows (``paired``, default the mean of
    ta[ia] and tb[jb]), then the wider net's (index ``wide``) unpaired rows ``extra``."""
    if ta.dim() == 0:  # a scalar buffer (BatchNorm's batch counter): the larger one
        return torch.maximum(ta, tb)
    paired = ((ta[ia].double() + tb[jb].double()) / 2).to(ta.dtype) if paired is None else paired
    return torch.cat([paired.to(ta.dtype), (ta, tb)[wide][extra]])



# --------------------------------------------------------------------------- retraining
def retrain(net: MergedNet, train: Split, config: MTZConfig, seed: int) -> float:
    """``config.retrain_batches`` joint Adam steps (shared grads task-averaged); mean loss."""
    if config.retrain_batches == 0:
        return float("nan")
    images, targets = train
    device = next(net.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    scales = grad_scales(net)
    optim = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
    bs = min(config.batch_size, images.shape[0])
    order, total, was_training = torch.empty(0, dtype=torch.long), 0.0, net.training
    net.train()
    try:
        for _ in range(config.retrain_batches):
            if order.numel() < bs:  # a fresh shuffle when the current one runs out
                order = torch.cat([order, torch.randperm(images.shape[0], generator=gen)])
            idx, order = order[:bs], order[bs:]
            optim.zero_grad(set_to_none=True)
            loss = joint_loss(net, images[idx].to(device), {t: targets[t][idx].to(device) for t in net.tasks})
            loss.backward()
            scale_gradients(net, scales)
            optim.step()
            total += float(loss.detach())
    finally:
        net.train(was_training)
    return total / config.retrain_batches



__all__ = ["HESSIAN_SOURCES", "MTZConfig", "MTZResult", "conv_moment", "conv_hessian", "ridge",
           "hessian_hat", "pair_costs", "merge_weights", "greedy_pairs", "Pairing", "pairing",
           "neuron_weights", "core_weight", "conv_padding", "scatter_hessian", "pair_or_own", "retrain"]
