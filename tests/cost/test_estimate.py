"""Time estimates (pam_explorer.cost.estimate): FLOPs of a picture counted by hand, the rule's
figures, and the issue's example (a 224-px ResNet-18 finetuned 10 epochs is about a day)."""
from __future__ import annotations

import pytest

from pam_explorer.cost.estimate import Work, duration_text, forward_flops, rate, seconds
from pam_explorer.zoo import build_model


def test_forward_flops_of_lenet5_by_hand():
    # conv1 6x(1x5x5) on 28x28, conv2 16x(6x5x5) on 10x10, fc 400->120->84->5; 2 FLOPs per MAC
    macs = 6 * 25 * 28 * 28 + 16 * 150 * 10 * 10 + 400 * 120 + 120 * 84 + 84 * 5
    assert forward_flops(build_model("lenet5", 5, 1, 32), 1, 32) == 2 * macs


def test_seconds_follow_the_rule():
    f = 4e6  # FLOPs per picture
    expected = (3 * 1000 + 200) * f / (1.0e10 * 4 ** 0.25)
    assert seconds([Work(f, trained=1000, evaluated=200)]) == pytest.approx(expected)
    assert rate(f, threads=4) == pytest.approx(2 * rate(f, threads=2))


def test_a_224px_resnet18_finetuned_10_epochs_takes_hours():
    flops = forward_flops(build_model("resnet18", 5, 3, 224), 3, 224)
    assert flops == pytest.approx(3.64e9, rel=0.01)  # torchvision's 1.82 GMACs
    hours = seconds([Work(flops, trained=10 * 10_000)]) / 3600
    # measured: 6 pictures/s trained on one thread beside another job, so 4.6 h (BENCHMARKS.md)
    assert 2 < hours < 8, hours


@pytest.mark.parametrize("s,text", [(12.4, "about 12 s"), (600, "about 10 min"),
                                    (3 * 3600 + 600, "about 3 h 10 min"), (7200, "about 2 h"),
                                    (3 * 86400, "about 3.0 days")])
def test_duration_text(s, text):
    assert duration_text(s) == text
