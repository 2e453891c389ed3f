"""Train and save the single-task networks of a preset (the CLI ``train`` command).

``install`` (the dashboard's "Train networks for this preset" job, which trains into its own run
folder) also copies the checkpoints to ``assets/<preset>`` when that preset has no networks there,
so the explorer finds them; it never replaces networks (checked before training, and again
under the folder's lock). ``out/progress.json`` tells the dashboard how far training is.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

import torch

from pam_explorer.core.config import DataConfig, TrainConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError, RunConflict
from pam_explorer.core.io import write_bytes_atomic, write_json_atomic
from pam_explorer.data import Preset, load_preset_data, task_targets
from pam_explorer.runs.outdir import claim
from pam_explorer.train.train import binary_accuracy, train_single_task
from pam_explorer.zoo import build_model, save_checkpoint
from pam_explorer.zoo.pretrained import DEFAULT_ARCH, asset_dir
from pam_explorer.zoo.registry import model_options


def train_preset(preset: Preset, arch: str = DEFAULT_ARCH, config: TrainConfig = TrainConfig(),
                 data: DataConfig = DataConfig(), out: Path | None = None,
                 progress: Callable[[str, dict], None] | None = None, force: bool = False,
                 install: bool = False, extra_meta: dict | None = None,
                 hparams: dict | None = None) -> dict:
    """Train one ``arch`` network per task of ``preset``; save each as <out>/<task>.safetensors.

    ``out`` None: where :func:`~pam_explorer.zoo.pretrained.load_pretrained` looks for ``arch``
    (assets/<preset>/ for LeNet-5, assets/<preset>/<arch>/ otherwise). Pictures are
    ``data.image_size`` wide (None: the preset's natural size). Returns
    {"preset", "arch", "tasks": {task: {val_accuracy, test_accuracy, seconds, path}}} (+ "installed":
    the assets folder, with ``install``); ``extra_meta`` (e.g. the command) is added to every JSON
    sidecar. ``out`` is claimed first (:func:`pam_explorer.runs.outdir.claim`): checkpoints of
    another or an unknown training configuration there (the committed ones included) are replaced
    only with ``force``. ``install``: see the module docstring; RunConflict if the preset has
    networks of ``arch``. ``hparams`` (e.g. {"width": 0.125, "small_input": True} for a ResNet) go
    to the architecture's factory and are recorded in the sidecars; ConfigError names an option
    the architecture does not have.
    """
    hparams = dict(hparams or {})
    known = model_options(arch)  # an unknown name fails before the data is composed
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ConfigError(f"train --arch {arch}: no option(s) {unknown}; {arch} has {known}")
    resolve_device(config.device)  # so does "cuda" without a GPU
    out = Path(out) if out is not None else asset_dir(preset.name, arch)
    data = preset.data_config(data)
    marker = {"preset": preset.name, "arch": arch, "train": dataclasses.asdict(config),
              "data": dataclasses.asdict(data), **({"hparams": hparams} if hparams else {})}
    outputs = [f"{t}{ext}" for t in preset.task_names for ext in (".safetensors", ".json")]
    if install:
        if out.absolute() == asset_dir(preset.name, arch).absolute():
            raise ConfigError("--install copies from --out to the assets folder: give another --out")
        _check_installable(preset, arch)  # before any work
    with claim(out, "train", marker, outputs, force=force):
        summary = _train(preset, arch, config, data, out, progress, extra_meta, hparams)
    if install:
        dest = asset_dir(preset.name, arch)
        with claim(dest, "train", marker, outputs):
            _check_installable(preset, arch)  # again, under the lock
            for name in outputs:
                write_bytes_atomic(dest / name, (out / name).read_bytes())
        summary["installed"] = str(dest)
    return summary


def _check_installable(preset: Preset, arch: str) -> None:
    dest = asset_dir(preset.name, arch)
    if any((dest / f"{t}.safetensors").exists() for t in preset.task_names):
        raise RunConflict(f"preset {preset.name!r} already has {arch} networks in {dest}; --install never "
                          "replaces them (train into --out and use those, or `python -m pam_explorer train "
                          f"--preset {preset.name} --force` to replace them)")


def _train(preset: Preset, arch: str, config: TrainConfig, data: DataConfig, out: Path,
           progress: Callable[[str, dict], None] | None, extra_meta: dict | None,
           hparams: dict) -> dict:
    say = _progress_file(out, preset, config)
    say(0, None, "composing the data")
    splits = load_preset_data(preset, data)
    train, val, test = splits["train"], splits["val"], splits["test"]
    in_ch, size = train.images.shape[1], train.images.shape[-1]
    summary: dict = {"preset": preset.name, "arch": arch, "tasks": {}}
    for i, task in enumerate(preset.task_names):
        torch.manual_seed(config.seed + i)
        ys = [task_targets(s.labels, preset, task) for s in (train, val, test)]
        model = build_model(arch, ys[0].shape[1], in_ch, size, **hparams)

        def cb(row: dict, _t: str = task, _i: int = i) -> None:
            say(_i, row["epoch"], f"task {_t}: epoch {row['epoch']}/{config.epochs}, "
                                  f"val accuracy {row['val_accuracy']:.2f} %")
            if progress:
                progress(_t, row)
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
    say(len(preset.task_names), None, "done")
    return summary


def _progress_file(out: Path, preset: Preset, config: TrainConfig) -> Callable:
    """say(task index, epoch or None, message) -> out/progress.json {"stage", "fraction", "message"}."""
    k = len(preset.task_names)

    def say(i: int, epoch: int | None, message: str) -> None:
        within = 0.0 if epoch is None else epoch / max(1, config.epochs)
        stage = "done" if i >= k else f"train {preset.task_names[i]} ({i + 1}/{k})"
        write_json_atomic(out / "progress.json", {
            "stage": stage, "fraction": round(min(1.0, (i + within) / k), 4), "message": message,
            "time": time.time(), "stage_number": min(i + 1, k), "stages": k,
            "stage_fraction": round(1.0 if i >= k else within, 4)})
    return say
