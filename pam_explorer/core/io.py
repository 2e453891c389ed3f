"""Atomic file writes: the one helper for status files, reports, stage records, caches, exports.

A file is written to a unique temporary name in the same folder (pid + random suffix, created
exclusively, so two writers never share it and a planted file or symlink of that name is never
opened) and renamed over the target, so a reader sees the old file or the new one, never half of
one; a failed write leaves no temporary file behind. The rename replaces a symlink at the target
itself: a write never follows a symlink to somewhere else. :func:`copy_file_atomic` copies the
same way (and reads no symlink); :func:`open_append` appends to a log without following one.

JSON is written strict (RFC 8259): a non-finite float becomes the string "inf", "-inf" or
"nan" (:func:`strict_json`, the convention of the CLI's ``--json``); Python's ``float()`` reads
them back, and ``json.loads`` still reads files of older versions that hold ``Infinity``.

Standard library only: ``runs/jobs.py`` loads this file by path when it runs as the detached
wrapper script (``python -I``), without the package.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a new, empty temporary file beside ``path`` (created exclusively, so it is ours);
    on a clean exit it replaces ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644))
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


def strict_json(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by "inf", "-inf" or "nan" (tuples as lists)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return "nan" if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def from_strict(value: Any) -> Any:
    """The inverse of :func:`strict_json` for one value: "inf", "-inf", "nan" -> float; anything
    else unchanged."""
    return float(value) if isinstance(value, str) and value in ("inf", "-inf", "nan") else value


def dumps_strict(obj: Any, indent: int | None = 2, sort_keys: bool = False) -> str:
    """``json.dumps`` of :func:`strict_json` (``obj``): RFC 8259, no Infinity/NaN tokens."""
    return json.dumps(strict_json(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Strict JSON of ``obj`` (:func:`dumps_strict`) to ``path``, atomically."""
    return write_text_atomic(path, dumps_strict(obj, indent=indent))


def copy_file_atomic(src: str | Path, dst: str | Path, sha256: str | None = None) -> str:
    """Copy the regular file ``src`` (a symlink there is refused: OSError) to ``dst`` atomically;
    returns the copy's SHA-256 (hex). With ``sha256``, a copy of other content is discarded and
    ``dst`` left as it was (ValueError)."""
    fd = os.open(src, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as fin:
        if not stat.S_ISREG(os.fstat(fin.fileno()).st_mode):
            raise OSError(f"{src} is not a regular file")
        digest = hashlib.sha256()
        with atomic_path(dst) as tmp, open(tmp, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                digest.update(chunk)
                fout.write(chunk)
            fout.close()
            if sha256 is not None and digest.hexdigest() != sha256:
                raise ValueError(f"{src}: content hash {digest.hexdigest()[:12]}... differs from the "
                                 f"recorded {str(sha256)[:12]}...")
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 (hex) of the regular file ``path`` (a symlink is refused: OSError)."""
    digest = hashlib.sha256()
    with os.fdopen(os.open(path, os.O_RDONLY | _NOFOLLOW), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def open_append(path: str | Path) -> IO[bytes]:
    """``path`` opened to append bytes (created if missing), never through a symlink (OSError)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, 0o644), "ab")


__all__ = ["atomic_path", "write_bytes_atomic", "write_text_atomic", "write_json_atomic", "strict_json",
           "from_strict", "dumps_strict", "copy_file_atomic", "sha256_file", "open_append"]
