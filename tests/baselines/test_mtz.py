"""MTZ (B2): the zipping formulas against their closed forms, the conv Hessian against a loop,
exact reproduction when zipping identical networks, and the zipped net's structure."""
import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.testing import assert_close

from pam_explorer.baselines import MTZConfig, zip_networks
from pam_explorer.baselines.mtz import (
    conv_hessian,
    greedy_pairs,
    hessian_hat,
    merge_weights,
    neuron_weights,
    pair_costs,
)
from pam_explorer.zoo import build_model
from tests.helpers import randomise_bn


def _spd(n: int, gen: torch.Generator) -> torch.Tensor:
    a = torch.randn(n, n, generator=gen, dtype=torch.float64)
    return a @ a.T + 0.1 * torch.eye(n, dtype=torch.float64)


def _objective(w, w_a, w_b, h_a, h_b) -> float:
    """1/2 (w - w_A)^T H_A (w - w_A) + 1/2 (w - w_B)^T H_B (w - w_B) (numpy vectors)."""
    return 0.5 * (w - w_a) @ h_a @ (w - w_a) + 0.5 * (w - w_b) @ h_b @ (w - w_b)


def test_merge_formula_matches_closed_form_and_cost_is_its_minimum():
    gen = torch.Generator().manual_seed(0)
    h_a, h_b = _spd(4, gen), _spd(4, gen)
    w_a, w_b = (torch.randn(4, generator=gen, dtype=torch.float64),
                torch.randn(4, generator=gen, dtype=torch.float64))
    merged = merge_weights(w_a[None, None], w_b[None, None], h_a, h_b)[0, 0]  # one neuron, K = 1
    ha, hb, wa, wb = (t.numpy() for t in (h_a, h_b, w_a, w_b))
    assert_close(merged.numpy(), np.linalg.solve(ha + hb, ha @ wa + hb @ wb))
    grad = ha @ (merged.numpy() - wa) + hb @ (merged.numpy() - wb)
    assert_close(grad, np.zeros(4), atol=1e-10, rtol=0)
    best = _objective(merged.numpy(), wa, wb, ha, hb)
    rng = np.random.default_rng(0)
    assert all(_objective(merged.numpy() + 1e-2 * rng.standard_normal(4), wa, wb, ha, hb) > best
               for _ in range(20))
    h_hat = hessian_hat(h_a, h_b)
    assert_close(h_hat.numpy(), np.linalg.inv(np.linalg.inv(ha) + np.linalg.inv(hb)))
    cost = pair_costs(w_a[None, None], w_b[None, None], h_hat)
    assert cost.shape == (1, 1)
    assert_close(float(cost[0, 0]), float(best))  # the MTZ identity


def test_conv_costs_and_merge_are_per_kernel_position():
    gen = torch.Generator().manual_seed(1)
    h_a, h_b = _spd(3, gen), _spd(3, gen)
    wa, wb = (torch.randn(2, 3, 2, 2, generator=gen, dtype=torch.float64),
              torch.randn(3, 3, 2, 2, generator=gen, dtype=torch.float64))
    na, nb = neuron_weights(wa), neuron_weights(wb)  # (n, K=4, C=3)
    assert_close(na[1, 3], wa[1, :, 1, 1])
    costs = pair_costs(na, nb, hessian_hat(h_a, h_b))
    h_hat = torch.linalg.inv(torch.linalg.inv(h_a) + torch.linalg.inv(h_b))
    want = sum(0.5 * (e := wa[1, :, y, x] - wb[2, :, y, x]) @ h_hat @ e for y in range(2) for x in range(2))
    assert costs.shape == (2, 3)
    assert_close(costs[1, 2], want)
    merged = merge_weights(na[:1], nb[:1], h_a, h_b)
    assert_close(merged[0, 2], torch.linalg.solve(h_a + h_b, h_a @ wa[0, :, 1, 0] + h_b @ wb[0, :, 1, 0]))


@pytest.mark.parametrize("stride,padding,dilation", [((1, 1), (0, 0), (1, 1)), ((2, 1), (1, 2), (1, 2))])
def test_conv_hessian_equals_brute_force_loop(stride, padding, dilation):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, 6, 7, generator=gen, dtype=torch.float64)
    kernel = (3, 2)
    h = conv_hessian(x, kernel, stride, padding, dilation)
    xp = nn.functional.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    out_h = (xp.shape[2] - dilation[0] * (kernel[0] - 1) - 1) // stride[0] + 1
    out_w = (xp.shape[3] - dilation[1] * (kernel[1] - 1) - 1) // stride[1] + 1
    total, count = torch.zeros(3, 3, dtype=torch.float64), 0
    for n in range(2):
        for oy in range(out_h):
            for ox in range(out_w):
                for ky in range(kernel[0]):
                    for kx in range(kernel[1]):
                        v = xp[n, :, oy * stride[0] + ky * dilation[0], ox * stride[1] + kx * dilation[1]]
                        total += torch.outer(v, v)
                        count += 1
    assert_close(h, total / count)


