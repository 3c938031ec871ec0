"""Errors of the training layer: each says what went wrong and where."""

from __future__ import annotations


class DataError(ValueError):
    """Missing or empty data folder, unreadable image, unsupported image mode, bad split."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (the message names the step)."""


class RunFolderError(ValueError):
    """A fresh run into a checkpoint folder holding an earlier run's checkpoints, or a missing checkpoint."""


class RecipeError(ValueError):
    """A recipe's ``__base__`` is missing, unreadable, not a file name, or part of a cycle."""
