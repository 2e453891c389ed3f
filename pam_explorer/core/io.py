"""Atomic file writes: the one helper for status files, reports, stage records, caches, exports.

A file is written to a unique temporary name in the same folder (pid + random suffix, so two
writers never share it) and renamed over the target, so a reader sees the old file or the new
one, never half of one; a failed write leaves no temporary file behind.

Standard library only: ``runs/jobs.py`` loads this file by path when it runs as the detached
wrapper script (``python -I``), without the package.
"""
from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on a clean exit it replaces ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """``json.dumps(obj, indent=indent)`` to ``path``, atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=indent))


__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic"]
