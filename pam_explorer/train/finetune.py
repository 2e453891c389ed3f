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
def picture_accuracy(net: MergedNet, images: torch.Tensor, targets: Targets,
                     tasks: Sequence[str] | None = None, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """{task: (N,) fraction of the task's labels predicted right on each picture}, float64 on
    the CPU; (sigmoid(logit) > 0.5) == y. Eval mode (restored after), on the net's device, only
    the groups the requested tasks need are run."""
    tasks = list(net.tasks if tasks is None else tasks)
    _check_split(net, (images, targets), "evaluate", tasks)
    param = next(net.parameters())
    parts: dict[str, list[torch.Tensor]] = {t: [] for t in tasks}
    was_training = net.training
    net.eval()
    try:
        for start in range(0, images.shape[0], batch_size):
            x = images[start:start + batch_size].to(param.device)
            logits = net(x, tasks)
            for t in tasks:
                y = targets[t][start:start + batch_size].to(param.device)
                # logit > 0 is sigmoid > 0.5 without the rounding of sigmoid near 0.5
                parts[t].append(((logits[t] > 0) == (y > 0.5)).double().mean(1).cpu())
    finally:
        net.train(was_training)
    return {t: torch.cat(p) if p else torch.zeros(0, dtype=torch.float64) for t, p in parts.items()}


def evaluate(net: MergedNet, images: torch.Tensor, targets: Targets, tasks: Sequence[str] | None = None,
             batch_size: int = 512) -> dict[str, float]:
    """{task: binary accuracy in percent}: mean over samples and labels of
    (sigmoid(logit) > 0.5) == y (see :func:`picture_accuracy`)."""
    per = picture_accuracy(net, images, targets, tasks, batch_size)
    return {t: 100.0 * float(a.mean()) if a.numel() else 0.0 for t, a in per.items()}


def evaluate_se(net: MergedNet, images: torch.Tensor, targets: Targets, tasks: Sequence[str] | None = None
                ) -> dict[str, tuple[float, float]]:
    """{task: (binary accuracy %, its standard error in points)}. The picture is the unit (its
    labels are read from one picture, so they are not independent): SE = sample standard
    deviation of the per-picture accuracy / sqrt(N)."""
    out = {}
    for t, a in picture_accuracy(net, images, targets, tasks).items():
        se = float(a.std(unbiased=True)) / a.numel() ** 0.5 if a.numel() > 1 else 0.0
        out[t] = (100.0 * float(a.mean()) if a.numel() else 0.0, 100.0 * se)
    return out


def _batches(n: int, batch_size: int, gen: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a final batch of one sample is dropped (BatchNorm needs two)."""
    order = torch.randperm(n, generator=gen)
    chunks = list(order.split(batch_size))
    if len(chunks) > 1 and chunks[-1].numel() == 1:
        chunks.pop()
    return chunks


def _train_epoch(net: MergedNet, optim: torch.optim.Optimizer, train: Split, scales: Mapping[str, float],
                 batch_size: int, gen: torch.Generator, device: torch.device,
                 sched: torch.optim.lr_scheduler.LRScheduler | None = None) -> float:
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
        if sched is not None:
            sched.step()
        total += float(loss.detach()) * idx.numel()
        count += idx.numel()
    return total / max(1, count)


def _cosine(optim: torch.optim.Optimizer, config: FinetuneConfig, n: int
            ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Cosine decay from config.lr to config.lr_end over every minibatch of the run (None: constant)."""
    if config.lr_end is None:
        return None
    per_epoch = -(-n // config.batch_size)
    per_epoch -= 1 if per_epoch > 1 and n % config.batch_size == 1 else 0  # as _batches drops it
    steps = config.epochs * max(1, per_epoch)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(1, steps), eta_min=config.lr_end)


def finetune(net: MergedNet, train: Split, val: Split, config: FinetuneConfig,
             progress: Progress | None = None) -> FinetuneResult:
    """Jointly finetune ``net`` in place (moved to config.device) with Adam.

    train/val: (images (N, C, H, W), {task: (N, L_t) float {0, 1}}). Seeded by config.seed
    (shuffling and dropout); with config.lr_end the lr decays (cosine, per minibatch) to it.
    With epochs = 0 no weight or BatchNorm statistic changes. After each epoch ``progress`` (if
    given) receives {"epoch", "loss" (mean train loss), "val_accuracy": {task: %}}.
    The net is left in its original train/eval mode.
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
            sched = _cosine(optim, config, train[0].shape[0])
            for epoch in range(1, config.epochs + 1):
                loss = _train_epoch(net, optim, train, scales, config.batch_size, gen, device, sched)
                acc = evaluate(net, val[0], val[1])
                record = {"epoch": epoch, "loss": loss, "val_accuracy": acc}
                result.history.append(record)
                if progress is not None:
                    progress(dict(record))
        result.val_accuracy = result.history[-1]["val_accuracy"] if result.history else evaluate(net, *val)
    finally:
        net.train(was_training)
    return result


__all__ = ["FinetuneResult", "finetune", "evaluate", "evaluate_se", "picture_accuracy", "joint_loss",
           "grad_scales", "scale_gradients"]
