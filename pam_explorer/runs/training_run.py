"""Train and save the single-task networks of a preset (the CLI ``train`` command)."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import torch

from pam_explorer.core.config import DataConfig, TrainConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.data import Preset, load_preset_data, task_targets
from pam_explorer.runs.outdir import claim
from pam_explorer.train.train import binary_accuracy, train_single_task
from pam_explorer.zoo import build_model, get_model, save_checkpoint
from pam_explorer.zoo.pretrained import DEFAULT_ARCH, asset_dir


def train_preset(preset: Preset, arch: str = DEFAULT_ARCH, config: TrainConfig = TrainConfig(),
                 data: DataConfig = DataConfig(), out: Path | None = None,
                 progress: Callable[[str, dict], None] | None = None, force: bool = False,
                 extra_meta: dict | None = None) -> dict:
    """Train one ``arch`` network per task of ``preset``; save each as <out>/<task>.safetensors.

    ``out`` None: where :func:`~pam_explorer.zoo.pretrained.load_pretrained` looks for ``arch``
    (assets/<preset>/ for LeNet-5, assets/<preset>/<arch>/ otherwise). Pictures are
    ``data.image_size`` wide (None: the preset's natural size). Returns
    {"preset", "arch", "tasks": {task: {val_accuracy, test_accuracy, seconds, path}}}; ``extra_meta``
    (e.g. the command) is added to every JSON sidecar.
    ``out`` is claimed first (:func:`pam_explorer.runs.outdir.claim`): checkpoints of another or an
    unknown training configuration there (the committed ones included) are replaced only with
    ``force``.
    """
    get_model(arch)  # an unknown name fails before the data is composed
    resolve_device(config.device)  # so does "cuda" without a GPU
    out = Path(out) if out is not None else asset_dir(preset.name, arch)
    data = preset.data_config(data)
    marker = {"preset": preset.name, "arch": arch, "train": dataclasses.asdict(config),
              "data": dataclasses.asdict(data)}
    outputs = [f"{t}{ext}" for t in preset.task_names for ext in (".safetensors", ".json")]
    with claim(out, "train", marker, outputs, force=force):
        return _train(preset, arch, config, data, out, progress, extra_meta)


def _train(preset: Preset, arch: str, config: TrainConfig, data: DataConfig, out: Path,
           progress: Callable[[str, dict], None] | None, extra_meta: dict | None) -> dict:
    splits = load_preset_data(preset, data)
    train, val, test = splits["train"], splits["val"], splits["test"]
    in_ch, size = train.images.shape[1], train.images.shape[-1]
    summary: dict = {"preset": preset.name, "arch": arch, "tasks": {}}
    for i, task in enumerate(preset.task_names):
        torch.manual_seed(config.seed + i)
        ys = [task_targets(s.labels, preset, task) for s in (train, val, test)]
        model = build_model(arch, ys[0].shape[1], in_ch, size)
        cb = (lambda row, _t=task: progress(_t, row)) if progress else None
        result = train_single_task(model, (train.images, ys[0]), (val.images, ys[1]), config, cb)
        test_acc = binary_accuracy(model, test.images, ys[2], device=resolve_device(config.device))
        model.cpu().eval()
        meta = {"preset": preset.name, "task": task, "labels": list(preset.task_labels[i]),
                "seed": config.seed, "epochs": config.epochs,
                "data": {"n_train": data.n_train, "n_val": data.n_val, "n_test": data.n_test,
                         "seed": data.seed, "image_size": data.image_size},
                "val_accuracy": round(result.val_accuracy, 3), "test_accuracy": round(test_acc, 3),
                "train_seconds": round(result.seconds, 1), **(extra_meta or {})}
        path = save_checkpoint(model, out / f"{task}.safetensors", meta)
        summary["tasks"][task] = {"val_accuracy": result.val_accuracy, "test_accuracy": test_acc,
                                  "seconds": result.seconds, "path": str(path)}
    return summary
