"""A pruning schedule's checkpoints on disk, so a stage stopped mid-way resumes from the last one.

A :class:`FolderStore` is the :class:`~pam_explorer.prune.schedule.CheckpointStore` of one pruned
network of a stage (``stages/<scheme>_s<seed>.work/[<task>/]``): every checkpoint's finetuned net
(``ckpt_<i>.zip``, an export zip) and, after it, the schedule's state at that moment
(``state_<i>.safetensors`` + ``state_<i>.json`` + ``state_<i>.zip``), made current by rewriting
``latest.json`` last (atomic writes: a stage killed while writing resumes from the previous
checkpoint). Only the newest state is kept. Nothing here executes code from the folder:
safetensors, JSON and export zips.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from pam_explorer import export
from pam_explorer.core.io import write_bytes_atomic, write_json_atomic
from pam_explorer.merge.merged_net import MergedNet
from pam_explorer.prune.schedule_state import ScheduleState

STATE_VERSION = 1


class FolderStore:
    """Checkpoints of one schedule in ``folder`` (created on the first save)."""

    def __init__(self, folder: str | Path, key: str = "") -> None:
        self.folder, self.key = Path(folder), key

    def save(self, point: dict, net: MergedNet, state: Callable[[], ScheduleState]) -> None:
        i = int(point["index"])
        self.folder.mkdir(parents=True, exist_ok=True)
        export.save(net, self.folder / f"ckpt_{i}.zip", {"checkpoint": i})
        snap = state()
        write_bytes_atomic(self.folder / f"state_{i}.safetensors", st_save(snap.tensors))
        export.save(snap.net, self.folder / f"state_{i}.zip", {"schedule_state": i})
        write_json_atomic(self.folder / f"state_{i}.json", snap.meta)
        previous = self._latest()
        latest = {"version": STATE_VERSION, "key": self.key, "index": i}
        write_json_atomic(self.folder / "latest.json", latest)
        if previous is not None and previous != i:
            for suffix in (".safetensors", ".zip", ".json"):
                (self.folder / f"state_{previous}{suffix}").unlink(missing_ok=True)

    def load_net(self, index: int) -> MergedNet:
        return export.load(self.folder / f"ckpt_{index}.zip")

    def _latest(self) -> int | None:
        try:
            raw = json.loads((self.folder / "latest.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(raw, dict) or raw.get("version") != STATE_VERSION or raw.get("key") != self.key \
                or not isinstance(raw.get("index"), int):
            return None
        return raw["index"]

    def resume_state(self) -> ScheduleState | None:
        """The newest complete state, or None (nothing saved, another stage key, or unreadable:
        the stage then starts over)."""
        i = self._latest()
        if i is None:
            return None
        try:
            tensors = st_load((self.folder / f"state_{i}.safetensors").read_bytes())
            meta = json.loads((self.folder / f"state_{i}.json").read_text())
            net = export.load(self.folder / f"state_{i}.zip")
        except (OSError, ValueError):  # PamError is a ValueError
            return None
        if not isinstance(meta, dict) or not all((self.folder / f"ckpt_{p['index']}.zip").is_file()
                                                 for p in meta.get("points", [])):
            return None
        return ScheduleState(net, tensors, meta)

    def clear(self) -> None:
        """Remove the folder (the stage is complete: its record and read-off nets are kept)."""
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["FolderStore", "STATE_VERSION"]
