"""Kolchinsky–Tracey pairwise-distance estimators of I(S; Y) (bits), the kernel scale and the
label-permutation null.

Dimensions: N samples, C neurons, L labels, B candidates, P label permutations.

For a neuron set S on N samples with activations t (a layer's, usually divided by its RMS),

    D_ij = sum_{k in S} (t_ik - t_jk)^2,   K_ij = exp(-D_ij * c / (sigma2 * s_S))
    I(S; Y) = (1/N) sum_i log( (sum_{j: y_j = y_i} K_ij / N_{y_i}) / (sum_j K_ij / N) )

with c = 1/2 for the KL form (upper bound of the mixture entropy, default, "kl") and c = 1/8
for the Bhattacharyya form (lower bound, "bd"). The Gaussian normalisation terms cancel in the
difference of the two entropies, so they never appear.

Kernel scale s_S. ``kernel="fixed"`` (the paper, Kolchinsky–Tracey as written): s_S = 1, so the
noise variance is sigma2 per neuron and the kernel narrows as S grows; beyond a few neurons every
sample sits alone under it and the estimate tends to H(Y) whatever the labels (see
docs/estimator.md). ``kernel="scaled"``: s_S = sum_{k in S} w_k, the set's variance in units of
the layer's mean neuron variance (w_k = var_k / mean of var over the layer's non-constant
neurons, :func:`neuron_weights`), so sigma2 stays relative to the set's own spread; a constant
neuron adds nothing to D nor to s_S.

Chance level. :func:`label_permutations` gives P fixed permutations of the samples; the
estimate with permuted labels (:func:`null_reference`) is what the estimator reports for a set
that carries no information. Regrouping compares alpha with I - mean null ("bits beyond chance").

Labels are a binary matrix Y (N, L). ``label_mode="sum"`` sums the MI of every binary label
column (the authors' choice); ``"joint"`` treats every distinct row of Y as one class.
A label column that never occurs (or always occurs) carries exactly 0 bits in both modes.

``mi_reference`` recomputes everything from scratch; the greedy search
(:mod:`pam_explorer.regroup.greedy`) scores all candidates of a step at once and agrees with it
to rounding.

Monotonicity: neither kernel gives a provably monotone estimate in S (with the fixed kernel,
multiplying K by K_j can shrink a row's same-class mass faster than its total mass; the scaled
kernel widens as S grows). Regrouping therefore cuts trajectories on the running maximum, which
is exactly what the threshold loop of the paper's Algorithm 2 does.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch

from pam_explorer.core.config import BOUNDS, KERNELS, LABEL_MODES
from pam_explorer.core.errors import ConfigError, DataError

Tensor = torch.Tensor
Progress = Callable[[int, int], None]

# Exponent factor per bound: K = exp(-D * factor / (sigma2 * s)).
BOUND_FACTOR = {"kl": 0.5, "bd": 0.125}
MIN_SCALE = 1e-6  # s_S of a set of constant neurons (D = 0 there, so any s > 0 gives K = 1)
LN2 = math.log(2.0)


def rms_normalise(acts: Tensor) -> Tensor:
    """Divide a layer's activations (N, C) by their overall RMS sqrt(mean(acts^2)) -> (N, C).

    Makes sigma2 relative to the layer's scale. Raises DataError on an all-zero layer.
    """
    if acts.dim() != 2:
        raise DataError(f"activations must be (N, C), got shape {tuple(acts.shape)}")
    if not torch.isfinite(acts).all():
        raise DataError("activations contain NaN or inf")
    acts = acts if acts.is_floating_point() else acts.float()
    rms = acts.pow(2).mean().sqrt()
    if rms.item() == 0.0:
        raise DataError("layer has only dead neurons (all activations are zero)")
    return acts / rms


def check_inputs(t: Tensor, Y: Tensor, sigma2: float, bound: str,
                 label_mode: str) -> tuple[Tensor, Tensor]:
    """Check the inputs of an estimate (ConfigError / DataError naming the problem); returns t
    (N, C) as float and Y (N, L) as bool on t's device."""
    if isinstance(sigma2, bool) or not isinstance(sigma2, (int, float)) \
            or not math.isfinite(sigma2) or sigma2 <= 0:
        raise ConfigError(f"sigma2 must be a finite number > 0, got {sigma2!r}")
    if bound not in BOUNDS:
        raise ConfigError(f"bound must be one of {list(BOUNDS)}, got {bound!r}")
    if label_mode not in LABEL_MODES:
        raise ConfigError(f"label_mode must be one of {list(LABEL_MODES)}, got {label_mode!r}")
    if t.dim() != 2:
        raise DataError(f"activations must be (N, C), got shape {tuple(t.shape)}")
    t = t if t.is_floating_point() else t.float()
    if not torch.isfinite(t).all():
        raise DataError("activations contain NaN or inf")
    Y = Y.unsqueeze(1) if Y.dim() == 1 else Y
    if Y.dim() != 2 or Y.shape[0] != t.shape[0]:
        raise DataError(f"labels must be (N, L) with N={t.shape[0]}, got {tuple(Y.shape)}")
    if t.shape[0] < 2:
        raise DataError(f"need at least 2 samples, got N={t.shape[0]}")
    if Y.dtype != torch.bool:
        if not ((Y == 0) | (Y == 1)).all():
            raise DataError("labels must be binary (0/1)")
        Y = Y != 0
    if label_mode == "joint" and Y.shape[1] > 0:
        n_classes = torch.unique(Y, dim=0).shape[0]
        if n_classes > 1 and n_classes >= t.shape[0]:
            raise DataError(f"joint label mode needs more samples than classes: N={t.shape[0]}, "
                            f"{n_classes} distinct label vectors (every sample its own class)")
    return t, Y.to(t.device)


