"""Atomic, durable file writes (the old file or the complete new one, never a part); imports nothing of ours."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path


def _fsync_path(path: str | os.PathLike, directory: bool = False) -> None:
    """Flush a file's (or a folder's entries') data to disk; folders only where the OS supports it."""
    if directory and not hasattr(os, "O_DIRECTORY"):  # Windows: folders cannot be opened for fsync
        return
    try:  # Windows' fsync of a file needs write access
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY if directory else os.O_RDWR)
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

    ``content``: the text (written with ``encoding``), the bytes, or a function ``write(tmp_path)`` (e.g.
    ``lambda tmp: torch.save(obj, tmp)``). A temporary file in the same folder is fsynced and renamed over
    ``path``, then the folder is fsynced (POSIX); on any error ``path`` is left as it was. Returns ``path``.
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
