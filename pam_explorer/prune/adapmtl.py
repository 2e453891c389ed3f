"""AdapMTL (Xiang et al., ACM MM 2024): component-wise learnable soft thresholds and adaptive
task weighting; unstructured (single weights become exact zeros, no neuron is removed).

Components: "backbone" = every shared group (key of >= 2 tasks); task t = its exclusive groups
(key == t) plus ``heads[t]``. A single network (K = 1) has its whole body as backbone and its
head as the task component. Thresholded: the weight of every Conv2d/Linear in them (biases and
BatchNorm stay dense); a component without weights (e.g. no shared group) has no threshold.

Forward (Eq. 2): W_sparse = sign(W) * relu(|W| - sigmoid(theta_c)), from the live weights via
``torch.func.functional_call``. Autograd of that expression is the paper's subgradient (Eq. 4-5):
dW_sparse/dW = 1 where W_sparse != 0, else 0. Loss (Eq. 3): sum_t beta_t L_t, beta_t by
:func:`adaptive_weights` (Eq. 6). Weights: Adam at PruneConfig.lr, shared groups get the
task-averaged gradient as in joint finetuning (``finetune.scale_gradients``).

What drives the thresholds up (our choice; the paper relies on STR's weight decay on theta,
whose pull fades as theta -> 0 and whose balance against the loss depends on the loss scale,
so reaching a given sparsity in a fixed budget needs tuning): each unfrozen theta takes its
Adam step on the weighted loss, clipped to +-theta_lr, then rises by a decoupled
push * theta_lr. With push > 1 every threshold rises by at least (push - 1) * theta_lr per step,
so the target is reached in a bounded number of steps (defaults: >= 0.63 logit units per
epoch of 63 batches); how much faster a component rises is set by its own loss gradient (a
component whose loss resists pruning rises slowest): the adaptive allocation of the paper.
Once the overall sparsity reaches the target all thresholds freeze (as the reference trainer
drops their gradients) and the weights train on to the last epoch; the weights zeroed at the
freeze are pinned (Adam's momentum would move some back over the threshold), so sparsity
cannot fall after the freeze.

Under Adam a factor common to all task losses (lambda * |W_B| / sum |W_t| of Eq. 6) changes no
step; only the ratios of the beta_t act (on shared parameters). Both are logged as in the paper.
"""
from __future__ import annotations

import copy
import math
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import StructureError
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.adapmtl_math import adaptive_weights, delta_t, task_deltas
from pam_explorer.prune.base import BatchStream, Progress, Pruner, PruneResult, TaskData, register_pruner
from pam_explorer.prune.config import AdapMTLConfig, PruneConfig
from pam_explorer.prune.sparse_cost import (
    OVERALL,
    Components,
    component_sparsity,
    sparsity_series,
    subset_flops,
)
from pam_explorer.train.finetune import evaluate, grad_scales, scale_gradients

BACKBONE, SHARED = "backbone", "all"


# --------------------------------------------------------------------------- components
def components(net: MergedNet) -> Components:
    """{component: parameter names of its conv/linear weights}, backbone first, then tasks in
    task order; components without weights are left out."""
    names = {id(p): n for n, p in net.named_parameters()}
    reserved = {BACKBONE, OVERALL, SHARED} & set(net.tasks)
    if reserved:
        raise StructureError(f"task names {sorted(reserved)} are reserved by AdapMTL's log")
    modules: dict[str, list[nn.Module]] = {BACKBONE: [], **{t: [] for t in net.tasks}}
    single = len(net.tasks) == 1
    for layer in net.module_layers:  # every module of a coupled (residual) neuron layer
        for key, group in net.groups[layer].items():
            modules[BACKBONE if single or "+" in key else key].append(group)
    for t in net.tasks:
        modules[t].append(net.heads[t])
    out: Components = {}
    for comp, mods in modules.items():
        weights = [names[id(m.weight)] for mod in mods for m in mod.modules()
                   if isinstance(m, (nn.Conv2d, nn.Linear)) and m.weight.numel() > 0]
        if weights:
            out[comp] = weights
    return out


def threshold_names(comps: Components, shared: bool) -> dict[str, str]:
    """{component: name of the theta it uses}: its own, or SHARED for all."""
    return {c: SHARED if shared else c for c in comps}


def component_sizes(net: MergedNet, comps: Components) -> dict[str, int]:
    """{component: number of thresholded weights}."""
    params = dict(net.named_parameters())
    return {c: sum(params[n].numel() for n in names) for c, names in comps.items()}


