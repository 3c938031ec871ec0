"""Pretrained weights: reading, loading with adaptation, the Hub (no Lightning)."""

from regnet_zoo.weights.apply import (
    WeightsError,
    WeightsMismatchError,
    load_into,
    read_state_dict,
)
from regnet_zoo.weights.resolve import Pretrained, resolve_pretrained

__all__ = ["Pretrained", "WeightsError", "WeightsMismatchError", "load_into", "read_state_dict",
           "resolve_pretrained"]
