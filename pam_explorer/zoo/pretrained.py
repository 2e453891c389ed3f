"""Default pre-trained single-task networks committed under ``assets/<preset>/``.

Layout (the assets root is ``$PAM_ASSETS_ROOT`` or ``<repo>/assets``,
:func:`pam_explorer.core.paths.assets_root`):

* ``<root>/<preset>/<task>.safetensors`` + ``<task>.json``: the networks of the default
  architecture (``DEFAULT_ARCH``, LeNet-5), e.g. ``assets/digits-2task/A.safetensors``;
* ``<root>/<preset>/<arch>/<task>.safetensors`` + ``.json``: networks of any other registered
  architecture, e.g. ``assets/mnist-2task/resnet18/A.safetensors``.

The JSON sidecar records the architecture, preset, seeds and accuracy; loading checks that its
architecture is the one asked for. Both are created by
``python -m pam_explorer train --preset <preset> [--arch <arch>]`` (default ``--out``: the folder
above; ``--force`` replaces existing ones, the committed ones included).
"""
from __future__ import annotations

from pathlib import Path

from torch import nn

from pam_explorer.core.errors import CheckpointMismatch, DataMissing
from pam_explorer.core.paths import assets_root
from pam_explorer.zoo.checkpoint import load_checkpoint, read_meta

DEFAULT_ARCH = "lenet5"  # the architecture stored directly under assets/<preset>/


def asset_dir(preset: str, arch: str | None = None, root: Path | None = None) -> Path:
    """Folder of the committed ``arch`` networks of ``preset`` (None: the default architecture)."""
    base = (root or assets_root()) / preset
    return base if arch in (None, DEFAULT_ARCH) else base / arch


def train_command(preset: str, arch: str | None = None) -> str:
    """The command that (re)creates the networks :func:`load_pretrained` looks for."""
    extra = "" if arch in (None, DEFAULT_ARCH) else f" --arch {arch}"
    return f"python -m pam_explorer train --preset {preset}{extra}"


def has_pretrained(preset: str, tasks: tuple[str, ...], arch: str | None = None,
                   root: Path | None = None) -> bool:
    d = asset_dir(preset, arch, root)
    return all((d / f"{t}.safetensors").is_file() for t in tasks)


def load_pretrained(preset: str, tasks: tuple[str, ...], arch: str | None = None,
                    root: Path | None = None) -> list[nn.Module]:
    """The committed ``arch`` networks of ``preset`` (None: the default architecture), one per
    task, in task order, in eval mode.

    Raises DataMissing naming the missing files and the command that creates them, and
    CheckpointMismatch when a sidecar names another architecture than ``arch``.
    """
    d = asset_dir(preset, arch, root)
    missing = [t for t in tasks if not (d / f"{t}.safetensors").is_file()]
    if missing:
        what = f"{arch} networks" if arch not in (None, DEFAULT_ARCH) else "networks"
        raise DataMissing(
            f"no pre-trained {what} for preset {preset!r} (missing {missing} in {d}); "
            f"create them with: {train_command(preset, arch)}")
    want = arch or DEFAULT_ARCH
    for t in tasks:
        have = read_meta(d / f"{t}.safetensors").get("arch")
        if have != want:
            raise CheckpointMismatch(f"{d / t}.json describes a {have} network, not {want}; "
                                     f"re-create the folder with: {train_command(preset, arch)}")
    return [load_checkpoint(d / f"{t}.safetensors").eval() for t in tasks]


def pretrained_meta(preset: str, task: str, arch: str | None = None, root: Path | None = None) -> dict:
    return read_meta(asset_dir(preset, arch, root) / f"{task}.safetensors")
