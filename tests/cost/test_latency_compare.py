"""Interleaved latency with reliability flags (issue 26, point 1), on a FAKE clock: each fake model
advances a virtual clock by its own cost, times a slow-down that the test chooses per round or per
moment of the measurement (no sleeps, exact expectations). References: the costs the test gave
the fake models and gains computed by hand from them."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from pam_explorer.core.errors import ConfigError
from pam_explorer.cost.latency_compare import LatencySettings, assess, compare_latency, reliable_gains

FLOPS = {"PAM": {"A": 500_000, "B": 500_000, "A+B": 800_000},
         "B1": {"A": 600_000, "B": 600_000, "A+B": 1_200_000},
         "B2": {"A": 550_000, "B": 550_000, "A+B": 600_000}}
ONE_CALL = LatencySettings(rounds=21, min_sample_s=1e-9, warmup=2)  # one call per sample: round = call


class Machine:
    """A virtual clock; a model's call advances it by its cost (ms) times ``slow(scheme, subset,
    round, global call index)``. Records the order of the timed calls."""

    def __init__(self, slow=lambda scheme, subset, rnd, i: 1.0, warmup: int = 2) -> None:
        self.t, self.slow, self.warmup, self.order, self.calls = 0.0, slow, warmup, [], 0

    def clock(self) -> float:
        return self.t

    def model(self, scheme: str, subset: str, ms: float):
        seen = [0]

        def call() -> None:
            rnd = seen[0] - self.warmup
            seen[0] += 1
            factor = self.slow(scheme, subset, rnd, self.calls) if rnd >= 0 else 1.0
            self.calls += 1
            self.t += ms * factor / 1e3
            if rnd >= 0:
                self.order.append((scheme, subset))
        return call

    def models(self, ms_per_mflop: float = 1.0) -> dict:
        return {s: {k: self.model(s, k, ms_per_mflop * f / 1e6) for k, f in per.items()}
                for s, per in FLOPS.items()}


def true_ms(scheme: str, subset: str) -> float:
    return FLOPS[scheme][subset] / 1e6


def test_a_busy_spell_lands_on_every_scheme_alike_and_the_median_ignores_it():
    """The machine is 50x slower for a stretch of 3 rounds (every call then): interleaved, each
    cell gets 3 slow samples of 21, so every median is the true cost, every figure is reliable and
    the gains are the FLOPs-proportional ones. Measured in sequence, the spell (calls 20-46)
    would have fallen on B1's samples only."""
    m = Machine(slow=lambda s, k, rnd, i: 50.0 if 9 * 5 <= i < 9 * 8 else 1.0)
    out = compare_latency(m.models(), FLOPS, settings=ONE_CALL, clock=m.clock)
    cells = [(s, k) for s in FLOPS for k in FLOPS[s]]
    for r in range(ONE_CALL.rounds):  # round-robin, each round starting one cell later
        start = r % len(cells)
        assert m.order[9 * r:9 * (r + 1)] == cells[start:] + cells[:start]
    fig = out["latency_measurement"]["schemes"]
    for s, k in cells:
        assert fig[s][k]["median_ms"] == pytest.approx(true_ms(s, k))
        assert fig[s][k]["reliable"] and fig[s][k]["why"] is None and fig[s][k]["iqr_ms"] == pytest.approx(0)
        assert out["latency_ms"][s][k] == pytest.approx(true_ms(s, k), abs=1e-4)
    gains = out["latency_gains"]
    assert gains["vs_B1"]["average"] == pytest.approx((1.2 + 1.2 + 1.5) / 3)
    assert gains["vs_B1"]["peak"] == pytest.approx(1.5)
    assert gains["vs_B2"]["average"] == pytest.approx((1.1 + 1.1 + 0.75) / 3)
    assert sorted(gains["vs_B1"]["subsets"]) == ["A", "A+B", "B"]
    meas = out["latency_measurement"]
    assert meas["threads"] == 1 and meas["rounds"] == 21 and "0.5 x median" in meas["rule"]
    json.dumps(out, allow_nan=False)  # strict JSON, as written into report.json


def test_one_scheme_slowed_in_half_the_rounds_is_flagged_by_its_spread_and_left_out_of_gains():
    """B1 is 100x slower in every other round (its turn keeps landing in busy moments): its IQR is
    far above half its median, so every B1 figure is unreliable and there is no gain vs B1; PAM
    and B2 are untouched (vs B2 unchanged)."""
    m = Machine(slow=lambda s, k, rnd, i: 100.0 if s == "B1" and rnd % 2 else 1.0)
    out = compare_latency(m.models(), FLOPS, settings=ONE_CALL, clock=m.clock)
    fig = out["latency_measurement"]["schemes"]
    for k in FLOPS["B1"]:
        assert not fig["B1"][k]["reliable"] and fig["B1"][k]["why"].startswith("spread: IQR")
        assert fig["PAM"][k]["reliable"] and fig["B2"][k]["reliable"]
    assert "vs_B1" not in out["latency_gains"]
    assert out["latency_gains"]["vs_B2"]["average"] == pytest.approx((1.1 + 1.1 + 0.75) / 3)


