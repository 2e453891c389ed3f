"""Tests of the Kolchinsky–Tracey MI estimators and the fast greedy trajectory."""
from __future__ import annotations

import math

import pytest
import torch

from pam_explorer.regroup.greedy import greedy_reference, greedy_steps, greedy_trajectory
from pam_explorer.regroup.mutual_info import mi_reference, rms_normalise
from pam_explorer.runs.bench import bench_greedy, synthetic_layer

F64 = torch.float64


def _data(seed: int, N: int = 36, C: int = 10, L: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Realistic-ish layer: ReLU of noise plus label-driven directions, (N, C) and (N, L)."""
    g = torch.Generator().manual_seed(seed)
    Y = (torch.rand(N, L, generator=g) < 0.4).to(F64)
    z = torch.randn(N, C, generator=g, dtype=F64) + Y @ torch.randn(L, C, generator=g, dtype=F64)
    return rms_normalise(torch.relu(z)), Y


def _entropy_bits(y: torch.Tensor) -> float:
    p = float(y.double().mean())
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_rms_normalise() -> None:
    x = torch.rand(20, 5, dtype=F64) * 7
    assert float(rms_normalise(x).pow(2).mean().sqrt()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="dead neurons"):
        rms_normalise(torch.zeros(4, 3))


def test_label_copy_has_mi_near_label_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    y = (torch.rand(200, 1, generator=g) < 0.3).to(F64)
    t = rms_normalise(y.clone())
    h = _entropy_bits(y)
    assert mi_reference(t, y, 0.01) == pytest.approx(h, rel=0.02)
    _, mi = greedy_trajectory(t, y, 0.01)
    assert float(mi[0]) == pytest.approx(h, rel=0.02)


def test_noise_has_mi_near_zero_for_large_sigma2() -> None:
    g = torch.Generator().manual_seed(1)
    t = rms_normalise(torch.randn(100, 5, generator=g, dtype=F64))
    y = (torch.rand(100, 2, generator=g) < 0.5).to(F64)
    assert 0 <= mi_reference(t, y, 100.0) < 0.01
    assert mi_reference(t[:, :0], y, 0.1) == 0.0  # empty set


@pytest.mark.parametrize("bound", ["kl", "bd"])
@pytest.mark.parametrize("mode", ["sum", "joint"])
@pytest.mark.parametrize("sigma2", [0.03, 0.5])
def test_fast_matches_reference(bound: str, mode: str, sigma2: float) -> None:
    t, Y = _data(seed=int(sigma2 * 100) + len(mode))
    o_fast, mi_fast = greedy_trajectory(t, Y, sigma2, bound, mode)
    o_ref, mi_ref, _ = greedy_reference(t, Y, sigma2, bound, mode)
    assert torch.equal(o_fast, o_ref)
    assert torch.allclose(mi_fast, mi_ref, atol=1e-5, rtol=1e-5)
    # every prefix value is the plain estimate of that prefix
    k = len(o_fast) // 2
    assert float(mi_fast[k - 1]) == pytest.approx(
        mi_reference(t[:, o_fast[:k]], Y, sigma2, bound, mode), abs=1e-9)


def test_fast_matches_reference_on_candidate_subset() -> None:
    t, Y = _data(seed=3, C=12)
    cand = torch.tensor([11, 2, 7, 5, 0])
    o_fast, mi_fast = greedy_trajectory(t, Y, 0.1, candidates=cand)
    o_ref, mi_ref, _ = greedy_reference(t, Y, 0.1, candidates=cand)
    assert torch.equal(o_fast, o_ref) and sorted(o_fast.tolist()) == sorted(cand.tolist())
    assert torch.allclose(mi_fast, mi_ref, atol=1e-9)


def test_saturated_run_reaches_label_entropy_and_matches_reference() -> None:
    # Small sigma2: the kernel of S becomes diagonal, which exercises the sample compaction.
    t, Y = _data(seed=4, N=30, C=16, L=2)
    o_fast, mi_fast = greedy_trajectory(t, Y, 0.02)
    o_ref, mi_ref, _ = greedy_reference(t, Y, 0.02)
    assert torch.equal(o_fast, o_ref) and torch.allclose(mi_fast, mi_ref, atol=1e-9)
    h = sum(_entropy_bits(Y[:, l]) for l in range(Y.shape[1]))
    assert float(mi_fast[-1]) == pytest.approx(h, abs=1e-6)


@pytest.mark.parametrize("mode", ["sum", "joint"])
def test_chunking_gives_identical_results(mode: str) -> None:
    t, Y = _data(seed=5, C=9)
    o1, m1 = greedy_trajectory(t, Y, 0.2, label_mode=mode)
    for max_bytes in (1, 3 * 36 * 36 * 8):  # one candidate per chunk; three per chunk
        o2, m2 = greedy_trajectory(t, Y, 0.2, label_mode=mode, max_chunk_bytes=max_bytes)
        assert torch.equal(o1, o2)
        assert torch.allclose(m1, m2, atol=1e-12, rtol=0)


def test_float32_close_to_float64() -> None:
    t, Y = _data(seed=6)
    o64, m64 = greedy_trajectory(t, Y, 0.1)
    o32, m32 = greedy_trajectory(t.float(), Y.float(), 0.1)
    assert torch.allclose(m32, m64, atol=1e-4)


def test_monotone_on_realistic_data() -> None:
    """Not provable (see the next test), but holds on realistic activations: greedy
    trajectories and random nested sets never lose more than rounding."""
    for seed in range(3):
        t, Y = _data(seed, N=40, C=12)
        for sigma2 in (0.05, 0.5):
            for mode in ("sum", "joint"):
                _, mi = greedy_trajectory(t, Y, sigma2, label_mode=mode)
                assert float(mi.diff().min()) >= -1e-8
                perm = torch.randperm(12, generator=torch.Generator().manual_seed(seed))
                nested = [mi_reference(t[:, perm[:k]], Y, sigma2, label_mode=mode)
                          for k in range(13)]
                assert all(b >= a - 1e-8 for a, b in zip(nested, nested[1:]))


def test_estimator_is_not_provably_monotone() -> None:
    """Documented counterexample: 6 samples where adding a neuron lowers the KL estimate
    (it moves samples towards the other class). Regrouping therefore cuts trajectories on
    the running maximum of the MI."""
    t = torch.tensor([[1.5659, 1.1744], [1.6234, -2.2362], [0.0654, -0.6321],
                      [-1.8276, 0.6247], [-2.3699, 1.1018], [-1.1144, -0.7088]], dtype=F64)
    y = torch.tensor([[1], [1], [1], [0], [0], [0]])
    assert mi_reference(t, y, 1.0) < mi_reference(t[:, :1], y, 1.0) - 0.01


@pytest.mark.parametrize("mode", ["sum", "joint"])
def test_label_that_never_occurs_carries_zero_bits(mode: str) -> None:
    t, Y = _data(seed=7)
    Y0 = torch.cat([Y, torch.zeros(Y.shape[0], 1, dtype=F64)], 1)
    assert mi_reference(t[:, :4], Y0, 0.2, label_mode=mode) == pytest.approx(
        mi_reference(t[:, :4], Y, 0.2, label_mode=mode), abs=1e-12)
    o1, m1 = greedy_trajectory(t, Y, 0.2, label_mode=mode)
    o2, m2 = greedy_trajectory(t, Y0, 0.2, label_mode=mode)
    assert torch.equal(o1, o2) and torch.allclose(m1, m2, atol=1e-12)


def test_no_informative_labels_gives_zero_and_index_order() -> None:
    t, _ = _data(seed=8, C=5)
    order, mi = greedy_trajectory(t, torch.zeros(t.shape[0], 2), 0.1)
    assert order.tolist() == [0, 1, 2, 3, 4] and torch.all(mi == 0)


def test_ties_go_to_lowest_index() -> None:
    t, Y = _data(seed=9, C=3)
    t = torch.cat([t[:, :1], t[:, :1], t[:, :1]], 1)  # three identical neurons
    order, _ = greedy_trajectory(t, Y, 0.1)
    assert order.tolist() == [0, 1, 2]
    assert greedy_reference(t, Y, 0.1)[0].tolist() == [0, 1, 2]


def test_progress_callback() -> None:
    t, Y = _data(seed=10, C=4)
    calls: list[tuple[int, int]] = []
    greedy_trajectory(t, Y, 0.1, progress=lambda k, n: calls.append((k, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_bad_input() -> None:
    t, Y = _data(seed=11)
    for s2 in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="sigma2"):
            mi_reference(t, Y, s2)
        with pytest.raises(ValueError, match="sigma2"):
            next(greedy_steps(t, Y, s2))
    with pytest.raises(ValueError, match="at least 2 samples"):
        mi_reference(t[:1], Y[:1], 0.1)
    bad = t.clone()
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        greedy_trajectory(bad, Y, 0.1)
    with pytest.raises(ValueError, match="more samples than classes"):
        mi_reference(t[:4], torch.eye(4), 0.1, label_mode="joint")  # every sample its own class
    with pytest.raises(ValueError, match="binary"):
        mi_reference(t, Y * 2, 0.1)
    with pytest.raises(ValueError, match="labels must be"):
        mi_reference(t, Y[:-1], 0.1)
    with pytest.raises(ValueError, match="bound"):
        mi_reference(t, Y, 0.1, bound="xx")
    with pytest.raises(ValueError, match="label_mode"):
        mi_reference(t, Y, 0.1, label_mode="xx")
    with pytest.raises(ValueError, match="candidate"):
        greedy_trajectory(t, Y, 0.1, candidates=torch.tensor([0, 0]))
    with pytest.raises(ValueError, match="candidate"):
        greedy_trajectory(t, Y, 0.1, candidates=torch.tensor([99]))


def test_bench_smoke() -> None:
    out = bench_greedy(neurons=24, samples=16, labels=2, naive_neurons=6)
    assert out["naive_neurons"] == 6 and out["neurons"] == 24 and out["naive_matches_fast"]
    assert out["seconds"] > 0 and out["speedup"] > 0
    t, Y = synthetic_layer(8, 10, 2)
    assert t.shape == (10, 8) and Y.shape == (10, 2)
