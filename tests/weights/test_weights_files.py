"""File helpers: atomic, durable writes and hashes computed once per unchanged file."""

from __future__ import annotations

import hashlib
import os

import pytest

from regnet_zoo import fileio
from regnet_zoo.fileio import atomic_write
from regnet_zoo.weights import files
from regnet_zoo.weights.errors import WeightsVerificationError
from regnet_zoo.weights.files import file_sha256, git_blob_sha1, verify_file


@pytest.fixture
def fsynced(monkeypatch):
    """Paths (by inode) of everything os.fsync is called on."""
    seen = []
    real = os.fsync

    def record(fd):
        seen.append(os.fstat(fd).st_ino)
        return real(fd)

    monkeypatch.setattr(fileio.os, "fsync", record)
    return seen


@pytest.mark.parametrize("content, expected", [("héllo\n", "héllo\n".encode()), (b"\x00\xff", b"\x00\xff"),
                                               (lambda tmp: open(tmp, "wb").write(b"by a writer"), b"by a writer")])
def test_atomic_write_text_bytes_or_writer_and_fsync(tmp_path, fsynced, content, expected):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    assert atomic_write(path, content) == path
    assert path.read_bytes() == expected
    assert os.listdir(tmp_path) == ["out.bin"]  # no temporary file left
    # the new file's data and the folder's entry were flushed to disk
    assert fsynced == [path.stat().st_ino, tmp_path.stat().st_ino]


def test_atomic_write_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"complete")

    def broken(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, broken)
    assert path.read_bytes() == b"complete" and os.listdir(tmp_path) == ["ckpt.pt"]
    with pytest.raises(TypeError):
        atomic_write(path, 3.5)
    assert os.listdir(tmp_path) == ["ckpt.pt"]


def test_hashes_are_remembered_until_the_file_changes(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    data = os.urandom(3000)
    path.write_bytes(data)
    reads = []
    real_open = open

    def counting_open(p, *a, **k):
        reads.append(os.fspath(p))
        return real_open(p, *a, **k)

    monkeypatch.setattr(files, "open", counting_open, raising=False)
    sha = hashlib.sha256(data).hexdigest()
    assert verify_file(path, sha, what="w", why="test") == sha
    assert file_sha256(path) == sha and verify_file(path, sha, what="w", why="test") == sha
    assert len(reads) == 1  # verified once; the digest is reused
    git = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert git_blob_sha1(path) == git and len(reads) == 2  # another algorithm: its own pass
    changed = bytearray(data)
    changed[0] ^= 1
    path.write_bytes(bytes(changed))
    os.utime(path, ns=(1, 1))  # even with an old modification time, ctime/inode stamp changes are seen
    with pytest.raises(WeightsVerificationError, match=f"expected {sha}"):
        verify_file(path, sha, what="w", why="test")
    assert len(reads) == 3
