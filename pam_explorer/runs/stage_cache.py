"""Content-keyed cache of experiment stages (one scheme under one seed), shared across runs.

A stage is keyed by everything that determines its result (scheme, preset, the networks'
weights, data, pruning, MTZ and finetuning settings, regrouping for PAM, seed, code version), so
the B1 and B2 stages of a seed are computed once and reused by every PAM configuration, every
experiment and every sweep point with the same settings. An entry is a folder
``<cache root>/stages/<key>/`` holding ``record.json`` and the stage's pruned networks as export
zips (safetensors + JSON: nothing in it executes). Run folders keep their own copies: clearing
the cache never loses a result. An entry that cannot be read is ignored (and recomputed).

The cache may be shared (``PAM_CACHE_ROOT`` on a cluster), so an entry is data to check, not to
trust (docs/security.md): the record must be a JSON object, every file it names (``_files``) a
plain name inside the entry (no folder part, no ``..``, not hidden), a regular file (not a
symlink) whose SHA-256 is the one the record lists (``_sha256``); anything else is a warning and
the stage is recomputed. The hash is kept beside the file, in the same writable folder: it
catches corruption (a truncated copy, a disk error, a stray edit), not someone who can write
the cache, who can rewrite the hash too.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pam_explorer.core.io import copy_file_atomic, sha256_file, write_json_atomic

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
        problem = entry_problem(record, folder)
        if problem:
            log.warning("ignoring stage cache entry %s: %s; the stage is recomputed", folder, problem)
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
            hashes = {}
            for name, src in files.items():
                if not safe_name(name):
                    raise ValueError(f"stage file name {name!r} is not a plain file name")
                hashes[name] = copy_file_atomic(src, tmp / name)
            write_json_atomic(tmp / "record.json", {**record, "_files": sorted(files), "_sha256": hashes})
            final = self.root / key
            if final.exists():
                shutil.rmtree(tmp)  # another run stored the same stage meanwhile: keep that one
                return
            tmp.rename(final)
        except OSError as exc:  # a full disk must not fail the experiment: the run folder has it
            log.warning("could not store stage %s in the cache (%s)", key, exc)
            shutil.rmtree(tmp, ignore_errors=True)


def safe_name(name: object) -> bool:
    """A plain file name: letters, digits, ``_.+-``, not hidden, no folder part (so ``folder /
    name`` stays in ``folder``)."""
    return isinstance(name, str) and bool(re.fullmatch(r"[A-Za-z0-9_+-][A-Za-z0-9_.+-]{0,199}", name))


def entry_problem(record: object, folder: Path) -> str | None:
    """Why the cache entry ``record`` (record.json of ``folder``) is not used, or None."""
    if not isinstance(record, dict):
        return f"record.json holds a JSON {type(record).__name__}, not an object"
    files, hashes = record.get("_files", []), record.get("_sha256")
    if not isinstance(files, list) or not all(safe_name(f) for f in files):
        return f"_files {files!r} are not plain file names inside the entry"
    if files and not (isinstance(hashes, dict) and set(hashes) >= set(files)):
        return "no content hash of its files (written before hashes were kept)"
    for f in files:
        try:
            if sha256_file(folder / f) != hashes[f]:
                return f"{f} differs from its recorded content hash (corrupt or changed)"
        except OSError as exc:
            return f"{f} cannot be read as a regular file ({exc.strerror or exc})"
    return None


__all__ = ["StageCache", "stage_key", "STAGE_VERSION", "safe_name", "entry_problem"]
