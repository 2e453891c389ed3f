"""Kolchinsky–Tracey pairwise-distance estimators of I(S; Y) and the greedy MI trajectory.

For a neuron set S on N samples with activations t (already divided by the layer RMS),

    D_ij = sum_{k in S} (t_ik - t_jk)^2,   K_ij = exp(-D_ij * c / sigma2)
    I(S; Y) = (1/N) sum_i log( (sum_{j: y_j = y_i} K_ij / N_{y_i}) / (sum_j K_ij / N) )

with c = 1/2 for the KL form (upper bound of the mixture entropy, default, "kl") and c = 1/8
for the Bhattacharyya form (lower bound, "bd"). Values are returned in bits. The Gaussian
normalisation terms cancel in the difference of the two entropies, so they never appear.

Labels are a binary matrix Y (N, L). ``label_mode="sum"`` sums the MI of every binary label
column (the authors' choice); ``"joint"`` treats every distinct row of Y as one class.
A label column that never occurs (or always occurs) carries exactly 0 bits in both modes.

Two implementations that agree to rounding: ``mi_reference`` recomputes everything from
scratch; ``greedy_steps`` scores all candidates of a greedy step at once using
K(S ∪ {j}) = K(S) ⊙ K_j and one batched matmul against the class-indicator columns.

Monotonicity: the estimate is NOT provably monotone in S (multiplying K by K_j can shrink a
row's same-class mass faster than its total mass). On realistic activations it is
non-decreasing along greedy trajectories and nested sets in practice (see the tests); the
regrouping therefore cuts trajectories on the running maximum of the MI, which is exactly
what the threshold loop of the paper's Algorithm 2 does.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch

from pam_explorer.core.config import BOUNDS, LABEL_MODES
from pam_explorer.core.errors import ConfigError, DataError

Tensor = torch.Tensor
Progress = Callable[[int, int], None]

# Exponent factor per bound: K = exp(-D * factor / sigma2).
BOUND_FACTOR = {"kl": 0.5, "bd": 0.125}
DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
LN2 = math.log(2.0)
# Kernel entries below this are set to 0: they change row sums (>= 1, since K_ii = 1) by
# at most N * 1e-15 relative, and keeping them would let float32 products go denormal,
# which is up to 100x slower on x86 CPUs.
_TINY = 1e-15


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


def _validate(t: Tensor, Y: Tensor, sigma2: float, bound: str,
              label_mode: str) -> tuple[Tensor, Tensor]:
    """Check inputs; returns t as float (N, C) and Y as bool (N, L)."""
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
                 label_mode: str = "sum") -> float:
    """Plain estimate of I(S; Y) in bits, recomputing all pairwise distances.

    t_S: (N, |S|) activations of the set; Y: (N, L) binary labels. Empty S gives 0.
    """
    t_S, Yb = _validate(t_S, Y, sigma2, bound, label_mode)
    N = t_S.shape[0]
    if t_S.shape[1] == 0:
        return 0.0
    D = (t_S[:, None, :] - t_S[None, :, :]).pow(2).sum(-1)          # (N, N)
    K = torch.exp(-D * (BOUND_FACTOR[bound] / sigma2))
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


class _ClassColumns:
    """Class-indicator columns and the map from off-diagonal row sums to MI (bits).

    cols: (n, M') 0/1 matrix over the n samples still in play. sum mode: one positive-class
    column per informative label plus a ones column (negative = total - positive, so
    M' = L' + 1 instead of 2 L'); joint mode: one column per joint class (total = their sum).
    Every row i contributes log(same_i / N_c) - log(total_i / N) per label; the parts that
    do not depend on the candidate are summed once into ``row_const`` (n,).
    """

    def __init__(self, Yb: Tensor, label_mode: str, dtype: torch.dtype) -> None:
        N, dev = Yb.shape[0], Yb.device
        self.mode, self.n_total = label_mode, N
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


def _kernel_block(tc: Tensor, factor: float) -> Tensor:
    """Per-neuron kernels for columns tc (n, B) -> (n, B, n) with out[i, b, k] = K_b[i, k]."""
    k = torch.exp((tc.unsqueeze(2) - tc.t().unsqueeze(0)).pow_(2).mul_(-factor))
    return k.masked_fill_(k < _TINY, 0.0)


class _GreedyState:
    """State of one greedy run: kernel of S, active candidates, samples still in play.

    Candidates are kept as a prefix ``ids[:n_active]`` (swap-remove). Samples whose kernel
    row of S has no off-diagonal mass can never regain it, so they are compacted away:
    late in a run (the saturating phase) this shrinks the work by orders of magnitude.
    """

    def __init__(self, t: Tensor, cols: _ClassColumns, ids: Tensor, factor: float,
                 max_chunk_bytes: int) -> None:
        N = t.shape[0]
        self.t, self.cols, self.ids, self.factor = t, cols, ids, factor
        self.max_bytes, self.n_active = max_chunk_bytes, ids.numel()
        self.KS = torch.ones(N, N, dtype=t.dtype, device=t.device)
        self.KS.fill_diagonal_(0.0)  # off-diagonal only; cols.mi adds the diagonal 1
        self.kall: Tensor | None = None
        self._plan()

    def _plan(self) -> None:
        """Chunk size for the current sample count; precompute all kernels if they fit,
        laid out (n, C', n) so that the active candidates are a prefix view."""
        n = self.t.shape[0]
        self.chunk = max(1, self.max_bytes // max(1, n * n * self.t.element_size()))
        if self.kall is None and self.n_active <= self.chunk:
            self.kall = _kernel_block(self.t[:, self.ids[:self.n_active]], self.factor)

    def kernels(self, a: int, b: int) -> Tensor:
        """Kernels of active candidates a..b-1 -> (n, b-a, n)."""
        if self.kall is not None:
            return self.kall[:, a:b, :]
        return _kernel_block(self.t[:, self.ids[a:b]], self.factor)

    def scores(self) -> Tensor:
        """I(S ∪ {j}; Y) in bits for every active candidate j -> (n_active,).

        Row sums of K(S ∪ {j}) against the class columns are sum_k K_j[i,k] KS[i,k]
        cols[k,c]: one bmm of W^T (n, M', n) against the kernels per chunk, never
        materialising the (B, n, n) products K(S) ⊙ K_j.
        """
        if not self.cols.informative or self.t.shape[0] == 0:
            # No off-diagonal kernel mass left (or no label information): all tie.
            value = (float(self.cols.row_const.sum()) + self.cols.offset) / (
                self.cols.n_total * LN2)
            return torch.full((self.n_active,), value, dtype=self.t.dtype, device=self.t.device)
        # W^T[i, c, k] = cols[k, c] KS[i, k]: (n, M', n). The (M' x n) @ (n x B) orientation
        # of the skinny per-sample gemm is ~2x faster on CPU BLAS than (B x n) @ (n x M').
        Wt = self.cols.cols.t().unsqueeze(0) * self.KS.unsqueeze(1)
        out = []
        for a in range(0, self.n_active, self.chunk):
            blk = self.kernels(a, min(a + self.chunk, self.n_active))      # (n, B, n)
            R = torch.bmm(Wt, blk.transpose(1, 2))                           # (n, M', B)
            out.append(self.cols.mi(R))
        return torch.cat(out)

    def add(self, pos: int) -> None:
        """Move active candidate at ``pos`` into S."""
        k_new = self.kernels(pos, pos + 1)[:, 0, :]
        self.KS.mul_(k_new).masked_fill_(self.KS < _TINY, 0.0)
        self.n_active -= 1
        # Swap-remove: the last active candidate takes the freed slot.
        last = self.n_active
        self.ids[pos] = self.ids[last].clone()
        if self.kall is not None:
            self.kall[:, pos, :] = self.kall[:, last, :]
        keep = (self.KS > 0).any(1)                                  # (n,)
        if int(keep.sum()) <= 0.75 * keep.numel():
            self._compact(keep)

    def _compact(self, keep: Tensor) -> None:
        """Drop samples with no off-diagonal kernel mass left (see class docstring)."""
        self.cols.restrict(keep)
        self.KS = self.KS[keep][:, keep]
        self.t = self.t[keep]
        if self.kall is not None:
            self.kall = self.kall[keep][:, :self.n_active][:, :, keep]
        self._plan()


def greedy_steps(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                 label_mode: str = "sum", candidates: Tensor | None = None,
                 max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> Iterator[tuple[int, float]]:
    """Greedy min-MI growth of S, one step per ``next``: yields (neuron id, I(S; Y) in bits).

    t: (N, C) activations, Y: (N, L) binary labels, candidates: (C',) neuron ids (default all).
    Each step adds the candidate j minimising I(S ∪ {j}; Y); near-ties (within rounding) go to
    the lowest neuron id. Runs on t's device in t's float dtype. If all C' per-neuron kernels
    (C' N^2 entries) fit in ``max_chunk_bytes`` they are computed once; otherwise they are
    recomputed each step in chunks of that size (slower, bounded memory).
    """
    t, Yb = _validate(t, Y, sigma2, bound, label_mode)
    ids = (torch.arange(t.shape[1], device=t.device) if candidates is None
           else torch.as_tensor(candidates, dtype=torch.long, device=t.device).clone())
    if ids.dim() != 1 or ids.unique().numel() != ids.numel():
        raise ConfigError("candidates must be a 1-D tensor of distinct neuron ids")
    if ids.numel() and (ids.min() < 0 or ids.max() >= t.shape[1]):
        raise ConfigError(f"candidate ids must lie in [0, {t.shape[1]})")
    state = _GreedyState(t, _ClassColumns(Yb, label_mode, t.dtype), ids,
                         BOUND_FACTOR[bound] / sigma2, max_chunk_bytes)
    eps = torch.finfo(t.dtype).eps
    big = ids.new_tensor(2**62)
    while state.n_active > 0:
        scores = state.scores()                                      # (n_active,)
        best = scores.min()
        tol = 64 * eps * max(1.0, abs(float(best)))
        pos = int(torch.where(scores <= best + tol, ids[:state.n_active], big).argmin())
        neuron, mi = int(ids[pos]), float(scores[pos])
        state.add(pos)
        yield neuron, mi


def greedy_trajectory(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                      label_mode: str = "sum", candidates: Tensor | None = None,
                      progress: Progress | None = None,
                      max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES) -> tuple[Tensor, Tensor]:
    """Greedy run to the end (alpha = infinity), fast batched version.

    t: (N, C), Y: (N, L). Returns order (C',) long — neuron added at step k — and mi (C',)
    float64 — I(S; Y) in bits of the set after step k. progress(step, total) after each step.
    """
    n = t.shape[1] if candidates is None else len(candidates)
    order, mi = [], []
    for k, (j, v) in enumerate(greedy_steps(t, Y, sigma2, bound, label_mode, candidates,
                                            max_chunk_bytes)):
        order.append(j)
        mi.append(v)
        if progress is not None:
            progress(k + 1, n)
    return torch.tensor(order, dtype=torch.long), torch.tensor(mi, dtype=torch.float64)


def greedy_reference(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                     label_mode: str = "sum", candidates: Tensor | None = None,
                     progress: Progress | None = None) -> tuple[Tensor, Tensor]:
    """Same as ``greedy_trajectory`` but every candidate's MI is recomputed from scratch
    with ``mi_reference`` (the authors' approach); for tests and the benchmark."""
    t, Yb = _validate(t, Y, sigma2, bound, label_mode)
    remaining = list(range(t.shape[1])) if candidates is None else sorted(int(c) for c in candidates)
    n, chosen, order, mi = len(remaining), [], [], []
    eps = torch.finfo(t.dtype).eps
    while remaining:
        scores = [mi_reference(t[:, chosen + [j]], Yb, sigma2, bound, label_mode) for j in remaining]
        best = min(scores)
        tol = 64 * eps * max(1.0, abs(best))
        # remaining is sorted, so the first near-minimum is the lowest id
        pos = next(p for p, s in enumerate(scores) if s <= best + tol)
        chosen.append(remaining.pop(pos))
        order.append(chosen[-1])
        mi.append(scores[pos])
        if progress is not None:
            progress(len(order), n)
    return torch.tensor(order, dtype=torch.long), torch.tensor(mi, dtype=torch.float64)


__all__ = [
    "rms_normalise", "mi_reference", "greedy_steps", "greedy_trajectory", "greedy_reference",
    "BOUND_FACTOR", "DEFAULT_MAX_CHUNK_BYTES",
]
