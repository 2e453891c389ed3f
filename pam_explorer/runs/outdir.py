"""Output folders of the commands that write one (``train``, ``merge``, ``experiment``, later ``sweep``).

:func:`claim` is entered before any computing and held while the command writes:

* ``--out`` that is an existing file, or a folder that cannot be created or written (read-only
  file system, no permission), is a :class:`ConfigError` naming it; nothing is created.
* The folder is locked for the duration (``fcntl.flock`` on ``.pam-run.lock``, non-blocking): a
  second writer at the same time gets a :class:`RunConflict` at once ("being written by pid N").
  The kernel drops the lock when its process dies, so a killed command leaves no stale lock;
  the lock file is removed when the command ends.
* ``.pam-run.json`` records which command wrote the folder and with which configuration
  (``{"command": "merge", "config": {...}}``). A folder written by *another* command is refused
  (RunConflict), with or without ``force``: ``merge --out`` never replaces an experiment's pruned
  model. The same command with the same configuration goes ahead (an experiment resumes; merge
  and train recompute and rewrite their own files). The same command with another configuration
  is refused unless ``force`` (merge and train have ``--force``; an experiment never mixes two
  configurations in one stage cache, so it has none).
* A folder without a marker (written before markers existed) is judged by its files: an
  experiment's ``config.json``, a ``merge.json``, checkpoints with sidecars (train). A file the
  command would write whose origin is unknown (e.g. a ``model.zip`` without ``merge.json``) is
  refused. Job bookkeeping (status.json, log.txt, exit_code, progress.json) is ignored.
* If the command fails, the marker is put back as it was (removed if there was none), unless the
  folder held no results before and now holds some (they are this command's: a rerun resumes or
  replaces them); folders it created are removed if empty. A refused command changes nothing.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pam_explorer.core.errors import ConfigError, PamError, RunConflict
from pam_explorer.core.io import dumps_strict, write_bytes_atomic, write_json_atomic

MARKER = ".pam-run.json"
LOCK = ".pam-run.lock"
# written by runs/jobs.py around the command, or by the command for the dashboard: not results
BOOKKEEPING = frozenset({MARKER, LOCK, ".lock", "status.json", "log.txt", "exit_code", "progress.json"})


@contextlib.contextmanager
def claim(out: str | Path, command: str, config: Mapping[str, Any], outputs: Sequence[str] = (), *,
          force: bool = False, defaults: Mapping[str, Any] | Callable | None = None) -> Iterator[Path]:
    """Hold ``out`` for ``command`` (see the module docstring); yields it as a Path.

    outputs: names of the files/folders the command writes into ``out`` (one of them found there
    without a marker saying who wrote it is refused); defaults: values of config fields added
    since a folder was written, or a function mapping a stored config to the current form;
    since a folder was written (an old marker's missing field counts as its default).
    """
    out = Path(out)
    want = _jsonable(config)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file; give a folder (nothing was changed)")
    if out.is_dir():
        _check(out, command, want, outputs, force, defaults)  # before creating anything
    created = _make_dirs(out)
    try:
        with _lock(out):
            _check(out, command, want, outputs, force, defaults)  # again, now that we hold it
            previous, had_results = _read_bytes(out / MARKER), bool(_results(out))
            wrote_marker = _write_marker(out, command, want)
            try:
                yield out
            except BaseException:
                if wrote_marker and (had_results or not _results(out)):
                    _restore(out / MARKER, previous)  # keep it only over results of this very call
                raise
    except BaseException:
        for d in reversed(created):  # innermost first; folders this call made, if still empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def check(out: str | Path, command: str, config: Mapping[str, Any], outputs: Sequence[str] = (), *,
          force: bool = False, defaults: Mapping[str, Any] | Callable | None = None) -> None:
    """What :func:`claim` refuses, without creating, locking or writing anything (dry runs)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is an existing file; give a folder (nothing was changed)")
    if out.is_dir():
        _check(out, command, _jsonable(config), outputs, force, defaults)


def producer(out: str | Path) -> tuple[str | None, dict | None]:
    """(command, config) of what ``out`` holds: from its marker, else guessed from the files
    commands wrote before markers existed (config None: not known); (None, None) if nothing.
    "an unknown program" when files are there but no command can be recognised."""
    out = Path(out)
    marker = _read_json(out / MARKER)
    if isinstance(marker, dict) and isinstance(marker.get("command"), str):
        cfg = marker.get("config")
        return marker["command"], cfg if isinstance(cfg, dict) else None
    names = _results(out)
    if not names:
        return None, None
    cfg = _read_json(out / "config.json")
    if isinstance(cfg, dict) and {"preset", "prune"} <= set(cfg):
        return "experiment", cfg
    if "merge.json" in names:
        return "merge", None
    sidecars = [_read_json(out / (n[:-len(".safetensors")] + ".json"))
                for n in names if n.endswith(".safetensors")]
    if sidecars and all(isinstance(s, dict) and "arch" in s for s in sidecars):
        return "train", None
    return "an unknown program", None


def _check(out: Path, command: str, want: dict, outputs: Sequence[str], force: bool,
           defaults: Mapping[str, Any] | Callable | None) -> None:
    have_cmd, have_cfg = producer(out)
    if have_cmd is None:
        return
    if have_cmd == "an unknown program":
        clash = sorted(set(outputs) & _results(out))
        if not clash:
            return  # unrelated files, none of which this command writes
        raise RunConflict(f"--out {out} already holds {clash}, not written by `{command}`; "
                          "use another folder (nothing there was changed)")
    if have_cmd != command:
        raise RunConflict(f"--out {out} holds the results of `{have_cmd}`; `{command}` does not write "
                          "into another command's folder: use another folder (nothing there was changed)")
    if have_cfg is not None and _same(have_cfg, want, defaults):
        return
    if force:
        return
    what = ("an unknown configuration (written before run markers existed)" if have_cfg is None
            else f"another configuration ({_diff(have_cfg, want, defaults)})")
    hint = "use another folder" + (", or --force to replace them" if command != "experiment" else "")
    raise RunConflict(f"--out {out} holds `{command}` results of {what}; {hint} (nothing there was changed)")


def _complete(have: Mapping, defaults: Mapping[str, Any] | Callable | None) -> dict:
    """The stored configuration as the current code reads it: missing fields from ``defaults``,
    or ``defaults(have)`` when it is a function (e.g. a config class's from_dict)."""
    if callable(defaults):
        try:
            return _jsonable(defaults(have))
        except (PamError, TypeError, AttributeError):  # a stored config of another form: as stored
            return _jsonable(dict(have))
    return _jsonable({**(defaults or {}), **have})


def _same(have: Mapping, want: Mapping, defaults: Mapping[str, Any] | Callable | None) -> bool:
    return _complete(have, defaults) == want


def _diff(have: Mapping, want: Mapping, defaults: Mapping[str, Any] | Callable | None) -> str:
    have = _complete(have, defaults)
    keys = [k for k in sorted(set(have) | set(want)) if have.get(k) != want.get(k)]
    return ", ".join(f"{k}: {have.get(k)!r} there, {want.get(k)!r} now" for k in keys[:6])


def _results(out: Path) -> set[str]:
    """Names in ``out`` other than bookkeeping and hidden temporary files."""
    try:
        return {p.name for p in out.iterdir() if p.name not in BOOKKEEPING and not p.name.startswith(".")}
    except OSError:
        return set()


def _make_dirs(out: Path) -> list[Path]:
    """mkdir -p ``out``; returns the folders it created, outermost first."""
    missing = [p for p in (out, *out.parents) if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(out, exc) from exc
    return missing


@contextlib.contextmanager
def _lock(out: Path) -> Iterator[None]:
    path = out / LOCK
    while True:
        fd = _open_lock(out, path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise RunConflict(f"--out {out} is being written by another command right now"
                              + (f" (pid {holder})" if holder.isdigit() else "")
                              + "; wait for it to end or use another folder (nothing there was changed)"
                              ) from None
        try:  # the file we locked may have been removed by the holder that just released it
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)


def _open_lock(out: Path, path: Path) -> int:
    """The lock file, opened without following a symlink (whose target the pid would replace)
    and refused unless it is a regular file of one link."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunConflict(f"--out {out}: {LOCK} is a symbolic link; remove it (a lock file is never "
                              "followed) or use another folder (nothing there was changed)") from None
        raise _unwritable(out, exc) from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise RunConflict(f"--out {out}: {LOCK} is not a plain file of its own (a hard link or a special "
                          "file); remove it or use another folder (nothing there was changed)")
    return fd


def _write_marker(out: Path, command: str, want: dict) -> bool:
    """Write the marker unless it already says (command, want); True if written."""
    marker = _read_json(out / MARKER)
    if isinstance(marker, dict) and marker.get("command") == command \
            and _jsonable(marker.get("config")) == want:
        return False
    try:
        write_json_atomic(out / MARKER, {"command": command, "config": want})
    except OSError as exc:
        raise _unwritable(out, exc) from exc
    return True


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _restore(path: Path, previous: bytes | None) -> None:
    with contextlib.suppress(OSError):
        if previous is None:
            path.unlink()
        else:
            write_bytes_atomic(path, previous)


def _unwritable(out: Path, exc: OSError) -> ConfigError:
    reason = {errno.EROFS: "read-only file system", errno.EACCES: "permission denied",
              errno.EPERM: "permission denied", errno.ENOSPC: "no space left"}.get(
        exc.errno, exc.strerror or str(exc))
    return ConfigError(f"--out {out} cannot be written ({reason}); choose a writable folder "
                       "(nothing was changed)")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _jsonable(obj: Any) -> Any:
    """``obj`` as strict JSON reads it back (inf as "inf"): how markers are written and compared,
    so a marker written before JSON was strict (``Infinity``) still matches its configuration."""
    return json.loads(dumps_strict(obj, indent=None))


__all__ = ["MARKER", "LOCK", "claim", "check", "producer"]