# --------------------------------------------------------------------------- reparameterisation
def soft_threshold(w: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 2: sign(w) * relu(|w| - alpha), any shape; alpha a scalar tensor. Its autograd
    gradient w.r.t. w is the mask (result != 0), i.e. the paper's subgradient B (Eq. 5)."""
    return torch.sign(w) * F.relu(w.abs() - alpha)


def alphas_of(thetas: Mapping[str, torch.Tensor], owner: Mapping[str, str],
              detach: bool = False) -> dict[str, torch.Tensor]:
    """{component: threshold sigmoid(theta) (scalar tensor)}."""
    return {c: (torch.sigmoid(thetas[o]).detach() if detach else torch.sigmoid(thetas[o]))
            for c, o in owner.items()}


def sparse_params(net: MergedNet, comps: Components, alphas: Mapping[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """{weight name: W_sparse} for every thresholded weight (differentiable in W and alpha)."""
    params = dict(net.named_parameters())
    return {n: soft_threshold(params[n], alphas[c]) for c, names in comps.items() for n in names}


def sparse_forward(net: MergedNet, weights: Mapping[str, torch.Tensor], x: torch.Tensor,
                   tasks: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """net(x (N, C, H, W), tasks) -> {task: (N, L_t)} with the given weights substituted."""
    return functional_call(net, dict(weights), (x,), {"tasks": tasks})


@torch.no_grad()
def bake(net: MergedNet, comps: Components, alphas: Mapping[str, Any]) -> MergedNet:
    """A deep copy of ``net`` whose thresholded weights are W_sparse (exact zeros): a plain
    MergedNet computing what the reparameterised forward computes."""
    out = copy.deepcopy(net)
    params = dict(out.named_parameters())
    for c, names in comps.items():
        for n in names:
            alpha = torch.as_tensor(alphas[c]).to(params[n])
            params[n].copy_(soft_threshold(params[n], alpha))
    return out


# Eq. 6 (beta_t) and Eq. 7 (Delta_T) live in adapmtl_math; re-exported here.

# --------------------------------------------------------------------------- training
@dataclass
class _Run:
    """Mutable state of one AdapMTL run on ``net`` (a private copy)."""

    net: MergedNet
    cfg: AdapMTLConfig
    comps: Components
    owner: dict[str, str]
    thetas: dict[str, nn.Parameter]
    opt_w: torch.optim.Optimizer
    opt_theta: torch.optim.Optimizer
    scales: dict[str, float]
    stream: BatchStream
    history: dict[str, deque]
    sizes: dict[str, int]
    log: list[dict]
    frozen_at: int | None = None
    step: int = 0
    pinned: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None  # name -> (mask, values)

    @classmethod
    def start(cls, net: MergedNet, cfg: AdapMTLConfig, config: PruneConfig, n_train: int) -> _Run:
        comps = components(net)
        owner = threshold_names(comps, cfg.shared_threshold)
        device = next(net.parameters()).device
        thetas = {o: nn.Parameter(torch.tensor(float(cfg.theta_init), device=device))
                  for o in dict.fromkeys(owner.values())}
        return cls(net, cfg, comps, owner, thetas,
                   torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr),
                   torch.optim.Adam(list(thetas.values()), lr=cfg.theta_lr), grad_scales(net),
                   BatchStream(n_train, config.batch_size, config.seed),
                   {t: deque(maxlen=cfg.window + 1) for t in net.tasks},
                   component_sizes(net, comps), [])

    @property
    def frozen(self) -> bool:
        return self.frozen_at is not None

    def alphas(self, detach: bool = True) -> dict[str, torch.Tensor]:
        return alphas_of(self.thetas, self.owner, detach=detach)

    def sparsity(self) -> dict[str, float]:
        return component_sparsity(self.net, self.comps, self.alphas())

    def beta(self) -> dict[str, float]:
        if not self.cfg.adaptive_weighting:
            return {t: 1.0 for t in self.net.tasks}
        heads = {t: self.sizes.get(t, 0) for t in self.net.tasks}
        return adaptive_weights(self.history, self.cfg.window, self.cfg.lam,
                                self.sizes.get(BACKBONE, 0), heads)

    def train_step(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]
                   ) -> tuple[dict[str, float], dict[str, float]]:
        """One minibatch of weights (+ thetas until frozen); returns (task losses, betas)."""
        idx = self.stream.next().to(images.device)
        self.net.train()
        weights = sparse_params(self.net, self.comps, self.alphas(detach=self.frozen))
        logits = sparse_forward(self.net, weights, images[idx])
        losses = {t: F.binary_cross_entropy_with_logits(logits[t], targets[t][idx].to(logits[t].dtype))
                  for t in self.net.tasks}
        for t, v in losses.items():
            self.history[t].append(float(v.detach()))
        beta = self.beta()
        self.opt_w.zero_grad(set_to_none=True)
        self.opt_theta.zero_grad(set_to_none=True)
        sum(beta[t] * losses[t] for t in self.net.tasks).backward()
        scale_gradients(self.net, self.scales)
        self.opt_w.step()
        self._hold_pinned()
        if not self.frozen:
            self._theta_step()
        self.step += 1
        return {t: float(v.detach()) for t, v in losses.items()}, beta

    @torch.no_grad()
    def freeze(self) -> None:
        """Freeze the thresholds at this step and pin the weights they zero: Adam's momentum
        would otherwise carry some of them back over the threshold (zero gradient is not zero
        update), and the sparsity would sink below the target after the freeze."""
        self.frozen_at = self.step
        params, alphas = dict(self.net.named_parameters()), self.alphas()
        self.pinned = {}
        for c, names in self.comps.items():
            for n in names:
                w = params[n]
                self.pinned[n] = (w.abs() <= alphas[c].to(w), w.detach().clone())

    @torch.no_grad()
    def _hold_pinned(self) -> None:
        if self.pinned:
            params = dict(self.net.named_parameters())
            for n, (mask, values) in self.pinned.items():
                params[n][mask] = values[mask]

    @torch.no_grad()
    def _theta_step(self) -> None:
        """Adam step on the loss, clipped to +-theta_lr (Adam can exceed its rate while the
        gradient grows), then the decoupled push: each theta rises >= (push - 1) * theta_lr."""
        before = {o: th.detach().clone() for o, th in self.thetas.items()}
        self.opt_theta.step()
        lr = self.cfg.theta_lr
        for o, th in self.thetas.items():
            th.copy_(before[o] + (th - before[o]).clamp(-lr, lr) + self.cfg.push * lr)

    def row(self, epoch: int, sparsity: dict[str, float], losses: dict[str, float],
            beta: dict[str, float], val: dict[str, float] | None) -> dict:
        return {"step": self.step, "epoch": epoch, "sparsity": sparsity,
                "thresholds": {o: float(torch.sigmoid(th.detach())) for o, th in self.thetas.items()},
                "beta": beta, "loss": losses, "val_accuracy": val, "frozen": self.frozen}

    def baked(self) -> MergedNet:
        return bake(self.net, self.comps, self.alphas()).eval()


def _train(run: _Run, data: TaskData, batch_size: int, emit: Progress) -> None:
    """cfg.epochs epochs; a log row every cfg.log_every steps and at each epoch end (with the
    validation accuracy of the baked net); thresholds freeze at the target sparsity."""
    cfg = run.cfg
    images, targets = data.train
    n_batches = math.ceil(images.shape[0] / batch_size)
    sparsity = run.sparsity()
    if sparsity[OVERALL] >= cfg.target_sparsity:
        run.freeze()
    run.log.append(run.row(0, sparsity, {}, {}, None))
    for epoch in range(1, cfg.epochs + 1):
        for b in range(n_batches):
            losses, beta = run.train_step(images, targets)
            sparsity = run.sparsity()
            if not run.frozen and sparsity[OVERALL] >= cfg.target_sparsity:
                run.freeze()
                emit({"phase": "frozen", "step": run.step, "sparsity": sparsity})
            end = b == n_batches - 1
            if run.step % cfg.log_every == 0 or end:
                val = evaluate(run.baked(), *data.val) if end else None
                run.log.append(run.row(epoch, sparsity, losses, beta, val))
                emit({"phase": "adapmtl", **run.log[-1]})


class AdapMTLPruner(Pruner):
    """AdapMTL: weights and component thresholds trained jointly up to a target sparsity.
    No accuracy constraint: PruneConfig.delta / reference_accuracy are not used."""

    name = "adapmtl"
    structured = False

    def prune(self, net: MergedNet, data: TaskData, config: PruneConfig,
              progress: Progress | None = None, store: Any = None, resume: Any = None) -> PruneResult:
        """Unstructured pruning of a copy of ``net``; see the module docstring."""
        start = time.perf_counter()
        emit = progress or (lambda _: None)
        cfg = config.adapmtl or AdapMTLConfig()
        work = copy.deepcopy(net).to(resolve_device(config.device))
        data = data.to(next(work.parameters()).device)
        reference, dense_test = evaluate(work, *data.val), evaluate(work, *data.test)
        example = data.train[0][:1]
        dense_flops = subset_flops(work, example, count_zeros=True)
        emit({"phase": "reference", "val_accuracy": dict(reference), "test_accuracy": dict(dense_test)})
        torch.manual_seed(config.seed)  # dropout
        run = _Run.start(work, cfg, config, data.train[0].shape[0])
        _train(run, data, config.batch_size, emit)
        final = run.baked()
        val, test = evaluate(final, *data.val), evaluate(final, *data.test)
        extra = {"sparsity": run.sparsity(), "sparsity_series": sparsity_series(run.log),
                 "delta_t": delta_t(test, dense_test), "task_delta_t": task_deltas(test, dense_test),
                 "dense_test_accuracy": dense_test, "dense_flops": dense_flops,
                 "sparse_flops": subset_flops(final, example), "frozen_at_step": run.frozen_at,
                 "thresholds": run.log[-1]["thresholds"], "component_sizes": run.sizes,
                 "config": asdict(cfg)}
        result = PruneResult(final, run.log, dict(reference), val, test, self.name,
                             time.perf_counter() - start, extra)
        emit({"phase": "done", "val_accuracy": val, "test_accuracy": test, "sparsity": extra["sparsity"],
              "delta_t": extra["delta_t"], "flops": extra["sparse_flops"]})
        return result


register_pruner("adapmtl", AdapMTLPruner)

__all__ = ["AdapMTLPruner", "components", "threshold_names", "component_sizes", "soft_threshold",
           "alphas_of", "sparse_params", "sparse_forward", "bake", "BACKBONE", "SHARED"]
