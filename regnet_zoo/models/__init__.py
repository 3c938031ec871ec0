"""Torch modules: the AnyNet/RegNet model and its blocks (no Hub, no Lightning)."""

from regnet_zoo.models.anynet import AnyNet, default_pretrained_cfg
from regnet_zoo.models.blocks import Bottleneck, Stage, Stem
from regnet_zoo.models.features import wrap_features

__all__ = ["AnyNet", "Bottleneck", "Stage", "Stem", "default_pretrained_cfg", "wrap_features"]