def _joint_ids(Y: Tensor) -> Tensor:
    """Class id (N,) of every row of bool Y (N, L); rows equal <=> ids equal."""
    if Y.shape[1] == 0:
        return torch.zeros(Y.shape[0], dtype=torch.long, device=Y.device)
    return torch.unique(Y, dim=0, return_inverse=True)[1]


def mi_reference(t_S: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                 label_mode: str = "sum", scale: float = 1.0) -> float:
    """Plain estimate of I(S; Y) in bits, recomputing all pairwise distances.

    t_S: (N, |S|) activations of the set; Y: (N, L) binary labels; scale: the kernel scale s_S
    (1 for the fixed kernel; ``float(neuron_weights(t)[S].sum())`` for the scaled one).
    Empty S gives 0.
    """
    t_S, Yb = check_inputs(t_S, Y, sigma2, bound, label_mode)
    N = t_S.shape[0]
    if t_S.shape[1] == 0:
        return 0.0
    D = (t_S[:, None, :] - t_S[None, :, :]).pow(2).sum(-1)          # (N, N)
    K = torch.exp(-D * (BOUND_FACTOR[bound] / (sigma2 * max(float(scale), MIN_SCALE))))
    log_total = torch.log(K.sum(1) / N)                               # (N,)
    if label_mode == "sum":
        problems = [[Yb[:, j], ~Yb[:, j]] for j in range(Yb.shape[1])]
    else:
        ids = _joint_ids(Yb)
        problems = [[ids == c for c in range(int(ids.max()) + 1)]]
    mi = 0.0
    for masks in problems:
        for m in masks:
            n_c = int(m.sum())
            if n_c == 0:
                continue  # empty class: no sample i has it, so no term
            same = K[m][:, m].sum(1) / n_c                          # (n_c,)
            mi += float((torch.log(same) - log_total[m]).sum()) / N
    return mi / LN2


def neuron_weights(t: Tensor) -> Tensor:
    """w_k = var_k / mean variance of the non-constant neurons, (N, C) -> (C,): each neuron's
    share of a set's kernel scale (:data:`KERNELS` "scaled"); 0 for a constant neuron."""
    var = t.double().var(0, unbiased=False)                           # (C,)
    live = var > 1e-12 * float(var.max()) if var.numel() and float(var.max()) > 0 else var > 0
    mean = float(var[live].mean()) if bool(live.any()) else 1.0
    return torch.where(live, var / mean, torch.zeros_like(var)).to(t.dtype)


def label_permutations(n: int, count: int, seed: int = 0) -> list[Tensor]:
    """``count`` fixed permutations of n samples (seeded): the label shuffles of the null."""
    gen = torch.Generator().manual_seed(int(seed))
    return [torch.randperm(n, generator=gen) for _ in range(count)]


def null_reference(t_S: Tensor, Y: Tensor, sigma2: float, perms: list[Tensor], bound: str = "kl",
                   label_mode: str = "sum", scale: float = 1.0) -> float:
    """Mean of :func:`mi_reference` over the label permutations ``perms``: the estimate of a set
    whose activations carry no information about Y (chance level), in bits; 0 without perms."""
    if not perms:
        return 0.0
    Y = Y.unsqueeze(1) if Y.dim() == 1 else Y
    return sum(mi_reference(t_S, Y[p.to(Y.device)], sigma2, bound, label_mode, scale)
               for p in perms) / len(perms)


