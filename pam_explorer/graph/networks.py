"""The single-task networks of a preset or of a project, one per task, in task order (eval mode).

A preset's are the committed ones (:func:`pam_explorer.zoo.pretrained.load_pretrained`, by
architecture); a project's are the files its tasks name, or ``nets/<task>.safetensors`` beside
the project file (what ``train --project`` writes), loaded by
:func:`pam_explorer.zoo.user_nets.network_from_state` with the task's label count, the
project's channels and picture size. Every error names the project file and the task's key.
Networks merge layer by layer, so a project's tasks must share one architecture (widths, and a
chain net's depth, may differ).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from pam_explorer.core.errors import ConfigError, DataMissing, PamError, StructureError
from pam_explorer.data.catalogue import Preset
from pam_explorer.data.project import ProjectPreset
from pam_explorer.zoo.pretrained import DEFAULT_ARCH, load_pretrained
from pam_explorer.zoo.user_nets import network_from_state, read_network_file


def task_networks(preset: Preset, arch: str | None = None) -> list[nn.Module]:
    """The networks of ``preset``: committed ``arch`` ones, or a project's own (``arch`` must then
    be None or the default: the project file names each task's)."""
    if isinstance(preset, ProjectPreset):
        if arch not in (None, DEFAULT_ARCH):
            raise ConfigError(f"--arch {arch} does not apply to a project: {Path(preset.name).name} names "
                              "each task's architecture (tasks.NAME.arch)")
        return project_networks(preset)
    return load_pretrained(preset.name, preset.task_names, arch)


def project_networks(project: ProjectPreset) -> list[nn.Module]:
    """Every task's network of ``project`` (see the module docstring); StructureError when they
    are of different architectures."""
    nets = [project_network(project, t) for t in project.task_names]
    archs = {t: getattr(n, "arch", None) for t, n in zip(project.task_names, nets)}
    if len(set(archs.values())) > 1:
        raise StructureError(f"{Path(project.name).name}: the tasks' networks are of different architectures "
                             f"({', '.join(f'{t}: {a}' for t, a in archs.items())}); PAM merges networks of "
                             "one architecture layer by layer (widths may differ)")
    return nets


def project_network(project: ProjectPreset, task: str) -> nn.Module:
    """The network of ``task``; DataMissing saying how to create it when there is none."""
    i = project.task_index(task)
    spec, file = project.nets[i], Path(project.name)
    rel = _relative(Path(spec.path), file.parent)
    if not Path(spec.path).is_file():
        if spec.named:
            raise DataMissing(f"{file.name}: tasks.{task}.net = {rel!r}: {spec.path} does not exist")
        raise DataMissing(f"{file.name}: task {task} has no network (tasks.{task}.net is not set and {rel} "
                          f"does not exist); create the missing ones with: python -m pam_explorer train "
                          f"--project {file}")
    where = f"{file.name}: tasks.{task}.net ({rel})"
    try:
        state, meta = read_network_file(spec.path)
    except PamError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    return network_from_state(state, meta, arch=spec.arch, options=dict(spec.options),
                              num_outputs=len(project.task_labels[i]), in_channels=project.channels,
                              image_size=project.size, where=where)


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


__all__ = ["task_networks", "project_networks", "project_network"]
