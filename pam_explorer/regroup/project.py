"""``pe.Project.open("pam.toml")``: the explorer of a project file (your own networks and data).

A project is read by :func:`pam_explorer.data.project.read_project` and its networks are loaded by
:mod:`pam_explorer.graph.networks`; what comes back is the :class:`~pam_explorer.regroup.explorer.Explorer`
that ``Explorer.open(preset)`` gives for a preset (its ``preset`` is the project, so
``load_preset_data(explorer.preset)`` and ``TaskData.from_splits(..., explorer.preset)`` read the
project's data).
"""
from __future__ import annotations

from pathlib import Path

from pam_explorer.core.config import DataConfig, MIConfig
from pam_explorer.data.project import ProjectPreset, read_project
from pam_explorer.graph.networks import project_networks
from pam_explorer.regroup.explorer import Explorer
from pam_explorer.regroup.trajectories import Progress


class Project:
    """Entry points of a project file (no instances: the project itself is a ProjectPreset)."""

    @staticmethod
    def open(path: str | Path, mi: MIConfig = MIConfig(), data: DataConfig = DataConfig(),
             use_cache: bool = True, progress: Progress | None = None) -> Explorer:
        """The Explorer of the project file ``path``: its networks, its data and the MI
        trajectories (computed once, cached by the project's content: data, labels, weights).
        Raises what :func:`read_project` and the network loaders raise (one line naming the file
        and the key, row or column)."""
        project = read_project(path)
        return Explorer.open(project, mi, data, nets=project_networks(project), use_cache=use_cache,
                             progress=progress)

    @staticmethod
    def read(path: str | Path) -> ProjectPreset:
        """The checked project (tasks, labels, data; networks named, not loaded)."""
        return read_project(path)


__all__ = ["Project"]
