"""Uploaded project zips (pam_explorer.data.project_zip): a good one unpacks into a folder named
by its hash and opens; paths outside the root, links, too large and not-a-zip uploads are one
error line and leave nothing behind."""
from __future__ import annotations

import io
import stat
import zipfile

import pytest

from pam_explorer.core.errors import DataError
from pam_explorer.data import read_project
from pam_explorer.data.project_zip import unpack_project_zip
from tests.project_fixture import SPLITS, make_project


def zip_of(folder, prefix="proj/", extra=()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, prefix + str(f.relative_to(folder)))
        for info, data in extra:
            zf.writestr(info, data)
    return buf.getvalue()


def test_a_good_zip_unpacks_and_opens(tmp_path):
    raw = zip_of(make_project(tmp_path / "src", nets=True).parent)
    path = unpack_project_zip(raw, tmp_path / "projects")
    assert path.name == "pam.toml" and path.parent.name == "proj"
    assert read_project(path).split_sizes() == SPLITS
    assert unpack_project_zip(raw, tmp_path / "projects") == path  # the same upload: the same folder
    assert [p.name for p in (tmp_path / "projects").iterdir()] == [path.parents[1].name]


def bad(tmp_path, raw, *needles, max_bytes=None):
    kwargs = {} if max_bytes is None else {"max_bytes": max_bytes}
    with pytest.raises(DataError) as info:
        unpack_project_zip(raw, tmp_path / "projects", "up.zip", **kwargs)
    assert "\n" not in str(info.value)
    for n in needles:
        assert n in str(info.value), (n, str(info.value))
    assert not (tmp_path / "projects").exists() or not any((tmp_path / "projects").iterdir())


def test_paths_outside_the_root_are_refused(tmp_path):
    folder = make_project(tmp_path / "src").parent
    bad(tmp_path, zip_of(folder, extra=[("../evil.txt", b"x")]), "up.zip", "'../evil.txt'",
        "outside the zip's root")
    bad(tmp_path, zip_of(folder, extra=[("/etc/evil", b"x")]), "'/etc/evil'", "outside")


def test_links_are_refused(tmp_path):
    link = zipfile.ZipInfo("proj/link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    bad(tmp_path, zip_of(make_project(tmp_path / "src").parent, extra=[(link, "/etc/passwd")]), "is a link")


def test_too_large_or_lying_about_its_size(tmp_path):
    raw = zip_of(make_project(tmp_path / "src").parent)
    bad(tmp_path, raw, "up.zip holds", "GB once unpacked, more than", max_bytes=1000)
    src2 = make_project(tmp_path / "src2").parent
    lying = bytearray(zip_of(src2, prefix="", extra=[("big.bin", b"a" * 5000)]))
    # shrink the declared size of big.bin (local header and central directory) below its real size
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = lying.rfind(sig)
        field = at + (22 if sig == b"PK\x03\x04" else 24)
        lying[field:field + 4] = (10).to_bytes(4, "little")
    bad(tmp_path, bytes(lying), "'big.bin'", "corrupt or unreadable")


def test_not_a_zip_and_not_one_project_file(tmp_path):
    bad(tmp_path, b"not a zip at all", "up.zip is not a zip file")
    folder = make_project(tmp_path / "src").parent
    bad(tmp_path, zip_of(folder, extra=[("proj/other.toml", b"")]), "exactly one project file")
