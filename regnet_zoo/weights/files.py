"""File helpers of the weights layer: content hashes and verification (atomic writes: ``regnet_zoo.fileio``)."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterable

from regnet_zoo.weights.errors import WeightsVerificationError

_log = logging.getLogger(__name__)

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 1 << 20
_digests: dict[tuple, str] = {}  # (algorithm, path, inode, size, mtime, ctime) -> hex digest of that content


def _digest(path: str | os.PathLike, algo: str, h: hashlib._Hash) -> str:
    """Hex digest of a file's bytes fed to ``h``; remembered while the file is unchanged (same stat stamp)."""
    st = os.stat(path)
    key = (algo, os.path.realpath(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
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
    ``WeightsVerificationError`` says what was expected (and ``why``, e.g. "pinned in the manifest") and got.
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
        removed = [p for p in dict.fromkeys(map(os.fspath, remove)) if os.path.lexists(p)]
        for p in removed:
            os.remove(p)
        raise WeightsVerificationError(
            f"{what}: {algo} mismatch: expected {expected} ({why}), got {got}. "
            + (f"Removed the corrupt file ({', '.join(removed)}); run again to download it anew."
               if removed else f"File: {path}"))
    _log.debug("%s: %s verified (%s)", what, algo, why)
    return got
