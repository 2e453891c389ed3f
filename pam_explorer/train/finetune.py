"""Joint finetuning of a merged network (PAM step 5) and per-task evaluation.

Loss = sum over tasks of BCEWithLogits (mean over samples and labels). After backward, each
parameter's gradient is divided by the number of tasks whose subgraph uses it (|tau| for a group
keyed tau, 1 for a head): for a shared group that is the average of the per-task gradients, the
paper's "calculated separately on A and B, then averaged". Exclusive groups and heads get their
own task's gradient unchanged.

Cancellation: the progress callback may raise; the exception propagates and training stops
(the net keeps the weights of the last completed step).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from pam_explorer.core.config import FinetuneConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import DataError
from pam_explorer.merge.merged_net import MergedNet

Targets = Mapping[str, torch.Tensor]  # task -> (N, L_t) float {0, 1}
Split = tuple[torch.Tensor, Targets]  # images (N, C, H, W), targets
Progress = Callable[[dict], None]


@dataclass
class FinetuneResult:
    """history: one {"epoch", "loss", "val_accuracy": {task: %}} per epoch;
    val_accuracy: per-task validation accuracy (percent) after the last epoch."""

    history: list[dict] = field(default_factory=list)
    val_accuracy: dict[str, float] = field(default_factory=dict)


def _check_split(net: MergedNet, split: Split, name: str, tasks: Sequence[str]) -> None:
    images, targets = split
    n = images.shape[0]
    for j, t in enumerate(net.tasks):
        if t not in tasks:
            continue
        if t not in targets:
            raise DataError(f"{name}: no targets for task {t!r}; got {sorted(targets)}")
        want = (n, net.geometry.head_outputs[j])
        if tuple(targets[t].shape) != want:
            raise DataError(f"{name}: targets of task {t!r} have shape {tuple(targets[t].shape)}, "
                            f"expected {want}")


def grad_scales(net: MergedNet) -> dict[str, float]:
    """{parameter name: 1 / number of tasks whose subgraph uses it}."""
    return {name: 1.0 / n for name, n in net.task_counts().items()}


def scale_gradients(net: MergedNet, scales: Mapping[str, float] | None = None) -> None:
    """Divide every parameter's .grad in place by its task count (call after backward)."""
    scales = grad_scales(net) if scales is None else scales
    for name, p in net.named_parameters():
        if p.grad is not None and scales[name] != 1.0:
            p.grad.mul_(scales[name])


def joint_loss(net: MergedNet, images: torch.Tensor, targets: Targets,
               tasks: Sequence[str] | None = None) -> torch.Tensor:
    """Sum over ``tasks`` (default all) of the mean BCE-with-logits loss; images (N, C, H, W)."""
    tasks = list(net.tasks if tasks is None else tasks)
    logits = net(images, tasks)
    return sum(F.binary_cross_entropy_with_logits(logits[t], targets[t].to(logits[t].dtype)) for t in tasks)


@torch.no_grad()
def evaluate(net: MergedNet, images: torch.Tensor, targets: Targets, tasks: Sequence[str] | None = None,
             batch_size: int = 512) -> dict[str, float]:
    """{task: binary accuracy in percent}: mean over samples and labels of
    (sigmoid(logit) > 0.5) == y. Eval mode (restored after), on the net's device, only the
    groups the requested tasks need are run."""
    tasks = list(net.tasks if tasks is None else tasks)
    _check_split(net, (images, targets), "evaluate", tasks)
    param = next(net.parameters())
    correct = {t: 0.0 for t in tasks}
    was_training = net.training
    net.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(param.device)
            logits = net(x, tasks)
            for t in tasks:
                y = targets[t][start:start + batch_size].to(param.device)
                # logit > 0 is sigmoid > 0.5 without the rounding of sigmoid near 0.5
                correct[t] += float(((logits[t] > 0) == (y > 0.5)).sum())
    finally:
        net.train(was_training)
    n = images.shape[0]
    return {t: 100.0 * correct[t] / max(1, n * targets[t].shape[1]) for t in tasks}


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a final batch of one sample is dropped (BatchNorm needs two)."""
    order = torch.randperm(n, generator=gen)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks.pop()
    return chunks


def _train_epoch(net: MergedNet, optim: torch.optim.Optimizer, train: Split, scales: Mapping[str, float],
                 batch_size: int, gen: torch.Generator, device: torch.device) -> float:
    images, targets = train
    net.train()
    total, count = 0.0, 0
    for idx in _batches(images.shape[0], batch_size, gen):
        x = images[idx].to(device)
        y = {t: targets[t][idx].to(device) for t in net.tasks}
        optim.zero_grad(set_to_none=True)
        loss = joint_loss(net, x, y)
        loss.backward()
        scale_gradients(net, scales)
        optim.step()
        total += float(loss.detach()) * idx.numel()
        count += idx.numel()
    return total / max(1, count)


def finetune(net: MergedNet, train: Split, val: Split, config: FinetuneConfig,
             progress: Progress | None = None) -> FinetuneResult:
    """Jointly finetune ``net`` in place (moved to config.device) with Adam.

    train/val: (images (N, C, H, W), {task: (N, L_t) float {0, 1}}). Seeded by config.seed
    (shuffling and dropout). With epochs = 0 no weight or BatchNorm statistic changes. After each
    epoch ``progress`` (if given) receives {"epoch", "loss" (mean train loss),
    "val_accuracy": {task: %}}. The net is left in its original train/eval mode.
    """
    _check_split(net, train, "train", net.tasks)
    _check_split(net, val, "val", net.tasks)
    device = resolve_device(config.device)
    was_training = net.training
    net.to(device)
    torch.manual_seed(config.seed)  # dropout masks
    gen = torch.Generator().manual_seed(config.seed)
    scales = grad_scales(net)
    params = [p for p in net.parameters() if p.requires_grad]
    result = FinetuneResult()
    try:
        if config.epochs > 0 and params:
            optim = torch.optim.Adam(params, lr=config.lr)
            for epoch in range(1, config.epochs + 1):
                loss = _train_epoch(net, optim, train, scales, config.batch_size, gen, device)
                acc = evaluate(net, val[0], val[1])
                record = {"epoch": epoch, "loss": loss, "val_accuracy": acc}
                result.history.append(record)
                if progress is not None:
                    progress(dict(record))
        result.val_accuracy = result.history[-1]["val_accuracy"] if result.history else evaluate(net, *val)
    finally:
        net.train(was_training)
    return result


__all__ = ["FinetuneResult", "finetune", "evaluate", "joint_loss", "grad_scales", "scale_gradients"]
