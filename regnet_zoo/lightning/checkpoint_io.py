"""Atomic local checkpoint writes: Lightning's local save moves a temporary file from the system temp folder (a
copy across file systems: a crash can leave a truncated ``last.ckpt``); ``AtomicCheckpointIO`` writes next to the
target and renames over it (``regnet_zoo.fileio.atomic_write``).
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
    return path[len("file://"):] if path.startswith("file://") else None if "://" in path else path


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with atomic local saves (remote URLs go through Lightning's fsspec path), removing the
    temporary files a killed writer left first: ``L.Trainer(plugins=[AtomicCheckpointIO()])`` (``regnet-zoo``'s
    default)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        local = local_path(path)
        if local is None or storage_options is not None:  # Lightning's: fsspec, or its TypeError for the options
            return super().save_checkpoint(checkpoint, path, storage_options)
        folder, name = os.path.split(os.path.abspath(local))
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}.*.tmp")):
            os.remove(stale)
        atomic_write(local, lambda tmp: torch.save(checkpoint, tmp))
