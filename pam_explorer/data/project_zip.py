"""A project uploaded as one zip (the dashboard's Setup page): checked, then unpacked.

The zip holds the project file (``*.toml``, at its top or in one top folder), the CSV or NPZ,
the pictures and the networks. Before anything is written it is refused, with one line naming
the zip and the member, when it is not a zip, holds more than :data:`MAX_MEMBERS` members or
more than :data:`MAX_BYTES` bytes once unpacked (the members' declared sizes; reading stops at
them too, so a member that lies about its size is refused while unpacking: its CRC fails), has
a member whose path is absolute or leaves the zip's root (``..``), a link, or not exactly one
project file.
It is unpacked into a new folder named by the zip's hash (the same upload lands in the same
folder, which is then reused); a failure half way removes that folder.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import stat
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from pam_explorer.core.errors import DataError

MAX_BYTES = 2 * 1024 ** 3  # unpacked size of an uploaded project
MAX_MEMBERS = 200_000
CHUNK = 1 << 20


def unpack_project_zip(raw: bytes, root: str | Path, name: str = "upload.zip",
                       max_bytes: int = MAX_BYTES) -> Path:
    """Unpack the zip ``raw`` under ``root``/<hash> and return the path of its project file.

    Raises DataError (see the module docstring); nothing is left behind on an error.
    """
    try:
        zf = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as exc:
        raise DataError(f"{name} is not a zip file ({exc})") from exc
    with zf:
        members = _checked_members(zf, name, max_bytes)
        toml = _project_file(members, name)
        dest = Path(root) / hashlib.sha256(raw).hexdigest()[:16]
        if not (dest / toml).is_file():
            _unpack(zf, members, dest, name)
    return dest / toml


def _checked_members(zf: zipfile.ZipFile, name: str, max_bytes: int) -> list[zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise DataError(f"{name} has {len(infos):,} members, more than the {MAX_MEMBERS:,} allowed")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DataError(f"{name} holds {total / 1e9:.2f} GB once unpacked, more than the "
                        f"{max_bytes / 1e9:.2f} GB allowed for an uploaded project")
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
            raise DataError(f"{name}: member {info.filename!r} is outside the zip's root; refused "
                            "(nothing was unpacked)")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{name}: member {info.filename!r} is a link; refused (nothing was unpacked)")
    return [i for i in infos if not i.is_dir()]


def _project_file(members: list[zipfile.ZipInfo], name: str) -> str:
    tomls = [m.filename for m in members if m.filename.endswith(".toml") and m.filename.count("/") <= 1]
    if len(tomls) != 1:
        raise DataError(f"{name} must hold exactly one project file (*.toml) at its top or in one top "
                        f"folder, found {tomls or 'none'}")
    return tomls[0]


def _unpack(zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], dest: Path, name: str) -> None:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        for info in members:
            target = tmp / info.filename
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with zf.open(info) as src, target.open("wb") as out:
                    _copy_capped(src, out, info, name)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise DataError(f"{name}: member {info.filename!r} is corrupt or unreadable ({exc}); "
                                "refused (nothing was unpacked)") from exc
        if dest.exists():  # an earlier, partial upload of the same zip
            shutil.rmtree(dest)
        tmp.rename(dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_capped(src, out, info: zipfile.ZipInfo, name: str) -> None:
    written = 0
    while chunk := src.read(CHUNK):
        written += len(chunk)
        if written > info.file_size:
            raise DataError(f"{name}: member {info.filename!r} unpacks to more than its declared "
                            f"{info.file_size:,} bytes; refused")
        out.write(chunk)


__all__ = ["unpack_project_zip", "MAX_BYTES", "MAX_MEMBERS"]