def test_a_steady_slow_down_that_contradicts_the_flops_is_flagged_for_the_odd_scheme_only():
    """B2's subset B is 600x slower in every round (as a report once showed: 139.9 ms for B,
    0.226 ms for A, equal FLOPs). No spread, but its latency ratio to PAM and B1 is ~500x their
    FLOPs ratio: flagged; PAM and B1 on B agree with each other and stay reliable (they disagree
    only with B2, not with most others). Gains vs B2 use A and A+B only."""
    m = Machine(slow=lambda s, k, rnd, i: 600.0 if (s, k) == ("B2", "B") else 1.0)
    out = compare_latency(m.models(), FLOPS, settings=ONE_CALL, clock=m.clock)
    fig = out["latency_measurement"]["schemes"]
    bad = fig["B2"]["B"]
    assert not bad["reliable"] and bad["iqr_ms"] == pytest.approx(0)
    assert bad["why"].startswith("FLOPs:") and "vs PAM 600x" in bad["why"] and "vs B1 600x" in bad["why"]
    assert fig["PAM"]["B"]["reliable"] and fig["B1"]["B"]["reliable"]
    assert out["latency_gains"]["vs_B2"]["subsets"] == ["A", "A+B"]
    assert out["latency_gains"]["vs_B2"]["average"] == pytest.approx((1.1 + 0.75) / 2)
    assert out["latency_ms"]["B2"]["B"] == pytest.approx(600 * 0.55, rel=1e-6)  # the figure is kept


def test_with_two_schemes_a_disagreement_flags_both_and_within_3x_is_fine():
    samples = {"PAM": {"A": [1.0] * 5}, "B1": {"A": [4.0] * 5}}  # FLOPs equal: 4x apart
    fig = assess(samples, {"PAM": {"A": 100}, "B1": {"A": 100}})
    assert not fig["PAM"]["A"]["reliable"] and not fig["B1"]["A"]["reliable"]
    assert reliable_gains(fig) == {}
    fig = assess({"PAM": {"A": [1.0] * 5}, "B1": {"A": [2.9] * 5}}, {"PAM": {"A": 100}, "B1": {"A": 100}})
    assert fig["PAM"]["A"]["reliable"] and fig["B1"]["A"]["reliable"]
    assert reliable_gains(fig)["vs_B1"]["average"] == pytest.approx(2.9)


def test_median_and_iqr_are_the_linear_quartiles():
    xs = [1.0, 2.0, 3.0, 4.0, 100.0]  # numpy's default percentiles: q25 = 2, q50 = 3, q75 = 4
    cell = assess({"PAM": {"A": xs}}, {})["PAM"]["A"]
    assert (cell["median_ms"], cell["iqr_ms"]) == (3.0, 2.0)
    assert not cell["reliable"] and "IQR 2 ms > 0.5 x median 3 ms" in cell["why"]
    cell = assess({"PAM": {"A": xs}}, {}, LatencySettings(spread=0.7))["PAM"]["A"]
    assert cell["reliable"]


def test_threads_are_fixed_while_timing_and_restored_after():
    before = torch.get_num_threads()
    seen = []
    models = {"PAM": {"A": lambda: seen.append(torch.get_num_threads())}}
    settings = LatencySettings(rounds=3, threads=1, min_sample_s=1e-9)
    compare_latency(models, {"PAM": {"A": 1}}, settings=settings)
    assert set(seen) == {1} and torch.get_num_threads() == before


def test_real_modules_on_the_real_clock():
    torch.manual_seed(0)
    small, big = nn.Linear(16, 4), nn.Sequential(nn.Linear(16, 256), nn.ReLU(), nn.Linear(256, 4))
    out = compare_latency({"PAM": {"A": small}, "B1": {"A": big}}, {"PAM": {"A": 136}, "B1": {"A": 10_240}},
                          torch.rand(1, 16), LatencySettings(rounds=5, min_sample_s=1e-3))
    fig = out["latency_measurement"]["schemes"]
    assert all(math.isfinite(c["median_ms"]) and c["median_ms"] > 0
               for per in fig.values() for c in per.values())
    assert set(out["latency_ms"]) == {"PAM", "B1"}
    with pytest.raises(ConfigError, match="example_input"):
        compare_latency({"PAM": {"A": small}}, {"PAM": {"A": 1}})


@pytest.mark.parametrize("kw, field", [({"rounds": 2}, "rounds"), ({"threads": 0}, "threads"),
                                       ({"spread": -1.0}, "spread"), ({"flops_factor": 1.0}, "flops_factor"),
                                       ({"min_sample_s": math.nan}, "min_sample_s")])
def test_settings_name_the_bad_field(kw, field):
    with pytest.raises(ConfigError, match=f"LatencySettings.{field}:"):
        LatencySettings(**kw)
