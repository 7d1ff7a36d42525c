"""Issue 16, finding 10: `db restore` from a hostile archive. Path traversal and links are refused
by name and kind; members bigger than a backup holds, compression bombs and over-long rows are
refused from the tar headers before any member is read or anything is written."""
from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

from storage import archive_limits
from storage import backup as bk
from storage.archive_limits import ArchiveLimits, check_archive

pytestmark = pytest.mark.timeout(120)


def _tar(path, members, mode="w"):
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("member,expected", [
    (_file("../../outside.txt", b"x"), "climbing out"),
    (_file("/etc/cron.d/x", b"x"), "absolute path"),
    (_link("blobs/" + "0" * 64, "/etc/passwd"), "is a link"),
    (_link("db/user.jsonl", "/etc/shadow", tarfile.LNKTYPE), "is a link"),
])
def test_traversal_and_links_are_refused_before_writing(tmp_path, member, expected):
    archive = _tar(tmp_path / "hostile.tar", [member])
    with pytest.raises(bk.BackupError, match=expected):
        bk.restore(archive, f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "blobs")
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path / "blobs").exists()
    assert not (tmp_path / "r.db").exists()


def test_huge_members_and_compression_bombs_are_refused_from_headers(tmp_path, monkeypatch):
    zeros = bytes(32 << 20)
    sha = hashlib.sha256(zeros).hexdigest()
    archive = _tar(tmp_path / "bomb.tar.gz", [_file("blobs/" + sha, zeros)], mode="w:gz")
    assert archive.stat().st_size < 200_000  # 32 MiB of zeros weighs almost nothing packed
    with pytest.raises(bk.BackupError, match="over the 1,048,576 byte limit"):
        check_archive(archive, limits=ArchiveLimits(max_blob_bytes=1 << 20))
    with pytest.raises(bk.BackupError, match="compression bomb"):
        check_archive(archive, limits=ArchiveLimits(ratio_floor_bytes=1 << 20, max_ratio=50))
    # restore() applies the same limits first, so nothing is hashed, copied or written.
    monkeypatch.setattr(archive_limits, "DEFAULT_LIMITS", ArchiveLimits(max_blob_bytes=1 << 20))
    with pytest.raises(bk.BackupError, match="byte limit"):
        bk.restore(archive, f"sqlite:///{tmp_path / 'r.db'}", tmp_path / "blobs")
    assert not (tmp_path / "blobs").exists()


def test_over_long_row_line_is_refused(monkeypatch):
    monkeypatch.setattr(archive_limits, "MAX_LINE_BYTES", 1000)
    lines = bk._bounded_lines(io.BytesIO(b'{"id": 1}\n' + b"x" * 5000 + b"\n"), "user")
    assert next(lines) == '{"id": 1}\n'
    with pytest.raises(bk.BackupError, match="line over 1,000 bytes"):
        next(lines)


def test_a_real_backup_passes_the_limits(store, blobs, tmp_path):
    from tests.evidence_factory import make_evidence

    make_evidence(store, blobs)
    info = bk.backup(store, blobs.root, tmp_path / "good.tar.gz")
    check_archive(info.path, blobs_root=tmp_path)
    assert gzip.open(info.path).read(1)
