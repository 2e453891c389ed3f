"""The greedy min-MI search of Algorithms 2/3, run to the end: one step per neuron.

Dimensions: N samples (n still in play), C neurons, C' candidates, B candidates of a chunk,
M' class columns, P label permutations.

Each step adds the candidate j minimising I(S ∪ {j}; Y) (the paper's argmin, on the raw
estimate), then reports the MI of the grown set and, with ``null_perms`` > 0, the mean estimate
of the same set under P fixed label permutations (chance level; see
:mod:`pam_explorer.regroup.mutual_info`). All candidates of a step are scored at once:

* fixed kernel: K(S ∪ {j}) = K(S) ⊙ K_j, so the per-neuron kernels K_j are computed once and
  one batched matmul per chunk gives every candidate's class sums;
* scaled kernel: K = exp(-(D_S + D_j) c / (sigma2 (s_S + w_j))) has to be exponentiated per
  step, from the per-neuron squared distances D_j (computed once when they fit in memory).

``greedy_reference`` recomputes every candidate's MI from scratch with ``mi_reference`` (the
authors' approach): for the tests and the benchmark.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from pam_explorer.core.errors import ConfigError
from pam_explorer.regroup.mutual_info import (
    BOUND_FACTOR,
    KERNELS,
    LN2,
    MIN_SCALE,
    ClassColumns,
    check_inputs,
    label_permutations,
    mi_reference,
    neuron_weights,
    null_reference,
)

Tensor = torch.Tensor
Progress = Callable[[int, int], None]
DEFAULT_MAX_CHUNK_BYTES = 256 * 2**20
# Kernel entries below this are set to 0: they change row sums (>= 1, since K_ii = 1) by
# at most N * 1e-15 relative, and keeping them would let float32 products go denormal,
# which is up to 100x slower on x86 CPUs.
_TINY = 1e-15


class Step(NamedTuple):
    """One greedy step: the neuron added, I(S; Y) of the grown set and its chance level (bits)."""

    neuron: int
    mi: float
    null: float


class Run(NamedTuple):
    """A greedy search to the end: order (C',) long, mi and null (C',) float64, per step."""

    order: Tensor
    mi: Tensor
    null: Tensor


def _kernel_block(tc: Tensor, factor: float) -> Tensor:
    """Per-neuron kernels for columns tc (n, B) -> (n, B, n) with out[i, b, k] = K_b[i, k]."""
    k = torch.exp((tc.unsqueeze(2) - tc.t().unsqueeze(0)).pow_(2).mul_(-factor))
    return k.masked_fill_(k < _TINY, 0.0)


def _pick(scores: Tensor, ids: Tensor) -> int:
    """Position of the minimum of ``scores`` (n,); near-ties (within rounding) go to the lowest
    neuron id in ``ids`` (n,)."""
    best = scores.min()
    tol = 64 * torch.finfo(scores.dtype).eps * max(1.0, abs(float(best)))
    return int(torch.where(scores <= best + tol, ids, ids.new_tensor(2**62)).argmin())


def _null(cols: list[ClassColumns], K: Tensor) -> float:
    """Mean MI (bits) of the off-diagonal kernel K (n, n) over the permuted label problems."""
    if not cols:
        return 0.0
    return sum(float(c.mi((K @ c.cols).unsqueeze(2))[0]) for c in cols) / len(cols)


class _FixedState:
    """Fixed kernel: kernel of S, active candidates, samples still in play.

    Candidates are kept as a prefix ``ids[:n_active]`` (swap-remove). Samples whose kernel
    row of S has no off-diagonal mass can never regain it (kernels only shrink), so they are
    compacted away: late in a run (the saturating phase) this shrinks the work by orders of
    magnitude.
    """

    def __init__(self, t: Tensor, cols: ClassColumns, perm_cols: list[ClassColumns], ids: Tensor,
                 factor: float, max_chunk_bytes: int) -> None:
        N = t.shape[0]
        self.t, self.cols, self.perm_cols, self.ids, self.factor = t, cols, perm_cols, ids, factor
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
            value = (float(self.cols.row_const.sum()) + self.cols.offset) / (self.cols.n_total * LN2)
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

    def step(self) -> tuple[int, float]:
        """Add the argmin candidate to S; (its neuron id, I(S; Y) of the grown set)."""
        scores = self.scores()
        pos = _pick(scores, self.ids[:self.n_active])
        neuron, mi = int(self.ids[pos]), float(scores[pos])
        self.add(pos)
        return neuron, mi

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

    def null(self) -> float:
        """Chance level of the current S: mean MI over the permuted label problems."""
        return _null(self.perm_cols, self.KS)

    def _compact(self, keep: Tensor) -> None:
        """Drop samples with no off-diagonal kernel mass left (see class docstring)."""
        for c in [self.cols, *self.perm_cols]:
            c.restrict(keep)
        self.KS = self.KS[keep][:, keep]
        self.t = self.t[keep]
        if self.kall is not None:
            self.kall = self.kall[keep][:, :self.n_active][:, :, keep]
        self._plan()


class _ScaledState:
    """Scaled kernel: squared distances D_S of S (diagonal +inf, so K_ii = 0 off-diagonal), its
    scale s_S, the active non-constant candidates as a prefix ``ids[:n_active]`` (swap-remove)
    and the constant ones apart: adding a constant neuron changes neither D_S nor s_S, so its
    score is I(S; Y) itself, computed once per step (dead ReLU units are often half a layer).
    Kernels can widen again as S grows, so no sample is ever dropped."""

    def __init__(self, t: Tensor, cols: ClassColumns, perm_cols: list[ClassColumns], ids: Tensor,
                 factor: float, weights: Tensor, max_chunk_bytes: int) -> None:
        N = t.shape[0]
        const = (t[:, ids] == t[:1, ids]).all(0)                        # exactly constant columns
        self.consts = sorted(int(i) for i in ids[const])
        ids = ids[~const].clone()
        self.t, self.cols, self.perm_cols, self.ids, self.factor = t, cols, perm_cols, ids, factor
        self.w, self.n_active, self.s = weights, ids.numel(), 0.0
        self.floor = math.log(torch.finfo(t.dtype).tiny)  # exp(floor) is the smallest normal float
        self.DS = torch.zeros(N, N, dtype=t.dtype, device=t.device)
        self.DS.fill_diagonal_(float("inf"))
        self.chunk = max(1, max_chunk_bytes // max(1, 2 * N * N * t.element_size()))
        self.dall = self._dists(0, self.n_active) if self.n_active <= self.chunk else None

    @property
    def remaining(self) -> int:
        return self.n_active + len(self.consts)

    def _dists(self, a: int, b: int) -> Tensor:
        tc = self.t[:, self.ids[a:b]]                                   # (N, B)
        return (tc.unsqueeze(2) - tc.t().unsqueeze(0)).pow_(2)          # (N, B, N)

    def scores(self) -> Tensor:
        """I(S ∪ {j}; Y) in bits for every active non-constant candidate j -> (n_active,)."""
        out = [torch.zeros(0, dtype=self.t.dtype, device=self.t.device)]
        Wt = self.cols.cols.t().unsqueeze(0).expand(self.t.shape[0], -1, -1)   # (n, M', n)
        for a in range(0, self.n_active, self.chunk):
            b = min(a + self.chunk, self.n_active)
            D = self.dall[:, a:b, :] if self.dall is not None else self._dists(a, b)
            f = (-self.factor / (self.s + self.w[self.ids[a:b]]).clamp_min(MIN_SCALE)).view(1, -1, 1)
            # exponent clamped where exp would go denormal (up to 100x slower on x86 CPUs)
            K = torch.add(self.DS.unsqueeze(1), D).mul_(f).clamp_(min=self.floor).exp_()   # (n, B, n)
            out.append(self.cols.mi(torch.bmm(Wt, K.transpose(1, 2))))                     # (n, M', B)
        return torch.cat(out)

    def _kernel_of_s(self) -> Tensor:
        return torch.exp(self.DS * (-self.factor / max(self.s, MIN_SCALE)))  # (n, n), zero diagonal

    def step(self) -> tuple[int, float]:
        """Add the argmin candidate to S; (its neuron id, I(S; Y) of the grown set)."""
        scores, ids = self.scores(), self.ids[:self.n_active]
        if self.consts:  # every constant candidate scores I(S; Y); the lowest id stands for them
            here = float(self.cols.mi((self._kernel_of_s() @ self.cols.cols).unsqueeze(2))[0])
            scores = torch.cat([scores, scores.new_tensor([here])])
            ids = torch.cat([ids, ids.new_tensor([self.consts[0]])])
        pos = _pick(scores, ids)
        if pos == self.n_active:
            return self.consts.pop(0), float(scores[pos])
        neuron, mi = int(self.ids[pos]), float(scores[pos])
        self.add(pos)
        return neuron, mi

    def add(self, pos: int) -> None:
        """Move active candidate at ``pos`` into S."""
        d = self.dall[:, pos, :] if self.dall is not None else self._dists(pos, pos + 1)[:, 0, :]
        self.DS.add_(d)
        self.s += float(self.w[self.ids[pos]])
        self.n_active -= 1
        last = self.n_active
        self.ids[pos] = self.ids[last].clone()
        if self.dall is not None:
            self.dall[:, pos, :] = self.dall[:, last, :]

    def null(self) -> float:
        return _null(self.perm_cols, self._kernel_of_s()) if self.perm_cols else 0.0


def _candidates(t: Tensor, candidates: Tensor | None) -> Tensor:
    ids = (torch.arange(t.shape[1], device=t.device) if candidates is None
           else torch.as_tensor(candidates, dtype=torch.long, device=t.device).clone())
    if ids.dim() != 1 or ids.unique().numel() != ids.numel():
        raise ConfigError("candidates must be a 1-D tensor of distinct neuron ids")
    if ids.numel() and (ids.min() < 0 or ids.max() >= t.shape[1]):
        raise ConfigError(f"candidate ids must lie in [0, {t.shape[1]})")
    return ids


def _check_search(kernel: str, null_perms: int) -> None:
    if kernel not in KERNELS:
        raise ConfigError(f"kernel must be one of {list(KERNELS)}, got {kernel!r}")
    if isinstance(null_perms, bool) or not isinstance(null_perms, int) or null_perms < 0:
        raise ConfigError(f"null_perms must be an integer >= 0, got {null_perms!r}")


def greedy_steps(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                 label_mode: str = "sum", candidates: Tensor | None = None,
                 max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, kernel: str = "fixed",
                 null_perms: int = 0, null_seed: int = 0) -> Iterator[Step]:
    """Greedy min-MI growth of S, one :class:`Step` per ``next``.

    t: (N, C) activations, Y: (N, L) binary labels, candidates: (C',) neuron ids (default all).
    Each step adds the candidate j minimising I(S ∪ {j}; Y); near-ties (within rounding) go to
    the lowest neuron id. The scaled kernel's neuron weights come from all C columns of t.
    Runs on t's device in t's float dtype; kernels (or distances) of all candidates are kept
    if they fit in ``max_chunk_bytes``, else recomputed per step in chunks of that size.
    """
    _check_search(kernel, null_perms)
    t, Yb = check_inputs(t, Y, sigma2, bound, label_mode)
    ids = _candidates(t, candidates)
    cols = ClassColumns(Yb, label_mode, t.dtype)
    perm_cols = [cols.permuted(p) for p in label_permutations(t.shape[0], null_perms, null_seed)]
    factor = BOUND_FACTOR[bound] / sigma2
    state = (_FixedState(t, cols, perm_cols, ids, factor, max_chunk_bytes) if kernel == "fixed" else
             _ScaledState(t, cols, perm_cols, ids, factor, neuron_weights(t), max_chunk_bytes))
    for _ in range(ids.numel()):
        neuron, mi = state.step()
        yield Step(neuron, mi, state.null())


def greedy_run(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl", label_mode: str = "sum",
               candidates: Tensor | None = None, progress: Progress | None = None,
               max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES, kernel: str = "fixed",
               null_perms: int = 0, null_seed: int = 0) -> Run:
    """The greedy search to the end (alpha = infinity): order, MI and chance level per step.
    t: (N, C), Y: (N, L); progress(step, total) after each step."""
    n = t.shape[1] if candidates is None else len(candidates)
    steps = []
    for k, step in enumerate(greedy_steps(t, Y, sigma2, bound, label_mode, candidates,
                                          max_chunk_bytes, kernel, null_perms, null_seed)):
        steps.append(step)
        if progress is not None:
            progress(k + 1, n)
    return Run(torch.tensor([s.neuron for s in steps], dtype=torch.long),
               torch.tensor([s.mi for s in steps], dtype=torch.float64),
               torch.tensor([s.null for s in steps], dtype=torch.float64))


def greedy_trajectory(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                      label_mode: str = "sum", candidates: Tensor | None = None,
                      progress: Progress | None = None,
                      max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
                      kernel: str = "fixed") -> tuple[Tensor, Tensor]:
    """(order (C',) long, mi (C',) float64) of :func:`greedy_run` without a chance level."""
    run = greedy_run(t, Y, sigma2, bound, label_mode, candidates, progress, max_chunk_bytes, kernel)
    return run.order, run.mi


def greedy_reference(t: Tensor, Y: Tensor, sigma2: float, bound: str = "kl",
                     label_mode: str = "sum", candidates: Tensor | None = None,
                     progress: Progress | None = None, kernel: str = "fixed",
                     null_perms: int = 0, null_seed: int = 0) -> Run:
    """Same search as :func:`greedy_run`, every candidate's MI recomputed from scratch with
    ``mi_reference`` (the authors' approach); for tests and the benchmark."""
    _check_search(kernel, null_perms)
    t, Yb = check_inputs(t, Y, sigma2, bound, label_mode)
    w = neuron_weights(t) if kernel == "scaled" else torch.ones(t.shape[1], dtype=t.dtype)
    perms = label_permutations(t.shape[0], null_perms, null_seed)
    remaining = list(range(t.shape[1])) if candidates is None else sorted(int(c) for c in candidates)
    n, chosen, mi, null = len(remaining), [], [], []
    eps = torch.finfo(t.dtype).eps

    def scale(ids: list[int]) -> float:
        return float(w[ids].sum()) if kernel == "scaled" else 1.0
    while remaining:
        scores = [mi_reference(t[:, chosen + [j]], Yb, sigma2, bound, label_mode, scale(chosen + [j]))
                  for j in remaining]
        best = min(scores)
        tol = 64 * eps * max(1.0, abs(best))
        # remaining is sorted, so the first near-minimum is the lowest id
        pos = next(p for p, s in enumerate(scores) if s <= best + tol)
        chosen.append(remaining.pop(pos))
        mi.append(scores[pos])
        null.append(null_reference(t[:, chosen], Yb, sigma2, perms, bound, label_mode, scale(chosen)))
        if progress is not None:
            progress(len(chosen), n)
    return Run(torch.tensor(chosen, dtype=torch.long), torch.tensor(mi, dtype=torch.float64),
               torch.tensor(null, dtype=torch.float64))


__all__ = ["Step", "Run", "greedy_steps", "greedy_run", "greedy_trajectory", "greedy_reference",
           "DEFAULT_MAX_CHUNK_BYTES"]