class ClassColumns:
    """Class-indicator columns and the map from off-diagonal row sums to MI (bits).

    cols: (n, M') 0/1 matrix over the n samples still in play. sum mode: one positive-class
    column per informative label plus a ones column (negative = total - positive, so
    M' = L' + 1 instead of 2 L'); joint mode: one column per joint class (total = their sum).
    Every row i contributes log(same_i / N_c) - log(total_i / N) per label; the parts that
    do not depend on the candidate are summed once into ``row_const`` (n,).
    """

    def __init__(self, Yb: Tensor, label_mode: str, dtype: torch.dtype) -> None:
        N, dev = Yb.shape[0], Yb.device
        self.mode, self.n_total, self._labels = label_mode, N, Yb
        self.offset = 0.0  # summed row_const of samples dropped by `restrict`
        if label_mode == "sum":
            n_pos = Yb.sum(0)
            # Constant columns carry exactly 0 bits: drop them to save work.
            y = Yb[:, (n_pos > 0) & (n_pos < N)]                     # (N, L')
            self.n_labels = y.shape[1]
            self.cols = torch.cat([y.to(dtype), torch.ones(N, 1, dtype=dtype, device=dev)], 1)
            n_pos = y.sum(0).to(dtype)                               # (L',)
            log_nc = torch.log(torch.where(y, n_pos, N - n_pos))     # (N, L')
            self.row_const = self.n_labels * math.log(N) - log_nc.sum(1)
            self.sign = (2.0 * y.to(dtype) - 1.0).unsqueeze(2)       # (N, L', 1): +pos / -neg
            self.negw = (~y).to(dtype).unsqueeze(2)                  # (N, L', 1)
        else:
            ids = _joint_ids(Yb)
            self.n_labels = 1
            self.cols = torch.nn.functional.one_hot(ids).to(dtype)  # (N, M)
            self.cls = ids.view(-1, 1, 1)                            # (N, 1, 1)
            self.row_const = math.log(N) - torch.log(self.cols.sum(0))[ids]
        self.informative = self.cols.shape[1] > 1

    def mi(self, R: Tensor) -> Tensor:
        """R: (n, M', B) off-diagonal row sums R[i,c,b] = sum_{k != i} K_ik cols[k,c] for
        candidate b -> I in bits (B,), dropped rows included.

        The diagonal K_ii = 1 always lies in the sample's own class, hence the "+ 1".
        (log(1 + x) rather than log1p: torch's CPU log1p is not vectorised, ~20x slower,
        and the absolute error of log(1 + x) is within float eps, enough for sums of rows.)
        """
        if self.mode == "sum":
            pos, tot = R[:, :-1], R[:, -1:]                          # (n,L',B), (n,1,B)
            same = torch.addcmul(self.negw * tot, self.sign, pos)    # pos or tot - pos
            s = _log1(same).sum((0, 1)) - self.n_labels * _log1(tot).sum((0, 1))
        else:
            same = R.gather(1, self.cls.expand(-1, 1, R.shape[2]))  # (n, 1, B)
            s = _log1(same).sum((0, 1)) - _log1(R.sum(1)).sum(0)
        const = float(self.row_const.sum()) + self.offset
        return (s + const) / (self.n_total * LN2)

    def permuted(self, perm: Tensor) -> ClassColumns:
        """The same label problem with the samples' labels shuffled by ``perm`` (N,)."""
        return ClassColumns(self._labels[perm.to(self._labels.device)], self.mode, self.cols.dtype)

    def restrict(self, keep: Tensor) -> None:
        """Keep only rows ``keep`` (n,) bool; the others have zero off-diagonal kernel rows
        for good (kernels only shrink), so their constant terms move into ``offset``."""
        self.offset += float(self.row_const[~keep].sum())
        self.row_const, self.cols = self.row_const[keep], self.cols[keep]
        if self.mode == "sum":
            self.sign, self.negw = self.sign[keep], self.negw[keep]
        else:
            self.cls = self.cls[keep]


def _log1(x: Tensor) -> Tensor:
    """log(1 + x), overwriting x (a temporary)."""
    return x.add_(1.0).log_()


__all__ = [
    "rms_normalise", "mi_reference", "neuron_weights", "label_permutations", "null_reference",
    "check_inputs", "ClassColumns", "BOUND_FACTOR", "KERNELS", "LN2", "MIN_SCALE",
]
