"""The MI estimator and the greedy search against independent plain implementations.

Independent references, sharing no code with ``pam_explorer.regroup``:

* the pairwise divergences come from their definitions, not from the estimator's constants:
  KL between the two Gaussian mixture components from ``torch.distributions.kl_divergence``,
  the Bhattacharyya distance by numerical integration (scipy.integrate.quad) of sqrt(p q);
* the MI is the entropy difference H(T) - sum_y p(y) H(T | y) of the Kolchinsky–Tracey mixture
  entropy estimate, written with numpy's logsumexp over the samples of each class (the
  authors' formulation), not the row-sum form of the package;
* the greedy search is a plain loop over candidates with that MI.

If the estimator's kernel constant, the per-label sum, the class normalisation or the kernel
scale were wrong, these tests fail (e.g. a KL factor of 1 instead of 1/2 changes the MI by
far more than the tolerance).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy.special import logsumexp

from pam_explorer.regroup.greedy import greedy_reference, greedy_run
from pam_explorer.regroup.mutual_info import mi_reference, neuron_weights, null_reference

F64 = torch.float64


def _data(seed: int, N: int = 30, C: int = 6, L: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    Y = (torch.rand(N, L, generator=g) < 0.4).to(F64)
    z = torch.randn(N, C, generator=g, dtype=F64) + Y @ torch.randn(L, C, generator=g, dtype=F64)
    t = torch.relu(z)
    t[:, -1] = 0.7  # a constant neuron
    return t / t.pow(2).mean().sqrt(), Y


def _pairwise_divergence(t: np.ndarray, var: float, bound: str) -> np.ndarray:
    """(N, N) divergence between the Gaussian components N(t_i, var I) and N(t_j, var I)."""
    N, d = t.shape
    if bound == "kl":
        mu = torch.tensor(t)
        p = torch.distributions.Normal(mu[:, None, :], math.sqrt(var))
        q = torch.distributions.Normal(mu[None, :, :], math.sqrt(var))
        return torch.distributions.kl_divergence(p, q).sum(-1).numpy()
    # Bhattacharyya: per dimension -log ∫ sqrt(p q) dx, numerically; sum over independent dims
    out = np.zeros((N, N))
    sd = math.sqrt(var)
    for i in range(N):
        for j in range(i + 1, N):
            total = 0.0
            for k in range(d):
                a, b = t[i, k], t[j, k]
                if a == b:
                    continue
                f = lambda x, a=a, b=b: math.sqrt(  # noqa: E731
                    math.exp(-(x - a) ** 2 / (2 * var)) * math.exp(-(x - b) ** 2 / (2 * var))) / (
                    sd * math.sqrt(2 * math.pi))
                lo, hi = min(a, b) - 12 * sd, max(a, b) + 12 * sd
                total += -math.log(integrate.quad(f, lo, hi, points=[(a + b) / 2], limit=200)[0])
            out[i, j] = out[j, i] = total
    return out


def _entropy(div: np.ndarray) -> np.ndarray:
    """Kolchinsky–Tracey mixture entropy estimate without the constant terms (they cancel):
    -mean_i log mean_j exp(-div_ij); returned per sample i (the mean is taken by the caller)."""
    return -(logsumexp(-div, axis=1) - math.log(div.shape[0]))


def plain_mi(t: np.ndarray, Y: np.ndarray, var: float, bound: str = "kl", mode: str = "sum") -> float:
    """I(T; Y) in bits = H(T) - sum_y p(y) H(T | y) of the mixture estimate (the authors' form)."""
    if t.shape[1] == 0:
        return 0.0
    div = _pairwise_divergence(t, var, bound)
    h_all = _entropy(div).mean()
    problems = [Y[:, [c]] for c in range(Y.shape[1])] if mode == "sum" else [Y]
    mi = 0.0
    for y in problems:
        _, ids = np.unique(y, axis=0, return_inverse=True)
        cond = 0.0
        for c in np.unique(ids):
            m = ids.ravel() == c
            cond += m.mean() * _entropy(div[np.ix_(m, m)]).mean()
        mi += h_all - cond
    return mi / math.log(2)


def _scale(t: np.ndarray, S: list[int]) -> float:
    """Kernel scale of the scaled kernel, from its definition: the set's variance in units of
    the mean variance of the layer's non-constant neurons."""
    var = t.var(axis=0)
    live = var > 1e-12 * var.max()
    return max(float(var[S].sum() / var[live].mean()), 1e-6)


@pytest.mark.parametrize("bound", ["kl", "bd"])
@pytest.mark.parametrize("mode", ["sum", "joint"])
@pytest.mark.parametrize("scaled", [False, True])
def test_mi_matches_the_plain_entropy_difference(bound, mode, scaled):
    t, Y = _data(3, N=24, C=5)
    tn, yn = t.numpy(), Y.numpy()
    for S in ([0], [1, 3], [0, 2, 4]):
        s = _scale(tn, S) if scaled else 1.0
        want = plain_mi(tn[:, S], yn, 0.3 * s, bound, mode)
        got = mi_reference(t[:, S], Y, 0.3, bound, mode, scale=s)
        assert got == pytest.approx(want, rel=1e-6, abs=1e-9), (S, got, want)
        assert want > 0.01  # a case that carries information, so a constant error would show


def test_null_is_the_mean_over_the_given_permutations():
    t, Y = _data(4)
    tn, yn = t.numpy(), Y.numpy()
    rng = np.random.default_rng(0)
    perms = [torch.as_tensor(rng.permutation(len(yn))) for _ in range(5)]
    want = np.mean([plain_mi(tn[:, [0, 1]], yn[p.numpy()], 0.2) for p in perms])
    assert null_reference(t[:, [0, 1]], Y, 0.2, perms) == pytest.approx(want, rel=1e-6)


def plain_greedy(t: np.ndarray, Y: np.ndarray, var: float, scaled: bool, perms: list[np.ndarray]
                 ) -> tuple[list[int], list[float], list[float]]:
    """The paper's argmin loop to the end with the plain MI; chance level of each chosen set."""
    chosen, mi, null = [], [], []
    left = list(range(t.shape[1]))
    while left:
        scores = []
        for j in left:
            S = chosen + [j]
            scores.append(plain_mi(t[:, S], Y, var * (_scale(t, S) if scaled else 1.0)))
        best = min(scores)
        pos = next(p for p, s in enumerate(scores) if s <= best + 1e-9)
        chosen.append(left.pop(pos))
        mi.append(scores[pos])
        v = var * (_scale(t, chosen) if scaled else 1.0)
        null.append(float(np.mean([plain_mi(t[:, chosen], Y[p], v) for p in perms])) if perms else 0.0)
    return chosen, mi, null


@pytest.mark.parametrize("scaled", [False, True])
def test_greedy_matches_a_plain_rerun(scaled):
    t, Y = _data(5, N=26, C=6)
    gen = torch.Generator().manual_seed(11)  # the documented permutation source: seeded randperm
    perms = [torch.randperm(t.shape[0], generator=gen).numpy() for _ in range(3)]
    order, mi, null = plain_greedy(t.numpy(), Y.numpy(), 0.2, scaled, perms)
    kernel = "scaled" if scaled else "fixed"
    for tol, run in ((1e-7, greedy_run(t, Y, 0.2, kernel=kernel, null_perms=3, null_seed=11)),
                     (2e-4, greedy_run(t.float(), Y, 0.2, kernel=kernel, null_perms=3, null_seed=11)),
                     (1e-7, greedy_reference(t, Y, 0.2, kernel=kernel, null_perms=3, null_seed=11))):
        assert run.order.tolist() == order
        assert run.mi.tolist() == pytest.approx(mi, abs=tol)
        assert run.null.tolist() == pytest.approx(null, abs=tol)


def test_chance_level_tracks_the_estimate_on_label_free_activations():
    """Activations independent of the labels: the estimate of every prefix set stays close to its
    chance level (score near 0), while for label-driven activations it is well above it."""
    g = torch.Generator().manual_seed(2)
    N = 160
    Y = (torch.rand(N, 3, generator=g) < 0.5).to(F64)
    noise = torch.relu(torch.randn(N, 24, generator=g, dtype=F64))
    noise_run = greedy_run(noise, Y, 0.1, kernel="scaled", null_perms=16)
    assert (noise_run.mi - noise_run.null).abs().max() < 0.1
    signal = torch.relu(torch.randn(N, 24, generator=g, dtype=F64)
                        + 3 * Y @ torch.randn(3, 24, generator=g, dtype=F64))
    run = greedy_run(signal, Y, 0.1, kernel="scaled", null_perms=16)
    assert float((run.mi - run.null)[-1]) > 0.4  # more than 4x the largest chance deviation above


def test_neuron_weights_are_variances_in_units_of_the_live_mean():
    t, _ = _data(6)
    var = t.numpy().var(axis=0)
    want = np.where(var > 0, var / var[var > 0].mean(), 0.0)
    assert neuron_weights(t).numpy() == pytest.approx(want, rel=1e-9)
    assert float(neuron_weights(t)[-1]) == 0.0  # the constant neuron adds nothing to a set's scale
