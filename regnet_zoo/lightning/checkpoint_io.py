"""Atomic local checkpoint writes.

Lightning writes a local checkpoint through an fsspec transaction whose temporary file is created in
the system temp folder and then moved; across file systems that move is a copy, so a crash can leave
a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes a temporary file next to the target and
renames it over the target (``regnet_zoo.fileio.atomic_write``), so a checkpoint path always
holds a complete file.
"""

from __future__ import annotations

import glob
import os
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from regnet_zoo.fileio import atomic_write


def local_path(path: Any) -> str | None:
    """``path`` as a local file-system path (``file://`` stripped), or None for a remote URL."""
    path = os.fspath(path)
    if path.startswith("file://"):
        return path[len("file://"):]
    return None if "://" in path else path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` so that readers see the old file or the complete new one, never a part.

    Temporary files a killed writer left next to ``path`` are removed first.
    """
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
        os.remove(stale)
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local saves (remote URLs go through Lightning's fsspec path).

    Use with a plain trainer as ``L.Trainer(plugins=[AtomicCheckpointIO()])``; ``regnet-zoo`` installs
    it by default.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        local = local_path(path)
        if local is None:
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not support storage_options for local paths, "
                            f"got {storage_options!r}")
        atomic_torch_save(checkpoint, local)
