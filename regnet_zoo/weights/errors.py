"""Errors of the weights layer; each message says which weights, where, and what to do."""

from __future__ import annotations


class WeightsError(RuntimeError):
    """Weights cannot be read or used (the message says which file and why)."""


class WeightsMismatchError(WeightsError):
    """A state dict does not fit the model's architecture."""


class WeightsNotFoundError(WeightsError):
    """No such weights: an unknown tag, or a repo/file/revision the Hub does not have."""


class WeightsNotCachedError(WeightsError):
    """Offline (or the Hub unreachable) and the weights are not in the local cache."""


class WeightsVerificationError(WeightsError):
    """A downloaded or cached file's hash differs from the expected one (the file was removed)."""


class WeightsHubError(WeightsError):
    """The Hub refused or failed a request (HTTP 401/403, 429, 5xx, ...); ``status`` is the HTTP status."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class ExportError(WeightsError):
    """A model cannot be written in another library's layout (the message names the rule it breaks)."""