def test_greedy_pairs_takes_cheapest_unpaired_first():
    costs = torch.tensor([[5.0, 1.0, 9.0], [2.0, 0.0, 3.0]])
    assert greedy_pairs(costs) == [(0, 0), (1, 1)]  # (1,1) first, then row 0's cheapest free column
    assert greedy_pairs(costs.T) == [(0, 0), (1, 1)]


def _data(n: int, channels: int, outputs: tuple[int, int], seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, 32, 32, generator=gen)
    return x, {t: (torch.rand(n, k, generator=gen) > 0.5).float() for t, k in zip("AB", outputs)}


def _twins(arch: str):
    """Two networks with identical bodies and different heads (3 and 2 outputs)."""
    torch.manual_seed(0)
    if arch == "lenet5":
        a = build_model("lenet5", 3, 1, 32, width=0.5)
    else:
        a = randomise_bn(build_model("vgg16", 3, 3, 32, width=0.0625, fc_width=16), 0)
    b = copy.deepcopy(a)
    b.head = nn.Linear(a.head.in_features, 2)
    return a.eval(), b.eval()


@pytest.mark.parametrize("arch,hessian", [("lenet5", "zipped"), ("lenet5", "original"), ("vgg16", "zipped")])
def test_zipping_identical_networks_reproduces_them(arch, hessian):
    a, b = _twins(arch)
    split = _data(24, a.in_channels, (3, 2))
    config = MTZConfig(n_samples=16, retrain_batches=0, hessian=hessian, device="cpu")
    result = zip_networks([a, b], ["A", "B"], split, split, config)
    net = result.net
    for record, (name, block) in zip(result.log, a.blocks.items()):
        width = block[0].weight.shape[0]
        assert record["layer"] == name and record["pairs"] == [(i, i) for i in range(width)]
        assert record["mean_cost"] < 1e-9
        assert list(net.groups[name]) == ["A+B"] and net.width(name, "A+B") == width
        assert_close(net.groups[name]["A+B"][0].weight, block[0].weight, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        out = net(split[0])
        assert_close(out["A"], a(split[0]), atol=1e-5, rtol=1e-4)
        assert_close(out["B"], b(split[0]), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("hessian", ["zipped", "original"])
def test_different_widths_give_max_width_shared_layers(hessian):
    torch.manual_seed(1)
    a = build_model("lenet5", 3, 1, 32, width=0.5).eval()
    b = build_model("lenet5", 2, 1, 32, width=1.0).eval()
    before = [copy.deepcopy(n.state_dict()) for n in (a, b)]
    split = _data(32, 1, (3, 2))
    seen = []
    config = MTZConfig(n_samples=16, retrain_batches=2, batch_size=8, hessian=hessian, device="cpu")
    result = zip_networks([a, b], ["A", "B"], split, split, config, progress=seen.append)
    net = result.net
    for name in a.blocks:
        wa, wb = a.blocks[name][0].weight.shape[0], b.blocks[name][0].weight.shape[0]
        assert net.group_widths()[name] == {"A+B": max(wa, wb)}
    assert [r["layer"] for r in seen] == list(a.blocks)
    assert all(set(r["val_accuracy"]) == {"A", "B"} and r["retrain_loss"] > 0 for r in seen)
    assert all(len(r["pairs"]) == min(a.blocks[r["layer"]][0].weight.shape[0],
                                      b.blocks[r["layer"]][0].weight.shape[0])
               for r in result.log)
    out = net(split[0])
    assert out["A"].shape == (32, 3) and out["B"].shape == (32, 2) and not net.training
    for n, state in zip((a, b), before):  # the inputs are untouched
        for k, v in n.state_dict().items():
            assert torch.equal(v, state[k])


def test_first_layer_merge_is_the_pair_mean_and_extras_keep_weights():
    """Same pictures for both tasks -> H_A == H_B -> the merged weight is the pair's mean."""
    torch.manual_seed(2)
    a = build_model("lenet5", 3, 1, 32, width=0.5).eval()  # conv1: 3 channels
    b = build_model("lenet5", 2, 1, 32, width=1.0).eval()  # conv1: 6 channels
    split = _data(16, 1, (3, 2))
    result = zip_networks([a, b], ["A", "B"], split, split,
                          MTZConfig(n_samples=16, retrain_batches=0, device="cpu"))
    pairs = result.log[0]["pairs"]
    core = result.net.groups["conv1"]["A+B"][0]
    wa, wb = a.blocks["conv1"][0], b.blocks["conv1"][0]
    for m, (i, j) in enumerate(pairs):
        assert_close(core.weight[m], (wa.weight[i] + wb.weight[j]) / 2)
        assert_close(core.bias[m], (wa.bias[i] + wb.bias[j]) / 2)
    extras = sorted(set(range(6)) - {j for _, j in pairs})
    assert_close(core.weight[len(pairs):], wb.weight[extras])
    assert result.net.provenance("conv1", "A+B")[len(pairs):] == tuple((1, e) for e in extras)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="MTZConfig.eps"):
        MTZConfig(eps=0)
    with pytest.raises(ValueError, match="MTZConfig.hessian"):
        MTZConfig(hessian="exact")
    with pytest.raises(ValueError, match="MTZConfig.retrain_batches"):
        MTZConfig(retrain_batches=-1)
    nets = [build_model("lenet5", 2, 1, 32, width=0.2) for _ in range(3)]
    split = (torch.rand(4, 1, 32, 32), {t: torch.zeros(4, 2) for t in "ABC"})
    with pytest.raises(ValueError, match="exactly 2"):
        zip_networks(nets, ["A", "B", "C"], split, split, MTZConfig(device="cpu"))
    deeper = [build_model("lenet5", 2, 1, 32, width=0.2),
              build_model("lenet5", 2, 1, 32, width=0.2, extra_fc=1)]
    with pytest.raises(ValueError, match="equal depth"):
        zip_networks(deeper, ["A", "B"], split, split, MTZConfig(device="cpu"))


def _im2col_moment(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """E[v v^T] over every (sample, output position, kernel position) input vector of x (N, C, H, W)."""
    n, c = x.shape[:2]
    cols = nn.functional.unfold(x, kernel).view(n, c, kernel * kernel, -1)   # (N, C, K, L)
    v = cols.permute(0, 2, 3, 1).reshape(-1, c)                              # (N K L, C)
    return v.T @ v / v.shape[0]


def test_original_hessians_of_two_different_networks_from_scratch():
    """hessian="original" on two differently initialised nets: conv2's pairs, costs and merged
    weights equal a from-scratch computation with each net's OWN input Hessian (H_A != H_B),
    placed at the zipped positions of conv1, and H^ = (H_A^-1 + H_B^-1)^-1 by explicit inverses."""
    torch.manual_seed(3)
    a = build_model("lenet5", 3, 1, 32, width=0.5).eval()
    b = build_model("lenet5", 2, 1, 32, width=0.5).eval()
    split = _data(16, 1, (3, 2), seed=4)
    eps = 1e-3
    config = MTZConfig(n_samples=16, retrain_batches=0, hessian="original", eps=eps, device="cpu")
    result = zip_networks([a, b], ["A", "B"], split, split, config)
    conv1_pairs = result.log[0]["pairs"]
    assert [i for i, _ in conv1_pairs] == [0, 1, 2]  # same widths: A keeps its order
    pos_b = torch.empty(3, dtype=torch.long)
    for k, (_, j) in enumerate(conv1_pairs):
        pos_b[j] = k
    with torch.no_grad():
        x_a, x_b = (net.blocks["conv1"](split[0]).double() for net in (a, b))
    h_a = _im2col_moment(x_a, 5)
    h_b = torch.zeros(3, 3, dtype=torch.float64)
    h_b[pos_b[:, None], pos_b[None, :]] = _im2col_moment(x_b, 5)
    h_a, h_b = (h + eps * h.diagonal().mean() * torch.eye(3, dtype=torch.float64) for h in (h_a, h_b))
    assert not torch.allclose(h_a, h_b, rtol=0.05)  # the test means something only if they differ
    w_a = a.blocks["conv2"][0].weight.detach().double()                  # (8, 3, 5, 5)
    w_b = torch.zeros_like(w_a)
    w_b[:, pos_b] = b.blocks["conv2"][0].weight.detach().double()
    h_hat = torch.linalg.inv(torch.linalg.inv(h_a) + torch.linalg.inv(h_b))
    d = w_a[:, None] - w_b[None, :]                                      # (8, 8, 3, 5, 5)
    costs = 0.5 * torch.einsum("ijcyx,cd,ijdyx->ij", d, h_hat, d)
    pairs, used_a, used_b = [], set(), set()
    for flat in torch.argsort(costs.flatten()).tolist():
        i, j = divmod(flat, 8)
        if i not in used_a and j not in used_b:
            used_a.add(i), used_b.add(j), pairs.append((i, j))
    record = result.log[1]
    assert record["layer"] == "conv2" and record["pairs"] == sorted(pairs)
    assert record["mean_cost"] == pytest.approx(float(sum(costs[i, j] for i, j in pairs) / 8), rel=1e-6)
    core = result.net.groups["conv2"]["A+B"][0]
    for k, (i, j) in enumerate(sorted(pairs)):
        rhs = torch.einsum("cd,dyx->cyx", h_a, w_a[i]) + torch.einsum("cd,dyx->cyx", h_b, w_b[j])
        want = torch.linalg.solve(h_a + h_b, rhs.reshape(3, -1)).reshape(3, 5, 5)
        assert_close(core.weight[k].double(), want, atol=1e-6, rtol=1e-5)
