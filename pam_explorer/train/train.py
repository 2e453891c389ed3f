"""Single-task pre-training: one network per task of a preset, multi-label BCE."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from pam_explorer.core.config import TrainConfig
from pam_explorer.core.device import resolve_device

Progress = Callable[[dict], None]


@dataclass
class TrainResult:
    """Per-epoch history and final binary accuracies (percent) of one trained network."""

    history: list[dict] = field(default_factory=list)
    val_accuracy: float = float("nan")
    test_accuracy: float = float("nan")
    seconds: float = 0.0


@torch.no_grad()
def binary_accuracy(model: nn.Module, images: torch.Tensor, targets: torch.Tensor,
                    batch_size: int = 512, device: str | torch.device = "cpu") -> float:
    """Mean over samples and labels of (sigmoid(logit) > 0.5) == target, in percent.

    images: (N, C, H, W); targets: (N, L) in {0, 1}.
    """
    was_training = model.training
    model.eval().to(device)
    correct = 0.0
    for s in range(0, images.shape[0], batch_size):
        logits = model(images[s:s + batch_size].to(device))
        correct += ((logits > 0).float() == targets[s:s + batch_size].to(device)).float().sum().item()
    model.train(was_training)
    return 100.0 * correct / targets.numel()


def train_single_task(model: nn.Module, train: tuple[torch.Tensor, torch.Tensor],
                      val: tuple[torch.Tensor, torch.Tensor], config: TrainConfig = TrainConfig(),
                      progress: Progress | None = None) -> TrainResult:
    """Train ``model`` on (images (N,C,H,W), targets (N,L)) with BCE-with-logits and Adam.

    Keeps the weights of the epoch with the best validation accuracy.
    """
    device = resolve_device(config.device)
    gen = torch.Generator().manual_seed(config.seed)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    loss_fn = nn.BCEWithLogitsLoss()
    images, targets = train
    result, best, t0 = TrainResult(), (-1.0, None), time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        perm = torch.randperm(images.shape[0], generator=gen)
        total = 0.0
        for s in range(0, len(perm), config.batch_size):
            idx = perm[s:s + config.batch_size]
            loss = loss_fn(model(images[idx].to(device)), targets[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        acc = binary_accuracy(model, *val, device=device)
        row = {"epoch": epoch + 1, "loss": total / len(perm), "val_accuracy": acc}
        result.history.append(row)
        if acc > best[0]:
            best = (acc, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if progress:
            progress(row)
    if best[1] is not None:
        model.load_state_dict(best[1])
    result.val_accuracy, result.seconds = best[0], time.perf_counter() - t0
    return result
