"""Content-keyed cache of experiment stages (one scheme under one seed), shared across runs.

A stage is keyed by everything that determines its result (scheme, preset, the networks'
weights, data, pruning, MTZ and finetuning settings, regrouping for PAM, seed, code version), so
the B1 and B2 stages of a seed are computed once and reused by every PAM configuration, every
experiment and every sweep point with the same settings. An entry is a folder
``<cache root>/stages/<key>/`` holding ``record.json`` and the stage's pruned networks as export
zips (safetensors + JSON: nothing in it executes). Run folders keep their own copies: clearing
the cache never loses a result. An entry that cannot be read is ignored (and recomputed).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pam_explorer.core.io import write_json_atomic

STAGE_VERSION = "stage-v4"  # bump when a stage's computation changes (v4: schedules and curves)
log = logging.getLogger(__name__)


def stage_key(payload: Mapping[str, Any]) -> str:
    """SHA-256 (32 hex digits) of the canonical JSON of ``payload`` plus the stage version."""
    blob = json.dumps({**payload, "code": STAGE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class StageCache:
    """get/put of stage records by key under ``root`` (None: a cache that never hits)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = None if root is None else Path(root) / "stages"

    def get(self, key: str) -> tuple[dict, Path] | None:
        """(record, entry folder) of a complete entry, else None."""
        if self.root is None:
            return None
        folder = self.root / key
        try:
            record = json.loads((folder / "record.json").read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(record, dict) or not all((folder / f).is_file() for f in record.get("_files", [])):
            log.warning("ignoring incomplete stage cache entry %s", folder)
            return None
        return record, folder

    def put(self, key: str, record: Mapping[str, Any], files: Mapping[str, Path]) -> None:
        """Store ``record`` and copies of ``files`` ({name in the entry: source path}); the entry
        appears complete or not at all (written beside, then renamed into place)."""
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{key}.{uuid.uuid4().hex}.tmp"
        tmp.mkdir()
        try:
            for name, src in files.items():
                shutil.copyfile(src, tmp / name)
            write_json_atomic(tmp / "record.json", {**record, "_files": sorted(files)})
            final = self.root / key
            if final.exists():
                shutil.rmtree(tmp)  # another run stored the same stage meanwhile: keep that one
                return
            tmp.rename(final)
        except OSError as exc:  # a full disk must not fail the experiment: the run folder has it
            log.warning("could not store stage %s in the cache (%s)", key, exc)
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["StageCache", "stage_key", "STAGE_VERSION"]
