"""File helpers of the weights layer: content hashes, verification, atomic writes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path

from regnet_zoo.weights.errors import WeightsVerificationError

_log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
_digests: dict[tuple, str] = {}  # (algorithm, path, inode, size, mtime, ctime) -> hex digest of that content


def _stamp(path: str | os.PathLike) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _digest(path: str | os.PathLike, algo: str, h: hashlib._Hash) -> str:
    """Hex digest of a file's bytes fed to ``h``; remembered while the file is unchanged (same stat stamp)."""
    key = (algo, *_stamp(path))
    if key not in _digests:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes (the Hub's LFS oid); computed once per unchanged file."""
    return _digest(path, "sha256", hashlib.sha256())


def git_blob_sha1(path: str | os.PathLike) -> str:
    """git's blob id of a file: sha1 of ``b"blob <size>\\0" + bytes`` (the Hub's ETag of non-LFS files)."""
    return _digest(path, "git-sha1", hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode()))


def verify_file(path: str | os.PathLike, expected: str, *, what: str, why: str,
                remove: Iterable[str | os.PathLike] = ()) -> str:
    """Check ``path`` against ``expected`` (64 hex: sha256, 40 hex: git blob sha1); returns the digest.

    On a mismatch the files in ``remove`` (e.g. the cache blob and its link) are deleted and
    ``WeightsVerificationError`` says what was expected (and ``why``, e.g. "pinned in the manifest")
    and what the file holds. Digests are remembered per unchanged file (path, inode, size, times), so
    a verified file is not hashed again, and ``file_sha256`` afterwards costs nothing.
    """
    path = os.fspath(path)
    expected = expected.lower()
    if SHA256_RE.match(expected):
        algo, digest_fn = "sha256", file_sha256
    elif GIT_SHA1_RE.match(expected):
        algo, digest_fn = "git-sha1", git_blob_sha1
    else:
        raise ValueError(f"expected hash must be a sha256 or git sha1 hex digest, got {expected!r}")
    got = digest_fn(path)
    if got != expected:
        removed = []
        for p in remove:
            p = os.fspath(p)
            if os.path.lexists(p):
                os.remove(p)
                removed.append(p)
        raise WeightsVerificationError(
            f"{what}: {algo} mismatch: expected {expected} ({why}), got {got}. "
            + (f"Removed the corrupt file ({', '.join(removed)}); run again to download it anew."
               if removed else f"File: {path}"))
    _log.debug("%s: %s verified (%s)", what, algo, why)
    return got


def _fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk; folders only where the OS supports it."""
    if directory:
        if not hasattr(os, "O_DIRECTORY"):  # Windows: folders cannot be opened for fsync
            return
        flags = os.O_RDONLY | os.O_DIRECTORY
    else:
        flags = os.O_RDWR  # Windows' fsync needs write access
    try:
        fd = os.open(path, flags)
    except OSError:
        if directory:
            return
        fd = os.open(path, os.O_RDONLY)  # a writer that left the file read-only
    try:
        os.fsync(fd)
    except OSError:  # some file systems do not support fsync on folders
        if not directory:
            raise
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, content: str | bytes | Callable[[str], None], *,
                 encoding: str = "utf-8") -> Path:
    """Write ``path`` atomically and durably: readers see the old file or the complete new one, never a part.

    ``content`` is the text (written with ``encoding``), the bytes, or a function ``write(tmp_path)``
    that writes the file itself (e.g. ``lambda tmp: torch.save(obj, tmp)``). The data goes to a
    temporary file in the same folder, which is fsynced and renamed over ``path`` (``os.replace``);
    then the folder is fsynced (POSIX) so the rename survives a crash. On any error the temporary
    file is removed and ``path`` is left as it was. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if callable(content):
            content(str(tmp))
            _fsync_path(tmp)
        else:
            if not isinstance(content, (str, bytes, bytearray, memoryview)):
                raise TypeError("content must be str, bytes or a function writing a path, got "
                                f"{type(content).__name__}")
            data = content.encode(encoding) if isinstance(content, str) else content
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_path(path.parent, directory=True)
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """``atomic_write(path, text)``: UTF-8 text."""
    return atomic_write(path, text)
