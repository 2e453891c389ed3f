"""The published rankings carry information: on a small real task (a committed digits LeNet-5,
real digit pictures), removing the neurons Taylor (P2) or VIB (P1) ranks least important hurts
accuracy less than removing as many neurons chosen at random. Inverting either ranking fails
these tests."""
from __future__ import annotations

import copy
import random
import statistics

import pytest
import torch

from pam_explorer.core.config import DataConfig
from pam_explorer.data import load_preset_data
from pam_explorer.data.presets import get_preset
from pam_explorer.merge.build import from_single
from pam_explorer.prune.base import BatchStream, TaskData, apply_removal, plan_removal, rank_neurons
from pam_explorer.prune.config import PruneConfig
from pam_explorer.prune.taylor import taylor_importance
from pam_explorer.prune.vib import VIBGates, fold_gates, train_gates
from pam_explorer.train.finetune import evaluate
from pam_explorer.zoo.pretrained import load_pretrained

N_RANDOM = 6


@pytest.fixture(scope="module")
def task_a():
    preset = get_preset("digits-2task")
    data = TaskData.from_splits(load_preset_data(preset, DataConfig(n_train=512, n_val=256, n_test=256)),
                                preset)
    net = from_single(load_pretrained(preset.name, preset.task_names)[0], "A")
    return net, data


def _accuracy_after(net, data, order, size):
    """Task A's validation accuracy after removing the first ``size`` neurons of ``order``
    (the planner skips a neuron whose removal would empty a group), no finetuning."""
    pruned = copy.deepcopy(net)
    apply_removal(pruned, plan_removal(pruned, order, size), None)
    return evaluate(pruned, *data.val, ["A"])["A"]


def _against_random(net, data, scores, fraction=0.4):
    ranked = rank_neurons(net, "A", scores, flops_weight=0.0)  # the published score alone
    size = int(fraction * len(ranked))
    ours = _accuracy_after(net, data, ranked, size)
    rng = random.Random(0)
    chance = []
    for _ in range(N_RANDOM):
        shuffled = ranked[:]
        rng.shuffle(shuffled)
        chance.append(_accuracy_after(net, data, shuffled, size))
    worst = _accuracy_after(net, data, ranked[::-1], size)  # the inverted ranking
    return ours, statistics.fmean(chance), max(chance), worst


def test_taylor_ranking_beats_random_removal(task_a):
    net, data = task_a
    images, targets = data.train
    batches = [(images[i:i + 64], targets["A"][i:i + 64]) for i in range(0, 512, 64)]
    scores = taylor_importance(net, "A", batches, mode="batch")
    ours, mean_random, best_random, inverted = _against_random(net, data, scores)
    assert ours > best_random, (ours, mean_random, best_random)
    assert ours > mean_random + 1.0 > inverted + 1.0


def test_vib_ranking_beats_random_removal(task_a):
    net, data = task_a
    net = copy.deepcopy(net)
    torch.manual_seed(0)
    cfg = PruneConfig(vib_epochs=2, batch_size=64, kl_weight=1e-2, vib_lr=5e-2, device="cpu")
    gates = VIBGates(net)
    train_gates(net, gates, data, cfg, BatchStream(data.train[0].shape[0], 64, seed=0))
    fold_gates(net, gates)  # the net the ranking is judged on: gates folded, as VIBPruner does
    scores = gates.scores()
    ours, mean_random, best_random, inverted = _against_random(net, data, scores)
    assert ours > best_random, (ours, mean_random, best_random)
    assert ours > mean_random + 1.0 > inverted + 1.0
