"""Errors of the training layer (each says what went wrong and where), and the filter for a Lightning
warning that every run triggers and no user can act on."""

from __future__ import annotations

import warnings


class DataError(ValueError):
    """Missing or empty data folder, unreadable image, unsupported image mode, bad split."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the message names the step)."""


class RunFolderError(ValueError):
    """A fresh run into a checkpoint folder holding an earlier run's checkpoints, or a missing checkpoint."""


class RecipeError(ValueError):
    """A recipe's ``__base__`` is missing, unreadable, not a file name, or part of a cycle."""


def ignore_known_lightning_warnings() -> None:
    """Ignore the ``LeafSpec`` deprecation warning (torch >= 2.9) that Lightning's ``utilities/_pytree.py`` raises
    for every batch it fetches (only that message, category and module)."""
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"lightning\.pytorch\.utilities\._pytree")
