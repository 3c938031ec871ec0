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
_verified: dict[tuple, str] = {}  # (path, inode, size, mtime, ctime) -> digest already checked


def _digest(path: str | os.PathLike, h: hashlib._Hash) -> str:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes (the Hub's LFS oid)."""
    return _digest(path, hashlib.sha256())


def git_blob_sha1(path: str | os.PathLike) -> str:
    """git's blob id of a file: sha1 of ``b"blob <size>\\0" + bytes`` (the Hub's ETag of non-LFS files)."""
    h = hashlib.sha1(f"blob {os.path.getsize(path)}\0".encode())
    return _digest(path, h)


def _stamp(path: str) -> tuple:
    st = os.stat(path)
    return (os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def verify_file(path: str | os.PathLike, expected: str, *, what: str, why: str,
                remove: Iterable[str | os.PathLike] = ()) -> None:
    """Check ``path`` against ``expected`` (64 hex: sha256, 40 hex: git blob sha1).

    On a mismatch the files in ``remove`` (e.g. the cache blob and its link) are deleted and
    ``WeightsVerificationError`` says what was expected (and ``why``, e.g. "pinned in the manifest")
    and what the file holds. A file verified once is not re-hashed while unchanged.
    """
    path = os.fspath(path)
    expected = expected.lower()
    if SHA256_RE.match(expected):
        algo, digest_fn = "sha256", file_sha256
    elif GIT_SHA1_RE.match(expected):
        algo, digest_fn = "git-sha1", git_blob_sha1
    else:
        raise ValueError(f"expected hash must be a sha256 or git sha1 hex digest, got {expected!r}")
    stamp = _stamp(path)
    if _verified.get(stamp) == expected:
        return
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
    _verified[stamp] = expected
    _log.debug("%s: %s verified (%s)", what, algo, why)


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` in one step (no half-written files)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(str(tmp))
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
