"""The commands of project files: ``train --project`` and ``project --preset``.

* :func:`train_project` creates the networks a project lacks: every task whose file does not
  name a network and has no ``nets/<task>.safetensors`` beside the project file gets one,
  trained on the project's train split (best validation epoch kept) and saved there with its
  JSON sidecar. It is the one command that writes into a project's folder, and it never
  replaces a file: existing networks are kept as they are.
* :func:`write_preset_project` writes a preset as a project (``pam.toml``, ``data.npz`` with the
  float pictures as the preset composes them, so nothing is re-quantised, and the committed
  networks in ``nets/``): an example to edit. Opened again it gives the preset's groups.
"""
from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from pam_explorer.core.config import DataConfig, TrainConfig
from pam_explorer.core.device import resolve_device
from pam_explorer.core.errors import ConfigError, DataMissing, PamError, RunConflict
from pam_explorer.core.io import write_bytes_atomic, write_text_atomic
from pam_explorer.data import get_preset, load_preset_data, task_targets
from pam_explorer.data.project import NETS_DIR, ProjectPreset
from pam_explorer.runs.outdir import claim
from pam_explorer.train.train import binary_accuracy, train_single_task
from pam_explorer.zoo import build_model, save_checkpoint
from pam_explorer.zoo.pretrained import asset_dir, load_pretrained, pretrained_meta

Progress = Callable[[str, dict], None]  # (task, {"epoch", "loss", "val_accuracy"})
PROJECT_OUTPUTS = ("pam.toml", "data.npz", NETS_DIR)


def missing_networks(project: ProjectPreset) -> list[str]:
    """Tasks whose network ``train --project`` would create; DataMissing / ConfigError (naming the
    task's key) for a task it cannot create one for."""
    todo = []
    for t, spec in zip(project.task_names, project.nets):
        if Path(spec.path).is_file():
            continue
        where = f"{Path(project.name).name}: tasks.{t}"
        if spec.named:
            raise DataMissing(f"{where}.net = {spec.path!r} does not exist; train writes only "
                              f"{NETS_DIR}/{t}.safetensors: remove tasks.{t}.net to create it there")
        if spec.arch is None:
            raise ConfigError(f"{where}.arch: not set; train needs the architecture of the network to create")
        todo.append(t)
    return todo


def train_project(project: ProjectPreset, config: TrainConfig = TrainConfig(),
                  data: DataConfig = DataConfig(), progress: Progress | None = None,
                  extra_meta: dict | None = None,
                  start: Callable[[dict[str, torch.nn.Module]], None] | None = None) -> dict:
    """Create the missing networks of ``project`` (see the module docstring).

    Returns {"project", "created": {task: {val_accuracy, test_accuracy, seconds, path}}, "kept":
    [tasks whose network existed]}. Every check (architectures, options, device) runs before any
    training; then ``start({task: untrained network})`` is called (the CLI prints its estimate).
    """
    todo = missing_networks(project)
    resolve_device(config.device)
    models = {t: _untrained(project, t) for t in todo}  # bad options fail before any training
    summary: dict = {"project": project.name, "created": {}, "kept": [t for t in project.task_names
                                                                       if t not in todo]}
    if not todo:
        return summary
    if start is not None:
        start(models)
    splits = load_preset_data(project, data)
    for t in todo:
        i = project.task_index(t)
        torch.manual_seed(config.seed + i)
        ys = [task_targets(s.labels, project, t) for s in (splits["train"], splits["val"], splits["test"])]
        model = models[t]
        result = train_single_task(model, (splits["train"].images, ys[0]), (splits["val"].images, ys[1]),
                                   config, (lambda row, _t=t: progress(_t, row)) if progress else None)
        test_acc = binary_accuracy(model, splits["test"].images, ys[2], device=resolve_device(config.device))
        path = Path(project.nets[i].path)
        if path.exists():
            raise RunConflict(f"{path} appeared while task {t} was training; it is not replaced")
        meta = {"project": project.name, "task": t, "labels": project.task_label_names()[t],
                "seed": config.seed, "epochs": config.epochs, "val_accuracy": round(result.val_accuracy, 3),
                "test_accuracy": round(test_acc, 3), "train_seconds": round(result.seconds, 1),
                **(extra_meta or {})}
        save_checkpoint(model.cpu().eval(), path, meta)
        summary["created"][t] = {"val_accuracy": result.val_accuracy, "test_accuracy": test_acc,
                                 "seconds": result.seconds, "path": str(path)}
    return summary


def _untrained(project: ProjectPreset, task: str) -> torch.nn.Module:
    i = project.task_index(task)
    spec = project.nets[i]
    try:
        return build_model(spec.arch, len(project.task_labels[i]), project.channels, project.size,
                           **dict(spec.options))
    except (PamError, TypeError) as exc:
        raise ConfigError(f"{Path(project.name).name}: tasks.{task}: cannot build {spec.arch} with "
                          f"options {dict(spec.options)} ({exc})") from exc


# --------------------------------------------------------------------------- preset -> project
def write_preset_project(preset: str, out: str | Path, arch: str | None = None) -> dict:
    """Write ``preset`` (its default data and committed ``arch`` networks) as a project in ``out``.

    ``out`` is claimed like every command's folder (a file, or another command's results, is
    refused before anything is written). Returns {"project": path of pam.toml, "pictures": N,
    "tasks": [...]}.
    """
    p = get_preset(preset)
    load_pretrained(p.name, p.task_names, arch)  # the networks must exist (and load) first
    splits = load_preset_data(p, DataConfig())
    with claim(out, "project", {"preset": p.name, "arch": arch}, PROJECT_OUTPUTS) as folder:
        names = list(splits["train"].label_names)
        order = ("train", "val", "test")
        images = torch.cat([splits[s].images for s in order]).numpy().astype(np.float32)
        labels = torch.cat([splits[s].labels for s in order]).numpy().round().astype(np.uint8)
        split = np.array([s for s in ("train", "val", "test") for _ in range(len(splits[s]))])
        nets_dir = folder / NETS_DIR
        nets_dir.mkdir(exist_ok=True)
        src = asset_dir(p.name, arch)
        archs = {}
        for t in p.task_names:
            for ext in (".safetensors", ".json"):
                write_bytes_atomic(nets_dir / f"{t}{ext}", (src / f"{t}{ext}").read_bytes())
            archs[t] = pretrained_meta(p.name, t, arch).get("arch")
        _write_npz(folder / "data.npz", images=images, labels=labels, split=split,
                   label_names=np.array(names))
        toml = _toml(p, names, archs, images.shape[-1])
        write_text_atomic(folder / "pam.toml", toml)
    return {"project": str(Path(out) / "pam.toml"), "pictures": int(len(images)), "tasks": list(p.task_names)}


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def _toml(p, names: list[str], archs: dict, size: int) -> str:
    s = json.dumps  # a JSON string is a valid TOML basic string
    lines = [f"# {p.description}", f"# written by: python -m pam_explorer project --preset {p.name}",
             f"name = {s(p.name)}", f"image_size = {size}", "resize = false", f"channels = {p.in_channels}",
             f"alpha = {p.default_alpha!r}", "", "[data]", 'npz = "data.npz"']
    for t, cols in zip(p.task_names, p.task_labels):
        lines += ["", f"[tasks.{s(t)}]", f"labels = [{', '.join(s(names[c]) for c in cols)}]",
                  f"net = {s(f'{NETS_DIR}/{t}.safetensors')}", f"arch = {s(archs[t])}"]
    return "\n".join(lines) + "\n"


__all__ = ["train_project", "missing_networks", "write_preset_project"]
