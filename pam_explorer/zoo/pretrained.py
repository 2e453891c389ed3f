"""Default pre-trained single-task networks committed under ``assets/<preset>/``.

Layout: ``<assets root>/<preset>/<task>.safetensors`` + ``<task>.json`` (architecture, preset,
seed, accuracy); the assets root is ``$PAM_ASSETS_ROOT`` or ``<repo>/assets``
(:func:`pam_explorer.core.paths.assets_root`). They are reproduced by
``python -m pam_explorer train --preset <preset> --force`` (it replaces the committed ones).
"""
from __future__ import annotations

from pathlib import Path

from pam_explorer.core.errors import DataMissing
from pam_explorer.core.paths import assets_root
from pam_explorer.zoo.chain import ChainNet
from pam_explorer.zoo.checkpoint import load_checkpoint, read_meta


def asset_dir(preset: str, root: Path | None = None) -> Path:
    return (root or assets_root()) / preset


def has_pretrained(preset: str, tasks: tuple[str, ...], root: Path | None = None) -> bool:
    d = asset_dir(preset, root)
    return all((d / f"{t}.safetensors").is_file() for t in tasks)


def load_pretrained(preset: str, tasks: tuple[str, ...], root: Path | None = None) -> list[ChainNet]:
    """The committed networks of ``preset``, one per task, in task order (eval mode)."""
    d = asset_dir(preset, root)
    missing = [t for t in tasks if not (d / f"{t}.safetensors").is_file()]
    if missing:
        raise DataMissing(
            f"no pre-trained networks for preset {preset!r} (missing {missing} in {d}); "
            f"create them with: python -m pam_explorer train --preset {preset}")
    return [load_checkpoint(d / f"{t}.safetensors").eval() for t in tasks]


def pretrained_meta(preset: str, task: str, root: Path | None = None) -> dict:
    return read_meta(asset_dir(preset, root) / f"{task}.safetensors")
